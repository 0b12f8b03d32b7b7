//! The Kubernetes parts of the config: `kubernetesSecret` targets and `tenants` rules.

use super::claims::PathClaims;
use super::read::{checked_string, read_enum, read_list, read_reference, ROLES};
use super::yaml::{optional, or_default, Checker, Field, Fields};
use super::{AT_LEAST_ONE, REFRESH_INTERVALS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Labels and annotations under this prefix are secret-ferry's own bookkeeping.
pub const RESERVED_PREFIX: &str = "secret-ferry.io/";

/// Write the secret into a Kubernetes Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeSecretTarget {
    pub name: String,
    /// `None`: the namespace the daemon runs in.
    pub namespace: Option<String>,
    /// The Secret's `type`, e.g. `Opaque` or `kubernetes.io/tls`.
    pub secret_type: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub creation_policy: CreationPolicy,
    pub deletion_policy: DeletionPolicy,
    pub immutable: bool,
    /// Give the Secret an ownerReference to the daemon's own pod, so that Kubernetes deletes it
    /// with the pod (sidecar shape).
    pub owner_pod: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationPolicy {
    /// secret-ferry creates and owns the whole Secret, and refuses to take over one it did not
    /// create.
    Owner,
    /// secret-ferry only adds its keys to an existing Secret; other keys are left alone.
    Merge,
    /// Like `Owner`, but the Secret is never deleted by secret-ferry.
    Orphan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionPolicy {
    Retain,
    /// Delete the Secret when it is no longer configured.
    Delete,
}

/// Which annotated Secrets (label `secret-ferry.io/managed: "true"`) the controller fills.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRule {
    pub namespaces: Vec<String>,
    /// `matchLabels` of the namespaces this rule covers, besides `namespaces`.
    pub namespace_selector: Option<BTreeMap<String, String>>,
    /// Roles (keys under `roles`) these namespaces may read with.
    pub roles: Vec<String>,
    /// Globs over secret ids (`*` matches any run of characters, `?` one character).
    pub secret_ids: Vec<String>,
    /// Globs over the Secrets Manager names these namespaces may push their Secrets to
    /// (annotation `secret-ferry.io/push-to`); empty: no pushes.
    pub push_secret_names: Vec<String>,
    /// The shortest refresh interval a tenant may ask for; shorter requests are raised to it.
    pub max_refresh_interval: Option<Duration>,
}

const CREATION_POLICIES: &[(&str, CreationPolicy)] = &[
    ("Owner", CreationPolicy::Owner),
    ("Merge", CreationPolicy::Merge),
    ("Orphan", CreationPolicy::Orphan),
];
const DELETION_POLICIES: &[(&str, DeletionPolicy)] = &[
    ("Retain", DeletionPolicy::Retain),
    ("Delete", DeletionPolicy::Delete),
];
pub(super) const DNS_SUBDOMAIN: &str = "a DNS subdomain: at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit";
pub(super) const DNS_LABEL: &str =
    "a DNS label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit";

// === Kubernetes names ===

pub fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len()) && s.split('.').all(|part| is_dns_label_like(part, 253))
}

pub fn is_dns_label(s: &str) -> bool {
    is_dns_label_like(s, 63)
}

fn is_dns_label_like(s: &str, max: usize) -> bool {
    let bytes = s.as_bytes();
    (1..=max).contains(&s.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain, the name at most
/// 63 characters of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && is_label_value(name) && !name.is_empty()
}

fn is_label_value(v: &str) -> bool {
    let bytes = v.as_bytes();
    v.is_empty()
        || (v.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric))
}

// === kubernetesSecret targets ===

