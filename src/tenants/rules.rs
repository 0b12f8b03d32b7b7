//! Tenant self-service: a Secret labelled `secret-ferry.io/managed: "true"` and annotated
//! with a secret id asks the controller to fill it. Pure: `decide` says whether a `tenants`
//! rule allows the request, and if not, which rule refused it and why, so that the Warning
//! Event tells the tenant what to change. Nothing is fetched for a refused request, so a
//! namespace cannot use the controller's roles to read secrets it was not granted.

use crate::config::TenantRule;
use std::collections::BTreeMap;
use std::time::Duration;

pub const MANAGED_LABEL: &str = "secret-ferry.io/managed";
pub const SECRET_ID_ANNOTATION: &str = "secret-ferry.io/secret-id";
pub const ROLE_ANNOTATION: &str = "secret-ferry.io/role";
pub const REFRESH_ANNOTATION: &str = "secret-ferry.io/refresh-interval";
pub const PROPERTY_ANNOTATION: &str = "secret-ferry.io/property";
/// Asks for the Secret's keys to be pushed to this Secrets Manager secret name.
pub const PUSH_TO_ANNOTATION: &str = "secret-ferry.io/push-to";
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// What an allowed annotated Secret asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRequest {
    pub secret_id: String,
    pub role: String,
    pub refresh_interval: Duration,
    pub property: Option<String>,
    /// Index of the rule that allowed it, for logs.
    pub rule: usize,
}

/// What an allowed Secret annotated with `push-to` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    pub secret_name: String,
    pub role: String,
    pub refresh_interval: Duration,
    /// Index of the rule that allowed it, for logs.
    pub rule: usize,
}

/// Whether the Secret asks to be pushed (rather than filled).
pub fn is_push(annotations: &BTreeMap<String, String>) -> bool {
    annotations.contains_key(PUSH_TO_ANNOTATION)
}

/// Whether the rules let `namespace` push its Secret to the name `push-to` gives. Pure, like
/// [`decide`]: nothing is read or written for a refused request.
pub fn decide_push(
    rules: &[TenantRule],
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<PushRequest, String> {
    if annotations.contains_key(SECRET_ID_ANNOTATION) {
        return Err(format!("annotations {SECRET_ID_ANNOTATION} and {PUSH_TO_ANNOTATION} together: a Secret is either filled from Secrets Manager or pushed to it; use two Secrets"));
    }
    let secret_name = annotations
        .get(PUSH_TO_ANNOTATION)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!("annotation {PUSH_TO_ANNOTATION} is empty: name the secret to push to")
        })?;
    if let Some(problem) = crate::config::push_secret_name_problem(secret_name) {
        return Err(format!("annotation {PUSH_TO_ANNOTATION} {problem}"));
    }
    let covering = covering(rules, namespace, namespace_labels, Grant::Push)?;
    let role = role_of(annotations, &covering, namespace)?;
    let (index, rule) = rule_for(&covering, &role, secret_name, namespace, Grant::Push)?;
    Ok(PushRequest {
        secret_name: secret_name.to_owned(),
        role,
        refresh_interval: refresh_interval_of(annotations, rule)?,
        rule: index,
    })
}

/// Whether the rules let `namespace` (with `namespace_labels`) have what `annotations` ask
/// for. `Err` is the refusal, naming the rule (or the missing rule).
pub fn decide(
    rules: &[TenantRule],
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<TenantRequest, String> {
    let secret_id = annotations
        .get(SECRET_ID_ANNOTATION)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!("annotation {SECRET_ID_ANNOTATION} is missing: name the secret to sync")
        })?;
    let covering = covering(rules, namespace, namespace_labels, Grant::Read)?;
    let role = role_of(annotations, &covering, namespace)?;
    let (index, rule) = rule_for(&covering, &role, secret_id, namespace, Grant::Read)?;
    let refresh_interval = refresh_interval_of(annotations, rule)?;
    let property = property_of(annotations)?;
    Ok(TenantRequest {
        secret_id: secret_id.to_owned(),
        role,
        refresh_interval,
        property,
        rule: index,
    })
}

