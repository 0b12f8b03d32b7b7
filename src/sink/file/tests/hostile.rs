//! Tests of `file` against a hostile directory (planted links, unsafe keys) and failed
//! writes: nothing is followed, and a failure names its path and keeps the old content.

use super::*;

#[test]
fn planted_data_link_is_never_followed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let outside = tmp.path().join("elsewhere");
    let dir = tmp.path().join("secrets");
    fs::create_dir(&dir)?;
    fs::create_dir(&outside)?;
    let ts_outside = "..2020_01_01_00_00_00.0_x";

    let plants: [(&str, PathBuf); 3] = [
        ("absolute", outside.clone()),
        ("relative", PathBuf::from("../elsewhere")),
        ("via a symlinked ts dir", PathBuf::from(ts_outside)),
    ];
    for (what, plant) in plants {
        // Same bytes and mode as what will be written: if the sink read
        // through the planted link it would wrongly answer Unchanged.
        fs::write(outside.join("a"), b"same")?;
        fs::set_permissions(outside.join("a"), Permissions::from_mode(0o600))?;
        let before = mtime_of(&outside.join("a"))?;
        for name in [DATA, "a", ts_outside] {
            let _ = remove_entry(&dir.join(name));
        }
        symlink(&outside, dir.join(ts_outside))?;
        symlink(&plant, dir.join(DATA))?;
        symlink("..data/a", dir.join("a"))?;

        let sink = FileSink::new(&dir, 0o600);
        let files: &[(&str, &[u8])] = &[("a", b"same")];
        assert_eq!(
            sink.write(&rendered(files))?,
            WriteOutcome::Written,
            "{what}"
        );
        assert_layout(&dir, files, 0o600)?;
        assert_eq!(names(&outside)?, vec!["a"], "{what}");
        assert_eq!(fs::read(outside.join("a"))?, b"same");
        assert_eq!(mtime_of(&outside.join("a"))?, before);
        assert!(
            fs::symlink_metadata(dir.join(ts_outside)).is_err(),
            "{what}"
        );
    }
    Ok(())
}

#[test]
fn planted_key_link_is_replaced_not_followed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    fs::write(outside.path().join("a"), b"outside a")?;
    fs::write(outside.path().join("z"), b"outside z")?;
    let dir = tmp.path();
    symlink(outside.path().join("a"), dir.join("a"))?;
    symlink(outside.path().join("z"), dir.join("z"))?;

    let sink = FileSink::new(dir, 0o600);
    let files: &[(&str, &[u8])] = &[("a", b"inside")];
    assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
    assert_layout(dir, files, 0o600)?;
    assert_eq!(fs::read(outside.path().join("a"))?, b"outside a");
    assert_eq!(fs::read(outside.path().join("z"))?, b"outside z");
    // Not a link into ..data, so not ours to prune.
    assert_eq!(fs::read_link(dir.join("z"))?, outside.path().join("z"));
    assert_eq!(names(outside.path())?, vec!["a", "z"]);
    Ok(())
}

#[test]
fn unsafe_key_is_refused_before_anything_is_written() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let fresh = tmp.path().join("fresh");
    for key in ["../evil", "..data", "", ".", "a/b", "a\0b"] {
        let sink = FileSink::new(&fresh, 0o600);
        let err = match sink.write(&rendered(&[
            ("ok", CANARY.as_bytes()),
            (key, CANARY.as_bytes()),
        ])) {
            Err(err) => err,
            Ok(outcome) => panic!("{key:?} accepted: {outcome:?}"),
        };
        assert!(matches!(err, FileSinkError::UnsafeKey { .. }), "{err:?}");
        assert_eq!(err.kind(), "unsafe_key");
        assert_no_canary(&err);
        assert!(!fresh.exists());
        assert!(!tmp.path().join("evil").exists());
    }

    let dir = tmp.path().join("existing");
    let sink = FileSink::new(&dir, 0o600);
    let old: &[(&str, &[u8])] = &[("ok", b"old")];
    sink.write(&rendered(old))?;
    let before = names(&dir)?;
    assert!(sink
        .write(&rendered(&[("ok", b"new"), ("../evil", b"x")]))
        .is_err());
    assert_eq!(names(&dir)?, before);
    assert_layout(&dir, old, 0o600)?;
    Ok(())
}

