//! Roles: ExternalId, session names, tags, ARNs and regions.

use super::*;

#[test]
fn external_id_file_and_env_together() {
    let yaml = r#"roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    externalIdFile: /etc/id
    externalIdEnv: EXTERNAL_ID
secrets:
  - {name: a, secretId: a, role: r, targets: [{file: {dir: /run/a}}]}
"#;
    let found = problems(yaml);
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "roles.r.externalIdEnv",
        5,
        "externalIdFile and externalIdEnv cannot both be set",
    );
}

#[test]
fn bad_external_id_env_name() {
    let yaml = r#"roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    externalIdEnv: 1-BAD
secrets:
  - {name: a, secretId: a, targets: [{file: {dir: /run/a}}]}
"#;
    expect_problem(
        &problems(yaml),
        "roles.r.externalIdEnv",
        4,
        "environment variable name",
    );
}

#[test]
fn refresh_before_must_be_shorter_than_duration() {
    let found = problems(&role_with("    duration: 30m\n    refreshBefore: 30m\n"));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "roles.r.refreshBefore",
        5,
        "must be shorter than duration (30m), got \"30m\"",
    );

    // Compared against the default duration (1h) too.
    let found = problems(&role_with("    refreshBefore: 2h\n"));
    expect_problem(&found, "roles.r.refreshBefore", 4, "(1h)");

    let found = problems(&role_with("    refreshBefore: 0s\n"));
    expect_problem(&found, "roles.r.refreshBefore", 4, "greater than zero");
}

#[test]
fn unknown_role_reference() {
    let found = problems(&secret_with("    role: nope\n"));
    expect_problem(
        &found,
        "secrets[0].role",
        7,
        "unknown role \"nope\": no roles are defined",
    );

    let yaml = role_with("").replace("secretId: a,", "secretId: a, role: other,");
    let found = problems(&yaml);
    expect_problem(&found, "secrets[0].role", 5, "defined roles: r");
}

#[test]
fn a_broken_role_does_not_break_references_to_it() {
    let yaml = role_with("    duration: 1y\n").replace("secretId: a,", "secretId: a, role: r,");
    let found = problems(&yaml);
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(&found, "roles.r.duration", 4, "between 15m and 12h");
}

#[test]
fn bad_arns() {
    for (arn, needle) in [
        ("arn:aws:iam::123456789012:user/bob", "not a role ARN"),
        ("arn:aws:sts::123456789012:role/R", "not an IAM role ARN"),
        ("arn:azure:iam::123456789012:role/R", "partition"),
        ("arn:aws:iam::12345678901x:role/R", "12 digits"),
        ("arn:aws:iam::123456789012:role/", "role name"),
        ("arn:aws:iam::123456789012:role/a b", "role name"),
        ("CrossAccountSecretsRole", "not an IAM role ARN"),
    ] {
        let found = problems(
            &role_with("").replace("arn:aws:iam::123456789012:role/R", &format!("\"{arn}\"")),
        );
        expect_problem(&found, "roles.r.roleArn", 3, needle);
        expect_problem(&found, "roles.r.roleArn", 3, ROLE_ARN_FORM);
    }
    for arn in [
        "arn:aws:iam::123456789012:role/R",
        "arn:aws-cn:iam::123456789012:role/service-role/My+Role=x,y.z@w_1-2",
        "arn:aws-iso-b:iam::123456789012:role/R",
    ] {
        assert_eq!(check_role_arn(arn), Ok(()), "{arn}");
    }

    let found = problems(&secret_with("").replace(
        "secretId: s",
        "secretId: arn:aws:secretsmanager:us-east-1:123:secret:x",
    ));
    expect_problem(&found, "secrets[0].secretId", 3, SECRET_ARN_FORM);
    for arn in [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:my-secret",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:my-secret-AbCdEf",
    ] {
        assert_eq!(check_secret_arn(arn), Ok(()), "{arn}");
    }
}

#[test]
fn names_are_checked() {
    let yaml = role_with("")
        .replace("  r:", "  \"bad name\":")
        .replace("name: a,", "name: \"a/b\",");
    let found = problems(&yaml);
    expect_problem(&found, "roles.bad name", 2, "a role name must be");
    expect_problem(&found, "secrets[0].name", 5, "1 to 128");

    let found = problems(&role_with("    sessionName: x\n"));
    expect_problem(&found, "roles.r.sessionName", 4, "STS session name");
}

