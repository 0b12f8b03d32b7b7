//! Writes rendered secrets into a directory the way kubelet's AtomicWriter
//! does, so that a reader never sees a mix of old and new keys:
//!
//! ```text
//! dir/
//!   ..2024_05_01_12_00_00.123456789_1a2b3c4d/   real files, mode as configured
//!   ..data -> ..2024_05_01_12_00_00.123456789_1a2b3c4d
//!   password -> ..data/password
//!   username -> ..data/username
//! ```
//!
//! Every update writes a complete new timestamped directory and then swaps the
//! `..data` symlink with one `rename(2)`, which is atomic. Readers that open
//! `dir/password` resolve through `..data` and therefore see either the whole
//! old secret or the whole new one.
//!
//! Names starting with `..` belong to this writer; everything else in `dir`
//! may belong to someone else, so the sink only ever replaces or removes
//! symlinks there, never regular files or directories.
//!
//! One writer per directory: `clean_leftovers` would otherwise remove another
//! writer's half-built directory.

mod error;
mod names;

use error::io_error;
pub use error::FileSinkError;
use names::{is_timestamp_dir_name, timestamp_dir_name};
use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::fs::{create_dirs, sync_dir, DIR_MODE};
use super::WriteOutcome;
use crate::secret::Sensitive;
use crate::transform::{check_key, Rendered};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
/// Staging name used to replace a foreign visible symlink atomically, so the
/// key never disappears for a reader in between.
const LINK_TMP: &str = "..link_tmp";
/// Only permission bits: setuid/setgid/sticky have no meaning for secret files.
const PERMISSION_BITS: u32 = 0o777;

#[derive(Clone)]
pub struct FileSink {
    dir: PathBuf,
    mode: u32,
}

// === impl FileSink ===

impl FileSink {
    /// The target this sink writes, as configured.
    pub fn target(&self) -> crate::config::FileTarget {
        crate::config::FileTarget {
            dir: self.dir.clone(),
            mode: self.mode,
        }
    }

