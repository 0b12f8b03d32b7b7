//! Builds the pipeline from a validated config and drives it:
//! credentials → source → transform → sinks, one polling task per secret.
//!
//! This is the wiring `main.rs` calls; it lives in the library so that tests can run
//! the whole daemon in-process.

mod roles;

pub use roles::Roles;

use crate::config::{Config, CredentialOutput, FileFormat, SecretConfig, Target};
use crate::metrics::{Metrics, Outcome};
use crate::shutdown::Signal;
use crate::sink::file::{FileSink, FileSinkError, WriteOutcome};
use crate::sink::formats::Format;
use crate::sink::single_file::{SingleFile, SingleFileError};
use crate::source::{Budget, Fetched, SecretsManager, SourceError};
use crate::transform::{self, Rendered, TransformError};
use aws_config::SdkConfig;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long in-flight work may take to finish after the drain signal; the process must
/// be gone within 5 s of SIGTERM.
pub const DRAIN_GRACE: Duration = Duration::from_secs(4);
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Fetches in flight at once, in both modes: thousands of secrets starting together must
/// not open thousands of connections (and time out on a slow endpoint) at once.
const MAX_CONCURRENT_FETCHES: usize = 16;

/// The SDK sets no read timeout by default: a hung endpoint would stall a secret's
/// polling loop (or a role's refresh) forever. These bound every AWS call.
fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

/// One HTTPS client for every SDK client. Without it each client (two per role) builds
/// its own connector, TLS configuration and connection pool: about 300 KiB per role.
/// Configured as the SDK's own default (rustls with aws-lc, proxy from the environment).
fn shared_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("region: no region is configured: set `region` in the config file or the AWS_REGION environment variable")]
    NoRegion,
    #[error("secret '{secret}' refers to role '{role}', which is not defined")]
    UnknownRole { secret: String, role: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("secret '{secret}': {source}")]
    Transform {
        secret: String,
        #[source]
        source: TransformError,
    },
    #[error("secret '{secret}': {source}")]
    Sink {
        secret: String,
        #[source]
        source: FileSinkError,
    },
    #[error("secret '{secret}': {source}")]
    SingleFile {
        secret: String,
        #[source]
        source: SingleFileError,
    },
    #[error("secret '{secret}': the file writer task failed: {reason}")]
    WriterPanicked { secret: String, reason: String },
}

impl SyncError {
    /// Bounded label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Source(e) => e.kind(),
            Self::Transform { source, .. } => source.kind(),
            Self::Sink { source, .. } => source.kind(),
            Self::SingleFile { source, .. } => source.kind(),
            Self::WriterPanicked { .. } => "internal",
        }
    }
}

/// `/readyz` turns ready once every secret has synced at least once; it turns unready
/// again while a role's credential has lapsed (its secrets can no longer be refreshed),
/// while a secret's last sync is older than `maxStaleness`, and when the drain starts so
/// that no new traffic is sent to a pod on its way out.
pub struct Readiness {
    total: usize,
    max_staleness: Option<Duration>,
    /// When each secret last synced; a secret is absent until its first sync.
    last_synced: std::sync::Mutex<BTreeMap<String, Instant>>,
    draining: AtomicBool,
    /// The first role whose credential has lapsed, if any.
    lapsed: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

impl Readiness {
    pub(crate) fn new(
        total: usize,
        max_staleness: Option<Duration>,
        lapsed: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            total,
            max_staleness,
            last_synced: std::sync::Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
            lapsed: Box::new(lapsed),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.status().is_ok()
    }

    /// `Err` says why not ready.
    pub fn status(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Acquire) {
            return Err("shutting down".to_owned());
        }
        let pending = self.pending();
        if pending > 0 {
            return Err(format!("{pending} secret(s) not synced yet"));
        }
        if let Some(role) = (self.lapsed)() {
            return Err(format!(
                "the credential of role '{role}' has expired and could not be refreshed"
            ));
        }
        if let Some(max) = self.max_staleness {
            let synced = self.synced_map();
            if let Some((name, at)) = synced.iter().find(|(_, at)| at.elapsed() > max) {
                return Err(format!(
                    "secret '{name}' last synced {}s ago, more than maxStaleness ({})",
                    at.elapsed().as_secs(),
                    humantime::format_duration(max)
                ));
            }
        }
        Ok(())
    }

    pub fn pending(&self) -> usize {
        self.total.saturating_sub(self.synced_map().len())
    }

