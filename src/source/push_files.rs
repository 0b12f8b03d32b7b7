//! The file sources of `pushes`: a directory (every regular file one key of a JSON object)
//! or one file (the secret string, or SecretBinary with `binary: true`).
//!
//! A source that does not exist is reported as [`Read::Gone`], not as an error: only the
//! daemon, which has seen it before, may decide that it went away. Everything else that is
//! wrong is a [`PushSourceError`] naming the push and the file, and nothing is pushed.

use crate::config::keys::UnsafeKey;
use crate::config::MAX_SECRET_BYTES;
use crate::secret::{Payload, Sensitive};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// What reading a push source found.
#[derive(Debug)]
pub enum Read {
    Present(Payload),
    /// The directory or file does not exist.
    Gone,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PushSourceError {
    #[error("push '{push}': cannot read {path}: {reason}")]
    Unreadable {
        push: String,
        path: PathBuf,
        reason: String,
    },
    #[error("push '{push}': {path} {reason}; nothing is pushed until it is fixed")]
    Layout {
        push: String,
        path: PathBuf,
        reason: &'static str,
    },
    #[error("push '{push}': {path} makes a value of {bytes} bytes, over Secrets Manager's limit of 65536")]
    TooLarge {
        push: String,
        path: PathBuf,
        bytes: usize,
    },
    #[error("push '{push}': {path} is not valid UTF-8 text{hint}")]
    NotUtf8 {
        push: String,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("push '{push}': {path} is empty; an empty source is never pushed (nor taken for a deletion)")]
    Empty { push: String, path: PathBuf },
    #[error("push '{push}': {path} does not exist; nothing is pushed until it does")]
    Missing { push: String, path: PathBuf },
    #[error("push '{push}': {path} has no key {key:?} (named in `keys`); nothing is pushed until it does")]
    MissingKey {
        push: String,
        path: PathBuf,
        key: String,
    },
}

impl PushSourceError {
    /// Bounded label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "source_unreadable",
            Self::Layout { .. } => "source_layout",
            Self::TooLarge { .. } => "source_too_large",
            Self::NotUtf8 { .. } => "source_not_utf8",
            Self::Empty { .. } => "source_empty",
            Self::Missing { .. } => "source_missing",
            Self::MissingKey { .. } => "source_key_missing",
        }
    }
}

/// Reads a `dir` source: every regular file (or link to one inside the directory) is a key.
/// Entries starting with `..` are the kubelet's bookkeeping of a mounted volume and skipped.
pub fn read_dir(push: &str, dir: &Path) -> Result<Read, PushSourceError> {
    let unreadable = |path: &Path, e: std::io::Error| PushSourceError::Unreadable {
        push: push.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let layout = |path: &Path, reason| PushSourceError::Layout {
        push: push.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::Gone),
        Err(e) if e.raw_os_error() == Some(20) => {
            return Err(layout(dir, "is not a directory (use `path` for one file)"))
        }
        Err(e) => return Err(unreadable(dir, e)),
    };
    let root = dir.canonicalize().map_err(|e| unreadable(dir, e))?;
    let mut keys = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| unreadable(dir, e))?;
        let path = entry.path();
        let Some(key) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(layout(
                &path,
                "has a name that is not UTF-8, so it cannot be a key",
            ));
        };
        if key.starts_with("..") {
            continue;
        }
        if UnsafeKey::check(&key).is_err() {
            return Err(layout(&path, "has a name that cannot be a key"));
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|e| unreadable(&path, e))?;
        if meta.file_type().is_symlink() {
            // A mounted Secret or ConfigMap links each key into `..data/`: fine, as long
            // as the link stays inside the directory.
            let target = path.canonicalize().map_err(|e| unreadable(&path, e))?;
            if !target.starts_with(&root) {
                return Err(layout(
                    &path,
                    "is a symbolic link out of the source directory, which is never followed",
                ));
            }
            if !target.is_file() {
                return Err(layout(
                    &path,
                    "links to something that is not a regular file",
                ));
            }
        } else if meta.is_dir() {
            return Err(layout(
                &path,
                "is a subdirectory; a `dir` source holds only files, one per key",
            ));
        } else if !meta.is_file() {
            return Err(layout(&path, "is not a regular file"));
        }
        let bytes = read_limited(&path).map_err(|e| unreadable(&path, e))?;
        let bytes = bytes.ok_or_else(|| PushSourceError::TooLarge {
            push: push.to_owned(),
            path: path.clone(),
            bytes: MAX_SECRET_BYTES + 1,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| PushSourceError::NotUtf8 {
            push: push.to_owned(),
            path: path.clone(),
            hint: "; each file of a `dir` source becomes a text value of a JSON object",
        })?;
        keys.insert(key, text);
    }
    json_object(push, dir, &keys).map(Read::Present)
}

/// The keys of a source as one JSON object of text values, as a reader maps it back to
/// files: refused when there are none or when it is over Secrets Manager's limit.
pub(crate) fn json_object(
    push: &str,
    source: &Path,
    keys: &BTreeMap<String, String>,
) -> Result<Payload, PushSourceError> {
    if keys.is_empty() {
        return Err(PushSourceError::Empty {
            push: push.to_owned(),
            path: source.to_owned(),
        });
    }
    let json = serde_json::to_string(keys).map_err(|e| PushSourceError::Unreadable {
        push: push.to_owned(),
        path: source.to_owned(),
        reason: e.to_string(),
    })?;
    if json.len() > MAX_SECRET_BYTES {
        return Err(PushSourceError::TooLarge {
            push: push.to_owned(),
            path: source.to_owned(),
            bytes: json.len(),
        });
    }
    Ok(Payload::Text(Sensitive::new(json)))
}

