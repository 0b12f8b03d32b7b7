use super::*;

fn entry(source: &str, extra: &str) -> String {
    format!("secrets:\n  - name: p\n{source}    targets:\n      - file:\n          dir: /run/p\n{extra}")
}

#[test]
fn parameter_entries_read_names_selectors_and_paths() {
    let config = parse(&entry("    parameter: /app/prod/db:3\n", "")).unwrap();
    let secret = &config.secrets[0];
    assert_eq!(
        secret.parameter.as_deref().cloned(),
        Some(ParameterSource::One {
            name: "/app/prod/db".into(),
            selector: Some(Selector::Version(3)),
        })
    );
    assert!(secret.secret_id.is_empty());
    assert_eq!(config.parameter_store_rate_limit, 40);
    let labelled = parse(&entry("    parameter: plain:prod\n", "")).unwrap();
    assert_eq!(
        labelled.secrets[0]
            .parameter
            .as_deref()
            .map(ParameterSource::spelled),
        Some("plain:prod".to_owned())
    );
    let path = parse(&entry(
        "    parameterPath: {path: /app/prod/, recursive: true}\n",
        "parameterStoreRateLimit: 100\n",
    ))
    .unwrap();
    assert_eq!(
        path.secrets[0].parameter.as_deref().cloned(),
        Some(ParameterSource::Path {
            path: "/app/prod/".into(),
            recursive: true
        })
    );
    assert_eq!(path.parameter_store_rate_limit, 100);
}

#[test]
fn bad_parameter_entries_are_named_with_the_rule() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "    parameter: app/prod/db\n",
            "secrets[0].parameter",
            "fully qualified",
        ),
        (
            "    parameter: /app/db:3rd\n",
            "secrets[0].parameter",
            "neither a version number",
        ),
        (
            "    parameter: /aws/reserved\n",
            "secrets[0].parameter",
            "reserves",
        ),
        ("    parameter: /a,b\n", "secrets[0].parameter", "character"),
        (
            "    parameter: /app/\n",
            "secrets[0].parameter",
            "parameterPath",
        ),
        (
            "    parameterPath: {path: app/}\n",
            "secrets[0].parameterPath.path",
            "starts with '/'",
        ),
        (
            "    parameterPath: {path: /a, deep: true}\n",
            "secrets[0].parameterPath.deep",
            "unknown field `deep`",
        ),
        (
            "    parameter: /a\n    secretId: s\n",
            "secrets[0].parameter",
            "cannot both be set",
        ),
        (
            "    parameter: /a\n    parameterPath: {path: /b/}\n",
            "secrets[0].parameterPath",
            "cannot both be set",
        ),
        (
            "    parameter: /a\n    versionStage: AWSPREVIOUS\n",
            "secrets[0].versionStage",
            "selector on the name",
        ),
        (
            "    parameter: /a\n    failoverRegion: us-west-2\n",
            "secrets[0].failoverRegion",
            "no replicas",
        ),
    ];
    for (source, path, needle) in cases {
        let problems = problems(&entry(source, ""));
        let found: Vec<&Problem> = problems.iter().filter(|p| p.path == *path).collect();
        assert_eq!(
            found.len(),
            1,
            "{source}: one problem at {path} in {problems:#?}"
        );
        assert!(
            found[0].message.contains(needle),
            "{source}: {:?} should contain {needle:?}",
            found[0].message
        );
    }
    let limit = problems(&entry(
        "    parameter: /a\n",
        "parameterStoreRateLimit: 5000\n",
    ));
    assert!(
        limit.iter().any(|p| p.path == "parameterStoreRateLimit"),
        "{limit:#?}"
    );
}

#[test]
fn a_top_level_failover_region_is_not_inherited_by_parameters() {
    let yaml = entry("    parameter: /a\n", "failoverRegion: us-west-2\n");
    let config = parse(&yaml).unwrap();
    assert_eq!(config.secrets[0].failover_region, None);
}
