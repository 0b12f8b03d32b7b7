//! The span-carrying YAML reader: a `Checker` that collects problems with their path and
//! line, and `Field`/`Fields` that walk the document's tree (`tree`) and quote values as they
//! were written.

use std::ops::RangeInclusive;
use std::time::Duration;

use saphyr::Scalar;

use super::tree::{Data, NodeRef};
use super::{ConfigErrors, Problem};

const DURATION_FORM: &str = "a duration such as \"90s\", \"5m\" or \"1h\"";

/// Collects problems and knows the source text, to quote values as the user wrote them.
pub(super) struct Checker<'s> {
    pub(super) source: &'s str,
    /// Byte offset of every char (and the end) when the text is not ASCII: the parser
    /// marks positions in chars, and looking each one up by walking the text made
    /// describing many values quadratic.
    pub(super) char_offsets: Option<Vec<usize>>,
    /// Looks up the environment variables that session name placeholders refer to.
    pub(super) env: &'s dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<Problem>,
    /// Reported like problems, but they do not make the config invalid.
    pub(super) warnings: Vec<Problem>,
}

/// A node together with its path in the config.
#[derive(Clone)]
pub(super) struct Field<'a> {
    pub(super) path: String,
    pub(super) node: NodeRef<'a>,
}

// === impl Field ===

impl<'a> Field<'a> {
    pub(super) fn root(node: NodeRef<'a>) -> Self {
        Self {
            path: String::new(),
            node,
        }
    }

    pub(super) fn child(&self, key: &str, node: NodeRef<'a>) -> Self {
        Self {
            path: self.child_path(key),
            node,
        }
    }

    pub(super) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn item(&self, index: usize, node: NodeRef<'a>) -> Self {
        Self {
            path: format!("{}[{index}]", self.path),
            node,
        }
    }

    pub(super) fn line(&self) -> usize {
        self.node.line()
    }

    /// What the node holds; custom tags (`!foo {...}`) carry no meaning here and are looked
    /// through.
    pub(super) fn data(&self) -> Data<'a> {
        self.node.data()
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(self.data(), Data::Value(Scalar::Null))
    }
}

pub(super) fn line(node: NodeRef) -> usize {
    node.line()
}

/// One key of a mapping.
pub(super) struct Entry<'a> {
    pub(super) key: String,
    /// False for keys YAML reads as numbers or booleans (`123:`); their `key` is the source text.
    pub(super) key_is_string: bool,
    pub(super) key_line: usize,
    pub(super) value: Field<'a>,
}

// === impl Entry ===

impl Entry<'_> {
    /// The key for messages: quoted if it is a string, as written otherwise.
    pub(super) fn shown_key(&self) -> String {
        if self.key_is_string {
            format!("{:?}", self.key)
        } else {
            self.key.clone()
        }
    }
}

// === impl Checker: reporting ===

impl<'s> Checker<'s> {
    pub(super) fn report(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }

    pub(super) fn problem(&mut self, at: &Field, message: impl Into<String>) {
        self.report(&at.path, Some(at.line()), message);
    }

    /// A problem with a mapping key rather than its value.
    pub(super) fn key_problem(&mut self, entry: &Entry, message: impl Into<String>) {
        self.report(&entry.value.path, Some(entry.key_line), message);
    }

    pub(super) fn warn(&mut self, at: &Field, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: at.path.clone(),
            line: Some(at.line()),
            message: message.into(),
        });
    }

    /// Reports a value of the wrong kind: "must be {what}, got {the value}".
    pub(super) fn expected(&mut self, at: &Field, what: &str) {
        let subject = if at.path.is_empty() {
            "the config "
        } else {
            ""
        };
        let got = self.describe(at.node);
        self.problem(at, format!("{subject}must be {what}, got {got}"));
    }

    pub(super) fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ => {
                if self.problems.is_empty() {
                    // Every reader reports before giving up, so this is only a safety net.
                    self.report("", None, "the config is invalid");
                }
                // Stable, so problems on one line keep the order they were found in.
                self.problems.sort_by_key(|p| p.line);
                Err(ConfigErrors(self.problems))
            }
        }
    }
}

// === impl Checker: the source as written ===

impl<'s> Checker<'s> {
    /// The byte offset of the char at `char_index`: the parser marks positions in chars.
    fn char_to_byte(&self, char_index: usize) -> Option<usize> {
        match &self.char_offsets {
            Some(offsets) => offsets.get(char_index).copied(),
            None => (char_index <= self.source.len()).then_some(char_index),
        }
    }

