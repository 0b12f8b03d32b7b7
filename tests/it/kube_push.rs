//! Pushes from a Kubernetes Secret (controller mode): the Secret on the loopback API
//! emulator is watched, so a change reaches moto within a second at an hourly interval;
//! edits that change nothing selected make no write; deleting the Secret schedules the
//! owned secret for deletion, re-creating it restores it; each write is an Event on the
//! Secret; a Secret the service account may not read deletes nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::kube_emulator;

use base64::Engine as _;
use common::in_process::Daemon;
use common::proxy::Proxy;
use common::*;
use kube_emulator::KubeEmulator;
use secret_ferry::daemon::App;
use secret_ferry::k8s::Kube;
use secret_ferry::metrics::Metrics;
use serde_json::json;
use std::time::{Duration, Instant};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn source_secret(token: &str, other: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "app-tokens", "namespace": "app", "labels": labels},
        "data": {"token": b64(token), "other": b64(other)},
    })
}

async fn value_of(admin: &aws_config::SdkConfig, name: &str) -> Option<String> {
    let sm = aws_sdk_secretsmanager::Client::new(admin);
    let out = sm.get_secret_value().secret_id(name).send().await.ok()?;
    out.secret_string().map(str::to_owned)
}

async fn deleted(admin: &aws_config::SdkConfig, name: &str) -> Option<bool> {
    let sm = aws_sdk_secretsmanager::Client::new(admin);
    let out = sm.describe_secret().secret_id(name).send().await.ok()?;
    Some(out.deleted_date().is_some())
}

/// The daemon built from `yaml` with a Kubernetes client on the emulator (namespace `app`).
async fn app(emulator: &KubeEmulator, sdk: &aws_config::SdkConfig, yaml: &str) -> (App, Metrics) {
    capture_logs();
    emulator.add_namespace("app", &[]);
    let metrics = Metrics::new().unwrap();
    let kube = Kube::new(
        emulator.client().await,
        Some("app".to_owned()),
        None,
        metrics.clone(),
        "secret-ferry".to_owned(),
    );
    let cfg = secret_ferry::config::parse(yaml).unwrap();
    let app = App::build_with(&cfg, sdk, metrics.clone(), Some(&kube)).unwrap();
    (app, metrics)
}