#[test]
fn session_name_placeholders_take_values_from_the_environment() {
    let name = |template: &str, env: &dyn Fn(&str) -> Option<String>| {
        let yaml = role_with(&format!("    sessionName: \"{template}\"\n"));
        parse_with_env(&yaml, env).map(|config| config.roles["r"].session_name.clone())
    };
    assert_eq!(
        name("${POD_NAMESPACE}.${POD_NAME}@${HOSTNAME}", &pod_env).ok(),
        Some("payments.web-7d4f9-abcde@web-7d4f9-abcde".to_owned())
    );
    // Without placeholders the environment is not consulted.
    let no_env = |_: &str| -> Option<String> { panic!("no lookup expected") };
    assert_eq!(
        name("plain-name", &no_env).ok(),
        Some("plain-name".to_owned())
    );
    // `parse` reads the process environment; a name without placeholders needs none.
    let yaml = role_with("    sessionName: ferry\n");
    assert_eq!(
        parse(&yaml).ok().map(|c| c.roles["r"].session_name.clone()),
        Some("ferry".to_owned())
    );
}

#[test]
fn session_name_placeholder_problems() {
    let unset = |name: &str| match name {
        "POD_NAMESPACE" => Some(String::new()),
        _ => None,
    };
    let yaml = role_with("    sessionName: \"f-${POD_NAME}-${POD_NAMESPACE}-${USER}\"\n");
    let found = problems_with_env(&yaml, &unset);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found
        .iter()
        .all(|p| p.path == "roles.r.sessionName" && p.line == Some(4)));
    assert_eq!(
        found[0].message,
        "`${POD_NAME}` needs the environment variable POD_NAME, which is unset or empty; \
             set it from the Kubernetes downward API (fieldRef fieldPath: metadata.name)"
    );
    assert!(
        found[1]
            .message
            .contains("environment variable POD_NAMESPACE, which is unset or empty"),
        "{found:#?}"
    );
    assert!(
        found[1].message.contains("metadata.namespace"),
        "{found:#?}"
    );
    assert_eq!(
            found[2].message,
            "unknown placeholder `${USER}`; allowed placeholders: ${POD_NAME}, ${POD_NAMESPACE}, ${HOSTNAME}"
        );

    let found = problems_with_env(&role_with("    sessionName: \"a-${POD_NAME\"\n"), &pod_env);
    expect_problem(
        &found,
        "roles.r.sessionName",
        4,
        "`${` without a closing `}`",
    );
}

#[test]
fn session_name_is_checked_after_substitution() {
    let long_pod = |name: &str| (name == "POD_NAME").then(|| "p".repeat(60));
    let found = problems_with_env(
        &role_with("    sessionName: \"ferry-${POD_NAME}\"\n"),
        &long_pod,
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "roles.r.sessionName",
        4,
        &format!(
            "(an STS session name), got \"ferry-{}\" after substitution",
            "p".repeat(60)
        ),
    );
    // A `$` that does not start a placeholder is an ordinary character, which STS refuses.
    let found = problems_with_env(&role_with("    sessionName: \"cost$5\"\n"), &pod_env);
    expect_problem(
        &found,
        "roles.r.sessionName",
        4,
        "(an STS session name), got \"cost$5\"",
    );
    assert!(
        !found[0].message.contains("after substitution"),
        "{found:#?}"
    );
    // A pod name with a character STS refuses.
    let odd = |_: &str| Some("a b".to_owned());
    let found = problems_with_env(&role_with("    sessionName: \"x-${HOSTNAME}\"\n"), &odd);
    expect_problem(
        &found,
        "roles.r.sessionName",
        4,
        "got \"x-a b\" after substitution",
    );
}

#[test]
fn session_tags() {
    let yaml = role_with("    sessionTags:\n      Cost Centre: \"4711\"\n      \u{e9}quipe: \"caf\u{e9} @ 1:2/3=4+5-6_7.8\"\n      empty: \"\"\n");
    let config = parse(&yaml).expect("valid tags");
    assert_eq!(
        config.roles["r"].session_tags,
        BTreeMap::from([
            ("Cost Centre".to_owned(), "4711".to_owned()),
            (
                "\u{e9}quipe".to_owned(),
                "caf\u{e9} @ 1:2/3=4+5-6_7.8".to_owned()
            ),
            ("empty".to_owned(), String::new()),
        ])
    );

    let yaml = role_with(&format!(
            "    sessionTags:\n      port: 8080\n      on: true\n      {}: a\n      ok: \"{}\"\n      bad: \"a*b\"\n      \"\": x\n",
            "k".repeat(129),
            "v".repeat(257),
        ));
    let found = problems(&yaml);
    expect_problem(
        &found,
        "roles.r.sessionTags.port",
        5,
        "must be a string, got 8080; unquoted, YAML reads it as a number, so write \"8080\"",
    );
    expect_problem(
        &found,
        "roles.r.sessionTags.on",
        6,
        "must be a string, got true; unquoted, YAML reads it as a boolean, so write \"true\"",
    );
    expect_problem(
        &found,
        &format!("roles.r.sessionTags.{}", "k".repeat(129)),
        7,
        "a tag key must be 1 to 128 letters, digits, spaces or any of \"_.:/=+-@\"",
    );
    expect_problem(
        &found,
        "roles.r.sessionTags.ok",
        8,
        "a tag value must be at most 256",
    );
    expect_problem(&found, "roles.r.sessionTags.bad", 9, "got \"a*b\"");
    expect_problem(
        &found,
        "roles.r.sessionTags.",
        10,
        "a tag key must be 1 to 128",
    );
    assert_eq!(found.len(), 6, "{found:#?}");

    let found = problems(&role_with("    sessionTags: {1: a}\n"));
    expect_problem(
        &found,
        "roles.r.sessionTags.1",
        4,
        "a tag key must be a string, got 1; write \"1\"",
    );
}

