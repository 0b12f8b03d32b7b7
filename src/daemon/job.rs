//! One secret's part of a sync: fetch (with failover), map, write to every target, and
//! record the outcome in metrics, logs and readiness.

use super::error::{BuildError, SyncError};
use crate::config::ParameterSource;
use crate::config::{SecretConfig, Target};
use crate::health::Readiness;
use crate::k8s::Kube;
use crate::mapping::{Mapper, MappingError};
use crate::metrics::Metrics;
use crate::sink::file::FileSink;
use crate::sink::kube_secret::KubeSecretSink;
use crate::sink::single_file::SingleFile;
use crate::sink::WriteOutcome;
use crate::source::parameter_store::ParameterStore;
use crate::source::Wanted;
use crate::source::{Fetched, SecretsManager, SourceError};
use crate::transform::Rendered;
use crate::version_id::VersionId;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Everything one secret needs, and only that: a controller holds one per secret for its
/// lifetime (the parsed config is dropped once the jobs are built).
pub(crate) struct SecretJob {
    pub(crate) wanted: Wanted,
    pub(crate) refresh_interval: std::time::Duration,
    /// Where the value is read: the client is shared by every secret read with the same
    /// identity in the same region.
    pub(crate) origin: Origin,
    /// `None` for the default mapping (every JSON key a file), the common case.
    mapper: Option<Box<Mapper>>,
    sinks: Box<[Sink]>,
    /// Version last written to every sink; a poll that sees it again writes nothing.
    last_version: Mutex<Option<VersionId>>,
    /// Wakes the secret's notifier after its files changed; `None` without `onChange`.
    pub(crate) changed: Option<crate::notify::Changed>,
}

/// Where a job reads its value.
pub(crate) enum Origin {
    SecretsManager {
        source: SecretsManager,
        /// The same credentials in `failoverRegion`, if one is configured.
        failover: Option<SecretsManager>,
    },
    /// Boxed: the variant stays within the Secrets Manager one's two pointers, which every
    /// job of a 100,000-secret controller holds.
    ParameterStore(Box<(ParameterStore, ParameterSource)>),
}

