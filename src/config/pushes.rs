//! `pushes`: values that secret-ferry writes *into* Secrets Manager, read from files (or a
//! Kubernetes Secret), with the policies that decide when it may create, update and delete.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use super::kube::{is_dns_label, is_dns_subdomain, DeletionPolicy, DNS_LABEL, DNS_SUBDOMAIN};
use super::read::{
    checked_string, first_use, read_enum, read_list, read_path, read_reference, read_region,
    unique, ROLES,
};
use super::rules::{is_name, is_tag_text};
use super::secrets::is_secret_name_char;
use super::yaml::{both_set, optional, or_default, Checker, Field, Fields};
use super::{AT_LEAST_ONE, DEFAULT_REFRESH_INTERVAL, REFRESH_INTERVALS};

/// The tag that marks a secret as created (or adopted) by one secret-ferry installation;
/// its value is the config's `instance`.
pub const OWNER_TAG: &str = "secret-ferry.io/instance";
/// `instance` when the config sets none.
pub const DEFAULT_INSTANCE: &str = "secret-ferry";
/// Secrets Manager's limit on a secret value.
pub const MAX_SECRET_BYTES: usize = 65_536;
/// Secrets Manager allows 50 tags per secret; one is the ownership tag.
const MAX_TAGS: usize = 49;
/// DeleteSecret's `RecoveryWindowInDays` range, and AWS's default.
const RECOVERY_DAYS: std::ops::RangeInclusive<u64> = 7..=30;
const DEFAULT_RECOVERY_DAYS: u8 = 30;
const DAY: u64 = 86_400;

/// One value to keep in Secrets Manager.
#[derive(Debug, Clone, PartialEq)]
pub struct PushConfig {
    /// Unique among pushes; used in logs and metric labels.
    pub name: String,
    /// The key of a role under `roles`; `None` writes with the daemon's own credentials.
    pub role: Option<String>,
    /// How often the source is read and compared with the remote secret.
    pub refresh_interval: Duration,
    pub from: PushSource,
    pub to: PushTarget,
    pub update_policy: UpdatePolicy,
    pub deletion_policy: DeletionPolicy,
    /// How a deletion is made (only used with `deletionPolicy: Delete`).
    pub recovery: Recovery,
    /// Take over a secret of that name that carries no ownership tag.
    pub adopt: bool,
}

/// Where a pushed value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PushSource {
    /// Every regular file in the directory is one key of a JSON object.
    Dir(PathBuf),
    /// One file, as the secret string (or, with `binary`, as SecretBinary).
    File { path: PathBuf, binary: bool },
    /// A Kubernetes Secret's keys (controller mode).
    KubernetesSecret {
        name: String,
        /// `None`: the daemon's own namespace.
        namespace: Option<String>,
        /// Only these keys; empty: every key.
        keys: Vec<String>,
    },
}

impl PushSource {
    /// Where the value is read from, for messages: a path or `namespace/name`.
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(dir) => dir.display().to_string(),
            Self::File { path, .. } => path.display().to_string(),
            Self::KubernetesSecret {
                name, namespace, ..
            } => format!(
                "Kubernetes Secret {}/{name}",
                namespace.as_deref().unwrap_or("<own namespace>")
            ),
        }
    }
}

/// The Secrets Manager secret a push keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct PushTarget {
    /// A name, never an ARN: the secret is created by name.
    pub secret_name: String,
    /// `None`: the role's region, else the top-level region.
    pub region: Option<String>,
    pub kms_key_id: Option<String>,
    pub description: Option<String>,
    /// Added when the secret is created, besides the ownership tag.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePolicy {
    /// Write a new version whenever the source differs from the current one.
    Replace,
    /// Create the secret when it does not exist; never write to an existing one.
    IfNotExists,
}

impl UpdatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "Replace",
            Self::IfNotExists => "IfNotExists",
        }
    }
}

/// How a push deletes its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Scheduled for deletion after this many days (7 to 30); restorable until then.
    Window(u8),
    /// Deleted at once, with no recovery (`forceDelete: true`).
    Force,
}

