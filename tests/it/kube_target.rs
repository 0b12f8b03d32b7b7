//! The Kubernetes side end to end: secrets from moto written into Secrets on the loopback
//! Kubernetes API emulator (tests/it/kube_emulator), spoken to by the real kube client.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::kube_emulator;

use base64::Engine as _;
use common::proxy::Proxy;
use common::*;
use kube_emulator::{Fault, KubeEmulator};
use secret_ferry::daemon::App;
use secret_ferry::k8s::Kube;
use secret_ferry::metrics::Metrics;
use serde_json::json;
use std::time::Duration;

fn all_synced(failures: Vec<secret_ferry::daemon::SyncError>) {
    let messages: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(messages.is_empty(), "{messages:#?}");
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub(crate) fn data(secret: &serde_json::Value, key: &str) -> Option<String> {
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

pub(crate) async fn kube_for(emulator: &KubeEmulator, metrics: &Metrics) -> Kube {
    emulator.add_namespace("app", &[]);
    Kube::new(
        emulator.client().await,
        Some("app".to_owned()),
        None,
        metrics.clone(),
        "secret-ferry".to_owned(),
    )
}

fn secret_requests(emulator: &KubeEmulator) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .map(|r| format!("{} {} {}", r.verb, r.path, r.status))
        .collect()
}

/// Waits until `n` more successful syncs were counted.
async fn synced(metrics: &Metrics, secret: &str, at_least: f64) {
    let series = format!(r#"secret_ferry_secret_sync_total{{result="success",secret="{secret}"}}"#);
    let done = wait_for_async(Duration::from_secs(20), || async {
        (metric_or_zero(&metrics.render().unwrap(), &series) >= at_least).then_some(())
    })
    .await;
    assert!(done.is_some(), "{secret} did not sync {at_least} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_lands_in_a_kubernetes_secret_and_unchanged_polls_make_no_requests() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let password = canary("pw");
    create_secret(
        &admin,
        "app/db",
        &format!(r#"{{"username":"app","password":"{password}"}}"#),
    )
    .await;
    let emulator = KubeEmulator::start();
    let metrics = Metrics::new().unwrap();
    let kube = kube_for(&emulator, &metrics).await;
    let yaml = r#"region: us-east-1
secrets:
  - name: db
    secretId: app/db
    refreshInterval: 1h
    targets:
      - kubernetesSecret:
          name: db-credentials
          labels: {team: a}
          annotations: {owner: platform}
"#;
    let cfg = secret_ferry::config::parse(yaml).unwrap();
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    let refresh = app.refresh_handle();
    let (trigger, signal) = secret_ferry::shutdown::channel();
    let daemon = tokio::spawn(app.run(signal));
    synced(&metrics, "db", 1.0).await;

    let secret = emulator
        .get("Secret", "app", "db-credentials")
        .expect("the Secret was created");
    assert_eq!(data(&secret, "password"), Some(password.clone()));
    assert_eq!(data(&secret, "username").as_deref(), Some("app"));
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["metadata"]["labels"]["team"], "a");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "secret-ferry"
    );
    assert_eq!(secret["metadata"]["annotations"]["owner"], "platform");
    let managers: Vec<&str> = secret["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(
        managers,
        vec!["secret-ferry"],
        "written with server-side apply"
    );
    let events = emulator.events();
    assert!(
        events.iter().any(|e| e["reason"] == "Synced"),
        "a Synced Event: {events:?}"
    );

    // Ten polls with nothing changed: not one request about Secrets.
    emulator.reset_log();
    for i in 0..10 {
        refresh.all();
        synced(&metrics, "db", 2.0 + f64::from(i)).await;
    }
    assert_eq!(secret_requests(&emulator), Vec::<String>::new());

    // A rotation: one apply, no read.
    let rotated = canary("rotated");
    put_secret(
        &admin,
        "app/db",
        &format!(r#"{{"username":"app","password":"{rotated}"}}"#),
    )
    .await;
    refresh.all();
    let updated = wait_for_async(Duration::from_secs(10), || async {
        emulator
            .get("Secret", "app", "db-credentials")
            .and_then(|s| data(&s, "password"))
            .filter(|p| *p == rotated)
    })
    .await;
    assert!(updated.is_some());
    let requests = secret_requests(&emulator);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].starts_with("patch "), "{requests:?}");
    let text = metrics.render().unwrap();
    assert!(
        metric_value(
            &text,
            r#"secret_ferry_kube_requests_total{result="success",verb="patch"}"#
        ) >= 2.0,
        "{text}"
    );
    let all_events = serde_json::to_string(&emulator.events()).unwrap();
    assert_no_leak(&all_events, &[&password, &rotated]);
    assert_no_leak(&text, &[&password, &rotated]);
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_refuses_a_foreign_secret_and_merge_keeps_foreign_keys() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let new = canary("new");
    create_secret(&admin, "app/db", &format!(r#"{{"password":"{new}"}}"#)).await;
    // What other owners keep in Kubernetes is secret too.
    let (theirs, foreign) = (canary("theirs"), canary("foreign"));
    let emulator = KubeEmulator::start();
    emulator.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "taken", "namespace": "app"},
        "data": {"password": b64(&theirs)}
    }));
    emulator.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "shared", "namespace": "app"},
        "data": {"keep": b64(&foreign)}
    }));
    let metrics = Metrics::new().unwrap();
    let kube = kube_for(&emulator, &metrics).await;
    let yaml = r#"region: us-east-1