    /// `mode` is applied to every secret file exactly (umask does not apply);
    /// bits outside 0o777 are dropped.
    pub fn new(dir: impl Into<PathBuf>, mode: u32) -> Self {
        Self {
            dir: dir.into(),
            mode: mode & PERMISSION_BITS,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocking; the daemon calls it inside spawn_blocking.
    pub fn write(&self, rendered: &Rendered) -> Result<WriteOutcome, FileSinkError> {
        // Before touching the disk at all, so a bad secret leaves no trace.
        self.check_keys(rendered)?;
        self.ensure_dir()?;
        self.clean_leftovers()?;

        if let Some(current) = self.current_data_dir() {
            if self.matches(&current, rendered) {
                return Ok(WriteOutcome::Unchanged);
            }
        }

        // Refusing after the swap would leave the new secret half-published.
        self.check_visible_names(rendered)?;

        let new_name = timestamp_dir_name(SystemTime::now());
        let mut staging = Staging::default();
        self.stage(&new_name, rendered, &mut staging)?;
        // The links of keys this version adds go in before the swap: until `..data`
        // moves they point at nothing (a reader sees the key as absent, as in the old
        // version), and the one rename below makes every key of the new version visible
        // at once. Made after the swap, a crash in between would leave the new version
        // published with some of its keys missing until the next write.
        let added: Vec<PathBuf> = rendered
            .files
            .keys()
            .map(|key| self.dir.join(key))
            .filter(|path| fs::symlink_metadata(path).is_err())
            .collect();
        let published = self
            .link_visible(rendered)
            .and_then(|()| Ok(sync_dir(&self.dir)?))
            .and_then(|()| self.swap(&new_name, &mut staging));
        if let Err(err) = published {
            // The old version stays exactly as it was, without links to keys it lacks.
            for path in &added {
                let _ = fs::remove_file(path);
            }
            return Err(err);
        }
        sync_dir(&self.dir)?;

        // Housekeeping only: readers already see the new secret, so an error
        // here would report an update that did happen as failed. The next
        // write (or start-up) retries both.
        self.prune_visible(rendered);
        if let Err(err) = self.clean_leftovers() {
            tracing::warn!(error = %err, "could not remove previous secret directory");
        }
        Ok(WriteOutcome::Written)
    }

    /// Takes the secret away (a pruned `find` match): the visible links, `..data` and the
    /// data directory go; anything else a user put in `dir` stays, and so does `dir` itself
    /// unless it is left empty. Blocking.
    pub fn remove(&self) -> Result<(), FileSinkError> {
        if fs::symlink_metadata(&self.dir).is_err() {
            return Ok(());
        }
        self.prune_visible(&Rendered::default());
        let current = self.current_data_dir();
        remove_entry(&self.dir.join(DATA))?;
        if let Some(current) = current {
            remove_entry(&self.dir.join(current))?;
        }
        self.clean_leftovers()?;
        sync_dir(&self.dir)?;
        // Not empty means someone else's files are there: keep them and the directory.
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }

    /// Removes leftover `..<timestamp>` dirs and `..data_tmp` from a crashed run; called at start-up and at the start of write().
    ///
    /// Also removes `..link_tmp`. The directory `..data` currently points to
    /// is kept, and so is every other name (including a user's own `..x`),
    /// because only names this writer produces are known to be disposable.
    /// A missing `dir` is not an error: there is nothing to clean yet.
    pub fn clean_leftovers(&self) -> Result<(), FileSinkError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_error("list", &self.dir)(err)),
        };
        let keep = self.current_data_dir();
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let leftover = name == DATA_TMP
                || name == LINK_TMP
                || (is_timestamp_dir_name(name) && keep.as_deref() != Some(name));
            if leftover {
                remove_entry(&entry.path())?;
            }
        }
        Ok(())
    }

    fn check_keys(&self, rendered: &Rendered) -> Result<(), FileSinkError> {
        for key in rendered.files.keys() {
            self.check_key(key)?;
        }
        Ok(())
    }

    fn check_key(&self, key: &str) -> Result<(), FileSinkError> {
        check_key(key).map_err(|source| FileSinkError::UnsafeKey {
            dir: self.dir.clone(),
            source,
        })
    }

    fn ensure_dir(&self) -> Result<(), FileSinkError> {
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(FileSinkError::Io {
                op: "use as a directory",
                path: self.dir.clone(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(create_dirs(&self.dir)?),
            Err(err) => Err(io_error("inspect", &self.dir)(err)),
        }
    }

    /// The name of the directory `..data` points to, if and only if it is a
    /// symlink to a timestamped directory directly inside `dir`. Anything else
    /// (absolute target, `../x`, a symlinked directory, unreadable) means the
    /// current state is unknown and must not be read through.
    fn current_data_dir(&self) -> Option<String> {
        let link = self.dir.join(DATA);
        if !fs::symlink_metadata(&link).ok()?.file_type().is_symlink() {
            return None;
        }
        let target = fs::read_link(&link).ok()?;
        let target = target.to_str()?;
        if target.contains('/') || !is_timestamp_dir_name(target) {
            return None;
        }
        let meta = fs::symlink_metadata(self.dir.join(target)).ok()?;
        meta.is_dir().then(|| target.to_owned())
    }

    /// True only if the current directory holds exactly the rendered files
    /// (names, bytes, modes) and the visible links are exactly ours. Any
    /// doubt, including read errors, answers false: a needless rewrite is
    /// cheap, a missed update is not.
    fn matches(&self, current: &str, rendered: &Rendered) -> bool {
        let data_dir = self.dir.join(current);
        let Ok(entries) = fs::read_dir(&data_dir) else {
            return false;
        };
        let mut count = 0usize;
        for entry in entries {
            let Ok(entry) = entry else {
                return false;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return false;
            };
            let Some(expected) = rendered.files.get(name) else {
                return false;
            };
            if check_key(name).is_err() || !self.file_matches(&data_dir.join(name), expected) {
                return false;
            }
            count += 1;
        }
        if count != rendered.files.len() {
            return false;
        }
        rendered
            .files
            .keys()
            .all(|key| self.is_our_link(&self.dir.join(key), key))
            && !self.has_stale_links(&rendered.files)
    }

    fn file_matches(&self, path: &Path, expected: &Sensitive<Vec<u8>>) -> bool {
        let expected = expected.expose();
        let Ok(meta) = fs::symlink_metadata(path) else {
            return false;
        };
        let Ok(expected_len) = u64::try_from(expected.len()) else {
            return false;
        };
        if !meta.file_type().is_file()
            || meta.permissions().mode() & 0o7777 != self.mode
            || meta.len() != expected_len
        {
            return false;
        }
        let Ok(file) = File::open(path) else {
            return false;
        };
        // Without O_NOFOLLOW (no libc here) the entry could be swapped for a
        // symlink between lstat and open; the inode check makes sure bytes
        // from anywhere else are never trusted.
        match file.metadata() {
            Ok(opened) if opened.dev() == meta.dev() && opened.ino() == meta.ino() => {}
            _ => return false,
        }
        let mut actual = Vec::with_capacity(expected.len());
        // One byte more than expected, to notice a file that grew meanwhile.
        if file
            .take(expected_len.saturating_add(1))
            .read_to_end(&mut actual)
            .is_err()
        {
            return false;
        }
        actual == *expected
    }

    fn is_our_link(&self, path: &Path, key: &str) -> bool {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::read_link(path).is_ok_and(|target| target == Path::new(&link_target(key)))
            }
            _ => false,
        }
    }

    fn has_stale_links(&self, keep: &BTreeMap<String, Sensitive<Vec<u8>>>) -> bool {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return true;
        };
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            match name.to_str() {
                Some(name) if !name.starts_with("..") && !keep.contains_key(name) => {
                    points_into_data(&entry.path())
                }
                _ => false,
            }
        })
    }

    fn check_visible_names(&self, rendered: &Rendered) -> Result<(), FileSinkError> {
        for key in rendered.files.keys() {
            let path = self.dir.join(key);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {}
                Ok(_) => return Err(FileSinkError::NotASymlink { path }),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error("inspect", &path)(err)),
            }
        }
        Ok(())
    }

    fn stage(
        &self,
        name: &str,
        rendered: &Rendered,
        staging: &mut Staging,
    ) -> Result<(), FileSinkError> {
        let path = self.dir.join(name);
        // Not recursive: an existing directory of that name is not ours to fill.
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(&path)
            .map_err(io_error("create directory", &path))?;
        staging.dir = Some(path.clone());
        fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))
            .map_err(io_error("set permissions on", &path))?;

        for (key, value) in &rendered.files {
            self.check_key(key)?;
            let file_path = path.join(key);
            // Owner-only until the final mode is set, so a wider umask never
            // exposes the bytes; create_new refuses anything already there.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file_path)
                .map_err(io_error("create file", &file_path))?;
            file.write_all(value.expose())
                .map_err(io_error("write", &file_path))?;
            file.set_permissions(Permissions::from_mode(self.mode))
                .map_err(io_error("set permissions on", &file_path))?;
            file.sync_all().map_err(io_error("sync", &file_path))?;
        }
        Ok(sync_dir(&path)?)
    }

    /// Points `..data` at `new_name` with one rename; from then on the new directory
    /// must survive, so `staging` no longer removes it.
    fn swap(&self, new_name: &str, staging: &mut Staging) -> Result<(), FileSinkError> {
        let tmp_link = self.dir.join(DATA_TMP);
        symlink(new_name, &tmp_link).map_err(io_error("create symlink", &tmp_link))?;
        staging.link = Some(tmp_link.clone());
        let data = self.dir.join(DATA);
        fs::rename(&tmp_link, &data).map_err(io_error("replace", &data))?;
        staging.disarm();
        Ok(())
    }

    fn link_visible(&self, rendered: &Rendered) -> Result<(), FileSinkError> {
        for key in rendered.files.keys() {
            self.check_key(key)?;
            let path = self.dir.join(key);
            let target = link_target(key);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if !self.is_our_link(&path, key) {
                        self.replace_link(&target, &path)?;
                    }
                }
                // Appeared since check_visible_names; still not ours to delete.
                Ok(_) => return Err(FileSinkError::NotASymlink { path }),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    symlink(&target, &path).map_err(io_error("create symlink", &path))?;
                }
                Err(err) => return Err(io_error("inspect", &path)(err)),
            }
        }
        Ok(())
    }

    fn replace_link(&self, target: &str, path: &Path) -> Result<(), FileSinkError> {
        let tmp = self.dir.join(LINK_TMP);
        remove_entry(&tmp)?;
        symlink(target, &tmp).map_err(io_error("create symlink", &tmp))?;
        fs::rename(&tmp, path).map_err(io_error("replace", path))
    }

    fn prune_visible(&self, rendered: &Rendered) {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(path = %self.dir.display(), error = %err, "could not list secret directory to prune links");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if name.starts_with("..") || rendered.files.contains_key(name) {
                continue;
            }
            let path = entry.path();
            if !points_into_data(&path) {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "could not remove link of a dropped key");
                }
            }
        }
    }
}

/// Only links this writer could have made: anything else in `dir` may be the
/// user's and is left alone.
fn points_into_data(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::read_link(path)
            .is_ok_and(|target| target.as_os_str().as_bytes().starts_with(b"..data/")),
        _ => false,
    }
}

fn link_target(key: &str) -> String {
    format!("{DATA}/{key}")
}

/// Does not follow symlinks: `remove_dir_all` unlinks a symlink inside the
/// tree rather than descending into its target.
fn remove_entry(path: &Path) -> Result<(), FileSinkError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error("inspect", path)(err)),
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_error("remove", path)(err)),
    }
}

/// What a failed write must undo; dropped on every early return.
#[derive(Default)]
struct Staging {
    dir: Option<PathBuf>,
    link: Option<PathBuf>,
}

// === impl Staging ===

impl Staging {
    fn disarm(&mut self) {
        self.dir = None;
        self.link = None;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            if let Err(err) = fs::remove_file(&link) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %link.display(), error = %err, "could not remove staging link");
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(err) = fs::remove_dir_all(&dir) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %dir.display(), error = %err, "could not remove staging directory");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
