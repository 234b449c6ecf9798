//! The collect side: validating a `/collect` or `/collect/shopify` body, assigning the visitor, setting the cookie
//! and putting the events on the queue. Rejected items go to the quarantine.

pub mod cookie;
pub mod cors;
mod router;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::event::{
    CollectedEvent, EventSource, IntakeError, IntakeItem, VisitorId, parse_item,
    parse_shopify_event,
};
use crate::ports::{Clock, EventQueue, Quarantine, QuarantinedItem};

pub use cookie::VisitorCookie;
pub use cors::CorsPolicy;
pub use router::{ClientIp, router};

/// Largest accepted body: browsers cap in-flight keepalive and beacon bodies at 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events accepted in one request; a 64 KiB body of real events contains about 100.
pub const MAX_EVENTS_PER_REQUEST: usize = 500;
/// Rejections listed in a response; `rejected_count` gives the total.
const MAX_LISTED_REJECTIONS: usize = 20;
/// Bytes of a rejected item's raw text kept in the quarantine; longer items are cut.
const MAX_QUARANTINED_RAW_BYTES: usize = 4096;

/// Settings of the collector.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    pub cookie: VisitorCookie,
    pub cors: CorsPolicy,
    /// How many proxies in front of the collector append to `X-Forwarded-For`; 0 uses the
    /// socket address.
    pub trusted_proxy_hops: usize,
}

/// A `/collect` request reduced to what the collector reads.
#[derive(Debug, Clone, Default)]
pub struct CollectRequest {
    pub content_type: Option<String>,
    pub body: Bytes,
    pub cookie_header: Option<String>,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
}

/// The collector's response before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectResponse {
    pub status: u16,
    pub body: Value,
    /// `Set-Cookie` values, the visitor cookie first.
    pub set_cookies: Vec<String>,
}

/// Validates and enqueues storefront events.
#[derive(Debug, Clone)]
pub struct Collector {
    settings: CollectorSettings,
    queue: Arc<dyn EventQueue>,
    quarantine: Arc<dyn Quarantine>,
    clock: Arc<dyn Clock>,
}

