//! Secrets Manager as the sink of a push: the calls that look at, create, update, adopt,
//! delete and restore the remote secret. Every call goes through the client's budget
//! (`SecretsManager::metered`), shared with reads of the same account and region, and every
//! failure becomes a [`RemoteError`] that names the IAM statement to fix.
//!
//! What to call is decided by `push_plan`; nothing here decides.

use super::push_plan::Remote;
use crate::aws::{self, Class, ErrorInfo};
use crate::config::{PushTarget, Recovery, OWNER_TAG};
use crate::credentials::CredentialsError;
use crate::secret::{Payload, Sensitive};
use crate::source::{CallError, ListQuery, Listed, SecretsManager, GET, LIST};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use std::collections::BTreeMap;

pub const DESCRIBE: &str = "DescribeSecret";
pub const CREATE: &str = "CreateSecret";
pub const PUT: &str = "PutSecretValue";
pub const TAG: &str = "TagResource";
pub const DELETE: &str = "DeleteSecret";
pub const RESTORE: &str = "RestoreSecret";
/// ListSecrets takes at most 10 values per filter; a group of pushes up to this size is
/// listed by name as well as by tag.
const NAMES_PER_FILTER: usize = 10;

/// A call to Secrets Manager made for a push failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("push '{push}': cannot obtain credentials: {source}")]
    Credentials {
        push: String,
        #[source]
        source: CredentialsError,
    },
    #[error("push '{push}': {operation} of {secret_name} in {region} failed: {info}{hint}")]
    Aws {
        push: String,
        operation: &'static str,
        secret_name: String,
        region: String,
        info: ErrorInfo,
        hint: String,
    },
}

impl RemoteError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials { source, .. } => source.kind(),
            Self::Aws { info, .. } => info.class.as_str(),
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Credentials { source, .. } => source.is_transient(),
            Self::Aws { info, .. } => info.class.is_transient(),
        }
    }
}

/// One push's view of its client: the secret it writes, with the calls it may make.
pub struct PushSink<'a> {
    pub client: &'a SecretsManager,
    pub push: &'a str,
    pub target: &'a PushTarget,
}

