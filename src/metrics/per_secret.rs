//! The per-secret metrics, kept as one compact record per secret and turned into metric
//! families only when scraped, together with the aggregates computed from the same records.
//!
//! The budget (issue 18): at 10,000 secrets one series per secret per family is 15 MB a
//! scrape, so which secrets are *named* follows a [`SeriesPolicy`]. A secret that needs
//! someone's attention (stale, failing, or behind: no success for two intervals) is always
//! named, so "secret X is stale" alerts work at any N; healthy secrets are only counted
//! above the policy's limit. The aggregates answer "is anything behind?" without names.

use super::SecretState;
use crate::version_id::VersionId;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which secrets get their own series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesPolicy {
    /// Every secret, at any N.
    All,
    /// Only secrets that are stale, failing or behind; healthy ones are only counted.
    Unhealthy,
    /// Every secret while there are at most `limit`, only unhealthy ones above.
    Auto { limit: usize },
}

impl SeriesPolicy {
    /// The default limit: at ~450 bytes of series per healthy secret, 500 keeps a scrape of
    /// healthy secrets under 256 KiB at any N.
    pub const DEFAULT_LIMIT: usize = 500;

    fn names_healthy(self, secrets: usize) -> bool {
        match self {
            SeriesPolicy::All => true,
            SeriesPolicy::Unhealthy => false,
            SeriesPolicy::Auto { limit } => secrets <= limit,
        }
    }
}

impl Default for SeriesPolicy {
    fn default() -> Self {
        SeriesPolicy::Auto {
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

const SYNC_TOTAL: (&str, &str) = (
    "secret_ferry_secret_sync_total",
    "Sync attempts of a secret (fetch, render and write to every target), by result; named per the metrics.perSecretSeries rule.",
);
const LAST_SUCCESS: (&str, &str) = (
    "secret_ferry_secret_last_success_timestamp_seconds",
    "Unix time of the last successful sync of a secret; named per the metrics.perSecretSeries rule, always while it is behind.",
);
const STALE: (&str, &str) = (
    "secret_ferry_secret_stale",
    "1 while a secret's files hold the last good value because its latest sync failed; named per the metrics.perSecretSeries rule, always while 1.",
);
const VERSION: (&str, &str) = (
    "secret_ferry_secret_version_info",
    "The Secrets Manager version id last synced, as a label; one series per named secret.",
);
const REGION: (&str, &str) = (
    "secret_ferry_secret_region_info",
    "The region that served a secret's last successful sync, as a label; differs from the configured region after a failover.",
);
const BY_STATE: (&str, &str) = (
    "secret_ferry_secrets",
    "Secrets by state: synced (last sync succeeded), stale (last sync failed, the last good value is served), failing (never synced, last attempt failed), pending (not tried yet).",
);
const BEHIND: (&str, &str) = (
    "secret_ferry_secrets_behind",
    "Secrets without a successful sync for more than twice their refresh interval (each of them is named by the per-secret series).",
);
const OLDEST: (&str, &str) = (
    "secret_ferry_secrets_oldest_success_timestamp_seconds",
    "The oldest of the secrets' last successful syncs, as Unix time (absent until one has synced).",
);
const NAMED: (&str, &str) = (
    "secret_ferry_secrets_named",
    "Secrets that have their own per-secret series at this scrape (all of them, or only the unhealthy ones above the limit of metrics.perSecretSeries).",
);

/// One per secret, so every field counts: 64 bytes (80 with its key in the map).
struct Record {
    success: u64,
    failure: u64,
    /// Unix time of the last success once there was one (state synced or stale), else of
    /// the registration: since when a never-synced secret has been waiting.
    since: f64,
    /// Twice the refresh interval: no success for this long is "behind".
    behind_after: f32,
    state: SecretState,
    /// `None` until the first success; a success without a version id keeps "-".
    version: Option<VersionId>,
    /// An index into `Records::regions`: the few regions read, each kept once.
    region: Option<u16>,
}

/// The records by secret name, and the region names they point into.
#[derive(Default)]
struct Records {
    by_name: BTreeMap<Arc<str>, Record>,
    regions: Vec<Box<str>>,
}

/// `region`'s index in `regions`, added if new (`None` past 65,536 distinct names, which
/// AWS's few dozen regions never reach: that secret then has no region series).
fn region_index(regions: &mut Vec<Box<str>>, region: &str) -> Option<u16> {
    if let Some(i) = regions.iter().position(|r| &**r == region) {
        return u16::try_from(i).ok();
    }
    let i = u16::try_from(regions.len()).ok()?;
    regions.push(region.into());
    Some(i)
}

impl Record {
    fn behind(&self, now: f64) -> bool {
        now - self.since > f64::from(self.behind_after)
    }

    fn last_success(&self) -> Option<f64> {
        matches!(self.state, SecretState::Synced | SecretState::Stale).then_some(self.since)
    }

    fn unhealthy(&self, now: f64) -> bool {
        matches!(self.state, SecretState::Stale | SecretState::Failing) || self.behind(now)
    }
}

/// One sync's outcome, as recorded for its secret.
pub enum Synced<'a> {
    Success {
        version: Option<&'a str>,
        region: Option<&'a str>,
    },
    /// Stale when an earlier sync succeeded (the targets hold that value), else failing.
    Failure,
}

pub struct PerSecret {
    descs: Vec<Desc>,
    policy: Mutex<SeriesPolicy>,
    records: Mutex<Records>,
}

impl PerSecret {
    pub fn new() -> Result<Self, prometheus::Error> {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                Default::default(),
            )
        };
        Ok(Self {
            descs: vec![
                desc(SYNC_TOTAL, &["secret", "result"])?,
                desc(LAST_SUCCESS, &["secret"])?,
                desc(STALE, &["secret"])?,
                desc(VERSION, &["secret", "version_id"])?,
                desc(REGION, &["secret", "region"])?,
                desc(BY_STATE, &["state"])?,
                desc(BEHIND, &[])?,
                desc(OLDEST, &[])?,
                desc(NAMED, &[])?,
            ],
            policy: Mutex::new(SeriesPolicy::default()),
            records: Mutex::new(Records::default()),
        })
    }

