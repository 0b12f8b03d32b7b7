//! Steps 1 to 3: the property, base64 decoding and the selected keys.

use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::value::RawValue;

use super::{MappingError, Property};
use crate::config::keys::key_for_error;
use crate::config::KeyMap;
use crate::secret::{Payload, Sensitive};
use crate::transform::{self, Rendered, TransformError};

/// Step 1 with a property: navigate by exact source text (`RawValue`), never through
/// `serde_json::Value`, so big numbers and nested key order survive.
pub(super) fn select_property(
    property: &Property,
    payload: &Payload,
) -> Result<Rendered, MappingError> {
    let path = || key_for_error(&property.path);
    let text = match payload {
        Payload::Text(text) => text.expose(),
        Payload::Binary(_) => {
            return Err(MappingError::NotJson {
                property: path(),
                reason: "is binary",
            })
        }
    };
    let root: Box<RawValue> = serde_json::from_str(text).map_err(|_| MappingError::NotJson {
        property: path(),
        reason: "is not valid JSON",
    })?;
    let mut current = root;
    for (depth, segment) in property.segments.iter().enumerate() {
        let parent = || {
            if depth == 0 {
                "the secret".to_owned()
            } else {
                format!("{:?}", key_for_error(&property.segments[..depth].join(".")))
            }
        };
        let Some(entries) = transform::object_entries(current.get()) else {
            return Err(MappingError::PropertyMissing {
                property: path(),
                reason: format!("{} is not a JSON object", parent()),
            });
        };
        let mut found = None;
        for (key, value) in entries {
            if key == *segment {
                // Which duplicate was meant is unknowable; refuse, as `render` does.
                if found.is_some() {
                    return Err(TransformError::DuplicateKey {
                        key: key_for_error(segment),
                    }
                    .into());
                }
                found = Some(value);
            }
        }
        current = found.ok_or_else(|| MappingError::PropertyMissing {
            property: path(),
            reason: format!("{} has no key {:?}", parent(), key_for_error(segment)),
        })?;
    }
    Ok(transform::render_json_value(current.get())?)
}

pub(super) fn decode_all(rendered: Rendered) -> Result<Rendered, MappingError> {
    // Padding optional: secrets are pasted by hand and trailing `=` gets lost.
    const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut files = BTreeMap::new();
    for (key, value) in rendered.files {
        // Whitespace anywhere, not only around: `base64` wraps its output at 76
        // columns, and that wrapped text is what people paste into secrets.
        let compact: Vec<u8> = value
            .expose()
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let decoded = STANDARD_ANY_PADDING
            .decode(&compact)
            .map_err(|_| MappingError::Decode {
                key: key_for_error(&key),
            })?;
        files.insert(key, Sensitive::new(decoded));
    }
    Ok(Rendered { files })
}

pub(super) fn select_keys(
    keys: &[KeyMap],
    rendered: &Rendered,
) -> Result<BTreeMap<String, Sensitive<Vec<u8>>>, MappingError> {
    let mut files = BTreeMap::new();
    for k in keys {
        let value = rendered
            .files
            .get(&k.from)
            .ok_or_else(|| MappingError::KeyMissing {
                key: key_for_error(&k.from),
            })?;
        files.insert(k.to.clone(), value.clone());
    }
    Ok(files)
}
