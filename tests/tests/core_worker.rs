//! The worker's batch semantics: a failed event fails the later events of the same visitor
//! only, and a redelivery sends nothing twice.

use chrono::DateTime;
use revisit_tests::Scripted;
use revisit_tests::harness::Harness;
use serde_json::json;

/// An event that Klaviyo takes as one Create Event request.
fn add_to_cart(event_id: &str, email: &str) -> serde_json::Value {
    json!({
        "event": "dl_add_to_cart",
        "event_id": event_id,
        "user_properties": {"customer_email": email},
        "context": {"page_url": "https://www.shop.example/cart"}
    })
}

#[tokio::test]
async fn failure_holds_back_same_visitor_only() {
    let harness = Harness::start(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        &[],
    )
    .await;
    let json = ("content-type", "application/json");
    let a1 = harness
        .post(&add_to_cart("a-1", "a@example.com").to_string(), &[json])
        .await;
    let a_cookie = a1.visitor_cookie();
    harness
        .post(&add_to_cart("b-1", "b@example.com").to_string(), &[json])
        .await;
    harness
        .post(
            &add_to_cart("a-2", "a@example.com").to_string(),
            &[json, ("cookie", &a_cookie)],
        )
        .await;
    let batch = harness.queued();
    // Klaviyo fails every attempt for the first request (a-1), then accepts.
    harness.klaviyo.script(vec![Scripted::status(500); 4]);

    let first = harness.worker.process_batch(&batch).await;
    let failed: Vec<&str> = first
        .failed
        .iter()
        .map(|&index| batch[index].event_id.as_str())
        .collect();
    let retry: Vec<_> = first
        .failed
        .iter()
        .map(|&index| batch[index].clone())
        .collect();
    let second = harness.worker.process_batch(&retry).await;

    assert_eq!(failed, ["a-1", "a-2"]);
    assert!(second.failed.is_empty());
    let klaviyo = harness.klaviyo.requests();
    let sent_ids: Vec<String> = klaviyo
        .iter()
        .map(|request| {
            request.json()["data"]["attributes"]["unique_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(sent_ids, ["a-1", "a-1", "a-1", "a-1", "b-1", "a-2", "a-1"]);
    assert_eq!(
        harness.meta.requests().len(),
        1,
        "Meta accepted the batch once; the redelivery skips it"
    );
}

#[tokio::test]
async fn daily_counters_wait_for_flush_interval() {
    use revisit_shared::ports::{DailyCounters, Outcome};

    let start = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    let harness = Harness::start(start, &[("REVISIT_COUNTER_FLUSH_SECS", "300")]).await;
    let json = ("content-type", "application/json");
    let day = start.date_naive();
    let meta_sent = |counts: &[revisit_shared::ports::DailyCount]| {
        counts
            .iter()
            .filter(|count| count.outcome == Outcome::Sent)
            .map(|count| count.count)
            .sum::<u64>()
    };

    harness
        .post(&add_to_cart("f-1", "f@example.com").to_string(), &[json])
        .await;
    harness.drain().await;
    let before_interval = harness.store.range("meta", day, day).await.expect("range");
    harness.advance(chrono::Duration::seconds(301));
    harness
        .post(&add_to_cart("f-2", "f@example.com").to_string(), &[json])
        .await;
    harness.drain().await;
    let after_interval = harness.store.range("meta", day, day).await.expect("range");
    harness
        .post(&add_to_cart("f-3", "f@example.com").to_string(), &[json])
        .await;
    harness.drain().await;
    harness.worker.flush_counters().await;
    let after_flush = harness.store.range("meta", day, day).await.expect("range");

    assert_eq!(meta_sent(&before_interval), 0);
    assert_eq!(meta_sent(&after_interval), 2);
    assert_eq!(meta_sent(&after_flush), 3);
}
