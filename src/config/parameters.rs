//! `parameter` and `parameterPath`: a secret entry that reads SSM Parameter Store instead of
//! Secrets Manager. Names, selectors and paths are checked here with Parameter Store's own
//! rules, so that a name AWS would refuse is a problem of the config, named with its field,
//! not an error at the first poll.

use super::yaml::{or_default, Checker, Field, Fields};

/// Where a Parameter Store entry reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterSource {
    /// One parameter (`String`, `StringList` or `SecureString`), at a version or label when
    /// the name carries a selector.
    One {
        name: String,
        selector: Option<Selector>,
    },
    /// Every parameter under `path`, one key each.
    Path { path: String, recursive: bool },
}

/// What follows a parameter name's `:`, as Parameter Store spells it: `/app/db:3` is
/// version 3, `/app/db:prod` the version labelled `prod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Version(u64),
    Label(String),
}

/// Parameter Store's longest name, its path included.
const NAME_MAX: usize = 1011;
/// Parameter Store's deepest hierarchy.
const LEVELS_MAX: usize = 15;
const LABEL_MAX: usize = 100;

// === impl ParameterSource ===

impl ParameterSource {
    /// The name as GetParameters takes it (selector included); a path as written.
    pub fn spelled(&self) -> String {
        match self {
            Self::One { name, selector } => match selector {
                None => name.clone(),
                Some(Selector::Version(v)) => format!("{name}:{v}"),
                Some(Selector::Label(l)) => format!("{name}:{l}"),
            },
            Self::Path { path, .. } => path.clone(),
        }
    }

    /// The parameter's name, or the path, without a selector.
    pub fn name(&self) -> &str {
        match self {
            Self::One { name, .. } => name,
            Self::Path { path, .. } => path,
        }
    }
}

/// `parameter`: a name with an optional selector.
pub(super) fn read_parameter(c: &mut Checker, at: &Field) -> Option<ParameterSource> {
    let text = c.string(at)?;
    let (name, selector) = match text.rsplit_once(':') {
        Some((name, written)) => match parse_selector(written) {
            Some(selector) => (name, Some(selector)),
            None => {
                c.problem(at, format!("has the selector {written:?} after ':', which is neither a version number (\":3\") nor a label (letters, digits, \"._-\", at most 100, not starting with a digit, \"aws\" or \"ssm\")"));
                return None;
            }
        },
        None => (text, None),
    };
    if let Err(reason) = check_name(name) {
        c.problem(at, format!("{reason}; got {text:?}"));
        return None;
    }
    Some(ParameterSource::One {
        name: name.to_owned(),
        selector,
    })
}

/// `parameterPath`: `{path, recursive}`.
pub(super) fn read_parameter_path(c: &mut Checker, at: &Field) -> Option<ParameterSource> {
    let mut f = Fields::open(c, at)?;
    let path = f.require(c, "path").and_then(|v| {
        let text = c.string(&v)?;
        match check_path(text) {
            Ok(()) => Some(text.to_owned()),
            Err(reason) => {
                c.problem(&v, format!("{reason}: a Parameter Store path such as \"/app/prod/\" starts with '/'; got {text:?}"));
                None
            }
        }
    });
    let recursive = or_default(f.get("recursive"), false, |v| c.boolean(v));
    f.finish(c);
    Some(ParameterSource::Path {
        path: path?,
        recursive: recursive?,
    })
}

fn parse_selector(text: &str) -> Option<Selector> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().filter(|v| *v > 0).map(Selector::Version);
    }
    let starts_with_digit = text.bytes().next().is_some_and(|b| b.is_ascii_digit());
    let valid = !text.is_empty()
        && text.len() <= LABEL_MAX
        && !starts_with_digit
        && !reserved(text)
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    valid.then(|| Selector::Label(text.to_owned()))
}

/// Parameter Store's rules for a name, with the one that is broken.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty: name a parameter such as \"/app/prod/db-password\"");
    }
    if name.len() > NAME_MAX {
        return Err("is longer than Parameter Store's 1011 characters");
    }
    if !name.bytes().all(is_name_byte) {
        return Err("holds a character Parameter Store does not allow in a name (letters, digits and \"_.-/\" only)");
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err("has a '/' but does not start with one: a hierarchical name is fully qualified in Parameter Store, such as \"/app/prod/db-password\"");
    }
    if name.ends_with('/') {
        return Err(
            "ends with '/', which names a path: use parameterPath to read every parameter under it",
        );
    }
    check_levels(name)
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("does not start with '/'");
    }
    if !path.bytes().all(is_name_byte) || path.len() > NAME_MAX {
        return Err("has a character Parameter Store does not allow");
    }
    check_levels(path.trim_end_matches('/'))
}

fn check_levels(name: &str) -> Result<(), &'static str> {
    let segments: Vec<&str> = name.trim_start_matches('/').split('/').collect();
    let root = name.is_empty() || name == "/";
    if !root && segments.iter().any(|s| s.is_empty()) {
        return Err("has an empty level (\"//\")");
    }
    if segments.len() > LEVELS_MAX {
        return Err("has more than Parameter Store's 15 levels");
    }
    if segments.first().is_some_and(|s| reserved(s)) {
        return Err("begins with \"aws\" or \"ssm\", which Parameter Store reserves");
    }
    Ok(())
}

fn reserved(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    lower.starts_with("aws") || lower.starts_with("ssm")
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.-/".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_as_parameter_store_spells_them() {
        assert_eq!(parse_selector("3"), Some(Selector::Version(3)));
        assert_eq!(parse_selector("prod"), Some(Selector::Label("prod".into())));
        assert_eq!(parse_selector("0"), None);
        assert_eq!(
            parse_selector("3rd"),
            None,
            "a label cannot start with a digit"
        );
        assert_eq!(parse_selector("awsx"), None);
        assert_eq!(parse_selector(""), None);
        assert_eq!(parse_selector("a b"), None);
    }

    #[test]
    fn names_follow_parameter_store_rules() {
        assert!(check_name("/app/prod/db").is_ok());
        assert!(check_name("plain").is_ok());
        let no_slash = check_name("app/prod/db").unwrap_err();
        assert!(no_slash.contains("fully qualified"), "{no_slash}");
        assert!(check_name("/app/").unwrap_err().contains("parameterPath"));
        assert!(check_name("/a//b").unwrap_err().contains("empty level"));
        assert!(check_name("/aws/x").unwrap_err().contains("reserves"));
        assert!(check_name("SSMthing").unwrap_err().contains("reserves"));
        assert!(check_name("/a,b").unwrap_err().contains("character"));
        let deep = format!("/{}", vec!["l"; 16].join("/"));
        assert!(check_name(&deep).unwrap_err().contains("15"));
        assert!(check_name(&"a".repeat(1012)).is_err());
        assert!(check_path("/app/prod/").is_ok());
        assert!(check_path("/").is_ok());
        assert!(check_path("app/").is_err());
    }

    #[test]
    fn spelled_with_the_selector() {
        let one = ParameterSource::One {
            name: "/a".into(),
            selector: Some(Selector::Label("prod".into())),
        };
        assert_eq!(one.spelled(), "/a:prod");
        assert_eq!(one.name(), "/a");
    }
}
