//! The configuration file: parsing and validation.
//!
//! The YAML is walked by hand over a span-carrying tree (`tree`, built from saphyr-parser's
//! events; no serde) so that every problem can be reported at once, each with its path
//! (`secrets[0].targets[0].file.mode`) and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use outputs::{read_base_credentials, read_credential_outputs, read_credentials_endpoint};
use read::{declared_keys, read_region};
use roles::read_roles;
use secrets::{read_fetch_strategy, read_secrets, SecretDefaults};
use yaml::{line, optional, or_default, Checker, Field, Fields};

mod change_events;
mod claims;
mod depth;
pub mod keys;
mod kube;
mod mapping;
mod observability;
mod on_change;
mod outputs;
mod parameters;
mod policy_json;
mod pushes;
mod read;
mod roles;
mod rules;
mod secrets;
mod session;
mod targets;
pub mod templates;
#[cfg(test)]
mod tests;
mod tree;
mod yaml;

pub use change_events::ChangeEventsQueue;
pub use kube::{glob_matches, CreationPolicy, DeletionPolicy, KubeSecretTarget, TenantRule};
pub use mapping::{Decode, KeyMap, Mapping, TemplateMode};
pub use observability::DEFAULT_MAX_POLL_STALL;
pub use on_change::{OnChange, SignalName};
pub use outputs::{BaseCredentials, CredentialOutput, CredentialsEndpoint};
pub use parameters::{ParameterSource, Selector};
pub use pushes::{
    push_secret_name_problem, PushConfig, PushSource, PushTarget, Recovery, UpdatePolicy,
    DEFAULT_INSTANCE, MAX_SECRET_BYTES, OWNER_TAG,
};
pub use roles::{ExternalIdSource, RoleConfig};
pub use secrets::{FetchStrategy, Find, SecretConfig, VersionSelector};
pub use targets::{FileFormat, FileTarget, SingleFileTarget, Target, NAME_PLACEHOLDER};

/// The version stage a secret follows when it names none, and the one Secrets Manager
/// gives the newest version: the single definition for every stage of the daemon.
pub const DEFAULT_VERSION_STAGE: &str = "AWSCURRENT";
/// How often a secret is read when it sets no `refreshInterval`: the single definition
/// for every stage of the daemon.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Changes closer together than this make one notification (`debounce`).
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
const REFRESH_INTERVALS: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::MAX;
const DEFAULT_FILE_MODE: u32 = 0o400;
const DEFAULT_API_RATE_LIMIT: u32 = 50;
/// Secrets Manager's own quota for GetSecretValue is 10,000 per second per account.
const API_RATE_LIMITS: RangeInclusive<u32> = 1..=10_000;
/// Parameter Store's standard throughput is about 40 transactions per second per account and
/// region, shared with every other reader; higher throughput raises GetParameters to 3,000.
const DEFAULT_PARAMETER_STORE_RATE_LIMIT: u32 = 40;
const PARAMETER_STORE_RATE_LIMITS: RangeInclusive<u32> = 1..=3_000;
const ANY_NUMBER: RangeInclusive<usize> = 0..=usize::MAX;
const AT_LEAST_ONE: RangeInclusive<usize> = 1..=usize::MAX;

const ROLE_ARN_FORM: &str = "arn:<partition>:iam::<12-digit account id>:role/<name>";
const SECRET_ARN_FORM: &str =
    "arn:<partition>:secretsmanager:<region>:<12-digit account id>:secret:<name>";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Default AWS region.
    pub region: Option<String>,
    /// Roles to assume, by the name secrets refer to them with.
    pub roles: BTreeMap<String, RoleConfig>,
    pub secrets: Vec<SecretConfig>,
    /// Values written into Secrets Manager.
    pub pushes: Vec<PushConfig>,
    /// Names this installation in the ownership tag of the secrets it pushes.
    pub instance: String,
    /// Where the base identity comes from; `None` uses the AWS SDK default chain.
    pub base_credentials: Option<BaseCredentials>,
    pub credential_outputs: Vec<CredentialOutput>,
    pub credentials_endpoint: Option<CredentialsEndpoint>,
    /// `/readyz` fails while any secret's last successful sync is older than this.
    pub max_staleness: Option<Duration>,
    /// `/readyz` fails while a group has not completed a poll for this long (and for twice
    /// its interval).
    pub max_poll_stall: Duration,
    /// Which secrets have their own series (`metrics.perSecretSeries`).
    pub metrics: crate::metrics::SeriesPolicy,
    /// Secrets Manager calls per second allowed per (account, region).
    pub api_rate_limit: u32,
    /// Parameter Store calls per second allowed per (account, region): a budget of its own.
    pub parameter_store_rate_limit: u32,
    /// Default `fetchStrategy` of secrets that set none.
    pub fetch_strategy: FetchStrategy,
    /// Default `failoverRegion` of secrets that set none.
    pub failover_region: Option<String>,
    /// Which namespaces may ask the controller for which secrets, through annotated Secrets.
    pub tenants: Vec<TenantRule>,
    /// SQS queues of Secrets Manager change events (`changeEvents`): a change syncs its
    /// secret at once instead of at its next poll.
    pub change_events: Vec<ChangeEventsQueue>,
    /// Settings that are allowed but probably not what was meant, in document order.
    pub warnings: Vec<Problem>,
}

