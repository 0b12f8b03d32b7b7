//! Whole example configs and their defaults.

use super::*;

#[test]
fn example_parses_with_exact_values() {
    let config = parse(EXAMPLE).expect("example is valid");
    let role = RoleConfig {
        name: "shared".into(),
        role_arn: "arn:aws:iam::111111111111:role/CrossAccountSecretsRole".into(),
        external_id: Some(ExternalIdSource::File(
            "/etc/secret-ferry/external-id".into(),
        )),
        session_name: "secret-ferry".into(),
        duration: Duration::from_secs(3600),
        refresh_before: Duration::from_secs(300),
        session_tags: BTreeMap::new(),
        transitive_tag_keys: Vec::new(),
        source_identity: None,
        policy: None,
        policy_arns: Vec::new(),
        region: None,
        sts_endpoint: None,
        via: None,
    };
    let secret = SecretConfig {
        name: "db".into(),
        secret_id: "my-shared-secret".into(),
        role: Some("shared".into()),
        version: VersionSelector::Stage("AWSCURRENT".into()),
        refresh_interval: Duration::from_secs(60),
        targets: vec![Target::File(FileTarget {
            dir: "/var/run/secrets/ferry/db".into(),
            mode: 0o400,
        })],
        on_change: Vec::new(),
        debounce: Duration::from_secs(2),
        find: None,
        prune: false,
        fetch_strategy: FetchStrategy::Auto,
        failover_region: None,
        mapping: Mapping::default(),
        parameter: None,
    };
    let expected = Config {
        pushes: Vec::new(),
        instance: DEFAULT_INSTANCE.into(),
        region: Some("us-east-1".into()),
        roles: BTreeMap::from([("shared".to_owned(), role)]),
        secrets: vec![secret],
        base_credentials: None,
        credential_outputs: Vec::new(),
        credentials_endpoint: None,
        max_staleness: None,
        api_rate_limit: 50,
        parameter_store_rate_limit: 40,
        max_poll_stall: crate::config::DEFAULT_MAX_POLL_STALL,
        metrics: Default::default(),
        fetch_strategy: FetchStrategy::Auto,
        failover_region: None,
        tenants: Vec::new(),
        change_events: Vec::new(),
        warnings: Vec::new(),
    };
    assert_eq!(config, expected);
}

#[test]
fn max_staleness_is_an_optional_duration_of_at_least_a_second() {
    let yaml = "maxStaleness: 5m\nsecrets:\n  - name: a\n    secretId: a\n    targets:\n      - file:\n          dir: /run/a\n";
    assert_eq!(
        parse(yaml).expect("valid").max_staleness,
        Some(Duration::from_secs(300))
    );
    let found = problems(&yaml.replace("5m", "0s"));
    expect_problem(&found, "maxStaleness", 1, "at least 1s");
}

