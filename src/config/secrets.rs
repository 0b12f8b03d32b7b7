//! `secrets`: which secret to fetch, how, with which role and how often.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::claims::{NameClaims, PathClaims};
use super::tree::Data;
use saphyr::Scalar;

use super::mapping::read_mapping;
use super::on_change::{read_on_change, OnChange, DEBOUNCES};
use super::parameters::{read_parameter, read_parameter_path, ParameterSource};
use super::read::{checked_string, read_enum, read_list, read_reference, read_region, ROLES};
use super::rules::{check_secret_arn, is_name};
use super::targets::{read_targets, Target, NAME_PLACEHOLDER};
use super::yaml::{both_set, optional, or_default, Checker, Field, Fields};
use super::Mapping;
use super::DEFAULT_DEBOUNCE;
use super::{
    ANY_NUMBER, AT_LEAST_ONE, DEFAULT_REFRESH_INTERVAL, DEFAULT_VERSION_STAGE, REFRESH_INTERVALS,
    SECRET_ARN_FORM,
};

/// One secret to fetch and where to write it.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretConfig {
    /// Used in logs and metric labels.
    pub name: String,
    /// A secret name, full ARN, or ARN without the random suffix.
    pub secret_id: String,
    /// The key of a role under `roles`; `None` uses the daemon's own credentials.
    pub role: Option<String>,
    pub version: VersionSelector,
    pub refresh_interval: Duration,
    pub targets: Vec<Target>,
    /// Told after the secret's files changed (not after the first sync of a run).
    pub on_change: Vec<OnChange>,
    /// Changes within this long of each other cause one notification.
    pub debounce: Duration,
    /// Set instead of `secret_id`: every secret matching it is synced (`secret_id` is then
    /// empty) and target paths hold the `{{ name }}` placeholder.
    pub find: Option<Find>,
    /// With `find`: remove the targets of a secret that no longer matches.
    pub prune: bool,
    pub fetch_strategy: FetchStrategy,
    /// Read the replica in this region when the primary region fails with a transient error.
    pub failover_region: Option<String>,
    /// Applied to the value before any target.
    pub mapping: Mapping,
    /// Set instead of `secret_id` (which is then empty): the entry reads SSM Parameter
    /// Store (`parameter` or `parameterPath`). Boxed: a config of 100,000 Secrets Manager
    /// entries would otherwise hold 56 empty bytes each while it is parsed.
    pub parameter: Option<Box<ParameterSource>>,
}

/// Which secrets a `find` entry syncs: all whose name starts with `name_prefix` and that
/// carry every tag in `tags`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Find {
    pub name_prefix: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl SecretConfig {
    /// The entry for one secret a `find` entry matched: named `<entry>/<name>`, read by its
    /// name, with `{{ name }}` filled in every target path. The placeholder's spelling is
    /// settled when the config is read (`{{name}}` becomes `{{ name }}`), so this is the one
    /// place it is substituted.
    pub fn find_member(&self, name: &str) -> Result<SecretConfig, &'static str> {
        // Names may hold '/', which becomes a subdirectory; '.' and '..' segments would
        // leave the target's directory.
        if name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(
                "its name has an empty, \".\" or \"..\" segment, so it cannot be placed in a path",
            );
        }
        let mut member = self.clone();
        member.name = format!("{}/{}", self.name, name);
        member.secret_id = name.to_owned();
        member.find = None;
        member.prune = false;
        for target in &mut member.targets {
            let path = match target {
                Target::File(f) => &mut f.dir,
                Target::SingleFile(f) => &mut f.path,
                Target::KubernetesSecret(_) => continue,
            };
            *path = path
                .to_string_lossy()
                .replace(NAME_PLACEHOLDER, name)
                .into();
        }
        Ok(member)
    }
}

/// How a group of secrets sharing credentials and region is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum FetchStrategy {
    /// `batch` when more than one secret shares credentials and region, else `get`; falls
    /// back to `get` when BatchGetSecretValue is denied.
    #[default]
    Auto,
    /// GetSecretValue per secret.
    Get,
    /// BatchGetSecretValue, up to 20 secrets per call.
    Batch,
    /// ListSecrets to learn current versions, then GetSecretValue only for changed secrets.
    List,
}

const FETCH_STRATEGIES: &[(&str, FetchStrategy)] = &[
    ("auto", FetchStrategy::Auto),
    ("get", FetchStrategy::Get),
    ("batch", FetchStrategy::Batch),
    ("list", FetchStrategy::List),
];

