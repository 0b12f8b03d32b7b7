//! Pure: what Parameter Store's answers mean for the configured entries. Which names share
//! a GetParameters call, which answer belongs to which ask, a path's parameters as one value
//! (one key each) with one version for the whole, and what a listing says changed. No I/O,
//! so the rules are tested without AWS.

use super::parameter_store::{Described, Parameter, NAMES_MAX};
use crate::secret::Payload;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Prefix of a path's version: the digest of its names and versions, so that a listing of
/// the path (names and versions, no values) tells whether anything under it changed.
const PATH_VERSION: &str = "path:";

/// Splits `names` (GetParameters spellings, selectors included) into calls of at most ten,
/// never the same parameter twice in one call: answers carry the name, and not always the
/// selector (moto leaves it out), so two asks of one name in a call could not be told apart.
/// Returns indexes into `names`.
pub fn chunks(names: &[&str]) -> Vec<Vec<usize>> {
    let mut calls: Vec<Vec<usize>> = Vec::new();
    for (i, spelled) in names.iter().enumerate() {
        let name = without_selector(spelled);
        let fits = calls.iter_mut().find(|call| {
            call.len() < NAMES_MAX && call.iter().all(|&j| without_selector(names[j]) != name)
        });
        match fits {
            Some(call) => call.push(i),
            None => calls.push(vec![i]),
        }
    }
    calls
}

/// The name part of a GetParameters spelling (`/a:3` → `/a`; names hold no ':').
pub fn without_selector(spelled: &str) -> &str {
    spelled.split_once(':').map_or(spelled, |(name, _)| name)
}

/// The answer to the ask `spelled` among `found`: the one with its name (a call never asks
/// for a name twice, see `chunks`), and for a version selector, at that version.
pub fn answer<'a>(spelled: &str, found: &'a [Parameter]) -> Option<&'a Parameter> {
    let name = without_selector(spelled);
    let version = spelled
        .split_once(':')
        .and_then(|(_, selector)| selector.parse::<i64>().ok());
    found
        .iter()
        .find(|p| p.name == name && version.is_none_or(|v| v == p.version))
}

/// The value of one parameter, as a Secrets Manager `SecretString` is: a JSON object's keys
/// become files, any other text (a `StringList` included, commas and all) is one value.
pub fn payload_of(parameter: &Parameter) -> Payload {
    Payload::Text(parameter.value.clone())
}

/// Why a path's parameters cannot be one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// Nothing under the path (or nothing the identity may read).
    Empty,
    /// Two parameters make the same key (`a/b` and `a_b` under the path).
    SameKey {
        key: String,
        first: String,
        second: String,
    },
}

/// The key a parameter under `path` is written as: its name relative to the path, with each
/// further `/` turned into `_` (a Kubernetes Secret key cannot hold `/`), as peers do.
pub fn key_under(path: &str, name: &str) -> String {
    let base = path.trim_end_matches('/');
    let relative = name
        .strip_prefix(base)
        .map_or(name, |rest| rest.trim_start_matches('/'));
    relative.replace('/', "_")
}

/// A path's parameters as one JSON object (key → value) and the path's version.
pub fn path_value(path: &str, found: &[Parameter]) -> Result<(Payload, String), PathProblem> {
    if found.is_empty() {
        return Err(PathProblem::Empty);
    }
    let mut object: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for p in found {
        let key = key_under(path, &p.name);
        if let Some((first, _)) = object.insert(key.clone(), (&p.name, p.value.expose())) {
            let (first, second) = order(first, &p.name);
            return Err(PathProblem::SameKey { key, first, second });
        }
    }
    let map: serde_json::Map<String, serde_json::Value> = object
        .into_iter()
        .map(|(key, (_, value))| (key, serde_json::Value::String(value.to_owned())))
        .collect();
    let text = serde_json::Value::Object(map).to_string();
    let version = path_version(found.iter().map(|p| (p.name.as_str(), p.version)));
    Ok((Payload::Text(crate::secret::Sensitive::new(text)), version))
}

