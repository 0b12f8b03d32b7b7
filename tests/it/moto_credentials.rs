//! The credentials engine end to end: chaining, AssumeRole options reaching STS, one
//! AssumeRole per refresh period, ExternalId rotation, every error kind, and handing the
//! assumed role to an app (credentials file, credentials endpoint) consumed by boto3.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::proxy::{sts_error, Proxy, Recorded};
use common::*;
use secret_ferry::credentials::{AssumeRole, StsAssumer};
use std::process::Command;
use std::time::Duration;

const HUB_ACCOUNT: &str = "222222222222";

fn field<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.form
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn assume_calls(proxy: &Proxy) -> Vec<Recorded> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.operation == "AssumeRole")
        .collect()
}

/// Runs boto3 in the test venv with `env`, printing the caller's ARN.
fn boto3_caller_arn(endpoint: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new(python())
        .args([
            "-c",
            "import boto3, sys; print(boto3.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1').get_caller_identity()['Arn'])",
            endpoint,
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_base_to_hub_to_target_sends_every_option_to_sts() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.addr());
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let value = canary("chained");
    create_secret(&admin, "app/db", &format!(r#"{{"password":"{value}"}}"#)).await;
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    let external_id = canary("extid");
    std::fs::write(&ext, &external_id).unwrap();
    let dir = tmp.path().join("out");
    let yaml = format!(
        r#"region: us-east-1
roles:
  hub:
    roleArn: arn:aws:iam::{HUB_ACCOUNT}:role/Hub
    sessionName: hub-${{POD_NAME}}
  target:
    via: hub
    roleArn: arn:aws:iam::{SECRETS_ACCOUNT}:role/Target
    externalIdFile: {ext}
    sessionName: ferry-${{POD_NAMESPACE}}-${{POD_NAME}}
    sessionTags: {{team: payments, env: prod}}
    transitiveTagKeys: [team]
    sourceIdentity: ci-bot
    policy: {{Version: "2012-10-17", Statement: [{{Effect: Allow, Action: "secretsmanager:GetSecretValue", Resource: "*"}}]}}
    policyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]
secrets:
  - name: db
    secretId: app/db
    role: target
    targets:
      - file:
          dir: {dir}
"#,
        ext = ext.display(),
        dir = dir.display(),
    );
    let config = write_config(tmp.path(), &yaml);
    let out = daemon(&config, &proxy.endpoint(), free_port())
        .arg("--once")
        .env("POD_NAME", "app-7f9c")
        .env("POD_NAMESPACE", "shop")
        .output()
        .map(captured)
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert_eq!(read(&dir, "password").as_deref(), Some(value.as_str()));

    let calls = assume_calls(&proxy);
    assert_eq!(
        calls.len(),
        2,
        "one AssumeRole per link of the chain: {calls:#?}"
    );
    let (hub, target) = (&calls[0], &calls[1]);
    assert_eq!(
        field(hub, "RoleArn"),
        Some(format!("arn:aws:iam::{HUB_ACCOUNT}:role/Hub").as_str())
    );
    assert_eq!(field(hub, "RoleSessionName"), Some("hub-app-7f9c"));
    assert_eq!(
        hub.access_key_id.as_deref(),
        Some("testing"),
        "the hub is assumed with the base identity"
    );
    assert_eq!(
        field(target, "RoleArn"),
        Some(format!("arn:aws:iam::{SECRETS_ACCOUNT}:role/Target").as_str())
    );
    let hub_key = target.access_key_id.clone().unwrap_or_default();
    assert!(
        hub_key.starts_with("ASIA") && hub_key != "testing",
        "the target must be assumed with the hub's credentials, got {hub_key}"
    );
    assert_eq!(
        field(target, "RoleSessionName"),
        Some("ferry-shop-app-7f9c")
    );
    assert_eq!(field(target, "ExternalId"), Some(external_id.as_str()));
    assert_eq!(field(target, "SourceIdentity"), Some("ci-bot"));
    assert_eq!(field(target, "Tags.member.1.Key"), Some("env"));
    assert_eq!(field(target, "Tags.member.1.Value"), Some("prod"));
    assert_eq!(field(target, "Tags.member.2.Key"), Some("team"));
    assert_eq!(field(target, "Tags.member.2.Value"), Some("payments"));
    assert_eq!(field(target, "TransitiveTagKeys.member.1"), Some("team"));
    assert_eq!(
        field(target, "PolicyArns.member.1.arn"),
        Some("arn:aws:iam::aws:policy/ReadOnlyAccess")
    );
    let policy: serde_json::Value = serde_json::from_str(field(target, "Policy").unwrap()).unwrap();
    assert_eq!(
        policy["Statement"][0]["Action"],
        "secretsmanager:GetSecretValue"
    );
    assert!(field(hub, "ExternalId").is_none() && field(hub, "Tags.member.1.Key").is_none());

    // The secret was read with the target's own credentials: neither the base identity
    // nor the hub's key that signed the target's AssumeRole.
    let reads = proxy.requests_for("GetSecretValue");
    assert_eq!(reads.len(), 1);
    let read_key = reads[0].access_key_id.clone().unwrap_or_default();
    assert!(
        read_key.starts_with("ASIA") && read_key != hub_key,
        "GetSecretValue signed with {read_key}, hub key {hub_key}"
    );
    assert_no_leak(&log, &[&external_id, &value]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_secrets_share_one_assume_role_per_refresh_period() {
    let CrossAccount {
        moto,
        admin,
        role_arn,
        external_id,
    } = cross_account_role().await;
    let proxy = Proxy::start(moto.addr());
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, &external_id).unwrap();
    let mut yaml = format!(
        "region: us-east-1\nroles:\n  shared:\n    roleArn: {role_arn}\n    externalIdFile: {}\n    duration: 15m\n    refreshBefore: 14m50s\nsecrets:\n",
        ext.display()
    );
    // One canary for the 100 secrets: every value starts with it.
    let prefix = canary("hundred");
    for i in 0..100 {
        create_secret(
            &admin,
            &format!("s{i}"),
            &format!(r#"{{"k":"{prefix}-{i}"}}"#),
        )
        .await;
        yaml.push_str(&format!(
            "  - name: s{i}\n    secretId: s{i}\n    role: shared\n    refreshInterval: 5m\n    targets:\n      - file:\n          dir: {}\n",
            tmp.path().join(format!("out/s{i}")).display()
        ));
    }
    let config = write_config(tmp.path(), &yaml);
    let port = free_port();
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = Running::start(daemon(&config, &proxy.endpoint(), port).env("RUST_LOG", "info"));
    let ready = wait_for(Duration::from_secs(30), || {
        get(admin_addr, "/readyz").filter(|r| r.0 == 200)
    });
    assert!(ready.is_some(), "100 secrets never became ready");
    proxy.reset_records();
    // Credentials live 15 min and are refreshed 14m50s ahead: one AssumeRole every
    // 10 s ± 1 s, whatever the number of secrets.
    std::thread::sleep(Duration::from_secs(60));
    let calls = proxy.count("AssumeRole");
    let (_, metrics) = get(admin_addr, "/metrics").unwrap();
    let out = child.stop();
    assert!(out.status.success());
    assert!(
        (5..=7).contains(&calls),
        "expected 6 ± 1 AssumeRole calls in 60 s, moto received {calls}"
    );
    assert_eq!(
        proxy.count("GetSecretValue"),
        0,
        "no secret is due within the window"
    );
    let successes = metric_value(
        &metrics,
        r#"secret_ferry_credential_refresh_total{result="success",role="shared"}"#,
    );
    assert!(successes >= calls as f64, "{metrics}");
    assert!(
        metrics.contains(r#"secret_ferry_assume_role_duration_seconds_count{role="shared"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"secret_ferry_credential_consecutive_failures{role="shared"} 0"#),
        "{metrics}"
    );
    assert_no_leak(
        &String::from_utf8_lossy(&out.stderr),
        &[&external_id, &prefix],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_external_id_is_used_on_the_next_refresh() {
    let moto = Moto::start();
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    // moto enforces trust policies only for callers of the role's own account.
    let workload = create_user(&admin, "workload", &allow("sts:AssumeRole")).await;
    let operator = create_user(&admin, "operator", &allow("*")).await;
    let old_id = canary("old-extid");
    let new_id = canary("new-extid");
    let role_arn = create_role(&admin, "Shared", &workload.arn, &old_id).await;
    let value = canary("value");
    create_secret(&admin, "app/db", &format!(r#"{{"k":"{value}"}}"#)).await;
    moto.enable_auth();

    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, &old_id).unwrap();
    let dir = tmp.path().join("out");
    let config = write_config(
        tmp.path(),
        &ConfigYaml::new()
            .region(REGION)
            .role("shared", &role_arn, &ext)
            .role_option("duration", "15m")
            .role_option("refreshBefore", "14m50s")
            .secret("db", "app/db")
            .uses_role("shared")
            .option("refreshInterval", "5m")
            .file_target(&dir)
            .build(),
    );
    let port = free_port();
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = Running::start(
        daemon(&config, &moto.endpoint(), port)
            .env("AWS_ACCESS_KEY_ID", &workload.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &workload.secret_access_key),
    );
    assert_eq!(
        wait_for(Duration::from_secs(20), || read(&dir, "k")).as_deref(),
        Some(value.as_str()),
        "first sync failed"
    );
    let metric = |series: &str| metric_or_zero(&get(admin_addr, "/metrics").unwrap().1, series);
    let denied = r#"secret_ferry_credential_refresh_errors_total{reason="trust_policy_denied",role="shared"}"#;
    let success = r#"secret_ferry_credential_refresh_total{result="success",role="shared"}"#;
    assert_eq!(metric(denied), 0.0);

    // The account owner rotates the ExternalId in the trust policy first…
    let iam = aws_sdk_iam::Client::new(&moto.sdk_config_with(operator.credentials()));
    iam.update_assume_role_policy()
        .role_name("Shared")
        .policy_document(trust_policy(&workload.arn, &new_id))
        .send()
        .await
        .unwrap();
    // …so the next refresh, still with the old id, is refused…
    let refused = wait_for(Duration::from_secs(25), || {
        (metric(denied) >= 1.0).then_some(())
    });
    assert!(
        refused.is_some(),
        "the old ExternalId must be refused after the trust policy changed"
    );
    let before = metric(success);
    // …and once the file holds the new id, the next attempt is accepted, no restart.
    std::fs::write(&ext, format!("{new_id}\n")).unwrap();
    let accepted = wait_for(Duration::from_secs(25), || {
        (metric(success) > before).then_some(())
    });
    assert!(
        accepted.is_some(),
        "the rotated ExternalId must be used on the next refresh"
    );
    assert_eq!(
        metric(r#"secret_ferry_credential_consecutive_failures{role="shared"}"#),
        0.0
    );

    let out = child.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("trust_policy_denied"), "{log}");
    assert_no_leak(
        &log,
        &[
            &old_id,
            &new_id,
            &value,
            &workload.secret_access_key,
            &operator.secret_access_key,
        ],
    );
}

/// A daemon that vends role `shared` (refreshed every ~10 s) as a credentials file and
/// through the credentials endpoint.
struct Vending {
    moto: Moto,
    tmp: tempfile::TempDir,
    child: Running,
    creds_file: std::path::PathBuf,
    token_file: std::path::PathBuf,
    endpoint_port: u16,
    external_id: String,
    value: String,
}

async fn vending() -> Vending {
    let value = canary("vended");
    let CrossAccount {
        moto,
        role_arn,
        external_id,
        ..
    } = cross_account("app/db", &format!(r#"{{"k":"{value}"}}"#)).await;
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, &external_id).unwrap();
    let token_file = tmp.path().join("endpoint-token");
    std::fs::write(&token_file, canary("endpoint-token")).unwrap();
    let creds_file = tmp.path().join("aws/credentials");
    let endpoint_port = free_port();
    let yaml = format!(
        r#"region: us-east-1
roles:
  shared:
    roleArn: {role_arn}
    externalIdFile: {ext}
    duration: 15m
    refreshBefore: 14m50s
credentialOutputs:
  - role: shared
    file:
      path: {creds}
      profile: cross-account
credentialsEndpoint:
  listen: 127.0.0.1:{endpoint_port}
  tokenFile: {token}
  roles: [shared]
secrets:
  - name: db
    secretId: app/db
    role: shared
    targets:
      - file:
          dir: {dir}
"#,
        ext = ext.display(),
        creds = creds_file.display(),
        token = token_file.display(),
        dir = tmp.path().join("out").display(),
    );
    let config = write_config(tmp.path(), &yaml);
    let child = Running::start(&mut daemon(&config, &moto.endpoint(), free_port()));
    Vending {
        moto,
        tmp,
        child,
        creds_file,
        token_file,
        endpoint_port,
        external_id,
        value,
    }
}

fn ini_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.trim_start().strip_prefix('='))
            .map(|v| v.trim().to_owned())
    })
}

fn stop(child: Running) -> String {
    let out = child.stop();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_works_for_boto3_and_is_rewritten_after_refresh() {
    let v = vending().await;
    let text = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&v.creds_file).ok()
    })
    .expect("no credentials file");
    assert!(text.contains("[cross-account]"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&v.creds_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    let first_key = ini_value(&text, "aws_access_key_id").unwrap();
    let secret = ini_value(&text, "aws_secret_access_key").unwrap();
    let token = ini_value(&text, "aws_session_token").unwrap();
    register_canary(&secret);
    register_canary(&token);

    let creds_path = v.creds_file.display().to_string();
    let arn = boto3_caller_arn(
        &v.moto.endpoint(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &creds_path),
            ("AWS_PROFILE", "cross-account"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
        ],
    )
    .unwrap();
    assert!(
        arn.contains(&format!(
            "{SECRETS_ACCOUNT}:assumed-role/CrossAccountSecretsRole/"
        )),
        "boto3 must act as the assumed role, got {arn}"
    );

    // Refreshed about every 10 s: the file follows with new keys.
    let rewritten = wait_for(Duration::from_secs(25), || {
        let text = std::fs::read_to_string(&v.creds_file).ok()?;
        ini_value(&text, "aws_access_key_id").filter(|k| *k != first_key)
    });
    assert!(
        rewritten.is_some(),
        "the credentials file must be rewritten after a refresh"
    );
    let log = stop(v.child);
    assert_no_leak(&log, &[&v.external_id, &v.value, &secret, &token]);
    drop(v.tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_endpoint_serves_boto3_and_refuses_bad_tokens() {
    let v = vending().await;
    let url = format!("http://127.0.0.1:{}/v1/credentials/shared", v.endpoint_port);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], v.endpoint_port));
    let token = std::fs::read_to_string(&v.token_file).unwrap();
    let served = wait_for(Duration::from_secs(20), || {
        http_with_auth(addr, "/v1/credentials/shared", Some(&token)).filter(|r| r.0 == 200)
    });
    let (_, body) = served.expect("endpoint never served credentials");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let secret = json["SecretAccessKey"].as_str().unwrap().to_owned();
    let session_token = json["Token"].as_str().unwrap().to_owned();
    register_canary(&secret);
    register_canary(&session_token);

    let token_path = v.token_file.display().to_string();
    let arn = boto3_caller_arn(
        &v.moto.endpoint(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path),
        ],
    )
    .unwrap();
    assert!(
        arn.contains(&format!(
            "{SECRETS_ACCOUNT}:assumed-role/CrossAccountSecretsRole/"
        )),
        "boto3 must act as the assumed role, got {arn}"
    );

    assert_eq!(
        http_with_auth(addr, "/v1/credentials/shared", None).map(|r| r.0),
        Some(401)
    );
    // Wrong tokens are canaries too: the daemon must not echo what a client presented.
    let (wrong_token, wrong_boto3_token) = (canary("badtoken"), canary("badtoken"));
    assert_eq!(
        http_with_auth(addr, "/v1/credentials/shared", Some(&wrong_token)).map(|r| r.0),
        Some(401)
    );
    assert_eq!(
        http_with_auth(
            addr,
            "/v1/credentials/shared",
            Some(&token[..token.len() - 1])
        )
        .map(|r| r.0),
        Some(401)
    );
    assert_eq!(
        http_with_auth(addr, "/v1/credentials/other", Some(&token)).map(|r| r.0),
        Some(404)
    );
    let wrong = boto3_caller_arn(
        &v.moto.endpoint(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &wrong_boto3_token),
        ],
    );
    assert!(
        wrong.is_err(),
        "boto3 with a wrong token must not get credentials"
    );

    let log = stop(v.child);
    assert_no_leak(
        &log,
        &[
            &v.external_id,
            &v.value,
            &secret,
            &session_token,
            &token,
            &wrong_token,
            &wrong_boto3_token,
        ],
    );
}

fn http_with_auth(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
    http_with_headers("GET", addr, path, &headers, None)
}

fn role_config(yaml_role: &str) -> secret_ferry::config::RoleConfig {
    let yaml = format!(
        "region: us-east-1\nroles:\n  shared:\n{yaml_role}secrets:\n  - name: db\n    secretId: x\n    role: shared\n    targets:\n      - file:\n          dir: /tmp/unused\n"
    );
    let config = secret_ferry::config::parse(&yaml).unwrap();
    config.roles["shared"].clone()
}

fn sts_client(endpoint: &str, moto: &Moto) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::config::Builder::from(&moto.sdk_config())
        .endpoint_url(endpoint)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_kind_names_the_role_and_the_fix() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.addr());
    let role_arn = format!("arn:aws:iam::{SECRETS_ACCOUNT}:role/Shared");
    let role = role_config(&format!("    roleArn: {role_arn}\n"));
    let assumer = StsAssumer::new(role.clone(), sts_client(&proxy.endpoint(), &moto));
    let cases: [(&str, &str, u16, &str, &str); 7] = [
        (
            "AccessDenied",
            "User is not authorized to perform: sts:AssumeRole",
            403,
            "trust_policy_denied",
            "trust policy",
        ),
        (
            "InvalidClientTokenId",
            "The security token included in the request is invalid",
            403,
            "invalid_client_token",
            "IRSA or Pod Identity",
        ),
        (
            "ExpiredToken",
            "The security token included in the request is expired",
            400,
            "expired_token",
            "session of the configured duration",
        ),
        (
            "RegionDisabledException",
            "STS is not activated in this region",
            403,
            "region_disabled",
            "activate it",
        ),
        (
            "MalformedPolicyDocument",
            "The policy is not valid",
            400,
            "malformed_policy",
            "policy, policyArns and sessionTags",
        ),
        (
            "Throttling",
            "Rate exceeded",
            400,
            "throttled",
            "retry with back-off",
        ),
        ("SomethingNew", "Unexpected", 400, "other", ""),
    ];
    for (code, message, status, kind, fix) in cases {
        proxy.clear_faults();
        proxy.inject(sts_error(code, message, status));
        let err = assumer.assume().await.expect_err(code);
        let text = err.to_string();
        assert_eq!(err.kind(), kind, "{code}: {text}");
        assert!(
            text.contains(&role_arn),
            "{code}: the message must name the role ARN: {text}"
        );
        assert!(
            text.contains(fix),
            "{code}: the message must carry the fix {fix:?}: {text}"
        );
    }
    proxy.clear_faults();

    // Network: nothing listens on the STS endpoint.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let err = StsAssumer::new(role.clone(), sts_client(&closed, &moto))
        .assume()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "network", "{err}");
    assert!(
        err.to_string().contains(&role_arn) && err.to_string().contains("retry"),
        "{err}"
    );

    // moto's own auth-mode refusal: an XML body the SDK cannot parse, classified anyway.
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let user = create_user(&admin, "workload", &allow("sts:AssumeRole")).await;
    create_role(&admin, "Shared", &user.arn, &canary("extid")).await;
    moto.enable_auth();
    let unknown = Moto::sdk_config_with(
        &moto,
        aws_credential_types::Credentials::new("AKIAUNKNOWN", "x", None, None, "t"),
    );
    let client = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&unknown)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build(),
    );
    let err = StsAssumer::new(role.clone(), client)
        .assume()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_client_token", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_keys_from_files_are_only_used_to_assume_the_role() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.addr());
    let admin = moto.admin_in(SECRETS_ACCOUNT).await;
    let user = create_user(&admin, "legacy", &allow("sts:AssumeRole")).await;
    let external_id = canary("extid");
    let value = canary("value");
    let role_arn = create_role(&admin, "Shared", &user.arn, &external_id).await;
    create_secret(&admin, "app/db", &format!(r#"{{"password":"{value}"}}"#)).await;
    moto.enable_auth();

    let tmp = tempfile::tempdir().unwrap();
    let (id_file, secret_file, ext) = (
        tmp.path().join("id"),
        tmp.path().join("secret"),
        tmp.path().join("ext"),
    );
    std::fs::write(&id_file, format!("{}\n", user.access_key_id)).unwrap();
    std::fs::write(&secret_file, format!("{}\n", user.secret_access_key)).unwrap();
    std::fs::write(&ext, &external_id).unwrap();
    let dir = tmp.path().join("out");
    let config = write_config(
        tmp.path(),
        &ConfigYaml::new()
            .region(REGION)
            .top(
                "baseCredentials",
                format!(
                    "{{accessKeyIdFile: {}, secretAccessKeyFile: {}}}",
                    id_file.display(),
                    secret_file.display()
                ),
            )
            .role("shared", &role_arn, &ext)
            .secret("db", "app/db")
            .uses_role("shared")
            .file_target(&dir)
            .build(),
    );
    // The environment's keys are unknown to moto in auth mode: only the files can work.
    let out = daemon(&config, &proxy.endpoint(), free_port())
        .arg("--once")
        .env("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
        .output()
        .map(captured)
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert_eq!(read(&dir, "password").as_deref(), Some(value.as_str()));
    let assume = proxy.requests_for("AssumeRole");
    assert_eq!(assume.len(), 1);
    assert_eq!(
        assume[0].access_key_id.as_deref(),
        Some(user.access_key_id.as_str())
    );
    let reads = proxy.requests_for("GetSecretValue");
    assert_eq!(reads.len(), 1);
    assert_ne!(
        reads[0].access_key_id.as_deref(),
        Some(user.access_key_id.as_str()),
        "the secret must be read with the role, not the static keys"
    );
    assert_no_leak(&log, &[&user.secret_access_key, &external_id, &value]);

    // A missing key file is named in the error, not its content.
    std::fs::remove_file(&secret_file).unwrap();
    let out = daemon(&config, &proxy.endpoint(), free_port())
        .arg("--once")
        .output()
        .map(captured)
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("secretAccessKeyFile") && log.contains(&secret_file.display().to_string()),
        "{log}"
    );
}

/// The mode bits of `path`.
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The log line that reports `path` written, if there is one.
fn written_line<'a>(log: &'a str, path: &std::path::Path) -> Option<&'a str> {
    let path = path.display().to_string();
    log.lines()
        .find(|l| l.contains("credentials file written; valid until ") && l.contains(&path))
}

