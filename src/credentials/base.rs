//! Static base credentials read from files, for teams migrating from long-lived keys.
//! The files are read on every request for credentials, so rotating the keys (for
//! example by updating a mounted Kubernetes Secret) needs no restart.
//!
//! Also the base identity's SDK configuration, which every role is assumed from.

use crate::config::Config;
use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FileCredentials {
    access_key_id_file: PathBuf,
    secret_access_key_file: PathBuf,
}

impl FileCredentials {
    pub fn new(access_key_id_file: PathBuf, secret_access_key_file: PathBuf) -> Self {
        Self {
            access_key_id_file,
            secret_access_key_file,
        }
    }

    fn load(&self) -> Result<Credentials, CredentialsError> {
        let id = read_key(&self.access_key_id_file, "baseCredentials.accessKeyIdFile")?;
        let secret = read_key(
            &self.secret_access_key_file,
            "baseCredentials.secretAccessKeyFile",
        )?;
        Ok(Credentials::new(
            id,
            secret,
            None,
            None,
            "secret-ferry-base-files",
        ))
    }
}

/// Errors name the file and the config key, never the content.
fn read_key(path: &Path, field: &str) -> Result<String, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CredentialsError::invalid_configuration(format!(
            "cannot read {field} {}: {e}",
            path.display()
        ))
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(CredentialsError::invalid_configuration(format!(
            "{field} {} is empty",
            path.display()
        )));
    }
    Ok(key.to_owned())
}

impl ProvideCredentials for FileCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::ready(self.load())
    }
}

/// The AWS SDK configuration the daemon runs with: the default chain (IRSA, Pod Identity,
/// instance profile, environment), or the configured base credential files.
pub async fn base_sdk_config(cfg: &Config) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(files) = &cfg.base_credentials {
        loader = loader.credentials_provider(FileCredentials::new(
            files.access_key_id_file.clone(),
            files.secret_access_key_file.clone(),
        ));
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_trims_both_files_and_names_the_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, "AKIAEXAMPLE\n").unwrap();
        std::fs::write(&secret, "canary-base-secret\n").unwrap();
        let files = FileCredentials::new(id.clone(), secret.clone());
        let creds = files.load().unwrap();
        assert_eq!(creds.access_key_id(), "AKIAEXAMPLE");
        assert_eq!(creds.secret_access_key(), "canary-base-secret");
        assert!(!format!("{creds:?}").contains("canary-base-secret"));

        std::fs::remove_file(&secret).unwrap();
        let err = files.load().unwrap_err().to_string();
        let source = std::error::Error::source(&files.load().unwrap_err())
            .map(|s| s.to_string())
            .unwrap_or_default();
        let shown = format!("{err} {source}");
        assert!(shown.contains("secretAccessKeyFile"), "{shown}");
        assert!(shown.contains(&secret.display().to_string()), "{shown}");

        std::fs::write(&secret, "  \n").unwrap();
        let e = files.load().unwrap_err();
        let shown = format!(
            "{e} {}",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(shown.contains("is empty"), "{shown}");
    }
}
