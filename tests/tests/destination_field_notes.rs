//! Faults that server-side forwarders are known to hit, each as the input that triggers it and
//! the behaviour that avoids it, through the real pipeline and loopback stand-ins.

mod destination_support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use destination_support::{
    EMAIL_HASH, NOW, PHONE_DIGITS_HASH, PHONE_PLUS_HASH, Pipeline, fixture, http, live, quick_retry,
};
use revisit_shared::delivery::Route;
use revisit_shared::destinations::config::build_destinations;
use revisit_shared::destinations::ga4::{Ga4, Ga4Config};
use revisit_shared::destinations::klaviyo::{Klaviyo, KlaviyoConfig};
use revisit_shared::destinations::meta::{Meta, MetaConfig};
use revisit_shared::destinations::pinterest::{Pinterest, PinterestConfig};
use revisit_shared::destinations::snapchat::{Snapchat, SnapchatConfig};
use revisit_shared::destinations::tiktok::{TikTok, TikTokConfig};
use revisit_shared::destinations::{DestinationsConfig, Secret};
use revisit_shared::identity::sha256_hex;
use revisit_shared::ports::Outcome;
use revisit_tests::{Scripted, StandIn};

fn now() -> DateTime<Utc> {
    NOW.parse().expect("test time")
}

async fn meta_route(server: &StandIn) -> Route {
    server.answer_by_default(Scripted::status(200).with_body(r#"{"events_received":1}"#));
    live(
        Meta::new(MetaConfig {
            pixel_id: Some("123".into()),
            access_token: Some(Secret::new("token")),
            endpoint: server.url(),
            ..MetaConfig::default()
        }),
        http(Duration::from_secs(2)),
    )
}

fn page_event(id: &str, url: &str, cookies: Value) -> Value {
    json!({
        "event": "dl_view_item",
        "event_id": id,
        "event_time": "2026-12-04T11:59:30Z",
        "context": {"page_url": url, "cookies": cookies}
    })
}

#[tokio::test]
async fn meta_omits_fbc_without_click_id() {
    let server = StandIn::start().await;
    let pipeline = Pipeline::new(vec![meta_route(&server).await], quick_retry());

    // An `_fbc` whose last segment (the fbclid) is missing makes Meta reject the event with
    // "click ID incorrectly formatted", so `fbc` is left out and the event is still sent.
    for (id, fbc) in [("f1", "fb.1.1796300000000."), ("f2", "fb.1.1796300000000")] {
        pipeline
            .run(&page_event(
                id,
                "https://shop.example/p/1",
                json!({"_fbc": fbc}),
            ))
            .await;
    }
    pipeline
        .run(&page_event(
            "f3",
            "https://shop.example/p/1",
            json!({"_fbc": "fb.1.1796300000000.AbC-d_E123"}),
        ))
        .await;

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[0].json()["data"][0]["user_data"]
            .get("fbc")
            .is_none()
    );
    assert!(
        requests[1].json()["data"][0]["user_data"]
            .get("fbc")
            .is_none()
    );
    assert_eq!(
        requests[2].json()["data"][0]["user_data"]["fbc"],
        "fb.1.1796300000000.AbC-d_E123"
    );
}

#[tokio::test]
async fn phone_hash_form_per_platform() {
    let meta = StandIn::start().await;
    let pinterest = StandIn::start().await;
    pinterest.answer_by_default(Scripted::status(200).with_body(r#"{"events":[]}"#));
    let snapchat = StandIn::start().await;
    let tiktok = StandIn::start().await;
    tiktok.answer_by_default(Scripted::status(200).with_body(r#"{"code":0}"#));
    let klaviyo = StandIn::start().await;
    klaviyo.answer_by_default(Scripted::status(202));
    let client = http(Duration::from_secs(2));
    let routes = vec![
        meta_route(&meta).await,
        live(
            Pinterest::new(PinterestConfig {
                ad_account_id: Some("1".into()),
                access_token: Some(Secret::new("t")),
                endpoint: pinterest.url(),
                ..PinterestConfig::default()
            }),
            client.clone(),
        ),
        live(
            Snapchat::new(SnapchatConfig {
                pixel_id: Some("p".into()),
                access_token: Some(Secret::new("t")),
                endpoint: snapchat.url(),
                ..SnapchatConfig::default()
            }),
            client.clone(),
        ),
        live(
            TikTok::new(TikTokConfig {
                pixel_code: Some("p".into()),
                access_token: Some(Secret::new("t")),
                endpoint: tiktok.url(),
                ..TikTokConfig::default()
            }),
            client.clone(),
        ),
        live(
            Klaviyo::new(KlaviyoConfig {
                api_key: Some(Secret::new("k")),
                endpoint: klaviyo.url(),
                ..KlaviyoConfig::default()
            }),
            client,
        ),
    ];
    let pipeline = Pipeline::new(routes, quick_retry());

    // The raw phone `+1 (555) 555-0100` needs a different form per platform.
    pipeline.run(&fixture("purchase.json")).await;

    let first = |server: &StandIn| server.requests()[0].json();
    assert_eq!(
        first(&meta)["data"][0]["user_data"]["ph"][0],
        PHONE_DIGITS_HASH
    );
    assert_eq!(
        first(&pinterest)["data"][0]["user_data"]["ph"][0],
        PHONE_DIGITS_HASH
    );
    assert_eq!(
        first(&snapchat)["data"][0]["user_data"]["ph"][0],
        PHONE_DIGITS_HASH
    );
    assert_eq!(first(&tiktok)["data"][0]["user"]["phone"], PHONE_PLUS_HASH);
    assert_ne!(PHONE_DIGITS_HASH, PHONE_PLUS_HASH);
    let profile = &first(&klaviyo)["data"]["attributes"]["profile"]["data"]["attributes"];
    assert_eq!(profile["phone_number"], "+15555550100");
}

#[tokio::test]
async fn meta_keeps_browser_event_id() {
    let server = StandIn::start().await;
    let pipeline = Pipeline::new(vec![meta_route(&server).await], quick_retry());
    let mut event = page_event("000001", "https://shop.example/p/1", json!({}));
    event["event"] = json!("dl_purchase");

    pipeline.run(&event).await;

    let body = server.requests()[0].json();
    assert_eq!(body["data"][0]["event_name"], "Purchase");
    assert_eq!(body["data"][0]["event_id"], "000001");
}

#[tokio::test]
async fn meta_batch_times_are_seconds_within_seven_days() {
    let server = StandIn::start().await;
    let pipeline = Pipeline::new(vec![meta_route(&server).await], quick_retry());
    let received = now().timestamp();
    let ahead = json!(received + 3600);
    let eight_days_old = json!(received - 8 * 86_400);
    let milliseconds = json!(received * 1000 + 123);

    // One browser, three events in one batch: a clock 1 h ahead, an event 8 days old and a
    // time sent in milliseconds by mistake.
    let mut cookie = None;
    for (id, time) in [("t1", ahead), ("t2", eight_days_old), ("t3", milliseconds)] {
        let mut event = page_event(id, "https://shop.example/p/1", json!({}));
        event["event_time"] = time;
        cookie = Some(pipeline.collect(&event, cookie.as_deref()).await);
    }
    let (_, outcome) = pipeline.process().await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "the old event must not fail the batch");
    let data = requests[0].json()["data"].clone();
    let ids: Vec<&str> = data
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|event| event["event_id"].as_str())
        .collect();
    assert_eq!(ids, ["t1", "t3"]);
    assert_eq!(data[0]["event_time"], json!(received));
    assert_eq!(data[1]["event_time"], json!(received));
    assert_eq!(outcome.delivery.get("meta", Outcome::Expired), 1);
    assert_eq!(outcome.delivery.get("meta", Outcome::Accepted), 2);
}

fn ga4_route(server: &StandIn) -> Route {
    server.answer_by_default(Scripted::status(204));
    live(
        Ga4::new(Ga4Config {
            measurement_id: Some("G-ABC123".into()),
            api_secret: Some(Secret::new("secret")),
            endpoint: server.url(),
            ..Ga4Config::default()
        }),
        http(Duration::from_secs(2)),
    )
}

#[tokio::test]
async fn ga4_client_id_from_ga_cookie_or_stable() {
    let server = StandIn::start().await;
    let pipeline = Pipeline::new(vec![ga4_route(&server)], quick_retry());
    let mut with_ga = page_event(
        "g1",
        "https://shop.example/p/1",
        json!({"_ga": "GA1.1.1234567890.1700000000"}),
    );
    with_ga["user_properties"] = json!({"customer_email": "user@example.com"});
    let mut without_ga = page_event("g2", "https://shop.example/p/2", json!({}));
    without_ga["user_properties"] = json!({"customer_email": "user@example.com"});

    pipeline.run(&with_ga).await;
    let cookie = pipeline.collect(&without_ga, None).await;
    pipeline.process().await;
    without_ga["event_id"] = json!("g3");
    pipeline.collect(&without_ga, Some(&cookie)).await;
    pipeline.process().await;

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].json()["client_id"], "1234567890.1700000000");
    let generated = requests[1].json()["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (random, seconds) = generated.split_once('.').expect("<random>.<seconds>");
    assert!(
        random.bytes().all(|b| b.is_ascii_digit()) && !random.is_empty(),
        "{generated}"
    );
    assert_eq!(seconds, now().timestamp().to_string());
    assert_eq!(
        requests[2].json()["client_id"],
        generated.as_str(),
        "stable per visitor"
    );
    for request in &requests {
        let body = request.json();
        assert!(!body["client_id"].to_string().contains('@'));
        assert!(
            body.get("user_id").is_none(),
            "no email or phone as user_id"
        );
    }
}

#[tokio::test]
async fn ga4_session_and_engagement_time() {
    let server = StandIn::start().await;
    let pipeline = Pipeline::new(vec![ga4_route(&server)], quick_retry());

    pipeline.run(&fixture("add_to_cart.json")).await;

    let params = server.requests()[0].json()["events"][0]["params"].clone();
    assert_eq!(params["session_id"], json!(1_700_000_000));
    assert!(params["session_id"].is_i64(), "a number, not a string");
    assert!(
        params["engagement_time_msec"]
            .as_i64()
            .is_some_and(|t| t >= 1)
    );
    assert_eq!(params["currency"], "USD");
    assert_eq!(params["value"], json!(10.0));
}

#[tokio::test]
async fn ga4_timestamps_and_72_hour_window() {
    let server = StandIn::start().await;
    let meta = StandIn::start().await;
    let routes = vec![ga4_route(&server), meta_route(&meta).await];
    let pipeline = Pipeline::new(routes, quick_retry());
    let two_hours_ago = now() - chrono::Duration::hours(2) + chrono::Duration::milliseconds(123);
    let eighty_hours_ago = now() - chrono::Duration::hours(80);

    let mut recent = page_event("r1", "https://shop.example/p/1", json!({}));
    recent["event_time"] = json!(two_hours_ago.to_rfc3339());
    let recent_outcome = pipeline.run(&recent).await;
    let mut replayed = page_event("r2", "https://shop.example/p/1", json!({}));
    replayed["event_time"] = json!(eighty_hours_ago.to_rfc3339());
    let replayed_outcome = pipeline.run(&replayed).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "the 80 h old event is not sent to GA4");
    let event = &requests[0].json()["events"][0];
    let micros = two_hours_ago.timestamp_micros();
    assert_eq!(event["timestamp_micros"], json!(micros));
    assert_eq!(micros.to_string().len(), 16);
    assert_eq!(recent_outcome.delivery.get("ga4", Outcome::Unverified), 1);
    assert_eq!(replayed_outcome.delivery.get("ga4", Outcome::Expired), 1);
    assert_eq!(replayed_outcome.delivery.get("meta", Outcome::Accepted), 1);
}

#[tokio::test]
async fn ga4_config_requires_id_and_secret_together() {
    let resolved: BTreeMap<String, Secret> =
        [("env:GA4_SECRET".to_owned(), Secret::new("s3cr3t"))].into();
    let build = |text: &str| {
        let config = DestinationsConfig::parse(text).expect("TOML");
        let http = http(Duration::from_secs(1));
        build_destinations(&config, &resolved, http.clone(), http).map(|routes| routes.len())
    };

    let secret_only = build("[ga4]\napi_secret = \"env:GA4_SECRET\"\n");
    let id_only = build("[ga4]\nmeasurement_id = \"G-AAAA1111\"\n");
    let pair = build("[ga4]\nmeasurement_id = \"G-AAAA1111\"\napi_secret = \"env:GA4_SECRET\"\n");

    assert_eq!(
        secret_only.expect_err("rejected").setting,
        "ga4.measurement_id"
    );
    assert_eq!(id_only.expect_err("rejected").setting, "ga4.api_secret");
    assert_eq!(pair.ok(), Some(1));
}

async fn klaviyo_pipeline(server: &StandIn) -> Pipeline {
    let klaviyo = Klaviyo::new(KlaviyoConfig {
        api_key: Some(Secret::new("pk")),
        endpoint: server.url(),
        ..KlaviyoConfig::default()
    });
    Pipeline::new(
        vec![live(klaviyo, http(Duration::from_secs(2)))],
        quick_retry(),
    )
}

#[tokio::test]
async fn klaviyo_duplicate_profile_falls_back_to_email() {
    let server = StandIn::start().await;
    server.script([
        Scripted::status(202),
        Scripted::status(409).with_body(
            r#"{"errors":[{"status":409,"code":"duplicate_profile","detail":"A profile already exists with one of these identifiers.","meta":{"duplicate_profile_id":"01P2"}}]}"#,
        ),
        Scripted::status(202),
    ]);
    let pipeline = klaviyo_pipeline(&server).await;

    // Klaviyo has one profile for the email and another for the phone.
    let outcome = pipeline.run(&fixture("sign_up.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 3, "event, upsert, one fallback upsert");
    assert_eq!(requests[1].uri, "/api/profile-import");
    assert_eq!(requests[2].uri, "/api/profile-import");
    let fallback = &requests[2].json()["data"]["attributes"];
    assert_eq!(fallback["email"], "user@example.com");
    assert!(fallback.get("phone_number").is_none());
    assert_eq!(outcome.delivery.get("klaviyo", Outcome::Accepted), 1);
    assert!(
        outcome.delivery.retryable.is_empty(),
        "a 409 is never redelivered"
    );
    assert!(outcome.failed.is_empty());
}

#[tokio::test]
async fn klaviyo_phone_in_e164_or_left_out() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(202));
    let pipeline = klaviyo_pipeline(&server).await;
    let cases = [
        ("(555) 555-0100", "US", Some("+15555550100")),
        ("07700 900123", "GB", Some("+447700900123")),
        ("12345", "US", None),
    ];

    for (index, (phone, country, _)) in cases.iter().enumerate() {
        let event = json!({
            "event": "dl_view_item",
            "event_id": format!("phone-{index}"),
            "user_properties": {
                "customer_email": "user@example.com",
                "customer_phone": phone,
                "customer_country_code": country
            },
            "context": {"page_url": "https://shop.example/p/1"}
        });
        pipeline.run(&event).await;
    }

    let requests = server.requests();
    assert_eq!(
        requests.len(),
        3,
        "every event is sent, with or without a phone"
    );
    for (request, (_, _, expected)) in requests.iter().zip(cases) {
        let profile = request.json()["data"]["attributes"]["profile"]["data"]["attributes"].clone();
        assert_eq!(profile["email"], "user@example.com");
        assert_eq!(profile["phone_number"].as_str(), expected);
    }
}

fn tiktok_route(server: &StandIn) -> Route {
    server.answer_by_default(Scripted::status(200).with_body(r#"{"code":0}"#));
    live(
        TikTok::new(TikTokConfig {
            pixel_code: Some("p".into()),
            access_token: Some(Secret::new("t")),
            endpoint: server.url(),
            ..TikTokConfig::default()
        }),
        http(Duration::from_secs(2)),
    )
}

#[tokio::test]
async fn tiktok_keeps_ttclid_and_prehashed_email() {
    let server = StandIn::start().await;
    let pipeline = Pipeline::new(vec![tiktok_route(&server)], quick_retry());
    let landing = page_event("l1", "https://shop.example/?ttclid=E.C.P.AbC123", json!({}));
    let later = page_event("l2", "https://shop.example/p/1", json!({}));
    let mut hashed_only = page_event("h1", "https://shop.example/p/1", json!({}));
    hashed_only["user_properties"] = json!({"sha256_email_address": EMAIL_HASH});
    let mut both = page_event("h2", "https://shop.example/p/1", json!({}));
    both["user_properties"] =
        json!({"customer_email": "Other@Example.com", "sha256_email_address": EMAIL_HASH});

    let cookie = pipeline.collect(&landing, None).await;
    pipeline.process().await;
    pipeline.collect(&later, Some(&cookie)).await;
    pipeline.process().await;
    pipeline.run(&hashed_only).await;
    pipeline.run(&both).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    // The ttclid of the landing URL is remembered and attached to the later event.
    assert_eq!(
        requests[1].json()["data"][0]["user"]["ttclid"],
        "E.C.P.AbC123"
    );
    // A pre-hashed email is forwarded as it arrived, never hashed again.
    assert_eq!(requests[2].json()["data"][0]["user"]["email"], EMAIL_HASH);
    // With raw and hashed both present, the raw email is normalised and hashed.
    assert_eq!(
        requests[3].json()["data"][0]["user"]["email"],
        sha256_hex("other@example.com")
    );
}

#[tokio::test]
async fn click_ids_from_event_source_url() {
    let pinterest = StandIn::start().await;
    pinterest.answer_by_default(Scripted::status(200).with_body(r#"{"events":[]}"#));
    let tiktok = StandIn::start().await;
    let meta = StandIn::start().await;
    let routes = vec![
        live(
            Pinterest::new(PinterestConfig {
                ad_account_id: Some("1".into()),
                access_token: Some(Secret::new("t")),
                endpoint: pinterest.url(),
                ..PinterestConfig::default()
            }),
            http(Duration::from_secs(2)),
        ),
        tiktok_route(&tiktok),
        meta_route(&meta).await,
    ];
    let pipeline = Pipeline::new(routes, quick_retry());
    // A beacon to the collector carries the landing parameters only inside the page URL,
    // and no `_epik` cookie exists yet.
    let beacon = json!({
        "event": "dl_user_data",
        "event_id": "pv-1",
        "context": {
            "page_url": "https://shop.example/p/1?epik=dj0yJnU9Abc&ttclid=E.C.P.AbC123&fbclid=IwAR2F4-dbP0l7Mn"
        }
    });
    let with_old_cookie = page_event(
        "pv-2",
        "https://shop.example/p/2?epik=dj0yJnU9New",
        json!({"_epik": "cookie-epik"}),
    );
    let later = page_event("pv-3", "https://shop.example/p/3", json!({}));

    let cookie = pipeline.collect(&beacon, None).await;
    pipeline.process().await;
    pipeline.clock.advance(chrono::Duration::minutes(1));
    pipeline.collect(&with_old_cookie, Some(&cookie)).await;
    pipeline.process().await;
    pipeline.clock.advance(chrono::Duration::minutes(1));
    pipeline.collect(&later, Some(&cookie)).await;
    pipeline.process().await;

    let pins = pinterest.requests();
    let click_id = |index: usize| pins[index].json()["data"][0]["user_data"]["click_id"].clone();
    assert_eq!(click_id(0), "dj0yJnU9Abc");
    // The page URL's parameter wins over the `_epik` cookie.
    assert_eq!(click_id(1), "dj0yJnU9New");
    // Without either, the remembered value is sent.
    assert_eq!(click_id(2), "dj0yJnU9New");
    assert_eq!(
        tiktok.requests()[0].json()["data"][0]["user"]["ttclid"],
        "E.C.P.AbC123"
    );
    let fbc = meta.requests()[0].json()["data"][0]["user_data"]["fbc"].clone();
    let expected = format!("fb.1.{}.IwAR2F4-dbP0l7Mn", now().timestamp_millis());
    assert_eq!(fbc, json!(expected));
}

#[tokio::test]
async fn meta_passes_prehashed_identifiers() {
    let meta = StandIn::start().await;
    let pipeline = Pipeline::new(vec![meta_route(&meta).await], quick_retry());
    let mut event = fixture("prehashed.json");
    event["context"]["page_url"] = json!("https://shop.example/thanks");

    pipeline.run(&event).await;

    let user = meta.requests()[0].json()["data"][0]["user_data"].clone();
    // Upper-case hex arrived; the same digest goes out in lower case, not hashed again.
    assert_eq!(user["em"], json!([EMAIL_HASH]));
    assert_eq!(user["ph"], json!([PHONE_PLUS_HASH]));
}
