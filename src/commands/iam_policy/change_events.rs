//! The documents `changeEvents` adds: the queue permissions of the identity that reads it
//! (exactly the queue's ARN), and per queue the EventBridge rule that sends the secrets'
//! change events to it and the queue policy that lets EventBridge send.

use super::one_or_many;
use crate::config::{ChangeEventsQueue, Config};
use crate::source::change_events::{
    CLOUDTRAIL_DETAIL_TYPE, EVENT_SOURCE, NATIVE_DETAIL_TYPE, PARAMETER_DETAIL_TYPE,
    PARAMETER_SOURCE, SOURCE, WRITES_NOT_NATIVE,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The queue actions secret-ferry calls: receive, delete what it handled, and `check`'s
/// look at the queue.
pub const QUEUE_ACTIONS: [&str; 3] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// The region a queue is read in: the URL's, its own, its role's, the default.
pub fn queue_region(config: &Config, queue: &ChangeEventsQueue, default_region: &str) -> String {
    let role_region = queue
        .role
        .as_deref()
        .and_then(|role| config.roles.get(role))
        .and_then(|role| role.region.as_deref());
    queue.region_in(role_region, default_region)
}

/// Adds to `doc` (the documents of `role`; `None`: the base identity) the permissions to
/// read its queues, and each queue's rule and queue policy. `reader_arn` reads the queue;
/// `base_arn` is the base identity, whose account holds the secrets read without a role.
pub(super) fn add(
    doc: &mut Map<String, Value>,
    config: &Config,
    role: Option<&str>,
    (reader_arn, base_arn): (&str, &str),
    default_region: &str,
) {
    let queues: Vec<&ChangeEventsQueue> = config
        .change_events
        .iter()
        .filter(|q| q.role.as_deref() == role)
        .collect();
    if queues.is_empty() {
        return;
    }
    let (partition, _) = super::arn_parts(reader_arn);
    let base_account = super::arn_parts(base_arn).1;
    let mut arns = BTreeSet::new();
    let mut per_queue = Map::new();
    for queue in queues {
        let region = queue_region(config, queue, default_region);
        let arn = queue.arn(&partition, &region);
        arns.insert(arn.clone());
        let accounts = secret_accounts(config, &region, default_region, &base_account);
        per_queue.insert(
            queue.name().to_owned(),
            queue_documents(
                queue,
                &arn,
                (&partition, &region),
                &accounts,
                config.secrets.iter().any(|s| s.parameter.is_some()),
            ),
        );
    }
    let statement = json!({
        "Sid": "ReadChangeEvents",
        "Effect": "Allow",
        "Action": QUEUE_ACTIONS,
        "Resource": one_or_many(&arns.iter().map(String::as_str).collect::<Vec<_>>()),
    });
    match doc
        .get_mut("permissionsPolicy")
        .and_then(|p| p.get_mut("Statement"))
        .and_then(Value::as_array_mut)
    {
        Some(statements) => statements.push(statement),
        None => {
            doc.insert(
                "permissionsPolicy".into(),
                json!({"Version": "2012-10-17", "Statement": [statement]}),
            );
        }
    }
    doc.insert("changeEvents".into(), Value::Object(per_queue));
}

/// The accounts whose secrets are read in `region`: each role's, and the base identity's
/// (or a placeholder) for secrets read without a role.
fn secret_accounts(
    config: &Config,
    region: &str,
    default_region: &str,
    base_account: &str,
) -> BTreeSet<String> {
    let mut accounts = BTreeSet::new();
    for secret in &config.secrets {
        let role = secret.role.as_deref().and_then(|r| config.roles.get(r));
        let read_in = crate::source::secret_id::arn_region(&secret.secret_id)
            .map(str::to_owned)
            .or_else(|| role.and_then(|r| r.region.clone()))
            .unwrap_or_else(|| default_region.to_owned());
        if read_in != region {
            continue;
        }
        let account = match role {
            Some(role) => super::arn_parts(&role.role_arn).1,
            None => base_account.to_owned(),
        };
        accounts.insert(account);
    }
    accounts
}

/// The rule (one per account whose secrets are read, on its default bus) and the queue
/// policy letting those rules send.
fn queue_documents(
    queue: &ChangeEventsQueue,
    queue_arn: &str,
    (partition, region): (&str, &str),
    accounts: &BTreeSet<String>,
    parameters: bool,
) -> Value {
    let rule_name = rule_name(queue.name());
    let rules: Vec<String> = accounts
        .iter()
        .map(|account| format!("arn:{partition}:events:{region}:{account}:rule/{rule_name}"))
        .collect();
    json!({
        "eventBridgeRule": {
            "Name": rule_name,
            "EventBusName": "default",
            "Region": region,
            "Accounts": accounts,
            "Description": if parameters {
                "Secrets Manager and Parameter Store changes to secret-ferry: a moved staging label (native event), the writes it does not report (CloudTrail), and Parameter Store Change"
            } else {
                "Secrets Manager changes to secret-ferry: a moved staging label (native event), and the writes it does not report (CloudTrail)"
            },
            "EventPattern": event_pattern(parameters),
            "Targets": [{"Id": "secret-ferry", "Arn": queue_arn}],
        },
        "queuePolicy": {
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AllowSecretsManagerChangeEvents",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": one_or_many(&rules.iter().map(String::as_str).collect::<Vec<_>>())}},
            }],
        },
    })
}

/// The native `Secret Label Updated` event, preferred (no CloudTrail needed, names the
/// version), and from CloudTrail only the writes it does not report; with Parameter Store
/// entries (`parameters`), also `Parameter Store Change` (native, no CloudTrail needed).
pub fn event_pattern(parameters: bool) -> Value {
    let mut sources = vec![SOURCE];
    let mut branches = vec![
        json!({"detail-type": [NATIVE_DETAIL_TYPE]}),
        json!({
            "detail-type": [CLOUDTRAIL_DETAIL_TYPE],
            "detail": {"eventSource": [EVENT_SOURCE], "eventName": WRITES_NOT_NATIVE},
        }),
    ];
    if parameters {
        sources.push(PARAMETER_SOURCE);
        branches.push(json!({"detail-type": [PARAMETER_DETAIL_TYPE]}));
    }
    json!({"source": sources, "$or": branches})
}

/// EventBridge rule names: at most 64 of letters, digits, `.`, `-`, `_`.
fn rule_name(queue: &str) -> String {
    let mut name = format!("secret-ferry-to-{queue}");
    name.truncate(64);
    name
}
