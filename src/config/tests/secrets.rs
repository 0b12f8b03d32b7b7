//! Secrets: fetch strategies, discovery, mappings, versions and `onChange`.

use super::*;

#[test]
fn on_change_actions() {
    let yaml = format!(
            "{}    debounce: 5s\n    onChange:\n      - signal: {{process: nginx, signal: SIGHUP}}\n      - http: {{url: \"http://127.0.0.1:8080/-/reload\", timeout: 2s}}\n      - touch: /run/app/.changed\n",
            secret_with("")
        );
    let secret = &parse(&yaml).expect("valid").secrets[0];
    assert_eq!(secret.debounce, Duration::from_secs(5));
    assert_eq!(
        secret.on_change,
        [
            OnChange::Signal {
                process: "nginx".into(),
                signal: SignalName::Hup
            },
            OnChange::Http {
                url: "http://127.0.0.1:8080/-/reload".into(),
                method: "POST".into(),
                timeout: Duration::from_secs(2)
            },
            OnChange::Touch("/run/app/.changed".into()),
        ]
    );
    let cases: [(&str, &str, &str); 5] = [
        (
            "      - touch: /a\n        http: {url: \"http://x\"}\n",
            "secrets[0].onChange[0]",
            "exactly one of",
        ),
        (
            "      - http: {url: \"https://x/reload\"}\n",
            "secrets[0].onChange[0].http.url",
            "https is not supported",
        ),
        (
            "      - signal: {process: nginx, signal: KILL}\n",
            "secrets[0].onChange[0].signal.signal",
            "one of HUP",
        ),
        (
            "      - signal: {process: a-very-long-process-name, signal: HUP}\n",
            "secrets[0].onChange[0].signal.process",
            "1 to 15 bytes",
        ),
        (
            "      - http: {url: \"http://x\", method: DELETE}\n",
            "secrets[0].onChange[0].http.method",
            "one of POST, PUT, GET",
        ),
    ];
    for (item, path, needle) in cases {
        let found = problems(&format!("{}    onChange:\n{item}", secret_with("")));
        let hit = found.iter().find(|p| p.path == path);
        assert!(
            hit.is_some_and(|p| p.message.contains(needle)),
            "{path}: {found:#?}"
        );
    }
}

#[test]
fn fetch_planner_discovery_and_mapping_settings_parse() {
    let yaml = r#"region: us-east-1
fetchStrategy: list
failoverRegion: us-west-2
secrets:
  - name: team
    find: {namePrefix: team-a/, tags: {env: prod}}
    prune: true
    targets: [{file: {dir: "/out/{{name}}"}}]
  - name: db
    secretId: app/db
    fetchStrategy: batch
    failoverRegion: eu-west-1
    property: db.main
    keys: [{from: password, to: DB_PASSWORD}, {from: user}]
    decode: base64
    templates: {DATABASE_URL: "postgres://{{ user }}@h/app"}
    templateMode: replace
    targets: [{file: {path: /out/db.env, format: env}}]
"#;
    let config = parse(yaml).unwrap();
    assert_eq!(config.fetch_strategy, FetchStrategy::List);
    let team = &config.secrets[0];
    assert_eq!(team.fetch_strategy, FetchStrategy::List);
    assert!(team.prune);
    assert_eq!(team.failover_region.as_deref(), Some("us-west-2"));
    let find = team.find.as_ref().unwrap();
    assert_eq!(find.name_prefix.as_deref(), Some("team-a/"));
    assert_eq!(find.tags.get("env").map(String::as_str), Some("prod"));
    let Target::File(dir) = &team.targets[0] else {
        panic!("{:?}", team.targets)
    };
    assert_eq!(
        dir.dir,
        PathBuf::from("/out/{{ name }}"),
        "placeholder spelled one way"
    );
    let db = &config.secrets[1];
    assert_eq!(db.fetch_strategy, FetchStrategy::Batch);
    assert_eq!(db.failover_region.as_deref(), Some("eu-west-1"));
    assert_eq!(db.mapping.property.as_deref(), Some("db.main"));
    assert_eq!(
        db.mapping.keys,
        Some(vec![
            KeyMap {
                from: "password".into(),
                to: "DB_PASSWORD".into()
            },
            KeyMap {
                from: "user".into(),
                to: "user".into()
            },
        ])
    );
    assert_eq!(db.mapping.decode, Decode::Base64);
    assert_eq!(db.mapping.template_mode, TemplateMode::Replace);
    assert_eq!(db.mapping.templates[0].0, "DATABASE_URL");
}

