//! The documents `pushes` add: write permissions on exactly the secrets pushed (with the
//! `-??????` suffix), deletion only for `deletionPolicy: Delete`, the owned-secrets listing,
//! and a key policy statement for customer-managed keys that pushes encrypt with.

use super::one_or_many;
use crate::config::{Config, DeletionPolicy, PushConfig};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// Adds what the pushes written with `role` (`None`: the base identity) need to `doc`: to
/// its `permissionsPolicy`, and a `kmsKeyPolicyPushStatement` when a push names a key.
pub(super) fn add(
    doc: &mut Map<String, Value>,
    config: &Config,
    role: Option<&str>,
    writer_arn: &str,
    role_region: &str,
) {
    let pushes: Vec<&PushConfig> = config
        .pushes
        .iter()
        .filter(|p| p.role.as_deref() == role)
        .collect();
    if pushes.is_empty() {
        return;
    }
    let (partition, account) = super::arn_parts(writer_arn);
    let region_of = |p: &PushConfig| {
        p.to.region
            .clone()
            .unwrap_or_else(|| role_region.to_owned())
    };
    let arn = |p: &PushConfig| {
        format!(
            "arn:{partition}:secretsmanager:{}:{account}:secret:{}-??????",
            region_of(p),
            p.to.secret_name
        )
    };
    let written: BTreeSet<String> = pushes.iter().map(|p| arn(p)).collect();
    let deleted: BTreeSet<String> = pushes
        .iter()
        .filter(|p| p.deletion_policy == DeletionPolicy::Delete)
        .map(|p| arn(p))
        .collect();
    let mut statements = vec![
        json!({
            "Sid": "PushSecrets",
            "Effect": "Allow",
            // GetSecretValue reads back a version someone else wrote, once, to compare.
            "Action": [
                "secretsmanager:CreateSecret",
                "secretsmanager:PutSecretValue",
                "secretsmanager:DescribeSecret",
                "secretsmanager:TagResource",
                "secretsmanager:GetSecretValue",
            ],
            "Resource": one_or_many(&written.iter().map(String::as_str).collect::<Vec<_>>()),
        }),
        json!({
            "Sid": "PushListOwnedSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:ListSecrets",
            "Resource": "*",
        }),
    ];
    if !deleted.is_empty() {
        statements.push(json!({
            "Sid": "PushDeleteSecrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret"],
            "Resource": one_or_many(&deleted.iter().map(String::as_str).collect::<Vec<_>>()),
        }));
    }
    let permissions = doc
        .entry("permissionsPolicy")
        .or_insert_with(|| json!({"Version": "2012-10-17", "Statement": []}));
    if let Some(list) = permissions["Statement"].as_array_mut() {
        list.extend(statements);
    }
    let key_regions: BTreeSet<String> = pushes
        .iter()
        .filter(|p| p.to.kms_key_id.is_some())
        .map(|p| format!("secretsmanager.{}.amazonaws.com", region_of(p)))
        .collect();
    if !key_regions.is_empty() {
        let services: Vec<&str> = key_regions.iter().map(String::as_str).collect();
        doc.insert(
            "kmsKeyPolicyPushStatement".into(),
            json!({
                "Sid": "AllowSecretFerryEncrypt",
                "Effect": "Allow",
                "Principal": {"AWS": writer_arn},
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": one_or_many(&services)}}
            }),
        );
    }
}