/// The expiry in the header of a credentials file (`…; expires <RFC 3339>. …`).
fn header_expiry(text: &str) -> String {
    let first = text.lines().next().unwrap();
    let rest = first.split_once("; expires ").unwrap().1;
    rest.split_once(". ").unwrap().0.to_owned()
}

/// `run --once` with the cross-account role `shared` (read by secret `db`) and `yaml_tail`
/// appended (more roles, `credentialOutputs`); returns the output, the secret's directory
/// and the canaries the log must not contain.
struct OnceRun {
    out: std::process::Output,
    log: String,
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    value: String,
    external_id: String,
}

async fn once_with(
    role_arn: &str,
    external_id: &str,
    value: &str,
    endpoint: &str,
    yaml_tail: impl FnOnce(&std::path::Path, &std::path::Path) -> String,
    wrap: impl FnOnce(Command) -> Command,
) -> OnceRun {
    let tmp = tempfile::tempdir().unwrap();
    let ext = tmp.path().join("external-id");
    std::fs::write(&ext, external_id).unwrap();
    let dir = tmp.path().join("out");
    let yaml = format!(
        "region: us-east-1\nroles:\n  shared:\n    roleArn: {role_arn}\n    externalIdFile: {ext}\n{tail}secrets:\n  - name: db\n    secretId: app/db\n    role: shared\n    targets:\n      - file:\n          dir: {dir}\n",
        ext = ext.display(),
        tail = yaml_tail(tmp.path(), &ext),
        dir = dir.display(),
    );
    let config = write_config(tmp.path(), &yaml);
    let mut cmd = daemon(&config, endpoint, free_port());
    cmd.arg("--once");
    let out = wrap(cmd).output().map(captured).unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    OnceRun {
        out,
        log,
        tmp,
        dir,
        value: value.to_owned(),
        external_id: external_id.to_owned(),
    }
}