fn order(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// One version for a whole path: the digest of its parameters' names and versions, in name
/// order. Values are not part of it: a parameter's value never changes without its version.
pub fn path_version<'a>(parameters: impl IntoIterator<Item = (&'a str, i64)>) -> String {
    let mut sorted: Vec<(&str, i64)> = parameters.into_iter().collect();
    sorted.sort_unstable();
    let mut hash = Sha256::new();
    for (name, version) in sorted {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(version.to_le_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{PATH_VERSION}{hex}")
}

/// The version a listing shows for a path, comparable with what `path_value` wrote.
pub fn listed_path_version(listed: &[Described]) -> Option<String> {
    (!listed.is_empty()).then(|| path_version(listed.iter().map(|d| (d.name.as_str(), d.version))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Sensitive;

    fn param(name: &str, version: i64, value: &str) -> Parameter {
        Parameter {
            name: name.into(),
            selector: None,
            version,
            kind: "SecureString".into(),
            value: Sensitive::new(value.into()),
            arn: None,
        }
    }

    #[test]
    fn chunks_hold_ten_distinct_names() {
        let names: Vec<String> = (0..23).map(|i| format!("/p/{i}")).collect();
        let mut asks: Vec<&str> = names.iter().map(String::as_str).collect();
        asks.push("/p/0:3");
        asks.push("/p/0:prod");
        let calls = chunks(&asks);
        assert!(calls.iter().all(|c| c.len() <= NAMES_MAX));
        assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), asks.len());
        for call in &calls {
            let mut seen: Vec<&str> = call.iter().map(|&i| without_selector(asks[i])).collect();
            seen.sort_unstable();
            let before = seen.len();
            seen.dedup();
            assert_eq!(seen.len(), before, "a name twice in one call: {call:?}");
        }
        // First fit: the second ask of /p/0 cannot join the third call, which has the first.
        assert_eq!(calls.len(), 4);
    }

    #[test]
    fn answers_match_names_and_versions() {
        let found = vec![param("/a", 2, "x"), param("/b", 7, "y")];
        assert_eq!(answer("/a", &found).map(|p| p.version), Some(2));
        assert_eq!(answer("/a:2", &found).map(|p| p.version), Some(2));
        assert!(answer("/a:3", &found).is_none());
        assert_eq!(answer("/b:prod", &found).map(|p| p.version), Some(7));
        assert!(answer("/c", &found).is_none());
    }

    #[test]
    fn a_path_is_one_object_with_one_version() {
        let found = vec![
            param("/app/prod/db/password", 3, "s3cret"),
            param("/app/prod/api-key", 1, "k"),
        ];
        let (payload, version) = path_value("/app/prod/", &found).expect("value");
        let Payload::Text(text) = payload else {
            panic!("text")
        };
        assert_eq!(text.expose(), r#"{"api-key":"k","db_password":"s3cret"}"#);
        let reversed: Vec<Parameter> = found.iter().rev().cloned().collect();
        assert_eq!(
            path_value("/app/prod", &reversed).expect("value").1,
            version
        );
        let listed = vec![
            Described {
                name: "/app/prod/api-key".into(),
                version: 1,
            },
            Described {
                name: "/app/prod/db/password".into(),
                version: 3,
            },
        ];
        assert_eq!(listed_path_version(&listed), Some(version.clone()));
        let mut bumped = listed.clone();
        bumped[0].version = 2;
        assert_ne!(listed_path_version(&bumped), Some(version));
        assert_eq!(listed_path_version(&[]), None);
    }

    #[test]
    fn a_path_refuses_nothing_and_two_names_for_one_key() {
        assert_eq!(path_value("/x/", &[]).err(), Some(PathProblem::Empty));
        let clash = vec![param("/x/a/b", 1, "1"), param("/x/a_b", 1, "2")];
        assert_eq!(
            path_value("/x", &clash).err(),
            Some(PathProblem::SameKey {
                key: "a_b".into(),
                first: "/x/a/b".into(),
                second: "/x/a_b".into()
            })
        );
    }

    #[test]
    fn keys_are_relative_to_the_path() {
        assert_eq!(key_under("/", "/a/b"), "a_b");
        assert_eq!(key_under("/app/", "/app/x"), "x");
        assert_eq!(key_under("/app", "/app/x/y"), "x_y");
    }
}
