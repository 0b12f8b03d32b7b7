//! `secret-ferry iam-policy`: the IAM documents a config needs, generated from it, so that
//! nobody writes a trust policy, a permissions policy with the `-*` suffix or a KMS key policy
//! statement by hand. Pure: reads no file and calls no AWS API. The ExternalId is never read
//! or printed; its place in the trust policy holds a placeholder naming where it comes from.

use crate::app::plan::{plan, Strategy};
use crate::config::{Config, ExternalIdSource, RoleConfig, SecretConfig};
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
    let region_of = |s: &SecretConfig| {
        s.role
            .as_ref()
            .and_then(|r| config.roles.get(r))
            .and_then(|r| r.region.clone())
            .unwrap_or_else(|| default_region.clone())
    };
    // Which secrets each reader may batch or list, as the planner will poll them.
    let mut batched = BTreeSet::new();
    let mut listed = BTreeSet::new();
    for group in plan(&config.secrets, region_of) {
        for &i in &group.members {
            match group.strategy {
                Strategy::Batch => batched.insert(i),
                Strategy::List | Strategy::Find => listed.insert(i),
                Strategy::Get => false,
            };
        }
    }
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
        let mut doc = Map::new();
        doc.insert("trustPolicy".into(), trust_policy(role, &caller, org_id));
        doc.insert(
            "permissionsPolicy".into(),
            permissions_policy(
                &role.role_arn,
                &region,
                &reads,
                &batched,
                &listed,
                &children,
            ),
        );
        doc.insert(
            "kmsKeyPolicyStatement".into(),
            kms_statement(&role.role_arn, &region),
        );
        doc.insert("callerPolicy".into(), caller_policy(role));
        out.insert(role.name.clone(), Value::Object(doc));
    }
    let base_reads: Vec<(usize, &SecretConfig)> = config
        .secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.role.is_none())
        .collect();
    let roots: Vec<&str> = config
        .roles
        .values()
        .filter(|r| r.via.is_none())
        .map(|r| r.role_arn.as_str())
        .collect();
    if !base_reads.is_empty() {
        let caller = caller_arn.unwrap_or(CALLER_PLACEHOLDER);
        let mut doc = Map::new();
        doc.insert(
            "permissionsPolicy".into(),
            permissions_policy(
                caller,
                &default_region,
                &base_reads,
                &batched,
                &listed,
                &roots,
            ),
        );
        doc.insert(
            "kmsKeyPolicyStatement".into(),
            kms_statement(caller, &default_region),
        );
        out.insert(BASE_IDENTITY.to_owned(), Value::Object(doc));
    }
    out
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

