//! The whole local pipeline in one process for tests: the collect router, an in-process queue,
//! the worker on an in-memory store, a clock the test moves, and Klaviyo and Meta requests
//! sent over HTTP to loopback stand-ins.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use chrono::{DateTime, Utc};
use http::{HeaderMap, Request};
use tower::ServiceExt as _;

use revisit_shared::adapters::clock::ManualClock;
use revisit_shared::adapters::http::HttpTransport;
use revisit_shared::adapters::local_queue::LocalQueue;
use revisit_shared::adapters::memory::MemoryStore;
use revisit_shared::collect::{Collector, router};
use revisit_shared::config::Config;
use revisit_shared::delivery::{Deliverer, RetryPolicy, Route};
use revisit_shared::destinations::Secret;
use revisit_shared::destinations::klaviyo::{Klaviyo, KlaviyoConfig};
use revisit_shared::destinations::meta::{Meta, MetaConfig};
use revisit_shared::worker::{BatchOutcome, Worker, WorkerStores};

use crate::StandIn;

/// Test credentials; the stand-ins check where they arrive.
pub const KLAVIYO_KEY: &str = "pk_test_0123456789";
pub const META_TOKEN: &str = "meta-test-token";
pub const META_PIXEL: &str = "1234567890";

/// User agent of the test browser.
pub const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

/// A response of the collect router.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

impl Answer {
    /// Every `Set-Cookie` header value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// `name=value` of the visitor cookie, ready for a `Cookie` header.
    pub fn visitor_cookie(&self) -> String {
        self.set_cookies()
            .into_iter()
            .find(|cookie| cookie.starts_with("rv_uid="))
            .and_then(|cookie| cookie.split(';').next().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// The pipeline under test.
#[derive(Debug)]
pub struct Harness {
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryStore>,
    pub queue: Arc<LocalQueue>,
    pub worker: Arc<Worker>,
    pub collector: Arc<Collector>,
    pub klaviyo: StandIn,
    pub meta: StandIn,
}

impl Harness {
    /// A pipeline for the site `www.shop.example` starting at `start`, with extra settings.
    pub async fn start(start: DateTime<Utc>, settings: &[(&str, &str)]) -> Self {
        let mut values: BTreeMap<String, String> = BTreeMap::from([
            ("REVISIT_SITE_HOST".into(), "www.shop.example".into()),
            (
                "REVISIT_SECRET".into(),
                "a-test-secret-of-at-least-32-bytes!!".into(),
            ),
            (
                "REVISIT_ALLOWED_ORIGINS".into(),
                "https://www.shop.example".into(),
            ),
        ]);
        for (name, value) in settings {
            values.insert((*name).to_owned(), (*value).to_owned());
        }
        let config =
            Config::from_lookup(|name| values.get(name).cloned()).expect("valid test config");
        let clock = Arc::new(ManualClock::new(start));
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(LocalQueue::new(10, None));
        let klaviyo = StandIn::start().await;
        klaviyo.answer_by_default(crate::Scripted::status(202));
        let meta = StandIn::start().await;
        meta.answer_by_default(crate::Scripted::status(200).with_body(r#"{"events_received":1}"#));
        let http = Arc::new(HttpTransport::new(Duration::from_secs(2)).expect("HTTP client"));
        let routes = vec![
            Route {
                destination: Arc::new(Klaviyo::new(KlaviyoConfig {
                    api_key: Some(Secret::new(KLAVIYO_KEY)),
                    endpoint: klaviyo.url(),
                    ..KlaviyoConfig::default()
                })),
                transport: http.clone(),
                live: true,
            },
            Route {
                destination: Arc::new(Meta::new(MetaConfig {
                    pixel_id: Some(META_PIXEL.into()),
                    access_token: Some(Secret::new(META_TOKEN)),
                    endpoint: meta.url(),
                    ..MetaConfig::default()
                })),
                transport: http,
                live: true,
            },
        ];
        let retry = RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let deliverer = Deliverer::new(routes, retry, config.consent_default, clock.clone());
        let stores = WorkerStores {
            reader: store.clone(),
            writer: store.clone(),
            index: store.clone(),
            counters: store.clone(),
        };
        let worker = Arc::new(
            Worker::new(
                stores,
                deliverer,
                clock.clone(),
                config.profile_policy(),
                config.index_key(),
            )
            .with_counter_flush(config.counter_flush),
        );
        let collector = Arc::new(Collector::new(
            config.collector_settings(),
            queue.clone(),
            store.clone(),
            clock.clone(),
        ));
        Self {
            clock,
            store,
            queue,
            worker,
            collector,
            klaviyo,
            meta,
        }
    }

    /// Posts `body` to `/collect` with the given headers, and a desktop Safari user agent
    /// unless `headers` names one.
    pub async fn post(&self, body: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::post("/collect");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("user-agent"))
        {
            request = request.header("user-agent", SAFARI);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Body::from(body.to_owned()))
            .expect("valid request");
        self.send(request).await
    }

    /// Sends any request through the collect router.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = router(Arc::clone(&self.collector))
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Processes everything queued and returns the first-attempt outcome of each batch.
    pub async fn drain(&self) -> Vec<BatchOutcome> {
        let mut outcomes = Vec::new();
        loop {
            let (taken, outcome) = self.queue.run_once(&self.worker).await;
            if taken == 0 {
                return outcomes;
            }
            outcomes.extend(outcome);
        }
    }

    /// Events waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.pending_events().len()
    }

    /// A copy of the events waiting in the queue, oldest first.
    pub fn queued(&self) -> Vec<revisit_shared::CollectedEvent> {
        self.queue.pending_events()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }
}
