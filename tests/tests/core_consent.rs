//! Consent: what a page that denied marketing sends is neither forwarded to marketing
//! destinations nor remembered for later events.

use chrono::{DateTime, Duration};
use revisit_tests::harness::Harness;
use serde_json::json;

#[tokio::test]
async fn denied_event_is_not_remembered() {
    let harness = Harness::start(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        &[],
    )
    .await;
    let json = ("content-type", "application/json");
    let denied = json!({
        "event": "dl_subscribe", "event_id": "d-1", "lead_type": "email",
        "user_properties": {"customer_email": "denied@example.com"},
        "context": {"page_url": "https://www.shop.example/?fbclid=DENIEDCLICK", "consent": {"analytics": false, "marketing": false}}
    });
    let first = harness.post(&denied.to_string(), &[json]).await;
    let cookie = first.visitor_cookie();
    harness.drain().await;
    harness.advance(Duration::minutes(5));
    let later = json!({"event": "dl_add_to_cart", "event_id": "d-2", "context": {"page_url": "https://www.shop.example/cart"}});

    harness
        .post(&later.to_string(), &[json, ("cookie", &cookie)])
        .await;
    let outcomes = harness.drain().await;

    let enriched = &outcomes[0].enriched[0];
    assert_eq!(enriched.email(), None);
    assert!(enriched.click_id("fbc").is_none());
    let sent: Vec<String> = harness
        .klaviyo
        .requests()
        .iter()
        .chain(harness.meta.requests().iter())
        .map(|request| String::from_utf8_lossy(&request.body).into_owned())
        .collect();
    assert!(sent.iter().all(|body| !body.contains("denied@example.com")));
    assert!(sent.iter().all(|body| !body.contains("DENIEDCLICK")));
    assert!(sent.iter().all(|body| !body.contains("\"d-1\"")));
}

#[tokio::test]
async fn granted_event_after_denied_is_remembered() {
    let harness = Harness::start(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        &[],
    )
    .await;
    let json = ("content-type", "application/json");
    let granted = json!({
        "event": "dl_subscribe", "event_id": "g-1", "lead_type": "email",
        "user_properties": {"customer_email": "granted@example.com"},
        "context": {"page_url": "https://www.shop.example/", "consent": {"marketing": true}}
    });
    let first = harness.post(&granted.to_string(), &[json]).await;
    let cookie = first.visitor_cookie();
    let later = json!({"event": "dl_add_to_cart", "event_id": "g-2", "context": {"page_url": "https://www.shop.example/cart"}});

    harness
        .post(&later.to_string(), &[json, ("cookie", &cookie)])
        .await;
    let outcomes = harness.drain().await;

    assert_eq!(outcomes[0].enriched[1].email(), Some("granted@example.com"));
}

#[tokio::test]
async fn repeated_event_id_in_batch_is_sent_once() {
    let harness = Harness::start(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        &[],
    )
    .await;
    let purchase = json!({
        "event": "dl_purchase", "event_id": "order-77",
        "user_properties": {"customer_email": "twice@example.com"},
        "context": {"page_url": "https://www.shop.example/thanks"}
    });
    let body = json!([purchase, purchase, purchase]);

    let answer = harness
        .post(&body.to_string(), &[("content-type", "application/json")])
        .await;
    let outcomes = harness.drain().await;

    assert_eq!(answer.body["accepted"], 3);
    let klaviyo_sends = harness
        .klaviyo
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("order-77"))
        .count();
    assert_eq!(klaviyo_sends, 1);
    let meta_events: usize = harness
        .meta
        .requests()
        .iter()
        .map(|r| r.json()["data"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(meta_events, 1);
    let duplicates = outcomes[0]
        .delivery
        .counts
        .get(&("meta".to_owned(), revisit_shared::ports::Outcome::Duplicate));
    assert_eq!(duplicates, Some(&2));
}
