//! The DynamoDB store: visitor profiles and the identity index in the profiles table, daily
//! counters in the counters table. TTL deletes expired items only in the background (within a
//! few days, per the DynamoDB Developer Guide), so every read filters on `expires_at` itself.

mod item_size;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::NaiveDate;

use crate::event::VisitorId;
use crate::ports::{
    Clock, DailyCount, DailyCounters, IdentifierKind, IdentityIndex, Outcome, ProfileReader,
    ProfileWriter, StoreError,
};
use crate::profile::VisitorProfile;

pub use item_size::{MAX_ITEM_BYTES, item_size};

/// Partition key attribute of both tables.
pub const PK: &str = "pk";
/// Sort key attribute of both tables.
pub const SK: &str = "sk";
/// TTL attribute of both tables, in Unix epoch seconds.
pub const EXPIRES_AT: &str = "expires_at";
/// Sort key of a profile item.
const PROFILE_SK: &str = "profile";
/// Partition key of the daily counter items: one item per day, sort key `YYYY-MM-DD`.
const COUNTERS_PK: &str = "daily";
/// Days a counter item is kept after its day: 13 months, so dashboards can compare a month
/// with the same month a year before.
const COUNTER_RETENTION_DAYS: i64 = 400;
/// BatchGetItem takes at most 100 keys per request.
const BATCH_GET_KEYS: usize = 100;
/// Attempts at reading keys that BatchGetItem returned as unprocessed (throttled).
const UNPROCESSED_ATTEMPTS: u32 = 5;

/// Names of the two tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoTables {
    /// Profiles and identity index entries.
    pub profiles: String,
    /// Daily counters per destination and outcome.
    pub counters: String,
}

/// Every store port except the quarantine, on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: DynamoTables,
    /// Decides which stored items have expired: reads skip them, and a new profile may
    /// replace an expired one that TTL has not deleted yet.
    clock: Arc<dyn Clock>,
}

/// A profile item that would pass DynamoDB's item size limit.
#[derive(Debug, thiserror::Error)]
#[error("profile item is an estimated {size} bytes, over the limit of {limit}")]
pub struct ItemTooLarge {
    pub size: usize,
    pub limit: usize,
}

/// Key of the profile item of `visitor_id`.
pub fn profile_key(visitor_id: &VisitorId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), s(format!("visitor#{visitor_id}"))),
        (SK.to_owned(), s(PROFILE_SK)),
    ])
}

/// Partition key of the index entries of one email or phone digest.
pub fn index_partition(kind: IdentifierKind, digest: &str) -> String {
    let kind = match kind {
        IdentifierKind::Email => "email",
        IdentifierKind::Phone => "phone",
    };
    format!("{kind}#{digest}")
}

/// Attribute of a counter item that contains one destination's count of one outcome.
pub fn counter_attribute(destination: &str, outcome: Outcome) -> String {
    format!("{destination}#{}", outcome.as_str())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn number_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable {
        source: Box::new(error),
    }
}

impl DynamoStore {
    pub fn new(client: Client, tables: DynamoTables, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            tables,
            clock,
        }
    }

    pub fn tables(&self) -> &DynamoTables {
        &self.tables
    }

    fn now_secs(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// Reads the given keys of the profiles table, retrying keys that come back unprocessed.
    async fn batch_get(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut pending = keys;
        for attempt in 0..UNPROCESSED_ATTEMPTS {
            if pending.is_empty() {
                return Ok(items);
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            // Strongly consistent: the read feeds a conditional write, and a stale read would
            // only turn into a conflict and a second read.
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|error| StoreError::Unavailable {
                    source: Box::new(error),
                })?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.tables.profiles, request)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(found) = output
                .responses
                .and_then(|mut responses| responses.remove(&self.tables.profiles))
            {
                items.extend(found);
            }
            pending = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(&self.tables.profiles))
                .map(|keys| keys.keys)
                .unwrap_or_default();
        }
        if pending.is_empty() {
            return Ok(items);
        }
        Err(StoreError::Unavailable {
            source: format!(
                "{} profile keys stayed unprocessed after {UNPROCESSED_ATTEMPTS} attempts",
                pending.len()
            )
            .into(),
        })
    }
}

