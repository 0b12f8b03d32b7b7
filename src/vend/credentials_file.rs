//! An AWS shared-credentials file for the app, so that boto3, the AWS CLI and every AWS
//! SDK can use the assumed role (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_PROFILE`).
//!
//! The file is replaced with one `rename(2)` after every refresh, so a reader sees the
//! old complete file or the new complete one, never a half-written mix: SDKs re-read the
//! file at arbitrary moments and a torn read would be a failed AWS call in the app.
//!
//! The daemon keeps each file up to date (`write_credentials_file`); `run --once` writes
//! each file once (`write_credentials_files_once`), valid until the credential's expiry.
//! Both write through `write_and_log`.

use crate::config::CredentialOutput;
use crate::credentials::{CredentialSource, CredentialsError, RoleCredentials, Roles};
use crate::shutdown::Signal;
use crate::sink::fs::{replace_file, ReplaceError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Only permission bits: setuid, setgid and sticky mean nothing on a credentials file.
const PERMISSION_BITS: u32 = 0o777;

pub struct CredentialsFile {
    path: PathBuf,
    profile: String,
    mode: u32,
    /// Whether the daemon rewrites the file before expiry (`false` under `run --once`);
    /// the header comment says which.
    rewritten: bool,
}

/// `Display` includes the cause because callers log errors with `{err}` only. None of the
/// variants can carry a credential: an `io::Error` from these calls holds an OS error code
/// and at most a path, and `InvalidValue` names the bad field, never its value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "refusing to replace {}: it is a {found}, not a regular file",
        path.display()
    )]
    NotAFile { path: PathBuf, found: &'static str },
    #[error("cannot write {}: the {field} {problem}", path.display())]
    InvalidValue {
        path: PathBuf,
        field: &'static str,
        problem: &'static str,
    },
}

/// Why a configured credentials file was not written (`run --once` reports each one; the
/// daemon logs it and retries). Every message names the file and its role; like
/// [`CredentialsFileError`] none carries a credential or an ExternalId.
#[derive(Debug, thiserror::Error)]
pub enum CredentialOutputError {
    /// The role's credential could not be had (its AssumeRole error, with the fix).
    #[error("credentials file {} (role '{role}') not written: {source}", path.display())]
    Credentials {
        role: String,
        path: PathBuf,
        #[source]
        source: CredentialsError,
    },
    #[error("credentials file {} (role '{role}') not written: {source}", path.display())]
    Write {
        role: String,
        path: PathBuf,
        #[source]
        source: CredentialsFileError,
    },
    #[error("credentials file {} (role '{role}') not written: the writer task failed: {reason}", path.display())]
    WriterFailed {
        role: String,
        path: PathBuf,
        reason: String,
    },
    #[error("credentials file {} (role '{role}') not written: the credential expired before it could be written", path.display())]
    Expired { role: String, path: PathBuf },
    #[error("credentials file {} not written: role '{role}' has no session", path.display())]
    UnknownRole { role: String, path: PathBuf },
}

// === impl CredentialOutputError ===

impl CredentialOutputError {
    /// Bounded label for logs: the cause's own kind where there is one.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials { source, .. } => source.kind(),
            Self::Write { source, .. } => source.kind(),
            Self::WriterFailed { .. } => "internal",
            Self::Expired { .. } => "expired",
            Self::UnknownRole { .. } => "unknown_role",
        }
    }

    /// The configured path of the file not written.
    pub fn path(&self) -> &Path {
        match self {
            Self::Credentials { path, .. }
            | Self::Write { path, .. }
            | Self::WriterFailed { path, .. }
            | Self::Expired { path, .. }
            | Self::UnknownRole { path, .. } => path,
        }
    }
}

// === impl CredentialsFileError ===

