//! Base credentials, credential outputs and the credentials endpoint.

use super::*;

#[test]
fn base_credentials() {
    let config = parse(&config_with(
        "baseCredentials: {accessKeyIdFile: /k/id, secretAccessKeyFile: /k/secret}\n",
    ))
    .expect("valid");
    assert_eq!(
        config.base_credentials,
        Some(BaseCredentials {
            access_key_id_file: "/k/id".into(),
            secret_access_key_file: "/k/secret".into(),
        })
    );
    let found = problems(&config_with(
        "baseCredentials:\n  accessKeyIdFile: /k/id\n  sessionToken: /k/t\n",
    ));
    assert_eq!(found.len(), 2, "{found:#?}");
    expect_problem(
        &found,
        "baseCredentials.secretAccessKeyFile",
        7,
        "is required",
    );
    expect_problem(
        &found,
        "baseCredentials.sessionToken",
        8,
        "unknown field `sessionToken`; allowed fields: accessKeyIdFile, secretAccessKeyFile",
    );
    let found = problems(&config_with(
        "baseCredentials: {accessKeyIdFile: \"\", secretAccessKeyFile: /k/s}\n",
    ));
    expect_problem(
        &found,
        "baseCredentials.accessKeyIdFile",
        6,
        "must not be empty",
    );
}

#[test]
fn credential_outputs() {
    let yaml = format!(
            "{}credentialOutputs:\n  - {{role: r, file: {{path: /out/a, profile: ferry.r_1-x, mode: \"0640\"}}}}\n",
            role_with(""),
        );
    let config = parse(&yaml).expect("valid");
    assert_eq!(
        config.credential_outputs,
        [CredentialOutput {
            role: "r".into(),
            path: "/out/a".into(),
            profile: "ferry.r_1-x".into(),
            mode: 0o640,
        }]
    );

    let yaml = config_with(concat!(
        "credentialOutputs:\n",
        "  - {role: nope, file: {path: /out/a}}\n",
        "  - {role: r, file: {path: /out/b}}\n",
        "  - {role: r, file: {path: /out/b/}}\n",
        "  - {role: r, file: {path: /run/a/credentials}}\n",
        "  - {role: r, file: {path: /run/a}}\n",
        "  - {role: r, file: {profile: \"a b\", mode: 644, owner: me}}\n",
        "  - {role: r, path: /out/c}\n",
    ));
    let found = problems(&yaml);
    let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
    assert_eq!(
            shown,
            [
                "credentialOutputs[0].role (line 7): unknown role \"nope\"; defined roles: r",
                "credentialOutputs[2].file.path (line 9): \"/out/b/\" is already written by credentialOutputs[1].file.path; each output needs its own file",
                "credentialOutputs[3].file.path (line 10): \"/run/a/credentials\" is inside \"/run/a\", the directory of secrets[0].targets[0].file.dir; a target's directory belongs to its secret, so write the credentials elsewhere",
                "credentialOutputs[4].file.path (line 11): \"/run/a\" is inside \"/run/a\", the directory of secrets[0].targets[0].file.dir; a target's directory belongs to its secret, so write the credentials elsewhere",
                "credentialOutputs[5].file.path (line 12): is required",
                "credentialOutputs[5].file.profile (line 12): must be 1 to 64 letters, digits, '_', '.' or '-', got \"a b\"",
                "credentialOutputs[5].file.mode (line 12): must be a quoted octal string such as \"0400\", got 644; unquoted, YAML reads it as a number, so write \"644\"",
                "credentialOutputs[5].file.owner (line 12): unknown field `owner`; allowed fields: path, profile, mode",
                "credentialOutputs[6].file (line 13): is required",
                "credentialOutputs[6].path (line 13): unknown field `path`; allowed fields: role, file",
            ]
        );

    let yaml = format!(
        "credentialOutputs: [{{role: r, file: {{path: /x}}}}]\n{}",
        secret_with("")
    );
    let found = problems(&yaml);
    expect_problem(
        &found,
        "credentialOutputs[0].role",
        1,
        "no roles are defined under `roles`",
    );
}

