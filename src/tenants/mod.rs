//! Tenants: Secrets in other namespaces that ask, by annotation, to be filled from
//! Secrets Manager under the config's `tenants` rules. `rules` decides (pure), the
//! `controller` watches and runs the syncs.

mod controller;
pub mod rules;

pub(crate) use controller::{StartError, Syncs, TenantController};
