pub mod credentials_file;
pub mod file;
pub mod formats;
mod fs;
pub mod kube_secret;
pub mod single_file;
