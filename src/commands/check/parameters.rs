//! `check` for Parameter Store entries: the fix for each way a read fails, and, for a group
//! that compares versions first, whether DescribeParameters is allowed.

use super::Link;
use crate::daemon::group::Group;
use crate::source::parameter_store::Describe;
use crate::source::plan::Strategy;

/// The fix for a Parameter Store read that failed with `kind`.
pub(super) fn fix(kind: &str) -> &'static str {
    match kind {
        "access_denied" => "the permissions policy of the reading role must allow ssm:GetParameters (ssm:GetParametersByPath for a parameterPath) on arn:aws:ssm:REGION:ACCOUNT:parameter/NAME, with no '/' of its own after `parameter` (`secret-ferry iam-policy` prints it)",
        "kms" => "the SecureString's customer-managed KMS key policy must allow kms:Decrypt for the reading role with kms:ViaService ssm.REGION.amazonaws.com (kmsKeyPolicyStatement of `secret-ferry iam-policy`)",
        "not_found" => "check the parameter's name (case-sensitive; a hierarchical name starts with '/'), its version or label selector, and the region",
        "path_empty" => "check parameterPath and recursive (without it only the path's own level is read) and the region; parameters the role may not read are left out of a path silently",
        "path_keys" => "two parameters under the path make the same key ('/' becomes '_'): rename one, or read them with separate entries",
        "throttled" => "Parameter Store's standard throughput (about 40 calls a second per account and region) is shared by every reader: lower parameterStoreRateLimit, or enable higher throughput",
        "expired_token" => "the credentials expired: check the role's session duration and the base credential refresh",
        _ => "see the error above",
    }
}

/// For a group that lists before reading: one DescribeParameters of its first name.
pub(super) async fn check_listing(group: &Group) -> Option<Link> {
    if group.strategy != Strategy::ParametersListed {
        return None;
    }
    let first = group.members.first()?;
    let (store, _) = first.parameter()?;
    let name = crate::source::parameters::without_selector(first.secret_id());
    let names = [name];
    let what = format!(
        "DescribeParameters for {} parameter entries",
        group.members.len()
    );
    Some(match store.describe(Describe::Names(&names)).await {
        Ok(_) => Link::ok(
            "parameters",
            first.name(),
            format!("{what}: allowed for {} in {}; only changed parameters are read", store.principal(), store.region()),
        ),
        Err(e) => Link::failed(
            "parameters",
            first.name(),
            store.error_for(&first.wanted, crate::source::parameter_store::DESCRIBE, e).to_string(),
            "allow ssm:DescribeParameters on \"*\" (it takes no resource) to compare versions before reading, or set fetchStrategy: batch; until then every parameter is read at every poll",
        ),
    })
}
