//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Ownership is tracked per leaf at a fixed granularity instead of the full
//! structured-merge-diff schema: each key of `metadata.labels`/`annotations`,
//! `metadata.ownerReferences` and `metadata.finalizers` as a whole, and for every other
//! top-level field (except `apiVersion`, `kind`, `status`) each key of a map-valued
//! field (`data.password`, `spec.holderIdentity`) or the field itself (`type`,
//! `immutable`).

use super::status::quote;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

pub type FieldPath = Vec<String>;
type Leaves = BTreeMap<FieldPath, Value>;

const WHOLE_METADATA_FIELDS: [&str; 2] = ["ownerReferences", "finalizers"];
const KEYED_METADATA_FIELDS: [&str; 2] = ["labels", "annotations"];
const UNOWNED_TOP_LEVEL: [&str; 4] = ["apiVersion", "kind", "metadata", "status"];

/// Every owned leaf of an object with its value.
pub fn leaves(object: &Value) -> Leaves {
    let mut out = Leaves::new();
    let Some(fields) = object.as_object() else {
        return out;
    };
    if let Some(meta) = fields.get("metadata").and_then(Value::as_object) {
        for name in KEYED_METADATA_FIELDS {
            if let Some(map) = meta.get(name).and_then(Value::as_object) {
                for (key, value) in map {
                    out.insert(path(&["metadata", name, key]), value.clone());
                }
            }
        }
        for name in WHOLE_METADATA_FIELDS {
            if let Some(value) = meta.get(name) {
                out.insert(path(&["metadata", name]), value.clone());
            }
        }
    }
    for (name, value) in fields {
        if UNOWNED_TOP_LEVEL.contains(&name.as_str()) || value.is_null() {
            continue;
        }
        match value.as_object() {
            Some(map) => {
                for (key, inner) in map {
                    out.insert(path(&[name, key]), inner.clone());
                }
            }
            None => {
                out.insert(path(&[name]), value.clone());
            }
        }
    }
    out
}

fn path(parts: &[&str]) -> FieldPath {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Truncates a path read from any fieldsV1 to the tracked granularity.
fn granular(mut path: FieldPath) -> FieldPath {
    let depth = match path.first().map(String::as_str) {
        Some("metadata")
            if path
                .get(1)
                .is_some_and(|p| KEYED_METADATA_FIELDS.contains(&p.as_str())) =>
        {
            3
        }
        _ => 2,
    };
    path.truncate(depth);
    path
}

fn get_path<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, part| v.get(part))
}

fn set_path(object: &mut Value, path: &[String], value: Value) {
    let mut cursor = object;
    for part in path {
        if !cursor.is_object() {
            *cursor = json!({});
        }
        cursor = match cursor {
            Value::Object(map) => map.entry(part.clone()).or_insert(Value::Null),
            _ => return,
        };
    }
    *cursor = value;
}

/// Removes a leaf and any map it leaves empty (Go's `omitempty` would drop them).
fn remove_path(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(Value::Object(map)) = parents
        .iter()
        .try_fold(&mut *object, |v, part| v.get_mut(part))
    {
        map.remove(last);
    }
    if parents.len() > 1 || parents.first().is_some_and(|p| p != "metadata") {
        let is_empty =
            get_path(object, parents).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if is_empty {
            remove_path(object, parents);
        }
    }
}

/// The fieldsV1 encoding: `{"f:data":{"f:password":{}}}`.
fn fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for p in paths {
        let keyed: Vec<String> = p.iter().map(|s| format!("f:{s}")).collect();
        if get_path(&root, &keyed).is_none() {
            set_path(&mut root, &keyed, json!({}));
        }
    }
    root
}

fn parse_fields_v1(value: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let children: Vec<(&str, &Value)> = value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| k.strip_prefix("f:").map(|k| (k, v)))
                .collect()
        })
        .unwrap_or_default();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(granular(prefix.clone()));
        }
        return;
    }
    for (name, child) in children {
        prefix.push(name.to_string());
        parse_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation
    }

    /// How conflict messages name a manager: `"kubectl" using v1` (plus ` at TIME` for
    /// an Update entry).
    fn describe(&self) -> String {
        let mut text = format!("{} using {}", quote(&self.manager), self.api_version);
        if self.operation == "Update" && !self.time.is_empty() {
            text.push_str(&format!(" at {}", self.time));
        }
        text
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&self.fields),
        });
        if !self.time.is_empty() {
            entry["time"] = self.time.clone().into();
        }
        entry
    }
}

fn str_field(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

pub fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(list) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let mut fields = BTreeSet::new();
            parse_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Entry {
                manager: str_field(e, "manager"),
                operation: str_field(e, "operation"),
                api_version: str_field(e, "apiVersion"),
                time: str_field(e, "time"),
                fields,
            }
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: Vec<Entry>) {
    let kept: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if kept.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(kept));
    }
}