#[test]
fn session_tag_limits_and_case_insensitive_duplicates() {
    let tags = |n: usize| {
        let tags: Vec<String> = (0..n).map(|i| format!("k{i}: v")).collect();
        role_with(&format!("    sessionTags: {{{}}}\n", tags.join(", ")))
    };
    assert_eq!(
        parse(&tags(50))
            .map(|c| c.roles["r"].session_tags.len())
            .ok(),
        Some(50)
    );
    let found = problems(&tags(51));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "roles.r.sessionTags",
        4,
        "must have at most 50 tags, got 51",
    );

    let found = problems(&role_with(
        "    sessionTags:\n      team: a\n      env: b\n      Team: c\n      TEAM: d\n",
    ));
    assert_eq!(found.len(), 2, "{found:#?}");
    expect_problem(
        &found,
        "roles.r.sessionTags.Team",
        7,
        "tag key \"Team\" repeats \"team\" (line 5): STS tag keys ignore case",
    );
    expect_problem(
        &found,
        "roles.r.sessionTags.TEAM",
        8,
        "tag key \"TEAM\" repeats \"team\" (line 5)",
    );
}

#[test]
fn transitive_tag_keys_must_be_session_tag_keys() {
    let yaml =
        role_with("    sessionTags: {team: a, env: b}\n    transitiveTagKeys: [env, Team, env]\n");
    let found = problems(&yaml);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].to_string(), "roles.r.transitiveTagKeys[1] (line 5): unknown tag key \"Team\"; defined tag keys: env, team");
    expect_problem(
        &found,
        "roles.r.transitiveTagKeys[2]",
        5,
        "\"env\" is already listed at roles.r.transitiveTagKeys[0]",
    );

    let found = problems(&role_with("    transitiveTagKeys: [team]\n"));
    expect_problem(
        &found,
        "roles.r.transitiveTagKeys[0]",
        4,
        "unknown tag key \"team\": no tag keys are defined under `sessionTags`",
    );

    // A broken tag is still a key that may be listed.
    let found = problems(&role_with(
        "    sessionTags: {team: 1}\n    transitiveTagKeys: [team]\n",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(&found, "roles.r.sessionTags.team", 4, "quote");
}

#[test]
fn source_identity() {
    let config = parse(&role_with("    sourceIdentity: \"a+=,.@_-Z9\"\n")).expect("valid");
    assert_eq!(
        config.roles["r"].source_identity.as_deref(),
        Some("a+=,.@_-Z9")
    );
    for value in ["x", "\"has space\"", "\"aws:id\"", &"s".repeat(65)] {
        let found = problems(&role_with(&format!("    sourceIdentity: {value}\n")));
        expect_problem(
            &found,
            "roles.r.sourceIdentity",
            4,
            "(an STS source identity)",
        );
    }
}

#[test]
fn role_region_and_sts_endpoint() {
    let yaml = role_with("    region: eu-west-1\n    stsEndpoint: \"http://[::1]:4566/\"\n");
    let role = parse(&yaml).expect("valid").roles["r"].clone();
    assert_eq!(role.region.as_deref(), Some("eu-west-1"));
    assert_eq!(role.sts_endpoint.as_deref(), Some("http://[::1]:4566/"));
    assert!(parse(&role_with("    stsEndpoint: http://localhost:4566\n")).is_ok());

    let found = problems(&role_with("    region: EU\n"));
    expect_problem(&found, "roles.r.region", 4, "an AWS region");
    for value in [
        "sts.amazonaws.com",
        "ftp://sts.amazonaws.com",
        "https://",
        "https:///path",
        "\"https://:443\"",
        "\"https://a b\"",
    ] {
        let found = problems(&role_with(&format!("    stsEndpoint: {value}\n")));
        expect_problem(
            &found,
            "roles.r.stsEndpoint",
            4,
            "must be an http:// or https:// URL with a host",
        );
    }
}
