//! One poll of a group of secrets (see `plan` for how groups are formed), with the
//! strategy's AWS calls and the fall-backs when they fail:
//! - `batch` denied under `auto`: the group switches to `get` for good (logged once);
//! - a transient failure with a `failoverRegion`: members are read from the replica;
//! - a secret the batch or listing does not mention: read on its own with GetSecretValue,
//!   so that its own error (not found, no permission) is reported.

use super::error::SyncError;
use super::job::{Ctx, Polled, SecretJob, SyncOutcome};
use super::poll::MAX_CONCURRENT_FETCHES;
use crate::aws::Class;
use crate::config::{SecretConfig, VersionSelector, NAME_PLACEHOLDER};
use crate::metrics::Outcome;
use crate::source::plan::{name_filter, Strategy};
use crate::source::{
    id_matches, CallError, Listed, SecretsManager, SourceError, BATCH_MAX, GET, LIST,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Secrets read by one BatchGetSecretValue call: each distinct id with the secrets
/// configured with it.
type Chunk = Arc<[(String, Vec<Arc<SecretJob>>)]>;

pub(crate) struct Group {
    pub(crate) strategy: Strategy,
    auto: bool,
    pub(crate) interval: Duration,
    /// Static members; a `find` group keeps its own in `discovery`.
    pub(crate) members: Vec<Arc<SecretJob>>,
    chunks: Vec<Chunk>,
    /// Where the group's own calls (BatchGetSecretValue, ListSecrets) go.
    source: SecretsManager,
    pub(crate) refresh: Arc<tokio::sync::Notify>,
    discovery: Option<Discovery>,
}

/// The state of a `find` entry.
pub(crate) struct Discovery {
    entry: SecretConfig,
    failover: Option<SecretsManager>,
    changed: crate::notify::Changed,
    /// Secret name → its member.
    known: BTreeMap<String, Arc<SecretJob>>,
    /// Matches that cannot be synced (their name cannot name a path), warned about once.
    refused: BTreeSet<String>,
}

/// What one poll of a group did.
pub(crate) struct Cycle {
    pub(crate) failures: Vec<SyncError>,
    /// Nothing succeeded: the group backs off instead of waiting a whole interval.
    pub(crate) all_failed: bool,
}

impl Group {
    pub(crate) fn new(
        strategy: Strategy,
        auto: bool,
        interval: Duration,
        members: Vec<Arc<SecretJob>>,
        source: SecretsManager,
    ) -> Self {
        let mut ids: Vec<(String, Vec<Arc<SecretJob>>)> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for job in &members {
            let id = &job.config.secret_id;
            match index.get(id) {
                Some(&i) => ids[i].1.push(job.clone()),
                None => {
                    index.insert(id.clone(), ids.len());
                    ids.push((id.clone(), vec![job.clone()]));
                }
            }
        }
        let chunks = ids.chunks(BATCH_MAX).map(Chunk::from).collect();
        Self {
            strategy,
            auto,
            interval,
            members,
            chunks,
            source,
            refresh: Arc::new(tokio::sync::Notify::new()),
            discovery: None,
        }
    }

    pub(crate) fn discovering(
        entry: SecretConfig,
        source: SecretsManager,
        failover: Option<SecretsManager>,
        changed: crate::notify::Changed,
    ) -> Self {
        let interval = entry.refresh_interval;
        let mut group = Self::new(Strategy::Find, false, interval, Vec::new(), source);
        group.discovery = Some(Discovery {
            entry,
            failover,
            changed,
            known: BTreeMap::new(),
            refused: BTreeSet::new(),
        });
        group
    }

    /// The `find` entry this group discovers for, if it is one.
    pub(crate) fn entry_name(&self) -> Option<&str> {
        self.discovery.as_ref().map(|d| d.entry.name.as_str())
    }

    /// For `check`: the discovery listing of the `find` entry; `Ok` with the names it
    /// matches, `Err` with why the listing failed. `None` when this is not a find group.
    pub(crate) async fn check_discovery(&self) -> Option<Result<Vec<String>, String>> {
        let discovery = self.discovery.as_ref()?;
        let find = discovery.entry.find.clone()?;
        let prefixes: Vec<String> = find.name_prefix.iter().cloned().collect();
        let tag_keys: Vec<String> = find.tags.keys().cloned().collect();
        Some(match self.source.list(&prefixes, &tag_keys).await {
            Ok(listed) => Ok(listed
                .into_iter()
                .filter(|l| finds(&find, l))
                .map(|l| l.name)
                .collect()),
            Err(e) => Err(self.source.error_for(&discovery.entry, LIST, e).to_string()),
        })
    }

    /// Polls every member once.
    pub(crate) async fn cycle(&mut self, ctx: &Ctx) -> Cycle {
        let results = match self.strategy {
            Strategy::Get => {
                let members = self.members.iter().map(|m| (m.clone(), None)).collect();
                get_all(ctx, members, false).await
            }
            Strategy::Batch => self.batch(ctx).await,
            Strategy::List => {
                let started = Instant::now();
                let listed = self.list(ctx, &[]).await;
                let members = self.members.clone();
                sync_listed(ctx, &self.source, &members, listed, started).await
            }
            Strategy::Find => return self.discover(ctx).await,
        };
        Cycle::of(results)
    }

    async fn list(&self, ctx: &Ctx, tag_keys: &[String]) -> Result<Vec<Listed>, CallError> {
        let names = match &self.discovery {
            Some(d) => d
                .entry
                .find
                .iter()
                .filter_map(|f| f.name_prefix.clone())
                .collect(),
            None => name_filter(self.members.iter().map(|m| m.config.secret_id.as_str())),
        };
        let _permit = ctx.permit().await;
        self.source.list(&names, tag_keys).await
    }

    async fn batch(&mut self, ctx: &Ctx) -> Vec<Result<SyncOutcome, SyncError>> {
        let mut set = JoinSet::new();
        let mut chunks = self.chunks.iter();
        let mut results = Vec::new();
        let mut denied = Vec::new();
        loop {
            while set.len() < MAX_CONCURRENT_FETCHES {
                let Some(chunk) = chunks.next() else {
                    break;
                };
                set.spawn(batch_chunk(
                    ctx.clone(),
                    self.source.clone(),
                    chunk.clone(),
                    self.auto,
                ));
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            match joined {
                Ok(ChunkResult::Done(done)) => results.extend(done),
                Ok(ChunkResult::Denied(chunk)) => denied.push(chunk),
                Err(e) => results.push(Err(SyncError::WriterPanicked {
                    secret: "(batch)".into(),
                    reason: e.to_string(),
                })),
            }
        }
        if !denied.is_empty() {
            tracing::warn!(
                principal = %self.source.principal(),
                region = %self.source.region(),
                secrets = self.members.len(),
                "BatchGetSecretValue is denied (fetchStrategy auto): reading these secrets with GetSecretValue from now on; allow secretsmanager:BatchGetSecretValue on \"*\" to save calls"
            );
            self.strategy = Strategy::Get;
            let members = denied
                .iter()
                .flat_map(|chunk| chunk.iter().flat_map(|(_, jobs)| jobs.iter()))
                .map(|job| (job.clone(), None))
                .collect();
            results.extend(get_all(ctx, members, false).await);
        }
        results
    }

    /// A `find` entry: list the matches, add the new ones, drop (and with `prune`, remove
    /// the targets of) the ones that went, then sync like `list`.
    async fn discover(&mut self, ctx: &Ctx) -> Cycle {
        let started = Instant::now();
        let Some(find) = self.discovery.as_ref().and_then(|d| d.entry.find.clone()) else {
            return Cycle::of(Vec::new());
        };
        let tag_keys: Vec<String> = find.tags.keys().cloned().collect();
        let listed = self.list(ctx, &tag_keys).await;
        let Some(d) = self.discovery.as_mut() else {
            return Cycle::of(Vec::new());
        };
        let entry = d.entry.name.clone();
        let listed = match listed {
            Ok(listed) => listed,
            Err(err) => {
                let err = self.source.error_for(&d.entry, LIST, err);
                ctx.metrics.secret_synced(&entry, Outcome::Failure);
                tracing::warn!(secret = %entry, reason = err.kind(), "discovery failed; the secrets found before are kept: {err}");
                return Cycle {
                    failures: vec![err.into()],
                    all_failed: true,
                };
            }
        };
        let matches: Vec<Listed> = listed.into_iter().filter(|l| finds(&find, l)).collect();
        let names: BTreeSet<&str> = matches.iter().map(|l| l.name.as_str()).collect();
        let gone: Vec<String> = d
            .known
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .cloned()
            .collect();
        for name in gone {
            let Some(job) = d.known.remove(&name) else {
                continue;
            };
            ctx.metrics.forget_secret(job.name());
            ctx.readiness.forget(job.name());
            if d.entry.prune {
                tracing::info!(secret = %job.name(), "no longer matches `find`: removing its targets (prune)");
                job.remove_targets().await;
            } else {
                tracing::info!(secret = %job.name(), "no longer matches `find`: its files are kept (prune: false)");
            }
        }
        for listed in &matches {
            if d.known.contains_key(&listed.name) || d.refused.contains(&listed.name) {
                continue;
            }
            match member(d, &self.source, &listed.name) {
                Ok(job) => {
                    tracing::info!(secret = %job.name(), "found a new secret matching `find`");
                    ctx.metrics.register_secret(job.name());
                    ctx.readiness.expect(job.name());
                    d.known.insert(listed.name.clone(), Arc::new(job));
                }
                Err(reason) => {
                    tracing::warn!(secret = %entry, matched = %listed.name, "cannot sync a matching secret: {reason}");
                    d.refused.insert(listed.name.clone());
                }
            }
        }
        ctx.metrics.secret_synced(&entry, Outcome::Success);
        ctx.readiness.synced(&entry);
        let members: Vec<Arc<SecretJob>> = d.known.values().cloned().collect();
        let results = sync_listed(ctx, &self.source, &members, Ok(matches), started).await;
        let mut cycle = Cycle::of(results);
        // The listing itself worked: that is progress, even with every member failing.
        cycle.all_failed = false;
        cycle
    }
}

/// ListSecrets filters by name prefix and tag *key*; the tag values are matched here.
fn finds(find: &crate::config::Find, listed: &Listed) -> bool {
    find.name_prefix
        .as_ref()
        .is_none_or(|p| listed.name.starts_with(p.as_str()))
        && find.tags.iter().all(|(k, v)| listed.tags.get(k) == Some(v))
}

/// A member of a `find` entry for the matching secret `name`.
fn member(d: &Discovery, source: &SecretsManager, name: &str) -> Result<SecretJob, String> {
    // Names may hold '/', which becomes a subdirectory; '.' and '..' segments would
    // leave the target's directory.
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(
            "its name has an empty, \".\" or \"..\" segment, so it cannot be placed in a path"
                .into(),
        );
    }
    let mut config = d.entry.clone();
    config.name = format!("{}/{}", d.entry.name, name);
    config.secret_id = name.to_owned();
    config.find = None;
    config.prune = false;
    for target in &mut config.targets {
        let path = match target {
            crate::config::Target::File(f) => &mut f.dir,
            crate::config::Target::SingleFile(f) => &mut f.path,
            crate::config::Target::KubernetesSecret(_) => continue,
        };
        *path = path
            .to_string_lossy()
            .replace(NAME_PLACEHOLDER, name)
            .into();
    }
    // `find` entries have file targets only, so no Kubernetes client is needed.
    SecretJob::new(
        config,
        source.clone(),
        d.failover.clone(),
        d.changed.clone(),
        None,
    )
    .map_err(|e| e.to_string())
}

impl Cycle {
    fn of(results: Vec<Result<SyncOutcome, SyncError>>) -> Self {
        let total = results.len();
        let failures: Vec<SyncError> = results.into_iter().filter_map(Result::err).collect();
        Self {
            all_failed: total > 0 && failures.len() == total,
            failures,
        }
    }
}

/// GetSecretValue for each secret (pinned to a version when one is given), in parallel
/// up to the fetch permits.
async fn get_all(
    ctx: &Ctx,
    members: Vec<(Arc<SecretJob>, Option<String>)>,
    skip_primary: bool,
) -> Vec<Result<SyncOutcome, SyncError>> {
    if let [(job, pinned)] = members.as_slice() {
        return vec![ctx.sync_one(job, pinned.as_deref(), skip_primary).await];
    }
    // Never more tasks than fetches can run: each waiting task would hold its request state.
    let mut set = JoinSet::new();
    let mut pending = members.into_iter();
    let mut results = Vec::new();
    loop {
        while set.len() < MAX_CONCURRENT_FETCHES {
            let Some((job, pinned)) = pending.next() else {
                break;
            };
            let ctx = ctx.clone();
            set.spawn(async move { ctx.sync_one(&job, pinned.as_deref(), skip_primary).await });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        results.push(match joined {
            Ok(result) => result,
            Err(e) => Err(SyncError::WriterPanicked {
                secret: "(unknown)".into(),
                reason: e.to_string(),
            }),
        });
    }
    results
}

enum ChunkResult {
    Done(Vec<Result<SyncOutcome, SyncError>>),
    /// BatchGetSecretValue is not allowed; the caller falls back to `get`.
    Denied(Chunk),
}

async fn batch_chunk(ctx: Ctx, source: SecretsManager, chunk: Chunk, auto: bool) -> ChunkResult {
    let started = Instant::now();
    let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
    let answer = {
        let _permit = ctx.permit().await;
        source.batch_get(&ids).await
    };
    let mut results = Vec::new();
    match answer {
        Err(CallError::Aws(info)) if auto && info.class == Class::AccessDenied => {
            return ChunkResult::Denied(chunk);
        }
        Err(err) => {
            for job in chunk.iter().flat_map(|(_, jobs)| jobs) {
                let result = if err.is_transient() && job.failover.is_some() {
                    ctx.sync_one(job, None, true).await
                } else {
                    let err = source.error_for(&job.config, crate::source::BATCH, err.clone());
                    ctx.finish(job, Err(err), started).await
                };
                results.push(result);
            }
        }
        Ok((values, errors)) => {
            for (id, jobs) in chunk.iter() {
                let value = values
                    .iter()
                    .find(|v| id_matches(id, v.name.as_deref(), v.arn.as_deref()));
                let error = errors.iter().find(|(secret_id, _)| secret_id == id);
                for job in jobs {
                    let result = match (value, error) {
                        (Some(value), _) => {
                            let polled =
                                value.fetched.clone().map(Polled::Value).ok_or_else(|| {
                                    SourceError::Empty {
                                        secret: job.config.name.clone(),
                                        secret_id: id.clone(),
                                    }
                                });
                            ctx.finish(job, polled, started).await
                        }
                        (None, Some((_, info)))
                            if info.class.is_transient() && job.failover.is_some() =>
                        {
                            ctx.sync_one(job, None, true).await
                        }
                        // Per-secret errors are about reading that secret: GetSecretValue's
                        // permission, its KMS key, its existence.
                        (None, Some((_, info))) => {
                            let err =
                                source.error_for(&job.config, GET, CallError::Aws(info.clone()));
                            ctx.finish(job, Err(err), started).await
                        }
                        (None, None) => ctx.sync_one(job, None, false).await,
                    };
                    results.push(result);
                }
            }
        }
    }
    ChunkResult::Done(results)
}

/// Syncs `members` against a ListSecrets result: a secret whose listed version is the one
/// already written costs no call; the others are read at exactly the listed version.
async fn sync_listed(
    ctx: &Ctx,
    source: &SecretsManager,
    members: &[Arc<SecretJob>],
    listed: Result<Vec<Listed>, CallError>,
    started: Instant,
) -> Vec<Result<SyncOutcome, SyncError>> {
    let listed = match listed {
        Ok(listed) => listed,
        Err(err) => {
            let mut results = Vec::new();
            if err.is_transient() && members.iter().any(|m| m.failover.is_some()) {
                let members = members.iter().map(|m| (m.clone(), None)).collect();
                return get_all(ctx, members, true).await;
            }
            for job in members {
                let err = source.error_for(&job.config, LIST, err.clone());
                results.push(ctx.finish(job, Err(err), started).await);
            }
            return results;
        }
    };
    let by_name: BTreeMap<&str, &Listed> = listed.iter().map(|l| (l.name.as_str(), l)).collect();
    let by_arn: BTreeMap<&str, &Listed> = listed.iter().map(|l| (l.arn.as_str(), l)).collect();
    let mut results = Vec::new();
    let mut to_fetch = Vec::new();
    for job in members {
        let id = job.config.secret_id.as_str();
        let entry = by_name
            .get(id)
            .or_else(|| by_arn.get(id))
            .copied()
            .or_else(|| {
                // An ARN without its random suffix sorts before the full ARN, though
                // secrets whose names extend it (`app/db-2-...`) may sort in between.
                by_arn
                    .range(id..)
                    .take_while(|(arn, _)| arn.starts_with(id))
                    .map(|(_, l)| *l)
                    .find(|l| id_matches(id, None, Some(&l.arn)))
            });
        let stage = match &job.config.version {
            VersionSelector::Stage(stage) => stage.as_str(),
            VersionSelector::Id(_) => "AWSCURRENT",
        };
        match entry.and_then(|l| l.version_with(stage)) {
            Some(version) if job.last_version_is(version).await => {
                let polled = Polled::Same {
                    version: version.to_owned(),
                    region: source.region().to_owned(),
                };
                results.push(ctx.finish(job, Ok(polled), started).await);
            }
            version => to_fetch.push((job.clone(), version.map(str::to_owned))),
        }
    }
    results.extend(get_all(ctx, to_fetch, false).await);
    results
}
