//! Snapchat Conversions API v3: `POST /v3/{pixel_id}/events?access_token=…` with up to 2,000
//! events. Personal fields are SHA-256 (phone as digits only); IP, user agent, the `ScCid`
//! click id and the `_scid` cookie stay in clear.
//! Contract: Snapchat/business-sdk-v3-java `api/openapi.yaml` (`sendEvent`, `CapiEvent`) and
//! Snap's Conversions API parameter page.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::hashing::{self, email_hash, field_hash, phone_hash};
use super::mapping::{self, put};
use super::{
    Destination, EventFailure, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse,
    Verdict, amount, classify_status, event_ids, platform_error, quantity,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, Purpose};
use crate::identity::sha256_hex;
use crate::profile::keys;

pub const DEFAULT_ENDPOINT: &str = "https://tr.snapchat.com";
/// NOTE: 2,000 events per request comes from integrators (rudder-transformer), not Snap.
const MAX_BATCH: usize = 2000;
/// Snap takes events up to 37 days old.
const MAX_AGE_DAYS: i64 = 37;

/// Settings of the Snapchat destination.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapchatConfig {
    /// Pixel id, the `{asset_id}` of the path.
    pub pixel_id: Option<String>,
    pub access_token: Option<Secret>,
    pub endpoint: String,
    /// Sends to `/events/validate`, which checks the events and records nothing.
    pub validate_only: bool,
    pub retry_budget: Option<Duration>,
}

impl Default for SnapchatConfig {
    fn default() -> Self {
        Self {
            pixel_id: None,
            access_token: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            validate_only: false,
            retry_budget: None,
        }
    }
}

/// The Snapchat Conversions API destination.
#[derive(Debug, Clone)]
pub struct Snapchat {
    config: SnapchatConfig,
}

impl Snapchat {
    pub fn new(config: SnapchatConfig) -> Self {
        Self { config }
    }

    /// Snap's event name; events without a standard name use the custom slots.
    pub fn event_name(name: EventName) -> &'static str {
        match name {
            EventName::UserData => "PAGE_VIEW",
            EventName::ViewItemList => "LIST_VIEW",
            EventName::ViewSearchResults => "SEARCH",
            EventName::SelectItem => "CUSTOM_EVENT_1",
            EventName::ViewItem => "VIEW_CONTENT",
            EventName::AddToCart => "ADD_CART",
            EventName::RemoveFromCart => "CUSTOM_EVENT_2",
            EventName::ViewCart => "CUSTOM_EVENT_3",
            EventName::BeginCheckout => "START_CHECKOUT",
            EventName::AddShippingInfo => "CUSTOM_EVENT_4",
            EventName::AddPaymentInfo => "ADD_BILLING",
            EventName::Purchase => "PURCHASE",
            EventName::SignUp => "SIGN_UP",
            EventName::Login => "LOGIN",
            EventName::Subscribe => "SUBSCRIBE",
        }
    }

    fn event(&self, event: &EnrichedEvent, now: DateTime<Utc>) -> Value {
        let collected = &event.event;
        let mut object = Map::new();
        object.insert("event_name".into(), json!(Self::event_name(collected.name)));
        // Unix seconds, as in Snap's own examples (Snap also reads milliseconds).
        object.insert(
            "event_time".into(),
            json!(collected.event_time.min(now).timestamp()),
        );
        object.insert("event_id".into(), json!(collected.event_id));
        object.insert("action_source".into(), json!("WEB"));
        put(&mut object, "event_source_url", collected.page.url.clone());
        object.insert("user_data".into(), Value::Object(user_data(event)));
        let custom = custom_data(event);
        if !custom.is_empty() {
            object.insert("custom_data".into(), Value::Object(custom));
        }
        Value::Object(object)
    }
}

impl Destination for Snapchat {
    fn name(&self) -> &'static str {
        "snapchat"
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

