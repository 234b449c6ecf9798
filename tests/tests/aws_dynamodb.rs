//! The DynamoDB adapter against moto through the real SDK: batched reads, conditional writes,
//! the identity index, daily counters, expiry on every read and the item size limit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, NaiveDate, Utc};

use revisit_shared::VisitorId;
use revisit_shared::adapters::clock::ManualClock;
use revisit_shared::adapters::dynamodb::{
    DynamoStore, DynamoTables, ItemTooLarge, MAX_ITEM_BYTES, item_size, profile_key,
};
use revisit_shared::ports::{
    DailyCount, DailyCounters, IdentifierKind, IdentityIndex, Outcome, ProfileReader,
    ProfileWriter, StoreError,
};
use revisit_shared::profile::{Fact, VisitorProfile};
use revisit_tests::aws::{Moto, RequestCounter, moto};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-02-23T12:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

struct Fixture {
    moto: Moto,
    tables: DynamoTables,
    clock: Arc<ManualClock>,
    counter: RequestCounter,
    store: DynamoStore,
}

async fn fixture(test: &str) -> Option<Fixture> {
    let moto = moto(test).await?;
    let tables = moto.create_tables(test).await;
    let clock = Arc::new(ManualClock::new(start()));
    let counter = RequestCounter::new();
    let store = DynamoStore::new(
        moto.counted_dynamodb(&counter),
        tables.clone(),
        clock.clone(),
    );
    Some(Fixture {
        moto,
        tables,
        clock,
        counter,
        store,
    })
}

fn visitor(n: u32) -> VisitorId {
    VisitorId::parse(&format!("{n:032x}")).expect("valid visitor id")
}

fn profile(id: &VisitorId, now: DateTime<Utc>, expires_in_days: i64) -> VisitorProfile {
    let mut profile = VisitorProfile::new(id.clone(), now.timestamp_millis());
    profile.expires_at = (now + Duration::days(expires_in_days)).timestamp();
    profile.identity.insert(
        "email".into(),
        Fact {
            value: "user@example.com".into(),
            first_seen_ms: now.timestamp_millis(),
            last_seen_ms: now.timestamp_millis(),
            expires_at: profile.expires_at,
            event_id: "e-1".into(),
        },
    );
    profile
}

#[tokio::test]
async fn profile_save_increments_version() {
    let Some(f) = fixture("profile-version").await else {
        return;
    };
    let id = visitor(1);
    let now = f.clock.now_secs();

    f.store
        .save_profile(&profile(&id, start(), 30))
        .await
        .expect("first save");
    let loaded = f
        .store
        .load_profiles(std::slice::from_ref(&id), now)
        .await
        .expect("load");
    let first = loaded.get(&id).expect("profile stored").clone();
    f.store.save_profile(&first).await.expect("second save");
    let second = f
        .store
        .load_profiles(std::slice::from_ref(&id), now)
        .await
        .expect("load")[&id]
        .clone();

    assert_eq!(first.version, 1);
    assert_eq!(second.version, 2);
    assert_eq!(
        second.identity_value("email", now),
        Some("user@example.com")
    );
}

#[tokio::test]
async fn profile_save_rejects_stale_version() {
    let Some(f) = fixture("profile-stale").await else {
        return;
    };
    let id = visitor(2);
    let now = f.clock.now_secs();
    f.store
        .save_profile(&profile(&id, start(), 30))
        .await
        .expect("first save");
    let read_by_a = f
        .store
        .load_profiles(std::slice::from_ref(&id), now)
        .await
        .expect("load")[&id]
        .clone();
    let read_by_b = read_by_a.clone();

    f.store
        .save_profile(&read_by_a)
        .await
        .expect("writer A saves");
    let second = f.store.save_profile(&read_by_b).await;
    let fresh = f.store.save_profile(&profile(&id, start(), 30)).await;

    assert!(
        matches!(second, Err(StoreError::Conflict { .. })),
        "{second:?}"
    );
    assert!(
        matches!(fresh, Err(StoreError::Conflict { .. })),
        "{fresh:?}"
    );
    let stored = f
        .store
        .load_profiles(std::slice::from_ref(&id), now)
        .await
        .expect("load");
    assert_eq!(stored[&id].version, 2);
}

