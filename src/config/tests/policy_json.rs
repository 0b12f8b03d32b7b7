//! Session policies.

use super::*;

#[test]
fn policy_as_a_json_string_is_compacted_in_order() {
    let yaml = role_with(concat!(
            "    policy: |\n",
            "      {\n",
            "        \"Version\": \"2012-10-17\",\n",
            "        \"Statement\": [ { \"Effect\" : \"Deny\", \"Action\": \"s3:*\",\n",
            "          \"Resource\": \"arn:aws:s3:::a b\\\"c\", \"Condition\": {\"NumericLessThan\": {\"x\": 1.50e1}} } ]\n",
            "      }\n",
        ));
    let config = parse(&yaml).expect("valid policy");
    assert_eq!(
        config.roles["r"].policy.as_deref(),
        Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::a b\"c","Condition":{"NumericLessThan":{"x":1.50e1}}}]}"#
        )
    );
}

#[test]
fn policy_as_a_mapping_becomes_compact_json() {
    let yaml = role_with(concat!(
        "    policy:\n",
        "      Version: \"2012-10-17\"\n",
        "      Statement:\n",
        "        - Effect: Allow\n",
        "          Action: [secretsmanager:GetSecretValue, \"kms:Decrypt\"]\n",
        "          Resource: '*'\n",
        "          Condition:\n",
        "            Bool: {aws:SecureTransport: true}\n",
        "            NumericLessThan: {n: 10, f: 1.5, neg: -3}\n",
        "            Null: {tag: ~}\n",
        "            Quoted: {\"say \\\"hi\\\"\": '42', 7: x}\n",
    ));
    let config = parse(&yaml).expect("valid policy");
    assert_eq!(
        config.roles["r"].policy.as_deref(),
        Some(concat!(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","#,
            r#""Action":["secretsmanager:GetSecretValue","kms:Decrypt"],"Resource":"*","#,
            r#""Condition":{"Bool":{"aws:SecureTransport":true},"#,
            r#""NumericLessThan":{"n":10,"f":1.5,"neg":-3},"Null":{"tag":null},"#,
            r#""Quoted":{"say \"hi\"":"42","7":"x"}}}]}"#
        ))
    );

    let found = problems(&role_with(
        "    policy:\n      Statement:\n        - {n: .inf}\n",
    ));
    expect_problem(
        &found,
        "roles.r.policy.Statement[0].n",
        6,
        "JSON has no infinity or NaN",
    );
    let found = problems(&role_with("    policy: {? [a] : 1, b: [1, {? {} : 2}]}\n"));
    let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
    assert_eq!(
        shown,
        [
            "roles.r.policy (line 4): keys must be strings, got a list",
            "roles.r.policy.b[1] (line 4): keys must be strings, got a mapping",
        ]
    );
}

#[test]
fn policy_problems() {
    let found = problems(&role_with(
        "    policy: '{\"Version\": \"2012-10-17\", \"Statement\": [}'\n",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "roles.r.policy",
        4,
        "must be a JSON object, but is not valid JSON: expected value at line 1 column 41",
    );
    // Only the position: the policy text is not repeated.
    assert!(!found[0].message.contains("2012"), "{found:#?}");

    for (value, needle) in [
        ("'[1, 2]'", "must be a JSON object, got a JSON array"),
        ("'\"text\"'", "must be a JSON object, got a JSON string"),
        ("'null'", "must be a JSON object, got a JSON null"),
        (
            "[a]",
            "must be a JSON object, as a string or a mapping, got a list",
        ),
        (
            "42",
            "must be a JSON object, as a string or a mapping, got 42",
        ),
    ] {
        let found = problems(&role_with(&format!("    policy: {value}\n")));
        assert_eq!(found.len(), 1, "{value}: {found:#?}");
        expect_problem(&found, "roles.r.policy", 4, needle);
    }
}

#[test]
fn policy_length_is_counted_compact() {
    // {"a":"…"} is 8 characters around the value.
    let policy = |chars: usize, spaces: &str| {
        format!(
            "    policy: '{{ \"a\" :{spaces}\"{}\" }}'\n",
            "x".repeat(chars - 8)
        )
    };
    let config =
        parse(&role_with(&policy(2048, "          "))).expect("2048 compact characters fit");
    assert_eq!(
        config.roles["r"].policy.as_deref().map(str::len),
        Some(2048)
    );
    let found = problems(&role_with(&policy(2049, "")));
    expect_problem(
        &found,
        "roles.r.policy",
        4,
        "must be at most 2048 characters as compact JSON, got 2049",
    );

    let mapping = format!("    policy: {{a: {}}}\n", "x".repeat(2049 - 8));
    let found = problems(&role_with(&mapping));
    expect_problem(&found, "roles.r.policy", 4, "got 2049");
}

#[test]
fn policy_arns() {
    let arns = |arns: &[&str]| role_with(&format!("    policyArns: [{}]\n", arns.join(", ")));
    let good = [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws-cn:iam::123456789012:policy/team/Custom+Name=1",
    ];
    let config = parse(&arns(&good)).expect("valid");
    assert_eq!(config.roles["r"].policy_arns, good);

    let found = problems(&arns(&[
        "arn:aws:iam::aws:role/ReadOnlyAccess",
        "arn:aws:iam::12345:policy/P",
        "arn:aws:s3:::bucket",
        "arn:aws:iam::aws:policy/",
    ]));
    assert_eq!(found.len(), 4, "{found:#?}");
    let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
    assert!(messages[0].starts_with("not a policy ARN; expected arn:<partition>:iam::<aws or a 12-digit account id>:policy/<name>, got \"arn:aws:iam::aws:role/ReadOnlyAccess\""), "{messages:#?}");
    assert!(
        messages[1].starts_with("the account id must be 12 digits or aws;"),
        "{messages:#?}"
    );
    assert!(
        messages[2].starts_with("not an IAM policy ARN;"),
        "{messages:#?}"
    );
    assert!(
        messages[3].starts_with("the policy name must be"),
        "{messages:#?}"
    );
    assert_eq!(found[3].path, "roles.r.policyArns[3]");

    let ten: Vec<String> = (0..10)
        .map(|i| format!("arn:aws:iam::aws:policy/P{i}"))
        .collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    assert!(parse(&arns(&ten)).is_ok());
    let eleven = [ten.as_slice(), &["arn:aws:iam::aws:policy/P10"]].concat();
    let found = problems(&arns(&eleven));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "roles.r.policyArns",
        4,
        "must list at most 10 policy ARNs, got 11",
    );
}
