//! Pushes: each interval, a group of pushes sharing a client lists the secrets this
//! instance owns (one ListSecrets page per 100), reads each source, and applies what
//! `sink::push_plan` says, one step at a time, until the plan settles.

use super::error::PushError;
use super::poll::next_delay;
use crate::config::{PushConfig, PushSource};
use crate::metrics::Metrics;
use crate::secret::Payload;
use crate::shutdown::Signal;
use crate::sink::push_plan::{
    self, Digest, Known, Memory, Policy, Refusal, Remote, Settled, Source, Step, TokenKey,
};
use crate::sink::secrets_manager::{list_error, list_owned, PushSink};
use crate::source::push_files::{self, PushSourceError, Read};
use crate::source::SecretsManager;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A gone source is read again after this long before it counts as removed: an app that
/// replaces its directory by rename leaves it missing for a moment.
const CONFIRM_GONE_AFTER: Duration = Duration::from_secs(1);
/// Steps one attempt may take: read or restore or adopt, then a write.
const MAX_STEPS: usize = 4;

pub(crate) struct PushJob {
    pub(crate) config: PushConfig,
    memory: Memory,
}

/// The pushes written with one client (identity and region) at one interval.
pub(crate) struct PushGroup {
    pub(crate) interval: Duration,
    client: SecretsManager,
    instance: Arc<str>,
    key: TokenKey,
    pub(crate) jobs: Vec<PushJob>,
    /// ListSecrets was denied: each push describes its own secret instead.
    listing_denied: bool,
}

/// How one attempt ended.
pub(crate) type Attempt = Result<Settled, PushError>;

impl PushGroup {
    pub(crate) fn new(
        interval: Duration,
        client: SecretsManager,
        instance: Arc<str>,
        key: TokenKey,
        pushes: Vec<PushConfig>,
    ) -> Self {
        let jobs = pushes
            .into_iter()
            .map(|config| PushJob {
                config,
                memory: Memory::default(),
            })
            .collect();
        Self {
            interval,
            client,
            instance,
            key,
            jobs,
            listing_denied: false,
        }
    }

    /// The client the group writes with (for `check`).
    pub(crate) fn client(&self) -> &SecretsManager {
        &self.client
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// One attempt of every push; the failures, in config order.
    pub(crate) async fn cycle(&mut self, metrics: &Metrics) -> Vec<PushError> {
        let owned = self.list().await;
        let mut failures = Vec::new();
        for i in 0..self.jobs.len() {
            let listed = match &owned {
                Ok(Some(owned)) => {
                    Listing::Listed(owned.get(&self.jobs[i].config.to.secret_name).cloned())
                }
                Ok(None) => Listing::NotListed,
                Err(e) => Listing::Failed(e.clone()),
            };
            let result = self.attempt(i, listed, metrics).await;
            let push = self.jobs[i].config.name.clone();
            match result {
                Ok(settled) => {
                    tracing::debug!(push = %push, outcome = settled.as_str(), "push settled");
                    metrics.push_attempted(&push, None);
                }
                Err(e) => {
                    tracing::warn!(push = %push, reason = e.kind(), "{e}");
                    metrics.push_attempted(&push, Some(e.kind()));
                    failures.push(e);
                }
            }
        }
        failures
    }

    /// The owned secrets, one listing for the group; `Ok(None)` when listing is denied
    /// and each push describes its secret instead.
    async fn list(&mut self) -> Result<Option<BTreeMap<String, Remote>>, crate::source::CallError> {
        if self.listing_denied {
            return Ok(None);
        }
        let names: Vec<&str> = self
            .jobs
            .iter()
            .map(|j| j.config.to.secret_name.as_str())
            .collect();
        match list_owned(&self.client, &self.instance, &names).await {
            Ok(owned) => Ok(Some(owned)),
            Err(crate::source::CallError::Aws(info))
                if info.class == crate::aws::Class::AccessDenied =>
            {
                tracing::warn!(
                    "ListSecrets is denied, so each push describes its own secret (one call per push per interval); allow secretsmanager:ListSecrets on \"*\" to list them together"
                );
                self.listing_denied = true;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn attempt(&mut self, i: usize, listed: Listing, metrics: &Metrics) -> Attempt {
        let job = &self.jobs[i];
        let config = job.config.clone();
        let sink = PushSink {
            client: &self.client,
            push: &config.name,
            target: &config.to,
        };
        let (source, payload) = read_source(&config, job.memory.seen_source).await?;
        let mut remote = match listed {
            Listing::Listed(Some(remote)) => Some(remote),
            // Not listed as ours: absent, someone else's, or a listing that is behind.
            Listing::Listed(None) | Listing::NotListed => sink.describe().await?,
            Listing::Failed(e) => return Err(list_error(&sink, e).into()),
        };
        let job = &mut self.jobs[i];
        if payload.is_some() {
            job.memory.seen_source = true;
        }
        let policy = Policy {
            key: &self.key,
            instance: &self.instance,
            secret_name: &config.to.secret_name,
            update: config.update_policy,
            deletion: config.deletion_policy,
            adopt: config.adopt,
        };
        let refused = |why: String, fix: &'static str, kind: &'static str| PushError::Refused {
            push: config.name.clone(),
            secret_name: config.to.secret_name.clone(),
            region: self.client.region().to_owned(),
            why,
            fix,
            kind,
        };
        for _ in 0..MAX_STEPS {
            let step = push_plan::plan(&policy, source, remote.as_ref(), &job.memory);
            match step {
                Step::Done(settled) => return Ok(settled),
                Step::SourceMissing => {
                    return Err(PushSourceError::Missing {
                        push: config.name.clone(),
                        path: config.from.describe().into(),
                    }
                    .into())
                }
                Step::Refuse(Refusal::NotOwned) => {
                    return Err(refused(
                        format!("exists without the tag {}={}, so this installation did not create it", crate::config::OWNER_TAG, self.instance),
                        "Set adopt: true on the push to take it over, or choose another secretName.",
                        "not_owned",
                    ))
                }
                Step::Refuse(Refusal::OwnedBy(other)) => {
                    return Err(refused(
                        format!("belongs to another installation (tag {}={other:?})", crate::config::OWNER_TAG),
                        "Two installations never share a secret: give this push another secretName, or remove it from the other installation's config.",
                        "owned_by_other",
                    ))
                }
                Step::Read { version } => {
                    let value = sink.read(&version).await?.ok_or_else(|| PushError::EmptyRemote {
                        push: config.name.clone(),
                        secret_name: config.to.secret_name.clone(),
                    })?;
                    job.memory.known = Some(Known {
                        version,
                        digest: Digest::of(&value),
                        replaced: None,
                    });
                }
                Step::Create { token } => {
                    let value = payload.as_ref().ok_or_else(|| unsettled(&config))?;
                    sink.create(&self.instance, &token, value).await?;
                    metrics.push_wrote(&config.name, "create");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, version_id = %token, "created the secret");
                    job.memory.known = Some(Known { version: token, digest: Digest::of(value), replaced: None });
                    return Ok(Settled::InSync);
                }
                Step::Put { token, replacing } => {
                    let value = payload.as_ref().ok_or_else(|| unsettled(&config))?;
                    sink.put(&token, value).await?;
                    metrics.push_wrote(&config.name, "put");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, version_id = %token, "pushed a new version");
                    job.memory.known = Some(Known { version: token, digest: Digest::of(value), replaced: replacing });
                    return Ok(Settled::InSync);
                }
                Step::Restore => {
                    sink.restore().await?;
                    metrics.push_wrote(&config.name, "restore");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, "the source is back: restored the secret scheduled for deletion");
                    if let Some(r) = remote.as_mut() {
                        r.deleted = false;
                    }
                }
                Step::Adopt => {
                    sink.adopt(&self.instance).await?;
                    metrics.push_wrote(&config.name, "adopt");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, "adopted the secret (adopt: true): tagged it as this installation's");
                    if let Some(r) = remote.as_mut() {
                        r.owner = Some(self.instance.to_string());
                    }
                }
                Step::Delete => {
                    sink.delete(config.recovery).await?;
                    metrics.push_wrote(&config.name, "delete");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, recovery = ?config.recovery, "the source was removed: deleted the secret (deletionPolicy: Delete)");
                    job.memory.known = None;
                    return Ok(Settled::Deleted);
                }
            }
        }
        Err(unsettled(&config))
    }
}

