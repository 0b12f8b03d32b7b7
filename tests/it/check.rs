//! `secret-ferry check` and `secret-ferry iam-policy` as an operator runs them.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::kube_emulator;

use common::*;
use kube_emulator::KubeEmulator;
use std::process::{Command, Output};

pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    capture("check-stdout", &out.stdout);
    capture("check-stderr", &out.stderr);
    out
}

use crate::common::output_text as text;

/// What `iam-policy --output json` prints for `config`, with `caller` as the caller ARN.
pub(crate) fn iam_policy_json(config: &std::path::Path, caller: &str) -> serde_json::Value {
    let out = run(
        &[
            "iam-policy",
            "--config",
            config.to_str().unwrap(),
            "--caller-arn",
            caller,
            "--output",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_walks_every_link_and_names_the_fix_for_each_failure() {
    let moto = Moto::start();
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    // The workload may assume roles but read nothing with its own identity.
    let workload = create_user(&admin, "workload", &allow("sts:AssumeRole")).await;
    let right_id = canary("extid");
    let role_arn = create_role(&admin, "Shared", &workload.arn, &right_id).await;
    let value = canary("value");
    create_secret(
        &admin,
        "app/db",
        &format!(r#"{{"username":"app","password":"{value}"}}"#),
    )
    .await;
    moto.enable_auth();
    let emulator = KubeEmulator::start();
    emulator.add_namespace("app", &[]);
    emulator.deny("patch", "secrets", Some("app"));
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = emulator.write_kubeconfig(tmp.path(), "app");
    let good = tmp.path().join("good-id");
    std::fs::write(&good, &right_id).unwrap();
    let wrong = tmp.path().join("wrong-id");
    std::fs::write(&wrong, canary("wrong")).unwrap();
    let yaml = format!(
        r#"region: us-east-1
roles:
  shared: {{roleArn: "{role_arn}", externalIdFile: {good}}}
  broken: {{roleArn: "{role_arn}", externalIdFile: {wrong}, sessionName: broken}}
secrets:
  - name: db
    secretId: app/db
    role: shared
    targets:
      - file: {{dir: {dir}}}
      - kubernetesSecret: {{name: db}}
  - name: own
    secretId: app/db
    targets: [{{file: {{dir: {dir2}}}}}]
  - name: missing
    secretId: app/nope
    role: shared
    targets: [{{file: {{dir: {dir3}}}}}]
"#,
        good = good.display(),
        wrong = wrong.display(),
        dir = tmp.path().join("out/db").display(),
        dir2 = tmp.path().join("out/own").display(),
        dir3 = tmp.path().join("out/missing").display(),
    );
    let config = write_config(tmp.path(), &yaml);
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", workload.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", workload.secret_access_key.clone()),
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("POD_NAMESPACE", "app".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(&["check", "--config", config.to_str().unwrap()], &env);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let line = |prefix: &str| {
        report
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{report}"))
            .to_owned()
    };
    let fix_after = |prefix: &str| {
        let mut lines = report.lines().skip_while(|l| !l.starts_with(prefix));
        lines.next();
        lines.next().unwrap_or_default().to_owned()
    };
    assert!(
        line("ok    base   identity").contains(&workload.arn),
        "{report}"
    );
    assert!(line("ok    role   shared").contains("expires"), "{report}");
    assert!(line("FAIL  role   broken").contains(&role_arn), "{report}");
    assert!(
        fix_after("FAIL  role   broken").contains("trust policy"),
        "{report}"
    );
    let db = line("ok    secret db");
    assert!(
        db.contains("keys: password, username") && db.contains("version"),
        "{report}"
    );
    assert!(line("ok    target db").contains("writable"), "{report}");
    assert!(
        line("FAIL  target db").contains("not allowed to patch"),
        "{report}"
    );
    assert!(
        fix_after("FAIL  target db").contains("verbs [\"patch\"]"),
        "{report}"
    );
    assert_eq!(out.status.code(), Some(1));
    // The base identity may not read: the permissions policy and the -?????? suffix.
    assert!(
        line("FAIL  secret own").contains("GetSecretValue"),
        "{report}"
    );
    assert!(
        fix_after("FAIL  secret own").contains("-?????? suffix"),
        "{report}"
    );
    // moto's auth mode answers an unknown secret with 403 too; either way it is named.
    assert!(
        line("FAIL  secret missing").contains("app/nope"),
        "{report}"
    );
    assert_no_leak(&report, &[&value, &right_id]);

    let out = run(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
        ],
        &env,
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    let links = json["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l["kind"] == "role"
        && l["name"] == "broken"
        && l["ok"] == false
        && l["fix"].is_string()));
    assert_no_leak(&text(&out), &[&value, &right_id]);
}

#[test]
fn iam_policy_prints_valid_documents_and_never_the_external_id() {
    let tmp = tempfile::tempdir().unwrap();
    let id_file = tmp.path().join("external-id");
    let external_id = canary("extid");
    std::fs::write(&id_file, &external_id).unwrap();
    let yaml = format!(
        r#"region: eu-west-1
roles:
  shared: {{roleArn: "arn:aws:iam::111111111111:role/Shared", externalIdFile: {}}}
secrets:
  - {{name: a, secretId: app/a, role: shared, targets: [{{file: {{dir: /o/a}}}}]}}
  - {{name: b, secretId: app/b, role: shared, targets: [{{file: {{dir: /o/b}}}}]}}
"#,
        id_file.display()
    );
    let config = write_config(tmp.path(), &yaml);
    let caller = "arn:aws:iam::123456789012:role/eks-pod";
    let out = run(
        &[
            "iam-policy",
            "--config",
            config.to_str().unwrap(),
            "--caller-arn",
            caller,
            "--org-id",
            "o-abc123def4",
            "--output",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shared = &docs["shared"];
    for key in [
        "trustPolicy",
        "permissionsPolicy",
        "kmsKeyPolicyStatement",
        "callerPolicy",
    ] {
        assert!(shared[key].is_object(), "{key}: {docs}");
    }
    let trust = &shared["trustPolicy"]["Statement"][0];
    assert_eq!(trust["Principal"]["AWS"], caller);
    assert!(trust["Condition"]["StringEquals"]["sts:ExternalId"].is_string());
    assert_eq!(
        trust["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
        "o-abc123def4"
    );
    let perms = &shared["permissionsPolicy"]["Statement"];
    assert_eq!(
        perms[0]["Resource"],
        serde_json::json!([
            "arn:aws:secretsmanager:eu-west-1:111111111111:secret:app/a-??????",
            "arn:aws:secretsmanager:eu-west-1:111111111111:secret:app/b-??????"
        ])
    );
    assert_eq!(
        perms[1]["Action"],
        serde_json::json!([
            "secretsmanager:BatchGetSecretValue",
            "secretsmanager:ListSecrets"
        ]),
        "two secrets at the default interval: auto batches, then lists"
    );
    assert_no_leak(&text(&out), &[&external_id]);

    let out = run(&["iam-policy", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success());
    let report = text(&out);
    assert!(
        report.contains("## Trust policy") && report.contains("## Caller policy"),
        "{report}"
    );
    assert_no_leak(&report, &[&external_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_green_for_a_good_setup_and_names_kms_permission_dir_and_region_failures() {
    let value = canary("value");
    let fx = cross_account("app/db", &format!(r#"{{"password":"{value}"}}"#)).await;
    let (moto, role_arn, external_id) = (&fx.moto, &fx.role_arn, &fx.external_id);
    let proxy = common::proxy::Proxy::start(moto.addr());
    let tmp = tempfile::tempdir().unwrap();
    let id_file = tmp.path().join("external-id");
    std::fs::write(&id_file, external_id).unwrap();
    let in_the_way = tmp.path().join("a-file");
    std::fs::write(&in_the_way, "not a directory").unwrap();
    let config_with = |dir: &std::path::Path, region: bool| {
        let yaml = format!(
            "{}roles:\n  shared: {{roleArn: \"{role_arn}\", externalIdFile: {}}}\nsecrets:\n  - {{name: db, secretId: app/db, role: shared, targets: [{{file: {{dir: {}}}}}]}}\n",
            if region { "region: us-east-1\n" } else { "" },
            id_file.display(),
            dir.display()
        );
        let path = tmp
            .path()
            .join(format!("config-{}.yaml", fastrand::u32(..)));
        std::fs::write(&path, yaml).unwrap();
        path
    };
    let endpoint = proxy.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let good = config_with(&tmp.path().join("out/db"), true);
    let out = run(&["check", "--config", good.to_str().unwrap()], &env);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("all 4 links ok"), "{report}");
    assert_no_leak(&report, &[&value, external_id]);

    // KMS refused the decrypt, as real AWS says it (a JSON AccessDeniedException body).
    proxy.inject(common::proxy::json_error(
        "GetSecretValue",
        "AccessDeniedException",
        "Access to KMS is not allowed. The key policy does not allow kms:Decrypt",
        400,
    ));
    let out = run(&["check", "--config", good.to_str().unwrap()], &env);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("kms:Decrypt for the reading role"),
        "{report}"
    );
    proxy.clear_faults();
    // The permissions policy refused it: JSON body with a code, or a bare 403 (moto auth mode).
    for fault in [
        common::proxy::json_error(
            "GetSecretValue",
            "AccessDeniedException",
            "User is not authorized to perform: secretsmanager:GetSecretValue",
            400,
        ),
        common::proxy::Fault::aws(
            "GetSecretValue",
            403,
            "text/xml",
            "<ErrorResponse><Error><Message>denied</Message></Error></ErrorResponse>",
        ),
    ] {
        proxy.inject(fault);
        let out = run(&["check", "--config", good.to_str().unwrap()], &env);
        let report = text(&out);
        assert_eq!(out.status.code(), Some(1), "{report}");
        assert!(report.contains("-?????? suffix"), "{report}");
        proxy.clear_faults();
    }

    // A file in the way of the target directory.
    let blocked = config_with(&in_the_way.join("db"), true);
    let out = run(&["check", "--config", blocked.to_str().unwrap()], &env);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("is not a directory"), "{report}");

    // No region anywhere.
    let no_region = config_with(&tmp.path().join("out/db"), false);
    let out = run(&["check", "--config", no_region.to_str().unwrap()], &env);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(78), "{report}");
    assert!(report.contains("set `region`"), "{report}");
}

/// The documents `iam-policy` prints, applied to moto in auth mode, are what the daemon needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policy_documents_applied_to_moto_let_the_daemon_sync() {
    let moto = Moto::start();
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let workload = create_user(&admin, "workload", &allow("sts:GetCallerIdentity")).await;
    let operator = create_user(&admin, "operator", &allow("*")).await;
    let (a, b, c) = (canary("a"), canary("b"), canary("c"));
    let arn_a = create_secret(&admin, "app/a", &format!(r#"{{"k":"{a}"}}"#)).await;
    let arn_b = create_secret(&admin, "app/b", &format!(r#"{{"k":"{b}"}}"#)).await;
    // Read by an ARN without its random suffix, whose name ends like one (`-secret`).
    let arn_c = create_secret(&admin, "app/my-secret", &format!(r#"{{"k":"{c}"}}"#)).await;
    let partial_c = arn_c[..arn_c.len() - 7].to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let external_id = canary("extid");
    let id_file = tmp.path().join("external-id");
    std::fs::write(&id_file, &external_id).unwrap();
    let role_arn = format!("arn:aws:iam::{SECRETS_ACCOUNT}:role/Generated");
    let yaml = format!(
        "region: us-east-1\nfetchStrategy: batch\nroles:\n  shared: {{roleArn: \"{role_arn}\", externalIdFile: {}}}\nsecrets:\n  - {{name: a, secretId: app/a, role: shared, targets: [{{file: {{dir: {}}}}}]}}\n  - {{name: b, secretId: app/b, role: shared, targets: [{{file: {{dir: {}}}}}]}}\n  - {{name: c, secretId: \"{partial_c}\", role: shared, fetchStrategy: get, targets: [{{file: {{dir: {}}}}}]}}\n",
        id_file.display(),
        tmp.path().join("out/a").display(),
        tmp.path().join("out/b").display(),
        tmp.path().join("out/c").display()
    );
    let config = write_config(tmp.path(), &yaml);
    let docs = iam_policy_json(&config, &workload.arn);
    let shared = &docs["shared"];

    // Structure of the permissions policy: account and region from the role ARN, -?????? suffix.
    let perms = shared["permissionsPolicy"].clone();
    assert_eq!(
        perms["Statement"][0]["Resource"],
        serde_json::json!([
            format!("arn:aws:secretsmanager:us-east-1:{SECRETS_ACCOUNT}:secret:app/a-??????"),
            format!("arn:aws:secretsmanager:us-east-1:{SECRETS_ACCOUNT}:secret:app/b-??????"),
            partial_c.clone(),
            format!("{partial_c}-??????"),
        ])
    );
    // moto evaluates Secrets Manager calls against "*" only, so what the generated Resource
    // patterns grant is checked here, with IAM's wildcards, against the ARNs moto assigned.
    let resources: Vec<String> = perms["Statement"][0]["Resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    for arn in [&arn_a, &arn_b, &arn_c] {
        assert!(
            resources
                .iter()
                .any(|r| secret_ferry::commands::iam_policy::resource_matches(r, arn)),
            "{arn} is not granted by {resources:?}"
        );
    }
    // moto only evaluates Secrets Manager permissions against "*": the same actions on "*".
    let anywhere = iam_docs::on_any_resource(&perms);
    // The operator pastes the ExternalId's value where the placeholder is.
    let trust = iam_docs::trust_with(shared, &external_id);
    iam_docs::create_role_with(&admin, "Generated", &trust, &anywhere).await;
    iam_docs::put_caller_policy(&admin, "workload", &shared["callerPolicy"]).await;
    moto.enable_auth();

    let once = |config: &std::path::Path| {
        let endpoint = moto.endpoint();
        let out = run(
            &["run", "--once", "--config", config.to_str().unwrap()],
            &[
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", workload.access_key_id.as_str()),
                ("AWS_SECRET_ACCESS_KEY", workload.secret_access_key.as_str()),
            ],
        );
        (out.status.code(), text(&out))
    };
    let (code, log) = once(&config);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        read(&tmp.path().join("out/b"), "k").as_deref(),
        Some(b.as_str())
    );
    assert_eq!(
        read(&tmp.path().join("out/c"), "k").as_deref(),
        Some(c.as_str()),
        "the partial ARN is read"
    );

    // A wrong ExternalId is refused by the generated trust policy.
    std::fs::write(&id_file, canary("wrong")).unwrap();
    let (code, log) = once(&config);
    assert_eq!(code, Some(1), "{log}");
    std::fs::write(&id_file, &external_id).unwrap();

    // Without the batch action the (explicitly batched) secrets cannot be read.
    let mut fewer = anywhere.clone();
    fewer["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["Action"] != "secretsmanager:BatchGetSecretValue");
    let operator = moto.sdk_config_with(operator.credentials());
    iam_docs::put_role_permissions(&operator, "Generated", &fewer).await;
    let (code, log) = once(&config);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("BatchGetSecretValue"), "{log}");
    assert_no_leak(&log, &[&external_id, &a, &b, &c]);
}
