//! Types that carry secret material between stages.
//!
//! Every type here has a hand-written `Debug` that prints `...` so that a stray
//! `{:?}` in a log line, an error or a panic message can never leak a value.

use std::fmt;

/// A value that must never be printed: secret bytes, ExternalIds, session tokens.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The only way to reach the value; grep for `expose` to audit every use.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("...")
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

/// The value of one secret as Secrets Manager returned it.
#[derive(Clone, PartialEq, Eq)]
pub enum Payload {
    /// `SecretString`: UTF-8 text, often a JSON object.
    Text(Sensitive<String>),
    /// `SecretBinary`: arbitrary bytes.
    Binary(Sensitive<Vec<u8>>),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Text(_) => f.write_str("Text(...)"),
            Payload::Binary(_) => f.write_str("Binary(...)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let canary = "canary-7d1f0c";
        let s = Sensitive::new(canary.to_string());
        assert_eq!(format!("{s:?}"), "...");
        let p = Payload::Text(Sensitive::new(canary.to_string()));
        assert!(!format!("{p:?}").contains(canary));
        let b = Payload::Binary(Sensitive::new(canary.as_bytes().to_vec()));
        assert!(!format!("{b:?}").contains(canary));
        assert!(!format!("{b:#?}").contains(canary));
    }
}
