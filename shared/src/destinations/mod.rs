//! Destinations: one file per platform, each mapping enriched events to that platform's
//! request contract. Sending, retrying and counting live in `delivery`.

pub mod config;
pub mod hashing;
pub mod klaviyo;
pub mod meta;

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

/// Where a credential goes in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlacement {
    Header(String),
    Query(String),
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

/// What the outbox records for a request: all of it but the credentials' values.
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

/// A destination's answer, reduced to what delivery decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// How delivery should treat a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accepted,
    /// A failure that may pass: try again, after `after` when the platform said so.
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
}

/// Why a destination does not take an event at all.
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

    /// Whether the platform takes this event; `Err` says why not.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip>;

    /// Builds the requests for up to `max_batch` events, all of which passed `check`.
    fn build(&self, events: &[&EnrichedEvent], now: DateTime<Utc>) -> Vec<OutboundRequest>;

    /// Reads a response. The default treats 2xx as accepted, 408, 429 and 5xx as retryable
    /// and every other status as a rejection.
    fn classify(&self, _request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        classify_status(response)
    }
}

/// The default status-code rule shared by destinations.
pub fn classify_status(response: &TransportResponse) -> Verdict {
    match response.status {
        200..=299 => Verdict::Accepted,
        408 | 429 | 500..=599 => Verdict::Retry {
            after: response.retry_after,
            reason: format!("HTTP {}", response.status),
        },
        status => Verdict::Rejected {
            reason: format!("HTTP {status}: {}", truncate(&response.body, 500)),
        },
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