/// Least privilege for exactly these secrets: GetSecretValue on each (names get the `-*`
/// suffix: Secrets Manager appends 6 random characters to every secret ARN), and the
/// no-resource actions on `*` only when the fetch strategy uses them.
fn permissions_policy(
    reader_arn: &str,
    region: &str,
    reads: &[(usize, &SecretConfig)],
    batched: &BTreeSet<usize>,
    listed: &BTreeSet<usize>,
    assumes: &[&str],
) -> Value {
    let (partition, account) = arn_parts(reader_arn);
    let mut resources = BTreeSet::new();
    for (_, secret) in reads {
        let mut regions = vec![region.to_owned()];
        regions.extend(secret.failover_region.clone());
        for region in regions {
            let base = format!("arn:{partition}:secretsmanager:{region}:{account}:secret:");
            let resource = match (&secret.find, secret.secret_id.strip_prefix("arn:")) {
                (Some(find), _) => format!("{base}{}*", find.name_prefix.as_deref().unwrap_or("")),
                (None, Some(_)) if is_full_secret_arn(&secret.secret_id) => {
                    secret.secret_id.clone()
                }
                (None, Some(_)) => format!("{}-*", secret.secret_id),
                (None, None) => format!("{base}{}-*", secret.secret_id),
            };
            resources.insert(resource);
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
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// For customer-managed KMS keys only (the AWS-managed key needs nothing).
fn kms_statement(reader_arn: &str, region: &str) -> Value {
    json!({
        "Sid": "AllowSecretFerryDecrypt",
        "Effect": "Allow",
        "Principal": {"AWS": reader_arn},
        "Action": ["kms:Decrypt", "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": format!("secretsmanager.{region}.amazonaws.com")}}
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

/// A full secret ARN ends with `-` and six random characters.
fn is_full_secret_arn(arn: &str) -> bool {
    arn.rsplit_once(":secret:")
        .and_then(|(_, name)| name.rsplit_once('-'))
        .is_some_and(|(_, suffix)| {
            suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// The text output: every document under a heading, ready to paste into the console.
pub fn render_text(documents: &BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    for (name, docs) in documents {
        out.push_str(&format!("# {name}\n\n"));
        let sections = [
            ("trustPolicy", "Trust policy (on the role: IAM → Roles → Trust relationships)"),
            ("permissionsPolicy", "Permissions policy (attach to the role that reads the secrets)"),
            ("kmsKeyPolicyStatement", "KMS key policy statement (add to the key policy of a customer-managed key encrypting the secrets)"),
            ("callerPolicy", "Caller policy (attach to the identity that assumes the role)"),
        ];
        for (key, title) in sections {
            if let Some(doc) = docs.get(key) {
                let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
                out.push_str(&format!("## {title}\n\n{pretty}\n\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        crate::config::parse(yaml).unwrap()
    }

    const YAML: &str = r#"region: us-east-1
roles:
  hub:
    roleArn: arn:aws:iam::222222222222:role/Hub
  shared:
    roleArn: arn:aws:iam::111111111111:role/Shared
    externalIdFile: /etc/ferry/external-id
    via: hub
    sessionTags: {team: a}
secrets:
  - {name: a, secretId: app/a, role: shared, targets: [{file: {dir: /o/a}}]}
  - {name: b, secretId: app/b, role: shared, failoverRegion: us-west-2, targets: [{file: {dir: /o/b}}]}
  - {name: c, secretId: "arn:aws:secretsmanager:us-east-1:111111111111:secret:full-AbCdEf", role: shared, fetchStrategy: get, targets: [{file: {dir: /o/c}}]}
  - {name: own, secretId: mine, targets: [{file: {dir: /o/own}}]}
"#;

    #[test]
    fn documents_for_a_chain() {
        let docs = documents(
            &config(YAML),
            Some("arn:aws:iam::123456789012:role/pod"),
            Some("o-abc123"),
        );
        let shared = &docs["shared"];
        let trust = &shared["trustPolicy"]["Statement"][0];
        assert_eq!(
            trust["Principal"]["AWS"], "arn:aws:iam::222222222222:role/Hub",
            "a chained role trusts its parent"
        );
        assert_eq!(trust["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
        let ext = trust["Condition"]["StringEquals"]["sts:ExternalId"]
            .as_str()
            .unwrap();
        assert!(ext.contains("/etc/ferry/external-id"), "{ext}");
        assert_eq!(
            trust["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
            "o-abc123"
        );
        let hub = &docs["hub"]["trustPolicy"]["Statement"][0];
        assert_eq!(
            hub["Principal"]["AWS"],
            "arn:aws:iam::123456789012:role/pod"
        );
        assert_eq!(
            hub["Condition"],
            json!({"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}),
            "no ExternalId configured for hub: no ExternalId condition"
        );

        let perms = &shared["permissionsPolicy"]["Statement"];
        assert_eq!(
            perms[0]["Resource"],
            json!([
                "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/a-*",
                "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/b-*",
                "arn:aws:secretsmanager:us-east-1:111111111111:secret:full-AbCdEf",
                "arn:aws:secretsmanager:us-west-2:111111111111:secret:app/b-*",
            ])
        );
        // a and b share role and interval but not failover region: no batch group.
        assert_eq!(perms.as_array().unwrap().len(), 1, "{perms}");
        let hub_perms = &docs["hub"]["permissionsPolicy"]["Statement"];
        assert_eq!(hub_perms[0]["Sid"], "AssumeNextRoleInChain");
        assert_eq!(
            hub_perms[0]["Resource"],
            "arn:aws:iam::111111111111:role/Shared"
        );
        assert_eq!(
            shared["callerPolicy"]["Statement"][0]["Resource"],
            "arn:aws:iam::111111111111:role/Shared"
        );
        assert_eq!(
            shared["kmsKeyPolicyStatement"]["Condition"]["StringEquals"]["kms:ViaService"],
            "secretsmanager.us-east-1.amazonaws.com"
        );
        let base = &docs[BASE_IDENTITY]["permissionsPolicy"]["Statement"];
        assert_eq!(
            base[0]["Resource"],
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:mine-*"
        );
        assert_eq!(
            base[1]["Resource"], "arn:aws:iam::222222222222:role/Hub",
            "the base identity assumes the root of the chain"
        );
    }

    #[test]
    fn fetch_strategies_add_only_the_actions_they_use() {
        let yaml = r#"region: eu-west-1
roles:
  r: {roleArn: "arn:aws-cn:iam::111111111111:role/R"}
secrets:
  - {name: a, secretId: x/a, role: r, targets: [{file: {dir: /o/a}}]}
  - {name: b, secretId: x/b, role: r, targets: [{file: {dir: /o/b}}]}
  - {name: f, find: {namePrefix: team/}, role: r, targets: [{file: {dir: "/o/{{ name }}"}}]}
"#;
        let docs = documents(&config(yaml), None, None);
        let perms = &docs["r"]["permissionsPolicy"]["Statement"];
        assert_eq!(
            perms[1]["Action"],
            json!([
                "secretsmanager:BatchGetSecretValue",
                "secretsmanager:ListSecrets"
            ])
        );
        assert_eq!(perms[1]["Resource"], "*");
        assert!(perms[0]["Resource"].as_array().unwrap().contains(&json!(
            "arn:aws-cn:secretsmanager:eu-west-1:111111111111:secret:team/*"
        )));
        let trust = &docs["r"]["trustPolicy"]["Statement"][0];
        assert_eq!(trust["Principal"]["AWS"], CALLER_PLACEHOLDER);
    }

    #[test]
    fn text_output_has_every_document_as_valid_json() {
        let text = render_text(&documents(&config(YAML), None, None));
        assert!(text.contains("# shared") && text.contains("## Trust policy"));
        let blocks: Vec<&str> = text.split("\n\n").filter(|b| b.starts_with('{')).collect();
        assert_eq!(blocks.len(), 4 + 4 + 2);
        for block in blocks {
            serde_json::from_str::<Value>(block).unwrap();
        }
    }
}
