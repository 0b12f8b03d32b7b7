//! Two daemons with `--leader-elect` against one Kubernetes API emulator: exactly one writes;
//! when it is killed the other takes over within the lease duration; a graceful stop hands
//! the Lease over at once.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::kube_emulator;

use base64::Engine as _;
use common::*;
use kube_emulator::KubeEmulator;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LEASE: &str = "4s";
const LEASE_DURATION: Duration = Duration::from_secs(4);

fn password(emulator: &KubeEmulator) -> Option<String> {
    let secret = emulator.get("Secret", "app", "db")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["password"].as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn leader_gauge(admin: SocketAddr) -> Option<f64> {
    let (_, text) = get(admin, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("secret_ferry_leader "))
        .and_then(|v| v.trim().parse().ok())
}

fn patches(admin: SocketAddr) -> f64 {
    get(admin, "/metrics")
        .map(|(_, text)| {
            metric_or_zero(
                &text,
                r#"secret_ferry_kube_requests_total{result="success",verb="patch"}"#,
            )
        })
        .unwrap_or(0.0)
}

struct Replica {
    running: Running,
    admin: SocketAddr,
}

fn replica(
    config: &std::path::Path,
    moto: &Moto,
    kubeconfig: &std::path::Path,
    name: &str,
) -> Replica {
    let port = free_port();
    let mut cmd = daemon(config, &moto.endpoint(), port);
    cmd.args([
        "--leader-elect",
        "--lease-duration",
        LEASE,
        "--lease-renew-deadline",
        "3s",
        "--lease-retry-period",
        "500ms",
    ])
    .env("KUBECONFIG", kubeconfig)
    .env("POD_NAMESPACE", "app")
    .env("POD_NAME", name)
    .env("RUST_LOG", "info");
    Replica {
        running: Running::start(&mut cmd),
        admin: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_replica_writes_and_a_follower_takes_over() {
    // Timing- and resource-sensitive: never beside another heavy test (common::heavy).
    let _heavy = heavy();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let (one, two) = (canary("one"), canary("two"));
    create_secret(&admin, "app/db", &format!(r#"{{"password":"{one}"}}"#)).await;
    let emulator = KubeEmulator::start();
    emulator.add_namespace("app", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = emulator.write_kubeconfig(tmp.path(), "app");
    let config = write_config(
        tmp.path(),
        &ConfigYaml::new()
            .region(REGION)
            .secret("db", "app/db")
            .option("refreshInterval", "1s")
            .kube_target("db")
            .build(),
    );
    let a = replica(&config, &moto, &kubeconfig, "replica-a");
    let b = replica(&config, &moto, &kubeconfig, "replica-b");
    let written = wait_for(Duration::from_secs(20), || {
        password(&emulator).filter(|p| *p == one)
    });
    assert!(written.is_some(), "the leader writes");
    let gauges = wait_for(Duration::from_secs(10), || {
        let pair = (leader_gauge(a.admin)?, leader_gauge(b.admin)?);
        (pair.0 + pair.1 == 1.0).then_some(pair)
    })
    .expect("exactly one leader");
    let (leader, follower) = if gauges.0 == 1.0 { (a, b) } else { (b, a) };
    // Several polls pass: the follower makes no write at all, and stays ready to take over.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(patches(follower.admin), 0.0, "a follower never writes");
    assert!(patches(leader.admin) >= 1.0);
    assert_eq!(get(follower.admin, "/readyz").map(|r| r.0), Some(200));

    // Kill the leader outright (no release): the follower takes over once the Lease expires.
    let killed_at = Instant::now();
    drop(leader.running);
    put_secret(&admin, "app/db", &format!(r#"{{"password":"{two}"}}"#)).await;
    let took_over = wait_for(LEASE_DURATION + Duration::from_secs(10), || {
        password(&emulator).filter(|p| *p == two)
    });
    assert!(took_over.is_some(), "the follower must take over and write");
    let failover = killed_at.elapsed();
    println!("fail-over after kill -9: {failover:?} (lease duration {LEASE_DURATION:?})");
    assert!(
        failover <= LEASE_DURATION + Duration::from_secs(3),
        "took {failover:?}"
    );
    assert_eq!(leader_gauge(follower.admin), Some(1.0));
    let lease = emulator.get("Lease", "app", "secret-ferry").unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .starts_with(if gauges.0 == 1.0 {
                "replica-b"
            } else {
                "replica-a"
            }),
        "{lease}"
    );
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1,
        "{lease}"
    );

    // A third replica joins; the leader stops gracefully and hands the Lease over at once.
    let c = replica(&config, &moto, &kubeconfig, "replica-c");
    assert!(wait_for(Duration::from_secs(10), || leader_gauge(c.admin)
        .filter(|g| *g == 0.0))
    .is_some());
    let stopped_at = Instant::now();
    let out = follower.running.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let handed = wait_for(Duration::from_secs(5), || {
        leader_gauge(c.admin).filter(|g| *g == 1.0)
    });
    assert!(
        handed.is_some(),
        "a released Lease is taken at the next try"
    );
    assert!(
        stopped_at.elapsed() < LEASE_DURATION,
        "{:?}",
        stopped_at.elapsed()
    );
    drop(c);
}
