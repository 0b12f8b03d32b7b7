//! AssumeRole against STS, with the ExternalId read fresh on every call so that a
//! rotated ExternalId takes effect without a restart.

use super::{AssumeRole, CredentialsError, Issued};
use crate::aws::{self, Class};
use crate::config::{ExternalIdSource, RoleConfig};
use crate::secret::Sensitive;
use aws_credential_types::Credentials;
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use std::time::{Duration, SystemTime};

/// Credentials that our clock already considers (nearly) expired are most likely a clock
/// skew; serving them for a minute bounds the refresh rate instead of looping.
const MIN_VALIDITY: Duration = Duration::from_secs(60);
const CALLER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct StsAssumer {
    role: RoleConfig,
    client: aws_sdk_sts::Client,
}

// === impl StsAssumer ===

impl StsAssumer {
    pub fn new(role: RoleConfig, client: aws_sdk_sts::Client) -> Self {
        Self { role, client }
    }

    fn read_external_id(&self) -> Result<Option<Sensitive<String>>, CredentialsError> {
        let role = &self.role.name;
        let (raw, origin) = match &self.role.external_id {
            None => return Ok(None),
            Some(ExternalIdSource::File(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CredentialsError::ExternalIdFile {
                        role: role.clone(),
                        path: path.display().to_string(),
                        reason: unreadable_external_id(path, e),
                    }
                })?;
                (text, format!("externalIdFile {}", path.display()))
            }
            Some(ExternalIdSource::Env(var)) => {
                let text = std::env::var(var).map_err(|_| CredentialsError::ExternalIdEnv {
                    role: role.clone(),
                    var: var.clone(),
                })?;
                (text, format!("externalIdEnv {var}"))
            }
        };
        // Files written by `echo` or a Secret volume usually end with a newline.
        let id = raw.trim_end_matches(['\n', '\r']);
        if let Err(reason) = check_external_id(id) {
            return Err(CredentialsError::ExternalIdInvalid {
                role: role.clone(),
                origin,
                reason,
            });
        }
        Ok(Some(Sensitive::new(id.to_owned())))
    }

    fn external_id_origin(&self) -> String {
        match &self.role.external_id {
            None => "(none configured)".into(),
            Some(ExternalIdSource::File(p)) => format!("externalIdFile {}", p.display()),
            Some(ExternalIdSource::Env(v)) => format!("externalIdEnv {v}"),
        }
    }

    /// Best effort: names the identity that was refused, which is what the trust policy's
    /// Principal has to match.
    async fn caller_arn(&self) -> String {
        let lookup = self.client.get_caller_identity().send();
        match tokio::time::timeout(CALLER_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(out)) => out.arn().unwrap_or("(unknown)").to_owned(),
            _ => "(unknown: GetCallerIdentity failed)".to_owned(),
        }
    }

    /// A request the SDK refused to build; config validation should make this unreachable.
    fn invalid(&self, e: impl std::fmt::Display) -> CredentialsError {
        CredentialsError::Aws {
            role: self.role.name.clone(),
            role_arn: self.role.role_arn.clone(),
            info: aws::ErrorInfo {
                class: Class::MalformedPolicy,
                code: None,
                status: None,
                message: Some(e.to_string()),
            },
            hint: ". Check the role's sessionTags",
        }
    }

    async fn denied(&self, info: &aws::ErrorInfo) -> CredentialsError {
        let role_arn = &self.role.role_arn;
        let caller = self.caller_arn().await;
        let external = match &self.role.external_id {
            Some(_) => format!(
                "and its Condition sts:ExternalId must equal the ExternalId in {}",
                self.external_id_origin()
            ),
            None => format!(
                "and if it has an sts:ExternalId condition, set externalIdFile or externalIdEnv on role '{}'",
                self.role.name
            ),
        };
        CredentialsError::Denied {
            role: self.role.name.clone(),
            role_arn: role_arn.clone(),
            detail: info.to_string(),
            hint: format!(
                "The trust policy (or ExternalId) did not allow this AssumeRole: the trust policy of {role_arn} must list the caller {caller} as Principal {external}; the caller's own IAM policy must also allow sts:AssumeRole on {role_arn}"
            ),
        }
    }
}