/// What a poll learnt about one secret.
pub(crate) enum Polled {
    Value(Fetched),
    /// ListSecrets shows that the version already written is still current: nothing to read.
    Same {
        version: String,
        region: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    Written,
    Unchanged,
}

// === impl SecretJob ===

impl SecretJob {
    pub(crate) fn new(
        config: &SecretConfig,
        origin: Origin,
        changed: Option<crate::notify::Changed>,
        kube: Option<&Kube>,
    ) -> Result<Self, BuildError> {
        let mapper = if config.mapping == crate::config::Mapping::default() {
            None
        } else {
            let mapper = Mapper::new(&config.mapping).map_err(|source| BuildError::Mapping {
                secret: config.name.clone(),
                source,
            })?;
            Some(Box::new(mapper))
        };
        let sinks = config
            .targets
            .iter()
            .map(|t| Sink::from_target(t, kube, &config.name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            wanted: Wanted::of(config),
            refresh_interval: config.refresh_interval,
            origin,
            mapper,
            sinks: sinks.into_boxed_slice(),
            last_version: Mutex::new(None),
            changed,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.wanted.name
    }

    /// The name as shared with the metrics, readiness and the refresh handle.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.wanted.name
    }

    /// The secret id, or the parameter's name (with its selector) or path.
    pub(crate) fn secret_id(&self) -> &str {
        &self.wanted.secret_id
    }

    /// The region the value is read in (not the failover region).
    pub(crate) fn region(&self) -> &str {
        match &self.origin {
            Origin::SecretsManager { source, .. } => source.region(),
            Origin::ParameterStore(read) => read.0.region(),
        }
    }

    pub(crate) fn has_failover(&self) -> bool {
        matches!(
            &self.origin,
            Origin::SecretsManager {
                failover: Some(_),
                ..
            }
        )
    }

    /// The Parameter Store client and what it reads, for a Parameter Store entry.
    pub(crate) fn parameter(&self) -> Option<(&ParameterStore, &ParameterSource)> {
        match &self.origin {
            Origin::ParameterStore(read) => Some((&read.0, &read.1)),
            Origin::SecretsManager { .. } => None,
        }
    }

    /// The targets as configured, from the sinks (for `check` and for the Secrets a restart
    /// no longer writes): the job keeps no second copy.
    pub(crate) fn targets(&self) -> Vec<Target> {
        self.sinks
            .iter()
            .map(|sink| match sink {
                Sink::Dir(dir) => Target::File(dir.target()),
                Sink::File(file) => Target::SingleFile(file.target()),
                Sink::Kube(secret) => Target::KubernetesSecret(Box::new(secret.target().clone())),
            })
            .collect()
    }

    pub(crate) async fn last_version_is(&self, version: &str) -> bool {
        self.last_version
            .lock()
            .await
            .as_ref()
            .is_some_and(|last| last.is(version))
    }

    /// Whether any version was written (since the start).
    pub(crate) async fn written(&self) -> bool {
        self.last_version.lock().await.is_some()
    }

    /// The files a value makes, through the secret's mapping.
    fn render(&self, payload: &crate::secret::Payload) -> Result<Rendered, MappingError> {
        match &self.mapper {
            Some(mapper) => mapper.apply(payload),
            None => crate::transform::render(payload).map_err(Into::into),
        }
    }

    /// GetSecretValue in the secret's region, or in its failover region when that fails
    /// with a transient error (or when the caller already knows the primary is failing);
    /// a Parameter Store entry's parameter or path.
    pub(crate) async fn fetch(&self, skip_primary: bool) -> Result<Fetched, SourceError> {
        let (source, failover) = match &self.origin {
            Origin::SecretsManager { source, failover } => (source, failover),
            Origin::ParameterStore(read) => return read.0.fetch(&self.wanted, &read.1).await,
        };
        let skip_primary = skip_primary && failover.is_some();
        let primary = if skip_primary {
            None
        } else {
            match source.fetch(&self.wanted).await {
                Ok(fetched) => return Ok(fetched),
                Err(e) => Some(e),
            }
        };
        match (primary, failover) {
            (Some(e), None) => Err(e),
            (Some(e), Some(_)) if !e.is_transient() => Err(e),
            (primary, Some(failover)) => {
                if let Some(err) = &primary {
                    tracing::warn!(
                        secret = %self.name(),
                        region = %source.region(),
                        failover_region = %failover.region(),
                        reason = err.kind(),
                        "primary region failing; reading the replica in the failover region"
                    );
                }
                // The replica's current version: version ids only differ between
                // regions while replication lags.
                match failover.fetch_replica(&self.wanted).await {
                    Ok(fetched) => Ok(fetched),
                    // The primary's error says more about what to fix.
                    Err(e) => Err(primary.unwrap_or(e)),
                }
            }
            // `skip_primary` is only honoured with a failover, so a failure is known here.
            (None, None) => source.fetch(&self.wanted).await,
        }
    }

    /// The key names the mapping makes of a value (for `check`: names, never values).
    pub(crate) fn keys_of(&self, fetched: &Fetched) -> Result<Vec<String>, String> {
        self.render(&fetched.payload)
            .map(|rendered| rendered.files.keys().cloned().collect())
            .map_err(|e| e.to_string())
    }

    /// Maps and writes a fetched value unless its version was already written.
    async fn apply(&self, fetched: Fetched) -> Result<SyncOutcome, SyncError> {
        let mut last = self.last_version.lock().await;
        if let (Some(last), Some(version)) = (last.as_ref(), fetched.version_id.as_deref()) {
            if last.is(version) {
                return Ok(SyncOutcome::Unchanged);
            }
        }
        let rendered = self
            .render(&fetched.payload)
            .map_err(|source| SyncError::Mapping {
                secret: self.name().to_owned(),
                source,
            })?;
        let mut outcome = SyncOutcome::Unchanged;
        for sink in &self.sinks {
            if write(sink, &rendered, self.name()).await? == WriteOutcome::Written {
                outcome = SyncOutcome::Written;
            }
        }
        *last = fetched.version_id.as_deref().map(VersionId::new);
        Ok(outcome)
    }

    /// Removes what was written for this secret (a pruned `find` match).
    pub(crate) async fn remove_targets(&self) {
        for sink in &self.sinks {
            let name = self.name();
            let result = match sink.clone() {
                Sink::Dir(dir) => blocking(name, move || dir.remove().map_err(|e| e.to_string()))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
                Sink::File(file) => {
                    blocking(name, move || file.remove().map_err(|e| e.to_string()))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                }
                Sink::Kube(secret) => secret.remove().await.map_err(|e| e.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(secret = %self.name(), %error, "could not remove a target of a secret no longer synced");
            }
        }
    }
}

/// File writes run on the blocking pool and are never cancelled: the drain waits for
/// them, so a shutdown cannot leave a half-swapped directory. An apply is atomic on the API
/// server: dropping it half-way leaves either state.
async fn write(sink: &Sink, rendered: &Rendered, secret: &str) -> Result<WriteOutcome, SyncError> {
    let secret = secret.to_owned();
    match sink {
        Sink::Kube(target) => target
            .write(rendered)
            .await
            .map_err(|e| SyncError::sink(secret, e)),
        Sink::Dir(dir) => {
            let (dir, rendered) = (dir.clone(), rendered.clone());
            blocking(&secret, move || dir.write(&rendered))
                .await?
                .map_err(|e| SyncError::sink(secret, e))
        }
        Sink::File(file) => {
            let (file, rendered) = (file.clone(), rendered.clone());
            blocking(&secret, move || file.write(&rendered))
                .await?
                .map_err(|e| SyncError::sink(secret, e))
        }
    }
}

/// Runs file I/O on the blocking pool; a panic there is the secret's sync failure.
async fn blocking<T: Send + 'static>(
    secret: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SyncError::WriterPanicked {
            secret: secret.to_owned(),
            reason: e.to_string(),
        })
}

/// Where one secret is written. The file sinks are held inline (a path and a mode): one
/// allocation a secret fewer than behind an `Arc`; a write clones the path for the blocking
/// pool, which only happens when the value changed.
#[derive(Clone)]
enum Sink {
    Dir(FileSink),
    File(SingleFile),
    Kube(Arc<KubeSecretSink>),
}

// === impl Sink ===

impl Sink {
    fn from_target(target: &Target, kube: Option<&Kube>, secret: &str) -> Result<Self, BuildError> {
        Ok(match target {
            Target::KubernetesSecret(t) => {
                let kube = kube.ok_or_else(|| BuildError::NoKube {
                    secret: secret.to_owned(),
                })?;
                let namespace = t
                    .namespace
                    .clone()
                    .or_else(|| kube.namespace.clone())
                    .ok_or(crate::k8s::KubeSetupError::NoNamespace)?;
                if t.owner_pod && kube.pod.is_none() {
                    return Err(crate::k8s::KubeSetupError::NoPod.into());
                }
                Sink::Kube(Arc::new(KubeSecretSink::new(
                    kube.clone(),
                    (**t).clone(),
                    namespace,
                    secret.to_owned(),
                )))
            }
            Target::File(f) => Sink::Dir(FileSink::new(f.dir.clone(), f.mode)),
            Target::SingleFile(f) => Sink::File(SingleFile::new(f.path.clone(), f.format, f.mode)),
        })
    }
}

/// What every sync needs besides its job.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) fetch_permits: Arc<tokio::sync::Semaphore>,
    pub(crate) cycle_slots: Arc<tokio::sync::Semaphore>,
}

