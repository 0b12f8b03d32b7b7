//! The integration tests, one module per area, in one test binary: the support code
//! (`common`: moto, the canary registry, the fault proxy, the fake AWS) and the Kubernetes
//! API emulator are compiled and linked against the AWS SDK once instead of once per area.
//!
//! One process now runs every area's tests side by side, so process-wide state is shared:
//! the tracing subscriber, the harness dir and the canary registry are set up once per process
//! (`common`), no test changes the environment or the current directory of this process (a
//! child process gets what it needs), and the tests that measure time or resources take
//! `common::heavy()` so that no two of them overlap.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

mod common;
mod kube_emulator;

mod alert_scrapes;
mod change_events;
mod check;
mod cli;
mod crash_consistency;
mod dashboards;
mod faults;
mod file_sink_readers;
mod hostile_input;
mod kube_bench;
mod kube_emulator_selftest;
mod kube_leader;
mod kube_push;
mod kube_target;
mod metrics_format;
mod moto_credentials;
mod moto_daemon;
mod moto_fetch;
mod moto_push;
mod parameter_store;
mod parameter_sync;
mod pods;
mod resource_bounds;
mod scale;