/// `cmd` as it is.
fn as_is(cmd: Command) -> Command {
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_each_credentials_file_with_its_expiry_and_exits_0() {
    let value = canary("once-vended");
    let CrossAccount {
        moto,
        role_arn,
        external_id,
        ..
    } = cross_account("app/db", &format!(r#"{{"k":"{value}"}}"#)).await;
    let proxy = Proxy::start(moto.addr());
    // `shared` is read by the secret; `job` (same role, its own session) only by a file,
    // so `--once` must assume it for the file alone.
    let run = once_with(
        &role_arn,
        &external_id,
        &value,
        &proxy.endpoint(),
        |tmp, ext| {
            format!(
                "  job:\n    roleArn: {role_arn}\n    externalIdFile: {ext}\n    sessionName: job-only\ncredentialOutputs:\n  - role: shared\n    file: {{path: {a}}}\n  - role: job\n    file: {{path: {b}, profile: cross-account, mode: \"0640\"}}\n",
                ext = ext.display(),
                a = tmp.join("aws/shared").display(),
                b = tmp.join("aws/job").display(),
            )
        },
        as_is,
    )
    .await;
    let log = &run.log;
    assert!(run.out.status.success(), "{log}");
    assert_eq!(read(&run.dir, "k").as_deref(), Some(value.as_str()));
    assert_eq!(
        proxy.count("AssumeRole"),
        2,
        "the secret's credential is reused for its file; the file-only role is assumed once"
    );

    let mut canaries = vec![run.external_id.clone(), run.value.clone()];
    for (name, profile, mode, role) in [
        ("shared", "default", 0o400, "shared"),
        ("job", "cross-account", 0o640, "job"),
    ] {
        let path = run.tmp.path().join("aws").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(mode_of(&path), mode, "{name}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].starts_with(&format!(
                "# Written by secret-ferry for role {role}; expires "
            )) && lines[0]
                .ends_with("Written once by `run --once`: nothing rewrites it; do not edit."),
            "{text}"
        );
        assert_eq!(lines[1], format!("[{profile}]"));
        let key = ini_value(&text, "aws_access_key_id").unwrap();
        let secret = ini_value(&text, "aws_secret_access_key").unwrap();
        let token = ini_value(&text, "aws_session_token").unwrap();
        assert!(key.starts_with("ASIA"), "{text}");
        register_canary(&secret);
        register_canary(&token);
        canaries.extend([secret, token]);

        // The log says where, for which role and until when; the expiry is the file's.
        let expiry = header_expiry(&text);
        let expires_at = humantime::parse_rfc3339(&expiry).unwrap();
        assert!(expires_at > std::time::SystemTime::now(), "{expiry}");
        let line = written_line(log, &path).unwrap_or_else(|| panic!("no line for {name}: {log}"));
        assert!(
            line.contains(&format!("credentials file written; valid until {expiry}")),
            "{line}"
        );
        assert!(line.contains(&format!(" role={role} ")), "{line}");
    }
    assert!(
        log.contains("all 2 credentials file(s) written; each is valid until the expiry logged with it: nothing rewrites them after this process exits"),
        "{log}"
    );

    // An init container's file works for the app after the daemon is gone.
    let job_path = run.tmp.path().join("aws/job").display().to_string();
    let arn = boto3_caller_arn(
        &moto.endpoint(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &job_path),
            ("AWS_PROFILE", "cross-account"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
        ],
    )
    .unwrap();
    assert!(
        arn.contains(&format!(
            "{SECRETS_ACCOUNT}:assumed-role/CrossAccountSecretsRole/job-only"
        )),
        "boto3 must act as the assumed role, got {arn}"
    );
    let canaries: Vec<&str> = canaries.iter().map(String::as_str).collect();
    assert_no_leak(log, &canaries);
    assert_no_leak(&String::from_utf8_lossy(&run.out.stdout), &canaries);
}

/// `cmd` with `dir` not writable: mode 0555, or (as root, who ignores modes) a read-only
/// bind mount in a mount namespace of its own.
fn with_unwritable(dir: &std::path::Path) -> impl FnOnce(Command) -> Command + '_ {
    move |cmd| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        if !crate::common::running_as_root() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            return cmd;
        }
        crate::common::in_mount_namespace(
            &cmd,
            dir,
            r#"mount --bind "$0" "$0" && mount -o remount,bind,ro "$0""#,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_with_an_unwritable_credentials_directory_exits_1_naming_the_path() {
    let value = canary("once-unwritable");
    let CrossAccount {
        moto,
        role_arn,
        external_id,
        ..
    } = cross_account("app/db", &format!(r#"{{"k":"{value}"}}"#)).await;
    let locked = tempfile::tempdir().unwrap();
    let locked_dir = locked.path().join("locked");
    let bad = locked_dir.join("credentials");
    let bad_text = bad.display().to_string();
    let run = once_with(
        &role_arn,
        &external_id,
        &value,
        &moto.endpoint(),
        |tmp, _| {
            format!(
                "credentialOutputs:\n  - role: shared\n    file: {{path: {good}}}\n  - role: shared\n    file: {{path: {bad_text}}}\n",
                good = tmp.join("aws/credentials").display(),
            )
        },
        with_unwritable(&locked_dir),
    )
    .await;
    let log = &run.log;
    assert_eq!(run.out.status.code(), Some(1), "{log}");
    // The secret and the other file are written all the same.
    assert_eq!(read(&run.dir, "k").as_deref(), Some(value.as_str()));
    let good = run.tmp.path().join("aws/credentials");
    let text = std::fs::read_to_string(&good).unwrap();
    register_canary(&ini_value(&text, "aws_secret_access_key").unwrap());
    register_canary(&ini_value(&text, "aws_session_token").unwrap());
    assert!(written_line(log, &good).is_some(), "{log}");
    assert!(!bad.exists());
    assert_eq!(
        std::fs::read_dir(&locked_dir).unwrap().count(),
        0,
        "no temp file left"
    );

    assert!(log.contains("all 1 secret(s) synced"), "{log}");
    let cause = log
        .lines()
        .find(|l| {
            l.contains("ERROR")
                && l.contains(&format!(
                    "credentials file {bad_text} (role 'shared') not written: cannot "
                ))
        })
        .unwrap_or_else(|| panic!("no summary line naming {bad_text}: {log}"));
    assert!(cause.contains("reason=\"io\""), "{cause}");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("1 of 2 credentials file(s) not written")),
        "{log}"
    );
    assert_no_leak(
        log,
        &[
            &run.external_id,
            &run.value,
            &ini_value(&text, "aws_secret_access_key").unwrap(),
            &ini_value(&text, "aws_session_token").unwrap(),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_with_a_failed_assume_role_for_a_file_exits_1_and_leaks_nothing() {
    let value = canary("once-denied");
    let CrossAccount {
        moto,
        role_arn,
        external_id,
        ..
    } = cross_account("app/db", &format!(r#"{{"k":"{value}"}}"#)).await;
    // Only the file-only role's STS calls go through the proxy, which refuses them.
    let proxy = Proxy::start(moto.addr());
    proxy.inject(sts_error(
        "AccessDenied",
        "User is not authorized to perform: sts:AssumeRole",
        403,
    ));
    let run = once_with(
        &role_arn,
        &external_id,
        &value,
        &moto.endpoint(),
        |tmp, ext| {
            format!(
                "  job:\n    roleArn: {role_arn}\n    externalIdFile: {ext}\n    sessionName: job-only\n    stsEndpoint: {sts}\ncredentialOutputs:\n  - role: shared\n    file: {{path: {a}}}\n  - role: job\n    file: {{path: {b}}}\n",
                ext = ext.display(),
                sts = proxy.endpoint(),
                a = tmp.join("aws/shared").display(),
                b = tmp.join("aws/job").display(),
            )
        },
        as_is,
    )
    .await;
    let log = &run.log;
    assert_eq!(run.out.status.code(), Some(1), "{log}");
    let denied = proxy.requests_for("AssumeRole");
    assert_eq!(
        denied.len(),
        1,
        "one AssumeRole for the file, refused: {denied:#?}"
    );
    assert_eq!(
        denied[0].form_value("ExternalId"),
        Some(external_id.as_str()),
        "the ExternalId was sent (and must still not be logged)"
    );
    assert_eq!(read(&run.dir, "k").as_deref(), Some(value.as_str()));
    let job = run.tmp.path().join("aws/job");
    assert!(!job.exists());
    let shared = run.tmp.path().join("aws/shared");
    let text = std::fs::read_to_string(&shared).unwrap();
    let (secret, token) = (
        ini_value(&text, "aws_secret_access_key").unwrap(),
        ini_value(&text, "aws_session_token").unwrap(),
    );
    register_canary(&secret);
    register_canary(&token);

    let cause = log
        .lines()
        .find(|l| {
            l.contains("ERROR")
                && l.contains(&format!(
                    "credentials file {} (role 'job') not written: role 'job': AssumeRole of {role_arn}",
                    job.display()
                ))
        })
        .unwrap_or_else(|| panic!("no summary line naming {}: {log}", job.display()));
    assert!(cause.contains("reason=\"trust_policy_denied\""), "{cause}");
    assert!(cause.contains("trust policy"), "the fix is named: {cause}");
    assert!(
        log.contains("1 of 2 credentials file(s) not written"),
        "{log}"
    );
    assert!(log.contains("all 1 secret(s) synced"), "{log}");
    assert_no_leak(log, &[&run.external_id, &run.value, &secret, &token]);
    assert_no_leak(
        &String::from_utf8_lossy(&run.out.stdout),
        &[&run.external_id, &run.value, &secret, &token],
    );
}
