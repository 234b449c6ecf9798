//! Pinterest Conversions API v5: `POST /v5/ad_accounts/{ad_account_id}/events` with up to
//! 1,000 events and a conversion token as bearer. Personal fields are SHA-256 arrays (phone as
//! digits only); IP, user agent and the `epik` click id stay in clear.
//! Contract: pinterest/api-description `v5/openapi.json` 5.23.0, schema `ConversionEvents`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::hashing::{self, email_hash, field_hash, phone_hash};
use super::mapping::{self, amount_text, put};
use super::{
    Destination, EventFailure, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse,
    Verdict, classify_status, event_ids, platform_error, quantity,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, Purpose};
use crate::identity::sha256_hex;
use crate::profile::keys;

pub const DEFAULT_ENDPOINT: &str = "https://api.pinterest.com";
/// `ConversionEvents.data` takes 1 to 1,000 events.
const MAX_BATCH: usize = 1000;
/// NOTE: Pinterest documents no maximum event age in the sources at hand (events later than
/// an hour count as offline); 7 days is an estimate.
const MAX_AGE_DAYS: i64 = 7;

/// Settings of the Pinterest destination.
#[derive(Debug, Clone, PartialEq)]
pub struct PinterestConfig {
    /// Ad account id: digits, at most 18.
    pub ad_account_id: Option<String>,
    /// Conversion access token from Ads Manager.
    pub access_token: Option<Secret>,
    pub endpoint: String,
    /// Sends `?test=true`: Pinterest validates the events and records nothing.
    pub test: bool,
    /// Flags every event with `opt_out_type: "LDP"` (Limited Data Processing).
    pub limited_data_processing: bool,
    pub retry_budget: Option<Duration>,
}

impl Default for PinterestConfig {
    fn default() -> Self {
        Self {
            ad_account_id: None,
            access_token: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            test: false,
            limited_data_processing: false,
            retry_budget: None,
        }
    }
}

/// The Pinterest Conversions API destination.
#[derive(Debug, Clone)]
pub struct Pinterest {
    config: PinterestConfig,
}

impl Pinterest {
    pub fn new(config: PinterestConfig) -> Self {
        Self { config }
    }

    /// Pinterest's `event_name` (one of the 15 values of spec 5.23.0); events without a
    /// match are sent as `custom`.
    pub fn event_name(name: EventName) -> &'static str {
        match name {
            EventName::UserData | EventName::ViewItem => "page_visit",
            EventName::ViewItemList => "view_category",
            EventName::ViewSearchResults => "search",
            EventName::AddToCart => "add_to_cart",
            EventName::BeginCheckout => "initiate_checkout",
            EventName::AddPaymentInfo => "add_payment_info",
            EventName::Purchase => "checkout",
            EventName::SignUp => "signup",
            EventName::Subscribe => "lead",
            EventName::SelectItem
            | EventName::RemoveFromCart
            | EventName::ViewCart
            | EventName::AddShippingInfo
            | EventName::Login => "custom",
        }
    }

    fn event(&self, event: &EnrichedEvent, now: DateTime<Utc>) -> Value {
        let collected = &event.event;
        let mut object = Map::new();
        object.insert("event_name".into(), json!(Self::event_name(collected.name)));
        object.insert("action_source".into(), json!("web"));
        object.insert(
            "event_time".into(),
            json!(collected.event_time.min(now).timestamp()),
        );
        object.insert("event_id".into(), json!(collected.event_id));
        put(&mut object, "event_source_url", collected.page.url.clone());
        object.insert("user_data".into(), Value::Object(user_data(event)));
        let mut custom = custom_data(event);
        if self.config.limited_data_processing {
            // Pinterest's Limited Data Processing flag for US state privacy laws.
            custom.insert("opt_out_type".into(), json!("LDP"));
        }
        if !custom.is_empty() {
            object.insert("custom_data".into(), Value::Object(custom));
        }
        Value::Object(object)
    }
}