/// Reads a `path` source: the file's content as the secret string, or as SecretBinary.
pub fn read_file(push: &str, path: &Path, binary: bool) -> Result<Read, PushSourceError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::Gone),
        Err(e) => {
            return Err(PushSourceError::Unreadable {
                push: push.to_owned(),
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    if !meta.is_file() {
        return Err(PushSourceError::Layout {
            push: push.to_owned(),
            path: path.to_owned(),
            reason: "is not a regular file (use `dir` for a directory)",
        });
    }
    let bytes = read_limited(path).map_err(|e| PushSourceError::Unreadable {
        push: push.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let Some(bytes) = bytes else {
        return Err(PushSourceError::TooLarge {
            push: push.to_owned(),
            path: path.to_owned(),
            bytes: usize::try_from(meta.len()).unwrap_or(usize::MAX),
        });
    };
    if bytes.is_empty() {
        return Err(PushSourceError::Empty {
            push: push.to_owned(),
            path: path.to_owned(),
        });
    }
    if binary {
        return Ok(Read::Present(Payload::Binary(Sensitive::new(bytes))));
    }
    let text = String::from_utf8(bytes).map_err(|_| PushSourceError::NotUtf8 {
        push: push.to_owned(),
        path: path.to_owned(),
        hint: "; set `binary: true` on the source to push it as SecretBinary",
    })?;
    Ok(Read::Present(Payload::Text(Sensitive::new(text))))
}

/// The file's bytes, or `None` when it holds more than Secrets Manager accepts: never reads
/// more than one byte past the limit, however large the file.
fn read_limited(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() <= MAX_SECRET_BYTES).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(read: Read) -> String {
        match read {
            Read::Present(Payload::Text(t)) => t.into_inner(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn a_dir_becomes_a_json_object_and_a_mounted_volume_reads_through_its_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tokens");
        std::fs::create_dir_all(dir.join("..2026_12_03")).unwrap();
        std::fs::write(dir.join("..2026_12_03/access"), "a-1").unwrap();
        std::os::unix::fs::symlink("..2026_12_03", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/access", dir.join("access")).unwrap();
        std::fs::write(dir.join("refresh"), "r\"1").unwrap();
        let json = text(read_dir("p", &dir).unwrap());
        assert_eq!(json, r#"{"access":"a-1","refresh":"r\"1"}"#);
        assert!(matches!(
            read_dir("p", &tmp.path().join("nope")).unwrap(),
            Read::Gone
        ));
    }

    #[test]
    fn a_dir_refuses_subdirectories_links_out_non_utf8_empty_and_oversized() {
        let tmp = tempfile::tempdir().unwrap();
        let case = |name: &str, setup: &dyn Fn(&Path)| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            setup(&dir);
            let err = read_dir("tokens", &dir).unwrap_err();
            assert!(err.to_string().contains("push 'tokens'"), "{err}");
            err
        };
        let e = case("sub", &|d| std::fs::create_dir(d.join("nested")).unwrap());
        assert_eq!(e.kind(), "source_layout");
        assert!(e.to_string().contains("nested"), "{e}");
        std::fs::write(tmp.path().join("outside"), "x").unwrap();
        let e = case("link", &|d| {
            std::os::unix::fs::symlink(tmp.path().join("outside"), d.join("k")).unwrap()
        });
        assert!(e.to_string().contains("symbolic link out"), "{e}");
        let e = case("bin", &|d| {
            std::fs::write(d.join("k"), [0xff, 0xfe]).unwrap()
        });
        assert_eq!(e.kind(), "source_not_utf8");
        let e = case("empty", &|_| {});
        assert_eq!(e.kind(), "source_empty");
        let e = case("big", &|d| {
            std::fs::write(d.join("a"), "x".repeat(40_000)).unwrap();
            std::fs::write(d.join("b"), "y".repeat(40_000)).unwrap();
        });
        assert_eq!(e.kind(), "source_too_large");
        let file = tmp.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(read_dir("p", &file).unwrap_err().kind(), "source_layout");
    }

    #[test]
    fn a_file_is_the_string_as_is_or_binary_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token.json");
        std::fs::write(&path, "{\"t\": 1}\n").unwrap();
        assert_eq!(text(read_file("p", &path, false).unwrap()), "{\"t\": 1}\n");
        std::fs::write(&path, [0u8, 0xff, 1]).unwrap();
        let e = read_file("p", &path, false).unwrap_err();
        assert_eq!(e.kind(), "source_not_utf8");
        assert!(e.to_string().contains("binary: true"), "{e}");
        match read_file("p", &path, true).unwrap() {
            Read::Present(Payload::Binary(b)) => assert_eq!(b.expose(), &[0u8, 0xff, 1]),
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, vec![b'x'; MAX_SECRET_BYTES + 1]).unwrap();
        assert_eq!(
            read_file("p", &path, false).unwrap_err().kind(),
            "source_too_large"
        );
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            read_file("p", &path, false).unwrap_err().kind(),
            "source_empty"
        );
        assert!(matches!(
            read_file("p", &tmp.path().join("gone"), false).unwrap(),
            Read::Gone
        ));
        assert_eq!(
            read_file("p", tmp.path(), false).unwrap_err().kind(),
            "source_layout"
        );
    }
}
