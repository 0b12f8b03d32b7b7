//! `pushes`: sources, targets, policies, and a config that only pushes.

use super::*;

const PUSH: &str = r#"instance: cluster-a
roles:
  customer:
    roleArn: arn:aws:iam::222222222222:role/Customer
    externalIdFile: /etc/secret-ferry/external-id
pushes:
  - name: oauth-tokens
    role: customer
    refreshInterval: 10s
    from:
      file: {dir: /var/run/app/push/tokens}
    to:
      secretName: unified/ws-1234/tokens
      region: us-east-1
      kmsKeyId: alias/customer-key
      description: tokens the app obtained
      tags: {team: payments}
    updatePolicy: Replace
    deletionPolicy: Delete
    recoveryWindow: 7d
  - name: cert
    from:
      file: {path: /var/run/app/cert.der, binary: true}
    to: {secretName: app/cert}
    deletionPolicy: Delete
    forceDelete: true
  - name: once
    from:
      file: {path: /var/run/app/token}
    to: {secretName: app/token}
    updatePolicy: IfNotExists
    adopt: true
"#;

#[test]
fn a_config_may_only_push() {
    let config = parse(PUSH).expect("valid");
    assert!(config.secrets.is_empty());
    assert_eq!(config.instance, "cluster-a");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let [tokens, cert, kube] = config.pushes.as_slice() else {
        panic!("three pushes: {:?}", config.pushes)
    };
    assert_eq!(
        tokens,
        &PushConfig {
            name: "oauth-tokens".into(),
            role: Some("customer".into()),
            refresh_interval: Duration::from_secs(10),
            from: PushSource::Dir("/var/run/app/push/tokens".into()),
            to: PushTarget {
                secret_name: "unified/ws-1234/tokens".into(),
                region: Some("us-east-1".into()),
                kms_key_id: Some("alias/customer-key".into()),
                description: Some("tokens the app obtained".into()),
                tags: BTreeMap::from([("team".into(), "payments".into())]),
            },
            update_policy: UpdatePolicy::Replace,
            deletion_policy: DeletionPolicy::Delete,
            recovery: Recovery::Window(7),
            adopt: false,
        }
    );
    assert_eq!(
        cert.from,
        PushSource::File {
            path: "/var/run/app/cert.der".into(),
            binary: true
        }
    );
    assert_eq!(cert.recovery, Recovery::Force);
    assert_eq!(cert.refresh_interval, DEFAULT_REFRESH_INTERVAL);
    assert_eq!(cert.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(
        (kube.update_policy, kube.deletion_policy, kube.adopt),
        (UpdatePolicy::IfNotExists, DeletionPolicy::Retain, true)
    );
}

#[test]
fn a_kubernetes_secret_source_names_a_secret_and_optionally_its_namespace_and_keys() {
    let yaml = "instance: c1\npushes:\n  - name: k\n    from:\n      kubernetesSecret: {name: app-tokens, namespace: app, keys: [token]}\n    to: {secretName: s}\n  - name: own\n    from: {kubernetesSecret: {name: mine}}\n    to: {secretName: t}\n";
    let config = parse(yaml).expect("valid");
    assert_eq!(
        config.pushes[0].from,
        PushSource::KubernetesSecret {
            name: "app-tokens".to_owned(),
            namespace: Some("app".to_owned()),
            keys: vec!["token".to_owned()],
        }
    );
    assert_eq!(
        config.pushes[1].from,
        PushSource::KubernetesSecret {
            name: "mine".to_owned(),
            namespace: None,
            keys: Vec::new(),
        }
    );
    let bad = "pushes:\n  - name: k\n    from:\n      kubernetesSecret: {name: App_Tokens, namespace: a.b, keys: [token, token, \"../x\"]}\n    to: {secretName: s}\n";
    let p = problems(bad);
    expect_problem(
        &p,
        "pushes[0].from.kubernetesSecret.name",
        4,
        "DNS subdomain",
    );
    expect_problem(
        &p,
        "pushes[0].from.kubernetesSecret.namespace",
        4,
        "DNS label",
    );
    assert!(p.len() >= 3, "{p:#?}");
}

#[test]
fn without_instance_pushes_warn_that_installations_would_share_secrets() {
    let yaml = "pushes:\n  - {name: p, from: {file: {path: /run/t}}, to: {secretName: s}}\n";
    let config = parse(yaml).expect("valid");
    assert_eq!(config.instance, DEFAULT_INSTANCE);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].message.contains("`instance` is not set"));
    // Neither secrets nor pushes: the message names both.
    let p = problems("region: us-east-1\n");
    expect_problem(&p, "secrets", 1, "or `pushes`");
}

