//! secret-ferry: assumes a cross-account AWS role, polls AWS Secrets Manager and writes
//! the secrets atomically into files on a shared volume.
//!
//! Data flows one way: `config → credentials → source → transform → sink` (and
//! `credentials → vend` for the credentials handed to the app), with `aws`, `k8s`,
//! `metrics`, `health` and `admin` at the side; `daemon` and `commands` wire the stages
//! and `main.rs` only maps the command line onto them. See ARCHITECTURE.md.
#![forbid(unsafe_code)]

pub mod admin;
pub mod aws;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod health;
mod http;
pub mod k8s;
#[cfg(test)]
mod layers;
pub mod mapping;
pub mod metrics;
pub mod notify;
pub mod secret;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod tenants;
pub mod transform;
pub mod vend;
pub mod version_id;
