//! A role's session `policy`, written as YAML or JSON, checked and compacted to the JSON
//! that STS receives.

use saphyr::Scalar;

use super::tree::Data;
use super::yaml::{line, Checker, Field};

/// STS's limit on the length of an AssumeRole session policy.
const MAX_POLICY_CHARS: usize = 2048;

/// A session policy as compact JSON: either JSON text, or a mapping written as JSON. Policies
/// can be long, so JSON syntax errors give a position instead of quoting the text.
pub(super) fn read_policy(c: &mut Checker, at: &Field) -> Option<String> {
    let json = match at.data() {
        Data::Value(Scalar::String(text)) => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(_)) => compact_json(text),
            Ok(other) => {
                let kind = json_kind(&other);
                c.problem(at, format!("must be a JSON object, got a JSON {kind}"));
                return None;
            }
            Err(e) => {
                c.problem(
                    at,
                    format!("must be a JSON object, but is not valid JSON: {e}"),
                );
                return None;
            }
        },
        Data::Mapping(_) => {
            let before = c.problems.len();
            let mut json = String::new();
            write_json(c, at, &mut json);
            if c.problems.len() > before {
                return None;
            }
            json
        }
        _ => {
            c.expected(at, "a JSON object, as a string or a mapping");
            return None;
        }
    };
    let length = json.chars().count();
    if length > MAX_POLICY_CHARS {
        c.problem(
            at,
            format!("must be at most {MAX_POLICY_CHARS} characters as compact JSON, got {length}"),
        );
        return None;
    }
    Some(json)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Drops the whitespace between tokens of valid JSON. Unlike reserialising, this keeps the
/// order of keys and the spelling of numbers and escapes whatever serde_json's features are.
fn compact_json(json: &str) -> String {
    let mut compact = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for ch in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if ch == '"' {
            in_string = true;
        } else if matches!(ch, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        compact.push(ch);
    }
    compact
}

/// Writes a YAML value as compact JSON, keeping the document's key order; reports what JSON
/// cannot hold.
fn write_json(c: &mut Checker, at: &Field, json: &mut String) {
    match at.data() {
        Data::Value(Scalar::Null) => json.push_str("null"),
        Data::Value(Scalar::Boolean(value)) => json.push_str(&value.to_string()),
        Data::Value(Scalar::Integer(value)) => json.push_str(&value.to_string()),
        Data::Value(Scalar::FloatingPoint(value)) => match serde_json::Number::from_f64(value.0) {
            Some(number) => json.push_str(&number.to_string()),
            None => c.problem(at, "JSON has no infinity or NaN"),
        },
        Data::Value(Scalar::String(value)) => {
            json.push_str(&serde_json::Value::from(value.as_ref()).to_string());
        }
        Data::Sequence(_) => {
            json.push('[');
            for (i, item) in c.list(at).unwrap_or_default().iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                write_json(c, item, json);
            }
            json.push(']');
        }
        Data::Mapping(map) => {
            json.push('{');
            for (i, (key_node, value)) in map.iter().enumerate() {
                // JSON keys are strings, so a key YAML reads otherwise is taken as written:
                // the IAM condition operator `Null` must not become a YAML null.
                let key = match key_node.data() {
                    Data::Value(Scalar::String(key)) => Some(key.to_string()),
                    Data::Value(_) => c.source_text(key_node).map(str::to_owned),
                    _ => None,
                };
                let Some(key) = key else {
                    let got = c.describe(key_node);
                    c.report(
                        &at.path,
                        Some(line(key_node)),
                        format!("keys must be strings, got {got}"),
                    );
                    continue;
                };
                if i > 0 {
                    json.push(',');
                }
                json.push_str(&serde_json::Value::from(key.as_str()).to_string());
                json.push(':');
                write_json(c, &at.child(&key, value), json);
            }
            json.push('}');
        }
        _ => c.expected(at, "a value JSON can hold"),
    }
}