#[test]
fn every_bad_push_field_is_reported_at_once() {
    let yaml = r#"roles:
  r: {roleArn: "arn:aws:iam::123456789012:role/R"}
pushes:
  - name: a
    role: nope
    refreshInterval: 0s
    from: {file: {dir: relative/dir}}
    to: {secretName: "arn:aws:secretsmanager:us-east-1:123456789012:secret:x", tags: {"aws:x": y, "secret-ferry.io/instance": z}}
    updatePolicy: Sometimes
    recoveryWindow: 7d
  - name: a
    from: {file: {dir: /d, path: /p}}
    to: {secretName: "bad name"}
    deletionPolicy: Delete
    recoveryWindow: 3d
  - name: c
    from: {file: {dir: /d, binary: true}, kubernetesSecret: {name: x}}
    to: {secretName: ok}
    deletionPolicy: Delete
    recoveryWindow: 7d
    forceDelete: true
  - name: d
    from: {}
    to: {secretName: s, kmsKeyId: ""}
    adopt: maybe
  - name: e
    from: {kubernetesSecret: {name: Bad_Name, keys: ["../x", "a", "a"]}}
    to: {secretName: dup}
  - name: f
    from: {file: {path: /x}}
    to: {secretName: dup}
  - name: g
    from: {file: {path: /y}}
    to: {secretName: dup}
"#;
    let p = problems(yaml);
    expect_problem(&p, "pushes[0].role", 5, "unknown role \"nope\"");
    expect_problem(&p, "pushes[0].refreshInterval", 6, "");
    expect_problem(&p, "pushes[0].from.file.dir", 7, "absolute path");
    expect_problem(&p, "pushes[0].to.secretName", 8, "not an ARN");
    expect_problem(
        &p,
        "pushes[0].updatePolicy",
        9,
        "one of Replace, IfNotExists",
    );
    expect_problem(
        &p,
        "pushes[0].recoveryWindow",
        10,
        "only with deletionPolicy: Delete",
    );
    expect_problem(&p, "pushes[1].name", 11, "already listed at pushes[0].name");
    expect_problem(&p, "pushes[1].from.file.path", 12, "cannot both be set");
    expect_problem(&p, "pushes[1].to.secretName", 13, "1 to 512 letters");
    expect_problem(
        &p,
        "pushes[1].recoveryWindow",
        15,
        "whole days from 7d to 30d",
    );
    expect_problem(
        &p,
        "pushes[2].from.kubernetesSecret",
        17,
        "cannot both be set",
    );
    expect_problem(&p, "pushes[2].forceDelete", 21, "cannot both be set");
    expect_problem(&p, "pushes[3].from", 23, "needs `file`");
    expect_problem(&p, "pushes[3].to.kmsKeyId", 24, "");
    expect_problem(&p, "pushes[3].adopt", 25, "");
    expect_problem(
        &p,
        "pushes[4].from.kubernetesSecret.name",
        27,
        "DNS subdomain",
    );
    expect_problem(
        &p,
        "pushes[4].from.kubernetesSecret.keys[0]",
        27,
        "a Secret key",
    );
    expect_problem(
        &p,
        "pushes[4].from.kubernetesSecret.keys[2]",
        27,
        "already listed",
    );
    expect_problem(&p, "pushes[6]", 32, "already pushed by pushes[5]");
    let tag_problems: Vec<&Problem> = p
        .iter()
        .filter(|p| p.path.starts_with("pushes[0].to.tags"))
        .collect();
    assert_eq!(tag_problems.len(), 2, "{tag_problems:#?}");
    assert!(tag_problems
        .iter()
        .any(|p| p.message.contains("reserved by AWS")));
    assert!(tag_problems
        .iter()
        .any(|p| p.message.contains("secret-ferry's own")));
}

#[test]
fn a_name_that_looks_like_an_arn_suffix_warns() {
    let yaml = "instance: x\npushes:\n  - {name: p, from: {file: {path: /run/t}}, to: {secretName: app/db-abc123}}\n";
    let config = parse(yaml).expect("valid");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].message.contains("random suffix"));
}
