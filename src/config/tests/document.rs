//! The document as a whole: syntax, unknown and missing fields, every problem in one run.

use super::*;

#[test]
fn reports_every_mistake_with_path_and_line() {
    let yaml = r#"region: US East
roles:
  shared:
    roleArn: arn:aws:iam::1234:role/X
    duration: 10m
    colour: blue
secrets:
  - name: db
    secretId: ""
    role: other
    refreshInterval: 500ms
    targets:
      - file:
          dir: /run/a
          mode: 999
  - name: db
    secretId: x
    targets: []
"#;
    let found = problems(yaml);
    let places: Vec<(&str, Option<usize>)> =
        found.iter().map(|p| (p.path.as_str(), p.line)).collect();
    assert_eq!(
        places,
        [
            ("region", Some(1)),
            ("roles.shared.roleArn", Some(4)),
            ("roles.shared.duration", Some(5)),
            ("roles.shared.colour", Some(6)),
            ("secrets[0].secretId", Some(9)),
            ("secrets[0].role", Some(10)),
            ("secrets[0].refreshInterval", Some(11)),
            ("secrets[0].targets[0].file.mode", Some(15)),
            ("secrets[1].name", Some(16)),
            ("secrets[1].targets", Some(18)),
        ]
    );
    expect_problem(&found, "region", 1, "us-east-1");
    expect_problem(&found, "roles.shared.roleArn", 4, "12 digits");
    expect_problem(&found, "roles.shared.duration", 5, "between 15m and 12h");
    expect_problem(&found, "roles.shared.colour", 6, "unknown field `colour`");
    expect_problem(&found, "secrets[0].secretId", 9, "must not be empty");
    expect_problem(&found, "secrets[0].role", 10, "defined roles: shared");
    expect_problem(&found, "secrets[0].refreshInterval", 11, "at least 1s");
    expect_problem(&found, "secrets[1].name", 16, "secrets[0]");
    expect_problem(&found, "secrets[1].targets", 18, "at least one target");
    assert_eq!(
        found[7].to_string(),
        r#"secrets[0].targets[0].file.mode (line 15): must be a quoted octal string such as "0400", got 999"#
    );
    // Display: one problem per line.
    let shown = ConfigErrors(found.clone()).to_string();
    assert_eq!(shown.lines().count(), found.len());
    assert!(shown.starts_with("region (line 1): "), "{shown}");
}

#[test]
fn unknown_fields_name_the_field_line_and_allowed_fields() {
    let mut yaml = secret_with("          owner: root\n");
    yaml.insert_str(0, "regoin: us-east-1\n");
    let found = problems(&yaml);
    assert_eq!(found.len(), 2, "{found:#?}");
    expect_problem(
            &found,
            "regoin",
            1,
            "unknown field `regoin`; allowed fields: region, roles, fetchStrategy, failoverRegion, secrets",
        );
    expect_problem(
        &found,
        "secrets[0].targets[0].file.owner",
        8,
        "unknown field `owner`; allowed fields: dir, path, format, mode",
    );
}

#[test]
fn missing_required_fields_point_at_their_mapping() {
    let found = problems("roles:\n  r:\n    sessionName: x1\nsecrets:\n  - targets:\n      - file: {mode: \"0600\"}\n");
    expect_problem(&found, "roles.r.roleArn", 3, "is required");
    expect_problem(&found, "secrets[0].name", 5, "is required");
    expect_problem(&found, "secrets[0].secretId", 5, "is required");
    // A file target needs one of two fields, so the problem is on the target itself.
    expect_problem(&found, "secrets[0].targets[0].file", 6, "needs `dir`");
    assert_eq!(found.len(), 4, "{found:#?}");

    let found = problems("region: us-east-1\n");
    expect_problem(&found, "secrets", 1, "is required");
}

