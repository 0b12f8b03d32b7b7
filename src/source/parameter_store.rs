//! SSM Parameter Store, the second source (issue 20): the three reads its economy rests on.
//! GetParameters takes at most ten names (each with an optional `:version` or `:label`
//! selector) and decrypts SecureStrings; GetParametersByPath returns a path's parameters ten a
//! page; DescribeParameters lists names and versions (no values, no KMS call) fifty a page,
//! so that only changed parameters are read. Every call draws from the budget of its
//! (account, region), whose default is Parameter Store's standard throughput.
//!
//! A group of entries is polled by `daemon::group::parameters`; one entry on its own (a
//! refresh, `check`) with `fetch`. Errors name the IAM statement or key policy to fix.

use super::parameters::{self, PathProblem};
use super::{Budget, CallError, Fetched, SourceError, Wanted};
use crate::aws::{self, Class};
use crate::config::ParameterSource;
use crate::credentials::{RoleSession, StsAssumer};
use crate::secret::Sensitive;
use std::sync::Arc;

pub const GET_PARAMETERS: &str = "GetParameters";
pub const BY_PATH: &str = "GetParametersByPath";
pub const DESCRIBE: &str = "DescribeParameters";
/// GetParameters takes at most ten names.
pub const NAMES_MAX: usize = 10;
/// GetParametersByPath returns at most ten parameters a page.
pub const PATH_PAGE: i32 = 10;
/// DescribeParameters returns at most fifty a page.
pub const DESCRIBE_PAGE: i32 = 50;
/// Parameter Store's standard throughput is about 40 transactions per second per account
/// and region, shared by every reader: the default budget stays under it.
pub const DEFAULT_RATE: u32 = 40;

/// One parameter as read, with its value.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    /// The selector it was asked with (`:3`, `:prod`), when there was one.
    pub selector: Option<String>,
    pub version: i64,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    pub value: Sensitive<String>,
    pub arn: Option<String>,
}

/// One parameter as DescribeParameters shows it: no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    pub version: i64,
}

/// A Parameter Store client for one identity in one region.
#[derive(Clone)]
pub struct ParameterStore(Arc<Shared>);

struct Shared {
    client: aws_sdk_ssm::Client,
    region: String,
    session: Option<RoleSession<StsAssumer>>,
    /// Who reads, as errors name it: the role's ARN or the base identity.
    principal: String,
    budget: Arc<Budget>,
}

