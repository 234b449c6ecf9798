//! What is remembered per visitor and for how long: retention, click-id windows, expired
//! records never used, and identity kept across a restart of `revisit serve`.

use chrono::{DateTime, Duration, Utc};
use revisit::serve::{self, ServeArgs};
use revisit_shared::VisitorId;
use revisit_shared::identity::sha256_hex;
use revisit_shared::ports::ProfileReader;
use revisit_tests::harness::{Answer, Harness, SAFARI};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("content-type", "application/json");

fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
}

fn event(name: &str, event_id: &str, page_url: &str, email: Option<&str>) -> String {
    let mut event = json!({
        "event": name,
        "event_id": event_id,
        "user_properties": {"visitor_type": "guest"},
        "context": {"page_url": page_url}
    });
    if let Some(email) = email {
        event["user_properties"]["customer_email"] = json!(email);
    }
    if name == "dl_subscribe" {
        event["lead_type"] = json!("email");
    }
    event.to_string()
}

async fn post_with(harness: &Harness, body: &str, cookie: Option<&str>) -> Answer {
    match cookie {
        Some(cookie) => harness.post(body, &[JSON, ("cookie", cookie)]).await,
        None => harness.post(body, &[JSON]).await,
    }
}

fn visitor(answer: &Answer) -> VisitorId {
    VisitorId::parse(answer.body["visitor_id"].as_str().expect("visitor id")).expect("valid id")
}

#[tokio::test]
async fn identity_expires_after_retention() {
    let harness = Harness::start(start_time(), &[("REVISIT_RETENTION_DAYS", "30")]).await;
    let page = "https://www.shop.example/";
    let first = post_with(
        &harness,
        &event("dl_subscribe", "s-1", page, Some("user@example.com")),
        None,
    )
    .await;
    let cookie = first.visitor_cookie();
    harness.drain().await;

    harness.advance(Duration::days(29));
    post_with(
        &harness,
        &event("dl_view_item", "v-29", page, None),
        Some(&cookie),
    )
    .await;
    let day29 = harness.drain().await;
    harness.advance(Duration::days(31));
    post_with(
        &harness,
        &event("dl_view_item", "v-60", page, None),
        Some(&cookie),
    )
    .await;
    let day60 = harness.drain().await;

    assert_eq!(day29[0].enriched[0].email(), Some("user@example.com"));
    // Retention is rolling from the visitor's last event: day 29 keeps the email until day 59.
    assert_eq!(day60[0].enriched[0].email(), None);
}

#[tokio::test]
async fn expired_fact_in_store_is_never_used() {
    let harness = Harness::start(start_time(), &[]).await;
    let page = "https://www.shop.example/";
    let first = post_with(
        &harness,
        &event("dl_subscribe", "s-1", page, Some("user@example.com")),
        None,
    )
    .await;
    let cookie = first.visitor_cookie();
    harness.drain().await;
    let id = visitor(&first);
    let mut stored = harness.store.raw_profile(&id).expect("profile stored");
    let now = start_time().timestamp();
    stored
        .identity
        .get_mut("email")
        .expect("email stored")
        .expires_at = now - 60;

    harness.store.put_raw_profile(stored);
    post_with(
        &harness,
        &event("dl_add_to_cart", "c-1", page, None),
        Some(&cookie),
    )
    .await;
    let outcomes = harness.drain().await;

    assert_eq!(outcomes[0].enriched[0].email(), None);
    let loaded = harness
        .store
        .load_profiles(std::slice::from_ref(&id), now)
        .await
        .expect("load");
    assert!(!loaded[&id].identity.contains_key("email"));
    let klaviyo = harness.klaviyo.requests();
    assert!(
        klaviyo
            .iter()
            .all(|request| !String::from_utf8_lossy(&request.body).contains("c-1"))
    );
}

#[tokio::test]
async fn expired_profile_is_a_new_visitor() {
    let harness = Harness::start(start_time(), &[]).await;
    let page = "https://www.shop.example/";
    let first = post_with(
        &harness,
        &event("dl_subscribe", "s-1", page, Some("user@example.com")),
        None,
    )
    .await;
    harness.drain().await;
    let id = visitor(&first);
    let mut stored = harness.store.raw_profile(&id).expect("profile stored");
    stored.expires_at = start_time().timestamp() - 1;
    for fact in stored.identity.values_mut() {
        fact.expires_at = start_time().timestamp() - 1;
    }

    harness.store.put_raw_profile(stored);
    let loaded = harness
        .store
        .load_profiles(std::slice::from_ref(&id), start_time().timestamp())
        .await
        .expect("load");

    assert!(loaded.is_empty());
}

