//! Microsoft Advertising UET Conversions API: `POST /v1/{uet_tag_id}/events` with the tag's
//! API token as bearer. Email and phone are SHA-256; IP, user agent and `msclkid` stay in
//! clear. Contract: Microsoft's UET Conversions API guide and segmentio/action-destinations
//! (`ms-bing-capi`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::hashing::{self, email_hash, phone_hash};
use super::mapping::{self, put};
use super::{
    Destination, EventFailure, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse,
    Verdict, amount, classify_status, event_ids, platform_error, quantity,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, Purpose};
use crate::profile::keys;

pub const DEFAULT_ENDPOINT: &str = "https://capi.uet.microsoft.com";
/// NOTE: Microsoft documents no batch limit; integrators send at most 1,000 events.
const MAX_BATCH: usize = 1000;
/// NOTE: Microsoft documents no maximum event age; 7 days is an estimate.
const MAX_AGE_DAYS: i64 = 7;

/// Form of the phone before hashing. Sources disagree: Segment hashes digits only, another
/// integrator E.164 with `+`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhoneFormat {
    #[default]
    Digits,
    E164,
}

/// Settings of the Microsoft destination.
#[derive(Debug, Clone, PartialEq)]
pub struct MicrosoftConfig {
    pub uet_tag_id: Option<String>,
    /// The UET tag's Conversions API token.
    pub api_token: Option<Secret>,
    pub endpoint: String,
    pub phone_format: PhoneFormat,
    pub retry_budget: Option<Duration>,
}

impl Default for MicrosoftConfig {
    fn default() -> Self {
        Self {
            uet_tag_id: None,
            api_token: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            phone_format: PhoneFormat::default(),
            retry_budget: None,
        }
    }
}

/// The Microsoft UET Conversions API destination.
#[derive(Debug, Clone)]
pub struct Microsoft {
    config: MicrosoftConfig,
}

impl Microsoft {
    pub fn new(config: MicrosoftConfig) -> Self {
        Self { config }
    }

    /// UET has one standard event type, `pageLoad`; every other event is `custom` with this
    /// name (GA4-style names, which UET goals commonly match on).
    pub fn event_name(name: EventName) -> Option<&'static str> {
        match name {
            EventName::UserData => None,
            EventName::ViewItemList => Some("view_item_list"),
            EventName::ViewSearchResults => Some("search"),
            EventName::SelectItem => Some("select_item"),
            EventName::ViewItem => Some("view_item"),
            EventName::AddToCart => Some("add_to_cart"),
            EventName::RemoveFromCart => Some("remove_from_cart"),
            EventName::ViewCart => Some("view_cart"),
            EventName::BeginCheckout => Some("begin_checkout"),
            EventName::AddShippingInfo => Some("add_shipping_info"),
            EventName::AddPaymentInfo => Some("add_payment_info"),
            EventName::Purchase => Some("purchase"),
            EventName::SignUp => Some("sign_up"),
            EventName::Login => Some("login"),
            EventName::Subscribe => Some("subscribe"),
        }
    }

    fn event(&self, event: &EnrichedEvent, now: DateTime<Utc>) -> Value {
        let collected = &event.event;
        let mut object = Map::new();
        match Self::event_name(collected.name) {
            None => {
                object.insert("eventType".into(), json!("pageLoad"));
            }
            Some(name) => {
                object.insert("eventType".into(), json!("custom"));
                object.insert("eventName".into(), json!(name));
            }
        }
        object.insert("eventId".into(), json!(collected.event_id));
        object.insert(
            "eventTime".into(),
            json!(collected.event_time.min(now).timestamp()),
        );
        put(&mut object, "eventSourceUrl", collected.page.url.clone());
        put(&mut object, "referrerUrl", collected.page.referrer.clone());
        put(&mut object, "pageTitle", collected.page.title.clone());
        if let Some(granted) = mapping::marketing_consent(event) {
            object.insert(
                "adStorageConsent".into(),
                json!(if granted { "G" } else { "D" }),
            );
        }
        object.insert("userData".into(), Value::Object(self.user_data(event)));
        let custom = custom_data(event);
        if !custom.is_empty() {
            object.insert("customData".into(), Value::Object(custom));
        }
        Value::Object(object)
    }

    fn user_data(&self, event: &EnrichedEvent) -> Map<String, Value> {
        let mut user = Map::new();
        put(&mut user, "em", email_hash(event, hashing::email));
        let phone_rule = match self.config.phone_format {
            PhoneFormat::Digits => hashing::phone_digits as hashing::Rule,
            PhoneFormat::E164 => hashing::phone_e164,
        };
        put(&mut user, "ph", phone_hash(event, phone_rule));
        put(&mut user, "clientIpAddress", event.event.client.ip.clone());
        put(
            &mut user,
            "clientUserAgent",
            event.event.client.user_agent.clone(),
        );
        put(
            &mut user,
            "msclkid",
            mapping::click_id(event, "msclkid", None),
        );
        user.insert("anonymousId".into(), json!(event.event.visitor_id.as_str()));
        put(
            &mut user,
            "externalId",
            event.identity_value(keys::CUSTOMER_ID),
        );
        user
    }
}

