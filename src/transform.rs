//! Turns one secret value into the set of files that represent it.
//!
//! Pure: no I/O, so every rule here is unit-testable and the sink only has to
//! care about getting bytes onto disk atomically.
//!
//! Rules:
//! - A `SecretString` that is a JSON object becomes one file per top-level key.
//!   A string value is written as the decoded string's bytes. Any other value
//!   (number, bool, null, array, object) is written as its source text with the
//!   insignificant whitespace removed. That is exact by construction: re-encoding
//!   through `serde_json::Value` would turn big integers into `f64`, reorder
//!   nested keys and rewrite escapes, so the bytes an application sees would
//!   depend on serde_json's feature flags rather than on what was stored.
//! - Anything else (a JSON array or scalar, text that is not JSON, or a
//!   `SecretBinary`) becomes a single file named `value` holding the exact bytes.
//! - A duplicate top-level key fails the whole secret: "last one wins" would
//!   silently publish a value the author may not have meant.
//! - An unsafe key fails the whole secret: publishing the other keys would hand
//!   the application a half-updated secret that looks complete.
//!
//! Errors never carry secret values; they name keys (escaped, truncated) only.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;

use crate::config::keys::{key_for_error, UnsafeKey};
use crate::secret::{Payload, Sensitive};

/// File name used when a secret is not a JSON object.
pub const SINGLE_VALUE_KEY: &str = "value";

/// The files that represent one secret: file name -> content.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    pub files: BTreeMap<String, Sensitive<Vec<u8>>>,
}

// Hand-written so the output is stable and obviously value-free: key names are
// useful in logs, values never are.
impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// `key` is already escaped-safe to print: it is truncated, and `Display`
    /// quotes it with `{:?}` so control characters cannot forge log lines.
    #[error("unsafe key {key:?}: {reason}")]
    UnsafeKey { key: String, reason: &'static str },
    #[error("duplicate key {key:?} in JSON object")]
    DuplicateKey { key: String },
}

impl TransformError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TransformError::UnsafeKey { .. } => "unsafe_key",
            TransformError::DuplicateKey { .. } => "duplicate_key",
        }
    }
}

/// Refuses keys that could escape the target directory, collide with the
/// sink's own `..`-prefixed bookkeeping entries, or not be valid file names:
/// the rule of [`UnsafeKey::check`], as a transform error.
pub fn check_key(key: &str) -> Result<(), TransformError> {
    UnsafeKey::check(key).map_err(TransformError::from)
}

impl From<UnsafeKey> for TransformError {
    fn from(UnsafeKey { key, reason }: UnsafeKey) -> Self {
        TransformError::UnsafeKey { key, reason }
    }
}

pub fn render(payload: &Payload) -> Result<Rendered, TransformError> {
    match payload {
        Payload::Binary(bytes) => Ok(single(bytes.expose().clone())),
        Payload::Text(text) => {
            let text = text.expose();
            match serde_json::from_str::<Entries>(text) {
                Ok(Entries(Some(entries))) => from_entries(entries),
                // Not an object (or not JSON): the exact text is the value. serde_json's
                // error is dropped on purpose, it can quote the input.
                _ => Ok(single(text.as_bytes().to_vec())),
            }
        }
    }
}

/// Renders one JSON value, given as its exact source text, the way `render` renders a
/// whole secret, except that a JSON string is decoded rather than kept as source text:
/// callers that select a value out of a larger document want what it says, not its quoting.
/// `raw` must be valid JSON, such as a `RawValue`'s text.
pub(crate) fn render_json_value(raw: &str) -> Result<Rendered, TransformError> {
    if let Some(entries) = object_entries(raw) {
        return from_entries(entries);
    }
    Ok(single(match serde_json::from_str::<String>(raw) {
        Ok(string) => string.into_bytes(),
        Err(_) => strip_json_whitespace(raw),
    }))
}

/// The top-level entries of `json` in document order, duplicates included, each value
/// as its exact source text; `None` when `json` is not a JSON object.
pub(crate) fn object_entries(json: &str) -> Option<Vec<(String, Box<RawValue>)>> {
    match serde_json::from_str::<Entries>(json) {
        Ok(Entries(entries)) => entries,
        Err(_) => None,
    }
}

fn single(bytes: Vec<u8>) -> Rendered {
    let mut files = BTreeMap::new();
    files.insert(SINGLE_VALUE_KEY.to_owned(), Sensitive::new(bytes));
    Rendered { files }
}

fn from_entries(entries: Vec<(String, Box<RawValue>)>) -> Result<Rendered, TransformError> {
    let mut files = BTreeMap::new();
    for (key, raw) in entries {
        check_key(&key)?;
        let raw = raw.get();
        let bytes = match serde_json::from_str::<String>(raw) {
            Ok(string) => string.into_bytes(),
            Err(_) => strip_json_whitespace(raw),
        };
        if files.insert(key.clone(), Sensitive::new(bytes)).is_some() {
            return Err(TransformError::DuplicateKey {
                key: key_for_error(&key),
            });
        }
    }
    Ok(Rendered { files })
}

/// The top-level entries of a JSON object in document order, duplicates included
/// (a map type would silently keep the last), each value as its exact source text so
/// that big numbers and nested key order survive; `None` when the JSON is not an object.
struct Entries(Option<Vec<(String, Box<RawValue>)>>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Entries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Entries, M::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    entries.push(entry);
                }
                Ok(Entries(Some(entries)))
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Entries, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Entries(None))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Entries, E> {
                Ok(Entries(None))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Entries, E> {
                Ok(Entries(None))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Entries, E> {
                Ok(Entries(None))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Entries, E> {
                Ok(Entries(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Entries, E> {
                Ok(Entries(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Entries, E> {
                Ok(Entries(None))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// Removes whitespace outside string literals. Only ASCII bytes are dropped,
/// so valid UTF-8 in stays valid UTF-8 out.
fn strip_json_whitespace(raw: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !is_json_ws(b) {
            out.push(b);
        }
    }
    out
}

fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests;
