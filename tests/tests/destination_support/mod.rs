//! The pipeline the destination tests drive: the real collector, worker, deliverer and HTTP
//! transport on an in-memory store, with destinations pointed at loopback stand-ins.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;

use revisit_shared::adapters::clock::ManualClock;
use revisit_shared::adapters::http::HttpTransport;
use revisit_shared::adapters::memory::MemoryStore;
use revisit_shared::collect::{CollectRequest, Collector};
use revisit_shared::config::Config;
use revisit_shared::delivery::{Deliverer, RetryPolicy, Route};
use revisit_shared::destinations::Destination;
use revisit_shared::worker::{BatchOutcome, Worker, WorkerStores};

/// The test clock's start: the fixtures' events happen 30 seconds before it.
pub const NOW: &str = "2026-12-04T12:00:00Z";
pub const CLIENT_IP: &str = "203.0.113.7";
pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) revisit-test";

/// SHA-256 of `user@example.com`.
pub const EMAIL_HASH: &str = "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514";
/// SHA-256 of `15555550100`: the phone as digits only.
pub const PHONE_DIGITS_HASH: &str =
    "e2bd2ffe3d8da79ec3f8f3f130c79347c398e24df2805976fdc2fa0cf96b5f37";
/// SHA-256 of `+15555550100`: the phone in E.164 with the plus.
pub const PHONE_PLUS_HASH: &str =
    "0cbf019479241f66c9c60d39e69e06989f108bc47da5b938a87045a615cad4a4";

/// Retries fast enough for tests; production keeps `RetryPolicy::default()`.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        budget: Duration::from_secs(5),
    }
}

pub fn http(timeout: Duration) -> Arc<HttpTransport> {
    Arc::new(HttpTransport::new(timeout).expect("HTTP client"))
}

/// A live route over HTTP.
pub fn live(destination: impl Destination + 'static, transport: Arc<HttpTransport>) -> Route {
    Route {
        destination: Arc::new(destination),
        transport,
        live: true,
    }
}

/// Collector, worker and store wired as in production, with a clock that only moves by hand.
pub struct Pipeline {
    pub collector: Collector,
    pub worker: Worker,
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
}

impl Pipeline {
    pub fn new(routes: Vec<Route>, retry: RetryPolicy) -> Self {
        let values: BTreeMap<&str, String> = [
            ("REVISIT_SITE_HOST", "shop.example".to_owned()),
            (
                "REVISIT_SECRET",
                "0123456789abcdef0123456789abcdef".to_owned(),
            ),
        ]
        .into();
        let config = Config::from_lookup(|name| values.get(name).cloned()).expect("test config");
        let now: DateTime<Utc> = NOW.parse().expect("test time");
        let clock = Arc::new(ManualClock::new(now));
        let store = Arc::new(MemoryStore::new());
        let deliverer = Deliverer::new(routes, retry, config.consent_default, clock.clone());
        let stores = WorkerStores {
            reader: store.clone(),
            writer: store.clone(),
            index: store.clone(),
            counters: store.clone(),
        };
        let worker = Worker::new(
            stores,
            deliverer,
            clock.clone(),
            config.profile_policy(),
            config.index_key(),
        );
        let collector = Collector::new(
            config.collector_settings(),
            store.clone(),
            store.clone(),
            clock.clone(),
        );
        Self {
            collector,
            worker,
            store,
            clock,
        }
    }

    /// Posts `body` to the collector as a browser would; returns the visitor cookie to send
    /// with the browser's next request.
    pub async fn collect(&self, body: &Value, cookie: Option<&str>) -> String {
        let response = self
            .collector
            .collect(CollectRequest {
                content_type: Some("application/json".into()),
                body: Bytes::from(body.to_string()),
                cookie_header: cookie.map(str::to_owned),
                user_agent: Some(USER_AGENT.into()),
                client_ip: Some(CLIENT_IP.into()),
            })
            .await;
        assert_eq!(response.status, 202, "collector answer: {}", response.body);
        let set_cookie = response.set_cookies.first().expect("visitor cookie");
        set_cookie.split(';').next().unwrap_or_default().to_owned()
    }

    /// Processes everything the collector queued, as one queue batch.
    pub async fn process(&self) -> (Vec<revisit_shared::CollectedEvent>, BatchOutcome) {
        let events = self.store.take_queued();
        let outcome = self.worker.process_batch(&events).await;
        (events, outcome)
    }

    /// Collects `body` as a new browser and processes it.
    pub async fn run(&self, body: &Value) -> BatchOutcome {
        self.collect(body, None).await;
        self.process().await.1
    }
}

/// A fixture under `tests/fixtures/destinations`, parsed as JSON.
pub fn fixture(name: &str) -> Value {
    let path = revisit_tests::fixture(&format!("destinations/{name}"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("parsing {name}: {error}"))
}

/// The reference specs folder beside the repository, or `None` with a printed notice.
pub fn specs_dir(check: &str) -> Option<PathBuf> {
    let dir = revisit_tests::reference_dir().map(|dir| dir.join("specs"));
    match dir.filter(|dir| dir.is_dir()) {
        Some(dir) => Some(dir),
        None => {
            eprintln!("NOTICE: ../shared/specs is absent; skipping the {check} schema check");
            None
        }
    }
}

/// Validates `instance` against `#/components/schemas/<schema>` of an OpenAPI document,
/// read as JSON Schema 2020-12 (which gives meaning to sibling keywords next to `$ref`).
/// Returns every validation error as text.
pub fn schema_errors(spec: &std::path::Path, schema: &str, instance: &Value) -> Vec<String> {
    let text = std::fs::read_to_string(spec)
        .unwrap_or_else(|error| panic!("reading {}: {error}", spec.display()));
    let mut document: Value = serde_json::from_str(&text).expect("spec is JSON");
    let root = document.as_object_mut().expect("spec is an object");
    root.insert(
        "$schema".into(),
        Value::String("https://json-schema.org/draft/2020-12/schema".into()),
    );
    root.insert(
        "$ref".into(),
        Value::String(format!("#/components/schemas/{schema}")),
    );
    let validator = jsonschema::draft202012::new(&document).expect("schema compiles");
    validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

/// Sorted query parameter names of a recorded request.
pub fn query_names(uri: &str) -> Vec<String> {
    let Some((_, query)) = uri.split_once('?') else {
        return Vec::new();
    };
    let mut names: Vec<String> = query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}
