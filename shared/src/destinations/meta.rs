//! Meta Conversions API: `POST /{version}/{pixel_id}/events` with up to 1,000 events. Personal
//! fields are normalised and SHA-256 hashed; IP, user agent, `fbc` and `fbp` stay in clear.
//! Contract: Meta's Conversions API parameter reference and facebook-python-business-sdk.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::hashing::{self, email_hash, field_hash, hash_with, phone_hash};
use super::{
    Destination, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse, Verdict,
    amount, classify_status, event_ids, platform_error, quantity,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, Purpose};
use crate::identity::{platform_ids, sha256_hex};
use crate::profile::keys;

pub const DEFAULT_ENDPOINT: &str = "https://graph.facebook.com";
/// Graph API version of facebook-python-business-sdk at the time of writing.
pub const DEFAULT_API_VERSION: &str = "v25.0";
/// Meta rejects a whole request when any event in it is older than 7 days.
const MAX_AGE_DAYS: i64 = 7;
/// Meta's maximum number of events per request.
const MAX_BATCH: usize = 1000;

/// Settings of the Meta destination.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaConfig {
    /// Dataset (pixel) id; required to send, shown as `{pixel_id}` in the outbox until set.
    pub pixel_id: Option<String>,
    /// Conversions API access token; without it requests go to the outbox only.
    pub access_token: Option<Secret>,
    pub endpoint: String,
    pub api_version: String,
    /// Code from Events Manager's Test Events tab; events then show there only.
    pub test_event_code: Option<String>,
    /// Flags every event for Limited Data Use (`data_processing_options: ["LDU"]`) and lets
    /// Meta geolocate the state it applies to.
    pub limited_data_use: bool,
    /// Time one request may spend in attempts and waits.
    pub retry_budget: Option<Duration>,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            pixel_id: None,
            access_token: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            api_version: DEFAULT_API_VERSION.into(),
            test_event_code: None,
            limited_data_use: false,
            retry_budget: None,
        }
    }
}

/// The Meta Conversions API destination.
#[derive(Debug, Clone)]
pub struct Meta {
    config: MetaConfig,
}

impl Meta {
    pub fn new(config: MetaConfig) -> Self {
        Self { config }
    }

    /// Meta's event name: a standard event where one exists, otherwise a custom name.
    pub fn event_name(name: EventName) -> &'static str {
        match name {
            EventName::UserData => "PageView",
            EventName::ViewItemList => "ViewCategory",
            EventName::ViewSearchResults => "Search",
            EventName::SelectItem => "SelectItem",
            EventName::ViewItem => "ViewContent",
            EventName::AddToCart => "AddToCart",
            EventName::RemoveFromCart => "RemoveFromCart",
            EventName::ViewCart => "ViewCart",
            EventName::BeginCheckout => "InitiateCheckout",
            EventName::AddShippingInfo => "AddShippingInfo",
            EventName::AddPaymentInfo => "AddPaymentInfo",
            EventName::Purchase => "Purchase",
            EventName::SignUp => "CompleteRegistration",
            EventName::Login => "Login",
            EventName::Subscribe => "Lead",
        }
    }

    fn event(&self, event: &EnrichedEvent, now: DateTime<Utc>) -> Value {
        let collected = &event.event;
        let mut object = Map::new();
        object.insert("event_name".into(), json!(Self::event_name(collected.name)));
        // Unix seconds, never after the send time (browser clocks run ahead).
        object.insert(
            "event_time".into(),
            json!(collected.event_time.min(now).timestamp()),
        );
        object.insert("event_id".into(), json!(collected.event_id));
        object.insert("action_source".into(), json!("website"));
        if let Some(url) = &collected.page.url {
            object.insert("event_source_url".into(), json!(url));
        }
        if let Some(referrer) = &collected.page.referrer {
            object.insert("referrer_url".into(), json!(referrer));
        }
        object.insert("user_data".into(), user_data(event));
        let custom = custom_data(event);
        if !custom.is_empty() {
            object.insert("custom_data".into(), Value::Object(custom));
        }
        if self.config.limited_data_use {
            // Country and state 0 ask Meta to geolocate (Meta's data processing options page).
            object.insert("data_processing_options".into(), json!(["LDU"]));
            object.insert("data_processing_options_country".into(), json!(0));
            object.insert("data_processing_options_state".into(), json!(0));
        }
        Value::Object(object)
    }
}

/// Graph API error codes that mean "try later": 1 and 2 are transient, 4, 17, 32, 341 and
/// 613 are rate limits (Graph API error-handling guide).
const RETRY_LATER_CODES: [i64; 7] = [1, 2, 4, 17, 32, 341, 613];

