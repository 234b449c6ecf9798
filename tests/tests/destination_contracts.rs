//! One contract test per destination: real enriched events go through the real deliverer and
//! HTTP transport to a loopback stand-in, and each recorded request is checked against the
//! platform's documented contract (URL, credentials, headers, body fields and types, hashing).

mod destination_support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use destination_support::{
    CLIENT_IP, EMAIL_HASH, PHONE_DIGITS_HASH, PHONE_PLUS_HASH, Pipeline, USER_AGENT, fixture, http,
    live, query_names, quick_retry, schema_errors, specs_dir,
};
use revisit_shared::delivery::Route;
use revisit_shared::delivery::oauth::TokenTransport;
use revisit_shared::destinations::Secret;
use revisit_shared::destinations::ga4::{Ga4, Ga4Config};
use revisit_shared::destinations::google_ads::{GoogleAds, GoogleAdsConfig, GoogleOAuth};
use revisit_shared::destinations::klaviyo::{self, Klaviyo, KlaviyoConfig};
use revisit_shared::destinations::meta::{Meta, MetaConfig};
use revisit_shared::destinations::microsoft::{Microsoft, MicrosoftConfig};
use revisit_shared::destinations::pinterest::{Pinterest, PinterestConfig};
use revisit_shared::destinations::snapchat::{Snapchat, SnapchatConfig};
use revisit_shared::destinations::tiktok::{TikTok, TikTokConfig};
use revisit_shared::identity::sha256_hex;
use revisit_shared::ports::Outcome;
use revisit_tests::{Scripted, StandIn};

/// Unix seconds of the fixtures' event time, 2026-12-04T11:59:30Z.
fn event_secs() -> i64 {
    let time: DateTime<Utc> = "2026-12-04T11:59:30Z".parse().expect("time");
    time.timestamp()
}

fn timeout() -> Duration {
    Duration::from_secs(2)
}

