//! Reading an enriched event the way several destinations need it: click ids in their order
//! of preference, products and order values, and the consent the page stated.

use serde_json::{Value, json};

use super::amount;
use crate::attribution::{self, CLICK_IDS};
use crate::enrich::EnrichedEvent;
use crate::event::Product;

/// Returns a click id for the event. The event's own page URL comes first, because a
/// beacon's request URL has no query and the landing parameters sit in the page URL. Then
/// come the value remembered for the visitor and the platform's cookie as the pixel reported
/// it. `key` is the stored key (`epik`, `ttclid`, `sccid`, `msclkid`, `gclid`, ...).
pub fn click_id(event: &EnrichedEvent, key: &str, cookie: Option<&str>) -> Option<String> {
    let param = CLICK_IDS.iter().find(|kind| kind.key == key)?.param;
    let from_url = event
        .event
        .page
        .url
        .as_deref()
        .map(attribution::read_url)
        .and_then(|marketing| marketing.click_ids.get(param).cloned());
    from_url
        .or_else(|| event.click_id(key).map(|click| click.value.clone()))
        .or_else(|| {
            cookie
                .and_then(|name| event.event.browser_value(name))
                .map(|value| value.trim().to_owned())
        })
}

/// Returns the event's products, empty for events without an ecommerce block.
pub fn products(event: &EnrichedEvent) -> &[Product] {
    event
        .event
        .ecommerce
        .as_ref()
        .map(|ecommerce| ecommerce.products.as_slice())
        .unwrap_or_default()
}

/// Order revenue or cart value.
pub fn value(event: &EnrichedEvent) -> Option<f64> {
    event.event.ecommerce.as_ref().and_then(|e| e.value)
}

/// ISO 4217 currency code, upper case.
pub fn currency(event: &EnrichedEvent) -> Option<&str> {
    event
        .event
        .ecommerce
        .as_ref()
        .and_then(|e| e.currency.as_deref())
}

pub fn order_id(event: &EnrichedEvent) -> Option<&str> {
    event
        .event
        .ecommerce
        .as_ref()
        .and_then(|e| e.order_id.as_deref())
}

/// Returns the ids of the event's products.
pub fn content_ids(event: &EnrichedEvent) -> Vec<&str> {
    products(event)
        .iter()
        .filter_map(Product::best_id)
        .collect()
}

/// Returns the marketing consent the page stated: `Some(true)` granted, `Some(false)`
/// denied, `None` when the page stated none. Destinations forward only what was stated.
pub fn marketing_consent(event: &EnrichedEvent) -> Option<bool> {
    event.event.consent.marketing
}

/// Google's consent status value for a stated consent.
pub fn google_consent(granted: bool) -> &'static str {
    if granted { "GRANTED" } else { "DENIED" }
}

/// Writes a money amount as a JSON string, for platforms that take decimals as text
/// (Pinterest).
pub fn amount_text(value: f64) -> Value {
    json!(amount(value).to_string())
}

/// Adds `value` under `key` when it is present.
pub fn put<T: Into<Value>>(
    object: &mut serde_json::Map<String, Value>,
    key: &str,
    value: Option<T>,
) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value.into());
    }
}
