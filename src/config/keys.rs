//! What a key may be: a file name in a target directory and a key of a Kubernetes Secret.
//!
//! The config checks the keys it names (`keys[].to`, template names) against this rule
//! when it is loaded; `transform` applies the same rule to every key a secret brings.

/// Longest key accepted: the DNS-subdomain limit Kubernetes uses for secret
/// keys, comfortably below every filesystem's `NAME_MAX` (255).
pub const MAX_KEY_BYTES: usize = 253;

/// Keys quoted in errors are cut to this many characters so that a hostile or
/// broken secret cannot flood logs.
const MAX_KEY_CHARS_IN_ERROR: usize = 64;

/// A key that could escape the target directory, collide with the sink's own
/// `..`-prefixed bookkeeping entries, or not be a valid file name.
///
/// `key` is already escaped-safe to print: it is truncated, and `Display`
/// quotes it with `{:?}` so control characters cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe key {key:?}: {reason}")]
pub struct UnsafeKey {
    pub key: String,
    pub reason: &'static str,
}

impl UnsafeKey {
    /// Refuses keys that could escape the target directory, collide with the
    /// sink's own `..`-prefixed bookkeeping entries, or not be valid file names.
    pub fn check(key: &str) -> Result<(), UnsafeKey> {
        let reason = if key.is_empty() {
            Some("is empty")
        } else if key == "." {
            Some("is \".\"")
        } else if key == ".." {
            Some("is \"..\"")
        } else if key.starts_with("..") {
            Some("starts with \"..\" (reserved for the writer's own entries)")
        } else if key.contains('/') {
            Some("contains '/'")
        } else if key.contains('\0') {
            Some("contains NUL")
        } else if key.len() > MAX_KEY_BYTES {
            Some("is longer than 253 bytes")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(UnsafeKey {
                key: key_for_error(key),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// `key` cut to a length fit for an error message or a log line.
pub fn key_for_error(key: &str) -> String {
    if key.chars().count() <= MAX_KEY_CHARS_IN_ERROR {
        key.to_owned()
    } else {
        let mut short: String = key.chars().take(MAX_KEY_CHARS_IN_ERROR).collect();
        short.push_str("...");
        short
    }
}