    /// Whether `secret` has synced at least once.
    pub fn has_synced(&self, secret: &str) -> bool {
        self.synced_map().contains_key(secret)
    }

    pub(crate) fn synced(&self, secret: &str) {
        self.synced_map().insert(secret.to_owned(), Instant::now());
    }

    fn synced_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Instant>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.last_synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Asks secrets to sync now instead of at their next interval (SIGHUP, `POST /refresh`).
#[derive(Clone, Default)]
pub struct RefreshHandle {
    secrets: Arc<BTreeMap<String, Arc<tokio::sync::Notify>>>,
}

impl RefreshHandle {
    pub fn all(&self) {
        for notify in self.secrets.values() {
            notify.notify_one();
        }
    }

    /// `false` when no secret has that name.
    pub fn one(&self, secret: &str) -> bool {
        match self.secrets.get(secret) {
            Some(notify) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Everything one secret needs; owned by its polling task.
struct SecretJob {
    config: SecretConfig,
    source: SecretsManager,
    sinks: Vec<Sink>,
    /// Version last written to every sink; a poll that sees it again writes nothing.
    last_version: Mutex<Option<String>>,
    /// Wakes the polling loop for an early sync; a permit is kept if it is busy.
    refresh: Arc<tokio::sync::Notify>,
    /// Wakes the secret's notifier after its files changed.
    changed: crate::notify::Changed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    Written,
    Unchanged,
}

pub struct App {
    jobs: Vec<Arc<SecretJob>>,
    fetch_permits: Arc<tokio::sync::Semaphore>,
    roles: Roles,
    credential_outputs: Vec<CredentialOutput>,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl App {
    /// Builds clients and sinks; makes no network call (credentials are obtained on first use).
    pub fn build(config: &Config, base: &SdkConfig, metrics: Metrics) -> Result<Self, BuildError> {
        let region = config
            .region
            .clone()
            .or_else(|| base.region().map(|r| r.to_string()))
            .ok_or(BuildError::NoRegion)?;
        let mut base = base
            .to_builder()
            .region(aws_config::Region::new(region.clone()))
            .timeout_config(timeouts())
            .build();
        if base.http_client().is_none() {
            base = base.to_builder().http_client(shared_https_client()).build();
        }

        let roles = Roles::build(config, &base, &metrics);
        // One budget per (account, region): AWS quotas are per account and region.
        let mut budgets: BTreeMap<(String, String), Arc<Budget>> = BTreeMap::new();
        let mut budget_for = |account: &str, region: &str| {
            budgets
                .entry((account.to_owned(), region.to_owned()))
                .or_insert_with(|| Arc::new(Budget::new(config.api_rate_limit)))
                .clone()
        };
        let mut sources = std::collections::BTreeMap::new();
        for (name, role) in &config.roles {
            let Some(session) = roles.get(name) else {
                continue;
            };
            let role_region = role.region.clone().unwrap_or_else(|| region.clone());
            let sm_config = aws_sdk_secretsmanager::config::Builder::from(&base)
                .interceptor(crate::aws::CountCalls(metrics.clone()))
                .region(aws_config::Region::new(role_region.clone()))
                .credentials_provider(session.clone())
                // The session is the cache; an SDK cache on top would keep serving the
                // previous credentials after each refresh.
                .identity_cache(aws_sdk_secretsmanager::config::IdentityCache::no_cache())
                .build();
            let account = role.role_arn.split(':').nth(4).unwrap_or_default();
            let budget = budget_for(account, &role_region);
            let source = SecretsManager::new(
                aws_sdk_secretsmanager::Client::from_conf(sm_config),
                role_region,
                Some(session.clone()),
                role.role_arn.clone(),
                budget,
            );
            sources.insert(name.clone(), source);
        }
        let base_source = SecretsManager::new(
            aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(&base)
                    .interceptor(crate::aws::CountCalls(metrics.clone()))
                    .build(),
            ),
            region.clone(),
            None,
            "the base identity (the pod's own IAM role or credentials)".to_owned(),
            budget_for("base", &region),
        );

        let mut jobs = Vec::new();
        for secret in &config.secrets {
            let source = match &secret.role {
                None => base_source.clone(),
                Some(role) => sources
                    .get(role)
                    .ok_or_else(|| BuildError::UnknownRole {
                        secret: secret.name.clone(),
                        role: role.clone(),
                    })?
                    .clone(),
            };
            let sinks = secret.targets.iter().map(Sink::from_target).collect();
            metrics.register_secret(&secret.name);
            jobs.push(Arc::new(SecretJob {
                config: secret.clone(),
                source,
                sinks,
                last_version: Mutex::new(None),
                refresh: Arc::new(tokio::sync::Notify::new()),
                changed: crate::notify::Changed::default(),
            }));
        }
        let lapsed = roles.clone();
        let readiness = Arc::new(Readiness::new(
            jobs.len(),
            config.max_staleness,
            move || lapsed.lapsed().map(str::to_owned),
        ));
        Ok(Self {
            jobs,
            fetch_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES)),
            roles,
            credential_outputs: config.credential_outputs.clone(),
            metrics,
            readiness,
        })
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    pub fn refresh_handle(&self) -> RefreshHandle {
        RefreshHandle {
            secrets: Arc::new(
                self.jobs
                    .iter()
                    .map(|job| (job.config.name.clone(), job.refresh.clone()))
                    .collect(),
            ),
        }
    }

    /// The roles' current credentials, for the credentials endpoint.
    pub fn roles(&self) -> Arc<Roles> {
        Arc::new(self.roles.clone())
    }

    /// Syncs every secret once; returns the failures (empty when all succeeded).
    pub async fn run_once(&self) -> Vec<SyncError> {
        let mut set = JoinSet::new();
        for job in &self.jobs {
            let job = job.clone();
            let ctx = self.ctx();
            set.spawn(async move {
                let started = Instant::now();
                let fetched = ctx.fetch(&job).await;
                ctx.finish(&job, fetched, started).await.err()
            });
        }
        let mut failures = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Some(err)) => failures.push(err),
                Ok(None) => {}
                Err(e) => failures.push(SyncError::WriterPanicked {
                    secret: "(unknown)".into(),
                    reason: e.to_string(),
                }),
            }
        }
        failures
    }

