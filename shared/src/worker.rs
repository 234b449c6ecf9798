//! The enrich side: apply each event to its visitor's profile, enrich it, deliver it, and save
//! the profile once per visitor and batch. Failures are reported per event so that a queue can
//! redeliver exactly the events that need it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::delivery::{Deliverer, DeliveryReport};
use crate::enrich::EnrichedEvent;
use crate::event::{CollectedEvent, Purpose, VisitorId};
use crate::ports::{
    Clock, DailyCount, DailyCounters, IdentifierKind, IdentityIndex, Outcome, ProfileReader,
    ProfileWriter, StoreError,
};
use crate::profile::{Observations, ProfilePolicy, VisitorProfile, keys, observe_event};

/// Attempts to save a profile when concurrent writers keep changing it.
const SAVE_ATTEMPTS: usize = 3;

/// The stores the worker reads and writes.
#[derive(Debug, Clone)]
pub struct WorkerStores {
    pub reader: Arc<dyn ProfileReader>,
    pub writer: Arc<dyn ProfileWriter>,
    pub index: Arc<dyn IdentityIndex>,
    pub counters: Arc<dyn DailyCounters>,
}

/// An identity index entry to write: a new email or phone seen for a visitor.
#[derive(Debug, Clone)]
struct IndexLink {
    kind: IdentifierKind,
    digest: String,
    visitor_id: VisitorId,
    expires_at: i64,
}

/// Profiles with a batch's events applied, and what applying them produced.
#[derive(Debug, Default)]
struct AppliedBatch {
    profiles: HashMap<VisitorId, VisitorProfile>,
    /// Enriched events in batch order.
    enriched: Vec<EnrichedEvent>,
    /// Positions of events whose id appeared earlier in the batch for the same visitor.
    repeats: BTreeSet<usize>,
    links: Vec<IndexLink>,
}

/// The result of processing a batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Positions in the batch of the events to redeliver: a failed event and every later
    /// event of the same visitor.
    pub failed: BTreeSet<usize>,
    /// The enriched events, in batch order, for the events that were processed.
    pub enriched: Vec<EnrichedEvent>,
    pub delivery: DeliveryReport,
}

/// Applies, enriches and delivers batches of collected events.
#[derive(Debug, Clone)]
pub struct Worker {
    stores: WorkerStores,
    deliverer: Deliverer,
    clock: Arc<dyn Clock>,
    policy: ProfilePolicy,
    /// Key of the HMAC that turns emails and phones into index keys.
    index_key: Vec<u8>,
    /// Maximum time daily counts wait in memory before they are written; zero writes them
    /// after every batch.
    counter_flush: std::time::Duration,
    counters_pending: Arc<std::sync::Mutex<CounterBuffer>>,
}

