//! Reshapes a fetched secret before it is written: select a nested property, decode
//! base64, select and rename keys, and add files rendered from templates.
//!
//! Pure, like `transform`: the sink still only sees a `Rendered`.
//!
//! Steps, in this order (each optional):
//! 1. `property`: follow a dot path into the JSON secret; the value found there is
//!    rendered the way `transform::render` renders a whole secret.
//! 2. `decode`: base64-decode every value.
//! 3. `keys`: keep only the listed keys, renamed.
//! 4. `templates`: render minijinja templates over every key of step 2 (so a template
//!    can use a key that step 3 drops), beside the kept keys or instead of them.
//!
//! Errors and `Debug` output never carry secret values. minijinja's own error text is
//! never passed on from a render: its detail can quote values (a filter quoting its
//! input), so messages are built from the error kind, line and variable names only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use minijinja::{Environment, ErrorKind, Value};
use serde_json::value::RawValue;

use crate::config::keys::key_for_error;
use crate::config::templates::{check_source, compile_error_message, environment, TEMPLATE_FUEL};
use crate::secret::{Payload, Sensitive};
use crate::transform::{self, Rendered, TransformError};

// Transitional: the tests' path until they are updated.
pub use crate::config::templates::MAX_TEMPLATE_OUTPUT_BYTES;
// Transitional: the tests' path until they are updated.
pub use crate::config::{Decode, KeyMap, Mapping, TemplateMode};

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The mapping itself is unusable; found when it is compiled, before any secret.
    #[error("invalid mapping: {reason}")]
    InvalidMapping { reason: String },
    #[error("property {property:?} needs a JSON secret, but the secret {reason}")]
    NotJson {
        property: String,
        reason: &'static str,
    },
    #[error("property {property:?} not found: {reason}")]
    PropertyMissing { property: String, reason: String },
    #[error("key {key:?} is not in the secret")]
    KeyMissing { key: String },
    // The base64 crate's own error names the offending byte and offset, which would
    // leak part of the value, so only the key is kept.
    #[error("value of key {key:?} is not valid base64")]
    Decode { key: String },
    /// `reason` is built from config text only (kind, line, variable names).
    #[error("template {name:?}: {reason}")]
    Template { name: String, reason: String },
    #[error("template {name:?}: output is larger than {limit} bytes")]
    TooLarge { name: String, limit: usize },
    #[error(transparent)]
    Transform(#[from] TransformError),
}

impl MappingError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MappingError::InvalidMapping { .. } => "invalid_mapping",
            MappingError::NotJson { .. } => "not_json",
            MappingError::PropertyMissing { .. } => "property_missing",
            MappingError::KeyMissing { .. } => "key_missing",
            MappingError::Decode { .. } => "decode",
            MappingError::Template { .. } => "template",
            MappingError::TooLarge { .. } => "value_too_large",
            // The same labels as an unmapped secret gets for the same problem.
            MappingError::Transform(e) => e.kind(),
        }
    }
}

/// A `Mapping` compiled once per secret and reused on every sync.
#[derive(Clone)]
pub struct Mapper {
    property: Option<Property>,
    keys: Option<Vec<KeyMap>>,
    decode: Decode,
    templates: Vec<CompiledTemplate>,
    mode: TemplateMode,
    /// Only built when there are templates: an environment costs several KiB, times
    /// thousands of secrets.
    env: Option<Environment<'static>>,
}

#[derive(Clone)]
struct Property {
    /// As configured, for error messages.
    path: String,
    segments: Vec<String>,
}

#[derive(Clone)]
struct CompiledTemplate {
    /// Output key, and the template's name in `env`.
    name: String,
    /// Variables the template reads that are not engine globals, sorted: the
    /// candidates to name when a render hits an undefined value.
    reads: Vec<String>,
}

// Hand-written: minijinja's `Environment` Debug is noisy, and listing names only keeps
// this obviously value-free.
impl fmt::Debug for Mapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapper")
            .field("property", &self.property.as_ref().map(|p| &p.path))
            .field("keys", &self.keys)
            .field("decode", &self.decode)
            .field(
                "templates",
                &self.templates.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .field("template_mode", &self.mode)
            .finish()
    }
}