/// The role the request names, or the only one the covering rules allow.
fn role_of(
    annotations: &BTreeMap<String, String>,
    covering: &[(usize, &TenantRule)],
    namespace: &str,
) -> Result<String, String> {
    if let Some(role) = annotations
        .get(ROLE_ANNOTATION)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        return Ok(role.to_owned());
    }
    // Several rules may cover a namespace; what counts is how many distinct roles they allow.
    let mut roles: Vec<&str> = covering
        .iter()
        .flat_map(|(_, r)| r.roles.iter().map(String::as_str))
        .collect();
    roles.sort_unstable();
    roles.dedup();
    match roles.as_slice() {
        [only] => Ok((*only).to_owned()),
        _ => Err(format!(
            "annotation {ROLE_ANNOTATION} is missing and namespace {namespace} may use several roles ({}): name one",
            roles.join(", ")
        )),
    }
}

/// What a request asks a rule for: to read a secret id, or to push to a secret name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Read,
    Push,
}

impl Grant {
    /// The rule's globs for this grant.
    fn globs(self, rule: &TenantRule) -> &[String] {
        match self {
            Grant::Read => &rule.secret_ids,
            Grant::Push => &rule.push_secret_names,
        }
    }

    /// The rule key that grants it, for refusals.
    fn key(self) -> &'static str {
        match self {
            Grant::Read => "secretIds",
            Grant::Push => "pushSecretNames",
        }
    }
}

/// The rules that cover `namespace`, with their index; the refusal when none does.
fn covering<'r>(
    rules: &'r [TenantRule],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    grant: Grant,
) -> Result<Vec<(usize, &'r TenantRule)>, String> {
    let covering: Vec<(usize, &TenantRule)> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| covers(r, namespace, labels))
        .collect();
    if covering.is_empty() {
        return Err(format!(
            "no tenants rule covers namespace {namespace}: add it to a rule's namespaces (or match its labels with namespaceSelector), with {}",
            grant.key()
        ));
    }
    Ok(covering)
}

