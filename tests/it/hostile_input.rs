//! Hostile input through the public library API: config text fuzzed at the parser and the
//! validator, keys and values as they could come off the wire, templates that loop or explode,
//! and symlinks planted in a target directory. Every case must end in a clear error or a clean
//! result: never a panic, never a secret value in an error, never a write outside the target.
//!
//! The property tests run `SECRET_FERRY_FUZZ_CASES` cases each (default 256: the whole file
//! takes seconds in a debug build). The long run:
//!
//! ```text
//! SECRET_FERRY_FUZZ_CASES=200000 cargo test --release --test it hostile_input::
//! ```
//!
//! Three tests keep the defects this suite found (a stack overflow on deep YAML, quadratic
//! validation, templates escaping their bounds) fixed. The ones that crashed run their input
//! in a child process (the built binary, or this test binary under a 2 GiB address-space
//! limit), so a regression fails the test instead of killing the run.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use secret_ferry::config::keys::MAX_KEY_BYTES;
use secret_ferry::config::templates::MAX_TEMPLATE_OUTPUT_BYTES;
use secret_ferry::config::{self, Config, ConfigErrors, Target};
use secret_ferry::config::{Mapping, TemplateMode};
use secret_ferry::mapping::{Mapper, MappingError};
use secret_ferry::secret::{Payload, Sensitive};
use secret_ferry::sink::file::{FileSink, FileSinkError};
use secret_ferry::transform::{check_key, render, Rendered, TransformError};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Panics caught by `guarded` across this binary; recorded with every figure set.
static PANICS: AtomicU64 = AtomicU64::new(0);

fn fuzz_cases() -> u32 {
    std::env::var("SECRET_FERRY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(256)
}

/// Runs `property` on `cases` inputs; a failure is shrunk and reported with the smallest input.
/// No persistence file: a failing seed must not be written into the repository.
fn run_property<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        // Shrinking a 64 KiB input can take long; a minute of it is plenty to read the bug.
        max_shrink_time: 60_000,
        ..RunnerConfig::default()
    });
    if let Err(e) = runner.run(&strategy, property) {
        panic!("{name}: {e}");
    }
}

/// Calls `f`, turning a panic into a test failure that says what panicked (proptest then
/// shrinks the input) and counting it.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        TestCaseError::fail(format!("{what} panicked: {message}"))
    })
}

/// Like `guarded`, and also fails when `f` takes longer than `limit`; returns the time taken.
fn timed<T>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T,
) -> Result<(T, Duration), TestCaseError> {
    let start = Instant::now();
    let value = guarded(what, f)?;
    let took = start.elapsed();
    if took > limit {
        return Err(TestCaseError::fail(format!(
            "{what} took {took:?} (limit {limit:?})"
        )));
    }
    Ok((value, took))
}