impl Mapper {
    pub fn new(mapping: &Mapping) -> Result<Mapper, MappingError> {
        let property = match &mapping.property {
            None => None,
            Some(path) => {
                let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    return Err(invalid(format!(
                        "property {:?} has an empty path segment",
                        key_for_error(path)
                    )));
                }
                Some(Property {
                    path: path.clone(),
                    segments,
                })
            }
        };

        // Output names are config, so a bad or clashing one is refused now rather than
        // on every sync.
        let mut outputs = BTreeSet::new();
        if let Some(keys) = &mapping.keys {
            for k in keys {
                transform::check_key(&k.to)?;
                if !outputs.insert(k.to.as_str()) {
                    return Err(invalid(format!(
                        "two keys are renamed to {:?}",
                        key_for_error(&k.to)
                    )));
                }
            }
        }

        let mut env = environment();
        let mut template_names = BTreeSet::new();
        for (name, source) in &mapping.templates {
            transform::check_key(name)?;
            if !template_names.insert(name.as_str()) {
                return Err(invalid(format!(
                    "two templates write {:?}",
                    key_for_error(name)
                )));
            }
            check_source(source).map_err(|reason| MappingError::Template {
                name: key_for_error(name),
                reason,
            })?;
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| MappingError::Template {
                    name: key_for_error(name),
                    reason: compile_error_message(&e),
                })?;
        }
        if mapping.template_mode == TemplateMode::Replace && mapping.templates.is_empty() {
            return Err(invalid(
                "template mode \"replace\" without templates would write nothing".to_owned(),
            ));
        }

        let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
        let mut templates = Vec::with_capacity(mapping.templates.len());
        for (name, _) in &mapping.templates {
            let template = env.get_template(name).map_err(|e| MappingError::Template {
                name: key_for_error(name),
                reason: compile_error_message(&e),
            })?;
            let mut reads: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !globals.contains(v.as_str()))
                .collect();
            reads.sort();
            templates.push(CompiledTemplate {
                name: name.clone(),
                reads,
            });
        }

        Ok(Mapper {
            property,
            keys: mapping.keys.clone(),
            decode: mapping.decode,
            templates,
            mode: mapping.template_mode,
            env: (!mapping.templates.is_empty()).then_some(env),
        })
    }

    /// True when `apply` is exactly `transform::render`.
    pub fn is_identity(&self) -> bool {
        self.property.is_none()
            && self.keys.is_none()
            && self.decode == Decode::None
            && self.templates.is_empty()
    }

    pub fn apply(&self, payload: &Payload) -> Result<Rendered, MappingError> {
        let base = match &self.property {
            None => transform::render(payload)?,
            Some(property) => select_property(property, payload)?,
        };
        let decoded = match self.decode {
            Decode::None => base,
            Decode::Base64 => decode_all(base)?,
        };
        // Replace mode still checks `keys`: a listed key that is missing means a broken
        // secret even if no template happens to read it.
        let selected = match &self.keys {
            Some(keys) => Some(select_keys(keys, &decoded)?),
            None => None,
        };
        // Templates see the keys before selection, so the context is taken first.
        let context = (!self.templates.is_empty()).then(|| TemplateContext::new(&decoded));
        let mut files = match (self.mode, selected) {
            (TemplateMode::Replace, _) => BTreeMap::new(),
            (TemplateMode::Add, Some(selected)) => selected,
            (TemplateMode::Add, None) => decoded.files,
        };
        if let Some(context) = &context {
            for template in &self.templates {
                let output = self.render_template(template, context)?;
                files.insert(template.name.clone(), Sensitive::new(output));
            }
        }
        Ok(Rendered { files })
    }

    fn render_template(
        &self,
        template: &CompiledTemplate,
        context: &TemplateContext,
    ) -> Result<Vec<u8>, MappingError> {
        let name = || key_for_error(&template.name);
        let env = self.env.as_ref().ok_or_else(|| MappingError::Template {
            name: name(),
            reason: "not compiled".to_owned(),
        })?;
        let compiled = env
            .get_template(&template.name)
            .map_err(|e| MappingError::Template {
                name: name(),
                reason: compile_error_message(&e),
            })?;
        let mut out = CappedOutput::default();
        // A panic inside the engine (minijinja has had some on hostile input) fails this
        // template, not the task that syncs the secret.
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            compiled.render_captured_to(&context.values, &mut out)
        }));
        let Ok(rendered) = rendered else {
            return Err(MappingError::Template {
                name: name(),
                reason: "the template engine failed on this template".to_owned(),
            });
        };
        match rendered {
            Ok(_) => Ok(out.buf),
            Err(_) if out.overflowed => Err(MappingError::TooLarge {
                name: name(),
                limit: MAX_TEMPLATE_OUTPUT_BYTES,
            }),
            Err(e) => Err(MappingError::Template {
                name: name(),
                reason: render_error_message(&e, template, context),
            }),
        }
    }
}