const CONFIG: &str = "region: us-east-1
instance: it-cluster
pushes:
  - name: tokens
    refreshInterval: 1h
    from: {kubernetesSecret: {name: app-tokens, keys: [token]}}
    to: {secretName: app/tokens}
    deletionPolicy: Delete
    recoveryWindow: 7d
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_secret_is_pushed_within_a_second_and_its_deletion_and_return_follow() {
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let proxy = Proxy::start(moto.addr());
    let sdk = admin.to_builder().endpoint_url(proxy.endpoint()).build();
    let emulator = KubeEmulator::start();
    let first = canary("kube-token");
    emulator.put(source_secret(&first, "x", json!({})));
    let (app, metrics) = app(&emulator, &sdk, CONFIG).await;
    let daemon = Daemon::run(app, metrics);

    // Created from the one selected key, as the secret string as is.
    let created = wait_for_async(Duration::from_secs(20), || async {
        value_of(&admin, "app/tokens").await.filter(|v| *v == first)
    })
    .await;
    assert!(
        created.is_some(),
        "the secret was not created from the Secret"
    );

    // A change is pushed by the watch, not by the hourly interval: ten of them, timed.
    proxy.reset_records();
    let mut second = String::new();
    let mut took = Vec::new();
    for _ in 0..10 {
        second = canary("kube-token");
        let changed_at = Instant::now();
        emulator.put(source_secret(&second, "x", json!({})));
        let pushed = wait_for_async(Duration::from_secs(10), || async {
            value_of(&admin, "app/tokens")
                .await
                .filter(|v| *v == second)
        })
        .await;
        assert!(pushed.is_some(), "the change was not pushed");
        took.push(changed_at.elapsed().as_secs_f64());
    }
    took.sort_by(f64::total_cmp);
    println!(
        "Secret change -> new version over 10 changes at refreshInterval 1h: min {:.2} / median {:.2} / max {:.2} s",
        took[0], took[5], took[9]
    );
    assert_eq!(proxy.count("PutSecretValue"), 10, "one write per change");

    // A label, or a key that is not selected: compared, never written.
    proxy.reset_records();
    emulator.put(source_secret(&second, "x", json!({"team": "a"})));
    emulator.put(source_secret(&second, "y", json!({"team": "a"})));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        proxy.count("PutSecretValue"),
        0,
        "an unchanged value was written"
    );
    assert!(
        proxy.count("DescribeSecret") <= 1,
        "a label edit is no change: {} describes",
        proxy.count("DescribeSecret")
    );

    // Deleted: scheduled for deletion (deletionPolicy: Delete) within a second or so.
    let client = emulator.client().await;
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, "app");
    api.delete("app-tokens", &Default::default()).await.unwrap();
    let gone = wait_for_async(Duration::from_secs(10), || async {
        deleted(&admin, "app/tokens").await.filter(|d| *d)
    })
    .await;
    assert!(gone.is_some(), "not scheduled for deletion");

    // Back: restored, with the current value.
    let third = canary("kube-token");
    emulator.put(source_secret(&third, "x", json!({})));
    let restored = wait_for_async(Duration::from_secs(10), || async {
        let back = deleted(&admin, "app/tokens").await == Some(false);
        value_of(&admin, "app/tokens")
            .await
            .filter(|v| back && *v == third)
    })
    .await;
    assert!(restored.is_some(), "not restored with the new value");

    // Each write is an Event on the source Secret, and none carries a value.
    let events = emulator.events();
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["regarding"]["name"] == "app-tokens")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    for reason in ["Created", "Pushed", "Deleted", "Restored"] {
        assert!(reasons.contains(&reason), "no {reason} Event: {reasons:?}");
    }
    let all_events = serde_json::to_string(&events).unwrap();
    assert_no_leak(&all_events, &[&first, &second, &third]);
    // The ten changes, then the new value after the restore; the edits in between wrote nothing.
    assert_eq!(
        daemon.metric(r#"secret_ferry_push_writes_total{operation="put",push="tokens"}"#),
        11.0
    );
    for op in ["create", "delete", "restore"] {
        let series = format!(r#"secret_ferry_push_writes_total{{operation="{op}",push="tokens"}}"#);
        assert_eq!(daemon.metric(&series), 1.0, "{op}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_service_account_may_not_watch_is_an_error_naming_the_rule_and_deletes_nothing(
) {
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let value = canary("kube-token");
    let emulator = KubeEmulator::start();
    emulator.put(source_secret(&value, "x", json!({})));
    // Everything is allowed but reading Secrets in the source namespace.
    emulator.allow("*", "*", None);
    emulator.deny("list", "secrets", Some("app"));
    emulator.deny("watch", "secrets", Some("app"));
    let (app, _metrics) = app(&emulator, &admin, CONFIG).await;
    let report = app.run_once_with_credentials_files().await;
    let messages: Vec<String> = report
        .push_failures
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(report.push_failures[0].kind(), "source_unreadable");
    assert!(
        messages[0].contains("push 'tokens'")
            && messages[0].contains("app/app-tokens")
            && messages[0].contains("may not list secrets in namespace app"),
        "the error names the push, the Secret and the RBAC rule: {}",
        messages[0]
    );
    assert_eq!(
        value_of(&admin, "app/tokens").await,
        None,
        "nothing is created"
    );
    let warned: Vec<serde_json::Value> = emulator
        .events()
        .into_iter()
        .filter(|e| e["reason"] == "PushFailed" && e["regarding"]["name"] == "app-tokens")
        .collect();
    assert_eq!(warned.len(), 1, "one Warning Event on the Secret");
    assert_no_leak(&serde_json::to_string(&warned).unwrap(), &[&value]);
    assert_no_leak(&messages[0], &[&value]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_pushes_what_its_rule_allows_one_secret_per_name_and_never_deletes() {
    let CrossAccount {
        moto: _moto,
        admin,
        role_arn,
        external_id: _,
    } = cross_account_role().await;
    let emulator = KubeEmulator::start();
    emulator.add_namespace("team-a", &[]);
    let pushed = |name: &str, to: &str, token: &str| {
        let mut secret =
            crate::common::tenant_secret("team-a", name, json!({"secret-ferry.io/push-to": to}));
        secret["data"] = json!({"token": b64(token)});
        secret
    };
    let (first, second, other) = (
        canary("tenant-push"),
        canary("tenant-push"),
        canary("tenant-push"),
    );
    emulator.put(pushed("tokens", "team-a/pushed/tokens", &first));
    emulator.put(pushed("outside", "team-b/tokens", &other));
    let yaml = format!(
        r#"region: us-east-1
instance: it-cluster
roles:
  shared: {{roleArn: "{role_arn}"}}
tenants:
  - namespaces: [team-a]
    roles: [shared]
    pushSecretNames: ["team-a/pushed/*"]
"#
    );
    let (app, metrics) = app(&emulator, &admin, &yaml).await;
    let daemon = Daemon::run(app, metrics);

    // The one key of the allowed Secret, as the secret string; the Secret outside the rule
    // is refused and nothing is created for it.
    let created = wait_for_async(Duration::from_secs(20), || async {
        value_of(&admin, "team-a/pushed/tokens")
            .await
            .filter(|v| *v == first)
    })
    .await;
    assert!(created.is_some(), "the tenant's Secret was not pushed");
    assert_eq!(value_of(&admin, "team-b/tokens").await, None);

    // A second Secret asking for the same name is refused; the first keeps it.
    emulator.put(pushed("copy", "team-a/pushed/tokens", &other));
    // A change of the first is pushed by its watch.
    emulator.put(pushed("tokens", "team-a/pushed/tokens", &second));
    let changed = wait_for_async(Duration::from_secs(10), || async {
        value_of(&admin, "team-a/pushed/tokens")
            .await
            .filter(|v| *v == second)
    })
    .await;
    assert!(changed.is_some(), "the change was not pushed");
    let refusals = wait_for_async(Duration::from_secs(10), || async {
        let notes: Vec<String> = emulator
            .events()
            .iter()
            .filter(|e| e["reason"] == "Refused")
            .map(|e| {
                format!(
                    "{} {}",
                    e["regarding"]["name"].as_str().unwrap_or_default(),
                    e["note"].as_str().unwrap_or_default()
                )
            })
            .collect();
        (notes.len() >= 2).then_some(notes)
    })
    .await
    .expect("both refusals are Events");
    assert!(
        refusals
            .iter()
            .any(|n| n.starts_with("outside") && n.contains("team-a/pushed/*")),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|n| n.starts_with("copy")
                && n.contains("already pushed from the Secret team-a/tokens")),
        "{refusals:?}"
    );

    // The tenant deletes its Secret: the remote secret stays (a tenant's push never deletes).
    let client = emulator.client().await;
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client, "team-a");
    api.delete("tokens", &Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(deleted(&admin, "team-a/pushed/tokens").await, Some(false));
    assert_eq!(
        value_of(&admin, "team-a/pushed/tokens").await.as_deref(),
        Some(second.as_str())
    );
    assert_eq!(
        daemon.metric(r#"secret_ferry_push_total{push="team-a/tokens",result="success"}"#),
        0.0,
        "the deleted Secret's push series are dropped"
    );
    let all_events = serde_json::to_string(&emulator.events()).unwrap();
    assert_no_leak(&all_events, &[&first, &second, &other]);
    daemon.stop().await;
}
