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

// Transitional: the tests' path until they are updated.
pub use crate::config::keys::MAX_KEY_BYTES;

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
mod tests {
    use super::*;

    const CANARY: &str = "canary-5e1b9d";

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn text(s: &str) -> Payload {
        Payload::Text(Sensitive::new(s.to_owned()))
    }

    fn file<'r>(r: &'r Rendered, key: &str) -> Option<&'r [u8]> {
        r.files.get(key).map(|v| v.expose().as_slice())
    }

    fn keys(r: &Rendered) -> Vec<&str> {
        r.files.keys().map(String::as_str).collect()
    }

    fn assert_value_only(r: &Rendered, bytes: &[u8]) {
        assert_eq!(keys(r), vec![SINGLE_VALUE_KEY]);
        assert_eq!(file(r, SINGLE_VALUE_KEY), Some(bytes));
    }

    fn assert_no_canary(err: &TransformError) {
        let shown = format!("{err} | {err:?} | {err:#?}");
        assert!(!shown.contains(CANARY), "canary leaked: {shown}");
    }

    #[test]
    fn object_string_values_are_written_raw() -> TestResult {
        let r = render(&text(
            r#"{"user":"admin","password":"p\"a\\ss\n\u00e9\ud83d\ude00","empty":"","sp":"  x  "}"#,
        ))?;
        assert_eq!(keys(&r), vec!["empty", "password", "sp", "user"]);
        assert_eq!(file(&r, "user"), Some(&b"admin"[..]));
        assert_eq!(
            file(&r, "password"),
            Some("p\"a\\ss\n\u{e9}\u{1f600}".as_bytes())
        );
        assert_eq!(file(&r, "empty"), Some(&b""[..]));
        assert_eq!(file(&r, "sp"), Some(&b"  x  "[..]));
        Ok(())
    }

    #[test]
    fn object_other_values_are_compact_json() -> TestResult {
        let r = render(&text(
            "{ \"port\" : 5432 ,\n \"on\": true, \"off\": false, \"nil\": null,\n\
             \"list\": [ 1, \"a b\" , {\"k\" : \"v v\"} ],\n\
             \"nested\": { \"b\": 1, \"a\": [ ], \"s\": \"x\\\" y\" },\n\
             \"neg\": -1.5e+3 }",
        ))?;
        assert_eq!(file(&r, "port"), Some(&b"5432"[..]));
        assert_eq!(file(&r, "on"), Some(&b"true"[..]));
        assert_eq!(file(&r, "off"), Some(&b"false"[..]));
        assert_eq!(file(&r, "nil"), Some(&b"null"[..]));
        assert_eq!(file(&r, "list"), Some(&br#"[1,"a b",{"k":"v v"}]"#[..]));
        // Source order and escapes survive: this is the stored text, minified.
        assert_eq!(
            file(&r, "nested"),
            Some(&br#"{"b":1,"a":[],"s":"x\" y"}"#[..])
        );
        assert_eq!(file(&r, "neg"), Some(&b"-1.5e+3"[..]));
        Ok(())
    }

    #[test]
    fn compact_output_matches_serde_json_for_ordinary_values() -> TestResult {
        let src = r#"{"a": [1, 2, {"x": null}], "b": {"c": "d"}, "n": 12.5}"#;
        let r = render(&text(src))?;
        let parsed: BTreeMap<String, serde_json::Value> = serde_json::from_str(src)?;
        for (k, v) in parsed {
            assert_eq!(file(&r, &k), Some(serde_json::to_string(&v)?.as_bytes()));
        }
        Ok(())
    }

    #[test]
    fn big_numbers_stay_exact() -> TestResult {
        let r = render(&text(
            r#"{"big": 123456789012345678901234567890, "precise": 1.00000000000000000000001, "list": [18446744073709551617]}"#,
        ))?;
        assert_eq!(
            file(&r, "big"),
            Some(&b"123456789012345678901234567890"[..])
        );
        assert_eq!(file(&r, "precise"), Some(&b"1.00000000000000000000001"[..]));
        assert_eq!(file(&r, "list"), Some(&b"[18446744073709551617]"[..]));
        Ok(())
    }

    #[test]
    fn object_with_surrounding_whitespace_is_still_an_object() -> TestResult {
        let r = render(&text("\n  {\"a\":\"b\"}  \n"))?;
        assert_eq!(keys(&r), vec!["a"]);
        Ok(())
    }

    #[test]
    fn empty_object_renders_no_files() -> TestResult {
        let r = render(&text(" { } "))?;
        assert!(r.files.is_empty());
        Ok(())
    }

    #[test]
    fn non_object_text_is_a_single_value_file() -> TestResult {
        for src in [
            "[1,2,3]",
            "\"just a string\"",
            "42",
            "true",
            "null",
            "not json at all",
            "{\"unterminated\": ",
            "{\"a\":1} trailing",
            "",
            "  ",
            "{'single':'quotes'}",
        ] {
            let r = render(&text(src))?;
            assert_value_only(&r, src.as_bytes());
        }
        Ok(())
    }

    #[test]
    fn binary_is_a_single_value_file_with_exact_bytes() -> TestResult {
        let bytes = vec![0u8, 0xff, 0xfe, b'{', b'}', 0x80, b'\n'];
        let r = render(&Payload::Binary(Sensitive::new(bytes.clone())))?;
        assert_value_only(&r, &bytes);
        // Even JSON-looking binary is not split: only SecretString is.
        let r = render(&Payload::Binary(Sensitive::new(b"{\"a\":\"b\"}".to_vec())))?;
        assert_value_only(&r, b"{\"a\":\"b\"}");
        Ok(())
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = render(&text(&format!(r#"{{"a":"{CANARY}","b":1,"a":"x"}}"#)));
        assert!(matches!(
            &err,
            Err(TransformError::DuplicateKey { key }) if key == "a"
        ));
        if let Err(e) = &err {
            assert_eq!(e.kind(), "duplicate_key");
            assert_no_canary(e);
        }
    }

    #[test]
    fn duplicate_keys_are_detected_after_unescaping() {
        let err = render(&text(r#"{"a":1,"\u0061":2}"#));
        assert!(matches!(err, Err(TransformError::DuplicateKey { .. })));
    }

    #[test]
    fn nested_duplicate_keys_are_kept_verbatim() -> TestResult {
        let r = render(&text(r#"{"outer": {"x": 1, "x": 2}}"#))?;
        assert_eq!(file(&r, "outer"), Some(&br#"{"x":1,"x":2}"#[..]));
        Ok(())
    }

    #[test]
    fn check_key_accepts_ordinary_names() -> TestResult {
        for key in [
            "a",
            "password",
            ".hidden",
            "a..b",
            "with space",
            "UPPER_lower-1.2",
            "ключ",
            "a\\b",
        ] {
            check_key(key)?;
        }
        check_key(&"k".repeat(MAX_KEY_BYTES))?;
        Ok(())
    }

    #[test]
    fn check_key_refuses_unsafe_names() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        // Multi-byte characters count in bytes, as the filesystem does.
        let long_multibyte = "é".repeat(127);
        let cases: [(&str, &str); 10] = [
            ("", "is empty"),
            (".", "is \".\""),
            ("..", "is \"..\""),
            ("..data", "starts with"),
            ("...", "starts with"),
            ("a/b", "'/'"),
            ("/abs", "'/'"),
            ("a\0b", "NUL"),
            (&long, "longer than 253"),
            (&long_multibyte, "longer than 253"),
        ];
        for (key, reason_part) in cases {
            match check_key(key) {
                Err(e @ TransformError::UnsafeKey { .. }) => {
                    assert_eq!(e.kind(), "unsafe_key");
                    let shown = e.to_string();
                    assert!(shown.contains(reason_part), "{shown}");
                }
                other => panic!("key {key:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unsafe_key_reads_the_same_in_config_and_transform() {
        // The config reports `UnsafeKey` at load, a sync `TransformError`: one text.
        for key in ["", "..data", "a/b", "evil/\nkey"] {
            match (UnsafeKey::check(key), check_key(key)) {
                (Err(rule), Err(e)) => assert_eq!(rule.to_string(), e.to_string()),
                other => panic!("key {key:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unsafe_key_fails_the_whole_secret() {
        for src in [
            format!(r#"{{"ok":"{CANARY}","../etc/passwd":"{CANARY}"}}"#),
            format!(r#"{{"ok":"{CANARY}","":"{CANARY}"}}"#),
            format!(r#"{{"ok":"{CANARY}","..data":"{CANARY}"}}"#),
            format!(r#"{{"ok":"{CANARY}","a\u0000b":"{CANARY}"}}"#),
            format!(r#"{{"ok":"{CANARY}","a/b":{{"n":"{CANARY}"}}}}"#),
        ] {
            match render(&text(&src)) {
                Err(e @ TransformError::UnsafeKey { .. }) => assert_no_canary(&e),
                other => panic!("{src:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn unsafe_key_error_names_the_key_escaped() {
        let err = check_key("evil/\nkey\u{1b}[31m");
        match err {
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.contains(r#""evil/\nkey\u{1b}[31m""#), "{shown}");
                assert!(!shown.contains('\n'));
                assert!(!shown.contains('\u{1b}'));
            }
            Ok(()) => panic!("accepted"),
        }
    }

    #[test]
    fn long_keys_are_truncated_in_errors() {
        let key = format!("{}{}", "x".repeat(300), CANARY);
        match check_key(&key) {
            Err(TransformError::UnsafeKey { key: shown, .. }) => {
                assert_eq!(shown, format!("{}...", "x".repeat(64)));
            }
            other => panic!("{other:?}"),
        }
        let err = render(&text(&format!(r#"{{"{key}":1}}"#)));
        match err {
            Err(e) => {
                assert!(e.to_string().len() < 200);
                assert_no_canary(&e);
            }
            Ok(r) => panic!("accepted {r:?}"),
        }
    }

    #[test]
    fn errors_never_contain_values() {
        let inputs = [
            format!(r#"{{"a":"{CANARY}","a":"{CANARY}"}}"#),
            format!(r#"{{"x/y":"{CANARY}"}}"#),
            format!(r#"{{"..x":["{CANARY}"]}}"#),
        ];
        for src in inputs {
            match render(&text(&src)) {
                Err(e) => assert_no_canary(&e),
                Ok(r) => panic!("accepted {r:?}"),
            }
        }
    }

    #[test]
    fn rendered_debug_shows_keys_only() -> TestResult {
        let r = render(&text(&format!(r#"{{"user":"{CANARY}","n":1}}"#)))?;
        let shown = format!("{r:?} {r:#?}");
        assert!(shown.contains("user"));
        assert!(shown.contains('n'));
        assert!(!shown.contains(CANARY), "{shown}");
        Ok(())
    }

    #[test]
    fn rendered_is_cloneable_and_comparable() -> TestResult {
        let a = render(&text(r#"{"k":"v"}"#))?;
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, render(&text(r#"{"k":"w"}"#))?);
        Ok(())
    }

    #[test]
    fn minifier_keeps_whitespace_inside_strings() {
        assert_eq!(
            strip_json_whitespace("[ \"a \\\\\" , \" \\\" \" ]"),
            b"[\"a \\\\\",\" \\\" \"]".to_vec()
        );
    }
}
