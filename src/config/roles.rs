//! `roles`: the roles to assume, their ExternalId, durations, policies and `via` chains
//! (the session's name and tags are read in `session`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::policy_json::read_policy;
use super::read::{
    checked_string, declared_keys, read_list, read_path, read_reference, read_region, unique,
    ROLES, TAG_KEYS,
};
use super::rules::{
    check_policy_arn, check_role_arn, is_endpoint_url, is_env_name, is_name, is_sts_name,
};
use super::session::{read_session_name, read_session_tags};
use super::yaml::{both_set, optional, or_default, Checker, Entry, Field, Fields};
use super::{ANY_NUMBER, ROLE_ARN_FORM};

const DEFAULT_SESSION_NAME: &str = "secret-ferry";
const DEFAULT_ROLE_DURATION: Duration = Duration::from_secs(60 * 60);
const ROLE_DURATIONS: RangeInclusive<Duration> =
    Duration::from_secs(15 * 60)..=Duration::from_secs(12 * 60 * 60);
const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// AWS refuses longer sessions for a role assumed with another role's credentials.
const MAX_CHAINED_DURATION: Duration = Duration::from_secs(60 * 60);
// STS limit on AssumeRole parameters.
const MAX_POLICY_ARNS: usize = 10;
const POLICY_ARN_FORM: &str = "arn:<partition>:iam::<aws or a 12-digit account id>:policy/<name>";
const SOURCE_IDENTITY_RULE: &str =
    "2 to 64 letters, digits or any of \"+=,.@_-\" (an STS source identity)";
const ENDPOINT_FORM: &str =
    "an http:// or https:// URL with a host, such as \"https://sts.eu-west-1.amazonaws.com\"";

/// A cross-account role to assume with STS.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleConfig {
    /// The key under `roles`.
    pub name: String,
    pub role_arn: String,
    pub external_id: Option<ExternalIdSource>,
    pub session_name: String,
    /// Requested session length.
    pub duration: Duration,
    /// How long before expiry the credentials are renewed.
    pub refresh_before: Duration,
    pub session_tags: BTreeMap<String, String>,
    /// Keys of `session_tags` that carry over to roles assumed with this role's credentials.
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    /// Inline session policy as compact JSON.
    pub policy: Option<String>,
    /// Managed policies that further limit the session.
    pub policy_arns: Vec<String>,
    /// Overrides the top-level region for this role's STS calls.
    pub region: Option<String>,
    pub sts_endpoint: Option<String>,
    /// The role whose credentials assume this one; `None` uses the base identity.
    pub via: Option<String>,
}

/// Where the ExternalId is read from at run time; the value itself never appears in the config.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalIdSource {
    File(PathBuf),
    Env(String),
}

pub(super) fn read_roles(
    c: &mut Checker,
    at: Option<Field>,
    names: Option<&BTreeSet<String>>,
) -> Option<BTreeMap<String, RoleConfig>> {
    let Some(at) = at else {
        return Some(BTreeMap::new());
    };
    let entries = c.entries(&at)?;
    let mut links = Vec::new();
    // Collected before checking so that every role is read even after an invalid one.
    let roles: Vec<Option<RoleConfig>> = entries
        .iter()
        .map(|e| read_role(c, e, names, &mut links))
        .collect();
    let loop_free = check_via_loops(c, &links);
    let roles: Option<BTreeMap<String, RoleConfig>> = roles
        .into_iter()
        .map(|role| role.map(|role| (role.name.clone(), role)))
        .collect();
    roles.filter(|_| loop_free)
}

