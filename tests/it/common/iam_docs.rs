//! What an operator does with the documents `iam-policy` prints, for the tests that apply
//! them to moto in auth mode: paste the ExternalId into the trust policy, create the role with
//! its permissions, and give the caller its policy.

use aws_config::SdkConfig;
use serde_json::Value;

/// The trust policy of `role_docs` (one role's documents) with `external_id` pasted where its
/// placeholder is.
pub fn trust_with(role_docs: &Value, external_id: &str) -> String {
    let placeholder = role_docs["trustPolicy"]["Statement"][0]["Condition"]["StringEquals"]
        ["sts:ExternalId"]
        .as_str()
        .expect("a trust policy with an ExternalId placeholder")
        .to_owned();
    role_docs["trustPolicy"]
        .to_string()
        .replace(&placeholder, external_id)
}

/// `policy` with every statement on `"*"`: moto evaluates Secrets Manager and SSM calls
/// against `"*"` only, so the tests hold the generated Resource patterns against real ARNs
/// separately (`iam_policy::resource_matches`).
pub fn on_any_resource(policy: &Value) -> Value {
    let mut any = policy.clone();
    for statement in any["Statement"].as_array_mut().expect("statements") {
        statement["Resource"] = Value::String("*".to_owned());
    }
    any
}

/// The statement `sid` of `policy`.
pub fn statement(policy: &Value, sid: &str) -> Value {
    policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {policy}"))
        .clone()
}

/// Creates role `name` trusting as `trust`, with `permissions` as its inline policy.
pub async fn create_role_with(admin: &SdkConfig, name: &str, trust: &str, permissions: &Value) {
    let iam = aws_sdk_iam::Client::new(admin);
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    put_role_permissions(admin, name, permissions).await;
}

/// Replaces the inline permissions of role `name`.
pub async fn put_role_permissions(admin: &SdkConfig, name: &str, permissions: &Value) {
    aws_sdk_iam::Client::new(admin)
        .put_role_policy()
        .role_name(name)
        .policy_name("perms")
        .policy_document(permissions.to_string())
        .send()
        .await
        .unwrap();
}

/// Attaches `policy` (the generated caller policy) to user `user`.
pub async fn put_caller_policy(admin: &SdkConfig, user: &str, policy: &Value) {
    aws_sdk_iam::Client::new(admin)
        .put_user_policy()
        .user_name(user)
        .policy_name("caller")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
}
