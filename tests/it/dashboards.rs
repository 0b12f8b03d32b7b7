//! Every metric the shipped dashboard and alert rules query is one the daemon exports.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use secret_ferry::metrics::{Metrics, Outcome};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// Every family the daemon can export: one series of each is created, because a family
/// without series is not rendered at all.
fn exported() -> BTreeSet<String> {
    let m = Metrics::new().unwrap();
    m.register_role("r");
    m.register_secret("s", Duration::from_secs(60));
    m.register_push("p");
    m.push_attempted("p", None);
    m.push_attempted("p", Some("not_owned"));
    m.sync_succeeded("s", Duration::from_millis(1), Some("v1"), Some("us-east-1"));
    m.credential_refreshed("r", Outcome::Success);
    m.credential_refresh_failed("r", "throttled");
    m.credential_expires_at("r", SystemTime::now());
    m.assume_role_took("r", Duration::from_millis(1));
    m.aws_api_call("Secrets Manager", "GetSecretValue", Outcome::Success);
    m.aws_throttled("Secrets Manager", "GetSecretValue");
    m.kube_request("patch", "success");
    m.notified("s", "touch", Outcome::Success);
    m.set_leader(true);
    m.register_queue("q");
    m.events_received("q", 1, 0.5);
    m.queue_failed("q", "ReceiveMessage", "access_denied");
    let text = m.render().unwrap();
    let mut names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    // A histogram is named by its family too.
    let families: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix("_bucket").map(str::to_owned))
        .collect();
    names.extend(families);
    names
}

fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("secret_ferry_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_and_alert_rules_use_only_exported_metrics() {
    let exported = exported();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut checked = 0;
    for file in [
        "charts/secret-ferry/files/dashboard.json",
        "charts/secret-ferry/templates/prometheusrule.yaml",
        "docs/metrics.md",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let names = referenced(&text);
        assert!(!names.is_empty(), "{file} queries no metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which the daemon does not export; it exports {exported:#?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
    // And docs/metrics.md lists every family.
    let docs = referenced(&std::fs::read_to_string(format!("{root}/docs/metrics.md")).unwrap());
    for name in exported
        .iter()
        .filter(|n| !n.ends_with("_bucket") && !n.ends_with("_sum") && !n.ends_with("_count"))
    {
        assert!(docs.contains(name), "docs/metrics.md does not list {name}");
    }
    // The dashboard shows what issue 6 asks for.
    let dashboard =
        std::fs::read_to_string(format!("{root}/charts/secret-ferry/files/dashboard.json"))
            .unwrap();
    for needed in [
        "secret_ferry_credential_expiry_timestamp_seconds",
        "secret_ferry_credential_refresh_errors_total",
        "secret_ferry_secret_sync_total",
        "secret_ferry_secret_stale",
        "secret_ferry_aws_api_calls_total",
        "secret_ferry_aws_throttled_total",
    ] {
        assert!(dashboard.contains(needed), "the dashboard lacks {needed}");
    }
}
