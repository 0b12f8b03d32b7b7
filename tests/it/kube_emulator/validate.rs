//! What the real apiserver does to an object before storing it: decoding checks,
//! defaulting, and the validation rules that a sync daemon can trip over (names,
//! label syntax, Secret keys and size, immutability).

use super::kinds::{Kind, NAMESPACES, SECRETS};
use super::status::{ApiError, Cause};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

const SECRET_MAX_BYTES: usize = 1024 * 1024;
const LABEL_VALUE_MAX: usize = 63;
const DNS_SUBDOMAIN_MAX: usize = 253;
const IMMUTABLE: &str = "field is immutable when `immutable` is set";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const CONFIG_KEY: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// Decoding and defaulting: `stringData` folded into `data`, base64 checked, the
/// Secret `type` and Namespace status/label defaulted, empty maps dropped.
pub fn normalize(kind: &Kind, object: &mut Value) -> Result<(), ApiError> {
    if *kind == SECRETS {
        fold_string_data(object)?;
        check_base64(object)?;
        if object.get("type").is_none_or(Value::is_null) {
            object["type"] = "Opaque".into();
        }
    }
    if *kind == NAMESPACES {
        default_namespace(object);
    }
    drop_empty(object);
    Ok(())
}

pub fn fold_string_data(object: &mut Value) -> Result<(), ApiError> {
    let Some(string_data) = object.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return Ok(());
    };
    let Value::Object(entries) = string_data else {
        return if string_data.is_null() {
            Ok(())
        } else {
            Err(undecodable("stringData must be a map of strings"))
        };
    };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (key, value) in entries {
        let text = value
            .as_str()
            .ok_or_else(|| undecodable("stringData values must be strings"))?;
        object["data"][key] = STANDARD.encode(text).into();
    }
    Ok(())
}

fn check_base64(object: &Value) -> Result<(), ApiError> {
    let Some(data) = object.get("data").and_then(Value::as_object) else {
        return Ok(());
    };
    for value in data.values() {
        let text = value
            .as_str()
            .ok_or_else(|| undecodable("data values must be base64 strings"))?;
        if let Err(e) = STANDARD.decode(text) {
            return Err(undecodable(&match e {
                base64::DecodeError::InvalidByte(at, _) => {
                    format!("illegal base64 data at input byte {at}")
                }
                other => other.to_string(),
            }));
        }
    }
    Ok(())
}

fn undecodable(why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Secret in version \"v1\" cannot be handled as a Secret: {why}"
    ))
}

fn default_namespace(object: &mut Value) {
    let name = object["metadata"]["name"].clone();
    if !object["metadata"]["labels"].is_object() {
        object["metadata"]["labels"] = json!({});
    }
    object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    if object.get("spec").is_none() {
        object["spec"] = json!({"finalizers": ["kubernetes"]});
    }
    object["status"] = json!({"phase": "Active"});
}

/// Go's `omitempty`: null fields and empty maps are not part of a stored object.
fn drop_empty(object: &mut Value) {
    let prune = |map: &mut Map<String, Value>| {
        map.retain(|_, v| !(v.is_null() || v.as_object().is_some_and(Map::is_empty)));
    };
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        prune(meta);
    }
    if let Some(top) = object.as_object_mut() {
        prune(top);
    }
}

/// The 422 checks of a create (`old` None) or an update.
pub fn validate(kind: &Kind, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let mut causes = Vec::new();
    if old.is_none() {
        causes.extend(check_name(kind, name));
    }
    causes.extend(check_labels(object));
    causes.extend(check_annotation_keys(object));
    if *kind == SECRETS {
        causes.extend(check_secret(object, old));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, name, causes))
    }
}

fn check_name(kind: &Kind, name: &str) -> Option<Cause> {
    let (valid, why) = if *kind == NAMESPACES {
        (is_dns_label(name), DNS1123_LABEL)
    } else {
        (is_dns_subdomain(name), DNS1123_SUBDOMAIN)
    };
    (!valid).then(|| Cause::invalid("metadata.name", name, why))
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= LABEL_VALUE_MAX
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= DNS_SUBDOMAIN_MAX && s.split('.').all(is_dns_label)
}

/// `[A-Za-z0-9]` at both ends, `[-A-Za-z0-9_.]` inside: label values and name parts.
fn is_label_word(s: &str) -> bool {
    let bytes = s.as_bytes();
    s.len() <= LABEL_VALUE_MAX
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_word(name),
        None => is_label_word(key),
    }
}

fn check_labels(object: &Value) -> Vec<Cause> {
    let Some(labels) = object["metadata"]["labels"].as_object() else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    for (key, value) in labels {
        if !is_qualified_name(key) {
            causes.push(Cause::invalid("metadata.labels", key, QUALIFIED_NAME));
        }
        let text = value.as_str().unwrap_or("");
        if !text.is_empty() && !is_label_word(text) {
            causes.push(Cause::invalid("metadata.labels", text, LABEL_VALUE));
        }
    }
    causes
}

fn check_annotation_keys(object: &Value) -> Vec<Cause> {
    let Some(annotations) = object["metadata"]["annotations"].as_object() else {
        return Vec::new();
    };
    annotations
        .keys()
        .filter(|k| !is_qualified_name(k))
        .map(|k| Cause::invalid("metadata.annotations", k, QUALIFIED_NAME))
        .collect()
}

fn check_secret(object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let data = object.get("data").and_then(Value::as_object);
    let mut size = 0;
    for (key, value) in data.into_iter().flatten() {
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_key {
            causes.push(Cause::invalid(&format!("data[{key}]"), key, CONFIG_KEY));
        }
        size += value.as_str().map_or(0, |v| v.len() * 3 / 4);
    }
    if size > SECRET_MAX_BYTES {
        causes.push(Cause::too_long("data", SECRET_MAX_BYTES));
    }
    if let Some(old) = old {
        causes.extend(check_secret_update(object, old));
    }
    causes
}

fn check_secret_update(object: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if old["immutable"] == json!(true) {
        if object.get("data") != old.get("data") {
            causes.push(Cause::forbidden("data", IMMUTABLE));
        }
        if object.get("immutable") != old.get("immutable") {
            causes.push(Cause::forbidden("immutable", IMMUTABLE));
        }
    }
    if let Some(old_type) = old["type"].as_str() {
        let new_type = object["type"].as_str().unwrap_or("");
        if new_type != old_type {
            causes.push(Cause::invalid("type", new_type, "field is immutable"));
        }
    }
    causes
}

/// SSA and create need `metadata.name` (or `generateName` on create).
pub fn require_name(kind: &Kind, object: &Value) -> Result<(), ApiError> {
    let has = |k: &str| {
        object["metadata"][k]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    };
    if has("name") || has("generateName") {
        return Ok(());
    }
    Err(ApiError::invalid(
        kind,
        "",
        vec![Cause::required(
            "metadata.name",
            "name or generateName is required",
        )],
    ))
}