impl FetchStrategy {
    pub fn as_str(self) -> &'static str {
        FETCH_STRATEGIES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("auto", |(name, _)| name)
    }
}

/// Which version of a secret to fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionSelector {
    /// Borrowed for the default stage (nearly every secret's): no copy of "AWSCURRENT" per
    /// secret, in the config or in the job that keeps it.
    Stage(Cow<'static, str>),
    Id(String),
}

impl VersionSelector {
    pub fn stage(stage: String) -> Self {
        if stage == DEFAULT_VERSION_STAGE {
            Self::current()
        } else {
            Self::Stage(Cow::Owned(stage))
        }
    }

    /// The default: the `AWSCURRENT` stage.
    pub fn current() -> Self {
        Self::Stage(Cow::Borrowed(DEFAULT_VERSION_STAGE))
    }
}

// === reading secrets ===

/// What reading one secret needs to know about the others.
struct Seen<'r> {
    /// `None` when `roles` is unreadable and references can't be checked.
    pub(super) roles: Option<&'r BTreeSet<String>>,
    /// Secret name → path of the secret that has it.
    pub(super) names: NameClaims,
    /// Target directory → path of the `dir` field that has it.
    pub(super) dirs: &'r mut PathClaims,
    pub(super) defaults: &'r SecretDefaults,
}

/// Top-level settings that secrets inherit.
pub(super) struct SecretDefaults {
    pub(super) fetch_strategy: FetchStrategy,
    pub(super) failover_region: Option<String>,
}

/// Also collects the target directories into `dirs`, valid secret or not.
pub(super) fn read_secrets(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
    dirs: &mut PathClaims,
    defaults: &SecretDefaults,
) -> Option<Vec<SecretConfig>> {
    let mut seen = Seen {
        roles,
        names: NameClaims::default(),
        dirs,
        defaults,
    };
    read_list(c, at, AT_LEAST_ONE, "secret", |c, item| {
        read_secret(c, item, &mut seen)
    })
}

fn read_secret(c: &mut Checker, at: &Field, seen: &mut Seen) -> Option<SecretConfig> {
    let mut f = Fields::open(c, at)?;
    let name = f
        .require(c, "name")
        .and_then(|v| read_secret_name(c, &v, &at.path, &mut seen.names));
    let (id_field, find_field) = (f.get("secretId"), f.get("find"));
    let (parameter_field, path_field) = (f.get("parameter"), f.get("parameterPath"));
    let both = several_set(c, &[&id_field, &find_field, &parameter_field, &path_field]);
    if id_field.is_none()
        && find_field.is_none()
        && parameter_field.is_none()
        && path_field.is_none()
    {
        c.report(
            &at.child_path("secretId"),
            Some(at.line()),
            "is required (or `find`, to sync every secret matching a name prefix and tags; or `parameter` / `parameterPath`, to read SSM Parameter Store)",
        );
    }
    let finds = find_field.is_some();
    let reads_parameters = parameter_field.is_some() || path_field.is_some();
    let secret_id = optional(id_field, |v| read_secret_id(c, v));
    let find = optional(find_field, |v| read_find(c, v));
    let parameter = optional(parameter_field, |v| read_parameter(c, v));
    let parameter_path = optional(path_field, |v| read_parameter_path(c, v));
    let role = optional(f.get("role"), |v| read_reference(c, v, seen.roles, &ROLES));
    let (stage, id) = (f.get("versionStage"), f.get("versionId"));
    if reads_parameters {
        refuse_for_parameters(c, &stage, &id, &f.get("failoverRegion"));
    }
    let pinned = id.clone();
    // The strategy is checked against the version fields as written, so that both set
    // (a problem of its own) does not hide a strategy that fits neither.
    let written_stage = stage.as_ref().map(|v| match v.data() {
        Data::Value(Scalar::String(s)) => s.to_string(),
        _ => String::new(),
    });
    let version = read_version(c, stage, id);
    let refresh_interval = or_default(f.get("refreshInterval"), DEFAULT_REFRESH_INTERVAL, |v| {
        c.duration_within(v, REFRESH_INTERVALS)
    });
    let delivery = read_delivery(c, &mut f, seen.dirs, finds);
    let fetching = read_fetching(
        c,
        &mut f,
        seen.defaults,
        &written_stage,
        pinned.is_some(),
        finds,
    );
    let mapping = read_mapping(c, &mut f);
    f.finish(c);
    if both {
        return None;
    }
    let version = version?;
    let Fetching {
        prune,
        fetch_strategy,
        failover_region,
    } = fetching;
    let mut fetch_strategy = fetch_strategy?;
    // A `find` entry learns its secrets from ListSecrets, which also gives their versions.
    if finds {
        fetch_strategy = FetchStrategy::List;
    }
    let parameter = parameter?.or(parameter_path?).map(Box::new);
    // Parameter Store has no replicas: a top-level `failoverRegion` is not inherited.
    let failover_region = if reads_parameters {
        None
    } else {
        failover_region?
    };
    Some(SecretConfig {
        name: name?,
        secret_id: secret_id?.unwrap_or_default(),
        role: role?,
        version,
        refresh_interval: refresh_interval?,
        targets: delivery.targets?,
        on_change: delivery.on_change?,
        debounce: delivery.debounce?,
        find: find?,
        prune: prune?,
        fetch_strategy,
        failover_region,
        mapping: mapping?,
        parameter,
    })
}

