//! The image on its own, run as the chart runs it (user 65532, read-only root, no
//! capability): its version, and a missing, unreadable or misplaced config, which must fail
//! with the path and exit 78 as outside a container.
use super::podman::{image, podman};
use crate::common::capture;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

const CONFIG: &str = "/etc/secret-ferry/config/config.yaml";

/// `podman run` of the image with the chart's container settings and `mounts` (host path,
/// container path).
fn run(mounts: &[(&std::path::Path, &str)], args: &[&str]) -> Output {
    let mut cmd = podman();
    cmd.args([
        "run",
        "--rm",
        "--pull=never",
        "--network",
        "none",
        "--read-only",
        "--user",
        "65532:65532",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]);
    for (host, path) in mounts {
        cmd.args(["--volume", &format!("{}:{path}:ro", host.display())]);
    }
    let out = cmd.arg(image()).args(args).output().unwrap();
    capture("podman-run-stdout", &out.stdout);
    capture("podman-run-stderr", &out.stderr);
    out
}

use crate::common::output_text as text;

#[test]
#[ignore = "runs the image in podman: scripts/test.sh runs it after scripts/image.sh"]
fn the_image_prints_its_version() {
    let out = run(&[], &["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("secret-ferry {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
#[ignore = "runs the image in podman: scripts/test.sh runs it after scripts/image.sh"]
fn a_missing_unreadable_or_misplaced_config_exits_78_naming_the_path() {
    // No config at all: the image's CMD reads the chart's mount path.
    let out = run(&[], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains(CONFIG), "{}", text(&out));

    // A config only root may read.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "secrets: []\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&[(dir.path(), "/etc/secret-ferry/config")], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains(CONFIG), "{}", text(&out));
    assert!(text(&out).contains("ermission denied"), "{}", text(&out));

    // Mounted one directory too high: /etc/secret-ferry/config.yaml.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&[(dir.path(), "/etc/secret-ferry")], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains(CONFIG), "{}", text(&out));
}
