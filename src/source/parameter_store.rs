//! SSM Parameter Store, the second source (issue 20): the three reads its economy rests on.
//! GetParameters takes at most ten names (each with an optional `:version` or `:label`
//! selector) and decrypts SecureStrings; GetParametersByPath returns a path's parameters ten a
//! page; DescribeParameters lists names and versions (no values, no KMS call) fifty a page,
//! so that only changed parameters are read. Every call draws from the budget of its
//! (account, region), whose default is Parameter Store's standard throughput.
//!
//! Not wired into the configuration yet: the reads are tested against moto on their own.

use super::{Budget, CallError};
use crate::aws::{self, Class};
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
    budget: Arc<Budget>,
}

impl ParameterStore {
    pub fn new(
        client: aws_sdk_ssm::Client,
        region: String,
        session: Option<RoleSession<StsAssumer>>,
        budget: Arc<Budget>,
    ) -> Self {
        Self(Arc::new(Shared {
            client,
            region,
            session,
            budget,
        }))
    }

    pub fn region(&self) -> &str {
        &self.0.region
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
        let mut all = Vec::new();
        let mut next = None;
        loop {
            self.ready().await?;
            let result = self
                .0
                .client
                .get_parameters_by_path()
                .path(path)
                .recursive(recursive)
                .with_decryption(true)
                .max_results(PATH_PAGE)
                .set_next_token(next.take())
                .send()
                .await;
            self.settled(&result);
            let page = result.map_err(|err| CallError::Aws(aws::classify(&err)))?;
            all.extend(
                page.parameters
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(parameter),
            );
            match page.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(all),
            }
        }
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
        let mut all = Vec::new();
        let mut next = None;
        loop {
            self.ready().await?;
            let result = self
                .0
                .client
                .describe_parameters()
                .parameter_filters(filter.clone())
                .max_results(DESCRIBE_PAGE)
                .set_next_token(next.take())
                .send()
                .await;
            self.settled(&result);
            let page = result.map_err(|err| CallError::Aws(aws::classify(&err)))?;
            all.extend(
                page.parameters
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| {
                        Some(Described {
                            name: p.name?,
                            version: p.version,
                        })
                    }),
            );
            match page.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(all),
            }
        }
    }
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