#[test]
fn credentials_endpoint() {
    let endpoint = |fields: &str| {
        config_with(&format!(
            "credentialsEndpoint:\n  tokenFile: /t\n  roles: [r]\n{fields}"
        ))
    };
    let listen = |fields: &str| {
        parse(&endpoint(fields)).map(|c| {
            c.credentials_endpoint
                .map(|e| (e.listen, e.allow_non_loopback))
        })
    };
    assert_eq!(
        listen("  listen: \"[::1]:80\"\n").ok(),
        Some(Some(("[::1]:80".parse().expect("addr"), false)))
    );
    assert!(listen("  listen: \"[::ffff:127.0.0.1]:80\"\n").is_ok());
    assert!(listen("  listen: 127.1.2.3:80\n").is_ok());
    assert_eq!(
        listen("  listen: 0.0.0.0:9911\n  allowNonLoopback: true\n").ok(),
        Some(Some(("0.0.0.0:9911".parse().expect("addr"), true)))
    );

    let found = problems(&endpoint("  listen: 0.0.0.0:9911\n"));
    assert_eq!(found.len(), 1, "{found:#?}");
    expect_problem(&found, "credentialsEndpoint.listen", 9, "0.0.0.0:9911 is not a loopback address, so other hosts could fetch credentials from it; set allowNonLoopback: true if that is intended");
    let found = problems(&endpoint(
        "  listen: 10.0.0.1:9911\n  allowNonLoopback: false\n",
    ));
    expect_problem(
        &found,
        "credentialsEndpoint.listen",
        9,
        "not a loopback address",
    );

    for (value, needle) in [
            ("localhost:9911", "must be an IP address and port such as \"127.0.0.1:9911\" (host names are not accepted), got \"localhost:9911\""),
            ("127.0.0.1", "got \"127.0.0.1\""),
            ("9911", "must be a string, got 9911"),
        ] {
            let found = problems(&endpoint(&format!("  listen: {value}\n")));
            assert_eq!(found.len(), 1, "{value}: {found:#?}");
            expect_problem(&found, "credentialsEndpoint.listen", 9, needle);
        }
    let found = problems(&endpoint(
        "  listen: 127.0.0.1:1\n  allowNonLoopback: yes\n",
    ));
    expect_problem(
        &found,
        "credentialsEndpoint.allowNonLoopback",
        10,
        "must be true or false, got \"yes\"",
    );
}

#[test]
fn credentials_endpoint_roles_and_required_fields() {
    let endpoint = |roles: &str| {
        config_with(&format!(
            "credentialsEndpoint:\n  listen: 127.0.0.1:9911\n  tokenFile: /t\n  roles: {roles}\n"
        ))
    };
    let found = problems(&endpoint("[r, other, r]"));
    assert_eq!(found.len(), 2, "{found:#?}");
    let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
    assert_eq!(
            shown,
            [
                "credentialsEndpoint.roles[1] (line 9): unknown role \"other\"; defined roles: r",
                "credentialsEndpoint.roles[2] (line 9): \"r\" is already listed at credentialsEndpoint.roles[0]",
            ]
        );
    let found = problems(&endpoint("[]"));
    expect_problem(
        &found,
        "credentialsEndpoint.roles",
        9,
        "must list at least one role",
    );

    let found = problems(&config_with("credentialsEndpoint: {port: 1}\n"));
    let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "credentialsEndpoint.listen",
            "credentialsEndpoint.tokenFile",
            "credentialsEndpoint.roles",
            "credentialsEndpoint.port",
        ]
    );
    expect_problem(
        &found,
        "credentialsEndpoint.port",
        6,
        "allowed fields: listen, allowNonLoopback, tokenFile, roles",
    );
}
