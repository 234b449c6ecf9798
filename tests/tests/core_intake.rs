//! The collect side over HTTP: cookie attributes, CORS, body formats and limits, partial
//! acceptance of arrays and the quarantine of rejected items.

use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use revisit_tests::harness::Harness;
use serde_json::json;

fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
}

fn page_view(event_id: &str) -> String {
    json!({"event": "dl_user_data", "event_id": event_id, "user_properties": {"visitor_type": "guest"}}).to_string()
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn cookie_has_production_attributes() {
    let harness = Harness::start(start_time(), &[]).await;

    let answer = harness.post(&page_view("e-1"), &[JSON]).await;

    let set_cookies = answer.set_cookies();
    assert_eq!(set_cookies.len(), 1);
    let cookie = Cookie::parse(set_cookies[0].clone()).expect("a valid Set-Cookie");
    assert_eq!(cookie.name(), "rv_uid");
    assert_eq!(
        cookie.max_age(),
        Some(cookie::time::Duration::seconds(31_536_000))
    );
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), Some("shop.example"));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    let visitor_id = answer.body["visitor_id"]
        .as_str()
        .expect("visitor id in body");
    assert!(cookie.value().starts_with(&format!("{visitor_id}.")));
    assert_eq!(visitor_id.len(), 32);
}

#[tokio::test]
async fn cookie_is_reissued_unchanged_on_every_response() {
    let harness = Harness::start(start_time(), &[]).await;
    let first = harness.post(&page_view("e-1"), &[JSON]).await;
    let cookie = first.visitor_cookie();

    let second = harness
        .post(&page_view("e-2"), &[JSON, ("cookie", &cookie)])
        .await;
    let rejected = harness
        .post("{not json", &[JSON, ("cookie", &cookie)])
        .await;

    assert_eq!(second.visitor_cookie(), cookie);
    assert_eq!(second.body["visitor_id"], first.body["visitor_id"]);
    assert_eq!(rejected.status, 400);
    assert_eq!(rejected.visitor_cookie(), cookie);
}

#[tokio::test]
async fn cookie_with_unknown_value_gets_new_id() {
    let harness = Harness::start(start_time(), &[]).await;
    let forged = "rv_uid=0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef";

    for cookie in [forged, "rv_uid=garbage", "rv_uid=", "other=1"] {
        let answer = harness
            .post(&page_view("e-1"), &[JSON, ("cookie", cookie)])
            .await;

        let visitor_id = answer.body["visitor_id"]
            .as_str()
            .expect("visitor id")
            .to_owned();
        assert_ne!(
            visitor_id, "0123456789abcdef0123456789abcdef",
            "cookie {cookie:?}"
        );
        assert!(
            answer
                .visitor_cookie()
                .starts_with(&format!("rv_uid={visitor_id}.")),
            "cookie {cookie:?}"
        );
    }
}

#[tokio::test]
async fn cookie_domain_for_platform_host_is_host_only() {
    let harness = Harness::start(
        start_time(),
        &[("REVISIT_SITE_HOST", "store-a.myshopify.com")],
    )
    .await;

    let answer = harness.post(&page_view("e-1"), &[JSON]).await;

    let cookie = Cookie::parse(answer.set_cookies()[0].clone()).expect("a valid Set-Cookie");
    assert_eq!(cookie.domain(), None);
}

#[tokio::test]
async fn cookie_domain_under_multi_label_suffix() {
    let harness = Harness::start(start_time(), &[("REVISIT_SITE_HOST", "t.shop.co.uk")]).await;

    let answer = harness.post(&page_view("e-1"), &[JSON]).await;

    let cookie = Cookie::parse(answer.set_cookies()[0].clone()).expect("a valid Set-Cookie");
    assert_eq!(cookie.domain(), Some("shop.co.uk"));
}

