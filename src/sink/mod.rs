pub mod file;
pub mod formats;
pub(crate) mod fs;
pub mod kube_secret;
pub mod single_file;
