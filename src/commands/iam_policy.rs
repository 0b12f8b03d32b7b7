//! `secret-ferry iam-policy`: the IAM documents a config needs, generated from it, so that
//! nobody writes a trust policy, a permissions policy with the `-??????` suffix or a KMS key policy
//! statement by hand. Pure: reads no file and calls no AWS API. The ExternalId is never read
//! or printed; its place in the trust policy holds a placeholder naming where it comes from.

use crate::config::{Config, ExternalIdSource, RoleConfig, SecretConfig};
use crate::source::plan::{plan, Strategy};
use crate::source::secret_id;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Used when `--caller-arn` is not given: the identity the daemon runs as (`check` prints it).
pub const CALLER_PLACEHOLDER: &str =
    "<CALLER_ARN: the pod's IAM role, as `secret-ferry check` prints it>";
/// The key of the base identity's documents, beside the roles'.
pub const BASE_IDENTITY: &str = "(base identity)";

/// The documents of every role (and of the base identity, when secrets use it), by name.
pub fn documents(
    config: &Config,
    caller_arn: Option<&str>,
    org_id: Option<&str>,
) -> BTreeMap<String, Value> {
    let default_region = config
        .region
        .clone()
        .unwrap_or_else(|| "<region>".to_owned());
    let modes = ReadModes::of(config, &default_region);
    let mut out = BTreeMap::new();
    for role in config.roles_in_chain_order() {
        let caller = match &role.via {
            Some(parent) => config
                .roles
                .get(parent)
                .map_or_else(|| CALLER_PLACEHOLDER.to_owned(), |p| p.role_arn.clone()),
            None => caller_arn.unwrap_or(CALLER_PLACEHOLDER).to_owned(),
        };
        let region = role
            .region
            .clone()
            .unwrap_or_else(|| default_region.clone());
        let base_caller = caller_arn.unwrap_or(CALLER_PLACEHOLDER);
        let doc = role_documents(
            config,
            role,
            (&caller, base_caller),
            org_id,
            &region,
            &modes,
        );
        out.insert(role.name.clone(), doc);
    }
    let caller = caller_arn.unwrap_or(CALLER_PLACEHOLDER);
    if let Some(doc) = base_documents(config, caller, &default_region, &modes) {
        out.insert(BASE_IDENTITY.to_owned(), doc);
    }
    out
}

/// Which secrets each reader may batch or list, as the planner will poll them.
struct ReadModes {
    batched: BTreeSet<usize>,
    listed: BTreeSet<usize>,
    /// Parameter Store entries whose versions are compared first (DescribeParameters).
    parameters_listed: BTreeSet<usize>,
}

impl ReadModes {
    fn of(config: &Config, default_region: &str) -> Self {
        let region_of = |s: &SecretConfig| {
            s.role
                .as_ref()
                .and_then(|r| config.roles.get(r))
                .and_then(|r| r.region.clone())
                .unwrap_or_else(|| default_region.to_owned())
        };
        let mut modes = Self {
            batched: BTreeSet::new(),
            listed: BTreeSet::new(),
            parameters_listed: BTreeSet::new(),
        };
        for group in plan(&config.secrets, region_of) {
            for &i in &group.members {
                match group.strategy {
                    Strategy::Batch => modes.batched.insert(i),
                    Strategy::List | Strategy::Find => modes.listed.insert(i),
                    // Batches first, a listing once the versions are known.
                    Strategy::Auto => modes.batched.insert(i) | modes.listed.insert(i),
                    Strategy::ParametersListed => modes.parameters_listed.insert(i),
                    Strategy::Get | Strategy::Parameters => false,
                };
            }
        }
        modes
    }
}

