//! Label and field selectors with the apiserver's matching rules (`!=` and `notin`
//! also match objects that lack the label).

use super::kinds::{Kind, SECRETS};
use super::status::ApiError;
use serde_json::Value;

#[derive(Debug, Clone)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, ApiError> {
        split_terms(text)
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(|t| parse_term(&t))
            .collect::<Result<Vec<_>, _>>()
            .map(LabelSelector)
            .map_err(|why| ApiError::bad_request(format!("unable to parse requirement: {why}")))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Absent(k) => label(k).is_none(),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        })
    }
}

/// Commas separate requirements except inside `in (a,b)` value lists.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = terms.last_mut() {
            last.push(c);
        }
    }
    terms.into_iter().map(|t| t.trim().to_string()).collect()
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::Absent(key_of(key)?));
    }
    if let Some((head, values)) = term.split_once('(') {
        return parse_set(head, values);
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key_of(k)?, v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(key_of(k)?, v.trim().to_string()));
    }
    Ok(Requirement::Exists(key_of(term)?))
}

fn parse_set(head: &str, values: &str) -> Result<Requirement, String> {
    let values = values
        .trim_end()
        .strip_suffix(')')
        .ok_or_else(|| format!("missing ')' in {head}({values}"))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    let head = head.trim_end();
    if let Some(key) = head.strip_suffix(" notin") {
        return Ok(Requirement::NotIn(key_of(key)?, values));
    }
    if let Some(key) = head.strip_suffix(" in") {
        return Ok(Requirement::In(key_of(key)?, values));
    }
    Err(format!("unknown set operator in {head:?}"))
}

fn key_of(raw: &str) -> Result<String, String> {
    let key = raw.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

/// `metadata.name`, `metadata.namespace` (and `type` for Secrets), as the real server
/// supports for these kinds.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str, kind: &Kind) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = match term.split_once("!=") {
                Some((f, v)) => (f, false, v),
                None => match term.split_once("==").or_else(|| term.split_once('=')) {
                    Some((f, v)) => (f, true, v),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "invalid selector: '{text}'; can't understand '{term}'"
                        )))
                    }
                },
            };
            let field = field.trim();
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || (field == "type" && *kind == SECRETS);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = field
                .split('.')
                .try_fold(object, |v, part| v.get(part))
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}