#[tokio::test]
async fn profile_expired_is_never_returned() {
    let Some(f) = fixture("profile-expired").await else {
        return;
    };
    let id = visitor(3);
    let now = f.clock.now_secs();
    // TTL deletion runs in the background (usually within days, per the DynamoDB Developer Guide), so a read can meet
    // an item past its expiry; moto never deletes it at all.
    let mut item = profile_key(&id);
    let mut expired = profile(&id, start(), 0);
    expired.expires_at = now - 60;
    expired.version = 4;
    item.insert("version".into(), AttributeValue::N("4".into()));
    item.insert(
        "expires_at".into(),
        AttributeValue::N((now - 60).to_string()),
    );
    let json = serde_json::to_string(&expired).expect("profile JSON");
    item.insert("profile".into(), AttributeValue::S(json));
    f.moto
        .dynamodb()
        .put_item()
        .table_name(&f.tables.profiles)
        .set_item(Some(item))
        .send()
        .await
        .expect("put expired item");

    let loaded = f
        .store
        .load_profiles(std::slice::from_ref(&id), now)
        .await
        .expect("load");
    let replaced = f.store.save_profile(&profile(&id, start(), 30)).await;

    assert!(loaded.is_empty(), "an expired profile was returned");
    assert!(
        replaced.is_ok(),
        "a new profile must replace an expired one: {replaced:?}"
    );
    let reloaded = f
        .store
        .load_profiles(std::slice::from_ref(&id), now)
        .await
        .expect("load");
    assert_eq!(reloaded[&id].version, 1);
}

#[tokio::test]
async fn profile_read_drops_expired_facts() {
    let Some(f) = fixture("profile-facts").await else {
        return;
    };
    let id = visitor(4);
    let mut stored = profile(&id, start(), 30);
    stored.click_ids.insert(
        "ttclid".into(),
        Fact {
            value: "E.C.P.AbC123".into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            expires_at: f.clock.now_secs() - 60,
            event_id: "e-0".into(),
        },
    );
    f.store.save_profile(&stored).await.expect("save");

    let loaded = f
        .store
        .load_profiles(std::slice::from_ref(&id), f.clock.now_secs())
        .await
        .expect("load");

    assert!(!loaded[&id].click_ids.contains_key("ttclid"));
    assert!(loaded[&id].identity.contains_key("email"));
}

#[tokio::test]
async fn profiles_load_in_batched_reads() {
    let Some(f) = fixture("profile-batch").await else {
        return;
    };
    let ids: Vec<VisitorId> = (100..250).map(visitor).collect();
    for id in ids.iter().step_by(2) {
        f.store
            .save_profile(&profile(id, start(), 30))
            .await
            .expect("save");
    }
    f.counter.reset();

    let loaded = f
        .store
        .load_profiles(&ids, f.clock.now_secs())
        .await
        .expect("load");

    assert_eq!(loaded.len(), 75);
    // 150 keys: BatchGetItem takes at most 100 per request.
    assert_eq!(f.counter.count("BatchGetItem"), 2);
    assert_eq!(f.counter.count("GetItem"), 0);
}

#[tokio::test]
async fn identity_index_links_visitors() {
    let Some(f) = fixture("index-link").await else {
        return;
    };
    let now = f.clock.now_secs();
    let digest = "5f".repeat(32);

    f.store
        .link(IdentifierKind::Email, &digest, &visitor(1), now + 100)
        .await
        .expect("link");
    f.store
        .link(IdentifierKind::Email, &digest, &visitor(2), now + 100)
        .await
        .expect("link");
    f.store
        .link(IdentifierKind::Phone, &digest, &visitor(3), now + 100)
        .await
        .expect("link");
    let emails = f
        .store
        .visitors(IdentifierKind::Email, &digest, now)
        .await
        .expect("query");
    let phones = f
        .store
        .visitors(IdentifierKind::Phone, &digest, now)
        .await
        .expect("query");

    assert_eq!(emails, vec![visitor(1), visitor(2)]);
    assert_eq!(phones, vec![visitor(3)]);
}

#[tokio::test]
async fn identity_index_keeps_later_expiry() {
    let Some(f) = fixture("index-expiry").await else {
        return;
    };
    let now = f.clock.now_secs();
    let digest = "a1".repeat(32);

    f.store
        .link(IdentifierKind::Email, &digest, &visitor(1), now + 500)
        .await
        .expect("link");
    f.store
        .link(IdentifierKind::Email, &digest, &visitor(1), now + 100)
        .await
        .expect("older link");
    let at_300 = f
        .store
        .visitors(IdentifierKind::Email, &digest, now + 300)
        .await
        .expect("query");
    let at_600 = f
        .store
        .visitors(IdentifierKind::Email, &digest, now + 600)
        .await
        .expect("query");

    assert_eq!(at_300, vec![visitor(1)]);
    assert!(at_600.is_empty(), "an expired link was returned");
}