/// One role's documents: trust, permissions, KMS statement and the caller's policy.
/// `caller`: who assumes the role; `base`: the base identity (whose account holds the secrets
/// read without a role).
fn role_documents(
    config: &Config,
    role: &RoleConfig,
    (caller, base): (&str, &str),
    org_id: Option<&str>,
    region: &str,
    modes: &ReadModes,
) -> Value {
    let reads: Vec<(usize, &SecretConfig)> = config
        .secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.role.as_deref() == Some(role.name.as_str()))
        .collect();
    let children: Vec<&str> = config
        .roles
        .values()
        .filter(|r| r.via.as_deref() == Some(role.name.as_str()))
        .map(|r| r.role_arn.as_str())
        .collect();
    let (permissions, mut read_via) =
        permissions_policy(&role.role_arn, region, &reads, modes, &children);
    if read_via.is_empty() {
        read_via.insert(format!("secretsmanager.{region}.amazonaws.com"));
    }
    let mut doc = Map::new();
    doc.insert("trustPolicy".into(), trust_policy(role, caller, org_id));
    doc.insert("permissionsPolicy".into(), permissions);
    doc.insert(
        "kmsKeyPolicyStatement".into(),
        kms_statement(&role.role_arn, &read_via),
    );
    doc.insert("callerPolicy".into(), caller_policy(role));
    push::add(&mut doc, config, Some(&role.name), &role.role_arn, region);
    change_events::add(
        &mut doc,
        config,
        Some(&role.name),
        (&role.role_arn, base),
        region,
    );
    Value::Object(doc)
}

/// The base identity's documents, when secrets are read with it.
fn base_documents(
    config: &Config,
    caller: &str,
    default_region: &str,
    modes: &ReadModes,
) -> Option<Value> {
    let base_reads: Vec<(usize, &SecretConfig)> = config
        .secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.role.is_none())
        .collect();
    if base_reads.is_empty()
        && config.pushes.iter().all(|p| p.role.is_some())
        && config.change_events.iter().all(|q| q.role.is_some())
    {
        return None;
    }
    let roots: Vec<&str> = config
        .roles
        .values()
        .filter(|r| r.via.is_none())
        .map(|r| r.role_arn.as_str())
        .collect();
    let (permissions, read_via) =
        permissions_policy(caller, default_region, &base_reads, modes, &roots);
    let mut doc = Map::new();
    doc.insert("permissionsPolicy".into(), permissions);
    if !base_reads.is_empty() {
        doc.insert(
            "kmsKeyPolicyStatement".into(),
            kms_statement(caller, &read_via),
        );
    }
    push::add(&mut doc, config, None, caller, default_region);
    change_events::add(&mut doc, config, None, (caller, caller), default_region);
    Some(Value::Object(doc))
}