#[tokio::test]
async fn preflight_echoes_allowed_origin_only() {
    let harness = Harness::start(start_time(), &[]).await;
    let preflight = |origin: &'static str| {
        http::Request::options("/collect")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(axum::body::Body::empty())
            .expect("valid request")
    };

    let allowed = harness.send(preflight("https://www.shop.example")).await;
    let evil = harness.send(preflight("https://evil.example")).await;

    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://www.shop.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    assert_eq!(
        allowed.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(evil.header("access-control-allow-origin").is_none());
    assert!(evil.header("access-control-allow-credentials").is_none());
    assert!(evil.header("access-control-allow-methods").is_none());
}

#[tokio::test]
async fn post_from_allowed_origin_gets_credentialed_cors() {
    let harness = Harness::start(start_time(), &[]).await;

    let allowed = harness
        .post(
            &page_view("e-1"),
            &[JSON, ("origin", "https://www.shop.example")],
        )
        .await;
    let evil = harness
        .post(
            &page_view("e-2"),
            &[JSON, ("origin", "https://evil.example")],
        )
        .await;

    assert_eq!(allowed.status, 202);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://www.shop.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    assert_eq!(evil.status, 403);
    assert!(evil.header("access-control-allow-origin").is_none());
    assert!(evil.set_cookies().is_empty());
    assert_eq!(harness.queue_len(), 1);
}

#[tokio::test]
async fn beacon_text_plain_body_is_json() {
    let harness = Harness::start(start_time(), &[]).await;

    let answer = harness
        .post(
            &page_view("beacon-1"),
            &[("content-type", "text/plain;charset=UTF-8")],
        )
        .await;
    let untyped = harness.post(&page_view("beacon-2"), &[]).await;

    assert_eq!(answer.status, 202);
    assert_eq!(answer.body["accepted"], 1);
    assert_eq!(untyped.status, 202);
}

#[tokio::test]
async fn invalid_json_is_400_and_quarantined() {
    let harness = Harness::start(start_time(), &[]).await;

    let answer = harness
        .post(
            "{\"event\": \"dl_user_data\",",
            &[("content-type", "text/plain")],
        )
        .await;

    assert_eq!(answer.status, 400);
    let message = answer.body["error"].as_str().expect("error message");
    assert!(message.starts_with("body: is not valid JSON"), "{message}");
    let quarantined = harness.store.quarantined();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].errors[0].path, "body");
    assert_eq!(quarantined[0].raw, json!("{\"event\": \"dl_user_data\","));
}

#[tokio::test]
async fn oversize_body_is_413_and_not_queued() {
    let harness = Harness::start(start_time(), &[]).await;
    let padding = "x".repeat(70_000);
    let body = json!({"event": "dl_user_data", "event_id": "big", "user_properties": {"visitor_type": padding}});

    let answer = harness.post(&body.to_string(), &[JSON]).await;

    assert_eq!(answer.status, 413);
    assert!(
        answer.body["error"]
            .as_str()
            .expect("message")
            .contains("65536")
    );
    assert_eq!(harness.queue_len(), 0);
    assert!(!answer.set_cookies().is_empty());
}

#[tokio::test]
async fn unsupported_content_type_is_415() {
    let harness = Harness::start(start_time(), &[]).await;

    let answer = harness
        .post(&page_view("e-1"), &[("content-type", "application/xml")])
        .await;

    assert_eq!(answer.status, 415);
    assert!(
        answer.body["error"]
            .as_str()
            .expect("message")
            .contains("application/xml")
    );
}

#[tokio::test]
async fn array_accepts_valid_and_rejects_bad_by_index() {
    let harness = Harness::start(start_time(), &[]).await;
    let body = json!([
        {"event": "dl_view_item", "event_id": "ok-1"},
        {"event": "dl_teleport", "event_id": "bad-1"},
        {"event": "dl_add_to_cart", "event_id": "bad-2", "ecommerce": {"add": {"products": [{"price": "cheap"}]}}},
        {"event": "dl_subscribe", "event_id": "bad-3"},
        {"event": "dl_purchase", "event_id": "ok-2"}
    ]);

    let answer = harness.post(&body.to_string(), &[JSON]).await;

    assert_eq!(answer.status, 202);
    assert_eq!(answer.body["accepted"], 2);
    let rejected = answer.body["rejected"].as_array().expect("rejected list");
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["errors"][0]["path"], "[1].event");
    assert!(
        rejected[0]["errors"][0]["problem"]
            .as_str()
            .expect("problem")
            .contains("dl_teleport")
    );
    assert_eq!(rejected[1]["index"], 2);
    assert_eq!(
        rejected[1]["errors"][0]["path"],
        "[2].ecommerce.add.products[0].price"
    );
    assert_eq!(rejected[1]["errors"][0]["problem"], "must be a number");
    assert_eq!(rejected[2]["errors"][0]["path"], "[3].lead_type");
    let quarantined = harness.store.quarantined();
    assert_eq!(quarantined.len(), 3);
    assert_eq!(quarantined[0].raw["event_id"], "bad-1");
    assert_eq!(harness.queue_len(), 2);
}

