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

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::fs::{create_dirs, sync_dir, DIR_MODE};
use super::WriteOutcome;
use crate::secret::Sensitive;
use crate::transform::{check_key, Rendered, TransformError};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
/// Staging name used to replace a foreign visible symlink atomically, so the
/// key never disappears for a reader in between.
const LINK_TMP: &str = "..link_tmp";
/// Only permission bits: setuid/setgid/sticky have no meaning for secret files.
const PERMISSION_BITS: u32 = 0o777;

pub struct FileSink {
    dir: PathBuf,
    mode: u32,
}

/// `Display` includes the cause because callers log errors with `{err}` only;
/// neither an `io::Error` nor a `TransformError` ever carries secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("failed to {op} {}: {source}", path.display())]
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

impl From<super::fs::FsError> for FileSinkError {
    fn from(e: super::fs::FsError) -> Self {
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

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileSinkError {
    let path = path.to_path_buf();
    move |source| FileSinkError::Io { op, path, source }
}

impl FileSink {
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

/// `..YYYY_MM_DD_HH_MM_SS.<nanos>_<random>` in UTC. The random suffix keeps
/// two writes within the same nanosecond (coarse clocks) from colliding.
fn timestamp_dir_name(now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "..{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}.{:09}_{:08x}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_nanos(),
        fastrand::u32(..),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date, after Howard
/// Hinnant's `civil_from_days`; unsigned because the epoch is the floor here.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Accepts this writer's names and kubelet's (`..YYYY_MM_DD_HH_MM_SS.<n>`),
/// and nothing else, so a user's own `..something` is never swept up.
fn is_timestamp_dir_name(name: &str) -> bool {
    const SHAPE: &[u8] = b"dddd_dd_dd_dd_dd_dd";
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() >= SHAPE.len()
        && bytes.iter().zip(SHAPE).all(|(&b, &shape)| match shape {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        })
        && matches!(bytes.get(SHAPE.len()), None | Some(b'.'))
        && !name.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CANARY: &str = "canary-0b7e42";

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn rendered(pairs: &[(&str, &[u8])]) -> Rendered {
        Rendered {
            files: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Sensitive::new(v.to_vec())))
                .collect(),
        }
    }

    fn data_target(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
        let target = fs::read_link(dir.join(DATA))?;
        Ok(target.to_str().ok_or("non-UTF-8 target")?.to_owned())
    }

    fn names(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            out.push(entry?.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    fn ts_dirs(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        Ok(names(dir)?
            .into_iter()
            .filter(|n| is_timestamp_dir_name(n))
            .collect())
    }

    fn mode_of(path: &Path) -> Result<u32, io::Error> {
        Ok(fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
    }

    fn mtime_of(path: &Path) -> Result<SystemTime, io::Error> {
        fs::symlink_metadata(path)?.modified()
    }

    fn assert_no_canary(err: &FileSinkError) {
        let mut shown = format!("{err} | {err:?}");
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            shown.push_str(&format!(" | {s} | {s:?}"));
            source = s.source();
        }
        assert!(!shown.contains(CANARY), "canary leaked: {shown}");
    }

    /// Checks the complete layout for `files` and returns the data dir name.
    fn assert_layout(
        dir: &Path,
        files: &[(&str, &[u8])],
        mode: u32,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let meta = fs::symlink_metadata(dir.join(DATA))?;
        assert!(meta.file_type().is_symlink(), "..data is not a symlink");
        let target = data_target(dir)?;
        assert!(is_timestamp_dir_name(&target), "bad target {target}");
        let data_dir = dir.join(&target);
        assert!(fs::symlink_metadata(&data_dir)?.is_dir());
        assert_eq!(mode_of(&data_dir)?, DIR_MODE);

        let mut expected_names: Vec<String> = files.iter().map(|(k, _)| (*k).to_owned()).collect();
        expected_names.sort();
        assert_eq!(names(&data_dir)?, expected_names);
        for (key, bytes) in files {
            let file = data_dir.join(key);
            assert!(fs::symlink_metadata(&file)?.file_type().is_file());
            assert_eq!(mode_of(&file)?, mode, "mode of {key}");
            assert_eq!(fs::read(&file)?, *bytes);

            let link = dir.join(key);
            assert!(fs::symlink_metadata(&link)?.file_type().is_symlink());
            assert_eq!(
                fs::read_link(&link)?,
                PathBuf::from(format!("..data/{key}"))
            );
            assert_eq!(fs::read(&link)?, *bytes);
        }
        assert!(fs::symlink_metadata(dir.join(DATA_TMP)).is_err());
        assert!(fs::symlink_metadata(dir.join(LINK_TMP)).is_err());
        assert_eq!(ts_dirs(dir)?, vec![target.clone()]);
        Ok(target)
    }

    /// Root (CAP_DAC_OVERRIDE) ignores permission bits; probing is more
    /// accurate than checking the uid.
    fn permissions_are_enforced(dir: &Path) -> Result<bool, io::Error> {
        let probe_dir = dir.join("probe");
        fs::create_dir(&probe_dir)?;
        fs::set_permissions(&probe_dir, Permissions::from_mode(0o555))?;
        let enforced = File::create(probe_dir.join("x")).is_err();
        fs::set_permissions(&probe_dir, Permissions::from_mode(0o755))?;
        fs::remove_dir_all(&probe_dir)?;
        Ok(enforced)
    }

    #[test]
    fn first_write_creates_the_layout() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("a/b/secrets");
        let sink = FileSink::new(&dir, 0o640);
        assert_eq!(sink.dir(), dir.as_path());
        let files: &[(&str, &[u8])] = &[
            ("username", b"admin"),
            ("password", b"s3cr3t\n\0\xff"),
            (".hidden", b""),
        ];
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        for created in [tmp.path().join("a"), tmp.path().join("a/b"), dir.clone()] {
            assert_eq!(mode_of(&created)?, DIR_MODE, "{}", created.display());
        }
        assert_layout(&dir, files, 0o640)?;
        Ok(())
    }

    #[test]
    fn identical_write_is_unchanged_and_touches_nothing() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let sink = FileSink::new(tmp.path(), 0o600);
        let files: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2")];
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        let target = data_target(tmp.path())?;
        let watched = [
            tmp.path().to_path_buf(),
            tmp.path().join(DATA),
            tmp.path().join(&target),
            tmp.path().join(&target).join("a"),
            tmp.path().join(&target).join("b"),
            tmp.path().join("a"),
            tmp.path().join("b"),
        ];
        let before: Vec<SystemTime> = watched
            .iter()
            .map(|p| mtime_of(p))
            .collect::<Result<_, _>>()?;
        // Coarse filesystem timestamps would otherwise hide a rewrite.
        std::thread::sleep(Duration::from_millis(20));

        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Unchanged);
        assert_eq!(data_target(tmp.path())?, target);
        let after: Vec<SystemTime> = watched
            .iter()
            .map(|p| mtime_of(p))
            .collect::<Result<_, _>>()?;
        assert_eq!(before, after);
        assert_layout(tmp.path(), files, 0o600)?;
        Ok(())
    }

    #[test]
    fn changed_write_swaps_and_prunes() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        let sink = FileSink::new(dir, 0o644);
        sink.write(&rendered(&[("a", b"old"), ("b", b"gone soon")]))?;
        let old = data_target(dir)?;
        // Things that are not ours must survive the pruning.
        fs::write(dir.join("notes.txt"), b"user")?;
        symlink("elsewhere", dir.join("user-link"))?;

        let files: &[(&str, &[u8])] = &[("a", b"new"), ("c", b"added")];
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        let new = assert_layout(dir, files, 0o644)?;
        assert_ne!(old, new);
        assert!(fs::symlink_metadata(dir.join(&old)).is_err());
        assert!(fs::symlink_metadata(dir.join("b")).is_err());
        assert_eq!(fs::read(dir.join("notes.txt"))?, b"user");
        assert_eq!(
            fs::read_link(dir.join("user-link"))?,
            PathBuf::from("elsewhere")
        );
        Ok(())
    }