fn trust_policy(role: &RoleConfig, caller: &str, org_id: Option<&str>) -> Value {
    let mut actions = vec!["sts:AssumeRole"];
    if !role.session_tags.is_empty() {
        actions.push("sts:TagSession");
    }
    if role.source_identity.is_some() {
        actions.push("sts:SetSourceIdentity");
    }
    let mut equals = Map::new();
    if let Some(source) = &role.external_id {
        let placeholder = match source {
            ExternalIdSource::File(path) => {
                format!("<EXTERNAL_ID: the content of {}>", path.display())
            }
            ExternalIdSource::Env(var) => format!("<EXTERNAL_ID: the value of ${var}>"),
        };
        equals.insert("sts:ExternalId".into(), Value::String(placeholder));
    }
    if let Some(org) = org_id {
        equals.insert("aws:PrincipalOrgID".into(), Value::String(org.to_owned()));
    }
    let mut statement = json!({
        "Sid": "AllowSecretFerry",
        "Effect": "Allow",
        "Principal": {"AWS": caller},
        "Action": one_or_many(&actions),
    });
    if !equals.is_empty() {
        statement["Condition"] = json!({"StringEquals": equals});
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// Least privilege for exactly these secrets: GetSecretValue on each, in its region and in its
/// failover region (a replica has the primary's ARN with the other region), and the
/// no-resource actions on `*` only when the fetch strategy uses them; for Parameter Store
/// entries, see `parameters`. Also returns the services and regions the secrets are read
/// through, the KMS statement's `kms:ViaService` values.
fn permissions_policy(
    reader_arn: &str,
    region: &str,
    reads: &[(usize, &SecretConfig)],
    modes: &ReadModes,
    assumes: &[&str],
) -> (Value, BTreeSet<String>) {
    let (batched, listed) = (&modes.batched, &modes.listed);
    let (partition, account) = arn_parts(reader_arn);
    let mut resources = BTreeSet::new();
    let mut regions = BTreeSet::new();
    let mut via = BTreeSet::new();
    let parameter_statements = parameters::statements(
        reads,
        &modes.parameters_listed,
        (&partition, &account),
        region,
        &mut via,
    );
    let reads: Vec<&(usize, &SecretConfig)> = reads
        .iter()
        .filter(|(_, s)| s.parameter.is_none())
        .collect();
    for (_, secret) in &reads {
        // An ARN is read where it says; a name in the region of its reader.
        let home = secret_id::arn_region(&secret.secret_id).unwrap_or(region);
        let mut read_in = vec![home];
        read_in.extend(secret.failover_region.as_deref());
        for region in read_in {
            regions.insert(region.to_owned());
            resources.extend(secret_resources(secret, &partition, &account, region));
        }
    }
    let mut statements = Vec::new();
    if !resources.is_empty() {
        let resources: Vec<&str> = resources.iter().map(String::as_str).collect();
        statements.push(json!({
            "Sid": "ReadConfiguredSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": one_or_many(&resources),
        }));
    }
    statements.extend(parameter_statements);
    let mut anywhere = Vec::new();
    if reads.iter().any(|(i, _)| batched.contains(i)) {
        anywhere.push("secretsmanager:BatchGetSecretValue");
    }
    if reads.iter().any(|(i, _)| listed.contains(i)) {
        anywhere.push("secretsmanager:ListSecrets");
    }
    if !anywhere.is_empty() {
        statements.push(json!({
            "Sid": "FetchStrategy",
            "Effect": "Allow",
            "Action": one_or_many(&anywhere),
            "Resource": "*",
        }));
    }
    if !assumes.is_empty() {
        statements.push(json!({
            "Sid": "AssumeNextRoleInChain",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": one_or_many(assumes),
        }));
    }
    via.extend(
        regions
            .iter()
            .map(|r| format!("secretsmanager.{r}.amazonaws.com")),
    );
    (
        json!({"Version": "2012-10-17", "Statement": statements}),
        via,
    )
}

/// The resource ARNs that grant GetSecretValue on `secret` in `region`.
///
/// Secrets Manager appends `-` and six random characters to every secret ARN, so a name
/// `app/db` is granted as `app/db-??????`: `?` matches exactly one character, where `-*` would
/// also grant `app/db-admin-AbCdEf`. An ARN that may be complete may also be partial (see
/// `source::secret_id`): nothing in the string tells, so both readings are granted.
fn secret_resources(
    secret: &SecretConfig,
    partition: &str,
    account: &str,
    region: &str,
) -> Vec<String> {
    const SUFFIX: &str = "-??????";
    if let Some(find) = &secret.find {
        let prefix = find.name_prefix.as_deref().unwrap_or("");
        return vec![format!(
            "arn:{partition}:secretsmanager:{region}:{account}:secret:{prefix}*"
        )];
    }
    let id = &secret.secret_id;
    if !id.starts_with("arn:") {
        return vec![format!(
            "arn:{partition}:secretsmanager:{region}:{account}:secret:{id}{SUFFIX}"
        )];
    }
    let arn = secret_id::in_region(id, region);
    if secret_id::may_be_complete_arn(&arn) {
        vec![arn.clone(), format!("{arn}{SUFFIX}")]
    } else {
        vec![format!("{arn}{SUFFIX}")]
    }
}

/// For customer-managed KMS keys only (the AWS-managed key needs nothing). Secrets Manager
/// and Parameter Store decrypt in the region they are called in, so every service and region
/// a secret or SecureString is read through (its own, its failover region) must be a
/// `kms:ViaService` value.
fn kms_statement(reader_arn: &str, via: &BTreeSet<String>) -> Value {
    let services: Vec<&str> = via.iter().map(String::as_str).collect();
    json!({
        "Sid": "AllowSecretFerryDecrypt",
        "Effect": "Allow",
        "Principal": {"AWS": reader_arn},
        "Action": ["kms:Decrypt", "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": one_or_many(&services)}}
    })
}

/// What the caller (the pod's identity, or the previous role of a chain) needs to assume it.
fn caller_policy(role: &RoleConfig) -> Value {
    let mut actions = vec!["sts:AssumeRole"];
    if !role.session_tags.is_empty() {
        actions.push("sts:TagSession");
    }
    if role.source_identity.is_some() {
        actions.push("sts:SetSourceIdentity");
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AssumeSecretFerryRole",
            "Effect": "Allow",
            "Action": one_or_many(&actions),
            "Resource": role.role_arn,
        }]
    })
}

