//! Where secrets are written: a directory of files (`file`), one formatted file
//! (`single_file`, in the `formats`), or a Kubernetes Secret (`kube_secret`); `fs` holds
//! the filesystem steps they share. For pushes, Secrets Manager (`secrets_manager`), with
//! `push_plan` (pure) deciding what to call.

pub mod file;
pub mod formats;
pub(crate) mod fs;
pub mod kube_secret;
pub mod push_plan;
pub mod secrets_manager;
pub mod single_file;

use file::FileSinkError;
use kube_secret::KubeSecretError;
use single_file::SingleFileError;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The target already held exactly this content: nothing was written.
    Unchanged,
}

/// Why a write to a target failed, whatever the target; each kind's message is its own.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    File(#[from] FileSinkError),
    #[error(transparent)]
    SingleFile(#[from] SingleFileError),
    #[error(transparent)]
    KubeSecret(#[from] KubeSecretError),
}

impl SinkError {
    /// Bounded label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(e) => e.kind(),
            Self::SingleFile(e) => e.kind(),
            Self::KubeSecret(e) => e.kind(),
        }
    }
}