impl Destination for Meta {
    fn name(&self) -> &'static str {
        "meta"
    }

    fn purposes(&self) -> &'static [Purpose] {
        &[Purpose::Marketing]
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn max_age(&self) -> Option<chrono::Duration> {
        Some(chrono::Duration::days(MAX_AGE_DAYS))
    }

    /// Website events need the browser's user agent and the page URL (Meta's server-event
    /// parameters): without them Meta rejects the event.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        let has_agent = event
            .event
            .client
            .user_agent
            .as_deref()
            .is_some_and(|ua| !ua.is_empty());
        if has_agent && event.event.page.url.is_some() {
            Ok(())
        } else {
            Err(Skip::Unidentified)
        }
    }

    /// Meta answers 2xx for a valid payload. A Graph error with `is_transient` or a
    /// throttling code is retried whatever its HTTP status; other 4xx are rejected.
    fn classify(&self, _request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        if (200..300).contains(&response.status) {
            return Verdict::Accepted;
        }
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        let error = &parsed["error"];
        let code = error["code"].as_i64();
        let transient = error["is_transient"].as_bool() == Some(true)
            || code.is_some_and(|code| RETRY_LATER_CODES.contains(&code));
        if transient {
            return Verdict::Retry {
                after: response.retry_after,
                reason: format!("HTTP {} Graph error {}", response.status, code.unwrap_or(0)),
            };
        }
        match classify_status(response) {
            Verdict::Rejected { .. } if !error.is_null() => Verdict::Rejected {
                reason: format!(
                    "HTTP {} Graph error {} subcode {}: {}",
                    response.status,
                    code.unwrap_or(0),
                    error["error_subcode"].as_i64().unwrap_or(0),
                    platform_error(error["message"].as_str().unwrap_or_default())
                ),
            },
            other => other,
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }

    fn build(&self, events: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest> {
        if events.is_empty() {
            return Vec::new();
        }
        let mut body = json!({
            "data": events.iter().map(|event| self.event(event, now)).collect::<Vec<_>>(),
        });
        if let Some(code) = &self.config.test_event_code {
            body["test_event_code"] = json!(code);
        }
        let pixel = self.config.pixel_id.as_deref().unwrap_or("{pixel_id}");
        let secrets = self
            .config
            .access_token
            .iter()
            .map(|token| (SecretPlacement::Query("access_token".into()), token.clone()))
            .collect();
        vec![OutboundRequest {
            destination: "meta",
            operation: "events",
            method: http::Method::POST,
            url: format!(
                "{}/{}/{pixel}/events",
                self.config.endpoint.trim_end_matches('/'),
                self.config.api_version
            ),
            headers: vec![("content-type".into(), "application/json".into())],
            secrets,
            body,
            event_ids: event_ids(events),
        }]
    }
}

fn user_data(event: &EnrichedEvent) -> Value {
    let mut user = Map::new();
    let country = event.identity_value(keys::COUNTRY);
    let mut hashed = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            user.insert(name.into(), json!([value]));
        }
    };
    // Meta hashes the phone as digits only with the country code and no `+`.
    hashed("em", email_hash(event, hashing::email));
    hashed("ph", phone_hash(event, hashing::phone_digits));
    let field = |key: &str, rule: hashing::Rule| field_hash(event, key, rule);
    hashed("fn", field(keys::FIRST_NAME, hashing::meta_name));
    hashed("ln", field(keys::LAST_NAME, hashing::meta_name));
    hashed("ct", field(keys::CITY, hashing::meta_city));
    hashed("st", field(keys::REGION, hashing::state_code));
    hashed(
        "zp",
        event
            .identity_value(keys::ZIP)
            .and_then(|zip| hash_with(zip, |z| hashing::meta_zip(z, country))),
    );
    hashed("country", field(keys::COUNTRY, hashing::country_code));
    let mut external_ids = Vec::new();
    if let Some(id) = event
        .identity_value(keys::CUSTOMER_ID)
        .and_then(|id| hash_with(id, hashing::external_id))
    {
        external_ids.push(id);
    }
    external_ids.push(sha256_hex(event.event.visitor_id.as_str()));
    user.insert("external_id".into(), json!(external_ids));
    if let Some(ip) = &event.event.client.ip {
        user.insert("client_ip_address".into(), json!(ip));
    }
    if let Some(agent) = &event.event.client.user_agent {
        user.insert("client_user_agent".into(), json!(agent));
    }
    if let Some(fbc) = event
        .click_id("fbc")
        .filter(|fbc| platform_ids::is_valid_fbc(&fbc.value))
    {
        user.insert("fbc".into(), json!(fbc.value));
    }
    // A malformed `_fbc` (no fbclid after the last dot) makes Meta reject the whole event, so
    // only a well-formed value is sent; `fbp` was validated when it was stored.
    if let Some(fbp) = event.identity_value(keys::FBP) {
        user.insert("fbp".into(), json!(fbp));
    }
    Value::Object(user)
}

fn custom_data(event: &EnrichedEvent) -> Map<String, Value> {
    let collected = &event.event;
    let mut custom = Map::new();
    if let Some(term) = &collected.search_term {
        custom.insert("search_string".into(), json!(term));
    }
    let Some(ecommerce) = &collected.ecommerce else {
        return custom;
    };
    if let Some(value) = ecommerce.value {
        custom.insert("value".into(), amount(value));
    }
    if let Some(currency) = &ecommerce.currency {
        custom.insert("currency".into(), json!(currency));
    }
    if let Some(order_id) = &ecommerce.order_id {
        custom.insert("order_id".into(), json!(order_id));
    }
    let products = &ecommerce.products;
    if !products.is_empty() {
        let ids: Vec<&str> = products.iter().filter_map(|p| p.best_id()).collect();
        let contents: Vec<Value> = products
            .iter()
            .filter_map(|product| {
                let mut content = json!({
                    "id": product.best_id()?,
                    "quantity": quantity(product.quantity_or_one()),
                });
                if let Some(price) = product.price {
                    content["item_price"] = amount(price);
                }
                Some(content)
            })
            .collect();
        custom.insert("content_ids".into(), json!(ids));
        custom.insert("contents".into(), Value::Array(contents));
        custom.insert("content_type".into(), json!("product"));
        let items: i64 = products.iter().map(|p| quantity(p.quantity_or_one())).sum();
        custom.insert("num_items".into(), json!(items));
        if let [product] = products.as_slice() {
            if let Some(name) = &product.name {
                custom.insert("content_name".into(), json!(name));
            }
            if let Some(category) = &product.category {
                custom.insert("content_category".into(), json!(category));
            }
        }
    }
    custom
}
