//! Tests of `file`.

use super::*;
use crate::transform::TransformError;
use std::time::{Duration, UNIX_EPOCH};

mod hostile;

const CANARY: &str = "canary-0b7e42";

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn rendered(pairs: &[(&str, &[u8])]) -> Rendered {
    Rendered {
        files: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Sensitive::new(v.to_vec())))
            .collect(),
    }
}

fn data_target(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let target = fs::read_link(dir.join(DATA))?;
    Ok(target.to_str().ok_or("non-UTF-8 target")?.to_owned())
}

fn names(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        out.push(entry?.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

fn ts_dirs(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    Ok(names(dir)?
        .into_iter()
        .filter(|n| is_timestamp_dir_name(n))
        .collect())
}

fn mode_of(path: &Path) -> Result<u32, io::Error> {
    Ok(fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

fn mtime_of(path: &Path) -> Result<SystemTime, io::Error> {
    fs::symlink_metadata(path)?.modified()
}

fn assert_no_canary(err: &FileSinkError) {
    let mut shown = format!("{err} | {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        shown.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains(CANARY), "canary leaked: {shown}");
}

/// Checks the complete layout for `files` and returns the data dir name.
fn assert_layout(
    dir: &Path,
    files: &[(&str, &[u8])],
    mode: u32,
) -> Result<String, Box<dyn std::error::Error>> {
    let meta = fs::symlink_metadata(dir.join(DATA))?;
    assert!(meta.file_type().is_symlink(), "..data is not a symlink");
    let target = data_target(dir)?;
    assert!(is_timestamp_dir_name(&target), "bad target {target}");
    let data_dir = dir.join(&target);
    assert!(fs::symlink_metadata(&data_dir)?.is_dir());
    assert_eq!(mode_of(&data_dir)?, DIR_MODE);

    let mut expected_names: Vec<String> = files.iter().map(|(k, _)| (*k).to_owned()).collect();
    expected_names.sort();
    assert_eq!(names(&data_dir)?, expected_names);
    for (key, bytes) in files {
        let file = data_dir.join(key);
        assert!(fs::symlink_metadata(&file)?.file_type().is_file());
        assert_eq!(mode_of(&file)?, mode, "mode of {key}");
        assert_eq!(fs::read(&file)?, *bytes);

        let link = dir.join(key);
        assert!(fs::symlink_metadata(&link)?.file_type().is_symlink());
        assert_eq!(
            fs::read_link(&link)?,
            PathBuf::from(format!("..data/{key}"))
        );
        assert_eq!(fs::read(&link)?, *bytes);
    }
    assert!(fs::symlink_metadata(dir.join(DATA_TMP)).is_err());
    assert!(fs::symlink_metadata(dir.join(LINK_TMP)).is_err());
    assert_eq!(ts_dirs(dir)?, vec![target.clone()]);
    Ok(target)
}

/// Root (CAP_DAC_OVERRIDE) ignores permission bits; probing is more
/// accurate than checking the uid.
fn permissions_are_enforced(dir: &Path) -> Result<bool, io::Error> {
    let probe_dir = dir.join("probe");
    fs::create_dir(&probe_dir)?;
    fs::set_permissions(&probe_dir, Permissions::from_mode(0o555))?;
    let enforced = File::create(probe_dir.join("x")).is_err();
    fs::set_permissions(&probe_dir, Permissions::from_mode(0o755))?;
    fs::remove_dir_all(&probe_dir)?;
    Ok(enforced)
}

#[test]
fn first_write_creates_the_layout() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("a/b/secrets");
    let sink = FileSink::new(&dir, 0o640);
    assert_eq!(sink.dir(), dir.as_path());
    let files: &[(&str, &[u8])] = &[
        ("username", b"admin"),
        ("password", b"s3cr3t\n\0\xff"),
        (".hidden", b""),
    ];
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    for created in [tmp.path().join("a"), tmp.path().join("a/b"), dir.clone()] {
        assert_eq!(mode_of(&created)?, DIR_MODE, "{}", created.display());
    }
    assert_layout(&dir, files, 0o640)?;
    Ok(())
}

#[test]
fn identical_write_is_unchanged_and_touches_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let sink = FileSink::new(tmp.path(), 0o600);
    let files: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2")];
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    let target = data_target(tmp.path())?;
    let watched = [
        tmp.path().to_path_buf(),
        tmp.path().join(DATA),
        tmp.path().join(&target),
        tmp.path().join(&target).join("a"),
        tmp.path().join(&target).join("b"),
        tmp.path().join("a"),
        tmp.path().join("b"),
    ];
    let before: Vec<SystemTime> = watched
        .iter()
        .map(|p| mtime_of(p))
        .collect::<Result<_, _>>()?;
    // Coarse filesystem timestamps would otherwise hide a rewrite.
    std::thread::sleep(Duration::from_millis(20));

    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Unchanged);
    assert_eq!(data_target(tmp.path())?, target);
    let after: Vec<SystemTime> = watched
        .iter()
        .map(|p| mtime_of(p))
        .collect::<Result<_, _>>()?;
    assert_eq!(before, after);
    assert_layout(tmp.path(), files, 0o600)?;
    Ok(())
}

#[test]
fn changed_write_swaps_and_prunes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let sink = FileSink::new(dir, 0o644);
    sink.write(&rendered(&[("a", b"old"), ("b", b"gone soon")]))?;
    let old = data_target(dir)?;
    // Things that are not ours must survive the pruning.
    fs::write(dir.join("notes.txt"), b"user")?;
    symlink("elsewhere", dir.join("user-link"))?;

    let files: &[(&str, &[u8])] = &[("a", b"new"), ("c", b"added")];
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    let new = assert_layout(dir, files, 0o644)?;
    assert_ne!(old, new);
    assert!(fs::symlink_metadata(dir.join(&old)).is_err());
    assert!(fs::symlink_metadata(dir.join("b")).is_err());
    assert_eq!(fs::read(dir.join("notes.txt"))?, b"user");
    assert_eq!(
        fs::read_link(dir.join("user-link"))?,
        PathBuf::from("elsewhere")
    );
    Ok(())
}

#[test]
fn empty_secret_removes_all_links() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let sink = FileSink::new(tmp.path(), 0o600);
    sink.write(&rendered(&[("a", b"1")]))?;
    assert_eq!(sink.write(&rendered(&[]))?, WriteOutcome::Written);
    assert_layout(tmp.path(), &[], 0o600)?;
    assert!(fs::symlink_metadata(tmp.path().join("a")).is_err());
    assert_eq!(sink.write(&rendered(&[]))?, WriteOutcome::Unchanged);
    Ok(())
}

