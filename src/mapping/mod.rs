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

mod steps;
mod templates;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use minijinja::Environment;

use crate::config::keys::key_for_error;
use crate::config::templates::MAX_TEMPLATE_OUTPUT_BYTES;
use crate::config::templates::{check_source, compile_error_message, environment};
use crate::config::{Decode, KeyMap, Mapping, TemplateMode};
use crate::secret::{Payload, Sensitive};
use crate::transform::{self, Rendered, TransformError};
use steps::{decode_all, select_keys, select_property};
use templates::{render_error_message, CappedOutput, CompiledTemplate, TemplateContext};

// === MappingError ===

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

// === impl Mapper ===

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
        let property = mapping
            .property
            .as_deref()
            .map(Property::parse)
            .transpose()?;
        if let Some(keys) = &mapping.keys {
            check_renames(keys)?;
        }
        let (env, templates) = compile_templates(&mapping.templates)?;
        if mapping.template_mode == TemplateMode::Replace && mapping.templates.is_empty() {
            return Err(invalid(
                "template mode \"replace\" without templates would write nothing".to_owned(),
            ));
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

// === compiling a mapping ===

impl Property {
    fn parse(path: &str) -> Result<Property, MappingError> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(invalid(format!(
                "property {:?} has an empty path segment",
                key_for_error(path)
            )));
        }
        Ok(Property {
            path: path.to_owned(),
            segments,
        })
    }
}

/// Output names are config, so a bad or clashing one is refused now rather than
/// on every sync.
fn check_renames(keys: &[KeyMap]) -> Result<(), MappingError> {
    let mut outputs = BTreeSet::new();
    for k in keys {
        transform::check_key(&k.to)?;
        if !outputs.insert(k.to.as_str()) {
            return Err(invalid(format!(
                "two keys are renamed to {:?}",
                key_for_error(&k.to)
            )));
        }
    }
    Ok(())
}

/// One environment holding every template, and what each one reads.
fn compile_templates(
    sources: &[(String, String)],
) -> Result<(Environment<'static>, Vec<CompiledTemplate>), MappingError> {
    let mut env = environment();
    let mut template_names = BTreeSet::new();
    for (name, source) in sources {
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
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut templates = Vec::with_capacity(sources.len());
    for (name, _) in sources {
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
    Ok((env, templates))
}

fn invalid(reason: String) -> MappingError {
    MappingError::InvalidMapping { reason }
}