#[tokio::test]
async fn single_bad_event_is_400_naming_field() {
    let harness = Harness::start(start_time(), &[]).await;
    let cases = [
        (json!({"event_id": "x"}), "event: is required"),
        (
            json!({"event": "dl_view_item", "user_properties": "guest"}),
            "user_properties: must be an object",
        ),
        (
            json!({"event": "dl_view_item", "event_time": "yesterday"}),
            "event_time: must be an RFC 3339 time",
        ),
        (
            json!({"event": "dl_view_item", "context": {"page_url": "javascript:alert(1)"}}),
            "context.page_url: must be an http or https URL",
        ),
        (
            json!({"event": "dl_view_item", "event_id": ""}),
            "event_id: must not be empty",
        ),
        (json!([]), "body: the array must contain at least one event"),
        (json!("dl_view_item"), "body: must be a JSON object"),
    ];

    for (body, expected) in cases {
        let answer = harness.post(&body.to_string(), &[JSON]).await;

        assert_eq!(answer.status, 400, "{body}");
        let message = answer.body["error"].as_str().expect("error message");
        assert!(message.starts_with(expected), "{body}: {message}");
    }
    assert_eq!(harness.queue_len(), 0);
}

#[tokio::test]
async fn event_id_is_kept_exactly_or_minted() {
    let harness = Harness::start(start_time(), &[]).await;
    let body = json!([
        {"event": "dl_purchase", "event_id": "000001"},
        {"event": "dl_purchase"}
    ]);

    harness.post(&body.to_string(), &[JSON]).await;

    let queued = harness.queued();
    assert_eq!(queued[0].event_id, "000001");
    assert_eq!(queued[1].event_id.len(), 36);
    assert!(uuid_like(&queued[1].event_id));
}

fn uuid_like(id: &str) -> bool {
    id.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
}

#[tokio::test]
async fn event_time_never_after_receive_time() {
    let harness = Harness::start(start_time(), &[]).await;
    let body = json!([
        {"event": "dl_view_item", "event_id": "ahead", "event_time": 1_700_003_600},
        {"event": "dl_view_item", "event_id": "millis", "event_time": 1_699_999_000_123_i64},
        {"event": "dl_view_item", "event_id": "text", "event_time": "2023-11-14T22:00:00Z"},
        {"event": "dl_view_item", "event_id": "none"}
    ]);

    harness.post(&body.to_string(), &[JSON]).await;

    let queued = harness.queued();
    let received = start_time();
    assert_eq!(queued[0].event_time, received);
    assert_eq!(queued[1].event_time.timestamp_millis(), 1_699_999_000_123);
    assert_eq!(queued[2].event_time.timestamp(), 1_699_999_200);
    assert_eq!(queued[3].event_time, received);
    assert!(queued.iter().all(|event| event.received_at == received));
}

#[tokio::test]
async fn only_platform_cookies_are_kept() {
    let harness = Harness::start(start_time(), &[]).await;
    let body = json!({
        "event": "dl_view_item",
        "context": {"cookies": {"_fbp": "fb.1.1.2", "_ga_ABC123": "GS1.1.1.1.1", "session_token": "secret"}}
    });

    harness.post(&body.to_string(), &[JSON]).await;

    let queued = harness.queued();
    let names: Vec<&str> = queued[0].cookies.keys().map(String::as_str).collect();
    assert_eq!(names, ["_fbp", "_ga_ABC123"]);
}