impl Config {
    /// Roles in an order where every role comes after its `via` role, so that each can be
    /// assumed with credentials obtained before it; otherwise in name order.
    pub fn roles_in_chain_order(&self) -> Vec<&RoleConfig> {
        let mut ordered = Vec::with_capacity(self.roles.len());
        let mut placed = BTreeSet::new();
        for name in self.roles.keys() {
            for role in self.chain(name) {
                if placed.insert(role.name.as_str()) {
                    ordered.push(role);
                }
            }
        }
        ordered
    }

    /// The chain from the base identity to `role`: `[root, ..., role]`, where `root` has no
    /// `via`. Empty when `role` is not defined.
    pub fn chain(&self, role: &str) -> Vec<&RoleConfig> {
        let mut chain: Vec<&RoleConfig> = Vec::new();
        let mut next = self.roles.get(role);
        while let Some(role) = next {
            // `parse` refuses loops, but the fields are public and a loop must not hang us.
            if chain.iter().any(|r| r.name == role.name) {
                break;
            }
            chain.push(role);
            next = role.via.as_deref().and_then(|via| self.roles.get(via));
        }
        chain.reverse();
        chain
    }
}

/// Everything wrong with a config file, in document order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Problem>);

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Where in the config, such as `secrets[2].refreshInterval`; empty for the document as a
    /// whole. For a file that cannot be read, the file's path.
    pub path: String,
    /// 1-based line in the file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Problem {
            path: path.display().to_string(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    parse(&text)
}

/// Parses and validates a config document, reporting every problem found. Placeholders in
/// session names take their values from the process environment.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(text, &|name| std::env::var(name).ok())
}

/// Like [`parse`], with placeholders in session names looked up through `env`.
pub fn parse_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    if let Some(line) = depth::too_deep(text) {
        return Err(ConfigErrors(vec![Problem {
            path: String::new(),
            line: Some(line),
            message: format!(
                "the document nests deeper than {} levels; a config never needs that many",
                depth::MAX_NESTING
            ),
        }]));
    }
    // Duplicate mapping keys and the alias budget arrive here as load errors.
    let tree = tree::Tree::load(text).map_err(|e| {
        ConfigErrors(vec![Problem {
            path: String::new(),
            line: Some(e.line),
            message: format!("invalid YAML: {}", e.info),
        }])
    })?;
    let docs: Vec<tree::NodeRef> = tree.documents().collect();
    let mut c = Checker {
        source: text,
        char_offsets: (!text.is_ascii()).then(|| {
            text.char_indices()
                .map(|(byte, _)| byte)
                .chain(std::iter::once(text.len()))
                .collect()
        }),
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let config = match docs.as_slice() {
        [] => {
            c.report(
                "",
                None,
                "the config is empty; it needs at least a `secrets` (or `pushes`) list",
            );
            None
        }
        [doc, extra @ ..] => {
            for node in extra {
                c.report(
                    "",
                    Some(line(*node)),
                    "the config must be a single YAML document",
                );
            }
            read_config(&mut c, &Field::root(*doc))
        }
    };
    let mut warnings = std::mem::take(&mut c.warnings);
    warnings.sort_by_key(|p| p.line);
    c.finish(config).map(|config| Config { warnings, ..config })
}

