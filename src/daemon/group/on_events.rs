//! A group's syncs asked by change events (see `daemon::events`), between its polls: each
//! member named is read with GetSecretValue, unless the event named the version it already
//! wrote; a name a `find` entry does not know yet makes the entry list again.

use super::{Group, MAX_CONCURRENT_FETCHES};
use crate::daemon::events::Wanted;
use crate::daemon::job::{Ctx, SecretJob, SyncOutcome};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::task::JoinSet;

impl Group {
    /// Syncs what the events asked since the last time.
    pub(crate) async fn on_events(&mut self, ctx: &Ctx) {
        let Some(pending) = self.events.clone() else {
            return;
        };
        let asked = pending.take();
        let mut jobs: Vec<(Arc<SecretJob>, Wanted)> = asked
            .members
            .into_iter()
            .filter_map(|w| Some((self.members.get(w.member as usize)?.clone(), w)))
            .collect();
        let mut found = Vec::new();
        let mut list = false;
        for (name, wanted) in asked.found {
            match self.discovery.as_ref().and_then(|d| d.member_named(&name)) {
                Some(job) if !wanted.list => found.push((job, wanted)),
                _ => list = true,
            }
        }
        if list {
            // The listing settles every member, the known ones named too, and drops (with
            // `prune`, removes) the ones gone.
            tracing::debug!("a change event names a secret this find entry does not know, or one created, deleted or restored: listing");
            let _ = self.discover(ctx).await;
        } else {
            jobs.extend(found);
        }
        sync_asked(ctx, jobs).await;
    }
}

async fn sync_asked(ctx: &Ctx, jobs: Vec<(Arc<SecretJob>, Wanted)>) {
    let mut set = JoinSet::new();
    let mut jobs = jobs.into_iter();
    loop {
        while set.len() < MAX_CONCURRENT_FETCHES {
            let Some((job, wanted)) = jobs.next() else {
                break;
            };
            if let Some(version) = &wanted.version {
                if job.last_version_is(version).await {
                    tracing::debug!(secret = %job.name(), "change event for the version already written: nothing to read");
                    continue;
                }
            }
            let ctx = ctx.clone();
            set.spawn(async move {
                let outcome = ctx.sync_one(&job, false).await;
                if let (Ok(SyncOutcome::Written), Some(time)) = (&outcome, wanted.time) {
                    let delay = SystemTime::now().duration_since(time).unwrap_or_default();
                    ctx.metrics.event_delay(delay.as_secs_f64());
                }
            });
        }
        if set.join_next().await.is_none() {
            break;
        }
    }
}
