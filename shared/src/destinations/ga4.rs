//! GA4 Measurement Protocol: `POST /mp/collect?measurement_id=…&api_secret=…` with up to 25
//! events of one browser per request. The client id comes from `_ga`, the session id from
//! `_ga_<stream>`, and user-provided data is hashed after Google's normalisation.
//! Contract: Google's Measurement Protocol reference, sending-events and uid-data pages.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::hashing::{self, email_hash, field_hash, phone_hash};
use super::mapping::{self, put};
use super::{
    Destination, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse, Verdict,
    amount, classify_status, platform_error, quantity,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, Purpose};
use crate::identity::sha256_hex;
use crate::profile::keys;

pub const DEFAULT_ENDPOINT: &str = "https://www.google-analytics.com";
/// Measurement Protocol's maximum events per request.
const MAX_BATCH: usize = 25;
/// Measurement Protocol rejects bodies of 130 kB or more.
const MAX_BODY_BYTES: usize = 130_000;
/// Events may be backdated up to 72 hours.
const MAX_AGE_HOURS: i64 = 72;
/// GA4 counts a user as active only with a positive engagement time. The server does not see
/// engagement, so it sends the smallest positive value.
const ENGAGEMENT_TIME_MSEC: i64 = 1;

/// Settings of the GA4 destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Ga4Config {
    /// Web stream measurement id such as `G-ABC123`; the `_ga_<stream>` session cookie of
    /// this stream supplies the session id.
    pub measurement_id: Option<String>,
    /// API secret created under the same stream as `measurement_id`.
    pub api_secret: Option<Secret>,
    /// `https://www.google-analytics.com`, or `https://region1.google-analytics.com` for EU
    /// collection.
    pub endpoint: String,
    /// Sends to the validation server (`/debug/mp/collect`), which records nothing and
    /// returns validation messages.
    pub debug: bool,
    /// Whether page views (`dl_user_data`) are sent as `page_view`. Google recommends leaving
    /// page views to the tag, so this is off by default.
    pub send_page_views: bool,
    pub retry_budget: Option<Duration>,
}

impl Default for Ga4Config {
    fn default() -> Self {
        Self {
            measurement_id: None,
            api_secret: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            debug: false,
            send_page_views: false,
            retry_budget: None,
        }
    }
}

/// The GA4 Measurement Protocol destination.
#[derive(Debug, Clone)]
pub struct Ga4 {
    config: Ga4Config,
}

impl Ga4 {
    pub fn new(config: Ga4Config) -> Self {
        Self { config }
    }