secrets:
  - name: owner
    secretId: app/db
    targets: [{kubernetesSecret: {name: taken}}]
  - name: merge
    secretId: app/db
    targets: [{kubernetesSecret: {name: shared, creationPolicy: Merge}}]
  - name: missing
    secretId: app/db
    targets: [{kubernetesSecret: {name: absent, creationPolicy: Merge}}]
  - name: tls
    secretId: app/db
    targets: [{kubernetesSecret: {name: tls, type: kubernetes.io/tls}}]
"#;
    let cfg = secret_ferry::config::parse(yaml).unwrap();
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    let failures = app.run_once().await;
    let mut kinds: Vec<(String, &str)> =
        failures.iter().map(|f| (f.to_string(), f.kind())).collect();
    kinds.sort_by_key(|(_, k)| *k);
    let kinds_only: Vec<&str> = kinds.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        kinds_only,
        vec!["missing_secret", "not_ours", "typed_keys"],
        "{kinds:#?}"
    );
    let not_ours = &kinds.iter().find(|(_, k)| *k == "not_ours").unwrap().0;
    assert!(
        not_ours.contains("app/taken") && not_ours.contains("creationPolicy Merge"),
        "{not_ours}"
    );
    let typed = &kinds.iter().find(|(_, k)| *k == "typed_keys").unwrap().0;
    assert!(
        typed.contains("tls.crt") && typed.contains("tls.key"),
        "{typed}"
    );

    let taken = emulator.get("Secret", "app", "taken").unwrap();
    assert_eq!(
        data(&taken, "password").as_deref(),
        Some(theirs.as_str()),
        "not taken over"
    );
    assert!(
        emulator
            .events()
            .iter()
            .any(|e| e["reason"] == "Refused" && e["regarding"]["name"] == "taken"),
        "{:?}",
        emulator.events()
    );
    let shared = emulator.get("Secret", "app", "shared").unwrap();
    assert_eq!(
        data(&shared, "keep").as_deref(),
        Some(foreign.as_str()),
        "Merge keeps foreign keys"
    );
    assert_eq!(data(&shared, "password").as_deref(), Some(new.as_str()));
    assert!(
        emulator.get("Secret", "app", "absent").is_none(),
        "Merge never creates"
    );
    assert!(
        emulator.get("Secret", "app", "tls").is_none(),
        "typed keys are checked before writing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_are_retried_reported_and_never_clear_the_secret() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let pw = |v: &str| format!(r#"{{"password":"{v}"}}"#);
    let (one, two, three, four) = (
        canary("one"),
        canary("two"),
        canary("three"),
        canary("four"),
    );
    create_secret(&admin, "app/db", &pw(&one)).await;
    let emulator = KubeEmulator::start();
    let metrics = Metrics::new().unwrap();
    let kube = kube_for(&emulator, &metrics).await;
    let yaml = "region: us-east-1\nsecrets:\n  - name: db\n    secretId: app/db\n    refreshInterval: 1h\n    targets: [{kubernetesSecret: {name: db}}]\n";
    let cfg = secret_ferry::config::parse(yaml).unwrap();

    // A 409 on the apply is retried within the same sync.
    emulator.inject(Fault::kube("patch", "secrets", 409).times(1));
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    all_synced(app.run_once().await);
    assert_eq!(
        data(&emulator.get("Secret", "app", "db").unwrap(), "password").as_deref(),
        Some(one.as_str())
    );
    assert_eq!(emulator.count("patch", "secrets"), 2);

    // 429: the client backs off (honouring Retry-After) and the write gets through.
    put_secret(&admin, "app/db", &pw(&two)).await;
    emulator.reset_log();
    emulator.inject(Fault::kube("patch", "secrets", 429).times(2));
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    all_synced(app.run_once().await);
    let statuses: Vec<u16> = emulator
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.resource == "secrets")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![429, 429, 200]);

    // 500s: the sync fails after its retries, and the Secret keeps its content.
    put_secret(&admin, "app/db", &pw(&three)).await;
    emulator.inject(Fault::kube("patch", "secrets", 500));
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    let failures = app.run_once().await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].kind(), "server");
    assert_eq!(
        data(&emulator.get("Secret", "app", "db").unwrap(), "password").as_deref(),
        Some(two.as_str()),
        "a failure never clears what was written"
    );
    emulator.clear_faults();

    // The fault clears: the next sync writes.
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    all_synced(app.run_once().await);
    assert_eq!(
        data(&emulator.get("Secret", "app", "db").unwrap(), "password").as_deref(),
        Some(three.as_str())
    );

    put_secret(&admin, "app/db", &pw(&four)).await;
    // 403: the message names the verb, the resource and the namespace.
    emulator.deny("patch", "secrets", Some("app"));
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    let failures = app.run_once().await;
    assert_eq!(failures[0].kind(), "forbidden");
    let message = failures[0].to_string();
    assert_eq!(
        data(&emulator.get("Secret", "app", "db").unwrap(), "password").as_deref(),
        Some(three.as_str()),
        "a refused write leaves the Secret as it was"
    );
    assert!(
        message.contains("patch")
            && message.contains("secrets")
            && message.contains("namespace app"),
        "{message}"
    );
    assert_no_leak(&message, &[&one, &two, &three, &four]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_get_what_a_rule_allows_and_refusals_fetch_nothing() {
    capture_logs();
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id: _,
    } = cross_account_role().await;
    let (a_db, b_db) = (canary("adb"), canary("bdb"));
    create_secret(&admin, "team-a/db", &format!(r#"{{"password":"{a_db}"}}"#)).await;
    create_secret(&admin, "team-b/db", &format!(r#"{{"password":"{b_db}"}}"#)).await;
    let proxy = Proxy::start(moto.addr());
    let sdk = moto
        .sdk_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .build();
    let emulator = KubeEmulator::start();
    emulator.add_namespace("team-a", &[("tenant", "a")]);
    emulator.add_namespace("team-b", &[]);
    let annotated = crate::common::tenant_secret;
    emulator.put(annotated(
        "team-a",
        "ok",
        json!({"secret-ferry.io/secret-id": "team-a/db", "secret-ferry.io/refresh-interval": "1s"}),
    ));
    emulator.put(annotated(
        "team-a",
        "outside",
        json!({"secret-ferry.io/secret-id": "team-b/db"}),
    ));
    emulator.put(annotated(
        "team-a",
        "other-role",
        json!({"secret-ferry.io/secret-id": "team-a/db", "secret-ferry.io/role": "admin"}),
    ));
    emulator.put(annotated(
        "team-b",
        "no-rule",
        json!({"secret-ferry.io/secret-id": "team-b/db"}),
    ));
    let metrics = Metrics::new().unwrap();
    let kube = kube_for(&emulator, &metrics).await;
    let yaml = format!(
        r#"region: us-east-1
roles:
  shared: {{roleArn: "{role_arn}"}}
  admin: {{roleArn: "{role_arn}", sessionName: admin}}
tenants:
  - namespaceSelector: {{matchLabels: {{tenant: a}}}}
    roles: [shared]
    secretIds: ["team-a/*"]
"#
    );
    let cfg = secret_ferry::config::parse(&yaml).unwrap();
    let app = App::build_with(&cfg, &sdk, metrics.clone(), Some(&kube)).unwrap();
    let (trigger, signal) = secret_ferry::shutdown::channel();
    let daemon = tokio::spawn(app.run(signal));

    let filled = wait_for_async(Duration::from_secs(20), || async {
        emulator
            .get("Secret", "team-a", "ok")
            .and_then(|s| data(&s, "password"))
    })
    .await;
    assert_eq!(filled.as_deref(), Some(a_db.as_str()));
    let refusals = wait_for_async(Duration::from_secs(10), || async {
        let refused: Vec<serde_json::Value> = emulator
            .events()
            .into_iter()
            .filter(|e| e["reason"] == "Refused")
            .collect();
        (refused.len() >= 3).then_some(refused)
    })
    .await
    .expect("three Refused Events");
    let note = |name: &str| {
        refusals
            .iter()
            .find(|e| e["regarding"]["name"] == name)
            .and_then(|e| e["note"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        note("outside").contains("tenants[0]") && note("outside").contains("team-a/*"),
        "{}",
        note("outside")
    );
    assert!(
        note("other-role").contains("\"admin\""),
        "{}",
        note("other-role")
    );
    assert!(
        note("no-rule").contains("no tenants rule covers namespace team-b"),
        "{}",
        note("no-rule")
    );
    for name in ["outside", "other-role"] {
        assert!(data(&emulator.get("Secret", "team-a", name).unwrap(), "password").is_none());
    }
    assert!(data(
        &emulator.get("Secret", "team-b", "no-rule").unwrap(),
        "password"
    )
    .is_none());
    // moto was never asked for what was refused.
    let asked: Vec<String> = proxy
        .requests_for("GetSecretValue")
        .iter()
        .map(|r| r.body_text())
        .collect();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|b| b.contains("team-a/db")), "{asked:?}");

    // An annotation change applies within seconds: point `outside` at an allowed id.
    let client = emulator.client().await;
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client, "team-a");
    api.patch(
        "outside",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"metadata": {"annotations": {"secret-ferry.io/secret-id": "team-a/db"}}}),
        ),
    )
    .await
    .unwrap();
    let now_filled = wait_for_async(Duration::from_secs(10), || async {
        emulator
            .get("Secret", "team-a", "outside")
            .and_then(|s| data(&s, "password"))
    })
    .await;
    assert_eq!(now_filled.as_deref(), Some(a_db.as_str()));
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_removed_from_the_config_are_deleted_only_with_deletion_policy_delete() {
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let p = canary("p");
    create_secret(&admin, "app/db", &format!(r#"{{"password":"{p}"}}"#)).await;
    let emulator = KubeEmulator::start();
    let metrics = Metrics::new().unwrap();
    let kube = kube_for(&emulator, &metrics).await;
    let before = r#"region: us-east-1
secrets:
  - {name: kept, secretId: app/db, targets: [{kubernetesSecret: {name: kept}}]}
  - {name: gone-delete, secretId: app/db, targets: [{kubernetesSecret: {name: gone-delete, deletionPolicy: Delete}}]}
  - {name: gone-retain, secretId: app/db, targets: [{kubernetesSecret: {name: gone-retain}}]}
"#;
    let cfg = secret_ferry::config::parse(before).unwrap();
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    all_synced(app.run_once().await);
    // Another instance's Secret with the same policy is not ours to delete.
    let mut theirs = emulator.get("Secret", "app", "gone-delete").unwrap();
    theirs["metadata"]["name"] = json!("other-instance");
    theirs["metadata"]["annotations"]["secret-ferry.io/instance"] = json!("another");
    emulator.put(theirs);

    let after = "region: us-east-1\nsecrets:\n  - {name: kept, secretId: app/db, targets: [{kubernetesSecret: {name: kept}}]}\n";
    let cfg = secret_ferry::config::parse(after).unwrap();
    let app = App::build_with(&cfg, &admin, metrics.clone(), Some(&kube)).unwrap();
    app.delete_unconfigured_secrets(&kube).await;
    assert!(
        emulator.get("Secret", "app", "gone-delete").is_none(),
        "deletionPolicy: Delete"
    );
    assert!(
        emulator.get("Secret", "app", "gone-retain").is_some(),
        "deletionPolicy: Retain"
    );
    assert!(
        emulator.get("Secret", "app", "kept").is_some(),
        "still configured"
    );
    assert!(
        emulator.get("Secret", "app", "other-instance").is_some(),
        "another instance's"
    );
    // Already gone: deleting again is not an error (NotFound counts as success).
    app.delete_unconfigured_secrets(&kube).await;
}