/// One run reports every independent mistake. Where a check needs a value that is itself
/// invalid, it says so rather than staying silent until a second run.
#[test]
fn every_independent_mistake_is_reported_in_one_run() {
    let yaml = r#"region: US-EAST-1
fetchStrategy: sometimes
roles:
  bad:
    roleArn: arn:aws:iam::1111:role/Bad
    refreshBefore: 2h
  short:
    roleArn: arn:aws:iam::111111111111:role/S
    duration: 5m
    refreshBefore: 2h
  garbled:
    roleArn: arn:aws:iam::111111111111:role/G
    duration: forever
    refreshBefore: 13h
secrets:
  - name: "bad name!"
    secretId: x
    versionStage: AWSPREVIOUS
    versionId: abc
    fetchStrategy: batch
    targets: [{file: {dir: /o/a, mode: "999"}}]
  - name: "bad name!"
    find: {namePrefix: "t/"}
    targets: [{file: {dir: /o/b}}]
  - name: c
    secretId: y
    refreshIntervall: 5s
    targets: [{file: {dir: /o/a}}, {file: {path: /o/b/f.json, format: yaml}}]
"#;
    let found = problems(yaml);
    for (path, line, needle) in [
        ("region", 1, "AWS region"),
        ("fetchStrategy", 2, "one of auto"),
        ("roles.bad.roleArn", 5, "12 digits"),
        ("roles.bad.refreshBefore", 6, "shorter than duration (1h)"),
        ("roles.short.duration", 9, "between 15m and 12h"),
        (
            "roles.short.refreshBefore",
            10,
            "\"2h\" not checked against duration, which is invalid",
        ),
        ("roles.garbled.duration", 13, "a duration such as"),
        ("roles.garbled.refreshBefore", 14, "at most 12h"),
        ("secrets[0].versionId", 19, "cannot both be set"),
        (
            "secrets[0].fetchStrategy",
            20,
            "only the AWSCURRENT version",
        ),
        ("secrets[0].targets[0].file.mode", 21, "octal"),
        (
            "secrets[1].targets[0].file.dir",
            24,
            "must contain {{ name }}",
        ),
        ("secrets[2].refreshIntervall", 27, "unknown field"),
        (
            "secrets[2].targets[0].file.dir",
            28,
            "already used by secrets[0]",
        ),
        (
            "secrets[2].targets[1].file.path",
            28,
            "inside \"/o/b\", the directory of secrets[1]",
        ),
        ("secrets[2].targets[1].file.format", 28, "one of raw"),
    ] {
        expect_problem(&found, path, line, needle);
    }
    // Invalid, and a duplicate: both said at once.
    let name: Vec<&str> = found
        .iter()
        .filter(|p| p.path == "secrets[1].name")
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(name.len(), 2, "{found:#?}");
    assert!(name[0].contains("must be 1 to 128"), "{name:?}");
    assert!(
        name[1].contains("duplicate secret name \"bad name!\": secrets[0]"),
        "{name:?}"
    );
    expect_problem(&found, "secrets[0].name", 16, "must be 1 to 128");
    assert_eq!(found.len(), 19, "{found:#?}");
}

#[test]
fn duration_out_of_range_or_malformed() {
    for (value, needle) in [
        ("14m", "between 15m and 12h, got \"14m\""),
        ("13h", "between 15m and 12h, got \"13h\""),
        (
            "3600",
            "a duration such as \"90s\", \"5m\" or \"1h\", got 3600",
        ),
        ("an hour", "a duration such as"),
        ("[1h]", "got a list"),
    ] {
        let found = problems(&role_with(&format!("    duration: {value}\n")));
        assert_eq!(found.len(), 1, "{value}: {found:#?}");
        expect_problem(&found, "roles.r.duration", 4, needle);
    }
    // The longest and shortest allowed sessions are fine.
    for value in ["15m", "12h"] {
        assert!(parse(&role_with(&format!("    duration: {value}\n"))).is_ok());
    }
}

#[test]
fn strings_are_required_where_strings_are_expected() {
    let found = problems(&secret_with("").replace("name: db", "name: 42"));
    expect_problem(&found, "secrets[0].name", 2, "must be a string, got 42");
    let found = problems(&format!("region: 1\n{}", secret_with("")));
    expect_problem(&found, "region", 1, "must be a string, got 1");
}

