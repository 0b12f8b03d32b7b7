//! The configuration file: parsing and validation.
//!
//! The YAML is walked by hand over saphyr's span-carrying tree (no serde) so that every problem
//! can be reported at once, each with its path (`secrets[0].targets[0].file.mode`) and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

const DEFAULT_SESSION_NAME: &str = "secret-ferry";
const DEFAULT_ROLE_DURATION: Duration = Duration::from_secs(60 * 60);
const ROLE_DURATIONS: RangeInclusive<Duration> =
    Duration::from_secs(15 * 60)..=Duration::from_secs(12 * 60 * 60);
const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_VERSION_STAGE: &str = "AWSCURRENT";
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
const REFRESH_INTERVALS: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::MAX;
const DEFAULT_FILE_MODE: u32 = 0o400;
/// Keys allowed in a `targets` item; keep in step with `read_target`.
const TARGET_KINDS: &[&str] = &["file"];

const ROLE_ARN_FORM: &str = "arn:<partition>:iam::<12-digit account id>:role/<name>";
const SECRET_ARN_FORM: &str =
    "arn:<partition>:secretsmanager:<region>:<12-digit account id>:secret:<name>";
const DURATION_FORM: &str = "a duration such as \"90s\", \"5m\" or \"1h\"";
const MODE_FORM: &str = "a quoted octal string such as \"0400\"";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Default AWS region.
    pub region: Option<String>,
    /// Roles to assume, by the name secrets refer to them with.
    pub roles: BTreeMap<String, RoleConfig>,
    pub secrets: Vec<SecretConfig>,
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
}

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
}

/// Write the secret into files in `dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileTarget {
    pub dir: PathBuf,
    /// Permission bits of the written files, at most 0o777.
    pub mode: u32,
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

/// Parses and validates a config document, reporting every problem found.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
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
        problems: Vec::new(),
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
    c.finish(config)
}

type Node<'a> = MarkedYaml<'a>;

/// Collects problems and knows the source text, to quote values as the user wrote them.
struct Checker<'s> {
    source: &'s str,
    problems: Vec<Problem>,
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
    fn source_text(&self, node: &Node) -> Option<&'s str> {
        let start = char_to_byte(self.source, node.span.start.index())?;
        let end = char_to_byte(self.source, node.span.end.index())?;
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

fn char_to_byte(text: &str, char_index: usize) -> Option<usize> {
    text.char_indices()
        .map(|(byte, _)| byte)
        .chain(std::iter::once(text.len()))
        .nth(char_index)
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
                c.report(
                    &entry.value.path,
                    Some(entry.key_line),
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
    let role_names = declared_role_names(roles_field.as_ref());
    let roles = read_roles(c, roles_field);
    let secrets = f
        .require(c, "secrets")
        .and_then(|v| read_secrets(c, &v, role_names.as_ref()));
    f.finish(c);
    Some(Config {
        region: region?,
        roles: roles?,
        secrets: secrets?,
    })
}

/// A string field that must satisfy `valid`; `rule` completes "must be …".
fn checked_string(
    c: &mut Checker,
    at: &Field,
    valid: impl FnOnce(&str) -> bool,
    rule: &str,
) -> Option<String> {
    let value = c.string(at)?;
    if !valid(value) {
        c.problem(at, format!("must be {rule}, got {value:?}"));
        return None;
    }
    Some(value.to_owned())
}

fn read_region(c: &mut Checker, at: &Field) -> Option<String> {
    checked_string(
        c,
        at,
        is_region,
        "an AWS region such as \"us-east-1\" (lowercase letters, digits and '-')",
    )
}

/// The names under `roles`, valid or not, so that a broken role doesn't also turn every
/// reference to it into an error. `None` when `roles` is not a mapping: nothing can be checked.
fn declared_role_names(roles: Option<&Field>) -> Option<BTreeSet<String>> {
    let Some(roles) = roles else {
        return Some(BTreeSet::new());
    };
    let YamlData::Mapping(map) = roles.data() else {
        return None;
    };
    let names = map.keys().filter_map(|key| match untag(key) {
        YamlData::Value(Scalar::String(name)) => Some(name.to_string()),
        _ => None,
    });
    Some(names.collect())
}

fn read_roles(c: &mut Checker, at: Option<Field>) -> Option<BTreeMap<String, RoleConfig>> {
    let Some(at) = at else {
        return Some(BTreeMap::new());
    };
    let entries = c.entries(&at)?;
    // Collected before checking so that every role is read even after an invalid one.
    let roles: Vec<Option<RoleConfig>> = entries.iter().map(|e| read_role(c, e)).collect();
    roles
        .into_iter()
        .map(|role| role.map(|role| (role.name.clone(), role)))
        .collect()
}

fn read_role(c: &mut Checker, entry: &Entry) -> Option<RoleConfig> {
    let at = &entry.value;
    let name_ok = entry.key_is_string && is_name(&entry.key, 64);
    if !name_ok {
        c.report(
            &at.path,
            Some(entry.key_line),
            format!(
                "a role name must be 1 to 64 letters, digits, '_', '.' or '-', got {}",
                entry.shown_key()
            ),
        );
    }
    let mut f = Fields::open(c, at)?;
    let role_arn = f.require(c, "roleArn").and_then(|v| read_role_arn(c, &v));
    let (file, env) = (f.get("externalIdFile"), f.get("externalIdEnv"));
    let external_id = read_external_id(c, file, env);
    let session_name = or_default(f.get("sessionName"), DEFAULT_SESSION_NAME.to_owned(), |v| {
        read_session_name(c, v)
    });
    let duration = or_default(f.get("duration"), DEFAULT_ROLE_DURATION, |v| {
        c.duration_within(v, ROLE_DURATIONS)
    });
    let refresh_before = or_default(f.get("refreshBefore"), DEFAULT_REFRESH_BEFORE, |v| {
        read_refresh_before(c, v, duration)
    });
    f.finish(c);
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
    })
}

