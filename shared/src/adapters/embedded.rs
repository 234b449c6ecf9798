//! The embedded store of local mode: one redb file holding profiles, the identity index,
//! daily counters and the quarantine. Survives restarts; expiry is enforced on every read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use redb::{Database, ReadableTable, TableDefinition};

use crate::event::VisitorId;
use crate::ports::{
    DailyCount, DailyCounters, IdentifierKind, IdentityIndex, Outcome, ProfileReader,
    ProfileWriter, Quarantine, QuarantinedItem, QueueError, StoreError,
};
use crate::profile::VisitorProfile;

const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
/// Key `<kind>#<digest>`, value a JSON map of visitor id to link expiry (Unix seconds).
const INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("identity_index");
/// Key `<destination>#<YYYY-MM-DD>#<outcome>`.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("daily_counters");
const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");

/// Most quarantined items kept; the oldest go first.
pub const QUARANTINE_MAX_ITEMS: u64 = 100_000;
/// Days a quarantined item is kept.
pub const QUARANTINE_DAYS: i64 = 14;

/// A redb database file behind every store port.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable {
        source: Box::new(error),
    }
}

impl EmbeddedStore {
    /// Opens the database at `path`, creating it and its tables when missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(PROFILES).map_err(unavailable)?;
        txn.open_table(INDEX).map_err(unavailable)?;
        txn.open_table(COUNTERS).map_err(unavailable)?;
        txn.open_table(QUARANTINE).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(unavailable)?
    }

    /// Every quarantined item, oldest first.
    pub fn quarantined(&self) -> Result<Vec<QuarantinedItem>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(QUARANTINE).map_err(unavailable)?;
        let mut items = Vec::new();
        for row in table.iter().map_err(unavailable)? {
            let (_, value) = row.map_err(unavailable)?;
            if let Ok(item) = serde_json::from_slice(value.value()) {
                items.push(item);
            }
        }
        Ok(items)
    }
}

/// Deletes quarantined items received before `cutoff` and the oldest beyond
/// `QUARANTINE_MAX_ITEMS`, so the quarantine cannot fill the disk or keep data for ever.
fn prune_quarantine(
    table: &mut redb::Table<'_, u64, &[u8]>,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let Some(last) = table
        .last()
        .map_err(unavailable)?
        .map(|(key, _)| key.value())
    else {
        return Ok(());
    };
    let count_floor = (last + 1).saturating_sub(QUARANTINE_MAX_ITEMS);
    loop {
        let Some((key, received_at)) = table.first().map_err(unavailable)?.map(|(key, value)| {
            let item: Option<QuarantinedItem> = serde_json::from_slice(value.value()).ok();
            (key.value(), item.map(|item| item.received_at))
        }) else {
            return Ok(());
        };
        let too_old = received_at.is_none_or(|time| time < cutoff);
        if key >= count_floor && !too_old {
            return Ok(());
        }
        table.remove(key).map_err(unavailable)?;
    }
}

fn decode(visitor_id: &VisitorId, bytes: &[u8]) -> Result<VisitorProfile, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Invalid {
        visitor_id: visitor_id.clone(),
        source: Box::new(error),
    })
}

#[async_trait]
impl ProfileReader for EmbeddedStore {
    async fn load_profiles(
        &self,
        visitor_ids: &[VisitorId],
        now_secs: i64,
    ) -> Result<HashMap<VisitorId, VisitorProfile>, StoreError> {
        let ids = visitor_ids.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(PROFILES).map_err(unavailable)?;
            let mut profiles = HashMap::new();
            for id in ids {
                let Some(bytes) = table.get(id.as_str()).map_err(unavailable)? else {
                    continue;
                };
                let mut profile = decode(&id, bytes.value())?;
                if profile.is_expired_at(now_secs) {
                    continue;
                }
                profile.prune_expired(now_secs);
                profiles.insert(id, profile);
            }
            Ok(profiles)
        })
        .await
    }
}

