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
    let covering: Vec<(usize, &TenantRule)> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| covers(r, namespace, namespace_labels))
        .collect();
    if covering.is_empty() {
        return Err(format!(
            "no tenants rule covers namespace {namespace}: add it to a rule's namespaces (or match its labels with namespaceSelector)"
        ));
    }
    let role = role_of(annotations, &covering, namespace)?;
    let (index, rule) = rule_for(&covering, &role, secret_id, namespace)?;
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
    match covering {
        [(_, rule)] if rule.roles.len() == 1 => Ok(rule.roles[0].clone()),
        _ => {
            let roles: Vec<&str> = covering
                .iter()
                .flat_map(|(_, r)| r.roles.iter().map(String::as_str))
                .collect();
            Err(format!(
                "annotation {ROLE_ANNOTATION} is missing and namespace {namespace} may use several roles ({}): name one",
                roles.join(", ")
            ))
        }
    }
}

/// The first covering rule that lets `role` read `secret_id`; the refusal names the rule
/// that came closest.
fn rule_for<'r>(
    covering: &[(usize, &'r TenantRule)],
    role: &str,
    secret_id: &str,
    namespace: &str,
) -> Result<(usize, &'r TenantRule), String> {
    let with_role: Vec<&(usize, &TenantRule)> = covering
        .iter()
        .filter(|(_, r)| r.roles.iter().any(|allowed| allowed == role))
        .collect();
    let found = with_role.iter().find(|(_, r)| {
        r.secret_ids
            .iter()
            .any(|g| crate::config::glob_matches(g, secret_id))
    });
    if let Some(&&(index, rule)) = found {
        return Ok((index, rule));
    }
    Err(match with_role.first() {
        Some((i, r)) => format!(
            "tenants[{i}] lets namespace {namespace} use role {role} only for secret ids matching {}, and {secret_id:?} does not match",
            r.secret_ids.join(", ")
        ),
        None => {
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
            max_refresh_interval: None,
        }
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