/// `kubernetesSecret:`; `claimed` keeps each (namespace, name) to one target.
pub(super) fn read_kube_secret_target(
    c: &mut Checker,
    at: &Field,
    claimed: &mut PathClaims,
) -> Option<KubeSecretTarget> {
    let mut f = Fields::open(c, at)?;
    let name = f
        .require(c, "name")
        .and_then(|v| checked_string(c, &v, is_dns_subdomain, DNS_SUBDOMAIN));
    let namespace = optional(f.get("namespace"), |v| {
        checked_string(c, v, is_dns_label, DNS_LABEL)
    });
    let type_field = f.get("type");
    let secret_type = or_default(type_field.clone(), "Opaque".to_owned(), |v| {
        checked_string(
            c,
            v,
            |t| !t.is_empty() && t.len() <= 253 && t != "kubernetes.io/service-account-token",
            "a Secret type such as Opaque or kubernetes.io/tls (service-account tokens are issued by Kubernetes, not written)",
        )
    });
    let labels = or_default(f.get("labels"), BTreeMap::new(), |v| {
        read_metadata_map(c, v, true)
    });
    let annotations = or_default(f.get("annotations"), BTreeMap::new(), |v| {
        read_metadata_map(c, v, false)
    });
    let creation_field = f.get("creationPolicy");
    let creation_policy = or_default(creation_field.clone(), CreationPolicy::Owner, |v| {
        read_enum(c, v, CREATION_POLICIES)
    });
    let deletion_field = f.get("deletionPolicy");
    let deletion_policy = or_default(deletion_field.clone(), DeletionPolicy::Retain, |v| {
        read_enum(c, v, DELETION_POLICIES)
    });
    let immutable_field = f.get("immutable");
    let immutable = or_default(immutable_field.clone(), false, |v| c.boolean(v));
    let owner_field = f.get("ownerPod");
    let owner_pod = or_default(owner_field.clone(), false, |v| c.boolean(v));
    f.finish(c);
    let policy = creation_policy?;
    let mut ok = check_policies(
        c,
        policy,
        (&deletion_field, deletion_policy),
        &type_field,
        &immutable_field,
        (&owner_field, owner_pod),
    );
    let (name, namespace) = (name?, namespace?);
    let key = PathBuf::from(format!(
        "kubernetesSecret:{}/{name}",
        namespace.as_deref().unwrap_or("")
    ));
    if let Some(first) = claimed.claim(&key, &at.path, false) {
        c.problem(
            at,
            format!("Secret {name:?} in this namespace is already written by {first}; each Secret has one writer"),
        );
        ok = false;
    }
    let target = KubeSecretTarget {
        name,
        namespace,
        secret_type: secret_type?,
        labels: labels?,
        annotations: annotations?,
        creation_policy: policy,
        deletion_policy: deletion_policy?,
        immutable: immutable?,
        owner_pod: owner_pod?,
    };
    ok.then_some(target)
}

/// The settings that contradict the creation policy, each reported; true when there are none.
fn check_policies(
    c: &mut Checker,
    policy: CreationPolicy,
    (deletion_field, deletion_policy): (&Option<Field>, Option<DeletionPolicy>),
    type_field: &Option<Field>,
    immutable_field: &Option<Field>,
    (owner_field, owner_pod): (&Option<Field>, Option<bool>),
) -> bool {
    let mut ok = true;
    if policy == CreationPolicy::Merge {
        for (field, what) in [
            (type_field, "type"),
            (immutable_field, "immutable"),
            (owner_field, "ownerPod"),
        ] {
            if let Some(field) = field {
                c.problem(field, format!("{what} applies to Secrets secret-ferry creates; with creationPolicy Merge the Secret belongs to someone else"));
                ok = false;
            }
        }
    }
    if policy == CreationPolicy::Orphan {
        if let (Some(field), Some(DeletionPolicy::Delete)) = (deletion_field, deletion_policy) {
            c.problem(field, "an Orphan Secret is never deleted by secret-ferry: use creationPolicy Owner, or deletionPolicy Retain");
            ok = false;
        }
        if let (Some(field), Some(true)) = (owner_field, owner_pod) {
            c.problem(field, "an Orphan Secret outlives its creator: ownerPod would have Kubernetes delete it with the pod");
            ok = false;
        }
    }
    ok
}

fn read_metadata_map(
    c: &mut Checker,
    at: &Field,
    labels: bool,
) -> Option<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    let mut ok = true;
    for entry in c.entries(at)? {
        if !is_qualified_name(&entry.key) {
            c.key_problem(
                &entry,
                format!(
                    "{:?} is not a valid key: [prefix/]name, the name at most 63 of [A-Za-z0-9_.-]",
                    entry.key
                ),
            );
            ok = false;
            continue;
        }
        if entry.key.starts_with(RESERVED_PREFIX) {
            c.key_problem(
                &entry,
                format!("keys under {RESERVED_PREFIX} are secret-ferry's own"),
            );
            ok = false;
            continue;
        }
        let value = match c.scalar(&entry.value) {
            Some(v) => v,
            None if entry.value.is_null() => String::new(),
            None => {
                ok = false;
                continue;
            }
        };
        if labels && !is_label_value(&value) {
            c.problem(
                &entry.value,
                "a label value is at most 63 of [A-Za-z0-9_.-], starting and ending alphanumeric",
            );
            ok = false;
            continue;
        }
        map.insert(entry.key, value);
    }
    ok.then_some(map)
}

// === tenants ===

pub(super) fn read_tenants(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
) -> Option<Vec<TenantRule>> {
    read_list(c, at, AT_LEAST_ONE, "tenant rule", |c, item| {
        read_tenant(c, item, roles)
    })
}

