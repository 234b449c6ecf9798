//! Destinations: one file per platform, each mapping enriched events to that platform's
//! request contract. Sending, retrying and counting live in `delivery`.

pub mod config;
pub mod ga4;
pub mod google_ads;
pub mod hashing;
pub mod klaviyo;
pub mod mapping;
pub mod meta;
pub mod microsoft;
pub mod pinterest;
pub mod snapchat;
pub mod tiktok;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enrich::EnrichedEvent;
use crate::event::Purpose;

pub use config::{DestinationsConfig, build_destinations};

/// A credential that is applied only when a request is sent and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The place of a credential in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlacement {
    Header(String),
    Query(String),
    /// A field of a form-encoded body (OAuth token requests).
    Form(String),
}

/// One HTTP request a destination wants sent, with its credentials kept apart so that the
/// outbox and the logs can show everything else.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRequest {
    pub destination: &'static str,
    /// Name of the platform operation, such as `create_event`.
    pub operation: &'static str,
    pub method: http::Method,
    /// Full URL without any credential.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub secrets: Vec<(SecretPlacement, Secret)>,
    pub body: serde_json::Value,
    /// Browser event ids this request carries, for outcome accounting.
    pub event_ids: Vec<String>,
}

/// The outbox record of a request: all of it but the credentials' values.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest<'a> {
    pub destination: &'a str,
    pub operation: &'a str,
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub event_ids: &'a [String],
    pub body: &'a serde_json::Value,
}

impl OutboundRequest {
    /// The request as the outbox records it: credential headers and parameters are listed by
    /// name with the value `[redacted]`.
    pub fn recorded(&self) -> RecordedRequest<'_> {
        let mut headers = self.headers.clone();
        for (placement, _) in &self.secrets {
            if let SecretPlacement::Header(name) = placement {
                headers.push((name.clone(), "[redacted]".into()));
            }
        }
        RecordedRequest {
            destination: self.destination,
            operation: self.operation,
            method: self.method.as_str(),
            url: &self.url,
            headers,
            event_ids: &self.event_ids,
            body: &self.body,
        }
    }
}

/// A destination's response, reduced to what delivery decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// The delivery decision for a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accepted,
    /// A 2xx from a platform that returns 2xx whatever the payload (GA4's `/mp/collect`), so
    /// the event is not sent again although the platform did not confirm it was recorded.
    Unverified,
    /// A failure that may pass: try again, after `after` when the platform requested a wait.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// A failure that would fail again on retry.
    Rejected {
        reason: String,
    },
    /// A rejection with a safe alternative request to send instead, once.
    Fallback {
        request: Box<OutboundRequest>,
        reason: String,
    },
    /// The request was taken, but the platform rejected some of its events; the others were
    /// accepted.
    Partial {
        failures: Vec<EventFailure>,
    },
}

/// One event of a batch that the platform rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFailure {
    pub event_id: String,
    pub reason: String,
    /// Whether a later attempt may succeed (for example Google Ads' `TOO_RECENT_EVENT`).
    pub retryable: bool,
}

/// The reason a destination does not take an event at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The event lacks every identifier the platform needs.
    Unidentified,
    /// The platform has no use for this event name in its configuration.
    NotMapped,
}

/// One platform: its needs, limits and request mapping.
pub trait Destination: Send + Sync + fmt::Debug {
    /// Stable name used in configuration, counters and the outbox file name.
    fn name(&self) -> &'static str;

    /// Consent purposes an event needs before it may be sent here.
    fn purposes(&self) -> &'static [Purpose];

    /// Maximum events in one request.
    fn max_batch(&self) -> usize;

    /// Oldest event time the platform accepts, relative to the send time.
    fn max_age(&self) -> Option<chrono::Duration>;

    /// Returns the maximum age for this event, where it depends on how the event is sent
    /// (Google Ads takes click uploads for 90 days but enhancements for 24 hours).
    fn max_age_for(&self, _event: &EnrichedEvent) -> Option<chrono::Duration> {
        self.max_age()
    }

    /// Checks whether the platform takes this event; `Err` gives the reason it does not.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip>;

    /// Builds the requests for up to `max_batch` events, all of which passed `check`.
    fn build(&self, events: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest>;

    /// Reads a response. The default treats 2xx as accepted, 408, 429 and 5xx as retryable
    /// and every other status as a rejection.
    fn classify(&self, _request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        classify_status(response)
    }

    /// Time one request may spend in attempts and waits; `None` uses the deliverer's policy.
    fn retry_budget(&self) -> Option<Duration> {
        None
    }
}

/// Classifies a response by status code, the rule shared by destinations.
pub fn classify_status(response: &TransportResponse) -> Verdict {
    match response.status {
        200..=299 => Verdict::Accepted,
        408 | 429 | 500..=599 => Verdict::Retry {
            after: response.retry_after,
            reason: format!("HTTP {}", response.status),
        },
        status => Verdict::Rejected {
            reason: format!("HTTP {status}: {}", platform_error(&response.body)),
        },
    }
}

/// A platform's error body, shortened to 500 characters and with anything that looks like an
/// email address or a phone number masked, because platforms echo rejected values and the
/// reason ends up in logs.
pub fn platform_error(body: &str) -> String {
    let shortened = match body.char_indices().nth(500) {
        Some((index, _)) => &body[..index],
        None => body,
    };
    let mut masked = String::with_capacity(shortened.len());
    let mut token = String::new();
    let flush = |token: &mut String, masked: &mut String| {
        let digits = token.chars().filter(char::is_ascii_digit).count();
        if token.contains('@') {
            masked.push_str("[email]");
        } else if digits >= 7 && digits * 2 > token.len() {
            masked.push_str("[number]");
        } else {
            masked.push_str(token);
        }
        token.clear();
    };
    for c in shortened.chars() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ':' | '{' | '}' | '[' | ']') {
            flush(&mut token, &mut masked);
            masked.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut masked);
    masked
}

/// The event ids of a batch, in order.
pub(crate) fn event_ids(events: &[&EnrichedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| event.event.event_id.clone())
        .collect()
}

/// A JSON number for a money amount: rounded to cents, and never `-0`.
pub(crate) fn amount(value: f64) -> serde_json::Value {
    let cents = (value * 100.0).round() / 100.0;
    serde_json::json!(if cents == 0.0 { 0.0 } else { cents })
}

/// A product quantity as a whole number, at least 1.
pub(crate) fn quantity(value: f64) -> i64 {
    (value.round() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_error_masks_contact_values() {
        let body = r#"{"detail":"user@example.com is invalid; phone +1 555-555-0100, id 42"}"#;

        let masked = platform_error(body);

        assert!(!masked.contains("user@example.com"), "{masked}");
        assert!(!masked.contains("555-555-0100"), "{masked}");
        assert!(masked.contains("[email]"));
        assert!(masked.contains("id 42"));
    }

    #[test]
    fn amount_rounds_and_drops_negative_zero() {
        assert_eq!(amount(-0.0).to_string(), "0.0");
        assert_eq!(amount(12.345).to_string(), "12.35");
    }
}
