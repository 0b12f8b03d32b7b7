//! End-to-end behaviour against a real AWS API stand-in (moto) on loopback.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::*;
use secret_ferry::daemon::App;
use secret_ferry::metrics::Metrics;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn config_yaml(
    role_arn: &str,
    external_id_file: &Path,
    secret_id: &str,
    dir: &Path,
    interval: &str,
) -> String {
    ConfigYaml::new()
        .region(REGION)
        .role("shared", role_arn, external_id_file)
        .role_option("sessionName", "secret-ferry-test")
        .secret("db", secret_id)
        .uses_role("shared")
        .option("refreshInterval", interval)
        .file_target_with(dir, &[("mode", "\"0440\"")])
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_account_json_secret_lands_as_files_and_follows_rotation() {
    let password = canary("password");
    let rotated = canary("rotated");
    let fx = cross_account(
        "app/db",
        &format!(r#"{{"username":"app","password":"{password}","port":5432}}"#),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, format!("{}\n", fx.external_id)).unwrap();
    let dir = tmp.path().join("out/db");
    let config = write_config(
        tmp.path(),
        &config_yaml(&fx.role_arn, &ext_file, "app/db", &dir, "1s"),
    );
    let port = free_port();
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = Running::start(&mut daemon(&config, &fx.moto.endpoint(), port));

    let first = wait_for(Duration::from_secs(20), || read(&dir, "password"))
        .expect("no file written in time");
    assert_eq!(first, password);
    assert_eq!(read(&dir, "username").as_deref(), Some("app"));
    assert_eq!(
        read(&dir, "port").as_deref(),
        Some("5432"),
        "non-string JSON values are written as JSON"
    );
    let (names, data) = layout(&dir);
    let data = data.expect("..data must be a symlink");
    assert!(
        data.to_string_lossy().starts_with(".."),
        "..data must point at a hidden timestamped dir: {data:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| !n.starts_with(".."))
            .collect::<Vec<_>>(),
        ["password", "port", "username"]
    );
    for key in ["password", "port", "username"] {
        assert_eq!(
            std::fs::read_link(dir.join(key)).unwrap(),
            Path::new("..data").join(key)
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("password"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o440);

    let ready = wait_for(Duration::from_secs(5), || {
        get(admin_addr, "/readyz").filter(|r| r.0 == 200)
    });
    assert!(ready.is_some(), "/readyz must be 200 after the first sync");
    assert_eq!(get(admin_addr, "/healthz").map(|r| r.0), Some(200));

    // Rotate: the files must follow within refreshInterval + 1 s.
    put_secret(
        &fx.admin,
        "app/db",
        &format!(r#"{{"username":"app","password":"{rotated}"}}"#),
    )
    .await;
    let put_done = Instant::now();
    let seen = wait_for(Duration::from_secs(10), || {
        read(&dir, "password").filter(|v| *v == rotated)
    });
    let took = put_done.elapsed();
    assert!(seen.is_some(), "rotation never reached the files");
    assert!(
        took <= Duration::from_secs(2),
        "rotation took {took:?}, more than refreshInterval + 1 s"
    );
    let (_, new_data) = layout(&dir);
    assert_ne!(
        new_data.as_ref(),
        Some(&data),
        "..data must point at a new dir"
    );
    // Readers see the new value as soon as `..data` is swapped; the writer then prunes
    // dropped keys and the old dir as the last steps of the same write.
    let pruned = wait_for(Duration::from_secs(2), || {
        let (names, _) = layout(&dir);
        (!dir.join(&data).exists() && !names.contains(&"port".to_owned())).then_some(())
    });
    assert!(
        pruned.is_some(),
        "the old timestamped dir and the dropped key must be removed: {:?}",
        layout(&dir)
    );

    let (_, metrics) = get(admin_addr, "/metrics").unwrap();
    assert!(
        metrics
            .contains(r#"secret_ferry_credential_refresh_total{result="success",role="shared"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"secret_ferry_credential_expiry_timestamp_seconds{role="shared"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"secret_ferry_secret_last_success_timestamp_seconds{secret="db"}"#),
        "{metrics}"
    );
    let successes = metric_value(
        &metrics,
        r#"secret_ferry_secret_sync_total{result="success",secret="db"}"#,
    );
    assert!(successes >= 2.0, "{metrics}");
    assert_no_leak(&metrics, &[&password, &rotated, &fx.external_id]);

    // SIGTERM: exit 0 within 5 s.
    let stopped = Instant::now();
    let out = child.stop();
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        stopped.elapsed()
    );
    assert!(out.status.success(), "exit status {:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("secret written"),
        "expected sync log lines: {log}"
    );
    assert_no_leak(&log, &[&password, &rotated, &fx.external_id]);
    assert_eq!(
        read(&dir, "password").as_deref(),
        Some(rotated.as_str()),
        "files stay after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_external_id_is_refused_by_the_trust_policy() {
    let moto = Moto::start();
    // moto only enforces a trust policy when the caller and the role live in the same
    // account, so the caller here is an IAM user of the secrets account.
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let user = create_user(&admin, "workload", &allow("sts:AssumeRole")).await;
    let user_arn = user.arn.clone();
    let right = canary("right-extid");
    let wrong = canary("wrong-extid");
    let value = canary("value");
    let role_arn = create_role(&admin, "CrossAccountSecretsRole", &user_arn, &right).await;
    create_secret(&admin, "app/db", &format!(r#"{{"password":"{value}"}}"#)).await;
    moto.enable_auth();

    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    let dir = tmp.path().join("out");
    let config = write_config(
        tmp.path(),
        &config_yaml(&role_arn, &ext_file, "app/db", &dir, "60s"),
    );
    let run_once = |external_id: &str| {
        std::fs::write(&ext_file, external_id).unwrap();
        daemon(&config, &moto.endpoint(), free_port())
            .arg("--once")
            .env("AWS_ACCESS_KEY_ID", &user.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &user.secret_access_key)
            .output()
            .map(captured)
            .unwrap()
    };

    let out = run_once(&wrong);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "wrong ExternalId must fail --once: {log}"
    );
    assert!(
        log.contains(&role_arn),
        "the error must name the role ARN: {log}"
    );
    assert!(
        log.contains("trust policy") && log.contains("ExternalId"),
        "the error must point at the trust policy / ExternalId: {log}"
    );
    assert!(
        log.contains(&user_arn),
        "the error must name the refused caller: {log}"
    );
    assert!(
        !dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing may be written"
    );
    assert_no_leak(&log, &[&wrong, &right, &value]);

    // Control: the same set-up with the right ExternalId succeeds.
    let out = run_once(&right);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "right ExternalId must succeed: {log}");
    assert_eq!(read(&dir, "password").as_deref(), Some(value.as_str()));
    assert_no_leak(&log, &[&wrong, &right, &value]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_key_names_are_refused_and_nothing_escapes_the_dir() {
    let (ok, escape) = (canary("ok"), canary("escape"));
    let mut fx = cross_account(
        "app/evil",
        &format!(r#"{{"ok":"{ok}","../escape":"{escape}"}}"#),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &fx.external_id).unwrap();
    let dir = tmp.path().join("out/evil");
    let config = write_config(
        tmp.path(),
        &config_yaml(&fx.role_arn, &ext_file, "app/evil", &dir, "60s"),
    );
    let before = walk(tmp.path());

    let out = daemon(&config, &fx.moto.endpoint(), free_port())
        .arg("--once")
        .output()
        .map(captured)
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("'db'") && log.contains("../escape"),
        "the error must name the secret and the key: {log}"
    );
    assert_eq!(walk(tmp.path()), before, "nothing may be written anywhere");
    assert!(!tmp.path().join("out/escape").exists());

    // A key starting with `..` could collide with the layout's own entries.
    let dot_data = canary("dotdata");
    put_secret(
        &fx.admin,
        "app/evil",
        &format!(r#"{{"..data":"{dot_data}"}}"#),
    )
    .await;
    let out = daemon(&config, &fx.moto.endpoint(), free_port())
        .arg("--once")
        .output()
        .map(captured)
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(walk(tmp.path()), before);
    fx.moto.stop();
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_down_keeps_files_counts_failures_and_recovers() {
    capture_logs();
    // The base identity reads here: a restarted moto has forgotten every assumed-role key
    // and would file them under its default account, which says nothing about us.
    let mut moto = Moto::start();
    let first = canary("first");
    create_secret(
        &moto.sdk_config(),
        "app/db",
        &format!(r#"{{"password":"{first}"}}"#),
    )
    .await;
    let port = moto.port;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let yaml = format!(
        "secrets:\n  - name: db\n    secretId: app/db\n    refreshInterval: 1s\n    targets:\n      - file:\n          dir: {}\n",
        dir.display()
    );
    let cfg = secret_ferry::config::parse(&yaml).unwrap();

    let metrics = Metrics::new().unwrap();
    let app = App::build(&cfg, &moto.sdk_config(), metrics.clone()).unwrap();
    let readiness = app.readiness();
    let (trigger, signal) = secret_ferry::shutdown::channel();
    let daemon = tokio::spawn(app.run(signal));

    let ok = wait_for_async(Duration::from_secs(20), || async { read(&dir, "password") }).await;
    assert_eq!(ok.as_deref(), Some(first.as_str()));
    assert!(readiness.is_ready());
    let snapshot = layout(&dir);

    moto.stop();
    let failures = |m: &Metrics| {
        let text = m.render().unwrap();
        metric_value(
            &text,
            r#"secret_ferry_secret_sync_total{result="failure",secret="db"}"#,
        )
    };
    let rose = wait_for_async(Duration::from_secs(15), || async {
        (failures(&metrics) >= 2.0).then_some(())
    })
    .await;
    assert!(
        rose.is_some(),
        "failures must be counted while moto is down"
    );
    assert!(!daemon.is_finished(), "the daemon must keep running");
    assert_eq!(
        layout(&dir),
        snapshot,
        "files must be untouched while the source is down"
    );
    assert_eq!(read(&dir, "password").as_deref(), Some(first.as_str()));

    // Restart (moto keeps state in memory only) and recreate the secret.
    let moto = Moto::start_on(port);
    let second = canary("second");
    create_secret(
        &moto.sdk_config(),
        "app/db",
        &format!(r#"{{"password":"{second}"}}"#),
    )
    .await;
    // Back-off is capped at the interval (1 s); allow for a few attempts.
    let recovered = wait_for_async(Duration::from_secs(10), || async {
        read(&dir, "password").filter(|v| *v == second)
    })
    .await;
    assert!(
        recovered.is_some(),
        "the next sync after moto returns must succeed"
    );

    trigger.fire();
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_triggers_freshness_metrics_and_max_staleness() {
    let one = canary("one");
    let mut fx = cross_account("app/db", &format!(r#"{{"password":"{one}"}}"#)).await;
    let proxy = common::proxy::Proxy::start(fx.moto.addr());
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &fx.external_id).unwrap();
    let dir = tmp.path().join("out");
    let yaml = format!(
        "maxStaleness: 4s\n{}",
        config_yaml(&fx.role_arn, &ext_file, "app/db", &dir, "1h")
    );
    let config = write_config(tmp.path(), &yaml);
    let port = free_port();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = Running::start(&mut daemon(&config, &proxy.endpoint(), port));
    assert!(wait_for(Duration::from_secs(20), || read(&dir, "password")).is_some());
    let reads = || proxy.count("GetSecretValue");
    assert_eq!(reads(), 1);

    // POST /refresh?secret=db syncs at once although the interval is an hour.
    let two = canary("two");
    put_secret(&fx.admin, "app/db", &format!(r#"{{"password":"{two}"}}"#)).await;
    assert_eq!(
        http(
            "POST",
            admin,
            "/refresh?secret=db",
            Some(("text/plain", ""))
        )
        .map(|r| r.0),
        Some(202)
    );
    let synced_two = wait_for(Duration::from_secs(5), || {
        read(&dir, "password").filter(|v| *v == two)
    });
    assert!(synced_two.is_some(), "POST /refresh must sync now");
    assert_eq!(
        http(
            "POST",
            admin,
            "/refresh?secret=nope",
            Some(("text/plain", ""))
        )
        .map(|r| r.0),
        Some(404)
    );

    // SIGHUP does the same for every secret.
    let before = reads();
    assert!(Command::new("kill")
        .args(["-HUP", &child.pid().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        proxy.wait_for_count("GetSecretValue", before + 1, Duration::from_secs(5)),
        "SIGHUP must sync now"
    );

    // The proxy counts a call when it arrives; the daemon once its answer is handled.
    let synced = format!(
        r#"secret_ferry_secret_sync_total{{result="success",secret="db"}} {}"#,
        before + 1
    );
    let metrics = wait_for(Duration::from_secs(5), || {
        get(admin, "/metrics")
            .map(|r| r.1)
            .filter(|m| m.contains(&synced))
    })
    .expect("the SIGHUP sync is counted");
    let versions: Vec<_> = metrics
        .lines()
        .filter(|l| l.starts_with("secret_ferry_secret_version_info{"))
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "one version series per secret: {versions:?}"
    );
    assert!(
        metrics.contains(r#"secret_ferry_secret_stale{secret="db"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"secret_ferry_sync_duration_seconds_count{result="success"}"#),
        "{metrics}"
    );
    let calls = |op: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("secret_ferry_aws_api_calls_total{")
                    && l.contains(&format!("operation=\"{op}\""))
                    && l.contains("result=\"success\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    assert_eq!(
        calls("GetSecretValue") as usize,
        proxy.count("GetSecretValue"),
        "{metrics}"
    );
    assert_eq!(
        calls("AssumeRole") as usize,
        proxy.count("AssumeRole"),
        "{metrics}"
    );

    // The source goes away: the secret turns stale, and past maxStaleness /readyz says so.
    fx.moto.stop();
    assert_eq!(
        http("POST", admin, "/refresh", Some(("text/plain", ""))).map(|r| r.0),
        Some(202)
    );
    let stale = wait_for(Duration::from_secs(15), || {
        get(admin, "/metrics")
            .filter(|(_, m)| m.contains(r#"secret_ferry_secret_stale{secret="db"} 1"#))
    });
    assert!(
        stale.is_some(),
        "a failed refresh must mark the secret stale"
    );
    let unready = wait_for(Duration::from_secs(15), || {
        get(admin, "/readyz").filter(|r| r.0 == 503)
    });
    let (_, body) = unready.expect("/readyz must fail past maxStaleness");
    assert!(body.contains("maxStaleness"), "{body}");
    assert_eq!(
        read(&dir, "password").as_deref(),
        Some(two.as_str()),
        "files stay while stale"
    );
    let out = child.stop();
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_the_daemon_down_and_loses_nothing() {
    let moto = Moto::start();
    let proxy = common::proxy::Proxy::start(moto.addr());
    let sdk = moto.sdk_config();
    let tmp = tempfile::tempdir().unwrap();
    // Secret by secret, so that 30 secrets a second meet a budget of 20 calls a second.
    let mut yaml = "region: us-east-1\napiRateLimit: 20\nfetchStrategy: get\nsecrets:\n".to_owned();
    // One canary for the 30 secrets: every value starts with it.
    let prefix = canary("throttled");
    for i in 0..30 {
        create_secret(
            &sdk,
            &format!("s{i}"),
            &format!(r#"{{"v":"{prefix}-{i}"}}"#),
        )
        .await;
        yaml.push_str(&format!(
            "  - name: s{i}\n    secretId: s{i}\n    refreshInterval: 1s\n    targets:\n      - file:\n          dir: {}\n",
            tmp.path().join(format!("out/s{i}")).display()
        ));
    }
    let config = write_config(tmp.path(), &yaml);
    let port = free_port();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = Running::start(daemon(&config, &proxy.endpoint(), port).env("RUST_LOG", "info"));
    assert!(
        wait_for(Duration::from_secs(30), || get(admin, "/readyz")
            .filter(|r| r.0 == 200))
        .is_some(),
        "30 secrets never synced"
    );
    let window = Duration::from_secs(4);
    let count_over = |window: Duration| {
        let before = proxy.count("GetSecretValue");
        std::thread::sleep(window);
        proxy.count("GetSecretValue") - before
    };
    // 30 secrets every second against a budget of 20 calls a second.
    let normal = count_over(window);
    assert!(normal >= 40, "expected about 80 calls in 4 s, saw {normal}");

    proxy.inject(common::proxy::json_error(
        "GetSecretValue",
        "ThrottlingException",
        "Rate exceeded",
        400,
    ));
    // Fetches already past the budget finish their SDK retries first; then the halved
    // budget governs.
    std::thread::sleep(Duration::from_secs(3));
    let throttled = count_over(window);
    assert!(
        throttled * 3 < normal,
        "the daemon must slow down when throttled: {throttled} calls in 4 s, {normal} before"
    );
    for i in 0..30 {
        let dir = tmp.path().join(format!("out/s{i}"));
        assert_eq!(
            read(&dir, "v"),
            Some(format!("{prefix}-{i}")),
            "files must stay while throttled"
        );
    }
    let (_, metrics) = get(admin, "/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("secret_ferry_aws_throttled_total{")
                && l.contains(r#"operation="GetSecretValue""#)
                && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Throttling ends: the rate recovers and a rotation gets through.
    proxy.clear_faults();
    let rotated_value = canary("rotated");
    put_secret(&sdk, "s7", &format!(r#"{{"v":"{rotated_value}"}}"#)).await;
    let dir = tmp.path().join("out/s7");
    let rotated = wait_for(Duration::from_secs(20), || {
        read(&dir, "v").filter(|v| *v == rotated_value)
    });
    assert!(
        rotated.is_some(),
        "the daemon must recover after throttling ends"
    );
    assert!(child.stop().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_file_targets_in_every_format() {
    let moto = Moto::start();
    let sdk = moto.sdk_config();
    let hostile = format!(
        "it's $HOME `id` $(touch pwned) {}\nline2 \"quoted\" é",
        canary("hostile")
    );
    let secret = serde_json::json!({"user": "app", "password": &hostile, "port": 5432}).to_string();
    create_secret(&sdk, "app/db", &secret).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let yaml = format!(
        "region: us-east-1\nsecrets:\n  - name: db\n    secretId: app/db\n    targets:\n      - file:\n          path: {env}\n          format: env\n          mode: \"0440\"\n      - file:\n          path: {json}\n          format: json\n      - file:\n          path: {props}\n          format: properties\n",
        env = out.join("app.env").display(),
        json = out.join("app.json").display(),
        props = out.join("app.properties").display(),
    );
    let config = write_config(tmp.path(), &yaml);
    let run = daemon(&config, &moto.endpoint(), free_port())
        .arg("--once")
        .output()
        .map(captured)
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The env file is safe to source: nothing expands, every byte survives.
    let sourced = Command::new("sh")
        .current_dir(tmp.path())
        .arg("-c")
        .arg(format!(
            "set -a; . '{}'; printf %s \"$password\"",
            out.join("app.env").display()
        ))
        .output()
        .unwrap();
    assert!(
        sourced.status.success(),
        "{}",
        String::from_utf8_lossy(&sourced.stderr)
    );
    assert_eq!(String::from_utf8(sourced.stdout).unwrap(), hostile);
    assert!(
        !tmp.path().join("pwned").exists(),
        "a value must never be executed"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("app.env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o440);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("app.json")).unwrap()).unwrap();
    assert_eq!(json["password"], hostile);
    assert_eq!(json["port"], "5432");
    let props = std::fs::read_to_string(out.join("app.properties")).unwrap();
    assert!(props.contains("user=app"), "{props}");
    assert!(
        props.lines().all(|l| l.is_ascii()),
        "properties are ASCII with escapes: {props}"
    );
    assert!(
        props.contains("\\n") && props.contains("\\u00e9"),
        "{props}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_announced_once_per_burst_by_http_signal_and_touch() {
    use std::os::unix::process::ExitStatusExt;
    let moto = Moto::start();
    let sdk = moto.sdk_config();
    // One canary for the four values: every value starts with it.
    let prefix = canary("burst");
    create_secret(&sdk, "app/db", &format!(r#"{{"v":"{prefix}-0"}}"#)).await;
    let tmp = tempfile::tempdir().unwrap();

    // The app's reload hook: counts requests.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in hook.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
            if String::from_utf8_lossy(&buf[..n]).starts_with("POST /-/reload ") {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            );
        }
    });
    // The app's process, under a name no other process has. It is sent USR1, not HUP: a
    // test run started under nohup passes SIGHUP ignored on to `sleep`, which then survives it.
    let name = format!("ferry-sig-{:04}", fastrand::u16(..10_000));
    let app_bin = tmp.path().join(&name);
    std::fs::copy("/bin/sleep", &app_bin).unwrap();
    let mut app = Command::new(&app_bin).arg("300").spawn().unwrap();
    let touched = tmp.path().join(".changed");

    let dir = tmp.path().join("out");
    let yaml = format!(
        "region: us-east-1\nsecrets:\n  - name: db\n    secretId: app/db\n    refreshInterval: 1s\n    debounce: 3s\n    targets:\n      - file:\n          dir: {dir}\n    onChange:\n      - http: {{url: \"http://127.0.0.1:{hook_port}/-/reload\"}}\n      - signal: {{process: {name}, signal: USR1}}\n      - touch: {touch}\n",
        dir = dir.display(),
        touch = touched.display(),
    );
    let config = write_config(tmp.path(), &yaml);
    let port = free_port();
    let child = Running::start(&mut daemon(&config, &moto.endpoint(), port));
    assert!(wait_for(Duration::from_secs(20), || read(&dir, "v")).is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the first sync is not a change"
    );
    assert!(!touched.exists());
    assert!(
        app.try_wait().unwrap().is_none(),
        "the app must not be signalled at start"
    );

    // A burst of three rotations.
    for v in 1..=3 {
        put_secret(&sdk, "app/db", &format!(r#"{{"v":"{prefix}-{v}"}}"#)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let last = format!("{prefix}-3");
    assert!(wait_for(Duration::from_secs(10), || read(&dir, "v")
        .filter(|v| *v == last))
    .is_some());
    let notified = wait_for(Duration::from_secs(10), || {
        (hits.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    });
    assert!(notified.is_some(), "the reload hook must be called");
    let status = wait_for(Duration::from_secs(5), || app.try_wait().unwrap())
        .expect("the app must get its signal");
    assert_eq!(status.signal(), Some(10), "SIGUSR1");
    assert!(touched.exists(), "the touch file must exist");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one notification per debounced burst"
    );

    let (_, metrics) = get(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        "/metrics",
    )
    .unwrap();
    for kind in ["http", "signal", "touch"] {
        let series =
            format!(r#"secret_ferry_notify_total{{kind="{kind}",result="success",secret="db"}} 1"#);
        assert!(metrics.contains(&series), "{series} missing in\n{metrics}");
    }
    assert!(child.stop().status.success());
}