impl ParameterStore {
    pub fn new(
        client: aws_sdk_ssm::Client,
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

    pub fn region(&self) -> &str {
        &self.0.region
    }

    pub fn principal(&self) -> &str {
        &self.0.principal
    }

    /// Reads one entry on its own: its parameter with GetParameters, or its path.
    pub async fn fetch(
        &self,
        wanted: &Wanted,
        source: &ParameterSource,
    ) -> Result<Fetched, SourceError> {
        match source {
            ParameterSource::One { .. } => {
                let spelled = wanted.secret_id.as_ref();
                let (found, _) = self
                    .get(&[spelled])
                    .await
                    .map_err(|e| self.error_for(wanted, GET_PARAMETERS, e))?;
                match parameters::answer(spelled, &found) {
                    Some(parameter) => Ok(self.fetched(parameter)),
                    None => Err(self.not_found(wanted)),
                }
            }
            ParameterSource::Path { path, recursive } => {
                let found = self
                    .by_path(path, *recursive)
                    .await
                    .map_err(|e| self.error_for(wanted, BY_PATH, e))?;
                self.path_fetched(wanted, path, &found)
            }
        }
    }

    /// A parameter as the job writes it.
    pub fn fetched(&self, parameter: &Parameter) -> Fetched {
        Fetched {
            version_id: Some(parameter.version.to_string()),
            payload: parameters::payload_of(parameter),
            region: self.0.region.clone(),
            arn: parameter.arn.clone(),
        }
    }

    /// A path's parameters as the job writes them: one key each.
    // The error every read returns (the async ones too); boxing it here alone buys nothing.
    #[allow(clippy::result_large_err)]
    pub fn path_fetched(
        &self,
        wanted: &Wanted,
        path: &str,
        found: &[Parameter],
    ) -> Result<Fetched, SourceError> {
        match parameters::path_value(path, found) {
            Ok((payload, version)) => Ok(Fetched {
                version_id: Some(version),
                payload,
                region: self.0.region.clone(),
                arn: None,
            }),
            Err(PathProblem::Empty) => Err(SourceError::EmptyPath {
                secret: wanted.name.to_string(),
                path: path.to_owned(),
                region: self.0.region.clone(),
                hint: format!(
                    ". Check parameterPath (and recursive: a path lists only its own level unless recursive is true) and the region; parameters {principal} may not read are left out silently, so also check that its permissions policy allows ssm:GetParametersByPath on {arn} and {arn}/*. What was written before stays in place",
                    principal = self.0.principal,
                    arn = parameter_arn("aws", &self.0.region, "<account>", path.trim_end_matches('/')),
                ),
            }),
            Err(PathProblem::SameKey { key, first, second }) => Err(SourceError::SameKey {
                secret: wanted.name.to_string(),
                path: path.to_owned(),
                key,
                first,
                second,
            }),
        }
    }

    /// No such parameter, version or label.
    pub fn not_found(&self, wanted: &Wanted) -> SourceError {
        let spelled = wanted.secret_id.to_string();
        let hint = if spelled.contains(':') {
            ". Check the name and its selector: a version number must exist, and a label must be attached to a version (ssm label-parameter-version); what was written before stays in place".to_owned()
        } else {
            format!(
                ". Check the parameter's name (names are case-sensitive; a hierarchical name starts with '/') and the region ({region})",
                region = self.0.region
            )
        };
        SourceError::ParameterNotFound {
            secret: wanted.name.to_string(),
            parameter: spelled,
            region: self.0.region.clone(),
            hint,
        }
    }

    /// A failed call as the entry's error, with the fix.
    pub fn error_for(
        &self,
        wanted: &Wanted,
        operation: &'static str,
        err: CallError,
    ) -> SourceError {
        match err {
            CallError::Credentials(source) => SourceError::Credentials {
                secret: wanted.name.to_string(),
                source,
            },
            CallError::Aws(info) => SourceError::Aws {
                secret: wanted.name.to_string(),
                operation,
                secret_id: wanted.secret_id.to_string(),
                region: self.0.region.clone(),
                hint: self.hint(info.class, wanted, operation),
                info,
            },
        }
    }

    fn hint(&self, class: Class, wanted: &Wanted, operation: &str) -> String {
        let principal = &self.0.principal;
        let region = &self.0.region;
        let name = parameters::without_selector(&wanted.secret_id);
        match class {
            Class::AccessDenied if operation == DESCRIBE => format!(
                ". The permissions policy of {principal} must allow ssm:DescribeParameters on \"*\" (it takes no resource); or set fetchStrategy: batch to read without comparing versions"
            ),
            Class::AccessDenied => {
                let resource = if operation == BY_PATH {
                    format!("{}*", parameter_arn("aws", region, "<account>", name.trim_end_matches('/')))
                } else {
                    parameter_arn("aws", region, "<account>", name)
                };
                format!(
                    ". The permissions policy of {principal} must allow ssm:{operation} on {resource} (the ARN has no '/' of its own after \"parameter\": the name's leading '/' is the separator); `secret-ferry iam-policy` prints the document"
                )
            }
            Class::Kms => format!(
                ". The parameter is a SecureString encrypted with a customer-managed KMS key: its key policy must allow kms:Decrypt for {principal} with the condition kms:ViaService = ssm.{region}.amazonaws.com (the statement `secret-ferry iam-policy` prints as kmsKeyPolicyStatement)"
            ),
            Class::NotFound => format!(". Check the parameter's name and the region ({region})"),
            Class::InvalidRequest => ". Parameter Store refused the request: check the name, its selector and the path".to_owned(),
            Class::ExpiredToken => ". The credentials expired: check the role's session duration and that the base credentials are refreshed".to_owned(),
            Class::InvalidCredentials => format!(". The credentials of {principal} were not recognised"),
            Class::Throttled => ". Parameter Store's standard throughput is about 40 calls a second per account and region, shared by every reader: will retry with back-off (the last written files stay in place); lower parameterStoreRateLimit, or enable higher throughput and raise it".to_owned(),
            Class::Timeout | Class::Network | Class::Server => {
                ". Will retry with back-off; the last written files stay in place".to_owned()
            }
            Class::RegionDisabled | Class::MalformedPolicy | Class::Other => String::new(),
        }
    }

    async fn ready(&self) -> Result<(), CallError> {
        if let Some(session) = &self.0.session {
            session.get().await.map_err(CallError::Credentials)?;
        }
        self.0.budget.acquire().await;
        Ok(())
    }

    fn settled<T, E>(
        &self,
        result: &Result<
            T,
            aws_sdk_ssm::error::SdkError<
                E,
                aws_smithy_runtime_api::client::orchestrator::HttpResponse,
            >,
        >,
    ) where
        E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result {
            Ok(_) => self.0.budget.succeeded(),
            Err(err) if aws::classify(err).class == Class::Throttled => self.0.budget.throttled(),
            Err(_) => {}
        }
    }

