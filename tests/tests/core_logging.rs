//! Logs carry ids and counts, never emails, phones, cookie values or credentials.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration};
use revisit_tests::Scripted;
use revisit_tests::harness::{Harness, KLAVIYO_KEY, META_TOKEN};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_hold_no_personal_data_or_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let start = DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
    let harness = Harness::start(start, &[]).await;
    // A failing Klaviyo makes delivery log its warnings and retries too.
    harness.klaviyo.script([
        Scripted::status(500),
        Scripted::status(400).with_body("{\"errors\":[]}"),
    ]);
    let body = json!({
        "event": "dl_subscribe", "event_id": "log-1", "lead_type": "email",
        "user_properties": {"customer_email": "private.person@example.com", "customer_phone": "+1 555 555 0100"},
        "context": {"page_url": "https://www.shop.example/?fbclid=SecretClick123", "cookies": {"_fbp": "fb.1.1700000000000.987654321"}}
    });

    let answer = harness
        .post(&body.to_string(), &[("content-type", "application/json")])
        .await;
    let cookie = answer.visitor_cookie();
    harness.drain().await;
    harness.advance(Duration::days(1));
    harness
        .post(
            "{broken",
            &[("content-type", "application/json"), ("cookie", &cookie)],
        )
        .await;
    harness.drain().await;

    let logs =
        String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8 logs");
    assert!(
        logs.contains("log-1") || logs.contains("destination"),
        "the run produced logs:\n{logs}"
    );
    let cookie_value = cookie
        .split_once('=')
        .map(|(_, value)| value)
        .expect("cookie value");
    for secret in [
        "private.person@example.com",
        "5555550100",
        "555 555 0100",
        cookie_value,
        "SecretClick123",
        "987654321",
        KLAVIYO_KEY,
        META_TOKEN,
    ] {
        assert!(!logs.contains(secret), "logs contain {secret:?}:\n{logs}");
    }
}
