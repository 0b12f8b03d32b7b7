//! The families of `changeEvents`: per queue (a config name) and a fixed reason set only.

use super::{counter, registered};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Why a well-formed message led to no sync: the parser's reasons and the router's.
pub const IGNORED_REASONS: [&str; 6] = [
    "not_a_change",
    "no_secret_id",
    "invalid_secret_id",
    "unknown_secret",
    "own_push",
    "other_stage",
];

/// Event time to bytes written: SQS delivers within a second, a poll within an interval.
const DELAY_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

#[derive(Clone)]
pub(super) struct EventMetrics {
    received: IntCounterVec,
    matched: IntCounterVec,
    ignored: IntCounterVec,
    malformed: IntCounterVec,
    errors: IntCounterVec,
    receiving: IntGaugeVec,
    oldest: GaugeVec,
    /// No labels; a family without a series is not rendered, so a daemon without queues
    /// exports none of it.
    delay: HistogramVec,
}

impl EventMetrics {
    pub(super) fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            received: counter(
                r,
                "secret_ferry_change_events_received_total",
                "Messages received from a change events queue.",
                &["queue"],
            )?,
            matched: counter(
                r,
                "secret_ferry_change_events_matched_total",
                "Change events that concern a configured secret or find entry (which then syncs at once).",
                &["queue"],
            )?,
            ignored: counter(
                r,
                "secret_ferry_change_events_ignored_total",
                "Change events deleted without a sync, by reason (unknown_secret, own_push, other_stage, not_a_change, no_secret_id, invalid_secret_id).",
                &["queue", "reason"],
            )?,
            malformed: counter(
                r,
                "secret_ferry_change_events_malformed_total",
                "Messages that are not EventBridge events: left in the queue for its redrive policy (counted at each receive).",
                &["queue"],
            )?,
            errors: counter(
                r,
                "secret_ferry_change_events_queue_errors_total",
                "Failed calls to a change events queue, by operation and reason (access_denied, not_found, throttled, timeout, network, server, ...); secrets are polled meanwhile.",
                &["queue", "operation", "reason"],
            )?,
            receiving: registered(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "secret_ferry_change_events_receiving",
                        "1 while the last receive from the queue succeeded; 0 while it fails (secrets are only polled then).",
                    ),
                    &["queue"],
                )?,
            )?,
            oldest: registered(
                r,
                GaugeVec::new(
                    Opts::new(
                        "secret_ferry_change_events_oldest_message_age_seconds",
                        "Age of the oldest message in the last receive, from its SentTimestamp (0 after an empty receive).",
                    ),
                    &["queue"],
                )?,
            )?,
            delay: registered(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "secret_ferry_change_event_delay_seconds",
                        "From a change event's time (AWS's clock, to the second) to the secret's new value written to every target.",
                    )
                    .buckets(DELAY_BUCKETS.to_vec()),
                    &[],
                )?,
            )?,
        })
    }

    pub(super) fn register(&self, queue: &str) {
        self.received.with_label_values(&[queue]);
        self.matched.with_label_values(&[queue]);
        self.malformed.with_label_values(&[queue]);
        for reason in IGNORED_REASONS {
            self.ignored.with_label_values(&[queue, reason]);
        }
        self.receiving.with_label_values(&[queue]).set(0);
        self.delay.with_label_values::<&str>(&[]);
    }

    pub(super) fn received(&self, queue: &str, n: usize, oldest_age: f64) {
        self.received.with_label_values(&[queue]).inc_by(n as u64);
        self.receiving.with_label_values(&[queue]).set(1);
        self.oldest.with_label_values(&[queue]).set(oldest_age);
    }

    pub(super) fn matched(&self, queue: &str) {
        self.matched.with_label_values(&[queue]).inc();
    }

    pub(super) fn ignored(&self, queue: &str, reason: &'static str) {
        self.ignored.with_label_values(&[queue, reason]).inc();
    }

    pub(super) fn malformed(&self, queue: &str) {
        self.malformed.with_label_values(&[queue]).inc();
    }

    pub(super) fn failed(&self, queue: &str, operation: &str, reason: &'static str) {
        self.errors
            .with_label_values(&[queue, operation, reason])
            .inc();
        if operation == crate::metrics::RECEIVE_OPERATION {
            self.receiving.with_label_values(&[queue]).set(0);
        }
    }

    pub(super) fn delay(&self, seconds: f64) {
        self.delay
            .with_label_values::<&str>(&[])
            .observe(seconds.max(0.0));
    }
}
