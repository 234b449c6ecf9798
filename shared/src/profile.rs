//! The record revisit keeps about one visitor: identity facts, click ids and marketing touches,
//! each with the times it was seen and the time it expires.

mod observe;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attribution::Touch;
use crate::event::VisitorId;

pub use observe::{Observations, ProfilePolicy, observe_event};

/// Keys of the identity map. Platform ids are stored under their cookie name (`_fbp`, `_ga`,
/// `_ga_<stream>`, `_ttp`, `_scid`) and Klaviyo's exchange id under `_kx`.
pub mod keys {
    pub const EMAIL: &str = "email";
    pub const PHONE: &str = "phone";
    pub const EMAIL_SHA256: &str = "email_sha256";
    pub const PHONE_SHA256: &str = "phone_sha256";
    pub const CUSTOMER_ID: &str = "customer_id";
    pub const FIRST_NAME: &str = "first_name";
    pub const LAST_NAME: &str = "last_name";
    pub const ADDRESS1: &str = "address1";
    pub const ADDRESS2: &str = "address2";
    pub const CITY: &str = "city";
    /// State or province code, as the storefront sends it.
    pub const REGION: &str = "region";
    pub const ZIP: &str = "zip";
    /// ISO 3166 alpha-2, upper case.
    pub const COUNTRY: &str = "country";
    pub const FBP: &str = "_fbp";
    pub const GA: &str = "_ga";
    pub const TTP: &str = "_ttp";
    pub const SCID: &str = "_scid";
    pub const KX: &str = "_kx";
    /// Prefix of GA4 session cookies, one per data stream.
    pub const GA_SESSION_PREFIX: &str = "_ga_";
}

/// Maximum number of event ids kept to recognise a redelivered event.
pub const RECENT_EVENT_LIMIT: usize = 50;
/// Maximum number of GA4 session cookies (one per data stream) kept per visitor.
pub const GA_SESSION_LIMIT: usize = 8;

/// One remembered value with its provenance and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub value: String,
    /// Unix milliseconds when this value was first seen.
    pub first_seen_ms: i64,
    /// Unix milliseconds when this value was last seen.
    pub last_seen_ms: i64,
    /// Unix seconds after which the value is never used.
    pub expires_at: i64,
    /// Event that first supplied this value.
    pub event_id: String,
}

impl Fact {
    pub fn is_valid_at(&self, now_secs: i64) -> bool {
        self.expires_at > now_secs
    }
}

/// Everything remembered about one visitor; one record per visitor id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorProfile {
    pub visitor_id: VisitorId,
    /// Incremented by every save; stores use it to reject a write based on a stale read.
    #[serde(default)]
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Unix seconds after which the whole record may be deleted: the latest fact expiry.
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identity: BTreeMap<String, Fact>,
    /// Click ids by `ClickIdKind::key`; the `fbc` entry is the full Meta value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub click_ids: BTreeMap<String, Fact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_touch: Option<Touch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_touch: Option<Touch>,
    /// Ids of the latest events applied, newest last, at most `RECENT_EVENT_LIMIT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_event_ids: Vec<String>,
    #[serde(default)]
    pub event_count: u64,
    /// Destinations that accepted each recent event, so a redelivered event is not sent again.
    /// At most `RECENT_EVENT_LIMIT` events, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<DeliveryRecord>,
}

/// The destinations that accepted one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub destinations: Vec<String>,
}

impl VisitorProfile {
    /// An empty profile for a visitor first seen at `now_ms`.
    pub fn new(visitor_id: VisitorId, now_ms: i64) -> Self {
        Self {
            visitor_id,
            version: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            expires_at: now_ms / 1000,
            identity: BTreeMap::new(),
            click_ids: BTreeMap::new(),
            first_touch: None,
            last_touch: None,
            recent_event_ids: Vec::new(),
            event_count: 0,
            deliveries: Vec::new(),
        }
    }

    /// Drops every fact, click id and touch whose expiry is not after `now_secs`.
    pub fn prune_expired(&mut self, now_secs: i64) {
        self.identity.retain(|_, fact| fact.is_valid_at(now_secs));
        self.click_ids.retain(|_, fact| fact.is_valid_at(now_secs));
        if self
            .first_touch
            .as_ref()
            .is_some_and(|touch| touch.expires_at <= now_secs)
        {
            self.first_touch = None;
        }
        if self
            .last_touch
            .as_ref()
            .is_some_and(|touch| touch.expires_at <= now_secs)
        {
            self.last_touch = None;
        }
    }

    /// Whether the whole record is past its expiry.
    pub fn is_expired_at(&self, now_secs: i64) -> bool {
        self.expires_at <= now_secs
    }

    /// Whether the event was already applied to this profile.
    pub fn has_applied(&self, event_id: &str) -> bool {
        self.recent_event_ids.iter().any(|id| id == event_id)
    }

    /// Whether `destination` already accepted the event.
    pub fn was_delivered(&self, event_id: &str, destination: &str) -> bool {
        self.deliveries.iter().any(|record| {
            record.event_id == event_id && record.destinations.iter().any(|d| d == destination)
        })
    }

    /// Records that `destination` accepted the event.
    pub fn record_delivery(&mut self, event_id: &str, destination: &str) {
        if let Some(record) = self
            .deliveries
            .iter_mut()
            .find(|record| record.event_id == event_id)
        {
            if !record.destinations.iter().any(|d| d == destination) {
                record.destinations.push(destination.to_owned());
            }
            return;
        }
        self.deliveries.push(DeliveryRecord {
            event_id: event_id.to_owned(),
            destinations: vec![destination.to_owned()],
        });
        let excess = self.deliveries.len().saturating_sub(RECENT_EVENT_LIMIT);
        self.deliveries.drain(..excess);
    }

    /// The identity value under `key`, when valid at `now_secs`.
    pub fn identity_value(&self, key: &str, now_secs: i64) -> Option<&str> {
        self.identity
            .get(key)
            .filter(|fact| fact.is_valid_at(now_secs))
            .map(|fact| fact.value.as_str())
    }

    /// Whether the visitor has an email or phone (raw or hashed) that is still valid.
    pub fn is_identified_at(&self, now_secs: i64) -> bool {
        [
            keys::EMAIL,
            keys::PHONE,
            keys::EMAIL_SHA256,
            keys::PHONE_SHA256,
        ]
        .iter()
        .any(|key| self.identity_value(key, now_secs).is_some())
    }

    /// Recomputes the record expiry as the latest expiry of anything it holds.
    pub(crate) fn refresh_expiry(&mut self, floor_secs: i64) {
        let facts = self.identity.values().chain(self.click_ids.values());
        let touches = self.first_touch.iter().chain(self.last_touch.iter());
        self.expires_at = facts
            .map(|fact| fact.expires_at)
            .chain(touches.map(|touch| touch.expires_at))
            .fold(floor_secs, i64::max);
    }
}