/// Reports every field set after the first of `fields` (which exclude each other); returns
/// whether more than one is set.
fn several_set(c: &mut Checker, fields: &[&Option<Field>]) -> bool {
    let mut set = fields.iter().filter(|f| f.is_some());
    let Some(first) = set.next() else {
        return false;
    };
    let mut several = false;
    for other in set {
        several |= both_set(c, first, other);
    }
    several
}

/// A Parameter Store entry's version is its name's selector, and it has no replicas.
fn refuse_for_parameters(
    c: &mut Checker,
    stage: &Option<Field>,
    id: &Option<Field>,
    failover: &Option<Field>,
) {
    for field in [stage, id].into_iter().flatten() {
        c.problem(
            field,
            "applies to Secrets Manager secrets: a Parameter Store entry picks its version with a selector on the name, \"/app/db:3\" (version) or \"/app/db:prod\" (label)",
        );
    }
    if let Some(field) = failover {
        c.problem(
            field,
            "applies to Secrets Manager secrets: Parameter Store has no replicas to fail over to",
        );
    }
}

/// Where a secret goes and whom to tell when it changes: `targets`, `onChange`, `debounce`.
struct Delivery {
    targets: Option<Vec<Target>>,
    on_change: Option<Vec<OnChange>>,
    debounce: Option<Duration>,
}

fn read_delivery(c: &mut Checker, f: &mut Fields, dirs: &mut PathClaims, finds: bool) -> Delivery {
    let targets = f
        .require(c, "targets")
        .and_then(|v| read_targets(c, &v, dirs, finds));
    let on_change = or_default(f.get("onChange"), Vec::new(), |v| {
        read_list(c, v, ANY_NUMBER, "onChange action", read_on_change)
    });
    let debounce = or_default(f.get("debounce"), DEFAULT_DEBOUNCE, |v| {
        c.duration_within(v, DEBOUNCES)
    });
    Delivery {
        targets,
        on_change,
        debounce,
    }
}

/// How a secret is fetched: `prune`, `fetchStrategy`, `failoverRegion`.
struct Fetching {
    prune: Option<bool>,
    fetch_strategy: Option<FetchStrategy>,
    failover_region: Option<Option<String>>,
}

/// `written_stage` and `pinned` are the version fields as written (see `read_secret`).
fn read_fetching(
    c: &mut Checker,
    f: &mut Fields,
    defaults: &SecretDefaults,
    written_stage: &Option<String>,
    pinned: bool,
    finds: bool,
) -> Fetching {
    let prune_field = f.get("prune");
    if let (Some(prune), false) = (&prune_field, finds) {
        c.problem(
            prune,
            "applies only to `find` entries, whose set of secrets can shrink",
        );
    }
    let prune = or_default(prune_field, false, |v| c.boolean(v));
    let strategy_field = f.get("fetchStrategy");
    let fetch_strategy = or_default(strategy_field.clone(), defaults.fetch_strategy, |v| {
        read_fetch_strategy(c, v)
    });
    if let (Some(at), Some(strategy)) = (&strategy_field, fetch_strategy) {
        check_strategy(c, at, strategy, written_stage, pinned, finds);
    }
    let failover_region = or_default(
        f.get("failoverRegion"),
        defaults.failover_region.clone(),
        |v| read_region(c, v).map(Some),
    );
    Fetching {
        prune,
        fetch_strategy,
        failover_region,
    }
}

