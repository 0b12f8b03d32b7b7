//! The Parameter Store part of a reader's permissions: GetParameters on exactly each
//! parameter (the ARN without a selector; a name's leading `/` is the ARN's separator, so
//! `/app/db` is `parameter/app/db`), GetParametersByPath on each path and what is under it,
//! and DescribeParameters (which takes no resource) only when versions are compared first.

use crate::config::{ParameterSource, SecretConfig};
use crate::source::parameter_store::parameter_arn;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The statements for `reads` (Parameter Store entries among them; the others are ignored),
/// read in `region`; adds the KMS `kms:ViaService` value of each region read in to `via`.
pub(super) fn statements(
    reads: &[(usize, &SecretConfig)],
    listed: &BTreeSet<usize>,
    (partition, account): (&str, &str),
    region: &str,
    via: &mut BTreeSet<String>,
) -> Vec<Value> {
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    let mut describe = false;
    for (i, secret) in reads {
        let Some(parameter) = secret.parameter.as_deref() else {
            continue;
        };
        via.insert(format!("ssm.{region}.amazonaws.com"));
        describe |= listed.contains(i);
        match parameter {
            ParameterSource::One { name, .. } => {
                names.insert(parameter_arn(partition, region, account, name));
            }
            ParameterSource::Path { path, .. } => {
                // The call is authorised on the path itself and on what it returns.
                let path = path.trim_end_matches('/');
                paths.insert(parameter_arn(partition, region, account, path));
                paths.insert(
                    format!("{}/*", parameter_arn(partition, region, account, path))
                        .replace("//*", "/*"),
                );
            }
        }
    }
    let mut statements = Vec::new();
    if !names.is_empty() {
        statements.push(json!({
            "Sid": "ReadConfiguredParameters",
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": one_or_many(&names),
        }));
    }
    if !paths.is_empty() {
        statements.push(json!({
            "Sid": "ReadConfiguredParameterPaths",
            "Effect": "Allow",
            "Action": "ssm:GetParametersByPath",
            "Resource": one_or_many(&paths),
        }));
    }
    if describe {
        statements.push(json!({
            "Sid": "CompareParameterVersions",
            "Effect": "Allow",
            "Action": "ssm:DescribeParameters",
            "Resource": "*",
        }));
    }
    statements
}

fn one_or_many(items: &BTreeSet<String>) -> Value {
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    super::one_or_many(&items)
}
