//! The SQS producers against moto (and, for rejected entries, a loopback stand-in speaking
//! SQS's JSON protocol): FIFO attributes, batching, the size check and partial failures.

use std::sync::Arc;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;

use revisit_shared::adapters::clock::SystemClock;
use revisit_shared::adapters::memory::MemoryStore;
use revisit_shared::adapters::sqs::{
    BatchSendError, DEFAULT_MAX_MESSAGE_BYTES, SqsEventQueue, SqsQuarantine, max_message_bytes,
};
use revisit_shared::collect::VisitorCookie;
use revisit_shared::collect::{CollectRequest, Collector, CollectorSettings, CorsPolicy};
use revisit_shared::event::IntakeError;
use revisit_shared::ports::{EventQueue, Quarantine, QuarantinedItem, QueueError};
use revisit_shared::{CollectedEvent, VisitorId};
use revisit_tests::aws::{RequestCounter, moto, sdk_config};
use revisit_tests::{Scripted, StandIn, fixture};

/// Collected events as the collector makes them from the add-to-cart fixture, for `visitor`,
/// with event ids `<prefix>-0`, `<prefix>-1`, ...
async fn collected(visitor: &VisitorId, prefix: &str, count: usize) -> Vec<CollectedEvent> {
    let store = Arc::new(MemoryStore::new());
    let settings = CollectorSettings {
        cookie: VisitorCookie::new(
            "rv_uid",
            b"0123456789abcdef0123456789abcdef",
            "www.shop.example",
        ),
        cors: CorsPolicy::new(["https://www.shop.example".to_owned()]),
        trusted_proxy_hops: 0,
    };
    let collector = Collector::new(
        settings,
        store.clone(),
        store.clone(),
        Arc::new(SystemClock::new()),
    );
    let template: Value = serde_json::from_slice(
        &std::fs::read(fixture("collect-add-to-cart.json")).expect("fixture"),
    )
    .expect("fixture JSON");
    let items: Vec<Value> = (0..count)
        .map(|n| {
            let mut item = template.clone();
            item["event_id"] = Value::String(format!("{prefix}-{n}"));
            item
        })
        .collect();
    let response = collector
        .collect(CollectRequest {
            content_type: Some("application/json".into()),
            body: Bytes::from(serde_json::to_vec(&items).expect("body")),
            ..CollectRequest::default()
        })
        .await;
    assert_eq!(response.status, 202, "{}", response.body);
    store
        .take_queued()
        .into_iter()
        .map(|mut event| {
            event.visitor_id = visitor.clone();
            event
        })
        .collect()
}

fn visitor(n: u32) -> VisitorId {
    VisitorId::parse(&format!("{n:032x}")).expect("valid visitor id")
}