impl Destination for Microsoft {
    fn name(&self) -> &'static str {
        "microsoft"
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

    /// UET attributes through `msclkid`, a hashed email or phone, or IP with user agent.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        let client = &event.event.client;
        let matched = event.is_identified()
            || mapping::click_id(event, "msclkid", None).is_some()
            || (client.ip.is_some() && client.user_agent.is_some());
        if matched {
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
        let tag = self.config.uet_tag_id.as_deref().unwrap_or("{uet_tag_id}");
        let secrets = self
            .config
            .api_token
            .iter()
            .map(|token| {
                (
                    SecretPlacement::Header("authorization".into()),
                    Secret::new(format!("Bearer {}", token.expose())),
                )
            })
            .collect();
        vec![OutboundRequest {
            destination: "microsoft",
            operation: "events",
            method: http::Method::POST,
            url: format!(
                "{}/v1/{tag}/events",
                self.config.endpoint.trim_end_matches('/')
            ),
            headers: vec![("content-type".into(), "application/json".into())],
            secrets,
            body,
            event_ids: event_ids(events),
        }]
    }

    /// Reads the events that failed validation from a 4xx's `error.details[].index`.
    fn classify(&self, request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        let verdict = classify_status(response);
        if !matches!(verdict, Verdict::Rejected { .. }) || request.event_ids.len() < 2 {
            return verdict;
        }
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        let Some(details) = parsed["error"]["details"].as_array() else {
            return verdict;
        };
        let failures: Vec<EventFailure> = details
            .iter()
            .filter_map(|detail| {
                let event_id = request.event_ids.get(detail["index"].as_u64()? as usize)?;
                Some(EventFailure {
                    event_id: event_id.clone(),
                    reason: platform_error(detail["errorMessage"].as_str().unwrap_or("invalid")),
                    retryable: false,
                })
            })
            .collect();
        if failures.is_empty() {
            verdict
        } else {
            // NOTE: this reads the failed events as rejected and the rest as accepted, which
            // assumes Microsoft keeps the valid events of a request with invalid ones.
            Verdict::Partial { failures }
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }
}

fn custom_data(event: &EnrichedEvent) -> Map<String, Value> {
    let mut custom = Map::new();
    let collected = &event.event;
    put(&mut custom, "searchTerm", collected.search_term.as_deref());
    if let (Some(value), Some(currency)) = (mapping::value(event), mapping::currency(event)) {
        custom.insert("eventValue".into(), amount(value));
        custom.insert("currency".into(), json!(currency));
        if collected.name == EventName::Purchase {
            custom.insert("ecommTotalValue".into(), amount(value));
        }
    }
    put(&mut custom, "transactionId", mapping::order_id(event));
    let products = mapping::products(event);
    if !products.is_empty() {
        custom.insert("itemIds".into(), json!(mapping::content_ids(event)));
        let items: Vec<Value> = products
            .iter()
            .filter_map(|product| {
                let mut item = Map::new();
                item.insert("id".into(), json!(product.best_id()?));
                put(&mut item, "name", product.name.as_deref());
                put(&mut item, "price", product.price.map(amount));
                item.insert(
                    "quantity".into(),
                    json!(quantity(product.quantity_or_one())),
                );
                Some(Value::Object(item))
            })
            .collect();
        custom.insert("items".into(), Value::Array(items));
    }
    let page_type = match collected.name {
        EventName::ViewItem => Some("product"),
        EventName::ViewItemList => Some("category"),
        EventName::ViewSearchResults => Some("searchresults"),
        EventName::ViewCart => Some("cart"),
        EventName::Purchase => Some("purchase"),
        _ => None,
    };
    put(&mut custom, "pageType", page_type);
    custom
}
