//! Pushes: each interval, a group of pushes sharing a client lists the secrets this
//! instance owns (one ListSecrets page per 100), reads each source, and applies what
//! `sink::push_plan` says, one step at a time, until the plan settles. A Kubernetes Secret
//! source is watched: its change wakes the group, which then attempts only that push.

use super::error::PushError;
use super::schedule::next_delay;
use crate::config::{PushConfig, PushSource};
use crate::k8s::Kube;
use crate::metrics::Metrics;
use crate::secret::Payload;
use crate::shutdown::Signal;
use crate::sink::push_plan::{
    self, Digest, Known, Memory, Policy, Refusal, Remote, Settled, Source, Step, TokenKey,
};
use crate::sink::secrets_manager::{list_error, list_owned, PushSink};
use crate::source::push_files::{self, PushSourceError, Read};
use crate::source::push_kube::KubeSource;
use crate::source::SecretsManager;
use k8s_openapi::api::core::v1::ObjectReference;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A gone source is read again after this long before it counts as removed: an app that
/// replaces its directory by rename leaves it missing for a moment.
const CONFIRM_GONE_AFTER: Duration = Duration::from_secs(1);
/// Steps one attempt may take: read or restore or adopt, then a write.
const MAX_STEPS: usize = 4;
/// A watched Secret is pushed this long after its change, so that an edit made with
/// several requests (or a burst of them) becomes one write.
const DEBOUNCE: Duration = Duration::from_millis(100);

pub(crate) struct PushJob {
    pub(crate) config: PushConfig,
    /// The watched Secret, for a `kubernetesSecret` source.
    pub(crate) kube: Option<KubeSource>,
    memory: Memory,
    /// What the last attempt wrote (create, put, ...), for the Events on the source Secret.
    wrote: Vec<&'static str>,
    /// The source Secret as last seen, which Events point to (also once it is deleted).
    regarding: Option<ObjectReference>,
    /// The last failure posted as a Warning Event, so that a repeated one is posted once.
    warned: Option<String>,
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
    /// Posts the Events about Kubernetes Secret sources.
    events: Option<Kube>,
    /// Notified by the watches of Kubernetes Secret sources.
    changed: Arc<Notify>,
}

/// How one attempt ended.
pub(crate) type Attempt = Result<Settled, PushError>;

impl PushGroup {
    pub(crate) fn new(
        interval: Duration,
        client: SecretsManager,
        instance: Arc<str>,
        key: TokenKey,
        pushes: Vec<(PushConfig, Option<KubeSource>)>,
        events: Option<Kube>,
        changed: Arc<Notify>,
    ) -> Self {
        let jobs = pushes
            .into_iter()
            .map(|(config, kube)| PushJob {
                config,
                kube,
                memory: Memory::default(),
                wrote: Vec::new(),
                regarding: None,
                warned: None,
            })
            .collect();
        Self {
            interval,
            client,
            instance,
            key,
            jobs,
            listing_denied: false,
            events,
            changed,
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
            if let Some(e) = self.settle(i, result, metrics).await {
                failures.push(e);
            }
        }
        failures
    }

    /// One attempt of each push whose watched Secret changed since it was last read; each
    /// describes its own secret (one call), as a listing for one would cost more.
    pub(crate) async fn cycle_changed(&mut self, metrics: &Metrics) -> Vec<PushError> {
        let mut failures = Vec::new();
        for i in 0..self.jobs.len() {
            if !self.jobs[i]
                .kube
                .as_ref()
                .is_some_and(KubeSource::has_changed)
            {
                continue;
            }
            let result = self.attempt(i, Listing::NotListed, metrics).await;
            if let Some(e) = self.settle(i, result, metrics).await {
                failures.push(e);
            }
        }
        failures
    }

