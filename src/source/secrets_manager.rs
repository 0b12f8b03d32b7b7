use super::{CallError, Fetched, SourceError, Wanted};
use crate::aws::{self, Class, ErrorInfo};
use crate::config::VersionSelector;
use crate::credentials::CredentialsError;
use crate::credentials::{RoleSession, StsAssumer};
use crate::secret::{Payload, Sensitive};
use crate::source::{secret_id, Budget};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const GET: &str = "GetSecretValue";
pub const BATCH: &str = "BatchGetSecretValue";
pub const LIST: &str = "ListSecrets";
/// BatchGetSecretValue takes at most 20 secret ids.
pub const BATCH_MAX: usize = 20;
/// ListSecrets returns at most 100 secrets per page.
pub(crate) const LIST_PAGE: usize = 100;

/// One secret in a BatchGetSecretValue answer; `fetched` is `None` when it had no value.
pub struct BatchValue {
    pub name: Option<String>,
    pub arn: Option<String>,
    pub fetched: Option<Fetched>,
}

/// One secret as ListSecrets shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub arn: String,
    /// Version id → staging labels.
    pub versions: BTreeMap<String, Vec<String>>,
    pub tags: BTreeMap<String, String>,
    /// Scheduled for deletion (only listed with `ListQuery::include_deleted`).
    pub deleted: bool,
}

/// The filters of a ListSecrets call. Secrets Manager matches every filter value as a
/// prefix, so callers compare what they need exactly themselves.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub name_prefixes: Vec<String>,
    pub tag_keys: Vec<String>,
    pub tag_values: Vec<String>,
    /// Also list secrets scheduled for deletion.
    pub include_deleted: bool,
}

// === impl Listed ===

impl Listed {
    /// The version that carries `stage`, e.g. AWSCURRENT.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }
}

/// The pages of one ListSecrets listing (see [`SecretsManager::pages`]).
pub struct Pages<'s> {
    source: &'s SecretsManager,
    filters: Vec<aws_sdk_secretsmanager::types::Filter>,
    include_deleted: bool,
    next: Option<String>,
    started: bool,
    done: bool,
}

// === impl Pages ===

impl Pages<'_> {
    /// The next page; `None` after the last one, or after an error.
    pub async fn next_page(&mut self) -> Option<Result<Vec<Listed>, CallError>> {
        if self.done {
            return None;
        }
        let page = self.fetch().await;
        if page.is_err() {
            self.done = true;
        }
        Some(page)
    }

    async fn fetch(&mut self) -> Result<Vec<Listed>, CallError> {
        let source = self.source;
        if !self.started {
            self.started = true;
            source.credentials().await.map_err(CallError::Credentials)?;
        }
        let request = source
            .client
            .list_secrets()
            .max_results(LIST_PAGE as i32)
            .include_planned_deletion(self.include_deleted)
            .set_filters((!self.filters.is_empty()).then(|| self.filters.clone()))
            .set_next_token(self.next.take());
        let page = source
            .metered(LIST, request.send())
            .await
            .map_err(|err| CallError::Aws(aws::classify(&err)))?;
        match page.next_token() {
            Some(token) if !token.is_empty() => self.next = Some(token.to_owned()),
            _ => self.done = true,
        }
        Ok(page
            .secret_list()
            .iter()
            .filter_map(|entry| {
                let (Some(name), Some(arn)) = (entry.name(), entry.arn()) else {
                    return None;
                };
                Some(Listed {
                    name: name.to_owned(),
                    arn: arn.to_owned(),
                    versions: entry
                        .secret_versions_to_stages()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                    tags: entry
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                        .collect(),
                    deleted: entry.deleted_date().is_some(),
                })
            })
            .collect())
    }
}

fn payload_of(text: Option<&str>, blob: Option<&aws_smithy_types::Blob>) -> Option<Payload> {
    if let Some(text) = text {
        Some(Payload::Text(Sensitive::new(text.to_owned())))
    } else {
        blob.map(|blob| Payload::Binary(Sensitive::new(blob.as_ref().to_vec())))
    }
}

/// A Secrets Manager client for one identity (a role, or the base credentials) in one
/// region, shared by every secret read with that identity: a clone is one reference count,
/// so that each of 100,000 jobs holding one costs a pointer.
#[derive(Clone, Debug)]
pub struct SecretsManager(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    client: aws_sdk_secretsmanager::Client,
    region: String,
    /// The role the client's credentials come from; `None` for the base identity.
    session: Option<RoleSession<StsAssumer>>,
    /// Who reads, as the IAM documents name it: a role ARN, or "the base identity".
    principal: String,
    /// Shared by every source reading from the same account and region.
    budget: Arc<Budget>,
}

