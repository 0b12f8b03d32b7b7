//! The init-only shape, played: `run --once` in an init container, the app after it.
use super::assert_hardened;
use super::podman::{app_image, image, Played};
use super::render::{external_id_secret, ferry_values, render, Inputs};
use crate::common::{canary, capture_logs, cross_account, heavy, wait_for, CrossAccount};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn init_only(
    fx: &CrossAccount,
    secret_id: &str,
    external_id: &std::path::Path,
    empty_dirs: &std::path::Path,
) -> super::render::Rendered {
    let config = json!({
        "roles": {"shared": {"roleArn": fx.role_arn}},
        "secrets": [{
            "name": "db", "secretId": secret_id, "role": "shared",
            "targets": [{"file": {"path": "/var/run/secrets/ferry/db.env", "format": "env", "mode": "0440"}}],
        }],
    });
    let values = json!({"image": app_image(), "secret-ferry": ferry_values(fx, 9779, config)});
    let rendered = render(
        "init-only",
        &values,
        &Inputs {
            secrets: vec![("secret-ferry-external-id", external_id)],
            empty_dirs: Some(empty_dirs),
            ..Inputs::default()
        },
    );
    // An init container has no port and no probe: nothing for podman to refuse there.
    assert_eq!(
        rendered.overlay,
        [
            "secret-ferry: env POD_NAMESPACE",
            "volume ci-secret-ferry-external-id: secret secret-ferry-external-id",
            "restartPolicy",
            "volume ferry-secrets: emptyDir",
            "supplementalGroups",
        ]
    );
    let ferry = rendered.container("secret-ferry");
    assert_hardened(ferry);
    assert!(
        ferry["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--once"),
        "{ferry}"
    );
    image();
    rendered
}

/// Unix seconds, for `podman events --since`: a second after anything earlier pods (with the
/// same container names) did.
fn now() -> u64 {
    std::thread::sleep(Duration::from_millis(1100));
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The exit codes podman recorded for a container that is gone (init containers are removed
/// once they ran).
fn died_with(container: &str, since: u64) -> Vec<String> {
    let out = Command::new("podman")
        .args([
            "events",
            "--stream=false",
            "--since",
            &since.to_string(),
            "--filter",
            &format!("container={container}"),
            "--filter",
            "event=died",
            "--format",
            "{{.ContainerExitCode}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "plays pods in podman: scripts/test.sh runs it after scripts/image.sh"]
async fn the_init_container_syncs_once_and_exits_0_before_the_app_starts_with_its_files() {
    let _heavy = heavy();
    capture_logs();
    let password = canary("init-pw");
    let fx = cross_account("app/db", &format!(r#"{{"password":"{password}"}}"#)).await;
    let external_id = external_id_secret(&fx);
    let empty_dirs = tempfile::tempdir().unwrap();
    let rendered = init_only(&fx, "app/db", external_id.path(), empty_dirs.path());
    let since = now();
    let pod = Played::play(&rendered.objects).unwrap_or_else(|r| panic!("kube play: {r}"));
    assert_eq!(
        died_with(&pod.container("secret-ferry"), since),
        ["0"],
        "the init container's exit"
    );
    assert_eq!(pod.state("app"), "running");
    let env = pod.exec("app", &["cat", "/var/run/secrets/ferry/db.env"]);
    assert!(env.status.success(), "the app cannot read db.env: {env:?}");
    assert_eq!(
        String::from_utf8_lossy(&env.stdout),
        format!("password='{password}'\n")
    );
    let stat = pod.exec(
        "app",
        &["stat", "-c", "%u %g %a", "/var/run/secrets/ferry/db.env"],
    );
    assert_eq!(
        String::from_utf8_lossy(&stat.stdout).trim(),
        "65532 65532 440"
    );
    pod.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "plays pods in podman: scripts/test.sh runs it after scripts/image.sh"]
async fn a_secret_that_does_not_exist_fails_the_init_container_and_the_app_never_starts() {
    let _heavy = heavy();
    capture_logs();
    let fx = cross_account(
        "app/db",
        &format!(r#"{{"password":"{}"}}"#, canary("init-pw")),
    )
    .await;
    let external_id = external_id_secret(&fx);
    let empty_dirs = tempfile::tempdir().unwrap();
    let rendered = init_only(&fx, "app/missing", external_id.path(), empty_dirs.path());
    // A failed init container is retried (restartPolicy OnFailure), as a kubelet does; podman's
    // kube play then waits for ever, so the test watches the container instead.
    let since = now();
    let pod = Played::start(&rendered.objects);
    let container = pod.container("secret-ferry");
    let codes = wait_for(Duration::from_secs(60), || {
        let codes = died_with(&container, since);
        (!codes.is_empty()).then_some(codes)
    })
    .expect("the init container never exited");
    assert!(
        codes.iter().all(|c| c != "0"),
        "every run failed: {codes:?}"
    );
    let logs = pod.logs("secret-ferry");
    assert!(
        logs.contains("app/missing"),
        "the log names the secret: {logs}"
    );
    assert!(logs.contains("1 of 1 secret(s) failed to sync"), "{logs}");
    assert_eq!(pod.state("app"), "created", "the app must not start");
    pod.down();
}
