pub mod credentials_file;
pub mod file;
mod fs;
