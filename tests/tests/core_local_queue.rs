//! The in-process queue of local mode: a stop spools what is left instead of dropping it, the
//! next start sends it, and a full queue pushes back with 503.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use revisit::serve::{self, ServeArgs};
use revisit_shared::adapters::local_queue::LocalQueue;
use revisit_shared::ports::EventQueue;
use revisit_tests::Scripted;
use revisit_tests::harness::Harness;
use serde_json::{Value, json};

fn cart(event_id: &str) -> String {
    json!({
        "event": "dl_add_to_cart",
        "event_id": event_id,
        "user_properties": {"customer_email": "queue@example.com"},
        "context": {"page_url": "https://www.shop.example/cart"}
    })
    .to_string()
}

#[tokio::test]
async fn stop_spools_events_a_failing_destination_held() {
    let harness = Harness::start(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        &[],
    )
    .await;
    harness.klaviyo.answer_by_default(Scripted::status(503));
    for index in 0..25 {
        let answer = harness
            .post(
                &cart(&format!("q-{index}")),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(answer.status, 202);
    }
    let queue = Arc::clone(&harness.queue);
    let worker = Arc::clone(&harness.worker);
    let consumer = tokio::spawn(async move { queue.consume(&worker).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spool = tempfile::NamedTempFile::new().expect("spool file");

    harness.queue.stop();
    tokio::time::timeout(Duration::from_secs(30), consumer)
        .await
        .expect("consumer stops")
        .expect("no panic");
    let spooled = harness.queue.spool(spool.path()).expect("spool written");
    let refused = harness
        .post(&cart("late"), &[("content-type", "application/json")])
        .await;

    let lines: Vec<Value> = std::fs::read_to_string(spool.path())
        .expect("spool readable")
        .lines()
        .map(|line| serde_json::from_str(line).expect("event JSON"))
        .collect();
    assert_eq!(spooled, lines.len());
    assert!(
        spooled >= 16,
        "at most the first batch of 10 was attempted, {spooled} spooled"
    );
    assert_eq!(
        lines[0]["event_id"], "q-0",
        "failed events go back in front, in order"
    );
    assert_eq!(lines.last().expect("lines")["event_id"], "q-24");
    assert_eq!(refused.status, 503);
    let restored = LocalQueue::new(10, None);
    assert_eq!(restored.restore(spool.path()).expect("restore"), spooled);
    assert_eq!(restored.pending_events().len(), spooled);
    assert!(!spool.path().exists(), "a restored spool file is removed");
}

#[tokio::test]
async fn full_queue_answers_503() {
    let harness = Harness::start(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        &[],
    )
    .await;
    let small = LocalQueue::new(10, None).with_capacity(2);
    let events = harness.queued();
    assert!(events.is_empty());
    harness
        .post(&cart("a"), &[("content-type", "application/json")])
        .await;
    harness
        .post(&cart("b"), &[("content-type", "application/json")])
        .await;
    let two = harness.queued();

    small.enqueue(&two).await.expect("two fit");
    let third = small.enqueue(&two[..1]).await;

    assert!(third.is_err_and(|error| error.is_retryable()));
}

#[tokio::test]
async fn serve_sends_spooled_events_at_start() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    // The spooled event is received now, as it would be by the previous run of the server.
    let harness = Harness::start(chrono::Utc::now(), &[]).await;
    harness
        .post(&cart("spooled-1"), &[("content-type", "application/json")])
        .await;
    harness
        .queue
        .spool(&data_dir.path().join("spool.jsonl"))
        .expect("spool written");
    let args = ServeArgs {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: data_dir.path().to_path_buf(),
        outbox: None,
        dev_clock: false,
        aws: Default::default(),
    };

    let server = serve::start(args).await.expect("start");
    tokio::time::timeout(Duration::from_secs(10), server.app.queue.wait_idle())
        .await
        .expect("processed");
    let outbox = server.outbox_dir.clone();
    server.stop().await.expect("stop");

    let meta = std::fs::read_to_string(outbox.join("meta.jsonl")).expect("meta outbox");
    assert!(meta.contains("spooled-1"));
    assert!(!data_dir.path().join("spool.jsonl").exists());
}
