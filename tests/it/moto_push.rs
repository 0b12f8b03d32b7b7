//! Pushes against moto, counted at a recording proxy: a `dir` source created as a JSON
//! secret in the role's account, no write while unchanged, one version per change (a
//! retried write included), a revert, ownership and adoption, deletion and restore.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::in_process::Daemon;
use common::proxy::{json_error, Proxy};
use common::*;
use std::path::Path;
use std::time::Duration;

impl Daemon {
    /// Waits until `push` has made `n` more attempts than `from` (successful or not).
    async fn attempts(&self, push: &str, from: f64, n: f64) {
        let done = wait_for_async(Duration::from_secs(30), || async {
            (self.total_attempts(push) >= from + n).then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "{push}: {} attempts",
            self.total_attempts(push) - from
        );
    }

    fn total_attempts(&self, push: &str) -> f64 {
        self.metric(&format!(
            "secret_ferry_push_total{{push=\"{push}\",result=\"success\"}}"
        )) + self.metric(&format!(
            "secret_ferry_push_total{{push=\"{push}\",result=\"failure\"}}"
        ))
    }
}

fn config(role_arn: &str, ext_file: &Path, pushes: &str) -> String {
    format!(
        "region: us-east-1\ninstance: it-cluster\nroles:\n  customer: {{roleArn: \"{role_arn}\", externalIdFile: {}}}\npushes:\n{pushes}",
        ext_file.display()
    )
}

async fn value_of(admin: &aws_config::SdkConfig, name: &str) -> Option<String> {
    let sm = aws_sdk_secretsmanager::Client::new(admin);
    let out = sm.get_secret_value().secret_id(name).send().await.ok()?;
    out.secret_string().map(str::to_owned)
}

async fn described(
    admin: &aws_config::SdkConfig,
    name: &str,
) -> aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput {
    let sm = aws_sdk_secretsmanager::Client::new(admin);
    sm.describe_secret().secret_id(name).send().await.unwrap()
}

async fn version_count(admin: &aws_config::SdkConfig, name: &str) -> usize {
    let sm = aws_sdk_secretsmanager::Client::new(admin);
    let out = sm
        .list_secret_version_ids()
        .secret_id(name)
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    out.versions().len()
}

fn json(pairs: &[(&str, &str)]) -> String {
    let map: std::collections::BTreeMap<&str, &str> = pairs.iter().copied().collect();
    serde_json::to_string(&map).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dir_is_created_in_the_role_account_and_written_only_on_change() {
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    let proxy = Proxy::start(moto.addr());
    let sdk = moto
        .sdk_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .build();
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let dir = tmp.path().join("tokens");
    std::fs::create_dir(&dir).unwrap();
    let (access, refresh) = (canary("access"), canary("refresh"));
    std::fs::write(dir.join("access"), &access).unwrap();
    std::fs::write(dir.join("refresh"), &refresh).unwrap();
    let yaml = config(
        &role_arn,
        &ext_file,
        &format!(
            "  - name: tokens\n    role: customer\n    refreshInterval: 1s\n    from: {{file: {{dir: {}}}}}\n    to: {{secretName: unified/ws-1234/tokens, tags: {{team: payments}}}}\n",
            dir.display()
        ),
    );
    let daemon = Daemon::start(&yaml, &sdk);
    assert!(proxy.wait_for_count("CreateSecret", 1, Duration::from_secs(20)));
    daemon.attempts("tokens", 0.0, 1.0).await;
    let a = json(&[("access", &access), ("refresh", &refresh)]);
    assert_eq!(
        value_of(&admin, "unified/ws-1234/tokens").await.as_deref(),
        Some(a.as_str())
    );
    let d = described(&admin, "unified/ws-1234/tokens").await;
    assert!(
        d.arn().unwrap().contains(&format!(":{SECRETS_ACCOUNT}:")),
        "{:?}",
        d.arn()
    );
    let tags: Vec<(String, String)> = d
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert!(
        tags.contains(&("secret-ferry.io/instance".into(), "it-cluster".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("team".into(), "payments".into())),
        "{tags:?}"
    );

    // Ten unchanged intervals: listings only, no write and no read of the value.
    proxy.reset_records();
    let from = daemon.total_attempts("tokens");
    daemon.attempts("tokens", from, 10.0).await;
    for op in [
        "PutSecretValue",
        "CreateSecret",
        "GetSecretValue",
        "DescribeSecret",
    ] {
        assert_eq!(proxy.count(op), 0, "{op} while unchanged");
    }
    let lists = proxy.count("ListSecrets");
    assert!(
        (10..=12).contains(&lists),
        "{lists} listings for ~10 intervals"
    );
    assert_eq!(
        daemon.metric(r#"secret_ferry_push_writes_total{operation="put",push="tokens"}"#),
        0.0
    );

    // A change is one new version within the interval + 1 s.
    let access_b = canary("access-b");
    std::fs::write(dir.join("access"), &access_b).unwrap();
    let changed = std::time::Instant::now();
    assert!(proxy.wait_for_count("PutSecretValue", 1, Duration::from_secs(5)));
    assert!(
        changed.elapsed() <= Duration::from_secs(2),
        "{:?}",
        changed.elapsed()
    );
    let b = json(&[("access", &access_b), ("refresh", &refresh)]);
    let landed = wait_for_async(Duration::from_secs(5), || async {
        (value_of(&admin, "unified/ws-1234/tokens").await.as_deref() == Some(b.as_str()))
            .then_some(())
    })
    .await;
    assert!(landed.is_some());
    assert_eq!(version_count(&admin, "unified/ws-1234/tokens").await, 2);

    // A write answered with 500 is retried with the same token: one version, not two.
    proxy.reset_records();
    proxy.inject(json_error("PutSecretValue", "InternalServiceError", "try again", 500).times(2));
    let access_c = canary("access-c");
    std::fs::write(dir.join("access"), &access_c).unwrap();
    let c = json(&[("access", &access_c), ("refresh", &refresh)]);
    let landed = wait_for_async(Duration::from_secs(20), || async {
        (value_of(&admin, "unified/ws-1234/tokens").await.as_deref() == Some(c.as_str()))
            .then_some(())
    })
    .await;
    assert!(landed.is_some(), "the write after two 500s did not land");
    let tokens: std::collections::BTreeSet<String> = proxy
        .requests_for("PutSecretValue")
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body_text()).unwrap();
            body["ClientRequestToken"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        proxy.count("PutSecretValue") >= 3,
        "{}",
        proxy.count("PutSecretValue")
    );
    assert_eq!(tokens.len(), 1, "every retry repeats its token: {tokens:?}");
    assert_eq!(version_count(&admin, "unified/ws-1234/tokens").await, 3);

    // A revert (C → B) makes B current again.
    std::fs::write(dir.join("access"), &access_b).unwrap();
    let reverted = wait_for_async(Duration::from_secs(5), || async {
        (value_of(&admin, "unified/ws-1234/tokens").await.as_deref() == Some(b.as_str()))
            .then_some(())
    })
    .await;
    assert!(reverted.is_some(), "the revert did not land");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_it_did_not_create_is_refused_until_adopted() {
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    let theirs = canary("theirs");
    create_secret(&admin, "shared/db", &theirs).await;
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let source = tmp.path().join("password");
    let ours = canary("ours");
    std::fs::write(&source, &ours).unwrap();
    let push = |adopt: bool| {
        config(
            &role_arn,
            &ext_file,
            &format!(
                "  - {{name: db, role: customer, refreshInterval: 1s, adopt: {adopt}, from: {{file: {{path: {}}}}}, to: {{secretName: shared/db}}}}\n",
                source.display()
            ),
        )
    };
    let daemon = Daemon::start(&push(false), &moto.sdk_config());
    daemon.attempts("db", 0.0, 2.0).await;
    assert_eq!(
        value_of(&admin, "shared/db").await.as_deref(),
        Some(theirs.as_str())
    );
    assert!(daemon.metric(r#"secret_ferry_push_errors_total{kind="not_owned",push="db"}"#) >= 2.0);
    assert_eq!(daemon.metric(r#"secret_ferry_push_stale{push="db"}"#), 1.0);
    daemon.stop().await;

    let daemon = Daemon::start(&push(true), &moto.sdk_config());
    daemon.attempts("db", 0.0, 2.0).await;
    assert_eq!(
        value_of(&admin, "shared/db").await.as_deref(),
        Some(ours.as_str())
    );
    let tags = described(&admin, "shared/db").await;
    assert!(
        tags.tags().iter().any(|t| t.key() == Some("secret-ferry.io/instance") && t.value() == Some("it-cluster")),
        "{:?}",
        tags.tags()
    );
    assert_eq!(
        daemon.metric(r#"secret_ferry_push_writes_total{operation="adopt",push="db"}"#),
        1.0
    );
    assert_eq!(daemon.metric(r#"secret_ferry_push_stale{push="db"}"#), 0.0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_source_schedules_deletion_a_returning_one_restores_and_a_bad_read_deletes_nothing(
) {
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let dir = tmp.path().join("cert");
    std::fs::create_dir(&dir).unwrap();
    let value = canary("cert");
    std::fs::write(dir.join("tls.key"), &value).unwrap();
    let yaml = config(
        &role_arn,
        &ext_file,
        &format!(
            "  - {{name: cert, role: customer, refreshInterval: 1s, deletionPolicy: Delete, recoveryWindow: 7d, from: {{file: {{dir: {}}}}}, to: {{secretName: app/cert}}}}\n",
            dir.display()
        ),
    );
    let daemon = Daemon::start(&yaml, &moto.sdk_config());
    daemon.attempts("cert", 0.0, 1.0).await;
    assert!(value_of(&admin, "app/cert").await.is_some());

    // A source that cannot be read (a subdirectory appeared) fails; nothing is deleted.
    std::fs::create_dir(dir.join("nested")).unwrap();
    let from = daemon.total_attempts("cert");
    daemon.attempts("cert", from, 2.0).await;
    assert!(
        daemon.metric(r#"secret_ferry_push_errors_total{kind="source_layout",push="cert"}"#) >= 1.0
    );
    assert!(described(&admin, "app/cert").await.deleted_date().is_none());
    std::fs::remove_dir(dir.join("nested")).unwrap();

    // The directory removed: scheduled for deletion with the configured window.
    std::fs::remove_dir_all(&dir).unwrap();
    let deleted = wait_for_async(Duration::from_secs(15), || async {
        described(&admin, "app/cert")
            .await
            .deleted_date()
            .map(|d| d.secs())
    })
    .await
    .expect("not scheduled for deletion");
    let days = (deleted
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64) as f64
        / 86_400.0;
    assert!((6.9..=7.1).contains(&days), "deletion in {days} days");
    assert_eq!(
        daemon.metric(r#"secret_ferry_push_writes_total{operation="delete",push="cert"}"#),
        1.0
    );

    // The directory back: restored, not blocked by the recovery window.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("tls.key"), &value).unwrap();
    let restored = wait_for_async(Duration::from_secs(15), || async {
        described(&admin, "app/cert")
            .await
            .deleted_date()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(restored.is_some(), "not restored");
    let expected = json(&[("tls.key", &value)]);
    assert_eq!(
        value_of(&admin, "app/cert").await.as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(
        daemon.metric(r#"secret_ferry_push_writes_total{operation="restore",push="cert"}"#),
        1.0
    );
    daemon.stop().await;
}

/// The documents `iam-policy` prints for a config with pushes, applied in moto's auth mode,
/// are enough to create, read back and update the pushed secret; without them it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policy_documents_are_sufficient_for_every_push() {
    let moto = Moto::start();
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let workload = create_user(&admin, "workload", &allow("sts:GetCallerIdentity")).await;
    let operator = create_user(&admin, "operator", &allow("*")).await;
    // The admin role is not checked before auth; the operator is, and may do anything.
    let reader = moto.sdk_config_with(operator.credentials());
    let tmp = tempfile::tempdir().unwrap();
    let external_id = canary("extid");
    let id_file = tmp.path().join("external-id");
    std::fs::write(&id_file, &external_id).unwrap();
    let source = tmp.path().join("token");
    let first = canary("first");
    std::fs::write(&source, &first).unwrap();
    let role_arn = format!("arn:aws:iam::{SECRETS_ACCOUNT}:role/Pusher");
    let yaml = format!(
        "region: us-east-1\ninstance: it-cluster\nroles:\n  customer: {{roleArn: \"{role_arn}\", externalIdFile: {}}}\npushes:\n  - {{name: token, role: customer, deletionPolicy: Delete, forceDelete: true, from: {{file: {{path: {}}}}}, to: {{secretName: unified/ws-1/token, tags: {{team: a}}}}}}\n",
        id_file.display(),
        source.display()
    );
    let config = write_config(tmp.path(), &yaml);
    let out = std::process::Command::new(binary())
        .args([
            "iam-policy",
            "--config",
            config.to_str().unwrap(),
            "--caller-arn",
            &workload.arn,
            "--output",
            "json",
        ])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let out = captured(out);
    assert!(out.status.success(), "{}", output_text(&out));
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let perms = docs["customer"]["permissionsPolicy"].clone();
    let sids: Vec<&str> = perms["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert_eq!(
        sids,
        ["PushSecrets", "PushListOwnedSecrets", "PushDeleteSecrets"],
        "{perms}"
    );
    assert_eq!(
        perms["Statement"][0]["Resource"],
        format!(
            "arn:aws:secretsmanager:us-east-1:{SECRETS_ACCOUNT}:secret:unified/ws-1/token-??????"
        )
    );
    assert!(
        docs["customer"].get("kmsKeyPolicyPushStatement").is_none(),
        "no key, no statement"
    );

    let trust = docs["customer"]["trustPolicy"].to_string();
    let placeholder = docs["customer"]["trustPolicy"]["Statement"][0]["Condition"]["StringEquals"]
        ["sts:ExternalId"]
        .as_str()
        .unwrap()
        .to_owned();
    let iam = aws_sdk_iam::Client::new(&admin);
    iam.create_role()
        .role_name("Pusher")
        .assume_role_policy_document(trust.replace(&placeholder, &external_id))
        .send()
        .await
        .unwrap();
    // moto evaluates Secrets Manager permissions against "*" only: the same actions on "*",
    // and the generated pattern held against the ARN moto assigns below.
    let mut anywhere = perms.clone();
    for statement in anywhere["Statement"].as_array_mut().unwrap() {
        statement["Resource"] = serde_json::json!("*");
    }
    let put_policy = |iam: &aws_sdk_iam::Client, doc: serde_json::Value| {
        let iam = iam.clone();
        async move {
            iam.put_role_policy()
                .role_name("Pusher")
                .policy_name("perms")
                .policy_document(doc.to_string())
                .send()
                .await
                .unwrap();
        }
    };
    put_policy(&iam, anywhere.clone()).await;
    iam.put_user_policy()
        .user_name("workload")
        .policy_name("caller")
        .policy_document(docs["customer"]["callerPolicy"].to_string())
        .send()
        .await
        .unwrap();
    moto.enable_auth();

    let once = || {
        let out = std::process::Command::new(binary())
            .args(["run", "--once", "--config", config.to_str().unwrap()])
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", &workload.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &workload.secret_access_key)
            .output()
            .unwrap();
        let out = captured(out);
        (out.status.code(), output_text(&out))
    };
    let (code, log) = once();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        value_of(&reader, "unified/ws-1/token").await.as_deref(),
        Some(first.as_str())
    );
    let arn = described(&reader, "unified/ws-1/token")
        .await
        .arn()
        .unwrap()
        .to_owned();
    let pattern = perms["Statement"][0]["Resource"].as_str().unwrap();
    assert!(
        secret_ferry::commands::iam_policy::resource_matches(pattern, &arn),
        "{pattern} vs {arn}"
    );

    // A new process (a restart) reads the current value back once, then writes the change.
    let second = canary("second");
    std::fs::write(&source, &second).unwrap();
    let (code, log) = once();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        value_of(&reader, "unified/ws-1/token").await.as_deref(),
        Some(second.as_str())
    );

    // Without PutSecretValue the push fails, names the statement, and the value stays.
    let mut fewer = anywhere.clone();
    fewer["Statement"][0]["Action"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a != "secretsmanager:PutSecretValue");
    // In auth mode only a real user may change IAM.
    put_policy(&aws_sdk_iam::Client::new(&reader), fewer).await;
    std::fs::write(&source, canary("third")).unwrap();
    let (code, log) = once();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("PutSecretValue") && log.contains("statement PushSecrets"),
        "{log}"
    );
    assert_eq!(
        value_of(&reader, "unified/ws-1/token").await.as_deref(),
        Some(second.as_str())
    );
    assert_no_leak(&log, &[&first, &second, &external_id]);
}

/// `check` tells, per push, whether the source reads and what will happen to the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_push_target_and_what_blocks_it() {
    let moto = Moto::start();
    let admin = moto.admin_in("123456789012").await;
    let foreign = canary("foreign");
    create_secret(&admin, "app/foreign", &foreign).await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("token");
    std::fs::write(&source, canary("token")).unwrap();
    let yaml = format!(
        "region: us-east-1\ninstance: it-cluster\npushes:\n  - {{name: fresh, from: {{file: {{path: {src}}}}}, to: {{secretName: app/fresh}}}}\n  - {{name: theirs, from: {{file: {{path: {src}}}}}, to: {{secretName: app/foreign}}}}\n  - {{name: nosource, from: {{file: {{dir: {missing}}}}}, to: {{secretName: app/other}}}}\n",
        src = source.display(),
        missing = tmp.path().join("missing").display()
    );
    let config = write_config(tmp.path(), &yaml);
    let out = std::process::Command::new(binary())
        .args(["check", "--config", config.to_str().unwrap()])
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let out = captured(out);
    let report = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let line = |needle: &str| {
        report
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("push   fresh").starts_with("ok") && line("push   fresh").contains("will be created"),
        "{report}"
    );
    assert!(
        line("push   theirs").starts_with("FAIL")
            && line("push   theirs").contains("without the tag"),
        "{report}"
    );
    assert!(report.contains("set adopt: true"), "{report}");
    assert!(
        line("push   nosource").starts_with("FAIL")
            && line("push   nosource").contains("does not exist"),
        "{report}"
    );
    assert_eq!(
        value_of(&admin, "app/foreign").await.as_deref(),
        Some(foreign.as_str()),
        "check never writes"
    );
    assert!(
        value_of(&admin, "app/fresh").await.is_none(),
        "check never creates"
    );
    assert_no_leak(&report, &[&foreign]);
}

/// 1,000 unchanged pushes cost one ListSecrets page per 100 each interval and no write; a
/// changed source becomes a new version within the interval. Figures for docs/performance.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unchanged_pushes_cost_ten_listings_and_no_write() {
    let _heavy = heavy();
    const N: usize = 1000;
    const INTERVAL_S: u64 = 5;
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    let proxy = Proxy::start(moto.addr());
    let sdk = moto
        .sdk_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .build();
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let prefix = canary("bulk-push");
    let mut pushes = String::new();
    for i in 0..N {
        let path = tmp.path().join(format!("p{i:04}"));
        std::fs::write(&path, format!("{prefix}-{i}")).unwrap();
        pushes.push_str(&format!(
            "  - {{name: p{i:04}, role: customer, refreshInterval: {INTERVAL_S}s, from: {{file: {{path: {}}}}}, to: {{secretName: bulk/p{i:04}}}}}\n",
            path.display()
        ));
    }
    let daemon = Daemon::start(&config(&role_arn, &ext_file, &pushes), &sdk);
    assert!(
        proxy.wait_for_count("CreateSecret", N, Duration::from_secs(120)),
        "{} created",
        proxy.count("CreateSecret")
    );
    // Wait for the first cycle to end, then count exactly one more.
    daemon.attempts(&format!("p{:04}", N - 1), 0.0, 1.0).await;
    proxy.reset_records();
    let before = daemon.total_attempts(&format!("p{:04}", N - 1));
    daemon
        .attempts(&format!("p{:04}", N - 1), before, 1.0)
        .await;
    let calls = proxy.requests().len();
    let lists = proxy.count("ListSecrets");
    let writes: usize = [
        "CreateSecret",
        "PutSecretValue",
        "TagResource",
        "DeleteSecret",
    ]
    .iter()
    .map(|op| proxy.count(op))
    .sum();
    assert_eq!(writes, 0, "writes while unchanged");
    assert!(
        calls <= 11,
        "{calls} calls for one interval of {N} unchanged pushes ({lists} ListSecrets)"
    );

    // Source change → new version, ten times, one push at a time.
    let mut latencies = Vec::new();
    for k in 0..10 {
        let i = k * 97;
        proxy.reset_records();
        let value = format!("{prefix}-changed-{k}");
        std::fs::write(tmp.path().join(format!("p{i:04}")), &value).unwrap();
        let changed = std::time::Instant::now();
        let landed = wait_for_async(Duration::from_secs(INTERVAL_S * 3), || async {
            (value_of(&admin, &format!("bulk/p{i:04}")).await.as_deref() == Some(value.as_str()))
                .then_some(())
        })
        .await;
        assert!(landed.is_some(), "change {k} did not land");
        latencies.push(changed.elapsed().as_secs_f64());
        assert_eq!(proxy.count("PutSecretValue"), 1, "one write per change");
    }
    latencies.sort_by(f64::total_cmp);
    let max = latencies[latencies.len() - 1];
    assert!(
        max <= INTERVAL_S as f64 + 1.5,
        "change → version {latencies:?}"
    );
    record_figures(
        "push_economy",
        serde_json::json!({
            "pushes": N,
            "interval_s": INTERVAL_S,
            "calls_per_interval_unchanged": calls,
            "list_secrets_per_interval": lists,
            "writes_per_interval_unchanged": writes,
            "change_to_version_s": {"min": latencies[0], "median": latencies[latencies.len() / 2], "max": max},
        }),
    );
    daemon.stop().await;
}