    /// Runs until `shutdown` fires, then lets in-flight writes finish (up to
    /// [`DRAIN_GRACE`]) and returns.
    pub async fn run(self, shutdown: Signal) {
        let mut tasks = JoinSet::new();
        for session in self.roles.distinct() {
            let span = tracing::info_span!("refresh", role = %session.role());
            tasks.spawn(tracing::Instrument::instrument(
                session.clone().run_refresher(shutdown.clone()),
                span,
            ));
        }
        for output in &self.credential_outputs {
            let span = tracing::info_span!("credentials_file", role = %output.role);
            tasks.spawn(tracing::Instrument::instrument(
                roles::write_credentials_file(self.roles.clone(), output.clone(), shutdown.clone()),
                span,
            ));
        }
        for job in self.jobs.iter().filter(|j| !j.config.on_change.is_empty()) {
            let span = tracing::info_span!("notify", secret = %job.config.name);
            tasks.spawn(tracing::Instrument::instrument(
                crate::notify::run(
                    job.config.name.clone(),
                    job.config.on_change.clone(),
                    job.config.debounce,
                    job.changed.clone(),
                    self.metrics.clone(),
                    shutdown.clone(),
                ),
                span,
            ));
        }
        for job in &self.jobs {
            let span = tracing::info_span!("poll", secret = %job.config.name);
            tasks.spawn(tracing::Instrument::instrument(
                poll(job.clone(), self.ctx(), shutdown.clone()),
                span,
            ));
        }
        let mut drain = shutdown.clone();
        drain.wait().await;
        self.readiness.start_draining();
        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("tasks still busy after the drain grace period; stopping them");
            tasks.abort_all();
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
            fetch_permits: self.fetch_permits.clone(),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    metrics: Metrics,
    readiness: Arc<Readiness>,
    fetch_permits: Arc<tokio::sync::Semaphore>,
}

impl SecretJob {
    async fn fetch(&self) -> Result<Fetched, SourceError> {
        self.source.fetch(&self.config).await
    }

