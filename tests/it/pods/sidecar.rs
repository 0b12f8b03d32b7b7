//! The example app chart's plain sidecar shape, played: the app reads what the daemon writes
//! through the shared emptyDir, rotations reach it, and the pod stops cleanly.
use super::podman::{app_image, image, image_binary, rss_kib, Played};
use super::render::{external_id_secret, ferry_values, render, secret_dir, Inputs, Rendered};
use super::{assert_hardened, assert_stopped_cleanly, grace, untorn};
use crate::common::{
    canary, capture_logs, cross_account, daemon_of, free_port, get, heavy, put_secret, read,
    record_figures, wait_for, write_config, Running,
};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const MOUNT: &str = "/var/run/secrets/ferry";
const INTERVAL: Duration = Duration::from_secs(2);

fn config(fx: &crate::common::CrossAccount) -> Value {
    json!({
        "region": "us-east-1",
        "roles": {"shared": {"roleArn": fx.role_arn}},
        "secrets": [{
            "name": "db", "secretId": "app/db", "role": "shared", "refreshInterval": "2s",
            "targets": [{"file": {"dir": format!("{MOUNT}/db"), "mode": "0440"}}],
        }],
    })
}

fn db_value(password: &str) -> String {
    format!(r#"{{"username":"app","password":"{password}"}}"#)
}

fn sidecar(
    fx: &crate::common::CrossAccount,
    external_id: &Path,
    empty_dirs: &Path,
    extra: Value,
) -> (Rendered, u16) {
    let port = free_port();
    let mut ferry = ferry_values(fx, port, config(fx));
    crate::pods::merge(&mut ferry, extra);
    let values = json!({"image": app_image(), "secret-ferry": ferry});
    let rendered = render(
        "sidecar",
        &values,
        &Inputs {
            secrets: vec![("secret-ferry-external-id", external_id)],
            empty_dirs: Some(empty_dirs),
            ..Inputs::default()
        },
    );
    (rendered, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "plays pods in podman: scripts/test.sh runs it after scripts/image.sh"]
async fn the_app_reads_the_synced_files_and_a_rotation_reaches_it_within_the_interval() {
    let _heavy = heavy();
    capture_logs();
    let first = canary("pod-pw");
    let fx = cross_account("app/db", &db_value(&first)).await;
    let external_id = external_id_secret(&fx);
    let empty_dirs = tempfile::tempdir().unwrap();
    let (rendered, _) = sidecar(&fx, external_id.path(), empty_dirs.path(), json!({}));
    assert_eq!(
        rendered.overlay,
        [
            "secret-ferry: ports",
            "secret-ferry: env POD_NAMESPACE",
            "volume ci-secret-ferry-external-id: secret secret-ferry-external-id",
            "volume ferry-secrets: emptyDir",
            "supplementalGroups",
        ],
        "the overlay changed only what podman 4.3 cannot play"
    );
    let ferry = rendered.container("secret-ferry");
    assert_hardened(ferry);
    let (probe_path, probe_port) = rendered.probe("secret-ferry", "readinessProbe");
    image();

    let started = Instant::now();
    let pod = Played::play(&rendered.objects).unwrap_or_else(|r| panic!("kube play: {r}"));
    let volume = empty_dirs.path().join("ferry-secrets");
    let db = volume.join("db");
    let first_file = wait_for(Duration::from_secs(60), || {
        (read(&db, "password").as_deref() == Some(first.as_str())).then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("no file in 60 s; log: {}", pod.logs("secret-ferry")));

    // What the app container sees, as its own user (10001, with the pod's group 65532).
    let id = pod.exec("app", &["id"]);
    let id = String::from_utf8_lossy(&id.stdout).into_owned();
    assert!(id.starts_with("uid=10001"), "{id}");
    let cat = pod.exec("app", &["cat", &format!("{MOUNT}/db/password")]);
    assert!(
        cat.status.success(),
        "the app cannot read its file: {cat:?}"
    );
    assert_eq!(String::from_utf8_lossy(&cat.stdout), first);
    // Owned and moded as docs/configuration.md says: the daemon's user, the target's mode;
    // directories 0755.
    let stat = |path: &str| {
        let out = pod.exec("app", &["stat", "-c", "%u %g %a", path]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        stat(&format!("{MOUNT}/db/..data/password")),
        "65532 65532 440"
    );
    assert_eq!(stat(&format!("{MOUNT}/db/..data/")), "65532 65532 755");
    let write = pod.exec(
        "app",
        &["sh", "-c", &format!("echo x > {MOUNT}/db/intruder")],
    );
    assert!(
        !write.status.success(),
        "the app's mount is read-only as rendered"
    );

    // /readyz through the rendered probe (host network: the pod's port is the host's).
    let ready = wait_for(Duration::from_secs(10), || {
        get(([127, 0, 0, 1], probe_port).into(), &probe_path).filter(|(s, _)| *s == 200)
    });
    assert!(
        ready.is_some(),
        "{probe_path} on {probe_port} never answered 200"
    );
    assert_eq!(
        rendered.probe("secret-ferry", "livenessProbe").0,
        "/healthz",
        "the rendered liveness probe"
    );
    assert_eq!(
        get(([127, 0, 0, 1], probe_port).into(), "/healthz").map(|r| r.0),
        Some(200)
    );
    super::assert_runs_as_rendered(&pod, "secret-ferry");

    // Memory at idle, in the container and outside it (the same binary and config).
    std::thread::sleep(Duration::from_secs(3));
    let (inside_rss, inside_anon) = rss_kib(pod.pid("secret-ferry"));
    let (outside_rss, outside_anon) = outside_rss(&fx, external_id.path());

    // A rotation reaches the app's view within the interval + 1 s.
    let second = canary("pod-pw2");
    put_secret(&fx.admin, "app/db", &db_value(&second)).await;
    let rotated_at = Instant::now();
    let landed = wait_for(INTERVAL + Duration::from_secs(5), || {
        (read(&db, "password").as_deref() == Some(second.as_str())).then(|| rotated_at.elapsed())
    })
    .expect("the rotation never landed");
    let cat = pod.exec("app", &["cat", &format!("{MOUNT}/db/password")]);
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        second,
        "the app's view"
    );
    assert!(
        landed <= INTERVAL + Duration::from_secs(1),
        "rotation → app's view took {landed:?}, over the interval + 1 s"
    );

    // `kube down` is a pod stop (SIGTERM) and a removal: stop first, look, then remove.
    let grace = grace(&rendered);
    let took = pod.stop("secret-ferry", grace);
    assert_stopped_cleanly(&pod, "secret-ferry", took, grace);
    untorn(&db, &["password", "username"]);
    assert_eq!(read(&db, "password").as_deref(), Some(second.as_str()));
    pod.down();

    record_figures(
        "pods-sidecar",
        json!({
            "start_to_first_file_ms": first_file.as_millis() as u64,
            "rotation_to_app_ms": landed.as_millis() as u64,
            "interval_ms": INTERVAL.as_millis() as u64,
            "idle_rss_kib_in_container": inside_rss,
            "idle_rss_anon_kib_in_container": inside_anon,
            "idle_rss_kib_outside": outside_rss,
            "idle_rss_anon_kib_outside": outside_anon,
            "sigterm_to_stopped_ms": took.as_millis() as u64,
        }),
    );
}

/// The image's binary run outside any container with the same configuration and the image's
/// `ENV` (`common::image_env`), its idle VmRSS and RssAnon.
fn outside_rss(fx: &crate::common::CrossAccount, external_id: &Path) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(fx);
    cfg["roles"]["shared"]["externalIdFile"] =
        json!(external_id.join("external-id").to_str().unwrap());
    cfg["secrets"][0]["targets"][0]["file"]["dir"] = json!(dir.path().join("db").to_str().unwrap());
    let config = write_config(dir.path(), &serde_json::to_string(&cfg).unwrap());
    let port = free_port();
    let mut outside = daemon_of(&image_binary(), &config, &fx.moto.endpoint(), port);
    outside
        .envs(crate::common::image_env())
        .env("RUST_LOG", "debug");
    let running = Running::start(&mut outside);
    let synced = wait_for(Duration::from_secs(30), || {
        read(&dir.path().join("db"), "password")
    });
    assert!(synced.is_some(), "the outside run did not sync");
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_kib(running.pid());
    running.stop();
    rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "plays pods in podman: scripts/test.sh runs it after scripts/image.sh"]
async fn a_volume_the_image_user_cannot_write_is_named_with_the_uid_and_keeps_the_pod_unready() {
    let _heavy = heavy();
    capture_logs();
    let fx = cross_account("app/db", &db_value(&canary("pod-pw"))).await;
    let external_id = external_id_secret(&fx);
    // The shared volume as a root-owned directory (sidecar.volume is a chart value), holding
    // a file of someone else's that must stay as it is.
    let volume = secret_dir(&[("keep", "not secret-ferry's")], 0o644);
    let empty_dirs = tempfile::tempdir().unwrap();
    let (rendered, _) = sidecar(
        &fx,
        external_id.path(),
        empty_dirs.path(),
        json!({"sidecar": {"volume": {"emptyDir": null, "hostPath": {"path": volume.path().to_str().unwrap(), "type": "Directory"}}}}),
    );
    let (probe_path, probe_port) = rendered.probe("secret-ferry", "readinessProbe");
    let pod = Played::play(&rendered.objects).unwrap_or_else(|r| panic!("kube play: {r}"));
    let said = wait_for(Duration::from_secs(30), || {
        let logs = pod.logs("secret-ferry");
        logs.contains("uid 65532").then_some(logs)
    })
    .unwrap_or_else(|| panic!("no uid in the log: {}", pod.logs("secret-ferry")));
    let line = said
        .lines()
        .find(|l| l.contains("uid 65532"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(&format!("{MOUNT}/db")),
        "names the directory: {line}"
    );
    assert!(line.contains("Permission denied"), "{line}");
    for _ in 0..3 {
        let readyz = get(([127, 0, 0, 1], probe_port).into(), &probe_path);
        assert_eq!(readyz.as_ref().map(|r| r.0), Some(503), "{readyz:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut names: Vec<String> = std::fs::read_dir(volume.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["keep"], "nothing else touched");
    assert_eq!(
        read(volume.path(), "keep").as_deref(),
        Some("not secret-ferry's")
    );
    pod.down();
}