/// Daily counts not yet written, by day, destination and outcome.
#[derive(Debug, Default)]
struct CounterBuffer {
    counts: BTreeMap<(NaiveDate, String, Outcome), u64>,
    flushed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Worker {
    pub fn new(
        stores: WorkerStores,
        deliverer: Deliverer,
        clock: Arc<dyn Clock>,
        policy: ProfilePolicy,
        index_key: Vec<u8>,
    ) -> Self {
        Self {
            stores,
            deliverer,
            clock,
            policy,
            index_key,
            counter_flush: std::time::Duration::ZERO,
            counters_pending: Arc::default(),
        }
    }

    /// Buffers daily counts for up to `interval` and writes them in one update, so that a
    /// quiet store, whose batches hold one event each, does not pay a counter write per event.
    /// Buffered counts are lost if the process dies without `flush_counters`.
    pub fn with_counter_flush(mut self, interval: std::time::Duration) -> Self {
        self.counter_flush = interval;
        self
    }

    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    /// Processes a batch whose events of one visitor are in order.
    pub async fn process_batch(&self, events: &[CollectedEvent]) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        if events.is_empty() {
            return outcome;
        }
        let now_secs = self.clock.now().timestamp();
        let by_visitor = group_by_visitor(events);
        let ids: Vec<VisitorId> = by_visitor.keys().map(|id| (*id).clone()).collect();
        let profiles = match self.stores.reader.load_profiles(&ids, now_secs).await {
            Ok(profiles) => profiles,
            Err(error) => {
                tracing::error!(events = events.len(), error = %error, "loading profiles failed; the batch will be redelivered");
                outcome.failed = (0..events.len()).collect();
                return outcome;
            }
        };
        let applied = self.apply_batch(events, &by_visitor, profiles, now_secs);
        let mut touched = applied.profiles;
        let delivery = self
            .deliver(events, &applied.enriched, &applied.repeats, &touched)
            .await;
        for (event_id, destination) in &delivery.accepted {
            if let Some(event) = events.iter().find(|event| &event.event_id == event_id)
                && let Some(profile) = touched.get_mut(&event.visitor_id)
            {
                profile.record_delivery(event_id, destination);
            }
        }
        for (visitor_id, profile) in touched {
            let indexes = &by_visitor[&visitor_id];
            if let Err(error) = self.save(profile, indexes, events, now_secs).await {
                tracing::error!(visitor_id = %visitor_id, events = indexes.len(), error = %error, "saving profile failed; its events will be redelivered");
                outcome.failed.extend(indexes.iter().copied());
            }
        }
        outcome
            .failed
            .extend(later_events_of_failed(events, &by_visitor, &delivery));
        self.link_identities(&applied.links).await;
        self.count(&delivery).await;
        outcome.enriched = applied.enriched;
        outcome.delivery = delivery;
        outcome
    }

    /// Applies every event to its visitor's profile, in order, and enriches it.
    fn apply_batch(
        &self,
        events: &[CollectedEvent],
        by_visitor: &BTreeMap<&VisitorId, Vec<usize>>,
        mut profiles: HashMap<VisitorId, VisitorProfile>,
        now_secs: i64,
    ) -> AppliedBatch {
        let mut applied = AppliedBatch::default();
        let mut enriched_at: Vec<(usize, EnrichedEvent)> = Vec::new();
        for (visitor_id, indexes) in by_visitor {
            let first_seen_ms = events[indexes[0]].received_at.timestamp_millis();
            let mut profile = profiles
                .remove(*visitor_id)
                .unwrap_or_else(|| VisitorProfile::new((*visitor_id).clone(), first_seen_ms));
            let mut seen = BTreeSet::new();
            for &index in indexes {
                let event = &events[index];
                // A browser may send one event twice in a batch; only the first copy goes out.
                if !seen.insert(event.event_id.as_str()) {
                    applied.repeats.insert(index);
                }
                let (enriched, new_links) = self.apply_event(&mut profile, event, now_secs);
                applied.links.extend(new_links);
                enriched_at.push((index, enriched));
            }
            applied.profiles.insert((*visitor_id).clone(), profile);
        }
        enriched_at.sort_by_key(|(index, _)| *index);
        applied.enriched = enriched_at.into_iter().map(|(_, event)| event).collect();
        applied
    }

    /// Delivers the batch's events except repeated copies, which count as duplicates.
    async fn deliver(
        &self,
        events: &[CollectedEvent],
        enriched: &[EnrichedEvent],
        repeats: &BTreeSet<usize>,
        touched: &HashMap<VisitorId, VisitorProfile>,
    ) -> DeliveryReport {
        let unique: Vec<EnrichedEvent> = enriched
            .iter()
            .enumerate()
            .filter(|(index, _)| !repeats.contains(index))
            .map(|(_, event)| event.clone())
            .collect();
        let mut delivery = self
            .deliverer
            .deliver(&unique, &|event_id, destination| {
                events
                    .iter()
                    .find(|event| event.event_id == event_id)
                    .and_then(|event| touched.get(&event.visitor_id))
                    .is_some_and(|profile| profile.was_delivered(event_id, destination))
            })
            .await;
        if !repeats.is_empty() {
            for route in self.deliverer.routes() {
                let key = (route.destination.name().to_owned(), Outcome::Duplicate);
                *delivery.counts.entry(key).or_default() += repeats.len() as u64;
            }
        }
        delivery
    }

