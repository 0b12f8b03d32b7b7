//! A secret's `targets`: directories of files, single files and Kubernetes Secrets.

use std::path::{Path, PathBuf};

use super::claims::PathClaims;
use super::kube::KubeSecretTarget;
use super::read::{read_enum, read_list, read_path};
use super::rules::read_file_mode;
use super::yaml::{or_default, Checker, Field, Fields};
use super::{AT_LEAST_ONE, DEFAULT_FILE_MODE};

/// The placeholder a `find` entry's target paths use for each matching secret's name.
pub const NAME_PLACEHOLDER: &str = "{{ name }}";

/// Keys allowed in a `targets` item; keep in step with `read_target`.
const TARGET_KINDS: &[&str] = &["file", "kubernetesSecret"];

/// Where a secret is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    File(FileTarget),
    SingleFile(SingleFileTarget),
    /// Boxed: the largest by far, and rare next to files; a config holds one `Target` per
    /// target of every secret.
    KubernetesSecret(Box<KubeSecretTarget>),
}

/// Write the secret as one file in a format an app can load.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleFileTarget {
    pub path: PathBuf,
    pub format: FileFormat,
    /// Permission bits of the file, at most 0o777.
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Raw,
    Json,
    Env,
    Properties,
}

const FILE_FORMATS: &[(&str, FileFormat)] = &[
    ("raw", FileFormat::Raw),
    ("json", FileFormat::Json),
    ("env", FileFormat::Env),
    ("properties", FileFormat::Properties),
];

/// Write the secret into files in `dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileTarget {
    pub dir: PathBuf,
    /// Permission bits of the written files, at most 0o777.
    pub mode: u32,
}

/// `templated`: the targets of a `find` entry, whose paths must hold `{{ name }}`.
pub(super) fn read_targets(
    c: &mut Checker,
    at: &Field,
    dirs: &mut PathClaims,
    templated: bool,
) -> Option<Vec<Target>> {
    read_list(c, at, AT_LEAST_ONE, "target", |c, item| {
        read_target(c, item, dirs, templated)
    })
}

/// A target is a mapping with a single key naming its kind: `- file: {dir: ...}`.
fn read_target(
    c: &mut Checker,
    at: &Field,
    dirs: &mut PathClaims,
    templated: bool,
) -> Option<Target> {
    let kinds = TARGET_KINDS.join(", ");
    let entries = c.entries(at)?;
    let [entry, extra @ ..] = entries.as_slice() else {
        c.problem(
            at,
            format!("must name a target kind; allowed kinds: {kinds}"),
        );
        return None;
    };
    for e in extra {
        c.key_problem(
            e,
            format!(
                "a target has exactly one kind, and this one already is `{}`; start a new list item with `- {}:`",
                entry.key, e.key
            ),
        );
    }
    let target = match entry.key.as_str() {
        "file" if entry.key_is_string => read_file_target(c, &entry.value, dirs, templated),
        "kubernetesSecret" if entry.key_is_string => {
            if templated {
                c.key_problem(entry, "kubernetesSecret targets are not supported in `find` entries; use a file target with {{ name }}");
                None
            } else {
                super::kube::read_kube_secret_target(c, &entry.value, dirs)
                    .map(|t| Target::KubernetesSecret(Box::new(t)))
            }
        }
        _ => {
            c.key_problem(
                entry,
                format!(
                    "unknown target kind `{}`; allowed kinds: {kinds}",
                    entry.key
                ),
            );
            None
        }
    };
    if extra.is_empty() {
        target
    } else {
        None
    }
}

