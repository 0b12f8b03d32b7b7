//! Role chains through `via`.

use super::*;

#[test]
fn via_must_name_another_defined_role() {
    let yaml = "roles:\n  a:\n    roleArn: arn:aws:iam::123456789012:role/A\n    via: nope\n  b:\n    roleArn: arn:aws:iam::123456789012:role/B\n    via: b\nsecrets: [{name: s, secretId: s, targets: [{file: {dir: /run/s}}]}]\n";
    let found = problems(yaml);
    assert_eq!(found.len(), 2, "{found:#?}");
    expect_problem(
        &found,
        "roles.a.via",
        4,
        "unknown role \"nope\"; defined roles: a, b",
    );
    expect_problem(
        &found,
        "roles.b.via",
        7,
        "role \"b\" cannot be assumed via itself",
    );
}

/// Roles named by `links` (`(role, via)`, `via` empty for none), in that order in the file.
fn chained_roles(links: &[(&str, &str)]) -> String {
    let mut yaml = String::from("roles:\n");
    for (role, via) in links {
        yaml.push_str(&format!(
            "  {role}:\n    roleArn: arn:aws:iam::123456789012:role/{role}\n"
        ));
        if !via.is_empty() {
            yaml.push_str(&format!("    via: {via}\n"));
        }
    }
    yaml.push_str("secrets: [{name: s, secretId: s, targets: [{file: {dir: /run/s}}]}]\n");
    yaml
}

#[test]
fn via_loops_are_reported_once_each() {
    let found = problems(&chained_roles(&[("a", "b"), ("b", "a")]));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].to_string(),
        "roles.a.via (line 4): role chain loops: a -> b -> a"
    );

    // Named from the role that comes first in the file, whatever the names.
    let found = problems(&chained_roles(&[
        ("z", ""),
        ("c", "a"),
        ("b", "c"),
        ("a", "b"),
        ("d", "a"),
    ]));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].to_string(),
        "roles.c.via (line 6): role chain loops: c -> a -> b -> c"
    );

    // Two separate loops, and a role hanging off one of them.
    let found = problems(&chained_roles(&[
        ("x", "y"),
        ("p", "q"),
        ("q", "p"),
        ("y", "x"),
        ("tail", "q"),
    ]));
    let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
    assert_eq!(
        shown,
        [
            "roles.x.via (line 4): role chain loops: x -> y -> x",
            "roles.p.via (line 7): role chain loops: p -> q -> p",
        ]
    );
}

#[test]
fn chains_in_order() {
    let yaml = chained_roles(&[
        ("app", "mid"),
        ("mid", "hub"),
        ("hub", ""),
        ("alone", ""),
        ("b", "hub"),
    ]);
    let config = parse(&yaml).expect("valid chain");
    let names =
        |roles: Vec<&RoleConfig>| -> Vec<String> { roles.iter().map(|r| r.name.clone()).collect() };
    assert_eq!(names(config.chain("app")), ["hub", "mid", "app"]);
    assert_eq!(names(config.chain("mid")), ["hub", "mid"]);
    assert_eq!(names(config.chain("hub")), ["hub"]);
    assert!(config.chain("missing").is_empty());
    assert_eq!(
        names(config.roles_in_chain_order()),
        ["alone", "hub", "mid", "app", "b"]
    );
    assert_eq!(config.roles["app"].via.as_deref(), Some("mid"));
    assert_eq!(config.roles["hub"].via, None);

    // A loop built by hand does not hang.
    let mut looped = config.clone();
    if let Some(hub) = looped.roles.get_mut("hub") {
        hub.via = Some("app".into());
    }
    assert_eq!(names(looped.chain("app")), ["hub", "mid", "app"]);
    assert_eq!(looped.roles_in_chain_order().len(), 5);
}

#[test]
fn long_sessions_on_chained_roles_are_a_warning() {
    let yaml = chained_roles(&[("hub", ""), ("app", "hub")])
        .replace("role/app\n", "role/app\n    duration: 2h\n")
        .replace("role/hub\n", "role/hub\n    duration: 12h\n");
    let config = parse(&yaml).expect("a warning is not an error");
    assert_eq!(config.roles["app"].duration, Duration::from_secs(7200));
    assert_eq!(
            config.warnings,
            [Problem {
                path: "roles.app.duration".into(),
                line: Some(7),
                message: "is 2h, but this role is assumed via role \"hub\" and AWS caps role-chaining sessions at 1h; STS refuses longer ones".into(),
            }]
        );
    let yaml = chained_roles(&[("hub", ""), ("app", "hub")])
        .replace("role/app\n", "role/app\n    duration: 1h\n");
    assert_eq!(parse(&yaml).map(|c| c.warnings).ok(), Some(Vec::new()));
}
