//! The three forms of a `secretId` — a name, a complete ARN, an ARN without the random
//! suffix — and what can and cannot be told from the string alone. Pure.
//!
//! Secrets Manager appends `-` and six random characters to every secret's ARN
//! (`app/db` → `...:secret:app/db-AbCdEf`). An ARN that ends in `-` and six letters or digits
//! may therefore be complete, or be a partial ARN of a secret whose name happens to end that
//! way (`app/my-secret`): only AWS's answer settles which.

/// Whether `id` (a name, a full ARN, or an ARN without the random suffix) names the
/// secret with this name and ARN.
pub fn id_matches(id: &str, name: Option<&str>, arn: Option<&str>) -> bool {
    if Some(id) == name || Some(id) == arn {
        return true;
    }
    id.starts_with("arn:")
        && arn
            .and_then(|arn| arn.strip_prefix(id))
            .is_some_and(|rest| rest.len() == 7 && rest.starts_with('-'))
}

/// The region of a secret ARN; `None` for a name.
pub fn arn_region(id: &str) -> Option<&str> {
    match id.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "secretsmanager", region, ..] => Some(region),
        _ => None,
    }
}

/// The same secret in `region`: a replica keeps the primary's name, account and random
/// suffix, so its ARN differs only in the region. A name is returned unchanged.
pub fn in_region(id: &str, region: &str) -> String {
    if arn_region(id).is_none() {
        return id.to_owned();
    }
    let mut parts: Vec<&str> = id.splitn(5, ':').collect();
    if let Some(slot) = parts.get_mut(3) {
        *slot = region;
    }
    parts.join(":")
}

/// Whether an ARN ends like a complete one, with `-` and six letters or digits. It may still
/// be a partial ARN (see the module comment).
pub fn may_be_complete_arn(arn: &str) -> bool {
    arn.rsplit_once(":secret:")
        .and_then(|(_, name)| name.rsplit_once('-'))
        .is_some_and(|(_, suffix)| {
            suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/db-AbCdEf";

    #[test]
    fn an_arn_moves_to_the_replica_region_and_a_name_stays() {
        assert_eq!(
            in_region(PRIMARY, "us-west-2"),
            "arn:aws:secretsmanager:us-west-2:111111111111:secret:app/db-AbCdEf"
        );
        assert_eq!(in_region("app/db", "us-west-2"), "app/db");
        assert_eq!(arn_region(PRIMARY), Some("us-east-1"));
        assert_eq!(arn_region("app/db"), None);
    }

    #[test]
    fn both_readings_of_an_ambiguous_arn_match_what_aws_returns() {
        let partial = "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/my-secret";
        assert!(may_be_complete_arn(partial), "ends in -secret");
        assert!(!may_be_complete_arn(
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/db"
        ));
        let full = format!("{partial}-XyZ123");
        assert!(id_matches(partial, Some("app/my-secret"), Some(&full)));
        assert!(id_matches(partial, Some("app/my"), Some(partial)));
        assert!(!id_matches(
            partial,
            Some("app/my-secret-2"),
            Some(&format!("{partial}-2-XyZ123"))
        ));
    }
}
