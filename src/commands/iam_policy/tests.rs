//! Tests of `iam_policy`.

use super::*;

fn config(yaml: &str) -> Config {
    crate::config::parse(yaml).unwrap()
}

const YAML: &str = r#"region: us-east-1
roles:
  hub:
    roleArn: arn:aws:iam::222222222222:role/Hub
  shared:
    roleArn: arn:aws:iam::111111111111:role/Shared
    externalIdFile: /etc/ferry/external-id
    via: hub
    sessionTags: {team: a}
secrets:
  - {name: a, secretId: app/a, role: shared, targets: [{file: {dir: /o/a}}]}
  - {name: b, secretId: app/b, role: shared, failoverRegion: us-west-2, targets: [{file: {dir: /o/b}}]}
  - {name: c, secretId: "arn:aws:secretsmanager:us-east-1:111111111111:secret:full-AbCdEf", role: shared, fetchStrategy: get, targets: [{file: {dir: /o/c}}]}
  - {name: own, secretId: mine, targets: [{file: {dir: /o/own}}]}
"#;

#[test]
fn documents_for_a_chain() {
    let docs = documents(
        &config(YAML),
        Some("arn:aws:iam::123456789012:role/pod"),
        Some("o-abc123"),
    );
    let shared = &docs["shared"];
    let trust = &shared["trustPolicy"]["Statement"][0];
    assert_eq!(
        trust["Principal"]["AWS"], "arn:aws:iam::222222222222:role/Hub",
        "a chained role trusts its parent"
    );
    assert_eq!(trust["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
    let ext = trust["Condition"]["StringEquals"]["sts:ExternalId"]
        .as_str()
        .unwrap();
    assert!(ext.contains("/etc/ferry/external-id"), "{ext}");
    assert_eq!(
        trust["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
        "o-abc123"
    );
    let hub = &docs["hub"]["trustPolicy"]["Statement"][0];
    assert_eq!(
        hub["Principal"]["AWS"],
        "arn:aws:iam::123456789012:role/pod"
    );
    assert_eq!(
        hub["Condition"],
        json!({"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}),
        "no ExternalId configured for hub: no ExternalId condition"
    );

    let perms = &shared["permissionsPolicy"]["Statement"];
    assert_eq!(
        perms[0]["Resource"],
        json!([
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/a-??????",
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/b-??????",
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:full-AbCdEf",
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:full-AbCdEf-??????",
            "arn:aws:secretsmanager:us-west-2:111111111111:secret:app/b-??????",
        ])
    );
    // a and b share role and interval but not failover region: no batch group.
    assert_eq!(perms.as_array().unwrap().len(), 1, "{perms}");
    let hub_perms = &docs["hub"]["permissionsPolicy"]["Statement"];
    assert_eq!(hub_perms[0]["Sid"], "AssumeNextRoleInChain");
    assert_eq!(
        hub_perms[0]["Resource"],
        "arn:aws:iam::111111111111:role/Shared"
    );
    assert_eq!(
        shared["callerPolicy"]["Statement"][0]["Resource"],
        "arn:aws:iam::111111111111:role/Shared"
    );
    assert_eq!(
        shared["kmsKeyPolicyStatement"]["Condition"]["StringEquals"]["kms:ViaService"],
        json!([
            "secretsmanager.us-east-1.amazonaws.com",
            "secretsmanager.us-west-2.amazonaws.com"
        ]),
        "b is also read in its failover region"
    );
    let base = &docs[BASE_IDENTITY]["permissionsPolicy"]["Statement"];
    assert_eq!(
        base[0]["Resource"],
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:mine-??????"
    );
    assert_eq!(
        base[1]["Resource"], "arn:aws:iam::222222222222:role/Hub",
        "the base identity assumes the root of the chain"
    );
}

#[test]
fn fetch_strategies_add_only_the_actions_they_use() {
    let yaml = r#"region: eu-west-1
roles:
  r: {roleArn: "arn:aws-cn:iam::111111111111:role/R"}
secrets:
  - {name: a, secretId: x/a, role: r, targets: [{file: {dir: /o/a}}]}
  - {name: b, secretId: x/b, role: r, targets: [{file: {dir: /o/b}}]}
  - {name: f, find: {namePrefix: team/}, role: r, targets: [{file: {dir: "/o/{{ name }}"}}]}
"#;
    let docs = documents(&config(yaml), None, None);
    let perms = &docs["r"]["permissionsPolicy"]["Statement"];
    assert_eq!(
        perms[1]["Action"],
        json!([
            "secretsmanager:BatchGetSecretValue",
            "secretsmanager:ListSecrets"
        ])
    );
    assert_eq!(perms[1]["Resource"], "*");
    assert!(perms[0]["Resource"].as_array().unwrap().contains(&json!(
        "arn:aws-cn:secretsmanager:eu-west-1:111111111111:secret:team/*"
    )));
    let trust = &docs["r"]["trustPolicy"]["Statement"][0];
    assert_eq!(trust["Principal"]["AWS"], CALLER_PLACEHOLDER);
}

#[test]
fn resource_wildcards_match_as_iam_does() {
    assert!(resource_matches("x:app/db-??????", "x:app/db-AbCdEf"));
    assert!(!resource_matches(
        "x:app/db-??????",
        "x:app/db-admin-AbCdEf"
    ));
    assert!(!resource_matches("x:app/db-??????", "x:app/db-AbCdE"));
    assert!(resource_matches("x:app/db-*", "x:app/db-admin-AbCdEf"));
    assert!(resource_matches("x:team/*", "x:team/"));
    assert!(!resource_matches("x:app/db", "x:app/db-AbCdEf"));
}

fn granted(docs: &BTreeMap<String, Value>, role: &str, arn: &str) -> bool {
    docs[role]["permissionsPolicy"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"] == "secretsmanager:GetSecretValue")
        .flat_map(|s| match &s["Resource"] {
            Value::Array(all) => all.clone(),
            one => vec![one.clone()],
        })
        .any(|r| resource_matches(r.as_str().unwrap(), arn))
}

const SM: &str = "arn:aws:secretsmanager";

#[test]
fn a_name_is_granted_with_exactly_six_suffix_characters() {
    let yaml = r#"region: us-east-1
roles:
  r: {roleArn: "arn:aws:iam::111111111111:role/R"}
secrets:
  - {name: db, secretId: app/db, role: r, targets: [{file: {dir: /o/db}}]}
"#;
    let docs = documents(&config(yaml), None, None);
    assert!(granted(
        &docs,
        "r",
        &format!("{SM}:us-east-1:111111111111:secret:app/db-AbCdEf")
    ));
    // `-*` would grant these too.
    for other in ["app/db-admin-AbCdEf", "app/db-AbCdEfG", "app/db-AbCdE"] {
        assert!(
            !granted(
                &docs,
                "r",
                &format!("{SM}:us-east-1:111111111111:secret:{other}")
            ),
            "{other} must not be granted"
        );
    }
}

#[test]
fn an_arn_that_may_be_partial_is_granted_in_both_readings() {
    // `app/my-secret` ends in `-secret`: six letters, like a random suffix.
    let yaml = format!(
        r#"region: us-east-1
roles:
  r: {{roleArn: "arn:aws:iam::111111111111:role/R"}}
secrets:
  - {{name: a, secretId: "{SM}:us-east-1:111111111111:secret:app/my-secret", role: r, fetchStrategy: get, targets: [{{file: {{dir: /o/a}}}}]}}
  - {{name: b, secretId: "{SM}:us-east-1:111111111111:secret:app/plain", role: r, fetchStrategy: get, targets: [{{file: {{dir: /o/b}}}}]}}
"#
    );
    let docs = documents(&config(&yaml), None, None);
    // As a partial ARN: the secret AWS named app/my-secret-XyZ123.
    assert!(granted(
        &docs,
        "r",
        &format!("{SM}:us-east-1:111111111111:secret:app/my-secret-XyZ123")
    ));
    // As a complete ARN: the secret named app/my.
    assert!(granted(
        &docs,
        "r",
        &format!("{SM}:us-east-1:111111111111:secret:app/my-secret")
    ));
    assert!(granted(
        &docs,
        "r",
        &format!("{SM}:us-east-1:111111111111:secret:app/plain-XyZ123")
    ));
    assert!(!granted(
        &docs,
        "r",
        &format!("{SM}:us-east-1:111111111111:secret:app/plain")
    ));
    assert!(!granted(
        &docs,
        "r",
        &format!("{SM}:us-east-1:111111111111:secret:app/my-secret-XyZ123-AbCdEf")
    ));
}

#[test]
fn an_arn_with_a_failover_region_is_granted_on_its_replica() {
    let yaml = format!(
        r#"region: us-east-1
roles:
  r: {{roleArn: "arn:aws:iam::111111111111:role/R", region: eu-west-1}}
secrets:
  - {{name: a, secretId: "{SM}:us-east-1:222222222222:secret:app/a-AbCdEf", role: r, failoverRegion: us-west-2, targets: [{{file: {{dir: /o/a}}}}]}}
"#
    );
    let docs = documents(&config(&yaml), None, None);
    for region in ["us-east-1", "us-west-2"] {
        assert!(
            granted(
                &docs,
                "r",
                &format!("{SM}:{region}:222222222222:secret:app/a-AbCdEf")
            ),
            "{region}"
        );
    }
    assert_eq!(
        docs["r"]["kmsKeyPolicyStatement"]["Condition"]["StringEquals"]["kms:ViaService"],
        json!([
            "secretsmanager.us-east-1.amazonaws.com",
            "secretsmanager.us-west-2.amazonaws.com"
        ]),
        "the regions the secret is read in, not the role's region"
    );
}

#[test]
fn a_role_in_another_region_decrypts_there() {
    let yaml = r#"region: us-east-1
roles:
  r: {roleArn: "arn:aws:iam::111111111111:role/R", region: eu-west-1}
secrets:
  - {name: a, secretId: app/a, role: r, targets: [{file: {dir: /o/a}}]}
"#;
    let docs = documents(&config(yaml), None, None);
    assert!(granted(
        &docs,
        "r",
        &format!("{SM}:eu-west-1:111111111111:secret:app/a-AbCdEf")
    ));
    assert_eq!(
        docs["r"]["kmsKeyPolicyStatement"]["Condition"]["StringEquals"]["kms:ViaService"],
        "secretsmanager.eu-west-1.amazonaws.com"
    );
}

#[test]
fn text_output_has_every_document_as_valid_json() {
    let text = render_text(&documents(&config(YAML), None, None));
    assert!(text.contains("# shared") && text.contains("## Trust policy"));
    let blocks: Vec<&str> = text.split("\n\n").filter(|b| b.starts_with('{')).collect();
    assert_eq!(blocks.len(), 4 + 4 + 2);
    for block in blocks {
        serde_json::from_str::<Value>(block).unwrap();
    }
}

#[test]
fn change_events_add_the_queue_statement_the_rule_and_the_queue_policy() {
    let yaml = format!(
        "{YAML}changeEvents:\n  - {{queueUrl: \"https://sqs.us-east-1.amazonaws.com/111111111111/changes\", role: shared}}\n  - {{queueUrl: \"https://vpce-1.sqs.us-east-1.vpce.amazonaws.com/123456789012/mine\"}}\n"
    );
    let docs = documents(
        &config(&yaml),
        Some("arn:aws:iam::123456789012:role/pod"),
        None,
    );
    let statement = |doc: &Value| {
        doc["permissionsPolicy"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "ReadChangeEvents")
            .cloned()
            .unwrap()
    };
    assert_eq!(
        statement(&docs["shared"])["Resource"],
        "arn:aws:sqs:us-east-1:111111111111:changes"
    );
    assert_eq!(
        statement(&docs[BASE_IDENTITY])["Resource"],
        "arn:aws:sqs:us-east-1:123456789012:mine",
        "a VPC endpoint URL names no region: the default"
    );
    let rule = &docs["shared"]["changeEvents"]["changes"]["eventBridgeRule"];
    assert_eq!(rule["Name"], "secret-ferry-to-changes");
    assert_eq!(
        rule["Accounts"],
        json!(["111111111111", "123456789012"]),
        "shared's secrets and the base identity's"
    );
    let pattern = &rule["EventPattern"];
    assert_eq!(pattern["source"], json!(["aws.secretsmanager"]));
    assert_eq!(
        pattern["$or"][0]["detail-type"],
        json!(["Secret Label Updated"])
    );
    assert_eq!(
        pattern["$or"][1]["detail"]["eventName"],
        json!(["DeleteSecret", "RestoreSecret", "ReplicateSecretToRegions"])
    );
    let policy = &docs["shared"]["changeEvents"]["changes"]["queuePolicy"]["Statement"][0];
    assert_eq!(policy["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(policy["Action"], "sqs:SendMessage");
    assert_eq!(
        policy["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!([
            "arn:aws:events:us-east-1:111111111111:rule/secret-ferry-to-changes",
            "arn:aws:events:us-east-1:123456789012:rule/secret-ferry-to-changes",
        ])
    );
    let text = render_text(&docs);
    assert!(
        text.contains("## EventBridge rule for change events queue changes"),
        "{text}"
    );
    assert!(text.contains("## Queue policy of mine"), "{text}");
}

#[test]
fn parameter_store_entries_get_exact_ssm_statements_and_the_ssm_via_service() {
    let yaml = r#"region: eu-west-1
roles:
  shared: {roleArn: "arn:aws:iam::111111111111:role/Shared"}
secrets:
  - {name: a, parameter: "/app/db:3", role: shared, targets: [{file: {dir: /o/a}}]}
  - {name: b, parameter: plain, role: shared, targets: [{file: {dir: /o/b}}]}
  - {name: few, parameterPath: {path: /}, role: shared, refreshInterval: 5m, fetchStrategy: batch, targets: [{file: {dir: /o/few}}]}
  - {name: base, parameter: /base/x, targets: [{file: {dir: /o/base}}]}
"#;
    let docs = documents(
        &config(yaml),
        Some("arn:aws:iam::123456789012:role/pod"),
        None,
    );
    let statements = docs["shared"]["permissionsPolicy"]["Statement"].clone();
    let sid = |sid: &str| {
        statements
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .cloned()
    };
    assert_eq!(
        sid("ReadConfiguredParameters").unwrap()["Resource"],
        json!([
            "arn:aws:ssm:eu-west-1:111111111111:parameter/app/db",
            "arn:aws:ssm:eu-west-1:111111111111:parameter/plain"
        ]),
        "the selector is not part of the ARN; no '/' is doubled"
    );
    assert_eq!(
        sid("ReadConfiguredParameterPaths").unwrap()["Resource"],
        json!([
            "arn:aws:ssm:eu-west-1:111111111111:parameter/",
            "arn:aws:ssm:eu-west-1:111111111111:parameter/*"
        ])
    );
    // Two names and a path read with `batch`: nothing lists, so no DescribeParameters.
    assert!(sid("CompareParameterVersions").is_none(), "{statements}");
    assert!(
        sid("ReadConfiguredSecrets").is_none(),
        "no Secrets Manager grant for parameters"
    );
    let via =
        &docs["shared"]["kmsKeyPolicyStatement"]["Condition"]["StringEquals"]["kms:ViaService"];
    assert_eq!(via, &json!("ssm.eu-west-1.amazonaws.com"));
    let base = &docs[BASE_IDENTITY]["permissionsPolicy"]["Statement"][0];
    assert_eq!(
        base["Resource"], "arn:aws:ssm:eu-west-1:123456789012:parameter/base/x",
        "the base identity's own account"
    );
    for path in ["/app/db", "/plain"] {
        let arn =
            crate::source::parameter_store::parameter_arn("aws", "eu-west-1", "111111111111", path);
        assert!(!arn.contains("parameter//"), "{arn}");
    }
}

#[test]
fn the_rule_takes_parameter_store_changes_only_when_parameters_are_read() {
    let queue = "changeEvents:\n  - {queueUrl: \"https://sqs.us-east-1.amazonaws.com/111111111111/changes\"}\n";
    let pattern = |secrets: &str| {
        let yaml = format!("region: us-east-1\nsecrets:\n{secrets}{queue}");
        documents(&config(&yaml), None, None)[BASE_IDENTITY]["changeEvents"]["changes"]
            ["eventBridgeRule"]["EventPattern"]
            .clone()
    };
    let secrets_only = pattern("  - {name: a, secretId: app/a, targets: [{file: {dir: /o/a}}]}\n");
    assert_eq!(secrets_only["source"], json!(["aws.secretsmanager"]));
    assert_eq!(secrets_only["$or"].as_array().unwrap().len(), 2);
    let with_parameters =
        pattern("  - {name: a, parameter: /app/a, targets: [{file: {dir: /o/a}}]}\n");
    assert_eq!(
        with_parameters["source"],
        json!(["aws.secretsmanager", "aws.ssm"])
    );
    assert_eq!(
        with_parameters["$or"][2],
        json!({"detail-type": ["Parameter Store Change"]})
    );
}
