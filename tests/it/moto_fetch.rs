//! The fetch planner against moto, counted at a recording proxy: call economy of each
//! strategy, the `auto` fall-back, discovery with and without `prune`, failover.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::in_process::Daemon;
use common::proxy::{json_error, Proxy};
use common::*;
use secret_ferry::daemon::App;
use secret_ferry::metrics::Metrics;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Daemon {
    pub(crate) async fn wait_ready(&self, timeout: Duration) {
        let ready = wait_for_async(timeout, || async {
            self.readiness.is_ready().then_some(())
        })
        .await;
        assert!(ready.is_some(), "not ready: {:?}", self.readiness.status());
    }

    /// Successful syncs over every secret.
    /// Successful syncs of every secret: the duration histogram counts them all, named or
    /// not (at 1,000 secrets healthy ones have no series of their own).
    pub(crate) fn successes(&self) -> f64 {
        self.metric(r#"secret_ferry_sync_duration_seconds_count{result="success"}"#)
    }

    /// Asks for one more poll of everything and waits until `n` secrets have synced again.
    pub(crate) async fn poll_once(&self, n: usize) {
        let before = self.successes();
        self.refresh.all();
        let done = wait_for_async(Duration::from_secs(60), || async {
            (self.successes() >= before + n as f64).then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "the poll did not finish: {}",
            self.successes() - before
        );
    }
}

fn through(proxy: &Proxy, sdk: &aws_config::SdkConfig) -> aws_config::SdkConfig {
    sdk.to_builder().endpoint_url(proxy.endpoint()).build()
}

/// Where each secret's `..data` points: it moves exactly when the secret is rewritten.
pub(crate) fn data_links(root: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| std::fs::read_link(root.join(format!("s{i:04}")).join("..data")).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unchanged_secrets_cost_at_most_50_calls_with_batch_and_10_with_list_or_auto() {
    capture_logs();
    const N: usize = 1000;
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    // One canary for the whole bulk: every password starts with it.
    let prefix = canary("bulk");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let admin = admin.clone();
        let prefix = prefix.clone();
        set.spawn(async move {
            create_secret(
                &admin,
                &format!("bulk/s{i:04}"),
                &format!(r#"{{"user":"u{i}","password":"{prefix}-p{i}"}}"#),
            )
            .await
        });
        if set.len() >= 16 {
            set.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let proxy = Proxy::start(moto.addr());
    let sdk = through(&proxy, &moto.sdk_config());
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();

    let mut figures = Vec::new();
    for (round, strategy) in ["batch", "list", "auto"].into_iter().enumerate() {
        let root = tmp.path().join(strategy);
        let mut config = ConfigYaml::new()
            .region(REGION)
            .top("apiRateLimit", 10000)
            .top("fetchStrategy", strategy)
            .role("shared", &role_arn, &ext_file);
        for i in 0..N {
            config = config
                .secret(&format!("s{i:04}"), &format!("bulk/s{i:04}"))
                .uses_role("shared")
                .option("refreshInterval", "1h")
                .file_target(&root.join(format!("s{i:04}")));
        }
        proxy.reset_records();
        let daemon = Daemon::start(&config.build(), &sdk);
        daemon.wait_ready(Duration::from_secs(120)).await;
        if strategy == "auto" {
            // Nothing written yet: a listing would leave 1,000 reads to make, batches do it in 50.
            assert_eq!(
                (
                    proxy.count("BatchGetSecretValue"),
                    proxy.count("ListSecrets"),
                    proxy.count("GetSecretValue")
                ),
                (50, 0, 0),
                "auto's first poll batches"
            );
        }
        let links = data_links(&root, N);
        assert_eq!(
            read(&root.join("s0999"), "password"),
            Some(format!("{prefix}-p999"))
        );

        // One poll with nothing changed.
        proxy.reset_records();
        daemon.poll_once(N).await;
        let batch = proxy.count("BatchGetSecretValue");
        let list = proxy.count("ListSecrets");
        let get = proxy.count("GetSecretValue");
        figures.push(format!(
            "{strategy}: BatchGetSecretValue={batch} ListSecrets={list} GetSecretValue={get}"
        ));
        match strategy {
            "batch" => {
                assert!(batch <= 50, "{figures:?}");
                assert_eq!(list + get, 0, "{figures:?}");
            }
            _ => {
                assert!(list <= 10, "{figures:?}");
                assert_eq!(
                    batch + get,
                    0,
                    "an unchanged secret costs no read: {figures:?}"
                );
            }
        }
        assert_eq!(
            data_links(&root, N),
            links,
            "an unchanged poll rewrites nothing"
        );

        // Three rotations: exactly those three directories change.
        let rotated = [7usize, 500, 998];
        for &i in &rotated {
            put_secret(
                &admin,
                &format!("bulk/s{i:04}"),
                &format!(r#"{{"user":"u{i}","password":"{prefix}-new{round}-{i}"}}"#),
            )
            .await;
        }
        proxy.reset_records();
        daemon.poll_once(N).await;
        for &i in &rotated {
            assert_eq!(
                read(&root.join(format!("s{i:04}")), "password"),
                Some(format!("{prefix}-new{round}-{i}"))
            );
        }
        let now = data_links(&root, N);
        let changed: Vec<usize> = (0..N).filter(|&i| now[i] != links[i]).collect();
        assert_eq!(changed, rotated, "only the rotated secrets are rewritten");
        if strategy != "batch" {
            assert_eq!(
                proxy.count("GetSecretValue"),
                3,
                "only changed secrets are read"
            );
            assert_eq!(proxy.count("BatchGetSecretValue"), 0);
        }
        daemon.stop().await;
    }
    println!("calls per poll of {N} unchanged secrets: {figures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_get_when_batch_is_denied_and_keeps_syncing() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let workload = create_user(&admin, "workload", &allow("sts:AssumeRole")).await;
    // In auth mode moto cannot look up the policies of the assumed admin role: write as a user.
    let operator = create_user(&admin, "operator", &allow("*")).await;
    let external_id = canary("extid");
    // The role may read secrets one by one only (create_role allows GetSecretValue).
    let role_arn = create_role(&admin, "Shared", &workload.arn, &external_id).await;
    let first = canary("first");
    create_secret(&admin, "app/a", &format!(r#"{{"password":"{first}"}}"#)).await;
    let b = canary("b");
    create_secret(&admin, "app/b", &format!(r#"{{"password":"{b}"}}"#)).await;
    moto.enable_auth();
    let proxy = Proxy::start(moto.addr());
    let sdk = through(&proxy, &moto.sdk_config_with(workload.credentials()));
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let yaml = ConfigYaml::new()
        .region(REGION)
        .role("shared", &role_arn, &ext_file)
        .secret("a", "app/a")
        .uses_role("shared")
        .option("refreshInterval", "1h")
        .file_target(&tmp.path().join("a"))
        .secret("b", "app/b")
        .uses_role("shared")
        .option("refreshInterval", "1h")
        .file_target(&tmp.path().join("b"))
        .build();
    let daemon = Daemon::start(&yaml, &sdk);
    daemon.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(read(&tmp.path().join("a"), "password"), Some(first.clone()));
    assert_eq!(
        read(&tmp.path().join("b"), "password").as_deref(),
        Some(b.as_str())
    );
    let batches = proxy.requests_for("BatchGetSecretValue");
    assert_eq!(batches.len(), 1, "auto tries the batch once");
    assert_eq!(proxy.count("GetSecretValue"), 2);

    let b2 = canary("b2");
    put_secret(
        &moto.sdk_config_with(operator.credentials()),
        "app/b",
        &format!(r#"{{"password":"{b2}"}}"#),
    )
    .await;
    daemon.poll_once(2).await;
    assert_eq!(
        read(&tmp.path().join("b"), "password").as_deref(),
        Some(b2.as_str())
    );
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        1,
        "the fall-back is remembered: no second BatchGetSecretValue"
    );
    assert_eq!(proxy.count("GetSecretValue"), 4);
    let text = daemon.metrics.render().unwrap();
    assert_no_leak(&text, &[&first, &b, &b2, &external_id]);
    daemon.stop().await;
}

/// BatchGetSecretValue, ListSecrets and GetSecretValue calls the proxy saw.
fn calls(proxy: &Proxy) -> (usize, usize, usize) {
    (
        proxy.count("BatchGetSecretValue"),
        proxy.count("ListSecrets"),
        proxy.count("GetSecretValue"),
    )
}

/// 30 secrets at `refreshInterval: 1h` under `auto`, named `{prefix}NN`, read through `role`.
fn thirty(prefix: &str, root: &Path, role_arn: &str, ext_file: &Path) -> String {
    let mut config = ConfigYaml::new()
        .region(REGION)
        .role("shared", role_arn, ext_file);
    for i in 0..30 {
        config = config
            .secret(&format!("s{i:02}"), &format!("{prefix}{i:02}"))
            .uses_role("shared")
            .option("refreshInterval", "1h")
            .file_target(&root.join(format!("s{i:02}")));
    }
    config.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_without_list_secrets_keeps_batching_after_one_denied_listing() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let workload = create_user(&admin, "workload", &allow("sts:AssumeRole")).await;
    let external_id = canary("extid");
    let role_arn = create_role(&admin, "Shared", &workload.arn, &external_id).await;
    // GetSecretValue (create_role) and BatchGetSecretValue, no ListSecrets.
    aws_sdk_iam::Client::new(&admin)
        .put_role_policy()
        .role_name("Shared")
        .policy_name("batch")
        .policy_document(allow("secretsmanager:BatchGetSecretValue"))
        .send()
        .await
        .unwrap();
    let value = canary("auto-batch");
    for i in 0..30 {
        create_secret(
            &admin,
            &format!("team/s{i:02}"),
            &format!(r#"{{"password":"{value}-{i}"}}"#),
        )
        .await;
    }
    moto.enable_auth();
    let proxy = Proxy::start(moto.addr());
    let sdk = through(&proxy, &moto.sdk_config_with(workload.credentials()));
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let daemon = Daemon::start(&thirty("team/s", tmp.path(), &role_arn, &ext_file), &sdk);
    daemon.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(
        read(&tmp.path().join("s29"), "password"),
        Some(format!("{value}-29"))
    );
    assert_eq!(calls(&proxy), (2, 0, 0), "the first poll batches");

    // The second poll would list (one page against two batches): denied, it batches.
    proxy.reset_records();
    daemon.poll_once(30).await;
    let lists = proxy.requests_for("ListSecrets");
    assert_eq!(lists.len(), 1, "{:?}", calls(&proxy));
    let text = daemon.metrics.render().unwrap();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("secret_ferry_aws_api_calls_total{"))
        .filter(|l| l.contains(r#"operation="ListSecrets""#) && l.contains(r#"result="failure""#))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "moto's auth mode refuses the listing (403): {text}"
    );
    assert!(refused[0].ends_with(" 1"), "{refused:?}");
    assert_eq!(calls(&proxy), (2, 1, 0));

    // Remembered: no listing again.
    for _ in 0..2 {
        proxy.reset_records();
        daemon.poll_once(30).await;
        assert_eq!(calls(&proxy), (2, 0, 0), "the denial is remembered");
    }
    let text = daemon.metrics.render().unwrap();
    assert_no_leak(&text, &[&value, &external_id]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_stops_listing_when_the_listing_matches_far_more_secrets_than_the_group() {
    capture_logs();
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    let value = canary("auto-wide");
    // 30 secrets with no common prefix, so the listing cannot filter by name, among 270 others.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..300 {
        let admin = admin.clone();
        let value = value.clone();
        let name = match i {
            0..=14 => format!("x{i:02}"),
            15..=29 => format!("y{i:02}"),
            _ => format!("other/o{i:03}"),
        };
        set.spawn(async move {
            create_secret(&admin, &name, &format!(r#"{{"password":"{value}-{i}"}}"#)).await
        });
        if set.len() >= 16 {
            set.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let proxy = Proxy::start(moto.addr());
    let sdk = through(&proxy, &moto.sdk_config());
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let mut config = ConfigYaml::new()
        .region(REGION)
        .role("shared", &role_arn, &ext_file);
    for i in 0..30 {
        let id = if i < 15 {
            format!("x{i:02}")
        } else {
            format!("y{i:02}")
        };
        config = config
            .secret(&format!("s{i:02}"), &id)
            .uses_role("shared")
            .option("refreshInterval", "1h")
            .file_target(&tmp.path().join(format!("s{i:02}")));
    }
    let daemon = Daemon::start(&config.build(), &sdk);
    daemon.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(
        read(&tmp.path().join("s20"), "password"),
        Some(format!("{value}-20"))
    );
    // The second poll lists: 300 secrets, three pages, more than two batches.
    proxy.reset_records();
    daemon.poll_once(30).await;
    // Members are settled page by page, so all 30 can have synced before the listing asks for
    // its last page: wait for the pages (a listing that stopped early fails the assertion).
    wait_for_async(Duration::from_secs(10), || async {
        (calls(&proxy).1 >= 3).then_some(())
    })
    .await;
    assert_eq!(calls(&proxy), (0, 3, 0), "one listing of the whole account");
    for _ in 0..2 {
        proxy.reset_records();
        daemon.poll_once(30).await;
        assert_eq!(calls(&proxy), (2, 0, 0), "batches from then on");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_settles_secrets_named_by_name_complete_arn_and_arn_without_its_suffix() {
    capture_logs();
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    let value = canary("by-arn");
    create_secret(
        &admin,
        "arn-test/by-name",
        &format!(r#"{{"v":"{value}-1"}}"#),
    )
    .await;
    let full = create_secret(&admin, "arn-test/full", &format!(r#"{{"v":"{value}-2"}}"#)).await;
    let partial = create_secret(
        &admin,
        "arn-test/partial",
        &format!(r#"{{"v":"{value}-3"}}"#),
    )
    .await;
    let partial = partial[..partial.len() - 7].to_owned();
    let proxy = Proxy::start(moto.addr());
    let sdk = through(&proxy, &moto.sdk_config());
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();
    let mut config = ConfigYaml::new()
        .region(REGION)
        .top("fetchStrategy", "list")
        .role("shared", &role_arn, &ext_file);
    for (name, id) in [
        ("a", "arn-test/by-name"),
        ("b", full.as_str()),
        ("c", partial.as_str()),
    ] {
        config = config
            .secret(name, id)
            .uses_role("shared")
            .option("refreshInterval", "1h")
            .file_target(&tmp.path().join(name));
    }
    let daemon = Daemon::start(&config.build(), &sdk);
    daemon.wait_ready(Duration::from_secs(30)).await;
    for (name, i) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(
            read(&tmp.path().join(name), "v"),
            Some(format!("{value}-{i}"))
        );
    }
    // Unchanged: the listing settles all three, whichever way each is named.
    proxy.reset_records();
    daemon.poll_once(3).await;
    assert_eq!(
        proxy.count("GetSecretValue"),
        0,
        "a listed secret was read again"
    );
    assert_eq!(proxy.count("ListSecrets"), 1);
    // A rotation of the one named by partial ARN is read, and only it.
    put_secret(
        &admin,
        "arn-test/partial",
        &format!(r#"{{"v":"{value}-new"}}"#),
    )
    .await;
    proxy.reset_records();
    daemon.poll_once(3).await;
    assert_eq!(proxy.count("GetSecretValue"), 1);
    assert_eq!(
        read(&tmp.path().join("c"), "v"),
        Some(format!("{value}-new"))
    );
    daemon.stop().await;
}

async fn create_tagged(admin: &aws_config::SdkConfig, name: &str, value: &str, env: &str) {
    assert_canaried(value);
    aws_sdk_secretsmanager::Client::new(admin)
        .create_secret()
        .name(name)
        .secret_string(value)
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("env")
                .value(env)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn delete(admin: &aws_config::SdkConfig, name: &str) {
    aws_sdk_secretsmanager::Client::new(admin)
        .delete_secret()
        .secret_id(name)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_discovery_listing_prunes_nothing_and_the_next_complete_one_does() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let (one, two) = (canary("disc-one"), canary("disc-two"));
    let pw = |v: &str| format!(r#"{{"password":"{v}"}}"#);
    create_tagged(&admin, "team-c/one", &pw(&one), "prod").await;
    create_tagged(&admin, "team-c/two", &pw(&two), "prod").await;
    let proxy = Proxy::start(moto.addr());
    let sdk = through(&proxy, &admin);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let yaml = format!(
        r#"region: us-east-1
secrets:
  - name: c
    find: {{namePrefix: team-c/}}
    prune: true
    refreshInterval: 1s
    targets: [{{file: {{dir: "{out}/{{{{ name }}}}"}}}}]
"#,
        out = out.display()
    );
    let daemon = Daemon::start(&yaml, &sdk);
    daemon.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(read(&out.join("team-c/two"), "password"), Some(two.clone()));

    // The listing fails while a member is gone from AWS: nothing is pruned, no series dropped.
    proxy.inject(json_error(
        "ListSecrets",
        "InternalServiceError",
        "injected",
        500,
    ));
    delete(&admin, "team-c/one").await;
    let failing = r#"secret_ferry_sync_duration_seconds_count{result="failure"}"#;
    let failed = wait_for_async(Duration::from_secs(10), || async {
        let text = daemon.metrics.render().unwrap();
        (metric_or_zero(&text, failing) >= 2.0).then_some(())
    })
    .await;
    assert!(failed.is_some(), "the failing listings are counted");
    assert_eq!(
        read(&out.join("team-c/one"), "password"),
        Some(one.clone()),
        "a failed listing removes no target"
    );
    let text = daemon.metrics.render().unwrap();
    assert!(text.contains(r#"secret="c/team-c/one""#), "{text}");

    // The next complete listing prunes what went.
    proxy.clear_faults();
    let pruned = wait_for_async(Duration::from_secs(10), || async {
        (!out.join("team-c/one").exists()).then_some(())
    })
    .await;
    assert!(pruned.is_some(), "a complete listing prunes");
    assert_eq!(read(&out.join("team-c/two"), "password"), Some(two));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_new_matches_within_an_interval_and_prunes_only_when_asked() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let pw = |v: &str| format!(r#"{{"password":"{v}"}}"#);
    let (a1, dev_only, b1, other) = (
        canary("a1"),
        canary("devonly"),
        canary("b1"),
        canary("other"),
    );
    create_tagged(&admin, "team-a/one", &pw(&a1), "prod").await;
    create_tagged(&admin, "team-a/dev-only", &pw(&dev_only), "dev").await;
    create_tagged(&admin, "team-b/one", &pw(&b1), "prod").await;
    create_tagged(&admin, "other/one", &pw(&other), "prod").await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let yaml = format!(
        r#"region: us-east-1
secrets:
  - name: a
    find: {{namePrefix: team-a/, tags: {{env: prod}}}}
    prune: true
    refreshInterval: 1s
    targets: [{{file: {{dir: "{out}/a/{{{{ name }}}}"}}}}]
  - name: b
    find: {{namePrefix: team-b/}}
    refreshInterval: 1s
    targets: [{{file: {{dir: "{out}/b/{{{{ name }}}}"}}}}]
"#,
        out = out.display()
    );
    let daemon = Daemon::start(&yaml, &admin);
    daemon.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(
        read(&out.join("a/team-a/one"), "password").as_deref(),
        Some(a1.as_str())
    );
    assert_eq!(
        read(&out.join("b/team-b/one"), "password").as_deref(),
        Some(b1.as_str())
    );
    assert!(!out.join("a/team-a/dev-only").exists(), "tags must match");
    assert!(!out.join("a/other").exists(), "the name prefix must match");

    // A new match is picked up within one interval (1 s; allow for scheduling).
    let a2 = canary("a2");
    create_tagged(&admin, "team-a/two", &pw(&a2), "prod").await;
    let found = wait_for_async(Duration::from_secs(5), || async {
        read(&out.join("a/team-a/two"), "password")
    })
    .await;
    assert_eq!(found.as_deref(), Some(a2.as_str()));
    let text = daemon.metrics.render().unwrap();
    assert!(text.contains(r#"secret="a/team-a/one""#), "{text}");

    // Gone from AWS: pruned for `a`, kept for `b`.
    delete(&admin, "team-a/one").await;
    delete(&admin, "team-b/one").await;
    let pruned = wait_for_async(Duration::from_secs(5), || async {
        (!out.join("a/team-a/one").exists()).then_some(())
    })
    .await;
    assert!(
        pruned.is_some(),
        "prune: true removes the targets of a secret that went"
    );
    // Give `b` the same time to (wrongly) remove its files.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        read(&out.join("b/team-b/one"), "password").as_deref(),
        Some(b1.as_str()),
        "prune: false keeps the files"
    );
    let text = daemon.metrics.render().unwrap();
    assert!(
        !text.contains(r#"secret="a/team-a/one""#) && !text.contains(r#"secret="b/team-b/one""#),
        "series of secrets that are no longer synced are removed:\n{text}"
    );
    assert!(
        daemon.readiness.is_ready(),
        "{:?}",
        daemon.readiness.status()
    );

    // Rotation of a discovered secret.
    let a2b = canary("a2b");
    put_secret(&admin, "team-a/two", &pw(&a2b)).await;
    let rotated = wait_for_async(Duration::from_secs(5), || async {
        read(&out.join("a/team-a/two"), "password").filter(|v| *v == a2b)
    })
    .await;
    assert!(rotated.is_some());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_region_serves_the_replica_while_the_primary_fails() {
    failover_serves_the_replica(false).await;
}

/// An ARN names its region: the replica is read by its own ARN, in the failover region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_reads_a_replica_by_its_own_arn() {
    failover_serves_the_replica(true).await;
}

async fn failover_serves_the_replica(by_arn: bool) {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let one = canary("one");
    let first_value = format!(r#"{{"password":"{one}"}}"#);
    assert_canaried(&first_value);
    let created = aws_sdk_secretsmanager::Client::new(&admin)
        .create_secret()
        .name("app/db")
        .secret_string(first_value)
        .add_replica_regions(
            aws_sdk_secretsmanager::types::ReplicaRegionType::builder()
                .region("us-west-2")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let primary_arn = created.arn().unwrap().to_owned();
    let replica_arn = primary_arn.replace(":us-east-1:", ":us-west-2:");
    let secret_id = if by_arn {
        primary_arn.as_str()
    } else {
        "app/db"
    };
    let proxy = Proxy::start(moto.addr());
    let sdk = through(&proxy, &admin);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let yaml = ConfigYaml::new()
        .region(REGION)
        .secret("db", &format!("\"{secret_id}\""))
        .option("failoverRegion", "us-west-2")
        .option("refreshInterval", "1s")
        .file_target(&dir)
        .build();
    let daemon = Daemon::start(&yaml, &sdk);
    daemon.wait_ready(Duration::from_secs(20)).await;
    let region_of = |d: &Daemon| {
        let text = d.metrics.render().unwrap();
        ["us-east-1", "us-west-2"]
            .into_iter()
            .find(|r| {
                text.contains(&format!(
                    r#"secret_ferry_secret_region_info{{region="{r}",secret="db"}} 1"#
                ))
            })
            .map(str::to_owned)
    };
    assert_eq!(region_of(&daemon).as_deref(), Some("us-east-1"));

    // The primary region fails with a transient error; the replica is read instead.
    proxy.inject(
        json_error("GetSecretValue", "InternalServiceError", "try later", 500)
            .in_region("us-east-1"),
    );
    let two = canary("two");
    put_secret(&admin, "app/db", &format!(r#"{{"password":"{two}"}}"#)).await;
    let served = wait_for_async(Duration::from_secs(15), || async {
        (region_of(&daemon).as_deref() == Some("us-west-2")).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "the failover region must serve: {:?}",
        region_of(&daemon)
    );
    let west: Vec<String> = proxy
        .requests_for("GetSecretValue")
        .iter()
        .filter(|r| {
            r.header("authorization")
                .is_some_and(|a| a.contains("/us-west-2/"))
        })
        .map(|r| r.body_text())
        .collect();
    assert!(!west.is_empty());
    if by_arn {
        // moto would also resolve the primary's ARN in the replica region; AWS does not.
        for body in &west {
            assert!(body.contains(&replica_arn), "{body}");
        }
    }
    assert!(read(&dir, "password").is_some(), "the files stay in place");

    // The primary recovers and serves again.
    proxy.clear_faults();
    let back = wait_for_async(Duration::from_secs(10), || async {
        (region_of(&daemon).as_deref() == Some("us-east-1")).then_some(())
    })
    .await;
    assert!(back.is_some());
    assert_eq!(read(&dir, "password").as_deref(), Some(two.as_str()));
    assert_no_leak(&daemon.metrics.render().unwrap(), &[&one, &two]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_and_templates_shape_the_files_and_a_template_error_keeps_the_last_good_output() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let password = canary("pw");
    create_secret(
        &admin,
        "app/db",
        &format!(
            r#"{{"db":{{"username":"app","password":"{password}","host":"db.internal","port":5432}},"other":"x"}}"#
        ),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let env_file = tmp.path().join("app.env");
    let dir = tmp.path().join("db");
    let yaml = format!(
        r#"region: us-east-1
secrets:
  - name: db
    secretId: app/db
    property: db
    keys: [{{from: password, to: DB_PASSWORD}}]
    templates:
      DATABASE_URL: "postgres://{{{{ username }}}}:{{{{ password }}}}@{{{{ host }}}}:{{{{ port }}}}/app"
    targets:
      - file: {{path: {env}, format: env}}
      - file: {{dir: {dir}}}
"#,
        env = env_file.display(),
        dir = dir.display()
    );
    let cfg = secret_ferry::config::parse(&yaml).unwrap();
    capture_logs(); // see Daemon::start
    let app = App::build(&cfg, &admin, Metrics::new().unwrap()).unwrap();
    assert!(app.run_once().await.is_empty());
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env.contains(&format!(
            "DATABASE_URL='postgres://app:{password}@db.internal:5432/app'"
        )) || env.contains(&format!(
            "DATABASE_URL=\"postgres://app:{password}@db.internal:5432/app\""
        )),
        "{env}"
    );
    assert!(env.contains("DB_PASSWORD="), "{env}");
    assert!(
        !env.contains("other") && !env.contains("username="),
        "only mapped keys: {env}"
    );
    let (names, _) = layout(&dir);
    let keys: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.starts_with(".."))
        .collect();
    assert_eq!(keys, vec!["DATABASE_URL", "DB_PASSWORD"]);

    // The new value lacks `host`: the template fails, names itself and the secret, and the
    // files keep the last good output.
    let rotated = canary("rotated");
    put_secret(
        &admin,
        "app/db",
        &format!(r#"{{"db":{{"username":"app","password":"{rotated}","port":5432}}}}"#),
    )
    .await;
    capture_logs(); // see Daemon::start
    let app = App::build(&cfg, &admin, Metrics::new().unwrap()).unwrap();
    let failures = app.run_once().await;
    assert_eq!(failures.len(), 1);
    let message = failures[0].to_string();
    assert!(
        message.contains("'db'") && message.contains("DATABASE_URL") && message.contains("host"),
        "{message}"
    );
    assert_eq!(failures[0].kind(), "template");
    assert_no_leak(&message, &[&rotated, &password]);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), env);
    assert_eq!(read(&dir, "DB_PASSWORD"), Some(password));
}