    /// Snap matches on an email, a phone, or IP with user agent.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        let client = &event.event.client;
        if event.is_identified() || (client.ip.is_some() && client.user_agent.is_some()) {
            Ok(())
        } else {
            Err(Skip::Unidentified)
        }
    }

    fn build(&self, events: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest> {
        if events.is_empty() {
            return Vec::new();
        }
        let body = json!({
            "data": events.iter().map(|event| self.event(event, now)).collect::<Vec<_>>(),
        });
        let pixel = self.config.pixel_id.as_deref().unwrap_or("{pixel_id}");
        let path = if self.config.validate_only {
            "events/validate"
        } else {
            "events"
        };
        let secrets = self
            .config
            .access_token
            .iter()
            .map(|token| (SecretPlacement::Query("access_token".into()), token.clone()))
            .collect();
        vec![OutboundRequest {
            destination: "snapchat",
            operation: "send_event",
            method: http::Method::POST,
            url: format!(
                "{}/v3/{pixel}/{path}",
                self.config.endpoint.trim_end_matches('/')
            ),
            headers: vec![("content-type".into(), "application/json".into())],
            secrets,
            body,
            event_ids: event_ids(events),
        }]
    }

    /// Reads `status: VALID` from a 2xx response, or `INVALID` with the index of the failing
    /// event.
    fn classify(&self, request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        if !(200..300).contains(&response.status) {
            return classify_status(response);
        }
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        if parsed["status"] != "INVALID" {
            return Verdict::Accepted;
        }
        let reason = platform_error(&parsed["reason"].to_string());
        let failed = parsed["event"]
            .as_u64()
            .and_then(|index| request.event_ids.get(index as usize));
        match failed {
            Some(event_id) if request.event_ids.len() > 1 => Verdict::Partial {
                failures: vec![EventFailure {
                    event_id: event_id.clone(),
                    reason,
                    retryable: false,
                }],
            },
            _ => Verdict::Rejected { reason },
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }
}

fn user_data(event: &EnrichedEvent) -> Map<String, Value> {
    let mut user = Map::new();
    let country = event.identity_value(keys::COUNTRY);
    let mut hashed = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            user.insert(name.into(), json!([value]));
        }
    };
    hashed("em", email_hash(event, hashing::email));
    // Snap hashes the phone as digits only: country code, no `+`, no leading zeros.
    hashed("ph", phone_hash(event, hashing::phone_digits));
    hashed(
        "fn",
        field_hash(event, keys::FIRST_NAME, hashing::letters_name),
    );
    hashed(
        "ln",
        field_hash(event, keys::LAST_NAME, hashing::letters_name),
    );
    hashed("ct", field_hash(event, keys::CITY, hashing::lower_text));
    hashed("st", field_hash(event, keys::REGION, hashing::state_code));
    let zip = event
        .identity_value(keys::ZIP)
        .and_then(|zip| hashing::hash_with(zip, |z| hashing::meta_zip(z, country)));
    hashed("zp", zip);
    hashed(
        "country",
        field_hash(event, keys::COUNTRY, hashing::country_code),
    );
    let external_id = field_hash(event, keys::CUSTOMER_ID, hashing::external_id)
        .unwrap_or_else(|| sha256_hex(event.event.visitor_id.as_str()));
    user.insert("external_id".into(), json!([external_id]));
    put(
        &mut user,
        "client_ip_address",
        event.event.client.ip.clone(),
    );
    put(
        &mut user,
        "client_user_agent",
        event.event.client.user_agent.clone(),
    );
    put(
        &mut user,
        "sc_click_id",
        mapping::click_id(event, "sccid", None),
    );
    put(&mut user, "sc_cookie1", event.identity_value(keys::SCID));
    user
}

fn custom_data(event: &EnrichedEvent) -> Map<String, Value> {
    let mut custom = Map::new();
    if let (Some(value), Some(currency)) = (mapping::value(event), mapping::currency(event)) {
        custom.insert("value".into(), amount(value));
        custom.insert("currency".into(), json!(currency));
    }
    put(&mut custom, "order_id", mapping::order_id(event));
    put(
        &mut custom,
        "search_string",
        event.event.search_term.as_deref(),
    );
    let products = mapping::products(event);
    if !products.is_empty() {
        custom.insert("content_ids".into(), json!(mapping::content_ids(event)));
        let contents: Vec<Value> = products
            .iter()
            .filter_map(|product| {
                let mut content = Map::new();
                content.insert("id".into(), json!(product.best_id()?));
                content.insert(
                    "quantity".into(),
                    json!(quantity(product.quantity_or_one())),
                );
                put(&mut content, "item_price", product.price.map(amount));
                put(&mut content, "brand", product.brand.as_deref());
                Some(Value::Object(content))
            })
            .collect();
        custom.insert("contents".into(), Value::Array(contents));
        let items: i64 = products.iter().map(|p| quantity(p.quantity_or_one())).sum();
        custom.insert("num_items".into(), json!(items));
    }
    custom
}
