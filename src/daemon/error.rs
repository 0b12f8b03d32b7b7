//! What can go wrong building the daemon (`BuildError`) and syncing one secret
//! (`SyncError`, counted and logged by its bounded `kind()`).

use crate::mapping::MappingError;
use crate::sink::SinkError;
use crate::source::{SourceError, UnknownRole};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("region: no region is configured: set `region` in the config file or the AWS_REGION environment variable")]
    NoRegion,
    #[error(transparent)]
    UnknownRole(#[from] UnknownRole),
    #[error("secret '{secret}': {source}")]
    Mapping {
        secret: String,
        #[source]
        source: MappingError,
    },
    #[error(
        "secret '{secret}' has a kubernetesSecret target, but no Kubernetes client was set up"
    )]
    NoKube { secret: String },
    #[error("push '{push}' reads a kubernetesSecret source, but no Kubernetes client was set up")]
    PushNoKube { push: String },
    #[error("push '{push}': from.kubernetesSecret has no namespace and the daemon's own is unknown (no service-account namespace file, no POD_NAMESPACE): set from.kubernetesSecret.namespace")]
    PushNoNamespace { push: String },
    #[error(transparent)]
    Kube(#[from] crate::k8s::KubeSetupError),
    #[error("cannot read /dev/urandom for the pushes' version-id key: {0}")]
    Random(#[source] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("secret '{secret}': {source}")]
    Mapping {
        secret: String,
        #[source]
        source: MappingError,
    },
    #[error("secret '{secret}': {source}")]
    Sink {
        secret: String,
        #[source]
        source: SinkError,
    },
    #[error("secret '{secret}': the file writer task failed: {reason}")]
    WriterPanicked { secret: String, reason: String },
}

impl SyncError {
    /// A write to one of `secret`'s targets failed.
    pub(crate) fn sink(secret: String, source: impl Into<SinkError>) -> Self {
        Self::Sink {
            secret,
            source: source.into(),
        }
    }

    /// The role, when the failure is that its credentials could not be had: one cause
    /// shared by every secret read with it, which `RoleSession` logs once per AssumeRole.
    pub fn credentials_role(&self) -> Option<&str> {
        match self {
            Self::Source(SourceError::Credentials { source, .. }) => Some(source.role()),
            _ => None,
        }
    }

    /// The configured name of the secret that failed.
    pub fn secret(&self) -> &str {
        match self {
            Self::Source(e) => e.secret(),
            Self::Mapping { secret, .. }
            | Self::Sink { secret, .. }
            | Self::WriterPanicked { secret, .. } => secret,
        }
    }

    /// Bounded label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Source(e) => e.kind(),
            Self::Mapping { source, .. } => source.kind(),
            Self::Sink { source, .. } => source.kind(),
            Self::WriterPanicked { .. } => "internal",
        }
    }
}

/// Why one push attempt did not leave the remote secret matching its source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Source(#[from] crate::source::push_files::PushSourceError),
    #[error(transparent)]
    Remote(#[from] crate::sink::secrets_manager::RemoteError),
    #[error("push '{push}': secret {secret_name} in {region} {why}; its value, tags and resource policy are left as they are. {fix}")]
    Refused {
        push: String,
        secret_name: String,
        region: String,
        why: String,
        fix: &'static str,
        kind: &'static str,
    },
    #[error("push '{push}': the value of {secret_name} could not be read back to compare (neither SecretString nor SecretBinary)")]
    EmptyRemote { push: String, secret_name: String },
    #[error("push '{push}': the plan for {secret_name} did not settle (a bug); nothing more is written this time")]
    Unsettled { push: String, secret_name: String },
}

impl PushError {
    /// Bounded label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Source(e) => e.kind(),
            Self::Remote(e) => e.kind(),
            Self::Refused { kind, .. } => kind,
            Self::EmptyRemote { .. } => "empty_secret",
            Self::Unsettled { .. } => "internal",
        }
    }
}