/// `file:` writes either a directory of files (`dir`) or one formatted file (`path`).
fn read_file_target(
    c: &mut Checker,
    at: &Field,
    dirs: &mut PathClaims,
    templated: bool,
) -> Option<Target> {
    let mut f = Fields::open(c, at)?;
    let (dir, path) = (f.get("dir"), f.get("path"));
    let format = f.get("format");
    let mode = or_default(f.get("mode"), DEFAULT_FILE_MODE, |v| read_file_mode(c, v));
    f.finish(c);
    match (dir, path) {
        (Some(dir), None) => {
            if let Some(format) = &format {
                c.problem(
                    format,
                    "format applies to a single file: use `path` instead of `dir`",
                );
                return None;
            }
            let dir = read_target_path(c, &dir, dirs, true, templated);
            Some(Target::File(FileTarget {
                dir: dir?,
                mode: mode?,
            }))
        }
        (None, Some(path)) => {
            let path = read_target_path(c, &path, dirs, false, templated);
            let format = or_default(format, FileFormat::Raw, |v| read_file_format(c, v));
            Some(Target::SingleFile(SingleFileTarget {
                path: path?,
                format: format?,
                mode: mode?,
            }))
        }
        (Some(_), Some(path)) => {
            c.problem(&path, "dir and path cannot both be set: a file target writes a directory (dir) or one file (path)");
            None
        }
        (None, None) => {
            c.problem(
                at,
                "needs `dir` (a directory with one file per key) or `path` (one file in a format)",
            );
            None
        }
    }
}

fn read_file_format(c: &mut Checker, at: &Field) -> Option<FileFormat> {
    read_enum(c, at, FILE_FORMATS)
}

/// Target paths (directories and single files) share one map, keyed by path; the value
/// is the field that claimed it, whose last segment (`dir` or `path`) tells which kind.
/// A directory belongs to its target's writer, so no other target may sit inside it.
fn read_target_path(
    c: &mut Checker,
    at: &Field,
    dirs: &mut PathClaims,
    is_dir: bool,
    templated: bool,
) -> Option<PathBuf> {
    // PathBuf compares by components, so "/a/b" and "/a/b/" count as the same directory.
    let path = read_path(c, at)?;
    let text = path.to_string_lossy().replace("{{name}}", NAME_PLACEHOLDER);
    let has_placeholder = text.contains(NAME_PLACEHOLDER);
    let placeholder_problem = if templated && !has_placeholder {
        Some(format!("a `find` entry syncs many secrets: the path must contain {NAME_PLACEHOLDER} so that each gets its own"))
    } else if text.replace(NAME_PLACEHOLDER, "").contains("{{") {
        Some(if templated {
            format!("{NAME_PLACEHOLDER} is the only placeholder")
        } else {
            format!("placeholders such as {NAME_PLACEHOLDER} are only for `find` entries")
        })
    } else if !templated && has_placeholder {
        Some(format!("{NAME_PLACEHOLDER} is only for `find` entries"))
    } else {
        None
    };
    if let Some(problem) = &placeholder_problem {
        c.problem(at, problem);
    }
    // The path as written still claims its place: a clash with another target is a problem
    // of its own, not one to reveal after the placeholder is fixed.
    let path = PathBuf::from(text);
    let shown = |p: &Path| format!("{:?}", p.display().to_string());
    // Lookups, not a scan of every claimed path: 100,000 targets must not cost 10^10 steps.
    let clash = if is_dir {
        // A single file inside this directory (or at its path).
        dirs.file_at_or_below(&path)
    } else {
        // A directory this file is in (or is).
        path.ancestors()
            .filter_map(|dir| dirs.get(dir))
            .find(|(_, owner)| owner.ends_with(".dir"))
    };
    if let Some((other, owner)) = clash {
        let message = if is_dir {
            format!(
                "{} contains {}, written by {owner}; a target's directory belongs to its secret",
                shown(&path),
                shown(other)
            )
        } else {
            format!(
                "{} is inside {}, the directory of {owner}, which that target owns; write the file elsewhere",
                shown(&path),
                shown(other)
            )
        };
        c.problem(at, message);
        return None;
    }
    if let Some(first) = dirs.claim(&path, &at.path, !is_dir) {
        let message = if is_dir {
            format!(
                "directory {} is already used by {first}; each target needs its own directory",
                shown(&path)
            )
        } else {
            format!(
                "{} is already used by {first}; each target needs its own path",
                shown(&path)
            )
        };
        c.problem(at, message);
        return None;
    }
    placeholder_problem.is_none().then_some(path)
}
