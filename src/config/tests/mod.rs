//! Tests of the config parser, one file per section; the helpers and example configs here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::rules::{check_role_arn, check_secret_arn, parse_mode};
use super::*;

mod chains;
mod change_events;
mod document;
mod examples;
mod outputs;
mod parameters;
mod policy_json;
mod pushes;
mod roles;
mod secrets;
mod targets;

const EXAMPLE: &str = r#"region: us-east-1                 # optional default region
roles:
  shared:                          # a name that secrets refer to
    roleArn: arn:aws:iam::111111111111:role/CrossAccountSecretsRole
    externalIdFile: /etc/secret-ferry/external-id
    sessionName: secret-ferry
    duration: 1h
    refreshBefore: 5m
secrets:
  - name: db
    secretId: my-shared-secret
    role: shared
    versionStage: AWSCURRENT
    refreshInterval: 60s
    targets:
      - file:
          dir: /var/run/secrets/ferry/db
          mode: "0400"
"#;

fn problems(yaml: &str) -> Vec<Problem> {
    match parse(yaml) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(errors) => errors.0,
    }
}

/// The one problem at `path`, checking its line and that its message contains `needle`.
fn expect_problem(problems: &[Problem], path: &str, line: usize, needle: &str) {
    let found: Vec<&Problem> = problems.iter().filter(|p| p.path == path).collect();
    assert_eq!(found.len(), 1, "one problem at {path} in {problems:#?}");
    assert_eq!(found[0].line, Some(line), "line of {:?}", found[0]);
    assert!(
        found[0].message.contains(needle),
        "{:?} should contain {needle:?}",
        found[0].message
    );
}

/// A minimal valid config with `extra` appended to the one secret.
fn secret_with(extra: &str) -> String {
    format!("secrets:\n  - name: db\n    secretId: s\n    targets:\n      - file:\n          dir: /run/db\n{extra}")
}

fn targets(items: &str) -> String {
    format!("secrets:\n  - name: db\n    secretId: s\n    targets:\n{items}")
}

fn role_with(fields: &str) -> String {
    format!("roles:\n  r:\n    roleArn: arn:aws:iam::123456789012:role/R\n{fields}secrets:\n  - {{name: a, secretId: a, targets: [{{file: {{dir: /run/a}}}}]}}\n")
}

/// Environment for placeholder tests: a pod's downward API variables.
fn pod_env(name: &str) -> Option<String> {
    match name {
        "POD_NAME" => Some("web-7d4f9-abcde".to_owned()),
        "POD_NAMESPACE" => Some("payments".to_owned()),
        "HOSTNAME" => Some("web-7d4f9-abcde".to_owned()),
        _ => None,
    }
}

fn problems_with_env(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
    match parse_with_env(yaml, env) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(errors) => errors.0,
    }
}

/// `role_with("")` followed by top-level `extra`, which starts on line 6.
fn config_with(extra: &str) -> String {
    format!("{}{extra}", role_with(""))
}

const FULL_EXAMPLE: &str = r#"region: us-east-1
baseCredentials:
  accessKeyIdFile: /etc/aws/access-key-id
  secretAccessKeyFile: /etc/aws/secret-access-key
roles:
  shared:
    roleArn: arn:aws:iam::111111111111:role/CrossAccountSecretsRole
    externalIdFile: /etc/secret-ferry/external-id
    sessionName: "ferry-${POD_NAMESPACE}-${POD_NAME}"
    duration: 1h
    refreshBefore: 5m
    sessionTags: {team: payments, env: prod}
    transitiveTagKeys: [team]
    sourceIdentity: ci-bot
    policy: '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}'
    policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]
    region: eu-west-1
    stsEndpoint: https://sts.eu-west-1.amazonaws.com
    via: hub
  hub:
    roleArn: arn:aws:iam::222222222222:role/Hub
secrets:
  - name: db
    secretId: my-shared-secret
    role: shared
    targets:
      - file:
          dir: /var/run/secrets/ferry/db
credentialOutputs:
  - role: shared
    file:
      path: /var/run/secrets/ferry/aws/credentials
      profile: default
      mode: "0400"
  - role: hub
    file: {path: /var/run/secrets/ferry/aws/hub}
credentialsEndpoint:
  listen: 127.0.0.1:9911
  tokenFile: /var/run/secrets/ferry/endpoint-token
  roles: [shared]
  allowNonLoopback: false
"#;

fn plain_role(name: &str, role_arn: &str) -> RoleConfig {
    RoleConfig {
        name: name.into(),
        role_arn: role_arn.into(),
        external_id: None,
        session_name: "secret-ferry".into(),
        duration: Duration::from_secs(3600),
        refresh_before: Duration::from_secs(300),
        session_tags: BTreeMap::new(),
        transitive_tag_keys: Vec::new(),
        source_identity: None,
        policy: None,
        policy_arns: Vec::new(),
        region: None,
        sts_endpoint: None,
        via: None,
    }
}
