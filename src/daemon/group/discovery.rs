//! A `find` entry's group: its members are learnt from a ListSecrets listing on each
//! poll, and the `{{ name }}` placeholder of its targets is filled for each match.

use super::{get_all, unchanged, Cycle, Group, Tally};
use crate::config::SecretConfig;
use crate::daemon::job::{Ctx, Origin, SecretJob};
use crate::source::plan::Strategy;
use crate::source::{ListQuery, Listed, SecretsManager, Wanted, LIST};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::time::Instant;

/// The state of a `find` entry.
pub(crate) struct Discovery {
    pub(super) entry: SecretConfig,
    failover: Option<SecretsManager>,
    /// Shared by every member; `None` without `onChange`.
    changed: Option<crate::notify::Changed>,
    /// Secret name → its member.
    known: BTreeMap<String, Member>,
    /// Matches that cannot be synced (their name cannot name a path), warned about once.
    refused: BTreeSet<String>,
}

impl Discovery {
    /// The member syncing the secret `name`, if the entry knows it.
    pub(super) fn member_named(&self, name: &str) -> Option<Arc<SecretJob>> {
        self.known.get(name).map(|m| m.job.clone())
    }
}

/// A secret a `find` entry syncs.
struct Member {
    job: Arc<SecretJob>,
    /// Shown by the listing of the poll in progress.
    seen: bool,
}

// === impl Group (find) ===

impl Group {
    pub(crate) fn discovering(
        entry: SecretConfig,
        source: SecretsManager,
        failover: Option<SecretsManager>,
        changed: Option<crate::notify::Changed>,
    ) -> Self {
        let interval = entry.refresh_interval;
        let mut group = Self::new(
            Strategy::Find,
            false,
            interval,
            Vec::new(),
            super::Reader::SecretsManager(source),
        );
        group.discovery = Some(Discovery {
            entry,
            failover,
            changed,
            known: BTreeMap::new(),
            refused: BTreeSet::new(),
        });
        group
    }

    /// A `find` entry's name prefix (`Some(None)`: it finds by tags only); `None` when this
    /// is not a find group.
    pub(crate) fn find_prefix(&self) -> Option<Option<&str>> {
        let find = self.discovery.as_ref()?.entry.find.as_ref()?;
        Some(find.name_prefix.as_deref())
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
        let source = self.secrets_manager()?;
        let prefixes: Vec<String> = find.name_prefix.iter().cloned().collect();
        let tag_keys: Vec<String> = find.tags.keys().cloned().collect();
        Some(match source.list(&prefixes, &tag_keys).await {
            Ok(listed) => Ok(listed
                .into_iter()
                .filter(|l| finds(&find, l))
                .map(|l| l.name)
                .collect()),
            Err(e) => Err(source
                .error_for(&Wanted::of(&discovery.entry), LIST, e)
                .to_string()),
        })
    }

    /// A `find` entry: list the matches page by page, adding the new ones and settling each
    /// page's members as it arrives (like `list`: an unchanged member costs no call), so a
    /// poll holds one page, not the whole listing (at 100,000 matches that was ~14 MB).
    /// Only a complete listing drops (and with `prune`, removes the targets of) the members
    /// it no longer showed: a listing that failed half-way keeps them all.
    pub(super) async fn discover(&mut self, ctx: &Ctx) -> Cycle {
        let started = Instant::now();
        let Some(find) = self.discovery.as_ref().and_then(|d| d.entry.find.clone()) else {
            return Cycle::of(Tally::default());
        };
        let query = ListQuery {
            name_prefixes: find.name_prefix.iter().cloned().collect(),
            tag_keys: find.tags.keys().cloned().collect(),
            ..ListQuery::default()
        };
        let Some(source) = self.secrets_manager().cloned() else {
            return Cycle::of(Tally::default());
        };
        let Some(d) = self.discovery.as_mut() else {
            return Cycle::of(Tally::default());
        };
        let entry = d.entry.name.clone();
        for member in d.known.values_mut() {
            member.seen = false;
        }
        let mut pages = source.pages(&query);
        let (mut results, mut to_fetch, mut found) = (Tally::default(), Vec::new(), false);
        loop {
            let page = {
                let _permit = ctx.permit().await;
                pages.next_page().await
            };
            let page = match page {
                None => break,
                Some(Ok(page)) => page,
                Some(Err(err)) => {
                    let err = source.error_for(&Wanted::of(&d.entry), LIST, err);
                    ctx.metrics.sync_failed(&entry, started.elapsed());
                    tracing::warn!(secret = %entry, reason = err.kind(), "discovery failed; the secrets found before are kept: {err}");
                    // The members the pages before it showed are still synced.
                    get_all(ctx, to_fetch, false).await;
                    if found {
                        compact(ctx);
                    }
                    return Cycle {
                        failures: vec![err.into()],
                        all_failed: true,
                    };
                }
            };
            for listed in page.iter().filter(|l| finds(&find, l)) {
                let job = match d.known.get_mut(&listed.name) {
                    Some(member) => {
                        member.seen = true;
                        member.job.clone()
                    }
                    None if d.refused.contains(&listed.name) => continue,
                    None => match member(d, &source, &listed.name) {
                        Ok(job) => {
                            found = true;
                            tracing::info!(secret = %job.name(), "found a new secret matching `find`");
                            ctx.metrics
                                .register_secret(job.shared_name().clone(), job.refresh_interval);
                            ctx.readiness.expect(job.shared_name().clone());
                            let job = Arc::new(job);
                            let member = Member {
                                job: job.clone(),
                                seen: true,
                            };
                            d.known.insert(listed.name.clone(), member);
                            job
                        }
                        Err(reason) => {
                            tracing::warn!(secret = %entry, matched = %listed.name, "cannot sync a matching secret: {reason}");
                            d.refused.insert(listed.name.clone());
                            continue;
                        }
                    },
                };
                match unchanged(ctx, &source, &job, listed, started).await {
                    Some(result) => results.push(result),
                    None => to_fetch.push(job),
                }
            }
        }
        let gone: Vec<String> = d
            .known
            .iter()
            .filter(|(_, member)| !member.seen)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            let Some(Member { job, .. }) = d.known.remove(&name) else {
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
        if found {
            compact(ctx);
        }
        ctx.metrics
            .sync_succeeded(&entry, started.elapsed(), None, None);
        ctx.readiness.synced(&entry);
        results.extend(get_all(ctx, to_fetch, false).await);
        let mut cycle = Cycle::of(results);
        // The listing itself worked: that is progress, even with every member failing.
        cycle.all_failed = false;
        cycle
    }
}

/// Packs the records that new members were added to one by one.
fn compact(ctx: &Ctx) {
    ctx.metrics.compact_secrets();
    ctx.readiness.compact();
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
    let config = d.entry.find_member(name)?;
    // `find` entries have file targets only, so no Kubernetes client is needed.
    let origin = Origin::SecretsManager {
        source: source.clone(),
        failover: d.failover.clone(),
    };
    SecretJob::new(&config, origin, d.changed.clone(), None).map_err(|e| e.to_string())
}
