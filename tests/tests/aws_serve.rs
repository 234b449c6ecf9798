//! `revisit serve --store dynamodb --queue sqs` against moto: events posted to the local
//! collector travel through the FIFO queue into DynamoDB, with the SDK reaching moto only
//! through the standard AWS_ENDPOINT_URL variable.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use clap::Parser;
use serde_json::Value;

use revisit::serve::{self, ServeArgs};
use revisit_shared::VisitorId;
use revisit_shared::adapters::dynamodb::profile_key;
use revisit_tests::aws::{Moto, moto};
use revisit_tests::fixture;

/// `revisit serve`'s options, parsed from a command line as the binary parses them.
#[derive(Debug, Parser)]
struct Command {
    #[command(flatten)]
    serve: ServeArgs,
}

fn serve_args(extra: &[&str]) -> ServeArgs {
    let data_dir = tempfile::tempdir().expect("temporary directory").keep();
    let data_dir = data_dir.display().to_string();
    let mut argv = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir];
    argv.extend_from_slice(extra);
    Command::parse_from(argv).serve
}

async fn post_event(addr: std::net::SocketAddr) -> VisitorId {
    let body = std::fs::read(fixture("collect-add-to-cart.json")).expect("fixture");
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/collect"))
        .header("content-type", "application/json")
        .header("origin", format!("http://{addr}"))
        .body(body)
        .send()
        .await
        .expect("collect request");
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.expect("JSON answer");
    VisitorId::parse(answer["visitor_id"].as_str().expect("visitor id")).expect("valid id")
}

/// Waits up to 10 s for the visitor's profile item.
async fn wait_for_profile(moto: &Moto, table: &str, visitor: &VisitorId) -> bool {
    for _ in 0..100 {
        let output = moto
            .dynamodb()
            .get_item()
            .table_name(table)
            .set_key(Some(profile_key(visitor)))
            .send()
            .await
            .expect("get item");
        if output.item.is_some_and(|item| item.contains_key("profile")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn serve_runs_on_dynamodb_and_sqs() {
    let Some(moto) = moto("serve_runs_on_dynamodb_and_sqs").await else {
        return;
    };
    let tables = moto.create_tables("serve").await;
    let (queue_url, _) = moto.create_event_queue("serve", 30, 5).await;
    let quarantine_url = moto.create_queue("serve-quarantine", &[]).await;
    let args = serve_args(&[
        "--store",
        "dynamodb",
        "--queue",
        "sqs",
        "--profiles-table",
        &tables.profiles,
        "--counters-table",
        &tables.counters,
        "--queue-url",
        &queue_url,
        "--quarantine-queue-url",
        &quarantine_url,
    ]);
    let server = serve::start(args).await.expect("serve starts");

    let visitor = post_event(server.addr).await;
    let stored = wait_for_profile(&moto, &tables.profiles, &visitor).await;
    // The worker counts outcomes after saving the profile.
    let counted = wait_for_counters(&moto, &tables.counters).await;
    server.stop().await.expect("serve stops");

    assert!(stored, "the event never reached DynamoDB");
    assert!(counted, "the outcomes were never counted");
}

/// Waits up to 10 s for an item in the counters table.
async fn wait_for_counters(moto: &Moto, table: &str) -> bool {
    for _ in 0..100 {
        let output = moto
            .dynamodb()
            .scan()
            .table_name(table)
            .send()
            .await
            .expect("scan");
        if !output.items().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn serve_runs_on_dynamodb_with_local_queue() {
    let Some(moto) = moto("serve_runs_on_dynamodb_with_local_queue").await else {
        return;
    };
    let tables = moto.create_tables("serve-local").await;
    let args = serve_args(&[
        "--store",
        "dynamodb",
        "--profiles-table",
        &tables.profiles,
        "--counters-table",
        &tables.counters,
    ]);
    let server = serve::start(args).await.expect("serve starts");

    let visitor = post_event(server.addr).await;
    let stored = wait_for_profile(&moto, &tables.profiles, &visitor).await;
    server.stop().await.expect("serve stops");

    assert!(stored, "the event never reached DynamoDB");
    let item = moto
        .dynamodb()
        .get_item()
        .table_name(&tables.profiles)
        .set_key(Some(profile_key(&visitor)))
        .send()
        .await
        .expect("get item")
        .item
        .expect("profile item");
    assert_eq!(item["version"], AttributeValue::N("1".into()));
}

#[tokio::test]
async fn serve_requires_table_names() {
    let args = serve_args(&["--store", "dynamodb"]);

    let error = serve::start(args).await.expect_err("serve must not start");

    assert!(error.to_string().contains("--profiles-table"), "{error:#}");
}
