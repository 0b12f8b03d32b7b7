//! Parameter Store entries (`parameter`, `parameterPath`) end to end against moto, the
//! daemon's calls counted at a proxy: a SecureString into files and a path into a Kubernetes
//! Secret (on the API emulator), a new version landing at the next poll, the bad inputs of
//! issue 20 each an error naming its entry with nothing removed, 1,000 unchanged parameters
//! costing 20 DescribeParameters calls a poll listed and 100 GetParameters unlisted, and the
//! `iam-policy` documents sufficient in moto's auth mode.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;
use crate::kube_emulator::KubeEmulator;
use crate::kube_target::data;

use common::in_process::Daemon;
use common::proxy::Proxy;
use common::*;
use secret_ferry::daemon::App;
use secret_ferry::metrics::Metrics;
use std::path::Path;
use std::time::{Duration, Instant};

fn file(dir: &Path, key: &str) -> Option<String> {
    read(dir, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_securestring_and_a_path_land_in_files_and_a_kubernetes_secret_and_bad_entries_remove_nothing(
) {
    capture_logs();
    let moto = Moto::start();
    let proxy = Proxy::start(moto.addr());
    let admin = moto.sdk_config();
    let ssm = aws_sdk_ssm::Client::new(&admin);
    let (v1, key) = (canary("ssm-db"), canary("ssm-api"));
    put_parameter(&ssm, "/app/prod/db", &v1, "SecureString").await;
    put_parameter(&ssm, "/app/prod/cfg/db/user", "app", "String").await;
    put_parameter(&ssm, "/app/prod/cfg/api-key", &key, "SecureString").await;
    put_parameter(&ssm, "/app/prod/list", "a,b,c", "StringList").await;
    // An advanced parameter: up to 8 KiB where a standard one holds 4.
    let big = format!("{}{}", canary("ssm-big"), "x".repeat(8192 - 60));
    ssm.put_parameter()
        .name("/app/prod/big")
        .value(&big)
        .r#type("SecureString".into())
        .tier("Advanced".into())
        .send()
        .await
        .unwrap();

    label_parameter(&ssm, "/app/prod/db", 1, "prod").await;
    let tmp = tempfile::tempdir().unwrap();
    let out = |name: &str| tmp.path().join(name);
    let yaml = format!(
        "region: us-east-1
secrets:
  - {{name: db, parameter: /app/prod/db, refreshInterval: 2s, targets: [{{file: {{dir: {db}}}}}]}}
  - {{name: config, parameterPath: {{path: /app/prod/cfg/, recursive: true}}, refreshInterval: 2s, targets: [{{kubernetesSecret: {{name: app-config}}}}]}}
  - {{name: big, parameter: /app/prod/big, refreshInterval: 2s, targets: [{{file: {{dir: {big}}}}}]}}
  - {{name: pinned, parameter: \"/app/prod/db:1\", refreshInterval: 2s, targets: [{{file: {{dir: {pinned}}}}}]}}
  - {{name: labelled, parameter: \"/app/prod/db:prod\", refreshInterval: 2s, targets: [{{file: {{dir: {labelled}}}}}]}}
  - {{name: list, parameter: /app/prod/list, targets: [{{file: {{dir: {list}}}}}]}}
  - {{name: nolabel, parameter: \"/app/prod/db:nolabel\", targets: [{{file: {{dir: {nolabel}}}}}]}}
  - {{name: empty, parameterPath: {{path: /nothing/here/}}, targets: [{{file: {{dir: {empty}}}}}]}}
",
        db = out("db").display(),
        big = out("big").display(),
        pinned = out("pinned").display(),
        labelled = out("labelled").display(),
        list = out("list").display(),
        nolabel = out("nolabel").display(),
        empty = out("empty").display(),
    );
    let emulator = KubeEmulator::start();
    let metrics = Metrics::new().unwrap();
    let kube = crate::kube_target::kube_for(&emulator, &metrics).await;
    let cfg = secret_ferry::config::parse(&yaml).unwrap();
    let sdk = admin.to_builder().endpoint_url(proxy.endpoint()).build();
    let app = App::build_with(&cfg, &sdk, metrics.clone(), Some(&kube)).unwrap();
    let daemon = Daemon::run(app, metrics);

    let landed = wait_for(Duration::from_secs(20), || {
        let secret = emulator.get("Secret", "app", "app-config")?;
        (file(&out("db"), "value")? == v1 && file(&out("list"), "value").is_some())
            .then_some(secret)
    });
    let secret = landed.expect("the entries did not land");
    assert_eq!(data(&secret, "api-key").as_deref(), Some(key.as_str()));
    assert_eq!(
        data(&secret, "db_user").as_deref(),
        Some("app"),
        "a deeper name's '/' is '_'"
    );
    assert_eq!(
        file(&out("list"), "value").as_deref(),
        Some("a,b,c"),
        "a StringList is written as Parameter Store returns it, commas and all"
    );
    assert_eq!(file(&out("big"), "value").as_deref(), Some(big.as_str()));

    // The label that does not exist and the path that matches nothing: failing, no file.
    let failures = |secret: &str| {
        daemon.metric(&format!(
            r#"secret_ferry_secret_sync_total{{result="failure",secret="{secret}"}}"#
        ))
    };
    let failed = wait_for(Duration::from_secs(10), || {
        (failures("nolabel") >= 1.0 && failures("empty") >= 1.0).then_some(())
    });
    assert!(failed.is_some(), "{:?}", daemon.readiness.status());
    assert!(!out("nolabel").exists() && !out("empty").exists());

    // A new version lands at the next poll (interval 2 s).
    let v2 = canary("ssm-db");
    let changed_at = Instant::now();
    assert_eq!(
        put_parameter(&ssm, "/app/prod/db", &v2, "SecureString").await,
        2
    );
    let landed = wait_for(Duration::from_secs(10), || {
        (file(&out("db"), "value")? == v2).then_some(())
    });
    assert!(landed.is_some(), "the new version did not land");
    let took = changed_at.elapsed().as_secs_f64();
    println!("Parameter Store new version -> file at refreshInterval 2s: {took:.2} s");
    // A label follows its version; a pinned version stays, synced without a read.
    assert_eq!(
        file(&out("labelled"), "value").as_deref(),
        Some(v1.as_str())
    );
    label_parameter(&ssm, "/app/prod/db", 2, "prod").await;
    let moved = wait_for(Duration::from_secs(10), || {
        (file(&out("labelled"), "value")? == v2).then_some(())
    });
    assert!(moved.is_some(), "the label's new version did not land");
    assert_eq!(file(&out("pinned"), "value").as_deref(), Some(v1.as_str()));
    let successes = |secret: &str| {
        daemon.metric(&format!(
            r#"secret_ferry_secret_sync_total{{result="success",secret="{secret}"}}"#
        ))
    };
    let (pinned_before, asked_before) = (successes("pinned"), proxy.count("GetParameters"));
    let settled = wait_for(Duration::from_secs(10), || {
        (successes("pinned") >= pinned_before + 2.0).then_some(())
    });
    assert!(settled.is_some(), "the pinned entry stopped syncing");
    let pinned_reads = proxy
        .requests_for("GetParameters")
        .iter()
        .skip(asked_before)
        .filter(|r| r.body_text().contains("/app/prod/db:1"))
        .count();
    assert_eq!(
        pinned_reads, 0,
        "a written pinned version is never read again"
    );
    assert_eq!(failures("pinned"), 0.0);

    // Deleted: the file and the Secret keep the last value written.
    ssm.delete_parameter()
        .name("/app/prod/db")
        .send()
        .await
        .unwrap();
    ssm.delete_parameters()
        .names("/app/prod/cfg/db/user")
        .names("/app/prod/cfg/api-key")
        .send()
        .await
        .unwrap();
    let (db_failed, config_failed) = (failures("db"), failures("config"));
    let failing = wait_for(Duration::from_secs(15), || {
        (failures("db") > db_failed && failures("config") > config_failed).then_some(())
    });
    assert!(failing.is_some(), "the deletions did not fail the syncs");
    assert_eq!(file(&out("db"), "value").as_deref(), Some(v2.as_str()));
    let kept = emulator.get("Secret", "app", "app-config").unwrap();
    assert_eq!(data(&kept, "api-key").as_deref(), Some(key.as_str()));
    daemon.stop().await;

    // Each failure is an error naming its entry, what it asked and the fix.
    let app = App::build_with(&cfg, &sdk, Metrics::new().unwrap(), Some(&kube)).unwrap();
    let errors: Vec<String> = app
        .run_once()
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    let about = |entry: &str| {
        errors
            .iter()
            .find(|e| e.starts_with(&format!("secret '{entry}'")))
            .unwrap_or_else(|| panic!("no error for {entry} in {errors:#?}"))
            .clone()
    };
    assert!(
        about("nolabel").contains("/app/prod/db:nolabel"),
        "{}",
        about("nolabel")
    );
    assert!(about("nolabel").contains("label"), "{}", about("nolabel"));
    assert!(
        about("empty").contains("/nothing/here/"),
        "{}",
        about("empty")
    );
    assert!(about("empty").contains("recursive"), "{}", about("empty"));
    assert!(
        about("config").contains("/app/prod/cfg/"),
        "{}",
        about("config")
    );
    assert!(
        about("db").contains("no parameter /app/prod/db"),
        "{}",
        about("db")
    );
    // And the pinned and labelled entries, whose parameter is gone too (nothing is written in
    // a new process yet, so the pinned one is read).
    assert_eq!(errors.len(), 6, "{errors:#?}");
    // Into the leak scan: no value, no ExternalId, no token in any of them.
    for error in &errors {
        capture("parameter-errors", error.as_bytes());
    }
}

/// moto with DescribeParameters paged as AWS pages it, a role in the secrets account, and
/// `n` SecureString parameters `/bulk/pNNNN` in it, each starting with one canary.
async fn bulk(n: usize) -> (CrossAccount, String) {
    let fx = cross_account_role_in(Moto::start_with_aws_pages()).await;
    let prefix = canary("ssm-bulk");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let ssm = aws_sdk_ssm::Client::new(&fx.admin);
        let value = format!("{prefix}-{i}");
        set.spawn(async move {
            put_parameter(&ssm, &format!("/bulk/p{i:04}"), &value, "SecureString").await
        });
        if set.len() >= 16 {
            set.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    (fx, prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unchanged_parameters_cost_20_listings_a_poll_or_100_reads_unlisted() {
    // Prints figures: never beside another heavy test (common::heavy).
    let _heavy = heavy();
    capture_logs();
    const N: usize = 1000;
    let (
        CrossAccount {
            moto,
            admin,
            role_arn,
            external_id,
        },
        prefix,
    ) = bulk(N).await;
    create_secret(
        &admin,
        "also/secrets-manager",
        &format!(r#"{{"k":"{}"}}"#, canary("sm")),
    )
    .await;
    let proxy = Proxy::start(moto.addr());
    let sdk = moto
        .sdk_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .build();
    let tmp = tempfile::tempdir().unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &external_id).unwrap();

    let mut figures = Vec::new();
    for strategy in ["auto", "batch"] {
        let root = tmp.path().join(strategy);
        let mut config = ConfigYaml::new()
            .region(REGION)
            .top("fetchStrategy", strategy)
            .role("shared", &role_arn, &ext_file)
            .secret("sm", "also/secrets-manager")
            .uses_role("shared")
            .file_target(&root.join("sm"));
        for i in 0..N {
            config = config
                .parameter(&format!("s{i:04}"), &format!("/bulk/p{i:04}"))
                .uses_role("shared")
                .option("refreshInterval", "1h")
                .file_target(&root.join(format!("s{i:04}")));
        }
        proxy.reset_records();
        let started = Instant::now();
        let daemon = Daemon::start(&config.build(), &sdk);
        daemon.wait_ready(Duration::from_secs(120)).await;
        let first_sync = started.elapsed().as_secs_f64();
        assert_eq!(
            proxy.count("AssumeRole"),
            1,
            "one AssumeRole for the Parameter Store and Secrets Manager reads of the role"
        );
        let first = (
            proxy.count("DescribeParameters"),
            proxy.count("GetParameters"),
        );
        assert_eq!(
            read(&root.join("s0999"), "value"),
            Some(format!("{prefix}-999"))
        );

        // One poll with nothing changed.
        proxy.reset_records();
        let started = Instant::now();
        daemon.poll_once(N + 1).await;
        let unchanged_poll = started.elapsed().as_secs_f64();
        let (describe, get) = (
            proxy.count("DescribeParameters"),
            proxy.count("GetParameters"),
        );
        figures.push(format!(
            "{strategy}: first sync {first_sync:.1} s ({} DescribeParameters, {} GetParameters); unchanged poll {unchanged_poll:.2} s: DescribeParameters={describe} GetParameters={get}",
            first.0, first.1
        ));
        match strategy {
            "auto" => {
                assert_eq!(
                    first,
                    (0, 100),
                    "nothing to compare yet: every parameter read once"
                );
                assert_eq!(
                    (describe, get),
                    (20, 0),
                    "fifty names a listing, nothing read"
                );
                for request in proxy.requests_for("DescribeParameters") {
                    assert!(request.body_text().contains("\"MaxResults\":50"));
                }
            }
            _ => {
                assert_eq!(first.0, 0);
                assert_eq!((describe, get), (0, 100), "ten names a GetParameters call");
            }
        }

        // Three changed: exactly those three rewritten (and, listed, one read).
        let links = crate::moto_fetch::data_links(&root, N);
        let ssm = aws_sdk_ssm::Client::new(&admin);
        for i in [3, 500, 998] {
            let value = format!("{prefix}-{strategy}-{i}");
            put_parameter(&ssm, &format!("/bulk/p{i:04}"), &value, "SecureString").await;
        }
        proxy.reset_records();
        daemon.poll_once(N + 1).await;
        let after = crate::moto_fetch::data_links(&root, N);
        let moved: Vec<usize> = (0..N).filter(|&i| links[i] != after[i]).collect();
        assert_eq!(
            moved,
            [3, 500, 998],
            "{strategy}: DescribeParameters={} GetParameters={}",
            proxy.count("DescribeParameters"),
            proxy.count("GetParameters")
        );
        assert_eq!(
            read(&root.join("s0500"), "value"),
            Some(format!("{prefix}-{strategy}-500"))
        );
        if strategy == "auto" {
            assert_eq!(
                (
                    proxy.count("DescribeParameters"),
                    proxy.count("GetParameters")
                ),
                (20, 1),
                "the three changed read in one call"
            );
        }
        daemon.stop().await;
    }
    println!("1,000 Parameter Store entries (one role, one region):");
    for line in &figures {
        println!("  {line}");
    }
}

/// The documents `iam-policy` prints for Parameter Store entries, applied to moto in auth
/// mode, are what the daemon needs; without GetParameters the read fails with 403 and the
/// error and `check` name the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policy_parameter_documents_are_sufficient_in_auth_mode() {
    use crate::check::run;
    let moto = Moto::start();
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let workload = create_user(&admin, "workload", &allow("sts:GetCallerIdentity")).await;
    let operator = create_user(&admin, "operator", &allow("*")).await;
    let ssm = aws_sdk_ssm::Client::new(&admin);
    let (db, token) = (canary("ssm-auth-db"), canary("ssm-auth-token"));
    put_parameter(&ssm, "/app/prod/db", &db, "SecureString").await;
    put_parameter(&ssm, "/app/prod/cfg/token", &token, "SecureString").await;
    let tmp = tempfile::tempdir().unwrap();
    let external_id = canary("extid");
    let id_file = tmp.path().join("external-id");
    std::fs::write(&id_file, &external_id).unwrap();
    let role_arn = format!("arn:aws:iam::{SECRETS_ACCOUNT}:role/Generated");
    let yaml = format!(
        "region: us-east-1\nroles:\n  shared: {{roleArn: \"{role_arn}\", externalIdFile: {}}}\nsecrets:\n  - {{name: db, parameter: /app/prod/db, role: shared, targets: [{{file: {{dir: {}}}}}]}}\n  - {{name: cfg, parameterPath: {{path: /app/prod/cfg/}}, role: shared, targets: [{{file: {{dir: {}}}}}]}}\n",
        id_file.display(),
        tmp.path().join("out/db").display(),
        tmp.path().join("out/cfg").display(),
    );
    let config = write_config(tmp.path(), &yaml);
    let docs = crate::check::iam_policy_json(&config, &workload.arn);
    let shared = &docs["shared"];
    let perms = shared["permissionsPolicy"].clone();
    let statement = |sid: &str| iam_docs::statement(&perms, sid);
    let names = statement("ReadConfiguredParameters");
    assert_eq!(names["Action"], "ssm:GetParameters");
    assert_eq!(
        names["Resource"],
        format!("arn:aws:ssm:us-east-1:{SECRETS_ACCOUNT}:parameter/app/prod/db"),
        "no '/' of its own after `parameter`"
    );
    let paths = statement("ReadConfiguredParameterPaths");
    assert_eq!(statement("CompareParameterVersions")["Resource"], "*");
    // moto evaluates SSM calls against "*" only: the generated patterns are held against the
    // ARNs moto assigned, with IAM's wildcards.
    let arn_of = |name: &str| {
        let ssm = ssm.clone();
        let name = name.to_owned();
        async move {
            ssm.get_parameter()
                .name(name)
                .send()
                .await
                .unwrap()
                .parameter
                .unwrap()
                .arn
                .unwrap()
        }
    };
    let grants = |statement: &serde_json::Value, arn: &str| {
        let patterns: Vec<String> = match &statement["Resource"] {
            serde_json::Value::String(one) => vec![one.clone()],
            many => many
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect(),
        };
        patterns
            .iter()
            .any(|p| secret_ferry::commands::iam_policy::resource_matches(p, arn))
    };
    assert!(grants(&names, &arn_of("/app/prod/db").await));
    assert!(grants(&paths, &arn_of("/app/prod/cfg/token").await));
    assert!(grants(
        &paths,
        &format!("arn:aws:ssm:us-east-1:{SECRETS_ACCOUNT}:parameter/app/prod/cfg")
    ));
    assert!(!grants(&names, &arn_of("/app/prod/cfg/token").await));
    let via =
        shared["kmsKeyPolicyStatement"]["Condition"]["StringEquals"]["kms:ViaService"].to_string();
    assert!(via.contains("ssm.us-east-1.amazonaws.com"), "{via}");

    let anywhere = iam_docs::on_any_resource(&perms);
    let trust = iam_docs::trust_with(shared, &external_id);
    iam_docs::create_role_with(&admin, "Generated", &trust, &anywhere).await;
    iam_docs::put_caller_policy(&admin, "workload", &shared["callerPolicy"]).await;
    moto.enable_auth();
    let as_workload = |args: &[&str]| {
        let endpoint = moto.endpoint();
        let out = run(
            args,
            &[
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", workload.access_key_id.as_str()),
                ("AWS_SECRET_ACCESS_KEY", workload.secret_access_key.as_str()),
            ],
        );
        (out.status.code(), output_text(&out))
    };
    let once = ["run", "--once", "--config", config.to_str().unwrap()];
    let (code, log) = as_workload(&once);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        read(&tmp.path().join("out/db"), "value").as_deref(),
        Some(db.as_str())
    );
    assert_eq!(
        read(&tmp.path().join("out/cfg"), "token").as_deref(),
        Some(token.as_str())
    );
    let (code, log) = as_workload(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("DescribeParameters"), "{log}");

    // Without GetParameters: 403, named with the statement to fix; the files stay.
    let mut fewer = anywhere.clone();
    fewer["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["Action"] != "ssm:GetParameters");
    let operator = moto.sdk_config_with(operator.credentials());
    iam_docs::put_role_permissions(&operator, "Generated", &fewer).await;
    let (code, log) = as_workload(&once);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("HTTP 403"), "{log}");
    assert!(
        log.contains("ssm:GetParameters on arn:aws:ssm:us-east-1:<account>:parameter/app/prod/db"),
        "{log}"
    );
    assert_eq!(
        read(&tmp.path().join("out/db"), "value").as_deref(),
        Some(db.as_str())
    );
    let (code, log) = as_workload(&["check", "--config", config.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("no '/' of its own after `parameter`"), "{log}");
    assert_no_leak(&log, &[&external_id, &db, &token]);
}

/// What moto cannot produce, injected at the proxy: KMS refusing a SecureString's decryption
/// and Parameter Store throttling. Each is classified with its fix, counted, and the file
/// keeps the last value written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_denial_and_throttling_are_named_with_their_fix_and_remove_nothing() {
    use common::proxy::json_error;
    capture_logs();
    let moto = Moto::start();
    let proxy = Proxy::start(moto.addr());
    let admin = moto.sdk_config();
    let ssm = aws_sdk_ssm::Client::new(&admin);
    let value = canary("ssm-kms");
    put_parameter(&ssm, "/app/prod/db", &value, "SecureString").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let yaml = format!(
        "region: us-east-1\nsecrets:\n  - {{name: db, parameter: /app/prod/db, targets: [{{file: {{dir: {}}}}}]}}\n",
        dir.display()
    );
    let cfg = secret_ferry::config::parse(&yaml).unwrap();
    let sdk = admin.to_builder().endpoint_url(proxy.endpoint()).build();
    let once = |metrics: Metrics| {
        let app = App::build(&cfg, &sdk, metrics).unwrap();
        async move {
            let errors: Vec<String> = app
                .run_once()
                .await
                .iter()
                .map(ToString::to_string)
                .collect();
            for error in &errors {
                capture("parameter-errors", error.as_bytes());
            }
            errors
        }
    };
    assert!(once(Metrics::new().unwrap()).await.is_empty());
    assert_eq!(read(&dir, "value").as_deref(), Some(value.as_str()));

    proxy.inject(json_error(
        "GetParameters",
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/reader is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:123456789012:key/1234abcd because no resource-based policy allows the kms:Decrypt action",
        400,
    ));
    let errors = once(Metrics::new().unwrap()).await;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("kmsKeyPolicyStatement"), "{}", errors[0]);
    assert!(
        errors[0].contains("kms:ViaService = ssm.us-east-1.amazonaws.com"),
        "{}",
        errors[0]
    );
    assert_eq!(read(&dir, "value").as_deref(), Some(value.as_str()), "kept");

    proxy.clear_faults();
    proxy.inject(json_error(
        "GetParameters",
        "ThrottlingException",
        "Rate exceeded",
        400,
    ));
    let metrics = Metrics::new().unwrap();
    let errors = once(metrics.clone()).await;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("parameterStoreRateLimit"),
        "{}",
        errors[0]
    );
    let scraped = metrics.render().unwrap();
    capture("metrics", scraped.as_bytes());
    assert!(
        metric_or_zero(
            &scraped,
            r#"secret_ferry_aws_throttled_total{operation="GetParameters",service="SSM"}"#
        ) >= 1.0,
        "{scraped}"
    );
    assert_eq!(read(&dir, "value").as_deref(), Some(value.as_str()), "kept");
}

/// Under `auto`, a DescribeParameters refused with 403 is asked once: the group reads with
/// GetParameters and GetParametersByPath from then on, and stays synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_listing_under_auto_is_asked_once_and_reading_goes_on() {
    use common::proxy::json_error;
    capture_logs();
    let moto = Moto::start();
    let proxy = Proxy::start(moto.addr());
    let admin = moto.sdk_config();
    let ssm = aws_sdk_ssm::Client::new(&admin);
    let first = canary("ssm-denied-list");
    put_parameter(&ssm, "/app/cfg/a", &first, "SecureString").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cfg");
    let yaml = format!(
        "region: us-east-1\nsecrets:\n  - {{name: cfg, parameterPath: {{path: /app/cfg/}}, refreshInterval: 1h, targets: [{{file: {{dir: {}}}}}]}}\n",
        dir.display()
    );
    proxy.inject(json_error(
        "DescribeParameters",
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/reader is not authorized to perform: ssm:DescribeParameters",
        403,
    ));
    let sdk = admin.to_builder().endpoint_url(proxy.endpoint()).build();
    let daemon = Daemon::start(&yaml, &sdk);
    daemon.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(read(&dir, "a").as_deref(), Some(first.as_str()));
    assert_eq!(
        proxy.count("DescribeParameters"),
        0,
        "nothing to compare before a write"
    );
    let second = canary("ssm-denied-list");
    put_parameter(&ssm, "/app/cfg/a", &second, "SecureString").await;
    for _ in 0..3 {
        daemon.poll_once(1).await;
    }
    assert_eq!(read(&dir, "a").as_deref(), Some(second.as_str()));
    assert_eq!(
        proxy.count("DescribeParameters"),
        1,
        "asked once, then not again"
    );
    assert_eq!(
        proxy.count("GetParametersByPath"),
        4,
        "the path read at every poll"
    );
    daemon.stop().await;
}
