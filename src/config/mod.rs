//! The configuration file: parsing and validation.
//!
//! The YAML is walked by hand over saphyr's span-carrying tree (no serde) so that every problem
//! can be reported at once, each with its path (`secrets[0].targets[0].file.mode`) and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use crate::mapping::{Decode, KeyMap, Mapping, TemplateMode};

mod depth;
mod kube;

pub use kube::{glob_matches, CreationPolicy, DeletionPolicy, KubeSecretTarget, TenantRule};

const DEFAULT_SESSION_NAME: &str = "secret-ferry";
const DEFAULT_ROLE_DURATION: Duration = Duration::from_secs(60 * 60);
const ROLE_DURATIONS: RangeInclusive<Duration> =
    Duration::from_secs(15 * 60)..=Duration::from_secs(12 * 60 * 60);
const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_VERSION_STAGE: &str = "AWSCURRENT";
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
const REFRESH_INTERVALS: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::MAX;
const DEFAULT_FILE_MODE: u32 = 0o400;
const DEFAULT_API_RATE_LIMIT: u32 = 50;
/// Secrets Manager's own quota for GetSecretValue is 10,000 per second per account.
const API_RATE_LIMITS: RangeInclusive<u32> = 1..=10_000;
const DEFAULT_PROFILE: &str = "default";
/// AWS refuses longer sessions for a role assumed with another role's credentials.
const MAX_CHAINED_DURATION: Duration = Duration::from_secs(60 * 60);
// STS limits on AssumeRole parameters.
const MAX_SESSION_TAGS: usize = 50;
const MAX_POLICY_ARNS: usize = 10;
const MAX_POLICY_CHARS: usize = 2048;
const ANY_NUMBER: RangeInclusive<usize> = 0..=usize::MAX;
const AT_LEAST_ONE: RangeInclusive<usize> = 1..=usize::MAX;
/// The `${NAME}` placeholders a session name may use, with the downward API field that usually
/// sets each: they give every pod its own session name in CloudTrail.
const SESSION_NAME_VARIABLES: &[(&str, &str)] = &[
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("HOSTNAME", "metadata.name"),
];
/// Keys allowed in a `targets` item; keep in step with `read_target`.
const TARGET_KINDS: &[&str] = &["file", "kubernetesSecret"];

const ROLE_ARN_FORM: &str = "arn:<partition>:iam::<12-digit account id>:role/<name>";
const POLICY_ARN_FORM: &str = "arn:<partition>:iam::<aws or a 12-digit account id>:policy/<name>";
const SECRET_ARN_FORM: &str =
    "arn:<partition>:secretsmanager:<region>:<12-digit account id>:secret:<name>";
const DURATION_FORM: &str = "a duration such as \"90s\", \"5m\" or \"1h\"";
const MODE_FORM: &str = "a quoted octal string such as \"0400\"";
const SESSION_NAME_RULE: &str =
    "2 to 64 letters, digits or any of \"+=,.@_-\" (an STS session name)";
const SOURCE_IDENTITY_RULE: &str =
    "2 to 64 letters, digits or any of \"+=,.@_-\" (an STS source identity)";
const TAG_CHARS: &str = "letters, digits, spaces or any of \"_.:/=+-@\"";
const ENDPOINT_FORM: &str =
    "an http:// or https:// URL with a host, such as \"https://sts.eu-west-1.amazonaws.com\"";
const LISTEN_FORM: &str =
    "an IP address and port such as \"127.0.0.1:9911\" (host names are not accepted)";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Default AWS region.
    pub region: Option<String>,
    /// Roles to assume, by the name secrets refer to them with.
    pub roles: BTreeMap<String, RoleConfig>,
    pub secrets: Vec<SecretConfig>,
    /// Where the base identity comes from; `None` uses the AWS SDK default chain.
    pub base_credentials: Option<BaseCredentials>,
    pub credential_outputs: Vec<CredentialOutput>,
    pub credentials_endpoint: Option<CredentialsEndpoint>,
    /// `/readyz` fails while any secret's last successful sync is older than this.
    pub max_staleness: Option<Duration>,
    /// Secrets Manager calls per second allowed per (account, region).
    pub api_rate_limit: u32,
    /// Default `fetchStrategy` of secrets that set none.
    pub fetch_strategy: FetchStrategy,
    /// Default `failoverRegion` of secrets that set none.
    pub failover_region: Option<String>,
    /// Which namespaces may ask the controller for which secrets, through annotated Secrets.
    pub tenants: Vec<TenantRule>,
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

/// Long-lived access keys for the base identity, read from files.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseCredentials {
    pub access_key_id_file: PathBuf,
    pub secret_access_key_file: PathBuf,
}

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
}

/// Which secrets a `find` entry syncs: all whose name starts with `name_prefix` and that
/// carry every tag in `tags`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Find {
    pub name_prefix: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The placeholder a `find` entry's target paths use for each matching secret's name.
pub const NAME_PLACEHOLDER: &str = "{{ name }}";

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

/// One way to tell the app that its secret changed.
#[derive(Debug, Clone, PartialEq)]
pub enum OnChange {
    /// Send `signal` to every process whose name (`/proc/PID/comm`) is `process`.
    Signal { process: String, signal: SignalName },
    /// Call an HTTP endpoint of the app, e.g. a reload hook.
    Http {
        url: String,
        method: String,
        timeout: Duration,
    },
    /// Create the file or move its modification time to now.
    Touch(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalName {
    Hup,
    Int,
    Quit,
    Term,
    Usr1,
    Usr2,
}

const SIGNALS: &[(&str, SignalName)] = &[
    ("HUP", SignalName::Hup),
    ("INT", SignalName::Int),
    ("QUIT", SignalName::Quit),
    ("TERM", SignalName::Term),
    ("USR1", SignalName::Usr1),
    ("USR2", SignalName::Usr2),
];
const HTTP_METHODS: &[&str] = &["POST", "PUT", "GET"];
const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
const NOTIFY_TIMEOUTS: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(60);
const DEBOUNCES: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);
/// Linux keeps 15 bytes of a process name in `/proc/PID/comm`.
const MAX_PROCESS_NAME: usize = 15;

/// Which version of a secret to fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionSelector {
    Stage(String),
    Id(String),
}

/// Where a secret is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    File(FileTarget),
    SingleFile(SingleFileTarget),
    KubernetesSecret(KubeSecretTarget),
}

/// Write the secret as one file in a format an app can load.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleFileTarget {
    pub path: PathBuf,
    pub format: FileFormat,
    /// Permission bits of the file, at most 0o777.
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Raw,
    Json,
    Env,
    Properties,
}

const FILE_FORMATS: &[(&str, FileFormat)] = &[
    ("raw", FileFormat::Raw),
    ("json", FileFormat::Json),
    ("env", FileFormat::Env),
    ("properties", FileFormat::Properties),
];

/// Write the secret into files in `dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileTarget {
    pub dir: PathBuf,
    /// Permission bits of the written files, at most 0o777.
    pub mode: u32,
}

/// A role's credentials written as an AWS shared credentials file, for other processes.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialOutput {
    /// The key of a role under `roles`.
    pub role: String,
    pub path: PathBuf,
    /// The `[profile]` section the credentials are written under.
    pub profile: String,
    /// Permission bits of the file, at most 0o777.
    pub mode: u32,
}

/// An HTTP endpoint serving role credentials to clients that present the token.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialsEndpoint {
    pub listen: SocketAddr,
    /// The file holding the token clients must present.
    pub token_file: PathBuf,
    /// Keys of roles under `roles` that the endpoint serves.
    pub roles: Vec<String>,
    /// Whether `listen` may be reachable from other hosts.
    pub allow_non_loopback: bool,
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
    // saphyr rejects duplicate mapping keys itself, so they arrive here as a load error.
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        ConfigErrors(vec![Problem {
            path: String::new(),
            line: Some(e.marker().line()),
            message: format!("invalid YAML: {}", e.info()),
        }])
    })?;
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
                "the config is empty; it needs at least a `secrets` list",
            );
            None
        }
        [doc, extra @ ..] => {
            for node in extra {
                c.report(
                    "",
                    Some(line(node)),
                    "the config must be a single YAML document",
                );
            }
            read_config(&mut c, &Field::root(doc))
        }
    };
    let mut warnings = std::mem::take(&mut c.warnings);
    warnings.sort_by_key(|p| p.line);
    c.finish(config).map(|config| Config { warnings, ..config })
}

type Node<'a> = MarkedYaml<'a>;

/// Collects problems and knows the source text, to quote values as the user wrote them.
struct Checker<'s> {
    source: &'s str,
    /// Byte offset of every char (and the end) when the text is not ASCII: the parser
    /// marks positions in chars, and looking each one up by walking the text made
    /// describing many values quadratic.
    char_offsets: Option<Vec<usize>>,
    /// Looks up the environment variables that session name placeholders refer to.
    env: &'s dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    /// Reported like problems, but they do not make the config invalid.
    warnings: Vec<Problem>,
}

/// A node together with its path in the config.
#[derive(Clone)]
struct Field<'a> {
    path: String,
    node: &'a Node<'a>,
}

impl<'a> Field<'a> {
    fn root(node: &'a Node<'a>) -> Self {
        Self {
            path: String::new(),
            node,
        }
    }

    fn child(&self, key: &str, node: &'a Node<'a>) -> Self {
        Self {
            path: self.child_path(key),
            node,
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn item(&self, index: usize, node: &'a Node<'a>) -> Self {
        Self {
            path: format!("{}[{index}]", self.path),
            node,
        }
    }

    fn line(&self) -> usize {
        line(self.node)
    }

    fn data(&self) -> &'a YamlData<'a, Node<'a>> {
        untag(self.node)
    }

    fn is_null(&self) -> bool {
        matches!(self.data(), YamlData::Value(Scalar::Null))
    }
}

fn line(node: &Node) -> usize {
    node.span.start.line()
}

/// Custom tags (`!foo {...}`) carry no meaning here; look through them.
fn untag<'a>(node: &'a Node<'a>) -> &'a YamlData<'a, Node<'a>> {
    match &node.data {
        YamlData::Tagged(_, inner) => untag(inner),
        data => data,
    }
}

/// One key of a mapping.
struct Entry<'a> {
    key: String,
    /// False for keys YAML reads as numbers or booleans (`123:`); their `key` is the source text.
    key_is_string: bool,
    key_line: usize,
    value: Field<'a>,
}

impl Entry<'_> {
    /// The key for messages: quoted if it is a string, as written otherwise.
    fn shown_key(&self) -> String {
        if self.key_is_string {
            format!("{:?}", self.key)
        } else {
            self.key.clone()
        }
    }
}

impl<'s> Checker<'s> {
    fn report(&mut self, path: &str, line: Option<usize>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }

    fn problem(&mut self, at: &Field, message: impl Into<String>) {
        self.report(&at.path, Some(at.line()), message);
    }

    /// A problem with a mapping key rather than its value.
    fn key_problem(&mut self, entry: &Entry, message: impl Into<String>) {
        self.report(&entry.value.path, Some(entry.key_line), message);
    }

