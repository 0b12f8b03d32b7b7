//! A Parameter Store group's poll. Every member reads with the same identity in the same
//! region, so names are read ten a GetParameters call (decrypted), and paths with
//! GetParametersByPath. Listed (`ParametersListed`), DescribeParameters first compares
//! versions, fifty names a call and one listing per path, with no value read and nothing
//! decrypted: only what changed is read. A parameter pinned at a version is read once; one
//! at a label is read every poll (a listing shows only the latest version, not where a label
//! points). Under `auto`, a denied DescribeParameters is not asked again.

use super::{Group, Reader, Tally};
use crate::aws::Class;
use crate::config::{ParameterSource, Selector};
use crate::daemon::job::{Ctx, Polled, SecretJob};
use crate::source::parameter_store::{Describe, ParameterStore, BY_PATH, DESCRIBE, GET_PARAMETERS};
use crate::source::parameters::{answer, chunks, listed_path_version};
use crate::source::CallError;
use std::sync::Arc;
use tokio::time::Instant;

/// DescribeParameters' name filter takes at most fifty values.
const DESCRIBE_NAMES: usize = 50;

impl Group {
    pub(super) async fn poll_parameters(&mut self, ctx: &Ctx) -> Tally {
        let Reader::ParameterStore(store) = self.reader.clone() else {
            return self.get(ctx).await;
        };
        let started = Instant::now();
        let listed = self.strategy == crate::source::plan::Strategy::ParametersListed;
        let mut results = Tally::default();
        let mut names = Vec::new();
        let mut paths = Vec::new();
        for job in &self.members {
            match job.parameter().map(|(_, p)| p) {
                Some(ParameterSource::Path { .. }) => paths.push(job.clone()),
                Some(ParameterSource::One { .. }) => names.push(job.clone()),
                None => results.push(ctx.sync_one(job, false).await),
            }
        }
        let to_read = if listed {
            match self
                .compare_names(ctx, &store, names, started, &mut results)
                .await
            {
                Ok(to_read) => to_read,
                Err(all) => all,
            }
        } else {
            unpinned(ctx, &store, names, started, &mut results).await
        };
        results.extend(read_names(ctx, &store, &to_read, started).await);
        for job in paths {
            // A denied listing (of the names, or of a path before) stops it under `auto`.
            let listed = self.strategy == crate::source::plan::Strategy::ParametersListed;
            let (result, denied) = read_path(ctx, &store, &job, listed, started).await;
            if denied && self.auto {
                self.stop_listing(&store);
            }
            results.push(result);
        }
        results
    }

    /// Under `auto`, after DescribeParameters was denied: read without comparing versions
    /// from now on, said once.
    fn stop_listing(&mut self, store: &ParameterStore) {
        tracing::warn!(
            principal = %store.principal(),
            region = %store.region(),
            parameters = self.members.len(),
            "DescribeParameters is denied (fetchStrategy auto): reading these parameters without comparing versions from now on; allow ssm:DescribeParameters on \"*\" to save calls and KMS decryptions"
        );
        self.strategy = crate::source::plan::Strategy::Parameters;
    }

    /// Settles with a listing the named members whose version is the one written; returns
    /// those to read. `Err` with every member to read when the listing is denied under
    /// `auto` (which then reads without it from now on).
    async fn compare_names(
        &mut self,
        ctx: &Ctx,
        store: &ParameterStore,
        names: Vec<Arc<SecretJob>>,
        started: Instant,
        results: &mut Tally,
    ) -> Result<Vec<Arc<SecretJob>>, Vec<Arc<SecretJob>>> {
        let mut to_read = Vec::new();
        let mut comparable = Vec::new();
        for job in unpinned(ctx, store, names, started, results).await {
            let written = job.written().await;
            match job.parameter().map(|(_, p)| p) {
                // Nothing written yet: nothing to compare, the read is needed anyway.
                _ if !written => to_read.push(job),
                // A listing shows the latest version, not a label's.
                Some(ParameterSource::One { selector: None, .. }) => comparable.push(job),
                _ => to_read.push(job),
            }
        }
        for batch in comparable.chunks(DESCRIBE_NAMES) {
            let asked: Vec<&str> = batch.iter().map(|j| j.secret_id()).collect();
            let listed = {
                let _permit = ctx.permit().await;
                store.describe(Describe::Names(&asked)).await
            };
            match listed {
                Ok(listed) => {
                    for job in batch {
                        let seen = listed.iter().find(|d| d.name == job.secret_id());
                        let version = seen.map(|d| d.version.to_string());
                        match version {
                            Some(version) if job.last_version_is(&version).await => {
                                let same = Polled::Same {
                                    version,
                                    region: store.region().to_owned(),
                                };
                                results.push(ctx.finish(job, Ok(same), started).await);
                            }
                            // Changed, never written, or not listed (GetParameters then says
                            // why: missing, or not readable).
                            _ => to_read.push(job.clone()),
                        }
                    }
                }
                Err(CallError::Aws(info)) if self.auto && info.class == Class::AccessDenied => {
                    self.stop_listing(store);
                    let mut all = to_read;
                    all.extend(comparable);
                    return Err(all);
                }
                Err(err) => {
                    for job in batch {
                        let err = store.error_for(&job.wanted, DESCRIBE, err.clone());
                        results.push(ctx.finish(job, Err(err), started).await);
                    }
                }
            }
        }
        Ok(to_read)
    }
}

