//! Shopify Web Pixel events mapped to data-layer events: a real journey of 11 standard events
//! (collection view to completed checkout) read from the reference data, and the
//! `/collect/shopify` route that receives them from the pixel sandbox.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use chrono::{TimeZone, Utc};
use http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use revisit_shared::adapters::clock::ManualClock;
use revisit_shared::adapters::memory::MemoryStore;
use revisit_shared::collect::{Collector, CollectorSettings, CorsPolicy, VisitorCookie, router};
use revisit_shared::event::{EventName, EventSource, parse_shopify_event};
use revisit_tests::reference_dir;

const CLIENT_ID: &str = "ece6cea2-0914-4dcd-8345-8d64ce97b76b";
const EMAIL: &str = "redacted.buyer@example.com";
const CHECKOUT_URL: &str =
    "https://shoperzoney.myshopify.com/checkouts/cn/c1-da3335b5daea35f97157d14129d5627f";

/// Reads the journey's events, or returns `None` with a notice when the reference data is not
/// beside the repository.
fn journey() -> Option<Vec<Value>> {
    let path: PathBuf =
        reference_dir()?.join("data/shopify-pixel/customer_events_one_journey.json");
    if !path.is_file() {
        eprintln!(
            "notice: {} is absent; the journey test is skipped",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&path).expect("read the journey");
    let events: Value = serde_json::from_str(&text).expect("the journey is JSON");
    Some(events.as_array().expect("the journey is an array").clone())
}

/// What one journey event must become.
struct Expected {
    shopify_name: &'static str,
    name: EventName,
    event_id: &'static str,
    page_url: String,
    product_count: usize,
    first_variant_id: &'static str,
    first_product_id: &'static str,
    value: Option<f64>,
    email: Option<&'static str>,
}

fn expectations() -> Vec<Expected> {
    let store = "https://shoperzoney.myshopify.com";
    let bracelet = ("43751530397931", "7992983748843");
    let checkout = |step: &str| format!("{CHECKOUT_URL}/{step}");
    let row = |shopify_name,
               name,
               event_id,
               page_url: String,
               count,
               ids: (&'static str, &'static str),
               value,
               email| {
        Expected {
            shopify_name,
            name,
            event_id,
            page_url,
            product_count: count,
            first_variant_id: ids.0,
            first_product_id: ids.1,
            value,
            email,
        }
    };
    vec![
        row(
            "collection_viewed",
            EventName::ViewItemList,
            "sh-0259a238-2A20-436E-D1AC-731D262C99FD",
            format!("{store}/collections/diwali-collections"),
            9,
            ("43218082857195", "7808926384363"),
            None,
            None,
        ),
        row(
            "search_submitted",
            EventName::ViewSearchResults,
            "sh-025b0413-B717-4033-5CC2-1CDE253D8036",
            format!("{store}/search?q=st&options%5Bprefix%5D=last"),
            9,
            ("43751535771883", "7992984764651"),
            None,
            None,
        ),
        row(
            "product_viewed",
            EventName::ViewItem,
            "sh-024b01ff-8DDC-45F4-20DC-E9E3078E8B14",
            format!("{store}/products/chain-bracelet"),
            1,
            bracelet,
            Some(42.99),
            None,
        ),
        row(
            "product_added_to_cart",
            EventName::AddToCart,
            "sh-024cb97f-43E7-4A7E-BBB6-94E4B15ED9D6",
            format!("{store}/products/chain-bracelet"),
            1,
            bracelet,
            Some(42.99),
            None,
        ),
        row(
            "cart_viewed",
            EventName::ViewCart,
            "shu-025f3eb4-483D-4008-6F7F-DD41C6B43630",
            format!("{store}/cart"),
            1,
            ("43218082857195", "7808926384363"),
            Some(50.0),
            None,
        ),
        row(
            "checkout_started",
            EventName::BeginCheckout,
            "sh-024dd1f5-C102-4C85-4EC1-9E1EA6A033DD",
            checkout("information"),
            1,
            bracelet,
            Some(46.86),
            None,
        ),
        row(
            "checkout_contact_info_submitted",
            EventName::UserData,
            "sh-025586c4-2962-491A-1A9F-E278040EBC12",
            checkout("information"),
            1,
            bracelet,
            Some(46.86),
            Some(EMAIL),
        ),
        row(
            "checkout_address_info_submitted",
            EventName::UserData,
            "sh-02571811-009E-4AEA-8F7A-1D0B3AB143E1",
            checkout("information"),
            1,
            bracelet,
            Some(50.73),
            Some(EMAIL),
        ),
        row(
            "checkout_shipping_info_submitted",
            EventName::AddShippingInfo,
            "sh-02581c02-1061-491B-BC7A-2A538857CC06",
            checkout("shipping"),
            1,
            bracelet,
            Some(50.73),
            Some(EMAIL),
        ),
        row(
            "payment_info_submitted",
            EventName::AddPaymentInfo,
            "sh-0259b26b-39CD-4836-8000-A8D0D2AFBC32",
            checkout("processing"),
            1,
            bracelet,
            Some(50.73),
            Some(EMAIL),
        ),
        row(
            "checkout_completed",
            EventName::Purchase,
            "sh-0259ccd2-828F-4637-02A0-DCACCD76F620",
            checkout("post-purchase"),
            1,
            bracelet,
            Some(50.73),
            Some(EMAIL),
        ),
    ]
}

#[test]
fn journey_maps_names_ids_products_values() {
    let Some(events) = journey() else { return };
    let expected = expectations();
    assert_eq!(events.len(), expected.len());

    for (index, (event, want)) in events.iter().zip(&expected).enumerate() {
        let label = format!("event {index} ({})", want.shopify_name);
        assert_eq!(event["name"], want.shopify_name, "{label}: journey order");

        let parsed = parse_shopify_event(event, &format!("[{index}]"))
            .unwrap_or_else(|error| panic!("{label}: {error}"));

        let item = &parsed.item;
        assert_eq!(item.name, want.name, "{label}: name");
        assert_eq!(item.event_id.as_deref(), Some(want.event_id), "{label}: id");
        assert_eq!(
            item.page.url.as_deref(),
            Some(want.page_url.as_str()),
            "{label}: url"
        );
        assert_eq!(
            parsed.client_id.as_deref(),
            Some(CLIENT_ID),
            "{label}: client"
        );
        assert!(item.event_time.is_some(), "{label}: timestamp");
        let ecommerce = item
            .ecommerce
            .as_ref()
            .expect("every journey event has products");
        assert_eq!(
            ecommerce.products.len(),
            want.product_count,
            "{label}: products"
        );
        let first = &ecommerce.products[0];
        assert_eq!(
            first.variant_id.as_deref(),
            Some(want.first_variant_id),
            "{label}"
        );
        assert_eq!(
            first.product_id.as_deref(),
            Some(want.first_product_id),
            "{label}"
        );
        assert!(first.price.is_some(), "{label}: price");
        assert_eq!(ecommerce.value, want.value, "{label}: value");
        assert_eq!(
            ecommerce.currency.as_deref(),
            Some("INR"),
            "{label}: currency"
        );
        assert_eq!(
            item.user.customer_email.as_deref(),
            want.email,
            "{label}: email"
        );
        assert_eq!(
            item.user.customer_phone, None,
            "{label}: the journey has no phone"
        );
    }
}

#[test]
fn journey_checkout_details() {
    let Some(events) = journey() else { return };

    let parse = |index: usize| parse_shopify_event(&events[index], "").expect("valid event");
    let search = parse(1).item;
    let added = parse(3).item;
    let address = parse(7).item;
    let completed = parse(10).item;

    assert_eq!(search.search_term.as_deref(), Some("st"));
    let line = &added.ecommerce.as_ref().expect("cart line").products[0];
    assert_eq!(line.name.as_deref(), Some("7 Shakra Bracelet"));
    assert_eq!(line.brand.as_deref(), Some("Company 123"));
    assert_eq!(line.category.as_deref(), Some("Bracelet"));
    assert_eq!(line.variant.as_deref(), Some("Blue"));
    assert_eq!(line.quantity, Some(1.0));
    assert_eq!(line.id, None, "the variant has no SKU");
    assert_eq!(line.best_id(), Some("43751530397931"));
    assert!(
        line.image
            .as_deref()
            .is_some_and(|src| src.starts_with("https://"))
    );
    assert_eq!(address.user.customer_city.as_deref(), Some("Tembhari"));
    assert_eq!(address.user.customer_zip.as_deref(), Some("441122"));
    assert_eq!(address.user.customer_country_code.as_deref(), Some("IN"));
    assert_eq!(address.user.customer_province_code.as_deref(), Some("MH"));
    let order = completed.ecommerce.expect("checkout block");
    assert_eq!(order.order_id.as_deref(), Some("5396439498987"));
    assert_eq!(order.tax, Some(7.74));
    assert_eq!(order.shipping, Some(0.0));
    assert_eq!(order.products[0].quantity, Some(1.0));
    assert_eq!(
        completed.event_time,
        Utc.with_ymd_and_hms(2023, 8, 17, 7, 9, 17)
            .single()
            .map(|time| time + chrono::Duration::milliseconds(90))
    );
}

struct Harness {
    store: Arc<MemoryStore>,
    cookie: VisitorCookie,
    routes: axum::Router,
}

fn harness() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let cookie = VisitorCookie::new(
        "rv_uid",
        b"journey-test-key-journey-test-key",
        "shop.example",
    );
    let settings = CollectorSettings {
        cookie: cookie.clone(),
        cors: CorsPolicy::new(["https://shop.example".to_owned()]),
        trusted_proxy_hops: 0,
    };
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2023, 8, 17, 8, 0, 0)
            .single()
            .expect("valid time"),
    ));
    let collector = Collector::new(settings, store.clone(), store.clone(), clock);
    Harness {
        store,
        cookie,
        routes: router(Arc::new(collector)),
    }
}

