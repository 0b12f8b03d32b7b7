//! A target that writes a secret as one file in a format an app loads directly (an
//! `.env`, a JSON or `.properties` file, or a single raw value), replaced atomically.

use super::formats::{self, FormatError};
use super::fs::{replace_file, FsError, ReplaceError};
use super::WriteOutcome;
use crate::config::FileFormat;
use crate::transform::Rendered;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct SingleFile {
    path: PathBuf,
    format: FileFormat,
    mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SingleFileError {
    #[error("cannot write {}: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error(transparent)]
    Io(FsError),
    #[error("refusing to replace {}: it is a {found}, not a regular file", path.display())]
    NotAFile { path: PathBuf, found: &'static str },
}

impl SingleFileError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Format { source, .. } => source.kind(),
            Self::Io(_) => "io",
            Self::NotAFile { .. } => "not_a_file",
        }
    }
}

impl From<ReplaceError> for SingleFileError {
    fn from(e: ReplaceError) -> Self {
        match e {
            ReplaceError::Io(e) => Self::Io(e),
            ReplaceError::NotAFile { path, found } => Self::NotAFile { path, found },
        }
    }
}

impl SingleFile {
    /// The target this sink writes, as configured.
    pub fn target(&self) -> crate::config::SingleFileTarget {
        crate::config::SingleFileTarget {
            path: self.path.clone(),
            format: self.format,
            mode: self.mode,
        }
    }

    pub fn new(path: impl Into<PathBuf>, format: FileFormat, mode: u32) -> Self {
        Self {
            path: path.into(),
            format,
            mode: mode & 0o777,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Blocking; the daemon calls it inside spawn_blocking. A format error leaves the
    /// previous file as it was.
    pub fn write(&self, rendered: &Rendered) -> Result<WriteOutcome, SingleFileError> {
        let content =
            formats::render(self.format, rendered).map_err(|source| SingleFileError::Format {
                path: self.path.clone(),
                source,
            })?;
        if self.holds(content.expose()) {
            return Ok(WriteOutcome::Unchanged);
        }
        replace_file(&self.path, content.expose(), self.mode)?;
        Ok(WriteOutcome::Written)
    }

    /// Deletes the file (a pruned `find` match); a missing file is not an error. Blocking.
    pub fn remove(&self) -> std::io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether a regular file (never read through a symlink) already has these bytes and mode.
    fn holds(&self, content: &[u8]) -> bool {
        let Ok(meta) = fs::symlink_metadata(&self.path) else {
            return false;
        };
        meta.file_type().is_file()
            && meta.permissions().mode() & 0o777 == self.mode
            && meta.len() == content.len() as u64
            && fs::read(&self.path).is_ok_and(|old| old == content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Sensitive;

    fn secret(pairs: &[(&str, &str)]) -> Rendered {
        Rendered {
            files: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Sensitive::new(v.as_bytes().to_vec())))
                .collect(),
        }
    }

    #[test]
    fn writes_once_then_only_on_change_with_the_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/app.env");
        let file = SingleFile::new(&path, FileFormat::Env, 0o440);
        assert_eq!(
            file.write(&secret(&[("A", "1")])).unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "A='1'\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o440
        );
        let before = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(
            file.write(&secret(&[("A", "1")])).unwrap(),
            WriteOutcome::Unchanged
        );
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);
        assert_eq!(
            file.write(&secret(&[("A", "2")])).unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "A='2'\n");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }

    #[test]
    fn a_format_error_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        let file = SingleFile::new(&path, FileFormat::Env, 0o400);
        file.write(&secret(&[("A", "1")])).unwrap();
        let err = file.write(&secret(&[("not a name", "x")])).unwrap_err();
        assert_eq!(err.kind(), "bad_key");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "A='1'\n");
    }

    #[test]
    fn a_symlink_in_the_way_is_refused_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "untouched").unwrap();
        let path = dir.path().join("app.json");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let err = SingleFile::new(&path, FileFormat::Json, 0o400)
            .write(&secret(&[("A", "1")]))
            .unwrap_err();
        assert_eq!(err.kind(), "not_a_file");
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "untouched");
    }
}
