//! Vends a role's credentials to the app, in the two forms AWS SDKs read: the
//! container-credentials endpoint (`endpoint`) and a shared-credentials file
//! (`credentials_file`). The credentials themselves come from `credentials`.

pub mod credentials_file;
pub mod endpoint;

pub use credentials_file::{
    write_credentials_file, write_credentials_files_once, CredentialOutputError, CredentialsFile,
};
pub use endpoint::CredentialsEndpoint;
