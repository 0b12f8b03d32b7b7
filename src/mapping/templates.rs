//! Step 4: rendering templates, and the messages of their failures, which are built
//! from the error kind, line and variable names so that they never quote a value.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use minijinja::{ErrorKind, Value};

use crate::config::keys::key_for_error;
use crate::config::templates::{MAX_TEMPLATE_OUTPUT_BYTES, TEMPLATE_FUEL};
use crate::transform::Rendered;

#[derive(Clone)]
pub(super) struct CompiledTemplate {
    /// Output key, and the template's name in `env`.
    pub(super) name: String,
    /// Variables the template reads that are not engine globals, sorted: the
    /// candidates to name when a render hits an undefined value.
    pub(super) reads: Vec<String>,
}

/// Render errors can come with a detail that quotes a value, so the message is
/// rebuilt from the kind, the line and the names of variables the context lacks.
pub(super) fn render_error_message(
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
pub(super) struct TemplateContext {
    pub(super) values: Value,
    pub(super) keys: BTreeSet<String>,
    not_text: BTreeSet<String>,
}

impl TemplateContext {
    pub(super) fn new(rendered: &Rendered) -> TemplateContext {
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
pub(super) struct CappedOutput {
    pub(super) buf: Vec<u8>,
    pub(super) overflowed: bool,
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
