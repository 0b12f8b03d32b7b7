//! What keeps a template bounded in time and memory.
//!
//! Fuel limits the number of steps and the output writer stops at
//! `MAX_TEMPLATE_OUTPUT_BYTES`, but one step can still build a value of any size: a
//! filter with a size argument (`indent(99999999999)`), `'x' * n`, or a `set` that
//! doubles a string on every step. So the language a template may use is cut down to
//! what secret files need, and everything left grows at most linearly in its inputs
//! (a secret value is at most 64 KiB):
//!
//! - statements: `for` and `if` only (and `raw`): no `set`, `with`, `filter` or `do`,
//!   so no value can accumulate across steps;
//! - no `*` or `**` operator (string and list repetition);
//! - no `format`, `batch` or `slice` filter (unbounded widths and fill values), no
//!   `namespace` or `debug` function; `indent` and `replace` are replaced by versions
//!   that check their size arguments first.

use minijinja::{Environment, Error, ErrorKind};

/// Statements a template may use.
const STATEMENTS: &[&str] = &[
    "for", "endfor", "if", "elif", "else", "endif", "raw", "endraw",
];
/// Widest `indent` accepted.
const MAX_INDENT: usize = 64;

/// Refuses the constructs that could build an unbounded value; the message names the
/// construct and its line. Syntax errors are left to the template compiler.
pub fn check_source(source: &str) -> Result<(), String> {
    let mut rest = source;
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let line = line_of(source, offset + open);
        let close = match after.chars().next() {
            Some('#') => "#}",
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                offset += open + 1;
                rest = after;
                continue;
            }
        };
        let body = &after[1..];
        let Some(end) = tag_end(body, close) else {
            // Unclosed: the compiler reports it with its own words.
            return Ok(());
        };
        let tag = &body[..end];
        let mut consumed = open + 2 + end + close.len();
        if after.starts_with('%') {
            let keyword = tag
                .trim_start_matches(['-', '+', '~'])
                .trim_start()
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or("");
            if !STATEMENTS.contains(&keyword) {
                return Err(format!(
                    "the `{keyword}` statement is not allowed in templates (line {line}); templates may use `for` and `if`, which keep them bounded"
                ));
            }
            if keyword == "raw" {
                // Everything up to `endraw` is text, whatever it looks like.
                let tail = &rest[consumed..];
                consumed += tail
                    .find("endraw")
                    .map_or(tail.len(), |i| i + "endraw".len());
            }
        }
        if close != "#}" && outside_strings(tag).contains('*') {
            return Err(format!(
                "the `*` operator is not allowed in templates (line {line}): it repeats a value into any size"
            ));
        }
        offset += consumed;
        rest = &rest[consumed..];
    }
    Ok(())
}

fn line_of(source: &str, byte: usize) -> usize {
    source[..byte].matches('\n').count() + 1
}

/// Where `close` ends a tag body, skipping string literals (which may contain it).
fn tag_end(body: &str, close: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(_) if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if body[i..].starts_with(close) => return Some(i),
            None => {}
        }
    }
    None
}

/// The tag with its string literals blanked out.
fn outside_strings(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in tag.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// Takes the unbounded filters and functions out of `env` and puts bounded ones in.
pub fn restrict(env: &mut Environment<'static>) {
    for name in ["format", "batch", "slice", "indent", "replace"] {
        env.remove_filter(name);
    }
    for name in ["namespace", "debug"] {
        env.remove_global(name);
    }
    env.add_filter("indent", indent);
    env.add_filter("replace", replace);
}

fn too_large(what: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, what.to_owned())
}

/// Jinja's `indent`: every line but the first (unless `first`) gets `width` spaces;
/// blank lines only with `blank`.
fn indent(
    value: String,
    width: Option<usize>,
    first: Option<bool>,
    blank: Option<bool>,
) -> Result<String, Error> {
    let width = width.unwrap_or(4);
    if width > MAX_INDENT {
        return Err(too_large("indent wider than 64 is not allowed"));
    }
    let pad = " ".repeat(width);
    let (first, blank) = (first.unwrap_or(false), blank.unwrap_or(false));
    let mut out = String::with_capacity(value.len());
    for (i, line) in value.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if (i > 0 || first) && (blank || !line.trim().is_empty()) {
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    Ok(out)
}

/// `replace`, refused before it builds a result larger than a template may write.
fn replace(value: String, from: String, to: String) -> Result<String, Error> {
    let (count, removed) = if from.is_empty() {
        (value.chars().count() + 1, 0)
    } else {
        let n = value.matches(from.as_str()).count();
        (n, n.saturating_mul(from.len()))
    };
    let size = value
        .len()
        .saturating_sub(removed)
        .saturating_add(count.saturating_mul(to.len()));
    if size > super::MAX_TEMPLATE_OUTPUT_BYTES {
        return Err(too_large(
            "replace would build a value larger than a template may write",
        ));
    }
    Ok(value.replace(from.as_str(), &to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_and_if_pass_and_everything_that_accumulates_is_refused() {
        for ok in [
            "postgres://{{ user }}:{{ password | urlencode }}@{{ host }}/db",
            "{% for k, v in data | items %}{{ k }}={{ v }}\n{% endfor %}",
            "{%- if a -%}x{% elif b %}y{% else %}z{% endif %}",
            "{{ '*' }} and {{ \"a*b\" }} {# a * comment #}",
            "{% raw %}{% set x = 1 %}{{ a * b }}{% endraw %}",
            "{ not a tag } {{ a ~ b }}",
        ] {
            assert_eq!(check_source(ok), Ok(()), "{ok}");
        }
        for (bad, needle) in [
            ("{% set a = a ~ a %}", "`set` statement"),
            (
                "x\n{%- with a = 1 %}{% endwith %}",
                "`with` statement is not allowed in templates (line 2)",
            ),
            ("{% filter upper %}x{% endfilter %}", "`filter` statement"),
            ("{% do x %}", "`do` statement"),
            ("{% macro m() %}{% endmacro %}", "`macro` statement"),
            (
                "{{ 'x' * 99999999 }}",
                "`*` operator is not allowed in templates (line 1)",
            ),
            ("{{ 2 ** 2000 }}", "`*` operator"),
            (
                "{% for i in range(3) if i * 2 %}{% endfor %}",
                "`*` operator",
            ),
        ] {
            let err = check_source(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn bounded_filters_check_their_size_first() {
        assert_eq!(
            indent("a\nb\n\nc".into(), Some(2), None, None).unwrap(),
            "a\n  b\n\n  c"
        );
        assert_eq!(
            indent("a\nb".into(), None, Some(true), None).unwrap(),
            "    a\n    b"
        );
        assert!(indent("a".into(), Some(99_999_999_999), None, None).is_err());
        assert_eq!(
            replace("a.b".into(), ".".into(), "::".into()).unwrap(),
            "a::b"
        );
        let big = "x".repeat(60_000);
        assert!(replace(big.clone(), "x".into(), "yy".into()).is_err());
        assert!(replace(big, String::new(), "y".into()).is_err());
    }
}