    /// GA4's recommended event name for a data-layer event.
    pub fn event_name(name: EventName) -> &'static str {
        match name {
            EventName::UserData => "page_view",
            EventName::ViewItemList => "view_item_list",
            EventName::ViewSearchResults => "search",
            EventName::SelectItem => "select_item",
            EventName::ViewItem => "view_item",
            EventName::AddToCart => "add_to_cart",
            EventName::RemoveFromCart => "remove_from_cart",
            EventName::ViewCart => "view_cart",
            EventName::BeginCheckout => "begin_checkout",
            EventName::AddShippingInfo => "add_shipping_info",
            EventName::AddPaymentInfo => "add_payment_info",
            EventName::Purchase => "purchase",
            EventName::SignUp => "sign_up",
            EventName::Login => "login",
            EventName::Subscribe => "generate_lead",
        }
    }

    /// Returns the stream id of the configured measurement id: `G-ABC123` gives `ABC123`.
    fn stream(&self) -> Option<&str> {
        self.config
            .measurement_id
            .as_deref()
            .map(|id| id.strip_prefix("G-").unwrap_or(id))
    }

    /// Reads the session id from the `_ga_<stream>` cookie of the configured stream. Without
    /// a configured stream (outbox mode) the latest session among the visitor's streams is used.
    pub fn session_id(&self, event: &EnrichedEvent) -> Option<i64> {
        let sessions = event.ga_sessions();
        match self.stream() {
            Some(stream) => sessions.get(stream).map(|session| session.session_id),
            None => sessions.values().map(|session| session.session_id).max(),
        }
    }

    fn event_object(&self, event: &EnrichedEvent, now: DateTime<Utc>) -> Value {
        let collected = &event.event;
        let mut params = Map::new();
        if let Some(session) = self.session_id(event) {
            params.insert("session_id".into(), json!(session));
        }
        params.insert("engagement_time_msec".into(), json!(ENGAGEMENT_TIME_MSEC));
        put(&mut params, "page_location", collected.page.url.clone());
        put(
            &mut params,
            "page_referrer",
            collected.page.referrer.clone(),
        );
        put(&mut params, "page_title", collected.page.title.clone());
        put(&mut params, "search_term", collected.search_term.clone());
        if let Some(value) = mapping::value(event) {
            // GA4 requires a currency whenever a value is set.
            if let Some(currency) = mapping::currency(event) {
                params.insert("value".into(), amount(value));
                params.insert("currency".into(), json!(currency));
            }
        }
        if collected.name == EventName::Purchase {
            // GA4 drops a purchase whose transaction_id it has seen before, which is what
            // deduplicates it against the tag's purchase (it sends the order id). An empty
            // value would merge every purchase, so the event id replaces a missing order id.
            let transaction = mapping::order_id(event).unwrap_or(&collected.event_id);
            params.insert("transaction_id".into(), json!(transaction));
            if let Some(ecommerce) = &collected.ecommerce {
                put(&mut params, "tax", ecommerce.tax.map(amount));
                put(&mut params, "shipping", ecommerce.shipping.map(amount));
                put(&mut params, "coupon", ecommerce.coupon.clone());
            }
        }
        if let Some(list) = collected.ecommerce.as_ref().and_then(|e| e.list.clone()) {
            params.insert("item_list_name".into(), json!(list));
        }
        let items = items(event);
        if !items.is_empty() {
            params.insert("items".into(), Value::Array(items));
        }
        if self.config.debug {
            params.insert("debug_mode".into(), json!(true));
        }
        // Microseconds, per event: a request-level timestamp is not honoured by every GA4
        // processing path, an event-level one is.
        let micros = collected.event_time.min(now).timestamp_micros();
        json!({
            "name": Self::event_name(collected.name),
            "params": params,
            "timestamp_micros": micros,
        })
    }

    fn request(&self, group: &[&EnrichedEvent], now: DateTime<Utc>) -> OutboundRequest {
        let first = group[0];
        let mut body = Map::new();
        body.insert("client_id".into(), json!(client_id(first)));
        let user_id = first.identity_value(keys::CUSTOMER_ID);
        put(&mut body, "user_id", user_id);
        if let Some(granted) = mapping::marketing_consent(first) {
            let status = mapping::google_consent(granted);
            body.insert(
                "consent".into(),
                json!({"ad_user_data": status, "ad_personalization": status}),
            );
        }
        // Google requires user_id with user_data, and user data is for ads: it is sent only
        // when the page did not deny marketing consent.
        if user_id.is_some() && mapping::marketing_consent(first) != Some(false) {
            let data = user_data(first);
            if !data.is_empty() {
                body.insert("user_data".into(), Value::Object(data));
            }
        }
        put(&mut body, "ip_override", first.event.client.ip.clone());
        let events: Vec<Value> = group.iter().map(|e| self.event_object(e, now)).collect();
        body.insert("events".into(), Value::Array(events));
        let path = if self.config.debug {
            "/debug/mp/collect"
        } else {
            "/mp/collect"
        };
        let measurement = self
            .config
            .measurement_id
            .as_deref()
            .unwrap_or("{measurement_id}");
        let secrets = self
            .config
            .api_secret
            .iter()
            .map(|secret| (SecretPlacement::Query("api_secret".into()), secret.clone()))
            .collect();
        OutboundRequest {
            destination: "ga4",
            operation: "collect",
            method: http::Method::POST,
            url: format!(
                "{}{path}?measurement_id={measurement}",
                self.config.endpoint.trim_end_matches('/')
            ),
            headers: vec![("content-type".into(), "application/json".into())],
            secrets,
            body: Value::Object(body),
            event_ids: group.iter().map(|e| e.event.event_id.clone()).collect(),
        }
    }

    /// Splits a group whose body would reach GA4's size limit.
    fn sized_requests(&self, group: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest> {
        let request = self.request(group, now);
        let size = serde_json::to_vec(&request.body).map_or(0, |body| body.len());
        if size < MAX_BODY_BYTES || group.len() == 1 {
            return vec![request];
        }
        let (left, right) = group.split_at(group.len() / 2);
        let mut requests = self.sized_requests(left, now);
        requests.extend(self.sized_requests(right, now));
        requests
    }
}

