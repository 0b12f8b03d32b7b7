//! Why a directory write failed.

use crate::transform::TransformError;
use std::io;
use std::path::{Path, PathBuf};

/// `Display` includes the cause because callers log errors with `{err}` only;
/// neither an `io::Error` nor a `TransformError` ever carries secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("failed to {op} {}: {source}{}", path.display(), crate::sink::fs::denied_hint(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to replace {}: it exists and is not a symlink", path.display())]
    NotASymlink { path: PathBuf },
    #[error("refusing to write secret into {}: {source}", dir.display())]
    UnsafeKey {
        dir: PathBuf,
        #[source]
        source: TransformError,
    },
}

impl From<crate::sink::fs::FsError> for FileSinkError {
    fn from(e: crate::sink::fs::FsError) -> Self {
        Self::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl FileSinkError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FileSinkError::Io { .. } => "io",
            FileSinkError::NotASymlink { .. } => "not_a_symlink",
            FileSinkError::UnsafeKey { .. } => "unsafe_key",
        }
    }
}

pub(super) fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileSinkError {
    let path = path.to_path_buf();
    move |source| FileSinkError::Io { op, path, source }
}