#[tokio::test]
async fn klaviyo_contract() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(202));
    let klaviyo = Klaviyo::new(KlaviyoConfig {
        api_key: Some(Secret::new("pk_test_key")),
        endpoint: server.url(),
        subscribe_list_id: Some("LiSt01".into()),
        ..KlaviyoConfig::default()
    });
    let pipeline = Pipeline::new(vec![live(klaviyo, http(timeout()))], quick_retry());

    pipeline.run(&fixture("purchase.json")).await;
    pipeline.run(&fixture("sign_up.json")).await;
    pipeline.run(&fixture("subscribe.json")).await;

    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/events",
            "/api/events",
            "/api/profile-import",
            "/api/events",
            "/api/profile-subscription-bulk-create-jobs"
        ]
    );
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.header("revision"),
            Some(klaviyo::REVISION),
            "{}",
            request.uri
        );
        assert_eq!(request.header("revision"), Some("2026-07-15"));
        assert_eq!(
            request.header("authorization"),
            Some("Klaviyo-API-Key pk_test_key"),
            "{}",
            request.uri
        );
        assert_eq!(
            request.header("content-type"),
            Some("application/vnd.api+json")
        );
    }

    let purchase = requests[0].json();
    let attributes = &purchase["data"]["attributes"];
    assert_eq!(purchase["data"]["type"], "event");
    assert_eq!(attributes["unique_id"], "000001");
    assert_eq!(attributes["time"], "2026-12-04T11:59:30Z");
    assert_eq!(
        attributes["metric"]["data"]["attributes"]["name"],
        "Placed Order"
    );
    assert_eq!(attributes["value"], json!(59.9));
    assert_eq!(attributes["value_currency"], "USD");
    let profile = &attributes["profile"]["data"]["attributes"];
    // Klaviyo takes identifiers in clear: the email normalised, the phone in E.164.
    assert_eq!(profile["email"], "user@example.com");
    assert_eq!(profile["phone_number"], "+15555550100");
    assert_eq!(profile["external_id"], "C-42");
    assert_eq!(profile["location"]["ip"], CLIENT_IP);
    assert_eq!(profile["location"]["zip"], "94107-1234");
    assert_eq!(attributes["properties"]["OrderId"], "ORDER-1001");
    assert_eq!(attributes["properties"]["Items"][0]["SKU"], "SKU-1");

    let import = requests[2].json();
    assert_eq!(import["data"]["type"], "profile");
    assert_eq!(import["data"]["attributes"]["email"], "user@example.com");
    assert_eq!(import["data"]["attributes"]["phone_number"], "+15555550100");

    let subscription = requests[4].json();
    let job = &subscription["data"];
    assert_eq!(job["type"], "profile-subscription-bulk-create-job");
    assert_eq!(job["relationships"]["list"]["data"]["id"], "LiSt01");
    let subscribed = &job["attributes"]["profiles"]["data"][0]["attributes"];
    assert_eq!(subscribed["email"], "user@example.com");
    assert_eq!(
        subscribed["subscriptions"]["email"]["marketing"]["consent"],
        "SUBSCRIBED"
    );

    let Some(specs) = specs_dir("Klaviyo") else {
        return;
    };
    let checks = [
        (0, "create_event.json", "EventCreateQueryV2"),
        (1, "create_event.json", "EventCreateQueryV2"),
        (2, "create_or_update_profile.json", "ProfileUpsertQuery"),
        (3, "create_event.json", "EventCreateQueryV2"),
        (
            4,
            "bulk_subscribe_profiles.json",
            "SubscriptionCreateJobCreateQuery",
        ),
    ];
    for (index, file, schema) in checks {
        let errors = schema_errors(
            &specs.join("klaviyo").join(file),
            schema,
            &requests[index].json(),
        );
        assert!(
            errors.is_empty(),
            "{} against {schema}: {errors:#?}",
            requests[index].uri
        );
    }
    let mut broken = requests[0].json();
    broken["data"]["attributes"]
        .as_object_mut()
        .expect("attributes")
        .remove("metric");
    let errors = schema_errors(
        &specs.join("klaviyo/create_event.json"),
        "EventCreateQueryV2",
        &broken,
    );
    assert!(
        !errors.is_empty(),
        "an event without a metric must fail the schema"
    );
}