#[async_trait]
impl ProfileWriter for EmbeddedStore {
    async fn save_profile(&self, profile: &VisitorProfile) -> Result<(), StoreError> {
        let mut saved = profile.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(PROFILES).map_err(unavailable)?;
                let id = saved.visitor_id.clone();
                // An expired record that is still stored counts as absent, as it does on read.
                let now_secs = saved.updated_ms.div_euclid(1000);
                let stored_version = match table.get(id.as_str()).map_err(unavailable)? {
                    Some(bytes) => Some(decode(&id, bytes.value())?)
                        .filter(|stored| !stored.is_expired_at(now_secs))
                        .map(|stored| stored.version),
                    None => None,
                };
                let expected = (saved.version > 0).then_some(saved.version);
                if stored_version != expected {
                    return Err(StoreError::Conflict { visitor_id: id });
                }
                saved.version += 1;
                let bytes = serde_json::to_vec(&saved).map_err(|error| StoreError::Invalid {
                    visitor_id: id.clone(),
                    source: Box::new(error),
                })?;
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }
}

fn index_key(kind: IdentifierKind, digest: &str) -> String {
    let kind = match kind {
        IdentifierKind::Email => "email",
        IdentifierKind::Phone => "phone",
    };
    format!("{kind}#{digest}")
}

#[async_trait]
impl IdentityIndex for EmbeddedStore {
    async fn link(
        &self,
        kind: IdentifierKind,
        digest: &str,
        visitor_id: &VisitorId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let key = index_key(kind, digest);
        let visitor_id = visitor_id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(INDEX).map_err(unavailable)?;
                let mut links: BTreeMap<String, i64> =
                    match table.get(key.as_str()).map_err(unavailable)? {
                        Some(bytes) => serde_json::from_slice(bytes.value()).unwrap_or_default(),
                        None => BTreeMap::new(),
                    };
                let stored = links.entry(visitor_id.to_string()).or_insert(expires_at);
                *stored = (*stored).max(expires_at);
                let bytes = serde_json::to_vec(&links).unwrap_or_default();
                table
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn visitors(
        &self,
        kind: IdentifierKind,
        digest: &str,
        now_secs: i64,
    ) -> Result<Vec<VisitorId>, StoreError> {
        let key = index_key(kind, digest);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(INDEX).map_err(unavailable)?;
            let links: BTreeMap<String, i64> = match table.get(key.as_str()).map_err(unavailable)? {
                Some(bytes) => serde_json::from_slice(bytes.value()).unwrap_or_default(),
                None => BTreeMap::new(),
            };
            Ok(links
                .into_iter()
                .filter(|(_, expires_at)| *expires_at > now_secs)
                .filter_map(|(id, _)| VisitorId::parse(&id))
                .collect())
        })
        .await
    }
}

fn counter_key(destination: &str, day: NaiveDate, outcome: Outcome) -> String {
    format!("{destination}#{day}#{}", outcome.as_str())
}

#[async_trait]
impl DailyCounters for EmbeddedStore {
    async fn add(&self, counts: &[DailyCount]) -> Result<(), StoreError> {
        let counts = counts.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(COUNTERS).map_err(unavailable)?;
                for count in counts {
                    let key = counter_key(&count.destination, count.day, count.outcome);
                    let current = table
                        .get(key.as_str())
                        .map_err(unavailable)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    table
                        .insert(key.as_str(), current + count.count)
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn range(
        &self,
        destination: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyCount>, StoreError> {
        let destination = destination.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(COUNTERS).map_err(unavailable)?;
            let mut counts = Vec::new();
            let mut day = from;
            while day <= to {
                for outcome in Outcome::ALL {
                    let key = counter_key(&destination, day, outcome);
                    if let Some(count) = table.get(key.as_str()).map_err(unavailable)? {
                        counts.push(DailyCount {
                            day,
                            destination: destination.clone(),
                            outcome,
                            count: count.value(),
                        });
                    }
                }
                let Some(next) = day.succ_opt() else { break };
                day = next;
            }
            Ok(counts)
        })
        .await
    }
}

#[async_trait]
impl Quarantine for EmbeddedStore {
    async fn quarantine(&self, items: &[QuarantinedItem]) -> Result<(), QueueError> {
        let items = items.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(QUARANTINE).map_err(unavailable)?;
                let next = table
                    .last()
                    .map_err(unavailable)?
                    .map(|(key, _)| key.value() + 1)
                    .unwrap_or(0);
                let newest = items.iter().map(|item| item.received_at).max();
                for (key, item) in (next..).zip(items) {
                    let bytes = serde_json::to_vec(&item).unwrap_or_default();
                    table.insert(key, bytes.as_slice()).map_err(unavailable)?;
                }
                if let Some(newest) = newest {
                    prune_quarantine(&mut table, newest - chrono::Duration::days(QUARANTINE_DAYS))?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
        .map_err(|error| QueueError::Unavailable {
            source: Box::new(error),
        })
    }
}
