//! A role's credentials in the form they are handed on to an app (by the credentials
//! endpoint or the credentials file, see `vend`), and where they are looked up.

use crate::secret::Sensitive;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

/// A role's credentials as handed to an app, by this endpoint or by the credentials file.
#[derive(Clone)]
pub struct RoleCredentials {
    pub role: String,
    pub access_key_id: String,
    pub secret_access_key: Sensitive<String>,
    pub session_token: Sensitive<String>,
    pub expires_at: SystemTime,
}

impl RoleCredentials {
    /// `expires_at` as RFC 3339 UTC to the second (`2026-11-23T21:00:00Z`), the form AWS
    /// SDKs parse. `None` before 1970 or after 9999, where humantime would panic instead.
    pub fn expiration_rfc3339(&self) -> Option<String> {
        self.expires_at.duration_since(UNIX_EPOCH).ok()?;
        let mut text = String::new();
        write!(
            text,
            "{}",
            humantime::format_rfc3339_seconds(self.expires_at)
        )
        .ok()?;
        Some(text)
    }
}

/// Hand-written so that a stray `{:?}` cannot print the secret parts; `Sensitive` would
/// hide them too, but leaving them out keeps the output short and obviously safe.
impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("role", &self.role)
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where the endpoint looks up a role's current credentials; `None` when the role has
/// none (yet, or expired).
pub trait CredentialSource: Send + Sync + 'static {
    fn current(&self, role: &str) -> Option<RoleCredentials>;
}