fn system_attribute(
    message: &aws_sdk_sqs::types::Message,
    name: MessageSystemAttributeName,
) -> String {
    message
        .attributes()
        .and_then(|attributes| attributes.get(&name))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn event_queue_sets_group_and_deduplication() {
    let Some(moto) = moto("event_queue_sets_group_and_deduplication").await else {
        return;
    };
    let (url, _) = moto.create_event_queue("fifo-attributes", 30, 5).await;
    let counter = RequestCounter::new();
    let queue = SqsEventQueue::new(moto.counted_sqs(&counter), &url, DEFAULT_MAX_MESSAGE_BYTES);
    let mut events = collected(&visitor(1), "a", 7).await;
    events.extend(collected(&visitor(2), "b", 5).await);

    queue.enqueue(&events).await.expect("enqueue");
    let messages = moto.take_all(&url).await;

    // 12 messages: one batch of 10 and one of 2.
    assert_eq!(counter.count("SendMessageBatch"), 2);
    assert_eq!(counter.count("SendMessage"), 0);
    assert_eq!(messages.len(), 12);
    for message in &messages {
        let event: CollectedEvent =
            serde_json::from_str(message.body().expect("body")).expect("a collected event");
        let group = system_attribute(message, MessageSystemAttributeName::MessageGroupId);
        let dedup = system_attribute(message, MessageSystemAttributeName::MessageDeduplicationId);
        assert_eq!(group, event.visitor_id.to_string());
        assert_eq!(dedup, event.event_id);
    }
}

#[tokio::test]
async fn event_queue_drops_duplicate_event_id() {
    let Some(moto) = moto("event_queue_drops_duplicate_event_id").await else {
        return;
    };
    let (url, _) = moto.create_event_queue("fifo-dedup", 30, 5).await;
    let queue = SqsEventQueue::new(moto.sqs(), &url, DEFAULT_MAX_MESSAGE_BYTES);
    let events = collected(&visitor(3), "dup", 1).await;

    queue.enqueue(&events).await.expect("first send");
    queue.enqueue(&events).await.expect("retried send");
    let messages = moto.take_all(&url).await;

    assert_eq!(messages.len(), 1);
}

#[tokio::test]
async fn event_queue_checks_utf8_bytes() {
    let Some(moto) = moto("event_queue_checks_utf8_bytes").await else {
        return;
    };
    let (url, _) = moto.create_event_queue("fifo-size", 30, 5).await;
    let limit = max_message_bytes(&moto.sqs(), &url)
        .await
        .expect("queue limit");
    let queue = SqsEventQueue::new(moto.sqs(), &url, limit);
    let mut events = collected(&visitor(4), "big", 2).await;
    // 150,000 characters of two bytes each: under the limit in characters, 300,000 bytes in
    // UTF-8, which is what SQS counts.
    events[1].search_term = Some("é".repeat(150_000));
    let body_chars = serde_json::to_string(&events[1])
        .expect("JSON")
        .chars()
        .count();

    let result = queue.enqueue(&events).await;
    let messages = moto.take_all(&url).await;

    assert_eq!(limit, 262_144);
    assert!(body_chars < limit, "{body_chars}");
    match result {
        Err(QueueError::TooLarge {
            event_id,
            size,
            limit: reported,
        }) => {
            assert_eq!(event_id, "big-1");
            assert!(size > 300_000, "{size}");
            assert_eq!(reported, limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(messages.is_empty(), "part of the request was sent");
}

#[tokio::test]
async fn queue_limit_is_read_from_queue() {
    let Some(moto) = moto("queue_limit_is_read_from_queue").await else {
        return;
    };
    let url = moto
        .create_queue("small", &[(QueueAttributeName::MaximumMessageSize, "1024")])
        .await;

    let limit = max_message_bytes(&moto.sqs(), &url)
        .await
        .expect("queue limit");

    assert_eq!(limit, 1024);
}

#[tokio::test]
async fn event_queue_reports_rejected_entries() {
    // A loopback stand-in responds to SendMessageBatch as SQS does when it accepts one entry
    // of two; moto never rejects single entries of a valid request.
    let stand_in = StandIn::start().await;
    let answer =
        std::fs::read_to_string(fixture("sqs-send-message-batch-partial.json")).expect("fixture");
    stand_in.answer_by_default(
        Scripted::status(200)
            .with_header("content-type", "application/x-amz-json-1.0")
            .with_body(&answer),
    );
    let sdk = sdk_config(&stand_in.url()).await;
    let queue = SqsEventQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        format!("{}/123456789012/events.fifo", stand_in.url()),
        DEFAULT_MAX_MESSAGE_BYTES,
    );
    let events = collected(&visitor(5), "partial", 12).await;

    let result = queue.enqueue(&events).await;

    let Err(QueueError::Unavailable { source }) = result else {
        panic!("expected a retryable failure, got {result:?}");
    };
    let failure = source
        .downcast_ref::<BatchSendError>()
        .expect("a BatchSendError source");
    assert_eq!(failure.sent, 10);
    assert_eq!(failure.failed.len(), 1);
    assert_eq!(failure.failed[0].id, "partial-1");
    assert_eq!(failure.failed[0].code, "InternalError");
    assert!(!failure.failed[0].sender_fault);
    // The second batch (events 10 and 11) would overtake the rejected event 1 of the same
    // visitor, so it is not sent.
    assert_eq!(stand_in.requests().len(), 1);
    let target = stand_in.requests()[0]
        .header("x-amz-target")
        .map(str::to_owned);
    assert_eq!(target.as_deref(), Some("AmazonSQS.SendMessageBatch"));
}

fn quarantined(index: usize, raw: Value) -> QuarantinedItem {
    QuarantinedItem {
        received_at: Utc::now(),
        index,
        errors: vec![IntakeError::new("event", "is required")],
        raw,
    }
}

#[tokio::test]
async fn quarantine_keeps_rejected_items() {
    let Some(moto) = moto("quarantine_keeps_rejected_items").await else {
        return;
    };
    let url = moto.create_queue("quarantine", &[]).await;
    let quarantine = SqsQuarantine::new(moto.sqs(), &url, DEFAULT_MAX_MESSAGE_BYTES);
    let items = vec![
        quarantined(0, serde_json::json!({"uid": "u-123"})),
        quarantined(1, Value::String("not JSON".into())),
    ];

    quarantine.quarantine(&items).await.expect("quarantine");
    let messages = moto.take_all(&url).await;

    let mut stored: Vec<QuarantinedItem> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().expect("body")).expect("a quarantined item"))
        .collect();
    stored.sort_by_key(|item| item.index);
    assert_eq!(stored, items);
}

#[tokio::test]
async fn quarantine_cuts_oversize_raw() {
    let Some(moto) = moto("quarantine_cuts_oversize_raw").await else {
        return;
    };
    let url = moto
        .create_queue(
            "quarantine-small",
            &[(QueueAttributeName::MaximumMessageSize, "1024")],
        )
        .await;
    let quarantine = SqsQuarantine::new(moto.sqs(), &url, 1024);
    let raw = "ü".repeat(5_000);

    quarantine
        .quarantine(&[quarantined(0, Value::String(raw.clone()))])
        .await
        .expect("quarantine");
    let messages = moto.take_all(&url).await;

    assert_eq!(messages.len(), 1);
    let body = messages[0].body().expect("body");
    assert!(body.len() <= 1024, "{}", body.len());
    let item: QuarantinedItem = serde_json::from_str(body).expect("a quarantined item");
    let kept = item.raw.as_str().expect("raw text");
    assert!(!kept.is_empty());
    assert!(raw.starts_with(kept));
    let note = item.errors.last().expect("a note about the cut");
    assert_eq!(note.path, "raw");
    assert!(note.problem.contains("10000 bytes"), "{}", note.problem);
}
