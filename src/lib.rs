//! secret-ferry: assumes a cross-account AWS role, polls AWS Secrets Manager and writes
//! the secrets atomically into files on a shared volume.
//!
//! Data flows one way: `config → credentials → source → transform → sink`, with
//! `metrics` and `admin` at the side; `app` wires the stages and `main.rs` only parses
//! the command line. See ARCHITECTURE.md.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod aws;
pub mod config;
pub mod credentials;
pub mod credentials_endpoint;
mod http;
pub mod iam;
pub mod k8s;
pub mod mapping;
pub mod metrics;
pub mod notify;
pub mod secret;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod transform;