impl Destination for Pinterest {
    fn name(&self) -> &'static str {
        "pinterest"
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

    /// `user_data` needs `em`, or both the IP address and the user agent.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        let client = &event.event.client;
        let has_email = email_hash(event, hashing::email).is_some();
        if has_email || (client.ip.is_some() && client.user_agent.is_some()) {
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
        let account = self
            .config
            .ad_account_id
            .as_deref()
            .unwrap_or("{ad_account_id}");
        let test = if self.config.test { "?test=true" } else { "" };
        let secrets = self
            .config
            .access_token
            .iter()
            .map(|token| {
                (
                    SecretPlacement::Header("authorization".into()),
                    Secret::new(format!("Bearer {}", token.expose())),
                )
            })
            .collect();
        vec![OutboundRequest {
            destination: "pinterest",
            operation: "events_create",
            method: http::Method::POST,
            url: format!(
                "{}/v5/ad_accounts/{account}/events{test}",
                self.config.endpoint.trim_end_matches('/')
            ),
            headers: vec![("content-type".into(), "application/json".into())],
            secrets,
            body,
            event_ids: event_ids(events),
        }]
    }

    /// 200 and 422 carry one status per event, in request order; 422 means some failed.
    /// 503 ("ramped down") and 429 are retried by the default rule.
    fn classify(&self, request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        if !matches!(response.status, 200..=299 | 422) {
            return classify_status(response);
        }
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        let Some(statuses) = parsed["events"].as_array() else {
            return if response.status == 422 {
                classify_status(response)
            } else {
                Verdict::Accepted
            };
        };
        let failures: Vec<EventFailure> = request
            .event_ids
            .iter()
            .zip(statuses)
            .filter(|(_, status)| status["status"] == "failed")
            .map(|(event_id, status)| EventFailure {
                event_id: event_id.clone(),
                reason: platform_error(status["error_message"].as_str().unwrap_or("failed")),
                retryable: false,
            })
            .collect();
        if failures.is_empty() {
            Verdict::Accepted
        } else {
            Verdict::Partial { failures }
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }
}

fn user_data(event: &EnrichedEvent) -> Map<String, Value> {
    let mut user = Map::new();
    let mut hashed = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            user.insert(name.into(), json!([value]));
        }
    };
    hashed("em", email_hash(event, hashing::email));
    // Pinterest hashes the phone as digits only with the country code.
    hashed("ph", phone_hash(event, hashing::phone_digits));
    hashed(
        "fn",
        field_hash(event, keys::FIRST_NAME, hashing::lower_text),
    );
    hashed(
        "ln",
        field_hash(event, keys::LAST_NAME, hashing::lower_text),
    );
    hashed("ct", field_hash(event, keys::CITY, hashing::compact_lower));
    hashed("st", field_hash(event, keys::REGION, hashing::state_code));
    hashed("zp", field_hash(event, keys::ZIP, hashing::pinterest_zip));
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
        "click_id",
        mapping::click_id(event, "epik", Some("_epik")),
    );
    user
}

fn custom_data(event: &EnrichedEvent) -> Map<String, Value> {
    let mut custom = Map::new();
    if let Some(value) = mapping::value(event) {
        custom.insert("value".into(), amount_text(value));
    }
    put(&mut custom, "currency", mapping::currency(event));
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
            .map(|product| {
                let mut content = Map::new();
                put(&mut content, "id", product.best_id());
                put(&mut content, "item_name", product.name.as_deref());
                put(&mut content, "item_category", product.category.as_deref());
                put(&mut content, "item_brand", product.brand.as_deref());
                put(&mut content, "item_price", product.price.map(amount_text));
                content.insert(
                    "quantity".into(),
                    json!(quantity(product.quantity_or_one())),
                );
                Value::Object(content)
            })
            .collect();
        custom.insert("contents".into(), Value::Array(contents));
        let items: i64 = products.iter().map(|p| quantity(p.quantity_or_one())).sum();
        custom.insert("num_items".into(), json!(items));
    }
    custom
}