impl Destination for Ga4 {
    fn name(&self) -> &'static str {
        "ga4"
    }

    fn purposes(&self) -> &'static [Purpose] {
        &[Purpose::Analytics]
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn max_age(&self) -> Option<chrono::Duration> {
        Some(chrono::Duration::hours(MAX_AGE_HOURS))
    }

    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        if event.event.name == EventName::UserData && !self.config.send_page_views {
            return Err(Skip::NotMapped);
        }
        Ok(())
    }

    /// Builds one request per browser, user id and consent (all three are request-level
    /// fields), each with at most 25 events and under 130 kB.
    fn build(&self, events: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest> {
        type Key<'a> = (String, Option<&'a str>, Option<bool>);
        let mut groups: BTreeMap<Key, Vec<&EnrichedEvent>> = BTreeMap::new();
        for event in events {
            let user_id = event.identity_value(keys::CUSTOMER_ID);
            let key = (client_id(event), user_id, mapping::marketing_consent(event));
            groups.entry(key).or_default().push(event);
        }
        groups
            .values()
            .flat_map(|group| self.sized_requests(group, now))
            .collect()
    }

    /// Counts a 2xx as unverified, because `/mp/collect` returns 2xx even for invalid
    /// payloads. The validation server lists its findings, which reject the request.
    fn classify(&self, _request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        if !(200..300).contains(&response.status) {
            return classify_status(response);
        }
        if !self.config.debug {
            return Verdict::Unverified;
        }
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        match parsed["validationMessages"].as_array() {
            Some(messages) if messages.is_empty() => Verdict::Accepted,
            Some(messages) => Verdict::Rejected {
                reason: format!(
                    "validation server: {}",
                    platform_error(&Value::Array(messages.clone()).to_string())
                ),
            },
            None => Verdict::Unverified,
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }
}

/// Returns the GA4 client id: the one gtag stored in `_ga`, so server events join the
/// browser's user and session. A browser without `_ga` gets `<digits>.<unix seconds>`, the
/// format gtag uses, derived from the visitor id and first-seen time so that it is stable for
/// the visitor. An email or phone never goes into it.
pub fn client_id(event: &EnrichedEvent) -> String {
    if let Some(id) = event.ga_client_id() {
        return id;
    }
    let digest = sha256_hex(event.event.visitor_id.as_str());
    let random = u32::from_str_radix(&digest[..8], 16).unwrap_or_default();
    let since = event.visitor_since_ms.div_euclid(1000);
    format!("{random}.{since}")
}

/// Builds `user_data` after Google's normalisation. Email (gmail dots dropped), phone (E.164
/// with `+`) and names (without digits or symbols) are hashed. City, region, postal code and
/// country stay in clear.
fn user_data(event: &EnrichedEvent) -> Map<String, Value> {
    let mut data = Map::new();
    if let Some(email) = email_hash(event, hashing::google_email) {
        data.insert("sha256_email_address".into(), json!([email]));
    }
    if let Some(phone) = phone_hash(event, hashing::phone_e164) {
        data.insert("sha256_phone_number".into(), json!([phone]));
    }
    let address = google_address(event, "sha256_");
    if !address.is_empty() {
        data.insert("address".into(), json!([address]));
    }
    data
}

/// Google's address fields: names and street hashed (keys prefixed with `hashed_prefix`),
/// city, region, postal code and country in clear.
pub(crate) fn google_address(event: &EnrichedEvent, hashed_prefix: &str) -> Map<String, Value> {
    let mut address = Map::new();
    let hashed = [
        (
            "first_name",
            keys::FIRST_NAME,
            hashing::letters_name as hashing::Rule,
        ),
        ("last_name", keys::LAST_NAME, hashing::letters_name),
        ("street", keys::ADDRESS1, hashing::lower_text),
    ];
    for (name, key, rule) in hashed {
        put(
            &mut address,
            &format!("{hashed_prefix}{name}"),
            field_hash(event, key, rule),
        );
    }
    if address.is_empty() {
        return address;
    }
    put(
        &mut address,
        "city",
        hashing::field_clear(event, keys::CITY, hashing::letters_name),
    );
    put(
        &mut address,
        "region",
        hashing::field_clear(event, keys::REGION, hashing::lower_text),
    );
    put(&mut address, "postal_code", event.identity_value(keys::ZIP));
    put(&mut address, "country", event.identity_value(keys::COUNTRY));
    address
}

fn items(event: &EnrichedEvent) -> Vec<Value> {
    mapping::products(event)
        .iter()
        .filter(|product| product.best_id().is_some() || product.name.is_some())
        .map(|product| {
            let mut item = Map::new();
            put(&mut item, "item_id", product.best_id());
            put(&mut item, "item_name", product.name.as_deref());
            put(&mut item, "item_brand", product.brand.as_deref());
            put(&mut item, "item_category", product.category.as_deref());
            put(&mut item, "item_variant", product.variant.as_deref());
            put(&mut item, "price", product.price.map(amount));
            item.insert(
                "quantity".into(),
                json!(quantity(product.quantity_or_one())),
            );
            Value::Object(item)
        })
        .collect()
}
