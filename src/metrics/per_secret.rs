//! The per-secret metrics, kept as one compact record per secret and turned into metric
//! families only when scraped. With the `prometheus` crate's vectors each series holds its
//! own copy of the family's descriptor and label pairs: 5.4 KiB per secret for the seven
//! series below, which dominated the daemon's memory at thousands of secrets.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds of `secret_ferry_sync_duration_seconds`, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const SYNC_TOTAL: (&str, &str) = (
    "secret_ferry_secret_sync_total",
    "Sync attempts of a secret (fetch, render and write to every target), by result.",
);
const LAST_SUCCESS: (&str, &str) = (
    "secret_ferry_secret_last_success_timestamp_seconds",
    "Unix time of the last successful sync of a secret.",
);
const STALE: (&str, &str) = (
    "secret_ferry_secret_stale",
    "1 while a secret's files hold the last good value because its latest sync failed.",
);
const DURATION: (&str, &str) = (
    "secret_ferry_sync_duration_seconds",
    "Time taken by one sync of a secret: fetch, render and write.",
);
const VERSION: (&str, &str) = (
    "secret_ferry_secret_version_info",
    "The Secrets Manager version id last synced, as a label; one series per secret.",
);
const REGION: (&str, &str) = (
    "secret_ferry_secret_region_info",
    "The region that served a secret's last successful sync, as a label; differs from the configured region after a failover.",
);

#[derive(Default)]
struct Record {
    success: u64,
    failure: u64,
    last_success: Option<f64>,
    stale: bool,
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    version: Option<Box<str>>,
    region: Option<Box<str>>,
}

pub struct PerSecret {
    descs: Vec<Desc>,
    records: Mutex<BTreeMap<Box<str>, Record>>,
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
                desc(DURATION, &["secret"])?,
                desc(VERSION, &["secret", "version_id"])?,
                desc(REGION, &["secret", "region"])?,
            ],
            records: Mutex::new(BTreeMap::new()),
        })
    }

    fn with<T>(&self, secret: &str, update: impl FnOnce(&mut Record) -> T) -> T {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match records.get_mut(secret) {
            Some(record) => update(record),
            None => update(records.entry(secret.into()).or_default()),
        }
    }

    /// Every series of the secret exists from now on (at zero), as with the vectors.
    pub fn register(&self, secret: &str) {
        self.with(secret, |_| ());
    }

    pub fn forget(&self, secret: &str) {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(secret);
    }

    pub fn synced(&self, secret: &str, success: bool, now: f64) {
        self.with(secret, |r| {
            if success {
                r.success += 1;
                r.last_success = Some(now);
            } else {
                r.failure += 1;
            }
        });
    }

    pub fn stale(&self, secret: &str, stale: bool) {
        self.with(secret, |r| r.stale = stale);
    }

    pub fn took(&self, secret: &str, seconds: f64) {
        let slot = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.with(secret, |r| {
            r.buckets[slot] += 1;
            r.sum += seconds;
        });
    }

    pub fn version(&self, secret: &str, version: &str) {
        self.with(secret, |r| {
            if r.version.as_deref() != Some(version) {
                r.version = Some(version.into());
            }
        });
    }

    pub fn region(&self, secret: &str, region: &str) {
        self.with(secret, |r| {
            if r.region.as_deref() != Some(region) {
                r.region = Some(region.into());
            }
        });
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

fn histogram(secret: &str, record: &Record) -> Metric {
    let mut cumulative = 0;
    let buckets = BUCKETS
        .iter()
        .zip(record.buckets.iter())
        .map(|(bound, count)| {
            cumulative += count;
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(record.buckets.iter().sum());
    h.set_sample_sum(record.sum);
    let mut m = Metric::from_label(labels(&[("secret", secret)]));
    m.set_histogram(h);
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
        let records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut sync, mut last, mut stale, mut duration, mut version, mut region) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (secret, r) in records.iter() {
            let secret: &str = secret;
            sync.push(counter(
                &[("secret", secret), ("result", "failure")],
                r.failure,
            ));
            sync.push(counter(
                &[("secret", secret), ("result", "success")],
                r.success,
            ));
            if let Some(at) = r.last_success {
                last.push(gauge(&[("secret", secret)], at));
            }
            stale.push(gauge(
                &[("secret", secret)],
                if r.stale { 1.0 } else { 0.0 },
            ));
            if r.buckets.iter().any(|c| *c > 0) {
                duration.push(histogram(secret, r));
            }
            if let Some(v) = &r.version {
                version.push(gauge(&[("secret", secret), ("version_id", v)], 1.0));
            }
            if let Some(v) = &r.region {
                region.push(gauge(&[("secret", secret), ("region", v)], 1.0));
            }
        }
        [
            (SYNC_TOTAL, MetricType::COUNTER, sync),
            (LAST_SUCCESS, MetricType::GAUGE, last),
            (STALE, MetricType::GAUGE, stale),
            (DURATION, MetricType::HISTOGRAM, duration),
            (VERSION, MetricType::GAUGE, version),
            (REGION, MetricType::GAUGE, region),
        ]
        .into_iter()
        .filter(|(_, _, metrics)| !metrics.is_empty())
        .map(|(meta, kind, metrics)| family(meta, kind, metrics))
        .collect()
    }
}
