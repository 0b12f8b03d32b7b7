//! Role credentials: one cached credential per distinct role session, shared by all the
//! secrets (and chained roles) that use it, refreshed ahead of expiry, and kept while still
//! valid when a refresh fails.

mod base;
mod role_credentials;
pub mod roles;
mod sts;

pub use base::{base_sdk_config, FileCredentials};
pub use role_credentials::{CredentialSource, RoleCredentials};
pub use roles::Roles;
pub use sts::StsAssumer;

use crate::metrics::{Metrics, Outcome};
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_credential_types::Credentials;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialsError {
    #[error("role '{role}': cannot read the ExternalId from externalIdFile {path}: {reason}")]
    ExternalIdFile {
        role: String,
        path: String,
        reason: String,
    },
    #[error("role '{role}': the environment variable {var} named by externalIdEnv is not set (or not UTF-8)")]
    ExternalIdEnv { role: String, var: String },
    #[error("role '{role}': the ExternalId read from {origin} is invalid: {reason}")]
    ExternalIdInvalid {
        role: String,
        origin: String,
        reason: &'static str,
    },
    #[error("role '{role}': AssumeRole of {role_arn} was denied ({detail}). {hint}")]
    Denied {
        role: String,
        role_arn: String,
        detail: String,
        hint: String,
    },
    #[error("role '{role}': AssumeRole of {role_arn} failed: {info}{hint}")]
    Aws {
        role: String,
        role_arn: String,
        info: crate::aws::ErrorInfo,
        hint: &'static str,
    },
    #[error("role '{role}': AssumeRole of {role_arn} returned no credentials")]
    Empty { role: String, role_arn: String },
}

// === impl CredentialsError ===

impl CredentialsError {
    /// Bounded label for metrics (`reason`) and structured logs.
    pub fn kind(&self) -> &'static str {
        use crate::aws::Class;
        match self {
            Self::ExternalIdFile { .. }
            | Self::ExternalIdEnv { .. }
            | Self::ExternalIdInvalid { .. } => "external_id",
            Self::Denied { .. } => "trust_policy_denied",
            Self::Aws { info, .. } => match info.class {
                Class::AccessDenied => "trust_policy_denied",
                Class::InvalidCredentials => "invalid_client_token",
                Class::ExpiredToken => "expired_token",
                Class::RegionDisabled => "region_disabled",
                Class::MalformedPolicy => "malformed_policy",
                Class::InvalidRequest => "invalid_request",
                Class::Throttled => "throttled",
                Class::Network | Class::Timeout => "network",
                Class::Server => "server",
                Class::NotFound | Class::Kms | Class::Other => "other",
            },
            Self::Empty { .. } => "other",
        }
    }

    /// The role whose credentials failed.
    pub fn role(&self) -> &str {
        match self {
            Self::ExternalIdFile { role, .. }
            | Self::ExternalIdEnv { role, .. }
            | Self::ExternalIdInvalid { role, .. }
            | Self::Denied { role, .. }
            | Self::Aws { role, .. }
            | Self::Empty { role, .. } => role,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Aws { info, .. } => info.class.is_transient(),
            Self::Empty { .. } => true,
            _ => false,
        }
    }
}

/// Credentials as issued, with their lifetime measured on the monotonic clock at receipt
/// so that scheduling is immune to wall-clock jumps (and testable with paused time).
#[derive(Clone, Debug)]
pub struct Issued {
    pub credentials: Credentials,
    pub expires_at: SystemTime,
    pub valid_for: Duration,
}

/// The one call a role session needs from STS; a trait so the schedule can be tested
/// without I/O.
pub trait AssumeRole: Send + Sync + 'static {
    fn assume(&self) -> impl Future<Output = Result<Issued, CredentialsError>> + Send;
}

