//! Figures for the Kubernetes target, not a test of them: RSS of the daemon keeping 1,000
//! Kubernetes Secrets, and API requests per poll. Ignored by default; run with
//!
//! ```text
//! SECRET_FERRY_BIN=target/release/secret-ferry cargo test --test it kube_bench:: -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used)] // a benchmark fails loudly on unexpected errors

use crate::common;
use crate::kube_emulator;

use common::*;
use kube_emulator::KubeEmulator;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints figures"]
async fn controller_rss_and_requests_at_1000_kubernetes_secrets() {
    // Timing- and resource-sensitive: never beside another heavy test (common::heavy).
    let _heavy = heavy();
    const N: usize = 1000;
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let emulator = KubeEmulator::start();
    emulator.add_namespace("app", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = emulator.write_kubeconfig(tmp.path(), "app");
    let mut yaml = "region: us-east-1\napiRateLimit: 10000\nsecrets:\n".to_owned();
    // One canary for the bulk: every password starts with it (about 40 bytes, as before).
    let prefix = canary("bench");
    for i in 0..N {
        create_secret(
            &admin,
            &format!("k/s{i}"),
            &format!(r#"{{"user":"u{i}","password":"{prefix}-{i}"}}"#),
        )
        .await;
        yaml.push_str(&format!(
            "  - {{name: s{i}, secretId: k/s{i}, refreshInterval: 1h, targets: [{{kubernetesSecret: {{name: s{i}}}}}]}}\n"
        ));
    }
    let config = write_config(tmp.path(), &yaml);
    let binary = std::env::var("SECRET_FERRY_BIN").unwrap_or_else(|_| binary().to_owned());
    let port = free_port();
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut cmd = Command::new(&binary);
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "app")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let daemon = Running::start(&mut cmd);
    let ready = wait_for(Duration::from_secs(300), || {
        get(admin_addr, "/readyz").filter(|r| r.0 == 200)
    });
    assert!(ready.is_some());
    let first_sync_s = started.elapsed().as_secs_f64();
    assert_eq!(emulator.list("Secret", Some("app")).len(), N);
    let rss_first = status_kib(daemon.pid(), "VmRSS:");

    emulator.reset_log();
    let polls = 3;
    for _ in 0..polls {
        http("POST", admin_addr, "/refresh", Some(("text/plain", ""))).unwrap();
        std::thread::sleep(Duration::from_secs(3));
    }
    let unchanged_requests = emulator.requests().len();

    let rotated = canary("rotated");
    put_secret(
        &admin,
        "k/s7",
        &format!(r#"{{"user":"u7","password":"{rotated}"}}"#),
    )
    .await;
    emulator.reset_log();
    http("POST", admin_addr, "/refresh", Some(("text/plain", ""))).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let changed: Vec<String> = emulator
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.verb, r.resource))
        .collect();
    let figures = serde_json::json!({
        "binary": binary,
        "secrets": N,
        "first_sync_s": (first_sync_s * 10.0).round() / 10.0,
        "rss_kib_after_first_sync": rss_first,
        "rss_kib_end": status_kib(daemon.pid(), "VmRSS:"),
        "hwm_kib": status_kib(daemon.pid(), "VmHWM:"),
        "kube_requests_per_unchanged_poll": unchanged_requests as f64 / f64::from(polls),
        "kube_requests_for_one_changed_secret": changed,
    });
    println!("{figures}");
    assert_eq!(unchanged_requests, 0);
    drop(daemon);
}

/// How much of the per-secret memory is the metrics registry: RSS before and after creating
/// every series of 10,000 secrets, in this process.
#[test]
#[ignore = "a benchmark: prints figures"]
fn metrics_memory_per_secret() {
    // Timing- and resource-sensitive: never beside another heavy test (common::heavy).
    let _heavy = heavy();
    use secret_ferry::metrics::Metrics;
    let rss = || status_kib(std::process::id(), "VmRSS:");
    let m = Metrics::new().unwrap();
    let before = rss();
    for i in 0..10_000 {
        let s = format!("s{i:05}");
        m.register_secret(s.as_str(), Duration::from_secs(60));
        m.sync_succeeded(
            &s,
            Duration::from_millis(3),
            Some("f6a7e1a2-3b4c-4d5e-8f90-0123456789ab"),
            Some("us-east-1"),
        );
    }
    let after = rss();
    println!(
        "{{\"metrics_kib_per_secret\": {:.2}, \"rss_kib_before\": {before}, \"rss_kib_after\": {after}}}",
        (after - before) as f64 / 10_000.0
    );
}
