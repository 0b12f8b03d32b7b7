//! The image and the chart's pods run for real: `podman kube play` of what Helm renders, in
//! every shape podman 4.3 can play, against moto and the Kubernetes API emulator on loopback.
//! The tests are `#[ignore]`d for a plain `cargo test`: they need the image, which
//! `scripts/image.sh` builds, and `scripts/test.sh` runs them after it
//! (`cargo test --test it pods:: -- --ignored`).
//!
//! What podman 4.3 cannot play, and what stands in for it, is listed once, in
//! `.ci/render_pod.py` (PODMAN_GAPS); every test asserts that the overlay changed exactly that.
//! Not playable at all: the native sidecar (podman runs an init container with
//! `restartPolicy: Always` as a plain init container and waits for it to exit, so the app never
//! starts) and the probes as probes (podman turns them into in-container `curl` health checks,
//! which a distroless image cannot run): the tests call the rendered probes' endpoints
//! themselves, as the kubelet would.

mod controller;
mod image;
mod init_only;
mod podman;
mod render;
mod sidecar;

use crate::common::layout;
use podman::Played;
use render::Rendered;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Helm's way of merging values: maps merge key by key, anything else replaces.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The hardening the chart promises for the secret-ferry container, as rendered.
fn assert_hardened(container: &Value) {
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{sc}");
    assert_eq!(sc["runAsUser"], 65532, "{sc}");
    assert_eq!(sc["runAsGroup"], 65532, "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{sc}"
    );
}

/// The running container is what was rendered: user 65532, read-only root, no capability,
/// no privilege escalation; read off the process itself.
fn assert_runs_as_rendered(pod: &Played, container: &str) {
    assert_eq!(
        pod.inspect(container, "{{.HostConfig.ReadonlyRootfs}}"),
        "true"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", pod.pid(container))).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), "65532 65532 65532 65532");
    assert_eq!(field("Gid:"), "65532 65532 65532 65532");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
}

/// The rendered pod's terminationGracePeriodSeconds (Kubernetes' default: 30 s).
fn grace(rendered: &Rendered) -> Duration {
    Duration::from_secs(
        rendered.rendered_pods[0]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30),
    )
}

/// SIGTERM ended the daemon by itself: exit 0, well within the grace period, after draining.
fn assert_stopped_cleanly(pod: &Played, container: &str, took: Duration, grace: Duration) {
    let logs = pod.logs(container);
    assert_eq!(
        pod.exit_code(container),
        0,
        "exit status after SIGTERM; log: {logs}"
    );
    assert!(
        took < grace,
        "the stop took {took:?}, the grace period is {grace:?}"
    );
    assert!(logs.contains("SIGTERM received; draining"), "{logs}");
    assert!(logs.contains("\"stopped\""), "{logs}");
}

/// A file target after a stop: exactly the keys, `..data` and the one directory it points to;
/// no staging directory or temp file left.
fn untorn(dir: &Path, keys: &[&str]) {
    let (names, data) = layout(dir);
    let data = data.expect("..data is a link");
    let current = data.to_str().unwrap().to_owned();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.extend(["..data".to_owned(), current.clone()]);
    expected.sort();
    assert_eq!(names, expected, "the target after the stop");
    let (inside, _) = layout(&dir.join(&current));
    assert_eq!(inside, keys, "the current version holds every key");
}