fn invalid(reason: String) -> MappingError {
    MappingError::InvalidMapping { reason }
}

/// Render errors can come with a detail that quotes a value, so the message is
/// rebuilt from the kind, the line and the names of variables the context lacks.
fn render_error_message(
    e: &minijinja::Error,
    template: &CompiledTemplate,
    context: &TemplateContext,
) -> String {
    let mut message = e.kind().to_string();
    if e.kind() == ErrorKind::OutOfFuel {
        message.push_str(&format!(
            " (more than {TEMPLATE_FUEL} steps: a loop too long?)"
        ));
    }
    if let Some(line) = e.line() {
        message.push_str(&format!(" on line {line}"));
    }
    if e.kind() == ErrorKind::UndefinedError {
        let (not_text, absent): (Vec<&str>, Vec<&str>) = template
            .reads
            .iter()
            .map(String::as_str)
            .filter(|v| !context.keys.contains(*v))
            .partition(|v| context.not_text.contains(*v));
        if !absent.is_empty() {
            message.push_str(&format!("; not in the secret: {}", name_list(&absent)));
        }
        if !not_text.is_empty() {
            message.push_str(&format!(
                "; not UTF-8 text, so not available to templates: {}",
                name_list(&not_text)
            ));
        }
    }
    message
}

fn name_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{:?}", key_for_error(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The variables a template sees: every key whose value is UTF-8 text.
struct TemplateContext {
    values: Value,
    keys: BTreeSet<String>,
    not_text: BTreeSet<String>,
}

impl TemplateContext {
    fn new(rendered: &Rendered) -> TemplateContext {
        let mut values = BTreeMap::new();
        let mut not_text = BTreeSet::new();
        for (key, value) in &rendered.files {
            match std::str::from_utf8(value.expose()) {
                Ok(text) => {
                    values.insert(key.as_str(), Value::from(text));
                }
                Err(_) => {
                    not_text.insert(key.clone());
                }
            }
        }
        TemplateContext {
            keys: values.keys().map(|k| (*k).to_owned()).collect(),
            values: Value::from_iter(values),
            not_text,
        }
    }
}

