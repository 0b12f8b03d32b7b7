//! An AWS shared-credentials file for the app, so that any AWS SDK or the CLI can use the
//! assumed role (`AWS_SHARED_CREDENTIALS_FILE`). Replaced atomically after every refresh:
//! a reader sees the old complete file or the new one.

use crate::credentials_endpoint::RoleCredentials;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct CredentialsFile {
    path: PathBuf,
    profile: String,
    mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to replace {}: it is a symlink or a directory", path.display())]
    NotAFile { path: PathBuf },
}

impl CredentialsFileError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::NotAFile { .. } => "not_a_file",
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CredentialsFileError {
    let path = path.to_path_buf();
    move |source| CredentialsFileError::Io { op, path, source }
}

impl CredentialsFile {
    pub fn new(path: impl Into<PathBuf>, profile: impl Into<String>, mode: u32) -> Self {
        Self {
            path: path.into(),
            profile: profile.into(),
            mode: mode & 0o777,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Blocking; callers use spawn_blocking.
    pub fn write(&self, creds: &RoleCredentials) -> Result<(), CredentialsFileError> {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if !meta.file_type().is_file() {
                return Err(CredentialsFileError::NotAFile {
                    path: self.path.clone(),
                });
            }
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&dir)
                .map_err(io_err("create directory", &dir))?;
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "credentials".to_owned());
        let tmp = dir.join(format!(".{name}.{:08x}.tmp", fastrand::u32(..)));
        let result = self.write_tmp(&tmp, creds).and_then(|()| {
            fs::rename(&tmp, &self.path).map_err(io_err("replace", &self.path))?;
            fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("sync directory", &dir))
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_tmp(&self, tmp: &Path, creds: &RoleCredentials) -> Result<(), CredentialsFileError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io_err("create", tmp))?;
        // Set explicitly: the umask must not decide who can read credentials.
        file.set_permissions(Permissions::from_mode(self.mode))
            .map_err(io_err("set permissions on", tmp))?;
        file.write_all(self.render(creds).as_bytes())
            .map_err(io_err("write", tmp))?;
        file.sync_all().map_err(io_err("sync", tmp))
    }

    fn render(&self, c: &RoleCredentials) -> String {
        format!(
            "# Written by secret-ferry for role {role}; expires {expires}. Rewritten before expiry; do not edit.\n[{profile}]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\naws_session_token = {token}\n",
            role = c.role,
            expires = humantime::format_rfc3339_seconds(c.expires_at),
            profile = self.profile,
            id = c.access_key_id,
            secret = c.secret_access_key.expose(),
            token = c.session_token.expose(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Sensitive;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds(id: &str) -> RoleCredentials {
        RoleCredentials {
            role: "shared".into(),
            access_key_id: id.into(),
            secret_access_key: Sensitive::new("canary-secret".into()),
            session_token: Sensitive::new("canary-token".into()),
            expires_at: UNIX_EPOCH + Duration::from_secs(1_795_466_757),
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_the_ini_file_atomically_with_the_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aws/credentials");
        let file = CredentialsFile::new(&path, "cross-account", 0o400);
        file.write(&creds("ASIA1")).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# Written by secret-ferry for role shared; expires 2026-11-23T20:45:57Z. Rewritten before expiry; do not edit.\n[cross-account]\naws_access_key_id = ASIA1\naws_secret_access_key = canary-secret\naws_session_token = canary-token\n"
        );
        assert_eq!(mode_of(&path), 0o400);
        file.write(&creds("ASIA2")).unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("ASIA2"));
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temp file may be left behind");
        let other = CredentialsFile::new(dir.path().join("c2"), "default", 0o640);
        other.write(&creds("ASIA3")).unwrap();
        assert_eq!(mode_of(&dir.path().join("c2")), 0o640);
    }

    #[test]
    fn refuses_directories_and_symlinks_and_keeps_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = CredentialsFile::new(&link, "default", 0o400)
            .write(&creds("ASIA1"))
            .unwrap_err();
        assert_eq!(err.kind(), "not_a_file");
        assert!(err.to_string().contains(&link.display().to_string()));
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");

        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let err = CredentialsFile::new(&sub, "default", 0o400)
            .write(&creds("ASIA1"))
            .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("canary"));
        assert!(sub.is_dir());
    }
}
