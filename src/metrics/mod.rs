//! Prometheus metrics. Label values are config names (bounded by the config file) or
//! fixed enums (`result`); never error text, secret ids from the wire, or values.

mod events;
mod per_secret;
mod polls;
mod push;

pub use events::IGNORED_REASONS;
pub use per_secret::SeriesPolicy;
pub use polls::PollProgress;
pub use push::WRITE_OPERATIONS;
/// The queue operation whose failure means no events arrive.
pub const RECEIVE_OPERATION: &str = "ReceiveMessage";

use per_secret::{PerSecret, Synced};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// Upper bounds, in seconds, of the duration histograms (AssumeRole, sync): 5 ms to 30 s.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Outcome label shared by every `_total` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

// === impl Outcome ===

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    credential_refresh_total: IntCounterVec,
    credential_refresh_errors_total: IntCounterVec,
    credential_expiry: GaugeVec,
    assume_role_duration: HistogramVec,
    credential_consecutive_failures: IntGaugeVec,
    /// sync_total, last_success, stale, version_info and region_info, and the aggregates
    /// over every secret (by state, behind, oldest success).
    per_secret: Arc<PerSecret>,
    /// One histogram for all secrets, by result: a per-secret one was 13 series a secret.
    sync_duration: HistogramVec,
    kube_requests_total: IntCounterVec,
    leader: prometheus::IntGauge,
    runtime_tasks: prometheus::IntGauge,
    aws_api_calls_total: IntCounterVec,
    aws_throttled_total: IntCounterVec,
    notify_total: IntCounterVec,
    pushes: push::PushMetrics,
    events: events::EventMetrics,
    polls: polls::PollMetrics,
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let credential_refresh_total = counter(
            r,
            "secret_ferry_credential_refresh_total",
            "AssumeRole calls made to obtain or refresh a role's credentials, by result.",
            &["role", "result"],
        )?;
        let credential_refresh_errors_total = counter(
            r,
            "secret_ferry_credential_refresh_errors_total",
            "Failed AssumeRole calls, by role and reason (a fixed set such as trust_policy_denied, expired_token, throttled, network).",
            &["role", "reason"],
        )?;
        let duration = HistogramOpts::new(
            "secret_ferry_assume_role_duration_seconds",
            "Time taken by AssumeRole calls, successful or not.",
        )
        .buckets(DURATION_BUCKETS.to_vec());
        let assume_role_duration = registered(r, HistogramVec::new(duration, &["role"])?)?;
        let failures = Opts::new(
            "secret_ferry_credential_consecutive_failures",
            "AssumeRole failures since the last success, per role.",
        );
        let credential_consecutive_failures =
            registered(r, IntGaugeVec::new(failures, &["role"])?)?;
        let expiry = Opts::new(
            "secret_ferry_credential_expiry_timestamp_seconds",
            "Unix time at which the role credentials in use expire.",
        );
        let credential_expiry = registered(r, GaugeVec::new(expiry, &["role"])?)?;
        let aws_api_calls_total = counter(
            r,
            "secret_ferry_aws_api_calls_total",
            "HTTP requests sent to AWS (retries included: each is billed), by service, operation and result.",
            &["service", "operation", "result"],
        )?;
        let aws_throttled_total = counter(
            r,
            "secret_ferry_aws_throttled_total",
            "Requests AWS refused as throttled (HTTP 429 or a throttling error code).",
            &["service", "operation"],
        )?;
        let notify_total = counter(
            r,
            "secret_ferry_notify_total",
            "Notifications sent to the app after a secret changed, by kind (signal, http, touch) and result.",
            &["secret", "kind", "result"],
        )?;
        let kube_requests_total = counter(
            r,
            "secret_ferry_kube_requests_total",
            "Requests made to the Kubernetes API, by verb and result (success, not_found, conflict, forbidden, invalid, throttled, server_error, timeout, error).",
            &["verb", "result"],
        )?;
        let pushes = push::PushMetrics::new(r)?;
        let events = events::EventMetrics::new(r)?;
        let polls = polls::PollMetrics::new(r)?;
        let (leader, runtime_tasks) = process_metrics(r)?;
        let per_secret = Arc::new(PerSecret::new()?);
        registry.register(Box::new(SharedCollector(per_secret.clone())))?;
        let sync_duration = HistogramOpts::new(
            "secret_ferry_sync_duration_seconds",
            "Time taken by one sync of a secret (fetch, render and write), over all secrets, by result.",
        )
        .buckets(DURATION_BUCKETS.to_vec());
        let sync_duration = registered(r, HistogramVec::new(sync_duration, &["result"])?)?;
        for outcome in [Outcome::Success, Outcome::Failure] {
            sync_duration.with_label_values(&[outcome.as_str()]);
        }
        Ok(Self {
            registry,
            per_secret,
            sync_duration,
            kube_requests_total,
            leader,
            runtime_tasks,
            credential_refresh_total,
            credential_refresh_errors_total,
            credential_expiry,
            assume_role_duration,
            credential_consecutive_failures,
            aws_api_calls_total,
            aws_throttled_total,
            notify_total,
            pushes,
            events,
            polls,
        })
    }

    /// Creates every series of a role at zero, so that `rate()` and absence alerts work
    /// from the first scrape instead of from the first failure.
    pub fn register_role(&self, role: &str) {
        for outcome in [Outcome::Success, Outcome::Failure] {
            self.credential_refresh_total
                .with_label_values(&[role, outcome.as_str()]);
        }
        self.credential_consecutive_failures
            .with_label_values(&[role])
            .set(0);
    }

    /// Which secrets have their own series (config `metrics.perSecretSeries`).
    pub fn set_series_policy(&self, policy: SeriesPolicy) {
        self.per_secret.set_policy(policy);
    }

    /// Counts the secret (pending) from now on; `interval` tells when it is behind.
    pub fn register_secret(&self, secret: impl Into<Arc<str>>, interval: Duration) {
        self.per_secret
            .register(secret, interval, unix_seconds(SystemTime::now()));
    }

    /// Packs the per-secret records once many were registered one by one (after the build,
    /// after a discovery that added secrets).
    pub fn compact_secrets(&self) {
        self.per_secret.compact();
    }

    /// One successful sync: the secret is synced at `version` from `region`.
    pub fn sync_succeeded(
        &self,
        secret: &str,
        took: Duration,
        version: Option<&str>,
        region: Option<&str>,
    ) {
        self.record_sync(secret, took, Synced::Success { version, region });
    }

    /// One failed sync: the secret is stale if it synced before (its targets hold that
    /// value), else failing.
    pub fn sync_failed(&self, secret: &str, took: Duration) {
        self.record_sync(secret, took, Synced::Failure);
    }

    fn record_sync(&self, secret: &str, took: Duration, outcome: Synced<'_>) {
        let result = match outcome {
            Synced::Success { .. } => Outcome::Success,
            Synced::Failure => Outcome::Failure,
        };
        self.sync_duration
            .with_label_values(&[result.as_str()])
            .observe(took.as_secs_f64());
        self.per_secret
            .synced(secret, outcome, unix_seconds(SystemTime::now()));
    }

    /// Removes every series of a secret that is no longer synced, so that dashboards and
    /// alerts do not keep reporting a secret that has gone.
    pub fn forget_secret(&self, secret: &str) {
        self.per_secret.forget(secret);
    }

    /// What the stall watchdog saw at its last look.
    pub fn poll_progress(&self, progress: PollProgress) {
        self.polls.set(progress);
    }

    /// Creates every series of a change events queue at zero.
    pub fn register_queue(&self, queue: &str) {
        self.events.register(queue);
    }

    /// A receive returned `n` messages, the oldest sent `oldest_age` seconds ago.
    pub fn events_received(&self, queue: &str, n: usize, oldest_age: f64) {
        self.events.received(queue, n, oldest_age);
    }

    /// A change event that concerns a configured secret.
    pub fn event_matched(&self, queue: &str) {
        self.events.matched(queue);
    }

    /// A change event deleted without a sync; `reason` is one of [`IGNORED_REASONS`].
    pub fn event_ignored(&self, queue: &str, reason: &'static str) {
        self.events.ignored(queue, reason);
    }

    /// A message that is not an EventBridge event.
    pub fn event_malformed(&self, queue: &str) {
        self.events.malformed(queue);
    }

    /// A failed call to the queue; `operation` [`RECEIVE_OPERATION`] marks it not receiving.
    pub fn queue_failed(&self, queue: &str, operation: &str, reason: &'static str) {
        self.events.failed(queue, operation, reason);
    }

    /// A change event's value written, `seconds` after the event.
    pub fn event_delay(&self, seconds: f64) {
        self.events.delay(seconds);
    }

    /// Creates every series of a push at zero.
    pub fn register_push(&self, push: &str) {
        self.pushes.register(push);
    }

    /// Drops every series of a push that no longer exists.
    pub fn forget_push(&self, push: &str) {
        self.pushes.forget(push);
    }

    /// One push attempt: `failure` is the error's `kind()`, `None` on success.
    pub fn push_attempted(&self, push: &str, failure: Option<&'static str>) {
        self.pushes
            .attempted(push, failure, unix_seconds(SystemTime::now()));
    }

    /// One write to Secrets Manager; `operation` is one of [`WRITE_OPERATIONS`].
    pub fn push_wrote(&self, push: &str, operation: &'static str) {
        self.pushes.wrote(push, operation);
    }

    pub fn kube_request(&self, verb: &str, result: &str) {
        self.kube_requests_total
            .with_label_values(&[verb, result])
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn notified(&self, secret: &str, kind: &str, outcome: Outcome) {
        self.notify_total
            .with_label_values(&[secret, kind, outcome.as_str()])
            .inc();
    }

    pub fn aws_throttled(&self, service: &str, operation: &str) {
        self.aws_throttled_total
            .with_label_values(&[service, operation])
            .inc();
    }

    pub fn aws_api_call(&self, service: &str, operation: &str, outcome: Outcome) {
        self.aws_api_calls_total
            .with_label_values(&[service, operation, outcome.as_str()])
            .inc();
    }

    pub fn credential_refreshed(&self, role: &str, outcome: Outcome) {
        self.credential_refresh_total
            .with_label_values(&[role, outcome.as_str()])
            .inc();
    }

    pub fn credential_refresh_failed(&self, role: &str, reason: &'static str) {
        self.credential_refresh_errors_total
            .with_label_values(&[role, reason])
            .inc();
    }

    pub fn assume_role_took(&self, role: &str, took: Duration) {
        self.assume_role_duration
            .with_label_values(&[role])
            .observe(took.as_secs_f64());
    }

    pub fn credential_failures_in_a_row(&self, role: &str, failures: u64) {
        self.credential_consecutive_failures
            .with_label_values(&[role])
            .set(i64::try_from(failures).unwrap_or(i64::MAX));
    }

    pub fn credential_expires_at(&self, role: &str, expiry: SystemTime) {
        self.credential_expiry
            .with_label_values(&[role])
            .set(unix_seconds(expiry));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        // Read at scrape time: a task count is only meaningful as a sample, and
        // sampling costs nothing between scrapes.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let alive = handle.metrics().num_alive_tasks();
            self.runtime_tasks
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Lets the registry own a handle while `Metrics` keeps updating the same collector.
struct SharedCollector(Arc<PerSecret>);

// === impl SharedCollector ===

impl prometheus::core::Collector for SharedCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

/// The states counted by `secret_ferry_secrets{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretState {
    Synced,
    Stale,
    Failing,
    Pending,
}

// === impl SecretState ===

impl SecretState {
    pub const ALL: [SecretState; 4] = [Self::Synced, Self::Stale, Self::Failing, Self::Pending];

    /// The state's place in [`Self::ALL`].
    fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Stale => "stale",
            Self::Failing => "failing",
            Self::Pending => "pending",
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A counter family, registered.
fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

/// `metric`, once `registry` holds it too.
fn registered<M>(registry: &Registry, metric: M) -> Result<M, prometheus::Error>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The process-wide metrics: leadership, runtime tasks and the build info.
fn process_metrics(
    registry: &Registry,
) -> Result<(prometheus::IntGauge, prometheus::IntGauge), prometheus::Error> {
    let leader = registered(
        registry,
        prometheus::IntGauge::new(
            "secret_ferry_leader",
            "1 while this replica holds the leader Lease (--leader-elect) or runs without leader election; 0 while it stands by.",
        )?,
    )?;
    let runtime_tasks = registered(
        registry,
        prometheus::IntGauge::new(
            "secret_ferry_runtime_tasks",
            "Tasks alive in the daemon's async runtime at scrape time; flat in steady state, so growth means a leak.",
        )?,
    )?;
    let build_info = registered(
        registry,
        IntGaugeVec::new(
            Opts::new(
                "secret_ferry_build_info",
                "Always 1; the label carries the version of the running binary.",
            ),
            &["version"],
        )?,
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    Ok((leader, runtime_tasks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_exist_from_the_start_and_count() {
        let m = Metrics::new().unwrap();
        m.register_role("shared");
        m.register_secret("db", Duration::from_secs(60));
        let text = m.render().unwrap();
        assert!(text.contains(
            r#"secret_ferry_credential_refresh_total{result="failure",role="shared"} 0"#
        ));
        assert!(text.contains(r#"secret_ferry_secret_sync_total{result="success",secret="db"} 0"#));
        assert!(text.contains(r#"secret_ferry_sync_duration_seconds_count{result="failure"} 0"#));
        m.sync_succeeded(
            "db",
            Duration::from_millis(3),
            Some("v1"),
            Some("us-east-1"),
        );
        m.sync_succeeded(
            "db",
            Duration::from_millis(3),
            Some("v2"),
            Some("us-east-1"),
        );
        m.credential_refreshed("shared", Outcome::Failure);
        let text = m.render().unwrap();
        assert!(text.contains(r#"secret_ferry_secret_sync_total{result="success",secret="db"} 2"#));
        assert!(text.contains(
            r#"secret_ferry_credential_refresh_total{result="failure",role="shared"} 1"#
        ));
        assert!(text.contains("secret_ferry_secret_last_success_timestamp_seconds{secret=\"db\"}"));
        assert!(text.contains(r#"secret_ferry_secret_version_info{secret="db",version_id="v2"} 1"#));
        assert!(
            !text.contains(r#"version_id="v1""#),
            "the old version's series must go: {text}"
        );
        assert!(text.contains(r#"secret_ferry_secret_stale{secret="db"} 0"#));
        assert!(text.contains(r#"secret_ferry_sync_duration_seconds_count{result="success"} 2"#));
        assert!(
            !text.contains(r#"secret_ferry_sync_duration_seconds_count{secret"#),
            "no per-secret histogram"
        );
    }

    #[test]
    fn states_build_info_and_forgetting_a_secret() {
        let m = Metrics::new().unwrap();
        let state = |m: &Metrics, s: &str| {
            let text = m.render().unwrap();
            let series = format!("secret_ferry_secrets{{state=\"{s}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series).map(|v| v.parse::<i64>().unwrap()))
                .unwrap()
        };
        assert_eq!(state(&m, "pending"), 0);
        m.register_secret("a", Duration::from_secs(60));
        m.register_secret("b", Duration::from_secs(60));
        assert_eq!(state(&m, "pending"), 2);
        let took = Duration::from_millis(5);
        m.sync_succeeded("a", took, Some("v1"), Some("us-east-1"));
        m.sync_failed("b", took);
        m.sync_failed("a", took);
        m.sync_failed("a", took);
        assert_eq!(
            (
                state(&m, "pending"),
                state(&m, "synced"),
                state(&m, "stale"),
                state(&m, "failing")
            ),
            (0, 0, 1, 1)
        );
        m.forget_secret("a");
        let text = m.render().unwrap();
        assert!(
            !text.contains(r#"secret="a""#),
            "every series of a forgotten secret goes: {text}"
        );
        assert_eq!(state(&m, "stale"), 0);
        assert!(text.contains(&format!(
            "secret_ferry_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