async fn post(
    routes: &axum::Router,
    path: &str,
    origin: &str,
    cookie: Option<&str>,
    body: String,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut request = Request::post(path)
        .header("origin", origin)
        .header("content-type", "text/plain;charset=UTF-8");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let request = request.body(Body::from(body)).expect("request");
    let response = routes
        .clone()
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn sandbox_post_lands_on_one_visitor() {
    let Some(events) = journey() else { return };
    let harness = harness();
    let body = Value::Array(events.clone()).to_string();

    let (status, headers, answer) =
        post(&harness.routes, "/collect/shopify", "null", None, body).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 11);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers.get("access-control-allow-credentials").is_none());
    let queued = harness.store.take_queued();
    assert_eq!(queued.len(), 11);
    let visitor = harness.cookie.visitor_for_client_id(CLIENT_ID);
    for event in &queued {
        assert_eq!(event.visitor_id, visitor, "{}", event.event_id);
        assert_eq!(
            event.source,
            EventSource::ShopifyPixel,
            "{}",
            event.event_id
        );
    }
    assert_eq!(queued[10].name, EventName::Purchase);
    assert_eq!(
        queued[10].event_id,
        "sh-0259ccd2-828F-4637-02A0-DCACCD76F620"
    );

    let single = events[2].to_string();
    let (status, _, again) = post(&harness.routes, "/collect/shopify", "null", None, single).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["visitor_id"], visitor.as_str());
}

