use super::{Fetched, SourceError};
use crate::aws::{self, Class};
use crate::config::{SecretConfig, VersionSelector};
use crate::credentials::{RoleSession, StsAssumer};
use crate::secret::{Payload, Sensitive};
use crate::source::Budget;
use std::sync::Arc;

/// A Secrets Manager client for one identity (a role, or the base credentials) in one
/// region, shared by every secret read with that identity.
#[derive(Clone, Debug)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
    region: String,
    /// The role the client's credentials come from; `None` for the base identity.
    session: Option<RoleSession<StsAssumer>>,
    /// Who reads, as the IAM documents name it: a role ARN, or "the base identity".
    principal: String,
    /// Shared by every source reading from the same account and region.
    budget: Arc<Budget>,
}

impl SecretsManager {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        region: String,
        session: Option<RoleSession<StsAssumer>>,
        principal: String,
        budget: Arc<Budget>,
    ) -> Self {
        Self {
            client,
            region,
            session,
            principal,
            budget,
        }
    }

    pub async fn fetch(&self, secret: &SecretConfig) -> Result<Fetched, SourceError> {
        // Asking the session first turns a credential failure into its own error, which
        // names the trust policy, instead of an opaque SDK identity-resolution failure.
        if let Some(session) = &self.session {
            session
                .get()
                .await
                .map_err(|source| SourceError::Credentials {
                    secret: secret.name.clone(),
                    source,
                })?;
        }
        let mut request = self.client.get_secret_value().secret_id(&secret.secret_id);
        request = match &secret.version {
            VersionSelector::Stage(stage) => request.version_stage(stage),
            VersionSelector::Id(id) => request.version_id(id),
        };
        self.budget.acquire().await;
        let result = request.send().await;
        match &result {
            Ok(_) => self.budget.succeeded(),
            Err(err) if aws::classify(err).class == Class::Throttled => {
                self.budget.throttled();
                tracing::warn!(
                    secret = %secret.name,
                    rate_per_second = self.budget.rate(),
                    "Secrets Manager is throttling; slowing down"
                );
            }
            Err(_) => {}
        }
        let output = result.map_err(|err| {
            let info = aws::classify(&err);
            SourceError::Aws {
                secret: secret.name.clone(),
                secret_id: secret.secret_id.clone(),
                region: self.region.clone(),
                hint: self.hint(info.class, secret),
                info,
            }
        })?;
        let payload = if let Some(text) = output.secret_string() {
            Payload::Text(Sensitive::new(text.to_owned()))
        } else if let Some(blob) = output.secret_binary() {
            Payload::Binary(Sensitive::new(blob.as_ref().to_vec()))
        } else {
            return Err(SourceError::Empty {
                secret: secret.name.clone(),
                secret_id: secret.secret_id.clone(),
            });
        };
        Ok(Fetched {
            version_id: output.version_id().map(str::to_owned),
            payload,
        })
    }

    /// The fix for each failure, as the troubleshooting guides give it.
    fn hint(&self, class: Class, secret: &SecretConfig) -> String {
        let principal = &self.principal;
        let id = &secret.secret_id;
        match class {
            Class::AccessDenied => format!(
                ". The permissions policy of {principal} must allow secretsmanager:GetSecretValue on the secret's ARN with the -* suffix (arn:aws:secretsmanager:{region}:<account>:secret:{name}-*), since Secrets Manager appends 6 random characters to every secret ARN; also check any resource policy on the secret",
                region = self.region,
                name = secret_name_of(id),
            ),
            Class::Kms => format!(
                ". The secret is encrypted with a customer-managed KMS key: its key policy must allow kms:Decrypt (and kms:DescribeKey) for {principal}"
            ),
            Class::NotFound => format!(
                ". Check secretId and region: no secret {id} (or no such version) in {region}; a name must match exactly, an ARN may omit the random suffix",
                region = self.region,
            ),
            Class::InvalidRequest => ". The secret may be scheduled for deletion (restore it), or the versionStage / versionId does not exist".to_owned(),
            Class::ExpiredToken => ". The credentials expired: check the role's session duration and that the base credentials are refreshed".to_owned(),
            Class::InvalidCredentials => format!(". The credentials of {principal} were not recognised"),
            Class::Throttled | Class::Timeout | Class::Network | Class::Server => {
                ". Will retry with back-off; the last written files stay in place".to_owned()
            }
            Class::RegionDisabled | Class::MalformedPolicy | Class::Other => String::new(),
        }
    }
}

/// The name part of a secret id, for the ARN shown in a hint.
fn secret_name_of(id: &str) -> &str {
    match id.strip_prefix("arn:") {
        Some(_) => id.split(":secret:").nth(1).unwrap_or(id),
        None => id,
    }
}