#[test]
fn mode_change_alone_rewrites() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let files: &[(&str, &[u8])] = &[("a", b"1")];
    FileSink::new(tmp.path(), 0o600).write(&rendered(files))?;
    let sink = FileSink::new(tmp.path(), 0o640);
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    assert_layout(tmp.path(), files, 0o640)?;
    Ok(())
}

#[test]
fn missing_or_wrong_visible_link_is_repaired() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let sink = FileSink::new(dir, 0o600);
    let files: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2")];
    sink.write(&rendered(files))?;
    fs::remove_file(dir.join("a"))?;
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    assert_layout(dir, files, 0o600)?;

    fs::remove_file(dir.join("b"))?;
    symlink("..data/a", dir.join("b"))?;
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    assert_layout(dir, files, 0o600)?;
    Ok(())
}

#[test]
fn extra_or_stale_entries_trigger_a_rewrite() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let sink = FileSink::new(dir, 0o600);
    let files: &[(&str, &[u8])] = &[("a", b"1")];
    sink.write(&rendered(files))?;
    symlink("..data/zombie", dir.join("zombie"))?;
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    assert!(fs::symlink_metadata(dir.join("zombie")).is_err());
    assert_layout(dir, files, 0o600)?;

    let target = data_target(dir)?;
    fs::write(dir.join(&target).join("extra"), b"x")?;
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    assert_layout(dir, files, 0o600)?;
    Ok(())
}