/// The first covering rule that lets `role` have `name` (a secret id to read or a secret name
/// to push to); the refusal names the rule that came closest.
fn rule_for<'r>(
    covering: &[(usize, &'r TenantRule)],
    role: &str,
    name: &str,
    namespace: &str,
    grant: Grant,
) -> Result<(usize, &'r TenantRule), String> {
    let with_role: Vec<&(usize, &TenantRule)> = covering
        .iter()
        .filter(|(_, r)| r.roles.iter().any(|allowed| allowed == role))
        .collect();
    let found = with_role.iter().find(|(_, r)| {
        grant
            .globs(r)
            .iter()
            .any(|g| crate::config::glob_matches(g, name))
    });
    if let Some(&&(index, rule)) = found {
        return Ok((index, rule));
    }
    // The closest rule: one that grants this kind of request at all, else any with the role.
    let closest = with_role
        .iter()
        .find(|(_, r)| !grant.globs(r).is_empty())
        .or(with_role.first());
    Err(match (closest, grant) {
        (Some((i, r)), _) if grant.globs(r).is_empty() => format!(
            "tenants[{i}] lets namespace {namespace} use role {role} only for {}: add {} to allow {}",
            if grant == Grant::Push { "reading" } else { "pushing" },
            grant.key(),
            if grant == Grant::Push { "pushes" } else { "reading" },
        ),
        (Some((i, r)), Grant::Read) => format!(
            "tenants[{i}] lets namespace {namespace} use role {role} only for secret ids matching {}, and {name:?} does not match",
            r.secret_ids.join(", ")
        ),
        (Some((i, r)), Grant::Push) => format!(
            "tenants[{i}] lets namespace {namespace} push with role {role} only to secret names matching {}, and {name:?} does not match",
            r.push_secret_names.join(", ")
        ),
        (None, _) => {
            let (i, r) = covering[0];
            format!(
                "tenants[{i}] does not let namespace {namespace} use role {role:?} (allowed: {})",
                r.roles.join(", ")
            )
        }
    })
}

/// The requested interval (default one minute), never below the rule's floor.
fn refresh_interval_of(
    annotations: &BTreeMap<String, String>,
    rule: &TenantRule,
) -> Result<Duration, String> {
    let mut refresh_interval = match annotations.get(REFRESH_ANNOTATION) {
        None => crate::config::DEFAULT_REFRESH_INTERVAL,
        Some(text) => humantime::parse_duration(text.trim())
            .ok()
            .filter(|d| *d >= MIN_REFRESH_INTERVAL)
            .ok_or_else(|| {
                format!("annotation {REFRESH_ANNOTATION} must be a duration of at least 1s such as \"5m\", got {text:?}")
            })?,
    };
    if let Some(floor) = rule.max_refresh_interval {
        refresh_interval = refresh_interval.max(floor);
    }
    Ok(refresh_interval)
}

/// The JSON property to extract, if the request names one.
fn property_of(annotations: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let property = annotations
        .get(PROPERTY_ANNOTATION)
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    if let Some(p) = &property {
        if p.split('.').any(str::is_empty) {
            return Err(format!(
                "annotation {PROPERTY_ANNOTATION} must be a dot-separated path of JSON keys, got {p:?}"
            ));
        }
    }
    Ok(property)
}

fn covers(rule: &TenantRule, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    rule.namespaces.iter().any(|n| n == namespace)
        || rule
            .namespace_selector
            .as_ref()
            .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The namespaces to watch, or `None` for all (a rule selects namespaces by label).
pub fn watched_namespaces(rules: &[TenantRule]) -> Option<Vec<String>> {
    if rules.iter().any(|r| r.namespace_selector.is_some()) {
        return None;
    }
    let mut namespaces: Vec<String> = rules.iter().flat_map(|r| r.namespaces.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    Some(namespaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(namespaces: &[&str], roles: &[&str], ids: &[&str]) -> TenantRule {
        TenantRule {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            namespace_selector: None,
            roles: roles.iter().map(|s| s.to_string()).collect(),
            secret_ids: ids.iter().map(|s| s.to_string()).collect(),
            push_secret_names: Vec::new(),
            max_refresh_interval: None,
        }
    }

    fn push_rule(namespaces: &[&str], roles: &[&str], names: &[&str]) -> TenantRule {
        TenantRule {
            push_secret_names: names.iter().map(|s| s.to_string()).collect(),
            ..rule(namespaces, roles, &[])
        }
    }

    #[test]
    fn a_push_is_allowed_only_to_the_names_its_rule_lists_with_its_role() {
        let rules = [
            rule(&["team-a"], &["shared"], &["team-a/*"]),
            push_rule(&["team-a"], &["shared"], &["team-a/pushed/*"]),
        ];
        let none = BTreeMap::new();
        let ok = decide_push(
            &rules,
            "team-a",
            &none,
            &ann(&[(PUSH_TO_ANNOTATION, "team-a/pushed/tokens")]),
        )
        .unwrap();
        assert_eq!(
            (ok.secret_name.as_str(), ok.role.as_str(), ok.rule),
            ("team-a/pushed/tokens", "shared", 1)
        );
        let e = decide_push(
            &rules,
            "team-a",
            &none,
            &ann(&[(PUSH_TO_ANNOTATION, "team-b/tokens")]),
        )
        .unwrap_err();
        assert!(
            e.contains("team-a/pushed/*") && e.contains("\"team-b/tokens\""),
            "{e}"
        );
        let e = decide_push(
            &rules[..1],
            "team-a",
            &none,
            &ann(&[(PUSH_TO_ANNOTATION, "team-a/x")]),
        )
        .unwrap_err();
        assert!(
            e.contains("only for reading") && e.contains("add pushSecretNames"),
            "{e}"
        );
        let e = decide(
            &rules[1..],
            "team-a",
            &none,
            &ann(&[(SECRET_ID_ANNOTATION, "team-a/x")]),
        )
        .unwrap_err();
        assert!(
            e.contains("only for pushing") && e.contains("add secretIds"),
            "{e}"
        );
        let e = decide_push(
            &rules,
            "team-b",
            &none,
            &ann(&[(PUSH_TO_ANNOTATION, "team-a/pushed/x")]),
        )
        .unwrap_err();
        assert!(e.contains("no tenants rule covers namespace team-b"), "{e}");
        let e = decide_push(
            &rules,
            "team-a",
            &none,
            &ann(&[
                (PUSH_TO_ANNOTATION, "team-a/pushed/x"),
                (ROLE_ANNOTATION, "admin"),
            ]),
        )
        .unwrap_err();
        assert!(e.contains("role \"admin\""), "{e}");
    }

    #[test]
    fn a_push_to_an_arn_a_bad_name_or_together_with_a_secret_id_is_refused() {
        let rules = [push_rule(&["team-a"], &["shared"], &["team-a/*"])];
        let none = BTreeMap::new();
        for (pairs, needle) in [
            (
                vec![(
                    PUSH_TO_ANNOTATION,
                    "arn:aws:secretsmanager:us-east-1:1:secret:team-a/x",
                )],
                "not an ARN",
            ),
            (vec![(PUSH_TO_ANNOTATION, "team-a/a b")], "must be"),
            (vec![(PUSH_TO_ANNOTATION, " ")], "is empty"),
            (
                vec![
                    (PUSH_TO_ANNOTATION, "team-a/x"),
                    (SECRET_ID_ANNOTATION, "team-a/y"),
                ],
                "either filled",
            ),
        ] {
            let e = decide_push(&rules, "team-a", &none, &ann(&pairs)).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        assert!(is_push(&ann(&[(PUSH_TO_ANNOTATION, "x")])));
        assert!(!is_push(&ann(&[(SECRET_ID_ANNOTATION, "x")])));
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn allowed_requests() {
        let mut rules = vec![
            rule(&["team-a"], &["shared"], &["team-a/*"]),
            rule(&[], &["prod"], &["prod/*"]),
        ];
        rules[0].max_refresh_interval = Some(Duration::from_secs(300));
        rules[1].namespace_selector = Some(BTreeMap::from([("env".into(), "prod".into())]));
        let none = BTreeMap::new();
        let got = decide(
            &rules,
            "team-a",
            &none,
            &ann(&[(SECRET_ID_ANNOTATION, "team-a/db")]),
        )
        .unwrap();
        assert_eq!(
            got.role, "shared",
            "the only role of the only rule is the default"
        );
        assert_eq!(
            got.refresh_interval,
            Duration::from_secs(300),
            "raised to the rule's floor"
        );
        let got = decide(
            &rules,
            "team-a",
            &none,
            &ann(&[
                (SECRET_ID_ANNOTATION, "team-a/db"),
                (REFRESH_ANNOTATION, "10m"),
                (PROPERTY_ANNOTATION, "db.password"),
            ]),
        )
        .unwrap();
        assert_eq!(got.refresh_interval, Duration::from_secs(600));
        assert_eq!(got.property.as_deref(), Some("db.password"));
        let prod = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let got = decide(
            &rules,
            "payments",
            &prod,
            &ann(&[(SECRET_ID_ANNOTATION, "prod/x"), (ROLE_ANNOTATION, "prod")]),
        )
        .unwrap();
        assert_eq!((got.role.as_str(), got.rule), ("prod", 1));
    }

    #[test]
    fn refusals_name_the_rule_and_the_reason() {
        let rules = vec![
            rule(&["team-a"], &["shared"], &["team-a/*"]),
            rule(&["team-a", "team-b"], &["shared", "other"], &["common/*"]),
        ];
        let none = BTreeMap::new();
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("team-a", &[], "secret-id is missing"),
            ("team-c", &[(SECRET_ID_ANNOTATION, "team-a/db")], "no tenants rule covers namespace team-c"),
            ("team-b", &[(SECRET_ID_ANNOTATION, "team-a/db"), (ROLE_ANNOTATION, "shared")], "tenants[1] lets namespace team-b use role shared only for secret ids matching common/*"),
            ("team-b", &[(SECRET_ID_ANNOTATION, "common/x"), (ROLE_ANNOTATION, "admin")], "tenants[1] does not let namespace team-b use role \"admin\""),
            ("team-a", &[(SECRET_ID_ANNOTATION, "team-a/db")], "may use several roles"),
            ("team-a", &[(SECRET_ID_ANNOTATION, "team-a/db"), (ROLE_ANNOTATION, "shared"), (REFRESH_ANNOTATION, "soon")], "refresh-interval must be a duration"),
            ("team-a", &[(SECRET_ID_ANNOTATION, "team-a/db"), (ROLE_ANNOTATION, "shared"), (PROPERTY_ANNOTATION, "a..b")], "dot-separated"),
        ];
        for (namespace, annotations, needle) in cases {
            let err = decide(&rules, namespace, &none, &ann(annotations)).unwrap_err();
            assert!(err.contains(needle), "{namespace} {annotations:?}: {err}");
        }
    }

    #[test]
    fn watched_namespaces_are_all_when_a_selector_is_used() {
        let mut rules = vec![
            rule(&["b", "a"], &["r"], &["x"]),
            rule(&["a"], &["r"], &["y"]),
        ];
        assert_eq!(
            watched_namespaces(&rules),
            Some(vec!["a".into(), "b".into()])
        );
        rules[1].namespace_selector = Some(BTreeMap::from([("k".into(), "v".into())]));
        assert_eq!(watched_namespaces(&rules), None);
    }
}