/// How long after receipt to refresh a credential issued for `valid_for`: `refresh_before`
/// ahead of expiry, moved by up to ±10 % of the shorter of that wait and `refresh_before`
/// (`unit` in `0.0..=1.0` picks where), so that daemons started together spread their STS
/// calls yet never refresh after expiry. A credential issued for no longer than
/// `refresh_before` (a capped chained session, a skewed clock) is refreshed half-way
/// through its life instead of in a hot loop.
pub fn refresh_delay(valid_for: Duration, refresh_before: Duration, unit: f64) -> Duration {
    let wait = if valid_for > refresh_before {
        valid_for - refresh_before
    } else {
        valid_for / 2
    };
    let spread = wait.min(refresh_before).mul_f64(0.1);
    (wait - spread) + (spread * 2).mul_f64(unit.clamp(0.0, 1.0))
}

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Cached {
    issued: Issued,
    received: Instant,
    /// Fixed at receipt, jitter included, so that every caller agrees on when it is due.
    refresh_at: Instant,
}

// === impl Cached ===

impl Cached {
    fn remaining(&self, now: Instant) -> Duration {
        (self.received + self.issued.valid_for).saturating_duration_since(now)
    }
}

struct Flight {
    last_error: Option<CredentialsError>,
    consecutive_failures: u64,
}

struct Inner<A> {
    role: String,
    refresh_before: Duration,
    assumer: A,
    metrics: Metrics,
    current: watch::Sender<Option<Cached>>,
    flight: Mutex<Flight>,
    attempts: AtomicU64,
}

/// A role's credentials. Cheap to clone; every clone shares one cache.
pub struct RoleSession<A> {
    inner: Arc<Inner<A>>,
}

// === impl RoleSession ===

impl<A> Clone for RoleSession<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<A> fmt::Debug for RoleSession<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleSession")
            .field("role", &self.inner.role)
            .finish_non_exhaustive()
    }
}

impl<A: AssumeRole> RoleSession<A> {
    pub fn new(
        role: impl Into<String>,
        refresh_before: Duration,
        assumer: A,
        metrics: Metrics,
    ) -> Self {
        let role = role.into();
        metrics.register_role(&role);
        Self {
            inner: Arc::new(Inner {
                role,
                refresh_before,
                assumer,
                metrics,
                current: watch::Sender::new(None),
                flight: Mutex::new(Flight {
                    last_error: None,
                    consecutive_failures: 0,
                }),
                attempts: AtomicU64::new(0),
            }),
        }
    }

    pub fn role(&self) -> &str {
        &self.inner.role
    }