const UPDATE_POLICIES: &[(&str, UpdatePolicy)] = &[
    ("Replace", UpdatePolicy::Replace),
    ("IfNotExists", UpdatePolicy::IfNotExists),
];
const DELETION_POLICIES: &[(&str, DeletionPolicy)] = &[
    ("Retain", DeletionPolicy::Retain),
    ("Delete", DeletionPolicy::Delete),
];
const SECRET_NAME_RULE: &str =
    "a secret name: 1 to 512 letters, digits or any of \"/_+=.@-\" (a name, not an ARN)";

/// `instance`: the ownership tag's value; it must be a valid tag value.
pub(super) fn read_instance(c: &mut Checker, at: &Field) -> Option<String> {
    checked_string(
        c,
        at,
        |s| is_tag_text(s, 1..=128),
        "1 to 128 letters, digits, spaces or any of \"_.:/=+-@\" (it becomes the value of the secret-ferry.io/instance tag)",
    )
}

pub(super) fn read_pushes(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
) -> Option<Vec<PushConfig>> {
    let mut names = unique(|c, at| {
        checked_string(
            c,
            at,
            |n| is_name(n, 128),
            "1 to 128 letters, digits, '_', '.' or '-'",
        )
    });
    // (role, region as written, secret name) → the push that writes it.
    let mut targets: BTreeMap<(Option<String>, Option<String>, String), String> = BTreeMap::new();
    read_list(c, at, AT_LEAST_ONE, "push", |c, item| {
        let push = read_push(c, item, roles, &mut names)?;
        let key = (
            push.role.clone(),
            push.to.region.clone(),
            push.to.secret_name.clone(),
        );
        if let Some(first) = first_use(&mut targets, key, &item.path) {
            c.problem(
                item,
                format!(
                    "secret {:?} is already pushed by {first}; each secret has one writer",
                    push.to.secret_name
                ),
            );
            return None;
        }
        Some(push)
    })
}

fn read_push<'a>(
    c: &mut Checker,
    at: &Field<'a>,
    roles: Option<&BTreeSet<String>>,
    names: &mut impl FnMut(&mut Checker, &Field<'a>) -> Option<String>,
) -> Option<PushConfig> {
    let mut f = Fields::open(c, at)?;
    let name = f.require(c, "name").and_then(|v| names(c, &v));
    let role = optional(f.get("role"), |v| read_reference(c, v, roles, &ROLES));
    let refresh_interval = or_default(f.get("refreshInterval"), DEFAULT_REFRESH_INTERVAL, |v| {
        c.duration_within(v, REFRESH_INTERVALS)
    });
    let from = f.require(c, "from").and_then(|v| read_source(c, &v));
    let to = f.require(c, "to").and_then(|v| read_target(c, &v));
    let update_policy = or_default(f.get("updatePolicy"), UpdatePolicy::Replace, |v| {
        read_enum(c, v, UPDATE_POLICIES)
    });
    let deletion_policy = or_default(f.get("deletionPolicy"), DeletionPolicy::Retain, |v| {
        read_enum(c, v, DELETION_POLICIES)
    });
    let (window_field, force_field) = (f.get("recoveryWindow"), f.get("forceDelete"));
    let adopt = or_default(f.get("adopt"), false, |v| c.boolean(v));
    f.finish(c);
    let recovery = read_recovery(c, window_field, force_field, deletion_policy);
    Some(PushConfig {
        name: name?,
        role: role?,
        refresh_interval: refresh_interval?,
        from: from?,
        to: to?,
        update_policy: update_policy?,
        deletion_policy: deletion_policy?,
        recovery: recovery?,
        adopt: adopt?,
    })
}