fn read_tenant(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
) -> Option<TenantRule> {
    let mut f = Fields::open(c, at)?;
    let namespaces_field = f.get("namespaces");
    let selector_field = f.get("namespaceSelector");
    let namespaces = or_default(namespaces_field.clone(), Vec::new(), |v| {
        read_list(c, v, AT_LEAST_ONE, "namespace", |c, item| {
            checked_string(c, item, is_dns_label, DNS_LABEL)
        })
    });
    let namespace_selector = optional(selector_field.clone(), |v| read_selector(c, v));
    let rule_roles = f.require(c, "roles").and_then(|v| {
        read_list(c, &v, AT_LEAST_ONE, "role", |c, item| {
            read_reference(c, item, roles, &ROLES)
        })
    });
    let ids_field = f.get("secretIds");
    let push_field = f.get("pushSecretNames");
    let secret_ids = or_default(ids_field.clone(), Vec::new(), |v| {
        read_list(c, v, AT_LEAST_ONE, "secret id glob", |c, item| {
            checked_string(
                c,
                item,
                |g| !g.is_empty() && g.len() <= 2048 && g != "*",
                "a secret id or a glob such as \"team-a/*\" (a lone \"*\" would hand every secret to the namespace)",
            )
        })
    });
    let push_secret_names = or_default(push_field.clone(), Vec::new(), |v| {
        read_list(c, v, AT_LEAST_ONE, "secret name glob", |c, item| {
            checked_string(
                c,
                item,
                |g| !g.is_empty() && g.len() <= 512 && g != "*",
                "a Secrets Manager secret name or a glob such as \"team-a/*\" (a lone \"*\" would let the namespace overwrite any secret the role may write)",
            )
        })
    });
    let max_refresh_interval = optional(f.get("maxRefreshInterval"), |v| {
        c.duration_within(v, REFRESH_INTERVALS)
    });
    f.finish(c);
    if namespaces_field.is_none() && selector_field.is_none() {
        c.problem(
            at,
            "needs `namespaces` or `namespaceSelector`: which namespaces does this rule serve?",
        );
        return None;
    }
    if ids_field.is_none() && push_field.is_none() {
        c.problem(
            at,
            "needs `secretIds` (what its namespaces may read) or `pushSecretNames` (what they may push to), or both",
        );
        return None;
    }
    Some(TenantRule {
        namespaces: namespaces?,
        namespace_selector: namespace_selector?,
        roles: rule_roles?,
        secret_ids: secret_ids?,
        push_secret_names: push_secret_names?,
        max_refresh_interval: max_refresh_interval?,
    })
}

fn read_selector(c: &mut Checker, at: &Field) -> Option<BTreeMap<String, String>> {
    let mut f = Fields::open(c, at)?;
    let labels = f
        .require(c, "matchLabels")
        .and_then(|v| read_metadata_map_allowing_reserved(c, &v));
    f.finish(c);
    let labels = labels?;
    if labels.is_empty() {
        c.problem(
            at,
            "matchLabels must name at least one label (an empty selector matches every namespace)",
        );
        return None;
    }
    Some(labels)
}

fn read_metadata_map_allowing_reserved(
    c: &mut Checker,
    at: &Field,
) -> Option<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    let mut ok = true;
    for entry in c.entries(at)? {
        let value = c.scalar(&entry.value);
        match value {
            Some(value) if is_qualified_name(&entry.key) && is_label_value(&value) => {
                map.insert(entry.key, value);
            }
            Some(_) => {
                c.key_problem(&entry, "not a valid label key and value");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(map)
}

/// Shell-style glob: `*` any run of characters (including '/'), `?` one character.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some(&ch) if ch == '?' || ch == t[ti] => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|&ch| ch == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (glob, text, matches) in [
            ("team-a/*", "team-a/db", true),
            ("team-a/*", "team-a/x/y", true),
            ("team-a/*", "team-b/db", false),
            ("team-a/*", "team-a", false),
            ("*/db", "x/db", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ] {
            assert_eq!(glob_matches(glob, text), matches, "{glob} vs {text}");
        }
    }

    #[test]
    fn kubernetes_names() {
        assert!(is_dns_subdomain("db-credentials.v1"));
        assert!(!is_dns_subdomain("DB"));
        assert!(!is_dns_subdomain("-db"));
        assert!(is_dns_label("team-a"));
        assert!(!is_dns_label("team.a"));
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(is_qualified_name("team"));
        assert!(!is_qualified_name("a/b/c"));
        assert!(!is_qualified_name("-x"));
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
    }
}
