//! The AWS side shared by every stage that calls AWS: error classification (`error`) and
//! SDK client set-up (`sdk`).

mod error;
mod sdk;

pub use error::{classify, from_code, Class, ErrorInfo};
pub use sdk::{shared_https_client, timeouts, CountCalls};
