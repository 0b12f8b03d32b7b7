//! Targets: file directories, single files and kinds.

use super::*;

#[test]
fn single_file_targets() {
    let config = parse(&targets(
            "      - file:\n          path: /run/app/.env\n          format: env\n      - file:\n          path: /run/app/raw\n",
        ))
        .expect("valid");
    assert_eq!(
        config.secrets[0].targets,
        [
            Target::SingleFile(SingleFileTarget {
                path: "/run/app/.env".into(),
                format: FileFormat::Env,
                mode: 0o400,
            }),
            Target::SingleFile(SingleFileTarget {
                path: "/run/app/raw".into(),
                format: FileFormat::Raw,
                mode: 0o400,
            }),
        ]
    );
}

#[test]
fn single_file_target_problems() {
    let cases: [(&str, &str, usize, &str); 6] = [
        (
            "      - file:\n          path: /run/x\n          format: yaml\n",
            "secrets[0].targets[0].file.format",
            7,
            "one of raw, json, env, properties",
        ),
        (
            "      - file:\n          dir: /run/x\n          path: /run/y\n",
            "secrets[0].targets[0].file.path",
            7,
            "cannot both be set",
        ),
        (
            "      - file:\n          mode: \"0400\"\n",
            "secrets[0].targets[0].file",
            6,
            "needs `dir`",
        ),
        (
            "      - file:\n          dir: /run/x\n          format: env\n",
            "secrets[0].targets[0].file.format",
            7,
            "use `path` instead of `dir`",
        ),
        (
            "      - file:\n          dir: /run/x\n      - file:\n          path: /run/x/.env\n",
            "secrets[0].targets[1].file.path",
            8,
            "is inside \"/run/x\"",
        ),
        (
            "      - file:\n          path: /run/x/.env\n      - file:\n          dir: /run/x\n",
            "secrets[0].targets[1].file.dir",
            8,
            "contains \"/run/x/.env\"",
        ),
    ];
    for (items, path, line, needle) in cases {
        let found = problems(&targets(items));
        expect_problem(&found, path, line, needle);
    }
    let found = problems(&targets(
        "      - file:\n          path: /run/y\n      - file:\n          path: /run/y\n",
    ));
    expect_problem(
        &found,
        "secrets[0].targets[1].file.path",
        8,
        "already used by",
    );
}

#[test]
fn file_modes() {
    let found = problems(&secret_with("          mode: 0400\n"));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "secrets[0].targets[0].file.mode",
        7,
        "got 0400; unquoted, YAML reads it as a number, so write \"0400\"",
    );
    for (value, needle) in [
        ("\"0800\"", "3 or 4 octal digits"),
        ("\"40\"", "3 or 4 octal digits"),
        ("\"rw\"", "3 or 4 octal digits"),
        ("\"4755\"", "at most \"0777\""),
        ("true", "quoted octal string"),
    ] {
        let found = problems(&secret_with(&format!("          mode: {value}\n")));
        expect_problem(&found, "secrets[0].targets[0].file.mode", 7, needle);
    }
    assert_eq!(parse_mode("644"), Ok(0o644));
    assert_eq!(parse_mode("0777"), Ok(0o777));
}

#[test]
fn duplicate_target_dirs() {
    let yaml = r#"secrets:
  - name: a
    secretId: a
    targets:
      - file:
          dir: /run/shared
  - name: b
    secretId: b
    targets:
      - file: {dir: /run/b}
      - file: {dir: /run/shared/}
"#;
    let found = problems(yaml);
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "secrets[1].targets[1].file.dir",
        11,
        "is already used by secrets[0].targets[0].file.dir",
    );
}

#[test]
fn target_kinds() {
    let found = problems(&secret_with("      - s3: {bucket: b}\n"));
    expect_problem(
        &found,
        "secrets[0].targets[1].s3",
        7,
        "unknown target kind `s3`; allowed kinds: file",
    );
    let found = problems(&secret_with("      - {}\n"));
    expect_problem(
        &found,
        "secrets[0].targets[1]",
        7,
        "must name a target kind",
    );
    let found = problems(&secret_with("        mode: \"0400\"\n"));
    expect_problem(
        &found,
        "secrets[0].targets[0].mode",
        7,
        "a target has exactly one kind",
    );
}
