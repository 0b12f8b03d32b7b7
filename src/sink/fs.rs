//! Filesystem steps shared by the sinks; each failure says which operation on which path.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories the sinks create: traversable by an app running as another user; the
/// files' own modes decide who may read them.
pub const DIR_MODE: u32 = 0o755;

/// An I/O failure with its context; each sink wraps it in its own error type (or, as
/// `SingleFileError`, shows it as it is).
#[derive(Debug, thiserror::Error)]
#[error("failed to {op} {}: {source}{}", path.display(), denied_hint(source))]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub fn fs_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError {
    let path = path.to_path_buf();
    move |source| FsError { op, path, source }
}

/// For a permission failure, who the daemon is: the usual cause in a container is a volume
/// that the image's user (65532) may not write, and the fix is the volume's owner or the pod's
/// `fsGroup`, so the message names the ids to give it. Empty for every other failure.
pub fn denied_hint(source: &io::Error) -> String {
    if source.kind() != io::ErrorKind::PermissionDenied {
        return String::new();
    }
    match process_ids() {
        Some((uid, gid)) => format!(
            " (secret-ferry runs as uid {uid}, gid {gid}: the directory must be writable by them, \
             e.g. through its owner or the pod's fsGroup)"
        ),
        None => String::new(),
    }
}

/// The effective uid and gid of this process: the owner of `/proc/self` (no `unsafe`
/// `geteuid` needed).
fn process_ids() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").ok().map(|m| (m.uid(), m.gid()))
}

/// `create_dir_all` would leave missing parents at `0o755 & !umask`; with a daemon umask
/// of 077 an app running as another user could then not even traverse to its secrets, so
/// each directory created here gets exactly [`DIR_MODE`]. Existing ones are left alone.
pub fn create_dirs(path: &Path) -> Result<(), FsError> {
    let mut missing = Vec::new();
    let mut current = Some(path);
    while let Some(dir) = current {
        if dir.as_os_str().is_empty() {
            break;
        }
        match fs::symlink_metadata(dir) {
            Ok(_) => break,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                missing.push(dir);
                current = dir.parent();
            }
            Err(err) => return Err(fs_error("inspect", dir)(err)),
        }
    }
    for dir in missing.into_iter().rev() {
        match DirBuilder::new().mode(DIR_MODE).create(dir) {
            Ok(()) => fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                .map_err(fs_error("set permissions on", dir))?,
            // Someone else created it meanwhile; fine as long as it is a directory.
            Err(err)
                if err.kind() == io::ErrorKind::AlreadyExists
                    && fs::metadata(dir).is_ok_and(|meta| meta.is_dir()) => {}
            Err(err) => return Err(fs_error("create directory", dir)(err)),
        }
    }
    Ok(())
}

/// A rename is only durable once the directory holding it is fsynced.
pub fn sync_dir(path: &Path) -> Result<(), FsError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(fs_error("sync directory", path))
}

/// Until `set_permissions` applies the configured mode, nobody else may open the file.
const STAGING_MODE: u32 = 0o600;
/// `create_new` makes a clash harmless; retrying only matters if names ever repeat.
const TEMP_NAME_ATTEMPTS: usize = 8;

#[derive(Debug)]
pub enum ReplaceError {
    Io(FsError),
    /// Something other than a regular file is in the way; it is never followed or removed.
    NotAFile {
        path: PathBuf,
        found: &'static str,
    },
}

impl From<FsError> for ReplaceError {
    fn from(e: FsError) -> Self {
        ReplaceError::Io(e)
    }
}

/// Replaces the file at `path` with `content`, mode exactly `mode & 0o777`, in one
/// `rename(2)`: a reader sees the old complete file or the new one, never a mix. Refuses
/// when a symlink, directory or special file is at `path`. On failure the previous file
/// is left as it was and no temp file remains.
pub fn replace_file(path: &Path, content: &[u8], mode: u32) -> Result<(), ReplaceError> {
    refuse_non_file(path)?;
    replace_unchecked(path, content, mode & 0o777)
}

