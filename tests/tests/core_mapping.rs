//! Normalisation and the Klaviyo and Meta requests built from collected events, checked on the
//! requests that reach loopback stand-ins for both APIs.

use chrono::{DateTime, Duration, Utc};
use revisit_tests::RecordedRequest;
use revisit_tests::harness::Harness;
use serde_json::{Value, json};

const JSON: (&str, &str) = ("content-type", "application/json");
const EMAIL_HASH: &str = "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514";
const TAGGED_EMAIL_HASH: &str = "824a8949cf66140e376061c1980be391c1987ca952f652414e97003e239416fa";
const PHONE_DIGITS_HASH: &str = "e2bd2ffe3d8da79ec3f8f3f130c79347c398e24df2805976fdc2fa0cf96b5f37";
const PHONE_PLUS_HASH: &str = "0cbf019479241f66c9c60d39e69e06989f108bc47da5b938a87045a615cad4a4";

fn received_at() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_123).expect("valid time")
}

fn meta_event(requests: &[RecordedRequest], event_id: &str) -> Option<Value> {
    requests
        .iter()
        .flat_map(|request| {
            request.json()["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|event| event["event_id"] == event_id)
}

fn klaviyo_event(requests: &[RecordedRequest], event_id: &str) -> Option<Value> {
    requests
        .iter()
        .map(RecordedRequest::json)
        .find(|body| body["data"]["attributes"]["unique_id"] == event_id)
}

/// Posts events, giving each a page URL when it has none: Meta requires one for website events.
async fn send(harness: &Harness, mut events: Value) {
    let items = match events.as_array_mut() {
        Some(items) => items.iter_mut().collect::<Vec<_>>(),
        None => vec![&mut events],
    };
    for item in items {
        if item.pointer("/context/page_url").is_none() {
            item["context"]["page_url"] = json!("https://www.shop.example/account");
        }
    }
    let answer = harness.post(&events.to_string(), &[JSON]).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["rejected"], json!([]));
    harness.drain().await;
}

#[tokio::test]
async fn fbc_built_from_fbclid_in_page_url() {
    let apex = Harness::start(received_at(), &[]).await;
    let host_only = Harness::start(
        received_at(),
        &[("REVISIT_SITE_HOST", "www.shop.myshopify.com")],
    )
    .await;
    let landing = json!({"event": "dl_user_data", "event_id": "l-1", "context": {"page_url": "https://www.shop.example/?fbclid=IwAR2F4-dbP0l7Mn"}});

    send(&apex, landing.clone()).await;
    send(&host_only, landing).await;

    let apex_event = meta_event(&apex.meta.requests(), "l-1").expect("sent to Meta");
    assert_eq!(
        apex_event["user_data"]["fbc"],
        "fb.1.1700000000123.IwAR2F4-dbP0l7Mn"
    );
    let host_event = meta_event(&host_only.meta.requests(), "l-1").expect("sent to Meta");
    assert_eq!(
        host_event["user_data"]["fbc"],
        "fb.3.1700000000123.IwAR2F4-dbP0l7Mn"
    );
}

#[tokio::test]
async fn malformed_fbc_cookie_is_left_out() {
    let harness = Harness::start(received_at(), &[]).await;
    let with_fbc = |id: &str, fbc: &str| json!({"event": "dl_view_item", "event_id": id, "context": {"page_url": "https://www.shop.example/p/1", "cookies": {"_fbc": fbc}}});

    send(&harness, json!([with_fbc("m-1", "fb.1.1700000000000.")])).await;
    let second = Harness::start(received_at(), &[]).await;
    send(&second, json!([with_fbc("m-2", "fb.1.1700000000000")])).await;
    let third = Harness::start(received_at(), &[]).await;
    send(
        &third,
        json!([with_fbc("m-3", "fb.1.1700000000000.AbC-d_E123")]),
    )
    .await;

    let first = meta_event(&harness.meta.requests(), "m-1").expect("event still sent");
    assert!(first["user_data"].get("fbc").is_none());
    let second = meta_event(&second.meta.requests(), "m-2").expect("event still sent");
    assert!(second["user_data"].get("fbc").is_none());
    let third = meta_event(&third.meta.requests(), "m-3").expect("event sent");
    assert_eq!(third["user_data"]["fbc"], "fb.1.1700000000000.AbC-d_E123");
}

#[tokio::test]
async fn phone_normalised_per_platform() {
    let harness = Harness::start(received_at(), &[]).await;
    let signup = json!({
        "event": "dl_sign_up", "event_id": "p-1",
        "user_properties": {"customer_email": "user@example.com", "customer_phone": "+1 (555) 555-0100"}
    });

    send(&harness, signup).await;

    let meta = meta_event(&harness.meta.requests(), "p-1").expect("sent to Meta");
    assert_eq!(meta["user_data"]["ph"][0], PHONE_DIGITS_HASH);
    assert_ne!(meta["user_data"]["ph"][0], PHONE_PLUS_HASH);
    assert_eq!(meta["user_data"]["em"][0], EMAIL_HASH);
    let klaviyo = klaviyo_event(&harness.klaviyo.requests(), "p-1").expect("sent to Klaviyo");
    assert_eq!(
        klaviyo["data"]["attributes"]["profile"]["data"]["attributes"]["phone_number"],
        "+15555550100"
    );
}

#[tokio::test]
async fn national_phones_use_event_country() {
    let harness = Harness::start(received_at(), &[]).await;
    let person = |id: &str, phone: &str, country: &str| {
        json!({
            "event": "dl_sign_up", "event_id": id,
            "user_properties": {"customer_email": format!("{id}@example.com"), "customer_phone": phone, "customer_country_code": country}
        })
    };

    send(&harness, json!([person("us-1", "(555) 555-0100", "US")])).await;
    let gb = Harness::start(received_at(), &[]).await;
    send(&gb, json!([person("gb-1", "07700 900123", "GB")])).await;
    let bad = Harness::start(received_at(), &[]).await;
    send(&bad, json!([person("bad-1", "12345", "US")])).await;

    let profile = |harness: &Harness, id: &str| {
        klaviyo_event(&harness.klaviyo.requests(), id).expect("sent to Klaviyo")["data"]["attributes"]["profile"]["data"]["attributes"].clone()
    };
    assert_eq!(profile(&harness, "us-1")["phone_number"], "+15555550100");
    assert_eq!(profile(&gb, "gb-1")["phone_number"], "+447700900123");
    let bad_profile = profile(&bad, "bad-1");
    assert!(bad_profile.get("phone_number").is_none());
    assert_eq!(bad_profile["email"], "bad-1@example.com");
    assert!(
        meta_event(&bad.meta.requests(), "bad-1")
            .expect("still sent")
            .get("user_data")
            .is_some()
    );
}

#[tokio::test]
async fn default_region_applies_without_country() {
    let harness = Harness::start(received_at(), &[("REVISIT_DEFAULT_REGION", "GB")]).await;
    let signup = json!({"event": "dl_sign_up", "event_id": "r-1", "user_properties": {"customer_email": "a@example.com", "customer_phone": "07700 900123"}});

    send(&harness, signup).await;

    let klaviyo = klaviyo_event(&harness.klaviyo.requests(), "r-1").expect("sent");
    assert_eq!(
        klaviyo["data"]["attributes"]["profile"]["data"]["attributes"]["phone_number"],
        "+447700900123"
    );
}

#[tokio::test]
async fn email_trimmed_and_lowercased_everywhere() {
    let harness = Harness::start(received_at(), &[]).await;
    let signup = json!({"event": "dl_sign_up", "event_id": "e-1", "user_properties": {"customer_email": "  User.Name+Promo@Example.COM "}});

    send(&harness, signup).await;

    let meta = meta_event(&harness.meta.requests(), "e-1").expect("sent to Meta");
    assert_eq!(meta["user_data"]["em"][0], TAGGED_EMAIL_HASH);
    let klaviyo = klaviyo_event(&harness.klaviyo.requests(), "e-1").expect("sent to Klaviyo");
    assert_eq!(
        klaviyo["data"]["attributes"]["profile"]["data"]["attributes"]["email"],
        "user.name+promo@example.com"
    );
}

#[tokio::test]
async fn prehashed_email_passes_through_unchanged() {
    let harness = Harness::start(received_at(), &[]).await;
    let event = json!({"event": "dl_view_item", "event_id": "h-1", "user_properties": {"sha256_email_address": EMAIL_HASH}});

    send(&harness, event).await;

    let meta = meta_event(&harness.meta.requests(), "h-1").expect("sent to Meta");
    assert_eq!(meta["user_data"]["em"][0], EMAIL_HASH);
}

#[tokio::test]
async fn meta_event_id_and_name_match_the_pixel() {
    let harness = Harness::start(received_at(), &[]).await;
    let purchase = json!({
        "event": "dl_purchase", "event_id": "000001",
        "ecommerce": {"currencyCode": "usd", "purchase": {"actionField": {"id": "ORD-1", "revenue": "245.00"}, "products": [{"id": "SKU-1", "price": "245", "quantity": "1"}]}}
    });

    send(&harness, purchase).await;

    let event = meta_event(&harness.meta.requests(), "000001").expect("sent to Meta");
    assert_eq!(event["event_name"], "Purchase");
    assert_eq!(event["event_id"], "000001");
    assert_eq!(event["action_source"], "website");
    assert_eq!(event["custom_data"]["value"], 245.0);
    assert_eq!(event["custom_data"]["currency"], "USD");
    assert_eq!(event["custom_data"]["order_id"], "ORD-1");
    assert_eq!(event["custom_data"]["content_ids"], json!(["SKU-1"]));
    assert_eq!(
        event["user_data"]["client_user_agent"]
            .as_str()
            .map(|ua| ua.contains("Safari")),
        Some(true)
    );
}

#[tokio::test]
async fn meta_times_are_seconds_and_old_events_dropped() {
    let harness = Harness::start(received_at(), &[]).await;
    let now = 1_700_000_000_i64;
    let batch = json!([
        {"event": "dl_view_item", "event_id": "ahead", "event_time": now + 3600, "context": {"page_url": "https://www.shop.example/p/1"}},
        {"event": "dl_view_item", "event_id": "old", "event_time": now - 8 * 86_400, "context": {"page_url": "https://www.shop.example/p/2"}},
        {"event": "dl_view_item", "event_id": "millis", "event_time": now * 1000 + 123, "context": {"page_url": "https://www.shop.example/p/3"}}
    ]);

    let answer = harness.post(&batch.to_string(), &[JSON]).await;
    let outcomes = harness.drain().await;

    assert_eq!(answer.status, 202);
    let requests = harness.meta.requests();
    assert_eq!(requests.len(), 1, "one request for the batch");
    let data = requests[0].json()["data"]
        .as_array()
        .cloned()
        .expect("data array");
    let ids: Vec<&str> = data
        .iter()
        .filter_map(|event| event["event_id"].as_str())
        .collect();
    assert_eq!(ids, ["ahead", "millis"]);
    assert_eq!(data[0]["event_time"], json!(now));
    assert_eq!(data[1]["event_time"], json!(now));
    let expired = outcomes[0]
        .delivery
        .counts
        .get(&("meta".to_owned(), revisit_shared::ports::Outcome::Expired));
    assert_eq!(expired, Some(&1));
}

#[tokio::test]
async fn click_ids_read_from_page_url_in_body() {
    let harness = Harness::start(received_at(), &[]).await;
    let first = harness
        .post(&json!({"event": "dl_user_data", "event_id": "k-1", "context": {"page_url": "https://shop.example/p/1?epik=dj0yJnU9Abc&ttclid=E.C.P.AbC123"}}).to_string(), &[JSON])
        .await;
    let cookie = first.visitor_cookie();
    harness.advance(Duration::hours(2));
    harness
        .post(&json!({"event": "dl_view_cart", "event_id": "k-2", "context": {"page_url": "https://shop.example/cart"}}).to_string(), &[JSON, ("cookie", &cookie)])
        .await;

    let outcomes = harness.drain().await;

    let later = outcomes
        .iter()
        .flat_map(|o| o.enriched.iter())
        .find(|e| e.event.event_id == "k-2")
        .expect("k-2");
    assert_eq!(
        later.click_id("epik").map(|c| c.value.as_str()),
        Some("dj0yJnU9Abc")
    );
    assert_eq!(
        later.click_id("ttclid").map(|c| c.value.as_str()),
        Some("E.C.P.AbC123")
    );
    assert_eq!(
        later.click_id("ttclid").map(|c| c.first_seen_ms),
        Some(1_700_000_000_123)
    );
}

#[tokio::test]
async fn consent_denied_withholds_marketing_destinations() {
    let harness = Harness::start(received_at(), &[]).await;
    let denied = json!({"event": "dl_sign_up", "event_id": "c-1", "user_properties": {"customer_email": "user@example.com"}, "context": {"consent": {"marketing": false, "analytics": true}}});

    send(&harness, denied).await;
    let by_default = Harness::start(received_at(), &[("REVISIT_CONSENT_DEFAULT", "denied")]).await;
    send(&by_default, json!({"event": "dl_sign_up", "event_id": "c-2", "user_properties": {"customer_email": "user@example.com"}})).await;

    assert!(harness.meta.requests().is_empty());
    assert!(harness.klaviyo.requests().is_empty());
    assert!(by_default.meta.requests().is_empty());
    assert!(by_default.klaviyo.requests().is_empty());
}

#[tokio::test]
async fn klaviyo_requests_carry_revision_and_key_header() {
    let harness = Harness::start(received_at(), &[]).await;
    let events = json!([
        {"event": "dl_subscribe", "event_id": "s-1", "lead_type": "email", "user_properties": {"customer_email": "user@example.com"}},
        {"event": "dl_purchase", "event_id": "p-1", "user_properties": {"customer_email": "user@example.com"}}
    ]);

    send(&harness, events).await;

    let requests = harness.klaviyo.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.header("revision"), Some("2026-07-15"));
        assert_eq!(
            request.header("content-type"),
            Some("application/vnd.api+json")
        );
        assert_eq!(
            request.header("authorization"),
            Some("Klaviyo-API-Key pk_test_0123456789")
        );
        assert!(request.uri.starts_with("/api/events"));
    }
}
