//! A secret's `mapping` as configured: the property, keys, decoding and templates, and
//! their reading.

use std::collections::BTreeMap;

use super::keys::UnsafeKey;
use super::read::{checked_string, first_use, read_enum, read_list};
use super::templates::check_template;
use super::yaml::{optional, or_default, Checker, Field, Fields};
use super::AT_LEAST_ONE;

/// A secret's `mapping` as configured; the mapping stage's `Mapper` compiles and applies it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    /// Dot path into the JSON value, e.g. `"a.b"`.
    pub property: Option<String>,
    /// Keys to keep, renamed; `None` keeps all.
    pub keys: Option<Vec<KeyMap>>,
    pub decode: Decode,
    /// (output key, minijinja source), in config order.
    pub templates: Vec<(String, String)>,
    pub template_mode: TemplateMode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Decode {
    #[default]
    None,
    Base64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TemplateMode {
    /// Template outputs are added beside the kept keys.
    #[default]
    Add,
    /// Only template outputs are written.
    Replace,
}

/// `property`, `keys`, `decode`, `templates` and `templateMode`.
pub(super) fn read_mapping(c: &mut Checker, f: &mut Fields) -> Option<Mapping> {
    let property = optional(f.get("property"), |v| {
        checked_string(
            c,
            v,
            |p| !p.is_empty() && p.split('.').all(|segment| !segment.is_empty()),
            "a dot-separated path of JSON keys such as \"database.password\"",
        )
    });
    let keys = optional(f.get("keys"), |v| {
        let mut targets = BTreeMap::new();
        read_list(c, v, AT_LEAST_ONE, "key", |c, item| {
            read_key_map(c, item, &mut targets)
        })
    });
    let decode = or_default(f.get("decode"), Decode::None, |v| {
        read_enum(c, v, &[("none", Decode::None), ("base64", Decode::Base64)])
    });
    let templates = or_default(f.get("templates"), Vec::new(), |v| read_templates(c, v));
    let mode_field = f.get("templateMode");
    let template_mode = or_default(mode_field.clone(), TemplateMode::Add, |v| {
        read_enum(
            c,
            v,
            &[
                ("add", TemplateMode::Add),
                ("replace", TemplateMode::Replace),
            ],
        )
    });
    if let (Some(at), Some(templates)) = (&mode_field, &templates) {
        if templates.is_empty() {
            c.problem(at, "applies only with `templates`");
        }
    }
    Some(Mapping {
        property: property?,
        keys: keys?,
        decode: decode?,
        templates: templates?,
        template_mode: template_mode?,
    })
}

fn read_key_map(
    c: &mut Checker,
    at: &Field,
    targets: &mut BTreeMap<String, String>,
) -> Option<KeyMap> {
    let mut f = Fields::open(c, at)?;
    let from = f.require(c, "from").and_then(|v| c.scalar(&v));
    let to_field = f.get("to");
    let to = optional(to_field.clone(), |v| read_output_key(c, v));
    f.finish(c);
    let from = from?;
    let to = to?.unwrap_or_else(|| from.clone());
    if UnsafeKey::check(&to).is_err() && to_field.is_none() {
        c.problem(
            at,
            format!("key {from:?} is not a safe file name: rename it with `to`"),
        );
        return None;
    }
    if let Some(first) = first_use(targets, to.clone(), &at.path) {
        c.problem(
            at,
            format!("output key {to:?} is already produced by {first}"),
        );
        return None;
    }
    Some(KeyMap { from, to })
}

fn read_output_key(c: &mut Checker, at: &Field) -> Option<String> {
    let key = c.scalar(at)?;
    match UnsafeKey::check(&key) {
        Ok(()) => Some(key),
        Err(e) => {
            c.problem(at, format!("must be a safe file name: {e}"));
            None
        }
    }
}

fn read_templates(c: &mut Checker, at: &Field) -> Option<Vec<(String, String)>> {
    let mut templates = Vec::new();
    let mut ok = true;
    for entry in c.entries(at)? {
        if let Err(e) = UnsafeKey::check(&entry.key) {
            c.key_problem(
                &entry,
                format!("a template's name is its output key and must be a safe file name: {e}"),
            );
            ok = false;
            continue;
        }
        let Some(source) = c.string(&entry.value).map(str::to_owned) else {
            ok = false;
            continue;
        };
        if let Err(e) = check_template(&source) {
            c.problem(&entry.value, format!("template does not parse: {e}"));
            ok = false;
            continue;
        }
        templates.push((entry.key, source));
    }
    ok.then_some(templates)
}
