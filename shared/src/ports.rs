//! Ports: the traits that the domain calls and that each adapter implements, one per kind of
//! infrastructure. None of them names a cloud type, so local mode and AWS share the domain.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{CollectedEvent, IntakeError, VisitorId};
use crate::profile::VisitorProfile;

/// Source of the current time; replays and tests substitute their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// A failure of the profile store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record changed since it was read; reload and apply again.
    #[error("profile {visitor_id} was changed by another writer")]
    Conflict { visitor_id: VisitorId },
    /// The store could not be reached or refused the call for now.
    #[error("profile store unavailable")]
    Unavailable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be decoded or encoded.
    #[error("profile record of {visitor_id} is invalid")]
    Invalid {
        visitor_id: VisitorId,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Unavailable { .. })
    }
}

/// Reads visitor profiles. Expired records are never returned.
#[async_trait]
pub trait ProfileReader: Send + Sync + std::fmt::Debug {
    /// Loads the profiles of `visitor_ids` that exist and have not expired at `now_secs`, in one
    /// batched read where the store allows it.
    async fn load_profiles(
        &self,
        visitor_ids: &[VisitorId],
        now_secs: i64,
    ) -> Result<HashMap<VisitorId, VisitorProfile>, StoreError>;
}

/// Writes visitor profiles with optimistic concurrency.
#[async_trait]
pub trait ProfileWriter: Send + Sync + std::fmt::Debug {
    /// Stores `profile` if the stored version is still `profile.version` (absent for version
    /// 0), writing it as version `profile.version + 1`; otherwise returns `Conflict`.
    async fn save_profile(&self, profile: &VisitorProfile) -> Result<(), StoreError>;
}

/// Which personal identifier an index entry is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Email,
    Phone,
}

/// Maps a keyed hash of an email or phone to the visitors seen with it.
#[async_trait]
pub trait IdentityIndex: Send + Sync + std::fmt::Debug {
    /// Records that `visitor_id` was seen with the identifier whose keyed hash is `digest`.
    async fn link(
        &self,
        kind: IdentifierKind,
        digest: &str,
        visitor_id: &VisitorId,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// The visitors linked to `digest` whose link has not expired at `now_secs`.
    async fn visitors(
        &self,
        kind: IdentifierKind,
        digest: &str,
        now_secs: i64,
    ) -> Result<Vec<VisitorId>, StoreError>;
}

/// What happened to an event at one destination, as counted per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A request carrying the event was sent.
    Sent,
    /// The destination accepted the event.
    Accepted,
    /// The destination returned 2xx but cannot confirm the event was recorded, because GA4's
    /// `/mp/collect` returns 2xx even for invalid payloads. The event is not sent again.
    Unverified,
    /// A send failed in a way that may pass later and was tried again.
    Retried,
    /// The destination rejected the event or retries ran out.
    Failed,
    /// The event was older than the destination accepts, so it was not sent.
    Expired,
    /// The shopper did not consent to a purpose the destination needs.
    Withheld,
    /// The event lacked an identifier the destination requires.
    Unidentified,
    /// The event had already been accepted before and was not sent again.
    Duplicate,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Self::Sent,
        Self::Accepted,
        Self::Unverified,
        Self::Retried,
        Self::Failed,
        Self::Expired,
        Self::Withheld,
        Self::Unidentified,
        Self::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Accepted => "accepted",
            Self::Unverified => "unverified",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Withheld => "withheld",
            Self::Unidentified => "unidentified",
            Self::Duplicate => "duplicate",
        }
    }
}

/// One day's count of an outcome at a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyCount {
    pub day: NaiveDate,
    pub destination: String,
    pub outcome: Outcome,
    pub count: u64,
}

/// Daily counters per destination and outcome, for dashboards.
#[async_trait]
pub trait DailyCounters: Send + Sync + std::fmt::Debug {
    /// Adds each count atomically to its day's counter.
    async fn add(&self, counts: &[DailyCount]) -> Result<(), StoreError>;

    /// The counters of `destination` from `from` to `to`, both days included.
    async fn range(
        &self,
        destination: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyCount>, StoreError>;
}

/// A failure to put events on the queue. Nothing of the failed call was accepted.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("event {event_id} is {size} bytes, over the queue's limit of {limit}")]
    TooLarge {
        event_id: String,
        size: usize,
        limit: usize,
    },
    #[error("event queue unavailable")]
    Unavailable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// The queue between `collect` and `enrich`. Events of one visitor are delivered in order.
#[async_trait]
pub trait EventQueue: Send + Sync + std::fmt::Debug {
    async fn enqueue(&self, events: &[CollectedEvent]) -> Result<(), QueueError>;
}

/// An intake item that was rejected, kept with the reason so nothing is dropped silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedItem {
    pub received_at: DateTime<Utc>,
    /// Position in the request's array, or 0 for a single-event body.
    pub index: usize,
    pub errors: Vec<IntakeError>,
    /// The item as received: JSON where it parsed, otherwise the raw text.
    pub raw: serde_json::Value,
}

/// Keeps rejected intake items for inspection.
#[async_trait]
pub trait Quarantine: Send + Sync + std::fmt::Debug {
    async fn quarantine(&self, items: &[QuarantinedItem]) -> Result<(), QueueError>;
}

/// A failure to get any HTTP answer from a destination.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("request to {destination} timed out")]
    Timeout { destination: String },
    #[error("could not connect to {destination}")]
    Connect {
        destination: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request could not be built or written (a bug or a bad setting, not a network fault).
    #[error("request to {destination} could not be sent")]
    Invalid {
        destination: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TransportError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Connect { .. })
    }
}

/// Sends a destination's request: over HTTP, or into the outbox.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    async fn send(
        &self,
        request: &crate::destinations::OutboundRequest,
    ) -> Result<crate::destinations::TransportResponse, TransportError>;
}
