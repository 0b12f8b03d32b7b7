//! How a mapping fails on a secret: each failure's kind and message, never its value.

use super::compile::invalid_mappings;
use super::*;

/// Every failure case; the secret holds canaries that no error may show.
fn failure_cases() -> Vec<Failure> {
    let secret = format!(
        r#"{{"username":"app","password":"{CANARY}","host":"h","nested":{{"s":"{CANARY}"}},"b64":"{CANARY}$"}}"#
    );
    let t = text(&secret);
    let mut cases = property_failures(&t);
    cases.extend(key_and_decode_failures(&t));
    cases.extend(template_value_failures(&t));
    cases.extend(template_bound_failures(&t));
    cases
}

/// Step 1: the property.
fn property_failures(t: &Payload) -> Vec<Failure> {
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
    ]
}

/// Steps 2 and 3: decoding and keys.
fn key_and_decode_failures(t: &Payload) -> Vec<Failure> {
    vec![
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
    ]
}

/// Templates over the values they read.
fn template_value_failures(t: &Payload) -> Vec<Failure> {
    vec![
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
            templates(
                &[("t", "{{ username }}\n{{ password }}\n{{ x }}")],
                TemplateMode::Add,
            ),
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
    ]
}

/// Templates that run into their bounds.
fn template_bound_failures(t: &Payload) -> Vec<Failure> {
    vec![
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
                &[(
                    "t",
                    "{% for i in range(100000000) %}{{ password }}{% endfor %}",
                )],
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