/// The members to read: those pinned at a version that was written are settled with no
/// call (that version never changes), so that they stay synced in readiness and metrics.
async fn unpinned(
    ctx: &Ctx,
    store: &ParameterStore,
    names: Vec<Arc<SecretJob>>,
    started: Instant,
    results: &mut Tally,
) -> Vec<Arc<SecretJob>> {
    let mut out = Vec::with_capacity(names.len());
    for job in names {
        let pinned = match job.parameter().map(|(_, p)| p) {
            Some(ParameterSource::One {
                selector: Some(Selector::Version(version)),
                ..
            }) => Some(version.to_string()),
            _ => None,
        };
        match pinned {
            Some(version) if job.last_version_is(&version).await => {
                let same = Polled::Same {
                    version,
                    region: store.region().to_owned(),
                };
                results.push(ctx.finish(&job, Ok(same), started).await);
            }
            _ => out.push(job),
        }
    }
    out
}

/// GetParameters, ten distinct names a call; each answer applied to its member.
async fn read_names(
    ctx: &Ctx,
    store: &ParameterStore,
    jobs: &[Arc<SecretJob>],
    started: Instant,
) -> Tally {
    let mut results = Tally::default();
    let spelled: Vec<&str> = jobs.iter().map(|j| j.secret_id()).collect();
    for call in chunks(&spelled) {
        let asked: Vec<&str> = call.iter().map(|&i| spelled[i]).collect();
        let answer_of = {
            let _permit = ctx.permit().await;
            store.get(&asked).await
        };
        for &i in &call {
            let job = &jobs[i];
            let polled = match &answer_of {
                Ok((found, _)) => match answer(spelled[i], found) {
                    Some(parameter) => Ok(Polled::Value(store.fetched(parameter))),
                    None => Err(store.not_found(&job.wanted)),
                },
                Err(err) => Err(store.error_for(&job.wanted, GET_PARAMETERS, err.clone())),
            };
            results.push(ctx.finish(job, polled, started).await);
        }
    }
    results
}

/// A path: listed first when `listed` (its version is the digest of its names and versions),
/// read with GetParametersByPath when that changed. Also says whether the listing was denied.
async fn read_path(
    ctx: &Ctx,
    store: &ParameterStore,
    job: &SecretJob,
    listed: bool,
    started: Instant,
) -> (
    Result<crate::daemon::SyncOutcome, crate::daemon::SyncError>,
    bool,
) {
    let Some((_, ParameterSource::Path { path, recursive })) = job.parameter() else {
        return (ctx.sync_one(job, false).await, false);
    };
    let mut denied = false;
    if listed && job.written().await {
        let described = {
            let _permit = ctx.permit().await;
            store
                .describe(Describe::Path {
                    path,
                    recursive: *recursive,
                })
                .await
        };
        match described {
            Ok(described) => {
                if let Some(version) = listed_path_version(&described) {
                    if job.last_version_is(&version).await {
                        let same = Polled::Same {
                            version,
                            region: store.region().to_owned(),
                        };
                        return (ctx.finish(job, Ok(same), started).await, false);
                    }
                }
            }
            // The read below reports its own error, which names what to fix for the
            // value; a listing that failed only costs this poll its saving.
            Err(err) => {
                denied = matches!(&err, CallError::Aws(info) if info.class == Class::AccessDenied);
                tracing::debug!(secret = %job.name(), reason = err.kind(), "DescribeParameters of a path failed; reading the path");
            }
        }
    }
    let found = {
        let _permit = ctx.permit().await;
        store.by_path(path, *recursive).await
    };
    let polled = match found {
        Ok(found) => store
            .path_fetched(&job.wanted, path, &found)
            .map(Polled::Value),
        Err(err) => Err(store.error_for(&job.wanted, BY_PATH, err)),
    };
    (ctx.finish(job, polled, started).await, denied)
}