#[tokio::test]
async fn click_ids_expire_by_platform_window() {
    let harness = Harness::start(start_time(), &[]).await;
    let landing =
        "https://www.shop.example/?ttclid=E.C.P.AbC123&fbclid=IwAR2F4-dbP0l7Mn&gclid=Cj0KCQ";
    let first = post_with(&harness, &event("dl_user_data", "l-1", landing, None), None).await;
    let cookie = first.visitor_cookie();
    harness.drain().await;
    let page = "https://www.shop.example/cart";

    harness.advance(Duration::days(6));
    post_with(
        &harness,
        &event("dl_view_cart", "c-6", page, None),
        Some(&cookie),
    )
    .await;
    let day6 = harness.drain().await;
    harness.advance(Duration::days(2));
    post_with(
        &harness,
        &event("dl_view_cart", "c-8", page, None),
        Some(&cookie),
    )
    .await;
    let day8 = harness.drain().await;
    harness.advance(Duration::days(83));
    post_with(
        &harness,
        &event("dl_view_cart", "c-91", page, None),
        Some(&cookie),
    )
    .await;
    let day91 = harness.drain().await;

    let day6 = &day6[0].enriched[0];
    assert_eq!(
        day6.click_id("ttclid").map(|c| c.value.as_str()),
        Some("E.C.P.AbC123")
    );
    assert_eq!(day6.lineage["click_ids.ttclid"].event_id, "l-1");
    let day8 = &day8[0].enriched[0];
    assert!(
        day8.click_id("ttclid").is_none(),
        "TikTok click ids are valid for 7 days"
    );
    assert!(day8.click_id("fbc").is_some());
    assert!(day8.click_id("gclid").is_some());
    let day91 = &day91[0].enriched[0];
    assert!(day91.click_id("fbc").is_none(), "fbc lives 90 days");
    assert!(day91.click_id("gclid").is_none(), "gclid lives 90 days");
}

#[tokio::test]
async fn new_click_replaces_old_and_keeps_first_touch() {
    let harness = Harness::start(start_time(), &[]).await;
    let first_page = "https://www.shop.example/?utm_source=google&utm_medium=cpc&gclid=first";
    let first = post_with(
        &harness,
        &event("dl_user_data", "l-1", first_page, None),
        None,
    )
    .await;
    let cookie = first.visitor_cookie();
    harness.advance(Duration::days(2));
    let second_page = "https://www.shop.example/?utm_source=newsletter&utm_medium=email";
    post_with(
        &harness,
        &event("dl_user_data", "l-2", second_page, None),
        Some(&cookie),
    )
    .await;
    harness.advance(Duration::hours(1));
    post_with(
        &harness,
        &event("dl_view_item", "v-1", "https://www.shop.example/p/1", None),
        Some(&cookie),
    )
    .await;

    let outcomes = harness.drain().await;

    let enriched = outcomes
        .iter()
        .flat_map(|o| o.enriched.iter())
        .find(|e| e.event.event_id == "v-1")
        .expect("v-1");
    assert_eq!(enriched.utm["utm_source"], "newsletter");
    assert_eq!(enriched.lineage["utm.utm_source"].event_id, "l-2");
    let first_touch = enriched.first_touch.as_ref().expect("first touch");
    assert_eq!(first_touch.utm["utm_source"], "google");
    assert_eq!(first_touch.click_ids["gclid"], "first");
    assert_eq!(
        enriched.last_touch.as_ref().expect("last touch").event_id,
        "l-2"
    );
    assert_eq!(
        enriched.click_id("gclid").map(|c| c.value.as_str()),
        Some("first")
    );
}

#[tokio::test]
async fn external_referrer_is_remembered_internal_is_not() {
    let harness = Harness::start(start_time(), &[]).await;
    let with_referrer = |id: &str, referrer: &str| {
        json!({"event": "dl_user_data", "event_id": id, "context": {"page_url": "https://www.shop.example/", "referrer": referrer}}).to_string()
    };
    let first = post_with(
        &harness,
        &with_referrer("r-1", "https://www.google.com/"),
        None,
    )
    .await;
    let cookie = first.visitor_cookie();
    post_with(
        &harness,
        &with_referrer("r-2", "https://www.shop.example/collections/all"),
        Some(&cookie),
    )
    .await;
    post_with(
        &harness,
        &with_referrer("r-3", "https://checkout.shopify.com/thanks"),
        Some(&cookie),
    )
    .await;

    let outcomes = harness.drain().await;

    let last = outcomes[0].enriched.last().expect("events");
    let touch = last.last_touch.as_ref().expect("a touch from google");
    assert_eq!(touch.referrer.as_deref(), Some("https://www.google.com/"));
    assert_eq!(touch.event_id, "r-1");
}