pub(super) fn read_fetch_strategy(c: &mut Checker, at: &Field) -> Option<FetchStrategy> {
    read_enum(c, at, FETCH_STRATEGIES)
}

/// BatchGetSecretValue only returns AWSCURRENT, and a pinned versionId never changes.
/// `stage` is the versionStage as written (`None`: not set).
fn check_strategy(
    c: &mut Checker,
    at: &Field,
    strategy: FetchStrategy,
    stage: &Option<String>,
    pinned: bool,
    finds: bool,
) {
    let other_stage = stage.as_deref().is_some_and(|s| s != DEFAULT_VERSION_STAGE);
    let problem = match strategy {
        FetchStrategy::Get | FetchStrategy::Batch if finds => {
            Some("a `find` entry is always polled with ListSecrets: use list or auto")
        }
        FetchStrategy::Batch if other_stage || pinned => Some(
            "batch reads only the AWSCURRENT version (BatchGetSecretValue takes no version): use get, or list for another versionStage",
        ),
        FetchStrategy::List if pinned => {
            Some("a pinned versionId never changes, so there is nothing to list: use get")
        }
        _ => None,
    };
    if let Some(problem) = problem {
        c.problem(at, problem);
    }
}

fn read_find(c: &mut Checker, at: &Field) -> Option<Find> {
    let mut f = Fields::open(c, at)?;
    let name_prefix = optional(f.get("namePrefix"), |v| {
        checked_string(
            c,
            v,
            |p| !p.is_empty() && p.len() <= 512 && p.chars().all(is_secret_name_char),
            "the start of a secret name: letters, digits or any of \"/_+=.@-\"",
        )
    });
    let tags = or_default(f.get("tags"), BTreeMap::new(), |v| read_find_tags(c, v));
    f.finish(c);
    let find = Find {
        name_prefix: name_prefix?,
        tags: tags?,
    };
    if find.name_prefix.is_none() && find.tags.is_empty() {
        c.problem(
            at,
            "needs namePrefix or tags: a find matching every secret in the account is almost never meant",
        );
        return None;
    }
    Some(find)
}

fn read_find_tags(c: &mut Checker, at: &Field) -> Option<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    let mut ok = true;
    for entry in c.entries(at)? {
        let value = c.scalar(&entry.value);
        match value {
            Some(value) if !entry.key.is_empty() => {
                tags.insert(entry.key, value);
            }
            _ => ok = false,
        }
    }
    ok.then_some(tags)
}

pub(super) fn is_secret_name_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "/_+=.@-".contains(ch)
}

fn read_secret_name(
    c: &mut Checker,
    at: &Field,
    secret_path: &str,
    names: &mut NameClaims,
) -> Option<String> {
    let name = checked_string(
        c,
        at,
        |n| is_name(n, 128),
        "1 to 128 letters, digits, '_', '.' or '-'",
    );
    // Compared as written, valid or not: a duplicate is a problem of its own, and fixing
    // the spelling of both must not reveal it only in a second run.
    let written = match at.data() {
        Data::Value(Scalar::String(s)) if !s.is_empty() => s.to_string(),
        _ => return None,
    };
    if let Some(first) = names.claim(&written, secret_path) {
        c.problem(
            at,
            format!("duplicate secret name {written:?}: {first} already uses it"),
        );
        return None;
    }
    name
}

fn read_secret_id(c: &mut Checker, at: &Field) -> Option<String> {
    let id = c.scalar(at)?;
    if id.starts_with("arn:") {
        if let Err(reason) = check_secret_arn(&id) {
            c.problem(
                at,
                format!("{reason}; expected a secret name or {SECRET_ARN_FORM}, got {id:?}"),
            );
            return None;
        }
    }
    Some(id)
}

fn read_version(
    c: &mut Checker,
    stage: Option<Field>,
    id: Option<Field>,
) -> Option<VersionSelector> {
    let both = both_set(c, &stage, &id);
    let stage = optional(stage, |v| c.scalar(v).map(VersionSelector::stage));
    let id = optional(id, |v| c.scalar(v).map(VersionSelector::Id));
    if both {
        return None;
    }
    let default = VersionSelector::current;
    Some(stage?.or(id?).unwrap_or_else(default))
}