impl AssumeRole for StsAssumer {
    async fn assume(&self) -> Result<Issued, CredentialsError> {
        let external_id = self.read_external_id()?;
        let role = &self.role;
        let seconds = i32::try_from(role.duration.as_secs()).unwrap_or(i32::MAX);
        let mut request = self
            .client
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(&role.session_name)
            .duration_seconds(seconds);
        if let Some(id) = &external_id {
            request = request.external_id(id.expose());
        }
        for (key, value) in &role.session_tags {
            request = request.tags(
                Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .map_err(|e| self.invalid(e))?,
            );
        }
        for key in &role.transitive_tag_keys {
            request = request.transitive_tag_keys(key);
        }
        if let Some(identity) = &role.source_identity {
            request = request.source_identity(identity);
        }
        if let Some(policy) = &role.policy {
            request = request.policy(policy);
        }
        for arn in &role.policy_arns {
            request = request.policy_arns(PolicyDescriptorType::builder().arn(arn).build());
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(err) => {
                let info = aws::classify(&err);
                if info.class == Class::AccessDenied {
                    return Err(self.denied(&info).await);
                }
                return Err(CredentialsError::Aws {
                    role: role.name.clone(),
                    role_arn: role.role_arn.clone(),
                    hint: hint_for(info.class),
                    info,
                });
            }
        };
        let Some(c) = output.credentials() else {
            return Err(CredentialsError::Empty {
                role: role.name.clone(),
                role_arn: role.role_arn.clone(),
            });
        };
        let now = SystemTime::now();
        let expires_at = SystemTime::try_from(*c.expiration()).unwrap_or(now + role.duration);
        let valid_for = expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .max(MIN_VALIDITY);
        Ok(Issued {
            credentials: Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                Some(expires_at),
                "secret-ferry-assume-role",
            ),
            expires_at,
            valid_for,
        })
    }
}

fn hint_for(class: Class) -> &'static str {
    match class {
        Class::ExpiredToken => ". The base credentials have expired: check that the pod's web identity token (IRSA) or instance profile is being refreshed, and that the role allows a session of the configured duration",
        Class::InvalidCredentials => ". The base credentials were not recognised: check the pod's IRSA or Pod Identity set-up, the baseCredentials files, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        Class::InvalidRequest => ". STS refused the request: check that duration does not exceed the role's MaxSessionDuration (chained sessions are capped at 1h) and that roleArn is right",
        Class::NotFound => ". Check roleArn: the role was not found",
        Class::RegionDisabled => ". STS is not activated for this account in the region used: activate it (IAM > Account settings > Security Token Service endpoints), or set the role's region or stsEndpoint to an active region",
        Class::MalformedPolicy => ". STS rejected the session parameters: check the role's policy, policyArns and sessionTags (their packed size is limited)",
        Class::Throttled | Class::Timeout | Class::Network | Class::Server => ". Will retry with back-off; the current credentials stay in use while valid",
        _ => "",
    }
}

/// STS accepts 2..1224 characters of `[\w+=,.@:/-]`; checking here gives an error that
/// names the config field instead of a bare ValidationError from STS.
fn check_external_id(id: &str) -> Result<(), &'static str> {
    if id.len() < 2 || id.len() > 1224 {
        return Err("it must be 2 to 1224 characters long");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
    {
        return Err("it may only contain letters, digits and _+=,.@:/-");
    }
    Ok(())
}

/// Why an ExternalId file could not be read. A Kubernetes Secret volume is a directory of
/// one file per key, so naming the directory itself is the usual mistake: the message names
/// the files inside (key names, never their content).
fn unreadable_external_id(path: &std::path::Path, err: std::io::Error) -> String {
    if !path.is_dir() {
        return err.to_string();
    }
    let mut keys: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        // `..data` and the timestamped dirs of a Secret volume are not keys.
        .filter(|name| !name.starts_with('.'))
        .collect();
    keys.sort();
    match keys.first() {
        Some(first) => format!(
            "it is a directory (a mounted Secret?); name the file of one key inside it, e.g. {}",
            path.join(first).display()
        ),
        None => "it is a directory, not a file".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_id_rules() {
        assert!(check_external_id("ab").is_ok());
        assert!(check_external_id("a").is_err());
        assert!(check_external_id(&"x".repeat(1225)).is_err());
        assert!(check_external_id("has space").is_err());
        assert!(check_external_id("uuid-1234:tenant/a@b=c,d.e+f").is_ok());
    }

    #[test]
    fn a_mounted_secret_directory_names_the_file_to_use() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("..2026_12_03")).unwrap();
        std::fs::write(dir.path().join("external-id"), "canary-not-printed").unwrap();
        let err = std::fs::read_to_string(dir.path()).unwrap_err();
        let reason = unreadable_external_id(dir.path(), err);
        assert_eq!(
            reason,
            format!(
                "it is a directory (a mounted Secret?); name the file of one key inside it, e.g. {}",
                dir.path().join("external-id").display()
            )
        );
        let missing = dir.path().join("nope");
        let err = std::fs::read_to_string(&missing).unwrap_err();
        assert!(unreadable_external_id(&missing, err).contains("No such file"));
    }
}