/// Collects template output and refuses to grow past the cap, so an exploding
/// template fails on the first oversized write instead of after building it all.
#[derive(Default)]
struct CappedOutput {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedOutput {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > MAX_TEMPLATE_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("template output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Step 1 with a property: navigate by exact source text (`RawValue`), never through
/// `serde_json::Value`, so big numbers and nested key order survive.
fn select_property(property: &Property, payload: &Payload) -> Result<Rendered, MappingError> {
    let path = || key_for_error(&property.path);
    let text = match payload {
        Payload::Text(text) => text.expose(),
        Payload::Binary(_) => {
            return Err(MappingError::NotJson {
                property: path(),
                reason: "is binary",
            })
        }
    };
    let root: Box<RawValue> = serde_json::from_str(text).map_err(|_| MappingError::NotJson {
        property: path(),
        reason: "is not valid JSON",
    })?;
    let mut current = root;
    for (depth, segment) in property.segments.iter().enumerate() {
        let parent = || {
            if depth == 0 {
                "the secret".to_owned()
            } else {
                format!("{:?}", key_for_error(&property.segments[..depth].join(".")))
            }
        };
        let Some(entries) = transform::object_entries(current.get()) else {
            return Err(MappingError::PropertyMissing {
                property: path(),
                reason: format!("{} is not a JSON object", parent()),
            });
        };
        let mut found = None;
        for (key, value) in entries {
            if key == *segment {
                // Which duplicate was meant is unknowable; refuse, as `render` does.
                if found.is_some() {
                    return Err(TransformError::DuplicateKey {
                        key: key_for_error(segment),
                    }
                    .into());
                }
                found = Some(value);
            }
        }
        current = found.ok_or_else(|| MappingError::PropertyMissing {
            property: path(),
            reason: format!("{} has no key {:?}", parent(), key_for_error(segment)),
        })?;
    }
    Ok(transform::render_json_value(current.get())?)
}

fn decode_all(rendered: Rendered) -> Result<Rendered, MappingError> {
    // Padding optional: secrets are pasted by hand and trailing `=` gets lost.
    const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut files = BTreeMap::new();
    for (key, value) in rendered.files {
        // Whitespace anywhere, not only around: `base64` wraps its output at 76
        // columns, and that wrapped text is what people paste into secrets.
        let compact: Vec<u8> = value
            .expose()
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let decoded = STANDARD_ANY_PADDING
            .decode(&compact)
            .map_err(|_| MappingError::Decode {
                key: key_for_error(&key),
            })?;
        files.insert(key, Sensitive::new(decoded));
    }
    Ok(Rendered { files })
}

fn select_keys(
    keys: &[KeyMap],
    rendered: &Rendered,
) -> Result<BTreeMap<String, Sensitive<Vec<u8>>>, MappingError> {
    let mut files = BTreeMap::new();
    for k in keys {
        let value = rendered
            .files
            .get(&k.from)
            .ok_or_else(|| MappingError::KeyMissing {
                key: key_for_error(&k.from),
            })?;
        files.insert(k.to.clone(), value.clone());
    }
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::templates::check_template;

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

    const DB: &str =
        r#"{"username":"app","password":"p@ss:w/rd","host":"db.internal","port":5432}"#;

    #[test]
    fn successful_mappings() {
        let nested = r#"{"outer": {"db": {"user": "u", "n": 123456789012345678901234567890,
            "obj": { "z": 1, "a": [ 1, 2 ] }}, "s": "line\nbreak", "big": 123456789012345678901234567890,
            "list": [ 1, "a b" ], "flag": true}}"#;
        let digits = "0123456789".repeat(10);
        let at_cap = "x".repeat(MAX_TEMPLATE_OUTPUT_BYTES);
        let cases: Vec<Success> = vec![
            (
                "property selects a nested object",
                prop("outer.db"),
                text(nested),
                vec![
                    ("n", b"123456789012345678901234567890"),
                    ("obj", br#"{"z":1,"a":[1,2]}"#),
                    ("user", b"u"),
                ],
            ),
            (
                "property selects a string",
                prop("outer.s"),
                text(nested),
                vec![("value", b"line\nbreak")],
            ),
            (
                "property keeps a 30-digit integer exact",
                prop("outer.big"),
                text(nested),
                vec![("value", b"123456789012345678901234567890")],
            ),
            (
                "property selects an array as compact text",
                prop("outer.list"),
                text(nested),
                vec![("value", br#"[1,"a b"]"#)],
            ),
            (
                "property selects a bool",
                prop("outer.flag"),
                text(nested),
                vec![("value", b"true")],
            ),
            (
                "property at the top level",
                prop("username"),
                text(DB),
                vec![("value", b"app")],
            ),
            (
                "keys select and rename",
                Mapping {
                    keys: Some(vec![km("username", "DB_USER"), km("port", "port")]),
                    ..Mapping::default()
                },
                text(DB),
                vec![("DB_USER", b"app"), ("port", b"5432")],
            ),
            (
                "one key copied to two names",
                Mapping {
                    keys: Some(vec![km("host", "a"), km("host", "b")]),
                    ..Mapping::default()
                },
                text(DB),
                vec![("a", b"db.internal"), ("b", b"db.internal")],
            ),
            (
                "base64 decodes every value, padding optional, whitespace tolerated",
                Mapping {
                    decode: Decode::Base64,
                    ..Mapping::default()
                },
                text(r#"{"a":"aGVsbG8=","b":"aGVsbG8","c":"  aGVs\nbG8=\n","empty":""}"#),
                vec![
                    ("a", b"hello"),
                    ("b", b"hello"),
                    ("c", b"hello"),
                    ("empty", b""),
                ],
            ),
            (
                "base64 to binary",
                Mapping {
                    decode: Decode::Base64,
                    ..Mapping::default()
                },
                text(r#"{"bin":"AP/+gA=="}"#),
                vec![("bin", &[0x00, 0xff, 0xfe, 0x80])],
            ),
            (
                "base64 of a whole non-JSON secret",
                Mapping {
                    decode: Decode::Base64,
                    ..Mapping::default()
                },
                text("aGVsbG8=\n"),
                vec![("value", b"hello")],
            ),
            (
                "property, decode and keys together",
                Mapping {
                    property: Some("tls".to_owned()),
                    decode: Decode::Base64,
                    keys: Some(vec![km("crt", "tls.crt")]),
                    ..Mapping::default()
                },
                text(r#"{"tls":{"crt":"Y2VydA==","key":"a2V5"}}"#),
                vec![("tls.crt", b"cert")],
            ),
            (
                "template added beside all keys",
                templates(&[("greeting", "hi {{ username }}")], TemplateMode::Add),
                text(r#"{"username":"app"}"#),
                vec![("greeting", b"hi app"), ("username", b"app")],
            ),
            (
                "template replaces everything",
                templates(
                    &[(
                        "DATABASE_URL",
                        "postgres://{{ username }}:{{ password }}@{{ host }}:{{ port }}/app",
                    )],
                    TemplateMode::Replace,
                ),
                text(DB),
                vec![(
                    "DATABASE_URL",
                    b"postgres://app:p@ss:w/rd@db.internal:5432/app",
                )],
            ),
            (
                "template reads a key that keys drops",
                Mapping {
                    keys: Some(vec![km("username", "user")]),
                    templates: vec![tpl("pw_len", "{{ password | length }}")],
                    ..Mapping::default()
                },
                text(DB),
                vec![("pw_len", b"9"), ("user", b"app")],
            ),
            (
                "template output overrides a kept key of the same name",
                Mapping {
                    keys: Some(vec![km("host", "host")]),
                    templates: vec![tpl("host", "{{ host | upper }}")],
                    ..Mapping::default()
                },
                text(DB),
                vec![("host", b"DB.INTERNAL")],
            ),
            (
                "template sees decoded values",
                Mapping {
                    decode: Decode::Base64,
                    templates: vec![tpl("t", "[{{ a }}]")],
                    template_mode: TemplateMode::Replace,
                    ..Mapping::default()
                },
                text(r#"{"a":"aGVsbG8="}"#),
                vec![("t", b"[hello]")],
            ),
            (
                "binary values are skipped from the context, not fatal",
                Mapping {
                    decode: Decode::Base64,
                    templates: vec![tpl("t", "{{ a }}{% if bin is defined %}!{% endif %}")],
                    template_mode: TemplateMode::Replace,
                    ..Mapping::default()
                },
                text(r#"{"a":"aGk=","bin":"/w=="}"#),
                vec![("t", b"hi")],
            ),
            (
                "hostile values pass through unchanged, no escaping even for .html",
                templates(
                    &[("page.html", "<{{ v }}>"), ("raw", "{{ v }}")],
                    TemplateMode::Replace,
                ),
                text(r#"{"v":"q\"'$HOME ${x} `id` \\ \n\u0000 <&> {{ v }}"}"#),
                vec![
                    ("page.html", b"<q\"'$HOME ${x} `id` \\ \n\0 <&> {{ v }}>"),
                    ("raw", b"q\"'$HOME ${x} `id` \\ \n\0 <&> {{ v }}"),
                ],
            ),
            (
                "template trailing newline is kept",
                templates(&[("t", "{{ host }}\n")], TemplateMode::Replace),
                text(DB),
                vec![("t", b"db.internal\n")],
            ),
            (
                "loops within the fuel budget work",
                templates(
                    &[("t", "{% for i in range(100) %}{{ i % 10 }}{% endfor %}")],
                    TemplateMode::Replace,
                ),
                text("{}"),
                vec![("t", digits.as_bytes())],
            ),
            (
                "output exactly at the cap is fine",
                templates(&[("t", "{{ x }}")], TemplateMode::Replace),
                text(&format!(r#"{{"x":"{at_cap}"}}"#)),
                vec![("t", at_cap.as_bytes())],
            ),
        ];
        for (name, mapping, payload, want) in cases {
            let got = apply(&mapping, &payload)
                .unwrap_or_else(|e| panic!("{name}: unexpected error {e}"));
            assert_eq!(files(&got), want, "{name}");
        }
    }

    #[test]
    fn without_a_mapping_apply_is_render() {
        let mapper = Mapper::new(&Mapping::default()).unwrap();
        assert!(mapper.is_identity());
        for payload in [
            text(DB),
            text("not json"),
            text(r#"{"n": 123456789012345678901234567890}"#),
            Payload::Binary(Sensitive::new(vec![0, 1, 0xff])),
        ] {
            assert_eq!(
                mapper.apply(&payload).unwrap(),
                transform::render(&payload).unwrap()
            );
        }
    }

    #[test]
    fn is_identity_only_without_steps() {
        let not_identity = [
            prop("a"),
            Mapping {
                keys: Some(vec![]),
                ..Mapping::default()
            },
            Mapping {
                decode: Decode::Base64,
                ..Mapping::default()
            },
            templates(&[("t", "x")], TemplateMode::Add),
        ];
        for mapping in not_identity {
            assert!(!Mapper::new(&mapping).unwrap().is_identity(), "{mapping:?}");
        }
    }

    fn failure_cases() -> Vec<Failure> {
        let secret = format!(
            r#"{{"username":"app","password":"{CANARY}","host":"h","nested":{{"s":"{CANARY}"}},"b64":"{CANARY}$"}}"#
        );
        let t = text(&secret);
        vec![
            (
                "missing top-level property",
                prop("nope"),
                t.clone(),
                "property_missing",
                r#"property "nope" not found: the secret has no key "nope""#,
            ),
            (
                "missing nested property",
                prop("nested.x.y"),
                t.clone(),
                "property_missing",
                r#""nested" has no key "x""#,
            ),
            (
                "property through a string",
                prop("password.x"),
                t.clone(),
                "property_missing",
                r#""password" is not a JSON object"#,
            ),
            (
                "property on a JSON array secret",
                prop("a"),
                text(&format!(r#"["{CANARY}"]"#)),
                "property_missing",
                "the secret is not a JSON object",
            ),
            (
                "property on non-JSON text",
                prop("a"),
                text(CANARY),
                "not_json",
                "is not valid JSON",
            ),
            (
                "property on a binary secret",
                prop("a"),
                Payload::Binary(Sensitive::new(CANARY.as_bytes().to_vec())),
                "not_json",
                "is binary",
            ),
            (
                "property through a duplicate key",
                prop("d.x"),
                text(&format!(r#"{{"d":{{"x":"{CANARY}"}},"d":{{"x":1}}}}"#)),
                "duplicate_key",
                r#"duplicate key "d""#,
            ),
            (
                "selected object with an unsafe key",
                prop("o"),
                text(&format!(r#"{{"o":{{"../x":"{CANARY}"}}}}"#)),
                "unsafe_key",
                "../x",
            ),
            (
                "missing key",
                Mapping {
                    keys: Some(vec![km("username", "u"), km("api_key", "k")]),
                    ..Mapping::default()
                },
                t.clone(),
                "key_missing",
                r#"key "api_key" is not in the secret"#,
            ),
            (
                "missing key in replace mode",
                Mapping {
                    keys: Some(vec![km("api_key", "k")]),
                    templates: vec![tpl("t", "x")],
                    template_mode: TemplateMode::Replace,
                    ..Mapping::default()
                },
                t.clone(),
                "key_missing",
                "api_key",
            ),
            (
                "invalid base64",
                Mapping {
                    property: Some("b64".to_owned()),
                    decode: Decode::Base64,
                    ..Mapping::default()
                },
                t.clone(),
                "decode",
                r#"value of key "value" is not valid base64"#,
            ),
            (
                "invalid base64 names the key",
                Mapping {
                    decode: Decode::Base64,
                    ..Mapping::default()
                },
                text(&format!(r#"{{"cert":"{CANARY}!"}}"#)),
                "decode",
                r#""cert""#,
            ),
            (
                "strict undefined names the missing variable",
                templates(
                    &[("url", "{{ username }}:{{ pasword }}@{{ hots }}")],
                    TemplateMode::Add,
                ),
                t.clone(),
                "template",
                r#"template "url": undefined value on line 1; not in the secret: "hots", "pasword""#,
            ),
            (
                "undefined on a later line",
                templates(&[("t", "{{ username }}\n{{ password }}\n{{ x }}")], TemplateMode::Add),
                t.clone(),
                "template",
                r#"undefined value on line 3; not in the secret: "x""#,
            ),
            (
                "undefined attribute of a value",
                templates(&[("t", "{{ password.foo }}")], TemplateMode::Add),
                t.clone(),
                "template",
                "undefined value on line 1",
            ),
            (
                "non-UTF-8 value referenced",
                Mapping {
                    decode: Decode::Base64,
                    templates: vec![tpl("t", "{{ bin }}")],
                    ..Mapping::default()
                },
                text(r#"{"bin":"/w=="}"#),
                "template",
                r#"not UTF-8 text, so not available to templates: "bin""#,
            ),
            (
                "filter error over a value",
                templates(&[("t", "{{ password | int }}")], TemplateMode::Add),
                t.clone(),
                "template",
                r#"template "t": "#,
            ),
            (
                "filter error over a value (2)",
                templates(&[("t", "{{ password + 1 }}")], TemplateMode::Add),
                t.clone(),
                "template",
                "invalid operation on line 1",
            ),
            (
                "integer overflow over a secret number",
                templates(
                    &[(
                        "t",
                        "{{ (pin | int) + 170141183460469231731687303715884105727 }}",
                    )],
                    TemplateMode::Add,
                ),
                text(&format!(r#"{{"pin":"{NUMERIC_CANARY}"}}"#)),
                "template",
                "invalid operation on line 1",
            ),
            (
                "unknown filter",
                templates(&[("t", "{{ password | nosuch }}")], TemplateMode::Add),
                t.clone(),
                "template",
                "unknown filter",
            ),
            (
                "huge range refused",
                templates(
                    &[("t", "{% for i in range(100000000) %}{{ password }}{% endfor %}")],
                    TemplateMode::Add,
                ),
                t.clone(),
                "template",
                "line 1",
            ),
            (
                "nested loop runs out of fuel",
                templates(
                    &[(
                        "t",
                        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
                    )],
                    TemplateMode::Add,
                ),
                t.clone(),
                "template",
                "engine ran out of fuel (more than 20000 steps",
            ),
            (
                "one huge value",
                templates(&[("t", "{{ big }}")], TemplateMode::Add),
                text(&format!(r#"{{"big":"{}"}}"#, "x".repeat(100_000))),
                "value_too_large",
                r#"template "t": output is larger than 65536 bytes"#,
            ),
            (
                "output one byte past the cap",
                templates(&[("t", "{{ big }}!")], TemplateMode::Add),
                text(&format!(r#"{{"big":"{}"}}"#, "x".repeat(65_536))),
                "value_too_large",
                "65536",
            ),
            (
                "a loop of values",
                templates(
                    &[("t", "{% for i in range(100) %}{{ big }}{% endfor %}")],
                    TemplateMode::Add,
                ),
                text(&format!(r#"{{"big":"{}"}}"#, "x".repeat(1_000))),
                "value_too_large",
                "larger than",
            ),
        ]
    }

    #[test]
    fn failures() {
        for (name, mapping, payload, kind, contains) in failure_cases() {
            match apply(&mapping, &payload) {
                Ok(r) => panic!("{name}: expected an error, got {r:?}"),
                Err(e) => {
                    assert_eq!(e.kind(), kind, "{name}: {e}");
                    let shown = e.to_string();
                    assert!(
                        shown.contains(contains),
                        "{name}: {shown:?} lacks {contains:?}"
                    );
                }
            }
        }
    }

    /// Mappings refused when compiled.
    fn invalid_mappings() -> Vec<Invalid> {
        vec![
            (
                "unsafe template output key",
                templates(&[("../x", "{{ a }}")], TemplateMode::Add),
                "unsafe_key",
                r#"unsafe key "../x""#,
            ),
            (
                "template output key with a slash",
                templates(&[("a/b", "x")], TemplateMode::Add),
                "unsafe_key",
                "'/'",
            ),
            (
                "unsafe rename target",
                Mapping {
                    keys: Some(vec![km("a", "..data")]),
                    ..Mapping::default()
                },
                "unsafe_key",
                "..data",
            ),
            (
                "two keys renamed to one name",
                Mapping {
                    keys: Some(vec![km("a", "x"), km("b", "x")]),
                    ..Mapping::default()
                },
                "invalid_mapping",
                r#"two keys are renamed to "x""#,
            ),
            (
                "two templates with one output",
                templates(&[("t", "a"), ("t", "b")], TemplateMode::Add),
                "invalid_mapping",
                r#"two templates write "t""#,
            ),
            (
                "empty property segment",
                prop("a..b"),
                "invalid_mapping",
                "empty path segment",
            ),
            (
                "empty property",
                prop(""),
                "invalid_mapping",
                "empty path segment",
            ),
            (
                "replace without templates",
                Mapping {
                    template_mode: TemplateMode::Replace,
                    ..Mapping::default()
                },
                "invalid_mapping",
                "replace",
            ),
            (
                "template syntax error",
                templates(&[("t", "ok\n{{ username")], TemplateMode::Add),
                "template",
                "syntax error",
            ),
        ]
    }

    #[test]
    fn invalid_mappings_are_refused_when_compiled() {
        for (name, mapping, kind, contains) in invalid_mappings() {
            match Mapper::new(&mapping) {
                Ok(m) => panic!("{name}: accepted {m:?}"),
                Err(e) => {
                    assert_eq!(e.kind(), kind, "{name}: {e}");
                    let shown = e.to_string();
                    assert!(
                        shown.contains(contains),
                        "{name}: {shown:?} lacks {contains:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn check_template_reports_syntax_errors_with_line() {
        let cases: [(&str, Option<&str>); 7] = [
            ("plain text", None),
            ("{{ a }}:{{ b | upper }}", None),
            ("{% for x in xs %}{{ x }}{% endfor %}", None),
            ("line one\n{{ a ", Some("syntax error")),
            ("line one\n{{ a ", Some("(line 2)")),
            ("{% for x in xs %}", Some("syntax error")),
            ("{{ a }} {% endif %}", Some("syntax error")),
        ];
        for (source, want) in cases {
            match (check_template(source), want) {
                (Ok(()), None) => {}
                (Err(message), Some(part)) => {
                    assert!(message.contains(part), "{source:?}: {message:?}");
                }
                (got, want) => panic!("{source:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn no_error_or_debug_contains_a_secret_value() {
        let mut shown = Vec::new();
        for (name, mapping, payload, _, _) in failure_cases() {
            let mapper = Mapper::new(&mapping).unwrap();
            shown.push(format!("{mapper:?} {mapper:#?} {payload:?}"));
            match mapper.apply(&payload) {
                Ok(r) => panic!("{name}: expected an error, got {r:?}"),
                Err(e) => shown.push(format!("{name}: {e} | {e:?} | {e:#?}")),
            }
        }
        for (_, mapping, _, _) in invalid_mappings() {
            if let Err(e) = Mapper::new(&mapping) {
                shown.push(format!("{e} | {e:?}"));
            }
        }
        // Successful output's Debug too.
        let ok = apply(
            &templates(&[("t", "{{ password }}")], TemplateMode::Add),
            &text(&format!(r#"{{"password":"{CANARY}"}}"#)),
        )
        .unwrap();
        shown.push(format!("{ok:?} {ok:#?}"));
        assert!(shown.len() > 30);
        for s in shown {
            assert!(!s.contains(CANARY), "canary leaked: {s}");
            // A fragment too: base64 and filter errors like to quote a few bytes.
            assert!(!s.contains("3f8a2c71"), "canary fragment leaked: {s}");
            assert!(!s.contains(NUMERIC_CANARY), "numeric canary leaked: {s}");
        }
    }

    #[test]
    fn compiled_once_and_reused() {
        let mapper = Mapper::new(&templates(&[("t", "{{ a }}")], TemplateMode::Replace)).unwrap();
        for v in ["1", "2", "3"] {
            let r = mapper.apply(&text(&format!(r#"{{"a":"{v}"}}"#))).unwrap();
            assert_eq!(files(&r), vec![("t", v.as_bytes())]);
        }
        // Each render gets its own fuel, not a shared budget that runs dry.
        let looping = Mapper::new(&templates(
            &[("t", "{% for i in range(5000) %}{% endfor %}")],
            TemplateMode::Replace,
        ))
        .unwrap();
        for _ in 0..10 {
            looping.apply(&text("{}")).unwrap();
        }
    }

    #[test]
    fn mapper_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Mapper>();
    }
}
