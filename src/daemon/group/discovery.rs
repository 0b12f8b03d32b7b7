//! A `find` entry's group: its members are learnt from a ListSecrets listing on each
//! poll, and the `{{ name }}` placeholder of its targets is filled for each match.

use super::{sorted_by_id, Cycle, Group, Settle, Tally};
use crate::config::SecretConfig;
use crate::daemon::job::{Ctx, SecretJob};
use crate::source::plan::Strategy;
use crate::source::{Listed, SecretsManager, Wanted, LIST};
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
    known: BTreeMap<String, Arc<SecretJob>>,
    /// Matches that cannot be synced (their name cannot name a path), warned about once.
    refused: BTreeSet<String>,
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
            Err(e) => Err(self
                .source
                .error_for(&Wanted::of(&discovery.entry), LIST, e)
                .to_string()),
        })
    }

    /// A `find` entry: list the matches, add the new ones, drop (and with `prune`, remove
    /// the targets of) the ones that went, then sync like `list`.
    pub(super) async fn discover(&mut self, ctx: &Ctx) -> Cycle {
        let started = Instant::now();
        let Some(find) = self.discovery.as_ref().and_then(|d| d.entry.find.clone()) else {
            return Cycle::of(Tally::default());
        };
        let tag_keys: Vec<String> = find.tags.keys().cloned().collect();
        let listed = self.list(ctx, &tag_keys).await;
        let Some(d) = self.discovery.as_mut() else {
            return Cycle::of(Tally::default());
        };
        let entry = d.entry.name.clone();
        let listed = match listed {
            Ok(listed) => listed,
            Err(err) => {
                let err = self.source.error_for(&Wanted::of(&d.entry), LIST, err);
                ctx.metrics.sync_failed(&entry, started.elapsed());
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
        let mut found = false;
        for listed in &matches {
            if d.known.contains_key(&listed.name) || d.refused.contains(&listed.name) {
                continue;
            }
            match member(d, &self.source, &listed.name) {
                Ok(job) => {
                    found = true;
                    tracing::info!(secret = %job.name(), "found a new secret matching `find`");
                    ctx.metrics
                        .register_secret(job.shared_name().clone(), job.refresh_interval);
                    ctx.readiness.expect(job.shared_name().clone());
                    d.known.insert(listed.name.clone(), Arc::new(job));
                }
                Err(reason) => {
                    tracing::warn!(secret = %entry, matched = %listed.name, "cannot sync a matching secret: {reason}");
                    d.refused.insert(listed.name.clone());
                }
            }
        }
        if found {
            ctx.metrics.compact_secrets();
            ctx.readiness.compact();
        }
        ctx.metrics
            .sync_succeeded(&entry, started.elapsed(), None, None);
        ctx.readiness.synced(&entry);
        let members: Vec<Arc<SecretJob>> = d.known.values().cloned().collect();
        let by_id = sorted_by_id(&members);
        let mut settle = Settle::new(&members, &by_id);
        settle.page(ctx, &self.source, &matches, started).await;
        let mut cycle = Cycle::of(settle.finish(ctx).await);
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
    let config = d.entry.find_member(name)?;
    // `find` entries have file targets only, so no Kubernetes client is needed.
    SecretJob::new(
        &config,
        source.clone(),
        d.failover.clone(),
        d.changed.clone(),
        None,
    )
    .map_err(|e| e.to_string())
}