#[test]
fn regular_file_or_dir_named_like_a_key_blocks_the_write() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let sink = FileSink::new(dir, 0o600);
    let old: &[(&str, &[u8])] = &[("a", b"old")];
    sink.write(&rendered(old))?;
    let target = data_target(dir)?;
    fs::write(dir.join("b"), b"user data")?;
    fs::create_dir(dir.join("c"))?;
    fs::write(dir.join("c/inner"), b"user dir")?;

    for blocked in ["b", "c"] {
        let err = match sink.write(&rendered(&[("a", CANARY.as_bytes()), (blocked, b"x")])) {
            Err(err) => err,
            Ok(outcome) => panic!("write succeeded: {outcome:?}"),
        };
        assert!(
            matches!(&err, FileSinkError::NotASymlink { path } if *path == dir.join(blocked)),
            "{err:?}"
        );
        assert_eq!(err.kind(), "not_a_symlink");
        assert!(err
            .to_string()
            .contains(&dir.join(blocked).display().to_string()));
        assert_no_canary(&err);

        assert_eq!(data_target(dir)?, target);
        assert_layout(dir, old, 0o600)?;
    }
    assert_eq!(fs::read(dir.join("b"))?, b"user data");
    assert_eq!(fs::read(dir.join("c/inner"))?, b"user dir");
    Ok(())
}

#[test]
fn leftovers_are_cleaned() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    fs::write(outside.path().join("keep"), b"outside")?;
    let dir = tmp.path().join("secrets");
    fs::create_dir(&dir)?;
    let ours = "..2020_01_02_03_04_05.123456789_deadbeef";
    let kubelet = "..2020_01_02_03_04_05.1";
    fs::create_dir(dir.join(ours))?;
    fs::write(dir.join(ours).join("k"), b"v")?;
    fs::set_permissions(dir.join(ours).join("k"), Permissions::from_mode(0o400))?;
    fs::create_dir(dir.join(kubelet))?;
    symlink(outside.path(), dir.join(ours).join("escape"))?;
    symlink(outside.path(), dir.join(DATA_TMP))?;
    symlink("..data/x", dir.join(LINK_TMP))?;
    fs::create_dir(dir.join("..user_dir"))?;
    fs::write(dir.join("user.txt"), b"u")?;

    let sink = FileSink::new(&dir, 0o600);
    sink.clean_leftovers()?;
    assert_eq!(names(&dir)?, vec!["..user_dir", "user.txt"]);
    assert_eq!(names(outside.path())?, vec!["keep"]);
    assert_eq!(fs::read(outside.path().join("keep"))?, b"outside");

    // Also done by write(), which keeps the live directory.
    let files: &[(&str, &[u8])] = &[("k", b"v")];
    sink.write(&rendered(files))?;
    let live = data_target(&dir)?;
    fs::create_dir(dir.join(ours))?;
    fs::create_dir(dir.join(DATA_TMP))?;
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Unchanged);
    assert_eq!(data_target(&dir)?, live);
    assert_layout(&dir, files, 0o600)?;
    Ok(())
}

#[test]
fn clean_leftovers_on_missing_dir_is_ok() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("not-yet");
    FileSink::new(&dir, 0o600).clean_leftovers()?;
    assert!(!dir.exists());
    Ok(())
}

#[test]
fn timestamp_names_are_utc_and_recognised() {
    let cases = [
        (0, "..1970_01_01_00_00_00."),
        (951_782_400, "..2000_02_29_00_00_00."),
        (1_234_567_890, "..2009_02_13_23_31_30."),
        (1_709_210_096, "..2024_02_29_12_34_56."),
        (4_102_444_799, "..2099_12_31_23_59_59."),
        (253_402_300_799, "..9999_12_31_23_59_59."),
    ];
    for (secs, prefix) in cases {
        let name = timestamp_dir_name(UNIX_EPOCH + Duration::new(secs, 42));
        assert!(name.starts_with(prefix), "{secs}: {name}");
        assert!(name[prefix.len()..].starts_with("000000042_"), "{name}");
        assert!(is_timestamp_dir_name(&name), "{name}");
    }
    assert_ne!(
        timestamp_dir_name(UNIX_EPOCH),
        timestamp_dir_name(UNIX_EPOCH)
    );
}

#[test]
fn timestamp_name_recognition_is_strict() {
    for ok in ["..2020_01_02_03_04_05", "..2020_01_02_03_04_05.1"] {
        assert!(is_timestamp_dir_name(ok), "{ok}");
    }
    for not in [
        "..data",
        "..data_tmp",
        "..user_dir",
        "2020_01_02_03_04_05",
        "..2020_01_02_03_04",
        "..2020_01_02_03_04_05x",
        "..2020-01-02_03_04_05",
        "..2020_01_02_03_04_05/../x",
    ] {
        assert!(!is_timestamp_dir_name(not), "{not}");
    }
}