impl PushSink<'_> {
    fn error(&self, operation: &'static str, err: CallError) -> RemoteError {
        match err {
            CallError::Credentials(source) => RemoteError::Credentials {
                push: self.push.to_owned(),
                source,
            },
            CallError::Aws(info) => RemoteError::Aws {
                push: self.push.to_owned(),
                operation,
                secret_name: self.target.secret_name.clone(),
                region: self.client.region().to_owned(),
                hint: hint(self.client, operation, &self.target.secret_name, info.class),
                info,
            },
        }
    }

    async fn ready(&self, operation: &'static str) -> Result<(), RemoteError> {
        self.client
            .credentials()
            .await
            .map_err(|e| self.error(operation, CallError::Credentials(e)))
    }

    fn aws<E>(
        &self,
        operation: &'static str,
    ) -> impl Fn(
        aws_sdk_secretsmanager::error::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> RemoteError
           + '_
    where
        E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        move |err| self.error(operation, CallError::Aws(aws::classify(&err)))
    }

    /// DescribeSecret: the secret as it is now (strongly consistent, unlike a listing);
    /// `None` when it does not exist.
    pub async fn describe(&self) -> Result<Option<Remote>, RemoteError> {
        self.ready(DESCRIBE).await?;
        let request = self
            .client
            .sdk()
            .describe_secret()
            .secret_id(&self.target.secret_name);
        let out = match self.client.metered(DESCRIBE, request.send()).await {
            Ok(out) => out,
            Err(err) => {
                let info = aws::classify(&err);
                if info.class == Class::NotFound {
                    return Ok(None);
                }
                return Err(self.error(DESCRIBE, CallError::Aws(info)));
            }
        };
        let versions: BTreeMap<String, Vec<String>> = out
            .version_ids_to_stages()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let tags = out
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect();
        Ok(Some(remote_of(&Listed {
            name: out.name().unwrap_or_default().to_owned(),
            arn: out.arn().unwrap_or_default().to_owned(),
            versions,
            tags,
            deleted: out.deleted_date().is_some(),
        })))
    }

    /// GetSecretValue of one version, to compare a version someone else wrote.
    pub async fn read(&self, version: &str) -> Result<Option<Payload>, RemoteError> {
        self.ready(GET).await?;
        let request = self
            .client
            .sdk()
            .get_secret_value()
            .secret_id(&self.target.secret_name)
            .version_id(version);
        let out = self
            .client
            .metered(GET, request.send())
            .await
            .map_err(self.aws(GET))?;
        Ok(match (out.secret_string(), out.secret_binary()) {
            (Some(text), _) => Some(Payload::Text(Sensitive::new(text.to_owned()))),
            (None, Some(blob)) => Some(Payload::Binary(Sensitive::new(blob.as_ref().to_vec()))),
            (None, None) => None,
        })
    }

    /// CreateSecret with the value, the ownership tag and the configured tags, key and
    /// description; the token makes a retried create the same create.
    pub async fn create(
        &self,
        instance: &str,
        token: &str,
        value: &Payload,
    ) -> Result<Option<String>, RemoteError> {
        self.ready(CREATE).await?;
        let t = self.target;
        let mut request = self
            .client
            .sdk()
            .create_secret()
            .name(&t.secret_name)
            .client_request_token(token)
            .tags(Tag::builder().key(OWNER_TAG).value(instance).build())
            .set_kms_key_id(t.kms_key_id.clone())
            .set_description(t.description.clone());
        for (key, value) in &t.tags {
            request = request.tags(Tag::builder().key(key).value(value).build());
        }
        request = match value {
            Payload::Text(text) => request.secret_string(text.expose()),
            Payload::Binary(bytes) => request.secret_binary(Blob::new(bytes.expose().clone())),
        };
        let out = self
            .client
            .metered(CREATE, request.send())
            .await
            .map_err(self.aws(CREATE))?;
        Ok(out.version_id().map(str::to_owned))
    }

    /// PutSecretValue: a new current version with `token` as its id.
    pub async fn put(&self, token: &str, value: &Payload) -> Result<(), RemoteError> {
        self.ready(PUT).await?;
        let mut request = self
            .client
            .sdk()
            .put_secret_value()
            .secret_id(&self.target.secret_name)
            .client_request_token(token);
        request = match value {
            Payload::Text(text) => request.secret_string(text.expose()),
            Payload::Binary(bytes) => request.secret_binary(Blob::new(bytes.expose().clone())),
        };
        self.client
            .metered(PUT, request.send())
            .await
            .map_err(self.aws(PUT))?;
        Ok(())
    }

    /// TagResource with the ownership tag (`adopt: true`). Nothing else about the secret,
    /// its resource policy above all, is touched.
    pub async fn adopt(&self, instance: &str) -> Result<(), RemoteError> {
        self.ready(TAG).await?;
        let request = self
            .client
            .sdk()
            .tag_resource()
            .secret_id(&self.target.secret_name)
            .tags(Tag::builder().key(OWNER_TAG).value(instance).build());
        self.client
            .metered(TAG, request.send())
            .await
            .map_err(self.aws(TAG))?;
        Ok(())
    }

    pub async fn delete(&self, recovery: Recovery) -> Result<(), RemoteError> {
        self.ready(DELETE).await?;
        let request = self
            .client
            .sdk()
            .delete_secret()
            .secret_id(&self.target.secret_name);
        let request = match recovery {
            Recovery::Window(days) => request.recovery_window_in_days(i64::from(days)),
            Recovery::Force => request.force_delete_without_recovery(true),
        };
        self.client
            .metered(DELETE, request.send())
            .await
            .map_err(self.aws(DELETE))?;
        Ok(())
    }

    pub async fn restore(&self) -> Result<(), RemoteError> {
        self.ready(RESTORE).await?;
        let request = self
            .client
            .sdk()
            .restore_secret()
            .secret_id(&self.target.secret_name);
        self.client
            .metered(RESTORE, request.send())
            .await
            .map_err(self.aws(RESTORE))?;
        Ok(())
    }
}

