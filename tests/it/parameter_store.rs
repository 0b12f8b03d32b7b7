//! The Parameter Store reads (`source::parameter_store`, issue 20's source, not wired into
//! the config yet) against moto, counted at the proxy: SecureStrings decrypted, version and
//! label selectors, invalid names reported, paths and listings page by page, AccessDenied
//! (HTTP 403) in moto's auth mode.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::proxy::Proxy;
use common::*;
use secret_ferry::source::parameter_store::{Describe, ParameterStore, DEFAULT_RATE};
use secret_ferry::source::{Budget, CallError};
use std::sync::Arc;

fn store(sdk: &aws_config::SdkConfig) -> ParameterStore {
    ParameterStore::new(
        aws_sdk_ssm::Client::new(sdk),
        REGION.to_owned(),
        None,
        "the base identity".to_owned(),
        Arc::new(Budget::new(DEFAULT_RATE)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_read_ten_a_call_paths_and_listings_page_by_page() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.addr());
    let admin = moto.sdk_config();
    let ssm = aws_sdk_ssm::Client::new(&admin);
    let (v1, v2) = (canary("ssm-v1"), canary("ssm-v2"));
    put_parameter(&ssm, "/app/prod/db", &v1, "SecureString").await;
    assert_eq!(
        put_parameter(&ssm, "/app/prod/db", &v2, "SecureString").await,
        2
    );
    label_parameter(&ssm, "/app/prod/db", 1, "prod").await;
    put_parameter(&ssm, "/app/prod/list", "a,b,c", "StringList").await;
    for i in 0..23 {
        put_parameter(&ssm, &format!("/bulk/p{i:02}"), &canary("bulk"), "String").await;
    }
    let store = store(&admin.to_builder().endpoint_url(proxy.endpoint()).build());

    let (found, invalid) = store
        .get(&[
            "/app/prod/db",
            "/app/prod/db:1",
            "/app/prod/db:prod",
            "/nope",
            "/app/prod/db:9",
        ])
        .await
        .unwrap();
    // The order of the answer is not the order asked (and moto leaves out `Selector`).
    let mut values: Vec<(i64, &str)> = found
        .iter()
        .map(|p| (p.version, p.value.expose().as_str()))
        .collect();
    values.sort();
    assert_eq!(
        values,
        [(1, v1.as_str()), (1, v1.as_str()), (2, v2.as_str())],
        "decrypted, at each selector"
    );
    assert!(found.iter().all(|p| p.kind == "SecureString"));
    assert_eq!(invalid, ["/nope", "/app/prod/db:9"]);
    assert_eq!(proxy.count("GetParameters"), 1);
    let shown = format!("{found:?}");
    assert!(
        !shown.contains(&v1) && !shown.contains(&v2),
        "values never in Debug: {shown}"
    );

    let eleven: Vec<String> = (0..11).map(|i| format!("/bulk/p{i:02}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    match store.get(&eleven).await {
        Err(CallError::Aws(info)) => assert_eq!(info.status, Some(400), "{info}"),
        other => panic!("eleven names: {:?}", other.map(|(f, i)| (f.len(), i))),
    }

    let bulk = store.by_path("/bulk", true).await.unwrap();
    assert_eq!(bulk.len(), 23);
    assert_eq!(proxy.count("GetParametersByPath"), 3, "ten a page");
    let listed = store
        .describe(Describe::Path {
            path: "/bulk",
            recursive: true,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 23);
    assert!(listed.iter().all(|d| d.version == 1));
    let named = store
        .describe(Describe::Names(&["/app/prod/db", "/app/prod/list"]))
        .await
        .unwrap();
    let mut named: Vec<(String, i64)> = named.into_iter().map(|d| (d.name, d.version)).collect();
    named.sort();
    assert_eq!(
        named,
        [
            ("/app/prod/db".to_owned(), 2),
            ("/app/prod/list".to_owned(), 1)
        ]
    );
    // moto pages DescribeParameters ten at a time whatever MaxResults says (AWS: up to 50):
    // three pages for the path, one for the names. Each call asks for 50.
    assert_eq!(proxy.count("DescribeParameters"), 4);
    for request in proxy.requests_for("DescribeParameters") {
        assert!(
            request.body_text().contains("\"MaxResults\":50"),
            "{}",
            request.body_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_without_ssm_get_parameters_is_refused_with_403() {
    let moto = Moto::start();
    let admin = moto.sdk_config();
    put_parameter(
        &aws_sdk_ssm::Client::new(&admin),
        "/app/x",
        &canary("ssm-denied"),
        "SecureString",
    )
    .await;
    let reader = create_user(&admin, "reader", &allow("ssm:DescribeParameters")).await;
    moto.enable_auth();
    let store = store(&moto.sdk_config_with(reader.credentials()));
    match store.get(&["/app/x"]).await {
        Err(CallError::Aws(info)) => {
            assert_eq!(info.status, Some(403), "{info}");
            assert_eq!(info.class, secret_ferry::aws::Class::AccessDenied);
        }
        other => panic!("{:?}", other.map(|(f, _)| f.len())),
    }
    let listed = store.describe(Describe::Names(&["/app/x"])).await.unwrap();
    assert_eq!(
        listed.len(),
        1,
        "the listing is allowed: names and versions, no value"
    );
}
