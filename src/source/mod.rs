//! Where secret values come from: AWS Secrets Manager, read with GetSecretValue,
//! BatchGetSecretValue or ListSecrets (see `plan` for which is used when); and, for
//! pushes, the files an app writes (`push_files`) or a watched Kubernetes Secret
//! (`push_kube`). SSM Parameter Store is the second source (`parameter_store`, with the
//! pure rules in `parameters`).

pub mod auto;
mod budget;
pub mod change_events;
pub mod change_queue;
mod clients;
pub mod parameter_store;
pub mod parameters;
pub mod plan;
pub mod push_files;
pub mod push_kube;
pub mod secret_id;
mod secrets_manager;

pub use budget::Budget;
pub use clients::{Clients, UnknownRole};

pub use secret_id::id_matches;
pub use secrets_manager::{
    BatchValue, ListQuery, Listed, Pages, SecretsManager, BATCH, BATCH_MAX, GET, LIST,
};

use crate::aws::{Class, ErrorInfo};
use crate::config::{SecretConfig, VersionSelector};
use crate::credentials::CredentialsError;
use crate::secret::Payload;
use std::sync::Arc;

/// What reading one configured secret takes: its name (for errors), id and version. A job
/// keeps this for its lifetime, not the secret's whole config.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Shared with the metrics record, readiness and the refresh handle: one copy a secret.
    pub name: Arc<str>,
    /// The secret id; for a Parameter Store entry, its parameter (selector included) or path.
    pub secret_id: Box<str>,
    pub version: VersionSelector,
}

impl Wanted {
    pub fn of(config: &SecretConfig) -> Self {
        Self {
            name: config.name.as_str().into(),
            // A Parameter Store entry is read (and named in errors) by its parameter's name
            // as GetParameters takes it, selector included, or by its path.
            secret_id: match &config.parameter {
                Some(parameter) => parameter.spelled().into(),
                None => config.secret_id.as_str().into(),
            },
            version: config.version.clone(),
        }
    }
}

/// One secret value as read, with the version it belongs to.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub version_id: Option<String>,
    pub payload: Payload,
    /// The region that served it: the secret's own, or its failover region.
    pub region: String,
    /// The complete ARN AWS answered with: settles what a partial ARN named.
    pub arn: Option<String>,
}

/// Why a call made for several secrets at once (BatchGetSecretValue, ListSecrets) failed;
/// turned into one `SourceError` per secret with `SecretsManager::error_for`.
#[derive(Debug, Clone)]
pub enum CallError {
    Credentials(CredentialsError),
    Aws(ErrorInfo),
}

impl CallError {
    /// Bounded label for metrics and structured logs, as `SourceError::kind` gives it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials(e) => e.kind(),
            Self::Aws(info) => info.class.as_str(),
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Credentials(e) => e.is_transient(),
            Self::Aws(info) => info.class.is_transient(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("secret '{secret}': cannot obtain credentials: {source}")]
    Credentials {
        secret: String,
        #[source]
        source: CredentialsError,
    },
    #[error("secret '{secret}': {operation} of {secret_id} in {region} failed: {info}{hint}")]
    Aws {
        secret: String,
        operation: &'static str,
        secret_id: String,
        region: String,
        info: ErrorInfo,
        hint: String,
    },
    #[error("secret '{secret}': GetSecretValue of {secret_id} returned neither SecretString nor SecretBinary")]
    Empty { secret: String, secret_id: String },
    #[error("secret '{secret}': GetParameters in {region} found no parameter {parameter}{hint}")]
    ParameterNotFound {
        secret: String,
        parameter: String,
        region: String,
        hint: String,
    },
    #[error(
        "secret '{secret}': GetParametersByPath found no parameter under {path} in {region}{hint}"
    )]
    EmptyPath {
        secret: String,
        path: String,
        region: String,
        hint: String,
    },
    #[error("secret '{secret}': parameters {first} and {second} under {path} would both be written as key {key:?}; rename one, or read them with separate entries")]
    SameKey {
        secret: String,
        path: String,
        key: String,
        first: String,
        second: String,
    },
}

impl SourceError {
    /// The configured name of the secret that failed.
    pub fn secret(&self) -> &str {
        match self {
            Self::Credentials { secret, .. }
            | Self::Aws { secret, .. }
            | Self::Empty { secret, .. }
            | Self::ParameterNotFound { secret, .. }
            | Self::EmptyPath { secret, .. }
            | Self::SameKey { secret, .. } => secret,
        }
    }

    /// Bounded label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials { source, .. } => source.kind(),
            Self::Aws { info, .. } => info.class.as_str(),
            Self::Empty { .. } => "empty_secret",
            Self::ParameterNotFound { .. } => Class::NotFound.as_str(),
            Self::EmptyPath { .. } => "path_empty",
            Self::SameKey { .. } => "path_keys",
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Credentials { source, .. } => source.is_transient(),
            Self::Aws { info, .. } => info.class.is_transient(),
            Self::Empty { .. }
            | Self::ParameterNotFound { .. }
            | Self::EmptyPath { .. }
            | Self::SameKey { .. } => false,
        }
    }
}