    /// GetParameters of at most ten names (selectors allowed; the caller chunks, and AWS
    /// refuses more), decrypted: the parameters found, and the names Parameter Store called
    /// invalid (missing, or no such selector).
    pub async fn get(&self, names: &[&str]) -> Result<(Vec<Parameter>, Vec<String>), CallError> {
        self.ready().await?;
        let result = self
            .0
            .client
            .get_parameters()
            .set_names(Some(names.iter().map(|n| (*n).to_owned()).collect()))
            .with_decryption(true)
            .send()
            .await;
        self.settled(&result);
        let output = result.map_err(|err| CallError::Aws(aws::classify(&err)))?;
        let found = output
            .parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(parameter)
            .collect();
        Ok((found, output.invalid_parameters.unwrap_or_default()))
    }

    /// Every parameter under `path` (recursively or not), decrypted, page by page.
    pub async fn by_path(&self, path: &str, recursive: bool) -> Result<Vec<Parameter>, CallError> {
        self.all_pages(|next| async move {
            let result = self
                .0
                .client
                .get_parameters_by_path()
                .path(path)
                .recursive(recursive)
                .with_decryption(true)
                .max_results(PATH_PAGE)
                .set_next_token(next)
                .send()
                .await;
            self.settled(&result);
            let page = result.map_err(|err| CallError::Aws(aws::classify(&err)))?;
            let found = page
                .parameters
                .unwrap_or_default()
                .into_iter()
                .filter_map(parameter)
                .collect();
            Ok((found, page.next_token))
        })
        .await
    }

    /// Names and versions of the parameters named exactly `names` (at most 50 a call), or
    /// under `path`: what changed, with no value read and nothing decrypted.
    pub async fn describe(&self, filter: Describe<'_>) -> Result<Vec<Described>, CallError> {
        use aws_sdk_ssm::types::ParameterStringFilter;
        let filter = match filter {
            Describe::Names(names) => ParameterStringFilter::builder()
                .key("Name")
                .option("Equals")
                .set_values(Some(names.iter().map(|n| (*n).to_owned()).collect())),
            Describe::Path { path, recursive } => ParameterStringFilter::builder()
                .key("Path")
                .option(if recursive { "Recursive" } else { "OneLevel" })
                .values(path),
        }
        .build()
        .map_err(|e| CallError::Aws(aws::from_code("ValidationException", Some(&e.to_string()))))?;
        let filter = &filter;
        self.all_pages(|next| async move {
            let result = self
                .0
                .client
                .describe_parameters()
                .parameter_filters(filter.clone())
                .max_results(DESCRIBE_PAGE)
                .set_next_token(next)
                .send()
                .await;
            self.settled(&result);
            let page = result.map_err(|err| CallError::Aws(aws::classify(&err)))?;
            let listed = page
                .parameters
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    Some(Described {
                        name: p.name?,
                        version: p.version,
                    })
                })
                .collect();
            Ok((listed, page.next_token))
        })
        .await
    }

    /// Every page `page` returns, each drawing from the budget first: `page` gets the
    /// previous page's token and answers the items with the next token.
    async fn all_pages<T, F, Fut>(&self, mut page: F) -> Result<Vec<T>, CallError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), CallError>>,
    {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            self.ready().await?;
            let (items, token) = page(next.take()).await?;
            all.extend(items);
            match token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(all),
            }
        }
    }
}

/// A parameter's ARN: `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME` for `NAME` or `/NAME`
/// alike. Parameter Store adds no `/` after `parameter` when the name has its own.
pub fn parameter_arn(partition: &str, region: &str, account: &str, name: &str) -> String {
    let name = name.strip_prefix('/').unwrap_or(name);
    format!("arn:{partition}:ssm:{region}:{account}:parameter/{name}")
}

/// What DescribeParameters lists.
pub enum Describe<'a> {
    Names(&'a [&'a str]),
    Path { path: &'a str, recursive: bool },
}

fn parameter(p: aws_sdk_ssm::types::Parameter) -> Option<Parameter> {
    Some(Parameter {
        name: p.name?,
        selector: p.selector,
        version: p.version,
        kind: p.r#type.map(|t| t.as_str().to_owned()).unwrap_or_default(),
        value: Sensitive::new(p.value?),
        arn: p.arn,
    })
}
