//! Secrets Manager's change events as an EventBridge rule delivers them to SQS: what a
//! message says changed (pure). Two shapes:
//! - the native `Secret Label Updated` event: `detail.name`, `detail.labelUpdated`,
//!   `detail.versionId`, the ARN in `resources`: a stage moved to a version;
//! - `AWS API Call via CloudTrail` for a write: the secret in `requestParameters.secretId`
//!   (a name or an ARN, maybe partial) and in `responseElements.arn` (`aRN` before 2024).
//!
//! And Parameter Store's `Parameter Store Change` (source `aws.ssm`): `detail.name` was
//! created, updated, deleted or labelled.
//!
//! A message is never logged: it is classified, and only the class is counted.

pub mod route;

use serde_json::Value;
use std::time::SystemTime;

pub const NATIVE_DETAIL_TYPE: &str = "Secret Label Updated";
pub const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
pub const SOURCE: &str = "aws.secretsmanager";
pub const EVENT_SOURCE: &str = "secretsmanager.amazonaws.com";
pub const PARAMETER_SOURCE: &str = "aws.ssm";
pub const PARAMETER_DETAIL_TYPE: &str = "Parameter Store Change";

/// The CloudTrail writes that change what a secret's reader sees.
pub const WRITES: [&str; 8] = [
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "DeleteSecret",
    "RestoreSecret",
    "ReplicateSecretToRegions",
    "CreateSecret",
];

/// The writes after which a secret may newly match a `find` entry, or no longer.
const MEMBERSHIP: [&str; 3] = ["CreateSecret", "DeleteSecret", "RestoreSecret"];

/// The writes the native event does not report (it reports a stage moving), which the
/// generated rule therefore takes from CloudTrail.
pub const WRITES_NOT_NATIVE: [&str; 3] =
    ["DeleteSecret", "RestoreSecret", "ReplicateSecretToRegions"];

/// What a message said changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// The names the secret may have: given as a name, or read from an ARN (without its
    /// random suffix; a possibly partial ARN gives both readings).
    pub names: Vec<String>,
    /// The region the event happened in (the envelope's, else an ARN's).
    pub region: Option<String>,
    /// The stages that moved; `None`: unknown, any reader may be affected.
    pub stages: Option<Vec<String>>,
    /// The version the stages now point to, when the event says.
    pub version_id: Option<String>,
    /// When the change happened, by AWS's clock (to the second).
    pub time: Option<SystemTime>,
    /// The secret may have appeared or gone (created, deleted, restored): a `find` entry
    /// lists again rather than read a member.
    pub membership: bool,
    /// A Parameter Store parameter changed (`names` holds its one name), not a secret.
    pub parameter: bool,
}

/// A message that is well-formed but asks nothing of us: deleted, counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Another service's event, or a Secrets Manager call that changes no value.
    NotAChange,
    /// An event of ours with no secret named in it.
    NoSecretId,
    /// A secret id that no secret can have (control characters, path segments, too long).
    InvalidSecretId,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAChange => "not_a_change",
            Self::NoSecretId => "no_secret_id",
            Self::InvalidSecretId => "invalid_secret_id",
        }
    }
}

/// A message that is not an EventBridge event: left in the queue for its redrive policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the message is not JSON")]
    NotJson,
    #[error("the message is not an EventBridge event (no `source`, `detail-type` or `detail`)")]
    NotAnEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Change(ChangeEvent),
    Ignored(Ignored),
}

/// What `body` (an SQS message body) says changed.
pub fn parse(body: &str) -> Result<Parsed, Malformed> {
    // serde_json refuses nesting deeper than 128 levels, so a hostile body cannot recurse.
    let event: Value = serde_json::from_str(body).map_err(|_| Malformed::NotJson)?;
    let (Some(source), Some(detail_type), Some(detail)) = (
        event.get("source").and_then(Value::as_str),
        event.get("detail-type").and_then(Value::as_str),
        event.get("detail").filter(|d| d.is_object()),
    ) else {
        return Err(Malformed::NotAnEvent);
    };
    if source == PARAMETER_SOURCE {
        return Ok(parameter_change(&event, detail_type, detail));
    }
    if source != SOURCE {
        return Ok(Parsed::Ignored(Ignored::NotAChange));
    }
    let mut ids = Ids::default();
    let membership = detail_type == CLOUDTRAIL_DETAIL_TYPE
        && detail
            .get("eventName")
            .and_then(Value::as_str)
            .is_some_and(|name| MEMBERSHIP.contains(&name));
    let (stages, version_id) = match detail_type {
        NATIVE_DETAIL_TYPE => {
            ids.name(detail.get("name"));
            if let Some(resources) = event.get("resources").and_then(Value::as_array) {
                for arn in resources {
                    ids.arn(arn, true);
                }
            }
            (
                strings(detail.get("labelUpdated")),
                string(detail.get("versionId")),
            )
        }
        CLOUDTRAIL_DETAIL_TYPE => match cloudtrail(detail, &mut ids) {
            Some(found) => found,
            None => return Ok(Parsed::Ignored(Ignored::NotAChange)),
        },
        _ => return Ok(Parsed::Ignored(Ignored::NotAChange)),
    };
    if ids.invalid {
        return Ok(Parsed::Ignored(Ignored::InvalidSecretId));
    }
    if ids.names.is_empty() {
        return Ok(Parsed::Ignored(Ignored::NoSecretId));
    }
    let region = envelope_region(&event).or(ids.region);
    Ok(Parsed::Change(ChangeEvent {
        names: ids.names,
        region,
        stages,
        version_id,
        time: envelope_time(&event),
        membership,
        parameter: false,
    }))
}

fn envelope_region(event: &Value) -> Option<String> {
    string(event.get("region")).filter(|r| is_region(r))
}