impl From<crate::sink::fs::FsError> for CredentialsFileError {
    fn from(e: crate::sink::fs::FsError) -> Self {
        Self::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl From<ReplaceError> for CredentialsFileError {
    fn from(e: ReplaceError) -> Self {
        match e {
            ReplaceError::Io(e) => e.into(),
            ReplaceError::NotAFile { path, found } => Self::NotAFile { path, found },
        }
    }
}

impl CredentialsFileError {
    /// Bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::NotAFile { .. } => "not_a_file",
            Self::InvalidValue { .. } => "invalid_value",
        }
    }
}

// === impl CredentialsFile ===

impl CredentialsFile {
    pub fn new(path: impl Into<PathBuf>, profile: impl Into<String>, mode: u32) -> Self {
        Self {
            path: path.into(),
            profile: profile.into(),
            mode: mode & PERMISSION_BITS,
            rewritten: true,
        }
    }

    /// The file of a `credentialOutputs` entry.
    pub fn of(output: &CredentialOutput) -> Self {
        Self::new(output.path.clone(), output.profile.clone(), output.mode)
    }

    /// Written once (`run --once`): the header says that nothing rewrites it.
    pub fn written_once(mut self) -> Self {
        self.rewritten = false;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Blocking (callers use `spawn_blocking`). Returns the credential's expiry as written
    /// in the file (RFC 3339). On failure the previous file is left as it was and no temp
    /// file remains.
    pub fn write(&self, creds: &RoleCredentials) -> Result<String, CredentialsFileError> {
        let (content, expires) = self.render(creds)?;
        replace_file(&self.path, content.as_bytes(), self.mode)?;
        Ok(expires)
    }

    #[cfg(test)]
    fn replace(&self, content: &[u8]) -> Result<(), CredentialsFileError> {
        Ok(crate::sink::fs::replace_unchecked(
            &self.path, content, self.mode,
        )?)
    }

    /// The file's content and the expiry it names.
    fn render(&self, c: &RoleCredentials) -> Result<(String, String), CredentialsFileError> {
        let fields = [
            ("role name", c.role.as_str()),
            ("profile name", self.profile.as_str()),
            ("access key id", c.access_key_id.as_str()),
            ("secret access key", c.secret_access_key.expose().as_str()),
            ("session token", c.session_token.expose().as_str()),
        ];
        let invalid = |field, problem| CredentialsFileError::InvalidValue {
            path: self.path.clone(),
            field,
            problem,
        };
        // A line break would let one value add lines, or whole profiles, to the file.
        if let Some((field, _)) = fields
            .iter()
            .find(|(_, value)| value.contains(['\n', '\r']))
        {
            return Err(invalid(
                field,
                "contains a line break, which would corrupt the file",
            ));
        }
        let expires = c
            .expiration_rfc3339()
            .ok_or_else(|| invalid("expiry time", "cannot be written as an RFC 3339 time"))?;
        let lifetime = if self.rewritten {
            "Rewritten before expiry"
        } else {
            "Written once by `run --once`: nothing rewrites it"
        };
        let content = format!(
            "# Written by secret-ferry for role {role}; expires {expires}. {lifetime}; do not edit.\n\
             [{profile}]\n\
             aws_access_key_id = {id}\n\
             aws_secret_access_key = {secret}\n\
             aws_session_token = {token}\n",
            role = c.role,
            profile = self.profile,
            id = c.access_key_id,
            secret = c.secret_access_key.expose(),
            token = c.session_token.expose(),
        );
        Ok((content, expires))
    }
}

const OUTPUT_RETRY: Duration = Duration::from_secs(5);

/// Keeps one credentials file up to date: written whenever the role gets a new
/// credential; a failed write is retried until it succeeds or a newer credential arrives.
pub async fn write_credentials_file(roles: Roles, output: CredentialOutput, mut shutdown: Signal) {
    let Some(session) = roles.get(&output.role).cloned() else {
        return;
    };
    let file = Arc::new(CredentialsFile::of(&output));
    let mut changes = session.changes();
    loop {
        let mut wait_for_change = true;
        if let Some(creds) = roles.current(&output.role) {
            wait_for_change = write_and_log(&file, &output.role, creds).await.is_ok();
        }
        tokio::select! {
            changed = changes.changed(), if wait_for_change => if changed.is_err() { return },
            _ = tokio::time::sleep(OUTPUT_RETRY), if !wait_for_change => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// `run --once`, after the sync: writes every configured credentials file once with its
/// role's current credential (assumed now if no secret needed it). Nothing rewrites the
/// files afterwards: each is valid until the expiry logged with it. The files are written
/// concurrently, so outputs of one role share one AssumeRole (and its failure). Returns
/// the files not written, in config order.
pub async fn write_credentials_files_once(
    roles: &Roles,
    outputs: &[CredentialOutput],
) -> Vec<CredentialOutputError> {
    let writes = outputs.iter().map(|output| write_once(roles, output));
    futures_util::future::join_all(writes)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

async fn write_once(roles: &Roles, output: &CredentialOutput) -> Result<(), CredentialOutputError> {
    let (role, path) = (output.role.clone(), output.path.clone());
    let Some(session) = roles.get(&output.role) else {
        return Err(CredentialOutputError::UnknownRole { role, path });
    };
    if let Err(source) = session.get().await {
        return Err(CredentialOutputError::Credentials { role, path, source });
    }
    let Some(creds) = roles.current(&output.role) else {
        return Err(CredentialOutputError::Expired { role, path });
    };
    let file = Arc::new(CredentialsFile::of(output).written_once());
    write_and_log(&file, &output.role, creds).await
}

/// The one write of a credentials file, for the daemon and `run --once` alike: on the
/// blocking pool, logged with the path, the role and the expiry (never a credential).
async fn write_and_log(
    file: &Arc<CredentialsFile>,
    role: &str,
    creds: RoleCredentials,
) -> Result<(), CredentialOutputError> {
    let writer = file.clone();
    let path = file.path().to_path_buf();
    let err = match tokio::task::spawn_blocking(move || writer.write(&creds)).await {
        Ok(Ok(expires)) => {
            tracing::info!(role = %role, path = %path.display(), valid_until = %expires, "credentials file written; valid until {expires}");
            return Ok(());
        }
        Ok(Err(source)) => CredentialOutputError::Write {
            role: role.to_owned(),
            path,
            source,
        },
        Err(e) => CredentialOutputError::WriterFailed {
            role: role.to_owned(),
            path,
            reason: e.to_string(),
        },
    };
    tracing::warn!(role = %role, reason = err.kind(), "{err}");
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Sensitive;
    use std::fs::{self, Permissions};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};

    const SECRET: &str = "canary-secret-7Qx2";
    const TOKEN: &str = "canary-token-Zp81";

    fn creds(id: &str) -> RoleCredentials {
        RoleCredentials {
            role: "shared".into(),
            access_key_id: id.into(),
            secret_access_key: Sensitive::new(SECRET.into()),
            session_token: Sensitive::new(TOKEN.into()),
            // 2026-11-23T20:45:57Z
            expires_at: UNIX_EPOCH + Duration::from_secs(1_795_466_757),
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn assert_no_canary(text: &str) {
        assert!(
            !text.contains(SECRET) && !text.contains(TOKEN),
            "a credential leaked: {text}"
        );
    }

    #[test]
    fn writes_exactly_what_aws_sdks_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        CredentialsFile::new(&path, "cross-account", 0o600)
            .write(&creds("ASIA1"))
            .unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# Written by secret-ferry for role shared; expires 2026-11-23T20:45:57Z. \
             Rewritten before expiry; do not edit.\n\
             [cross-account]\n\
             aws_access_key_id = ASIA1\n\
             aws_secret_access_key = canary-secret-7Qx2\n\
             aws_session_token = canary-token-Zp81\n"
        );
    }

    #[test]
    fn the_mode_is_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o400, 0o600, 0o644] {
            let path = dir.path().join(format!("c{mode:o}"));
            CredentialsFile::new(&path, "default", mode)
                .write(&creds("ASIA1"))
                .unwrap();
            assert_eq!(mode_of(&path), mode, "{mode:o}");
        }
        // A read-only file can still be replaced: rename needs the directory, not the file.
        let path = dir.path().join("c400");
        CredentialsFile::new(&path, "default", 0o400)
            .write(&creds("ASIA2"))
            .unwrap();
        assert_eq!(mode_of(&path), 0o400);
        assert!(fs::read_to_string(&path).unwrap().contains("ASIA2"));
    }

    #[test]
    fn rewrites_replace_the_file_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let file = CredentialsFile::new(&path, "default", 0o400);
        file.write(&creds("ASIA1")).unwrap();
        let before = fs::metadata(&path).unwrap();
        file.write(&creds("ASIA2")).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("aws_access_key_id = ASIA2\n"), "{text}");
        assert!(!text.contains("ASIA1"), "{text}");
        // A new inode: readers holding the old file keep a complete copy.
        use std::os::unix::fs::MetadataExt;
        assert_ne!(before.ino(), fs::metadata(&path).unwrap().ino());
        assert_eq!(names_in(dir.path()), ["credentials"]);
    }