/// For fixed (non-property) cases: unwrap a property result with a readable panic.
fn must(result: Result<(), TestCaseError>) {
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn max_ms(slot: &AtomicU64, took: Duration) {
    slot.fetch_max(
        u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

fn text(s: &str) -> Payload {
    Payload::Text(Sensitive::new(s.to_owned()))
}

/// An error and everything it wraps, as `Display` and `Debug`: what a log line could show.
fn shown(err: &dyn std::error::Error) -> String {
    let mut out = format!("{err} | {err:?}");
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    out
}

/// The first characters of a key as errors quote it (`transform` cuts keys to 64 characters
/// so that a hostile key cannot flood a log).
fn quoted_key(key: &str) -> String {
    if key.chars().count() <= 64 {
        format!("{key:?}")
    } else {
        format!(
            "{:?}",
            format!("{}...", key.chars().take(64).collect::<String>())
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Config: shared checks
// ---------------------------------------------------------------------------------------------

/// Line breaks as YAML counts them (`\n`, `\r\n` and a lone `\r`).
fn last_line(text: &str) -> usize {
    let bytes = text.as_bytes();
    let breaks = bytes
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\n' || (**b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
        .count();
    breaks + 1
}

fn fake_env(name: &str) -> Option<String> {
    match name {
        "POD_NAME" => Some("pod-1".to_owned()),
        "POD_NAMESPACE" => Some("team-a".to_owned()),
        _ => None,
    }
}

/// What every rejection must look like, whatever the input.
fn check_problems(input: &str, errors: &ConfigErrors) -> Result<(), TestCaseError> {
    prop_assert!(!errors.0.is_empty(), "an error without problems");
    prop_assert!(!errors.to_string().trim().is_empty());
    for p in &errors.0 {
        prop_assert!(!p.message.trim().is_empty(), "empty message: {p:?}");
        // `finish`'s safety net: a reader gave up without saying why.
        prop_assert_ne!(
            p.message.as_str(),
            "the config is invalid",
            "unexplained rejection"
        );
        if let Some(line) = p.line {
            // saphyr puts an error at the end of the input on the line after it: "{A" fails
            // on line 2 of a one-line file. One past the end is the most that is accepted.
            prop_assert!(
                (1..=last_line(input) + 1).contains(&line),
                "line {line} outside the document ({} lines): {p:?}",
                last_line(input)
            );
        }
        if p.path.is_empty() {
            // Only problems with the document as a whole lack a path; they still point somewhere.
            prop_assert!(
                p.line.is_some() || p.message.starts_with("the config is empty"),
                "a problem with neither path nor line: {p:?}"
            );
        }
    }
    Ok(())
}

/// What every accepted config must satisfy, whatever the input.
fn check_accepted(config: &Config) -> Result<(), TestCaseError> {
    for (name, role) in &config.roles {
        prop_assert_eq!(name, &role.name);
        prop_assert!(
            (Duration::from_secs(15 * 60)..=Duration::from_secs(12 * 3600))
                .contains(&role.duration),
            "duration {:?}",
            role.duration
        );
        prop_assert!(!role.refresh_before.is_zero() && role.refresh_before < role.duration);
        if let Some(via) = &role.via {
            prop_assert!(config.roles.contains_key(via), "via {via:?} is not a role");
        }
    }
    prop_assert!((1..=10_000).contains(&config.api_rate_limit));
    prop_assert!(
        !config.secrets.is_empty() || !config.tenants.is_empty(),
        "nothing to do"
    );
    let mut names = HashSet::new();
    let mut places = HashSet::new();
    for secret in &config.secrets {
        prop_assert!(
            names.insert(secret.name.clone()),
            "duplicate {:?}",
            secret.name
        );
        prop_assert!(!secret.targets.is_empty(), "{} has no target", secret.name);
        prop_assert!(secret.refresh_interval >= Duration::from_secs(1));
        prop_assert!(secret.secret_id.is_empty() == secret.find.is_some());
        if let Some(role) = &secret.role {
            prop_assert!(
                config.roles.contains_key(role),
                "role {role:?} is not defined"
            );
        }
        for target in &secret.targets {
            let (place, mode) = match target {
                Target::File(t) => (t.dir.clone(), t.mode),
                Target::SingleFile(t) => (t.path.clone(), t.mode),
                Target::KubernetesSecret(k) => (
                    PathBuf::from(format!("k8s:{:?}/{}", k.namespace, k.name)),
                    0,
                ),
            };
            prop_assert!(mode <= 0o777, "mode {mode:o}");
            if secret.find.is_some() {
                prop_assert!(place.to_string_lossy().contains("{{ name }}"));
            }
            prop_assert!(places.insert(place.clone()), "{place:?} written twice");
        }
        // The validator checked the templates, so the mapping must compile.
        if let Err(e) = Mapper::new(&secret.mapping) {
            return Err(TestCaseError::fail(format!(
                "{}: accepted mapping does not compile: {e}",
                secret.name
            )));
        }
    }
    Ok(())
}

/// Parses twice (the result must not depend on anything but the text) and checks it.
fn parse_and_check(input: &str, limit: Duration) -> Result<(bool, Duration), TestCaseError> {
    let (first, took) = timed("config::parse_with_env", limit, || {
        config::parse_with_env(input, &fake_env)
    })?;
    let second = guarded("config::parse_with_env", || {
        config::parse_with_env(input, &fake_env)
    })?;
    match (&first, &second) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(a), Err(b)) => prop_assert_eq!(&a.0, &b.0),
        _ => return Err(TestCaseError::fail("two parses of one text disagree")),
    }
    match &first {
        Ok(config) => check_accepted(config)?,
        Err(errors) => check_problems(input, errors)?,
    }
    Ok((first.is_ok(), took))
}

const VALID: &str = r#"region: us-east-1
roles:
  hub:
    roleArn: arn:aws:iam::222222222222:role/Hub
  shared:
    via: hub
    roleArn: arn:aws:iam::111111111111:role/CrossAccountSecretsRole
    externalIdFile: /etc/secret-ferry/external-id
    sessionName: secret-ferry
    duration: 1h
    refreshBefore: 5m
    sessionTags: {team: payments}
secrets:
  - name: db
    secretId: my-shared-secret
    role: shared
    versionStage: AWSCURRENT
    refreshInterval: 60s
    keys: [{from: password, to: DB_PASSWORD}]
    templates:
      URL: "postgres://{{ username }}:{{ password }}@db/app"
    targets:
      - file:
          dir: /var/run/secrets/ferry/db
          mode: "0400"
      - file: {path: /run/app/.env, format: env}
  - name: team-a
    find: {namePrefix: "team-a/", tags: {env: prod}}
    prune: true
    targets:
      - file: {dir: "/var/run/secrets/ferry/{{ name }}"}
"#;

#[test]
fn valid_base_config_is_accepted() {
    // The splice property below starts from this text; if it were already invalid, the
    // property would only ever test the error path.
    let config = config::parse_with_env(VALID, &fake_env).unwrap();
    must(check_accepted(&config));
    assert_eq!(config.secrets.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Config property a: arbitrary text
// ---------------------------------------------------------------------------------------------

fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..2048)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        // YAML's own punctuation, so that the parser's states get visited, not only its
        // "not YAML" exit. Deep nesting has its own test
        // (deeply_nested_yaml_is_refused_before_the_parser_recurses).
        "[ \\n\\t\\-:{}\\[\\],&*!|>'\"%@#?a-z0-9.~]{0,400}",
        // A valid config with a slice replaced by noise: errors deep inside real sections.
        (
            0..VALID.len(),
            0usize..40,
            "[ \\n\\-:{}\\[\\],&*!|>'\"#a-z0-9.~]{0,30}"
        )
            .prop_map(|(at, cut, noise)| {
                // VALID is ASCII, so every byte offset is a char boundary.
                let end = (at + cut).min(VALID.len());
                format!("{}{noise}{}", &VALID[..at], &VALID[end..])
            }),
    ]
}

#[test]
fn config_parse_survives_arbitrary_text() {
    let cases = AtomicU64::new(0);
    let accepted = AtomicU64::new(0);
    let slowest = AtomicU64::new(0);
    run_property("config text", fuzz_cases(), arbitrary_text(), |input| {
        cases.fetch_add(1, Ordering::Relaxed);
        // `parse` itself (process environment) must hold up too, not only `parse_with_env`.
        let result = guarded("config::parse", || config::parse(&input))?;
        if let Err(errors) = &result {
            check_problems(&input, errors)?;
        }
        let (ok, took) = parse_and_check(&input, Duration::from_secs(5))?;
        max_ms(&slowest, took);
        if ok {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    common::record_figures(
        "hostile_input_config_text",
        serde_json::json!({
            "config_cases": cases.load(Ordering::Relaxed),
            "accepted": accepted.load(Ordering::Relaxed),
            "slowest_parse_ms": slowest.load(Ordering::Relaxed),
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// Config property b: a grammar close to a valid config, then mutated
// ---------------------------------------------------------------------------------------------

/// A YAML node to emit. `Raw` is written as is (numbers, booleans, plain or already quoted
/// strings); `Str` is any string, written double-quoted.
#[derive(Clone, Debug)]
enum Y {
    Raw(String),
    Str(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
    Anchor(String, Box<Y>),
    Alias(String),
}

/// Name-like keys are written plain, as a config writes them; every other key double-quoted,
/// so that a key such as `null`, `1` or `a: b` stays one string key.
fn emit_key(key: &str, out: &mut String) {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key.bytes().all(|b| b.is_ascii_alphanumeric())
        && !["null", "true", "false"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k));
    if plain {
        out.push_str(key);
    } else {
        out.push_str(&serde_json::to_string(key).unwrap());
    }
}

/// Writes `y` right after a `key:` or a `-`, with its children at `indent`.
fn emit(y: &Y, indent: usize, out: &mut String) {
    match y {
        Y::Raw(s) => {
            out.push(' ');
            out.push_str(s);
            out.push('\n');
        }
        Y::Str(s) => {
            out.push(' ');
            out.push_str(&serde_json::to_string(s).unwrap());
            out.push('\n');
        }
        Y::Alias(name) => {
            out.push_str(" *");
            out.push_str(name);
            out.push('\n');
        }
        Y::Anchor(name, inner) => {
            out.push_str(" &");
            out.push_str(name);
            emit(inner, indent, out);
        }
        Y::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Y::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Y::Seq(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                emit(item, indent + 2, out);
            }
        }
        Y::Map(entries) => {
            out.push('\n');
            emit_entries(entries, indent, out);
        }
    }
}

fn emit_entries(entries: &[(String, Y)], indent: usize, out: &mut String) {
    for (key, value) in entries {
        out.push_str(&" ".repeat(indent));
        emit_key(key, out);
        out.push(':');
        emit(value, indent + 2, out);
    }
}

fn document(root: &[(String, Y)]) -> String {
    let mut out = String::new();
    emit_entries(root, 0, &mut out);
    out
}

/// Nodes in document order, anchors being transparent.
fn count(y: &Y) -> usize {
    match y {
        Y::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Y::Map(entries) => 1 + entries.iter().map(|(_, v)| count(v)).sum::<usize>(),
        Y::Anchor(_, inner) => count(inner),
        _ => 1,
    }
}

fn nth_mut(y: &mut Y, mut n: usize) -> &mut Y {
    if let Y::Anchor(_, inner) = y {
        return nth_mut(inner, n);
    }
    if n == 0 {
        return y;
    }
    n -= 1;
    let children: Vec<&mut Y> = match y {
        Y::Seq(items) => items.iter_mut().collect(),
        Y::Map(entries) => entries.iter_mut().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    for child in children {
        let c = count(child);
        if n < c {
            return nth_mut(child, n);
        }
        n -= c;
    }
    unreachable!("node index out of range")
}

/// The sizes of all mappings, in document order.
fn map_sizes(y: &Y, out: &mut Vec<usize>) {
    match y {
        Y::Map(entries) => {
            out.push(entries.len());
            for (_, v) in entries {
                map_sizes(v, out);
            }
        }
        Y::Seq(items) => items.iter().for_each(|i| map_sizes(i, out)),
        Y::Anchor(_, inner) => map_sizes(inner, out),
        _ => {}
    }
}

fn nth_map_mut<'y>(y: &'y mut Y, n: &mut usize) -> Option<&'y mut Vec<(String, Y)>> {
    match y {
        Y::Map(entries) => {
            if *n == 0 {
                return Some(entries);
            }
            *n -= 1;
            entries.iter_mut().find_map(|(_, v)| nth_map_mut(v, n))
        }
        Y::Seq(items) => items.iter_mut().find_map(|i| nth_map_mut(i, n)),
        Y::Anchor(_, inner) => nth_map_mut(inner, n),
        _ => None,
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Remove one entry of one mapping.
    Drop(Index, Index),
    /// Replace a node (never the root) with a value of another kind or shape.
    Replace(Index, Y),
    /// Add a key nobody asked for.
    Unknown(Index, String, Y),
    /// Write one entry of a mapping twice.
    Duplicate(Index, Index),
    /// Anchor one node and refer to it from another.
    Alias(Index, Index),
    /// The billion laughs: nine levels of nine aliases each.
    Bomb,
}

/// One of `options`, the first (a valid value) four times in five: with a dozen fields per
/// config, uniform choices would almost never add up to a config the validator accepts.
fn raw(options: &'static [&'static str]) -> BoxedStrategy<Y> {
    prop_oneof![4 => Just(options[0]), 1 => select(options)]
        .prop_map(|s| Y::Raw(s.to_owned()))
        .boxed()
}

/// Placeholders that `uniquify` turns into distinct names, so that several secrets can be
/// valid together (names, directories and Kubernetes Secrets must not repeat).
fn uniquify(y: &mut Y, next: &mut usize) {
    match y {
        Y::Raw(s) if s.starts_with('@') => {
            *next += 1;
            *s = match s.as_str() {
                "@dir" => format!("/run/ferry/d{next}"),
                "@path" => format!("/run/files/f{next}"),
                _ => format!("u{next}"),
            };
        }
        Y::Seq(items) => items.iter_mut().for_each(|i| uniquify(i, next)),
        Y::Map(entries) => entries.iter_mut().for_each(|(_, v)| uniquify(v, next)),
        Y::Anchor(_, inner) => uniquify(inner, next),
        _ => {}
    }
}

fn field(key: &'static str, p: f64, value: BoxedStrategy<Y>) -> BoxedStrategy<Option<(String, Y)>> {
    let entry = value.prop_map(move |v| (key.to_owned(), v));
    if p >= 1.0 {
        entry.prop_map(Some).boxed()
    } else {
        prop::option::weighted(p, entry).boxed()
    }
}

fn map(fields: Vec<BoxedStrategy<Option<(String, Y)>>>) -> BoxedStrategy<Y> {
    fields
        .prop_map(|f| Y::Map(f.into_iter().flatten().collect()))
        .boxed()
}

fn seq(item: BoxedStrategy<Y>, len: std::ops::Range<usize>) -> BoxedStrategy<Y> {
    prop::collection::vec(item, len).prop_map(Y::Seq).boxed()
}

const ROLE_NAMES: &[&str] = &["shared", "hub", "r.1", "bad name", "nosuchrole"];
const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "US-EAST-1", "\"\"", "1"];
const DURATIONS: &[&str] = &[
    "15m",
    "1h",
    "12h",
    "13h",
    "14m",
    "\"-5s\"",
    "0s",
    "1e400",
    "99999999999999999999999s",
    "abc",
    "\"1h 30m\"",
    "18446744073709551615s",
];
const INTERVALS: &[&str] = &[
    "60s",
    "1s",
    "500ms",
    "0s",
    "\"-1s\"",
    "1e400",
    "9999999999999999999999h",
    "\"\"",
    "5m",
];
const DIRS: &[&str] = &[
    "@dir",
    "/run/a",
    "/run/b",
    "/run/a/sub",
    "\"/run/{{ name }}\"",
    "relative/dir",
    "\"\"",
    "/",
];

fn role_body() -> BoxedStrategy<Y> {
    map(vec![
        field(
            "roleArn",
            0.95,
            raw(&[
                "arn:aws:iam::111111111111:role/x",
                "arn:aws:iam::111111111111:role/path/to/r",
                "arn:aws:iam::1111:role/x",
                "arn:aws:s3:::bucket",
                "arn:aws:iam::111111111111:role/",
            ]),
        ),
        field(
            "externalIdFile",
            0.3,
            raw(&["/etc/secret-ferry/external-id", "\"\""]),
        ),
        field("externalIdEnv", 0.15, raw(&["EXTERNAL_ID", "1BAD", "\"\""])),
        field(
            "sessionName",
            0.3,
            raw(&[
                "secret-ferry",
                "\"ferry-${POD_NAME}\"",
                "\"${NOPE}\"",
                "x",
                "\"${POD_NAME\"",
            ]),
        ),
        field("duration", 0.4, raw(DURATIONS)),
        field(
            "refreshBefore",
            0.4,
            raw(&["5m", "0s", "2h", "1s", "\"-1m\"", "59m"]),
        ),
        field(
            "via",
            0.1,
            select(ROLE_NAMES)
                .prop_map(|s| Y::Str(s.to_owned()))
                .boxed(),
        ),
        field("region", 0.15, raw(REGIONS)),
        field(
            "sessionTags",
            0.15,
            map(vec![
                field("team", 0.8, raw(&["payments", "\"\"", "1"])),
                field("bad key!", 0.1, raw(&["x"])),
            ]),
        ),
        field("transitiveTagKeys", 0.03, seq(raw(&["team", "nope"]), 0..3)),
        field("sourceIdentity", 0.1, raw(&["ci-bot", "x"])),
        field(
            "policy",
            0.15,
            prop_oneof![
                raw(&[
                    "'{\"Version\":\"2012-10-17\",\"Statement\":[]}'",
                    "'[1]'",
                    "'{'",
                    "1",
                ]),
                map(vec![
                    field("Version", 0.9, raw(&["\"2012-10-17\""])),
                    field(
                        "Statement",
                        0.9,
                        seq(raw(&["{Effect: Allow}", "1", ".inf", "null"]), 0..3)
                    ),
                ]),
            ]
            .boxed(),
        ),
        field(
            "policyArns",
            0.1,
            prop_oneof![
                9 => seq(raw(&["arn:aws:iam::aws:policy/ReadOnlyAccess", "x"]), 0..3),
                1 => seq(raw(&["arn:aws:iam::aws:policy/ReadOnlyAccess"]), 11..12),
            ]
            .boxed(),
        ),
        field(
            "stsEndpoint",
            0.1,
            raw(&["https://sts.eu-west-1.amazonaws.com", "ftp://x"]),
        ),
    ])
}

const MODES: &[&str] = &[
    "\"0400\"", "0400", "\"0777\"", "\"1777\"", "\"0999\"", "400", "-1",
];
const FORMATS: &[&str] = &["env", "json", "raw", "properties", "xml"];
const PATHS: &[&str] = &["@path", "/run/app/.env", "/run/a/inside", "\"\""];

fn file_target() -> BoxedStrategy<Y> {
    let dir_form = map(vec![
        field("dir", 1.0, raw(DIRS)),
        field("mode", 0.3, raw(MODES)),
        field("format", 0.03, raw(FORMATS)),
    ]);
    let path_form = map(vec![
        field("path", 1.0, raw(PATHS)),
        field("mode", 0.3, raw(MODES)),
        field("format", 0.5, raw(FORMATS)),
    ]);
    // Both or neither.
    let odd = map(vec![
        field("dir", 0.5, raw(DIRS)),
        field("path", 0.5, raw(PATHS)),
    ]);
    map(vec![field(
        "file",
        1.0,
        prop_oneof![12 => dir_form, 4 => path_form, 1 => odd].boxed(),
    )])
}

fn kube_target() -> BoxedStrategy<Y> {
    map(vec![field(
        "kubernetesSecret",
        1.0,
        map(vec![
            field(
                "name",
                0.9,
                raw(&["@k8s", "app-secret", "Bad_Name", "\"\""]),
            ),
            field(
                "namespace",
                0.3,
                raw(&[
                    "default",
                    "a-very-long-namespace-name-that-is-longer-than-sixty-three-characters",
                ]),
            ),
            field(
                "type",
                0.1,
                raw(&["Opaque", "kubernetes.io/service-account-token"]),
            ),
            field(
                "creationPolicy",
                0.2,
                raw(&["Owner", "Merge", "Orphan", "Nope"]),
            ),
            field(
                "deletionPolicy",
                0.2,
                raw(&["Retain", "Delete", "Sometimes"]),
            ),
            field("immutable", 0.1, raw(&["true", "\"yes\""])),
            field("ownerPod", 0.1, raw(&["true", "false"])),
            field(
                "labels",
                0.1,
                map(vec![field("app", 0.9, raw(&["web", "\"bad value!\""]))]),
            ),
        ]),
    )])
}

fn secret_body() -> BoxedStrategy<Y> {
    map(vec![
        field(
            "name",
            0.98,
            prop_oneof![
                19 => raw(&["@name", "db", "api", "db", "\"bad name\"", "\"\"", "x.y_z-1"]),
                1 => Just(Y::Str("n".repeat(129))).boxed(),
            ]
            .boxed(),
        ),
        field(
            "secretId",
            0.97,
            raw(&[
                "app/db",
                "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/db-AbCdEf",
                "arn:aws:secretsmanager:bad",
                "12345",
                "0x1F",
            ]),
        ),
        field(
            "find",
            0.03,
            map(vec![
                field("namePrefix", 0.7, raw(&["\"team-a/\"", "\"bad prefix!\""])),
                field(
                    "tags",
                    0.5,
                    map(vec![field("env", 0.9, raw(&["prod", "1"]))]),
                ),
            ]),
        ),
        field("prune", 0.02, raw(&["true", "false", "\"yes\""])),
        field("role", 0.3, raw(ROLE_NAMES)),
        field(
            "versionStage",
            0.15,
            raw(&["AWSCURRENT", "AWSPREVIOUS", "123"]),
        ),
        field(
            "versionId",
            0.1,
            raw(&["v1", "12345678-1234-1234-1234-123456789012"]),
        ),
        field("refreshInterval", 0.4, raw(INTERVALS)),
        field(
            "targets",
            0.98,
            seq(
                prop_oneof![
                    40 => file_target(),
                    5 => kube_target(),
                    1 => map(vec![field("singleFile", 1.0, raw(&["/run/x"]))]),

                ]
                .boxed(),
                1..3,
            ),
        ),
        field(
            "onChange",
            0.1,
            seq(
                raw(&[
                    "{signal: {process: nginx, signal: HUP}}",
                    "{http: {url: \"http://127.0.0.1:8080/-/reload\"}}",
                    "{touch: /run/app/.changed}",
                    "{touch: /a, http: {url: \"http://x\"}}",
                    "{signal: {process: a-very-long-process-name, signal: KILL}}",
                ]),
                0..3,
            ),
        ),
        field("debounce", 0.1, raw(&["2s", "0s", "2h"])),
        field(
            "fetchStrategy",
            0.15,
            raw(&["auto", "get", "batch", "list", "fast"]),
        ),
        field("failoverRegion", 0.1, raw(REGIONS)),
        field(
            "property",
            0.15,
            raw(&["db.main", "\"a..b\"", "password", "\"\""]),
        ),
        field(
            "keys",
            0.15,
            seq(
                raw(&[
                    "{from: password, to: DB_PASSWORD}",
                    "{from: user}",
                    "{from: \"../x\"}",
                    "{from: a, to: ..data}",
                    "{to: x}",
                ]),
                1..2,
            ),
        ),
        field("decode", 0.1, raw(&["none", "base64", "hex"])),
        field(
            "templates",
            0.2,
            map(vec![
                field(
                    "URL",
                    0.8,
                    raw(&[
                        "\"{{ password }}\"",
                        "\"{% for %}\"",
                        "\"{{ x\"",
                        "\"{% for i in range(10**9) %}x{% endfor %}\"",
                        "\"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}\"",
                        "1",
                    ]),
                ),
                field("..data", 0.05, raw(&["\"{{ password }}\""])),
            ]),
        ),
        field("templateMode", 0.02, raw(&["add", "replace", "both"])),
    ])
}

fn config_tree() -> BoxedStrategy<Vec<(String, Y)>> {
    let roles = (
        // Mostly the role secrets refer to first, so that references resolve.
        prop_oneof![3 => Just(vec!["shared"]), 1 => subsequence(ROLE_NAMES, 0..=3)],
        prop::collection::vec(role_body(), 3),
    )
        .prop_map(|(names, bodies)| {
            Y::Map(
                names
                    .into_iter()
                    .zip(bodies)
                    .map(|(n, b)| (n.to_owned(), b))
                    .collect(),
            )
        })
        .boxed();
    let root = map(vec![
        field("region", 0.7, raw(REGIONS)),
        field("roles", 0.8, roles),
        field("secrets", 0.97, seq(secret_body(), 1..3)),
        field("fetchStrategy", 0.1, raw(&["auto", "list", "fast"])),
        field(
            "apiRateLimit",
            0.1,
            raw(&[
                "50",
                "0",
                "10001",
                "-1",
                "99999999999999999999999",
                "1.5",
                "\"50\"",
            ]),
        ),
        field("maxStaleness", 0.1, raw(INTERVALS)),
        field("failoverRegion", 0.1, raw(REGIONS)),
    ]);
    root.prop_map(|mut y| {
        uniquify(&mut y, &mut 0);
        match y {
            Y::Map(entries) => entries,
            _ => Vec::new(),
        }
    })
    .boxed()
}

/// Values of the wrong kind or a hostile shape.
fn hostile_value() -> BoxedStrategy<Y> {
    prop_oneof![
        3 => select(&[
            "123", "-1", "0", "true", "false", "null", "~", "1e400", "-.inf", ".nan",
            "99999999999999999999999", "-99999999999999999999999", "0x1F", "0o17", "\"\"",
            "\"-5s\"", "\"-1h\"", "\"0s\"", "\"9999999999999999999h\"", "\"1e999999s\"", "[]",
            "{}", "\"0400\"", "0400", "\"9999\"", "!!binary aGVsbG8=", "!custom {a: 1}",
            "|\n  block\n  text", "'single ''quoted'''", "\"\\u0000\"",
        ][..])
        .prop_map(|s| Y::Raw(s.to_owned()))
        .boxed(),
        1 => any::<String>().prop_map(Y::Str).boxed(),
        1 => (1usize..20_000, select(&["x", "é", "😀", "\u{202e}", "\\", "\"", "\0", " "][..]))
            .prop_map(|(n, s)| Y::Str(s.repeat(n)))
            .boxed(),
        1 => (1usize..64, any::<bool>())
            .prop_map(|(depth, as_map)| {
                let mut y = Y::Raw("1".to_owned());
                for _ in 0..depth {
                    y = if as_map { Y::Map(vec![("a".to_owned(), y)]) } else { Y::Seq(vec![y]) };
                }
                y
            })
            .boxed(),
    ]
    .boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(m, e)| Mutation::Drop(m, e)),
        4 => (any::<Index>(), hostile_value()).prop_map(|(i, y)| Mutation::Replace(i, y)),
        2 => (any::<Index>(), "[a-zA-Z][a-zA-Z0-9_ .é/]{0,12}", hostile_value())
            .prop_map(|(i, k, y)| Mutation::Unknown(i, k, y)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(m, e)| Mutation::Duplicate(m, e)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Alias(a, b)),
        1 => Just(Mutation::Bomb),
    ]
    .boxed()
}

fn apply(root: &mut Vec<(String, Y)>, mutations: &[Mutation]) {
    for (n, m) in mutations.iter().enumerate() {
        // The root stays a mapping of string keys: that is the shape whose problems all
        // have paths; other shapes are the arbitrary-text property's business.
        let mut tree = Y::Map(std::mem::take(root));
        let nodes = count(&tree);
        match m {
            Mutation::Drop(which, entry) | Mutation::Duplicate(which, entry) => {
                let mut sizes = Vec::new();
                map_sizes(&tree, &mut sizes);
                let filled: Vec<usize> = (0..sizes.len()).filter(|i| sizes[*i] > 0).collect();
                if !filled.is_empty() {
                    let mut n = filled[which.index(filled.len())];
                    let entries = nth_map_mut(&mut tree, &mut n).unwrap();
                    let i = entry.index(entries.len());
                    if matches!(m, Mutation::Drop(..)) {
                        entries.remove(i);
                    } else {
                        let copy = entries[i].clone();
                        entries.push(copy);
                    }
                }
            }
            Mutation::Replace(which, y) if nodes > 1 => {
                *nth_mut(&mut tree, 1 + which.index(nodes - 1)) = y.clone();
            }
            Mutation::Unknown(which, key, y) => {
                let mut sizes = Vec::new();
                map_sizes(&tree, &mut sizes);
                let mut n = which.index(sizes.len());
                nth_map_mut(&mut tree, &mut n)
                    .unwrap()
                    .push((key.clone(), y.clone()));
            }
            Mutation::Alias(a, b) if nodes > 2 => {
                let (a, b) = (1 + a.index(nodes - 1), 1 + b.index(nodes - 1));
                let (first, second) = (a.min(b), a.max(b));
                if first != second {
                    let name = format!("m{n}");
                    *nth_mut(&mut tree, second) = Y::Alias(name.clone());
                    let node = nth_mut(&mut tree, first);
                    *node = Y::Anchor(name, Box::new(node.clone()));
                }
            }
            Mutation::Bomb => {
                if let Y::Map(entries) = &mut tree {
                    let mut lol = vec![(
                        "lol0".to_owned(),
                        Y::Anchor(
                            "l0".to_owned(),
                            Box::new(Y::Seq(vec![Y::Raw("lol".to_owned()); 9])),
                        ),
                    )];
                    for level in 1..9 {
                        let below = Y::Alias(format!("l{}", level - 1));
                        lol.push((
                            format!("lol{level}"),
                            Y::Anchor(format!("l{level}"), Box::new(Y::Seq(vec![below; 9]))),
                        ));
                    }
                    lol.append(entries);
                    *entries = lol;
                }
            }
            _ => {}
        }
        if let Y::Map(entries) = tree {
            *root = entries;
        }
    }
}

#[test]
fn config_validator_survives_structured_mutations() {
    let cases = AtomicU64::new(0);
    let accepted = AtomicU64::new(0);
    let invalid_yaml = AtomicU64::new(0);
    let problems = AtomicU64::new(0);
    let slowest = AtomicU64::new(0);
    // A third of the cases unmutated, so that the accepted side is reached too.
    let mutations = prop_oneof![
        1 => Just(Vec::new()),
        2 => prop::collection::vec(mutation(), 1..4),
    ];
    let strategy = (config_tree(), mutations);
    run_property(
        "structured config",
        fuzz_cases(),
        strategy,
        |(mut root, mutations)| {
            cases.fetch_add(1, Ordering::Relaxed);
            apply(&mut root, &mutations);
            let yaml = document(&root);
            let (ok, took) = parse_and_check(&yaml, Duration::from_secs(5))?;
            max_ms(&slowest, took);
            if ok {
                accepted.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let errors = config::parse_with_env(&yaml, &fake_env).unwrap_err();
            problems.fetch_add(errors.0.len() as u64, Ordering::Relaxed);
            // A required field that is missing is reported at its own path (`secrets`).
            let mut top: Vec<&str> = root.iter().map(|(k, _)| k.as_str()).collect();
            top.push("secrets");
            for p in &errors.0 {
                if p.path.is_empty() {
                    // The root is a mapping of string keys, so only the YAML itself can be wrong
                    // at no path: a duplicate key, an undefined alias, the alias budget.
                    let whole = p.message.starts_with("the config is empty")
                        || (p.line.is_some()
                            && (p.message.starts_with("invalid YAML")
                                || p.message.starts_with("the document nests deeper")));
                    prop_assert!(whole, "{p:?}\n{yaml}");
                    invalid_yaml.fetch_add(1, Ordering::Relaxed);
                } else {
                    // Every path starts at a key the document has: `secrets[0].refreshInterval`.
                    let named = top.iter().any(|k| {
                        p.path == *k
                            || p.path.starts_with(&format!("{k}."))
                            || p.path.starts_with(&format!("{k}["))
                    });
                    prop_assert!(
                        named,
                        "{:?} does not start at a top-level key of\n{yaml}",
                        p.path
                    );
                    prop_assert!(p.line.is_some(), "{p:?}");
                }
            }
            Ok(())
        },
    );
    let cases = cases.load(Ordering::Relaxed);
    // The grammar is meant to reach both sides; a generator that only ever produces invalid
    // configs would test nothing of the accepted side's invariants.
    let accepted = accepted.load(Ordering::Relaxed);
    if cases >= 256 {
        assert!(
            accepted > 0,
            "no generated config was accepted in {cases} cases"
        );
        assert!(accepted < cases, "every generated config was accepted");
    }
    common::record_figures(
        "hostile_input_config_structured",
        serde_json::json!({
            "config_cases": cases,
            "accepted": accepted,
            "document_level_problems": invalid_yaml.load(Ordering::Relaxed),
            "problems": problems.load(Ordering::Relaxed),
            "slowest_parse_ms": slowest.load(Ordering::Relaxed),
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}

#[test]
fn yaml_alias_bombs_are_refused_or_bounded() {
    // Nine levels of nine: 387 million nodes if expanded.
    let mut bomb = String::from("lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..9 {
        let below = format!("*l{}", level - 1);
        bomb.push_str(&format!(
            "lol{level}: &l{level} [{}]\n",
            vec![below; 9].join(", ")
        ));
    }
    bomb.push_str("secrets: *l8\n");
    let (result, took) = timed("alias bomb", Duration::from_secs(5), || {
        config::parse(&bomb)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let errors = result.expect_err("the bomb was accepted");
    must(check_problems(&bomb, &errors));
    assert_eq!(errors.0.len(), 1, "{errors}");
    let problem = &errors.0[0];
    assert!(
        problem.path.is_empty() && problem.line.is_some(),
        "{problem:?}"
    );
    assert!(
        problem.message.starts_with("invalid YAML") && problem.message.contains("alias"),
        "{problem:?}"
    );

    // Below the parser's alias budget the expansion happens: one secret copied 2,000 times
    // must cost linear time and yield one clear problem per copy, each at its own path.
    let copies = 2_000;
    let mut wide = String::from(
        "secrets:\n  - &s {name: db, secretId: app/db, targets: [{file: {dir: /run/db}}]}\n",
    );
    for _ in 1..copies {
        wide.push_str("  - *s\n");
    }
    let (result, wide_took) = timed("wide alias", Duration::from_secs(10), || {
        config::parse(&wide)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let errors = result.expect_err("2,000 secrets named db were accepted");
    must(check_problems(&wide, &errors));
    for i in 1..copies {
        let path = format!("secrets[{i}].name");
        assert!(
            errors
                .0
                .iter()
                .any(|p| p.path == path && p.message.contains("duplicate secret name")),
            "no duplicate-name problem at {path}"
        );
    }
    common::record_figures(
        "hostile_input_yaml_alias_bomb",
        serde_json::json!({
            "bomb_refused_ms": took.as_millis(),
            "aliased_copies": copies,
            "aliased_copies_ms": wide_took.as_millis(),
            "aliased_copies_problems": errors.0.len(),
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}

/// A block sequence nested 100,000 deep is 200 KB of `- `: within any reasonable file size.
/// saphyr-parser 0.3's `load_node`/`load_sequence` recurse once per level with no limit, so
/// the process died of a stack overflow (SIGABRT) instead of reporting an invalid config (in a
/// debug build 2 MiB of stack overflows at about 900 levels). The config checks nesting first.
#[test]
fn deeply_nested_yaml_is_refused_before_the_parser_recurses() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (what, yaml) in [
        (
            "block sequences",
            format!("secrets:\n  {}x\n", "- ".repeat(100_000)),
        ),
        (
            "complex keys",
            format!("secrets:\n  {}x\n", "? ".repeat(100_000)),
        ),
    ] {
        let path = tmp.path().join("deep.yaml");
        fs::write(&path, &yaml).unwrap();
        let out = Command::new(common::binary())
            .args(["validate", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        // 78 is EX_CONFIG: the config was read and refused with a message.
        if out.status.code() != Some(78) {
            failures.push(format!(
                "{what}: validate ended with {:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `Checker::source_text` used to turn a span's char index into a byte offset by walking the
/// whole text from its start, once per value described in a message: 16,000 wrongly typed
/// numbers (a 32 KB file) took 35 s in a debug build, 50,000 six minutes. Non-ASCII text
/// (the second case) takes the other path, a char offset table.
#[test]
fn many_wrongly_typed_numbers_are_described_in_linear_time() {
    let n = 16_000;
    for yaml in [
        format!("secrets: [{}]\n", vec!["1"; n].join(",")),
        format!("# \u{e9}\nsecrets: [{}]\n", vec!["1"; n].join(",")),
    ] {
        let start = Instant::now();
        let errors = config::parse(&yaml).unwrap_err();
        let took = start.elapsed();
        assert_eq!(errors.0.len(), n);
        assert!(took < Duration::from_secs(3), "{n} problems took {took:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Transform: keys and values from the wire
// ---------------------------------------------------------------------------------------------

/// What `render` must do with an object of these entries: the first unsafe or repeated key
/// (in document order) fails the whole secret, naming it.
fn expected_render_error(keys: &[&str]) -> Option<String> {
    let mut seen = HashSet::new();
    for key in keys {
        if let Err(e) = check_key(key) {
            return Some(e.to_string());
        }
        if !seen.insert(*key) {
            return Some(format!("duplicate key {} in JSON object", quoted_key(key)));
        }
    }
    None
}

/// A key that is safe is one plain path component: no way out of, or around, the directory.
fn is_single_component(key: &str) -> bool {
    let mut components = Path::new(key).components();
    matches!(components.next(), Some(Component::Normal(c)) if c == OsStr::new(key))
        && components.next().is_none()
}

/// Checks `render(payload)` against the expected outcome, and that no value leaks.
fn check_render(
    payload: &Payload,
    keys: &[&str],
    canary: &str,
) -> Result<Result<Rendered, TransformError>, TestCaseError> {
    let result = guarded("transform::render", || render(payload))?;
    match (&result, expected_render_error(keys)) {
        (Ok(rendered), None) => {
            let produced: BTreeSet<&str> = rendered.files.keys().map(String::as_str).collect();
            let wanted: BTreeSet<&str> = keys.iter().copied().collect();
            prop_assert_eq!(produced, wanted);
            for key in rendered.files.keys() {
                prop_assert!(
                    check_key(key).is_ok(),
                    "{key:?} passed render but not check_key"
                );
                prop_assert!(
                    is_single_component(key),
                    "{key:?} is not one path component"
                );
                prop_assert!(key.len() <= MAX_KEY_BYTES);
            }
            let debug = format!("{rendered:?} {rendered:#?}");
            prop_assert!(
                !debug.contains(canary),
                "a value in Rendered's Debug: {debug}"
            );
        }
        (Err(e), Some(expected)) => {
            let all = shown(e);
            prop_assert_eq!(e.to_string(), expected);
            prop_assert!(!all.contains(canary), "a value in the error: {all}");
            // A key is cut to 64 characters, so a 64 KiB key cannot flood a log line (escaping
            // can make one character ten: `\u{e0000}`).
            prop_assert!(
                e.to_string().len() < 64 * 10 + 120,
                "error too long: {}",
                e.to_string().len()
            );
        }
        (Ok(r), Some(expected)) => {
            return Err(TestCaseError::fail(format!(
                "accepted {r:?}, expected {expected}"
            )))
        }
        (Err(e), None) => return Err(TestCaseError::fail(format!("refused: {e}"))),
    }
    Ok(result)
}

fn file<'r>(r: &'r Rendered, key: &str) -> &'r [u8] {
    r.files
        .get(key)
        .map(|v| v.expose().as_slice())
        .unwrap_or_default()
}

#[test]
fn wire_keys_and_values_fixed_cases() {
    let canary = common::canary("hostile-wire");
    let value = serde_json::to_string(&canary).unwrap();
    let long_key = format!("{}{canary}", "k".repeat(64 * 1024));
    let mut cases = 0u64;

    // Each unsafe key, alone and beside a good key, fails the whole secret naming the key.
    let unsafe_keys: Vec<(String, &str)> = vec![
        ("..".into(), "unsafe key \"..\": is \"..\""),
        (".".into(), "unsafe key \".\": is \".\""),
        ("a/b".into(), "unsafe key \"a/b\": contains '/'"),
        ("/abs".into(), "unsafe key \"/abs\": contains '/'"),
        (
            "../../etc/passwd".into(),
            "unsafe key \"../../etc/passwd\": starts with \"..\"",
        ),
        (
            "..data".into(),
            "unsafe key \"..data\": starts with \"..\" (reserved for the writer's own entries)",
        ),
        (
            "..data_tmp".into(),
            "unsafe key \"..data_tmp\": starts with \"..\"",
        ),
        (
            "..2026_01_02_03_04_05.1".into(),
            "unsafe key \"..2026_01_02_03_04_05.1\": starts with \"..\"",
        ),
        ("a\0b".into(), "unsafe key \"a\\0b\": contains NUL"),
        ("".into(), "unsafe key \"\": is empty"),
        ("é".repeat(127), "is longer than 253 bytes"),
    ];
    for (key, expected) in &unsafe_keys {
        for src in [
            format!("{{{}:{value}}}", serde_json::to_string(key).unwrap()),
            format!(
                "{{\"ok\":{value},{}:{{\"n\":{value}}}}}",
                serde_json::to_string(key).unwrap()
            ),
        ] {
            cases += 1;
            let err = render(&text(&src)).expect_err(key);
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
            assert_eq!(err.kind(), "unsafe_key");
            assert!(!shown(&err).contains(&canary));
        }
    }

    // 64 KiB key: refused, quoted as its first 64 characters and "...", the canary at its end
    // never shown.
    cases += 1;
    let src = format!("{{{}:{value}}}", serde_json::to_string(&long_key).unwrap());
    let err = render(&text(&src)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unsafe key \"{}...\": is longer than 253 bytes",
            "k".repeat(64)
        )
    );
    assert!(!shown(&err).contains(&canary));

    // 64 KiB value under a good key: written byte for byte.
    cases += 1;
    let big = format!("{canary}{}", "v".repeat(64 * 1024));
    let r = render(&text(&format!(
        "{{\"big\":{}}}",
        serde_json::to_string(&big).unwrap()
    )))
    .unwrap();
    assert_eq!(file(&r, "big"), big.as_bytes());
    assert!(!format!("{r:?}").contains(&canary));

    // Non-UTF-8 binary (SecretBinary), JSON-looking or not: one file `value`, exact bytes.
    for bytes in [
        vec![0xff, 0xfe, 0x00, b'{', 0x80],
        format!("{{\"a/../b\":{value}}}").into_bytes(),
        canary
            .as_bytes()
            .iter()
            .chain(&[0xc3, 0x28])
            .copied()
            .collect(),
    ] {
        cases += 1;
        let r = render(&Payload::Binary(Sensitive::new(bytes.clone()))).unwrap();
        assert_eq!(r.files.keys().collect::<Vec<_>>(), ["value"]);
        assert_eq!(file(&r, "value"), bytes.as_slice());
    }

    // 10,000-deep JSON. A top-level array is walked by serde_json with its recursion limit
    // (128): not an object, so one file `value` with the exact text. Under a key, a value is
    // only skipped over (RawValue, no recursion), so an object is split and the deep value
    // kept as its exact text. Either way no stack overflow and no error quoting it.
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}{value}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    cases += 3;
    let r = render(&text(&deep_array)).unwrap();
    assert_eq!(r.files.keys().collect::<Vec<_>>(), ["value"]);
    assert_eq!(file(&r, "value"), deep_array.as_bytes());
    let r = render(&text(&deep_object)).unwrap();
    assert_eq!(r.files.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(
        file(&r, "a"),
        &deep_object.as_bytes()[5..deep_object.len() - 1]
    );
    assert!(!format!("{r:?}").contains(&canary));
    let r = render(&text(&format!("{{\"deep\": {deep_array},\"pw\":{value}}}"))).unwrap();
    assert_eq!(file(&r, "deep"), deep_array.as_bytes());
    assert_eq!(file(&r, "pw"), canary.as_bytes());

    // Numbers beyond f64 and u64 are kept as written, inside an object and alone.
    for number in [
        "1e999999",
        "-1e999999",
        "123456789012345678901234567890",
        "-0",
        "0.000000000000000000000000000001e-999",
    ] {
        cases += 2;
        let r = render(&text(&format!("{{\"n\": {number} }}"))).unwrap();
        assert_eq!(file(&r, "n"), number.as_bytes());
        let r = render(&text(number)).unwrap();
        assert_eq!(file(&r, "value"), number.as_bytes());
    }

    // Duplicates, also when only an escape tells them apart, name the key, never a value.
    for (src, key) in [
        (format!("{{\"a\":{value},\"b\":1,\"a\":{value}}}"), "a"),
        (format!("{{\"a\":1,\"\\u0061\":{value}}}"), "a"),
    ] {
        cases += 1;
        let err = render(&text(&src)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("duplicate key {key:?} in JSON object")
        );
        assert!(!shown(&err).contains(&canary));
    }

    // `property` walks the same text: a 10,000-deep object is followed two levels down
    // and the rest kept as text.
    cases += 1;
    let r = Mapper::new(&Mapping {
        property: Some("a.a".into()),
        ..Mapping::default()
    })
    .unwrap()
    .apply(&text(&deep_object))
    .unwrap();
    assert_eq!(
        file(&r, "a"),
        &deep_object.as_bytes()[15..deep_object.len() - 3]
    );

    // Hostile shapes under a mapping give errors naming the property or key, never the value.
    let mapping_cases: Vec<(Mapping, String, &str)> = vec![
        (
            Mapping {
                property: Some("a".into()),
                ..Mapping::default()
            },
            deep_array.clone(),
            "property \"a\" not found: the secret is not a JSON object",
        ),
        (
            Mapping {
                property: Some("a".into()),
                ..Mapping::default()
            },
            format!("{{\"a\": {value}, \"b\": [[[["),
            "property \"a\" needs a JSON secret, but the secret is not valid JSON",
        ),
        (
            Mapping {
                property: Some("pw".into()),
                ..Mapping::default()
            },
            format!("{{\"pw\":{value},\"pw\":2}}"),
            "duplicate key \"pw\" in JSON object",
        ),
        (
            Mapping {
                property: Some("pw.x".into()),
                ..Mapping::default()
            },
            format!("{{\"pw\":{value}}}"),
            "property \"pw.x\" not found: \"pw\" is not a JSON object",
        ),
        (
            Mapping {
                decode: secret_ferry::config::Decode::Base64,
                ..Mapping::default()
            },
            format!("{{\"pw\":{value}}}"),
            "value of key \"pw\" is not valid base64",
        ),
    ];
    for (mapping, src, expected) in mapping_cases {
        cases += 1;
        let err = Mapper::new(&mapping)
            .unwrap()
            .apply(&text(&src))
            .unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert!(!shown(&err).contains(&canary));
    }
    let binary = Mapper::new(&Mapping {
        property: Some("a".into()),
        ..Mapping::default()
    })
    .unwrap()
    .apply(&Payload::Binary(Sensitive::new(canary.as_bytes().to_vec())))
    .unwrap_err();
    assert_eq!(
        binary.to_string(),
        "property \"a\" needs a JSON secret, but the secret is binary"
    );
    cases += 1;

    common::record_figures(
        "hostile_input_wire_fixed",
        serde_json::json!({ "transform_cases": cases, "panics": PANICS.load(Ordering::Relaxed) }),
    );
}

/// A value for one wire entry; `Canary` values carry the test's canary so leaks are visible.
#[derive(Clone, Debug)]
enum Wire {
    Canary(u16),
    Escaped(u16),
    Number(&'static str),
    Literal(&'static str),
    Nested(u16),
    Big,
}

fn wire_value_text(v: &Wire, canary: &str) -> String {
    match v {
        Wire::Canary(i) => serde_json::to_string(&format!("{canary}-{i}")).unwrap(),
        Wire::Escaped(i) => format!("\"{canary}-{i}\\n\\u0000\\ud83d\\ude00\\\"\\\\\""),
        Wire::Number(n) | Wire::Literal(n) => (*n).to_owned(),
        Wire::Nested(depth) => {
            let d = usize::from(*depth);
            format!("{}\"{canary}\"{}", "[".repeat(d), "]".repeat(d))
        }
        Wire::Big => serde_json::to_string(&format!("{canary}{}", "b".repeat(64 * 1024))).unwrap(),
    }
}

fn wire_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(&[
            "..", ".", "a/b", "/abs", "..data", "..data_tmp", "..link_tmp", "...", ". ", " ..",
            "a\0b", "", "value", "a\\b", "\u{202e}evil", "-rf", "a\nb", "\t", "CON", "ключ",
            "password", "password", "..2026_01_02_03_04_05.123456789_deadbeef", "~", "*",
        ][..])
        .prop_map(str::to_owned)
        .boxed(),
        3 => "[a-z_.]{1,12}".boxed(),
        2 => any::<String>().boxed(),
        1 => (250usize..258, select(&["k", "é"][..])).prop_map(|(n, s)| s.repeat(n / s.len())).boxed(),
        1 => Just("k".repeat(64 * 1024)).boxed(),
    ]
    .boxed()
}

fn wire_value() -> BoxedStrategy<Wire> {
    prop_oneof![
        4 => any::<u16>().prop_map(Wire::Canary),
        2 => any::<u16>().prop_map(Wire::Escaped),
        2 => select(&[
            "1e999999", "-1e999999", "123456789012345678901234567890", "-0", "0", "1.5e-400",
            "18446744073709551616", "-9223372036854775809",
        ][..])
        .prop_map(Wire::Number),
        1 => select(&["true", "false", "null", "[]", "{}", "[1, {\"a\": [null]}]", "{\"x\": 1, \"x\": 2}"][..])
            .prop_map(Wire::Literal),
        1 => select(&[1u16, 10, 100, 10_000][..]).prop_map(Wire::Nested),
        1 => Just(Wire::Big),
    ]
    .boxed()
}

#[test]
fn wire_objects_with_arbitrary_keys() {
    let canary = common::canary("hostile-wire-prop");
    let cases = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let strategy = prop::collection::vec((wire_key(), wire_value()), 0..8);
    run_property("wire objects", fuzz_cases(), strategy, |entries| {
        cases.fetch_add(1, Ordering::Relaxed);
        let body: Vec<String> = entries
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}: {}",
                    serde_json::to_string(k).unwrap(),
                    wire_value_text(v, &canary)
                )
            })
            .collect();
        let src = format!("{{ {} }}", body.join(" ,\n"));
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        match check_render(&text(&src), &keys, &canary)? {
            Ok(r) => {
                for (k, v) in &entries {
                    if let Wire::Canary(i) = v {
                        let expected = format!("{canary}-{i}");
                        prop_assert_eq!(file(&r, k), expected.as_bytes());
                    }
                    if let Wire::Number(n) = v {
                        prop_assert_eq!(file(&r, k), n.as_bytes());
                    }
                    if let Wire::Nested(_) = v {
                        // However deep, the exact text (there is no whitespace to drop).
                        let expected = wire_value_text(v, &canary);
                        prop_assert_eq!(file(&r, k), expected.as_bytes());
                    }
                }
            }
            Err(_) => {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    // Arbitrary bytes as SecretBinary and as (lossy) SecretString: never a panic, a binary
    // payload always one exact `value` file.
    let bytes_cases = AtomicU64::new(0);
    run_property(
        "wire bytes",
        fuzz_cases(),
        prop::collection::vec(any::<u8>(), 0..4096),
        |bytes| {
            bytes_cases.fetch_add(1, Ordering::Relaxed);
            let r = guarded("render binary", || {
                render(&Payload::Binary(Sensitive::new(bytes.clone())))
            })?
            .map_err(|e| TestCaseError::fail(format!("binary refused: {e}")))?;
            prop_assert_eq!(file(&r, "value"), bytes.as_slice());
            let lossy = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(r) = guarded("render text", || render(&text(&lossy)))? {
                for key in r.files.keys() {
                    prop_assert!(check_key(key).is_ok() && is_single_component(key));
                }
            }
            Ok(())
        },
    );
    common::record_figures(
        "hostile_input_wire_property",
        serde_json::json!({
            "transform_cases": cases.load(Ordering::Relaxed) + bytes_cases.load(Ordering::Relaxed),
            "objects": cases.load(Ordering::Relaxed),
            "objects_refused": refused.load(Ordering::Relaxed),
            "byte_payloads": bytes_cases.load(Ordering::Relaxed),
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// Templates that loop or explode
// ---------------------------------------------------------------------------------------------

fn template_mapping(name: &str, source: &str) -> Mapping {
    Mapping {
        templates: vec![(name.to_owned(), source.to_owned())],
        template_mode: TemplateMode::Add,
        ..Mapping::default()
    }
}

fn template_payload(canary: &str) -> Payload {
    text(&format!(
        "{{\"password\":\"{canary}-pw\",\"username\":\"app\",\"port\":5432,\"blob\":{}}}",
        serde_json::to_string(&format!("{canary}-{}", "z".repeat(1000))).unwrap()
    ))
}

/// Renders `source` as template `name`; checks the outcome's shape and returns it.
fn check_template_outcome(
    name: &str,
    source: &str,
    canary: &str,
    limit: Duration,
) -> Result<(Result<Rendered, MappingError>, Duration), TestCaseError> {
    let mapping = template_mapping(name, source);
    let payload = template_payload(canary);
    let start = Instant::now();
    let outcome = match guarded("Mapper::new", || Mapper::new(&mapping))? {
        Ok(mapper) => guarded("Mapper::apply", || mapper.apply(&payload))?,
        Err(e) => Err(e),
    };
    let took = start.elapsed();
    prop_assert!(took < limit, "{source:?} took {took:?}");
    match &outcome {
        Ok(r) => {
            let out = file(r, name);
            prop_assert!(
                out.len() <= MAX_TEMPLATE_OUTPUT_BYTES,
                "{} bytes",
                out.len()
            );
        }
        Err(e) => {
            let all = shown(e);
            prop_assert!(!all.contains(canary), "a value in the error: {all}");
            // The error names the template (its output key), cut like any key.
            prop_assert!(
                e.to_string().contains(&quoted_key(name)),
                "{e} does not name {name:?}"
            );
            prop_assert!(
                matches!(e.kind(), "template" | "value_too_large" | "unsafe_key"),
                "kind {}",
                e.kind()
            );
        }
    }
    Ok((outcome, took))
}

#[test]
fn templates_that_loop_or_explode_are_bounded() {
    let canary = common::canary("hostile-template");
    let slowest = AtomicU64::new(0);
    // (template, kind of error, text the message must contain)
    // Templates may use `for` and `if` only, and no `*`: what could accumulate or repeat a
    // value is refused when the template is compiled (src/config/templates/bounds.rs).
    const STAR: &str = "the `*` operator is not allowed in templates (line 1)";
    const SET: &str = "the `set` statement is not allowed in templates (line 1)";
    let cases: &[(&str, &str, &str)] = &[
        ("{% for i in range(10**9) %}x{% endfor %}", "template", STAR),
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
            "template",
            "ran out of fuel (more than 20000 steps",
        ),
        ("{{ 'x' * 10**9 }}", "template", STAR),
        ("{{ password * 10**18 }}", "template", STAR),
        ("{{ 'x' * 99999999 }}", "template", STAR),
        ("{{ password * 100000 }}", "template", STAR),
        (
            "{% for i in range(1000) %}{{ blob }}{% endfor %}",
            "value_too_large",
            "65536",
        ),
        (
            "{{ range(99999)|join(password) }}",
            "value_too_large",
            "65536",
        ),
        (
            "{{ (blob ~ blob ~ blob ~ blob)|replace('z', password ~ password) }}",
            "template",
            "invalid operation",
        ),
        (
            "{% set s = blob %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}\
             {% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s }}",
            "template",
            SET,
        ),
        ("{% set s = blob * 64 %}{{ s ~ s }}", "template", SET),
        (
            "{{ 'a'|indent(99999999999) }}",
            "template",
            "invalid operation",
        ),
        ("{{ '%.99999f'|format(1.5) }}", "template", "unknown filter"),
        (
            "{{ [1]|batch(999999999, 'x')|list }}",
            "template",
            "unknown filter",
        ),
        ("{{ 10**999 }}", "template", STAR),
        ("{{ (password|length) ** 99999 }}", "template", STAR),
        ("{{ password + 1 }}", "template", "invalid operation"),
        ("{{ password|int }}", "template", ""),
        (
            "{{ password ~ nosuchvar }}",
            "template",
            "not in the secret: \"nosuchvar\"",
        ),
        (
            "{% for x in [[1]] recursive %}{{ loop(x) }}{% endfor %}",
            "template",
            "on line 1",
        ),
        // Macros, include and extends: no recursion by calling oneself, no template
        // pulling in another.
        (
            "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
            "template",
            "the `macro` statement is not allowed",
        ),
        (
            "{% include 'URL' %}",
            "template",
            "the `include` statement is not allowed",
        ),
        (
            "{% extends 'URL' %}",
            "template",
            "the `extends` statement is not allowed",
        ),
    ];
    for (source, kind, needle) in cases {
        let (outcome, took) =
            check_template_outcome("URL", source, &canary, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{source}: {e}"));
        max_ms(&slowest, took);
        match outcome {
            Ok(r) => panic!("{source}: accepted, {} bytes", file(&r, "URL").len()),
            Err(e) => {
                assert_eq!(e.kind(), *kind, "{source}: {e}");
                assert!(
                    e.to_string().starts_with("template \"URL\": "),
                    "{source}: {e}"
                );
                assert!(
                    e.to_string().contains(needle),
                    "{source}: {e} lacks {needle:?}"
                );
            }
        }
    }
    // A 64 KiB template name is refused before any rendering, quoted cut short.
    let long_name = "t".repeat(64 * 1024);
    let err = Mapper::new(&template_mapping(&long_name, "{{ password }}")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unsafe key \"{}...\": is longer than 253 bytes",
            "t".repeat(64)
        )
    );
    common::record_figures(
        "hostile_input_templates_fixed",
        serde_json::json!({
            "template_cases": cases.len() + 1,
            "slowest_ms": slowest.load(Ordering::Relaxed),
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}

/// A piece of template. Loop bodies only hold cheap pieces: fuel bounds the number of steps,
/// not the work one step does (see templates_that_escaped_fuel_are_refused_or_bounded).
#[derive(Clone, Debug)]
enum Piece {
    Text(&'static str),
    Var(&'static str),
    Filter(&'static str, &'static str),
    Loop(&'static str, Vec<Piece>),
    Repeat(&'static str),
    Join(&'static str),
    Replace(&'static str),
    Doubling(u8),
}

const COUNTS: &[&str] = &[
    "0",
    "1",
    "10",
    "1000",
    "65536",
    "100000",
    "100001",
    "10**6",
    "10**9",
    "10**18",
    "-1",
    "2**63",
    "'a'",
    "password|length",
    "none",
];

fn render_pieces(pieces: &[Piece], out: &mut String) {
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => out.push_str(&format!("{{{{ {v} }}}}")),
            Piece::Filter(v, f) => out.push_str(&format!("{{{{ {v}|{f} }}}}")),
            Piece::Loop(n, body) => {
                out.push_str(&format!("{{% for i in range({n}) %}}"));
                render_pieces(body, out);
                out.push_str("{% endfor %}");
            }
            Piece::Repeat(n) => out.push_str(&format!("{{{{ password * {n} }}}}")),
            Piece::Join(n) => out.push_str(&format!("{{{{ range({n})|join(password) }}}}")),
            Piece::Replace(n) => {
                out.push_str(&format!("{{{{ ('ab' * {n})|replace('a', password) }}}}"))
            }
            Piece::Doubling(k) => {
                out.push_str("{% set s = blob %}");
                for _ in 0..*k {
                    out.push_str("{% set s = s ~ s %}");
                }
                out.push_str("{{ s|length }}");
            }
        }
    }
}

fn cheap_piece() -> BoxedStrategy<Piece> {
    let leaf = prop_oneof![
        select(
            &[
                "x",
                "\n",
                "é",
                "{{ '{{' }}",
                "{# c #}",
                "{%- if true -%}y{%- endif -%}"
            ][..]
        )
        .prop_map(Piece::Text),
        select(
            &[
                "password",
                "username",
                "port",
                "blob",
                "nosuch",
                "loop.index",
                "i"
            ][..]
        )
        .prop_map(Piece::Var),
        (
            // Not `blob`: a filter that is linear in its input, in a loop, is exactly the case
            // fuel does not bound (templates_that_escaped_fuel_are_refused_or_bounded).
            select(&["password", "port"][..]),
            select(
                &[
                    "upper",
                    "length",
                    "reverse",
                    "first",
                    "int",
                    "float",
                    "abs",
                    "round",
                    "title",
                    "trim",
                    "list|length",
                    "nosuchfilter",
                    "default('d')",
                    "replace('a', 'bb')",
                    "batch(3)|list|length",
                    "split('-')|join('+')"
                ][..]
            ),
        )
            .prop_map(|(v, f)| Piece::Filter(v, f)),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        (select(COUNTS), prop::collection::vec(inner, 0..3))
            .prop_map(|(n, body)| Piece::Loop(n, body))
    })
    .boxed()
}

fn template_pieces() -> BoxedStrategy<Vec<Piece>> {
    let top = prop_oneof![
        4 => cheap_piece(),
        1 => select(&["0", "1", "1000", "4681", "4682", "10**6", "10**9", "-1"][..]).prop_map(Piece::Repeat),
        1 => select(&["10", "10000", "99999", "100001"][..]).prop_map(Piece::Join),
        1 => select(&["10", "1000", "100000"][..]).prop_map(Piece::Replace),
        1 => (0u8..9).prop_map(Piece::Doubling),
    ];
    prop::collection::vec(top, 1..5).boxed()
}

#[test]
fn templates_property_stays_within_fuel_and_size() {
    let canary = common::canary("hostile-template-prop");
    let cases = AtomicU64::new(0);
    let outcomes: [AtomicU64; 4] = Default::default();
    let slowest = AtomicU64::new(0);
    // Mostly names that render, some the mapping must refuse before rendering.
    let names = prop_oneof![
        6 => select(&["URL", "t", "a.b", "é"][..]),
        1 => select(&["..x", "a/b", ""][..]),
    ];
    run_property(
        "templates",
        fuzz_cases(),
        (names, template_pieces()),
        |(name, pieces)| {
            cases.fetch_add(1, Ordering::Relaxed);
            let mut source = String::new();
            render_pieces(&pieces, &mut source);
            let (outcome, took) =
                check_template_outcome(name, &source, &canary, Duration::from_secs(10))?;
            max_ms(&slowest, took);
            let slot = match &outcome {
                Ok(_) => 0,
                Err(e) if e.kind() == "value_too_large" => 1,
                Err(e) if e.kind() == "template" => 2,
                Err(_) => 3,
            };
            outcomes[slot].fetch_add(1, Ordering::Relaxed);
            Ok(())
        },
    );
    let [ok, too_large, template, unsafe_name] = outcomes.map(|a| a.load(Ordering::Relaxed));
    common::record_figures(
        "hostile_input_templates_property",
        serde_json::json!({
            "template_cases": cases.load(Ordering::Relaxed),
            "rendered": ok,
            "too_large": too_large,
            "template_errors": template,
            "unsafe_names": unsafe_name,
            "slowest_ms": slowest.load(Ordering::Relaxed),
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}

/// Templates that got past fuel and the output cap before templates were cut down to a
/// bounded language (`src/config/templates/bounds.rs`). minijinja's fuel counts instructions, not the
/// memory or time one instruction takes, and several builtins size an allocation from an
/// argument with no limit; the output cap only sees what reaches the output. Each case runs
/// in a child process limited to 2 GiB of address space and 60 s, and must end in an `Err`
/// from `Mapper::new` (refused when compiled) or `apply` (the child then exits 0).
///
/// What they did before (minijinja 2.24, debug build):
/// - `{{ 'a'|indent(99999999999) }}`: "memory allocation of 99999999999 bytes failed", abort.
/// - `{{ '%099999999999d'|format(1) }}`: the same abort.
/// - `{{ '%.99999f'|format(1.5) }}`: panic "Formatting argument out of range"
///   (minijinja format_utils.rs:574; Rust caps precision at 65535).
/// - six `{% set a = a ~ a %}` over a 100 MB string: 6.4 GB, abort (`~` has no size limit;
///   `'x' * n` stops at 100 MB).
/// - `{% for i in range(15000) %}{% set x = (port ~ 'x') * 19000000 %}{% endfor %}`: within
///   fuel, each step builds a 95 MB string (just under minijinja's 100 MB cap for `*`), about
///   0.17 s in debug, so some 40 minutes for one render.
/// - `{% for i in range(15000) %}{% set x = b|batch(3)|list|length %}{% endfor %}` over a
///   64 KiB value: 36 ms per iteration in debug, about 9 minutes; the fuzz found the 1 KiB
///   version taking over 10 s. Any filter linear in a wire-sized value does this in a loop.
#[test]
fn templates_that_escaped_fuel_are_refused_or_bounded() {
    if let Ok(source) = std::env::var("HOSTILE_TEMPLATE_CHILD") {
        let canary = common::canary("hostile-template-child");
        let err = match Mapper::new(&template_mapping("URL", &source)) {
            Err(err) => err,
            Ok(mapper) => mapper.apply(&template_payload(&canary)).unwrap_err(),
        };
        assert!(!shown(&err).contains(&canary));
        return;
    }
    let doublings = format!(
        "{{% set a = 'x' * 99999999 %}}{}{{{{ a|length }}}}",
        "{% set a = a ~ a %}".repeat(6)
    );
    let cases = [
        "{{ 'a'|indent(99999999999) }}".to_owned(),
        "{{ '%099999999999d'|format(1) }}".to_owned(),
        "{{ '%.99999f'|format(1.5) }}".to_owned(),
        doublings,
        "{% for i in range(15000) %}{% set x = (port ~ 'x') * 19000000 %}{% endfor %}".to_owned(),
        "{% set b = blob * 64 %}{% for i in range(15000) %}{% set x = b|batch(3)|list|length %}{% endfor %}".to_owned(),
        // Still allowed, and bounded: a filter linear in a 64 KiB value on every step of a
        // loop runs out of fuel long before it runs out of time.
        "{% for i in range(15000) %}{% if (blob ~ blob ~ blob)|list|length > 0 %}.{% endif %}{% endfor %}".to_owned(),
        "{{ blob|replace('', blob) }}".to_owned(),
    ];
    let exe = std::env::current_exe().unwrap();
    let mut failures = Vec::new();
    for source in &cases {
        let mut child = Command::new("sh")
            .args(["-c", "ulimit -v 2097152 && exec \"$0\" \"$@\""])
            .arg(&exe)
            // The test's path in the `it` binary: with `--exact`, the bare name would match
            // no test and the child would pass without rendering anything.
            .args([
                &common::test_path(
                    module_path!(),
                    "templates_that_escaped_fuel_are_refused_or_bounded",
                ),
                "--exact",
                "--nocapture",
            ])
            .env("HOSTILE_TEMPLATE_CHILD", source)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                let why = stderr
                    .lines()
                    .find(|l| {
                        l.contains("memory allocation")
                            || l.contains("panicked")
                            || l.contains("out of range")
                    })
                    .unwrap_or_default()
                    .to_owned();
                failures.push(format!("{source}: {s}: {why}"));
            }
            None => failures.push(format!("{source}: still running after 60 s")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------------------------
// File sink: entries planted in the target directory
// ---------------------------------------------------------------------------------------------

/// Everything under `root` without following a symlink: what "untouched" is compared on.
#[derive(Debug, PartialEq)]
enum Node {
    File {
        bytes: Vec<u8>,
        mode: u32,
        mtime: SystemTime,
    },
    Dir {
        mode: u32,
        mtime: SystemTime,
    },
    Link(PathBuf),
    Other,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let mtime = meta.modified().unwrap();
        let node = if meta.file_type().is_symlink() {
            Node::Link(fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            Node::Dir {
                mode: meta.mode() & 0o7777,
                mtime,
            }
        } else if meta.is_file() {
            Node::File {
                bytes: fs::read(&path).unwrap(),
                mode: meta.mode() & 0o7777,
                mtime,
            }
        } else {
            Node::Other
        };
        out.insert(path, node);
    }
    out
}

/// Where the sink tests build their trees: a memory-backed volume if there is one (what
/// the docs recommend for secrets), so fsync costs nothing.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("hostile-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

const KEY: &str = "password";
const TS_OURS: &str = "..2026_01_02_03_04_05.123456789_deadbeef";
const TS_KUBELET: &str = "..2026_01_02_03_04_05.1";
/// Names the sink itself uses, and a key it will write.
const PLANT_NAMES: &[&str] = &[
    KEY,
    "..data",
    "..data_tmp",
    "..link_tmp",
    TS_OURS,
    TS_KUBELET,
    "other",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plant {
    LinkToOutsideDir,
    LinkToSentinel,
    RelativeLinkOut,
    /// Points to a file that does not exist yet: following it would create it outside.
    DanglingOut,
    /// Looks like one of the sink's own links, but climbs out.
    DataEscape,
    HardLinkToSentinel,
    /// A real directory holding a symlink out (removing it must unlink, not descend).
    DirWithLinkOut,
    UserFile,
}

const PLANTS: &[Plant] = &[
    Plant::LinkToOutsideDir,
    Plant::LinkToSentinel,
    Plant::RelativeLinkOut,
    Plant::DanglingOut,
    Plant::DataEscape,
    Plant::HardLinkToSentinel,
    Plant::DirWithLinkOut,
    Plant::UserFile,
];

struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    target: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, Node>,
    /// Regular files and directories planted under names the sink must treat as someone
    /// else's: they must survive everything.
    user_files: Vec<(PathBuf, Vec<u8>)>,
    user_dirs: Vec<PathBuf>,
}

impl Scene {
    fn new() -> Scene {
        let tmp = scratch();
        let root = tmp.path().to_path_buf();
        let outside = root.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"outside sentinel").unwrap();
        fs::create_dir(outside.join("inner")).unwrap();
        fs::write(outside.join("inner/password"), b"outside inner").unwrap();
        // Same bytes and mode a write would produce: reading through a planted link would
        // wrongly answer "unchanged".
        fs::set_permissions(outside.join("sentinel"), fs::Permissions::from_mode(0o600)).unwrap();
        let target = root.join("target");
        fs::create_dir(&target).unwrap();
        Scene {
            before: BTreeMap::new(),
            _tmp: tmp,
            root,
            target,
            outside,
            user_files: Vec::new(),
            user_dirs: Vec::new(),
        }
    }

    fn plant(&mut self, name: &OsStr, plant: Plant) {
        let at = self.target.join(name);
        let _ = fs::remove_file(&at);
        let _ = fs::remove_dir_all(&at);
        self.user_files.retain(|(p, _)| *p != at);
        self.user_dirs.retain(|p| *p != at);
        // Names starting with `..` are the writer's own (file.rs); all others belong to
        // whoever put them there, unless they are symlinks.
        let users = !name.as_bytes().starts_with(b"..");
        match plant {
            Plant::LinkToOutsideDir => symlink(&self.outside, &at).unwrap(),
            Plant::LinkToSentinel => symlink(self.outside.join("sentinel"), &at).unwrap(),
            Plant::RelativeLinkOut => symlink("../outside/inner", &at).unwrap(),
            Plant::DanglingOut => symlink("../outside/created-through-a-link", &at).unwrap(),
            Plant::DataEscape => symlink("..data/../../outside/sentinel", &at).unwrap(),
            Plant::HardLinkToSentinel => {
                fs::hard_link(self.outside.join("sentinel"), &at).unwrap();
                if users {
                    self.user_files.push((at, b"outside sentinel".to_vec()));
                }
            }
            Plant::DirWithLinkOut => {
                fs::create_dir(&at).unwrap();
                symlink(&self.outside, at.join(KEY)).unwrap();
                symlink(self.outside.join("sentinel"), at.join("sentinel")).unwrap();
                if users {
                    self.user_dirs.push(at);
                }
            }
            Plant::UserFile => {
                fs::write(&at, b"the user's own file").unwrap();
                if users {
                    self.user_files.push((at, b"the user's own file".to_vec()));
                }
            }
        }
    }

    fn freeze(&mut self) {
        self.before = snapshot(&self.outside);
    }

    /// Nothing outside the target changed, nothing appeared next to it, and every user file
    /// is still there.
    fn check_untouched(&self, after: &str) -> Result<(), TestCaseError> {
        let now = snapshot(&self.outside);
        prop_assert!(
            now == self.before,
            "after {after}: outside changed\nbefore {:#?}\nnow {now:#?}",
            self.before
        );
        let mut beside: Vec<String> = fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        beside.sort();
        prop_assert!(
            beside.iter().all(|n| n == "outside" || n == "target"),
            "after {after}: new entries next to the target: {beside:?}"
        );
        for path in &self.user_dirs {
            let meta = fs::symlink_metadata(path);
            prop_assert!(
                meta.is_ok_and(|m| m.is_dir()),
                "after {after}: {path:?} is gone"
            );
        }
        for (path, bytes) in &self.user_files {
            let meta = fs::symlink_metadata(path);
            prop_assert!(
                meta.is_ok_and(|m| m.is_file()),
                "after {after}: {path:?} is gone or replaced"
            );
            prop_assert_eq!(
                &fs::read(path).ok(),
                &Some(bytes.clone()),
                "after {}: {:?}",
                after,
                path
            );
        }
        Ok(())
    }

    /// A failed step must say which path it failed on, and it lies in the target.
    fn check_error(
        &self,
        op: &str,
        err: &FileSinkError,
        canary: &str,
    ) -> Result<(), TestCaseError> {
        let all = shown(err);
        prop_assert!(!all.contains(canary), "{op}: a value in the error: {all}");
        prop_assert!(
            err.to_string().contains(&self.target.display().to_string()),
            "{op}: {err} does not name a path in the target"
        );
        Ok(())
    }

    /// After a successful write, every key reads back through the directory and resolves
    /// to a file inside it.
    fn check_written(&self, rendered: &Rendered) -> Result<(), TestCaseError> {
        let inside = fs::canonicalize(&self.target).unwrap();
        for (key, value) in &rendered.files {
            let path = self.target.join(key);
            let read = fs::read(&path).ok();
            // Not prop_assert_eq: the failure message would print the secret.
            prop_assert!(
                read.as_ref() == Some(value.expose()),
                "{key:?} does not read back"
            );
            let real = fs::canonicalize(&path).unwrap();
            prop_assert!(real.starts_with(&inside), "{key} resolves to {real:?}");
        }
        Ok(())
    }
}

fn rendered(pairs: &[(&str, String)]) -> Rendered {
    Rendered {
        files: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Sensitive::new(v.clone().into_bytes())))
            .collect(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Write(u8),
    Clean,
    Remove,
}

/// Runs `ops` against the scene; after each, the invariants hold. Returns the write outcomes.
fn run_ops(scene: &Scene, ops: &[Op], canary: &str) -> Result<(u64, u64), TestCaseError> {
    let sink = FileSink::new(&scene.target, 0o600);
    let secrets = [
        rendered(&[(KEY, format!("{canary}-1")), ("username", "app".to_owned())]),
        rendered(&[(KEY, "outside sentinel".to_owned())]),
        rendered(&[
            ("other", format!("{canary}-3")),
            ("é ü", format!("{canary}-4")),
        ]),
        Rendered::default(),
    ];
    let (mut ok, mut failed) = (0, 0);
    for op in ops {
        let (label, result) = match op {
            Op::Write(which) => {
                let secret = &secrets[usize::from(*which) % secrets.len()];
                let result = guarded("FileSink::write", || sink.write(secret))?;
                if result.is_ok() {
                    scene.check_written(secret)?;
                }
                ("write", result.map(|_| ()))
            }
            Op::Clean => (
                "clean_leftovers",
                guarded("FileSink::clean_leftovers", || sink.clean_leftovers())?,
            ),
            Op::Remove => ("remove", guarded("FileSink::remove", || sink.remove())?),
        };
        match result {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                scene.check_error(label, &e, canary)?;
            }
        }
        scene.check_untouched(label)?;
    }
    Ok((ok, failed))
}

#[test]
fn sink_never_follows_planted_entries_out_of_the_target() {
    let canary = common::canary("hostile-sink");
    let ops = [
        Op::Write(0),
        Op::Write(1),
        Op::Clean,
        Op::Write(2),
        Op::Write(3),
        Op::Remove,
    ];
    let (mut cases, mut ok, mut failed) = (0u64, 0u64, 0u64);
    for name in PLANT_NAMES {
        for plant in PLANTS {
            // Planted in a fresh directory, and over a directory the sink already wrote.
            for after_a_write in [false, true] {
                cases += 1;
                let mut scene = Scene::new();
                if after_a_write {
                    FileSink::new(&scene.target, 0o600)
                        .write(&rendered(&[(KEY, format!("{canary}-0"))]))
                        .unwrap();
                }
                scene.plant(OsStr::new(name), *plant);
                scene.freeze();
                let (o, f) = run_ops(&scene, &ops, &canary).unwrap_or_else(|e| {
                    panic!("{name} as {plant:?} (after a write: {after_a_write}): {e}")
                });
                ok += o;
                failed += f;
            }
        }
    }
    common::record_figures(
        "hostile_input_sink_planted",
        serde_json::json!({
            "symlink_cases": cases,
            "operations_ok": ok,
            "operations_refused": failed,
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}

#[test]
fn sink_refuses_a_user_file_in_the_way_and_never_deletes_it() {
    // file.rs: entries the writer did not create (regular files, directories) are never
    // deleted; a regular file in the way of a key is an error naming it.
    let canary = common::canary("hostile-sink-user");
    let mut scene = Scene::new();
    scene.plant(OsStr::new(KEY), Plant::UserFile);
    scene.plant(OsStr::new("notes"), Plant::UserFile);
    // A name that is not UTF-8 is nobody's key: the sink must skip it, not trip over it.
    let odd = OsStr::from_bytes(b"\xff\xfe-not-utf8");
    scene.plant(odd, Plant::UserFile);
    scene
        .user_files
        .push((scene.target.join(odd), b"the user's own file".to_vec()));
    scene.freeze();
    let sink = FileSink::new(&scene.target, 0o600);

    let err = sink
        .write(&rendered(&[(KEY, format!("{canary}-1"))]))
        .unwrap_err();
    assert_eq!(err.kind(), "not_a_symlink");
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to replace {}: it exists and is not a symlink",
            scene.target.join(KEY).display()
        )
    );
    must(scene.check_error("write", &err, &canary));
    must(scene.check_untouched("write"));

    // Other keys write fine beside them; removing the secret keeps them and the directory.
    let other = rendered(&[("username", format!("{canary}-2"))]);
    sink.write(&other).unwrap();
    must(scene.check_written(&other));
    sink.remove().unwrap();
    must(scene.check_untouched("remove"));
    let mut left: Vec<Vec<u8>> = fs::read_dir(&scene.target)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    left.sort();
    let mut planted = vec![
        KEY.as_bytes().to_vec(),
        b"notes".to_vec(),
        odd.as_bytes().to_vec(),
    ];
    planted.sort();
    assert_eq!(
        left, planted,
        "remove() left or took more than the user's files"
    );
    common::record_figures(
        "hostile_input_sink_user_files",
        serde_json::json!({ "symlink_cases": 3, "panics": PANICS.load(Ordering::Relaxed) }),
    );
}

fn plant_strategy() -> BoxedStrategy<Vec<(usize, Plant)>> {
    prop::collection::vec((0..PLANT_NAMES.len(), select(PLANTS)), 0..6).boxed()
}

fn op_strategy() -> BoxedStrategy<Vec<Op>> {
    prop::collection::vec(
        prop_oneof![4 => any::<u8>().prop_map(Op::Write), 1 => Just(Op::Clean), 1 => Just(Op::Remove)],
        1..6,
    )
    .boxed()
}

#[test]
fn sink_property_random_plants_and_operations() {
    let canary = common::canary("hostile-sink-prop");
    let cases = AtomicU64::new(0);
    let ops_run = AtomicU64::new(0);
    // Each case builds a tree and writes with fsync: a quarter of the budget keeps the
    // default run short, the long run still gets tens of thousands.
    let budget = (fuzz_cases() / 4).max(16);
    let strategy = (
        plant_strategy(),
        any::<bool>(),
        op_strategy(),
        plant_strategy(),
    );
    run_property(
        "sink",
        budget,
        strategy,
        |(first, prior_write, ops, second)| {
            cases.fetch_add(1, Ordering::Relaxed);
            let mut scene = Scene::new();
            for (name, plant) in &first {
                scene.plant(OsStr::new(PLANT_NAMES[*name]), *plant);
            }
            if prior_write {
                // Whatever it says, the planted tree must still be intact afterwards.
                let _ = guarded("FileSink::write", || {
                    FileSink::new(&scene.target, 0o600)
                        .write(&rendered(&[(KEY, format!("{canary}-0"))]))
                })?;
            }
            // Plants again, now over what the sink wrote (a link swapped under its feet).
            for (name, plant) in &second {
                scene.plant(OsStr::new(PLANT_NAMES[*name]), *plant);
            }
            scene.freeze();
            run_ops(&scene, &ops, &canary)?;
            ops_run.fetch_add(ops.len() as u64, Ordering::Relaxed);
            Ok(())
        },
    );
    common::record_figures(
        "hostile_input_sink_property",
        serde_json::json!({
            "symlink_cases": cases.load(Ordering::Relaxed),
            "operations": ops_run.load(Ordering::Relaxed),
            "panics": PANICS.load(Ordering::Relaxed),
        }),
    );
}
