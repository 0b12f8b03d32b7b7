use super::route::{Hit, Route, Router, Unmatched};
use super::*;
use crate::config::VersionSelector;
use serde_json::json;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/db-AbCdEf";

fn native(name: &str, label: &str, version: &str) -> String {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": NATIVE_DETAIL_TYPE,
        "source": SOURCE,
        "account": "111111111111",
        "time": "2026-12-07T10:00:00Z",
        "region": "us-east-1",
        "resources": [ARN],
        "detail": {"name": name, "labelUpdated": label, "versionId": version}
    })
    .to_string()
}

fn cloudtrail(event_name: &str, request: serde_json::Value, response: serde_json::Value) -> String {
    json!({
        "detail-type": CLOUDTRAIL_DETAIL_TYPE,
        "source": SOURCE,
        "region": "us-east-1",
        "time": "2026-12-07T10:00:01Z",
        "detail": {
            "eventSource": EVENT_SOURCE,
            "eventName": event_name,
            "requestParameters": request,
            "responseElements": response,
        }
    })
    .to_string()
}

fn change(body: &str) -> ChangeEvent {
    match parse(body) {
        Ok(Parsed::Change(event)) => event,
        other => panic!("not a change: {other:?}"),
    }
}

#[test]
fn the_native_event_names_the_secret_stage_and_version() {
    let event = change(&native("app/db", "AWSCURRENT", "v2"));
    assert_eq!(event.names, ["app/db"]);
    assert_eq!(event.region.as_deref(), Some("us-east-1"));
    assert_eq!(event.stages, Some(vec!["AWSCURRENT".to_owned()]));
    assert_eq!(event.version_id.as_deref(), Some("v2"));
    assert_eq!(
        event.time,
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_637_600))
    );
}

#[test]
fn cloudtrail_writes_name_the_secret_by_name_arn_or_partial_arn() {
    let put = change(&cloudtrail(
        "PutSecretValue",
        json!({"secretId": "app/db", "secretString": "HIDDEN_DUE_TO_SECURITY_REASONS"}),
        json!({"arn": ARN, "versionId": "v3", "versionStages": ["AWSCURRENT"]}),
    ));
    assert_eq!(put.names, ["app/db"]);
    assert_eq!(put.stages, Some(vec!["AWSCURRENT".to_owned()]));
    assert_eq!(put.version_id.as_deref(), Some("v3"));
    // Before 2024 the response spelled it `aRN`; the id may be an ARN without its suffix.
    let old = change(&cloudtrail(
        "RotateSecret",
        json!({"secretId": "arn:aws:secretsmanager:us-east-1:111111111111:secret:app/db"}),
        json!({"aRN": ARN}),
    ));
    assert_eq!(old.names, ["app/db"]);
    assert_eq!(old.stages, None, "a rotation says nothing of the stages");
    let pending = change(&cloudtrail(
        "PutSecretValue",
        json!({"secretId": ARN, "versionStages": ["AWSPENDING"]}),
        json!({"versionId": "v4"}),
    ));
    assert_eq!(pending.names, ["app/db", "app/db-AbCdEf"]);
    assert_eq!(pending.stages, Some(vec!["AWSPENDING".to_owned()]));
    let moved = change(&cloudtrail(
        "UpdateSecretVersionStage",
        json!({"secretId": "app/db", "versionStage": "AWSCURRENT", "moveToVersionId": "v4"}),
        json!({"arn": ARN}),
    ));
    assert_eq!(moved.version_id.as_deref(), Some("v4"));
}

