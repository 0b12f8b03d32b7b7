//! Fault matrix: the daemon (the built binary) against moto behind the fault-injecting
//! proxy, one fault at a time. For each fault: the last good files stay exactly as they
//! were, the failure shows in the metrics and `/readyz` says what docs/operations.md says,
//! the new value lands within the back-off cap once the fault clears, and memory and
//! tasks do not grow across the whole matrix. Figures go to docs/reliability.md.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::kube_emulator;

use common::proxy::{json_error, sts_error, Fault, Proxy};
use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const SECRET: &str = "app/db";
/// The poll interval; after a failure the retry delay backs off from 1 s and is capped
/// at the interval, so this is also the back-off cap.
const INTERVAL: Duration = Duration::from_secs(1);
/// Allowed on top of the cap for recovery: a slow debug build on a shared 2-core machine.
const SLACK: Duration = Duration::from_secs(4);

/// Every entry under `dir`, symlink targets and file contents included: any change at
/// all (a rewritten file, a swapped `..data`, a removed key) makes two snapshots differ.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", target.display()));
            } else if meta.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A multi-key JSON secret whose password is a fresh canary.
fn value(tag: &str) -> (String, String) {
    let password = canary(tag);
    let json = serde_json::json!({"username": "app", "password": password, "port": 5432});
    (json.to_string(), password)
}

/// The running daemon and what the tests read from it.
struct Daemon {
    child: Option<Running>,
    admin: SocketAddr,
}

