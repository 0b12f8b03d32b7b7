//! The polling groups' progress, as the stall watchdog last saw it (`health::stall`): how
//! many groups poll, how many are stalled, the least recent completed poll and the next
//! due one. Aggregates only: they answer "is anything behind?" at any number of secrets.

use super::registered;
use prometheus::{Gauge, IntGauge, Registry};

/// One look of the watchdog; times are Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PollProgress {
    pub groups: usize,
    pub stalled: usize,
    pub oldest_completion: Option<f64>,
    pub next_due: Option<f64>,
}

#[derive(Clone)]
pub(super) struct PollMetrics {
    groups: IntGauge,
    stalled: IntGauge,
    oldest_completion: Gauge,
    next_due: Gauge,
}

impl PollMetrics {
    pub(super) fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let int = |name: &str, help: &str| registered(r, IntGauge::new(name, help)?);
        let float = |name: &str, help: &str| registered(r, Gauge::new(name, help)?);
        Ok(Self {
            groups: int(
                "secret_ferry_poll_groups",
                "Polling groups (secrets polled together with one strategy and interval).",
            )?,
            stalled: int(
                "secret_ferry_poll_groups_stalled",
                "Polling groups that have not completed a poll within twice their interval (a hung connection or a starved task).",
            )?,
            oldest_completion: float(
                "secret_ferry_poll_oldest_completion_timestamp_seconds",
                "Unix time of the least recent completed poll over all groups (the start, before a group's first); 0 while no group polls.",
            )?,
            next_due: float(
                "secret_ferry_poll_next_due_timestamp_seconds",
                "Unix time at which the earliest waiting group's next poll is due; 0 while none waits.",
            )?,
        })
    }

    pub(super) fn set(&self, p: PollProgress) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.groups.set(count(p.groups));
        self.stalled.set(count(p.stalled));
        self.oldest_completion
            .set(p.oldest_completion.unwrap_or(0.0));
        self.next_due.set(p.next_due.unwrap_or(0.0));
    }
}