    /// Applies one event (unless it was applied before) and returns its enriched form with the
    /// index links for identifiers the profile did not have.
    ///
    /// An event whose page denied marketing consent is enriched with what it carries, for the
    /// destinations it may still reach, but nothing it carries is remembered for later events.
    fn apply_event(
        &self,
        profile: &mut VisitorProfile,
        event: &CollectedEvent,
        now_secs: i64,
    ) -> (EnrichedEvent, Vec<IndexLink>) {
        let observations = observe_event(event, &self.policy);
        if !self.may_remember(event) {
            let mut scratch = profile.clone();
            let supplied = self.apply_observations(&mut scratch, event, &observations);
            profile.mark_applied(&event.event_id, event.received_at.timestamp_millis());
            let enriched = EnrichedEvent::new(event.clone(), &scratch, &supplied, now_secs);
            return (enriched, Vec::new());
        }
        let known_email = profile
            .identity_value(keys::EMAIL, now_secs)
            .map(str::to_owned);
        let known_phone = profile
            .identity_value(keys::PHONE, now_secs)
            .map(str::to_owned);
        let supplied = self.apply_observations(profile, event, &observations);
        let mut links = Vec::new();
        for (kind, key, known) in [
            (IdentifierKind::Email, keys::EMAIL, known_email),
            (IdentifierKind::Phone, keys::PHONE, known_phone),
        ] {
            if let Some(fact) = profile.identity.get(key)
                && known.as_deref() != Some(fact.value.as_str())
            {
                links.push(IndexLink {
                    kind,
                    digest: self.index_digest(kind, &fact.value),
                    visitor_id: profile.visitor_id.clone(),
                    expires_at: fact.expires_at,
                });
            }
        }
        let enriched = EnrichedEvent::new(event.clone(), profile, &supplied, now_secs);
        (enriched, links)
    }

    /// Whether what the event carries may be kept: only with marketing consent, since every
    /// identifier and click id is kept to match the visitor on ad and email platforms.
    fn may_remember(&self, event: &CollectedEvent) -> bool {
        event
            .consent
            .allows(Purpose::Marketing, self.policy.consent_default)
    }

    /// Applies the observations unless the event was applied before; returns the paths of the
    /// fields the event supplied.
    fn apply_observations(
        &self,
        profile: &mut VisitorProfile,
        event: &CollectedEvent,
        observations: &Observations,
    ) -> BTreeSet<String> {
        if profile.has_applied(&event.event_id) {
            return supplied_paths(observations);
        }
        let received_ms = event.received_at.timestamp_millis();
        profile.apply(observations, &event.event_id, received_ms, &self.policy)
    }

