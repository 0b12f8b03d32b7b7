//! What a mapping refuses when it is compiled, and compiling once.

use super::*;

/// Mappings refused when compiled.
pub(super) fn invalid_mappings() -> Vec<Invalid> {
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
