//! Tests of the mapping, by outcome: what it writes, how it fails on a secret, and what
//! it refuses when compiled; the helpers and fixtures here.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::templates::check_template;

mod compile;
mod failures;
mod success;

const CANARY: &str = "canary-3f8a2c71";
/// For numeric paths: minijinja's overflow error quotes both operands.
const NUMERIC_CANARY: &str = "7362915408";

fn text(s: &str) -> Payload {
    Payload::Text(Sensitive::new(s.to_owned()))
}

fn km(from: &str, to: &str) -> KeyMap {
    KeyMap {
        from: from.to_owned(),
        to: to.to_owned(),
    }
}

fn tpl(name: &str, source: &str) -> (String, String) {
    (name.to_owned(), source.to_owned())
}

fn prop(path: &str) -> Mapping {
    Mapping {
        property: Some(path.to_owned()),
        ..Mapping::default()
    }
}

fn templates(list: &[(&str, &str)], mode: TemplateMode) -> Mapping {
    Mapping {
        templates: list.iter().map(|(n, s)| tpl(n, s)).collect(),
        template_mode: mode,
        ..Mapping::default()
    }
}

fn apply(mapping: &Mapping, payload: &Payload) -> Result<Rendered, MappingError> {
    Mapper::new(mapping)?.apply(payload)
}

/// The files as (key, bytes), for comparing with a table row.
fn files(r: &Rendered) -> Vec<(&str, &[u8])> {
    r.files
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose().as_slice()))
        .collect()
}

/// (case name, mapping, secret, expected files).
type Success<'a> = (&'a str, Mapping, Payload, Vec<(&'a str, &'a [u8])>);
/// (case name, mapping, secret, expected kind, text the message must contain).
type Failure = (&'static str, Mapping, Payload, &'static str, &'static str);
/// (case name, mapping, expected kind, text the message must contain).
type Invalid = (&'static str, Mapping, &'static str, &'static str);

const DB: &str = r#"{"username":"app","password":"p@ss:w/rd","host":"db.internal","port":5432}"#;
