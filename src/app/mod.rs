//! Builds the pipeline from a validated config and drives it:
//! credentials → source → mapping → sinks, one polling task per group of secrets
//! (see `plan` for how secrets are grouped and `group` for how a group is polled).
//!
//! This is the wiring `main.rs` calls; it lives in the library so that tests can run
//! the whole daemon in-process.

pub mod check;
mod group;
mod job;
pub mod plan;
mod roles;
pub mod summary;
mod tenants;

pub use job::SyncOutcome;
pub use roles::Roles;

use crate::config::{Config, CredentialOutput, SecretConfig};
use crate::mapping::MappingError;
use crate::metrics::Metrics;
use crate::shutdown::Signal;
use crate::sink::file::FileSinkError;
use crate::sink::single_file::SingleFileError;
use crate::source::{Budget, SecretsManager, SourceError};
use aws_config::SdkConfig;
use group::Group;
use job::{Ctx, SecretJob};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long in-flight work may take to finish after the drain signal; the process must
/// be gone within 5 s of SIGTERM.
pub const DRAIN_GRACE: Duration = Duration::from_secs(4);
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Fetches in flight at once, in both modes: thousands of secrets starting together must
/// not open thousands of connections (and time out on a slow endpoint) at once.
pub(crate) const MAX_CONCURRENT_FETCHES: usize = 16;
/// Polls of groups running at once. A poll's future holds the AWS SDK's request state
/// (kilobytes); thousands of single-secret groups starting together must not all hold
/// one while they wait for a fetch permit.
const MAX_CONCURRENT_CYCLES: usize = 2 * MAX_CONCURRENT_FETCHES;

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
    #[error("secret '{secret}': {source}")]
    Mapping {
        secret: String,
        #[source]
        source: MappingError,
    },
    #[error(
        "secret '{secret}' has a kubernetesSecret target, but no Kubernetes client was set up"
    )]
    NoKube { secret: String },
    #[error(transparent)]
    Kube(#[from] crate::k8s::KubeSetupError),
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("secret '{secret}': {source}")]
    Mapping {
        secret: String,
        #[source]
        source: MappingError,
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
    #[error("secret '{secret}': {source}")]
    KubeSecret {
        secret: String,
        #[source]
        source: crate::sink::kube_secret::KubeSecretError,
    },
    #[error("secret '{secret}': the file writer task failed: {reason}")]
    WriterPanicked { secret: String, reason: String },
}

impl SyncError {
    /// The role, when the failure is that its credentials could not be had: one cause
    /// shared by every secret read with it, which `RoleSession` logs once per AssumeRole.
    pub fn credentials_role(&self) -> Option<&str> {
        match self {
            Self::Source(SourceError::Credentials { source, .. }) => Some(source.role()),
            _ => None,
        }
    }

    /// The configured name of the secret that failed.
    pub fn secret(&self) -> &str {
        match self {
            Self::Source(e) => e.secret(),
            Self::Mapping { secret, .. }
            | Self::Sink { secret, .. }
            | Self::SingleFile { secret, .. }
            | Self::KubeSecret { secret, .. }
            | Self::WriterPanicked { secret, .. } => secret,
        }
    }

    /// Bounded label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Source(e) => e.kind(),
            Self::Mapping { source, .. } => source.kind(),
            Self::Sink { source, .. } => source.kind(),
            Self::SingleFile { source, .. } => source.kind(),
            Self::KubeSecret { source, .. } => source.kind(),
            Self::WriterPanicked { .. } => "internal",
        }
    }
}

