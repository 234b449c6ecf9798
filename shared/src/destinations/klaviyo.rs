//! Klaviyo: one Create Event request per event (`POST /api/events`), a profile upsert
//! (`POST /api/profile-import`) for sign-ups and logins, and a Subscribe Profiles job for
//! `dl_subscribe` when a list is configured. Identifiers go in clear; the phone in E.164.
//! Contract: Klaviyo's OpenAPI documents for `create_event`, `create_or_update_profile` and
//! `bulk_subscribe_profiles`, revision 2026-07-15.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::{
    Destination, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse, Verdict,
    amount, classify_status,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, LeadType, Purpose};
use crate::profile::keys;

/// The API revision every request pins in its `revision` header.
// NOTE: Klaviyo retires a revision about two years after its date; move this forward before
// 2028-07 and re-run the contract tests against the matching spec.
pub const REVISION: &str = "2026-07-15";
pub const DEFAULT_ENDPOINT: &str = "https://a.klaviyo.com";
const JSON_API: &str = "application/vnd.api+json";

/// Settings of the Klaviyo destination.
#[derive(Debug, Clone, PartialEq)]
pub struct KlaviyoConfig {
    /// Private API key; without it requests go to the outbox only.
    pub api_key: Option<Secret>,
    pub endpoint: String,
    pub revision: String,
    /// List that `dl_subscribe` events subscribe the visitor to.
    pub subscribe_list_id: Option<String>,
    /// Whether page views (`dl_user_data`) are sent as `Active on Site`.
    pub send_page_views: bool,
    pub retry_budget: Option<Duration>,
}

impl Default for KlaviyoConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            revision: REVISION.into(),
            subscribe_list_id: None,
            send_page_views: true,
            retry_budget: None,
        }
    }
}

/// The Klaviyo destination.
#[derive(Debug, Clone)]
pub struct Klaviyo {
    config: KlaviyoConfig,
}

impl Klaviyo {
    pub fn new(config: KlaviyoConfig) -> Self {
        Self { config }
    }

    /// Klaviyo's metric name for a data-layer event, following the names of Klaviyo's guide to
    /// integrating a custom platform where one exists.
    pub fn metric_name(name: EventName) -> &'static str {
        match name {
            EventName::UserData => "Active on Site",
            EventName::ViewItemList => "Viewed Collection",
            EventName::ViewSearchResults => "Searched Site",
            EventName::SelectItem => "Selected Product",
            EventName::ViewItem => "Viewed Product",
            EventName::AddToCart => "Added to Cart",
            EventName::RemoveFromCart => "Removed from Cart",
            EventName::ViewCart => "Viewed Cart",
            EventName::BeginCheckout => "Started Checkout",
            EventName::AddShippingInfo => "Added Shipping Info",
            EventName::AddPaymentInfo => "Added Payment Info",
            EventName::Purchase => "Placed Order",
            EventName::SignUp => "Signed Up",
            EventName::Login => "Logged In",
            EventName::Subscribe => "Subscribed",
        }
    }

    fn request(
        &self,
        operation: &'static str,
        path: &str,
        body: Value,
        event_id: &str,
    ) -> OutboundRequest {
        let secrets = self
            .config
            .api_key
            .iter()
            .map(|key| {
                (
                    SecretPlacement::Header("authorization".into()),
                    Secret::new(format!("Klaviyo-API-Key {}", key.expose())),
                )
            })
            .collect();
        OutboundRequest {
            destination: "klaviyo",
            operation,
            method: http::Method::POST,
            url: format!("{}{path}", self.config.endpoint.trim_end_matches('/')),
            headers: vec![
                ("revision".into(), self.config.revision.clone()),
                ("content-type".into(), JSON_API.into()),
                ("accept".into(), JSON_API.into()),
            ],
            secrets,
            body,
            event_ids: vec![event_id.to_owned()],
        }
    }

    fn create_event(&self, event: &EnrichedEvent, now: DateTime<Utc>) -> OutboundRequest {
        let collected = &event.event;
        let time = collected.event_time.min(now);
        let mut attributes = json!({
            "properties": event_properties(event),
            "time": time.to_rfc3339_opts(SecondsFormat::Secs, true),
            "unique_id": collected.event_id,
            "metric": {"data": {"type": "metric", "attributes": {"name": Self::metric_name(collected.name)}}},
            "profile": {"data": {"type": "profile", "attributes": profile_attributes(event)}},
        });
        if let Some(ecommerce) = &collected.ecommerce
            && let Some(value) = ecommerce.value
        {
            attributes["value"] = amount(value);
            if let Some(currency) = &ecommerce.currency {
                attributes["value_currency"] = json!(currency);
            }
        }
        let body = json!({"data": {"type": "event", "attributes": attributes}});
        self.request("create_event", "/api/events", body, &collected.event_id)
    }

    /// Create-or-update of the profile with everything known about the visitor.
    fn profile_import(&self, event: &EnrichedEvent) -> OutboundRequest {
        let body = json!({"data": {"type": "profile", "attributes": profile_attributes(event)}});
        self.request(
            "create_or_update_profile",
            "/api/profile-import",
            body,
            &event.event.event_id,
        )
    }

    fn subscribe(&self, event: &EnrichedEvent, list_id: &str) -> Option<OutboundRequest> {
        let (channel, identifier_key, identifier) = match event.event.lead_type? {
            LeadType::Email => ("email", "email", event.email()?),
            LeadType::Phone => ("sms", "phone_number", event.phone()?),
        };
        let mut attributes = Map::new();
        attributes.insert(identifier_key.into(), json!(identifier));
        attributes.insert(
            "subscriptions".into(),
            json!({channel: {"marketing": {"consent": "SUBSCRIBED"}}}),
        );
        let body = json!({
            "data": {
                "type": "profile-subscription-bulk-create-job",
                "attributes": {
                    "custom_source": "revisit",
                    "profiles": {"data": [{"type": "profile", "attributes": attributes}]},
                },
                "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
            }
        });
        Some(self.request(
            "bulk_subscribe_profiles",
            "/api/profile-subscription-bulk-create-jobs",
            body,
            &event.event.event_id,
        ))
    }
}