#[test]
fn the_metrics_section_picks_which_secrets_are_named() {
    use crate::metrics::SeriesPolicy;
    let base = "secrets:\n  - {name: a, secretId: a, targets: [{file: {dir: /a}}]}\n";
    assert_eq!(
        parse(base).expect("valid").metrics,
        SeriesPolicy::Auto { limit: 500 }
    );
    for (section, policy) in [
        ("metrics: {perSecretSeries: all}", SeriesPolicy::All),
        (
            "metrics: {perSecretSeries: unhealthy}",
            SeriesPolicy::Unhealthy,
        ),
        (
            "metrics: {perSecretSeriesLimit: 20}",
            SeriesPolicy::Auto { limit: 20 },
        ),
    ] {
        let config = parse(&format!("{base}{section}\n")).expect(section);
        assert_eq!(config.metrics, policy, "{section}");
    }
    let warned = parse(&format!(
        "{base}metrics: {{perSecretSeries: all, perSecretSeriesLimit: 3}}\n"
    ))
    .expect("valid");
    assert!(warned.warnings[0]
        .message
        .contains("only applies with perSecretSeries: auto"));
    let e = parse(&format!(
        "{base}metrics: {{perSecretSeries: some}}\nmaxPollStall: 0s\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("metrics.perSecretSeries") && e.contains("one of auto, all, unhealthy"),
        "{e}"
    );
    assert!(e.contains("maxPollStall"), "{e}");
    let stall = parse(&format!("{base}maxPollStall: 2m\n")).expect("valid");
    assert_eq!(stall.max_poll_stall, std::time::Duration::from_secs(120));
}

#[test]
fn api_rate_limit_is_a_whole_number_within_the_quota() {
    let yaml = "apiRateLimit: 20\nsecrets:\n  - name: a\n    secretId: a\n    targets:\n      - file:\n          dir: /run/a\n";
    assert_eq!(parse(yaml).expect("valid").api_rate_limit, 20);
    let default = yaml.replace("apiRateLimit: 20\n", "");
    assert_eq!(parse(&default).expect("valid").api_rate_limit, 50);
    for (bad, message) in [
        ("0", "between 1 and 10000"),
        ("20000", "between 1 and 10000"),
        ("\"fast\"", "a whole number"),
        ("2.5", "a whole number"),
    ] {
        let found = problems(&yaml.replace("20", bad));
        expect_problem(&found, "apiRateLimit", 1, message);
    }
}

#[test]
fn defaults_are_applied() {
    let yaml = r#"roles:
  r:
    roleArn: arn:aws-us-gov:iam::123456789012:role/path/to/Name
    externalIdEnv: FERRY_EXTERNAL_ID
secrets:
  - name: a
    secretId: a
    role: r
    targets:
      - file:
          dir: /run/a
"#;
    let config = parse(yaml).expect("valid");
    assert_eq!(config.region, None);
    let role = &config.roles["r"];
    assert_eq!(
        role.external_id,
        Some(ExternalIdSource::Env("FERRY_EXTERNAL_ID".into()))
    );
    assert_eq!(role.session_name, "secret-ferry");
    assert_eq!(role.duration, Duration::from_secs(3600));
    assert_eq!(role.refresh_before, Duration::from_secs(300));
    let secret = &config.secrets[0];
    assert_eq!(secret.version, VersionSelector::Stage("AWSCURRENT".into()));
    assert_eq!(secret.refresh_interval, Duration::from_secs(60));
    assert_eq!(
        secret.targets,
        vec![Target::File(FileTarget {
            dir: "/run/a".into(),
            mode: 0o400,
        })]
    );
}

#[test]
fn explicit_values_override_defaults() {
    let yaml = r#"roles:
  r:
    roleArn: arn:aws:iam::123456789012:role/R
    sessionName: ferry@host
    duration: 90m
    refreshBefore: 10m
secrets:
  - name: a
    secretId: 12345
    role: r
    versionId: 0x1F
    refreshInterval: 1s
    targets:
      - file:
          dir: /run/a
          mode: '0640'
"#;
    let config = parse(yaml).expect("valid");
    let role = &config.roles["r"];
    assert_eq!(role.session_name, "ferry@host");
    assert_eq!(role.duration, Duration::from_secs(90 * 60));
    assert_eq!(role.refresh_before, Duration::from_secs(600));
    let secret = &config.secrets[0];
    // Numeric-looking ids keep their spelling.
    assert_eq!(secret.secret_id, "12345");
    assert_eq!(secret.version, VersionSelector::Id("0x1F".into()));
    assert_eq!(secret.refresh_interval, Duration::from_secs(1));
    assert_eq!(
        secret.targets,
        vec![Target::File(FileTarget {
            dir: "/run/a".into(),
            mode: 0o640,
        })]
    );
}

#[test]
fn full_example_parses_with_exact_values() {
    let config = parse_with_env(FULL_EXAMPLE, &pod_env).expect("full example is valid");
    let shared = RoleConfig {
            external_id: Some(ExternalIdSource::File(
                "/etc/secret-ferry/external-id".into(),
            )),
            session_name: "ferry-payments-web-7d4f9-abcde".into(),
            session_tags: BTreeMap::from([
                ("team".to_owned(), "payments".to_owned()),
                ("env".to_owned(), "prod".to_owned()),
            ]),
            transitive_tag_keys: vec!["team".into()],
            source_identity: Some("ci-bot".into()),
            policy: Some(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#
                    .into(),
            ),
            policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            region: Some("eu-west-1".into()),
            sts_endpoint: Some("https://sts.eu-west-1.amazonaws.com".into()),
            via: Some("hub".into()),
            ..plain_role(
                "shared",
                "arn:aws:iam::111111111111:role/CrossAccountSecretsRole",
            )
        };
    let hub = plain_role("hub", "arn:aws:iam::222222222222:role/Hub");
    let expected = Config {
        pushes: Vec::new(),
        instance: DEFAULT_INSTANCE.into(),
        region: Some("us-east-1".into()),
        roles: BTreeMap::from([("hub".to_owned(), hub), ("shared".to_owned(), shared)]),
        secrets: vec![SecretConfig {
            name: "db".into(),
            secret_id: "my-shared-secret".into(),
            role: Some("shared".into()),
            version: VersionSelector::Stage("AWSCURRENT".into()),
            refresh_interval: Duration::from_secs(60),
            targets: vec![Target::File(FileTarget {
                dir: "/var/run/secrets/ferry/db".into(),
                mode: 0o400,
            })],
            on_change: Vec::new(),
            debounce: Duration::from_secs(2),
            find: None,
            prune: false,
            fetch_strategy: FetchStrategy::Auto,
            failover_region: None,
            mapping: Mapping::default(),
            parameter: None,
        }],
        base_credentials: Some(BaseCredentials {
            access_key_id_file: "/etc/aws/access-key-id".into(),
            secret_access_key_file: "/etc/aws/secret-access-key".into(),
        }),
        credential_outputs: vec![
            CredentialOutput {
                role: "shared".into(),
                path: "/var/run/secrets/ferry/aws/credentials".into(),
                profile: "default".into(),
                mode: 0o400,
            },
            // Defaults for profile and mode.
            CredentialOutput {
                role: "hub".into(),
                path: "/var/run/secrets/ferry/aws/hub".into(),
                profile: "default".into(),
                mode: 0o400,
            },
        ],
        credentials_endpoint: Some(CredentialsEndpoint {
            listen: SocketAddr::from(([127, 0, 0, 1], 9911)),
            token_file: "/var/run/secrets/ferry/endpoint-token".into(),
            roles: vec!["shared".into()],
            allow_non_loopback: false,
        }),
        max_staleness: None,
        api_rate_limit: 50,
        parameter_store_rate_limit: 40,
        max_poll_stall: crate::config::DEFAULT_MAX_POLL_STALL,
        metrics: Default::default(),
        fetch_strategy: FetchStrategy::Auto,
        failover_region: None,
        tenants: Vec::new(),
        change_events: Vec::new(),
        warnings: Vec::new(),
    };
    assert_eq!(config, expected);
}

#[test]
fn the_new_top_level_fields_are_allowed_fields() {
    let found = problems(&config_with("credentialOutput: []\n"));
    expect_problem(
            &found,
            "credentialOutput",
            6,
            "allowed fields: region, roles, fetchStrategy, failoverRegion, secrets, tenants, pushes, instance, baseCredentials, credentialOutputs, credentialsEndpoint",
        );
    let found = problems(&role_with("    sessionTag: {a: b}\n"));
    expect_problem(&found, "roles.r.sessionTag", 4, "sessionTags, transitiveTagKeys, sourceIdentity, policy, policyArns, region, stsEndpoint, via");
}
