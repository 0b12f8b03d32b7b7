//! One poll of a group of secrets (see `plan` for how groups are formed), with the
//! strategy's AWS calls and the fall-backs when they fail:
//! - under `auto`, each poll reads with `batch` or `list`, whichever costs fewer calls by
//!   what the last polls saw (`source::auto`); a denied BatchGetSecretValue or ListSecrets
//!   is not tried again (logged once), and a group with neither left reads with `get`;
//! - a transient failure with a `failoverRegion`: members are read from the replica;
//! - a secret the batch or listing does not mention: read on its own with GetSecretValue,
//!   so that its own error (not found, no permission) is reported.

mod discovery;
mod on_events;
mod parameters;

use discovery::Discovery;

use super::error::SyncError;
use super::job::{Ctx, Polled, SecretJob, SyncOutcome};
use crate::aws::Class;
use crate::config::VersionSelector;
use crate::source::auto::{AutoChoice, Read};
use crate::source::plan::{name_filter, Strategy};
use crate::source::{
    id_matches, CallError, ListQuery, Listed, SecretsManager, SourceError, BATCH_MAX, GET, LIST,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Fetches in flight at once, in both modes: thousands of secrets starting together must
/// not open thousands of connections (and time out on a slow endpoint) at once.
pub(crate) const MAX_CONCURRENT_FETCHES: usize = 16;

/// Secrets read by one BatchGetSecretValue call: for each distinct id, the secrets
/// configured with it (never empty; the id is the first one's).
type Chunk = Arc<[Box<[Arc<SecretJob>]>]>;

pub(crate) struct Group {
    pub(crate) strategy: Strategy,
    auto: bool,
    pub(crate) interval: Duration,
    /// Static members; a `find` group keeps its own in `discovery`.
    pub(crate) members: Vec<Arc<SecretJob>>,
    /// Member indexes sorted by secret id, to settle a listing page by page.
    by_id: Box<[u32]>,
    chunks: Vec<Chunk>,
    /// With `Strategy::Auto`: what the next poll reads with.
    choice: Option<AutoChoice>,
    /// Members that failed at the last poll (all, before the first): a listing cannot settle
    /// them, so `auto` counts a read for each.
    unsettled: usize,
    /// Where the group's own calls (BatchGetSecretValue, ListSecrets; GetParameters,
    /// DescribeParameters) go.
    reader: Reader,
    pub(crate) refresh: Arc<tokio::sync::Notify>,
    discovery: Option<Discovery>,
    /// The syncs change events ask for; `None` without `changeEvents`.
    pub(crate) events: Option<Arc<super::events::Pending>>,
}

/// The client of a group's own calls: every member reads with the same identity in the same
/// region.
#[derive(Clone)]
pub(crate) enum Reader {
    SecretsManager(SecretsManager),
    ParameterStore(crate::source::parameter_store::ParameterStore),
}

/// What one poll of a group did.
pub(crate) struct Cycle {
    pub(crate) failures: Vec<SyncError>,
    /// Nothing succeeded: the group backs off instead of waiting a whole interval.
    pub(crate) all_failed: bool,
}

// === impl Group ===

impl Group {
    pub(crate) fn new(
        strategy: Strategy,
        auto: bool,
        interval: Duration,
        members: Vec<Arc<SecretJob>>,
        reader: Reader,
    ) -> Self {
        let mut ids: Vec<Vec<Arc<SecretJob>>> = Vec::new();
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for job in &members {
            match index.get(job.secret_id()) {
                Some(&i) => ids[i].push(job.clone()),
                None => {
                    index.insert(job.secret_id(), ids.len());
                    ids.push(vec![job.clone()]);
                }
            }
        }
        let ids: Vec<Box<[Arc<SecretJob>]>> = ids.into_iter().map(Vec::into_boxed_slice).collect();
        let chunks = ids.chunks(BATCH_MAX).map(Chunk::from).collect();
        Self {
            strategy,
            auto,
            interval,
            choice: (strategy == Strategy::Auto).then(|| AutoChoice::new(members.len())),
            unsettled: members.len(),
            by_id: sorted_by_id(&members),
            members,
            chunks,
            reader,
            refresh: Arc::new(tokio::sync::Notify::new()),
            discovery: None,
            events: None,
        }
    }

    /// What the group polls, for logs: its `find` entry, its one secret, or how many.
    pub(crate) fn describe(&self) -> String {
        match (self.entry_name(), self.members.as_slice()) {
            (Some(entry), _) => format!("find entry {entry}"),
            (None, [one]) => format!("secret {}", one.name()),
            (None, members) => format!(
                "{} secrets ({}, every {}, first {})",
                members.len(),
                self.strategy.as_str(),
                humantime::format_duration(self.interval),
                members.first().map_or("-", |m| m.name())
            ),
        }
    }

    /// Polls every member once.
    pub(crate) async fn cycle(&mut self, ctx: &Ctx) -> Cycle {
        let read = match (self.strategy, &self.choice) {
            (Strategy::Find, _) => return self.discover(ctx).await,
            (Strategy::Parameters | Strategy::ParametersListed, _) => {
                let cycle = Cycle::of(self.poll_parameters(ctx).await);
                self.unsettled = cycle.failures.len();
                return cycle;
            }
            (Strategy::Auto, Some(choice)) => choice.next(self.unsettled),
            (Strategy::Batch, _) => Read::Batch,
            (Strategy::List, _) => Read::List,
            (Strategy::Get | Strategy::Auto, _) => Read::Get,
        };
        let results = match read {
            Read::Get => self.get(ctx).await,
            Read::Batch => self.batch(ctx).await,
            Read::List => self.list_and_sync(ctx).await,
        };
        let cycle = Cycle::of(results);
        self.unsettled = cycle.failures.len();
        cycle
    }

    async fn get(&self, ctx: &Ctx) -> Tally {
        get_all(ctx, self.members.clone(), false).await
    }

    /// The Secrets Manager client of a Secrets Manager group.
    pub(crate) fn secrets_manager(&self) -> Option<&SecretsManager> {
        match &self.reader {
            Reader::SecretsManager(source) => Some(source),
            Reader::ParameterStore(_) => None,
        }
    }

    /// The region the group reads in.
    pub(crate) fn source_region(&self) -> &str {
        match &self.reader {
            Reader::SecretsManager(source) => source.region(),
            Reader::ParameterStore(store) => store.region(),
        }
    }

    /// One listing, then a read of each secret it does not show unchanged. Under `auto`, a
    /// denied listing reads with the next cheapest way instead, and a listing that matched
    /// far more secrets than the group's is not made again.
    async fn list_and_sync(&mut self, ctx: &Ctx) -> Tally {
        // Only Secrets Manager groups list; anything else reads each member.
        let Some(source) = self.secrets_manager().cloned() else {
            return self.get(ctx).await;
        };
        let started = Instant::now();
        let query = ListQuery {
            name_prefixes: name_filter(self.members.iter().map(|m| m.secret_id())),
            ..ListQuery::default()
        };
        let mut pages = source.pages(&query);
        let mut settle = Settle::new(&self.members, &self.by_id);
        let mut listed = 0;
        let mut failed = None;
        loop {
            let page = {
                let _permit = ctx.permit().await;
                pages.next_page().await
            };
            match page {
                None => break,
                Some(Ok(page)) => {
                    listed += page.len();
                    settle.page(ctx, &source, &page, started).await;
                }
                Some(Err(err)) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        drop(pages);
        if let Some(choice) = &mut self.choice {
            match &failed {
                // Refused before any page: the next cheapest reading, now and from then on.
                Some(CallError::Aws(info)) if info.class == Class::AccessDenied && listed == 0 => {
                    if choice.denied(Read::List) {
                        tracing::warn!(
                            principal = %source.principal(),
                            region = %source.region(),
                            secrets = self.members.len(),
                            "ListSecrets is denied (fetchStrategy auto): no longer comparing versions before reading; allow secretsmanager:ListSecrets on \"*\" to save calls"
                        );
                    }
                    let next = choice.next(self.unsettled);
                    drop(settle);
                    return match next {
                        Read::Batch => self.batch(ctx).await,
                        Read::Get | Read::List => self.get(ctx).await,
                    };
                }
                None => {
                    if choice.listed(listed) {
                        tracing::info!(
                            principal = %source.principal(),
                            region = %source.region(),
                            secrets = self.members.len(),
                            listed,
                            "the ListSecrets name filter matches far more secrets than this group has (fetchStrategy auto): reading it without the listing from now on; give the group's names a common prefix to save calls"
                        );
                    }
                }
                Some(_) => {}
            }
        }
        match failed {
            Some(err) => settle.failed(ctx, &source, err, started).await,
            None => settle.finish(ctx).await,
        }
    }

    async fn batch(&mut self, ctx: &Ctx) -> Tally {
        let Some(source) = self.secrets_manager().cloned() else {
            return self.get(ctx).await;
        };
        let mut set = JoinSet::new();
        let mut chunks = self.chunks.iter();
        let mut results = Tally::default();
        let mut denied = Vec::new();
        loop {
            while set.len() < MAX_CONCURRENT_FETCHES {
                let Some(chunk) = chunks.next() else {
                    break;
                };
                set.spawn(batch_chunk(
                    ctx.clone(),
                    source.clone(),
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
            let first = match &mut self.choice {
                Some(choice) => choice.denied(Read::Batch),
                None => {
                    self.strategy = Strategy::Get;
                    true
                }
            };
            if first {
                tracing::warn!(
                    principal = %source.principal(),
                    region = %source.region(),
                    secrets = self.members.len(),
                    "BatchGetSecretValue is denied (fetchStrategy auto): reading these secrets without it from now on; allow secretsmanager:BatchGetSecretValue on \"*\" to save calls"
                );
            }
            let members = denied
                .iter()
                .flat_map(|chunk| chunk.iter().flat_map(|jobs| jobs.iter()))
                .cloned()
                .collect();
            results.extend(get_all(ctx, members, false).await);
        }
        results
    }
}

/// What a poll's syncs came to, counted as they finish: how many, and the failures. (A
/// vector of every result cost ~2 MB per poll at 10,000 secrets.)
#[derive(Default)]
pub(crate) struct Tally {
    total: usize,
    failures: Vec<SyncError>,
}

// === impl Tally ===

impl Tally {
    fn of(result: Result<SyncOutcome, SyncError>) -> Self {
        let mut tally = Self::default();
        tally.push(result);
        tally
    }

    fn push(&mut self, result: Result<SyncOutcome, SyncError>) {
        self.total += 1;
        if let Err(e) = result {
            self.failures.push(e);
        }
    }

    fn extend(&mut self, other: Tally) {
        self.total += other.total;
        self.failures.extend(other.failures);
    }
}

// === impl Cycle ===

impl Cycle {
    fn of(results: Tally) -> Self {
        Self {
            all_failed: results.total > 0 && results.failures.len() == results.total,
            failures: results.failures,
        }
    }
}

/// GetSecretValue for each secret, in parallel up to the fetch permits.
async fn get_all(ctx: &Ctx, members: Vec<Arc<SecretJob>>, skip_primary: bool) -> Tally {
    if let [job] = members.as_slice() {
        return Tally::of(ctx.sync_one(job, skip_primary).await);
    }
    // Never more tasks than fetches can run: each waiting task would hold its request state.
    let mut set = JoinSet::new();
    let mut pending = members.into_iter();
    let mut results = Tally::default();
    loop {
        while set.len() < MAX_CONCURRENT_FETCHES {
            let Some(job) = pending.next() else {
                break;
            };
            let ctx = ctx.clone();
            set.spawn(async move { ctx.sync_one(&job, skip_primary).await });
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
    Done(Tally),
    /// BatchGetSecretValue is not allowed; the caller falls back to `get`.
    Denied(Chunk),
}

async fn batch_chunk(ctx: Ctx, source: SecretsManager, chunk: Chunk, auto: bool) -> ChunkResult {
    let started = Instant::now();
    let ids: Vec<&str> = chunk
        .iter()
        .filter_map(|jobs| jobs.first())
        .map(|job| job.secret_id())
        .collect();
    let answer = {
        let _permit = ctx.permit().await;
        source.batch_get(&ids).await
    };
    let mut results = Tally::default();
    match answer {
        Err(CallError::Aws(info)) if auto && info.class == Class::AccessDenied => {
            return ChunkResult::Denied(chunk);
        }
        Err(err) => {
            for job in chunk.iter().flat_map(|jobs| jobs.iter()) {
                let result = if err.is_transient() && job.has_failover() {
                    ctx.sync_one(job, true).await
                } else {
                    let err = source.error_for(&job.wanted, crate::source::BATCH, err.clone());
                    ctx.finish(job, Err(err), started).await
                };
                results.push(result);
            }
        }
        Ok((values, errors)) => {
            for jobs in chunk.iter() {
                let Some(id) = jobs.first().map(|job| job.secret_id()) else {
                    continue;
                };
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
                                        secret: job.name().to_owned(),
                                        secret_id: id.to_owned(),
                                    }
                                });
                            ctx.finish(job, polled, started).await
                        }
                        (None, Some((_, info)))
                            if info.class.is_transient() && job.has_failover() =>
                        {
                            ctx.sync_one(job, true).await
                        }
                        // Per-secret errors are about reading that secret: GetSecretValue's
                        // permission, its KMS key, its existence.
                        (None, Some((_, info))) => {
                            let err =
                                source.error_for(&job.wanted, GET, CallError::Aws(info.clone()));
                            ctx.finish(job, Err(err), started).await
                        }
                        (None, None) => ctx.sync_one(job, false).await,
                    };
                    results.push(result);
                }
            }
        }
    }
    ChunkResult::Done(results)
}

/// A listed member whose version at its stage is the one already written is settled with no
/// call (`Some`, its outcome); `None`: it must be read, at its own stage, not at the listed
/// version (the listing may lag, and a lagging one must not bring an older version back).
async fn unchanged(
    ctx: &Ctx,
    source: &SecretsManager,
    job: &SecretJob,
    listed: &Listed,
    started: Instant,
) -> Option<Result<SyncOutcome, SyncError>> {
    let stage = match &job.wanted.version {
        VersionSelector::Stage(stage) => stage.as_ref(),
        VersionSelector::Id(_) => crate::config::DEFAULT_VERSION_STAGE,
    };
    let version = listed.version_with(stage)?;
    if !job.last_version_is(version).await {
        return None;
    }
    let polled = Polled::Same {
        version: version.to_owned(),
        region: source.region().to_owned(),
    };
    Some(ctx.finish(job, Ok(polled), started).await)
}

/// Member indexes in the order of their secret ids, to find the members a listed secret is.
fn sorted_by_id(members: &[Arc<SecretJob>]) -> Box<[u32]> {
    let mut by_id: Vec<u32> = (0..members.len())
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    by_id.sort_by(|&a, &b| {
        members[a as usize]
            .secret_id()
            .cmp(members[b as usize].secret_id())
    });
    by_id.into_boxed_slice()
}

/// Syncs members against a ListSecrets listing as its pages arrive: a secret whose listed
/// version is the one already written costs no call; the others are read with
/// GetSecretValue at their own stage, not at the listed version: the listing may lag, and a
/// lagging one must not bring an older version back. A member no page shows is read on its
/// own, so that its own error (not found, no permission) is reported.
pub(super) struct Settle<'m> {
    members: &'m [Arc<SecretJob>],
    by_id: &'m [u32],
    seen: Vec<bool>,
    to_fetch: Vec<Arc<SecretJob>>,
    results: Tally,
    matched: Vec<usize>,
}

// === impl Settle ===

impl<'m> Settle<'m> {
    pub(super) fn new(members: &'m [Arc<SecretJob>], by_id: &'m [u32]) -> Self {
        Self {
            members,
            by_id,
            seen: vec![false; members.len()],
            to_fetch: Vec::new(),
            results: Tally::default(),
            matched: Vec::new(),
        }
    }

    /// The members whose secret id is `id`.
    fn with_id(&mut self, id: &str) {
        let members = self.members;
        let id_of = |i: &u32| members.get(*i as usize).map_or("", |m| m.secret_id());
        let from = self.by_id.partition_point(|i| id_of(i) < id);
        for i in &self.by_id[from..] {
            if id_of(i) != id {
                break;
            }
            self.matched.push(*i as usize);
        }
    }

    pub(super) async fn page(
        &mut self,
        ctx: &Ctx,
        source: &SecretsManager,
        page: &[Listed],
        started: Instant,
    ) {
        for listed in page {
            // By name, by the complete ARN, and by the ARN without its random suffix.
            self.matched.clear();
            self.with_id(&listed.name);
            self.with_id(&listed.arn);
            if let Some(partial) = listed
                .arn
                .len()
                .checked_sub(7)
                .and_then(|cut| listed.arn.get(..cut))
                .filter(|p| id_matches(p, None, Some(&listed.arn)))
            {
                self.with_id(partial);
            }
            let matched = std::mem::take(&mut self.matched);
            for &i in &matched {
                let Some(job) = self.members.get(i) else {
                    continue;
                };
                if std::mem::replace(&mut self.seen[i], true) {
                    continue;
                }
                match unchanged(ctx, source, job, listed, started).await {
                    Some(result) => self.results.push(result),
                    None => self.to_fetch.push(job.clone()),
                }
            }
            self.matched = matched;
        }
    }

    /// The listing failed: every member not settled yet has its error (or, when transient and
    /// a failover region is configured, is read from the replica).
    pub(super) async fn failed(
        mut self,
        ctx: &Ctx,
        source: &SecretsManager,
        err: CallError,
        started: Instant,
    ) -> Tally {
        let unseen: Vec<Arc<SecretJob>> = self.unseen().collect();
        if err.is_transient() && unseen.iter().any(|m| m.has_failover()) {
            self.results.extend(get_all(ctx, unseen, true).await);
        } else {
            for job in unseen {
                let err = source.error_for(&job.wanted, LIST, err.clone());
                self.results.push(ctx.finish(&job, Err(err), started).await);
            }
        }
        let to_fetch = std::mem::take(&mut self.to_fetch);
        self.results.extend(get_all(ctx, to_fetch, false).await);
        self.results
    }

    /// The listing is complete: the changed members and the ones it did not show are read.
    pub(super) async fn finish(mut self, ctx: &Ctx) -> Tally {
        let unseen: Vec<Arc<SecretJob>> = self.unseen().collect();
        self.to_fetch.extend(unseen);
        let to_fetch = std::mem::take(&mut self.to_fetch);
        self.results.extend(get_all(ctx, to_fetch, false).await);
        self.results
    }

    fn unseen(&self) -> impl Iterator<Item = Arc<SecretJob>> + '_ {
        self.members
            .iter()
            .zip(&self.seen)
            .filter(|(_, seen)| !**seen)
            .map(|(m, _)| m.clone())
    }
}