fn envelope_time(event: &Value) -> Option<SystemTime> {
    event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok())
}

/// A `Parameter Store Change`: whatever its operation (create, update, delete, label), the
/// entries reading that name (or a path above it) read again.
fn parameter_change(event: &Value, detail_type: &str, detail: &Value) -> Parsed {
    if detail_type != PARAMETER_DETAIL_TYPE {
        return Parsed::Ignored(Ignored::NotAChange);
    }
    let Some(name) = detail.get("name").and_then(Value::as_str) else {
        return Parsed::Ignored(Ignored::NoSecretId);
    };
    if !is_parameter_name(name) {
        return Parsed::Ignored(Ignored::InvalidSecretId);
    }
    Parsed::Change(ChangeEvent {
        names: vec![name.to_owned()],
        region: envelope_region(event),
        stages: None,
        version_id: None,
        time: envelope_time(event),
        membership: false,
        parameter: true,
    })
}

/// Parameter Store's names: at most 1011 of letters, digits and `_.-/`, fully qualified
/// (`/a/b`) or a plain name; no empty, `.` or `..` level.
fn is_parameter_name(name: &str) -> bool {
    is_name(name, 1011, b"_.-/")
}

/// The stages and version a CloudTrail write moved (each `None` when it does not say);
/// `None` for a call that changed nothing: a read, or a call that failed.
#[allow(clippy::type_complexity)]
fn cloudtrail(detail: &Value, ids: &mut Ids) -> Option<(Option<Vec<String>>, Option<String>)> {
    if detail.get("eventSource").and_then(Value::as_str) != Some(EVENT_SOURCE)
        || detail.get("errorCode").is_some_and(|e| !e.is_null())
    {
        return None;
    }
    let name = detail.get("eventName").and_then(Value::as_str)?;
    if !WRITES.contains(&name) {
        return None;
    }
    let request = detail.get("requestParameters");
    let response = detail.get("responseElements");
    let secret_id = field(request, "secretId");
    match secret_id.and_then(Value::as_str) {
        Some(id) if id.starts_with("arn:") => ids.arn(secret_id.unwrap_or(&Value::Null), false),
        _ => ids.name(secret_id),
    }
    ids.name(field(request, "name"));
    ids.name(field(response, "name"));
    for key in ["arn", "aRN", "ARN"] {
        if let Some(arn) = field(response, key) {
            ids.arn(arn, true);
        }
    }
    Some(match name {
        "PutSecretValue" => {
            let stages = strings(field(request, "versionStages"))
                .or_else(|| strings(field(response, "versionStages")))
                .unwrap_or_else(|| vec![crate::config::DEFAULT_VERSION_STAGE.to_owned()]);
            (Some(stages), string(field(response, "versionId")))
        }
        "UpdateSecretVersionStage" => (
            strings(field(request, "versionStage")),
            string(field(request, "moveToVersionId")),
        ),
        // A new value (there is a version id) becomes AWSCURRENT.
        "UpdateSecret" | "CreateSecret" => match string(field(response, "versionId")) {
            Some(version) => (
                Some(vec![crate::config::DEFAULT_VERSION_STAGE.to_owned()]),
                Some(version),
            ),
            None => (None, None),
        },
        _ => (None, None),
    })
}

fn field<'v>(v: Option<&'v Value>, key: &str) -> Option<&'v Value> {
    v.and_then(|v| v.get(key))
}

/// The secret names an event gives, checked.
#[derive(Default)]
struct Ids {
    names: Vec<String>,
    region: Option<String>,
    invalid: bool,
}

impl Ids {
    fn name(&mut self, v: Option<&Value>) {
        let Some(name) = v.and_then(Value::as_str) else {
            return;
        };
        self.add(name);
    }

    /// `complete`: AWS's own answer, so the last seven characters are the random suffix; a
    /// secret id as a caller gave it may be partial, and both readings are kept.
    fn arn(&mut self, v: &Value, complete: bool) {
        let Some(arn) = v.as_str() else {
            return;
        };
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        let ["arn", _, "secretsmanager", region, _, "secret", rest] = parts.as_slice() else {
            self.invalid = true;
            return;
        };
        if is_region(region) && self.region.is_none() {
            self.region = Some((*region).to_owned());
        }
        let trimmed = rest
            .len()
            .checked_sub(7)
            .and_then(|cut| rest.get(..cut).zip(rest.get(cut..)))
            .filter(|(_, suffix)| is_suffix(suffix))
            .map(|(name, _)| name);
        match (trimmed, complete) {
            (Some(name), true) => self.add(name),
            (Some(name), false) => {
                self.add(name);
                self.add(rest);
            }
            (None, _) => self.add(rest),
        }
    }

    fn add(&mut self, name: &str) {
        if !is_secret_name(name) {
            self.invalid = true;
        } else if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
    }
}

/// `-` and six letters or digits: what Secrets Manager appends to a name in its ARNs.
fn is_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7 && b[0] == b'-' && b[1..].iter().all(u8::is_ascii_alphanumeric)
}

/// Secrets Manager's names: 1 to 512 of letters, digits and `/_+=.@-`. Empty, `.` and `..`
/// path segments are refused too (a `find` entry places a name in a path), but for one
/// leading `/`, which Secrets Manager allows (`/prod/db`).
fn is_secret_name(name: &str) -> bool {
    is_name(name, 512, b"/_+=.@-")
}

/// 1 to `max` bytes of letters, digits and `others`, with no empty, `.` or `..` segment
/// after one optional leading `/`: the shape both services' names share.
fn is_name(name: &str, max: usize, others: &[u8]) -> bool {
    let segments = name.strip_prefix('/').unwrap_or(name);
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || others.contains(&b))
        && !segments
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// A string or a list of strings.
fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
