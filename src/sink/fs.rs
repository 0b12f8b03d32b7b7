//! Filesystem steps shared by the sinks; each failure says which operation on which path.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories the sinks create: traversable by an app running as another user; the
/// files' own modes decide who may read them.
pub const DIR_MODE: u32 = 0o755;

/// An I/O failure with its context; each sink wraps it in its own error type.
#[derive(Debug)]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

pub fn fs_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError {
    let path = path.to_path_buf();
    move |source| FsError { op, path, source }
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
