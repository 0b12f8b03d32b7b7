//! The command line: exit codes, `validate`, and configuration errors, through the built binary.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use std::process::Command;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-ferry"));
    cmd.env_remove("SECRET_FERRY_CONFIG").env_remove("RUST_LOG");
    cmd
}

const MANY_MISTAKES: &str = r#"region: us-east-1
roles:
  shared:
    roleArn: arn:aws:iam::1111:role/Bad
    externalIdFile: /etc/x
    externalIdEnv: X
    duration: 20h
secrets:
  - name: db
    secretId: my-secret
    role: nosuchrole
    refreshIntervall: 60s
    targets:
      - file:
          dir: /tmp/a
          mode: 0400
  - name: db
    versionStage: AWSCURRENT
    versionId: abc
    targets: []
"#;

#[test]
fn validate_reports_every_mistake_with_its_path_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.yaml");
    std::fs::write(&path, MANY_MISTAKES).unwrap();
    let out = bin()
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "invalid configuration has its own exit code"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "roles.shared.roleArn (line 4)",
        "roles.shared.externalIdEnv (line 6)",
        "roles.shared.duration (line 7)",
        "secrets[0].role (line 11)",
        "secrets[0].refreshIntervall (line 12)",
        "secrets[0].targets[0].file.mode (line 16)",
        "secrets[1].name (line 17)",
        "secrets[1].secretId",
        "secrets[1].versionId (line 19)",
        "secrets[1].targets (line 20)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn run_with_an_invalid_config_exits_78_before_doing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.yaml");
    std::fs::write(&path, MANY_MISTAKES).unwrap();
    let out = bin()
        .args(["run", "--once"])
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(!tmp.path().join("a").exists());
}

#[test]
fn config_path_comes_from_the_environment_too() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ok.yaml");
    std::fs::write(
        &path,
        "secrets:\n  - name: db\n    secretId: x\n    targets:\n      - file:\n          dir: /tmp/x\n",
    )
    .unwrap();
    let out = bin()
        .arg("validate")
        .env("SECRET_FERRY_CONFIG", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (0 role(s), 1 secret(s))"));
}

#[test]
fn missing_config_file_is_a_config_error_naming_the_path() {
    let out = bin()
        .args(["validate", "--config", "/nonexistent/secret-ferry.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/secret-ferry.yaml"));
}

#[test]
fn no_region_anywhere_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ok.yaml");
    std::fs::write(&path, "secrets:\n  - name: db\n    secretId: x\n    targets:\n      - file:\n          dir: /tmp/x\n").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    // The SDK also asks the instance metadata service; here it is a closed loopback port,
    // so that its failure (and what it logs about it) is real but stays on this machine.
    let metadata = format!("http://127.0.0.1:{}", closed_port());
    let out = bin()
        .args(["run", "--once", "--config"])
        .arg(&path)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &metadata)
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    // Said once, by the daemon, with what to set: not also by the SDK at length.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no region is configured: set `region`"),
        "{err}"
    );

    // `validate` cannot know the daemon's environment: a warning, not an error.
    let out = bin()
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: region") && err.contains("exits 78"),
        "{err}"
    );
    let out = bin()
        .args(["validate", "--config"])
        .arg(&path)
        .env("AWS_REGION", "eu-west-1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning: region"));
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A missing ExternalId file fails every secret of the role; the cause is said once.
#[test]
fn one_cause_of_many_failures_is_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing-external-id");
    let mut yaml = format!(
        "region: us-east-1\nroles:\n  shared: {{roleArn: \"arn:aws:iam::111111111111:role/R\", externalIdFile: {}}}\nsecrets:\n",
        missing.display()
    );
    for i in 0..7 {
        yaml.push_str(&format!(
            "  - {{name: s{i}, secretId: app/s{i}, role: shared, targets: [{{file: {{dir: {}}}}}]}}\n",
            tmp.path().join(format!("out/s{i}")).display()
        ));
    }
    let path = tmp.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = bin()
        .args(["run", "--once", "--config"])
        .arg(&path)
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", closed_port()),
        )
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let naming = err
        .lines()
        .filter(|l| l.contains(&missing.display().to_string()))
        .count();
    assert_eq!(naming, 1, "the cause once: {err}");
    let summary: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("no credentials from role 'shared'"))
        .collect();
    assert_eq!(summary.len(), 1, "{err}");
    assert!(
        summary[0].contains("'s0', 's1', 's2', 's3', 's4', 's5', 's6'"),
        "{err}"
    );
    assert!(err.contains("7 of 7 secret(s) failed to sync"), "{err}");
}

#[test]
fn every_option_has_help_text() {
    for command in ["run", "validate", "check", "iam-policy"] {
        let out = bin().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{help}");
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with("--") {
                continue;
            }
            // "--flag <VALUE>  Help text [default: ...]", or the text on the next, deeper
            // indented line; the bracketed facts are what clap adds by itself.
            let same_line = line.trim_start().split_once("  ").map(|(_, t)| t.trim());
            let next_line = lines
                .get(i + 1)
                .map(|l| l.trim())
                .filter(|t| !t.starts_with('-'));
            let text = same_line.or(next_line).unwrap_or("");
            assert!(
                !text.is_empty() && !text.starts_with('['),
                "`{command} --help` has no text for: {line}"
            );
        }
    }
}

#[test]
fn usage_errors_and_version() {
    let out = bin().arg("run").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing --config is a usage error"
    );
    let out = bin()
        .args(["run", "--config", "x", "--external-id", "y"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an ExternalId is never a command-line argument"
    );
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("secret-ferry "));
}
