//! The one-shot commands: `validate`, `check` and `iam-policy`. Each returns what it found;
//! `main.rs` prints it and maps it to an exit code.

pub mod check;
pub mod iam_policy;
pub mod validate;
