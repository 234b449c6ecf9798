//! TikTok Events API 2.0: `POST /open_api/v1.3/event/track/` with up to 1,000 web events,
//! the access token in the `Access-Token` header. Email, phone (E.164 with `+`), external id,
//! names and zip are hashed; ttclid, `_ttp`, IP and user agent stay in clear.
//! Contract: TikTok's Events API 2.0 as implemented by segmentio/action-destinations
//! (`tiktok-conversions`) and rudderlabs/rudder-transformer (`tiktok_ads`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::hashing::{self, email_hash, field_hash, phone_hash};
use super::mapping::{self, put};
use super::{
    Destination, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse, Verdict,
    amount, classify_status, event_ids, platform_error, quantity,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, Purpose};
use crate::identity::sha256_hex;
use crate::profile::keys;

pub const DEFAULT_ENDPOINT: &str = "https://business-api.tiktok.com";
pub const DEFAULT_API_VERSION: &str = "v1.3";
/// Events per request (rudder-transformer's `maxBatchSizeV2`).
const MAX_BATCH: usize = 1000;
/// NOTE: TikTok documents no maximum event age in the sources at hand; 7 days matches the
/// documented ttclid validity and is an estimate.
const MAX_AGE_DAYS: i64 = 7;
/// Business API codes in a 200 response: 0 ok, 20001 partial success, 40100 rate limited.
const CODE_OK: i64 = 0;
const CODE_PARTIAL: i64 = 20001;
const CODE_RATE_LIMITED: i64 = 40100;

/// Settings of the TikTok destination.
#[derive(Debug, Clone, PartialEq)]
pub struct TikTokConfig {
    /// Pixel code, sent as `event_source_id`.
    pub pixel_code: Option<String>,
    pub access_token: Option<Secret>,
    pub endpoint: String,
    pub api_version: String,
    /// Code from Events Manager's Test Events tab.
    pub test_event_code: Option<String>,
    /// Flags every event for limited processing (`limited_data_use: true`).
    pub limited_data_use: bool,
    pub retry_budget: Option<Duration>,
}

impl Default for TikTokConfig {
    fn default() -> Self {
        Self {
            pixel_code: None,
            access_token: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            api_version: DEFAULT_API_VERSION.into(),
            test_event_code: None,
            limited_data_use: false,
            retry_budget: None,
        }
    }
}

/// The TikTok Events API destination.
#[derive(Debug, Clone)]
pub struct TikTok {
    config: TikTokConfig,
}

impl TikTok {
    pub fn new(config: TikTokConfig) -> Self {
        Self { config }
    }

    /// TikTok's standard event where one exists (TikTok's supported standard events), else a
    /// custom name.
    pub fn event_name(name: EventName) -> &'static str {
        match name {
            EventName::UserData => "PageView",
            EventName::ViewItemList => "ViewCategory",
            EventName::ViewSearchResults => "Search",
            EventName::SelectItem => "ClickButton",
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
            EventName::Subscribe => "Subscribe",
        }
    }

    fn event(&self, event: &EnrichedEvent, now: DateTime<Utc>) -> Value {
        let collected = &event.event;
        let mut object = Map::new();
        object.insert("event".into(), json!(Self::event_name(collected.name)));
        object.insert(
            "event_time".into(),
            json!(collected.event_time.min(now).timestamp()),
        );
        object.insert("event_id".into(), json!(collected.event_id));
        object.insert("user".into(), Value::Object(user(event)));
        let properties = properties(event);
        if !properties.is_empty() {
            object.insert("properties".into(), Value::Object(properties));
        }
        let mut page = Map::new();
        put(&mut page, "url", collected.page.url.clone());
        put(&mut page, "referrer", collected.page.referrer.clone());
        if !page.is_empty() {
            object.insert("page".into(), Value::Object(page));
        }
        if self.config.limited_data_use {
            object.insert("limited_data_use".into(), json!(true));
        }
        Value::Object(object)
    }
}

impl Destination for TikTok {
    fn name(&self) -> &'static str {
        "tiktok"
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