enum Listing {
    /// The listing ran: the secret as listed, or `None` when it was not among them.
    Listed(Option<Remote>),
    /// Listing is denied: describe.
    NotListed,
    Failed(crate::source::CallError),
}

fn unsettled(config: &PushConfig) -> PushError {
    PushError::Unsettled {
        push: config.name.clone(),
        secret_name: config.to.secret_name.clone(),
    }
}

/// The source as the plan sees it, and its value when present. A source seen before that
/// is gone now is read once more after [`CONFIRM_GONE_AFTER`] before it counts as gone.
async fn read_source(
    config: &PushConfig,
    seen: bool,
) -> Result<(Source, Option<Payload>), PushError> {
    let mut read = read_once(config).await?;
    if matches!(read, Read::Gone) && seen {
        tokio::time::sleep(CONFIRM_GONE_AFTER).await;
        read = read_once(config).await?;
    }
    Ok(match read {
        Read::Present(payload) => (Source::Present(Digest::of(&payload)), Some(payload)),
        Read::Gone => (Source::Gone, None),
    })
}

async fn read_once(config: &PushConfig) -> Result<Read, PushError> {
    let (push, from) = (config.name.clone(), config.from.clone());
    let read = tokio::task::spawn_blocking(move || match &from {
        PushSource::Dir(dir) => push_files::read_dir(&push, dir),
        PushSource::File { path, binary } => push_files::read_file(&push, path, *binary),
        PushSource::KubernetesSecret { .. } => Err(PushSourceError::Layout {
            push: push.clone(),
            path: from.describe().into(),
            reason: "is a Kubernetes Secret source, which `validate` refuses in this version",
        }),
    })
    .await
    .map_err(|_| unsettled(config))?;
    Ok(read?)
}

/// One group's loop: an attempt every interval (jittered), or back-off after a cycle in
/// which every push failed.
pub(crate) async fn run(mut group: PushGroup, metrics: Metrics, mut shutdown: Signal) {
    let interval = group.interval;
    let mut backoff: Option<Box<dyn Iterator<Item = Duration> + Send>> = None;
    loop {
        let failures = tokio::select! {
            f = group.cycle(&metrics) => f,
            _ = shutdown.wait() => return,
        };
        let all_failed = !failures.is_empty() && failures.len() == group.jobs.len();
        let delay = next_delay(all_failed, &mut backoff, interval);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return,
        }
    }
}