/// `/readyz` turns ready once every secret has synced at least once; it turns unready
/// again while a role's credential has lapsed (its secrets can no longer be refreshed),
/// while a secret's last sync is older than `maxStaleness`, and when the drain starts so
/// that no new traffic is sent to a pod on its way out.
pub struct Readiness {
    max_staleness: Option<Duration>,
    /// A follower under `--leader-elect`: it syncs nothing and is ready to take over.
    standby: AtomicBool,
    state: std::sync::Mutex<ReadinessState>,
    draining: AtomicBool,
    /// The first role whose credential has lapsed, if any.
    lapsed: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

#[derive(Default)]
struct ReadinessState {
    /// Every secret (and `find` entry) that must sync before the pod is ready.
    expected: BTreeSet<String>,
    /// When each expected secret last synced; absent until its first sync.
    last_synced: BTreeMap<String, Instant>,
}

impl Readiness {
    pub(crate) fn new(
        expected: impl IntoIterator<Item = String>,
        max_staleness: Option<Duration>,
        lapsed: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            max_staleness,
            state: std::sync::Mutex::new(ReadinessState {
                expected: expected.into_iter().collect(),
                last_synced: BTreeMap::new(),
            }),
            draining: AtomicBool::new(false),
            standby: AtomicBool::new(false),
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
        if self.standby.load(Ordering::Acquire) {
            return Ok(());
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
            let state = self.lock();
            let stale = state
                .last_synced
                .iter()
                .filter(|(name, _)| state.expected.contains(*name))
                .find(|(_, at)| at.elapsed() > max);
            if let Some((name, at)) = stale {
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
        let state = self.lock();
        state
            .expected
            .iter()
            .filter(|name| !state.last_synced.contains_key(*name))
            .count()
    }

    /// Whether `secret` has synced at least once.
    pub fn has_synced(&self, secret: &str) -> bool {
        self.lock().last_synced.contains_key(secret)
    }

    /// Also for secrets readiness does not wait for (tenants'), so that their failures are
    /// told apart from never having synced.
    pub(crate) fn synced(&self, secret: &str) {
        self.lock()
            .last_synced
            .insert(secret.to_owned(), Instant::now());
    }

    /// A secret found by discovery: the pod waits for it too.
    pub(crate) fn expect(&self, secret: &str) {
        self.lock().expected.insert(secret.to_owned());
    }

    /// A secret that is no longer synced (it stopped matching `find`).
    pub(crate) fn forget(&self, secret: &str) {
        let mut state = self.lock();
        state.expected.remove(secret);
        state.last_synced.remove(secret);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadinessState> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Release);
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
        // Secrets of one group share a Notify. Waking it once per secret would leave a
        // stored permit behind after the first wake-up, and so a second, needless poll.
        let mut woken: Vec<&Arc<tokio::sync::Notify>> = Vec::new();
        for notify in self.secrets.values() {
            if !woken.iter().any(|w| Arc::ptr_eq(w, notify)) {
                notify.notify_one();
                woken.push(notify);
            }
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

pub struct App {
    groups: Vec<Group>,
    /// Fills annotated Secrets under the `tenants` rules (controller mode).
    tenants: Option<tenants::TenantController>,
    /// Secrets with `onChange` actions (a `find` entry's members share its notifier).
    notifiers: Vec<(SecretConfig, crate::notify::Changed)>,
    fetch_permits: Arc<tokio::sync::Semaphore>,
    cycle_slots: Arc<tokio::sync::Semaphore>,
    roles: Roles,
    credential_outputs: Vec<CredentialOutput>,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl App {
    /// Builds clients and sinks; makes no network call (credentials are obtained on first use).
    pub fn build(config: &Config, base: &SdkConfig, metrics: Metrics) -> Result<Self, BuildError> {
        Self::build_with(config, base, metrics, None)
    }

    /// `kube` is needed when a secret has a `kubernetesSecret` target.
    pub fn build_with(
        config: &Config,
        base: &SdkConfig,
        metrics: Metrics,
        kube: Option<&crate::k8s::Kube>,
    ) -> Result<Self, BuildError> {
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
        let mut sources = Sources {
            config,
            base: &base,
            roles: &roles,
            metrics: &metrics,
            region: &region,
            budgets: BTreeMap::new(),
            clients: BTreeMap::new(),
        };
        let region_of = |secret: &SecretConfig| sources.region_of(secret);
        let planned = plan::plan(&config.secrets, region_of);

        let mut groups = Vec::new();
        let mut notifiers = Vec::new();
        let mut expected = Vec::new();
        for planned in planned {
            let mut members = Vec::new();
            for &i in &planned.members {
                let secret = &config.secrets[i];
                let source = sources.for_secret(secret, None)?;
                let failover = match &secret.failover_region {
                    Some(region) => Some(sources.for_secret(secret, Some(region))?),
                    None => None,
                };
                let changed = crate::notify::Changed::default();
                if !secret.on_change.is_empty() {
                    notifiers.push((secret.clone(), changed.clone()));
                }
                metrics.register_secret(&secret.name);
                expected.push(secret.name.clone());
                if planned.strategy == plan::Strategy::Find {
                    groups.push(Group::discovering(
                        secret.clone(),
                        source,
                        failover,
                        changed,
                    ));
                    continue;
                }
                let job = SecretJob::new(secret.clone(), source, failover, changed, kube)?;
                members.push(Arc::new(job));
            }
            if let Some(first) = members.first() {
                let source = first.source.clone();
                groups.push(Group::new(planned.strategy, planned.auto, members, source));
            }
        }
        for group in &groups {
            if group.strategy != plan::Strategy::Get {
                tracing::debug!(
                    strategy = group.strategy.as_str(),
                    secrets = group.members.len(),
                    "polling a group of secrets together"
                );
            }
        }
        let tenants = if config.tenants.is_empty() {
            None
        } else {
            let kube = kube.ok_or(BuildError::NoKube {
                secret: "tenants".to_owned(),
            })?;
            let mut role_sources = BTreeMap::new();
            for name in config.roles.keys() {
                let region = sources.region_of_role(Some(name));
                role_sources.insert(name.clone(), sources.client(Some(name), region, "tenants")?);
            }
            Some(tenants::TenantController::new(
                kube.clone(),
                config.tenants.clone(),
                role_sources,
            ))
        };
        let lapsed = roles.clone();
        let readiness = Arc::new(Readiness::new(expected, config.max_staleness, move || {
            lapsed.lapsed().map(str::to_owned)
        }));
        Ok(Self {
            groups,
            tenants,
            notifiers,
            fetch_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES)),
            cycle_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CYCLES)),
            roles,
            credential_outputs: config.credential_outputs.clone(),
            metrics,
            readiness,
        })
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    /// Wakes the group a secret (or `find` entry) belongs to: its whole group polls.
    pub fn refresh_handle(&self) -> RefreshHandle {
        let mut secrets = BTreeMap::new();
        for group in &self.groups {
            for job in &group.members {
                secrets.insert(job.config.name.clone(), group.refresh.clone());
            }
            if let Some(entry) = group.entry_name() {
                secrets.insert(entry.to_owned(), group.refresh.clone());
            }
        }
        RefreshHandle {
            secrets: Arc::new(secrets),
        }
    }

    /// Deletes the Secrets this instance wrote with `deletionPolicy: Delete` that the config
    /// no longer has (the leader does it once, at start). Only namespaces the config still
    /// writes to (and the daemon's own) are looked at.
    pub async fn delete_unconfigured_secrets(&self, kube: &crate::k8s::Kube) {
        let mut configured = BTreeSet::new();
        let mut namespaces: BTreeSet<String> = kube.namespace.iter().cloned().collect();
        for job in self.groups.iter().flat_map(|g| g.members.iter()) {
            for target in &job.config.targets {
                if let crate::config::Target::KubernetesSecret(t) = target {
                    let namespace = t.namespace.clone().or_else(|| kube.namespace.clone());
                    if let Some(namespace) = namespace {
                        namespaces.insert(namespace.clone());
                        configured.insert((namespace, t.name.clone()));
                    }
                }
            }
        }
        for namespace in namespaces {
            crate::k8s::delete_unconfigured(kube, &namespace, &configured).await;
        }
    }

    /// The roles' current credentials, for the credentials endpoint.
    pub fn roles(&self) -> Arc<Roles> {
        Arc::new(self.roles.clone())
    }

    /// Syncs every secret once; returns the failures (empty when all succeeded).
    pub async fn run_once(self) -> Vec<SyncError> {
        let mut set = JoinSet::new();
        let ctx = self.ctx();
        for mut group in self.groups {
            let ctx = ctx.clone();
            set.spawn(async move { cycle(&mut group, &ctx).await.failures });
        }
        let mut failures = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(errors) => failures.extend(errors),
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
        for (secret, changed) in &self.notifiers {
            let span = tracing::info_span!("notify", secret = %secret.name);
            tasks.spawn(tracing::Instrument::instrument(
                crate::notify::run(
                    secret.name.clone(),
                    secret.on_change.clone(),
                    secret.debounce,
                    changed.clone(),
                    self.metrics.clone(),
                    shutdown.clone(),
                ),
                span,
            ));
        }
        let ctx = self.ctx();
        if let Some(tenants) = self.tenants {
            let span = tracing::info_span!("tenants");
            tasks.spawn(tracing::Instrument::instrument(
                tenants.run(ctx.clone(), shutdown.clone()),
                span,
            ));
        }
        for group in self.groups {
            let span = match group.entry_name() {
                Some(entry) => tracing::info_span!("poll", secret = %entry),
                None if group.members.len() == 1 => {
                    tracing::info_span!("poll", secret = %group.members[0].config.name)
                }
                None => tracing::info_span!(
                    "poll",
                    strategy = group.strategy.as_str(),
                    secrets = group.members.len()
                ),
            };
            tasks.spawn(tracing::Instrument::instrument(
                poll(group, ctx.clone(), shutdown.clone()),
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
            cycle_slots: self.cycle_slots.clone(),
        }
    }
}

/// Secrets Manager clients, one per (identity, region), each with the budget of its
/// (account, region): AWS quotas are per account and region.
struct Sources<'a> {
    config: &'a Config,
    base: &'a SdkConfig,
    roles: &'a Roles,
    metrics: &'a Metrics,
    /// The default region.
    region: &'a str,
    budgets: BTreeMap<(String, String), Arc<Budget>>,
    clients: BTreeMap<(Option<String>, String), SecretsManager>,
}

impl Sources<'_> {
    fn region_of(&self, secret: &SecretConfig) -> String {
        self.region_of_role(secret.role.as_deref())
    }

    fn region_of_role(&self, role: Option<&str>) -> String {
        role.and_then(|role| self.config.roles.get(role))
            .and_then(|role| role.region.clone())
            .unwrap_or_else(|| self.region.to_owned())
    }

    /// The client `secret` reads with, in its own region or in `region`.
    fn for_secret(
        &mut self,
        secret: &SecretConfig,
        region: Option<&str>,
    ) -> Result<SecretsManager, BuildError> {
        let region = region.map_or_else(|| self.region_of(secret), str::to_owned);
        self.client(secret.role.as_deref(), region, &secret.name)
    }

    /// The client of `role` (`None`: the base identity) in `region`; `reader` names who
    /// asks, for the error when the role is not defined.
    fn client(
        &mut self,
        role: Option<&str>,
        region: String,
        reader: &str,
    ) -> Result<SecretsManager, BuildError> {
        let key = (role.map(str::to_owned), region.clone());
        if let Some(client) = self.clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(self.base)
            .interceptor(crate::aws::CountCalls(self.metrics.clone()))
            .region(aws_config::Region::new(region.clone()));
        let (session, principal, account) = match role {
            None => (
                None,
                "the base identity (the pod's own IAM role or credentials)".to_owned(),
                "base".to_owned(),
            ),
            Some(name) => {
                let unknown = || BuildError::UnknownRole {
                    secret: reader.to_owned(),
                    role: name.to_owned(),
                };
                let session = self.roles.get(name).ok_or_else(unknown)?;
                let role = self.config.roles.get(name).ok_or_else(unknown)?;
                builder = builder
                    .credentials_provider(session.clone())
                    // The session is the cache; an SDK cache on top would keep serving the
                    // previous credentials after each refresh.
                    .identity_cache(aws_sdk_secretsmanager::config::IdentityCache::no_cache());
                let account = role
                    .role_arn
                    .split(':')
                    .nth(4)
                    .unwrap_or_default()
                    .to_owned();
                (Some(session.clone()), role.role_arn.clone(), account)
            }
        };
        let limit = self.config.api_rate_limit;
        let budget = self
            .budgets
            .entry((account, region.clone()))
            .or_insert_with(|| Arc::new(Budget::new(limit)))
            .clone();
        let client = SecretsManager::new(
            aws_sdk_secretsmanager::Client::from_conf(builder.build()),
            region,
            session,
            principal,
            budget,
        );
        self.clients.insert(key, client.clone());
        Ok(client)
    }
}

/// One poll of `group`, in a bounded number of slots, its (large) future on the heap only
/// while it runs: an idle group's task stays small.
async fn cycle(group: &mut Group, ctx: &Ctx) -> group::Cycle {
    let _slot = ctx.cycle_slots.acquire().await.ok();
    Box::pin(group.cycle(ctx)).await
}

async fn poll(mut group: Group, ctx: Ctx, mut shutdown: Signal) {
    let interval = group.interval;
    let mut backoff: Option<Box<dyn Iterator<Item = Duration> + Send>> = None;
    loop {
        // A fetch in flight is abandoned on shutdown (nothing has been written yet); a
        // write in flight is not: it runs on the blocking pool, which the runtime waits for.
        let cycle = tokio::select! {
            c = cycle(&mut group, &ctx) => c,
            _ = shutdown.wait() => return,
        };
        let delay = if cycle.all_failed {
            backoff
                .get_or_insert_with(|| Box::new(failure_delays(interval)))
                .next()
                .unwrap_or(interval)
        } else {
            backoff = None;
            jittered(interval)
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = group.refresh.notified() => {
                tracing::debug!("refresh requested");
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
        let r = Readiness::new(["a".to_owned(), "b".to_owned()], None, || None);
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
        let r = Readiness::new(
            ["a".to_owned(), "b".to_owned()],
            Some(Duration::from_secs(300)),
            || None,
        );
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
        let r = Readiness::new(["a".to_owned()], None, move || {
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