    #[test]
    fn empty_secret_removes_all_links() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let sink = FileSink::new(tmp.path(), 0o600);
        sink.write(&rendered(&[("a", b"1")]))?;
        assert_eq!(sink.write(&rendered(&[]))?, WriteOutcome::Written);
        assert_layout(tmp.path(), &[], 0o600)?;
        assert!(fs::symlink_metadata(tmp.path().join("a")).is_err());
        assert_eq!(sink.write(&rendered(&[]))?, WriteOutcome::Unchanged);
        Ok(())
    }

    #[test]
    fn mode_change_alone_rewrites() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let files: &[(&str, &[u8])] = &[("a", b"1")];
        FileSink::new(tmp.path(), 0o600).write(&rendered(files))?;
        let sink = FileSink::new(tmp.path(), 0o640);
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        assert_layout(tmp.path(), files, 0o640)?;
        Ok(())
    }

    #[test]
    fn missing_or_wrong_visible_link_is_repaired() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        let sink = FileSink::new(dir, 0o600);
        let files: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2")];
        sink.write(&rendered(files))?;
        fs::remove_file(dir.join("a"))?;
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        assert_layout(dir, files, 0o600)?;

        fs::remove_file(dir.join("b"))?;
        symlink("..data/a", dir.join("b"))?;
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        assert_layout(dir, files, 0o600)?;
        Ok(())
    }

    #[test]
    fn extra_or_stale_entries_trigger_a_rewrite() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        let sink = FileSink::new(dir, 0o600);
        let files: &[(&str, &[u8])] = &[("a", b"1")];
        sink.write(&rendered(files))?;
        symlink("..data/zombie", dir.join("zombie"))?;
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        assert!(fs::symlink_metadata(dir.join("zombie")).is_err());
        assert_layout(dir, files, 0o600)?;

        let target = data_target(dir)?;
        fs::write(dir.join(&target).join("extra"), b"x")?;
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        assert_layout(dir, files, 0o600)?;
        Ok(())
    }

    #[test]
    fn regular_file_or_dir_named_like_a_key_blocks_the_write() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        let sink = FileSink::new(dir, 0o600);
        let old: &[(&str, &[u8])] = &[("a", b"old")];
        sink.write(&rendered(old))?;
        let target = data_target(dir)?;
        fs::write(dir.join("b"), b"user data")?;
        fs::create_dir(dir.join("c"))?;
        fs::write(dir.join("c/inner"), b"user dir")?;

        for blocked in ["b", "c"] {
            let err = match sink.write(&rendered(&[("a", CANARY.as_bytes()), (blocked, b"x")])) {
                Err(err) => err,
                Ok(outcome) => panic!("write succeeded: {outcome:?}"),
            };
            assert!(
                matches!(&err, FileSinkError::NotASymlink { path } if *path == dir.join(blocked)),
                "{err:?}"
            );
            assert_eq!(err.kind(), "not_a_symlink");
            assert!(err
                .to_string()
                .contains(&dir.join(blocked).display().to_string()));
            assert_no_canary(&err);

            assert_eq!(data_target(dir)?, target);
            assert_layout(dir, old, 0o600)?;
        }
        assert_eq!(fs::read(dir.join("b"))?, b"user data");
        assert_eq!(fs::read(dir.join("c/inner"))?, b"user dir");
        Ok(())
    }

    #[test]
    fn leftovers_are_cleaned() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        fs::write(outside.path().join("keep"), b"outside")?;
        let dir = tmp.path().join("secrets");
        fs::create_dir(&dir)?;
        let ours = "..2020_01_02_03_04_05.123456789_deadbeef";
        let kubelet = "..2020_01_02_03_04_05.1";
        fs::create_dir(dir.join(ours))?;
        fs::write(dir.join(ours).join("k"), b"v")?;
        fs::set_permissions(dir.join(ours).join("k"), Permissions::from_mode(0o400))?;
        fs::create_dir(dir.join(kubelet))?;
        symlink(outside.path(), dir.join(ours).join("escape"))?;
        symlink(outside.path(), dir.join(DATA_TMP))?;
        symlink("..data/x", dir.join(LINK_TMP))?;
        fs::create_dir(dir.join("..user_dir"))?;
        fs::write(dir.join("user.txt"), b"u")?;

        let sink = FileSink::new(&dir, 0o600);
        sink.clean_leftovers()?;
        assert_eq!(names(&dir)?, vec!["..user_dir", "user.txt"]);
        assert_eq!(names(outside.path())?, vec!["keep"]);
        assert_eq!(fs::read(outside.path().join("keep"))?, b"outside");

        // Also done by write(), which keeps the live directory.
        let files: &[(&str, &[u8])] = &[("k", b"v")];
        sink.write(&rendered(files))?;
        let live = data_target(&dir)?;
        fs::create_dir(dir.join(ours))?;
        fs::create_dir(dir.join(DATA_TMP))?;
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Unchanged);
        assert_eq!(data_target(&dir)?, live);
        assert_layout(&dir, files, 0o600)?;
        Ok(())
    }

    #[test]
    fn clean_leftovers_on_missing_dir_is_ok() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("not-yet");
        FileSink::new(&dir, 0o600).clean_leftovers()?;
        assert!(!dir.exists());
        Ok(())
    }

    #[test]
    fn planted_data_link_is_never_followed() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let outside = tmp.path().join("elsewhere");
        let dir = tmp.path().join("secrets");
        fs::create_dir(&dir)?;
        fs::create_dir(&outside)?;
        let ts_outside = "..2020_01_01_00_00_00.0_x";

        let plants: [(&str, PathBuf); 3] = [
            ("absolute", outside.clone()),
            ("relative", PathBuf::from("../elsewhere")),
            ("via a symlinked ts dir", PathBuf::from(ts_outside)),
        ];
        for (what, plant) in plants {
            // Same bytes and mode as what will be written: if the sink read
            // through the planted link it would wrongly answer Unchanged.
            fs::write(outside.join("a"), b"same")?;
            fs::set_permissions(outside.join("a"), Permissions::from_mode(0o600))?;
            let before = mtime_of(&outside.join("a"))?;
            for name in [DATA, "a", ts_outside] {
                let _ = remove_entry(&dir.join(name));
            }
            symlink(&outside, dir.join(ts_outside))?;
            symlink(&plant, dir.join(DATA))?;
            symlink("..data/a", dir.join("a"))?;

            let sink = FileSink::new(&dir, 0o600);
            let files: &[(&str, &[u8])] = &[("a", b"same")];
            assert_eq!(
                sink.write(&rendered(files))?,
                WriteOutcome::Written,
                "{what}"
            );
            assert_layout(&dir, files, 0o600)?;
            assert_eq!(names(&outside)?, vec!["a"], "{what}");
            assert_eq!(fs::read(outside.join("a"))?, b"same");
            assert_eq!(mtime_of(&outside.join("a"))?, before);
            assert!(
                fs::symlink_metadata(dir.join(ts_outside)).is_err(),
                "{what}"
            );
        }
        Ok(())
    }

    #[test]
    fn planted_key_link_is_replaced_not_followed() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        fs::write(outside.path().join("a"), b"outside a")?;
        fs::write(outside.path().join("z"), b"outside z")?;
        let dir = tmp.path();
        symlink(outside.path().join("a"), dir.join("a"))?;
        symlink(outside.path().join("z"), dir.join("z"))?;

        let sink = FileSink::new(dir, 0o600);
        let files: &[(&str, &[u8])] = &[("a", b"inside")];
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        assert_layout(dir, files, 0o600)?;
        assert_eq!(fs::read(outside.path().join("a"))?, b"outside a");
        assert_eq!(fs::read(outside.path().join("z"))?, b"outside z");
        // Not a link into ..data, so not ours to prune.
        assert_eq!(fs::read_link(dir.join("z"))?, outside.path().join("z"));
        assert_eq!(names(outside.path())?, vec!["a", "z"]);
        Ok(())
    }

    #[test]
    fn unsafe_key_is_refused_before_anything_is_written() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let fresh = tmp.path().join("fresh");
        for key in ["../evil", "..data", "", ".", "a/b", "a\0b"] {
            let sink = FileSink::new(&fresh, 0o600);
            let err = match sink.write(&rendered(&[
                ("ok", CANARY.as_bytes()),
                (key, CANARY.as_bytes()),
            ])) {
                Err(err) => err,
                Ok(outcome) => panic!("{key:?} accepted: {outcome:?}"),
            };
            assert!(matches!(err, FileSinkError::UnsafeKey { .. }), "{err:?}");
            assert_eq!(err.kind(), "unsafe_key");
            assert_no_canary(&err);
            assert!(!fresh.exists());
            assert!(!tmp.path().join("evil").exists());
        }

        let dir = tmp.path().join("existing");
        let sink = FileSink::new(&dir, 0o600);
        let old: &[(&str, &[u8])] = &[("ok", b"old")];
        sink.write(&rendered(old))?;
        let before = names(&dir)?;
        assert!(sink
            .write(&rendered(&[("ok", b"new"), ("../evil", b"x")]))
            .is_err());
        assert_eq!(names(&dir)?, before);
        assert_layout(&dir, old, 0o600)?;
        Ok(())
    }

    #[test]
    fn file_modes_are_exact_regardless_of_umask() -> TestResult {
        for mode in [0o400, 0o640, 0o600, 0o444] {
            let tmp = tempfile::tempdir()?;
            let sink = FileSink::new(tmp.path(), mode);
            let files: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2")];
            assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
            assert_layout(tmp.path(), files, mode)?;
            assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Unchanged);
            let changed: &[(&str, &[u8])] = &[("a", b"3")];
            assert_eq!(sink.write(&rendered(changed))?, WriteOutcome::Written);
            assert_layout(tmp.path(), changed, mode)?;
        }
        // Special bits are not permission bits and are dropped.
        let tmp = tempfile::tempdir()?;
        FileSink::new(tmp.path(), 0o4640).write(&rendered(&[("a", b"1")]))?;
        assert_layout(tmp.path(), &[("a", b"1")], 0o640)?;
        Ok(())
    }

    #[test]
    fn read_only_dir_fails_naming_the_path_and_keeps_old_content() -> TestResult {
        let tmp = tempfile::tempdir()?;
        if !permissions_are_enforced(tmp.path())? {
            // Running as root: covered by the tests below instead.
            return Ok(());
        }
        let dir = tmp.path().join("secrets");
        let sink = FileSink::new(&dir, 0o600);
        let old: &[(&str, &[u8])] = &[("a", b"old")];
        sink.write(&rendered(old))?;
        fs::set_permissions(&dir, Permissions::from_mode(0o555))?;
        let result = sink.write(&rendered(&[("a", CANARY.as_bytes())]));
        fs::set_permissions(&dir, Permissions::from_mode(0o755))?;
        let err = match result {
            Err(err) => err,
            Ok(outcome) => panic!("write succeeded: {outcome:?}"),
        };
        assert_eq!(err.kind(), "io");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        assert_no_canary(&err);
        assert_layout(&dir, old, 0o600)?;
        Ok(())
    }

    #[test]
    fn file_where_dir_should_be_fails_naming_the_path() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, b"user")?;
        for dir in [file.clone(), file.join("below")] {
            let sink = FileSink::new(&dir, 0o600);
            let err = match sink.write(&rendered(&[("a", CANARY.as_bytes())])) {
                Err(err) => err,
                Ok(outcome) => panic!("write succeeded: {outcome:?}"),
            };
            assert!(
                matches!(&err, FileSinkError::Io { path, .. } if *path == dir),
                "{err:?}"
            );
            assert_eq!(err.kind(), "io");
            assert!(
                err.to_string().contains(&dir.display().to_string()),
                "{err}"
            );
            assert!(std::error::Error::source(&err).is_some());
            assert_no_canary(&err);
        }
        assert_eq!(fs::read(&file)?, b"user");
        Ok(())
    }

    #[test]
    fn failure_after_staging_removes_the_new_dir() -> TestResult {
        // A real directory at `..data` makes the final rename fail even for
        // root, after the new directory has been fully written.
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        fs::create_dir(dir.join(DATA))?;
        fs::write(dir.join(DATA).join("a"), b"foreign")?;
        let sink = FileSink::new(dir, 0o600);
        let err = match sink.write(&rendered(&[("a", CANARY.as_bytes())])) {
            Err(err) => err,
            Ok(outcome) => panic!("write succeeded: {outcome:?}"),
        };
        assert!(
            matches!(&err, FileSinkError::Io { path, .. } if *path == dir.join(DATA)),
            "{err:?}"
        );
        assert_eq!(err.kind(), "io");
        assert_no_canary(&err);
        assert_eq!(names(dir)?, vec![DATA]);
        assert_eq!(fs::read(dir.join(DATA).join("a"))?, b"foreign");
        Ok(())
    }

    #[test]
    fn error_kinds_are_bounded_labels() {
        let io = FileSinkError::Io {
            op: "write",
            path: PathBuf::from("/x"),
            source: io::Error::other("boom"),
        };
        let link = FileSinkError::NotASymlink {
            path: PathBuf::from("/x/a"),
        };
        let key = FileSinkError::UnsafeKey {
            dir: PathBuf::from("/x"),
            source: TransformError::UnsafeKey {
                key: "..".to_owned(),
                reason: "is \"..\"",
            },
        };
        assert_eq!(io.kind(), "io");
        assert_eq!(link.kind(), "not_a_symlink");
        assert_eq!(key.kind(), "unsafe_key");
        assert_eq!(io.to_string(), "failed to write /x: boom");
        assert_eq!(
            key.to_string(),
            r#"refusing to write secret into /x: unsafe key "..": is "..""#
        );
    }

    #[test]
    fn timestamp_names_are_utc_and_recognised() {
        let cases = [
            (0, "..1970_01_01_00_00_00."),
            (951_782_400, "..2000_02_29_00_00_00."),
            (1_234_567_890, "..2009_02_13_23_31_30."),
            (1_709_210_096, "..2024_02_29_12_34_56."),
            (4_102_444_799, "..2099_12_31_23_59_59."),
            (253_402_300_799, "..9999_12_31_23_59_59."),
        ];
        for (secs, prefix) in cases {
            let name = timestamp_dir_name(UNIX_EPOCH + Duration::new(secs, 42));
            assert!(name.starts_with(prefix), "{secs}: {name}");
            assert!(name[prefix.len()..].starts_with("000000042_"), "{name}");
            assert!(is_timestamp_dir_name(&name), "{name}");
        }
        assert_ne!(
            timestamp_dir_name(UNIX_EPOCH),
            timestamp_dir_name(UNIX_EPOCH)
        );
    }

    #[test]
    fn timestamp_name_recognition_is_strict() {
        for ok in ["..2020_01_02_03_04_05", "..2020_01_02_03_04_05.1"] {
            assert!(is_timestamp_dir_name(ok), "{ok}");
        }
        for not in [
            "..data",
            "..data_tmp",
            "..user_dir",
            "2020_01_02_03_04_05",
            "..2020_01_02_03_04",
            "..2020_01_02_03_04_05x",
            "..2020-01-02_03_04_05",
            "..2020_01_02_03_04_05/../x",
        ] {
            assert!(!is_timestamp_dir_name(not), "{not}");
        }
    }
}