    /// Renders and writes a fetched value unless its version was already written.
    async fn apply(&self, fetched: Fetched) -> Result<SyncOutcome, SyncError> {
        let mut last = self.last_version.lock().await;
        if fetched.version_id.is_some() && *last == fetched.version_id {
            return Ok(SyncOutcome::Unchanged);
        }
        let name = &self.config.name;
        let rendered =
            transform::render(&fetched.payload).map_err(|source| SyncError::Transform {
                secret: name.clone(),
                source,
            })?;
        let mut outcome = SyncOutcome::Unchanged;
        for sink in &self.sinks {
            if write(sink, &rendered, name).await? == WriteOutcome::Written {
                outcome = SyncOutcome::Written;
            }
        }
        *last = fetched.version_id;
        Ok(outcome)
    }
}

/// File writes run on the blocking pool and are never cancelled: the drain waits for
/// them, so a shutdown cannot leave a half-swapped directory.
async fn write(sink: &Sink, rendered: &Rendered, secret: &str) -> Result<WriteOutcome, SyncError> {
    let sink = sink.clone();
    let rendered = rendered.clone();
    let written = tokio::task::spawn_blocking(move || match sink {
        Sink::Dir(dir) => dir.write(&rendered).map_err(SinkError::Dir),
        Sink::File(file) => file.write(&rendered).map_err(SinkError::File),
    })
    .await
    .map_err(|e| SyncError::WriterPanicked {
        secret: secret.to_owned(),
        reason: e.to_string(),
    })?;
    written.map_err(|e| match e {
        SinkError::Dir(source) => SyncError::Sink {
            secret: secret.to_owned(),
            source,
        },
        SinkError::File(source) => SyncError::SingleFile {
            secret: secret.to_owned(),
            source,
        },
    })
}

enum SinkError {
    Dir(FileSinkError),
    File(SingleFileError),
}

/// Where one secret is written.
#[derive(Clone)]
enum Sink {
    Dir(Arc<FileSink>),
    File(Arc<SingleFile>),
}

impl Sink {
    fn from_target(target: &Target) -> Self {
        match target {
            Target::File(f) => Sink::Dir(Arc::new(FileSink::new(f.dir.clone(), f.mode))),
            Target::SingleFile(f) => Sink::File(Arc::new(SingleFile::new(
                f.path.clone(),
                match f.format {
                    FileFormat::Raw => Format::Raw,
                    FileFormat::Json => Format::Json,
                    FileFormat::Env => Format::Env,
                    FileFormat::Properties => Format::Properties,
                },
                f.mode,
            ))),
        }
    }
}

impl Ctx {
    async fn fetch(&self, job: &SecretJob) -> Result<Fetched, SourceError> {
        // The semaphore is never closed, so acquiring only fails if that changes.
        let _permit = self.fetch_permits.acquire().await.ok();
        job.fetch().await
    }

    /// Applies a fetch result and records it in metrics, logs and readiness.
    async fn finish(
        &self,
        job: &SecretJob,
        fetched: Result<Fetched, SourceError>,
        started: Instant,
    ) -> Result<SyncOutcome, SyncError> {
        let name = &job.config.name;
        let version = fetched.as_ref().ok().and_then(|f| f.version_id.clone());
        let result = match fetched {
            Ok(fetched) => job.apply(fetched).await,
            Err(e) => Err(e.into()),
        };
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        self.metrics.sync_took(name, elapsed);
        match &result {
            Ok(outcome) => {
                // The first write of a run is the app's starting point, not a change.
                if *outcome == SyncOutcome::Written && self.readiness.has_synced(name) {
                    job.changed.changed();
                }
                self.metrics.secret_synced(name, Outcome::Success);
                self.metrics.secret_stale(name, false);
                self.readiness.synced(name);
                let version = version.as_deref().unwrap_or("-");
                self.metrics.secret_version(name, version);
                match outcome {
                    SyncOutcome::Written => {
                        tracing::info!(secret = %name, version, elapsed_ms, "secret written")
                    }
                    SyncOutcome::Unchanged => {
                        tracing::debug!(secret = %name, version, "secret unchanged")
                    }
                }
            }
            Err(err) => {
                self.metrics.secret_synced(name, Outcome::Failure);
                // Stale: the files still hold a value that could not be refreshed.
                self.metrics
                    .secret_stale(name, self.readiness.has_synced(name));
                tracing::warn!(secret = %name, reason = err.kind(), "sync failed; last written files kept: {err}");
            }
        }
        result
    }
}

async fn poll(job: Arc<SecretJob>, ctx: Ctx, mut shutdown: Signal) {
    let interval = job.config.refresh_interval;
    let mut backoff: Option<Box<dyn Iterator<Item = Duration> + Send>> = None;
    loop {
        // A fetch in flight is abandoned on shutdown (nothing has been written yet); a
        // write in flight is not (see `write`).
        let started = Instant::now();
        let fetched = tokio::select! {
            f = ctx.fetch(&job) => f,
            _ = shutdown.wait() => return,
        };
        let delay = match ctx.finish(&job, fetched, started).await {
            Ok(_) => {
                backoff = None;
                jittered(interval)
            }
            Err(_) => backoff
                .get_or_insert_with(|| Box::new(failure_delays(interval)))
                .next()
                .unwrap_or(interval),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = job.refresh.notified() => {
                tracing::debug!(secret = %job.config.name, "refresh requested");
            }
            _ = shutdown.wait() => return,
        }
    }
}

/// Up to 10% early, never late: secrets configured alike spread out over time, and a
/// change is still picked up within `refreshInterval`.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - fastrand::f64() * 0.1)
}

