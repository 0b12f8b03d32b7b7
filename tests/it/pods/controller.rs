//! The controller shape, played: the chart's Deployment writes a Kubernetes Secret through
//! the in-cluster configuration a pod has (KUBERNETES_SERVICE_HOST/PORT, the service-account
//! token, ca.crt and namespace as files), to the Kubernetes API emulator behind HTTPS.
use super::podman::{image, Played};
use super::render::{external_id_secret, ferry_values, render, secret_dir, Inputs};
use super::{assert_hardened, assert_runs_as_rendered, assert_stopped_cleanly, grace};
use crate::common::tls_front::TlsFront;
use crate::common::{
    canary, capture_logs, cross_account, free_port, get, heavy, put_secret, wait_for,
};
use crate::kube_emulator::KubeEmulator;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

fn secret_value(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "plays pods in podman: scripts/test.sh runs it after scripts/image.sh"]
async fn the_controller_pod_writes_a_kubernetes_secret_through_its_in_cluster_configuration() {
    let _heavy = heavy();
    capture_logs();
    let first = canary("ctl-pw");
    let fx = cross_account("app/db", &format!(r#"{{"password":"{first}"}}"#)).await;
    let external_id = external_id_secret(&fx);
    let emulator = KubeEmulator::start();
    emulator.add_namespace("app", &[]);
    emulator.add_namespace("secret-ferry", &[]);
    let front = TlsFront::start(
        emulator
            .url()
            .trim_start_matches("http://")
            .parse()
            .unwrap(),
    );
    // What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount.
    let token = canary("sa-token");
    let ca = std::fs::read_to_string(front.ca_crt()).unwrap();
    let service_account = secret_dir(
        &[
            ("token", &token),
            ("ca.crt", &ca),
            ("namespace", "secret-ferry"),
        ],
        0o644,
    );

    let port = free_port();
    let config = json!({
        "roles": {"shared": {"roleArn": fx.role_arn}},
        "secrets": [{
            "name": "db", "secretId": "app/db", "role": "shared", "refreshInterval": "2s",
            "targets": [{"kubernetesSecret": {"name": "db-credentials", "namespace": "app", "creationPolicy": "Owner"}}],
        }],
    });
    let rendered = render(
        "controller-1",
        &ferry_values(&fx, port, config),
        &Inputs {
            secrets: vec![("secret-ferry-external-id", external_id.path())],
            kube_api: Some((format!("127.0.0.1:{}", front.port), service_account.path())),
            empty_dirs: None,
        },
    );
    assert_eq!(
        rendered.overlay,
        [
            "service account",
            "secret-ferry: ports",
            "secret-ferry: env POD_NAMESPACE",
            "volume ci-secret-ferry-external-id: secret secret-ferry-external-id",
            "supplementalGroups",
        ]
    );
    assert_eq!(
        rendered.rendered_pods[0]["automountServiceAccountToken"],
        true
    );
    assert_hardened(rendered.container("secret-ferry"));
    // RBAC exactly as rendered: the emulator refuses whatever the chart's Roles do not grant.
    for role in &rendered.rbac {
        let namespace = role["metadata"]["namespace"].as_str();
        for rule in role["rules"].as_array().unwrap() {
            for verb in rule["verbs"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    emulator.allow(
                        verb.as_str().unwrap(),
                        resource.as_str().unwrap(),
                        namespace,
                    );
                }
            }
        }
    }
    assert!(
        !rendered.rbac.is_empty(),
        "the chart renders the controller's Roles"
    );
    image();

    let pod = Played::play(&rendered.objects).unwrap_or_else(|r| panic!("kube play: {r}"));
    let written = wait_for(Duration::from_secs(60), || {
        emulator
            .get("Secret", "app", "db-credentials")
            .filter(|s| secret_value(s, "password").as_deref() == Some(first.as_str()))
    });
    assert!(
        written.is_some(),
        "no Secret in 60 s; log: {}",
        pod.logs("secret-ferry")
    );
    let requests = emulator.requests();
    assert!(
        requests.iter().any(|r| r.resource == "secrets"
            && r.verb == "patch"
            && (r.status == 200 || r.status == 201)),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| r.status != 403),
        "RBAC as rendered sufficed: {requests:?}"
    );

    let (path, probe_port) = rendered.probe("secret-ferry", "readinessProbe");
    let ready = wait_for(Duration::from_secs(10), || {
        get(([127, 0, 0, 1], probe_port).into(), &path).filter(|(s, _)| *s == 200)
    });
    assert!(ready.is_some(), "{path} never answered 200");
    assert_runs_as_rendered(&pod, "secret-ferry");

    let second = canary("ctl-pw2");
    put_secret(
        &fx.admin,
        "app/db",
        &format!(r#"{{"password":"{second}"}}"#),
    )
    .await;
    let rotated = wait_for(Duration::from_secs(10), || {
        emulator
            .get("Secret", "app", "db-credentials")
            .filter(|s| secret_value(s, "password").as_deref() == Some(second.as_str()))
    });
    assert!(rotated.is_some(), "the rotation did not reach the Secret");

    let grace = grace(&rendered);
    let took = pod.stop("secret-ferry", grace);
    assert_stopped_cleanly(&pod, "secret-ferry", took, grace);
    let logs = pod.logs("secret-ferry");
    assert!(
        !logs.contains(&token),
        "the service-account token in the log"
    );
    pod.down();
    drop(front);
}
