use super::*;

#[test]
fn change_events_queues_are_read_with_their_role_and_region() {
    let yaml = format!(
        "{EXAMPLE}changeEvents:\n  - queueUrl: https://sqs.us-east-1.amazonaws.com/111111111111/secret-ferry-changes\n    role: shared\n  - queueUrl: http://127.0.0.1:5000/123456789012/local\n    region: eu-west-1\n"
    );
    let config = parse(&yaml).unwrap();
    assert_eq!(
        config.change_events,
        vec![
            ChangeEventsQueue {
                queue_url: "https://sqs.us-east-1.amazonaws.com/111111111111/secret-ferry-changes"
                    .into(),
                role: Some("shared".into()),
                region: None,
            },
            ChangeEventsQueue {
                queue_url: "http://127.0.0.1:5000/123456789012/local".into(),
                role: None,
                region: Some("eu-west-1".into()),
            },
        ]
    );
    assert_eq!(config.change_events[0].url_region(), Some("us-east-1"));
}

#[test]
fn bad_change_events_queues_are_named_with_the_fix() {
    let yaml = format!(
        "{EXAMPLE}changeEvents:\n  - queueUrl: arn:aws:sqs:us-east-1:111111111111:q\n  - queueUrl: https://sqs.us-east-1.amazonaws.com/111111111111/q\n    role: nobody\n  - queueUrl: https://sqs.us-east-1.amazonaws.com/111111111111/r\n    region: eu-west-1\n  - queueUrl: https://sqs.us-east-1.amazonaws.com/111111111111/s\n  - queueUrl: https://sqs.us-east-1.amazonaws.com/111111111111/s\n  - role: shared\n"
    );
    let problems = problems(&yaml);
    expect_problem(
        &problems,
        "changeEvents[0].queueUrl",
        20,
        "must be an SQS queue URL",
    );
    expect_problem(
        &problems,
        "changeEvents[1].role",
        22,
        "unknown role \"nobody\"",
    );
    expect_problem(
        &problems,
        "changeEvents[2].region",
        24,
        "the queue URL is in \"us-east-1\"",
    );
    expect_problem(
        &problems,
        "changeEvents[4].queueUrl",
        26,
        "already read by changeEvents[3].queueUrl",
    );
    expect_problem(&problems, "changeEvents[5].queueUrl", 27, "is required");
}