/// Exponential back-off with jitter after failures, capped at the refresh interval so a
/// failing secret is never polled less often than a healthy one.
pub fn failure_delays(interval: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY.min(interval))
        .with_max_delay(interval)
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |d| d.min(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_never_delays_past_the_interval() {
        let interval = Duration::from_secs(60);
        for _ in 0..1000 {
            let d = jittered(interval);
            assert!(d <= interval && d >= Duration::from_secs(54), "{d:?}");
        }
    }

    #[test]
    fn failure_backoff_grows_and_is_capped_at_the_interval() {
        let interval = Duration::from_secs(10);
        let delays: Vec<_> = failure_delays(interval).take(8).collect();
        assert!(
            delays[0] >= Duration::from_secs(1) && delays[0] <= Duration::from_secs(2),
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= interval), "{delays:?}");
        assert_eq!(delays[7], interval, "{delays:?}");
        let short: Vec<_> = failure_delays(Duration::from_millis(500)).take(3).collect();
        assert!(
            short.iter().all(|d| *d <= Duration::from_millis(500)),
            "{short:?}"
        );
    }

    #[test]
    fn readiness_needs_every_secret_and_drops_when_draining() {
        let r = Readiness::new(2, None, || None);
        assert!(!r.is_ready());
        r.synced("a");
        assert_eq!(r.pending(), 1);
        r.synced("a");
        assert_eq!(r.pending(), 1, "a repeated sync is not a second secret");
        r.synced("b");
        assert!(r.is_ready());
        r.start_draining();
        assert!(!r.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_drops_when_a_secret_is_older_than_max_staleness() {
        let r = Readiness::new(2, Some(Duration::from_secs(300)), || None);
        r.synced("a");
        r.synced("b");
        assert!(r.is_ready());
        tokio::time::sleep(Duration::from_secs(200)).await;
        r.synced("b");
        tokio::time::sleep(Duration::from_secs(101)).await;
        let why = r.status().unwrap_err();
        assert!(
            why.contains("secret 'a'") && why.contains("maxStaleness (5m)"),
            "{why}"
        );
        r.synced("a");
        assert!(r.is_ready());
    }

    #[test]
    fn refresh_handle_wakes_one_or_all() {
        let a = Arc::new(tokio::sync::Notify::new());
        let b = Arc::new(tokio::sync::Notify::new());
        let handle = RefreshHandle {
            secrets: Arc::new(BTreeMap::from([
                ("a".to_owned(), a.clone()),
                ("b".to_owned(), b.clone()),
            ])),
        };
        assert!(handle.one("a"));
        assert!(!handle.one("nope"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // The permit stored by `one` wakes the next wait at once.
            tokio::time::timeout(Duration::from_millis(100), a.notified())
                .await
                .unwrap();
            assert!(
                tokio::time::timeout(Duration::from_millis(50), b.notified())
                    .await
                    .is_err()
            );
            handle.all();
            tokio::time::timeout(Duration::from_millis(100), b.notified())
                .await
                .unwrap();
        });
    }

    #[test]
    fn readiness_drops_while_a_role_credential_has_lapsed() {
        let lapsed = Arc::new(AtomicBool::new(false));
        let flag = lapsed.clone();
        let r = Readiness::new(1, None, move || {
            flag.load(Ordering::Acquire).then(|| "shared".to_owned())
        });
        r.synced("a");
        assert!(r.is_ready());
        lapsed.store(true, Ordering::Release);
        let why = r.status().unwrap_err();
        assert!(
            why.contains("role 'shared'") && why.contains("expired"),
            "{why}"
        );
        lapsed.store(false, Ordering::Release);
        assert!(r.is_ready());
    }
}