fn read_role_arn(c: &mut Checker, at: &Field) -> Option<String> {
    let arn = c.string(at)?;
    if let Err(reason) = check_role_arn(arn) {
        c.problem(
            at,
            format!("{reason}; expected {ROLE_ARN_FORM}, got {arn:?}"),
        );
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
    let file = optional(file, |v| {
        c.string(v)
            .map(|p| ExternalIdSource::File(PathBuf::from(p)))
    });
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

fn read_session_name(c: &mut Checker, at: &Field) -> Option<String> {
    checked_string(
        c,
        at,
        is_session_name,
        "2 to 64 letters, digits or any of \"+=,.@_-\" (an STS session name)",
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
    // Without a valid duration there is nothing to compare against; that is reported already.
    if let Some(duration) = duration.filter(|d| refresh_before >= *d) {
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

/// What reading one secret needs to know about the others.
struct Seen<'r> {
    /// `None` when `roles` is unreadable and references can't be checked.
    roles: Option<&'r BTreeSet<String>>,
    /// Secret name → path of the secret that has it.
    names: BTreeMap<String, String>,
    /// Target directory → path of the `dir` field that has it.
    dirs: BTreeMap<PathBuf, String>,
}

fn read_secrets(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
) -> Option<Vec<SecretConfig>> {
    let items = c.list(at)?;
    if items.is_empty() {
        c.problem(at, "must list at least one secret");
        return None;
    }
    let mut seen = Seen {
        roles,
        names: BTreeMap::new(),
        dirs: BTreeMap::new(),
    };
    // Collected before checking so that every secret is read even after an invalid one.
    let secrets: Vec<Option<SecretConfig>> = items
        .iter()
        .map(|item| read_secret(c, item, &mut seen))
        .collect();
    secrets.into_iter().collect()
}

fn read_secret(c: &mut Checker, at: &Field, seen: &mut Seen) -> Option<SecretConfig> {
    let mut f = Fields::open(c, at)?;
    let name = f
        .require(c, "name")
        .and_then(|v| read_secret_name(c, &v, &at.path, &mut seen.names));
    let secret_id = f.require(c, "secretId").and_then(|v| read_secret_id(c, &v));
    let role = optional(f.get("role"), |v| read_role_ref(c, v, seen.roles));
    let (stage, id) = (f.get("versionStage"), f.get("versionId"));
    let version = read_version(c, stage, id);
    let refresh_interval = or_default(f.get("refreshInterval"), DEFAULT_REFRESH_INTERVAL, |v| {
        c.duration_within(v, REFRESH_INTERVALS)
    });
    let targets = f
        .require(c, "targets")
        .and_then(|v| read_targets(c, &v, &mut seen.dirs));
    f.finish(c);
    Some(SecretConfig {
        name: name?,
        secret_id: secret_id?,
        role: role?,
        version: version?,
        refresh_interval: refresh_interval?,
        targets: targets?,
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
    )?;
    if let Some(first) = names.get(&name) {
        c.problem(
            at,
            format!("duplicate secret name {name:?}: {first} already uses it"),
        );
        return None;
    }
    names.insert(name.clone(), secret_path.to_owned());
    Some(name)
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

fn read_role_ref(c: &mut Checker, at: &Field, roles: Option<&BTreeSet<String>>) -> Option<String> {
    let name = c.string(at)?;
    match roles {
        Some(roles) if roles.is_empty() => {
            c.problem(
                at,
                format!("unknown role {name:?}: no roles are defined under `roles`"),
            );
            None
        }
        Some(roles) if !roles.contains(name) => {
            let defined: Vec<&str> = roles.iter().map(String::as_str).collect();
            c.problem(
                at,
                format!(
                    "unknown role {name:?}; defined roles: {}",
                    defined.join(", ")
                ),
            );
            None
        }
        _ => Some(name.to_owned()),
    }
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

fn read_targets(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
) -> Option<Vec<Target>> {
    let items = c.list(at)?;
    if items.is_empty() {
        c.problem(at, "must list at least one target");
        return None;
    }
    // Collected before checking so that every target is read even after an invalid one.
    let targets: Vec<Option<Target>> = items
        .iter()
        .map(|item| read_target(c, item, dirs))
        .collect();
    targets.into_iter().collect()
}

/// A target is a mapping with a single key naming its kind: `- file: {dir: ...}`.
fn read_target(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
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
        c.report(
            &e.value.path,
            Some(e.key_line),
            format!(
                "a target has exactly one kind, and this one already is `{}`; start a new list item with `- {}:`",
                entry.key, e.key
            ),
        );
    }
    let target = match entry.key.as_str() {
        "file" if entry.key_is_string => read_file_target(c, &entry.value, dirs).map(Target::File),
        _ => {
            c.report(
                &entry.value.path,
                Some(entry.key_line),
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

fn read_file_target(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
) -> Option<FileTarget> {
    let mut f = Fields::open(c, at)?;
    let dir = f
        .require(c, "dir")
        .and_then(|v| read_target_dir(c, &v, dirs));
    let mode = or_default(f.get("mode"), DEFAULT_FILE_MODE, |v| read_file_mode(c, v));
    f.finish(c);
    Some(FileTarget {
        dir: dir?,
        mode: mode?,
    })
}

fn read_target_dir(
    c: &mut Checker,
    at: &Field,
    dirs: &mut BTreeMap<PathBuf, String>,
) -> Option<PathBuf> {
    // PathBuf compares by components, so "/a/b" and "/a/b/" count as the same directory.
    let dir = PathBuf::from(c.string(at)?);
    if let Some(first) = dirs.get(&dir) {
        c.problem(
            at,
            format!(
                "directory {:?} is already used by {first}; each target needs its own directory",
                dir.display().to_string()
            ),
        );
        return None;
    }
    dirs.insert(dir.clone(), at.path.clone());
    Some(dir)
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

/// STS `RoleSessionName`: 2 to 64 of [\w+=,.@-].
fn is_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
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

/// Checks `arn:<partition>:iam::<account>:role/<path/><name>`; the error says what is wrong.
fn check_role_arn(arn: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iam", "", account, resource] = parts[..] else {
        return Err("not an IAM role ARN");
    };
    if !is_partition(partition) {
        return Err("the partition must be aws or aws-<suffix>");
    }
    if !is_account_id(account) {
        return Err("the account id must be 12 digits");
    }
    let Some(name) = resource.strip_prefix("role/") else {
        return Err("not a role ARN");
    };
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@/-".contains(&b));
    // A trailing '/' would leave the role's own name (after any path) empty.
    if !valid_chars || !(1..=512).contains(&name.len()) || name.ends_with('/') {
        return Err("the role name must be 1 to 512 letters, digits or any of \"+=,.@_/-\"");
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
        };
        let expected = Config {
            region: Some("us-east-1".into()),
            roles: BTreeMap::from([("shared".to_owned(), role)]),
            secrets: vec![secret],
        };
        assert_eq!(config, expected);
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
            "unknown field `regoin`; allowed fields: region, roles, secrets",
        );
        expect_problem(
            &found,
            "secrets[0].targets[0].file.owner",
            8,
            "unknown field `owner`; allowed fields: dir, mode",
        );
    }

    #[test]
    fn missing_required_fields_point_at_their_mapping() {
        let found = problems("roles:\n  r:\n    sessionName: x1\nsecrets:\n  - targets:\n      - file: {mode: \"0600\"}\n");
        expect_problem(&found, "roles.r.roleArn", 3, "is required");
        expect_problem(&found, "secrets[0].name", 5, "is required");
        expect_problem(&found, "secrets[0].secretId", 5, "is required");
        expect_problem(&found, "secrets[0].targets[0].file.dir", 6, "is required");
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
        let deep_secrets = format!("secrets: {}{}", "[".repeat(100), "]".repeat(100));
        let deep_maps = format!(
            "secrets:\n  - name: {}1{}\n",
            "{a: ".repeat(100),
            "}".repeat(100)
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
            (&deep_list, "invalid YAML"),
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