#[test]
fn what_is_not_a_change_of_ours_is_ignored_and_what_is_not_an_event_is_malformed() {
    let ignored = |body: &str| match parse(body) {
        Ok(Parsed::Ignored(reason)) => reason,
        other => panic!("{other:?}"),
    };
    let ec2 = json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}});
    assert_eq!(ignored(&ec2.to_string()), Ignored::NotAChange);
    assert_eq!(
        ignored(&cloudtrail(
            "GetSecretValue",
            json!({"secretId": "app/db"}),
            json!(null)
        )),
        Ignored::NotAChange
    );
    let mut failed: serde_json::Value = serde_json::from_str(&cloudtrail(
        "PutSecretValue",
        json!({"secretId": "a"}),
        json!(null),
    ))
    .unwrap();
    failed["detail"]["errorCode"] = json!("AccessDenied");
    assert_eq!(ignored(&failed.to_string()), Ignored::NotAChange);
    assert_eq!(
        ignored(&cloudtrail("DeleteSecret", json!({}), json!({}))),
        Ignored::NoSecretId
    );
    for tricky in [
        "../../etc/passwd",
        "a/./b",
        "app/db\u{0}x",
        "line\nbreak",
        &"x".repeat(513),
    ] {
        assert_eq!(
            ignored(&cloudtrail(
                "DeleteSecret",
                json!({"secretId": tricky}),
                json!({})
            )),
            Ignored::InvalidSecretId,
            "{tricky:?}"
        );
    }
    assert_eq!(parse("not json"), Err(Malformed::NotJson));
    assert_eq!(parse(&"[".repeat(300)), Err(Malformed::NotJson), "too deep");
    assert_eq!(parse(r#"{"hello": "world"}"#), Err(Malformed::NotAnEvent));
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(256 * 1024));
    assert_eq!(parse(&big), Err(Malformed::NotAnEvent));
}

fn router() -> Router {
    let current = VersionSelector::Stage(std::borrow::Cow::Borrowed("AWSCURRENT"));
    let mut router = Router::default();
    router.add_secret((0, 0), "app/db", "us-east-1", None, &current);
    router.add_secret((0, 1), ARN, "us-east-1", None, &current);
    router.add_secret(
        (1, 0),
        "arn:aws:secretsmanager:eu-west-1:111111111111:secret:app/db",
        "us-east-1",
        None,
        &current,
    );
    router.add_secret(
        (2, 0),
        "app/pinned",
        "us-east-1",
        None,
        &VersionSelector::Id("v1".to_owned()),
    );
    router.add_find(3, Some("team/"), "us-east-1");
    router.add_push("pushed/out", "us-east-1");
    router.built()
}

#[test]
fn events_reach_the_secrets_named_by_name_or_arn_in_their_region_only() {
    let router = router();
    let Route::Matched(hits) = router.route(&change(&native("app/db", "AWSCURRENT", "v2"))) else {
        panic!("no match");
    };
    assert_eq!(
        hits,
        [
            Hit::Member {
                group: 0,
                member: 0,
                version: Some("v2".into())
            },
            Hit::Member {
                group: 0,
                member: 1,
                version: Some("v2".into())
            },
        ],
        "the eu-west-1 secret of the same name is not this one"
    );
    let previous = router.route(&change(&native("app/db", "AWSPREVIOUS", "v1")));
    assert_eq!(previous, Route::Ignored(Unmatched::OtherStage));
    let deleted = change(&cloudtrail(
        "DeleteSecret",
        json!({"secretId": "app/pinned"}),
        json!({}),
    ));
    assert!(
        matches!(router.route(&deleted), Route::Matched(_)),
        "a deletion concerns a pinned version too"
    );
    let found = change(&cloudtrail(
        "RestoreSecret",
        json!({"secretId": "team/x"}),
        json!({}),
    ));
    assert_eq!(
        router.route(&found),
        Route::Matched(vec![Hit::Find {
            group: 3,
            name: "team/x".into(),
            list: true
        }])
    );
    let own = change(&cloudtrail(
        "PutSecretValue",
        json!({"secretId": "pushed/out"}),
        json!({}),
    ));
    assert_eq!(router.route(&own), Route::Ignored(Unmatched::OwnPush));
    let other = change(&cloudtrail(
        "PutSecretValue",
        json!({"secretId": "nobody"}),
        json!({}),
    ));
    assert_eq!(
        router.route(&other),
        Route::Ignored(Unmatched::UnknownSecret)
    );
}

