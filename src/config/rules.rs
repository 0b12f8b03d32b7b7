//! Scalar rules: file modes, regions, names, URLs and ARNs.

use std::ops::RangeInclusive;

use super::tree::Data;
use saphyr::Scalar;

use super::yaml::{Checker, Field};

const MODE_FORM: &str = "a quoted octal string such as \"0400\"";

pub(super) fn read_file_mode(c: &mut Checker, at: &Field) -> Option<u32> {
    let Data::Value(Scalar::String(text)) = at.data() else {
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

pub(super) fn parse_mode(text: &str) -> Result<u32, &'static str> {
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

pub(super) fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Role and secret names: 1..=max_len of [A-Za-z0-9_.-].
pub(super) fn is_name(s: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// STS `RoleSessionName` and `SourceIdentity`: 2 to 64 of [\w+=,.@-].
pub(super) fn is_sts_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// STS session tag keys and values: `length` of [\p{L}\p{Z}\p{N}_.:/=+\-@].
pub(super) fn is_tag_text(s: &str, length: RangeInclusive<usize>) -> bool {
    length.contains(&s.chars().count())
        && s.chars()
            .all(|ch| ch.is_alphanumeric() || ch.is_whitespace() || "_.:/=+-@".contains(ch))
}

/// `http://` or `https://`, then a host, then optionally a port and a path.
pub(super) fn is_endpoint_url(s: &str) -> bool {
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

pub(super) fn check_role_arn(arn: &str) -> Result<(), String> {
    check_iam_arn(arn, "role", false)
}

/// AWS managed policies have `aws` in place of an account id.
pub(super) fn check_policy_arn(arn: &str) -> Result<(), String> {
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
pub(super) fn check_secret_arn(arn: &str) -> Result<(), &'static str> {
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
