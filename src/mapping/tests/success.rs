//! What a mapping writes.

use super::*;

/// Secrets with nested values, for the property cases.
const NESTED: &str = r#"{"outer": {"db": {"user": "u", "n": 123456789012345678901234567890,
            "obj": { "z": 1, "a": [ 1, 2 ] }}, "s": "line\nbreak", "big": 123456789012345678901234567890,
            "list": [ 1, "a b" ], "flag": true}}"#;

fn property_cases() -> Vec<Success<'static>> {
    vec![
        (
            "property selects a nested object",
            prop("outer.db"),
            text(NESTED),
            vec![
                ("n", b"123456789012345678901234567890"),
                ("obj", br#"{"z":1,"a":[1,2]}"#),
                ("user", b"u"),
            ],
        ),
        (
            "property selects a string",
            prop("outer.s"),
            text(NESTED),
            vec![("value", b"line\nbreak")],
        ),
        (
            "property keeps a 30-digit integer exact",
            prop("outer.big"),
            text(NESTED),
            vec![("value", b"123456789012345678901234567890")],
        ),
        (
            "property selects an array as compact text",
            prop("outer.list"),
            text(NESTED),
            vec![("value", br#"[1,"a b"]"#)],
        ),
        (
            "property selects a bool",
            prop("outer.flag"),
            text(NESTED),
            vec![("value", b"true")],
        ),
        (
            "property at the top level",
            prop("username"),
            text(DB),
            vec![("value", b"app")],
        ),
    ]
}

fn key_and_decode_cases() -> Vec<Success<'static>> {
    vec![
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
    ]
}

fn template_cases() -> Vec<Success<'static>> {
    vec![
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
    ]
}

fn template_output_cases() -> Vec<Success<'static>> {
    vec![
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
    ]
}

fn template_limit_cases<'a>(digits: &'a str, at_cap: &'a str) -> Vec<Success<'a>> {
    vec![
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
    ]
}

#[test]
fn successful_mappings() {
    let digits = "0123456789".repeat(10);
    let at_cap = "x".repeat(MAX_TEMPLATE_OUTPUT_BYTES);
    let cases = property_cases()
        .into_iter()
        .chain(key_and_decode_cases())
        .chain(template_cases())
        .chain(template_output_cases())
        .chain(template_limit_cases(&digits, &at_cap));
    for (name, mapping, payload, want) in cases {
        let got =
            apply(&mapping, &payload).unwrap_or_else(|e| panic!("{name}: unexpected error {e}"));
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