fn read_role<'a>(
    c: &mut Checker,
    entry: &Entry<'a>,
    roles: Option<&BTreeSet<String>>,
    links: &mut Vec<ViaLink<'a>>,
) -> Option<RoleConfig> {
    let at = &entry.value;
    let name_ok = entry.key_is_string && is_name(&entry.key, 64);
    if !name_ok {
        c.key_problem(
            entry,
            format!(
                "a role name must be 1 to 64 letters, digits, '_', '.' or '-', got {}",
                entry.shown_key()
            ),
        );
    }
    let mut f = Fields::open(c, at)?;
    let role_arn = f
        .require(c, "roleArn")
        .and_then(|v| read_arn(c, &v, check_role_arn, ROLE_ARN_FORM));
    let (file, env) = (f.get("externalIdFile"), f.get("externalIdEnv"));
    let external_id = read_external_id(c, file, env);
    let session_name = or_default(f.get("sessionName"), DEFAULT_SESSION_NAME.to_owned(), |v| {
        read_session_name(c, v)
    });
    let duration_field = f.get("duration");
    let duration = or_default(duration_field.clone(), DEFAULT_ROLE_DURATION, |v| {
        c.duration_within(v, ROLE_DURATIONS)
    });
    let refresh_before = or_default(f.get("refreshBefore"), DEFAULT_REFRESH_BEFORE, |v| {
        read_refresh_before(c, v, duration)
    });
    let tags_field = f.get("sessionTags");
    let tag_keys = declared_keys(tags_field.as_ref());
    let session_tags = or_default(tags_field, BTreeMap::new(), |v| read_session_tags(c, v));
    let transitive_tag_keys = or_default(f.get("transitiveTagKeys"), Vec::new(), |v| {
        let read =
            |c: &mut Checker, key: &Field| read_reference(c, key, tag_keys.as_ref(), &TAG_KEYS);
        read_list(c, v, ANY_NUMBER, "tag key", unique(read))
    });
    let source_identity = optional(f.get("sourceIdentity"), |v| {
        checked_string(c, v, is_sts_name, SOURCE_IDENTITY_RULE)
    });
    let policy = optional(f.get("policy"), |v| read_policy(c, v));
    let policy_arns = or_default(f.get("policyArns"), Vec::new(), |v| {
        read_list(c, v, 0..=MAX_POLICY_ARNS, "policy ARN", |c, arn| {
            read_arn(c, arn, check_policy_arn, POLICY_ARN_FORM)
        })
    });
    let region = optional(f.get("region"), |v| read_region(c, v));
    let sts_endpoint = optional(f.get("stsEndpoint"), |v| {
        checked_string(c, v, is_endpoint_url, ENDPOINT_FORM)
    });
    let via = optional(f.get("via"), |v| read_via(c, v, &entry.key, roles, links));
    f.finish(c);
    if let (Some(Some(via)), Some(duration), Some(at)) = (&via, duration, &duration_field) {
        warn_long_chained_session(c, at, duration, via);
    }
    if !name_ok {
        return None;
    }
    Some(RoleConfig {
        name: entry.key.clone(),
        role_arn: role_arn?,
        external_id: external_id?,
        session_name: session_name?,
        duration: duration?,
        refresh_before: refresh_before?,
        session_tags: session_tags?,
        transitive_tag_keys: transitive_tag_keys?,
        source_identity: source_identity?,
        policy: policy?,
        policy_arns: policy_arns?,
        region: region?,
        sts_endpoint: sts_endpoint?,
        via: via?,
    })
}

/// An ARN that `check` accepts; `form` shows what one looks like.
fn read_arn(
    c: &mut Checker,
    at: &Field,
    check: fn(&str) -> Result<(), String>,
    form: &str,
) -> Option<String> {
    let arn = c.string(at)?;
    if let Err(reason) = check(arn) {
        c.problem(at, format!("{reason}; expected {form}, got {arn:?}"));
        return None;
    }
    Some(arn.to_owned())
}

fn read_external_id(
    c: &mut Checker,
    file: Option<Field>,
    env: Option<Field>,
) -> Option<Option<ExternalIdSource>> {
    let both = both_set(c, &file, &env);
    let file = optional(file, |v| read_path(c, v).map(ExternalIdSource::File));
    let env = optional(env, |v| read_env_name(c, v).map(ExternalIdSource::Env));
    if both {
        return None;
    }
    Some(file?.or(env?))
}