/// Decodes a profile item, or `None` when it has expired at `now_secs`.
fn decode_profile(
    item: &HashMap<String, AttributeValue>,
    now_secs: i64,
) -> Result<Option<VisitorProfile>, StoreError> {
    let expires_at = number_of(item, EXPIRES_AT).unwrap_or(i64::MIN);
    if expires_at <= now_secs {
        return Ok(None);
    }
    let invalid = |visitor_id: VisitorId, message: String| StoreError::Invalid {
        visitor_id,
        source: message.into(),
    };
    let key = item
        .get(PK)
        .and_then(|value| value.as_s().ok())
        .and_then(|pk| pk.strip_prefix("visitor#"))
        .and_then(VisitorId::parse);
    let Some(visitor_id) = key else {
        return Err(StoreError::Unavailable {
            source: "a profile item has no valid visitor key".into(),
        });
    };
    let Some(json) = item.get("profile").and_then(|value| value.as_s().ok()) else {
        return Err(invalid(
            visitor_id,
            "the profile attribute is missing".into(),
        ));
    };
    let mut profile: VisitorProfile =
        serde_json::from_str(json).map_err(|error| StoreError::Invalid {
            visitor_id: visitor_id.clone(),
            source: Box::new(error),
        })?;
    // The `version` attribute is what the conditional write compares, so it is authoritative.
    let Some(version) = number_of(item, "version") else {
        return Err(invalid(
            visitor_id,
            "the version attribute is missing".into(),
        ));
    };
    profile.version = version as u64;
    profile.prune_expired(now_secs);
    Ok(Some(profile))
}

#[async_trait]
impl ProfileReader for DynamoStore {
    async fn load_profiles(
        &self,
        visitor_ids: &[VisitorId],
        now_secs: i64,
    ) -> Result<HashMap<VisitorId, VisitorProfile>, StoreError> {
        let unique: BTreeSet<&VisitorId> = visitor_ids.iter().collect();
        let keys: Vec<_> = unique.into_iter().map(profile_key).collect();
        let mut profiles = HashMap::new();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            for item in self.batch_get(chunk.to_vec()).await? {
                if let Some(profile) = decode_profile(&item, now_secs)? {
                    profiles.insert(profile.visitor_id.clone(), profile);
                }
            }
        }
        Ok(profiles)
    }
}

#[async_trait]
impl ProfileWriter for DynamoStore {
    async fn save_profile(&self, profile: &VisitorProfile) -> Result<(), StoreError> {
        let visitor_id = profile.visitor_id.clone();
        let mut saved = profile.clone();
        saved.version += 1;
        let json = serde_json::to_string(&saved).map_err(|error| StoreError::Invalid {
            visitor_id: visitor_id.clone(),
            source: Box::new(error),
        })?;
        let mut item = profile_key(&visitor_id);
        item.insert("version".into(), n(saved.version));
        item.insert(EXPIRES_AT.into(), n(saved.expires_at));
        item.insert("updated_ms".into(), n(saved.updated_ms));
        item.insert("profile".into(), s(json));
        let size = item_size(&item);
        if size > MAX_ITEM_BYTES {
            return Err(StoreError::Invalid {
                visitor_id,
                source: Box::new(ItemTooLarge {
                    size,
                    limit: MAX_ITEM_BYTES,
                }),
            });
        }
        let request = self
            .client
            .put_item()
            .table_name(&self.tables.profiles)
            .set_item(Some(item));
        // A first save may replace an item only when none exists, or when the stored one has
        // expired and TTL has not deleted it yet. A later save replaces only the version it read.
        let request = if profile.version == 0 {
            request
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(":now", n(self.now_secs()))
        } else {
            request
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(profile.version))
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict { visitor_id })
            }
            Err(error) if error.code() == Some("ValidationException") => Err(StoreError::Invalid {
                visitor_id,
                source: Box::new(error),
            }),
            Err(error) => Err(unavailable(error)),
        }
    }
}