/// Everything after the target check; tests call it directly to make the rename fail.
pub fn replace_unchecked(path: &Path, content: &[u8], mode: u32) -> Result<(), ReplaceError> {
    let name = path.file_name().ok_or_else(|| {
        fs_error("pick a temp file name for", path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_dirs(&dir)?;

    let (tmp, file) = create_temp(&dir, &name.to_string_lossy())?;
    let staged = Staged(Some(tmp.clone()));
    fill(file, &tmp, content, mode)?;
    // rename(2) replaces a symlink that appeared since the check above rather than
    // following it, and fails on a directory, so the race cannot redirect the write.
    fs::rename(&tmp, path).map_err(fs_error("rename a temp file onto", path))?;
    staged.disarm();
    // The new file is in place even if this fails; reporting it makes the caller
    // write again, which is harmless, instead of trusting a rename a crash may undo.
    Ok(sync_dir(&dir)?)
}

/// `symlink_metadata`, so that a symlink is reported as what it is, never followed.
fn refuse_non_file(path: &Path) -> Result<(), ReplaceError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(fs_error("inspect", path)(err).into()),
    };
    let kind = meta.file_type();
    let found = if kind.is_file() {
        return Ok(());
    } else if kind.is_symlink() {
        "symlink"
    } else if kind.is_dir() {
        "directory"
    } else {
        "special file"
    };
    Err(ReplaceError::NotAFile {
        path: path.to_path_buf(),
        found,
    })
}

fn fill(mut file: File, tmp: &Path, content: &[u8], mode: u32) -> Result<(), ReplaceError> {
    // fchmod on the open file: the umask applied at creation must not decide who can
    // read secrets, and the fd stays writable even when the mode is read-only.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(fs_error("set permissions on", tmp))?;
    file.write_all(content).map_err(fs_error("write", tmp))?;
    file.sync_all().map_err(fs_error("sync", tmp))?;
    Ok(())
}

/// Removes the temp file on every early return, so a failed write leaves nothing behind.
struct Staged(Option<PathBuf>);

impl Staged {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(tmp) = self.0.take() {
            if let Err(err) = fs::remove_file(&tmp) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %tmp.display(), "could not remove a temp file: {err}");
                }
            }
        }
    }
}

/// `.<name>.<random>.tmp` in the target's directory: the same filesystem, so the rename
/// is atomic, and a dot name, so globs and most directory watchers skip it.
/// `create_new` (O_EXCL) neither follows nor reuses anything already at that name.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File), ReplaceError> {
    let mut last_err = None;
    for _ in 0..TEMP_NAME_ATTEMPTS {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", random_suffix()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(STAGING_MODE)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_err = Some((tmp, err)),
            Err(err) => return Err(fs_error("create a temp file", &tmp)(err).into()),
        }
    }
    let (tmp, err) = last_err.unwrap_or_else(|| {
        (
            dir.to_path_buf(),
            io::Error::from(io::ErrorKind::AlreadyExists),
        )
    });
    Err(fs_error("create a temp file", &tmp)(err).into())
}

pub(crate) fn random_suffix() -> u64 {
    fastrand::u64(..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_permission_failure_names_the_daemons_ids_and_nothing_else_does() {
        let uid = fs::metadata("/proc/self").unwrap().uid();
        let denied = FsError {
            op: "create",
            path: PathBuf::from("/var/run/secrets/ferry/db"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        }
        .to_string();
        assert!(
            denied.starts_with("failed to create /var/run/secrets/ferry/db: "),
            "{denied}"
        );
        assert!(
            denied.contains(&format!("runs as uid {uid}, gid ")),
            "{denied}"
        );
        let full = io::Error::from_raw_os_error(28);
        assert_eq!(denied_hint(&full), "");
    }
}
