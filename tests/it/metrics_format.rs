//! The /metrics output as a real Prometheus text-format parser reads it
//! (`prometheus_client.parser` from the test virtualenv): every family, type and label set.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    labels = sorted({k for s in family.samples for k in s.labels if k not in ("le", "quantile")})
    out[family.name] = {"type": family.type, "labels": labels, "samples": len(family.samples)}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_with_the_documented_names_and_labels() {
    let value = canary("value");
    let fx = cross_account("app/db", &format!(r#"{{"password":"{value}"}}"#)).await;
    let (fx_moto, role_arn, external_id) = (&fx.moto, &fx.role_arn, &fx.external_id);
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, external_id).unwrap();
    let yaml = ConfigYaml::new()
        .region(REGION)
        .role("shared", &format!("\"{role_arn}\""), &ext)
        .secret("db", "app/db")
        .uses_role("shared")
        .option("refreshInterval", "1s")
        .file_target(&tmp.path().join("out"))
        .option(
            "onChange",
            format!("[{{touch: {}}}]", tmp.path().join("changed").display()),
        )
        .build();
    let config = write_config(tmp.path(), &yaml);
    let port = free_port();
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let daemon = Running::start(&mut daemon(&config, &fx_moto.endpoint(), port));
    assert!(
        wait_for(Duration::from_secs(20), || get(admin_addr, "/readyz")
            .filter(|r| r.0 == 200))
        .is_some()
    );
    let (status, text) = get(admin_addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    // A real answer for `promtool check metrics` (scripts/alert-rules-test.sh lints it).
    let dir = harness_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metrics-answer.prom"), &text).unwrap();

    let mut child = std::process::Command::new(python())
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = captured(child.wait_with_output().unwrap());
    assert!(
        out.status.success(),
        "the parser refused the exposition:\n{text}"
    );
    let families: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap();
    // The parser reports counters without their `_total` suffix.
    let expected: &[(&str, &str, &[&str])] = &[
        ("secret_ferry_build_info", "gauge", &["version"]),
        ("secret_ferry_secrets", "gauge", &["state"]),
        ("secret_ferry_secret_sync", "counter", &["result", "secret"]),
        (
            "secret_ferry_secret_last_success_timestamp_seconds",
            "gauge",
            &["secret"],
        ),
        ("secret_ferry_secret_stale", "gauge", &["secret"]),
        (
            "secret_ferry_sync_duration_seconds",
            "histogram",
            &["result"],
        ),
        ("secret_ferry_secrets_behind", "gauge", &[]),
        ("secret_ferry_secrets_named", "gauge", &[]),
        ("secret_ferry_poll_groups_stalled", "gauge", &[]),
        (
            "secret_ferry_secret_version_info",
            "gauge",
            &["secret", "version_id"],
        ),
        (
            "secret_ferry_secret_region_info",
            "gauge",
            &["region", "secret"],
        ),
        (
            "secret_ferry_credential_refresh",
            "counter",
            &["result", "role"],
        ),
        (
            "secret_ferry_credential_expiry_timestamp_seconds",
            "gauge",
            &["role"],
        ),
        (
            "secret_ferry_assume_role_duration_seconds",
            "histogram",
            &["role"],
        ),
        (
            "secret_ferry_credential_consecutive_failures",
            "gauge",
            &["role"],
        ),
        (
            "secret_ferry_aws_api_calls",
            "counter",
            &["operation", "result", "service"],
        ),
        ("secret_ferry_leader", "gauge", &[]),
        ("secret_ferry_runtime_tasks", "gauge", &[]),
    ];
    for (name, kind, labels) in expected {
        let family = families
            .get(*name)
            .unwrap_or_else(|| panic!("no family {name} in {families:#?}"));
        assert_eq!(family["type"], *kind, "{name}");
        let got: BTreeSet<&str> = family["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        let want: BTreeSet<&str> = labels.iter().copied().collect();
        assert_eq!(got, want, "{name}");
    }
    for name in families.keys() {
        assert!(
            name.starts_with("secret_ferry_"),
            "unexpected family {name}"
        );
    }
    assert!(
        text.contains(r#"secret_ferry_secrets{state="synced"} 1"#),
        "{text}"
    );
    let output = daemon.stop();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert_no_leak(&text, &[&value, external_id]);
    assert_no_leak(&logs, &[&value, external_id]);
}