fn read_config(c: &mut Checker, at: &Field) -> Option<Config> {
    let mut f = Fields::open(c, at)?;
    let region = optional(f.get("region"), |v| read_region(c, v));
    let roles_field = f.get("roles");
    let role_names = declared_keys(roles_field.as_ref());
    let roles = read_roles(c, roles_field, role_names.as_ref());
    let fetch_strategy = or_default(f.get("fetchStrategy"), FetchStrategy::Auto, |v| {
        read_fetch_strategy(c, v)
    });
    let failover_region = optional(f.get("failoverRegion"), |v| read_region(c, v));
    let defaults = SecretDefaults {
        fetch_strategy: fetch_strategy.unwrap_or_default(),
        failover_region: failover_region.clone().flatten(),
    };
    // Target directories, for credential outputs to stay out of.
    let mut dirs = claims::PathClaims::default();
    let secrets_field = f.get("secrets");
    let tenants_field = f.get("tenants");
    let pushes_field = f.get("pushes");
    let secrets = match (secrets_field, &tenants_field, &pushes_field) {
        (Some(v), _, _) => read_secrets(c, &v, role_names.as_ref(), &mut dirs, &defaults),
        // A controller that only serves tenants, or a daemon that only pushes, has no
        // secrets to read.
        (None, Some(_), _) | (None, _, Some(_)) => Some(Vec::new()),
        (None, None, None) => {
            c.report(
                &at.child_path("secrets"),
                Some(at.line()),
                "is required (or `pushes`, to write values into Secrets Manager)",
            );
            None
        }
    };
    let instance_field = f.get("instance");
    if let (None, Some(pushes)) = (&instance_field, &pushes_field) {
        c.warn(
            pushes,
            format!("`instance` is not set, so pushed secrets are tagged {OWNER_TAG}={DEFAULT_INSTANCE:?}; give each installation that pushes into the same account its own `instance`, or they will take each other's secrets for their own"),
        );
    }
    let instance = or_default(instance_field, DEFAULT_INSTANCE.to_owned(), |v| {
        pushes::read_instance(c, v)
    });
    let pushes = or_default(pushes_field, Vec::new(), |v| {
        pushes::read_pushes(c, v, role_names.as_ref())
    });
    let tenants = or_default(tenants_field, Vec::new(), |v| {
        kube::read_tenants(c, v, role_names.as_ref())
    });
    let base_credentials = optional(f.get("baseCredentials"), |v| read_base_credentials(c, v));
    let credential_outputs = or_default(f.get("credentialOutputs"), Vec::new(), |v| {
        read_credential_outputs(c, v, role_names.as_ref(), &dirs)
    });
    let credentials_endpoint = optional(f.get("credentialsEndpoint"), |v| {
        read_credentials_endpoint(c, v, role_names.as_ref())
    });
    let max_staleness = optional(f.get("maxStaleness"), |v| {
        c.duration_within(v, REFRESH_INTERVALS)
    });
    let api_rate_limit = or_default(f.get("apiRateLimit"), DEFAULT_API_RATE_LIMIT, |v| {
        c.integer_within(v, API_RATE_LIMITS)
    });
    let parameter_store_rate_limit = or_default(
        f.get("parameterStoreRateLimit"),
        DEFAULT_PARAMETER_STORE_RATE_LIMIT,
        |v| c.integer_within(v, PARAMETER_STORE_RATE_LIMITS),
    );
    let max_poll_stall = or_default(f.get("maxPollStall"), DEFAULT_MAX_POLL_STALL, |v| {
        c.duration_within(v, REFRESH_INTERVALS)
    });
    let metrics = or_default(f.get("metrics"), Default::default(), |v| {
        observability::read_metrics(c, v)
    });
    let change_events = or_default(f.get("changeEvents"), Vec::new(), |v| {
        change_events::read_change_events(c, v, role_names.as_ref())
    });
    f.finish(c);
    Some(Config {
        region: region?,
        roles: roles?,
        secrets: secrets?,
        pushes: pushes?,
        instance: instance?,
        base_credentials: base_credentials?,
        credential_outputs: credential_outputs?,
        credentials_endpoint: credentials_endpoint?,
        max_staleness: max_staleness?,
        api_rate_limit: api_rate_limit?,
        parameter_store_rate_limit: parameter_store_rate_limit?,
        max_poll_stall: max_poll_stall?,
        metrics: metrics?,
        fetch_strategy: fetch_strategy?,
        failover_region: failover_region?,
        tenants: tenants?,
        change_events: change_events?,
        warnings: Vec::new(),
    })
}