    #[test]
    fn missing_parents_are_created_traversable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/credentials");
        let file = CredentialsFile::new(&path, "default", 0o400);
        assert_eq!(file.path(), path);
        file.write(&creds("ASIA1")).unwrap();
        assert_eq!(mode_of(&dir.path().join("a")), 0o755);
        assert_eq!(mode_of(&dir.path().join("a/b")), 0o755);
        assert_eq!(names_in(&dir.path().join("a/b")), ["credentials"]);
    }

    #[test]
    fn a_directory_target_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("credentials");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), "kept").unwrap();
        let err = CredentialsFile::new(&target, "default", 0o400)
            .write(&creds("ASIA1"))
            .unwrap_err();
        assert_eq!(err.kind(), "not_a_file");
        let shown = err.to_string();
        assert!(shown.contains(&target.display().to_string()), "{shown}");
        assert!(
            shown.contains("directory") && shown.contains("replace"),
            "{shown}"
        );
        assert_no_canary(&format!("{err} {err:?} {err:#?}"));
        assert_eq!(fs::read_to_string(target.join("inside")).unwrap(), "kept");
        assert_eq!(names_in(dir.path()), ["credentials"]);
    }

    #[test]
    fn a_symlink_target_is_refused_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "untouched").unwrap();
        fs::set_permissions(&elsewhere, Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("credentials");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let err = CredentialsFile::new(&link, "default", 0o400)
            .write(&creds("ASIA1"))
            .unwrap_err();
        assert_eq!(err.kind(), "not_a_file");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(
            err.to_string().contains(&link.display().to_string()),
            "{err}"
        );
        assert_no_canary(&format!("{err} {err:?}"));
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "untouched");
        assert_eq!(mode_of(&elsewhere), 0o644);
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(names_in(dir.path()), ["credentials", "elsewhere"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let file = CredentialsFile::new(&path, "default", 0o600);
        file.write(&creds("ASIA1")).unwrap();
        let old = fs::read_to_string(&path).unwrap();

        // Bad input is caught before anything touches the disk.
        let mut bad = creds("ASIA2");
        bad.session_token = Sensitive::new(format!("{TOKEN}\n[default]"));
        let err = file.write(&bad).unwrap_err();
        assert_eq!(err.kind(), "invalid_value");
        assert!(err.to_string().contains("session token"), "{err}");
        assert_no_canary(&format!("{err} {err:?}"));
        assert_eq!(fs::read_to_string(&path).unwrap(), old);
        assert_eq!(names_in(dir.path()), ["credentials"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("credentials");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), "kept").unwrap();
        // Skips the target check, as a directory appearing after it would.
        let err = CredentialsFile::new(&target, "default", 0o400)
            .replace(b"content")
            .unwrap_err();
        assert_eq!(err.kind(), "io");
        assert!(err.to_string().contains("rename"), "{err}");
        assert_eq!(
            names_in(dir.path()),
            ["credentials"],
            "temp file left behind"
        );
        assert_eq!(fs::read_to_string(target.join("inside")).unwrap(), "kept");
    }

    #[test]
    fn an_expiry_that_cannot_be_formatted_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let file = CredentialsFile::new(&path, "default", 0o400);
        for expires_at in [
            UNIX_EPOCH - Duration::from_secs(1),
            UNIX_EPOCH + Duration::from_secs(253_402_300_800),
        ] {
            let mut c = creds("ASIA1");
            c.expires_at = expires_at;
            let err = file.write(&c).unwrap_err();
            assert_eq!(err.kind(), "invalid_value");
            assert!(err.to_string().contains("expiry time"), "{err}");
            assert_no_canary(&format!("{err} {err:?}"));
        }
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn an_io_error_names_the_path_and_the_operation() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, "kept").unwrap();
        // The parent "directory" is a regular file, so nothing below it can be looked at.
        let path = blocker.join("credentials");
        let err = CredentialsFile::new(&path, "default", 0o400)
            .write(&creds("ASIA1"))
            .unwrap_err();
        assert_eq!(err.kind(), "io");
        let shown = err.to_string();
        assert!(shown.starts_with("cannot inspect "), "{shown}");
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(
            shown.contains("Not a directory"),
            "the cause is in Display: {shown}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_no_canary(&format!("{err} {err:?}"));
        assert_eq!(fs::read_to_string(&blocker).unwrap(), "kept");
    }

    #[test]
    fn debug_output_never_shows_credentials() {
        let file = CredentialsFile::new("/x/credentials", "default", 0o400);
        let c = creds("ASIA1");
        assert_no_canary(&format!("{c:?} {c:#?}"));
        assert!(format!("{c:?}").contains("ASIA1"));
        // Rendering is the one place the values appear, and only in the file content.
        let (text, expires) = file.render(&c).unwrap();
        assert!(text.contains(SECRET) && text.contains(TOKEN));
        assert_eq!(expires, "2026-11-23T20:45:57Z");
    }

    #[test]
    fn a_file_written_once_says_that_nothing_rewrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let output = CredentialOutput {
            role: "shared".into(),
            path: path.clone(),
            profile: "job".into(),
            mode: 0o600,
        };
        let expires = CredentialsFile::of(&output)
            .written_once()
            .write(&creds("ASIA1"))
            .unwrap();
        assert_eq!(expires, "2026-11-23T20:45:57Z");
        assert_eq!(mode_of(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(
                "# Written by secret-ferry for role shared; expires 2026-11-23T20:45:57Z. \
                 Written once by `run --once`: nothing rewrites it; do not edit.\n[job]\n"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn once_a_file_that_cannot_be_written_is_returned_naming_its_path() {
        let outputs = [CredentialOutput {
            role: "nowhere".into(),
            path: "/x/credentials".into(),
            profile: "default".into(),
            mode: 0o400,
        }];
        let unwritten = write_credentials_files_once(&Roles::default(), &outputs).await;
        assert_eq!(unwritten.len(), 1);
        assert_eq!(unwritten[0].kind(), "unknown_role");
        assert_eq!(unwritten[0].path(), Path::new("/x/credentials"));
        assert_eq!(
            unwritten[0].to_string(),
            "credentials file /x/credentials not written: role 'nowhere' has no session"
        );
        assert!(write_credentials_files_once(&Roles::default(), &[])
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn a_failed_write_names_the_file_and_the_role_and_keeps_the_cause_as_source() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, "kept").unwrap();
        let path = blocker.join("credentials");
        let file = Arc::new(CredentialsFile::new(&path, "default", 0o400));
        let err = write_and_log(&file, "shared", creds("ASIA1"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "io");
        assert_eq!(err.path(), path);
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!(
                "credentials file {} (role 'shared') not written: cannot ",
                path.display()
            )),
            "{shown}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_no_canary(&format!("{err} {err:?}"));
    }

    #[test]
    fn temp_names_differ() {
        let names: std::collections::BTreeSet<_> = (0..1000)
            .map(|_| crate::sink::fs::random_suffix())
            .collect();
        assert_eq!(names.len(), 1000);
    }
}