    fn warn(&mut self, at: &Field, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: at.path.clone(),
            line: Some(at.line()),
            message: message.into(),
        });
    }

    /// Reports a value of the wrong kind: "must be {what}, got {the value}".
    fn expected(&mut self, at: &Field, what: &str) {
        let subject = if at.path.is_empty() {
            "the config "
        } else {
            ""
        };
        let got = self.describe(at.node);
        self.problem(at, format!("{subject}must be {what}, got {got}"));
    }

    fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ => {
                if self.problems.is_empty() {
                    // Every reader reports before giving up, so this is only a safety net.
                    self.report("", None, "the config is invalid");
                }
                // Stable, so problems on one line keep the order they were found in.
                self.problems.sort_by_key(|p| p.line);
                Err(ConfigErrors(self.problems))
            }
        }
    }

    /// The node as written in the source, such as `0400` or `"db"`.
    fn char_to_byte(&self, char_index: usize) -> Option<usize> {
        match &self.char_offsets {
            Some(offsets) => offsets.get(char_index).copied(),
            None => (char_index <= self.source.len()).then_some(char_index),
        }
    }

    fn source_text(&self, node: &Node) -> Option<&'s str> {
        let start = self.char_to_byte(node.span.start.index())?;
        let end = self.char_to_byte(node.span.end.index())?;
        self.source.get(start..end).filter(|s| !s.is_empty())
    }

    /// A short description of a value for messages.
    fn describe(&self, node: &Node) -> String {
        match untag(node) {
            YamlData::Value(Scalar::String(s)) => format!("{s:?}"),
            YamlData::Value(Scalar::Null) => "null".to_owned(),
            YamlData::Sequence(_) => "a list".to_owned(),
            YamlData::Mapping(_) => "a mapping".to_owned(),
            _ => self
                .source_text(node)
                .map_or_else(|| "an invalid value".to_owned(), str::to_owned),
        }
    }

    /// A non-empty string. Numbers and booleans are refused so `region: 1` can't slip through.
    fn string<'a>(&mut self, at: &Field<'a>) -> Option<&'a str> {
        match at.data() {
            YamlData::Value(Scalar::String(s)) if s.is_empty() => {
                self.problem(at, "must not be empty");
                None
            }
            YamlData::Value(Scalar::String(s)) => Some(s),
            _ => {
                self.expected(at, "a string");
                None
            }
        }
    }

    /// Any non-empty scalar, as written. Secret ids and version labels may look like numbers
    /// (`12345`, `0x1F`), and YAML's number parsing would lose their spelling.
    fn scalar(&mut self, at: &Field) -> Option<String> {
        let text = match at.data() {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Null) => None,
            YamlData::Value(_) => self.source_text(at.node).map(str::to_owned),
            _ => None,
        };
        match text {
            Some(text) if text.is_empty() => {
                self.problem(at, "must not be empty");
                None
            }
            Some(text) => Some(text),
            None => {
                self.expected(at, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, at: &Field) -> Option<bool> {
        match at.data() {
            YamlData::Value(Scalar::Boolean(value)) => Some(*value),
            _ => {
                self.expected(at, "true or false");
                None
            }
        }
    }

    /// For a scalar that YAML did not read as a string: how to write it so that it is one.
    fn quote_hint(&self, at: &Field) -> String {
        let kind = match at.data() {
            YamlData::Value(Scalar::Boolean(_)) => "a boolean",
            YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => "a number",
            _ => return String::new(),
        };
        self.source_text(at.node).map_or_else(String::new, |raw| {
            format!("; unquoted, YAML reads it as {kind}, so write \"{raw}\"")
        })
    }

    fn list<'a>(&mut self, at: &Field<'a>) -> Option<Vec<Field<'a>>> {
        let YamlData::Sequence(items) = at.data() else {
            self.expected(at, "a list");
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .map(|(i, node)| at.item(i, node))
                .collect(),
        )
    }

    fn entries<'a>(&mut self, at: &Field<'a>) -> Option<Vec<Entry<'a>>> {
        let YamlData::Mapping(map) = at.data() else {
            self.expected(at, "a mapping");
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key_node, value) in map {
            let key_line = line(key_node);
            let (key, key_is_string) = match untag(key_node) {
                YamlData::Value(Scalar::String(s)) => (s.to_string(), true),
                YamlData::Value(Scalar::Null) | YamlData::Sequence(_) | YamlData::Mapping(_) => {
                    let got = self.describe(key_node);
                    self.report(
                        &at.path,
                        Some(key_line),
                        format!("keys must be names, got {got}"),
                    );
                    continue;
                }
                _ => (self.describe(key_node), false),
            };
            let value = at.child(&key, value);
            entries.push(Entry {
                key,
                key_is_string,
                key_line,
                value,
            });
        }
        Some(entries)
    }

    fn duration(&mut self, at: &Field) -> Option<Duration> {
        let YamlData::Value(Scalar::String(text)) = at.data() else {
            self.expected(at, DURATION_FORM);
            return None;
        };
        match humantime::parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(e) => {
                self.problem(at, format!("must be {DURATION_FORM}, got {text:?} ({e})"));
                None
            }
        }
    }

    fn integer_within(&mut self, at: &Field, range: RangeInclusive<u32>) -> Option<u32> {
        let value = match at.data() {
            YamlData::Value(Scalar::Integer(n)) => u32::try_from(*n).ok(),
            _ => {
                self.expected(at, "a whole number");
                return None;
            }
        };
        match value.filter(|v| range.contains(v)) {
            Some(v) => Some(v),
            None => {
                let got = self.describe(at.node);
                self.problem(
                    at,
                    format!(
                        "must be between {} and {}, got {got}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    fn duration_within(&mut self, at: &Field, range: RangeInclusive<Duration>) -> Option<Duration> {
        let duration = self.duration(at)?;
        if range.contains(&duration) {
            return Some(duration);
        }
        let min = humantime::format_duration(*range.start());
        let allowed = if *range.end() == Duration::MAX {
            format!("at least {min}")
        } else {
            format!(
                "between {min} and {}",
                humantime::format_duration(*range.end())
            )
        };
        let got = self.describe(at.node);
        self.problem(at, format!("must be {allowed}, got {got}"));
        None
    }
}

/// Reads the fields of a mapping. Every key asked for is an allowed key; `finish` reports the
/// keys nobody asked for, listing the allowed ones. So adding a field is adding a `get`.
struct Fields<'a> {
    at: Field<'a>,
    entries: Vec<Entry<'a>>,
    used: Vec<bool>,
    allowed: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn open(c: &mut Checker, at: &Field<'a>) -> Option<Self> {
        let entries = c.entries(at)?;
        Some(Self {
            at: at.clone(),
            used: vec![false; entries.len()],
            entries,
            allowed: Vec::new(),
        })
    }

    /// The field's value; `None` when it is absent or null (`key:` with nothing after it).
    fn get(&mut self, key: &'static str) -> Option<Field<'a>> {
        self.allowed.push(key);
        let i = self
            .entries
            .iter()
            .position(|e| e.key_is_string && e.key == key)?;
        self.used[i] = true;
        let value = &self.entries[i].value;
        (!value.is_null()).then(|| value.clone())
    }

    fn require(&mut self, c: &mut Checker, key: &'static str) -> Option<Field<'a>> {
        let value = self.get(key);
        if value.is_none() {
            c.report(
                &self.at.child_path(key),
                Some(self.at.line()),
                "is required",
            );
        }
        value
    }

    fn finish(self, c: &mut Checker) {
        let allowed = self.allowed.join(", ");
        for (entry, used) in self.entries.iter().zip(self.used) {
            if !used {
                c.key_problem(
                    entry,
                    format!("unknown field `{}`; allowed fields: {allowed}", entry.key),
                );
            }
        }
    }
}

/// An optional field: `Some(None)` when absent, `None` when present but invalid.
fn optional<'a, T>(
    field: Option<Field<'a>>,
    read: impl FnOnce(&Field<'a>) -> Option<T>,
) -> Option<Option<T>> {
    match field {
        None => Some(None),
        Some(field) => read(&field).map(Some),
    }
}

/// A field with a default: `Some(default)` when absent, `None` when present but invalid.
fn or_default<'a, T>(
    field: Option<Field<'a>>,
    default: T,
    read: impl FnOnce(&Field<'a>) -> Option<T>,
) -> Option<T> {
    match field {
        None => Some(default),
        Some(field) => read(&field),
    }
}

/// Reports two fields that may not be used together; returns whether both are set.
fn both_set(c: &mut Checker, first: &Option<Field>, second: &Option<Field>) -> bool {
    let (Some(first), Some(second)) = (first, second) else {
        return false;
    };
    let name = |f: &Field| f.path.rsplit('.').next().unwrap_or_default().to_owned();
    let message = format!(
        "{} and {} cannot both be set; choose one",
        name(first),
        name(second)
    );
    c.problem(second, message);
    true
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
    let mut dirs = BTreeMap::new();
    let secrets_field = f.get("secrets");
    let tenants_field = f.get("tenants");
    let secrets = match (secrets_field, &tenants_field) {
        (Some(v), _) => read_secrets(c, &v, role_names.as_ref(), &mut dirs, &defaults),
        // A controller that only serves tenants has no secrets of its own.
        (None, Some(_)) => Some(Vec::new()),
        (None, None) => {
            c.report(&at.child_path("secrets"), Some(at.line()), "is required");
            None
        }
    };
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
    f.finish(c);
    Some(Config {
        region: region?,
        roles: roles?,
        secrets: secrets?,
        base_credentials: base_credentials?,
        credential_outputs: credential_outputs?,
        credentials_endpoint: credentials_endpoint?,
        max_staleness: max_staleness?,
        api_rate_limit: api_rate_limit?,
        fetch_strategy: fetch_strategy?,
        failover_region: failover_region?,
        tenants: tenants?,
        warnings: Vec::new(),
    })
}

/// A string field that `parse` turns into a value; `rule` completes "must be …".
fn parsed_string<T>(
    c: &mut Checker,
    at: &Field,
    parse: impl FnOnce(&str) -> Option<T>,
    rule: &str,
) -> Option<T> {
    let text = c.string(at)?;
    let value = parse(text);
    if value.is_none() {
        c.problem(at, format!("must be {rule}, got {text:?}"));
    }
    value
}

/// A string field that must satisfy `valid`; `rule` completes "must be …".
fn checked_string(
    c: &mut Checker,
    at: &Field,
    valid: impl FnOnce(&str) -> bool,
    rule: &str,
) -> Option<String> {
    parsed_string(c, at, |s| valid(s).then(|| s.to_owned()), rule)
}

fn read_path(c: &mut Checker, at: &Field) -> Option<PathBuf> {
    c.string(at).map(PathBuf::from)
}

fn read_region(c: &mut Checker, at: &Field) -> Option<String> {
    checked_string(
        c,
        at,
        is_region,
        "an AWS region such as \"us-east-1\" (lowercase letters, digits and '-')",
    )
}

/// A list of `count` items, each read by `read`; `noun` names one item in messages. Every item
/// is read even after an invalid one, so that all problems are reported.
fn read_list<'a, T>(
    c: &mut Checker,
    at: &Field<'a>,
    count: RangeInclusive<usize>,
    noun: &str,
    mut read: impl FnMut(&mut Checker, &Field<'a>) -> Option<T>,
) -> Option<Vec<T>> {
    let items = c.list(at)?;
    let n = items.len();
    if n < *count.start() {
        c.problem(
            at,
            format!("must list at least {}", counted(*count.start(), noun)),
        );
    } else if n > *count.end() {
        c.problem(
            at,
            format!("must list at most {}, got {n}", counted(*count.end(), noun)),
        );
    }
    let values: Vec<Option<T>> = items.iter().map(|item| read(c, item)).collect();
    let values: Option<Vec<T>> = values.into_iter().collect();
    values.filter(|_| count.contains(&n))
}

fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("one {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Wraps a list item reader so that a value already in the list is a problem.
fn unique<'a>(
    mut read: impl FnMut(&mut Checker, &Field<'a>) -> Option<String>,
) -> impl FnMut(&mut Checker, &Field<'a>) -> Option<String> {
    let mut seen = BTreeMap::new();
    move |c: &mut Checker, at: &Field<'a>| {
        let value = read(c, at)?;
        if let Some(first) = first_use(&mut seen, value.clone(), &at.path) {
            c.problem(at, format!("{value:?} is already listed at {first}"));
            return None;
        }
        Some(value)
    }
}

/// Records that `key` is used at `place`; if it was used before, returns that place instead.
fn first_use<K: Ord>(seen: &mut BTreeMap<K, String>, key: K, place: &str) -> Option<String> {
    match seen.entry(key) {
        std::collections::btree_map::Entry::Occupied(first) => Some(first.get().clone()),
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(place.to_owned());
            None
        }
    }
}

/// The string keys of a mapping, valid or not, so that a broken role (or tag) doesn't also turn
/// every reference to it into an error. `None` when `at` is not a mapping: nothing can be
/// checked against it.
fn declared_keys(at: Option<&Field>) -> Option<BTreeSet<String>> {
    let Some(at) = at else {
        return Some(BTreeSet::new());
    };
    let YamlData::Mapping(map) = at.data() else {
        return None;
    };
    let names = map.keys().filter_map(|key| match untag(key) {
        YamlData::Value(Scalar::String(name)) => Some(name.to_string()),
        _ => None,
    });
    Some(names.collect())
}

/// What a reference refers to, for messages such as "unknown role …; defined roles: …".
struct Referent {
    kind: &'static str,
    /// Where such names are defined.
    section: &'static str,
}

const ROLES: Referent = Referent {
    kind: "role",
    section: "roles",
};
const TAG_KEYS: Referent = Referent {
    kind: "tag key",
    section: "sessionTags",
};

/// A name that must be one of `known`. With `known` unreadable (reported already), any name
/// is taken.
fn read_reference(
    c: &mut Checker,
    at: &Field,
    known: Option<&BTreeSet<String>>,
    referent: &Referent,
) -> Option<String> {
    let name = c.string(at)?;
    let Referent { kind, section } = referent;
    match known {
        Some(known) if known.is_empty() => {
            c.problem(
                at,
                format!("unknown {kind} {name:?}: no {kind}s are defined under `{section}`"),
            );
            None
        }
        Some(known) if !known.contains(name) => {
            let defined: Vec<&str> = known.iter().map(String::as_str).collect();
            c.problem(
                at,
                format!(
                    "unknown {kind} {name:?}; defined {kind}s: {}",
                    defined.join(", ")
                ),
            );
            None
        }
        _ => Some(name.to_owned()),
    }
}

fn read_roles(
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

/// A session name, with its placeholders replaced; STS rules apply to the result.
fn read_session_name(c: &mut Checker, at: &Field) -> Option<String> {
    let template = c.string(at)?;
    let name = substitute(c, at, template)?;
    if !is_sts_name(&name) {
        let after = if name == template {
            ""
        } else {
            " after substitution"
        };
        c.problem(
            at,
            format!("must be {SESSION_NAME_RULE}, got {name:?}{after}"),
        );
        return None;
    }
    Some(name)
}

/// Replaces each `${NAME}` in `template` with the value of that environment variable, for the
/// names in `SESSION_NAME_VARIABLES`. Every bad placeholder is reported.
fn substitute(c: &mut Checker, at: &Field, template: &str) -> Option<String> {
    let allowed = || {
        let names: Vec<String> = SESSION_NAME_VARIABLES
            .iter()
            .map(|(name, _)| format!("${{{name}}}"))
            .collect();
        names.join(", ")
    };
    let mut result = String::with_capacity(template.len());
    let mut complete = true;
    let mut rest = template;
    while let Some((before, after)) = rest.split_once("${") {
        result.push_str(before);
        let Some((name, after)) = after.split_once('}') else {
            c.problem(
                at,
                format!(
                    "has `${{` without a closing `}}`; placeholders are {}",
                    allowed()
                ),
            );
            return None;
        };
        rest = after;
        let Some((_, field_path)) = SESSION_NAME_VARIABLES.iter().find(|(n, _)| *n == name) else {
            c.problem(
                at,
                format!(
                    "unknown placeholder `${{{name}}}`; allowed placeholders: {}",
                    allowed()
                ),
            );
            complete = false;
            continue;
        };
        match (c.env)(name).filter(|value| !value.is_empty()) {
            Some(value) => result.push_str(&value),
            None => {
                c.problem(
                    at,
                    format!(
                        "`${{{name}}}` needs the environment variable {name}, which is unset or empty; \
                         set it from the Kubernetes downward API (fieldRef fieldPath: {field_path})"
                    ),
                );
                complete = false;
            }
        }
    }
    result.push_str(rest);
    complete.then_some(result)
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

/// A role's `via`, kept apart from the role so that loops are found even among roles that have
/// other problems.
struct ViaLink<'a> {
    role: String,
    via: String,
    at: Field<'a>,
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

fn read_session_tags(c: &mut Checker, at: &Field) -> Option<BTreeMap<String, String>> {
    let entries = c.entries(at)?;
    let mut valid = entries.len() <= MAX_SESSION_TAGS;
    if !valid {
        c.problem(
            at,
            format!(
                "must have at most {MAX_SESSION_TAGS} tags, got {}",
                entries.len()
            ),
        );
    }
    // STS compares tag keys ignoring case: lowercased key → the first key that has it.
    let mut keys = BTreeMap::new();
    let mut tags = BTreeMap::new();
    for entry in &entries {
        let key = read_tag_key(c, entry, &mut keys);
        let value = read_tag_value(c, &entry.value);
        if let (Some(key), Some(value)) = (key, value) {
            tags.insert(key, value);
        } else {
            valid = false;
        }
    }
    valid.then_some(tags)
}

fn read_tag_key(
    c: &mut Checker,
    entry: &Entry,
    keys: &mut BTreeMap<String, String>,
) -> Option<String> {
    let key = &entry.key;
    if !entry.key_is_string {
        c.key_problem(
            entry,
            format!("a tag key must be a string, got {key}; write \"{key}\""),
        );
        return None;
    }
    if !is_tag_text(key, 1..=128) {
        c.key_problem(
            entry,
            format!("a tag key must be 1 to 128 {TAG_CHARS}, got {key:?}"),
        );
        return None;
    }
    let this = format!("{key:?} (line {})", entry.key_line);
    if let Some(first) = first_use(keys, key.to_lowercase(), &this) {
        c.key_problem(
            entry,
            format!("tag key {key:?} repeats {first}: STS tag keys ignore case"),
        );
        return None;
    }
    Some(key.clone())
}

/// Tag values are strings even when they look like numbers, and may be empty.
fn read_tag_value(c: &mut Checker, at: &Field) -> Option<String> {
    let YamlData::Value(Scalar::String(value)) = at.data() else {
        let got = c.describe(at.node);
        let hint = c.quote_hint(at);
        c.problem(at, format!("must be a string, got {got}{hint}"));
        return None;
    };
    if !is_tag_text(value, 0..=256) {
        c.problem(
            at,
            format!("a tag value must be at most 256 {TAG_CHARS}, got {value:?}"),
        );
        return None;
    }
    Some(value.to_string())
}

/// A session policy as compact JSON: either JSON text, or a mapping written as JSON. Policies
/// can be long, so JSON syntax errors give a position instead of quoting the text.
fn read_policy(c: &mut Checker, at: &Field) -> Option<String> {
    let json = match at.data() {
        YamlData::Value(Scalar::String(text)) => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(_)) => compact_json(text),
            Ok(other) => {
                let kind = json_kind(&other);
                c.problem(at, format!("must be a JSON object, got a JSON {kind}"));
                return None;
            }
            Err(e) => {
                c.problem(
                    at,
                    format!("must be a JSON object, but is not valid JSON: {e}"),
                );
                return None;
            }
        },
        YamlData::Mapping(_) => {
            let before = c.problems.len();
            let mut json = String::new();
            write_json(c, at, &mut json);
            if c.problems.len() > before {
                return None;
            }
            json
        }
        _ => {
            c.expected(at, "a JSON object, as a string or a mapping");
            return None;
        }
    };
    let length = json.chars().count();
    if length > MAX_POLICY_CHARS {
        c.problem(
            at,
            format!("must be at most {MAX_POLICY_CHARS} characters as compact JSON, got {length}"),
        );
        return None;
    }
    Some(json)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Drops the whitespace between tokens of valid JSON. Unlike reserialising, this keeps the
/// order of keys and the spelling of numbers and escapes whatever serde_json's features are.
fn compact_json(json: &str) -> String {
    let mut compact = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for ch in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if ch == '"' {
            in_string = true;
        } else if matches!(ch, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        compact.push(ch);
    }
    compact
}

/// Writes a YAML value as compact JSON, keeping the document's key order; reports what JSON
/// cannot hold.
fn write_json(c: &mut Checker, at: &Field, json: &mut String) {
    match at.data() {
        YamlData::Value(Scalar::Null) => json.push_str("null"),
        YamlData::Value(Scalar::Boolean(value)) => json.push_str(&value.to_string()),
        YamlData::Value(Scalar::Integer(value)) => json.push_str(&value.to_string()),
        YamlData::Value(Scalar::FloatingPoint(value)) => {
            match serde_json::Number::from_f64(value.0) {
                Some(number) => json.push_str(&number.to_string()),
                None => c.problem(at, "JSON has no infinity or NaN"),
            }
        }
        YamlData::Value(Scalar::String(value)) => {
            json.push_str(&serde_json::Value::from(value.as_ref()).to_string());
        }
        YamlData::Sequence(_) => {
            json.push('[');
            for (i, item) in c.list(at).unwrap_or_default().iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                write_json(c, item, json);
            }
            json.push(']');
        }
        YamlData::Mapping(map) => {
            json.push('{');
            for (i, (key_node, value)) in map.iter().enumerate() {
                // JSON keys are strings, so a key YAML reads otherwise is taken as written:
                // the IAM condition operator `Null` must not become a YAML null.
                let key = match untag(key_node) {
                    YamlData::Value(Scalar::String(key)) => Some(key.to_string()),
                    YamlData::Value(_) => c.source_text(key_node).map(str::to_owned),
                    _ => None,
                };
                let Some(key) = key else {
                    let got = c.describe(key_node);
                    c.report(
                        &at.path,
                        Some(line(key_node)),
                        format!("keys must be strings, got {got}"),
                    );
                    continue;
                };
                if i > 0 {
                    json.push(',');
                }
                json.push_str(&serde_json::Value::from(key.as_str()).to_string());
                json.push(':');
                write_json(c, &at.child(&key, value), json);
            }
            json.push('}');
        }
        _ => c.expected(at, "a value JSON can hold"),
    }
}

/// What reading one secret needs to know about the others.
struct Seen<'r> {
    /// `None` when `roles` is unreadable and references can't be checked.
    roles: Option<&'r BTreeSet<String>>,
    /// Secret name → path of the secret that has it.
    names: BTreeMap<String, String>,
    /// Target directory → path of the `dir` field that has it.
    dirs: &'r mut BTreeMap<PathBuf, String>,
    defaults: &'r SecretDefaults,
}

/// Top-level settings that secrets inherit.
struct SecretDefaults {
    fetch_strategy: FetchStrategy,
    failover_region: Option<String>,
}

/// Also collects the target directories into `dirs`, valid secret or not.
fn read_secrets(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
    dirs: &mut BTreeMap<PathBuf, String>,
    defaults: &SecretDefaults,
) -> Option<Vec<SecretConfig>> {
    let mut seen = Seen {
        roles,
        names: BTreeMap::new(),
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
    let both = both_set(c, &id_field, &find_field);
    if id_field.is_none() && find_field.is_none() {
        c.report(
            &at.child_path("secretId"),
            Some(at.line()),
            "is required (or `find`, to sync every secret matching a name prefix and tags)",
        );
    }
    let finds = find_field.is_some();
    let secret_id = optional(id_field, |v| read_secret_id(c, v));
    let find = optional(find_field, |v| read_find(c, v));
    let role = optional(f.get("role"), |v| read_reference(c, v, seen.roles, &ROLES));
    let (stage, id) = (f.get("versionStage"), f.get("versionId"));
    let pinned = id.clone();
    // The strategy is checked against the version fields as written, so that both set
    // (a problem of its own) does not hide a strategy that fits neither.
    let written_stage = stage.as_ref().map(|v| match v.data() {
        YamlData::Value(Scalar::String(s)) => s.to_string(),
        _ => String::new(),
    });
    let version = read_version(c, stage, id);
    let refresh_interval = or_default(f.get("refreshInterval"), DEFAULT_REFRESH_INTERVAL, |v| {
        c.duration_within(v, REFRESH_INTERVALS)
    });
    let targets = f
        .require(c, "targets")
        .and_then(|v| read_targets(c, &v, seen.dirs, finds));
    let on_change = or_default(f.get("onChange"), Vec::new(), |v| {
        read_list(c, v, ANY_NUMBER, "onChange action", read_on_change)
    });
    let debounce = or_default(f.get("debounce"), DEFAULT_DEBOUNCE, |v| {
        c.duration_within(v, DEBOUNCES)
    });
    let prune_field = f.get("prune");
    if let (Some(prune), false) = (&prune_field, finds) {
        c.problem(
            prune,
            "applies only to `find` entries, whose set of secrets can shrink",
        );
    }
    let prune = or_default(prune_field, false, |v| c.boolean(v));
    let strategy_field = f.get("fetchStrategy");
    let fetch_strategy = or_default(strategy_field.clone(), seen.defaults.fetch_strategy, |v| {
        read_fetch_strategy(c, v)
    });
    if let (Some(at), Some(strategy)) = (&strategy_field, fetch_strategy) {
        check_strategy(c, at, strategy, &written_stage, pinned.is_some(), finds);
    }
    let failover_region = or_default(
        f.get("failoverRegion"),
        seen.defaults.failover_region.clone(),
        |v| read_region(c, v).map(Some),
    );
    let mapping = read_mapping(c, &mut f);
    f.finish(c);
    if both {
        return None;
    }
    let version = version?;
    let mut fetch_strategy = fetch_strategy?;
    // A `find` entry learns its secrets from ListSecrets, which also gives their versions.
    if finds {
        fetch_strategy = FetchStrategy::List;
    }
    Some(SecretConfig {
        name: name?,
        secret_id: secret_id?.unwrap_or_default(),
        role: role?,
        version,
        refresh_interval: refresh_interval?,
        targets: targets?,
        on_change: on_change?,
        debounce: debounce?,
        find: find?,
        prune: prune?,
        fetch_strategy,
        failover_region: failover_region?,
        mapping: mapping?,
    })
}

fn read_fetch_strategy(c: &mut Checker, at: &Field) -> Option<FetchStrategy> {
    read_enum(c, at, FETCH_STRATEGIES)
}

/// A string that must be one of the names in `values`.
fn read_enum<T: Copy>(c: &mut Checker, at: &Field, values: &[(&str, T)]) -> Option<T> {
    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
    parsed_string(
        c,
        at,
        |text| values.iter().find(|(n, _)| *n == text).map(|(_, v)| *v),
        &format!("one of {}", names.join(", ")),
    )
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

fn is_secret_name_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "/_+=.@-".contains(ch)
}

/// `property`, `keys`, `decode`, `templates` and `templateMode`.
fn read_mapping(c: &mut Checker, f: &mut Fields) -> Option<Mapping> {
    let property = optional(f.get("property"), |v| {
        checked_string(
            c,
            v,
            |p| !p.is_empty() && p.split('.').all(|segment| !segment.is_empty()),
            "a dot-separated path of JSON keys such as \"database.password\"",
        )
    });
    let keys = optional(f.get("keys"), |v| {
        let mut targets = BTreeMap::new();
        read_list(c, v, AT_LEAST_ONE, "key", |c, item| {
            read_key_map(c, item, &mut targets)
        })
    });
    let decode = or_default(f.get("decode"), Decode::None, |v| {
        read_enum(c, v, &[("none", Decode::None), ("base64", Decode::Base64)])
    });
    let templates = or_default(f.get("templates"), Vec::new(), |v| read_templates(c, v));
    let mode_field = f.get("templateMode");
    let template_mode = or_default(mode_field.clone(), TemplateMode::Add, |v| {
        read_enum(
            c,
            v,
            &[
                ("add", TemplateMode::Add),
                ("replace", TemplateMode::Replace),
            ],
        )
    });
    if let (Some(at), Some(templates)) = (&mode_field, &templates) {
        if templates.is_empty() {
            c.problem(at, "applies only with `templates`");
        }
    }
    Some(Mapping {
        property: property?,
        keys: keys?,
        decode: decode?,
        templates: templates?,
        template_mode: template_mode?,
    })
}

fn read_key_map(
    c: &mut Checker,
    at: &Field,
    targets: &mut BTreeMap<String, String>,
) -> Option<KeyMap> {
    let mut f = Fields::open(c, at)?;
    let from = f.require(c, "from").and_then(|v| c.scalar(&v));
    let to_field = f.get("to");
    let to = optional(to_field.clone(), |v| read_output_key(c, v));
    f.finish(c);
    let from = from?;
    let to = to?.unwrap_or_else(|| from.clone());
    if crate::transform::check_key(&to).is_err() && to_field.is_none() {
        c.problem(
            at,
            format!("key {from:?} is not a safe file name: rename it with `to`"),
        );
        return None;
    }
    if let Some(first) = first_use(targets, to.clone(), &at.path) {
        c.problem(
            at,
            format!("output key {to:?} is already produced by {first}"),
        );
        return None;
    }
    Some(KeyMap { from, to })
}

fn read_output_key(c: &mut Checker, at: &Field) -> Option<String> {
    let key = c.scalar(at)?;
    match crate::transform::check_key(&key) {
        Ok(()) => Some(key),
        Err(e) => {
            c.problem(at, format!("must be a safe file name: {e}"));
            None
        }
    }
}

fn read_templates(c: &mut Checker, at: &Field) -> Option<Vec<(String, String)>> {
    let mut templates = Vec::new();
    let mut ok = true;
    for entry in c.entries(at)? {
        if let Err(e) = crate::transform::check_key(&entry.key) {
            c.key_problem(
                &entry,
                format!("a template's name is its output key and must be a safe file name: {e}"),
            );
            ok = false;
            continue;
        }
        let Some(source) = c.string(&entry.value).map(str::to_owned) else {
            ok = false;
            continue;
        };
        if let Err(e) = crate::mapping::check_template(&source) {
            c.problem(&entry.value, format!("template does not parse: {e}"));
            ok = false;
            continue;
        }
        templates.push((entry.key, source));
    }
    ok.then_some(templates)
}

/// An action is a mapping with a single key naming its kind, like a target.
fn read_on_change(c: &mut Checker, at: &Field) -> Option<OnChange> {
    let mut f = Fields::open(c, at)?;
    let (signal, http, touch) = (f.get("signal"), f.get("http"), f.get("touch"));
    f.finish(c);
    match (signal, http, touch) {
        (Some(v), None, None) => read_signal_action(c, &v),
        (None, Some(v), None) => read_http_action(c, &v),
        (None, None, Some(v)) => read_path(c, &v).map(OnChange::Touch),
        _ => {
            c.problem(
                at,
                "must have exactly one of signal, http or touch; start a new list item for each",
            );
            None
        }
    }
}

fn read_signal_action(c: &mut Checker, at: &Field) -> Option<OnChange> {
    let mut f = Fields::open(c, at)?;
    let process = f.require(c, "process").and_then(|v| {
        checked_string(
            c,
            &v,
            |p| !p.is_empty() && p.len() <= MAX_PROCESS_NAME && !p.contains('/'),
            "a process name as in /proc/PID/comm (1 to 15 bytes, no '/')",
        )
    });
    let signal = f.require(c, "signal").and_then(|v| {
        let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
        parsed_string(
            c,
            &v,
            |text| {
                let text = text.strip_prefix("SIG").unwrap_or(text);
                SIGNALS.iter().find(|(n, _)| *n == text).map(|(_, s)| *s)
            },
            &format!("one of {}", names.join(", ")),
        )
    });
    f.finish(c);
    Some(OnChange::Signal {
        process: process?,
        signal: signal?,
    })
}

fn read_http_action(c: &mut Checker, at: &Field) -> Option<OnChange> {
    let mut f = Fields::open(c, at)?;
    let url = f.require(c, "url").and_then(|v| {
        checked_string(
            c,
            &v,
            |u| {
                u.strip_prefix("http://")
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !u.contains(char::is_whitespace))
            },
            "an http:// URL of the app (https is not supported: the hook is meant for a loopback endpoint)",
        )
    });
    let method = or_default(f.get("method"), "POST".to_owned(), |v| {
        checked_string(
            c,
            v,
            |m| HTTP_METHODS.contains(&m),
            &format!("one of {}", HTTP_METHODS.join(", ")),
        )
    });
    let timeout = or_default(f.get("timeout"), DEFAULT_NOTIFY_TIMEOUT, |v| {
        c.duration_within(v, NOTIFY_TIMEOUTS)
    });
    f.finish(c);
    Some(OnChange::Http {
        url: url?,
        method: method?,
        timeout: timeout?,
    })
}

fn read_secret_name(
    c: &mut Checker,
    at: &Field,
    secret_path: &str,
    names: &mut BTreeMap<String, String>,
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
        YamlData::Value(Scalar::String(s)) if !s.is_empty() => s.to_string(),
        _ => return None,
    };
    if let Some(first) = first_use(names, written.clone(), secret_path) {
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
    let stage = optional(stage, |v| c.scalar(v).map(VersionSelector::Stage));
    let id = optional(id, |v| c.scalar(v).map(VersionSelector::Id));
    if both {
        return None;
    }
    let default = || VersionSelector::Stage(DEFAULT_VERSION_STAGE.to_owned());
    Some(stage?.or(id?).unwrap_or_else(default))
}

/// `templated`: the targets of a `find` entry, whose paths must hold `{{ name }}`.
fn read_targets(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
    templated: bool,
) -> Option<Vec<Target>> {
    read_list(c, at, AT_LEAST_ONE, "target", |c, item| {
        read_target(c, item, dirs, templated)
    })
}

/// A target is a mapping with a single key naming its kind: `- file: {dir: ...}`.
fn read_target(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
    templated: bool,
) -> Option<Target> {
    let kinds = TARGET_KINDS.join(", ");
    let entries = c.entries(at)?;
    let [entry, extra @ ..] = entries.as_slice() else {
        c.problem(
            at,
            format!("must name a target kind; allowed kinds: {kinds}"),
        );
        return None;
    };
    for e in extra {
        c.key_problem(
            e,
            format!(
                "a target has exactly one kind, and this one already is `{}`; start a new list item with `- {}:`",
                entry.key, e.key
            ),
        );
    }
    let target = match entry.key.as_str() {
        "file" if entry.key_is_string => read_file_target(c, &entry.value, dirs, templated),
        "kubernetesSecret" if entry.key_is_string => {
            if templated {
                c.key_problem(entry, "kubernetesSecret targets are not supported in `find` entries; use a file target with {{ name }}");
                None
            } else {
                kube::read_kube_secret_target(c, &entry.value, dirs).map(Target::KubernetesSecret)
            }
        }
        _ => {
            c.key_problem(
                entry,
                format!(
                    "unknown target kind `{}`; allowed kinds: {kinds}",
                    entry.key
                ),
            );
            None
        }
    };
    if extra.is_empty() {
        target
    } else {
        None
    }
}

/// `file:` writes either a directory of files (`dir`) or one formatted file (`path`).
fn read_file_target(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
    templated: bool,
) -> Option<Target> {
    let mut f = Fields::open(c, at)?;
    let (dir, path) = (f.get("dir"), f.get("path"));
    let format = f.get("format");
    let mode = or_default(f.get("mode"), DEFAULT_FILE_MODE, |v| read_file_mode(c, v));
    f.finish(c);
    match (dir, path) {
        (Some(dir), None) => {
            if let Some(format) = &format {
                c.problem(
                    format,
                    "format applies to a single file: use `path` instead of `dir`",
                );
                return None;
            }
            let dir = read_target_path(c, &dir, dirs, true, templated);
            Some(Target::File(FileTarget {
                dir: dir?,
                mode: mode?,
            }))
        }
        (None, Some(path)) => {
            let path = read_target_path(c, &path, dirs, false, templated);
            let format = or_default(format, FileFormat::Raw, |v| read_file_format(c, v));
            Some(Target::SingleFile(SingleFileTarget {
                path: path?,
                format: format?,
                mode: mode?,
            }))
        }
        (Some(_), Some(path)) => {
            c.problem(&path, "dir and path cannot both be set: a file target writes a directory (dir) or one file (path)");
            None
        }
        (None, None) => {
            c.problem(
                at,
                "needs `dir` (a directory with one file per key) or `path` (one file in a format)",
            );
            None
        }
    }
}

fn read_file_format(c: &mut Checker, at: &Field) -> Option<FileFormat> {
    read_enum(c, at, FILE_FORMATS)
}

/// Target paths (directories and single files) share one map, keyed by path; the value
/// is the field that claimed it, whose last segment (`dir` or `path`) tells which kind.
/// A directory belongs to its target's writer, so no other target may sit inside it.
fn read_target_path(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
    is_dir: bool,
    templated: bool,
) -> Option<PathBuf> {
    // PathBuf compares by components, so "/a/b" and "/a/b/" count as the same directory.
    let path = read_path(c, at)?;
    let text = path.to_string_lossy().replace("{{name}}", NAME_PLACEHOLDER);
    let has_placeholder = text.contains(NAME_PLACEHOLDER);
    let placeholder_problem = if templated && !has_placeholder {
        Some(format!("a `find` entry syncs many secrets: the path must contain {NAME_PLACEHOLDER} so that each gets its own"))
    } else if text.replace(NAME_PLACEHOLDER, "").contains("{{") {
        Some(if templated {
            format!("{NAME_PLACEHOLDER} is the only placeholder")
        } else {
            format!("placeholders such as {NAME_PLACEHOLDER} are only for `find` entries")
        })
    } else if !templated && has_placeholder {
        Some(format!("{NAME_PLACEHOLDER} is only for `find` entries"))
    } else {
        None
    };
    if let Some(problem) = &placeholder_problem {
        c.problem(at, problem);
    }
    // The path as written still claims its place: a clash with another target is a problem
    // of its own, not one to reveal after the placeholder is fixed.
    let path = PathBuf::from(text);
    let shown = |p: &Path| format!("{:?}", p.display().to_string());
    let clash = dirs.iter().find(|(other, owner)| {
        if is_dir {
            owner.ends_with(".path") && other.starts_with(&path)
        } else {
            owner.ends_with(".dir") && path.starts_with(other)
        }
    });
    if let Some((other, owner)) = clash {
        let message = if is_dir {
            format!(
                "{} contains {}, written by {owner}; a target's directory belongs to its secret",
                shown(&path),
                shown(other)
            )
        } else {
            format!(
                "{} is inside {}, the directory of {owner}, which that target owns; write the file elsewhere",
                shown(&path),
                shown(other)
            )
        };
        c.problem(at, message);
        return None;
    }
    if let Some(first) = first_use(dirs, path.clone(), &at.path) {
        let message = if is_dir {
            format!(
                "directory {} is already used by {first}; each target needs its own directory",
                shown(&path)
            )
        } else {
            format!(
                "{} is already used by {first}; each target needs its own path",
                shown(&path)
            )
        };
        c.problem(at, message);
        return None;
    }
    placeholder_problem.is_none().then_some(path)
}

fn read_base_credentials(c: &mut Checker, at: &Field) -> Option<BaseCredentials> {
    let mut f = Fields::open(c, at)?;
    let access_key_id_file = f
        .require(c, "accessKeyIdFile")
        .and_then(|v| read_path(c, &v));
    let secret_access_key_file = f
        .require(c, "secretAccessKeyFile")
        .and_then(|v| read_path(c, &v));
    f.finish(c);
    Some(BaseCredentials {
        access_key_id_file: access_key_id_file?,
        secret_access_key_file: secret_access_key_file?,
    })
}

fn read_credential_outputs(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
    dirs: &BTreeMap<PathBuf, String>,
) -> Option<Vec<CredentialOutput>> {
    // Output path → path of the field that has it.
    let mut paths = BTreeMap::new();
    read_list(c, at, ANY_NUMBER, "credential output", |c, item| {
        read_credential_output(c, item, roles, dirs, &mut paths)
    })
}

fn read_credential_output(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
    dirs: &BTreeMap<PathBuf, String>,
    paths: &mut BTreeMap<PathBuf, String>,
) -> Option<CredentialOutput> {
    let mut f = Fields::open(c, at)?;
    let role = f
        .require(c, "role")
        .and_then(|v| read_reference(c, &v, roles, &ROLES));
    let file = f.require(c, "file").and_then(|v| Fields::open(c, &v));
    f.finish(c);
    let mut f = file?;
    let path = f
        .require(c, "path")
        .and_then(|v| read_output_path(c, &v, dirs, paths));
    let profile = or_default(f.get("profile"), DEFAULT_PROFILE.to_owned(), |v| {
        checked_string(
            c,
            v,
            |p| is_name(p, 64),
            "1 to 64 letters, digits, '_', '.' or '-'",
        )
    });
    let mode = or_default(f.get("mode"), DEFAULT_FILE_MODE, |v| read_file_mode(c, v));
    f.finish(c);
    Some(CredentialOutput {
        role: role?,
        path: path?,
        profile: profile?,
        mode: mode?,
    })
}

fn read_output_path(
    c: &mut Checker,
    at: &Field,
    dirs: &BTreeMap<PathBuf, String>,
    paths: &mut BTreeMap<PathBuf, String>,
) -> Option<PathBuf> {
    let path = read_path(c, at)?;
    let shown = path.display().to_string();
    // The target's writer manages everything in its directory and assumes it is the only one.
    if let Some((dir, owner)) = dirs.iter().find(|(dir, _)| path.starts_with(dir)) {
        c.problem(
            at,
            format!(
                "{shown:?} is inside {:?}, the directory of {owner}; a target's directory \
                 belongs to its secret, so write the credentials elsewhere",
                dir.display().to_string()
            ),
        );
        return None;
    }
    if let Some(first) = first_use(paths, path.clone(), &at.path) {
        c.problem(
            at,
            format!("{shown:?} is already written by {first}; each output needs its own file"),
        );
        return None;
    }
    Some(path)
}

fn read_credentials_endpoint(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
) -> Option<CredentialsEndpoint> {
    let mut f = Fields::open(c, at)?;
    let listen_field = f.require(c, "listen");
    let listen = listen_field
        .as_ref()
        .and_then(|v| parsed_string(c, v, |s| s.parse::<SocketAddr>().ok(), LISTEN_FORM));
    // Read right after `listen`, so that a problem with either comes in document order.
    let allow_non_loopback = or_default(f.get("allowNonLoopback"), false, |v| c.boolean(v));
    let listen = match (&listen_field, listen, allow_non_loopback) {
        (Some(at), Some(listen), Some(false)) => loopback_only(c, at, listen),
        (_, listen, _) => listen,
    };
    let token_file = f.require(c, "tokenFile").and_then(|v| read_path(c, &v));
    let served = f.require(c, "roles").and_then(|v| {
        let read = |c: &mut Checker, role: &Field| read_reference(c, role, roles, &ROLES);
        read_list(c, &v, AT_LEAST_ONE, "role", unique(read))
    });
    f.finish(c);
    Some(CredentialsEndpoint {
        listen: listen?,
        token_file: token_file?,
        roles: served?,
        allow_non_loopback: allow_non_loopback?,
    })
}

/// The endpoint hands out credentials, so by default it must not be reachable from other hosts.
fn loopback_only(c: &mut Checker, at: &Field, listen: SocketAddr) -> Option<SocketAddr> {
    // `to_canonical` so that `::ffff:127.0.0.1` counts as the loopback address it is.
    if listen.ip().to_canonical().is_loopback() {
        return Some(listen);
    }
    c.problem(
        at,
        format!(
            "{listen} is not a loopback address, so other hosts could fetch credentials from \
             it; set allowNonLoopback: true if that is intended"
        ),
    );
    None
}

fn read_file_mode(c: &mut Checker, at: &Field) -> Option<u32> {
    let YamlData::Value(Scalar::String(text)) = at.data() else {
        let got = c.describe(at.node);
        // Unquoted, YAML reads `0400` as the decimal number 400: point at the fix.
        let hint = match c.source_text(at.node) {
            Some(raw) if parse_mode(raw).is_ok() => {
                format!("; unquoted, YAML reads it as a number, so write \"{raw}\"")
            }
            _ => String::new(),
        };
        c.problem(at, format!("must be {MODE_FORM}, got {got}{hint}"));
        return None;
    };
    match parse_mode(text) {
        Ok(mode) => Some(mode),
        Err(reason) => {
            c.problem(at, format!("{reason}, got {text:?}"));
            None
        }
    }
}

fn parse_mode(text: &str) -> Result<u32, &'static str> {
    let octal = text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if !octal || !(3..=4).contains(&text.len()) {
        return Err("must be 3 or 4 octal digits such as \"0400\"");
    }
    let mode = text
        .bytes()
        .fold(0, |mode, digit| mode * 8 + u32::from(digit - b'0'));
    if mode > 0o777 {
        return Err("must be at most \"0777\" (no setuid, setgid or sticky bits)");
    }
    Ok(mode)
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Role and secret names: 1..=max_len of [A-Za-z0-9_.-].
fn is_name(s: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// STS `RoleSessionName` and `SourceIdentity`: 2 to 64 of [\w+=,.@-].
fn is_sts_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// STS session tag keys and values: `length` of [\p{L}\p{Z}\p{N}_.:/=+\-@].
fn is_tag_text(s: &str, length: RangeInclusive<usize>) -> bool {
    length.contains(&s.chars().count())
        && s.chars()
            .all(|ch| ch.is_alphanumeric() || ch.is_whitespace() || "_.:/=+-@".contains(ch))
}

/// `http://` or `https://`, then a host, then optionally a port and a path.
fn is_endpoint_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(ipv6) => ipv6.split(']').next(),
        None => authority.split(':').next(),
    };
    host.is_some_and(|host| !host.is_empty())
        && !s.chars().any(|ch| ch.is_whitespace() || ch.is_control())
}

/// `aws`, or `aws-` and a suffix such as `cn`, `us-gov` or `iso-b`.
fn is_partition(s: &str) -> bool {
    s == "aws"
        || s.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        })
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn check_role_arn(arn: &str) -> Result<(), String> {
    check_iam_arn(arn, "role", false)
}