#[tokio::test]
async fn identity_index_skips_expired_link() {
    let Some(f) = fixture("index-expired").await else {
        return;
    };
    let now = f.clock.now_secs();
    let digest = "b2".repeat(32);

    f.store
        .link(IdentifierKind::Email, &digest, &visitor(7), now - 60)
        .await
        .expect("link");
    let found = f
        .store
        .visitors(IdentifierKind::Email, &digest, now)
        .await
        .expect("query");

    assert!(found.is_empty());
}

fn count(day: NaiveDate, destination: &str, outcome: Outcome, value: u64) -> DailyCount {
    DailyCount {
        day,
        destination: destination.into(),
        outcome,
        count: value,
    }
}

#[tokio::test]
async fn counters_add_atomically_per_day() {
    let Some(f) = fixture("counters-add").await else {
        return;
    };
    let day = start().date_naive();
    let next = day.succ_opt().expect("next day");
    let batch = vec![
        count(day, "klaviyo", Outcome::Sent, 3),
        count(day, "klaviyo", Outcome::Accepted, 2),
        count(day, "meta", Outcome::Withheld, 1),
    ];

    f.store.add(&batch).await.expect("add");
    f.store.add(&batch).await.expect("add again");
    f.store
        .add(&[count(next, "klaviyo", Outcome::Sent, 5)])
        .await
        .expect("add next day");
    let klaviyo = f.store.range("klaviyo", day, next).await.expect("range");
    let meta = f.store.range("meta", day, day).await.expect("range");

    // Every destination's counts of one day go in one UpdateItem.
    assert_eq!(f.counter.count("UpdateItem"), 3);
    let as_map: BTreeMap<(NaiveDate, Outcome), u64> = klaviyo
        .iter()
        .map(|c| ((c.day, c.outcome), c.count))
        .collect();
    assert_eq!(as_map.get(&(day, Outcome::Sent)), Some(&6));
    assert_eq!(as_map.get(&(day, Outcome::Accepted)), Some(&4));
    assert_eq!(as_map.get(&(next, Outcome::Sent)), Some(&5));
    assert_eq!(klaviyo.len(), 3);
    assert_eq!(meta, vec![count(day, "meta", Outcome::Withheld, 2)]);
}

#[tokio::test]
async fn counters_range_excludes_other_days() {
    let Some(f) = fixture("counters-range").await else {
        return;
    };
    let days: Vec<NaiveDate> = (0..5)
        .map(|n| start().date_naive() + Duration::days(n))
        .collect();
    for day in &days {
        f.store
            .add(&[count(*day, "meta", Outcome::Sent, 1)])
            .await
            .expect("add");
    }

    let middle = f
        .store
        .range("meta", days[1], days[3])
        .await
        .expect("range");

    let found: Vec<NaiveDate> = middle.iter().map(|c| c.day).collect();
    assert_eq!(found, days[1..=3].to_vec());
}

#[tokio::test]
async fn counters_expired_day_is_skipped() {
    let Some(f) = fixture("counters-expired").await else {
        return;
    };
    let day = start().date_naive();
    f.store
        .add(&[count(day, "meta", Outcome::Sent, 1)])
        .await
        .expect("add");

    // Counter items expire 400 days after their day.
    f.clock.advance(Duration::days(401));
    let found = f.store.range("meta", day, day).await.expect("range");

    assert!(found.is_empty());
}

#[tokio::test]
async fn profile_over_size_limit_is_not_sent() {
    let Some(f) = fixture("profile-size").await else {
        return;
    };
    let id = visitor(9);
    let mut huge = profile(&id, start(), 30);
    huge.identity.get_mut("email").expect("email fact").value = "x".repeat(MAX_ITEM_BYTES);
    f.counter.reset();

    let result = f.store.save_profile(&huge).await;

    let Err(StoreError::Invalid { source, .. }) = result else {
        panic!("expected an invalid-item error, got {result:?}");
    };
    let too_large = source
        .downcast_ref::<ItemTooLarge>()
        .expect("an ItemTooLarge source");
    assert!(too_large.size > MAX_ITEM_BYTES);
    assert_eq!(f.counter.count("PutItem"), 0, "the oversize item was sent");
}