#[tokio::test]
async fn visitor_cookie_wins_over_client_id() {
    let Some(events) = journey() else { return };
    let harness = harness();
    let known = revisit_shared::VisitorId::random();
    let issued = harness.cookie.issue(&known);
    let pair = issued.split(';').next().expect("name=value");

    let (status, headers, answer) = post(
        &harness.routes,
        "/collect/shopify",
        "https://shop.example",
        Some(pair),
        events[0].to_string(),
    )
    .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["visitor_id"], known.as_str());
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
}

#[tokio::test]
async fn shopify_route_rejects_foreign_origin() {
    let harness = harness();
    let body = r#"{"name":"page_viewed","clientId":"c-1"}"#.to_owned();

    let (status, headers, _) = post(
        &harness.routes,
        "/collect/shopify",
        "https://evil.example",
        None,
        body,
    )
    .await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("access-control-allow-origin").is_none());
    assert!(harness.store.take_queued().is_empty());
}

#[tokio::test]
async fn data_layer_route_rejects_opaque_origin() {
    let harness = harness();
    let body = r#"{"event":"dl_user_data"}"#.to_owned();

    let (status, headers, _) = post(&harness.routes, "/collect", "null", None, body).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn unknown_shopify_event_is_quarantined() {
    let harness = harness();
    let body = r#"[{"name":"page_viewed","clientId":"c-1"},{"name":"alert_displayed"}]"#.to_owned();

    let (status, _, answer) = post(&harness.routes, "/collect/shopify", "null", None, body).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert_eq!(answer["rejected"][0]["errors"][0]["path"], "[1].name");
    assert_eq!(harness.store.quarantined().len(), 1);
}

#[tokio::test]
async fn opaque_preflight_allows_post_without_credentials() {
    let harness = harness();
    let request = Request::options("/collect/shopify")
        .header("origin", "null")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .expect("request");

    let response = harness
        .routes
        .clone()
        .oneshot(request)
        .await
        .expect("answer");

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["access-control-allow-methods"], "POST, OPTIONS");
    assert!(headers.get("access-control-allow-credentials").is_none());
}
