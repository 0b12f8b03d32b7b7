//! One file holding every key of a secret, in a format an app can load directly:
//! `raw` (a single value), `json`, `env` (POSIX shell / dotenv) or Java `properties`.

use crate::config::FileFormat;
use crate::secret::Sensitive;
use crate::transform::Rendered;
use std::fmt::Write as _;

pub const MAX_VALUE_BYTES: usize = 65_536;
pub const MAX_FILE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("format raw writes a single value, but the secret has {keys} keys; use format json, env or properties, or a dir target")]
    NotSingleValue { keys: usize },
    #[error("key {key:?}: the value is {size} bytes, more than the {MAX_VALUE_BYTES}-byte limit of a formatted file")]
    ValueTooLarge { key: String, size: usize },
    #[error("the file would be {size} bytes, more than the {MAX_FILE_BYTES}-byte limit")]
    FileTooLarge { size: usize },
    #[error("key {key:?}: the value is not UTF-8 text, which format {format} cannot hold; use a dir target")]
    NotText { key: String, format: &'static str },
    #[error("key {key:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*); use format json or properties, or a dir target")]
    NotEnvName { key: String },
    #[error("key {key:?}: the value contains a NUL byte, which a shell variable cannot hold")]
    Nul { key: String },
}

// === impl FormatError ===

impl FormatError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotSingleValue { .. } => "not_single_value",
            Self::ValueTooLarge { .. } | Self::FileTooLarge { .. } => "too_large",
            Self::NotText { .. } => "not_text",
            Self::NotEnvName { .. } => "bad_key",
            Self::Nul { .. } => "nul",
        }
    }
}

/// Keys in errors are cut short: they come from the secret and could be huge.
fn shown(key: &str) -> String {
    key.chars().take(64).collect()
}

pub fn render(format: FileFormat, rendered: &Rendered) -> Result<Sensitive<Vec<u8>>, FormatError> {
    for (key, value) in &rendered.files {
        if value.expose().len() > MAX_VALUE_BYTES {
            return Err(FormatError::ValueTooLarge {
                key: shown(key),
                size: value.expose().len(),
            });
        }
    }
    let bytes = match format {
        FileFormat::Raw => raw(rendered)?,
        FileFormat::Json => json(rendered)?.into_bytes(),
        FileFormat::Env => env(rendered)?.into_bytes(),
        FileFormat::Properties => properties(rendered)?.into_bytes(),
    };
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FormatError::FileTooLarge { size: bytes.len() });
    }
    Ok(Sensitive::new(bytes))
}

fn raw(rendered: &Rendered) -> Result<Vec<u8>, FormatError> {
    match rendered.files.values().collect::<Vec<_>>().as_slice() {
        [only] => Ok(only.expose().clone()),
        other => Err(FormatError::NotSingleValue { keys: other.len() }),
    }
}

fn text<'a>(key: &str, value: &'a [u8], format: &'static str) -> Result<&'a str, FormatError> {
    std::str::from_utf8(value).map_err(|_| FormatError::NotText {
        key: shown(key),
        format,
    })
}

fn json(rendered: &Rendered) -> Result<String, FormatError> {
    let mut object = serde_json::Map::new();
    for (key, value) in &rendered.files {
        let value = text(key, value.expose(), "json")?;
        object.insert(key.clone(), serde_json::Value::String(value.to_owned()));
    }
    let mut out = serde_json::Value::Object(object).to_string();
    out.push('\n');
    Ok(out)
}

/// `KEY='value'`: inside single quotes a POSIX shell expands nothing, so `$`, backticks,
/// backslashes and newlines are literal; only `'` itself needs the `'\''` dance.
fn env(rendered: &Rendered) -> Result<String, FormatError> {
    let mut out = String::new();
    for (key, value) in &rendered.files {
        let valid_name = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(FormatError::NotEnvName { key: shown(key) });
        }
        let value = text(key, value.expose(), "env")?;
        if value.contains('\0') {
            return Err(FormatError::Nul { key: shown(key) });
        }
        let _ = writeln!(out, "{key}='{}'", value.replace('\'', r"'\''"));
    }
    Ok(out)
}

/// Java `.properties` are read as ISO-8859-1: everything outside printable ASCII is
/// written as an escape, so the file is plain ASCII whatever the values hold.
fn properties(rendered: &Rendered) -> Result<String, FormatError> {
    let mut out = String::new();
    for (key, value) in &rendered.files {
        let value = text(key, value.expose(), "properties")?;
        escape_properties(&mut out, key, true);
        out.push('=');
        escape_properties(&mut out, value, false);
        out.push('\n');
    }
    Ok(out)
}