    /// Valid credentials, from the cache when possible. Concurrent callers that find the
    /// cache empty or expired share one AssumeRole; if it fails they all get its error
    /// rather than each trying again.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        if let Some(c) = self.valid() {
            return Ok(c);
        }
        let seen = self.inner.attempts.load(Ordering::Acquire);
        let mut flight = self.inner.flight.lock().await;
        if let Some(c) = self.valid() {
            return Ok(c);
        }
        if self.inner.attempts.load(Ordering::Acquire) != seen {
            if let Some(err) = &flight.last_error {
                return Err(err.clone());
            }
        }
        self.assume_locked(&mut flight).await
    }

    /// Refreshes if the cached credentials are due (or missing); a no-op otherwise, so a
    /// refresh just done by a concurrent `get` is not repeated.
    pub async fn refresh_if_due(&self) -> Result<Credentials, CredentialsError> {
        let mut flight = self.inner.flight.lock().await;
        let now = Instant::now();
        if let Some(c) = self.inner.current.borrow().as_ref() {
            if c.refresh_at > now {
                return Ok(c.issued.credentials.clone());
            }
        }
        self.assume_locked(&mut flight).await
    }

    fn valid(&self) -> Option<Credentials> {
        self.snapshot().map(|(credentials, _)| credentials)
    }

    /// The credential in use and its expiry, while it is still valid.
    pub fn snapshot(&self) -> Option<(Credentials, SystemTime)> {
        let now = Instant::now();
        self.inner
            .current
            .borrow()
            .as_ref()
            .filter(|c| !c.remaining(now).is_zero())
            .map(|c| (c.issued.credentials.clone(), c.issued.expires_at))
    }

    /// True once a credential was obtained and then expired without a successful refresh:
    /// every secret behind the role fails from then on, and readiness reports it.
    pub fn lapsed(&self) -> bool {
        let now = Instant::now();
        self.inner
            .current
            .borrow()
            .as_ref()
            .is_some_and(|c| c.remaining(now).is_zero())
    }

    /// Resolves whenever a new credential has been obtained (for writers that hand it to
    /// the app); `Err` once the session is gone.
    pub fn changes(&self) -> CredentialChanges {
        CredentialChanges(self.inner.current.subscribe())
    }

    /// Time left before the current credentials should be refreshed; `None` when there
    /// are none.
    fn next_refresh(&self) -> Option<Duration> {
        let now = Instant::now();
        self.inner
            .current
            .borrow()
            .as_ref()
            .map(|c| c.refresh_at.saturating_duration_since(now))
    }

    async fn assume_locked(&self, flight: &mut Flight) -> Result<Credentials, CredentialsError> {
        let inner = &self.inner;
        let started = Instant::now();
        let result = inner.assumer.assume().await;
        inner.attempts.fetch_add(1, Ordering::AcqRel);
        inner
            .metrics
            .assume_role_took(&inner.role, started.elapsed());
        match result {
            Ok(issued) => {
                let received = Instant::now();
                let delay = refresh_delay(issued.valid_for, inner.refresh_before, fastrand::f64());
                inner
                    .metrics
                    .credential_refreshed(&inner.role, Outcome::Success);
                inner
                    .metrics
                    .credential_expires_at(&inner.role, issued.expires_at);
                inner.metrics.credential_failures_in_a_row(&inner.role, 0);
                tracing::info!(
                    role = %inner.role,
                    expires_at = %humantime::format_rfc3339_seconds(issued.expires_at),
                    expires_in_secs = issued.valid_for.as_secs(),
                    refresh_in_secs = delay.as_secs(),
                    "assumed role"
                );
                let credentials = issued.credentials.clone();
                inner.current.send_replace(Some(Cached {
                    issued,
                    received,
                    refresh_at: received + delay,
                }));
                flight.last_error = None;
                flight.consecutive_failures = 0;
                Ok(credentials)
            }
            Err(err) => {
                flight.consecutive_failures += 1;
                inner
                    .metrics
                    .credential_refreshed(&inner.role, Outcome::Failure);
                inner
                    .metrics
                    .credential_refresh_failed(&inner.role, err.kind());
                inner
                    .metrics
                    .credential_failures_in_a_row(&inner.role, flight.consecutive_failures);
                tracing::warn!(
                    role = %inner.role,
                    reason = err.kind(),
                    still_valid = self.valid().is_some(),
                    consecutive_failures = flight.consecutive_failures,
                    "AssumeRole failed: {err}"
                );
                flight.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Keeps the credentials fresh until `shutdown` fires: refresh at the scheduled time,
    /// and on failure retry with capped exponential back-off and jitter while the old
    /// credentials go on serving.
    pub async fn run_refresher(self, mut shutdown: crate::shutdown::Signal) {
        loop {
            let delay = self.next_refresh().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => return,
            }
            let mut backoff = retry_delays();
            while self.refresh_if_due().await.is_err() {
                let wait = backoff.next().unwrap_or(RETRY_MAX);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
}

fn retry_delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build()
        // backon's jitter can add up to one more delay on top of the cap.
        .map(|d| d.min(RETRY_MAX))
}

/// Lets an SDK client draw its credentials from a role session. Configure the client
/// with no identity cache: the session is the cache, and a second one would keep
/// serving the old credentials after a refresh.
impl<A: AssumeRole> ProvideCredentials for RoleSession<A> {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.get()
                .await
                .map_err(provider::error::CredentialsError::provider_error)
        })
    }
}

/// See [`RoleSession::changes`].
pub struct CredentialChanges(watch::Receiver<Option<Cached>>);

// === impl CredentialChanges ===

impl CredentialChanges {
    /// Waits for the next new credential; `Err` when the session has been dropped.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.0.changed().await
    }
}

#[cfg(test)]
mod tests;