    pub fn set_policy(&self, policy: SeriesPolicy) {
        *self
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The secret is counted (pending) from now on; registering it again keeps its record
    /// and takes the new interval.
    pub fn register(&self, secret: impl Into<Arc<str>>, interval: Duration, now: f64) {
        let secret = secret.into();
        let behind_after = (2.0 * interval.as_secs_f64()) as f32;
        let mut records = self.records();
        match records.by_name.get_mut(&*secret) {
            Some(r) => r.behind_after = behind_after,
            None => {
                records.by_name.insert(
                    secret,
                    Record {
                        success: 0,
                        failure: 0,
                        since: now,
                        behind_after,
                        state: SecretState::Pending,
                        version: None,
                        region: None,
                    },
                );
            }
        }
    }

    pub fn forget(&self, secret: &str) {
        self.records().by_name.remove(secret);
    }

    /// Rebuilds the map with full nodes. Secrets registered one by one in name order leave
    /// every B-tree leaf half empty (a split keeps half on each side and the next insert
    /// goes right): about 80 bytes a secret. Called once the configured secrets are in.
    pub fn compact(&self) {
        let mut records = self.records();
        let by_name = std::mem::take(&mut records.by_name);
        // From a sorted iterator, the map is built bottom-up with every node full.
        records.by_name = by_name.into_iter().collect();
    }

    /// Records one sync of a registered secret (one that is not is ignored: it was
    /// forgotten while its sync ran).
    pub fn synced(&self, secret: &str, outcome: Synced<'_>, now: f64) {
        let mut records = self.records();
        let Records { by_name, regions } = &mut *records;
        let Some(r) = by_name.get_mut(secret) else {
            return;
        };
        match outcome {
            Synced::Success { version, region } => {
                r.success += 1;
                r.since = now;
                r.state = SecretState::Synced;
                let version = version.unwrap_or("-");
                if !r.version.as_ref().is_some_and(|v| v.is(version)) {
                    r.version = Some(VersionId::new(version));
                }
                let region = region.unwrap_or("-");
                let known = r.region.and_then(|i| regions.get(usize::from(i)));
                if known.is_none_or(|known| &**known != region) {
                    r.region = region_index(regions, region);
                }
            }
            Synced::Failure => {
                r.failure += 1;
                r.state = if r.last_success().is_some() {
                    SecretState::Stale
                } else {
                    SecretState::Failing
                };
            }
        }
    }

    /// Every family at `now`: the per-secret ones for the secrets the policy names, the
    /// aggregates over all. One pass over the records, under the lock.
    pub fn collect_at(&self, now: f64) -> Vec<MetricFamily> {
        let policy = *self
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let records = self.records();
        let name_all = policy.names_healthy(records.by_name.len());
        let mut named = Named::default();
        let mut by_state = [0u64; SecretState::ALL.len()];
        let (mut behind, mut oldest, mut count) = (0u64, None::<f64>, 0u64);
        for (secret, r) in records.by_name.iter() {
            by_state[r.state.index()] += 1;
            let is_behind = r.behind(now);
            behind += u64::from(is_behind);
            if let Some(at) = r.last_success() {
                oldest = Some(oldest.map_or(at, |o: f64| o.min(at)));
            }
            if name_all || r.unhealthy(now) {
                count += 1;
                let region = r.region.and_then(|i| records.regions.get(usize::from(i)));
                named.push(secret, r, region.map(|r| &**r));
            }
        }
        let states = SecretState::ALL
            .iter()
            .map(|s| gauge(&[("state", s.as_str())], by_state[s.index()] as f64))
            .collect();
        let mut families = named.families();
        families.push(family(BY_STATE, MetricType::GAUGE, states));
        families.push(family(
            BEHIND,
            MetricType::GAUGE,
            vec![gauge(&[], behind as f64)],
        ));
        if let Some(at) = oldest {
            families.push(family(OLDEST, MetricType::GAUGE, vec![gauge(&[], at)]));
        }
        families.push(family(
            NAMED,
            MetricType::GAUGE,
            vec![gauge(&[], count as f64)],
        ));
        families
    }
}

/// The per-secret series of the named secrets, family by family.
#[derive(Default)]
struct Named {
    sync: Vec<Metric>,
    last: Vec<Metric>,
    stale: Vec<Metric>,
    version: Vec<Metric>,
    region: Vec<Metric>,
}

impl Named {
    fn push(&mut self, secret: &str, r: &Record, region: Option<&str>) {
        self.sync.push(counter(
            &[("secret", secret), ("result", "failure")],
            r.failure,
        ));
        self.sync.push(counter(
            &[("secret", secret), ("result", "success")],
            r.success,
        ));
        if let Some(at) = r.last_success() {
            self.last.push(gauge(&[("secret", secret)], at));
        }
        let stale = r.state == SecretState::Stale;
        self.stale
            .push(gauge(&[("secret", secret)], if stale { 1.0 } else { 0.0 }));
        if let Some(v) = &r.version {
            let v = v.to_string();
            self.version
                .push(gauge(&[("secret", secret), ("version_id", &v)], 1.0));
        }
        if let Some(v) = region {
            self.region
                .push(gauge(&[("secret", secret), ("region", v)], 1.0));
        }
    }

