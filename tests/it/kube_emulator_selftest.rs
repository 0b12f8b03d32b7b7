#![allow(clippy::unwrap_used)]
use crate::kube_emulator;

// Proves the emulator's semantics through the real kube client only.

use futures_util::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions,
    WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::runtime::watcher;
use kube::Client;
use kube_emulator::{Fault, KubeEmulator};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NS: &str = "app";
const WAIT: Duration = Duration::from_secs(10);

async fn cluster() -> (KubeEmulator, Api<Secret>) {
    let emu = KubeEmulator::start();
    emu.add_namespace(NS, &[("team", "payments")]);
    let secrets = Api::namespaced(emu.client().await, NS);
    (emu, secrets)
}

fn secret(name: &str, data: &[(&str, &str)], labels: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
            .filter(|l: &BTreeMap<_, _>| !l.is_empty()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The JSON an apply sends: only the fields the manager means to own.
fn apply_config(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": data,
    })
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8(bytes.0.clone()).unwrap())
}

fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv(secret: &Secret) -> u64 {
    secret
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

/// Managers owning `path` (like `f:data.f:password`) in the stored object.
fn owners(emu: &KubeEmulator, name: &str, path: &[&str]) -> Vec<(String, String)> {
    let object = emu.get("Secret", NS, name).unwrap();
    let mut found = Vec::new();
    for entry in object["metadata"]["managedFields"].as_array().unwrap() {
        let owned = path
            .iter()
            .try_fold(&entry["fieldsV1"], |v, p| v.get(format!("f:{p}")))
            .is_some();
        if owned {
            found.push((
                entry["manager"].as_str().unwrap().to_string(),
                entry["operation"].as_str().unwrap().to_string(),
            ));
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn create_get_and_list_with_label_selectors() {
    let (emu, secrets) = cluster().await;
    let pp = PostParams::default();
    secrets
        .create(&pp, &secret("a", &[("k", "1")], &[("team", "a")]))
        .await
        .unwrap();
    secrets
        .create(
            &pp,
            &secret("b", &[("k", "2")], &[("team", "b"), ("tier", "db")]),
        )
        .await
        .unwrap();
    secrets
        .create(&pp, &secret("c", &[("k", "3")], &[]))
        .await
        .unwrap();

    let got = secrets.get("b").await.unwrap();
    assert_eq!(value(&got, "k").as_deref(), Some("2"));
    assert!(got.metadata.uid.is_some() && got.metadata.creation_timestamp.is_some());
    assert_eq!(got.type_.as_deref(), Some("Opaque"));

    let names = |list: kube::core::ObjectList<Secret>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect()
    };
    for (selector, expected) in [
        ("team=a", vec!["a"]),
        ("team==b,tier=db", vec!["b"]),
        ("team", vec!["a", "b"]),
        ("!team", vec!["c"]),
        ("team!=a", vec!["b", "c"]),
        ("team in (a, b)", vec!["a", "b"]),
        ("team notin (a)", vec!["b", "c"]),
    ] {
        let list = secrets
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(names(list), expected, "selector {selector}");
    }
    assert_eq!(emu.list("secrets", Some(NS)).len(), 3);
    assert!(emu.list("Secret", Some("default")).is_empty());
    let all = secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        all.metadata.resource_version.as_deref(),
        Some(emu.resource_version().to_string().as_str())
    );
    let first = secrets.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    assert_eq!(names(first), ["a", "b"]);
    let rest = secrets
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(rest), ["c"]);

    let missing = api_error(secrets.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, r#"secrets "nope" not found"#);
    let again = api_error(secrets.create(&pp, &secret("a", &[], &[])).await);
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn string_data_is_folded_into_data() {
    let (emu, secrets) = cluster().await;
    let mut s = secret("db", &[("user", "app")], &[]);
    s.string_data = Some([("password".to_string(), "hunter2".to_string())].into());
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(value(&created, "password").as_deref(), Some("hunter2"));
    assert_eq!(value(&created, "user").as_deref(), Some("app"));
    assert!(created.string_data.is_none());
    let stored = emu.get("Secret", NS, "db").unwrap();
    assert!(stored.get("stringData").is_none());
    assert_eq!(stored["data"]["password"], b64("hunter2"));
}

#[tokio::test]
async fn stale_replace_is_a_409_conflict() {
    let (_emu, secrets) = cluster().await;
    let created = secrets
        .create(&PostParams::default(), &secret("db", &[("k", "1")], &[]))
        .await
        .unwrap();
    let mut newer = created.clone();
    newer.data = secret("db", &[("k", "2")], &[]).data;
    let replaced = secrets
        .replace("db", &PostParams::default(), &newer)
        .await
        .unwrap();
    assert!(rv(&replaced) > rv(&created));

    let stale = api_error(
        secrets
            .replace("db", &PostParams::default(), &created)
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        r#"Operation cannot be fulfilled on secrets "db": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!(
        value(&secrets.get("db").await.unwrap(), "k").as_deref(),
        Some("2")
    );
}

#[tokio::test]
async fn server_side_apply_creates_conflicts_and_force_moves_ownership() {
    let (emu, secrets) = cluster().await;
    let ferry = PatchParams::apply("secret-ferry");
    let config = apply_config("db", json!({"password": b64("one")}));
    let created = secrets
        .patch("db", &ferry, &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(value(&created, "password").as_deref(), Some("one"));
    assert_eq!(
        owners(&emu, "db", &["data", "password"]),
        [("secret-ferry".into(), "Apply".into())]
    );

    let kubectl = PatchParams::apply("kubectl");
    let theirs = apply_config("db", json!({"password": b64("two")}));
    let conflict = api_error(secrets.patch("db", &kubectl, &Patch::Apply(&theirs)).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        r#"Apply failed with 1 conflict: conflict with "secret-ferry" using v1: .data.password"#
    );
    let cause = &conflict.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".data.password")
    );
    assert_eq!(
        value(&secrets.get("db").await.unwrap(), "password").as_deref(),
        Some("one")
    );

    let forced = secrets
        .patch("db", &kubectl.force(), &Patch::Apply(&theirs))
        .await
        .unwrap();
    assert_eq!(value(&forced, "password").as_deref(), Some("two"));
    assert_eq!(
        owners(&emu, "db", &["data", "password"]),
        [("kubectl".into(), "Apply".into())]
    );

    // Now the daemon is the one who conflicts, with the manager named.
    let back = api_error(secrets.patch("db", &ferry, &Patch::Apply(&config)).await);
    assert!(
        back.message
            .contains(r#"conflict with "kubectl" using v1: .data.password"#),
        "{}",
        back.message
    );
}

#[tokio::test]
async fn apply_conflicts_with_an_update_manager_too() {
    let (_emu, secrets) = cluster().await;
    let ferry = PatchParams::apply("secret-ferry");
    let config = apply_config("db", json!({"password": b64("one")}));
    secrets
        .patch("db", &ferry, &Patch::Apply(&config))
        .await
        .unwrap();
    // A human edits the value with a merge patch (an Update by "kubectl-edit").
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let patch = json!({"data": {"password": b64("edited")}});
    secrets
        .patch("db", &edit, &Patch::Merge(&patch))
        .await
        .unwrap();

    let conflict = api_error(secrets.patch("db", &ferry, &Patch::Apply(&config)).await);
    assert_eq!(conflict.code, 409);
    assert!(
        conflict.message.starts_with(
            r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using v1 at "#
        ) && conflict.message.ends_with(": .data.password"),
        "{}",
        conflict.message
    );
}

#[tokio::test]
async fn apply_of_an_equal_value_shares_ownership() {
    let (emu, secrets) = cluster().await;
    let config = apply_config("db", json!({"password": b64("same")}));
    secrets
        .patch(
            "db",
            &PatchParams::apply("secret-ferry"),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    secrets
        .patch("db", &PatchParams::apply("kubectl"), &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(
        owners(&emu, "db", &["data", "password"]),
        [
            ("kubectl".into(), "Apply".into()),
            ("secret-ferry".into(), "Apply".into())
        ]
    );
    // One co-owner letting go leaves the field in place.
    let empty = apply_config("db", json!({}));
    let after = secrets
        .patch(
            "db",
            &PatchParams::apply("secret-ferry"),
            &Patch::Apply(&empty),
        )
        .await
        .unwrap();
    assert_eq!(value(&after, "password").as_deref(), Some("same"));
    assert_eq!(
        owners(&emu, "db", &["data", "password"]),
        [("kubectl".into(), "Apply".into())]
    );
}

#[tokio::test]
async fn apply_removes_fields_the_manager_no_longer_sends() {
    let (_emu, secrets) = cluster().await;
    let ferry = PatchParams::apply("secret-ferry");
    let mut both = apply_config("db", json!({"user": b64("app"), "password": b64("pw")}));
    both["metadata"]["labels"] = json!({"managed-by": "secret-ferry", "old": "x"});
    secrets
        .patch("db", &ferry, &Patch::Apply(&both))
        .await
        .unwrap();
    let mut one = apply_config("db", json!({"user": b64("app")}));
    one["metadata"]["labels"] = json!({"managed-by": "secret-ferry"});
    let after = secrets
        .patch("db", &ferry, &Patch::Apply(&one))
        .await
        .unwrap();
    assert_eq!(value(&after, "password"), None);
    assert_eq!(value(&after, "user").as_deref(), Some("app"));
    let labels = after.metadata.labels.unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["managed-by"]);
}

#[tokio::test]
async fn apply_without_change_keeps_the_resource_version() {
    let (emu, secrets) = cluster().await;
    let ferry = PatchParams::apply("secret-ferry");
    let mut config = apply_config("db", json!({"password": b64("pw")}));
    config["type"] = "Opaque".into();
    let first = secrets
        .patch("db", &ferry, &Patch::Apply(&config))
        .await
        .unwrap();
    let counter = emu.resource_version();
    let second = secrets
        .patch("db", &ferry, &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(rv(&second), rv(&first));
    assert_eq!(emu.resource_version(), counter);
    config["data"]["password"] = b64("changed").into();
    let third = secrets
        .patch("db", &ferry, &Patch::Apply(&config))
        .await
        .unwrap();
    assert!(rv(&third) > rv(&first));
}

#[tokio::test]
async fn apply_needs_a_field_manager_and_creates_only_in_existing_namespaces() {
    let (emu, secrets) = cluster().await;
    let client = emu.client().await;
    let request = hyper::http::Request::patch("/api/v1/namespaces/app/secrets/db")
        .header("content-type", "application/apply-patch+yaml")
        .body(apply_config("db", json!({})).to_string().into_bytes())
        .unwrap();
    let no_manager = api_error(client.request_text(request).await);
    assert_eq!(
        (no_manager.code, no_manager.reason.as_str()),
        (422, "Invalid")
    );
    assert!(
        no_manager.message.contains("fieldManager: Required value"),
        "{}",
        no_manager.message
    );

    let elsewhere: Api<Secret> = Api::namespaced(client, "missing");
    let config = apply_config("db", json!({}));
    let missing = api_error(
        elsewhere
            .patch("db", &PatchParams::apply("m"), &Patch::Apply(&config))
            .await,
    );
    assert_eq!(missing.message, r#"namespaces "missing" not found"#);
    assert!(secrets
        .patch("db", &PatchParams::apply("m"), &Patch::Apply(&config))
        .await
        .is_ok());
}

#[tokio::test]
async fn merge_and_strategic_patches() {
    let (_emu, secrets) = cluster().await;
    let created = secrets
        .create(
            &PostParams::default(),
            &secret("db", &[("a", "1"), ("b", "2")], &[("x", "y")]),
        )
        .await
        .unwrap();
    let patch =
        json!({"data": {"b": null, "c": b64("3")}, "metadata": {"labels": {"x": null, "z": "w"}}});
    let merged = secrets
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(value(&merged, "a").as_deref(), Some("1"));
    assert_eq!(value(&merged, "b"), None);
    assert_eq!(value(&merged, "c").as_deref(), Some("3"));
    assert_eq!(
        merged.metadata.labels.unwrap(),
        [("z".to_string(), "w".to_string())].into()
    );

    let strategic = json!({"stringData": {"d": "4"}});
    let patched = secrets
        .patch("db", &PatchParams::default(), &Patch::Strategic(&strategic))
        .await
        .unwrap();
    assert_eq!(value(&patched, "d").as_deref(), Some("4"));

    let stale = json!({"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"a": null}});
    let conflict = api_error(
        secrets
            .patch("db", &PatchParams::default(), &Patch::Merge(&stale))
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn immutable_secret_refuses_data_changes_but_accepts_labels() {
    let (_emu, secrets) = cluster().await;
    let mut s = secret("frozen", &[("k", "v")], &[]);
    s.immutable = Some(true);
    secrets.create(&PostParams::default(), &s).await.unwrap();

    let change = json!({"data": {"k": b64("other")}});
    let refused = api_error(
        secrets
            .patch("frozen", &PatchParams::default(), &Patch::Merge(&change))
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        refused.message,
        "Secret \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    let thaw = json!({"immutable": false});
    assert_eq!(
        api_error(
            secrets
                .patch("frozen", &PatchParams::default(), &Patch::Merge(&thaw))
                .await
        )
        .code,
        422
    );

    let label = json!({"metadata": {"labels": {"seen": "yes"}}});
    let labelled = secrets
        .patch("frozen", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.labels.as_ref().unwrap()["seen"], "yes");
    assert_eq!(value(&labelled, "k").as_deref(), Some("v"));

    let retype = json!({"type": "kubernetes.io/tls"});
    let invalid = api_error(
        secrets
            .patch("frozen", &PatchParams::default(), &Patch::Merge(&retype))
            .await,
    );
    assert_eq!(invalid.code, 422);
    assert!(
        invalid
            .message
            .contains("type: Invalid value: \"kubernetes.io/tls\": field is immutable"),
        "{}",
        invalid.message
    );
}

#[tokio::test]
async fn validation_rejects_what_the_real_server_rejects() {
    let (_emu, secrets) = cluster().await;
    let pp = PostParams::default();
    let bad_name = api_error(secrets.create(&pp, &secret("Db_Creds", &[], &[])).await);
    assert_eq!(bad_name.code, 422);
    assert!(
        bad_name
            .message
            .starts_with("Secret \"Db_Creds\" is invalid: metadata.name: Invalid value"),
        "{}",
        bad_name.message
    );
    let bad_key = api_error(
        secrets
            .create(&pp, &secret("db", &[("prod/password", "x")], &[]))
            .await,
    );
    assert!(
        bad_key
            .message
            .contains("data[prod/password]: Invalid value"),
        "{}",
        bad_key.message
    );
    let bad_label = api_error(
        secrets
            .create(&pp, &secret("db", &[], &[("arn", "arn:aws:x")]))
            .await,
    );
    assert!(
        bad_label
            .message
            .contains("metadata.labels: Invalid value: \"arn:aws:x\""),
        "{}",
        bad_label.message
    );
    let nowhere: Api<Secret> = Api::namespaced(secrets.clone().into_client(), "missing");
    let missing = api_error(nowhere.create(&pp, &secret("db", &[], &[])).await);
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, r#"namespaces "missing" not found"#)
    );
}

#[tokio::test]
async fn delete_then_get_is_404() {
    let (_emu, secrets) = cluster().await;
    let created = secrets
        .create(&PostParams::default(), &secret("db", &[], &[]))
        .await
        .unwrap();
    let bump = json!({"metadata": {"labels": {"v": "2"}}});
    secrets
        .patch("db", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .unwrap();
    let guarded = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: created.metadata.resource_version.clone(),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(api_error(secrets.delete("db", &guarded).await).code, 409);

    let deleted = secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    let status = deleted
        .right()
        .expect("an immediate delete answers a Status");
    assert!(status.is_success());
    assert_eq!(api_error(secrets.get("db").await).code, 404);
    assert_eq!(
        api_error(secrets.delete("db", &DeleteParams::default()).await).code,
        404
    );
}

async fn next_event(
    stream: &mut (impl futures_util::Stream<Item = Result<watcher::Event<Secret>, watcher::Error>>
              + Unpin),
) -> watcher::Event<Secret> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

fn describe(event: &watcher::Event<Secret>) -> String {
    let name = |s: &Secret| s.metadata.name.clone().unwrap();
    match event {
        watcher::Event::Apply(s) => {
            format!("apply {}={}", name(s), value(s, "k").unwrap_or_default())
        }
        watcher::Event::Delete(s) => format!("delete {}", name(s)),
        watcher::Event::Init => "init".into(),
        watcher::Event::InitApply(s) => format!("init-apply {}", name(s)),
        watcher::Event::InitDone => "init-done".into(),
    }
}

#[tokio::test]
async fn watcher_sees_create_update_and_delete() {
    let (_emu, secrets) = cluster().await;
    let pp = PostParams::default();
    secrets
        .create(&pp, &secret("before", &[("k", "0")], &[]))
        .await
        .unwrap();
    let mut stream = Box::pin(watcher(secrets.clone(), watcher::Config::default()));
    let mut seen = Vec::new();
    while !seen.contains(&"init-done".to_string()) {
        seen.push(describe(&next_event(&mut stream).await));
    }
    assert_eq!(seen, ["init", "init-apply before", "init-done"]);

    secrets
        .create(&pp, &secret("db", &[("k", "1")], &[]))
        .await
        .unwrap();
    let patch = json!({"data": {"k": b64("2")}});
    secrets
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(describe(&next_event(&mut stream).await));
    }
    assert_eq!(live, ["apply db=1", "apply db=2", "delete db"]);
}

#[tokio::test]
async fn label_selected_watcher_sees_objects_leave_and_streaming_lists_work() {
    let (_emu, secrets) = cluster().await;
    let pp = PostParams::default();
    secrets
        .create(&pp, &secret("a", &[("k", "1")], &[("sync", "yes")]))
        .await
        .unwrap();
    let config = watcher::Config::default()
        .labels("sync=yes")
        .streaming_lists();
    let mut stream = Box::pin(watcher(secrets.clone(), config));
    let mut seen = Vec::new();
    while !seen.contains(&"init-done".to_string()) {
        seen.push(describe(&next_event(&mut stream).await));
    }
    assert_eq!(seen, ["init", "init-apply a", "init-done"]);

    secrets
        .create(&pp, &secret("ignored", &[], &[("sync", "no")]))
        .await
        .unwrap();
    let unlabel = json!({"metadata": {"labels": {"sync": "no"}}});
    secrets
        .patch("a", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut stream).await), "delete a");
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410() {
    let (emu, secrets) = cluster().await;
    secrets
        .create(&PostParams::default(), &secret("db", &[], &[]))
        .await
        .unwrap();
    emu.compact();
    let mut events = Box::pin(secrets.watch(&WatchParams::default(), "1").await.unwrap());
    match tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_times_out_when_asked() {
    let (_emu, secrets) = cluster().await;
    let started = Instant::now();
    let mut events = Box::pin(
        secrets
            .watch(&WatchParams::default().timeout(1), "0")
            .await
            .unwrap(),
    );
    assert!(tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .is_none());
    assert!(started.elapsed() >= Duration::from_secs(1));
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

#[tokio::test]
async fn lease_create_replace_and_stale_replace() {
    let (emu, _) = cluster().await;
    let leases: Api<Lease> = Api::namespaced(emu.client().await, NS);
    let created = leases
        .create(&PostParams::default(), &lease("leader", "pod-a"))
        .await
        .unwrap();
    let mut takeover = created.clone();
    takeover.spec = lease("leader", "pod-b").spec;
    takeover.spec.as_mut().unwrap().lease_transitions = Some(1);
    let taken = leases
        .replace("leader", &PostParams::default(), &takeover)
        .await
        .unwrap();
    assert_eq!(
        taken.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("pod-b")
    );
    let stored = emu.get("Lease", NS, "leader").unwrap();
    assert_eq!(stored["spec"]["leaseTransitions"], 1);

    let stale = api_error(
        leases
            .replace("leader", &PostParams::default(), &created)
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(stale
        .message
        .starts_with(r#"Operation cannot be fulfilled on leases.coordination.k8s.io "leader""#));
    let mut unversioned = takeover.clone();
    unversioned.metadata.resource_version = None;
    let invalid = api_error(
        leases
            .replace("leader", &PostParams::default(), &unversioned)
            .await,
    );
    assert_eq!(
        (invalid.code, invalid.message.as_str()),
        (
            422,
            r#"leases.coordination.k8s.io "leader" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update"#
        )
    );
    assert!(leases
        .delete("leader", &DeleteParams::default())
        .await
        .is_ok());
    assert_eq!(api_error(leases.get("leader").await).code, 404);
    // Leases, unlike Secrets, may be created by a PUT.
    let put_created = leases
        .replace("other", &PostParams::default(), &lease("other", "pod-c"))
        .await
        .unwrap();
    assert!(put_created.metadata.uid.is_some());
}

#[tokio::test]
async fn rbac_refuses_like_the_real_apiserver() {
    let (emu, secrets) = cluster().await;
    emu.put(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": NS}}),
    );
    emu.allow("get", "secrets", Some(NS));
    emu.allow("*", "leases", None);
    emu.deny("delete", "leases", Some("kube-system"));

    assert!(secrets.get("db").await.is_ok());
    let patch = json!({"metadata": {"labels": {"x": "y"}}});
    let refused = api_error(
        secrets
            .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        refused.message,
        r#"secrets "db" is forbidden: User "system:serviceaccount:default:secret-ferry" cannot patch resource "secrets" in API group "" in the namespace "app""#
    );
    let all: Api<Secret> = Api::all(emu.client().await);
    let cluster_list = api_error(all.list(&ListParams::default()).await);
    assert!(cluster_list
        .message
        .ends_with(r#"cannot list resource "secrets" in API group "" at the cluster scope"#));

    let system: Api<Lease> = Api::namespaced(emu.client().await, "kube-system");
    system
        .create(&PostParams::default(), &lease("l", "me"))
        .await
        .unwrap();
    let denied = api_error(system.delete("l", &DeleteParams::default()).await);
    assert!(
        denied
            .message
            .contains(r#"in API group "coordination.k8s.io" in the namespace "kube-system""#),
        "{}",
        denied.message
    );

    let reviews: Api<SelfSubjectAccessReview> = Api::all(emu.client().await);
    let ask = |verb: &str, resource: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(NS.into()),
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let allowed = |r: SelfSubjectAccessReview| r.status.unwrap().allowed;
    assert!(allowed(
        reviews
            .create(&PostParams::default(), &ask("get", "secrets"))
            .await
            .unwrap()
    ));
    assert!(!allowed(
        reviews
            .create(&PostParams::default(), &ask("patch", "secrets"))
            .await
            .unwrap()
    ));
}

#[tokio::test]
async fn injected_429_and_500_reach_the_client_and_times_is_honoured() {
    let (emu, _) = cluster().await;
    let mut config = kube::Config::new(emu.url().parse().unwrap());
    config.default_retry = false;
    let secrets: Api<Secret> = Api::namespaced(Client::try_from(config).unwrap(), NS);
    emu.put(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": NS}}),
    );

    emu.inject(Fault::kube("get", "secrets", 429).times(1));
    let throttled = api_error(secrets.get("db").await);
    assert_eq!(
        (throttled.code, throttled.reason.as_str()),
        (429, "TooManyRequests")
    );
    assert!(secrets.get("db").await.is_ok());

    emu.inject(Fault::kube("*", "secrets", 500).times(2));
    for _ in 0..2 {
        let failed = api_error(secrets.list(&ListParams::default()).await);
        assert_eq!(
            (failed.code, failed.reason.as_str()),
            (500, "InternalError")
        );
    }
    assert!(secrets.list(&ListParams::default()).await.is_ok());
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200, 500, 500, 200]);
}

#[tokio::test]
async fn kube_retries_an_injected_429_on_its_own() {
    let (emu, secrets) = cluster().await;
    emu.put(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": NS}}),
    );
    emu.inject(Fault::kube("get", "secrets", 429).times(1).retry_after(0));
    assert!(secrets.get("db").await.is_ok());
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn a_delay_fault_hangs_then_serves() {
    let (emu, secrets) = cluster().await;
    emu.put(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": NS}}),
    );
    emu.inject(
        Fault::kube("get", "*", 0)
            .delay(Duration::from_millis(300))
            .times(1),
    );
    let started = Instant::now();
    assert!(secrets.get("db").await.is_ok());
    assert!(started.elapsed() >= Duration::from_millis(300));
    emu.inject(Fault::kube("*", "*", 500));
    assert_eq!(api_error(secrets.get("db").await).code, 500);
    assert_eq!(api_error(secrets.get("db").await).code, 500);
    emu.clear_faults();
    assert!(secrets.get("db").await.is_ok());
}

#[tokio::test]
async fn kubeconfig_works_with_from_custom_kubeconfig() {
    let (emu, _) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let path = emu.write_kubeconfig(dir.path(), NS);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, NS);
    let secrets: Api<Secret> = Api::default_namespaced(Client::try_from(config).unwrap());
    secrets
        .create(&PostParams::default(), &secret("via-kubeconfig", &[], &[]))
        .await
        .unwrap();
    assert!(emu.get("Secret", NS, "via-kubeconfig").is_some());
}

/// `Config::infer()` reads KUBECONFIG from the environment, which a test must not change
/// in its own multi-threaded process: a child process of this test binary runs
/// `infer_child` with KUBECONFIG set.
#[test]
fn kubeconfig_works_with_infer_and_kubeconfig_env() {
    let emu = KubeEmulator::start();
    emu.add_namespace(NS, &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = emu.write_kubeconfig(dir.path(), NS);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &crate::common::test_path(module_path!(), "infer_child"),
            "--ignored",
            "--test-threads=1",
        ])
        .env("KUBECONFIG", &path)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}"
    );
    assert!(emu.get("Secret", NS, "via-infer").is_some());
}

#[tokio::test]
#[ignore = "run by kubeconfig_works_with_infer_and_kubeconfig_env with KUBECONFIG set"]
async fn infer_child() {
    let config = kube::Config::infer().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(Client::try_from(config).unwrap());
    secrets
        .create(&PostParams::default(), &secret("via-infer", &[], &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn request_log_records_and_counts_verbs() {
    let (emu, secrets) = cluster().await;
    let pp = PostParams {
        field_manager: Some("creator".into()),
        ..PostParams::default()
    };
    secrets.create(&pp, &secret("db", &[], &[])).await.unwrap();
    secrets.get("db").await.unwrap();
    secrets.list(&ListParams::default()).await.unwrap();
    let config = apply_config("db", json!({"k": b64("v")}));
    secrets
        .patch(
            "db",
            &PatchParams::apply("secret-ferry"),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    let merge = json!({"metadata": {"labels": {"a": "b"}}});
    secrets
        .patch("db", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();

    for (verb, n) in [
        ("create", 1),
        ("get", 1),
        ("list", 1),
        ("patch", 2),
        ("delete", 1),
        ("update", 0),
    ] {
        assert_eq!(emu.count(verb, "secrets"), n, "{verb}");
    }
    let log = emu.requests();
    let apply = &log[3];
    assert_eq!(apply.method, "PATCH");
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(apply.field_manager.as_deref(), Some("secret-ferry"));
    assert_eq!(
        (apply.namespace.as_deref(), apply.name.as_deref()),
        (Some(NS), Some("db"))
    );
    assert_eq!(apply.path, "/api/v1/namespaces/app/secrets/db");
    assert!(apply.query.contains("fieldManager=secret-ferry"));
    assert_eq!(log[0].status, 201);
    assert_eq!(log[0].field_manager.as_deref(), Some("creator"));
    assert_eq!(
        log.iter().map(|r| r.verb.as_str()).collect::<Vec<_>>(),
        ["create", "get", "list", "patch", "patch", "delete"]
    );
    emu.reset_log();
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn create_records_the_field_manager_as_an_update_entry() {
    let (emu, secrets) = cluster().await;
    let pp = PostParams {
        field_manager: Some("creator".into()),
        ..PostParams::default()
    };
    secrets
        .create(&pp, &secret("db", &[("k", "v")], &[]))
        .await
        .unwrap();
    assert_eq!(
        owners(&emu, "db", &["data", "k"]),
        [("creator".into(), "Update".into())]
    );
}

#[tokio::test]
async fn seeded_ownership_from_put_is_enforced_on_apply() {
    let (emu, secrets) = cluster().await;
    emu.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": NS, "managedFields": [{
            "manager": "helm", "operation": "Apply", "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}, "f:password": {}}},
        }]},
        "stringData": {"password": "from-helm"},
    }));
    let config = apply_config("db", json!({"password": b64("from-ferry")}));
    let conflict = api_error(
        secrets
            .patch(
                "db",
                &PatchParams::apply("secret-ferry"),
                &Patch::Apply(&config),
            )
            .await,
    );
    assert!(
        conflict.message.contains(r#"conflict with "helm""#),
        "{}",
        conflict.message
    );
    assert_eq!(emu.count("patch", "secrets"), 1);
}

#[tokio::test]
async fn namespaces_events_version_and_unknown_paths() {
    let (emu, _) = cluster().await;
    let client = emu.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labelled = namespaces
        .list(&ListParams::default().labels("team=payments"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 1);
    assert_eq!(
        labelled.items[0].metadata.labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
        NS
    );

    let new_events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    let event = k8s_openapi::api::events::v1::Event {
        metadata: ObjectMeta {
            generate_name: Some("db.".into()),
            ..ObjectMeta::default()
        },
        reason: Some("Synced".into()),
        note: Some("wrote secret db".into()),
        ..Default::default()
    };
    let created = new_events
        .create(&PostParams::default(), &event)
        .await
        .unwrap();
    assert!(created.metadata.name.unwrap().starts_with("db."));
    let core_events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), NS);
    let core = k8s_openapi::api::core::v1::Event {
        metadata: ObjectMeta {
            name: Some("db.1".into()),
            ..ObjectMeta::default()
        },
        reason: Some("Failed".into()),
        ..Default::default()
    };
    core_events
        .create(&PostParams::default(), &core)
        .await
        .unwrap();
    let reasons: Vec<Value> = emu.events().iter().map(|e| e["reason"].clone()).collect();
    assert_eq!(reasons, [json!("Synced"), json!("Failed")]);

    assert_eq!(client.apiserver_version().await.unwrap().major, "1");
    let unknown = hyper::http::Request::get("/apis/example.com/v1/widgets")
        .body(Vec::new())
        .unwrap();
    let missing = api_error(client.request_text(unknown).await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(emu.requests().last().unwrap().status, 404);
}

#[tokio::test]
async fn field_selectors_and_namespace_deletion() {
    let (emu, secrets) = cluster().await;
    for name in ["a", "b"] {
        secrets
            .create(&PostParams::default(), &secret(name, &[], &[]))
            .await
            .unwrap();
    }
    let only_b = secrets
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    let names: Vec<_> = only_b
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["b"]);
    let unsupported = api_error(
        secrets
            .list(&ListParams::default().fields("data.k=v"))
            .await,
    );
    assert_eq!(
        (unsupported.code, unsupported.reason.as_str()),
        (400, "BadRequest")
    );

    let namespaces: Api<Namespace> = Api::all(emu.client().await);
    assert!(namespaces
        .delete(NS, &DeleteParams::default())
        .await
        .is_ok());
    assert_eq!(api_error(namespaces.get(NS).await).code, 404);
    assert!(emu.list("Secret", Some(NS)).is_empty());
}

#[tokio::test]
async fn dry_runs_answer_without_storing() {
    let (emu, secrets) = cluster().await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = secrets
        .create(&dry, &secret("db", &[("k", "v")], &[]))
        .await
        .unwrap();
    assert_eq!(value(&answered, "k").as_deref(), Some("v"));
    assert!(emu.get("Secret", NS, "db").is_none());

    secrets
        .create(&PostParams::default(), &secret("db", &[("k", "v")], &[]))
        .await
        .unwrap();
    let counter = emu.resource_version();
    let patch = json!({"data": {"k": b64("other")}});
    let previewed = secrets
        .patch(
            "db",
            &PatchParams::default().dry_run(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    assert_eq!(value(&previewed, "k").as_deref(), Some("other"));
    assert!(secrets
        .delete("db", &DeleteParams::default().dry_run())
        .await
        .is_ok());
    assert_eq!(emu.resource_version(), counter);
    assert_eq!(
        value(&secrets.get("db").await.unwrap(), "k").as_deref(),
        Some("v")
    );
}