#[tokio::test]
async fn meta_contract() {
    let server = StandIn::start().await;
    server.answer_by_default(
        Scripted::status(200).with_body(r#"{"events_received":1,"messages":[],"fbtrace_id":"x"}"#),
    );
    let meta = Meta::new(MetaConfig {
        pixel_id: Some("123456789".into()),
        access_token: Some(Secret::new("meta-token")),
        endpoint: server.url(),
        test_event_code: Some("TEST123".into()),
        ..MetaConfig::default()
    });
    let pipeline = Pipeline::new(vec![live(meta, http(timeout()))], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(
        request.uri.starts_with("/v25.0/123456789/events?"),
        "{}",
        request.uri
    );
    assert_eq!(query_names(&request.uri), ["access_token"]);
    assert_eq!(request.query("access_token").as_deref(), Some("meta-token"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    assert_eq!(body["test_event_code"], "TEST123");
    let event = &body["data"][0];
    assert_eq!(event["event_name"], "Purchase");
    // The browser's id, byte for byte: leading zeros kept, nothing added.
    assert_eq!(event["event_id"], "000001");
    assert_eq!(event["event_time"], json!(event_secs()));
    assert!(event["event_time"].is_i64());
    assert_eq!(event["action_source"], "website");
    assert!(
        event["event_source_url"]
            .as_str()
            .is_some_and(|u| u.contains("thank-you"))
    );
    let user = &event["user_data"];
    assert_eq!(user["em"], json!([EMAIL_HASH]));
    // Meta hashes the phone as digits only, never with the `+`.
    assert_eq!(user["ph"], json!([PHONE_DIGITS_HASH]));
    assert_ne!(user["ph"], json!([PHONE_PLUS_HASH]));
    assert_eq!(user["fn"], json!([sha256_hex("maryann")]));
    assert_eq!(user["ln"], json!([sha256_hex("oneil2nd")]));
    assert_eq!(user["ct"], json!([sha256_hex("sanfrancisco")]));
    assert_eq!(user["st"], json!([sha256_hex("ca")]));
    assert_eq!(user["zp"], json!([sha256_hex("94107")]));
    assert_eq!(user["country"], json!([sha256_hex("us")]));
    assert_eq!(user["external_id"][0], sha256_hex("c-42"));
    assert_eq!(user["client_ip_address"], CLIENT_IP);
    assert_eq!(user["client_user_agent"], USER_AGENT);
    // A well-formed `_fbc` within its 90 days passes through unchanged.
    assert_eq!(user["fbc"], "fb.1.1796300000000.AbC-d_E123");
    assert_eq!(user["fbp"], "fb.1.1700000000000.1098115397");
    let custom = &event["custom_data"];
    assert_eq!(custom["value"], json!(59.9));
    assert_eq!(custom["currency"], "USD");
    assert_eq!(custom["order_id"], "ORDER-1001");
    assert_eq!(custom["contents"][0]["id"], "SKU-1");
    assert_eq!(custom["contents"][0]["quantity"], json!(2));
    assert!(custom["contents"][0]["quantity"].is_i64());
    assert_eq!(custom["contents"][0]["item_price"], json!(24.95));
    assert_eq!(custom["num_items"], json!(2));
    assert_eq!(outcome.delivery.get("meta", Outcome::Accepted), 1);
}

#[tokio::test]
async fn ga4_contract() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(204));
    let ga4 = Ga4::new(Ga4Config {
        measurement_id: Some("G-ABC123".into()),
        api_secret: Some(Secret::new("ga-secret")),
        endpoint: server.url(),
        ..Ga4Config::default()
    });
    let pipeline = Pipeline::new(vec![live(ga4, http(timeout()))], quick_retry());

    let purchase = pipeline.run(&fixture("purchase.json")).await;
    pipeline.run(&fixture("add_to_cart.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let request = &requests[0];
    assert!(request.uri.starts_with("/mp/collect?"), "{}", request.uri);
    assert_eq!(query_names(&request.uri), ["api_secret", "measurement_id"]);
    assert_eq!(request.query("measurement_id").as_deref(), Some("G-ABC123"));
    assert_eq!(request.query("api_secret").as_deref(), Some("ga-secret"));
    let body = request.json();
    // The id gtag stored in `_ga`, without its `GA1.1.` prefix.
    assert_eq!(body["client_id"], "1234567890.1700000000");
    assert_eq!(body["user_id"], "C-42");
    assert_eq!(body["consent"]["ad_user_data"], "GRANTED");
    assert_eq!(body["consent"]["ad_personalization"], "GRANTED");
    assert_eq!(body["ip_override"], CLIENT_IP);
    let user_data = &body["user_data"];
    assert_eq!(user_data["sha256_email_address"], json!([EMAIL_HASH]));
    // Google hashes the phone in E.164 with the `+`.
    assert_eq!(user_data["sha256_phone_number"], json!([PHONE_PLUS_HASH]));
    let address = &user_data["address"][0];
    assert_eq!(address["sha256_first_name"], sha256_hex("maryann"));
    assert_eq!(address["sha256_last_name"], sha256_hex("oneil nd"));
    assert_eq!(address["sha256_street"], sha256_hex("1 main st"));
    // Google's address fields other than names and street stay in clear.
    assert_eq!(address["city"], "san francisco");
    assert_eq!(address["region"], "ca");
    assert_eq!(address["postal_code"], "94107-1234");
    assert_eq!(address["country"], "US");
    let event = &body["events"][0];
    assert_eq!(event["name"], "purchase");
    assert_eq!(event["timestamp_micros"], json!(event_secs() * 1_000_000));
    assert_eq!(event["timestamp_micros"].to_string().len(), 16);
    let params = &event["params"];
    // The session of the configured stream `ABC123`, not of `OTHER9`, as a number.
    assert_eq!(params["session_id"], json!(1_700_000_000));
    assert!(
        params["engagement_time_msec"]
            .as_i64()
            .is_some_and(|t| t >= 1)
    );
    assert_eq!(params["transaction_id"], "ORDER-1001");
    assert_eq!(params["value"], json!(59.9));
    assert_eq!(params["currency"], "USD");
    assert_eq!(params["items"][0]["item_id"], "SKU-1");
    assert_eq!(params["items"][0]["quantity"], json!(2));
    assert_eq!(purchase.delivery.get("ga4", Outcome::Unverified), 1);
    assert_eq!(purchase.delivery.get("ga4", Outcome::Accepted), 0);

    let cart = requests[1].json();
    assert_eq!(cart["events"][0]["name"], "add_to_cart");
    // The legacy `GS1` session cookie gives the same session id.
    assert_eq!(
        cart["events"][0]["params"]["session_id"],
        json!(1_700_000_000)
    );
    assert!(cart.get("user_data").is_none());
    assert!(cart.get("consent").is_none());
}

#[tokio::test]
async fn tiktok_contract() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(200).with_body(r#"{"code":0,"message":"OK"}"#));
    let tiktok = TikTok::new(TikTokConfig {
        pixel_code: Some("CPIXEL01".into()),
        access_token: Some(Secret::new("tt-token")),
        endpoint: server.url(),
        test_event_code: Some("TEST42".into()),
        ..TikTokConfig::default()
    });
    let pipeline = Pipeline::new(vec![live(tiktok, http(timeout()))], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.uri, "/open_api/v1.3/event/track/");
    assert_eq!(request.header("access-token"), Some("tt-token"));
    assert_eq!(request.header("authorization"), None);
    let body = request.json();
    assert_eq!(body["event_source"], "web");
    assert_eq!(body["event_source_id"], "CPIXEL01");
    assert_eq!(body["test_event_code"], "TEST42");
    let event = &body["data"][0];
    assert_eq!(event["event"], "Purchase");
    assert_eq!(event["event_id"], "000001");
    assert_eq!(event["event_time"], json!(event_secs()));
    let user = &event["user"];
    assert_eq!(user["email"], EMAIL_HASH);
    // TikTok hashes the phone in E.164 with the `+`.
    assert_eq!(user["phone"], PHONE_PLUS_HASH);
    assert_eq!(user["external_id"], sha256_hex("c-42"));
    assert_eq!(user["first_name"], sha256_hex("mary-ann"));
    assert_eq!(user["zip_code"], sha256_hex("94107-1234"));
    assert_eq!(user["city"], "sanfrancisco");
    assert_eq!(user["country"], "us");
    assert_eq!(user["ttclid"], "E.C.P.AbC123");
    assert_eq!(user["ttp"], "ttp-Cookie-1");
    assert_eq!(user["ip"], CLIENT_IP);
    assert_eq!(user["user_agent"], USER_AGENT);
    let properties = &event["properties"];
    assert_eq!(properties["value"], json!(59.9));
    assert_eq!(properties["currency"], "USD");
    assert_eq!(properties["order_id"], "ORDER-1001");
    assert_eq!(properties["content_type"], "product");
    assert_eq!(properties["contents"][0]["content_id"], "SKU-1");
    assert_eq!(properties["contents"][0]["quantity"], json!(2));
    assert_eq!(event["page"]["referrer"], "https://shop.example/checkout");
    assert_eq!(outcome.delivery.get("tiktok", Outcome::Accepted), 1);
}

#[tokio::test]
async fn pinterest_contract() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(200).with_body(
        r#"{"num_events_received":1,"num_events_processed":1,"events":[{"status":"processed"}]}"#,
    ));
    let pinterest = Pinterest::new(PinterestConfig {
        ad_account_id: Some("549755885175".into()),
        access_token: Some(Secret::new("pin-token")),
        endpoint: server.url(),
        test: true,
        ..PinterestConfig::default()
    });
    let pipeline = Pipeline::new(vec![live(pinterest, http(timeout()))], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.uri, "/v5/ad_accounts/549755885175/events?test=true");
    assert_eq!(request.header("authorization"), Some("Bearer pin-token"));
    let body = request.json();
    let event = &body["data"][0];
    assert_eq!(event["event_name"], "checkout");
    assert_eq!(event["action_source"], "web");
    assert_eq!(event["event_time"], json!(event_secs()));
    assert_eq!(event["event_id"], "000001");
    let user = &event["user_data"];
    assert_eq!(user["em"], json!([EMAIL_HASH]));
    // Pinterest hashes the phone as digits only.
    assert_eq!(user["ph"], json!([PHONE_DIGITS_HASH]));
    assert_eq!(user["fn"], json!([sha256_hex("mary-ann")]));
    assert_eq!(user["ct"], json!([sha256_hex("sanfrancisco")]));
    assert_eq!(user["st"], json!([sha256_hex("ca")]));
    assert_eq!(user["zp"], json!([sha256_hex("94107")]));
    assert_eq!(user["country"], json!([sha256_hex("us")]));
    // The epik of the event's own page URL wins over an older `_epik` cookie.
    assert_eq!(user["click_id"], "dj0yJnU9Abc");
    assert_eq!(user["client_ip_address"], CLIENT_IP);
    assert_eq!(user["client_user_agent"], USER_AGENT);
    let custom = &event["custom_data"];
    // Pinterest takes decimals as strings.
    assert_eq!(custom["value"], "59.9");
    assert_eq!(custom["currency"], "USD");
    assert_eq!(custom["order_id"], "ORDER-1001");
    assert_eq!(custom["contents"][0]["item_price"], "24.95");
    assert_eq!(custom["contents"][0]["quantity"], json!(2));
    assert_eq!(custom["num_items"], json!(2));
    assert_eq!(outcome.delivery.get("pinterest", Outcome::Accepted), 1);

    let Some(specs) = specs_dir("Pinterest") else {
        return;
    };
    let errors = schema_errors(
        &specs.join("pinterest/openapi.json"),
        "ConversionEvents",
        &body,
    );
    assert!(errors.is_empty(), "ConversionEvents: {errors:#?}");
    let mut broken = body.clone();
    broken["data"][0]["user_data"] = json!({"ph": [PHONE_DIGITS_HASH]});
    broken["data"][0]["unknown_field"] = json!(1);
    let errors = schema_errors(
        &specs.join("pinterest/openapi.json"),
        "ConversionEvents",
        &broken,
    );
    assert!(
        errors.len() >= 2,
        "user_data without em or IP and user agent, and an unknown field, must fail: {errors:#?}"
    );
}

#[tokio::test]
async fn snapchat_contract() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(200).with_body(r#"{"status":"VALID"}"#));
    let snapchat = Snapchat::new(SnapchatConfig {
        pixel_id: Some("snap-pixel-9".into()),
        access_token: Some(Secret::new("snap-token")),
        endpoint: server.url(),
        ..SnapchatConfig::default()
    });
    let pipeline = Pipeline::new(vec![live(snapchat, http(timeout()))], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(
        request.uri.starts_with("/v3/snap-pixel-9/events?"),
        "{}",
        request.uri
    );
    assert_eq!(query_names(&request.uri), ["access_token"]);
    assert_eq!(request.query("access_token").as_deref(), Some("snap-token"));
    assert_eq!(request.header("authorization"), None);
    let event = &request.json()["data"][0];
    assert_eq!(event["event_name"], "PURCHASE");
    assert_eq!(event["action_source"], "WEB");
    assert_eq!(event["event_id"], "000001");
    assert_eq!(event["event_time"], json!(event_secs()));
    let user = &event["user_data"];
    assert_eq!(user["em"], json!([EMAIL_HASH]));
    // Snap hashes the phone as digits only.
    assert_eq!(user["ph"], json!([PHONE_DIGITS_HASH]));
    assert_eq!(user["fn"], json!([sha256_hex("maryann")]));
    assert_eq!(user["zp"], json!([sha256_hex("94107")]));
    assert_eq!(user["sc_click_id"], "sc-Click-1");
    assert_eq!(user["sc_cookie1"], "scid-Cookie-1");
    assert_eq!(user["client_ip_address"], CLIENT_IP);
    let custom = &event["custom_data"];
    assert_eq!(custom["value"], json!(59.9));
    assert_eq!(custom["currency"], "USD");
    assert_eq!(custom["order_id"], "ORDER-1001");
    assert_eq!(custom["contents"][0]["quantity"], json!(2));
    assert_eq!(outcome.delivery.get("snapchat", Outcome::Accepted), 1);
}

#[tokio::test]
async fn google_ads_contract() {
    let token_server = StandIn::start().await;
    token_server.answer_by_default(
        Scripted::status(200).with_body(r#"{"access_token":"ya29.test","expires_in":3599}"#),
    );
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(200).with_body(r#"{"results":[{},{},{}]}"#));
    let google_ads = GoogleAds::new(GoogleAdsConfig {
        customer_id: Some("1234567890".into()),
        login_customer_id: Some("9876543210".into()),
        conversion_action_id: Some("555".into()),
        enhancement_action_id: Some("777".into()),
        developer_token: Some(Secret::new("dev-token")),
        oauth: Some(GoogleOAuth {
            client_id: "client-1".into(),
            client_secret: Secret::new("client-secret"),
            refresh_token: Secret::new("refresh-1"),
            token_endpoint: format!("{}/token", token_server.url()),
        }),
        endpoint: server.url(),
        ..GoogleAdsConfig::default()
    });
    let token_request = google_ads.token_request().expect("OAuth configured");
    let route = Route {
        destination: std::sync::Arc::new(google_ads),
        transport: std::sync::Arc::new(TokenTransport::new(http(timeout()), token_request)),
        live: true,
    };
    let pipeline = Pipeline::new(vec![route], quick_retry());
    let mut no_click = fixture("gmail.json");
    no_click["event_id"] = json!("gmail-2");
    no_click["context"]["page_url"] = json!("https://shop.example/thanks");

    pipeline.collect(&fixture("purchase.json"), None).await;
    pipeline.collect(&fixture("gmail.json"), None).await;
    pipeline.collect(&fixture("prehashed.json"), None).await;
    pipeline.collect(&no_click, None).await;
    pipeline.process().await;

    let tokens = token_server.requests();
    assert_eq!(tokens.len(), 1, "the access token is reused");
    let form = String::from_utf8_lossy(&tokens[0].body).into_owned();
    assert_eq!(
        tokens[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    for pair in [
        "grant_type=refresh_token",
        "client_id=client-1",
        "client_secret=client-secret",
        "refresh_token=refresh-1",
    ] {
        assert!(
            form.split('&').any(|p| p == pair),
            "{pair} missing from {form}"
        );
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.header("authorization"), Some("Bearer ya29.test"));
        assert_eq!(request.header("developer-token"), Some("dev-token"));
        assert_eq!(request.header("login-customer-id"), Some("9876543210"));
        assert!(request.json()["partialFailure"] == json!(true));
    }
    let clicks = &requests[0];
    assert_eq!(
        clicks.uri,
        "/v22/customers/1234567890:uploadClickConversions"
    );
    let conversions = clicks.json()["conversions"].clone();
    let purchase = &conversions[0];
    assert_eq!(purchase["gclid"], "Cj0KCQ-Gclid_1");
    assert_eq!(
        purchase["conversionAction"],
        "customers/1234567890/conversionActions/555"
    );
    assert_eq!(purchase["conversionDateTime"], "2026-12-04 11:59:30+00:00");
    assert_eq!(purchase["conversionValue"], json!(59.9));
    assert_eq!(purchase["currencyCode"], "USD");
    assert_eq!(purchase["orderId"], "ORDER-1001");
    assert_eq!(purchase["userIdentifiers"][0]["hashedEmail"], EMAIL_HASH);
    assert_eq!(
        purchase["userIdentifiers"][1]["hashedPhoneNumber"],
        PHONE_PLUS_HASH
    );
    assert_eq!(purchase["consent"]["adUserData"], "GRANTED");
    // gbraid and wbraid together are rejected by Google: only gbraid, and no identifiers.
    let braid = &conversions[1];
    assert_eq!(braid["gbraid"], "GB-braid-1");
    assert!(braid.get("wbraid").is_none());
    assert!(braid.get("gclid").is_none());
    assert!(braid.get("userIdentifiers").is_none());
    // Pre-hashed identifiers are passed on (lower-cased), never hashed again.
    let prehashed = &conversions[2];
    assert_eq!(prehashed["userIdentifiers"][0]["hashedEmail"], EMAIL_HASH);
    assert_eq!(
        prehashed["userIdentifiers"][1]["hashedPhoneNumber"],
        PHONE_PLUS_HASH
    );

    let enhancement = &requests[1];
    assert_eq!(
        enhancement.uri,
        "/v22/customers/1234567890:uploadConversionAdjustments"
    );
    let adjustment = &enhancement.json()["conversionAdjustments"][0];
    assert_eq!(adjustment["adjustmentType"], "ENHANCEMENT");
    assert_eq!(adjustment["orderId"], "ORDER-3003");
    assert_eq!(
        adjustment["conversionAction"],
        "customers/1234567890/conversionActions/777"
    );
    // Google drops the dots of a gmail local part; other platforms keep them.
    let gmail = sha256_hex("firstlast@gmail.com");
    assert_eq!(adjustment["userIdentifiers"][0]["hashedEmail"], gmail);
    assert_ne!(gmail, sha256_hex("first.last@gmail.com"));
    assert_eq!(
        adjustment["userIdentifiers"][1]["hashedPhoneNumber"],
        sha256_hex("+447700900123")
    );
    assert_eq!(adjustment["userAgent"], USER_AGENT);
}

#[tokio::test]
async fn microsoft_contract() {
    let server = StandIn::start().await;
    server.answer_by_default(Scripted::status(200).with_body(r#"{"eventsReceived":1}"#));
    let microsoft = Microsoft::new(MicrosoftConfig {
        uet_tag_id: Some("343210".into()),
        api_token: Some(Secret::new("ms-token")),
        endpoint: server.url(),
        ..MicrosoftConfig::default()
    });
    let pipeline = Pipeline::new(vec![live(microsoft, http(timeout()))], quick_retry());

    let outcome = pipeline.run(&fixture("purchase.json")).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.uri, "/v1/343210/events");
    assert_eq!(request.header("authorization"), Some("Bearer ms-token"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let event = &request.json()["data"][0];
    assert_eq!(event["eventType"], "custom");
    assert_eq!(event["eventName"], "purchase");
    assert_eq!(event["eventId"], "000001");
    assert_eq!(event["eventTime"], json!(event_secs()));
    assert_eq!(event["adStorageConsent"], "G");
    let user = &event["userData"];
    assert_eq!(user["em"], EMAIL_HASH);
    assert_eq!(user["ph"], PHONE_DIGITS_HASH);
    assert_eq!(user["msclkid"], "0123456789abcdef0123456789abcdef");
    assert_eq!(user["clientIpAddress"], CLIENT_IP);
    assert_eq!(user["clientUserAgent"], USER_AGENT);
    assert_eq!(user["externalId"], "C-42");
    let custom = &event["customData"];
    assert_eq!(custom["eventValue"], json!(59.9));
    assert_eq!(custom["currency"], "USD");
    assert_eq!(custom["transactionId"], "ORDER-1001");
    assert_eq!(custom["items"][0]["quantity"], json!(2));
    assert_eq!(custom["pageType"], "purchase");
    assert_eq!(outcome.delivery.get("microsoft", Outcome::Accepted), 1);
}
