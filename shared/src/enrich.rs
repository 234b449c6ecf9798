//! Enrichment: an event joined with what is remembered about its visitor, with the lineage of
//! every field the event did not carry itself.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::attribution::{self, Touch};
use crate::event::CollectedEvent;
use crate::identity::platform_ids::{self, GaSession};
use crate::profile::{Fact, VisitorProfile, keys};

/// Where an enriched field came from: the event that supplied it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    pub event_id: String,
    pub at: DateTime<Utc>,
}

/// A click id with the time it was first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickId {
    pub value: String,
    /// Unix milliseconds of the click (for `fbc`, the creation time inside the value).
    pub first_seen_ms: i64,
}

/// An event with every identifier, click id and UTM known for its visitor at processing time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedEvent {
    pub event: CollectedEvent,
    /// Normalised identity by `profile::keys` name.
    pub identity: BTreeMap<String, String>,
    pub click_ids: BTreeMap<String, ClickId>,
    /// UTMs of the event's own URL, else of the visitor's latest touch.
    pub utm: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_touch: Option<Touch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_touch: Option<Touch>,
    /// For each field filled from the profile (`identity.email`, `click_ids.fbc`,
    /// `utm.utm_source`), the event that supplied it.
    pub lineage: BTreeMap<String, Lineage>,
    /// Unix milliseconds when the visitor was first seen; stable per visitor, so destinations
    /// can derive ids from it (GA4's client id when the browser has no `_ga` cookie).
    #[serde(default)]
    pub visitor_since_ms: i64,
}

impl EnrichedEvent {
    /// Joins `event` with `profile`, which already has the event applied. `supplied` lists
    /// the fields the event carried itself; every other field gets a lineage entry.
    pub fn new(
        event: CollectedEvent,
        profile: &VisitorProfile,
        supplied: &BTreeSet<String>,
        now_secs: i64,
    ) -> Self {
        let mut lineage = BTreeMap::new();
        let mut note = |path: String, fact: &Fact| {
            if !supplied.contains(&path) {
                lineage.insert(
                    path,
                    Lineage {
                        event_id: fact.event_id.clone(),
                        at: millis_to_time(fact.first_seen_ms),
                    },
                );
            }
        };
        let mut identity = BTreeMap::new();
        for (key, fact) in profile
            .identity
            .iter()
            .filter(|(_, f)| f.is_valid_at(now_secs))
        {
            note(format!("identity.{key}"), fact);
            identity.insert(key.clone(), fact.value.clone());
        }
        let mut click_ids = BTreeMap::new();
        for (key, fact) in profile
            .click_ids
            .iter()
            .filter(|(_, f)| f.is_valid_at(now_secs))
        {
            note(format!("click_ids.{key}"), fact);
            let first_seen_ms = if key == "fbc" {
                platform_ids::fbc_created_ms(&fact.value).unwrap_or(fact.first_seen_ms)
            } else {
                fact.first_seen_ms
            };
            click_ids.insert(
                key.clone(),
                ClickId {
                    value: fact.value.clone(),
                    first_seen_ms,
                },
            );
        }
        let last_touch = profile
            .last_touch
            .clone()
            .filter(|t| t.expires_at > now_secs);
        let first_touch = profile
            .first_touch
            .clone()
            .filter(|t| t.expires_at > now_secs);
        let own_utm = event
            .page
            .url
            .as_deref()
            .map(|url| attribution::read_url(url).utm)
            .unwrap_or_default();
        let utm = if own_utm.is_empty() {
            let touch_utm = last_touch
                .as_ref()
                .map(|touch| touch.utm.clone())
                .unwrap_or_default();
            if let Some(touch) = &last_touch {
                for param in touch_utm.keys() {
                    lineage.insert(
                        format!("utm.{param}"),
                        Lineage {
                            event_id: touch.event_id.clone(),
                            at: millis_to_time(touch.first_seen_ms),
                        },
                    );
                }
            }
            touch_utm
        } else {
            own_utm
        };
        Self {
            event,
            identity,
            click_ids,
            utm,
            first_touch,
            last_touch,
            lineage,
            visitor_since_ms: profile.created_ms,
        }
    }

    pub fn email(&self) -> Option<&str> {
        self.identity_value(keys::EMAIL)
    }

    pub fn phone(&self) -> Option<&str> {
        self.identity_value(keys::PHONE)
    }

    pub fn identity_value(&self, key: &str) -> Option<&str> {
        self.identity.get(key).map(String::as_str)
    }

    pub fn click_id(&self, key: &str) -> Option<&ClickId> {
        self.click_ids.get(key)
    }

    /// Whether the event carries an email or phone, in clear or hashed, after enrichment.
    pub fn is_identified(&self) -> bool {
        [
            keys::EMAIL,
            keys::PHONE,
            keys::EMAIL_SHA256,
            keys::PHONE_SHA256,
        ]
        .iter()
        .any(|key| self.identity.contains_key(*key))
    }

    /// GA4 client id from the `_ga` cookie value.
    pub fn ga_client_id(&self) -> Option<String> {
        self.identity_value(keys::GA)
            .and_then(platform_ids::ga_client_id)
    }

    /// GA4 sessions by stream id (`_ga_ABC123` gives `ABC123`).
    pub fn ga_sessions(&self) -> BTreeMap<String, GaSession> {
        self.identity
            .iter()
            .filter_map(|(key, value)| {
                let stream = key.strip_prefix(keys::GA_SESSION_PREFIX)?;
                Some((stream.to_owned(), platform_ids::ga_session(value)?))
            })
            .collect()
    }
}

fn millis_to_time(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_default()
}