fn escape_properties(out: &mut String, text: &str, is_key: bool) {
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\t' => out.push_str(r"\t"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\u{c}' => out.push_str(r"\f"),
            ' ' if is_key || i == 0 => out.push_str(r"\ "),
            '=' | ':' | '#' | '!' if is_key => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const CANARY: &str = "canary-format-value";

    fn secret(pairs: &[(&str, &[u8])]) -> Rendered {
        Rendered {
            files: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Sensitive::new(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn out(format: FileFormat, r: &Rendered) -> String {
        String::from_utf8(render(format, r).unwrap().into_inner()).unwrap()
    }

    #[test]
    fn raw_needs_exactly_one_value() {
        assert_eq!(out(FileFormat::Raw, &secret(&[("value", b"x\ny")])), "x\ny");
        assert_eq!(
            render(FileFormat::Raw, &secret(&[])).unwrap_err().kind(),
            "not_single_value"
        );
        let two = secret(&[("a", b"1"), ("b", b"2")]);
        assert!(render(FileFormat::Raw, &two)
            .unwrap_err()
            .to_string()
            .contains("2 keys"));
    }

    #[test]
    fn json_is_an_object_of_strings() {
        let r = secret(&[
            ("user", b"app"),
            ("pw", "q\"\\\n é 😀".as_bytes()),
            ("port", b"5432"),
        ]);
        let parsed: serde_json::Value = serde_json::from_str(&out(FileFormat::Json, &r)).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"user": "app", "pw": "q\"\\\n é 😀", "port": "5432"})
        );
        assert_eq!(out(FileFormat::Json, &secret(&[])), "{}\n");
    }

    #[test]
    fn env_quotes_everything_and_refuses_what_a_shell_cannot_hold() {
        let cases: [(&[u8], &str); 5] = [
            (b"plain", "K='plain'\n"),
            (b"it's", "K='it'\\''s'\n"),
            (b"$HOME `id` $(x)", "K='$HOME `id` $(x)'\n"),
            (b"a\nb", "K='a\nb'\n"),
            (b"", "K=''\n"),
        ];
        for (value, expected) in cases {
            assert_eq!(out(FileFormat::Env, &secret(&[("K", value)])), expected);
        }
        assert_eq!(out(FileFormat::Env, &secret(&[])), "");
        for bad in ["1A", "A-B", "", "a b"] {
            assert_eq!(
                render(FileFormat::Env, &secret(&[(bad, b"x")]))
                    .unwrap_err()
                    .kind(),
                "bad_key",
                "{bad:?}"
            );
        }
        assert_eq!(
            render(FileFormat::Env, &secret(&[("K", b"a\0b")]))
                .unwrap_err()
                .kind(),
            "nul"
        );
        assert_eq!(
            render(FileFormat::Env, &secret(&[("K", b"\xff")]))
                .unwrap_err()
                .kind(),
            "not_text"
        );
    }

    #[test]
    fn env_round_trips_through_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = "it's $HOME `touch pwned` $(touch pwned2)\n\"two\"\\ é";
        let file = dir.path().join("app.env");
        std::fs::write(
            &file,
            out(FileFormat::Env, &secret(&[("PW", hostile.as_bytes())])),
        )
        .unwrap();
        let shell = std::process::Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg("set -a; . ./app.env; printf %s \"$PW\"")
            .output()
            .unwrap();
        assert!(shell.status.success());
        assert_eq!(String::from_utf8(shell.stdout).unwrap(), hostile);
        assert!(!dir.path().join("pwned").exists() && !dir.path().join("pwned2").exists());
    }

    #[test]
    fn properties_escape_to_ascii() {
        let r = secret(&[
            ("a key=x", " lead\ttab\nnl é 😀 \\".as_bytes()),
            ("k:#!", b"v"),
        ]);
        assert_eq!(
            out(FileFormat::Properties, &r),
            "a\\ key\\=x=\\ lead\\ttab\\nnl \\u00e9 \\ud83d\\ude00 \\\\\nk\\:\\#\\!=v\n"
        );
        assert_eq!(out(FileFormat::Properties, &secret(&[])), "");
    }

    #[test]
    fn limits_and_errors_never_show_values() {
        let big = vec![b'x'; MAX_VALUE_BYTES + 1];
        assert_eq!(
            render(FileFormat::Json, &secret(&[("k", &big)]))
                .unwrap_err()
                .kind(),
            "too_large"
        );
        let many: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("k{i}"), vec![b'x'; 60_000]))
            .collect();
        let r = Rendered {
            files: many
                .into_iter()
                .map(|(k, v)| (k, Sensitive::new(v)))
                .collect(),
        };
        assert_eq!(
            render(FileFormat::Json, &r).unwrap_err().kind(),
            "too_large"
        );
        let canary = secret(&[("bad key", CANARY.as_bytes()), ("x", CANARY.as_bytes())]);
        for format in [FileFormat::Raw, FileFormat::Env] {
            let err = render(format, &canary).unwrap_err();
            assert!(!format!("{err} {err:?}").contains(CANARY));
        }
    }
}