impl Daemon {
    fn start(config: &Path, endpoint: &str) -> Daemon {
        let port = free_port();
        let child = Running::start(&mut daemon(config, endpoint, port));
        Daemon {
            child: Some(child),
            admin: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn metrics(&self) -> String {
        get(self.admin, "/metrics").map(|r| r.1).unwrap_or_default()
    }

    fn metric(&self, series: &str) -> f64 {
        metric_or_zero(&self.metrics(), series)
    }

    fn readyz(&self) -> (u16, String) {
        get(self.admin, "/readyz").unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().pid()
    }

    /// Resident memory from /proc, KiB.
    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    fn tasks(&self) -> f64 {
        self.metric("secret_ferry_runtime_tasks ")
    }

    /// Lets a few polls pass, then checks that memory and tasks are back near where they
    /// were before the faults (debug build: a few MiB of allocator noise); the end values.
    fn assert_flat_since(&self, rss_start: u64, tasks_start: f64) -> (u64, f64) {
        std::thread::sleep(3 * INTERVAL);
        let (rss_end, tasks_end) = (self.rss_kib(), self.tasks());
        assert!(
            tasks_end <= tasks_start + 4.0,
            "tasks grew across the faults: {tasks_start} → {tasks_end}"
        );
        assert!(
            rss_end <= rss_start + 8 * 1024,
            "memory grew across the faults: {rss_start} KiB → {rss_end} KiB"
        );
        (rss_end, tasks_end)
    }

    fn stop(mut self) -> String {
        let out = self.child.take().unwrap().stop();
        assert!(out.status.success(), "the daemon must exit 0 on SIGTERM");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn failures(d: &Daemon) -> f64 {
    d.metric(r#"secret_ferry_secret_sync_total{result="failure",secret="db"}"#)
}

fn config(fx: &CrossAccount, dir: &Path, ext: &Path) -> String {
    ConfigYaml::new()
        .region(REGION)
        .role("shared", &fx.role_arn, ext)
        .secret("db", SECRET)
        .uses_role("shared")
        .option("refreshInterval", "1s")
        .file_target(dir)
        .build()
}

/// The daemon reading `fx`'s secret through `proxy` into a fresh directory, once it has
/// written `password` there: the temp dir (kept alive by the caller), the target, the daemon.
fn synced_through(
    fx: &CrossAccount,
    proxy: &Proxy,
    password: &str,
) -> (tempfile::TempDir, std::path::PathBuf, Daemon) {
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, &fx.external_id).unwrap();
    let dir = tmp.path().join("out");
    let cfg = write_config(tmp.path(), &config(fx, &dir, &ext));
    let d = Daemon::start(&cfg, &proxy.endpoint());
    assert_eq!(
        wait_for(Duration::from_secs(30), || read(&dir, "password")).as_deref(),
        Some(password),
        "first sync"
    );
    (tmp, dir, d)
}

/// How a fault is made and taken away.
enum Kind {
    /// The proxy answers GetSecretValue itself.
    Answer(Fault),
    /// The proxy closes every connection at once.
    Down,
    /// moto is frozen with SIGSTOP: connections open, nothing ever answers.
    Hang,
    /// The secret is scheduled for deletion (restored to clear).
    ScheduledDeletion,
    /// The secret is deleted for good (created again to clear).
    Deleted,
}

struct Case {
    name: &'static str,
    kind: Kind,
    /// The reason the daemon must log for it.
    reason: &'static str,
}

fn cases() -> Vec<Case> {
    let json = "application/x-amz-json-1.1";
    vec![
        Case {
            name: "endpoint down",
            kind: Kind::Down,
            reason: "network",
        },
        Case {
            name: "connection hangs (moto SIGSTOP)",
            kind: Kind::Hang,
            reason: "timeout",
        },
        Case {
            name: "GetSecretValue AccessDenied",
            kind: Kind::Answer(json_error(
                "GetSecretValue",
                "AccessDeniedException",
                "User is not authorized to perform: secretsmanager:GetSecretValue",
                400,
            )),
            reason: "access_denied",
        },
        Case {
            name: "ThrottlingException",
            kind: Kind::Answer(json_error(
                "GetSecretValue",
                "ThrottlingException",
                "Rate exceeded",
                400,
            )),
            reason: "throttled",
        },
        Case {
            name: "HTTP 500",
            kind: Kind::Answer(json_error(
                "GetSecretValue",
                "InternalServiceError",
                "internal error",
                500,
            )),
            reason: "server",
        },
        Case {
            name: "malformed JSON body",
            kind: Kind::Answer(Fault::aws("GetSecretValue", 200, json, "{\"ARN\": \"arn:")),
            reason: "other",
        },
        Case {
            name: "wrong JSON types",
            kind: Kind::Answer(Fault::aws(
                "GetSecretValue",
                200,
                json,
                r#"{"Name": 7, "SecretString": {"nested": true}, "VersionId": []}"#,
            )),
            reason: "other",
        },
        Case {
            name: "KMS decryption failure",
            kind: Kind::Answer(json_error(
                "GetSecretValue",
                "DecryptionFailure",
                "Access to KMS is not allowed",
                400,
            )),
            reason: "kms",
        },
        Case {
            name: "secret scheduled for deletion",
            kind: Kind::ScheduledDeletion,
            reason: "invalid_request",
        },
        Case {
            name: "secret deleted",
            kind: Kind::Deleted,
            reason: "not_found",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_faults_keep_the_last_good_files_and_recover_within_the_backoff_cap() {
    let (first, first_password) = value("first");
    let fx = cross_account(SECRET, &first).await;
    let proxy = Proxy::start(fx.moto.addr());
    let sm = aws_sdk_secretsmanager::Client::new(&fx.admin);
    let (_tmp, dir, d) = synced_through(&fx, &proxy, &first_password);
    // A few polls in, so that the baseline is the steady state, not the start-up.
    std::thread::sleep(3 * INTERVAL);
    let rss_start = d.rss_kib();
    let tasks_start = d.tasks();

    let mut figures = Vec::new();
    let mut rss_max = rss_start;
    let mut tasks_max = tasks_start;
    for case in cases() {
        let before = snapshot(&dir);
        let failed_before = failures(&d);
        let (next, next_password) = value("next");
        // Rotate while the fault holds where the fault allows it: the daemon then has a
        // newer value it cannot get, and must still leave the old one alone.
        let rotated_during = match &case.kind {
            Kind::Answer(fault) => {
                proxy.inject(fault.clone());
                put_secret(&fx.admin, SECRET, &next).await;
                true
            }
            Kind::Down => {
                proxy.set_down(true);
                put_secret(&fx.admin, SECRET, &next).await;
                true
            }
            Kind::Hang => {
                fx.moto.pause();
                false
            }
            Kind::ScheduledDeletion => {
                sm.delete_secret()
                    .secret_id(SECRET)
                    .recovery_window_in_days(7)
                    .send()
                    .await
                    .unwrap();
                false
            }
            Kind::Deleted => {
                sm.delete_secret()
                    .secret_id(SECRET)
                    .force_delete_without_recovery(true)
                    .send()
                    .await
                    .unwrap();
                false
            }
        };
        let fault_at = Instant::now();
        // Two failed syncs prove it is retried, not given up on; a hang takes up to the
        // SDK's attempt timeouts (3 × 10 s) to fail once.
        let (want, within) = match case.kind {
            Kind::Hang => (1.0, Duration::from_secs(50)),
            _ => (2.0, Duration::from_secs(20)),
        };
        let failed = wait_for(within, || {
            let n = failures(&d);
            (n >= failed_before + want).then_some(n - failed_before)
        });
        assert!(
            failed.is_some(),
            "{}: the failure must be counted (secret_ferry_secret_sync_total)",
            case.name
        );
        let metrics = d.metrics();
        assert_eq!(
            snapshot(&dir),
            before,
            "{}: the last good files must be untouched",
            case.name
        );
        assert_eq!(
            metric_value(&metrics, r#"secret_ferry_secret_stale{secret="db"} "#),
            1.0,
            "{}: the secret must be reported stale",
            case.name
        );
        assert_eq!(
            metric_value(&metrics, r#"secret_ferry_secrets{state="stale"} "#),
            1.0,
            "{}",
            case.name
        );
        // Documented: a stale secret keeps the pod ready (the old value still works);
        // only maxStaleness or a lapsed credential turns /readyz to 503.
        let (ready, why) = d.readyz();
        assert_eq!(ready, 200, "{}: {why}", case.name);
        rss_max = rss_max.max(d.rss_kib());
        tasks_max = tasks_max.max(d.tasks());

        match &case.kind {
            Kind::Answer(_) => proxy.clear_faults(),
            Kind::Down => proxy.set_down(false),
            Kind::Hang => fx.moto.resume(),
            Kind::ScheduledDeletion => {
                sm.restore_secret().secret_id(SECRET).send().await.unwrap();
            }
            Kind::Deleted => {
                create_secret(&fx.admin, SECRET, &next).await;
            }
        }
        let cleared_at = Instant::now();
        if !rotated_during && !matches!(case.kind, Kind::Deleted) {
            put_secret(&fx.admin, SECRET, &next).await;
        }
        let recovered = wait_for(INTERVAL + SLACK + Duration::from_secs(10), || {
            read(&dir, "password")
                .filter(|p| *p == next_password)
                .map(|_| cleared_at.elapsed())
        });
        let recovery = recovered.unwrap_or_else(|| panic!("{}: no recovery", case.name));
        assert!(
            recovery <= INTERVAL + SLACK,
            "{}: recovered after {recovery:?}, more than the back-off cap ({INTERVAL:?}) + {SLACK:?}",
            case.name
        );
        let ok = wait_for(Duration::from_secs(5), || {
            (d.metric(r#"secret_ferry_secret_stale{secret="db"} "#) == 0.0).then_some(())
        });
        assert!(ok.is_some(), "{}: stale must clear", case.name);
        assert_eq!(d.readyz().0, 200, "{}", case.name);
        figures.push(serde_json::json!({
            "fault": case.name,
            "failed_syncs_seen": failed.unwrap(),
            "fault_held_ms": fault_at.elapsed().as_millis() - recovery.as_millis(),
            "recovery_ms": recovery.as_millis(),
        }));
    }
    let (rss_end, tasks_end) = d.assert_flat_since(rss_start, tasks_start);
    let log = d.stop();
    for case in cases() {
        assert!(
            log.contains(&format!("reason={}", case.reason))
                || log.contains(&format!("reason=\"{}\"", case.reason)),
            "{}: the log must say `reason={}`",
            case.name,
            case.reason
        );
    }
    assert_no_leak(&log, &[&fx.external_id, &first_password]);
    record_figures(
        "faults_aws",
        serde_json::json!({
            "faults": figures,
            "rss_kib": {"start": rss_start, "max": rss_max, "end": rss_end},
            "tasks": {"start": tasks_start, "max": tasks_max, "end": tasks_end},
            "back_off_cap_ms": INTERVAL.as_millis(),
        }),
    );
}

/// Shortens every credential moto issues to `secs` from now, so that an STS outage can
/// outlast it within a test.
fn short_lived(proxy: &Proxy, secs: u64) {
    proxy.rewrite("AssumeRole", move |body| {
        let Some(start) = body.find("<Expiration>") else {
            return body.to_string();
        };
        let Some(end) = body.find("</Expiration>") else {
            return body.to_string();
        };
        let at = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(secs));
        format!(
            "{}<Expiration>{at}</Expiration>{}",
            &body[..start],
            &body[end + "</Expiration>".len()..]
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sts_outage_longer_than_the_credential_is_reported_and_heals_on_the_first_assume_role() {
    // Timing- and resource-sensitive: never beside another heavy test (common::heavy).
    let _heavy = heavy();
    let (first, first_password) = value("lapse-first");
    let fx = cross_account(SECRET, &first).await;
    let proxy = Proxy::start(fx.moto.addr());
    // The daemon treats any credential as valid for at least 60 s (a guard against
    // skewed clocks), so this is the shortest life that can lapse.
    const LIFE: u64 = 60;
    short_lived(&proxy, LIFE);
    let (_tmp, dir, d) = synced_through(&fx, &proxy, &first_password);
    let issued_at = Instant::now();
    let assumed = proxy.count("AssumeRole");
    let expiry = d.metric(r#"secret_ferry_credential_expiry_timestamp_seconds{role="shared"} "#);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expiry - now - LIFE as f64).abs() < 3.0,
        "the expiry metric must follow the credential: {expiry} vs now {now}"
    );

    // STS goes away: refused first, then failing with 500s.
    proxy.inject(
        sts_error(
            "AccessDenied",
            "not authorized to perform sts:AssumeRole",
            403,
        )
        .times(2),
    );
    proxy.inject(sts_error("InternalFailure", "internal failure", 500));
    let refresh_failed = wait_for(Duration::from_secs(LIFE), || {
        (d.metric(r#"secret_ferry_credential_consecutive_failures{role="shared"} "#) >= 1.0)
            .then_some(())
    });
    assert!(
        refresh_failed.is_some(),
        "the refresh must fail and be counted"
    );
    // The refresh is due half-way through the life (±10 %): many seconds are left,
    // in which the old credential must keep serving. A rotation made now lands.
    let left = Duration::from_secs(LIFE).saturating_sub(issued_at.elapsed());
    assert!(
        left >= Duration::from_secs(3),
        "the refresh must be tried well before the expiry ({left:?} left)"
    );
    let (next, next_password) = value("lapse-next");
    put_secret(&fx.admin, SECRET, &next).await;
    let served = wait_for(left - Duration::from_millis(500), || {
        read(&dir, "password").filter(|p| *p == next_password)
    });
    assert!(
        served.is_some(),
        "until it expires the old credential keeps serving after a failed refresh"
    );
    let denied = d.metric(
        r#"secret_ferry_credential_refresh_errors_total{reason="trust_policy_denied",role="shared"} "#,
    ) + d.metric(
        r#"secret_ferry_credential_refresh_errors_total{reason="other",role="shared"} "#,
    );
    let server =
        d.metric(r#"secret_ferry_credential_refresh_errors_total{reason="server",role="shared"} "#);

    // Past the expiry: reported, and nothing stale is passed off as fresh.
    let lapse = wait_for(Duration::from_secs(LIFE + 10), || {
        let (status, body) = d.readyz();
        (status == 503).then_some(body)
    })
    .expect("/readyz must turn 503 once the credential lapsed");
    assert!(
        lapse.contains("shared"),
        "the reason names the role: {lapse}"
    );
    let lapsed_at = Instant::now();
    let (third, third_password) = value("lapse-third");
    put_secret(&fx.admin, SECRET, &third).await;
    let before = snapshot(&dir);
    let failed_before = failures(&d);
    assert!(
        wait_for(Duration::from_secs(10), || (failures(&d)
            >= failed_before + 2.0)
            .then_some(()))
        .is_some(),
        "syncs must fail while the credential is lapsed"
    );
    let metrics = d.metrics();
    assert_eq!(
        snapshot(&dir),
        before,
        "the files must be left as they were"
    );
    assert_eq!(
        metric_value(&metrics, r#"secret_ferry_secret_stale{secret="db"} "#),
        1.0
    );
    let last_success = metric_value(
        &metrics,
        r#"secret_ferry_secret_last_success_timestamp_seconds{secret="db"} "#,
    );
    std::thread::sleep(2 * INTERVAL);
    assert_eq!(
        d.metric(r#"secret_ferry_secret_last_success_timestamp_seconds{secret="db"} "#),
        last_success,
        "no sync may count as a success while the credential is lapsed"
    );
    assert!(
        d.metric(r#"secret_ferry_credential_consecutive_failures{role="shared"} "#) >= 2.0,
        "every failed refresh is counted"
    );

    // STS is back: the first successful AssumeRole heals everything.
    let before_heal = proxy.count("AssumeRole");
    proxy.clear_faults();
    proxy.clear_rewrites();
    let cleared_at = Instant::now();
    let healed = wait_for(Duration::from_secs(15), || {
        read(&dir, "password")
            .filter(|p| *p == third_password)
            .map(|_| cleared_at.elapsed())
    })
    .expect("the rotation must land once STS answers again");
    let ready = wait_for(Duration::from_secs(5), || {
        (d.readyz().0 == 200).then_some(())
    });
    assert!(ready.is_some(), "/readyz must be 200 again");
    assert_eq!(
        d.metric(r#"secret_ferry_credential_consecutive_failures{role="shared"} "#),
        0.0
    );
    // Healing takes exactly one AssumeRole: the refresher and every secret waiting for a
    // credential share it.
    let calls_to_heal = proxy.count("AssumeRole") - before_heal;
    assert_eq!(calls_to_heal, 1);
    let log = d.stop();
    assert!(log.contains("expired") || log.contains("lapsed"), "{log}");
    assert_no_leak(&log, &[&fx.external_id, &third_password]);
    record_figures(
        "credential_lapse",
        serde_json::json!({
            "credential_life_s": LIFE,
            "outage_s": cleared_at.duration_since(issued_at).as_secs(),
            "refresh_failures_denied": denied,
            "refresh_failures_server": server,
            "assume_role_calls_before_outage": assumed,
            "readyz_503_after_issue_s": lapsed_at.duration_since(issued_at).as_secs_f64(),
            "heal_ms": healed.as_millis(),
            "assume_role_calls_to_heal": calls_to_heal,
        }),
    );
}

/// What one fault did, once it was injected and the secret rotated behind it.
struct Held {
    failed_syncs: f64,
    recovery: Duration,
}

/// The common part of a fault case: wait for two counted failures, check that the target
/// (`state`) did not move and the daemon reports the secret stale but ready, `clear` the
/// fault and time the recovery (`landed`).
fn hold_then_clear<S: PartialEq + std::fmt::Debug>(
    name: &str,
    d: &Daemon,
    failed_before: f64,
    state: impl Fn() -> S,
    before: &S,
    clear: impl FnOnce(),
    landed: impl Fn() -> bool,
) -> Held {
    let failed = wait_for(Duration::from_secs(40), || {
        let n = failures(d);
        (n >= failed_before + 2.0).then_some(n - failed_before)
    })
    .unwrap_or_else(|| panic!("{name}: two failed syncs must be counted"));
    assert_eq!(
        &state(),
        before,
        "{name}: the last good value must be untouched"
    );
    let metrics = d.metrics();
    assert_eq!(
        metric_value(&metrics, r#"secret_ferry_secret_stale{secret="db"} "#),
        1.0,
        "{name}: the secret must be reported stale"
    );
    let (ready, why) = d.readyz();
    assert_eq!(
        ready, 200,
        "{name}: a stale secret keeps the pod ready: {why}"
    );
    clear();
    let cleared_at = Instant::now();
    let recovery = wait_for(INTERVAL + SLACK + Duration::from_secs(10), || {
        landed().then(|| cleared_at.elapsed())
    })
    .unwrap_or_else(|| panic!("{name}: no recovery after the fault cleared"));
    assert!(
        recovery <= INTERVAL + SLACK,
        "{name}: recovered after {recovery:?}, more than the back-off cap ({INTERVAL:?}) + {SLACK:?}"
    );
    Held {
        failed_syncs: failed,
        recovery,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_api_faults_leave_the_secret_as_it_was_and_recover() {
    use kube_emulator::{Fault as KubeFault, KubeEmulator};
    capture_logs();
    let moto = Moto::start();
    let admin = moto.sdk_config();
    let (first, _) = value("kube-first");
    create_secret(&admin, SECRET, &first).await;
    let emulator = KubeEmulator::start();
    emulator.add_namespace("app", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = emulator.write_kubeconfig(tmp.path(), "app");
    let cfg = write_config(
        tmp.path(),
        &ConfigYaml::new()
            .region(REGION)
            .secret("db", SECRET)
            .option("refreshInterval", "1s")
            .kube_target("db")
            .build(),
    );
    let port = free_port();
    let mut cmd = daemon(&cfg, &moto.endpoint(), port);
    cmd.env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "app");
    let d = Daemon {
        child: Some(Running::start(&mut cmd)),
        admin: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let secret = || {
        emulator
            .get("Secret", "app", "db")
            .map(|s| s["data"].clone())
    };
    assert!(
        wait_for(Duration::from_secs(30), secret).is_some(),
        "first sync"
    );
    std::thread::sleep(3 * INTERVAL);
    let tasks_start = d.tasks();
    let rss_start = d.rss_kib();
    let kube_result = |verb: &str, result: &str| {
        d.metric(&format!(
            r#"secret_ferry_kube_requests_total{{result="{result}",verb="{verb}"}} "#
        ))
    };
    let cases = [
        (
            "409 Conflict",
            KubeFault::kube("patch", "secrets", 409),
            "conflict",
        ),
        (
            // The kube client retries 429 itself, honouring Retry-After, until the
            // request's 10 s budget runs out: a lasting 429 counts as a timeout.
            "429 Too Many Requests",
            KubeFault::kube("patch", "secrets", 429).retry_after(1),
            "timeout",
        ),
        (
            "500",
            KubeFault::kube("patch", "secrets", 500),
            "server_error",
        ),
        (
            // Never answered within the client's 10 s request timeout.
            "hang",
            KubeFault::kube("patch", "secrets", 504).delay(Duration::from_secs(15)),
            "timeout",
        ),
    ];
    let mut figures = Vec::new();
    for (name, fault, result) in cases {
        let before = secret();
        let failed_before = failures(&d);
        let counted_before = kube_result("patch", result);
        emulator.inject(fault);
        let (next, next_password) = value("kube-next");
        put_secret(&admin, SECRET, &next).await;
        let want = base64_of(&next_password);
        let held = hold_then_clear(
            name,
            &d,
            failed_before,
            secret,
            &before,
            || emulator.clear_faults(),
            || secret().is_some_and(|data| data["password"] == want.as_str()),
        );
        assert!(
            kube_result("patch", result) > counted_before,
            "{name}: secret_ferry_kube_requests_total{{result=\"{result}\"}} must count it"
        );
        figures.push(serde_json::json!({
            "fault": name,
            "failed_syncs_seen": held.failed_syncs,
            "recovery_ms": held.recovery.as_millis(),
        }));
    }
    let (rss_end, tasks_end) = d.assert_flat_since(rss_start, tasks_start);
    let log = d.stop();
    assert_no_leak(&log, &[&first]);
    record_figures(
        "faults_kubernetes",
        serde_json::json!({
            "faults": figures,
            "rss_kib": {"start": rss_start, "end": rss_end},
            "tasks": {"start": tasks_start, "end": tasks_end},
        }),
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Runs `cmd` in its own mount namespace with a 1 MiB tmpfs on `dir`, so that the test can
/// fill that filesystem or make it read-only without touching the machine's.
fn in_small_filesystem(cmd: &Command, dir: &Path) -> Command {
    in_mount_namespace(
        cmd,
        dir,
        r#"mount -t tmpfs -o size=1m,mode=0755 tmpfs "$0""#,
    )
}

/// Runs `args` inside the mount namespace of `pid`.
fn in_namespace_of(pid: u32, args: &[&str]) {
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid.to_string()]);
    if !running_as_root() {
        cmd.args(["-U", "--preserve-credentials"]);
    }
    let status = cmd.arg("-m").args(args).status().unwrap();
    assert!(status.success(), "nsenter {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_target_filesystem_keeps_the_last_good_files_and_recovers() {
    // Timing- and resource-sensitive: never beside another heavy test (common::heavy).
    let _heavy = heavy();
    let (first, first_password) = value("disk-first");
    let fx = cross_account(SECRET, &first).await;
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, &fx.external_id).unwrap();
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let cfg = write_config(tmp.path(), &config(&fx, &dir, &ext));
    let port = free_port();
    let mut cmd = in_small_filesystem(&daemon(&cfg, &fx.moto.endpoint(), port), &dir);
    let d = Daemon {
        child: Some(Running::start(&mut cmd)),
        admin: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    // The daemon's view of `dir` (its own tmpfs), seen from outside its namespace.
    let seen = Path::new("/proc")
        .join(d.pid().to_string())
        .join("root")
        .join(dir.strip_prefix("/").unwrap());
    assert_eq!(
        wait_for(Duration::from_secs(30), || read(&seen, "password")).as_deref(),
        Some(first_password.as_str()),
        "first sync into the small filesystem"
    );
    assert!(
        !dir.join("password").exists(),
        "the daemon must write into its own tmpfs, not the directory underneath"
    );
    let filler = seen.join("filler");
    let files = || {
        let mut s = snapshot(&seen);
        s.remove("filler");
        s
    };
    let mut figures = Vec::new();

    // Disk full: a user file takes every free block.
    let before = files();
    let failed_before = failures(&d);
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        let full = loop {
            if let Err(e) = f.write_all(&block) {
                break e;
            }
        };
        assert_eq!(full.raw_os_error(), Some(28), "ENOSPC expected: {full}");
        // Partial blocks may remain; fill them byte by byte.
        while f.write_all(&[0]).is_ok() {}
    }
    let (next, next_password) = value("disk-next");
    put_secret(&fx.admin, SECRET, &next).await;
    let held = hold_then_clear(
        "disk full",
        &d,
        failed_before,
        files,
        &before,
        || std::fs::remove_file(&filler).unwrap(),
        || read(&seen, "password").is_some_and(|p| p == next_password),
    );
    figures.push(serde_json::json!({
        "fault": "disk full (ENOSPC)",
        "failed_syncs_seen": held.failed_syncs,
        "recovery_ms": held.recovery.as_millis(),
    }));

    // Read-only: the filesystem is remounted read-only under the daemon.
    let before = files();
    let failed_before = failures(&d);
    let pid = d.pid();
    let dir_arg = dir.display().to_string();
    in_namespace_of(pid, &["mount", "-o", "remount,ro", &dir_arg]);
    let (third, third_password) = value("disk-third");
    put_secret(&fx.admin, SECRET, &third).await;
    let held = hold_then_clear(
        "read-only target",
        &d,
        failed_before,
        files,
        &before,
        || in_namespace_of(pid, &["mount", "-o", "remount,rw", &dir_arg]),
        || read(&seen, "password").is_some_and(|p| p == third_password),
    );
    figures.push(serde_json::json!({
        "fault": "read-only filesystem (EROFS)",
        "failed_syncs_seen": held.failed_syncs,
        "recovery_ms": held.recovery.as_millis(),
    }));
    // Whatever a failed write left behind is gone once a write succeeds.
    let (names, data) = layout(&seen);
    let dirs: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("..") && *n != "..data")
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one timestamped dir, no leftovers: {names:?}"
    );
    assert_eq!(data.as_deref(), Some(Path::new(dirs[0].as_str())));
    let log = d.stop();
    assert_no_leak(&log, &[&fx.external_id, &first_password]);
    record_figures("faults_disk", serde_json::json!({"faults": figures}));
}

/// A connection that never answers leaves the poll hanging: the group is a stalled poll in
/// the metrics within twice its interval, the log names it once, `/readyz` fails after
/// `maxPollStall` naming it, and all of it clears once AWS answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_connection_is_a_stalled_poll_in_metrics_log_and_readyz_and_then_clears() {
    let (first, first_password) = value("stall");
    let fx = cross_account(SECRET, &first).await;
    let proxy = Proxy::start(fx.moto.addr());
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, &fx.external_id).unwrap();
    let dir = tmp.path().join("out");
    let yaml = ConfigYaml::new()
        .region(REGION)
        .top("maxPollStall", "2s")
        .role("shared", &fx.role_arn, &ext)
        .secret("db", SECRET)
        .uses_role("shared")
        .option("refreshInterval", "1s")
        .file_target(&dir)
        .build();
    let d = Daemon::start(&write_config(tmp.path(), &yaml), &proxy.endpoint());
    assert_eq!(
        wait_for(Duration::from_secs(30), || read(&dir, "password")).as_deref(),
        Some(first_password.as_str())
    );
    // The watchdog publishes once a second.
    let published = wait_for(Duration::from_secs(5), || {
        (d.metric("secret_ferry_poll_groups ") == 1.0).then_some(())
    });
    assert!(published.is_some(), "the one group is never counted");
    assert_eq!(d.metric("secret_ferry_poll_groups_stalled "), 0.0);

    // Every GetSecretValue is held far past the SDK's 10 s attempt timeout.
    let hang = Fault::aws("GetSecretValue", 0, "application/x-amz-json-1.1", "")
        .delay(Duration::from_secs(60));
    proxy.inject(hang);
    let hung = Instant::now();
    let stalled = wait_for(Duration::from_secs(8), || {
        (d.metric("secret_ferry_poll_groups_stalled ") == 1.0).then(|| hung.elapsed())
    });
    let stalled = stalled.expect("the hung poll never showed as stalled");
    let unready = wait_for(Duration::from_secs(8), || {
        let (status, body) = d.readyz();
        (status == 503 && body.contains("has not completed")).then_some(body)
    })
    .expect("/readyz never failed on the stalled poll");
    assert!(
        unready.contains("secret db") && unready.contains("maxPollStall 2s"),
        "{unready}"
    );
    assert_eq!(
        read(&dir, "password").as_deref(),
        Some(first_password.as_str()),
        "a stalled poll keeps the last good files"
    );

    proxy.clear_faults();
    let cleared = wait_for(Duration::from_secs(45), || {
        (d.metric("secret_ferry_poll_groups_stalled ") == 0.0 && d.readyz().0 == 200)
            .then(|| hung.elapsed())
    });
    assert!(
        cleared.is_some(),
        "the stall did not clear once AWS answered"
    );
    let log = d.stop();
    assert!(
        log.contains("poll stalled") && log.contains("group=secret db"),
        "the stall is logged with its group"
    );
    assert!(
        log.contains("poll no longer stalled"),
        "the recovery is logged"
    );
    println!(
        "stall shown after {:.1} s (interval 1 s); cleared {:.1} s after the hang began",
        stalled.as_secs_f64(),
        cleared.unwrap().as_secs_f64()
    );
}
