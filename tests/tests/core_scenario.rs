//! The scenario revisit exists for: a visitor lands from a Meta ad and subscribes on day 0,
//! Safari drops every script-set cookie, and on day 8 the add-to-cart still reaches Klaviyo
//! with the email and Meta with the hashed email and the day-0 `fbc`.

use chrono::{DateTime, Duration, Utc};
use revisit_shared::identity::sha256_hex;
use revisit_tests::harness::{Harness, KLAVIYO_KEY, META_TOKEN};
use revisit_tests::{RecordedRequest, fixture};

const DAY0_MS: i64 = 1_700_000_000_123;

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture exists")
}

fn day0() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(DAY0_MS).expect("valid time")
}

fn requests_for_event<'a>(
    requests: &'a [RecordedRequest],
    event_id: &str,
) -> Vec<&'a RecordedRequest> {
    requests
        .iter()
        .filter(|request| String::from_utf8_lossy(&request.body).contains(event_id))
        .collect()
}

#[tokio::test]
async fn day8_add_to_cart_carries_day0_identity() {
    let harness = Harness::start(day0(), &[]).await;
    let json = [("content-type", "application/json")];

    let landing = harness.post(&read("core/day0-landing.json"), &json).await;
    let cookie = landing.visitor_cookie();
    harness.advance(Duration::minutes(3));
    let subscribe = harness
        .post(
            &read("core/day0-subscribe.json"),
            &[("content-type", "application/json"), ("cookie", &cookie)],
        )
        .await;
    harness.drain().await;
    harness.advance(Duration::days(8));
    // Every script-set cookie is gone: the day-8 event carries only the server cookie.
    let cart = harness
        .post(
            &read("core/day8-add-to-cart.json"),
            &[("content-type", "application/json"), ("cookie", &cookie)],
        )
        .await;
    let outcomes = harness.drain().await;

    assert_eq!(landing.status, 202);
    assert_eq!(subscribe.status, 202);
    assert_eq!(cart.status, 202);
    assert_eq!(subscribe.body["visitor_id"], landing.body["visitor_id"]);
    assert_eq!(cart.body["visitor_id"], landing.body["visitor_id"]);

    let klaviyo = harness.klaviyo.requests();
    let cart_to_klaviyo = requests_for_event(&klaviyo, "day8-cart-1");
    assert_eq!(cart_to_klaviyo.len(), 1);
    let body = cart_to_klaviyo[0].json();
    let attributes = &body["data"]["attributes"];
    assert_eq!(
        attributes["metric"]["data"]["attributes"]["name"],
        "Added to Cart"
    );
    assert_eq!(
        attributes["profile"]["data"]["attributes"]["email"],
        "shopper@example.com"
    );
    assert_eq!(attributes["unique_id"], "day8-cart-1");
    assert_eq!(attributes["value"], 49.0);
    assert_eq!(attributes["properties"]["utm_source"], "facebook");
    assert_eq!(
        cart_to_klaviyo[0].header("authorization"),
        Some(format!("Klaviyo-API-Key {KLAVIYO_KEY}").as_str())
    );

    let meta = harness.meta.requests();
    let cart_to_meta = requests_for_event(&meta, "day8-cart-1");
    assert_eq!(cart_to_meta.len(), 1);
    assert_eq!(
        cart_to_meta[0].query("access_token").as_deref(),
        Some(META_TOKEN)
    );
    let event = &cart_to_meta[0].json()["data"][0];
    assert_eq!(event["event_name"], "AddToCart");
    assert_eq!(event["event_id"], "day8-cart-1");
    let user = &event["user_data"];
    assert_eq!(user["em"][0], sha256_hex("shopper@example.com"));
    // fbc keeps the day-0 click time in milliseconds and the fbclid byte for byte; the index is
    // 1 because the cookie is scoped to shop.example.
    assert_eq!(user["fbc"], format!("fb.1.{DAY0_MS}.IwAR2F4-dbP0l7Mn"));
    assert_eq!(user["fbp"], "fb.1.1700000000000.1098115397");

    let enriched = outcomes
        .iter()
        .flat_map(|outcome| outcome.enriched.iter())
        .find(|event| event.event.event_id == "day8-cart-1")
        .expect("the add-to-cart was processed");
    assert_eq!(
        enriched.lineage["identity.email"].event_id,
        "day0-subscribe-1"
    );
    assert_eq!(enriched.lineage["click_ids.fbc"].event_id, "day0-landing-1");
    assert_eq!(
        enriched.lineage["click_ids.fbc"].at.timestamp_millis(),
        DAY0_MS
    );
    assert_eq!(
        enriched.lineage["utm.utm_campaign"].event_id,
        "day0-landing-1"
    );
}

#[tokio::test]
async fn day8_without_server_cookie_is_a_stranger() {
    let harness = Harness::start(day0(), &[]).await;
    let json = [("content-type", "application/json")];

    let landing = harness.post(&read("core/day0-landing.json"), &json).await;
    let cookie = landing.visitor_cookie();
    harness
        .post(
            &read("core/day0-subscribe.json"),
            &[("content-type", "application/json"), ("cookie", &cookie)],
        )
        .await;
    harness.drain().await;
    harness.advance(Duration::days(8));
    let cart = harness
        .post(&read("core/day8-add-to-cart.json"), &json)
        .await;
    harness.drain().await;

    assert_ne!(cart.body["visitor_id"], landing.body["visitor_id"]);
    let klaviyo = harness.klaviyo.requests();
    assert!(requests_for_event(&klaviyo, "day8-cart-1").is_empty());
    let meta = harness.meta.requests();
    let event = &requests_for_event(&meta, "day8-cart-1")[0].json()["data"][0];
    assert!(event["user_data"].get("em").is_none());
    assert!(event["user_data"].get("fbc").is_none());
}
