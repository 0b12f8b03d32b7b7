//! Readers racing the atomic writer never see a partial or mixed secret.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use secret_ferry::secret::Sensitive;
use secret_ferry::sink::file::FileSink;
use secret_ferry::transform::Rendered;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const KEYS: [&str; 4] = ["username", "password", "host", "port"];
const ROTATIONS: usize = 1_000;

fn version(n: usize) -> Rendered {
    Rendered {
        files: KEYS
            .iter()
            .map(|k| {
                (
                    (*k).to_owned(),
                    Sensitive::new(format!("{k}-v{n}-{}", "x".repeat(n % 64)).into_bytes()),
                )
            })
            .collect(),
    }
}

/// Reads every key the way an app should: resolve `..data` once, then read from that
/// directory. `None` when the writer removed the directory meanwhile (the reader retries).
fn read_set(dir: &Path) -> Option<Vec<String>> {
    let data = std::fs::read_link(dir.join("..data")).ok()?;
    KEYS.iter()
        .map(|k| std::fs::read_to_string(dir.join(&data).join(k)).ok())
        .collect()
}

#[test]
fn concurrent_readers_see_only_whole_versions_across_1000_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secret");
    let sink = FileSink::new(&dir, 0o400);
    sink.write(&version(0)).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let sets_read = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (dir, done, sets_read) = (dir.clone(), done.clone(), sets_read.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !done.load(Ordering::Acquire) {
                    let Some(values) = read_set(&dir) else {
                        continue;
                    };
                    let n: usize = values[0]
                        .split("-v")
                        .nth(1)
                        .unwrap()
                        .split('-')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let expected: Vec<String> = KEYS
                        .iter()
                        .map(|k| format!("{k}-v{n}-{}", "x".repeat(n % 64)))
                        .collect();
                    assert_eq!(values, expected, "a mixed or partial set");
                    assert!(n >= last, "versions went backwards: {last} then {n}");
                    last = n;
                    sets_read.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    for n in 1..=ROTATIONS {
        sink.write(&version(n)).unwrap();
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        reader.join().expect("a reader saw a mixed or partial set");
    }
    assert!(
        sets_read.load(Ordering::Relaxed) > 100,
        "the readers must actually race the writer"
    );
    assert_eq!(
        read_set(&dir).unwrap()[1],
        format!("password-v{ROTATIONS}-{}", "x".repeat(ROTATIONS % 64))
    );
    // One timestamped dir left, nothing else hidden.
    let hidden: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    assert_eq!(hidden.len(), 1, "{hidden:?}");
}