#[tokio::test]
async fn redelivered_event_updates_once_and_is_not_resent() {
    let harness = Harness::start(start_time(), &[]).await;
    let body = event(
        "dl_subscribe",
        "s-1",
        "https://www.shop.example/",
        Some("user@example.com"),
    );
    let first = post_with(&harness, &body, None).await;
    let queued = harness.queued();
    harness.drain().await;
    let id = visitor(&first);
    let count_before = harness.store.raw_profile(&id).expect("stored").event_count;

    let outcome = harness.worker.process_batch(&queued).await;

    assert!(outcome.failed.is_empty());
    assert_eq!(
        harness.store.raw_profile(&id).expect("stored").event_count,
        count_before
    );
    let klaviyo_requests = harness.klaviyo.requests().len();
    let meta_requests = harness.meta.requests().len();
    assert_eq!(klaviyo_requests, 1);
    assert_eq!(meta_requests, 1);
    let duplicates: u64 = outcome
        .delivery
        .counts
        .iter()
        .filter(|((_, outcome), _)| outcome.as_str() == "duplicate")
        .map(|(_, count)| *count)
        .sum();
    assert_eq!(duplicates, 2);
}

#[tokio::test]
async fn serve_restart_keeps_visitor_identity() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let args = ServeArgs {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: data_dir.path().to_path_buf(),
        outbox: None,
        dev_clock: false,
        aws: Default::default(),
    };
    let client = reqwest::Client::new();
    let subscribe = event(
        "dl_subscribe",
        "restart-s-1",
        "http://127.0.0.1/",
        Some("Restart@Example.com"),
    );

    let server = serve::start(args.clone()).await.expect("first start");
    let first: reqwest::Response = client
        .post(format!("http://{}/collect", server.addr))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("user-agent", SAFARI)
        .body(subscribe)
        .send()
        .await
        .expect("first request");
    let cookie = first
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("visitor cookie")
        .to_owned();
    let first_id: Value = first.json().await.expect("json body");
    server.stop().await.expect("first stop");

    let server = serve::start(args).await.expect("second start");
    let second: Value = client
        .post(format!("http://{}/collect", server.addr))
        .header("content-type", "application/json")
        .header("user-agent", SAFARI)
        .header("cookie", &cookie)
        .body(event(
            "dl_add_to_cart",
            "restart-c-1",
            "http://127.0.0.1/cart",
            None,
        ))
        .send()
        .await
        .expect("second request")
        .json()
        .await
        .expect("json body");
    let outbox = server.outbox_dir.clone();
    server.stop().await.expect("second stop");

    assert_eq!(second["visitor_id"], first_id["visitor_id"]);
    let meta = std::fs::read_to_string(outbox.join("meta.jsonl")).expect("meta outbox");
    let cart: Value = meta
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json line"))
        .find(|line| line["event_ids"][0] == "restart-c-1")
        .expect("add-to-cart in the outbox");
    assert_eq!(
        cart["body"]["data"][0]["user_data"]["em"][0],
        sha256_hex("restart@example.com")
    );
    assert_eq!(cart["body"]["data"][0]["event_name"], "AddToCart");
    let klaviyo = std::fs::read_to_string(outbox.join("klaviyo.jsonl")).expect("klaviyo outbox");
    assert!(klaviyo.contains("restart-c-1"));
}

#[tokio::test]
async fn identity_without_activity_expires() {
    let harness = Harness::start(start_time(), &[("REVISIT_RETENTION_DAYS", "30")]).await;
    let page = "https://www.shop.example/";
    let first = post_with(
        &harness,
        &event("dl_subscribe", "s-1", page, Some("user@example.com")),
        None,
    )
    .await;
    let cookie = first.visitor_cookie();
    harness.drain().await;

    harness.advance(Duration::days(31));
    post_with(
        &harness,
        &event("dl_view_item", "v-31", page, None),
        Some(&cookie),
    )
    .await;
    let day31 = harness.drain().await;

    assert_eq!(day31[0].enriched[0].email(), None);
    assert_eq!(day31[0].enriched[0].event.visitor_id, visitor(&first));
}

#[tokio::test]
async fn click_ids_never_outlive_retention() {
    let harness = Harness::start(start_time(), &[("REVISIT_RETENTION_DAYS", "1")]).await;
    let landing = "https://www.shop.example/?fbclid=IwAR2F4-dbP0l7Mn&epik=dj0yJnU9Abc";
    let first = post_with(&harness, &event("dl_user_data", "l-1", landing, None), None).await;
    let cookie = first.visitor_cookie();
    harness.drain().await;

    harness.advance(Duration::hours(20));
    post_with(
        &harness,
        &event("dl_view_item", "v-1", "https://www.shop.example/p", None),
        Some(&cookie),
    )
    .await;
    let within = harness.drain().await;
    harness.advance(Duration::days(8));
    post_with(
        &harness,
        &event("dl_view_cart", "c-8", "https://www.shop.example/cart", None),
        Some(&cookie),
    )
    .await;
    let after = harness.drain().await;

    assert!(within[0].enriched[0].click_id("fbc").is_some());
    assert!(after[0].enriched[0].click_id("fbc").is_none());
    assert!(after[0].enriched[0].click_id("epik").is_none());
}