/// `recoveryWindow` (whole days, 7 to 30) or `forceDelete: true`, only with `Delete`.
fn read_recovery(
    c: &mut Checker,
    window: Option<Field>,
    force: Option<Field>,
    deletion_policy: Option<DeletionPolicy>,
) -> Option<Recovery> {
    if deletion_policy == Some(DeletionPolicy::Retain) {
        for field in [&window, &force].into_iter().flatten() {
            c.problem(
                field,
                "applies only with deletionPolicy: Delete (Retain never deletes the secret)",
            );
        }
    }
    if both_set(c, &window, &force) {
        return None;
    }
    let window = optional(window, |v| {
        let duration = c.duration(v)?;
        let secs = duration.as_secs();
        if duration.subsec_nanos() != 0 || secs % DAY != 0 || !RECOVERY_DAYS.contains(&(secs / DAY))
        {
            c.problem(
                v,
                "must be whole days from 7d to 30d (Secrets Manager's RecoveryWindowInDays)",
            );
            return None;
        }
        u8::try_from(secs / DAY).ok()
    })?;
    let force = or_default(force, false, |v| c.boolean(v))?;
    Some(match (window, force) {
        (Some(days), _) => Recovery::Window(days),
        (None, true) => Recovery::Force,
        (None, false) => Recovery::Window(DEFAULT_RECOVERY_DAYS),
    })
}

/// `from:` names exactly one source: `file` (`dir` or `path`) or `kubernetesSecret`.
fn read_source(c: &mut Checker, at: &Field) -> Option<PushSource> {
    let mut f = Fields::open(c, at)?;
    let (file, kube) = (f.get("file"), f.get("kubernetesSecret"));
    f.finish(c);
    if both_set(c, &file, &kube) {
        return None;
    }
    match (file, kube) {
        (Some(file), None) => read_file_source(c, &file),
        (None, Some(kube)) => read_kube_source(c, &kube),
        _ => {
            c.problem(
                at,
                "needs `file` ({dir: ...} or {path: ...}) or `kubernetesSecret` ({name: ...})",
            );
            None
        }
    }
}

fn read_file_source(c: &mut Checker, at: &Field) -> Option<PushSource> {
    let mut f = Fields::open(c, at)?;
    let (dir, path) = (f.get("dir"), f.get("path"));
    let binary_field = f.get("binary");
    let binary = or_default(binary_field.clone(), false, |v| c.boolean(v));
    f.finish(c);
    if both_set(c, &dir, &path) {
        return None;
    }
    match (dir, path) {
        (Some(dir), None) => {
            if let Some(binary) = &binary_field {
                c.problem(
                    binary,
                    "applies to a single file (`path`); a `dir` becomes a JSON object of text keys",
                );
                return None;
            }
            read_absolute(c, &dir).map(PushSource::Dir)
        }
        (None, Some(path)) => {
            let path = read_absolute(c, &path);
            Some(PushSource::File {
                path: path?,
                binary: binary?,
            })
        }
        _ => {
            c.problem(
                at,
                "needs `dir` (every file in it is one key of a JSON object) or `path` (one file, the secret string as is)",
            );
            None
        }
    }
}

fn read_absolute(c: &mut Checker, at: &Field) -> Option<PathBuf> {
    let path = read_path(c, at)?;
    if !path.is_absolute() {
        c.problem(
            at,
            format!(
                "must be an absolute path, got {:?}: the daemon's working directory is not where the app writes",
                path.display().to_string()
            ),
        );
        return None;
    }
    Some(path)
}

fn read_kube_source(c: &mut Checker, at: &Field) -> Option<PushSource> {
    let mut f = Fields::open(c, at)?;
    let name = f
        .require(c, "name")
        .and_then(|v| checked_string(c, &v, is_dns_subdomain, DNS_SUBDOMAIN));
    let namespace = optional(f.get("namespace"), |v| {
        checked_string(c, v, is_dns_label, DNS_LABEL)
    });
    let keys = or_default(f.get("keys"), Vec::new(), |v| {
        let mut key = unique(|c, at| {
            checked_string(
                c,
                at,
                |k| super::keys::UnsafeKey::check(k).is_ok(),
                "a Secret key: not empty, no '/', not starting with \"..\", at most 253 bytes",
            )
        });
        read_list(c, v, AT_LEAST_ONE, "key", |c, item| key(c, item))
    });
    f.finish(c);
    Some(PushSource::KubernetesSecret {
        name: name?,
        namespace: namespace?,
        keys: keys?,
    })
}

