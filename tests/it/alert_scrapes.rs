//! The series the daemon exports for each condition an alert is for, in every
//! `metrics.perSecretSeries` mode: two scrapes of the real metrics registry per case, the
//! condition applied between them as the daemon applies it. `scripts/alert-rules-test.sh`
//! turns them into `promtool test rules` input for the rules the chart renders and expects
//! exactly the case's alerts to fire (and every other alert to stay silent); here each case
//! is checked to export what it claims (the condition's secret named, the rest as the mode says).
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use secret_ferry::metrics::{Metrics, Outcome, PollProgress, SeriesPolicy};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Healthy secrets beside the case's own: above the `auto` limit used here, so that `auto`
/// names only the unhealthy ones, as at scale.
const HEALTHY: usize = 6;
const AUTO_LIMIT: usize = 4;
const INTERVAL: Duration = Duration::from_secs(60);

fn modes() -> [(&'static str, SeriesPolicy); 3] {
    [
        ("all", SeriesPolicy::All),
        ("unhealthy", SeriesPolicy::Unhealthy),
        ("auto", SeriesPolicy::Auto { limit: AUTO_LIMIT }),
    ]
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One alert condition: what it does to a fresh daemon before the first scrape, what it
/// does again before the second, and the alerts it must raise (name and subject labels).
struct Case {
    name: &'static str,
    /// Only the controller's rules have these alerts.
    controller_only: bool,
    setup: fn(&Metrics),
    step: fn(&Metrics),
    expected: Vec<(&'static str, Value)>,
}

fn took() -> Duration {
    Duration::from_millis(20)
}

fn ok(m: &Metrics, secret: &str) {
    m.sync_succeeded(secret, took(), Some("v1"), Some("us-east-1"));
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "healthy",
            controller_only: false,
            setup: |_| {},
            step: |_| {},
            expected: vec![],
        },
        Case {
            name: "stale",
            controller_only: false,
            setup: |m| {
                m.register_secret("db", INTERVAL);
                ok(m, "db");
                m.sync_failed("db", took());
            },
            step: |m| m.sync_failed("db", took()),
            // Failing on and on, it has also not synced for longer than the alert allows.
            expected: vec![
                ("SecretFerrySecretStale", json!({"secret": "db"})),
                ("SecretFerrySyncFailing", json!({"secret": "db"})),
                ("SecretFerrySecretNotSynced", json!({"secret": "db"})),
            ],
        },
        Case {
            name: "failing",
            controller_only: false,
            setup: |m| {
                m.register_secret("db", INTERVAL);
                m.sync_failed("db", took());
            },
            step: |m| m.sync_failed("db", took()),
            expected: vec![("SecretFerrySyncFailing", json!({"secret": "db"}))],
        },
        Case {
            name: "behind",
            controller_only: false,
            setup: |m| {
                // Synced once, then nothing for more than twice its (short) interval.
                m.register_secret("db", Duration::from_millis(10));
                ok(m, "db");
                std::thread::sleep(Duration::from_millis(40));
            },
            step: |_| {},
            expected: vec![("SecretFerrySecretNotSynced", json!({"secret": "db"}))],
        },
        Case {
            name: "poll_stalled",
            controller_only: false,
            setup: |m| {
                m.poll_progress(PollProgress {
                    groups: 2,
                    stalled: 1,
                    oldest_completion: Some(now() - 300.0),
                    next_due: None,
                })
            },
            step: |_| {},
            expected: vec![("SecretFerryPollStalled", json!({}))],
        },
        Case {
            name: "credential_expiring",
            controller_only: false,
            setup: |m| {
                m.register_role("shared");
                m.credential_expires_at("shared", SystemTime::now() + Duration::from_secs(120));
                m.credential_refreshed("shared", Outcome::Failure);
                m.credential_failures_in_a_row("shared", 1);
            },
            step: |m| m.credential_refreshed("shared", Outcome::Failure),
            expected: vec![(
                "SecretFerryCredentialExpiringSoon",
                json!({"role": "shared"}),
            )],
        },
        Case {
            name: "assume_role_failing",
            controller_only: false,
            setup: |m| {
                m.register_role("shared");
                m.credential_expires_at("shared", SystemTime::now() + Duration::from_secs(86_400));
                m.credential_failures_in_a_row("shared", 5);
            },
            step: |_| {},
            expected: vec![("SecretFerryAssumeRoleFailing", json!({"role": "shared"}))],
        },
        Case {
            name: "aws_throttled",
            controller_only: false,
            setup: |m| m.aws_throttled("Secrets Manager", "GetSecretValue"),
            step: |m| m.aws_throttled("Secrets Manager", "GetSecretValue"),
            expected: vec![(
                "SecretFerryAwsThrottled",
                json!({"service": "Secrets Manager", "operation": "GetSecretValue"}),
            )],
        },
        Case {
            name: "change_events_not_receiving",
            controller_only: false,
            setup: |m| {
                m.register_queue("changes");
                m.queue_failed("changes", "ReceiveMessage", "access_denied");
            },
            step: |m| m.queue_failed("changes", "ReceiveMessage", "access_denied"),
            expected: vec![(
                "SecretFerryChangeEventsNotReceiving",
                json!({"queue": "changes"}),
            )],
        },
        Case {
            name: "kube_forbidden",
            controller_only: true,
            setup: |m| m.kube_request("patch", "forbidden"),
            step: |m| m.kube_request("patch", "forbidden"),
            expected: vec![(
                "SecretFerryKubeRequestsFailing",
                json!({"verb": "patch", "result": "forbidden"}),
            )],
        },
        Case {
            name: "no_leader",
            controller_only: true,
            setup: |m| m.set_leader(false),
            step: |_| {},
            expected: vec![("SecretFerryNoLeader", json!({}))],
        },
    ]
}

/// A daemon's registry in `policy` with the healthy secrets synced, the poll progress
/// published and leadership held, as a running daemon has them.
fn daemon(policy: SeriesPolicy) -> Metrics {
    let m = Metrics::new().unwrap();
    m.set_series_policy(policy);
    m.set_leader(true);
    m.poll_progress(PollProgress {
        groups: 1,
        stalled: 0,
        oldest_completion: Some(now()),
        next_due: Some(now() + 60.0),
    });
    for i in 0..HEALTHY {
        let s = format!("app-{i}");
        m.register_secret(s.as_str(), INTERVAL);
        ok(&m, &s);
    }
    m
}

/// Healthy secrets sync again between the scrapes, as they do every interval.
fn resync_healthy(m: &Metrics) {
    for i in 0..HEALTHY {
        ok(m, &format!("app-{i}"));
    }
}

fn named(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("secret_ferry_secret_stale{secret=\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[test]
fn every_alert_condition_exports_its_series_in_every_metrics_mode() {
    let mut out = Vec::new();
    for case in cases() {
        for (mode, policy) in modes() {
            let m = daemon(policy);
            (case.setup)(&m);
            let first = (now(), m.render().unwrap());
            std::thread::sleep(Duration::from_millis(5));
            resync_healthy(&m);
            (case.step)(&m);
            let second = (now(), m.render().unwrap());

            // What the mode names: the case's unhealthy secret always, healthy ones only
            // under `all` (HEALTHY + 1 is above the auto limit).
            let unhealthy_db = ["stale", "failing", "behind"].contains(&case.name);
            let mut expect: Vec<String> = Vec::new();
            if mode == "all" {
                expect.extend((0..HEALTHY).map(|i| format!("app-{i}")));
                if unhealthy_db {
                    expect.push("db".to_owned());
                }
            } else if unhealthy_db {
                expect.push("db".to_owned());
            }
            expect.sort();
            assert_eq!(named(&second.1), expect, "{} in mode {mode}", case.name);

            out.push(json!({
                "case": case.name,
                "mode": mode,
                "controller_only": case.controller_only,
                "expected": case.expected.iter()
                    .map(|(alert, labels)| json!({"alert": alert, "labels": labels}))
                    .collect::<Vec<_>>(),
                "scrapes": [
                    {"time": first.0, "text": first.1},
                    {"time": second.0, "text": second.1},
                ],
            }));
        }
    }
    // The alert rules test reads them from here; without it they are only checked above.
    if let Some(path) = std::env::var_os("SECRET_FERRY_ALERT_SCRAPES") {
        std::fs::write(path, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
    }
}
