//! Tests of `render` and the key rule.

use super::*;
use crate::config::keys::MAX_KEY_BYTES;

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