fn read_env_name(c: &mut Checker, at: &Field) -> Option<String> {
    checked_string(
        c,
        at,
        is_env_name,
        "an environment variable name (letters, digits and '_', not starting with a digit)",
    )
}

fn read_refresh_before(
    c: &mut Checker,
    at: &Field,
    duration: Option<Duration>,
) -> Option<Duration> {
    let refresh_before = c.duration(at)?;
    if refresh_before.is_zero() {
        c.problem(at, "must be greater than zero");
        return None;
    }
    let Some(duration) = duration else {
        // The comparison waits for a valid duration, and says so, so that a fixed
        // duration does not bring up a new problem here unannounced.
        let longest = *ROLE_DURATIONS.end();
        let got = c.describe(at.node);
        let message = if refresh_before >= longest {
            format!(
                "must be shorter than duration, which is at most {}, got {got}",
                humantime::format_duration(longest)
            )
        } else {
            format!("{got} not checked against duration, which is invalid")
        };
        c.problem(at, message);
        return None;
    };
    if refresh_before >= duration {
        let got = c.describe(at.node);
        c.problem(
            at,
            format!(
                "must be shorter than duration ({}), got {got}",
                humantime::format_duration(duration)
            ),
        );
        return None;
    }
    Some(refresh_before)
}

// === via chains ===

/// A role's `via`, kept apart from the role so that loops are found even among roles that have
/// other problems.
struct ViaLink<'a> {
    pub(super) role: String,
    pub(super) via: String,
    pub(super) at: Field<'a>,
}

fn read_via<'a>(
    c: &mut Checker,
    at: &Field<'a>,
    role: &str,
    roles: Option<&BTreeSet<String>>,
    links: &mut Vec<ViaLink<'a>>,
) -> Option<String> {
    let via = read_reference(c, at, roles, &ROLES)?;
    if via == role {
        c.problem(at, format!("role {role:?} cannot be assumed via itself"));
        return None;
    }
    links.push(ViaLink {
        role: role.to_owned(),
        via: via.clone(),
        at: at.clone(),
    });
    Some(via)
}

/// Reports each loop of `via` links once, at the role of the loop that comes first in the file.
/// Returns whether there are none.
fn check_via_loops(c: &mut Checker, links: &[ViaLink]) -> bool {
    let by_role: BTreeMap<&str, &ViaLink> = links.iter().map(|l| (l.role.as_str(), l)).collect();
    // Roles whose chain is fully explored.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut loop_free = true;
    for start in links {
        let mut walked: Vec<&ViaLink> = Vec::new();
        let mut next = Some(start);
        while let Some(link) = next.filter(|l| !done.contains(l.role.as_str())) {
            if let Some(i) = walked.iter().position(|l| l.role == link.role) {
                report_via_loop(c, &walked[i..]);
                loop_free = false;
                break;
            }
            walked.push(link);
            next = by_role.get(link.via.as_str()).copied();
        }
        done.extend(walked.iter().map(|l| l.role.as_str()));
    }
    loop_free
}

/// `cycle` holds the links of one loop in chain order.
fn report_via_loop(c: &mut Checker, cycle: &[&ViaLink]) {
    let first_in_file = cycle.iter().enumerate().min_by_key(|(_, l)| l.at.line());
    let Some((first, link)) = first_in_file else {
        return;
    };
    let mut names: Vec<&str> = cycle.iter().map(|l| l.role.as_str()).collect();
    names.rotate_left(first);
    names.push(&link.role);
    c.problem(
        &link.at,
        format!("role chain loops: {}", names.join(" -> ")),
    );
}

fn warn_long_chained_session(c: &mut Checker, at: &Field, duration: Duration, via: &str) {
    if duration > MAX_CHAINED_DURATION {
        c.warn(
            at,
            format!(
                "is {}, but this role is assumed via role {via:?} and AWS caps role-chaining \
                 sessions at {}; STS refuses longer ones",
                humantime::format_duration(duration),
                humantime::format_duration(MAX_CHAINED_DURATION)
            ),
        );
    }
}
