//! The emulator's whole mutable state behind one lock: objects, the resource version
//! counter, the watch history, RBAC rules, faults and the request log.

use super::kinds::{Kind, NAMESPACES};
use super::{Fault, Request};
use serde_json::{json, Value};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Changes kept for watches that resume from a resourceVersion; older ones answer 410.
const HISTORY_LIMIT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub kind: &'static Kind,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(kind: &'static Kind, namespace: &str, name: &str) -> Key {
        let namespace = if kind.namespaced { namespace } else { "" };
        Key {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of(kind: &'static Kind, object: &Value) -> Key {
        let meta = &object["metadata"];
        Key::new(
            kind,
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap_or(""),
        )
    }
}

/// One committed change, as watches replay it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub key: Key,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone)]
struct Rule {
    verb: String,
    resource: String,
    namespace: Option<String>,
    allow: bool,
}

impl Rule {
    fn covers(&self, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        (self.verb == "*" || self.verb == verb)
            && (self.resource == "*" || self.resource == resource)
            && (self.namespace.is_none() || self.namespace.as_deref() == namespace)
    }
}

pub struct State {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Change>,
    /// Watches from a resourceVersion below this one have lost events: 410 Gone.
    compacted: u64,
    notify: watch::Sender<u64>,
    rules: Vec<Rule>,
    restricted: bool,
    pub faults: Vec<Fault>,
    /// Requests with an id, so a late answer updates the right entry after `reset_log`.
    pub log: Vec<(u64, Request)>,
    pub request_ids: u64,
    /// Event keys in creation order, for `KubeEmulator::events`.
    pub event_keys: Vec<Key>,
    random: RandomState,
    sequence: u64,
}

impl State {
    pub fn new() -> State {
        State {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            notify: watch::channel(0).0,
            rules: Vec::new(),
            restricted: false,
            faults: Vec::new(),
            log: Vec::new(),
            request_ids: 0,
            event_keys: Vec::new(),
            random: RandomState::new(),
            sequence: 0,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.objects.contains_key(key)
    }

    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.contains(&Key::new(&NAMESPACES, "", namespace))
    }

    /// Objects of a kind, in key order (namespace, then name) like etcd returns them.
    pub fn objects<'a>(
        &'a self,
        kind: &'static Kind,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects
            .iter()
            .filter(move |(k, _)| *k.kind == *kind && namespace.is_none_or(|ns| k.namespace == ns))
    }

    pub fn objects_in_namespace<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = Key> + 'a {
        self.objects
            .keys()
            .filter(move |k| k.kind.namespaced && k.namespace == namespace)
            .cloned()
    }

    /// Stores (or with None removes) an object under a fresh resourceVersion and records
    /// the change for watches. Returns the object as stored (or as last seen if deleted).
    pub fn commit(&mut self, key: Key, new: Option<Value>) -> Value {
        self.rv += 1;
        let rv = self.rv.to_string();
        let old = self.objects.remove(&key);
        let mut stored = new.clone().or_else(|| old.clone()).unwrap_or(Value::Null);
        stored["metadata"]["resourceVersion"] = rv.into();
        if new.is_some() {
            self.objects.insert(key.clone(), stored.clone());
        }
        self.history.push_back(Change {
            rv: self.rv,
            key,
            old,
            new: new.map(|_| stored.clone()),
        });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        self.notify.send_replace(self.rv);
        stored
    }

    /// Changes after `rv`, or the oldest still-known resourceVersion when `rv` is too old.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Change>, u64> {
        if rv < self.compacted {
            return Err(self.compacted);
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub fn add_rule(&mut self, verb: &str, resource: &str, namespace: Option<&str>, allow: bool) {
        self.restricted |= allow;
        self.rules.push(Rule {
            verb: verb.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
            allow,
        });
    }

    /// Explicit denies win; once any allow exists, only allowed requests pass.
    pub fn allows(&self, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let covering = |allow: bool| {
            self.rules
                .iter()
                .any(|r| r.allow == allow && r.covers(verb, resource, namespace))
        };
        !covering(false) && (!self.restricted || covering(true))
    }

    fn random(&mut self) -> u64 {
        self.sequence += 1;
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.sequence);
        hasher.finish()
    }

    pub fn uid(&mut self) -> String {
        let (a, b) = (self.random(), self.random());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// The 5-character suffix `generateName` gets.
    pub fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// Sets the server-owned metadata of a new object.
    pub fn stamp_new(&mut self, object: &mut Value) {
        if object["metadata"]["uid"].as_str().is_none() {
            object["metadata"]["uid"] = self.uid().into();
        }
        if object["metadata"]["creationTimestamp"].as_str().is_none() {
            object["metadata"]["creationTimestamp"] = now().into();
        }
    }

    pub fn add_namespace(&mut self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let mut object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        });
        // Defaulting cannot fail for a namespace (no Secret decoding involved).
        let _ = super::validate::normalize(&NAMESPACES, &mut object);
        self.stamp_new(&mut object);
        self.commit(Key::new(&NAMESPACES, "", name), Some(object));
    }
}

/// RFC 3339 UTC time with second precision, as Kubernetes timestamps are.
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
