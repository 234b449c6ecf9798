//! In-memory store for unit tests and replays: profiles, identity index, counters and
//! quarantine in maps behind one lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::NaiveDate;

use crate::event::{CollectedEvent, VisitorId};
use crate::ports::{
    DailyCount, DailyCounters, EventQueue, IdentifierKind, IdentityIndex, Outcome, ProfileReader,
    ProfileWriter, Quarantine, QuarantinedItem, QueueError, StoreError,
};
use crate::profile::VisitorProfile;

/// Most quarantined items kept in memory; the oldest go first.
const QUARANTINE_MAX_ITEMS: usize = 10_000;

#[derive(Debug, Default)]
struct Tables {
    profiles: HashMap<VisitorId, VisitorProfile>,
    index: HashMap<(IdentifierKind, String), BTreeMap<VisitorId, i64>>,
    counters: BTreeMap<(String, NaiveDate, Outcome), u64>,
    quarantine: Vec<QuarantinedItem>,
    queued: Vec<CollectedEvent>,
}

/// Every store port in process memory; expiry is enforced on read like the real stores.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stored profile of `visitor_id` as it is, expired or not (for tests).
    pub fn raw_profile(&self, visitor_id: &VisitorId) -> Option<VisitorProfile> {
        self.tables().profiles.get(visitor_id).cloned()
    }

    /// Replaces a stored profile as it is (for tests that plant old records).
    pub fn put_raw_profile(&self, profile: VisitorProfile) {
        self.tables()
            .profiles
            .insert(profile.visitor_id.clone(), profile);
    }

    pub fn quarantined(&self) -> Vec<QuarantinedItem> {
        self.tables().quarantine.clone()
    }

    /// Events put on this store's queue side, and clears them.
    pub fn take_queued(&self) -> Vec<CollectedEvent> {
        std::mem::take(&mut self.tables().queued)
    }
}

#[async_trait]
impl ProfileReader for MemoryStore {
    async fn load_profiles(
        &self,
        visitor_ids: &[VisitorId],
        now_secs: i64,
    ) -> Result<HashMap<VisitorId, VisitorProfile>, StoreError> {
        let tables = self.tables();
        Ok(visitor_ids
            .iter()
            .filter_map(|id| tables.profiles.get(id))
            .filter(|profile| !profile.is_expired_at(now_secs))
            .map(|profile| {
                let mut profile = profile.clone();
                profile.prune_expired(now_secs);
                (profile.visitor_id.clone(), profile)
            })
            .collect())
    }
}

#[async_trait]
impl ProfileWriter for MemoryStore {
    async fn save_profile(&self, profile: &VisitorProfile) -> Result<(), StoreError> {
        let mut tables = self.tables();
        // An expired record that is still stored counts as absent, as it does on read.
        let now_secs = profile.updated_ms.div_euclid(1000);
        let stored_version = tables
            .profiles
            .get(&profile.visitor_id)
            .filter(|stored| !stored.is_expired_at(now_secs))
            .map(|p| p.version);
        let expected = (profile.version > 0).then_some(profile.version);
        if stored_version != expected {
            return Err(StoreError::Conflict {
                visitor_id: profile.visitor_id.clone(),
            });
        }
        let mut saved = profile.clone();
        saved.version += 1;
        tables.profiles.insert(saved.visitor_id.clone(), saved);
        Ok(())
    }
}

#[async_trait]
impl IdentityIndex for MemoryStore {
    async fn link(
        &self,
        kind: IdentifierKind,
        digest: &str,
        visitor_id: &VisitorId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables();
        let entry = tables.index.entry((kind, digest.to_owned())).or_default();
        let stored = entry.entry(visitor_id.clone()).or_insert(expires_at);
        *stored = (*stored).max(expires_at);
        Ok(())
    }

    async fn visitors(
        &self,
        kind: IdentifierKind,
        digest: &str,
        now_secs: i64,
    ) -> Result<Vec<VisitorId>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .index
            .get(&(kind, digest.to_owned()))
            .map(|visitors| {
                visitors
                    .iter()
                    .filter(|(_, expires_at)| **expires_at > now_secs)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl DailyCounters for MemoryStore {
    async fn add(&self, counts: &[DailyCount]) -> Result<(), StoreError> {
        let mut tables = self.tables();
        for count in counts {
            let key = (count.destination.clone(), count.day, count.outcome);
            *tables.counters.entry(key).or_default() += count.count;
        }
        Ok(())
    }

    async fn range(
        &self,
        destination: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyCount>, StoreError> {
        let tables = self.tables();
        Ok(tables
            .counters
            .iter()
            .filter(|((name, day, _), _)| name == destination && *day >= from && *day <= to)
            .map(|((name, day, outcome), count)| DailyCount {
                day: *day,
                destination: name.clone(),
                outcome: *outcome,
                count: *count,
            })
            .collect())
    }
}

#[async_trait]
impl Quarantine for MemoryStore {
    async fn quarantine(&self, items: &[QuarantinedItem]) -> Result<(), QueueError> {
        let mut tables = self.tables();
        tables.quarantine.extend_from_slice(items);
        let excess = tables.quarantine.len().saturating_sub(QUARANTINE_MAX_ITEMS);
        tables.quarantine.drain(..excess);
        Ok(())
    }
}

#[async_trait]
impl EventQueue for MemoryStore {
    async fn enqueue(&self, events: &[CollectedEvent]) -> Result<(), QueueError> {
        self.tables().queued.extend_from_slice(events);
        Ok(())
    }
}