// === impl Ctx ===

impl Ctx {
    /// Bounds the AWS calls in flight; the semaphore is never closed.
    pub(crate) async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.fetch_permits.acquire().await.ok()
    }

    /// Fetches one secret with GetSecretValue and applies the result.
    pub(crate) async fn sync_one(
        &self,
        job: &SecretJob,
        skip_primary: bool,
    ) -> Result<SyncOutcome, SyncError> {
        let started = Instant::now();
        let fetched = {
            let _permit = self.permit().await;
            job.fetch(skip_primary).await
        };
        self.finish(job, fetched.map(Polled::Value), started).await
    }

    /// Applies a poll result and records it in metrics, logs and readiness.
    pub(crate) async fn finish(
        &self,
        job: &SecretJob,
        polled: Result<Polled, SourceError>,
        started: Instant,
    ) -> Result<SyncOutcome, SyncError> {
        let name = job.name();
        let (version, region) = match &polled {
            Ok(Polled::Value(f)) => (f.version_id.clone(), Some(f.region.clone())),
            Ok(Polled::Same { version, region }) => (Some(version.clone()), Some(region.clone())),
            Err(_) => (None, None),
        };
        let result = match polled {
            Ok(Polled::Value(fetched)) => job.apply(fetched).await,
            Ok(Polled::Same { .. }) => Ok(SyncOutcome::Unchanged),
            Err(e) => Err(e.into()),
        };
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        match &result {
            Ok(outcome) => {
                // The first write of a run is the app's starting point, not a change.
                if *outcome == SyncOutcome::Written && self.readiness.has_synced(name) {
                    if let Some(changed) = &job.changed {
                        changed.changed();
                    }
                }
                self.metrics
                    .sync_succeeded(name, elapsed, version.as_deref(), region.as_deref());
                self.readiness.synced(name);
                let version = version.as_deref().unwrap_or("-");
                let region = region.as_deref().unwrap_or("-");
                let failover = region != job.region();
                // One event per sync; unchanged polls at debug, so that thousands of
                // secrets do not flood the log at the default level.
                match outcome {
                    SyncOutcome::Written => {
                        tracing::info!(secret = %name, version, region, failover, duration_ms = elapsed_ms, result = "written", "secret written")
                    }
                    SyncOutcome::Unchanged => {
                        tracing::debug!(secret = %name, version, region, duration_ms = elapsed_ms, result = "unchanged", "secret unchanged")
                    }
                }
            }
            Err(err) => {
                // Stale (if it synced before): the files still hold a value that could not be
                // refreshed.
                self.metrics.sync_failed(name, elapsed);
                match err.credentials_role() {
                    // The role's AssumeRole failure was logged with its cause; repeating it for
                    // each of the role's secrets would bury it.
                    Some(role) => {
                        tracing::debug!(secret = %name, role, duration_ms = elapsed_ms, result = "failed", reason = err.kind(), "sync failed for want of the role's credentials; last written files kept")
                    }
                    None => {
                        tracing::warn!(secret = %name, duration_ms = elapsed_ms, result = "failed", reason = err.kind(), "sync failed; last written files kept: {err}")
                    }
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    /// Every job of a 100,000-secret controller holds one: the Parameter Store variant must
    /// not make the Secrets Manager one (two client handles) bigger.
    #[test]
    fn an_origin_is_two_pointers() {
        assert_eq!(std::mem::size_of::<super::Origin>(), 16);
    }
}