fn read_target(c: &mut Checker, at: &Field) -> Option<PushTarget> {
    let mut f = Fields::open(c, at)?;
    let secret_name = f
        .require(c, "secretName")
        .and_then(|v| read_secret_name(c, &v));
    let region = optional(f.get("region"), |v| read_region(c, v));
    let kms_key_id = optional(f.get("kmsKeyId"), |v| {
        checked_string(
            c,
            v,
            |k| (1..=2048).contains(&k.len()) && !k.chars().any(char::is_whitespace),
            "a KMS key id, key ARN, alias name (alias/...) or alias ARN",
        )
    });
    let description = optional(f.get("description"), |v| {
        checked_string(
            c,
            v,
            |d| d.chars().count() <= 2048,
            "at most 2048 characters",
        )
    });
    let tags = or_default(f.get("tags"), BTreeMap::new(), |v| read_tags(c, v));
    f.finish(c);
    Some(PushTarget {
        secret_name: secret_name?,
        region: region?,
        kms_key_id: kms_key_id?,
        description: description?,
        tags: tags?,
    })
}

/// Why `name` cannot be the name a push creates, if it cannot (also for tenants' pushes).
pub fn push_secret_name_problem(name: &str) -> Option<String> {
    if name.starts_with("arn:") {
        return Some(format!("must be a secret name, not an ARN (a push creates the secret by name in the role's account and region), got {name:?}"));
    }
    if !((1..=512).contains(&name.len()) && name.chars().all(is_secret_name_char)) {
        return Some(format!("must be {SECRET_NAME_RULE}, got {name:?}"));
    }
    None
}

fn read_secret_name(c: &mut Checker, at: &Field) -> Option<String> {
    let name = c.string(at)?;
    if let Some(problem) = push_secret_name_problem(name) {
        c.problem(at, problem);
        return None;
    }
    // Secrets Manager takes "-" and six characters at the end of an id for an ARN's random
    // suffix, so such a name is ambiguous in every partial ARN that names it.
    let tail = name.rsplit_once('-').map(|(_, tail)| tail);
    if tail.is_some_and(|t| t.len() == 6 && t.bytes().all(|b| b.is_ascii_alphanumeric())) {
        c.warn(
            at,
            format!("{name:?} ends with '-' and six characters, which Secrets Manager reads as an ARN's random suffix; readers that name it by a partial ARN will not find it"),
        );
    }
    Some(name.to_owned())
}

fn read_tags(c: &mut Checker, at: &Field) -> Option<BTreeMap<String, String>> {
    let entries = c.entries(at)?;
    let mut tags = BTreeMap::new();
    let mut ok = true;
    if entries.len() > MAX_TAGS {
        c.problem(
            at,
            format!(
                "at most {MAX_TAGS} tags (Secrets Manager allows 50 and one is secret-ferry's ownership tag), got {}",
                entries.len()
            ),
        );
        ok = false;
    }
    for entry in entries {
        let key = entry.key.clone();
        if !is_tag_text(&key, 1..=128) {
            c.key_problem(
                &entry,
                format!(
                    "tag key {:?} must be 1 to 128 letters, digits, spaces or any of \"_.:/=+-@\"",
                    key
                ),
            );
            ok = false;
        } else if key.to_ascii_lowercase().starts_with("aws:") {
            c.key_problem(
                &entry,
                "tag keys starting with \"aws:\" are reserved by AWS",
            );
            ok = false;
        } else if key.starts_with(super::kube::RESERVED_PREFIX) {
            c.key_problem(
                &entry,
                format!(
                    "tag keys under {} are secret-ferry's own ({OWNER_TAG} marks ownership)",
                    super::kube::RESERVED_PREFIX
                ),
            );
            ok = false;
        }
        match c.scalar(&entry.value) {
            Some(value) if is_tag_text(&value, 0..=256) => {
                tags.insert(key, value);
            }
            Some(_) => {
                c.problem(
                    &entry.value,
                    "a tag value must be at most 256 letters, digits, spaces or any of \"_.:/=+-@\"",
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(tags)
}