// === impl SecretsManager ===

impl std::ops::Deref for SecretsManager {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl SecretsManager {
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        region: String,
        session: Option<RoleSession<StsAssumer>>,
        principal: String,
        budget: Arc<Budget>,
    ) -> Self {
        Self(Arc::new(Shared {
            client,
            region,
            session,
            principal,
            budget,
        }))
    }

    /// The SDK client, for the push direction's calls (`sink::secrets_manager`); every call
    /// made with it goes through [`Self::metered`].
    pub(crate) fn sdk(&self) -> &aws_sdk_secretsmanager::Client {
        &self.client
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Who reads, as the IAM documents name it.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Asking the session first turns a credential failure into its own error, which
    /// names the trust policy, instead of an opaque SDK identity-resolution failure.
    pub(crate) async fn credentials(&self) -> Result<(), CredentialsError> {
        match &self.session {
            Some(session) => session.get().await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Every call draws from the budget, and a throttled answer slows the budget down.
    pub(crate) async fn metered<T, E>(
        &self,
        operation: &str,
        send: impl std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.budget.acquire().await;
        let result = send.await;
        match &result {
            Ok(_) => self.budget.succeeded(),
            Err(err) if aws::classify(err).class == Class::Throttled => {
                self.budget.throttled();
                tracing::warn!(
                    operation,
                    region = %self.region,
                    rate_per_second = self.budget.rate(),
                    "Secrets Manager is throttling; slowing down"
                );
            }
            Err(_) => {}
        }
        result
    }

    /// GetSecretValue of one secret, at its configured stage or version id.
    pub async fn fetch(&self, secret: &Wanted) -> Result<Fetched, SourceError> {
        self.fetch_id(secret, &secret.secret_id).await
    }

    /// GetSecretValue of the replica of `secret` in this client's region (its failover
    /// region). An ARN names the primary's region, and Secrets Manager only finds a secret
    /// by an ARN of its own region; the replica's ARN is the primary's with this region.
    pub async fn fetch_replica(&self, secret: &Wanted) -> Result<Fetched, SourceError> {
        let id = secret_id::in_region(&secret.secret_id, &self.region);
        self.fetch_id(secret, &id).await
    }

    async fn fetch_id(&self, secret: &Wanted, id: &str) -> Result<Fetched, SourceError> {
        self.credentials()
            .await
            .map_err(|e| self.error_for(secret, GET, CallError::Credentials(e)))?;
        let mut request = self.client.get_secret_value().secret_id(id);
        request = match &secret.version {
            VersionSelector::Stage(stage) => request.version_stage(stage.as_ref()),
            VersionSelector::Id(id) => request.version_id(id),
        };
        let output = self
            .metered(GET, request.send())
            .await
            .map_err(|err| self.error_for(secret, GET, CallError::Aws(aws::classify(&err))))?;
        let payload =
            payload_of(output.secret_string(), output.secret_binary()).ok_or_else(|| {
                SourceError::Empty {
                    secret: secret.name.to_string(),
                    secret_id: secret.secret_id.to_string(),
                }
            })?;
        Ok(Fetched {
            version_id: output.version_id().map(str::to_owned),
            payload,
            region: self.region.clone(),
            arn: output.arn().map(str::to_owned),
        })
    }

    /// BatchGetSecretValue of up to [`BATCH_MAX`] secrets. A secret that could not be read
    /// comes back in the second list, with its own error, while the others are served.
    pub async fn batch_get(
        &self,
        ids: &[&str],
    ) -> Result<(Vec<BatchValue>, Vec<(String, ErrorInfo)>), CallError> {
        self.credentials().await.map_err(CallError::Credentials)?;
        let mut request = self.client.batch_get_secret_value();
        for id in ids.iter().take(BATCH_MAX) {
            request = request.secret_id_list(*id);
        }
        let output = self
            .metered(BATCH, request.send())
            .await
            .map_err(|err| CallError::Aws(aws::classify(&err)))?;
        let values = output
            .secret_values()
            .iter()
            .map(|v| BatchValue {
                name: v.name().map(str::to_owned),
                arn: v.arn().map(str::to_owned),
                fetched: payload_of(v.secret_string(), v.secret_binary()).map(|payload| Fetched {
                    version_id: v.version_id().map(str::to_owned),
                    payload,
                    region: self.region.clone(),
                    arn: v.arn().map(str::to_owned),
                }),
            })
            .collect();
        let errors = output
            .errors()
            .iter()
            .map(|e| {
                let code = e.error_code().unwrap_or("Unknown");
                (
                    e.secret_id().unwrap_or_default().to_owned(),
                    aws::from_code(code, e.message()),
                )
            })
            .collect();
        Ok((values, errors))
    }

    /// Every secret ListSecrets shows whose name starts with one of `name_prefixes` (all
    /// secrets when empty) and that has a tag key in `tag_keys` (any when empty), with the
    /// version ids of each and their staging labels. Pages of 100.
    pub async fn list(
        &self,
        name_prefixes: &[String],
        tag_keys: &[String],
    ) -> Result<Vec<Listed>, CallError> {
        self.list_where(&ListQuery {
            name_prefixes: name_prefixes.to_vec(),
            tag_keys: tag_keys.to_vec(),
            ..ListQuery::default()
        })
        .await
    }

    /// Every secret ListSecrets shows for `query`, pages of 100.
    pub async fn list_where(&self, query: &ListQuery) -> Result<Vec<Listed>, CallError> {
        let mut pages = self.pages(query);
        let mut listed = Vec::new();
        while let Some(page) = pages.next_page().await {
            listed.extend(page?);
        }
        Ok(listed)
    }

    /// ListSecrets for `query`, one page of up to 100 at a time: a poll of 100,000 secrets
    /// then holds 100 entries at once, not every one.
    pub fn pages(&self, query: &ListQuery) -> Pages<'_> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let mut filters = Vec::new();
        for (key, values) in [
            (FilterNameStringType::Name, &query.name_prefixes),
            (FilterNameStringType::TagKey, &query.tag_keys),
            (FilterNameStringType::TagValue, &query.tag_values),
        ] {
            if !values.is_empty() {
                filters.push(
                    Filter::builder()
                        .key(key)
                        .set_values(Some(values.clone()))
                        .build(),
                );
            }
        }
        Pages {
            source: self,
            filters,
            include_deleted: query.include_deleted,
            next: None,
            started: false,
            done: false,
        }
    }

    /// The per-secret error for a failed call, with the fix the guides give for it.
    pub fn error_for(
        &self,
        secret: &Wanted,
        operation: &'static str,
        err: CallError,
    ) -> SourceError {
        match err {
            CallError::Credentials(source) => SourceError::Credentials {
                secret: secret.name.to_string(),
                source,
            },
            CallError::Aws(info) => SourceError::Aws {
                secret: secret.name.to_string(),
                operation,
                secret_id: secret.secret_id.to_string(),
                region: self.region.clone(),
                hint: self.hint(info.class, secret, operation),
                info,
            },
        }
    }

    /// The fix for each failure, as the troubleshooting guides give it.
    fn hint(&self, class: Class, secret: &Wanted, operation: &str) -> String {
        let principal = &self.principal;
        let id = &secret.secret_id;
        match class {
            Class::AccessDenied if operation == BATCH => format!(
                ". The permissions policy of {principal} must allow secretsmanager:BatchGetSecretValue on \"*\" (it takes no resource) besides secretsmanager:GetSecretValue on each secret; or set fetchStrategy: get"
            ),
            Class::AccessDenied if operation == LIST => format!(
                ". The permissions policy of {principal} must allow secretsmanager:ListSecrets on \"*\" (it takes no resource); or set fetchStrategy: batch or get"
            ),
            Class::AccessDenied => format!(
                ". The permissions policy of {principal} must allow secretsmanager:GetSecretValue on the secret's ARN with the -?????? suffix (arn:aws:secretsmanager:{region}:<account>:secret:{name}-??????), since Secrets Manager appends 6 random characters to every secret ARN; also check any resource policy on the secret",
                region = self.region,
                name = secret_name_of(id),
            ),
            Class::Kms => format!(
                ". The secret is encrypted with a customer-managed KMS key: its key policy must allow kms:Decrypt (and kms:DescribeKey) for {principal}"
            ),
            Class::NotFound if id.starts_with("arn:") && secret_id::may_be_complete_arn(id) => format!(
                ". Check secretId and region: no secret {id} (or no such version) in {region}. If this ARN omits the random suffix, its name ends in '-' and six characters, which Secrets Manager takes for the suffix: give the complete ARN (with the suffix, as the console shows it)",
                region = self.region,
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
