//! Delivery under platform faults: each response causes an exact number of requests, nothing
//! is sent twice once a platform accepted it, and redelivered events resend only what failed.

mod destination_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use destination_support::{Pipeline, fixture, http, live, quick_retry};
use revisit_shared::delivery::{RetryPolicy, Route};
use revisit_shared::destinations::Secret;
use revisit_shared::destinations::klaviyo::{Klaviyo, KlaviyoConfig};
use revisit_shared::destinations::meta::{Meta, MetaConfig};
use revisit_shared::destinations::tiktok::{TikTok, TikTokConfig};
use revisit_shared::ports::Outcome;
use revisit_tests::{Scripted, StandIn};

const META_OK: &str = r#"{"events_received":1}"#;
const DUPLICATE_PROFILE: &str = r#"{"errors":[{"status":409,"code":"duplicate_profile","meta":{"duplicate_profile_id":"01P2"}}]}"#;

fn meta_route(server: &StandIn, timeout: Duration) -> Route {
    live(
        Meta::new(MetaConfig {
            pixel_id: Some("123".into()),
            access_token: Some(Secret::new("token")),
            endpoint: server.url(),
            ..MetaConfig::default()
        }),
        http(timeout),
    )
}

fn tiktok_route(server: &StandIn) -> Route {
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

fn klaviyo_route(server: &StandIn, list: Option<&str>) -> Route {
    live(
        Klaviyo::new(KlaviyoConfig {
            api_key: Some(Secret::new("pk")),
            endpoint: server.url(),
            subscribe_list_id: list.map(str::to_owned),
            ..KlaviyoConfig::default()
        }),
        http(Duration::from_secs(2)),
    )
}

fn meta_pipeline(server: &StandIn) -> Pipeline {
    Pipeline::new(
        vec![meta_route(server, Duration::from_secs(2))],
        quick_retry(),
    )
}

#[tokio::test]
async fn server_error_retried_until_accepted() {
    let server = StandIn::start().await;
    server.script([Scripted::status(500), Scripted::status(500)]);
    server.answer_by_default(Scripted::status(200).with_body(META_OK));
    let pipeline = meta_pipeline(&server);

    pipeline.collect(&fixture("purchase.json"), None).await;
    let (events, outcome) = pipeline.process().await;
    let redelivered = pipeline.worker.process_batch(&events).await;

    let requests = server.requests();
    assert_eq!(
        requests.len(),
        3,
        "two 500s, then the accepted attempt; no resend"
    );
    assert_eq!(
        requests[0].body, requests[2].body,
        "retries send the same body"
    );
    assert_eq!(outcome.delivery.get("meta", Outcome::Accepted), 1);
    assert_eq!(outcome.delivery.get("meta", Outcome::Retried), 2);
    assert!(outcome.failed.is_empty());
    assert_eq!(redelivered.delivery.get("meta", Outcome::Duplicate), 1);
    assert_eq!(redelivered.delivery.get("meta", Outcome::Sent), 0);
}

#[tokio::test]
async fn server_errors_leave_event_to_queue() {
    let server = StandIn::start().await;
    server.script([
        Scripted::status(500),
        Scripted::status(502),
        Scripted::status(503),
    ]);
    server.answer_by_default(Scripted::status(200).with_body(META_OK));
    let pipeline = meta_pipeline(&server);

    pipeline.collect(&fixture("purchase.json"), None).await;
    let (events, outcome) = pipeline.process().await;
    let after_failure = server.requests().len();
    let redelivered = pipeline.worker.process_batch(&events).await;
    let again = pipeline.worker.process_batch(&events).await;

    assert_eq!(after_failure, 3, "max_attempts of the retry policy");
    assert_eq!(outcome.delivery.get("meta", Outcome::Failed), 1);
    assert!(outcome.delivery.retryable.contains("000001"));
    assert_eq!(outcome.failed.len(), 1, "the queue redelivers the event");
    assert_eq!(server.requests().len(), 4, "the redelivery sends once");
    assert_eq!(redelivered.delivery.get("meta", Outcome::Accepted), 1);
    assert_eq!(again.delivery.get("meta", Outcome::Duplicate), 1);
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after() {
    let server = StandIn::start().await;
    server.script([Scripted::status(429).with_header("retry-after", "1")]);
    server.answer_by_default(Scripted::status(200).with_body(META_OK));
    let pipeline = meta_pipeline(&server);

    let started = Instant::now();
    let outcome = pipeline.run(&fixture("purchase.json")).await;
    let elapsed = started.elapsed();

    assert_eq!(server.requests().len(), 2);
    assert!(elapsed >= Duration::from_secs(1), "waited {elapsed:?}");
    assert_eq!(outcome.delivery.get("meta", Outcome::Accepted), 1);
    assert_eq!(outcome.delivery.get("meta", Outcome::Retried), 1);
}

#[tokio::test]
async fn retry_after_past_budget_stops_at_once() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(429).with_header("retry-after", "60"));
    let retry = RetryPolicy {
        budget: Duration::from_secs(5),
        ..quick_retry()
    };
    let pipeline = Pipeline::new(vec![meta_route(&server, Duration::from_secs(2))], retry);

    let started = Instant::now();
    let outcome = pipeline.run(&fixture("purchase.json")).await;

    assert_eq!(server.requests().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(outcome.delivery.retryable.contains("000001"));
    assert_eq!(outcome.delivery.get("meta", Outcome::Failed), 1);
}

#[tokio::test]
async fn timeout_retried_once() {
    let server = StandIn::start().await;
    server.script([Scripted::status(200)
        .with_body(META_OK)
        .with_delay(Duration::from_millis(1500))]);
    server.answer_by_default(Scripted::status(200).with_body(META_OK));
    let route = meta_route(&server, Duration::from_millis(300));
    let pipeline = Pipeline::new(vec![route], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].json()["data"][0]["event_id"], "000001");
    assert_eq!(requests[1].json()["data"][0]["event_id"], "000001");
    assert_eq!(outcome.delivery.get("meta", Outcome::Accepted), 1);
    assert_eq!(outcome.delivery.get("meta", Outcome::Retried), 1);
}

