//! The families of `pushes`: one small constant set of series per push, labelled by the
//! push's configured name and fixed enums only.

use super::{counter, registered, Outcome};
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// The writes a push makes, for `secret_ferry_push_writes_total{operation}`.
pub const WRITE_OPERATIONS: [&str; 5] = ["create", "put", "adopt", "delete", "restore"];

#[derive(Clone)]
pub(super) struct PushMetrics {
    total: IntCounterVec,
    writes: IntCounterVec,
    errors: IntCounterVec,
    last_success: GaugeVec,
    stale: IntGaugeVec,
    /// The error kinds counted per push, so that a forgotten push loses every series.
    kinds: Arc<Mutex<BTreeMap<String, BTreeSet<&'static str>>>>,
}

impl PushMetrics {
    pub(super) fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            total: counter(
                r,
                "secret_ferry_push_total",
                "Push attempts (read the source, compare, write if needed), by push and result.",
                &["push", "result"],
            )?,
            writes: counter(
                r,
                "secret_ferry_push_writes_total",
                "Writes made to Secrets Manager for a push, by operation (create, put, adopt, delete, restore); flat while the source is unchanged.",
                &["push", "operation"],
            )?,
            errors: counter(
                r,
                "secret_ferry_push_errors_total",
                "Failed push attempts by push and kind (access_denied, kms, throttled, not_owned, source_missing, source_unreadable, ...).",
                &["push", "kind"],
            )?,
            last_success: registered(
                r,
                GaugeVec::new(
                    Opts::new(
                        "secret_ferry_push_last_success_timestamp_seconds",
                        "Unix time of the last attempt that left the remote secret matching the source (or settled by policy).",
                    ),
                    &["push"],
                )?,
            )?,
            stale: registered(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "secret_ferry_push_stale",
                        "1 while the remote secret may be behind its source (the last attempt failed or was refused), else 0.",
                    ),
                    &["push"],
                )?,
            )?,
            kinds: Arc::default(),
        })
    }

    pub(super) fn register(&self, push: &str) {
        for outcome in [Outcome::Success, Outcome::Failure] {
            self.total.with_label_values(&[push, outcome.as_str()]);
        }
        for operation in WRITE_OPERATIONS {
            self.writes.with_label_values(&[push, operation]);
        }
        self.stale.with_label_values(&[push]).set(0);
    }

    pub(super) fn attempted(&self, push: &str, failure: Option<&'static str>, now: f64) {
        match failure {
            None => {
                self.total.with_label_values(&[push, "success"]).inc();
                self.last_success.with_label_values(&[push]).set(now);
                self.stale.with_label_values(&[push]).set(0);
            }
            Some(kind) => {
                self.total.with_label_values(&[push, "failure"]).inc();
                self.errors.with_label_values(&[push, kind]).inc();
                self.kinds
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(push.to_owned())
                    .or_default()
                    .insert(kind);
                self.stale.with_label_values(&[push]).set(1);
            }
        }
    }

    pub(super) fn wrote(&self, push: &str, operation: &'static str) {
        self.writes.with_label_values(&[push, operation]).inc();
    }

    /// Drops every series of a push that no longer exists (a tenant's, when its Secret goes).
    pub(super) fn forget(&self, push: &str) {
        // A series that was never created is not an error here: removing is best effort.
        for outcome in [Outcome::Success, Outcome::Failure] {
            let _ = self.total.remove_label_values(&[push, outcome.as_str()]);
        }
        for operation in WRITE_OPERATIONS {
            let _ = self.writes.remove_label_values(&[push, operation]);
        }
        let kinds = self
            .kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(push)
            .unwrap_or_default();
        for kind in kinds {
            let _ = self.errors.remove_label_values(&[push, kind]);
        }
        let _ = self.last_success.remove_label_values(&[push]);
        let _ = self.stale.remove_label_values(&[push]);
    }
}