    /// The node as written in the source, such as `0400` or `"db"`.
    pub(super) fn source_text(&self, node: NodeRef) -> Option<&'s str> {
        let (start, end) = node.char_span();
        let start = self.char_to_byte(start)?;
        let end = self.char_to_byte(end)?;
        self.source.get(start..end).filter(|s| !s.is_empty())
    }

    /// A short description of a value for messages.
    pub(super) fn describe(&self, node: NodeRef) -> String {
        match node.data() {
            Data::Value(Scalar::String(s)) => format!("{s:?}"),
            Data::Value(Scalar::Null) => "null".to_owned(),
            Data::Sequence(_) => "a list".to_owned(),
            Data::Mapping(_) => "a mapping".to_owned(),
            _ => self
                .source_text(node)
                .map_or_else(|| "an invalid value".to_owned(), str::to_owned),
        }
    }
}

// === impl Checker: reading values ===

impl<'s> Checker<'s> {
    /// A non-empty string. Numbers and booleans are refused so `region: 1` can't slip through.
    pub(super) fn string<'a>(&mut self, at: &Field<'a>) -> Option<&'a str> {
        match at.data() {
            Data::Value(Scalar::String(s)) if s.is_empty() => {
                self.problem(at, "must not be empty");
                None
            }
            Data::Value(Scalar::String(s)) => Some(s),
            _ => {
                self.expected(at, "a string");
                None
            }
        }
    }

    /// Any non-empty scalar, as written. Secret ids and version labels may look like numbers
    /// (`12345`, `0x1F`), and YAML's number parsing would lose their spelling.
    pub(super) fn scalar(&mut self, at: &Field) -> Option<String> {
        let text = match at.data() {
            Data::Value(Scalar::String(s)) => Some(s.to_string()),
            Data::Value(Scalar::Null) => None,
            Data::Value(_) => self.source_text(at.node).map(str::to_owned),
            _ => None,
        };
        match text {
            Some(text) if text.is_empty() => {
                self.problem(at, "must not be empty");
                None
            }
            Some(text) => Some(text),
            None => {
                self.expected(at, "a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, at: &Field) -> Option<bool> {
        match at.data() {
            Data::Value(Scalar::Boolean(value)) => Some(*value),
            _ => {
                self.expected(at, "true or false");
                None
            }
        }
    }

    /// For a scalar that YAML did not read as a string: how to write it so that it is one.
    pub(super) fn quote_hint(&self, at: &Field) -> String {
        let kind = match at.data() {
            Data::Value(Scalar::Boolean(_)) => "a boolean",
            Data::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => "a number",
            _ => return String::new(),
        };
        self.source_text(at.node).map_or_else(String::new, |raw| {
            format!("; unquoted, YAML reads it as {kind}, so write \"{raw}\"")
        })
    }

    pub(super) fn list<'a>(&mut self, at: &Field<'a>) -> Option<Vec<Field<'a>>> {
        let Data::Sequence(items) = at.data() else {
            self.expected(at, "a list");
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .map(|(i, node)| at.item(i, node))
                .collect(),
        )
    }

    pub(super) fn entries<'a>(&mut self, at: &Field<'a>) -> Option<Vec<Entry<'a>>> {
        let Data::Mapping(map) = at.data() else {
            self.expected(at, "a mapping");
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key_node, value) in map.iter() {
            let key_line = line(key_node);
            let (key, key_is_string) = match key_node.data() {
                Data::Value(Scalar::String(s)) => (s.to_string(), true),
                Data::Value(Scalar::Null) | Data::Sequence(_) | Data::Mapping(_) => {
                    let got = self.describe(key_node);
                    self.report(
                        &at.path,
                        Some(key_line),
                        format!("keys must be names, got {got}"),
                    );
                    continue;
                }
                _ => (self.describe(key_node), false),
            };
            let value = at.child(&key, value);
            entries.push(Entry {
                key,
                key_is_string,
                key_line,
                value,
            });
        }
        Some(entries)
    }

    pub(super) fn duration(&mut self, at: &Field) -> Option<Duration> {
        let Data::Value(Scalar::String(text)) = at.data() else {
            self.expected(at, DURATION_FORM);
            return None;
        };
        match humantime::parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(e) => {
                self.problem(at, format!("must be {DURATION_FORM}, got {text:?} ({e})"));
                None
            }
        }
    }

    pub(super) fn integer_within(&mut self, at: &Field, range: RangeInclusive<u32>) -> Option<u32> {
        let value = match at.data() {
            Data::Value(Scalar::Integer(n)) => u32::try_from(*n).ok(),
            _ => {
                self.expected(at, "a whole number");
                return None;
            }
        };
        match value.filter(|v| range.contains(v)) {
            Some(v) => Some(v),
            None => {
                let got = self.describe(at.node);
                self.problem(
                    at,
                    format!(
                        "must be between {} and {}, got {got}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn duration_within(
        &mut self,
        at: &Field,
        range: RangeInclusive<Duration>,
    ) -> Option<Duration> {
        let duration = self.duration(at)?;
        if range.contains(&duration) {
            return Some(duration);
        }
        let min = humantime::format_duration(*range.start());
        let allowed = if *range.end() == Duration::MAX {
            format!("at least {min}")
        } else {
            format!(
                "between {min} and {}",
                humantime::format_duration(*range.end())
            )
        };
        let got = self.describe(at.node);
        self.problem(at, format!("must be {allowed}, got {got}"));
        None
    }
}

/// Reads the fields of a mapping. Every key asked for is an allowed key; `finish` reports the
/// keys nobody asked for, listing the allowed ones. So adding a field is adding a `get`.
pub(super) struct Fields<'a> {
    pub(super) at: Field<'a>,
    pub(super) entries: Vec<Entry<'a>>,
    used: Vec<bool>,
    pub(super) allowed: Vec<&'static str>,
}

// === impl Fields ===

impl<'a> Fields<'a> {
    pub(super) fn open(c: &mut Checker, at: &Field<'a>) -> Option<Self> {
        let entries = c.entries(at)?;
        Some(Self {
            at: at.clone(),
            used: vec![false; entries.len()],
            entries,
            allowed: Vec::new(),
        })
    }

    /// The field's value; `None` when it is absent or null (`key:` with nothing after it).
    pub(super) fn get(&mut self, key: &'static str) -> Option<Field<'a>> {
        // A field may be looked at twice (once to refuse it in some combination).
        if !self.allowed.contains(&key) {
            self.allowed.push(key);
        }
        let i = self
            .entries
            .iter()
            .position(|e| e.key_is_string && e.key == key)?;
        self.used[i] = true;
        let value = &self.entries[i].value;
        (!value.is_null()).then(|| value.clone())
    }

    pub(super) fn require(&mut self, c: &mut Checker, key: &'static str) -> Option<Field<'a>> {
        let value = self.get(key);
        if value.is_none() {
            c.report(
                &self.at.child_path(key),
                Some(self.at.line()),
                "is required",
            );
        }
        value
    }

    pub(super) fn finish(self, c: &mut Checker) {
        let allowed = self.allowed.join(", ");
        for (entry, used) in self.entries.iter().zip(self.used) {
            if !used {
                c.key_problem(
                    entry,
                    format!("unknown field `{}`; allowed fields: {allowed}", entry.key),
                );
            }
        }
    }
}

/// An optional field: `Some(None)` when absent, `None` when present but invalid.
pub(super) fn optional<'a, T>(
    field: Option<Field<'a>>,
    read: impl FnOnce(&Field<'a>) -> Option<T>,
) -> Option<Option<T>> {
    match field {
        None => Some(None),
        Some(field) => read(&field).map(Some),
    }
}

/// A field with a default: `Some(default)` when absent, `None` when present but invalid.
pub(super) fn or_default<'a, T>(
    field: Option<Field<'a>>,
    default: T,
    read: impl FnOnce(&Field<'a>) -> Option<T>,
) -> Option<T> {
    match field {
        None => Some(default),
        Some(field) => read(&field),
    }
}

/// Reports two fields that may not be used together; returns whether both are set.
pub(super) fn both_set(c: &mut Checker, first: &Option<Field>, second: &Option<Field>) -> bool {
    let (Some(first), Some(second)) = (first, second) else {
        return false;
    };
    let name = |f: &Field| f.path.rsplit('.').next().unwrap_or_default().to_owned();
    let message = format!(
        "{} and {} cannot both be set; choose one",
        name(first),
        name(second)
    );
    c.problem(second, message);
    true
}