    fn families(self) -> Vec<MetricFamily> {
        [
            (SYNC_TOTAL, MetricType::COUNTER, self.sync),
            (LAST_SUCCESS, MetricType::GAUGE, self.last),
            (STALE, MetricType::GAUGE, self.stale),
            (VERSION, MetricType::GAUGE, self.version),
            (REGION, MetricType::GAUGE, self.region),
        ]
        .into_iter()
        .filter(|(_, _, metrics)| !metrics.is_empty())
        .map(|(meta, kind, metrics)| family(meta, kind, metrics))
        .collect()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    // The text format lists labels in the order given; sorted, as the crate's vectors do.
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(name, _)| *name);
    pairs
        .into_iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_owned());
            pair.set_value(value.to_owned());
            pair
        })
        .collect()
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels(pairs));
    m
}

fn counter(pairs: &[(&str, &str)], value: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn family((name, help): (&str, &str), kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

impl Collector for PerSecret {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.collect_at(super::unix_seconds(std::time::SystemTime::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &PerSecret, now: f64) -> Vec<String> {
        let families = p.collect_at(now);
        let stale = families
            .iter()
            .find(|f| f.name() == STALE.0)
            .map(|f| f.get_metric().to_vec())
            .unwrap_or_default();
        stale
            .iter()
            .map(|m| m.get_label()[0].value().to_owned())
            .collect()
    }

    fn aggregate(p: &PerSecret, now: f64, name: &str) -> Option<f64> {
        p.collect_at(now)
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.get_metric()[0].get_gauge().get_value())
    }

    fn with(policy: SeriesPolicy, n: usize) -> PerSecret {
        let p = PerSecret::new().unwrap();
        p.set_policy(policy);
        for i in 0..n {
            let s = format!("s{i:02}");
            p.register(s.as_str(), Duration::from_secs(60), 0.0);
            let ok = Synced::Success {
                version: Some("v1"),
                region: Some("us-east-1"),
            };
            p.synced(&s, ok, 10.0);
        }
        p
    }

    #[test]
    fn above_the_limit_only_unhealthy_secrets_are_named_and_all_are_counted() {
        let p = with(SeriesPolicy::Auto { limit: 3 }, 3);
        assert_eq!(names(&p, 20.0), ["s00", "s01", "s02"]);
        let p = with(SeriesPolicy::Auto { limit: 3 }, 4);
        assert!(names(&p, 20.0).is_empty());
        p.synced("s01", Synced::Failure, 30.0);
        p.register("new", Duration::from_secs(60), 30.0);
        p.synced("new", Synced::Failure, 31.0);
        assert_eq!(names(&p, 40.0), ["new", "s01"]);
        assert_eq!(aggregate(&p, 40.0, NAMED.0), Some(2.0));
        let states: Vec<(String, f64)> = p
            .collect_at(40.0)
            .iter()
            .find(|f| f.name() == BY_STATE.0)
            .unwrap()
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_owned(),
                    m.get_gauge().get_value(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                ("synced".to_owned(), 3.0),
                ("stale".to_owned(), 1.0),
                ("failing".to_owned(), 1.0),
                ("pending".to_owned(), 0.0)
            ]
        );
        // Recovery takes the name away again.
        p.synced(
            "s01",
            Synced::Success {
                version: None,
                region: None,
            },
            41.0,
        );
        assert_eq!(names(&p, 42.0), ["new"]);
    }

    #[test]
    fn a_secret_without_a_success_for_two_intervals_is_behind_and_named() {
        let p = with(SeriesPolicy::Unhealthy, 2);
        assert!(names(&p, 100.0).is_empty());
        assert_eq!(aggregate(&p, 100.0, BEHIND.0), Some(0.0));
        assert_eq!(aggregate(&p, 100.0, OLDEST.0), Some(10.0));
        // 120 s after the last success (interval 60 s): both behind, both named.
        assert_eq!(names(&p, 131.0), ["s00", "s01"]);
        assert_eq!(aggregate(&p, 131.0, BEHIND.0), Some(2.0));
        // A pending secret counts from its registration.
        p.register("late", Duration::from_secs(1), 200.0);
        assert!(names(&p, 201.0).contains(&"s00".to_owned()));
        assert!(names(&p, 203.0).contains(&"late".to_owned()));
    }

    #[test]
    fn a_record_stays_compact() {
        assert!(std::mem::size_of::<Record>() <= 64);
    }

    #[test]
    fn labels_read_back_as_synced_and_regions_are_kept_once() {
        let p = PerSecret::new().unwrap();
        p.set_policy(SeriesPolicy::All);
        let uuid = "0f3e5a7c-1b2d-4e6f-8a9b-c0d1e2f3a4b5";
        for (i, (version, region)) in [
            (uuid, "us-east-1"),
            ("v-2", "eu-west-1"),
            (uuid, "us-east-1"),
        ]
        .into_iter()
        .enumerate()
        {
            let s = format!("s{i}");
            p.register(s.as_str(), Duration::from_secs(60), 0.0);
            let ok = Synced::Success {
                version: Some(version),
                region: Some(region),
            };
            p.synced(&s, ok, 10.0);
        }
        // A failover: the same secret now served from another region, at a new version.
        let moved = Synced::Success {
            version: None,
            region: Some("eu-west-1"),
        };
        p.synced("s2", moved, 11.0);
        let labels = |family: &str, label: &str| -> Vec<(String, String)> {
            p.collect_at(12.0)
                .iter()
                .find(|f| f.name() == family)
                .unwrap()
                .get_metric()
                .iter()
                .map(|m| {
                    let get = |n: &str| {
                        m.get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .unwrap()
                            .value()
                            .to_owned()
                    };
                    (get("secret"), get(label))
                })
                .collect()
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            labels(VERSION.0, "version_id"),
            pairs(&[("s0", uuid), ("s1", "v-2"), ("s2", "-")])
        );
        assert_eq!(
            labels(REGION.0, "region"),
            pairs(&[
                ("s0", "us-east-1"),
                ("s1", "eu-west-1"),
                ("s2", "eu-west-1")
            ])
        );
        assert_eq!(p.records().regions.len(), 2, "each region kept once");
    }

    #[test]
    fn compacting_keeps_every_record() {
        let p = with(SeriesPolicy::All, 40);
        p.synced("s07", Synced::Failure, 11.0);
        let before = p.collect_at(20.0);
        p.compact();
        assert_eq!(p.collect_at(20.0), before);
        assert_eq!(names(&p, 20.0).len(), 40);
    }

    #[test]
    fn all_names_every_secret_and_forget_removes_one() {
        let p = with(SeriesPolicy::All, 3);
        assert_eq!(names(&p, 20.0).len(), 3);
        p.forget("s01");
        assert_eq!(names(&p, 20.0), ["s00", "s02"]);
        p.synced("s01", Synced::Failure, 21.0);
        assert_eq!(
            names(&p, 22.0),
            ["s00", "s02"],
            "a forgotten secret stays gone"
        );
    }
}