#[test]
fn fetch_planner_discovery_and_mapping_mistakes_are_named() {
    let t = "    targets: [{file: {dir: /out/x}}]\n";
    let cases: Vec<(String, &str, &str)> = vec![
            (format!("  - name: a\n    secretId: x\n    fetchStrategy: fast\n{t}"), "secrets[0].fetchStrategy", "one of auto, get, batch, list"),
            (format!("  - name: a\n    secretId: x\n    versionStage: AWSPREVIOUS\n    fetchStrategy: batch\n{t}"), "secrets[0].fetchStrategy", "AWSCURRENT"),
            (format!("  - name: a\n    secretId: x\n    versionId: v1\n    fetchStrategy: list\n{t}"), "secrets[0].fetchStrategy", "pinned versionId"),
            (format!("  - name: a\n    secretId: x\n    find: {{namePrefix: a/}}\n{t}"), "secrets[0].find", "cannot both be set"),
            ("  - name: a\n    find: {namePrefix: a/}\n    targets: [{file: {dir: /out/x}}]\n".to_owned(), "secrets[0].targets[0].file.dir", "must contain {{ name }}"),
            ("  - name: a\n    find: {}\n    targets: [{file: {dir: \"/o/{{ name }}\"}}]\n".to_owned(), "secrets[0].find", "needs namePrefix or tags"),
            ("  - name: a\n    find: {namePrefix: a/}\n    fetchStrategy: batch\n    targets: [{file: {dir: \"/o/{{ name }}\"}}]\n".to_owned(), "secrets[0].fetchStrategy", "always polled with ListSecrets"),
            ("  - name: a\n    secretId: x\n    targets: [{file: {dir: \"/o/{{ name }}\"}}]\n".to_owned(), "secrets[0].targets[0].file.dir", "only for `find` entries"),
            ("  - name: a\n    find: {namePrefix: a/}\n    targets: [{file: {dir: \"/o/{{ name }}/{{ other }}\"}}]\n".to_owned(), "secrets[0].targets[0].file.dir", "the only placeholder"),
            (format!("  - name: a\n    secretId: x\n    prune: true\n{t}"), "secrets[0].prune", "only to `find` entries"),
            (format!("  - name: a\n    secretId: x\n    failoverRegion: Mars\n{t}"), "secrets[0].failoverRegion", "an AWS region"),
            (format!("  - name: a\n    secretId: x\n    property: a..b\n{t}"), "secrets[0].property", "dot-separated path"),
            (format!("  - name: a\n    secretId: x\n    keys: [{{from: a, to: K}}, {{from: b, to: K}}]\n{t}"), "secrets[0].keys[1]", "already produced"),
            (format!("  - name: a\n    secretId: x\n    keys: [{{from: a, to: ../K}}]\n{t}"), "secrets[0].keys[0].to", "safe file name"),
            (format!("  - name: a\n    secretId: x\n    decode: hex\n{t}"), "secrets[0].decode", "one of none, base64"),
            (format!("  - name: a\n    secretId: x\n    templates: {{URL: \"{{{{ user \"}}\n{t}"), "secrets[0].templates.URL", "template does not parse"),
            (format!("  - name: a\n    secretId: x\n    templateMode: replace\n{t}"), "secrets[0].templateMode", "only with `templates`"),
        ];
    for (secret, path, needle) in cases {
        let yaml = format!("secrets:\n{secret}");
        let found = problems(&yaml);
        let hit = found.iter().find(|p| p.path == path);
        assert!(
            hit.is_some_and(|p| p.message.contains(needle)),
            "{path} should say {needle:?} for\n{yaml}\ngot {found:#?}"
        );
    }
}

#[test]
fn version_stage_and_id_together() {
    let found = problems(&secret_with(
        "    versionStage: AWSPREVIOUS\n    versionId: abc\n",
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "secrets[0].versionId",
        8,
        "versionStage and versionId cannot both be set",
    );
}

#[test]
fn duplicate_secret_names() {
    let yaml = r#"secrets:
  - {name: db, secretId: a, targets: [{file: {dir: /run/a}}]}
  - {name: web, secretId: b, targets: [{file: {dir: /run/b}}]}
  - {name: db, secretId: c, targets: [{file: {dir: /run/c}}]}
"#;
    let found = problems(yaml);
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(
        &found,
        "secrets[2].name",
        4,
        "duplicate secret name \"db\": secrets[0] already uses it",
    );
}
