//! Wiring of local mode: the collector, the worker and their adapters built from one config.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use revisit_shared::adapters::dynamodb::DynamoStore;
use revisit_shared::adapters::embedded::EmbeddedStore;
use revisit_shared::adapters::http::HttpTransport;
use revisit_shared::adapters::local_queue::LocalQueue;
use revisit_shared::adapters::memory::MemoryStore;
use revisit_shared::adapters::outbox::Outbox;
use revisit_shared::collect::Collector;
use revisit_shared::config::Config;
use revisit_shared::delivery::{Deliverer, RetryPolicy};
use revisit_shared::destinations::DestinationsConfig;
use revisit_shared::destinations::config::build_destinations;
use revisit_shared::ports::{
    Clock, DailyCounters, EventQueue, IdentityIndex, ProfileReader, ProfileWriter, Quarantine,
};
use revisit_shared::worker::{Worker, WorkerStores};

/// The store behind local mode.
#[derive(Debug, Clone)]
pub enum LocalStore {
    /// The embedded database file under the data directory: survives restarts.
    Embedded(Arc<EmbeddedStore>),
    /// Process memory: for replays and tests.
    Memory(Arc<MemoryStore>),
    /// DynamoDB tables, with the quarantine kept elsewhere because DynamoDB stores none.
    Dynamo {
        store: Arc<DynamoStore>,
        quarantine: Arc<dyn Quarantine>,
    },
}

impl LocalStore {
    /// The worker's stores and the collector's quarantine, all backed by this store.
    fn ports(&self) -> (WorkerStores, Arc<dyn Quarantine>) {
        fn split<S>(store: &Arc<S>) -> (WorkerStores, Arc<dyn Quarantine>)
        where
            S: ProfileReader + ProfileWriter + IdentityIndex + DailyCounters + Quarantine + 'static,
        {
            let stores = WorkerStores {
                reader: store.clone(),
                writer: store.clone(),
                index: store.clone(),
                counters: store.clone(),
            };
            (stores, store.clone())
        }
        match self {
            Self::Embedded(store) => split(store),
            Self::Memory(store) => split(store),
            Self::Dynamo { store, quarantine } => {
                let stores = WorkerStores {
                    reader: store.clone(),
                    writer: store.clone(),
                    index: store.clone(),
                    counters: store.clone(),
                };
                (stores, Arc::clone(quarantine))
            }
        }
    }
}

/// Everything local mode runs.
#[derive(Debug, Clone)]
pub struct LocalApp {
    pub collector: Arc<Collector>,
    pub worker: Arc<Worker>,
    pub queue: Arc<LocalQueue>,
    pub clock: Arc<dyn Clock>,
    pub store: LocalStore,
}

/// Whether destinations with credentials are sent to for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Destinations with credentials are sent to; the others write to the outbox.
    Live,
    /// Every destination writes to the outbox, credentials or not (replays of old logs).
    OutboxOnly,
}

/// Builds local mode from `config`, writing outbox files into `outbox_dir`.
pub fn build(
    config: &Config,
    store: LocalStore,
    outbox_dir: &Path,
    clock: Arc<dyn Clock>,
    queue: Arc<LocalQueue>,
    delivery: Delivery,
) -> anyhow::Result<LocalApp> {
    let collector_queue: Arc<dyn EventQueue> = queue.clone();
    build_with_queue(
        config,
        store,
        outbox_dir,
        clock,
        queue,
        collector_queue,
        delivery,
    )
}

/// Builds local mode whose collector sends to `collector_queue` (such as an SQS queue)
/// instead of the in-process `queue`.
pub fn build_with_queue(
    config: &Config,
    store: LocalStore,
    outbox_dir: &Path,
    clock: Arc<dyn Clock>,
    queue: Arc<LocalQueue>,
    collector_queue: Arc<dyn EventQueue>,
    delivery: Delivery,
) -> anyhow::Result<LocalApp> {
    let destinations = match &config.destinations_file {
        Some(path) => DestinationsConfig::load(path)?,
        None => DestinationsConfig::outbox_only(),
    };
    let http =
        Arc::new(HttpTransport::new(config.http_timeout).context("building the HTTP client")?);
    let outbox = Arc::new(
        Outbox::new(outbox_dir)
            .with_context(|| format!("creating the outbox {}", outbox_dir.display()))?,
    );
    let mut routes = build_destinations(&destinations, &BTreeMap::new(), http, outbox.clone())?;
    if routes.is_empty() {
        anyhow::bail!(
            "invalid setting REVISIT_DESTINATIONS_FILE: no destination is enabled, so every event would be dropped"
        );
    }
    for route in &mut routes {
        if delivery == Delivery::OutboxOnly {
            route.transport = outbox.clone();
            route.live = false;
        }
        let mode = if route.live { "live" } else { "outbox" };
        tracing::info!(
            destination = route.destination.name(),
            mode,
            "destination configured"
        );
    }
    let retry = RetryPolicy {
        budget: config.delivery_budget,
        ..RetryPolicy::default()
    };
    let deliverer = Deliverer::new(routes, retry, config.consent_default, Arc::clone(&clock));
    let (stores, quarantine) = store.ports();
    let worker = Worker::new(
        stores,
        deliverer,
        Arc::clone(&clock),
        config.profile_policy(),
        config.index_key(),
    )
    .with_counter_flush(config.counter_flush);
    let collector = Collector::new(
        config.collector_settings(),
        collector_queue,
        quarantine,
        Arc::clone(&clock),
    );
    Ok(LocalApp {
        collector: Arc::new(collector),
        worker: Arc::new(worker),
        queue,
        clock,
        store,
    })
}