#[test]
fn file_modes_are_exact_regardless_of_umask() -> TestResult {
    for mode in [0o400, 0o640, 0o600, 0o444] {
        let tmp = tempfile::tempdir()?;
        let sink = FileSink::new(tmp.path(), mode);
        let files: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2")];
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Written);
        assert_layout(tmp.path(), files, mode)?;
        assert_eq!(sink.write(&rendered(files))?, WriteOutcome::Unchanged);
        let changed: &[(&str, &[u8])] = &[("a", b"3")];
        assert_eq!(sink.write(&rendered(changed))?, WriteOutcome::Written);
        assert_layout(tmp.path(), changed, mode)?;
    }
    // Special bits are not permission bits and are dropped.
    let tmp = tempfile::tempdir()?;
    FileSink::new(tmp.path(), 0o4640).write(&rendered(&[("a", b"1")]))?;
    assert_layout(tmp.path(), &[("a", b"1")], 0o640)?;
    Ok(())
}

#[test]
fn read_only_dir_fails_naming_the_path_and_keeps_old_content() -> TestResult {
    let tmp = tempfile::tempdir()?;
    if !permissions_are_enforced(tmp.path())? {
        // Running as root: covered by the tests below instead.
        return Ok(());
    }
    let dir = tmp.path().join("secrets");
    let sink = FileSink::new(&dir, 0o600);
    let old: &[(&str, &[u8])] = &[("a", b"old")];
    sink.write(&rendered(old))?;
    fs::set_permissions(&dir, Permissions::from_mode(0o555))?;
    let result = sink.write(&rendered(&[("a", CANARY.as_bytes())]));
    fs::set_permissions(&dir, Permissions::from_mode(0o755))?;
    let err = match result {
        Err(err) => err,
        Ok(outcome) => panic!("write succeeded: {outcome:?}"),
    };
    assert_eq!(err.kind(), "io");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    assert_no_canary(&err);
    assert_layout(&dir, old, 0o600)?;
    Ok(())
}

#[test]
fn file_where_dir_should_be_fails_naming_the_path() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"user")?;
    for dir in [file.clone(), file.join("below")] {
        let sink = FileSink::new(&dir, 0o600);
        let err = match sink.write(&rendered(&[("a", CANARY.as_bytes())])) {
            Err(err) => err,
            Ok(outcome) => panic!("write succeeded: {outcome:?}"),
        };
        assert!(
            matches!(&err, FileSinkError::Io { path, .. } if *path == dir),
            "{err:?}"
        );
        assert_eq!(err.kind(), "io");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert_no_canary(&err);
    }
    assert_eq!(fs::read(&file)?, b"user");
    Ok(())
}

#[test]
fn failure_after_staging_removes_the_new_dir() -> TestResult {
    // A real directory at `..data` makes the final rename fail even for
    // root, after the new directory has been fully written.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    fs::create_dir(dir.join(DATA))?;
    fs::write(dir.join(DATA).join("a"), b"foreign")?;
    let sink = FileSink::new(dir, 0o600);
    let err = match sink.write(&rendered(&[("a", CANARY.as_bytes())])) {
        Err(err) => err,
        Ok(outcome) => panic!("write succeeded: {outcome:?}"),
    };
    assert!(
        matches!(&err, FileSinkError::Io { path, .. } if *path == dir.join(DATA)),
        "{err:?}"
    );
    assert_eq!(err.kind(), "io");
    assert_no_canary(&err);
    assert_eq!(names(dir)?, vec![DATA]);
    assert_eq!(fs::read(dir.join(DATA).join("a"))?, b"foreign");
    Ok(())
}

#[test]
fn error_kinds_are_bounded_labels() {
    let io = FileSinkError::Io {
        op: "write",
        path: PathBuf::from("/x"),
        source: io::Error::other("boom"),
    };
    let link = FileSinkError::NotASymlink {
        path: PathBuf::from("/x/a"),
    };
    let key = FileSinkError::UnsafeKey {
        dir: PathBuf::from("/x"),
        source: TransformError::UnsafeKey {
            key: "..".to_owned(),
            reason: "is \"..\"",
        },
    };
    assert_eq!(io.kind(), "io");
    assert_eq!(link.kind(), "not_a_symlink");
    assert_eq!(key.kind(), "unsafe_key");
    assert_eq!(io.to_string(), "failed to write /x: boom");
    assert_eq!(
        key.to_string(),
        r#"refusing to write secret into /x: unsafe key "..": is "..""#
    );
}