#[async_trait]
impl IdentityIndex for DynamoStore {
    async fn link(
        &self,
        kind: IdentifierKind,
        digest: &str,
        visitor_id: &VisitorId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        // One item per (identifier, visitor), so an identifier shared by many visitors never
        // grows one item. The condition keeps the later expiry when links race.
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.profiles)
            .key(PK, s(index_partition(kind, digest)))
            .key(SK, s(format!("visitor#{visitor_id}")))
            .update_expression("SET expires_at = :expires, visitor_id = :visitor")
            .condition_expression("attribute_not_exists(expires_at) OR expires_at < :expires")
            .expression_attribute_values(":expires", n(expires_at))
            .expression_attribute_values(":visitor", s(visitor_id.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn visitors(
        &self,
        kind: IdentifierKind,
        digest: &str,
        now_secs: i64,
    ) -> Result<Vec<VisitorId>, StoreError> {
        let mut visitors = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.profiles)
                .key_condition_expression("pk = :pk")
                .filter_expression("expires_at > :now")
                .expression_attribute_values(":pk", s(index_partition(kind, digest)))
                .expression_attribute_values(":now", n(now_secs))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items() {
                // The filter expression already dropped expired links. Checking again here keeps
                // this method correct if that expression is ever changed.
                let live = number_of(item, EXPIRES_AT).is_some_and(|at| at > now_secs);
                let id = item
                    .get("visitor_id")
                    .and_then(|value| value.as_s().ok())
                    .and_then(|id| VisitorId::parse(id));
                if let (true, Some(id)) = (live, id) {
                    visitors.push(id);
                }
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(visitors);
            }
        }
    }
}

#[async_trait]
impl DailyCounters for DynamoStore {
    async fn add(&self, counts: &[DailyCount]) -> Result<(), StoreError> {
        let mut by_day: BTreeMap<NaiveDate, BTreeMap<String, u64>> = BTreeMap::new();
        for count in counts.iter().filter(|count| count.count > 0) {
            let attribute = counter_attribute(&count.destination, count.outcome);
            *by_day
                .entry(count.day)
                .or_default()
                .entry(attribute)
                .or_default() += count.count;
        }
        // One atomic update per day: every destination's counts of a batch in one write.
        for (day, attributes) in by_day {
            let expires_at = day
                .and_hms_opt(0, 0, 0)
                .map_or(0, |start| start.and_utc().timestamp())
                + COUNTER_RETENTION_DAYS * 86_400;
            let mut request = self
                .client
                .update_item()
                .table_name(&self.tables.counters)
                .key(PK, s(COUNTERS_PK))
                .key(SK, s(day.to_string()))
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":expires", n(expires_at));
            let mut additions = Vec::new();
            for (position, (attribute, count)) in attributes.into_iter().enumerate() {
                additions.push(format!("#c{position} :c{position}"));
                request = request
                    .expression_attribute_names(format!("#c{position}"), attribute)
                    .expression_attribute_values(format!(":c{position}"), n(count));
            }
            let expression = format!(
                "SET #expires = if_not_exists(#expires, :expires) ADD {}",
                additions.join(", ")
            );
            request
                .update_expression(expression)
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn range(
        &self,
        destination: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyCount>, StoreError> {
        let now_secs = self.now_secs();
        let mut counts = Vec::new();
        let mut start = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.tables.counters)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .filter_expression("#expires > :now")
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":pk", s(COUNTERS_PK))
                .expression_attribute_values(":from", s(from.to_string()))
                .expression_attribute_values(":to", s(to.to_string()))
                .expression_attribute_values(":now", n(now_secs))
                .set_exclusive_start_key(start);
            let mut projection = vec!["sk".to_owned(), "#expires".to_owned()];
            for (position, outcome) in Outcome::ALL.into_iter().enumerate() {
                projection.push(format!("#o{position}"));
                request = request.expression_attribute_names(
                    format!("#o{position}"),
                    counter_attribute(destination, outcome),
                );
            }
            let output = request
                .projection_expression(projection.join(", "))
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items() {
                let day = item
                    .get(SK)
                    .and_then(|value| value.as_s().ok())
                    .and_then(|sk| sk.parse::<NaiveDate>().ok());
                let live = number_of(item, EXPIRES_AT).is_some_and(|at| at > now_secs);
                let Some(day) = day.filter(|_| live) else {
                    continue;
                };
                for outcome in Outcome::ALL {
                    let attribute = counter_attribute(destination, outcome);
                    if let Some(count) = number_of(item, &attribute) {
                        counts.push(DailyCount {
                            day,
                            destination: destination.to_owned(),
                            outcome,
                            count: count.max(0) as u64,
                        });
                    }
                }
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(counts);
            }
        }
    }
}