fn parameter_change(name: &str, operation: &str) -> String {
    json!({
        "version": "0",
        "detail-type": PARAMETER_DETAIL_TYPE,
        "source": PARAMETER_SOURCE,
        "account": "111111111111",
        "time": "2026-12-07T10:00:02Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:ssm:us-east-1:111111111111:parameter{name}")],
        "detail": {"name": name, "type": "SecureString", "operation": operation}
    })
    .to_string()
}

#[test]
fn a_parameter_store_change_names_the_parameter() {
    let event = change(&parameter_change("/app/prod/db", "Update"));
    assert!(event.parameter);
    assert_eq!(event.names, ["/app/prod/db"]);
    assert_eq!(event.region.as_deref(), Some("us-east-1"));
    assert_eq!((event.stages, event.version_id), (None, None));
    assert_eq!(
        change(&parameter_change("plain", "Create")).names,
        ["plain"]
    );
    for bad in ["/a/../b", "/a//b", "/a\u{0}b", ""] {
        assert_eq!(
            parse(&parameter_change(bad, "Update")),
            Ok(Parsed::Ignored(Ignored::InvalidSecretId)),
            "{bad:?}"
        );
    }
    let other = parameter_change("/a", "Update")
        .replace(PARAMETER_DETAIL_TYPE, "Parameter Store Policy Action");
    assert_eq!(parse(&other), Ok(Parsed::Ignored(Ignored::NotAChange)));
    let unnamed =
        json!({"source": PARAMETER_SOURCE, "detail-type": PARAMETER_DETAIL_TYPE, "detail": {}})
            .to_string();
    assert_eq!(parse(&unnamed), Ok(Parsed::Ignored(Ignored::NoSecretId)));
}

#[test]
fn parameter_changes_reach_the_entries_reading_the_name_or_a_path_above_it() {
    let mut router = Router::default();
    let current = VersionSelector::current();
    // A secret named like a parameter is not a parameter entry.
    router.add_secret((0, 0), "/app/prod/db", "us-east-1", None, &current);
    router.add_parameter((1, 0), "/app/prod/db", "us-east-1");
    router.add_parameter((1, 1), "/app/prod/other", "us-east-1");
    router.add_parameter_path((2, 0), "/app/prod/", false, "us-east-1");
    router.add_parameter_path((3, 0), "/app", true, "us-east-1");
    router.add_parameter((4, 0), "/app/prod/db", "eu-west-1");
    let router = router.built();
    let hits = |name: &str| match router.route(&change(&parameter_change(name, "Update"))) {
        Route::Matched(hits) => hits
            .into_iter()
            .map(|h| match h {
                Hit::Member { group, member, .. } => (group, member),
                Hit::Find { group, .. } => (group, u32::MAX),
            })
            .collect(),
        Route::Ignored(_) => Vec::new(),
    };
    assert_eq!(hits("/app/prod/db"), [(1, 0), (2, 0), (3, 0)]);
    assert_eq!(
        hits("/app/prod/deeper/x"),
        [(3, 0)],
        "one level only without recursive"
    );
    assert_eq!(
        hits("/apple/x"),
        Vec::<(u32, u32)>::new(),
        "a path is a whole level"
    );
    assert_eq!(
        router.route(&change(&parameter_change("/elsewhere", "Delete"))),
        Route::Ignored(Unmatched::UnknownSecret)
    );
    // A Secrets Manager event for the same name reaches the secret only.
    match router.route(&change(&native("/app/prod/db", "AWSCURRENT", "v2"))) {
        Route::Matched(hits) => assert_eq!(
            hits,
            [Hit::Member {
                group: 0,
                member: 0,
                version: Some("v2".into())
            }]
        ),
        other => panic!("{other:?}"),
    }
}