#[tokio::test]
async fn item_size_estimate_matches_emulator_limit() {
    let Some(f) = fixture("item-size").await else {
        return;
    };
    let item = |padding: usize| -> HashMap<String, AttributeValue> {
        let mut item = profile_key(&visitor(10));
        item.insert("profile".into(), AttributeValue::S("é".repeat(padding / 2)));
        item
    };
    let fits = item(MAX_ITEM_BYTES - 100);
    // moto rejects items over 405,000 bytes; AWS's limit is 409,600.
    let over = item(406_000);

    let put = |item: HashMap<String, AttributeValue>| {
        f.moto
            .dynamodb()
            .put_item()
            .table_name(&f.tables.profiles)
            .set_item(Some(item))
            .send()
    };
    let fits_size = item_size(&fits);
    let over_size = item_size(&over);
    let fits_result = put(fits).await;
    let over_result = put(over).await;

    assert!(fits_size <= MAX_ITEM_BYTES, "{fits_size}");
    assert!(fits_result.is_ok(), "{fits_result:?}");
    assert!(over_size > MAX_ITEM_BYTES, "{over_size}");
    let error = over_result.expect_err("moto accepted an item over its limit");
    assert_eq!(
        aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&error),
        Some("ValidationException")
    );
}

trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for ManualClock {
    fn now_secs(&self) -> i64 {
        revisit_shared::ports::Clock::now(self).timestamp()
    }
}

/// Builds a worker on the DynamoDB store with no destinations, for tests of profiles alone.
fn worker_on(store: &DynamoStore, clock: Arc<ManualClock>) -> revisit_shared::worker::Worker {
    use revisit_shared::delivery::{Deliverer, RetryPolicy};
    use revisit_shared::worker::{Worker, WorkerStores};

    let config = revisit_shared::config::Config::from_lookup(|name| match name {
        "REVISIT_SITE_HOST" => Some("www.shop.example".into()),
        "REVISIT_SECRET" => Some("0123456789abcdef0123456789abcdef-test".into()),
        _ => None,
    })
    .expect("valid config");
    let store = Arc::new(store.clone());
    let stores = WorkerStores {
        reader: store.clone(),
        writer: store.clone(),
        index: store.clone(),
        counters: store,
    };
    let deliverer = Deliverer::new(Vec::new(), RetryPolicy::default(), true, clock.clone());
    Worker::new(
        stores,
        deliverer,
        clock,
        config.profile_policy(),
        config.index_key(),
    )
}

#[tokio::test]
async fn profile_stays_bounded_over_many_events() {
    let Some(f) = fixture("profile-bounded").await else {
        return;
    };
    let worker = worker_on(&f.store, f.clock.clone());
    let id = visitor(11);
    let template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(revisit_tests::fixture("collected-event.json")).expect("fixture"),
    )
    .expect("fixture JSON");
    // 5,000 visits, each landing with a different campaign of about 120 bytes of UTM
    // parameters: appended one by one, the touches alone would make a 600 KB item.
    let events: Vec<revisit_shared::CollectedEvent> = (0..5_000)
        .map(|n| {
            let mut event = template.clone();
            event["visitor_id"] = serde_json::json!(id.to_string());
            event["event_id"] = serde_json::json!(format!("bounded-{n}"));
            event["page"]["url"] = serde_json::json!(format!(
                "https://www.shop.example/?utm_source=newsletter-{n:05}&utm_medium=email\
                 &utm_campaign=spring-sale-{n:05}-long-campaign-name&utm_content=hero-{n:05}"
            ));
            serde_json::from_value(event).expect("a collected event")
        })
        .collect();

    for chunk in events.chunks(10) {
        f.clock.advance(Duration::minutes(1));
        let outcome = worker.process_batch(chunk).await;
        assert!(
            outcome.failed.is_empty(),
            "a batch failed: {:?}",
            outcome.failed
        );
    }

    let item = f
        .moto
        .dynamodb()
        .get_item()
        .table_name(&f.tables.profiles)
        .set_key(Some(profile_key(&id)))
        .send()
        .await
        .expect("get item")
        .item
        .expect("profile stored");
    let size = item_size(&item);
    let stored: VisitorProfile =
        serde_json::from_str(item["profile"].as_s().expect("JSON")).expect("a profile");
    assert!(size < 20_000, "the profile item grew to {size} bytes");
    assert_eq!(stored.event_count, 5_000);
    assert_eq!(stored.recent_event_ids.len(), 50);
    assert_eq!(
        stored.recent_event_ids.last().map(String::as_str),
        Some("bounded-4999")
    );
}
