//! What `run --once` says at the end about the secrets that failed: one line per cause.
//! A role whose credentials could not be had fails every secret read with it, and its
//! AssumeRole error (with the fix) was logged once already; its secrets share one line here
//! instead of repeating it. Then the credentials files: one line per file not written,
//! naming its path and the cause. Pure.

use super::error::SyncError;
use crate::vend::CredentialOutputError;
use std::collections::BTreeMap;

/// At most this many secret names on one line; the rest are counted.
const NAMES_SHOWN: usize = 10;

/// One summary line and the bounded `reason` it is logged with (none on the count).
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub reason: Option<&'static str>,
    pub text: String,
}

/// The lines for `failures` out of `total` secrets, the count last.
pub fn summarize(failures: &[SyncError], total: usize) -> Vec<Line> {
    let mut by_role: BTreeMap<&str, (&'static str, Vec<&str>)> = BTreeMap::new();
    let mut lines = Vec::new();
    for failure in failures {
        match failure.credentials_role() {
            Some(role) => {
                let entry = by_role.entry(role).or_insert((failure.kind(), Vec::new()));
                entry.1.push(failure.secret());
            }
            None => lines.push(Line {
                reason: Some(failure.kind()),
                text: failure.to_string(),
            }),
        }
    }
    for (role, (reason, mut secrets)) in by_role {
        secrets.sort_unstable();
        lines.push(Line {
            reason: Some(reason),
            text: format!(
                "{}: no credentials from role '{role}' ({reason}); its AssumeRole error above says why and what to fix",
                names(&secrets)
            ),
        });
    }
    lines.push(Line {
        reason: None,
        text: format!("{} of {total} secret(s) failed to sync", failures.len()),
    });
    lines
}

/// The lines for the credentials files not written out of `total` configured, the count
/// last: every file has its own path, so each gets its own line with its cause.
pub fn summarize_credentials_files(unwritten: &[CredentialOutputError], total: usize) -> Vec<Line> {
    let mut lines: Vec<Line> = unwritten
        .iter()
        .map(|e| Line {
            reason: Some(e.kind()),
            text: e.to_string(),
        })
        .collect();
    lines.push(Line {
        reason: None,
        text: format!(
            "{} of {total} credentials file(s) not written",
            unwritten.len()
        ),
    });
    lines
}

/// The line when every credentials file was written under `run --once`.
pub fn credentials_files_written(total: usize) -> String {
    format!(
        "all {total} credentials file(s) written; each is valid until the expiry logged with it: \
         nothing rewrites them after this process exits"
    )
}

fn names(secrets: &[&str]) -> String {
    let noun = if secrets.len() == 1 {
        "secret"
    } else {
        "secrets"
    };
    let shown: Vec<String> = secrets
        .iter()
        .take(NAMES_SHOWN)
        .map(|s| format!("'{s}'"))
        .collect();
    let more = secrets.len().saturating_sub(NAMES_SHOWN);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{noun} {}{tail}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::CredentialsError;
    use crate::source::SourceError;

    fn no_external_id(secret: &str) -> SyncError {
        SyncError::Source(SourceError::Credentials {
            secret: secret.to_owned(),
            source: CredentialsError::ExternalIdFile {
                role: "shared".into(),
                path: "/etc/x".into(),
                reason: "No such file or directory (os error 2)".into(),
            },
        })
    }

    #[test]
    fn one_line_per_role_whatever_the_number_of_its_secrets() {
        let empty = SyncError::Source(SourceError::Empty {
            secret: "own".into(),
            secret_id: "app/own".into(),
        });
        let mut failures: Vec<SyncError> = (0..12)
            .map(|i| no_external_id(&format!("s{i:02}")))
            .collect();
        failures.push(empty);
        let lines = summarize(&failures, 20);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].text.starts_with("secret 'own': GetSecretValue"),
            "{lines:#?}"
        );
        assert_eq!(lines[1].reason, Some("external_id"));
        assert_eq!(
            lines[1].text,
            "secrets 's00', 's01', 's02', 's03', 's04', 's05', 's06', 's07', 's08', 's09' and 2 more: no credentials from role 'shared' (external_id); its AssumeRole error above says why and what to fix"
        );
        assert!(
            !lines[1].text.contains("/etc/x"),
            "the cause is said once, above"
        );
        assert_eq!(lines[2].text, "13 of 20 secret(s) failed to sync");
    }

    #[test]
    fn one_line_per_credentials_file_not_written_naming_its_path() {
        let unwritten = [
            CredentialOutputError::Credentials {
                role: "app".into(),
                path: "/run/ferry/app/credentials".into(),
                source: CredentialsError::ExternalIdEnv {
                    role: "app".into(),
                    var: "APP_EXTERNAL_ID".into(),
                },
            },
            CredentialOutputError::Write {
                role: "shared".into(),
                path: "/run/ferry/ro/credentials".into(),
                source: crate::vend::credentials_file::CredentialsFileError::NotAFile {
                    path: "/run/ferry/ro/credentials".into(),
                    found: "directory",
                },
            },
        ];
        let lines = summarize_credentials_files(&unwritten, 3);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(lines[0].reason, Some("external_id"));
        assert_eq!(
            lines[0].text,
            "credentials file /run/ferry/app/credentials (role 'app') not written: role 'app': \
             the environment variable APP_EXTERNAL_ID named by externalIdEnv is not set (or not UTF-8)"
        );
        assert_eq!(lines[1].reason, Some("not_a_file"));
        assert!(
            lines[1]
                .text
                .starts_with("credentials file /run/ferry/ro/credentials (role 'shared') not written: refusing to replace"),
            "{lines:#?}"
        );
        assert_eq!(lines[2].reason, None);
        assert_eq!(lines[2].text, "2 of 3 credentials file(s) not written");
        assert!(credentials_files_written(2).starts_with("all 2 credentials file(s) written; "));
    }
}
