//! A Secrets Manager version id kept for as long as its secret is synced: once as the version
//! last written (the job) and once as a metric label. Ids are UUIDs in their lowercase
//! 36-character form, so they are kept as their 16 bytes (no allocation, 24 bytes inline
//! instead of a 16-byte pointer to a 48-byte heap block); anything else (an id spelled
//! otherwise, from a stand-in or a future format) is kept as given. Either way the id reads
//! back exactly as it came: `Display` and comparisons with `&str` are by the text.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub enum VersionId {
    /// A lowercase hyphenated UUID, as its bytes.
    Uuid([u8; 16]),
    /// Any other spelling, verbatim.
    Other(Box<str>),
}

/// Where the hyphens of the 36-character form are.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl VersionId {
    pub fn new(id: &str) -> Self {
        match parse_uuid(id) {
            Some(bytes) => Self::Uuid(bytes),
            None => Self::Other(id.into()),
        }
    }

    /// Whether this is the id spelled `id`, without building one from it.
    pub fn is(&self, id: &str) -> bool {
        match self {
            Self::Uuid(bytes) => parse_uuid(id).as_ref() == Some(bytes),
            Self::Other(own) => &**own == id,
        }
    }
}

impl From<&str> for VersionId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

/// The 16 bytes of `id` when it is exactly the lowercase hyphenated form (so that writing
/// them back gives the same text); `None` for any other spelling.
fn parse_uuid(id: &str) -> Option<[u8; 16]> {
    let text = id.as_bytes();
    if text.len() != 36 || HYPHENS.iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut digits = text
        .iter()
        .enumerate()
        .filter(|(i, _)| !HYPHENS.contains(i))
        .map(|(_, &c)| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        });
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        let high = digits.next()??;
        let low = digits.next()??;
        *byte = (high << 4) | low;
    }
    Some(bytes)
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uuid(bytes) => {
                for (i, byte) in bytes.iter().enumerate() {
                    // Byte 4, 6, 8 and 10 start the groups after the first.
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Self::Other(id) => f.write_str(id),
        }
    }
}

// A version id is not secret (it is a metric label); Debug shows it as text.
impl fmt::Debug for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowercase_uuid_is_kept_as_bytes_and_reads_back_exactly() {
        let text = "0f3e5a7c-1b2d-4e6f-8a9b-c0d1e2f3a4b5";
        let id = VersionId::new(text);
        assert!(matches!(id, VersionId::Uuid(_)));
        assert_eq!(id.to_string(), text);
        assert!(id.is(text));
        assert!(!id.is("0f3e5a7c-1b2d-4e6f-8a9b-c0d1e2f3a4b6"));
        assert!(!id.is("0F3E5A7C-1B2D-4E6F-8A9B-C0D1E2F3A4B5"));
        assert_eq!(id, VersionId::from(text));
    }

    #[test]
    fn any_other_spelling_is_kept_verbatim() {
        for text in [
            "0F3E5A7C-1B2D-4E6F-8A9B-C0D1E2F3A4B5", // uppercase: writing bytes back would change it
            "0f3e5a7c1b2d4e6f8a9bc0d1e2f3a4b5",     // no hyphens
            "0f3e5a7c-1b2d-4e6f-8a9b-c0d1e2f3a4b",  // 35 characters
            "0f3e5a7c-1b2d-4e6f-8a9b_c0d1e2f3a4b5", // a hyphen missing
            "0f3e5a7c-1b2d-4e6f-8a9b-c0d1e2f3a4bg", // not hex
            "version-1",
            "",
            "ééééééééé-éééé-éééé-éééé-éééééééééééé",
        ] {
            let id = VersionId::new(text);
            assert!(matches!(id, VersionId::Other(_)), "{text}");
            assert_eq!(id.to_string(), text);
            assert!(id.is(text));
        }
        assert!(!VersionId::new("version-1").is("version-2"));
        assert!(!VersionId::new("0f3e5a7c-1b2d-4e6f-8a9b-c0d1e2f3a4b5")
            .is("0F3E5A7C-1B2D-4E6F-8A9B-C0D1E2F3A4B5"));
    }

    #[test]
    fn it_takes_no_more_room_inline_than_three_words() {
        assert!(std::mem::size_of::<Option<VersionId>>() <= 24);
    }
}