    /// Counts and logs how an attempt ended, and tells a Kubernetes source's Secret.
    async fn settle(&mut self, i: usize, result: Attempt, metrics: &Metrics) -> Option<PushError> {
        let job = &mut self.jobs[i];
        let push = job.config.name.clone();
        let failure = match result {
            Ok(settled) => {
                tracing::debug!(push = %push, outcome = settled.as_str(), "push settled");
                metrics.push_attempted(&push, None);
                None
            }
            Err(e) => {
                tracing::warn!(push = %push, reason = e.kind(), "{e}");
                metrics.push_attempted(&push, Some(e.kind()));
                Some(e)
            }
        };
        if let (Some(kube), Some(regarding)) = (&self.events, &job.regarding) {
            let target = format!("{} in {}", job.config.to.secret_name, self.client.region());
            for write in std::mem::take(&mut job.wrote) {
                let (reason, note) = written(write, &target);
                kube.event(regarding, false, reason, note).await;
            }
            match &failure {
                None => job.warned = None,
                Some(e) => {
                    let message = e.to_string();
                    if job.warned.as_ref() != Some(&message) {
                        let reason = if matches!(e, PushError::Refused { .. }) {
                            "Refused"
                        } else {
                            "PushFailed"
                        };
                        kube.event(regarding, true, reason, message.clone()).await;
                        job.warned = Some(message);
                    }
                }
            }
        }
        job.wrote.clear();
        failure
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
        let (source, payload) = read_source(&mut self.jobs[i]).await?;
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
                    job.wrote.push("create");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, version_id = %token, "created the secret");
                    job.memory.known = Some(Known { version: token, digest: Digest::of(value), replaced: None });
                    return Ok(Settled::InSync);
                }
                Step::Put { token, replacing } => {
                    let value = payload.as_ref().ok_or_else(|| unsettled(&config))?;
                    sink.put(&token, value).await?;
                    metrics.push_wrote(&config.name, "put");
                    job.wrote.push("put");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, version_id = %token, "pushed a new version");
                    job.memory.known = Some(Known { version: token, digest: Digest::of(value), replaced: replacing });
                    return Ok(Settled::InSync);
                }
                Step::Restore => {
                    sink.restore().await?;
                    metrics.push_wrote(&config.name, "restore");
                    job.wrote.push("restore");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, "the source is back: restored the secret scheduled for deletion");
                    if let Some(r) = remote.as_mut() {
                        r.deleted = false;
                    }
                }
                Step::Adopt => {
                    sink.adopt(&self.instance).await?;
                    metrics.push_wrote(&config.name, "adopt");
                    job.wrote.push("adopt");
                    tracing::info!(push = %config.name, secret = %config.to.secret_name, "adopted the secret (adopt: true): tagged it as this installation's");
                    if let Some(r) = remote.as_mut() {
                        r.owner = Some(self.instance.to_string());
                    }
                }
                Step::Delete => {
                    sink.delete(config.recovery).await?;
                    metrics.push_wrote(&config.name, "delete");
                    job.wrote.push("delete");
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

/// The Event about one write to the remote secret.
fn written(write: &str, target: &str) -> (&'static str, String) {
    match write {
        "create" => ("Created", format!("created {target} from this Secret")),
        "put" => ("Pushed", format!("pushed a new version of {target}")),
        "restore" => (
            "Restored",
            format!("restored {target}, which was scheduled for deletion"),
        ),
        "adopt" => ("Adopted", format!("adopted {target} (adopt: true)")),
        _ => (
            "Deleted",
            format!(
                "scheduled {target} for deletion: this Secret was deleted (deletionPolicy: Delete)"
            ),
        ),
    }
}

/// The source as the plan sees it, and its value when present. A file source seen before
/// that is gone now is read once more after [`CONFIRM_GONE_AFTER`] before it counts as
/// gone; a watched Secret is gone only after a Delete event or a relist without it.
async fn read_source(job: &mut PushJob) -> Result<(Source, Option<Payload>), PushError> {
    let read = if let Some(kube) = job.kube.as_mut() {
        let read = kube.read().await;
        // The Secret as last seen: a deleted one keeps its uid in the Events about it.
        job.regarding = kube
            .reference()
            .or(job.regarding.take())
            .or_else(|| Some(kube.bare_reference()));
        read?
    } else {
        let config = &job.config;
        let mut read = read_once(config).await?;
        if matches!(read, Read::Gone) && job.memory.seen_source {
            tokio::time::sleep(CONFIRM_GONE_AFTER).await;
            read = read_once(config).await?;
        }
        read
    };
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
        // Built with a KubeSource, which `read_source` reads instead.
        PushSource::KubernetesSecret { .. } => Err(PushSourceError::Missing {
            push: push.clone(),
            path: from.describe().into(),
        }),
    })
    .await
    .map_err(|_| unsettled(config))?;
    Ok(read?)
}

/// One group's loop: an attempt every interval (jittered), or back-off after a cycle in
/// which every push failed; in between, an attempt of each watched Secret that changed
/// (a failed one brings the next full cycle forward to the back-off step).
pub(crate) async fn run(mut group: PushGroup, metrics: Metrics, mut shutdown: Signal) {
    let interval = group.interval;
    let changed = group.changed.clone();
    let mut backoff: Option<Box<dyn Iterator<Item = Duration> + Send>> = None;
    loop {
        let failures = tokio::select! {
            f = group.cycle(&metrics) => f,
            _ = shutdown.wait() => return,
        };
        let all_failed = !failures.is_empty() && failures.len() == group.jobs.len();
        let mut deadline =
            tokio::time::Instant::now() + next_delay(all_failed, &mut backoff, interval);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = changed.notified() => {}
                _ = shutdown.wait() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(DEBOUNCE) => {}
                _ = shutdown.wait() => return,
            }
            let failures = tokio::select! {
                f = group.cycle_changed(&metrics) => f,
                _ = shutdown.wait() => return,
            };
            if !failures.is_empty() {
                let retry = tokio::time::Instant::now() + next_delay(true, &mut backoff, interval);
                deadline = deadline.min(retry);
            }
        }
    }
}