#[test]
fn yaml_syntax_error_has_its_line() {
    let found = problems("secrets:\n  - name: a\n    secretId: [x\n    role: r\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].path, "");
    assert!(
        found[0].line.is_some_and(|l| (3..=4).contains(&l)),
        "{found:?}"
    );
    assert!(found[0].message.starts_with("invalid YAML"), "{found:?}");

    let found = problems("secrets: []\nregion: a\nsecrets: []\n");
    assert_eq!(
        found,
        [Problem {
            path: String::new(),
            line: Some(3),
            message: "invalid YAML: duplicated key in mapping".into(),
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "line 3: invalid YAML: duplicated key in mapping"
    );
}

#[test]
fn odd_documents_do_not_panic() {
    let deep_list = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_secrets = format!("secrets: {}{}", "[".repeat(50), "]".repeat(50));
    // The parser recurses per level: past the limit it is never called, so no stack
    // overflows, however deep a document nests.
    let deep_dashes = format!("secrets:\n  {}x\n", "- ".repeat(100_000));
    let deep_maps = format!(
        "secrets:\n  - name: {}1{}\n",
        "{a: ".repeat(50),
        "}".repeat(50)
    );
    let cases: Vec<(&str, &str)> = vec![
        ("", "the config is empty"),
        ("# only a comment\n", "the config is empty"),
        ("[]", "the config must be a mapping, got a list"),
        (
            "just text",
            "the config must be a mapping, got \"just text\"",
        ),
        ("42", "the config must be a mapping, got 42"),
        ("secrets: 5", "must be a list, got 5"),
        ("secrets: [5]", "must be a mapping, got 5"),
        ("secrets: [~]", "must be a mapping, got null"),
        ("secrets:", "is required"),
        ("secrets: []", "at least one secret"),
        ("secrets: {a: 1}", "must be a list, got a mapping"),
        ("roles: [a]\nsecrets: [5]", "must be a mapping, got a list"),
        ("roles: {r: 5}\nsecrets: [5]", "must be a mapping, got 5"),
        ("roles: {[a]: {}}\nsecrets: [5]", "keys must be names"),
        (
            "secrets: [{targets: [[]]}]",
            "must be a mapping, got a list",
        ),
        ("secrets: [{targets: {file: {}}}]", "must be a list"),
        (
            "secrets: [{targets: [{file: }]}]",
            "must be a mapping, got null",
        ),
        ("secrets: [{targets: [{1: {}}]}]", "unknown target kind `1`"),
        (
            "secrets: [{name: [a], secretId: {}, refreshInterval: [] }]",
            "got a list",
        ),
        ("secrets: !custom [5]", "must be a mapping, got 5"),
        ("a: &x [1]\nb: *x\n", "unknown field `a`"),
        ("a: *missing\n", "invalid YAML"),
        ("secrets: []\n---\nsecrets: []\n", "single YAML document"),
        ("\t- a", "must be a mapping, got a list"),
        ("secrets: [\"\u{1F980}\", \"\u{e9}\"]", "got \"\u{1F980}\""),
        (&deep_list, "nests deeper than 64 levels"),
        (&deep_dashes, "nests deeper than 64 levels"),
        (&deep_secrets, "must be a mapping, got a list"),
        (&deep_maps, "must be a string, got a mapping"),
    ];
    for (yaml, needle) in cases {
        let shown = match parse(yaml) {
            Ok(config) => panic!("{yaml:?} parsed: {config:?}"),
            Err(errors) => errors.to_string(),
        };
        assert!(shown.contains(needle), "{yaml:?}: {shown}");
    }
}

#[test]
fn non_string_scalars_are_quoted_from_the_source() {
    // Positions are in characters; text before the value must not shift the quote.
    let found = problems("# \u{1F980}\u{e9}\nsecrets: 1.50\n");
    expect_problem(&found, "secrets", 2, "got 1.50");
}

#[test]
fn new_fields_report_all_problems_in_document_order() {
    let yaml = r#"credentialsEndpoint: {listen: 8.8.8.8:1, tokenFile: /t, roles: [ghost]}
roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    sessionTags: {a: 1}
    policyArns: [x]
    via: ghost
baseCredentials: {accessKeyIdFile: /a}
secrets: [{name: s, secretId: s, targets: [{file: {dir: /run/s}}]}]
credentialOutputs: [{role: r, file: {path: /run/s/creds}}]
"#;
    let found = problems(yaml);
    let places: Vec<(&str, Option<usize>)> =
        found.iter().map(|p| (p.path.as_str(), p.line)).collect();
    assert_eq!(
        places,
        [
            ("credentialsEndpoint.listen", Some(1)),
            ("credentialsEndpoint.roles[0]", Some(1)),
            ("roles.r.sessionTags.a", Some(5)),
            ("roles.r.policyArns[0]", Some(6)),
            ("roles.r.via", Some(7)),
            ("baseCredentials.secretAccessKeyFile", Some(8)),
            ("credentialOutputs[0].file.path", Some(10)),
        ]
    );
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, EXAMPLE).expect("write");
    assert_eq!(load(&path).ok(), parse(EXAMPLE).ok());

    let missing = dir.path().join("missing.yaml");
    let errors = load(&missing).expect_err("missing file");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].path, missing.display().to_string());
    assert_eq!(errors.0[0].line, None);
    assert!(
        errors.to_string().starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{errors}"
    );
}