#[tokio::test]
async fn malformed_success_body_by_platform() {
    let tiktok = StandIn::start().await;
    tiktok.script([Scripted::status(200).with_body("<html>gateway</html>")]);
    tiktok.answer_by_default(Scripted::status(200).with_body(r#"{"code":0,"message":"OK"}"#));
    let meta = StandIn::start().await;
    meta.script([Scripted::status(200).with_body("not json")]);
    let routes = vec![
        tiktok_route(&tiktok),
        meta_route(&meta, Duration::from_secs(2)),
    ];
    let pipeline = Pipeline::new(routes, quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    // TikTok reports failures inside a 200, so an unreadable 200 is retried; TikTok drops a
    // repeated event + event_id, so the retry cannot count twice.
    assert_eq!(tiktok.requests().len(), 2);
    assert_eq!(outcome.delivery.get("tiktok", Outcome::Accepted), 1);
    // Meta's status code alone shows that the payload was valid.
    assert_eq!(meta.requests().len(), 1);
    assert_eq!(outcome.delivery.get("meta", Outcome::Accepted), 1);
}

#[tokio::test]
async fn tiktok_error_code_in_200_is_rejected() {
    let server = StandIn::start().await;
    server.answer_by_default(
        Scripted::status(200).with_body(r#"{"code":40001,"message":"no permission"}"#),
    );
    let pipeline = Pipeline::new(vec![tiktok_route(&server)], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(outcome.delivery.get("tiktok", Outcome::Failed), 1);
    assert!(outcome.delivery.retryable.is_empty());
}

/// Log output captured for the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

#[tokio::test]
async fn bad_request_recorded_not_retried() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = StandIn::start().await;
    // Graph errors echo the rejected value, here the shopper's email.
    server.answer_by_default(Scripted::status(400).with_body(
        r#"{"error":{"message":"Invalid parameter user@example.com","type":"OAuthException","code":100,"error_subcode":2804019,"fbtrace_id":"A1"}}"#,
    ));
    let pipeline = meta_pipeline(&server);

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(outcome.delivery.get("meta", Outcome::Failed), 1);
    assert!(outcome.delivery.retryable.is_empty());
    assert!(
        outcome.failed.is_empty(),
        "a bad payload is not redelivered"
    );
    let text = logs.text();
    assert!(
        text.contains("2804019"),
        "the platform's error is recorded: {text}"
    );
    assert!(
        !text.contains("user@example.com"),
        "no email in logs: {text}"
    );
    assert!(!text.contains("token"), "no credential in logs: {text}");
}

#[tokio::test]
async fn klaviyo_conflict_falls_back_once() {
    let server = StandIn::start().await;
    server.script([
        Scripted::status(409).with_body(DUPLICATE_PROFILE),
        Scripted::status(202),
    ]);
    let pipeline = Pipeline::new(vec![klaviyo_route(&server, None)], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let profile = &requests[1].json()["data"]["attributes"]["profile"]["data"]["attributes"];
    assert_eq!(profile["email"], "user@example.com");
    assert!(profile.get("phone_number").is_none());
    assert_eq!(
        requests[1].json()["data"]["attributes"]["unique_id"],
        "000001"
    );
    assert_eq!(outcome.delivery.get("klaviyo", Outcome::Accepted), 1);
}

#[tokio::test]
async fn klaviyo_conflict_twice_stops() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(409).with_body(DUPLICATE_PROFILE));
    let pipeline = Pipeline::new(vec![klaviyo_route(&server, None)], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    assert_eq!(server.requests().len(), 2, "the request and one fallback");
    assert_eq!(outcome.delivery.get("klaviyo", Outcome::Failed), 1);
    assert!(outcome.delivery.retryable.is_empty());
    assert!(outcome.failed.is_empty());
}

#[tokio::test]
async fn redelivery_resends_only_failed_request() {
    let server = StandIn::start().await;
    server.script([
        Scripted::status(202),
        Scripted::status(500),
        Scripted::status(500),
        Scripted::status(500),
    ]);
    server.answer_by_default(Scripted::status(202));
    let pipeline = Pipeline::new(vec![klaviyo_route(&server, Some("LIST1"))], quick_retry());

    pipeline.collect(&fixture("subscribe.json"), None).await;
    let (events, outcome) = pipeline.process().await;
    let redelivered = pipeline.worker.process_batch(&events).await;
    let again = pipeline.worker.process_batch(&events).await;

    let paths: Vec<String> = server.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/events",
            "/api/profile-subscription-bulk-create-jobs",
            "/api/profile-subscription-bulk-create-jobs",
            "/api/profile-subscription-bulk-create-jobs",
            "/api/profile-subscription-bulk-create-jobs",
        ],
        "the accepted event is not sent again"
    );
    assert_eq!(outcome.delivery.get("klaviyo", Outcome::Failed), 1);
    assert!(outcome.delivery.retryable.contains("sub-1"));
    assert_eq!(redelivered.delivery.get("klaviyo", Outcome::Accepted), 1);
    assert_eq!(again.delivery.get("klaviyo", Outcome::Duplicate), 1);
}

#[tokio::test]
async fn failure_elsewhere_does_not_resend_accepted() {
    let meta = StandIn::start().await;
    meta.script([
        Scripted::status(500),
        Scripted::status(500),
        Scripted::status(500),
    ]);
    meta.answer_by_default(Scripted::status(200).with_body(META_OK));
    let tiktok = StandIn::start().await;
    tiktok.answer_by_default(Scripted::status(200).with_body(r#"{"code":0}"#));
    let routes = vec![
        meta_route(&meta, Duration::from_secs(2)),
        tiktok_route(&tiktok),
    ];
    let pipeline = Pipeline::new(routes, quick_retry());
    let mut second = fixture("purchase.json");
    second["event_id"] = json!("000002");

    let cookie = pipeline.collect(&fixture("purchase.json"), None).await;
    pipeline.collect(&second, Some(&cookie)).await;
    let (events, outcome) = pipeline.process().await;
    let redelivered = pipeline.worker.process_batch(&events).await;

    assert_eq!(
        tiktok.requests().len(),
        1,
        "both events in one TikTok request"
    );
    assert_eq!(
        meta.requests().len(),
        4,
        "three failed attempts, one redelivery"
    );
    assert_eq!(outcome.failed.len(), 2);
    assert_eq!(redelivered.delivery.get("tiktok", Outcome::Duplicate), 2);
    assert_eq!(redelivered.delivery.get("meta", Outcome::Accepted), 2);
}

fn google_ads_route(server: &StandIn, token_server: &StandIn) -> Route {
    use revisit_shared::delivery::oauth::TokenTransport;
    use revisit_shared::destinations::google_ads::{GoogleAds, GoogleAdsConfig, GoogleOAuth};

    let google_ads = GoogleAds::new(GoogleAdsConfig {
        customer_id: Some("1234567890".into()),
        conversion_action_id: Some("555".into()),
        developer_token: Some(Secret::new("dev")),
        oauth: Some(GoogleOAuth {
            client_id: "client".into(),
            client_secret: Secret::new("secret"),
            refresh_token: Secret::new("refresh"),
            token_endpoint: format!("{}/token", token_server.url()),
        }),
        endpoint: server.url(),
        ..GoogleAdsConfig::default()
    });
    let token_request = google_ads.token_request().expect("OAuth configured");
    Route {
        destination: Arc::new(google_ads),
        transport: Arc::new(TokenTransport::new(
            http(Duration::from_secs(2)),
            token_request,
        )),
        live: true,
    }
}

#[tokio::test]
async fn google_ads_token_renewed_after_401() {
    let token_server = StandIn::start().await;
    token_server.script([
        Scripted::status(200).with_body(r#"{"access_token":"first","expires_in":3600}"#),
        Scripted::status(200).with_body(r#"{"access_token":"second","expires_in":3600}"#),
    ]);
    let server = StandIn::start().await;
    server.script([Scripted::status(401).with_body(r#"{"error":{"status":"UNAUTHENTICATED"}}"#)]);
    server.answer_by_default(Scripted::status(200).with_body(r#"{"results":[{}]}"#));
    let pipeline = Pipeline::new(
        vec![google_ads_route(&server, &token_server)],
        quick_retry(),
    );

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(token_server.requests().len(), 2);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("authorization"), Some("Bearer first"));
    assert_eq!(requests[1].header("authorization"), Some("Bearer second"));
    assert_eq!(outcome.delivery.get("google_ads", Outcome::Accepted), 1);
}

#[tokio::test]
async fn google_ads_refused_grant_not_retried() {
    let token_server = StandIn::start().await;
    token_server.answer_by_default(Scripted::status(400).with_body(r#"{"error":"invalid_grant"}"#));
    let server = StandIn::start().await;
    let pipeline = Pipeline::new(
        vec![google_ads_route(&server, &token_server)],
        quick_retry(),
    );

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    assert_eq!(token_server.requests().len(), 1);
    assert_eq!(
        server.requests().len(),
        0,
        "nothing is sent without a token"
    );
    assert_eq!(outcome.delivery.get("google_ads", Outcome::Failed), 1);
    assert!(outcome.delivery.retryable.is_empty());
}

#[tokio::test]
async fn google_ads_partial_failure_per_conversion() {
    let token_server = StandIn::start().await;
    token_server.answer_by_default(
        Scripted::status(200).with_body(r#"{"access_token":"t","expires_in":3600}"#),
    );
    let server = StandIn::start().await;
    server.answer_by_default(
        Scripted::status(200).with_body(&fixture_text("google_ads_partial_failure.json")),
    );
    let pipeline = Pipeline::new(
        vec![google_ads_route(&server, &token_server)],
        quick_retry(),
    );
    let mut second = fixture("purchase.json");
    second["event_id"] = json!("000002");
    let mut third = fixture("purchase.json");
    third["event_id"] = json!("000003");

    pipeline.collect(&fixture("purchase.json"), None).await;
    pipeline.collect(&second, None).await;
    pipeline.collect(&third, None).await;
    let (_, outcome) = pipeline.process().await;

    assert_eq!(server.requests().len(), 1);
    // Conversion 1 already exists (done), conversion 2 is too recent (the queue retries it).
    assert_eq!(outcome.delivery.get("google_ads", Outcome::Accepted), 2);
    assert_eq!(outcome.delivery.get("google_ads", Outcome::Failed), 1);
    let retryable: Vec<&str> = outcome
        .delivery
        .retryable
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(retryable, ["000003"]);
}

fn fixture_text(name: &str) -> String {
    let path = revisit_tests::fixture(&format!("destinations/{name}"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}