    /// TikTok matches on a hashed identifier, a ttclid or `_ttp`, or IP with user agent.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        let client = &event.event.client;
        let has_ids = event.is_identified()
            || mapping::click_id(event, "ttclid", Some("ttclid")).is_some()
            || event.identity_value(keys::TTP).is_some()
            || (client.ip.is_some() && client.user_agent.is_some());
        if has_ids {
            Ok(())
        } else {
            Err(Skip::Unidentified)
        }
    }

    fn build(&self, events: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest> {
        if events.is_empty() {
            return Vec::new();
        }
        let mut body = json!({
            "event_source": "web",
            "event_source_id": self.config.pixel_code.as_deref().unwrap_or("{pixel_code}"),
            "data": events.iter().map(|event| self.event(event, now)).collect::<Vec<_>>(),
        });
        if let Some(code) = &self.config.test_event_code {
            body["test_event_code"] = json!(code);
        }
        let secrets = self
            .config
            .access_token
            .iter()
            .map(|token| {
                (
                    SecretPlacement::Header("access-token".into()),
                    token.clone(),
                )
            })
            .collect();
        vec![OutboundRequest {
            destination: "tiktok",
            operation: "event_track",
            method: http::Method::POST,
            url: format!(
                "{}/open_api/{}/event/track/",
                self.config.endpoint.trim_end_matches('/'),
                self.config.api_version
            ),
            headers: vec![("content-type".into(), "application/json".into())],
            secrets,
            body,
            event_ids: event_ids(events),
        }]
    }

    /// TikTok returns HTTP 200 for failures too, so the `code` field decides. A 200 body that
    /// cannot be read is retried: TikTok drops a repeated `event` + `event_id` from the API
    /// within 48 hours, so a retry cannot count an event twice.
    fn classify(&self, _request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        if !(200..300).contains(&response.status) {
            return classify_status(response);
        }
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        let Some(code) = parsed["code"].as_i64() else {
            return Verdict::Retry {
                after: None,
                reason: format!("HTTP {} with an unreadable body", response.status),
            };
        };
        let message = platform_error(parsed["message"].as_str().unwrap_or_default());
        match code {
            CODE_OK | CODE_PARTIAL => Verdict::Accepted,
            CODE_RATE_LIMITED => Verdict::Retry {
                after: response.retry_after,
                reason: format!("code {code}: {message}"),
            },
            // 5xxxx codes are TikTok's internal errors.
            50000..=59999 => Verdict::Retry {
                after: None,
                reason: format!("code {code}: {message}"),
            },
            _ => Verdict::Rejected {
                reason: format!("code {code}: {message}"),
            },
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }
}

fn user(event: &EnrichedEvent) -> Map<String, Value> {
    let mut user = Map::new();
    put(&mut user, "email", email_hash(event, hashing::email));
    // TikTok hashes the phone in E.164 with the `+`.
    put(&mut user, "phone", phone_hash(event, hashing::phone_e164));
    let external_id = field_hash(event, keys::CUSTOMER_ID, hashing::external_id)
        .unwrap_or_else(|| sha256_hex(event.event.visitor_id.as_str()));
    user.insert("external_id".into(), json!(external_id));
    put(
        &mut user,
        "first_name",
        field_hash(event, keys::FIRST_NAME, hashing::lower_text),
    );
    put(
        &mut user,
        "last_name",
        field_hash(event, keys::LAST_NAME, hashing::lower_text),
    );
    put(
        &mut user,
        "zip_code",
        field_hash(event, keys::ZIP, hashing::lower_text),
    );
    let clear = |key: &str| hashing::field_clear(event, key, hashing::compact_lower);
    put(&mut user, "city", clear(keys::CITY));
    put(&mut user, "state", clear(keys::REGION));
    put(&mut user, "country", clear(keys::COUNTRY));
    put(
        &mut user,
        "ttclid",
        mapping::click_id(event, "ttclid", Some("ttclid")),
    );
    put(&mut user, "ttp", event.identity_value(keys::TTP));
    put(&mut user, "ip", event.event.client.ip.clone());
    put(
        &mut user,
        "user_agent",
        event.event.client.user_agent.clone(),
    );
    user
}

fn properties(event: &EnrichedEvent) -> Map<String, Value> {
    let mut properties = Map::new();
    let products = mapping::products(event);
    if !products.is_empty() {
        let contents: Vec<Value> = products
            .iter()
            .filter_map(|product| {
                let mut content = Map::new();
                content.insert("content_id".into(), json!(product.best_id()?));
                put(&mut content, "content_name", product.name.as_deref());
                put(
                    &mut content,
                    "content_category",
                    product.category.as_deref(),
                );
                put(&mut content, "brand", product.brand.as_deref());
                put(&mut content, "price", product.price.map(amount));
                content.insert(
                    "quantity".into(),
                    json!(quantity(product.quantity_or_one())),
                );
                Some(Value::Object(content))
            })
            .collect();
        properties.insert("contents".into(), Value::Array(contents));
        properties.insert("content_type".into(), json!("product"));
    }
    if let (Some(value), Some(currency)) = (mapping::value(event), mapping::currency(event)) {
        properties.insert("value".into(), amount(value));
        properties.insert("currency".into(), json!(currency));
    }
    put(&mut properties, "order_id", mapping::order_id(event));
    put(&mut properties, "query", event.event.search_term.as_deref());
    properties
}
