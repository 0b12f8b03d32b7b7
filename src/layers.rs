//! Keeps the data flow visible in the imports: a module may only use modules of a lower
//! layer (see ARCHITECTURE.md). Read from the source, so a backward `use crate::` fails
//! `cargo test` instead of waiting for a reviewer.

use std::path::{Path, PathBuf};

/// Each top-level module's layer, lowest first: the shared foundations, then the flow
/// (config → credentials → source → transform → sink, and credentials → vend), then the
/// side services, and the wiring on top.
const LAYERS: &[(&str, u8)] = &[
    ("secret", 0),
    ("shutdown", 0),
    ("telemetry", 0),
    ("version_id", 0),
    ("http", 1),
    ("metrics", 1),
    ("config", 2),
    ("aws", 3),
    ("k8s", 3),
    ("credentials", 4),
    ("source", 5),
    ("transform", 6),
    ("mapping", 7),
    ("sink", 8),
    ("vend", 9),
    ("notify", 9),
    ("health", 9),
    ("admin", 10),
    ("tenants", 10),
    ("daemon", 11),
    ("commands", 12),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named by `crate::` paths in the non-test code of `text`.
fn used_modules(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut used = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let preceded_by_ident = code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name.is_empty() && !preceded_by_ident && !used.contains(&name) {
            used.push(name);
        }
    }
    used
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut backward = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_owned();
        // Test modules (`tests.rs`, files under a `tests/` folder) may use any stage.
        let is_test_file = relative
            .iter()
            .any(|part| part == "tests" || part == "tests.rs");
        if is_test_file {
            continue;
        }
        let Some(own) = layer(&module) else {
            assert!(
                matches!(module.as_str(), "lib" | "main" | "layers"),
                "{}: module `{module}` has no layer in LAYERS",
                relative.display()
            );
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for used in used_modules(&text) {
            let Some(theirs) = layer(&used) else {
                continue;
            };
            if used != module && theirs >= own {
                backward.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    assert!(
        backward.is_empty(),
        "imports against the layers:\n{}",
        backward.join("\n")
    );
}

#[test]
fn used_modules_reads_paths_not_words() {
    let text = "use crate::config::Config;\nlet x = crate::sink::fs::f();\nmy_crate::other();\n#[cfg(test)]\nuse crate::daemon::App;";
    assert_eq!(used_modules(text), ["config", "sink"]);
}