fn one_or_many(items: &[&str]) -> Value {
    match items {
        [one] => Value::String((*one).to_owned()),
        many => Value::Array(
            many.iter()
                .map(|s| Value::String((*s).to_owned()))
                .collect(),
        ),
    }
}

/// `(partition, account)` of an ARN; placeholders when it is not one.
fn arn_parts(arn: &str) -> (String, String) {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, _, _, account, ..] if !account.is_empty() => {
            ((*partition).to_owned(), (*account).to_owned())
        }
        _ => ("aws".to_owned(), "<ACCOUNT_ID>".to_owned()),
    }
}

/// Whether an IAM Resource pattern grants `arn`: `*` matches any run of characters, `?`
/// exactly one (IAM's wildcards). For tests that hold the generated documents against the
/// ARNs AWS assigns, since the stand-in evaluates Secrets Manager calls against `*` only.
pub fn resource_matches(pattern: &str, arn: &str) -> bool {
    let (p, a) = (pattern.as_bytes(), arn.as_bytes());
    // rest[i][j]: p[i..] matches a[j..]; filled from the end, so no recursion and no
    // exponential blow-up on many `*`.
    let mut rest = vec![vec![false; a.len() + 1]; p.len() + 1];
    rest[p.len()][a.len()] = true;
    for i in (0..p.len()).rev() {
        for j in (0..=a.len()).rev() {
            let one = j < a.len() && rest[i + 1][j + 1];
            rest[i][j] = match p[i] {
                b'*' => rest[i + 1][j] || (j < a.len() && rest[i][j + 1]),
                b'?' => one,
                c => one && a[j] == c,
            };
        }
    }
    rest[0][0]
}

/// The text output: every document under a heading, ready to paste into the console.
pub fn render_text(documents: &BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    for (name, docs) in documents {
        out.push_str(&format!("# {name}\n\n"));
        let sections = [
            ("trustPolicy", "Trust policy (on the role: IAM → Roles → Trust relationships)"),
            ("permissionsPolicy", "Permissions policy (attach to the role that reads or pushes the secrets)"),
            ("kmsKeyPolicyStatement", "KMS key policy statement (add to the key policy of a customer-managed key encrypting the secrets)"),
            ("kmsKeyPolicyPushStatement", "KMS key policy statement for pushes (add to the key policy of the kmsKeyId a push encrypts with)"),
            ("callerPolicy", "Caller policy (attach to the identity that assumes the role)"),
        ];
        for (key, title) in sections {
            if let Some(doc) = docs.get(key) {
                let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
                out.push_str(&format!("## {title}\n\n{pretty}\n\n"));
            }
        }
        for (queue, queue_docs) in docs
            .get("changeEvents")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let sections = [
                ("eventBridgeRule", format!("EventBridge rule for change events queue {queue} (create it on the default event bus of each account in Accounts, in Region; target: the queue)")),
                ("queuePolicy", format!("Queue policy of {queue} (SQS → the queue → Access policy: lets the rule send)")),
            ];
            for (key, title) in sections {
                if let Some(doc) = queue_docs.get(key) {
                    let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
                    out.push_str(&format!("## {title}\n\n{pretty}\n\n"));
                }
            }
        }
    }
    out
}

mod change_events;
mod parameters;
mod push;
#[cfg(test)]
mod tests;
