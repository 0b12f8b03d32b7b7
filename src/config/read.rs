//! Readers shared by the sections: checked strings, lists, uniqueness, enums and references
//! to other parts of the config.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::tree::Data;
use saphyr::Scalar;

use super::rules::is_region;
use super::yaml::{Checker, Field};

/// A string field that `parse` turns into a value; `rule` completes "must be …".
pub(super) fn parsed_string<T>(
    c: &mut Checker,
    at: &Field,
    parse: impl FnOnce(&str) -> Option<T>,
    rule: &str,
) -> Option<T> {
    let text = c.string(at)?;
    let value = parse(text);
    if value.is_none() {
        c.problem(at, format!("must be {rule}, got {text:?}"));
    }
    value
}

/// A string field that must satisfy `valid`; `rule` completes "must be …".
pub(super) fn checked_string(
    c: &mut Checker,
    at: &Field,
    valid: impl FnOnce(&str) -> bool,
    rule: &str,
) -> Option<String> {
    parsed_string(c, at, |s| valid(s).then(|| s.to_owned()), rule)
}

pub(super) fn read_path(c: &mut Checker, at: &Field) -> Option<PathBuf> {
    c.string(at).map(PathBuf::from)
}

pub(super) fn read_region(c: &mut Checker, at: &Field) -> Option<String> {
    checked_string(
        c,
        at,
        is_region,
        "an AWS region such as \"us-east-1\" (lowercase letters, digits and '-')",
    )
}

/// A list of `count` items, each read by `read`; `noun` names one item in messages. Every item
/// is read even after an invalid one, so that all problems are reported.
pub(super) fn read_list<'a, T>(
    c: &mut Checker,
    at: &Field<'a>,
    count: RangeInclusive<usize>,
    noun: &str,
    mut read: impl FnMut(&mut Checker, &Field<'a>) -> Option<T>,
) -> Option<Vec<T>> {
    let items = c.list(at)?;
    let n = items.len();
    if n < *count.start() {
        c.problem(
            at,
            format!("must list at least {}", counted(*count.start(), noun)),
        );
    } else if n > *count.end() {
        c.problem(
            at,
            format!("must list at most {}, got {n}", counted(*count.end(), noun)),
        );
    }
    let values: Vec<Option<T>> = items.iter().map(|item| read(c, item)).collect();
    let values: Option<Vec<T>> = values.into_iter().collect();
    values.filter(|_| count.contains(&n))
}

fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("one {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Wraps a list item reader so that a value already in the list is a problem.
pub(super) fn unique<'a>(
    mut read: impl FnMut(&mut Checker, &Field<'a>) -> Option<String>,
) -> impl FnMut(&mut Checker, &Field<'a>) -> Option<String> {
    let mut seen = BTreeMap::new();
    move |c: &mut Checker, at: &Field<'a>| {
        let value = read(c, at)?;
        if let Some(first) = first_use(&mut seen, value.clone(), &at.path) {
            c.problem(at, format!("{value:?} is already listed at {first}"));
            return None;
        }
        Some(value)
    }
}

/// Records that `key` is used at `place`; if it was used before, returns that place instead.
pub(super) fn first_use<K: Ord>(
    seen: &mut BTreeMap<K, String>,
    key: K,
    place: &str,
) -> Option<String> {
    match seen.entry(key) {
        std::collections::btree_map::Entry::Occupied(first) => Some(first.get().clone()),
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(place.to_owned());
            None
        }
    }
}

/// The string keys of a mapping, valid or not, so that a broken role (or tag) doesn't also turn
/// every reference to it into an error. `None` when `at` is not a mapping: nothing can be
/// checked against it.
pub(super) fn declared_keys(at: Option<&Field>) -> Option<BTreeSet<String>> {
    let Some(at) = at else {
        return Some(BTreeSet::new());
    };
    let Data::Mapping(map) = at.data() else {
        return None;
    };
    let names = map.keys().filter_map(|key| match key.data() {
        Data::Value(Scalar::String(name)) => Some(name.to_string()),
        _ => None,
    });
    Some(names.collect())
}

/// What a reference refers to, for messages such as "unknown role …; defined roles: …".
pub(super) struct Referent {
    pub(super) kind: &'static str,
    /// Where such names are defined.
    section: &'static str,
}

pub(super) const ROLES: Referent = Referent {
    kind: "role",
    section: "roles",
};
pub(super) const TAG_KEYS: Referent = Referent {
    kind: "tag key",
    section: "sessionTags",
};

/// A name that must be one of `known`. With `known` unreadable (reported already), any name
/// is taken.
pub(super) fn read_reference(
    c: &mut Checker,
    at: &Field,
    known: Option<&BTreeSet<String>>,
    referent: &Referent,
) -> Option<String> {
    let name = c.string(at)?;
    let Referent { kind, section } = referent;
    match known {
        Some(known) if known.is_empty() => {
            c.problem(
                at,
                format!("unknown {kind} {name:?}: no {kind}s are defined under `{section}`"),
            );
            None
        }
        Some(known) if !known.contains(name) => {
            let defined: Vec<&str> = known.iter().map(String::as_str).collect();
            c.problem(
                at,
                format!(
                    "unknown {kind} {name:?}; defined {kind}s: {}",
                    defined.join(", ")
                ),
            );
            None
        }
        _ => Some(name.to_owned()),
    }
}

/// A string that must be one of the names in `values`.
pub(super) fn read_enum<T: Copy>(c: &mut Checker, at: &Field, values: &[(&str, T)]) -> Option<T> {
    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
    parsed_string(
        c,
        at,
        |text| values.iter().find(|(n, _)| *n == text).map(|(_, v)| *v),
        &format!("one of {}", names.join(", ")),
    )
}