/// Every secret this instance owns that one client sees (deleted ones included), by name:
/// ListSecrets filtered on the ownership tag, so that a thousand unchanged pushes cost ten
/// calls, not a thousand. With few `names` the listing is narrowed to them as well.
pub async fn list_owned(
    client: &SecretsManager,
    instance: &str,
    names: &[&str],
) -> Result<BTreeMap<String, Remote>, CallError> {
    let query = ListQuery {
        name_prefixes: if names.len() <= NAMES_PER_FILTER {
            names.iter().map(|n| (*n).to_owned()).collect()
        } else {
            Vec::new()
        },
        tag_keys: vec![OWNER_TAG.to_owned()],
        tag_values: vec![instance.to_owned()],
        include_deleted: true,
    };
    let listed = client.list_where(&query).await?;
    Ok(listed
        .iter()
        // The filters match prefixes, and a tag key and a tag value each on any tag.
        .filter(|l| l.tags.get(OWNER_TAG).map(String::as_str) == Some(instance))
        .map(|l| (l.name.clone(), remote_of(l)))
        .collect())
}

fn remote_of(listed: &Listed) -> Remote {
    Remote {
        arn: listed.arn.clone(),
        current: listed.version_with("AWSCURRENT").map(str::to_owned),
        previous: listed.version_with("AWSPREVIOUS").map(str::to_owned),
        owner: listed.tags.get(OWNER_TAG).cloned(),
        deleted: listed.deleted,
    }
}

/// The error a failed listing gives each push of the group.
pub fn list_error(sink: &PushSink, err: CallError) -> RemoteError {
    sink.error(LIST, err)
}

/// The fix for a failed push call: the statement of the permissions policy (as
/// `iam-policy` prints it) or the key policy to change.
fn hint(client: &SecretsManager, operation: &str, name: &str, class: Class) -> String {
    let principal = client.principal();
    let region = client.region();
    let arn = format!("arn:aws:secretsmanager:{region}:<account>:secret:{name}-??????");
    match class {
        Class::AccessDenied if operation == LIST => format!(
            ". The permissions policy of {principal} must allow secretsmanager:ListSecrets on \"*\" (statement PushListOwnedSecrets of `iam-policy`): pushes find their secrets' versions with it"
        ),
        Class::AccessDenied if operation == CREATE => format!(
            ". The permissions policy of {principal} must allow secretsmanager:CreateSecret and secretsmanager:TagResource (the secret is created with its ownership tag) on {arn} (statement PushSecrets of `iam-policy`); a condition on aws:RequestTag or aws:TagKeys must allow the tag {OWNER_TAG}"
        ),
        Class::AccessDenied if operation == DELETE || operation == RESTORE => format!(
            ". The permissions policy of {principal} must allow secretsmanager:{operation} on {arn} (statement PushDeleteSecrets of `iam-policy`, printed for pushes with deletionPolicy: Delete)"
        ),
        Class::AccessDenied => format!(
            ". The permissions policy of {principal} must allow secretsmanager:{operation} on {arn} (statement PushSecrets of `iam-policy`); also check any resource policy on the secret, which secret-ferry never changes"
        ),
        Class::Kms => format!(
            ". The secret's customer-managed KMS key must allow kms:GenerateDataKey and kms:Decrypt for {principal} through Secrets Manager in {region} (statement AllowSecretFerryEncrypt, `iam-policy`'s kmsKeyPolicyPushStatement)"
        ),
        Class::InvalidRequest => ". The secret may be scheduled for deletion by someone else, or its name is still reserved by a secret deleted without recovery moments ago: retried with back-off".to_owned(),
        Class::ExpiredToken => ". The credentials expired: check the role's session duration and that the base credentials are refreshed".to_owned(),
        Class::InvalidCredentials => format!(". The credentials of {principal} were not recognised"),
        Class::Throttled | Class::Timeout | Class::Network | Class::Server => {
            ". Will retry with back-off; the remote secret is left as it was".to_owned()
        }
        Class::NotFound | Class::RegionDisabled | Class::MalformedPolicy | Class::Other => {
            String::new()
        }
    }
}