/// Gives `manager`'s entry of `operation` the field set `fields`; its time moves only
/// when the entry or the object changed, so that a no-op write stays a no-op.
fn set_entry(entries: &mut Vec<Entry>, owner: Entry, touched: bool) {
    match entries
        .iter_mut()
        .find(|e| e.is(&owner.manager, &owner.operation))
    {
        Some(entry) if entry.fields == owner.fields && !touched => {}
        Some(entry) => *entry = owner,
        None => entries.push(owner),
    }
}

fn entry(
    manager: &str,
    operation: &str,
    fields: BTreeSet<FieldPath>,
    object: &Value,
    now: &str,
) -> Entry {
    Entry {
        manager: manager.to_string(),
        operation: operation.to_string(),
        api_version: str_field(object, "apiVersion"),
        time: now.to_string(),
        fields,
    }
}

fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

/// Ownership after a create, update or non-apply patch: fields the write changed move to
/// `manager`'s Update entry, fields it removed leave every entry.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
    let before = old.map(leaves).unwrap_or_default();
    let after = leaves(new);
    let changed: BTreeSet<FieldPath> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .collect();
    let mut entries = old.map(read_entries).unwrap_or_default();
    for entry in &mut entries {
        entry
            .fields
            .retain(|p| after.contains_key(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        let mut owned = entries
            .iter()
            .find(|e| e.is(manager, "Update"))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        owned.extend(changed);
        set_entry(
            &mut entries,
            entry(manager, "Update", owned, new, now),
            true,
        );
    }
    write_entries(new, entries);
}

/// A field the applier would change while another manager owns it.
#[derive(Debug, Clone)]
pub struct Conflict {
    owner: Entry,
    path: FieldPath,
}

impl Conflict {
    fn field(&self) -> String {
        self.path.iter().map(|p| format!(".{p}")).collect()
    }
}

/// The 409 message and causes the real server gives for apply conflicts.
pub fn conflict_report(conflicts: &[Conflict]) -> (String, Value) {
    let causes = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.owner.describe()),
                "field": c.field(),
            })
        })
        .collect();
    let message = match conflicts {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.owner.describe(),
            one.field()
        ),
        many => {
            let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in many {
                by_owner
                    .entry(c.owner.describe())
                    .or_default()
                    .push(c.field());
            }
            let lines: Vec<String> = by_owner
                .into_iter()
                .flat_map(|(owner, fields)| {
                    std::iter::once(format!("conflicts with {owner}:"))
                        .chain(fields.into_iter().map(|f| format!("- {f}")))
                })
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    };
    (message, Value::Array(causes))
}

/// Server-side apply of `config` by `manager` onto `live` (None: the object is new).
/// Returns the resulting object, or the conflicts when `force` is false.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let applied = leaves(config);
    let mut entries = live.map(read_entries).unwrap_or_default();
    let conflicts = find_conflicts(live, &applied, &entries, manager);
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forcing takes the conflicting fields away from their owners.
    for entry in &mut entries {
        entry.fields.retain(|p| {
            !conflicts
                .iter()
                .any(|c| c.owner.is(&entry.manager, &entry.operation) && &c.path == p)
        });
    }
    let mut object = live.cloned().unwrap_or_else(|| skeleton(config));
    for (p, value) in &applied {
        set_path(&mut object, p, value.clone());
    }
    let applied_paths: BTreeSet<FieldPath> = applied.into_keys().collect();
    remove_released(&mut object, &entries, &applied_paths, manager);
    let touched = live.is_none_or(|l| without_managed_fields(l) != without_managed_fields(&object));
    set_entry(
        &mut entries,
        entry(manager, "Apply", applied_paths, config, now),
        touched,
    );
    write_entries(&mut object, entries);
    Ok(object)
}

/// Fields `manager` applied before and omits now go, unless someone else owns them too.
fn remove_released(
    object: &mut Value,
    entries: &[Entry],
    applied: &BTreeSet<FieldPath>,
    manager: &str,
) {
    let Some(previous) = entries.iter().find(|e| e.is(manager, "Apply")) else {
        return;
    };
    for released in previous.fields.difference(applied) {
        let kept_by_other = entries
            .iter()
            .any(|e| !e.is(manager, "Apply") && e.fields.contains(released));
        if !kept_by_other {
            remove_path(object, released);
        }
    }
}

fn find_conflicts(
    live: Option<&Value>,
    applied: &Leaves,
    entries: &[Entry],
    manager: &str,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for (p, value) in applied {
        if live.and_then(|l| get_path(l, p)) == Some(value) {
            continue;
        }
        for owner in entries {
            if !owner.is(manager, "Apply") && owner.fields.contains(p) {
                conflicts.push(Conflict {
                    owner: owner.clone(),
                    path: p.clone(),
                });
            }
        }
    }
    conflicts
}

/// The identity part of an applied configuration, from which a new object grows.
fn skeleton(config: &Value) -> Value {
    let mut meta = Map::new();
    for key in ["name", "namespace", "generateName"] {
        if let Some(v) = config["metadata"].get(key) {
            meta.insert(key.into(), v.clone());
        }
    }
    json!({
        "apiVersion": config["apiVersion"],
        "kind": config["kind"],
        "metadata": meta,
    })
}