/// AWS managed policies have `aws` in place of an account id.
fn check_policy_arn(arn: &str) -> Result<(), String> {
    check_iam_arn(arn, "policy", true)
}

/// Checks `arn:<partition>:iam::<account>:<kind>/<path/><name>`; the error says what is wrong.
fn check_iam_arn(arn: &str, kind: &str, aws_owned: bool) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iam", "", account, resource] = parts[..] else {
        return Err(format!("not an IAM {kind} ARN"));
    };
    if !is_partition(partition) {
        return Err("the partition must be aws or aws-<suffix>".to_owned());
    }
    if !(is_account_id(account) || (aws_owned && account == "aws")) {
        let or_aws = if aws_owned { " or aws" } else { "" };
        return Err(format!("the account id must be 12 digits{or_aws}"));
    }
    let Some(name) = resource
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Err(format!("not a {kind} ARN"));
    };
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@/-".contains(&b));
    // A trailing '/' would leave the name itself (after any path) empty.
    if !valid_chars || !(1..=512).contains(&name.len()) || name.ends_with('/') {
        return Err(format!(
            "the {kind} name must be 1 to 512 letters, digits or any of \"+=,.@_/-\""
        ));
    }
    Ok(())
}

/// Checks `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`.
fn check_secret_arn(arn: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let ["arn", partition, "secretsmanager", region, account, "secret", name] = parts[..] else {
        return Err("not a Secrets Manager secret ARN");
    };
    if !is_partition(partition) {
        return Err("the partition must be aws or aws-<suffix>");
    }
    if !is_region(region) {
        return Err("the region must be lowercase letters, digits and '-'");
    }
    if !is_account_id(account) {
        return Err("the account id must be 12 digits");
    }
    if name.is_empty() {
        return Err("the secret name is empty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"region: us-east-1                 # optional default region
roles:
  shared:                          # a name that secrets refer to
    roleArn: arn:aws:iam::111111111111:role/CrossAccountSecretsRole
    externalIdFile: /etc/secret-ferry/external-id
    sessionName: secret-ferry
    duration: 1h
    refreshBefore: 5m
secrets:
  - name: db
    secretId: my-shared-secret
    role: shared
    versionStage: AWSCURRENT
    refreshInterval: 60s
    targets:
      - file:
          dir: /var/run/secrets/ferry/db
          mode: "0400"
"#;

    fn problems(yaml: &str) -> Vec<Problem> {
        match parse(yaml) {
            Ok(config) => panic!("expected problems, got {config:?}"),
            Err(errors) => errors.0,
        }
    }

    /// The one problem at `path`, checking its line and that its message contains `needle`.
    fn expect_problem(problems: &[Problem], path: &str, line: usize, needle: &str) {
        let found: Vec<&Problem> = problems.iter().filter(|p| p.path == path).collect();
        assert_eq!(found.len(), 1, "one problem at {path} in {problems:#?}");
        assert_eq!(found[0].line, Some(line), "line of {:?}", found[0]);
        assert!(
            found[0].message.contains(needle),
            "{:?} should contain {needle:?}",
            found[0].message
        );
    }

    /// A minimal valid config with `extra` appended to the one secret.
    fn secret_with(extra: &str) -> String {
        format!("secrets:\n  - name: db\n    secretId: s\n    targets:\n      - file:\n          dir: /run/db\n{extra}")
    }

    fn targets(items: &str) -> String {
        format!("secrets:\n  - name: db\n    secretId: s\n    targets:\n{items}")
    }

    #[test]
    fn on_change_actions() {
        let yaml = format!(
            "{}    debounce: 5s\n    onChange:\n      - signal: {{process: nginx, signal: SIGHUP}}\n      - http: {{url: \"http://127.0.0.1:8080/-/reload\", timeout: 2s}}\n      - touch: /run/app/.changed\n",
            secret_with("")
        );
        let secret = &parse(&yaml).expect("valid").secrets[0];
        assert_eq!(secret.debounce, Duration::from_secs(5));
        assert_eq!(
            secret.on_change,
            [
                OnChange::Signal {
                    process: "nginx".into(),
                    signal: SignalName::Hup
                },
                OnChange::Http {
                    url: "http://127.0.0.1:8080/-/reload".into(),
                    method: "POST".into(),
                    timeout: Duration::from_secs(2)
                },
                OnChange::Touch("/run/app/.changed".into()),
            ]
        );
        let cases: [(&str, &str, &str); 5] = [
            (
                "      - touch: /a\n        http: {url: \"http://x\"}\n",
                "secrets[0].onChange[0]",
                "exactly one of",
            ),
            (
                "      - http: {url: \"https://x/reload\"}\n",
                "secrets[0].onChange[0].http.url",
                "https is not supported",
            ),
            (
                "      - signal: {process: nginx, signal: KILL}\n",
                "secrets[0].onChange[0].signal.signal",
                "one of HUP",
            ),
            (
                "      - signal: {process: a-very-long-process-name, signal: HUP}\n",
                "secrets[0].onChange[0].signal.process",
                "1 to 15 bytes",
            ),
            (
                "      - http: {url: \"http://x\", method: DELETE}\n",
                "secrets[0].onChange[0].http.method",
                "one of POST, PUT, GET",
            ),
        ];
        for (item, path, needle) in cases {
            let found = problems(&format!("{}    onChange:\n{item}", secret_with("")));
            let hit = found.iter().find(|p| p.path == path);
            assert!(
                hit.is_some_and(|p| p.message.contains(needle)),
                "{path}: {found:#?}"
            );
        }
    }

    #[test]
    fn single_file_targets() {
        let config = parse(&targets(
            "      - file:\n          path: /run/app/.env\n          format: env\n      - file:\n          path: /run/app/raw\n",
        ))
        .expect("valid");
        assert_eq!(
            config.secrets[0].targets,
            [
                Target::SingleFile(SingleFileTarget {
                    path: "/run/app/.env".into(),
                    format: FileFormat::Env,
                    mode: 0o400,
                }),
                Target::SingleFile(SingleFileTarget {
                    path: "/run/app/raw".into(),
                    format: FileFormat::Raw,
                    mode: 0o400,
                }),
            ]
        );
    }

    #[test]
    fn single_file_target_problems() {
        let cases: [(&str, &str, usize, &str); 6] = [
            ("      - file:\n          path: /run/x\n          format: yaml\n", "secrets[0].targets[0].file.format", 7, "one of raw, json, env, properties"),
            ("      - file:\n          dir: /run/x\n          path: /run/y\n", "secrets[0].targets[0].file.path", 7, "cannot both be set"),
            ("      - file:\n          mode: \"0400\"\n", "secrets[0].targets[0].file", 6, "needs `dir`"),
            ("      - file:\n          dir: /run/x\n          format: env\n", "secrets[0].targets[0].file.format", 7, "use `path` instead of `dir`"),
            ("      - file:\n          dir: /run/x\n      - file:\n          path: /run/x/.env\n", "secrets[0].targets[1].file.path", 8, "is inside \"/run/x\""),
            ("      - file:\n          path: /run/x/.env\n      - file:\n          dir: /run/x\n", "secrets[0].targets[1].file.dir", 8, "contains \"/run/x/.env\""),
        ];
        for (items, path, line, needle) in cases {
            let found = problems(&targets(items));
            expect_problem(&found, path, line, needle);
        }
        let found = problems(&targets(
            "      - file:\n          path: /run/y\n      - file:\n          path: /run/y\n",
        ));
        expect_problem(
            &found,
            "secrets[0].targets[1].file.path",
            8,
            "already used by",
        );
    }

    #[test]
    fn example_parses_with_exact_values() {
        let config = parse(EXAMPLE).expect("example is valid");
        let role = RoleConfig {
            name: "shared".into(),
            role_arn: "arn:aws:iam::111111111111:role/CrossAccountSecretsRole".into(),
            external_id: Some(ExternalIdSource::File(
                "/etc/secret-ferry/external-id".into(),
            )),
            session_name: "secret-ferry".into(),
            duration: Duration::from_secs(3600),
            refresh_before: Duration::from_secs(300),
            session_tags: BTreeMap::new(),
            transitive_tag_keys: Vec::new(),
            source_identity: None,
            policy: None,
            policy_arns: Vec::new(),
            region: None,
            sts_endpoint: None,
            via: None,
        };
        let secret = SecretConfig {
            name: "db".into(),
            secret_id: "my-shared-secret".into(),
            role: Some("shared".into()),
            version: VersionSelector::Stage("AWSCURRENT".into()),
            refresh_interval: Duration::from_secs(60),
            targets: vec![Target::File(FileTarget {
                dir: "/var/run/secrets/ferry/db".into(),
                mode: 0o400,
            })],
            on_change: Vec::new(),
            debounce: Duration::from_secs(2),
            find: None,
            prune: false,
            fetch_strategy: FetchStrategy::Auto,
            failover_region: None,
            mapping: Mapping::default(),
        };
        let expected = Config {
            region: Some("us-east-1".into()),
            roles: BTreeMap::from([("shared".to_owned(), role)]),
            secrets: vec![secret],
            base_credentials: None,
            credential_outputs: Vec::new(),
            credentials_endpoint: None,
            max_staleness: None,
            api_rate_limit: 50,
            fetch_strategy: FetchStrategy::Auto,
            failover_region: None,
            tenants: Vec::new(),
            warnings: Vec::new(),
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn max_staleness_is_an_optional_duration_of_at_least_a_second() {
        let yaml = "maxStaleness: 5m\nsecrets:\n  - name: a\n    secretId: a\n    targets:\n      - file:\n          dir: /run/a\n";
        assert_eq!(
            parse(yaml).expect("valid").max_staleness,
            Some(Duration::from_secs(300))
        );
        let found = problems(&yaml.replace("5m", "0s"));
        expect_problem(&found, "maxStaleness", 1, "at least 1s");
    }

    #[test]
    fn api_rate_limit_is_a_whole_number_within_the_quota() {
        let yaml = "apiRateLimit: 20\nsecrets:\n  - name: a\n    secretId: a\n    targets:\n      - file:\n          dir: /run/a\n";
        assert_eq!(parse(yaml).expect("valid").api_rate_limit, 20);
        let default = yaml.replace("apiRateLimit: 20\n", "");
        assert_eq!(parse(&default).expect("valid").api_rate_limit, 50);
        for (bad, message) in [
            ("0", "between 1 and 10000"),
            ("20000", "between 1 and 10000"),
            ("\"fast\"", "a whole number"),
            ("2.5", "a whole number"),
        ] {
            let found = problems(&yaml.replace("20", bad));
            expect_problem(&found, "apiRateLimit", 1, message);
        }
    }

    #[test]
    fn defaults_are_applied() {
        let yaml = r#"roles:
  r:
    roleArn: arn:aws-us-gov:iam::123456789012:role/path/to/Name
    externalIdEnv: FERRY_EXTERNAL_ID
secrets:
  - name: a
    secretId: a
    role: r
    targets:
      - file:
          dir: /run/a
"#;
        let config = parse(yaml).expect("valid");
        assert_eq!(config.region, None);
        let role = &config.roles["r"];
        assert_eq!(
            role.external_id,
            Some(ExternalIdSource::Env("FERRY_EXTERNAL_ID".into()))
        );
        assert_eq!(role.session_name, "secret-ferry");
        assert_eq!(role.duration, Duration::from_secs(3600));
        assert_eq!(role.refresh_before, Duration::from_secs(300));
        let secret = &config.secrets[0];
        assert_eq!(secret.version, VersionSelector::Stage("AWSCURRENT".into()));
        assert_eq!(secret.refresh_interval, Duration::from_secs(60));
        assert_eq!(
            secret.targets,
            vec![Target::File(FileTarget {
                dir: "/run/a".into(),
                mode: 0o400,
            })]
        );
    }

    #[test]
    fn explicit_values_override_defaults() {
        let yaml = r#"roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    sessionName: ferry@host
    duration: 90m
    refreshBefore: 10m
secrets:
  - name: a
    secretId: 12345
    role: r
    versionId: 0x1F
    refreshInterval: 1s
    targets:
      - file:
          dir: /run/a
          mode: '0640'
"#;
        let config = parse(yaml).expect("valid");
        let role = &config.roles["r"];
        assert_eq!(role.session_name, "ferry@host");
        assert_eq!(role.duration, Duration::from_secs(90 * 60));
        assert_eq!(role.refresh_before, Duration::from_secs(600));
        let secret = &config.secrets[0];
        // Numeric-looking ids keep their spelling.
        assert_eq!(secret.secret_id, "12345");
        assert_eq!(secret.version, VersionSelector::Id("0x1F".into()));
        assert_eq!(secret.refresh_interval, Duration::from_secs(1));
        assert_eq!(
            secret.targets,
            vec![Target::File(FileTarget {
                dir: "/run/a".into(),
                mode: 0o640,
            })]
        );
    }

    #[test]
    fn reports_every_mistake_with_path_and_line() {
        let yaml = r#"region: US East
roles:
  shared:
    roleArn: arn:aws:iam::1234:role/X
    duration: 10m
    colour: blue
secrets:
  - name: db
    secretId: ""
    role: other
    refreshInterval: 500ms
    targets:
      - file:
          dir: /run/a
          mode: 999
  - name: db
    secretId: x
    targets: []
"#;
        let found = problems(yaml);
        let places: Vec<(&str, Option<usize>)> =
            found.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            places,
            [
                ("region", Some(1)),
                ("roles.shared.roleArn", Some(4)),
                ("roles.shared.duration", Some(5)),
                ("roles.shared.colour", Some(6)),
                ("secrets[0].secretId", Some(9)),
                ("secrets[0].role", Some(10)),
                ("secrets[0].refreshInterval", Some(11)),
                ("secrets[0].targets[0].file.mode", Some(15)),
                ("secrets[1].name", Some(16)),
                ("secrets[1].targets", Some(18)),
            ]
        );
        expect_problem(&found, "region", 1, "us-east-1");
        expect_problem(&found, "roles.shared.roleArn", 4, "12 digits");
        expect_problem(&found, "roles.shared.duration", 5, "between 15m and 12h");
        expect_problem(&found, "roles.shared.colour", 6, "unknown field `colour`");
        expect_problem(&found, "secrets[0].secretId", 9, "must not be empty");
        expect_problem(&found, "secrets[0].role", 10, "defined roles: shared");
        expect_problem(&found, "secrets[0].refreshInterval", 11, "at least 1s");
        expect_problem(&found, "secrets[1].name", 16, "secrets[0]");
        expect_problem(&found, "secrets[1].targets", 18, "at least one target");
        assert_eq!(
            found[7].to_string(),
            r#"secrets[0].targets[0].file.mode (line 15): must be a quoted octal string such as "0400", got 999"#
        );
        // Display: one problem per line.
        let shown = ConfigErrors(found.clone()).to_string();
        assert_eq!(shown.lines().count(), found.len());
        assert!(shown.starts_with("region (line 1): "), "{shown}");
    }

    #[test]
    fn unknown_fields_name_the_field_line_and_allowed_fields() {
        let mut yaml = secret_with("          owner: root\n");
        yaml.insert_str(0, "regoin: us-east-1\n");
        let found = problems(&yaml);
        assert_eq!(found.len(), 2, "{found:#?}");
        expect_problem(
            &found,
            "regoin",
            1,
            "unknown field `regoin`; allowed fields: region, roles, fetchStrategy, failoverRegion, secrets",
        );
        expect_problem(
            &found,
            "secrets[0].targets[0].file.owner",
            8,
            "unknown field `owner`; allowed fields: dir, path, format, mode",
        );
    }

    #[test]
    fn fetch_planner_discovery_and_mapping_settings_parse() {
        let yaml = r#"region: us-east-1
fetchStrategy: list
failoverRegion: us-west-2
secrets:
  - name: team
    find: {namePrefix: team-a/, tags: {env: prod}}
    prune: true
    targets: [{file: {dir: "/out/{{name}}"}}]
  - name: db
    secretId: app/db
    fetchStrategy: batch
    failoverRegion: eu-west-1
    property: db.main
    keys: [{from: password, to: DB_PASSWORD}, {from: user}]
    decode: base64
    templates: {DATABASE_URL: "postgres://{{ user }}@h/app"}
    templateMode: replace
    targets: [{file: {path: /out/db.env, format: env}}]
"#;
        let config = parse(yaml).unwrap();
        assert_eq!(config.fetch_strategy, FetchStrategy::List);
        let team = &config.secrets[0];
        assert_eq!(team.fetch_strategy, FetchStrategy::List);
        assert!(team.prune);
        assert_eq!(team.failover_region.as_deref(), Some("us-west-2"));
        let find = team.find.as_ref().unwrap();
        assert_eq!(find.name_prefix.as_deref(), Some("team-a/"));
        assert_eq!(find.tags.get("env").map(String::as_str), Some("prod"));
        let Target::File(dir) = &team.targets[0] else {
            panic!("{:?}", team.targets)
        };
        assert_eq!(
            dir.dir,
            PathBuf::from("/out/{{ name }}"),
            "placeholder spelled one way"
        );
        let db = &config.secrets[1];
        assert_eq!(db.fetch_strategy, FetchStrategy::Batch);
        assert_eq!(db.failover_region.as_deref(), Some("eu-west-1"));
        assert_eq!(db.mapping.property.as_deref(), Some("db.main"));
        assert_eq!(
            db.mapping.keys,
            Some(vec![
                KeyMap {
                    from: "password".into(),
                    to: "DB_PASSWORD".into()
                },
                KeyMap {
                    from: "user".into(),
                    to: "user".into()
                },
            ])
        );
        assert_eq!(db.mapping.decode, Decode::Base64);
        assert_eq!(db.mapping.template_mode, TemplateMode::Replace);
        assert_eq!(db.mapping.templates[0].0, "DATABASE_URL");
    }

    #[test]
    fn fetch_planner_discovery_and_mapping_mistakes_are_named() {
        let t = "    targets: [{file: {dir: /out/x}}]\n";
        let cases: Vec<(String, &str, &str)> = vec![
            (format!("  - name: a\n    secretId: x\n    fetchStrategy: fast\n{t}"), "secrets[0].fetchStrategy", "one of auto, get, batch, list"),
            (format!("  - name: a\n    secretId: x\n    versionStage: AWSPREVIOUS\n    fetchStrategy: batch\n{t}"), "secrets[0].fetchStrategy", "AWSCURRENT"),
            (format!("  - name: a\n    secretId: x\n    versionId: v1\n    fetchStrategy: list\n{t}"), "secrets[0].fetchStrategy", "pinned versionId"),
            (format!("  - name: a\n    secretId: x\n    find: {{namePrefix: a/}}\n{t}"), "secrets[0].find", "cannot both be set"),
            ("  - name: a\n    find: {namePrefix: a/}\n    targets: [{file: {dir: /out/x}}]\n".to_owned(), "secrets[0].targets[0].file.dir", "must contain {{ name }}"),
            ("  - name: a\n    find: {}\n    targets: [{file: {dir: \"/o/{{ name }}\"}}]\n".to_owned(), "secrets[0].find", "needs namePrefix or tags"),
            ("  - name: a\n    find: {namePrefix: a/}\n    fetchStrategy: batch\n    targets: [{file: {dir: \"/o/{{ name }}\"}}]\n".to_owned(), "secrets[0].fetchStrategy", "always polled with ListSecrets"),
            ("  - name: a\n    secretId: x\n    targets: [{file: {dir: \"/o/{{ name }}\"}}]\n".to_owned(), "secrets[0].targets[0].file.dir", "only for `find` entries"),
            ("  - name: a\n    find: {namePrefix: a/}\n    targets: [{file: {dir: \"/o/{{ name }}/{{ other }}\"}}]\n".to_owned(), "secrets[0].targets[0].file.dir", "the only placeholder"),
            (format!("  - name: a\n    secretId: x\n    prune: true\n{t}"), "secrets[0].prune", "only to `find` entries"),
            (format!("  - name: a\n    secretId: x\n    failoverRegion: Mars\n{t}"), "secrets[0].failoverRegion", "an AWS region"),
            (format!("  - name: a\n    secretId: x\n    property: a..b\n{t}"), "secrets[0].property", "dot-separated path"),
            (format!("  - name: a\n    secretId: x\n    keys: [{{from: a, to: K}}, {{from: b, to: K}}]\n{t}"), "secrets[0].keys[1]", "already produced"),
            (format!("  - name: a\n    secretId: x\n    keys: [{{from: a, to: ../K}}]\n{t}"), "secrets[0].keys[0].to", "safe file name"),
            (format!("  - name: a\n    secretId: x\n    decode: hex\n{t}"), "secrets[0].decode", "one of none, base64"),
            (format!("  - name: a\n    secretId: x\n    templates: {{URL: \"{{{{ user \"}}\n{t}"), "secrets[0].templates.URL", "template does not parse"),
            (format!("  - name: a\n    secretId: x\n    templateMode: replace\n{t}"), "secrets[0].templateMode", "only with `templates`"),
        ];
        for (secret, path, needle) in cases {
            let yaml = format!("secrets:\n{secret}");
            let found = problems(&yaml);
            let hit = found.iter().find(|p| p.path == path);
            assert!(
                hit.is_some_and(|p| p.message.contains(needle)),
                "{path} should say {needle:?} for\n{yaml}\ngot {found:#?}"
            );
        }
    }

    #[test]
    fn missing_required_fields_point_at_their_mapping() {
        let found = problems("roles:\n  r:\n    sessionName: x1\nsecrets:\n  - targets:\n      - file: {mode: \"0600\"}\n");
        expect_problem(&found, "roles.r.roleArn", 3, "is required");
        expect_problem(&found, "secrets[0].name", 5, "is required");
        expect_problem(&found, "secrets[0].secretId", 5, "is required");
        // A file target needs one of two fields, so the problem is on the target itself.
        expect_problem(&found, "secrets[0].targets[0].file", 6, "needs `dir`");
        assert_eq!(found.len(), 4, "{found:#?}");

        let found = problems("region: us-east-1\n");
        expect_problem(&found, "secrets", 1, "is required");
    }

    #[test]
    fn external_id_file_and_env_together() {
        let yaml = r#"roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    externalIdFile: /etc/id
    externalIdEnv: EXTERNAL_ID
secrets:
  - {name: a, secretId: a, role: r, targets: [{file: {dir: /run/a}}]}
"#;
        let found = problems(yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "roles.r.externalIdEnv",
            5,
            "externalIdFile and externalIdEnv cannot both be set",
        );
    }

    #[test]
    fn bad_external_id_env_name() {
        let yaml = r#"roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    externalIdEnv: 1-BAD
secrets:
  - {name: a, secretId: a, targets: [{file: {dir: /run/a}}]}
"#;
        expect_problem(
            &problems(yaml),
            "roles.r.externalIdEnv",
            4,
            "environment variable name",
        );
    }

    #[test]
    fn version_stage_and_id_together() {
        let found = problems(&secret_with(
            "    versionStage: AWSPREVIOUS\n    versionId: abc\n",
        ));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "secrets[0].versionId",
            8,
            "versionStage and versionId cannot both be set",
        );
    }

    fn role_with(fields: &str) -> String {
        format!("roles:\n  r:\n    roleArn: arn:aws:iam::123456789012:role/R\n{fields}secrets:\n  - {{name: a, secretId: a, targets: [{{file: {{dir: /run/a}}}}]}}\n")
    }

    #[test]
    fn refresh_before_must_be_shorter_than_duration() {
        let found = problems(&role_with("    duration: 30m\n    refreshBefore: 30m\n"));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "roles.r.refreshBefore",
            5,
            "must be shorter than duration (30m), got \"30m\"",
        );

        // Compared against the default duration (1h) too.
        let found = problems(&role_with("    refreshBefore: 2h\n"));
        expect_problem(&found, "roles.r.refreshBefore", 4, "(1h)");

        let found = problems(&role_with("    refreshBefore: 0s\n"));
        expect_problem(&found, "roles.r.refreshBefore", 4, "greater than zero");
    }

    /// One run reports every independent mistake. Where a check needs a value that is itself
    /// invalid, it says so rather than staying silent until a second run.
    #[test]
    fn every_independent_mistake_is_reported_in_one_run() {
        let yaml = r#"region: US-EAST-1
fetchStrategy: sometimes
roles:
  bad:
    roleArn: arn:aws:iam::1111:role/Bad
    refreshBefore: 2h
  short:
    roleArn: arn:aws:iam::111111111111:role/S
    duration: 5m
    refreshBefore: 2h
  garbled:
    roleArn: arn:aws:iam::111111111111:role/G
    duration: forever
    refreshBefore: 13h
secrets:
  - name: "bad name!"
    secretId: x
    versionStage: AWSPREVIOUS
    versionId: abc
    fetchStrategy: batch
    targets: [{file: {dir: /o/a, mode: "999"}}]
  - name: "bad name!"
    find: {namePrefix: "t/"}
    targets: [{file: {dir: /o/b}}]
  - name: c
    secretId: y
    refreshIntervall: 5s
    targets: [{file: {dir: /o/a}}, {file: {path: /o/b/f.json, format: yaml}}]
"#;
        let found = problems(yaml);
        for (path, line, needle) in [
            ("region", 1, "AWS region"),
            ("fetchStrategy", 2, "one of auto"),
            ("roles.bad.roleArn", 5, "12 digits"),
            ("roles.bad.refreshBefore", 6, "shorter than duration (1h)"),
            ("roles.short.duration", 9, "between 15m and 12h"),
            (
                "roles.short.refreshBefore",
                10,
                "\"2h\" not checked against duration, which is invalid",
            ),
            ("roles.garbled.duration", 13, "a duration such as"),
            ("roles.garbled.refreshBefore", 14, "at most 12h"),
            ("secrets[0].versionId", 19, "cannot both be set"),
            (
                "secrets[0].fetchStrategy",
                20,
                "only the AWSCURRENT version",
            ),
            ("secrets[0].targets[0].file.mode", 21, "octal"),
            (
                "secrets[1].targets[0].file.dir",
                24,
                "must contain {{ name }}",
            ),
            ("secrets[2].refreshIntervall", 27, "unknown field"),
            (
                "secrets[2].targets[0].file.dir",
                28,
                "already used by secrets[0]",
            ),
            (
                "secrets[2].targets[1].file.path",
                28,
                "inside \"/o/b\", the directory of secrets[1]",
            ),
            ("secrets[2].targets[1].file.format", 28, "one of raw"),
        ] {
            expect_problem(&found, path, line, needle);
        }
        // Invalid, and a duplicate: both said at once.
        let name: Vec<&str> = found
            .iter()
            .filter(|p| p.path == "secrets[1].name")
            .map(|p| p.message.as_str())
            .collect();
        assert_eq!(name.len(), 2, "{found:#?}");
        assert!(name[0].contains("must be 1 to 128"), "{name:?}");
        assert!(
            name[1].contains("duplicate secret name \"bad name!\": secrets[0]"),
            "{name:?}"
        );
        expect_problem(&found, "secrets[0].name", 16, "must be 1 to 128");
        assert_eq!(found.len(), 19, "{found:#?}");
    }

    #[test]
    fn duration_out_of_range_or_malformed() {
        for (value, needle) in [
            ("14m", "between 15m and 12h, got \"14m\""),
            ("13h", "between 15m and 12h, got \"13h\""),
            (
                "3600",
                "a duration such as \"90s\", \"5m\" or \"1h\", got 3600",
            ),
            ("an hour", "a duration such as"),
            ("[1h]", "got a list"),
        ] {
            let found = problems(&role_with(&format!("    duration: {value}\n")));
            assert_eq!(found.len(), 1, "{value}: {found:#?}");
            expect_problem(&found, "roles.r.duration", 4, needle);
        }
        // The longest and shortest allowed sessions are fine.
        for value in ["15m", "12h"] {
            assert!(parse(&role_with(&format!("    duration: {value}\n"))).is_ok());
        }
    }

    #[test]
    fn file_modes() {
        let found = problems(&secret_with("          mode: 0400\n"));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "secrets[0].targets[0].file.mode",
            7,
            "got 0400; unquoted, YAML reads it as a number, so write \"0400\"",
        );
        for (value, needle) in [
            ("\"0800\"", "3 or 4 octal digits"),
            ("\"40\"", "3 or 4 octal digits"),
            ("\"rw\"", "3 or 4 octal digits"),
            ("\"4755\"", "at most \"0777\""),
            ("true", "quoted octal string"),
        ] {
            let found = problems(&secret_with(&format!("          mode: {value}\n")));
            expect_problem(&found, "secrets[0].targets[0].file.mode", 7, needle);
        }
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0777"), Ok(0o777));
    }

    #[test]
    fn unknown_role_reference() {
        let found = problems(&secret_with("    role: nope\n"));
        expect_problem(
            &found,
            "secrets[0].role",
            7,
            "unknown role \"nope\": no roles are defined",
        );

        let yaml = role_with("").replace("secretId: a,", "secretId: a, role: other,");
        let found = problems(&yaml);
        expect_problem(&found, "secrets[0].role", 5, "defined roles: r");
    }

    #[test]
    fn a_broken_role_does_not_break_references_to_it() {
        let yaml = role_with("    duration: 1y\n").replace("secretId: a,", "secretId: a, role: r,");
        let found = problems(&yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(&found, "roles.r.duration", 4, "between 15m and 12h");
    }

    #[test]
    fn duplicate_secret_names() {
        let yaml = r#"secrets:
  - {name: db, secretId: a, targets: [{file: {dir: /run/a}}]}
  - {name: web, secretId: b, targets: [{file: {dir: /run/b}}]}
  - {name: db, secretId: c, targets: [{file: {dir: /run/c}}]}
"#;
        let found = problems(yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "secrets[2].name",
            4,
            "duplicate secret name \"db\": secrets[0] already uses it",
        );
    }

    #[test]
    fn duplicate_target_dirs() {
        let yaml = r#"secrets:
  - name: a
    secretId: a
    targets:
      - file:
          dir: /run/shared
  - name: b
    secretId: b
    targets:
      - file: {dir: /run/b}
      - file: {dir: /run/shared/}
"#;
        let found = problems(yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "secrets[1].targets[1].file.dir",
            11,
            "is already used by secrets[0].targets[0].file.dir",
        );
    }

    #[test]
    fn target_kinds() {
        let found = problems(&secret_with("      - s3: {bucket: b}\n"));
        expect_problem(
            &found,
            "secrets[0].targets[1].s3",
            7,
            "unknown target kind `s3`; allowed kinds: file",
        );
        let found = problems(&secret_with("      - {}\n"));
        expect_problem(
            &found,
            "secrets[0].targets[1]",
            7,
            "must name a target kind",
        );
        let found = problems(&secret_with("        mode: \"0400\"\n"));
        expect_problem(
            &found,
            "secrets[0].targets[0].mode",
            7,
            "a target has exactly one kind",
        );
    }

    #[test]
    fn bad_arns() {
        for (arn, needle) in [
            ("arn:aws:iam::123456789012:user/bob", "not a role ARN"),
            ("arn:aws:sts::123456789012:role/R", "not an IAM role ARN"),
            ("arn:azure:iam::123456789012:role/R", "partition"),
            ("arn:aws:iam::12345678901x:role/R", "12 digits"),
            ("arn:aws:iam::123456789012:role/", "role name"),
            ("arn:aws:iam::123456789012:role/a b", "role name"),
            ("CrossAccountSecretsRole", "not an IAM role ARN"),
        ] {
            let found = problems(
                &role_with("").replace("arn:aws:iam::123456789012:role/R", &format!("\"{arn}\"")),
            );
            expect_problem(&found, "roles.r.roleArn", 3, needle);
            expect_problem(&found, "roles.r.roleArn", 3, ROLE_ARN_FORM);
        }
        for arn in [
            "arn:aws:iam::123456789012:role/R",
            "arn:aws-cn:iam::123456789012:role/service-role/My+Role=x,y.z@w_1-2",
            "arn:aws-iso-b:iam::123456789012:role/R",
        ] {
            assert_eq!(check_role_arn(arn), Ok(()), "{arn}");
        }

        let found = problems(&secret_with("").replace(
            "secretId: s",
            "secretId: arn:aws:secretsmanager:us-east-1:123:secret:x",
        ));
        expect_problem(&found, "secrets[0].secretId", 3, SECRET_ARN_FORM);
        for arn in [
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:my-secret",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:my-secret-AbCdEf",
        ] {
            assert_eq!(check_secret_arn(arn), Ok(()), "{arn}");
        }
    }

    #[test]
    fn names_are_checked() {
        let yaml = role_with("")
            .replace("  r:", "  \"bad name\":")
            .replace("name: a,", "name: \"a/b\",");
        let found = problems(&yaml);
        expect_problem(&found, "roles.bad name", 2, "a role name must be");
        expect_problem(&found, "secrets[0].name", 5, "1 to 128");

        let found = problems(&role_with("    sessionName: x\n"));
        expect_problem(&found, "roles.r.sessionName", 4, "STS session name");
    }

    #[test]
    fn strings_are_required_where_strings_are_expected() {
        let found = problems(&secret_with("").replace("name: db", "name: 42"));
        expect_problem(&found, "secrets[0].name", 2, "must be a string, got 42");
        let found = problems(&format!("region: 1\n{}", secret_with("")));
        expect_problem(&found, "region", 1, "must be a string, got 1");
    }

    #[test]
    fn yaml_syntax_error_has_its_line() {
        let found = problems("secrets:\n  - name: a\n    secretId: [x\n    role: r\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].path, "");
        assert!(
            found[0].line.is_some_and(|l| (3..=4).contains(&l)),
            "{found:?}"
        );
        assert!(found[0].message.starts_with("invalid YAML"), "{found:?}");

        let found = problems("secrets: []\nregion: a\nsecrets: []\n");
        assert_eq!(
            found,
            [Problem {
                path: String::new(),
                line: Some(3),
                message: "invalid YAML: duplicated key in mapping".into(),
            }]
        );
        assert_eq!(
            found[0].to_string(),
            "line 3: invalid YAML: duplicated key in mapping"
        );
    }

    #[test]
    fn odd_documents_do_not_panic() {
        let deep_list = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_secrets = format!("secrets: {}{}", "[".repeat(50), "]".repeat(50));
        // The parser recurses per level: past the limit it is never called, so no stack
        // overflows, however deep a document nests.
        let deep_dashes = format!("secrets:\n  {}x\n", "- ".repeat(100_000));
        let deep_maps = format!(
            "secrets:\n  - name: {}1{}\n",
            "{a: ".repeat(50),
            "}".repeat(50)
        );
        let cases: Vec<(&str, &str)> = vec![
            ("", "the config is empty"),
            ("# only a comment\n", "the config is empty"),
            ("[]", "the config must be a mapping, got a list"),
            (
                "just text",
                "the config must be a mapping, got \"just text\"",
            ),
            ("42", "the config must be a mapping, got 42"),
            ("secrets: 5", "must be a list, got 5"),
            ("secrets: [5]", "must be a mapping, got 5"),
            ("secrets: [~]", "must be a mapping, got null"),
            ("secrets:", "is required"),
            ("secrets: []", "at least one secret"),
            ("secrets: {a: 1}", "must be a list, got a mapping"),
            ("roles: [a]\nsecrets: [5]", "must be a mapping, got a list"),
            ("roles: {r: 5}\nsecrets: [5]", "must be a mapping, got 5"),
            ("roles: {[a]: {}}\nsecrets: [5]", "keys must be names"),
            (
                "secrets: [{targets: [[]]}]",
                "must be a mapping, got a list",
            ),
            ("secrets: [{targets: {file: {}}}]", "must be a list"),
            (
                "secrets: [{targets: [{file: }]}]",
                "must be a mapping, got null",
            ),
            ("secrets: [{targets: [{1: {}}]}]", "unknown target kind `1`"),
            (
                "secrets: [{name: [a], secretId: {}, refreshInterval: [] }]",
                "got a list",
            ),
            ("secrets: !custom [5]", "must be a mapping, got 5"),
            ("a: &x [1]\nb: *x\n", "unknown field `a`"),
            ("a: *missing\n", "invalid YAML"),
            ("secrets: []\n---\nsecrets: []\n", "single YAML document"),
            ("\t- a", "must be a mapping, got a list"),
            ("secrets: [\"\u{1F980}\", \"\u{e9}\"]", "got \"\u{1F980}\""),
            (&deep_list, "nests deeper than 64 levels"),
            (&deep_dashes, "nests deeper than 64 levels"),
            (&deep_secrets, "must be a mapping, got a list"),
            (&deep_maps, "must be a string, got a mapping"),
        ];
        for (yaml, needle) in cases {
            let shown = match parse(yaml) {
                Ok(config) => panic!("{yaml:?} parsed: {config:?}"),
                Err(errors) => errors.to_string(),
            };
            assert!(shown.contains(needle), "{yaml:?}: {shown}");
        }
    }

    #[test]
    fn non_string_scalars_are_quoted_from_the_source() {
        // Positions are in characters; text before the value must not shift the quote.
        let found = problems("# \u{1F980}\u{e9}\nsecrets: 1.50\n");
        expect_problem(&found, "secrets", 2, "got 1.50");
    }

    /// Environment for placeholder tests: a pod's downward API variables.
    fn pod_env(name: &str) -> Option<String> {
        match name {
            "POD_NAME" => Some("web-7d4f9-abcde".to_owned()),
            "POD_NAMESPACE" => Some("payments".to_owned()),
            "HOSTNAME" => Some("web-7d4f9-abcde".to_owned()),
            _ => None,
        }
    }

    fn problems_with_env(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
        match parse_with_env(yaml, env) {
            Ok(config) => panic!("expected problems, got {config:?}"),
            Err(errors) => errors.0,
        }
    }

    /// `role_with("")` followed by top-level `extra`, which starts on line 6.
    fn config_with(extra: &str) -> String {
        format!("{}{extra}", role_with(""))
    }

    const FULL_EXAMPLE: &str = r#"region: us-east-1
baseCredentials:
  accessKeyIdFile: /etc/aws/access-key-id
  secretAccessKeyFile: /etc/aws/secret-access-key
roles:
  shared:
    roleArn: arn:aws:iam::111111111111:role/CrossAccountSecretsRole
    externalIdFile: /etc/secret-ferry/external-id
    sessionName: "ferry-${POD_NAMESPACE}-${POD_NAME}"
    duration: 1h
    refreshBefore: 5m
    sessionTags: {team: payments, env: prod}
    transitiveTagKeys: [team]
    sourceIdentity: ci-bot
    policy: '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}'
    policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]
    region: eu-west-1
    stsEndpoint: https://sts.eu-west-1.amazonaws.com
    via: hub
  hub:
    roleArn: arn:aws:iam::222222222222:role/Hub
secrets:
  - name: db
    secretId: my-shared-secret
    role: shared
    targets:
      - file:
          dir: /var/run/secrets/ferry/db
credentialOutputs:
  - role: shared
    file:
      path: /var/run/secrets/ferry/aws/credentials
      profile: default
      mode: "0400"
  - role: hub
    file: {path: /var/run/secrets/ferry/aws/hub}
credentialsEndpoint:
  listen: 127.0.0.1:9911
  tokenFile: /var/run/secrets/ferry/endpoint-token
  roles: [shared]
  allowNonLoopback: false
"#;

    fn plain_role(name: &str, role_arn: &str) -> RoleConfig {
        RoleConfig {
            name: name.into(),
            role_arn: role_arn.into(),
            external_id: None,
            session_name: "secret-ferry".into(),
            duration: Duration::from_secs(3600),
            refresh_before: Duration::from_secs(300),
            session_tags: BTreeMap::new(),
            transitive_tag_keys: Vec::new(),
            source_identity: None,
            policy: None,
            policy_arns: Vec::new(),
            region: None,
            sts_endpoint: None,
            via: None,
        }
    }

    #[test]
    fn full_example_parses_with_exact_values() {
        let config = parse_with_env(FULL_EXAMPLE, &pod_env).expect("full example is valid");
        let shared = RoleConfig {
            external_id: Some(ExternalIdSource::File(
                "/etc/secret-ferry/external-id".into(),
            )),
            session_name: "ferry-payments-web-7d4f9-abcde".into(),
            session_tags: BTreeMap::from([
                ("team".to_owned(), "payments".to_owned()),
                ("env".to_owned(), "prod".to_owned()),
            ]),
            transitive_tag_keys: vec!["team".into()],
            source_identity: Some("ci-bot".into()),
            policy: Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#
                    .into(),
            ),
            policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            region: Some("eu-west-1".into()),
            sts_endpoint: Some("https://sts.eu-west-1.amazonaws.com".into()),
            via: Some("hub".into()),
            ..plain_role(
                "shared",
                "arn:aws:iam::111111111111:role/CrossAccountSecretsRole",
            )
        };
        let hub = plain_role("hub", "arn:aws:iam::222222222222:role/Hub");
        let expected = Config {
            region: Some("us-east-1".into()),
            roles: BTreeMap::from([("hub".to_owned(), hub), ("shared".to_owned(), shared)]),
            secrets: vec![SecretConfig {
                name: "db".into(),
                secret_id: "my-shared-secret".into(),
                role: Some("shared".into()),
                version: VersionSelector::Stage("AWSCURRENT".into()),
                refresh_interval: Duration::from_secs(60),
                targets: vec![Target::File(FileTarget {
                    dir: "/var/run/secrets/ferry/db".into(),
                    mode: 0o400,
                })],
                on_change: Vec::new(),
                debounce: Duration::from_secs(2),
                find: None,
                prune: false,
                fetch_strategy: FetchStrategy::Auto,
                failover_region: None,
                mapping: Mapping::default(),
            }],
            base_credentials: Some(BaseCredentials {
                access_key_id_file: "/etc/aws/access-key-id".into(),
                secret_access_key_file: "/etc/aws/secret-access-key".into(),
            }),
            credential_outputs: vec![
                CredentialOutput {
                    role: "shared".into(),
                    path: "/var/run/secrets/ferry/aws/credentials".into(),
                    profile: "default".into(),
                    mode: 0o400,
                },
                // Defaults for profile and mode.
                CredentialOutput {
                    role: "hub".into(),
                    path: "/var/run/secrets/ferry/aws/hub".into(),
                    profile: "default".into(),
                    mode: 0o400,
                },
            ],
            credentials_endpoint: Some(CredentialsEndpoint {
                listen: SocketAddr::from(([127, 0, 0, 1], 9911)),
                token_file: "/var/run/secrets/ferry/endpoint-token".into(),
                roles: vec!["shared".into()],
                allow_non_loopback: false,
            }),
            max_staleness: None,
            api_rate_limit: 50,
            fetch_strategy: FetchStrategy::Auto,
            failover_region: None,
            tenants: Vec::new(),
            warnings: Vec::new(),
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn the_new_top_level_fields_are_allowed_fields() {
        let found = problems(&config_with("credentialOutput: []\n"));
        expect_problem(
            &found,
            "credentialOutput",
            6,
            "allowed fields: region, roles, fetchStrategy, failoverRegion, secrets, tenants, baseCredentials, credentialOutputs, credentialsEndpoint",
        );
        let found = problems(&role_with("    sessionTag: {a: b}\n"));
        expect_problem(&found, "roles.r.sessionTag", 4, "sessionTags, transitiveTagKeys, sourceIdentity, policy, policyArns, region, stsEndpoint, via");
    }

    #[test]
    fn session_name_placeholders_take_values_from_the_environment() {
        let name = |template: &str, env: &dyn Fn(&str) -> Option<String>| {
            let yaml = role_with(&format!("    sessionName: \"{template}\"\n"));
            parse_with_env(&yaml, env).map(|config| config.roles["r"].session_name.clone())
        };
        assert_eq!(
            name("${POD_NAMESPACE}.${POD_NAME}@${HOSTNAME}", &pod_env).ok(),
            Some("payments.web-7d4f9-abcde@web-7d4f9-abcde".to_owned())
        );
        // Without placeholders the environment is not consulted.
        let no_env = |_: &str| -> Option<String> { panic!("no lookup expected") };
        assert_eq!(
            name("plain-name", &no_env).ok(),
            Some("plain-name".to_owned())
        );
        // `parse` reads the process environment; a name without placeholders needs none.
        let yaml = role_with("    sessionName: ferry\n");
        assert_eq!(
            parse(&yaml).ok().map(|c| c.roles["r"].session_name.clone()),
            Some("ferry".to_owned())
        );
    }

    #[test]
    fn session_name_placeholder_problems() {
        let unset = |name: &str| match name {
            "POD_NAMESPACE" => Some(String::new()),
            _ => None,
        };
        let yaml = role_with("    sessionName: \"f-${POD_NAME}-${POD_NAMESPACE}-${USER}\"\n");
        let found = problems_with_env(&yaml, &unset);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found
            .iter()
            .all(|p| p.path == "roles.r.sessionName" && p.line == Some(4)));
        assert_eq!(
            found[0].message,
            "`${POD_NAME}` needs the environment variable POD_NAME, which is unset or empty; \
             set it from the Kubernetes downward API (fieldRef fieldPath: metadata.name)"
        );
        assert!(
            found[1]
                .message
                .contains("environment variable POD_NAMESPACE, which is unset or empty"),
            "{found:#?}"
        );
        assert!(
            found[1].message.contains("metadata.namespace"),
            "{found:#?}"
        );
        assert_eq!(
            found[2].message,
            "unknown placeholder `${USER}`; allowed placeholders: ${POD_NAME}, ${POD_NAMESPACE}, ${HOSTNAME}"
        );

        let found = problems_with_env(&role_with("    sessionName: \"a-${POD_NAME\"\n"), &pod_env);
        expect_problem(
            &found,
            "roles.r.sessionName",
            4,
            "`${` without a closing `}`",
        );
    }

    #[test]
    fn session_name_is_checked_after_substitution() {
        let long_pod = |name: &str| (name == "POD_NAME").then(|| "p".repeat(60));
        let found = problems_with_env(
            &role_with("    sessionName: \"ferry-${POD_NAME}\"\n"),
            &long_pod,
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "roles.r.sessionName",
            4,
            &format!(
                "(an STS session name), got \"ferry-{}\" after substitution",
                "p".repeat(60)
            ),
        );
        // A `$` that does not start a placeholder is an ordinary character, which STS refuses.
        let found = problems_with_env(&role_with("    sessionName: \"cost$5\"\n"), &pod_env);
        expect_problem(
            &found,
            "roles.r.sessionName",
            4,
            "(an STS session name), got \"cost$5\"",
        );
        assert!(
            !found[0].message.contains("after substitution"),
            "{found:#?}"
        );
        // A pod name with a character STS refuses.
        let odd = |_: &str| Some("a b".to_owned());
        let found = problems_with_env(&role_with("    sessionName: \"x-${HOSTNAME}\"\n"), &odd);
        expect_problem(
            &found,
            "roles.r.sessionName",
            4,
            "got \"x-a b\" after substitution",
        );
    }

    #[test]
    fn session_tags() {
        let yaml = role_with("    sessionTags:\n      Cost Centre: \"4711\"\n      \u{e9}quipe: \"caf\u{e9} @ 1:2/3=4+5-6_7.8\"\n      empty: \"\"\n");
        let config = parse(&yaml).expect("valid tags");
        assert_eq!(
            config.roles["r"].session_tags,
            BTreeMap::from([
                ("Cost Centre".to_owned(), "4711".to_owned()),
                (
                    "\u{e9}quipe".to_owned(),
                    "caf\u{e9} @ 1:2/3=4+5-6_7.8".to_owned()
                ),
                ("empty".to_owned(), String::new()),
            ])
        );

        let yaml = role_with(&format!(
            "    sessionTags:\n      port: 8080\n      on: true\n      {}: a\n      ok: \"{}\"\n      bad: \"a*b\"\n      \"\": x\n",
            "k".repeat(129),
            "v".repeat(257),
        ));
        let found = problems(&yaml);
        expect_problem(
            &found,
            "roles.r.sessionTags.port",
            5,
            "must be a string, got 8080; unquoted, YAML reads it as a number, so write \"8080\"",
        );
        expect_problem(
            &found,
            "roles.r.sessionTags.on",
            6,
            "must be a string, got true; unquoted, YAML reads it as a boolean, so write \"true\"",
        );
        expect_problem(
            &found,
            &format!("roles.r.sessionTags.{}", "k".repeat(129)),
            7,
            "a tag key must be 1 to 128 letters, digits, spaces or any of \"_.:/=+-@\"",
        );
        expect_problem(
            &found,
            "roles.r.sessionTags.ok",
            8,
            "a tag value must be at most 256",
        );
        expect_problem(&found, "roles.r.sessionTags.bad", 9, "got \"a*b\"");
        expect_problem(
            &found,
            "roles.r.sessionTags.",
            10,
            "a tag key must be 1 to 128",
        );
        assert_eq!(found.len(), 6, "{found:#?}");

        let found = problems(&role_with("    sessionTags: {1: a}\n"));
        expect_problem(
            &found,
            "roles.r.sessionTags.1",
            4,
            "a tag key must be a string, got 1; write \"1\"",
        );
    }

    #[test]
    fn session_tag_limits_and_case_insensitive_duplicates() {
        let tags = |n: usize| {
            let tags: Vec<String> = (0..n).map(|i| format!("k{i}: v")).collect();
            role_with(&format!("    sessionTags: {{{}}}\n", tags.join(", ")))
        };
        assert_eq!(
            parse(&tags(50))
                .map(|c| c.roles["r"].session_tags.len())
                .ok(),
            Some(50)
        );
        let found = problems(&tags(51));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "roles.r.sessionTags",
            4,
            "must have at most 50 tags, got 51",
        );

        let found = problems(&role_with(
            "    sessionTags:\n      team: a\n      env: b\n      Team: c\n      TEAM: d\n",
        ));
        assert_eq!(found.len(), 2, "{found:#?}");
        expect_problem(
            &found,
            "roles.r.sessionTags.Team",
            7,
            "tag key \"Team\" repeats \"team\" (line 5): STS tag keys ignore case",
        );
        expect_problem(
            &found,
            "roles.r.sessionTags.TEAM",
            8,
            "tag key \"TEAM\" repeats \"team\" (line 5)",
        );
    }

    #[test]
    fn transitive_tag_keys_must_be_session_tag_keys() {
        let yaml = role_with(
            "    sessionTags: {team: a, env: b}\n    transitiveTagKeys: [env, Team, env]\n",
        );
        let found = problems(&yaml);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].to_string(), "roles.r.transitiveTagKeys[1] (line 5): unknown tag key \"Team\"; defined tag keys: env, team");
        expect_problem(
            &found,
            "roles.r.transitiveTagKeys[2]",
            5,
            "\"env\" is already listed at roles.r.transitiveTagKeys[0]",
        );

        let found = problems(&role_with("    transitiveTagKeys: [team]\n"));
        expect_problem(
            &found,
            "roles.r.transitiveTagKeys[0]",
            4,
            "unknown tag key \"team\": no tag keys are defined under `sessionTags`",
        );

        // A broken tag is still a key that may be listed.
        let found = problems(&role_with(
            "    sessionTags: {team: 1}\n    transitiveTagKeys: [team]\n",
        ));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(&found, "roles.r.sessionTags.team", 4, "quote");
    }

    #[test]
    fn source_identity() {
        let config = parse(&role_with("    sourceIdentity: \"a+=,.@_-Z9\"\n")).expect("valid");
        assert_eq!(
            config.roles["r"].source_identity.as_deref(),
            Some("a+=,.@_-Z9")
        );
        for value in ["x", "\"has space\"", "\"aws:id\"", &"s".repeat(65)] {
            let found = problems(&role_with(&format!("    sourceIdentity: {value}\n")));
            expect_problem(
                &found,
                "roles.r.sourceIdentity",
                4,
                "(an STS source identity)",
            );
        }
    }

    #[test]
    fn policy_as_a_json_string_is_compacted_in_order() {
        let yaml = role_with(concat!(
            "    policy: |\n",
            "      {\n",
            "        \"Version\": \"2012-10-17\",\n",
            "        \"Statement\": [ { \"Effect\" : \"Deny\", \"Action\": \"s3:*\",\n",
            "          \"Resource\": \"arn:aws:s3:::a b\\\"c\", \"Condition\": {\"NumericLessThan\": {\"x\": 1.50e1}} } ]\n",
            "      }\n",
        ));
        let config = parse(&yaml).expect("valid policy");
        assert_eq!(
            config.roles["r"].policy.as_deref(),
            Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::a b\"c","Condition":{"NumericLessThan":{"x":1.50e1}}}]}"#
            )
        );
    }

    #[test]
    fn policy_as_a_mapping_becomes_compact_json() {
        let yaml = role_with(concat!(
            "    policy:\n",
            "      Version: \"2012-10-17\"\n",
            "      Statement:\n",
            "        - Effect: Allow\n",
            "          Action: [secretsmanager:GetSecretValue, \"kms:Decrypt\"]\n",
            "          Resource: '*'\n",
            "          Condition:\n",
            "            Bool: {aws:SecureTransport: true}\n",
            "            NumericLessThan: {n: 10, f: 1.5, neg: -3}\n",
            "            Null: {tag: ~}\n",
            "            Quoted: {\"say \\\"hi\\\"\": '42', 7: x}\n",
        ));
        let config = parse(&yaml).expect("valid policy");
        assert_eq!(
            config.roles["r"].policy.as_deref(),
            Some(concat!(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","#,
                r#""Action":["secretsmanager:GetSecretValue","kms:Decrypt"],"Resource":"*","#,
                r#""Condition":{"Bool":{"aws:SecureTransport":true},"#,
                r#""NumericLessThan":{"n":10,"f":1.5,"neg":-3},"Null":{"tag":null},"#,
                r#""Quoted":{"say \"hi\"":"42","7":"x"}}}]}"#
            ))
        );

        let found = problems(&role_with(
            "    policy:\n      Statement:\n        - {n: .inf}\n",
        ));
        expect_problem(
            &found,
            "roles.r.policy.Statement[0].n",
            6,
            "JSON has no infinity or NaN",
        );
        let found = problems(&role_with("    policy: {? [a] : 1, b: [1, {? {} : 2}]}\n"));
        let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
        assert_eq!(
            shown,
            [
                "roles.r.policy (line 4): keys must be strings, got a list",
                "roles.r.policy.b[1] (line 4): keys must be strings, got a mapping",
            ]
        );
    }

    #[test]
    fn policy_problems() {
        let found = problems(&role_with(
            "    policy: '{\"Version\": \"2012-10-17\", \"Statement\": [}'\n",
        ));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "roles.r.policy",
            4,
            "must be a JSON object, but is not valid JSON: expected value at line 1 column 41",
        );
        // Only the position: the policy text is not repeated.
        assert!(!found[0].message.contains("2012"), "{found:#?}");

        for (value, needle) in [
            ("'[1, 2]'", "must be a JSON object, got a JSON array"),
            ("'\"text\"'", "must be a JSON object, got a JSON string"),
            ("'null'", "must be a JSON object, got a JSON null"),
            (
                "[a]",
                "must be a JSON object, as a string or a mapping, got a list",
            ),
            (
                "42",
                "must be a JSON object, as a string or a mapping, got 42",
            ),
        ] {
            let found = problems(&role_with(&format!("    policy: {value}\n")));
            assert_eq!(found.len(), 1, "{value}: {found:#?}");
            expect_problem(&found, "roles.r.policy", 4, needle);
        }
    }

    #[test]
    fn policy_length_is_counted_compact() {
        // {"a":"…"} is 8 characters around the value.
        let policy = |chars: usize, spaces: &str| {
            format!(
                "    policy: '{{ \"a\" :{spaces}\"{}\" }}'\n",
                "x".repeat(chars - 8)
            )
        };
        let config =
            parse(&role_with(&policy(2048, "          "))).expect("2048 compact characters fit");
        assert_eq!(
            config.roles["r"].policy.as_deref().map(str::len),
            Some(2048)
        );
        let found = problems(&role_with(&policy(2049, "")));
        expect_problem(
            &found,
            "roles.r.policy",
            4,
            "must be at most 2048 characters as compact JSON, got 2049",
        );

        let mapping = format!("    policy: {{a: {}}}\n", "x".repeat(2049 - 8));
        let found = problems(&role_with(&mapping));
        expect_problem(&found, "roles.r.policy", 4, "got 2049");
    }

    #[test]
    fn policy_arns() {
        let arns = |arns: &[&str]| role_with(&format!("    policyArns: [{}]\n", arns.join(", ")));
        let good = [
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws-cn:iam::123456789012:policy/team/Custom+Name=1",
        ];
        let config = parse(&arns(&good)).expect("valid");
        assert_eq!(config.roles["r"].policy_arns, good);

        let found = problems(&arns(&[
            "arn:aws:iam::aws:role/ReadOnlyAccess",
            "arn:aws:iam::12345:policy/P",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::aws:policy/",
        ]));
        assert_eq!(found.len(), 4, "{found:#?}");
        let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
        assert!(messages[0].starts_with("not a policy ARN; expected arn:<partition>:iam::<aws or a 12-digit account id>:policy/<name>, got \"arn:aws:iam::aws:role/ReadOnlyAccess\""), "{messages:#?}");
        assert!(
            messages[1].starts_with("the account id must be 12 digits or aws;"),
            "{messages:#?}"
        );
        assert!(
            messages[2].starts_with("not an IAM policy ARN;"),
            "{messages:#?}"
        );
        assert!(
            messages[3].starts_with("the policy name must be"),
            "{messages:#?}"
        );
        assert_eq!(found[3].path, "roles.r.policyArns[3]");

        let ten: Vec<String> = (0..10)
            .map(|i| format!("arn:aws:iam::aws:policy/P{i}"))
            .collect();
        let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
        assert!(parse(&arns(&ten)).is_ok());
        let eleven = [ten.as_slice(), &["arn:aws:iam::aws:policy/P10"]].concat();
        let found = problems(&arns(&eleven));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(
            &found,
            "roles.r.policyArns",
            4,
            "must list at most 10 policy ARNs, got 11",
        );
    }

    #[test]
    fn role_region_and_sts_endpoint() {
        let yaml = role_with("    region: eu-west-1\n    stsEndpoint: \"http://[::1]:4566/\"\n");
        let role = parse(&yaml).expect("valid").roles["r"].clone();
        assert_eq!(role.region.as_deref(), Some("eu-west-1"));
        assert_eq!(role.sts_endpoint.as_deref(), Some("http://[::1]:4566/"));
        assert!(parse(&role_with("    stsEndpoint: http://localhost:4566\n")).is_ok());

        let found = problems(&role_with("    region: EU\n"));
        expect_problem(&found, "roles.r.region", 4, "an AWS region");
        for value in [
            "sts.amazonaws.com",
            "ftp://sts.amazonaws.com",
            "https://",
            "https:///path",
            "\"https://:443\"",
            "\"https://a b\"",
        ] {
            let found = problems(&role_with(&format!("    stsEndpoint: {value}\n")));
            expect_problem(
                &found,
                "roles.r.stsEndpoint",
                4,
                "must be an http:// or https:// URL with a host",
            );
        }
    }

    #[test]
    fn via_must_name_another_defined_role() {
        let yaml = "roles:\n  a:\n    roleArn: arn:aws:iam::123456789012:role/A\n    via: nope\n  b:\n    roleArn: arn:aws:iam::123456789012:role/B\n    via: b\nsecrets: [{name: s, secretId: s, targets: [{file: {dir: /run/s}}]}]\n";
        let found = problems(yaml);
        assert_eq!(found.len(), 2, "{found:#?}");
        expect_problem(
            &found,
            "roles.a.via",
            4,
            "unknown role \"nope\"; defined roles: a, b",
        );
        expect_problem(
            &found,
            "roles.b.via",
            7,
            "role \"b\" cannot be assumed via itself",
        );
    }

    /// Roles named by `links` (`(role, via)`, `via` empty for none), in that order in the file.
    fn chained_roles(links: &[(&str, &str)]) -> String {
        let mut yaml = String::from("roles:\n");
        for (role, via) in links {
            yaml.push_str(&format!(
                "  {role}:\n    roleArn: arn:aws:iam::123456789012:role/{role}\n"
            ));
            if !via.is_empty() {
                yaml.push_str(&format!("    via: {via}\n"));
            }
        }
        yaml.push_str("secrets: [{name: s, secretId: s, targets: [{file: {dir: /run/s}}]}]\n");
        yaml
    }

    #[test]
    fn via_loops_are_reported_once_each() {
        let found = problems(&chained_roles(&[("a", "b"), ("b", "a")]));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].to_string(),
            "roles.a.via (line 4): role chain loops: a -> b -> a"
        );

        // Named from the role that comes first in the file, whatever the names.
        let found = problems(&chained_roles(&[
            ("z", ""),
            ("c", "a"),
            ("b", "c"),
            ("a", "b"),
            ("d", "a"),
        ]));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].to_string(),
            "roles.c.via (line 6): role chain loops: c -> a -> b -> c"
        );

        // Two separate loops, and a role hanging off one of them.
        let found = problems(&chained_roles(&[
            ("x", "y"),
            ("p", "q"),
            ("q", "p"),
            ("y", "x"),
            ("tail", "q"),
        ]));
        let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
        assert_eq!(
            shown,
            [
                "roles.x.via (line 4): role chain loops: x -> y -> x",
                "roles.p.via (line 7): role chain loops: p -> q -> p",
            ]
        );
    }

    #[test]
    fn chains_in_order() {
        let yaml = chained_roles(&[
            ("app", "mid"),
            ("mid", "hub"),
            ("hub", ""),
            ("alone", ""),
            ("b", "hub"),
        ]);
        let config = parse(&yaml).expect("valid chain");
        let names = |roles: Vec<&RoleConfig>| -> Vec<String> {
            roles.iter().map(|r| r.name.clone()).collect()
        };
        assert_eq!(names(config.chain("app")), ["hub", "mid", "app"]);
        assert_eq!(names(config.chain("mid")), ["hub", "mid"]);
        assert_eq!(names(config.chain("hub")), ["hub"]);
        assert!(config.chain("missing").is_empty());
        assert_eq!(
            names(config.roles_in_chain_order()),
            ["alone", "hub", "mid", "app", "b"]
        );
        assert_eq!(config.roles["app"].via.as_deref(), Some("mid"));
        assert_eq!(config.roles["hub"].via, None);

        // A loop built by hand does not hang.
        let mut looped = config.clone();
        if let Some(hub) = looped.roles.get_mut("hub") {
            hub.via = Some("app".into());
        }
        assert_eq!(names(looped.chain("app")), ["hub", "mid", "app"]);
        assert_eq!(looped.roles_in_chain_order().len(), 5);
    }

    #[test]
    fn long_sessions_on_chained_roles_are_a_warning() {
        let yaml = chained_roles(&[("hub", ""), ("app", "hub")])
            .replace("role/app\n", "role/app\n    duration: 2h\n")
            .replace("role/hub\n", "role/hub\n    duration: 12h\n");
        let config = parse(&yaml).expect("a warning is not an error");
        assert_eq!(config.roles["app"].duration, Duration::from_secs(7200));
        assert_eq!(
            config.warnings,
            [Problem {
                path: "roles.app.duration".into(),
                line: Some(7),
                message: "is 2h, but this role is assumed via role \"hub\" and AWS caps role-chaining sessions at 1h; STS refuses longer ones".into(),
            }]
        );
        let yaml = chained_roles(&[("hub", ""), ("app", "hub")])
            .replace("role/app\n", "role/app\n    duration: 1h\n");
        assert_eq!(parse(&yaml).map(|c| c.warnings).ok(), Some(Vec::new()));
    }

    #[test]
    fn base_credentials() {
        let config = parse(&config_with(
            "baseCredentials: {accessKeyIdFile: /k/id, secretAccessKeyFile: /k/secret}\n",
        ))
        .expect("valid");
        assert_eq!(
            config.base_credentials,
            Some(BaseCredentials {
                access_key_id_file: "/k/id".into(),
                secret_access_key_file: "/k/secret".into(),
            })
        );
        let found = problems(&config_with(
            "baseCredentials:\n  accessKeyIdFile: /k/id\n  sessionToken: /k/t\n",
        ));
        assert_eq!(found.len(), 2, "{found:#?}");
        expect_problem(
            &found,
            "baseCredentials.secretAccessKeyFile",
            7,
            "is required",
        );
        expect_problem(
            &found,
            "baseCredentials.sessionToken",
            8,
            "unknown field `sessionToken`; allowed fields: accessKeyIdFile, secretAccessKeyFile",
        );
        let found = problems(&config_with(
            "baseCredentials: {accessKeyIdFile: \"\", secretAccessKeyFile: /k/s}\n",
        ));
        expect_problem(
            &found,
            "baseCredentials.accessKeyIdFile",
            6,
            "must not be empty",
        );
    }

    #[test]
    fn credential_outputs() {
        let yaml = format!(
            "{}credentialOutputs:\n  - {{role: r, file: {{path: /out/a, profile: ferry.r_1-x, mode: \"0640\"}}}}\n",
            role_with(""),
        );
        let config = parse(&yaml).expect("valid");
        assert_eq!(
            config.credential_outputs,
            [CredentialOutput {
                role: "r".into(),
                path: "/out/a".into(),
                profile: "ferry.r_1-x".into(),
                mode: 0o640,
            }]
        );

        let yaml = config_with(concat!(
            "credentialOutputs:\n",
            "  - {role: nope, file: {path: /out/a}}\n",
            "  - {role: r, file: {path: /out/b}}\n",
            "  - {role: r, file: {path: /out/b/}}\n",
            "  - {role: r, file: {path: /run/a/credentials}}\n",
            "  - {role: r, file: {path: /run/a}}\n",
            "  - {role: r, file: {profile: \"a b\", mode: 644, owner: me}}\n",
            "  - {role: r, path: /out/c}\n",
        ));
        let found = problems(&yaml);
        let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
        assert_eq!(
            shown,
            [
                "credentialOutputs[0].role (line 7): unknown role \"nope\"; defined roles: r",
                "credentialOutputs[2].file.path (line 9): \"/out/b/\" is already written by credentialOutputs[1].file.path; each output needs its own file",
                "credentialOutputs[3].file.path (line 10): \"/run/a/credentials\" is inside \"/run/a\", the directory of secrets[0].targets[0].file.dir; a target's directory belongs to its secret, so write the credentials elsewhere",
                "credentialOutputs[4].file.path (line 11): \"/run/a\" is inside \"/run/a\", the directory of secrets[0].targets[0].file.dir; a target's directory belongs to its secret, so write the credentials elsewhere",
                "credentialOutputs[5].file.path (line 12): is required",
                "credentialOutputs[5].file.profile (line 12): must be 1 to 64 letters, digits, '_', '.' or '-', got \"a b\"",
                "credentialOutputs[5].file.mode (line 12): must be a quoted octal string such as \"0400\", got 644; unquoted, YAML reads it as a number, so write \"644\"",
                "credentialOutputs[5].file.owner (line 12): unknown field `owner`; allowed fields: path, profile, mode",
                "credentialOutputs[6].file (line 13): is required",
                "credentialOutputs[6].path (line 13): unknown field `path`; allowed fields: role, file",
            ]
        );

        let yaml = format!(
            "credentialOutputs: [{{role: r, file: {{path: /x}}}}]\n{}",
            secret_with("")
        );
        let found = problems(&yaml);
        expect_problem(
            &found,
            "credentialOutputs[0].role",
            1,
            "no roles are defined under `roles`",
        );
    }

    #[test]
    fn credentials_endpoint() {
        let endpoint = |fields: &str| {
            config_with(&format!(
                "credentialsEndpoint:\n  tokenFile: /t\n  roles: [r]\n{fields}"
            ))
        };
        let listen = |fields: &str| {
            parse(&endpoint(fields)).map(|c| {
                c.credentials_endpoint
                    .map(|e| (e.listen, e.allow_non_loopback))
            })
        };
        assert_eq!(
            listen("  listen: \"[::1]:80\"\n").ok(),
            Some(Some(("[::1]:80".parse().expect("addr"), false)))
        );
        assert!(listen("  listen: \"[::ffff:127.0.0.1]:80\"\n").is_ok());
        assert!(listen("  listen: 127.1.2.3:80\n").is_ok());
        assert_eq!(
            listen("  listen: 0.0.0.0:9911\n  allowNonLoopback: true\n").ok(),
            Some(Some(("0.0.0.0:9911".parse().expect("addr"), true)))
        );

        let found = problems(&endpoint("  listen: 0.0.0.0:9911\n"));
        assert_eq!(found.len(), 1, "{found:#?}");
        expect_problem(&found, "credentialsEndpoint.listen", 9, "0.0.0.0:9911 is not a loopback address, so other hosts could fetch credentials from it; set allowNonLoopback: true if that is intended");
        let found = problems(&endpoint(
            "  listen: 10.0.0.1:9911\n  allowNonLoopback: false\n",
        ));
        expect_problem(
            &found,
            "credentialsEndpoint.listen",
            9,
            "not a loopback address",
        );

        for (value, needle) in [
            ("localhost:9911", "must be an IP address and port such as \"127.0.0.1:9911\" (host names are not accepted), got \"localhost:9911\""),
            ("127.0.0.1", "got \"127.0.0.1\""),
            ("9911", "must be a string, got 9911"),
        ] {
            let found = problems(&endpoint(&format!("  listen: {value}\n")));
            assert_eq!(found.len(), 1, "{value}: {found:#?}");
            expect_problem(&found, "credentialsEndpoint.listen", 9, needle);
        }
        let found = problems(&endpoint(
            "  listen: 127.0.0.1:1\n  allowNonLoopback: yes\n",
        ));
        expect_problem(
            &found,
            "credentialsEndpoint.allowNonLoopback",
            10,
            "must be true or false, got \"yes\"",
        );
    }

    #[test]
    fn credentials_endpoint_roles_and_required_fields() {
        let endpoint = |roles: &str| {
            config_with(&format!("credentialsEndpoint:\n  listen: 127.0.0.1:9911\n  tokenFile: /t\n  roles: {roles}\n"))
        };
        let found = problems(&endpoint("[r, other, r]"));
        assert_eq!(found.len(), 2, "{found:#?}");
        let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
        assert_eq!(
            shown,
            [
                "credentialsEndpoint.roles[1] (line 9): unknown role \"other\"; defined roles: r",
                "credentialsEndpoint.roles[2] (line 9): \"r\" is already listed at credentialsEndpoint.roles[0]",
            ]
        );
        let found = problems(&endpoint("[]"));
        expect_problem(
            &found,
            "credentialsEndpoint.roles",
            9,
            "must list at least one role",
        );

        let found = problems(&config_with("credentialsEndpoint: {port: 1}\n"));
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "credentialsEndpoint.listen",
                "credentialsEndpoint.tokenFile",
                "credentialsEndpoint.roles",
                "credentialsEndpoint.port",
            ]
        );
        expect_problem(
            &found,
            "credentialsEndpoint.port",
            6,
            "allowed fields: listen, allowNonLoopback, tokenFile, roles",
        );
    }

    #[test]
    fn new_fields_report_all_problems_in_document_order() {
        let yaml = r#"credentialsEndpoint: {listen: 8.8.8.8:1, tokenFile: /t, roles: [ghost]}
roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    sessionTags: {a: 1}
    policyArns: [x]
    via: ghost
baseCredentials: {accessKeyIdFile: /a}
secrets: [{name: s, secretId: s, targets: [{file: {dir: /run/s}}]}]
credentialOutputs: [{role: r, file: {path: /run/s/creds}}]
"#;
        let found = problems(yaml);
        let places: Vec<(&str, Option<usize>)> =
            found.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            places,
            [
                ("credentialsEndpoint.listen", Some(1)),
                ("credentialsEndpoint.roles[0]", Some(1)),
                ("roles.r.sessionTags.a", Some(5)),
                ("roles.r.policyArns[0]", Some(6)),
                ("roles.r.via", Some(7)),
                ("baseCredentials.secretAccessKeyFile", Some(8)),
                ("credentialOutputs[0].file.path", Some(10)),
            ]
        );
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, EXAMPLE).expect("write");
        assert_eq!(load(&path).ok(), parse(EXAMPLE).ok());

        let missing = dir.path().join("missing.yaml");
        let errors = load(&missing).expect_err("missing file");
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].path, missing.display().to_string());
        assert_eq!(errors.0[0].line, None);
        assert!(
            errors.to_string().starts_with(&format!(
                "{}: cannot read the config file: ",
                missing.display()
            )),
            "{errors}"
        );
    }
}