impl Collector {
    pub fn new(
        settings: CollectorSettings,
        queue: Arc<dyn EventQueue>,
        quarantine: Arc<dyn Quarantine>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            queue,
            quarantine,
            clock,
        }
    }

    pub fn settings(&self) -> &CollectorSettings {
        &self.settings
    }

    /// Builds the response to a body larger than `MAX_BODY_BYTES`, read no further than the
    /// limit.
    pub fn too_large(&self, cookie_header: Option<&str>) -> CollectResponse {
        let visitor_id = self
            .settings
            .cookie
            .read(cookie_header)
            .unwrap_or_else(VisitorId::random);
        let message = format!(
            "body exceeds the limit of {MAX_BODY_BYTES} bytes; send fewer events per request"
        );
        CollectResponse {
            status: 413,
            body: json!({"error": message, "visitor_id": visitor_id}),
            set_cookies: vec![self.settings.cookie.issue(&visitor_id)],
        }
    }

    /// Handles one `POST /collect` of data-layer events. The visitor cookie is refreshed on
    /// every response.
    pub async fn collect(&self, request: CollectRequest) -> CollectResponse {
        self.intake(request, EventSource::DataLayer).await
    }

    /// Handles one `POST /collect/shopify` of Shopify Web Pixel events. Without a visitor
    /// cookie, which Shopify's pixel sandbox does not send, the visitor id is derived from the
    /// events' `clientId`, so every event of one browser lands on one visitor.
    ///
    /// NOTE: a store that runs both the storefront script (visitor cookie) and the Shopify pixel
    /// (client id) gets two visitor ids for one browser, and nothing joins the two profiles yet.
    pub async fn collect_shopify(&self, request: CollectRequest) -> CollectResponse {
        self.intake(request, EventSource::ShopifyPixel).await
    }

    async fn intake(&self, request: CollectRequest, source: EventSource) -> CollectResponse {
        let received_at = truncate_to_millis(self.clock.now());
        let cookie_id = self.settings.cookie.read(request.cookie_header.as_deref());
        let mut visitor_id = cookie_id.clone().unwrap_or_else(VisitorId::random);
        let reply = |status: u16, body: Value, visitor_id: &VisitorId| CollectResponse {
            status,
            body,
            set_cookies: vec![self.settings.cookie.issue(visitor_id)],
        };
        if request.body.len() > MAX_BODY_BYTES {
            let message = format!(
                "body is {} bytes; the limit is {MAX_BODY_BYTES}; send fewer events per request",
                request.body.len()
            );
            let body = json!({"error": message, "visitor_id": visitor_id});
            return reply(413, body, &visitor_id);
        }
        if let Some(problem) = unsupported_content_type(request.content_type.as_deref()) {
            let body = json!({"error": problem, "visitor_id": visitor_id});
            return reply(415, body, &visitor_id);
        }
        let parsed: Value = match serde_json::from_slice(&request.body) {
            Ok(value) => value,
            Err(error) => {
                let errors = vec![IntakeError::new(
                    "body",
                    format!("is not valid JSON ({error})"),
                )];
                let raw = Value::String(String::from_utf8_lossy(&request.body).into_owned());
                self.keep_rejected(received_at, vec![(0, errors.clone(), raw)])
                    .await;
                let message = format!("body: is not valid JSON ({error})");
                let body = json!({"error": message, "visitor_id": visitor_id});
                return reply(400, body, &visitor_id);
            }
        };
        let (items, is_array) = match parsed {
            Value::Array(items) if items.is_empty() => {
                let message = "body: the array must contain at least one event";
                let body = json!({"error": message, "visitor_id": visitor_id});
                return reply(400, body, &visitor_id);
            }
            Value::Array(items) if items.len() > MAX_EVENTS_PER_REQUEST => {
                let message = format!(
                    "body: the array has {} events; send at most {MAX_EVENTS_PER_REQUEST} per request",
                    items.len()
                );
                let body = json!({"error": message, "visitor_id": visitor_id});
                return reply(413, body, &visitor_id);
            }
            Value::Array(items) => (items, true),
            other => (vec![other], false),
        };
        let (valid, rejected, client_id) = parse_items(items, is_array, source);
        if let (None, Some(client_id)) = (&cookie_id, &client_id) {
            visitor_id = self.settings.cookie.visitor_for_client_id(client_id);
        }
        let accepted: Vec<CollectedEvent> = valid
            .into_iter()
            .map(|item| self.to_event(item, &visitor_id, received_at, &request, source))
            .collect();
        let rejected_count = rejected.len();
        // The response lists the first rejections only, so it never grows past the request.
        let rejected_json: Vec<Value> = rejected
            .iter()
            .take(MAX_LISTED_REJECTIONS)
            .map(|(index, errors, _)| json!({"index": index, "errors": errors}))
            .collect();
        self.keep_rejected(received_at, rejected).await;
        if accepted.is_empty() {
            let message = rejected_json
                .first()
                .and_then(|first| first["errors"][0].as_object())
                .map(|error| {
                    format!(
                        "{}: {}",
                        error["path"].as_str().unwrap_or(""),
                        error["problem"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            let body = json!({"error": message, "visitor_id": visitor_id, "accepted": 0, "rejected_count": rejected_count, "rejected": rejected_json});
            return reply(400, body, &visitor_id);
        }
        if let Err(error) = self.queue.enqueue(&accepted).await {
            tracing::error!(visitor_id = %visitor_id, events = accepted.len(), error = %error, "enqueue failed");
            let (status, message) = if error.is_retryable() {
                (
                    503,
                    "the event queue is unavailable; retry later".to_owned(),
                )
            } else {
                (413, error.to_string())
            };
            let body = json!({"error": message, "visitor_id": visitor_id, "accepted": 0});
            return reply(status, body, &visitor_id);
        }
        tracing::debug!(visitor_id = %visitor_id, accepted = accepted.len(), rejected = rejected_count, "events queued");
        let body = json!({"visitor_id": visitor_id, "accepted": accepted.len(), "rejected_count": rejected_count, "rejected": rejected_json});
        reply(202, body, &visitor_id)
    }

    fn to_event(
        &self,
        item: IntakeItem,
        visitor_id: &VisitorId,
        received_at: DateTime<Utc>,
        request: &CollectRequest,
        source: EventSource,
    ) -> CollectedEvent {
        // A browser clock that runs ahead must never place an event after its receipt.
        let event_time = item
            .event_time
            .map_or(received_at, |time| time.min(received_at));
        CollectedEvent {
            visitor_id: visitor_id.clone(),
            event_id: item
                .event_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            name: item.name,
            received_at,
            event_time,
            source,
            page: item.page,
            client: crate::event::ClientContext {
                ip: request.client_ip.clone(),
                user_agent: request.user_agent.clone(),
            },
            cookies: item.cookies,
            consent: item.consent,
            user: item.user,
            ecommerce: item.ecommerce,
            marketing: item.marketing,
            lead_type: item.lead_type,
            search_term: item.search_term,
        }
    }

    async fn keep_rejected(
        &self,
        received_at: DateTime<Utc>,
        rejected: Vec<(usize, Vec<IntakeError>, Value)>,
    ) {
        if rejected.is_empty() {
            return;
        }
        let items: Vec<QuarantinedItem> = rejected
            .into_iter()
            .map(|(index, errors, raw)| QuarantinedItem {
                received_at,
                index,
                errors,
                raw: bounded_raw(raw),
            })
            .collect();
        if let Err(error) = self.quarantine.quarantine(&items).await {
            tracing::error!(items = items.len(), error = %error, "quarantine write failed; rejected items are lost");
        }
    }
}

/// The raw item as kept in the quarantine: as it was, or its JSON text cut to
/// `MAX_QUARANTINED_RAW_BYTES` when longer.
fn bounded_raw(raw: Value) -> Value {
    let text = match &raw {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.len() <= MAX_QUARANTINED_RAW_BYTES {
        return raw;
    }
    let mut end = MAX_QUARANTINED_RAW_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(format!(
        "{}... [cut from {} bytes]",
        &text[..end],
        text.len()
    ))
}

/// Explains why a content type is not accepted, or `None` when it is. JSON and `text/plain`
/// (what `navigator.sendBeacon` sends for a string) are read as JSON; so is a body without a
/// type, as a Blob beacon sends.
fn unsupported_content_type(content_type: Option<&str>) -> Option<String> {
    let essence = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    let accepted = essence.is_empty()
        || essence == "application/json"
        || essence == "text/plain"
        || essence.ends_with("+json");
    (!accepted).then(|| {
        format!("content type {essence:?} is not supported; send application/json or text/plain")
    })
}

/// Items that passed validation, rejected items with their index, errors and raw value, and
/// the first Shopify `clientId` among the valid items.
type ParsedItems = (
    Vec<IntakeItem>,
    Vec<(usize, Vec<IntakeError>, Value)>,
    Option<String>,
);

/// Validates every item of a body in the format of `source`.
fn parse_items(items: Vec<Value>, is_array: bool, source: EventSource) -> ParsedItems {
    let mut valid = Vec::new();
    let mut rejected = Vec::new();
    let mut client_id = None;
    for (index, item) in items.into_iter().enumerate() {
        let path = if is_array {
            format!("[{index}]")
        } else {
            String::new()
        };
        let parsed = match source {
            EventSource::DataLayer => parse_item(&item, &path),
            EventSource::ShopifyPixel => parse_shopify_event(&item, &path).and_then(|parsed| {
                same_client(&mut client_id, parsed.client_id, &path)?;
                Ok(parsed.item)
            }),
        };
        match parsed {
            Ok(parsed) => valid.push(parsed),
            Err(error) => rejected.push((index, vec![error], item)),
        }
    }
    (valid, rejected, client_id)
}

/// Keeps the first `clientId` of a body and rejects an event with another one, since every
/// event of a request is attributed to one visitor.
fn same_client(
    first: &mut Option<String>,
    client_id: Option<String>,
    path: &str,
) -> Result<(), IntakeError> {
    match (first.as_deref(), client_id) {
        (Some(first), Some(other)) if first != other => Err(IntakeError::new(
            &format!("{path}.clientId"),
            "differs from the first event's clientId; send one browser's events per request",
        )),
        (None, Some(client_id)) => {
            *first = Some(client_id);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn truncate_to_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}
