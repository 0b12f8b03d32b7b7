//! A role's session as STS and CloudTrail see it: its name, with `${NAME}` placeholders
//! from the pod's environment, and its tags.

use std::collections::BTreeMap;

use super::tree::Data;
use saphyr::Scalar;

use super::read::first_use;
use super::rules::{is_sts_name, is_tag_text};
use super::yaml::{Checker, Entry, Field};

// STS limit on AssumeRole parameters.
const MAX_SESSION_TAGS: usize = 50;
/// The `${NAME}` placeholders a session name may use, with the downward API field that usually
/// sets each: they give every pod its own session name in CloudTrail.
const SESSION_NAME_VARIABLES: &[(&str, &str)] = &[
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("HOSTNAME", "metadata.name"),
];
const SESSION_NAME_RULE: &str =
    "2 to 64 letters, digits or any of \"+=,.@_-\" (an STS session name)";
const TAG_CHARS: &str = "letters, digits, spaces or any of \"_.:/=+-@\"";

/// A session name, with its placeholders replaced; STS rules apply to the result.
pub(super) fn read_session_name(c: &mut Checker, at: &Field) -> Option<String> {
    let template = c.string(at)?;
    let name = substitute(c, at, template)?;
    if !is_sts_name(&name) {
        let after = if name == template {
            ""
        } else {
            " after substitution"
        };
        c.problem(
            at,
            format!("must be {SESSION_NAME_RULE}, got {name:?}{after}"),
        );
        return None;
    }
    Some(name)
}

/// Replaces each `${NAME}` in `template` with the value of that environment variable, for the
/// names in `SESSION_NAME_VARIABLES`. Every bad placeholder is reported.
fn substitute(c: &mut Checker, at: &Field, template: &str) -> Option<String> {
    let allowed = || {
        let names: Vec<String> = SESSION_NAME_VARIABLES
            .iter()
            .map(|(name, _)| format!("${{{name}}}"))
            .collect();
        names.join(", ")
    };
    let mut result = String::with_capacity(template.len());
    let mut complete = true;
    let mut rest = template;
    while let Some((before, after)) = rest.split_once("${") {
        result.push_str(before);
        let Some((name, after)) = after.split_once('}') else {
            c.problem(
                at,
                format!(
                    "has `${{` without a closing `}}`; placeholders are {}",
                    allowed()
                ),
            );
            return None;
        };
        rest = after;
        let Some((_, field_path)) = SESSION_NAME_VARIABLES.iter().find(|(n, _)| *n == name) else {
            c.problem(
                at,
                format!(
                    "unknown placeholder `${{{name}}}`; allowed placeholders: {}",
                    allowed()
                ),
            );
            complete = false;
            continue;
        };
        match (c.env)(name).filter(|value| !value.is_empty()) {
            Some(value) => result.push_str(&value),
            None => {
                c.problem(
                    at,
                    format!(
                        "`${{{name}}}` needs the environment variable {name}, which is unset or empty; \
                         set it from the Kubernetes downward API (fieldRef fieldPath: {field_path})"
                    ),
                );
                complete = false;
            }
        }
    }
    result.push_str(rest);
    complete.then_some(result)
}

pub(super) fn read_session_tags(c: &mut Checker, at: &Field) -> Option<BTreeMap<String, String>> {
    let entries = c.entries(at)?;
    let mut valid = entries.len() <= MAX_SESSION_TAGS;
    if !valid {
        c.problem(
            at,
            format!(
                "must have at most {MAX_SESSION_TAGS} tags, got {}",
                entries.len()
            ),
        );
    }
    // STS compares tag keys ignoring case: lowercased key → the first key that has it.
    let mut keys = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for entry in &entries {
        let key = read_tag_key(c, entry, &mut keys);
        let value = read_tag_value(c, &entry.value);
        if let (Some(key), Some(value)) = (key, value) {
            tags.insert(key, value);
        } else {
            valid = false;
        }
    }
    valid.then_some(tags)
}

fn read_tag_key(
    c: &mut Checker,
    entry: &Entry,
    keys: &mut BTreeMap<String, String>,
) -> Option<String> {
    let key = &entry.key;
    if !entry.key_is_string {
        c.key_problem(
            entry,
            format!("a tag key must be a string, got {key}; write \"{key}\""),
        );
        return None;
    }
    if !is_tag_text(key, 1..=128) {
        c.key_problem(
            entry,
            format!("a tag key must be 1 to 128 {TAG_CHARS}, got {key:?}"),
        );
        return None;
    }
    let this = format!("{key:?} (line {})", entry.key_line);
    if let Some(first) = first_use(keys, key.to_lowercase(), &this) {
        c.key_problem(
            entry,
            format!("tag key {key:?} repeats {first}: STS tag keys ignore case"),
        );
        return None;
    }
    Some(key.clone())
}

/// Tag values are strings even when they look like numbers, and may be empty.
fn read_tag_value(c: &mut Checker, at: &Field) -> Option<String> {
    let Data::Value(Scalar::String(value)) = at.data() else {
        let got = c.describe(at.node);
        let hint = c.quote_hint(at);
        c.problem(at, format!("must be a string, got {got}{hint}"));
        return None;
    };
    if !is_tag_text(value, 0..=256) {
        c.problem(
            at,
            format!("a tag value must be at most 256 {TAG_CHARS}, got {value:?}"),
        );
        return None;
    }
    Some(value.to_string())
}