    /// Saves `profile`; on a conflict reloads it, applies the visitor's events again (those
    /// already applied are skipped) and keeps the delivery records made in this batch.
    async fn save(
        &self,
        mut profile: VisitorProfile,
        indexes: &[usize],
        events: &[CollectedEvent],
        now_secs: i64,
    ) -> Result<(), StoreError> {
        for attempt in 1..=SAVE_ATTEMPTS {
            match self.stores.writer.save_profile(&profile).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) if attempt < SAVE_ATTEMPTS => {
                    tracing::warn!(visitor_id = %profile.visitor_id, attempt, "profile changed concurrently; applying again");
                    let id = profile.visitor_id.clone();
                    let loaded = self
                        .stores
                        .reader
                        .load_profiles(std::slice::from_ref(&id), now_secs)
                        .await?;
                    let first_seen_ms = events[indexes[0]].received_at.timestamp_millis();
                    let mut fresh = loaded
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| VisitorProfile::new(id.clone(), first_seen_ms));
                    for &index in indexes {
                        self.apply_event(&mut fresh, &events[index], now_secs);
                    }
                    for record in &profile.deliveries {
                        for destination in &record.destinations {
                            fresh.record_delivery(&record.event_id, destination);
                        }
                    }
                    profile = fresh;
                }
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Conflict {
            visitor_id: profile.visitor_id,
        })
    }

    /// Computes the HMAC-SHA256 of a normalised identifier with the deployment's index key, in
    /// hex, so the index never contains an email or phone in clear.
    pub fn index_digest(&self, kind: IdentifierKind, value: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.index_key).expect("HMAC accepts any key length");
        let prefix = match kind {
            IdentifierKind::Email => "email:",
            IdentifierKind::Phone => "phone:",
        };
        mac.update(prefix.as_bytes());
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Records new email and phone links; a failure only costs dashboard lookups, so it is
    /// logged and not retried.
    async fn link_identities(&self, links: &[IndexLink]) {
        for link in links {
            let result = self
                .stores
                .index
                .link(link.kind, &link.digest, &link.visitor_id, link.expires_at)
                .await;
            if let Err(error) = result {
                tracing::warn!(visitor_id = %link.visitor_id, error = %error, "writing identity index failed");
            }
        }
    }

    /// Adds the batch's outcomes to the buffered counts and writes them when due.
    async fn count(&self, delivery: &DeliveryReport) {
        let day: NaiveDate = self.clock.now().date_naive();
        let due = {
            let mut buffer = self.counter_buffer();
            for ((destination, outcome), count) in &delivery.counts {
                if *count > 0 {
                    *buffer
                        .counts
                        .entry((day, destination.clone(), *outcome))
                        .or_default() += count;
                }
            }
            let since_flush = self.clock.now() - *buffer.flushed_at.get_or_insert(self.clock.now());
            since_flush.to_std().unwrap_or_default() >= self.counter_flush
        };
        if due {
            self.flush_counters().await;
        }
    }

    /// Writes the buffered daily counts; on failure they stay buffered for the next flush.
    /// Call it before the process ends (local stop, Lambda's shutdown signal).
    pub async fn flush_counters(&self) {
        let counts: Vec<DailyCount> = {
            let mut buffer = self.counter_buffer();
            buffer.flushed_at = Some(self.clock.now());
            std::mem::take(&mut buffer.counts)
                .into_iter()
                .map(|((day, destination, outcome), count)| DailyCount {
                    day,
                    destination,
                    outcome,
                    count,
                })
                .collect()
        };
        if counts.is_empty() {
            return;
        }
        if let Err(error) = self.stores.counters.add(&counts).await {
            tracing::warn!(error = %error, counts = counts.len(), "updating daily counters failed; keeping them for the next flush");
            let mut buffer = self.counter_buffer();
            for count in counts {
                *buffer
                    .counts
                    .entry((count.day, count.destination, count.outcome))
                    .or_default() += count.count;
            }
        }
    }

    fn counter_buffer(&self) -> std::sync::MutexGuard<'_, CounterBuffer> {
        self.counters_pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Events of each visitor, by position in the batch, in batch order.
fn group_by_visitor(events: &[CollectedEvent]) -> BTreeMap<&VisitorId, Vec<usize>> {
    let mut by_visitor: BTreeMap<&VisitorId, Vec<usize>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        by_visitor.entry(&event.visitor_id).or_default().push(index);
    }
    by_visitor
}

/// Positions of the events to redeliver because of a retryable delivery failure: the first
/// failed event of each visitor and every later event of that visitor, so order survives.
fn later_events_of_failed(
    events: &[CollectedEvent],
    by_visitor: &BTreeMap<&VisitorId, Vec<usize>>,
    delivery: &DeliveryReport,
) -> Vec<usize> {
    let mut failed = Vec::new();
    for (visitor_id, indexes) in by_visitor {
        let first_failure = indexes
            .iter()
            .position(|&index| delivery.retryable.contains(&events[index].event_id));
        if let Some(position) = first_failure {
            failed.extend(indexes[position..].iter().copied());
            tracing::warn!(visitor_id = %visitor_id, failed = indexes.len() - position, "events of visitor marked for redelivery");
        }
    }
    failed
}

/// The field paths an event supplies, without applying it (for an event applied before).
fn supplied_paths(observations: &Observations) -> BTreeSet<String> {
    let identity = observations
        .identity
        .keys()
        .map(|key| format!("identity.{key}"));
    let clicks = observations
        .url_click_ids
        .keys()
        .map(|key| format!("click_ids.{key}"));
    let utm = observations.utm.keys().map(|key| format!("utm.{key}"));
    identity.chain(clicks).chain(utm).collect()
}