impl Destination for Klaviyo {
    fn name(&self) -> &'static str {
        "klaviyo"
    }

    fn purposes(&self) -> &'static [Purpose] {
        &[Purpose::Marketing]
    }

    /// Create Event takes one event per request.
    fn max_batch(&self) -> usize {
        1
    }

    /// Klaviyo accepts any time after 1990, so age never blocks an event.
    fn max_age(&self) -> Option<chrono::Duration> {
        None
    }

    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        if event.event.name == EventName::UserData && !self.config.send_page_views {
            return Err(Skip::NotMapped);
        }
        let identified = event.email().is_some()
            || event.phone().is_some()
            || event.identity_value(keys::KX).is_some()
            || event.identity_value(keys::CUSTOMER_ID).is_some();
        if identified {
            Ok(())
        } else {
            Err(Skip::Unidentified)
        }
    }

    fn build(&self, events: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest> {
        let mut requests = Vec::new();
        for event in events {
            requests.push(self.create_event(event, now));
            let identifies = matches!(event.event.name, EventName::SignUp | EventName::Login);
            if identifies && (event.email().is_some() || event.phone().is_some()) {
                requests.push(self.profile_import(event));
            }
            let subscribe_list = self.config.subscribe_list_id.as_deref();
            if let (EventName::Subscribe, Some(list_id)) = (event.event.name, subscribe_list) {
                requests.extend(self.subscribe(event, list_id));
            }
        }
        requests
    }

    /// A 409 `duplicate_profile` means the phone belongs to another profile than the email.
    /// Retrying cannot help, so the request is sent once more identified by email alone, which
    /// writes to the email's profile.
    fn classify(&self, request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        if response.status != 409 || !response.body.contains("duplicate_profile") {
            return classify_status(response);
        }
        let reason = format!(
            "HTTP 409 duplicate_profile {}",
            duplicate_profile_id(&response.body)
        );
        let Some(pointer) = profile_pointer(request.operation) else {
            return Verdict::Rejected { reason };
        };
        let profile = request.body.pointer(pointer).and_then(Value::as_object);
        let has_both =
            profile.is_some_and(|p| p.contains_key("email") && p.contains_key("phone_number"));
        if !has_both {
            return Verdict::Rejected { reason };
        }
        let mut fallback = request.clone();
        if let Some(attributes) = fallback
            .body
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
        {
            attributes.remove("phone_number");
        }
        Verdict::Fallback {
            request: Box::new(fallback),
            reason,
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }
}

/// Returns the JSON pointer to the profile's attributes in an operation's body.
fn profile_pointer(operation: &str) -> Option<&'static str> {
    match operation {
        "create_event" => Some("/data/attributes/profile/data/attributes"),
        "create_or_update_profile" => Some("/data/attributes"),
        _ => None,
    }
}

fn duplicate_profile_id(body: &str) -> String {
    let parsed: Value = serde_json::from_str(body).unwrap_or_default();
    let id = parsed
        .pointer("/errors/0/meta/duplicate_profile_id")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    format!("(clashing profile {id})")
}

fn profile_attributes(event: &EnrichedEvent) -> Value {
    let mut profile = Map::new();
    let mut put = |name: &str, key: &str| {
        if let Some(value) = event.identity_value(key) {
            profile.insert(name.into(), json!(value));
        }
    };
    put("email", keys::EMAIL);
    put("phone_number", keys::PHONE);
    put("external_id", keys::CUSTOMER_ID);
    put("_kx", keys::KX);
    put("first_name", keys::FIRST_NAME);
    put("last_name", keys::LAST_NAME);
    let mut location = Map::new();
    for (name, key) in [
        ("address1", keys::ADDRESS1),
        ("address2", keys::ADDRESS2),
        ("city", keys::CITY),
        ("region", keys::REGION),
        ("zip", keys::ZIP),
        ("country", keys::COUNTRY),
    ] {
        if let Some(value) = event.identity_value(key) {
            location.insert(name.into(), json!(value));
        }
    }
    if let Some(ip) = &event.event.client.ip {
        location.insert("ip".into(), json!(ip));
    }
    if !location.is_empty() {
        profile.insert("location".into(), Value::Object(location));
    }
    Value::Object(profile)
}

fn event_properties(event: &EnrichedEvent) -> Value {
    let collected = &event.event;
    let mut properties = Map::new();
    if let Some(url) = &collected.page.url {
        properties.insert("URL".into(), json!(url));
    }
    if let Some(term) = &collected.search_term {
        properties.insert("SearchTerm".into(), json!(term));
    }
    if let Some(lead_type) = collected.lead_type {
        properties.insert("LeadType".into(), json!(lead_type));
    }
    for (param, value) in &event.utm {
        properties.insert(param.clone(), json!(value));
    }
    if let Some(ecommerce) = &collected.ecommerce {
        if let Some(order_id) = &ecommerce.order_id {
            properties.insert("OrderId".into(), json!(order_id));
        }
        if let Some(value) = ecommerce.value {
            properties.insert("$value".into(), amount(value));
        }
        let items: Vec<Value> = ecommerce
            .products
            .iter()
            .map(|product| {
                without_nulls(json!({
                    "ProductID": product.product_id.as_deref().or(product.best_id()),
                    "SKU": product.id,
                    "VariantID": product.variant_id,
                    "ProductName": product.name,
                    "Quantity": product.quantity_or_one(),
                    "ItemPrice": product.price,
                    "RowTotal": product.price.map(|price| price * product.quantity_or_one()),
                    "Brand": product.brand,
                    "Categories": product.category.iter().collect::<Vec<_>>(),
                    "ProductURL": product.url,
                    "ImageURL": product.image,
                }))
            })
            .collect();
        let names: Vec<&str> = ecommerce
            .products
            .iter()
            .filter_map(|p| p.name.as_deref())
            .collect();
        if let Some(first) = ecommerce.products.first() {
            properties.insert("ProductName".into(), json!(first.name));
            properties.insert(
                "ProductID".into(),
                json!(first.product_id.as_deref().or(first.best_id())),
            );
            properties.insert("Price".into(), json!(first.price));
        }
        if !items.is_empty() {
            properties.insert("ItemNames".into(), json!(names));
            properties.insert("Items".into(), Value::Array(items));
        }
    }
    properties.insert("$event_id".into(), json!(collected.event_id));
    Value::Object(properties)
}

fn without_nulls(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, field| !field.is_null());
    }
    value
}
