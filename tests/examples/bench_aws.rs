//! Counts the AWS requests per event of the deployed path for a visit log, against moto.
//! Each line goes through the collector's router into an SQS FIFO queue. A poller that does
//! what Lambda's event source mapping does hands batches of up to 10 to the worker, which
//! reads and writes DynamoDB. Both destinations write to an outbox, so no platform is called.
//!
//! Run with `scripts/bench-aws.sh`, which starts moto and sets the SDK's variables.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::body::Body;
use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use revisit_shared::adapters::clock::ManualClock;
use revisit_shared::adapters::dynamodb::{DynamoStore, item_size};
use revisit_shared::adapters::outbox::Outbox;
use revisit_shared::adapters::sqs::{SqsEventQueue, SqsQuarantine, max_message_bytes};
use revisit_shared::adapters::sqs_consumer::SqsPoller;
use revisit_shared::collect::{Collector, router};
use revisit_shared::config::Config;
use revisit_shared::delivery::{Deliverer, RetryPolicy};
use revisit_shared::destinations::DestinationsConfig;
use revisit_shared::destinations::config::build_destinations;
use revisit_shared::worker::{Worker, WorkerStores};
use revisit_tests::aws::{RequestCounter, moto};

/// How the poller keeps up with the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Poll once 10 messages wait: full batches, as on a store busy enough to keep the queue
    /// filled.
    Busy,
    /// Poll after every event: batches of one, as at low traffic, where Lambda receives each
    /// message as soon as it arrives.
    Paced,
}

#[derive(Debug, Parser)]
struct Args {
    /// Visit log, one JSON object per line (the format `revisit replay` reads).
    log: PathBuf,
    #[arg(long, value_enum, default_value = "busy")]
    mode: Mode,
    /// Replay only the first N lines.
    #[arg(long)]
    limit: Option<usize>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Debug, serde::Deserialize)]
struct VisitLine {
    at: DateTime<Utc>,
    browser: Option<String>,
    page_url: Option<String>,
    referrer: Option<String>,
    user_agent: Option<String>,
    #[serde(default)]
    cookies: Option<serde_json::Map<String, Value>>,
    event: Value,
}

/// Default of the template's `CounterFlushSeconds` parameter.
const COUNTER_FLUSH_SECS: u64 = 300;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let moto = moto("bench_aws")
        .await
        .context("start moto with scripts/bench-aws.sh")?;
    let started = Instant::now();
    let dynamodb_counter = RequestCounter::new();
    let sqs_counter = RequestCounter::new();
    let poller_counter = RequestCounter::new();
    let tables = moto.create_tables("bench").await;
    let (queue_url, _) = moto.create_event_queue("bench", 30, 5).await;
    let quarantine_url = moto.create_queue("bench-quarantine", &[]).await;

    let site_host = "puffy.com".to_owned();
    let config = Config::from_lookup(|name| match name {
        "REVISIT_SITE_HOST" => Some(site_host.clone()),
        "REVISIT_SECRET" => Some("bench-secret-0123456789abcdef0123456789".into()),
        _ => None,
    })?;
    let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
    let sqs = moto.counted_sqs(&sqs_counter);
    let limit = max_message_bytes(&sqs, &queue_url).await?;
    let collector = Collector::new(
        config.collector_settings(),
        Arc::new(SqsEventQueue::new(sqs.clone(), &queue_url, limit)),
        Arc::new(SqsQuarantine::new(sqs, &quarantine_url, limit)),
        clock.clone(),
    );
    let routes = router(Arc::new(collector));
    let outbox_dir = tempfile::tempdir()?;
    let outbox = Arc::new(Outbox::new(outbox_dir.path())?);
    let destinations = build_destinations(
        &DestinationsConfig::outbox_only(),
        &Default::default(),
        outbox.clone(),
        outbox,
    )?;
    let store = Arc::new(DynamoStore::new(
        moto.counted_dynamodb(&dynamodb_counter),
        tables.clone(),
        clock.clone(),
    ));
    let stores = WorkerStores {
        reader: store.clone(),
        writer: store.clone(),
        index: store.clone(),
        counters: store,
    };
    let deliverer = Deliverer::new(destinations, RetryPolicy::default(), true, clock.clone());
    // As deployed: daily counts wait up to the template's CounterFlushSeconds (300 s of the
    // log's clock) before one write.
    let worker = Worker::new(
        stores,
        deliverer,
        clock.clone(),
        config.profile_policy(),
        config.index_key(),
    )
    .with_counter_flush(std::time::Duration::from_secs(COUNTER_FLUSH_SECS));
    let mut poller = SqsPoller::new(moto.counted_sqs(&poller_counter), &queue_url);
    poller.wait_seconds = 0;

    let file = std::fs::File::open(&args.log)
        .with_context(|| format!("opening {}", args.log.display()))?;
    let mut jars: HashMap<String, String> = HashMap::new();
    let mut events = 0u64;
    let mut accepted = 0u64;
    let mut waiting = 0usize;
    let mut batches = 0u64;
    let mut failed = 0u64;
    for line in BufReader::new(file)
        .lines()
        .take(args.limit.unwrap_or(usize::MAX))
    {
        let line = line?;
        let Ok(visit) = serde_json::from_str::<VisitLine>(&line) else {
            continue;
        };
        clock.set(visit.at);
        events += 1;
        let cookie = visit.browser.as_ref().and_then(|browser| jars.get(browser));
        let request = build_request(&visit, cookie.map(String::as_str))?;
        let response = routes.clone().oneshot(request).await?;
        if let (Some(browser), Some(set_cookie)) = (
            &visit.browser,
            response.headers().get(http::header::SET_COOKIE),
        ) {
            let pair = set_cookie.to_str()?.split(';').next().unwrap_or_default();
            jars.insert(browser.clone(), pair.to_owned());
        }
        if response.status() != http::StatusCode::ACCEPTED {
            continue;
        }
        accepted += 1;
        waiting += 1;
        let threshold = if args.mode == Mode::Busy { 10 } else { 1 };
        while waiting >= threshold {
            let report = poller.poll_once(&worker).await?;
            if report.received == 0 {
                break;
            }
            batches += 1;
            failed += report.failed as u64;
            waiting = waiting.saturating_sub(report.received - report.failed);
        }
    }
    loop {
        let report = poller.poll_once(&worker).await?;
        if report.received == 0 {
            break;
        }
        batches += 1;
        failed += report.failed as u64;
    }
    // The shutdown signal of the last environment writes what is still buffered.
    worker.flush_counters().await;

    let sizes = profile_sizes(&moto.dynamodb(), &tables.profiles).await?;
    let report = summary(
        &args,
        events,
        accepted,
        batches,
        failed,
        &dynamodb_counter,
        &sqs_counter,
        &poller_counter,
        &sizes,
        started.elapsed().as_secs(),
    );
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.report {
        std::fs::write(path, &text)?;
    }
    #[allow(clippy::print_stdout, reason = "the report is the benchmark's output")]
    {
        println!("{text}");
    }
    Ok(())
}

/// Builds the `/collect` request the storefront would send for one log line, with the
/// browser's server-set cookie.
fn build_request(visit: &VisitLine, cookie: Option<&str>) -> anyhow::Result<http::Request<Body>> {
    let mut event = visit.event.clone();
    if let Some(object) = event.as_object_mut() {
        let context = json!({
            "page_url": visit.page_url,
            "referrer": visit.referrer,
            "cookies": visit.cookies.clone().unwrap_or_default(),
        });
        object.insert("context".into(), context);
    }
    let mut builder = http::Request::post("/collect").header("content-type", "application/json");
    if let Some(agent) = &visit.user_agent {
        builder = builder.header("user-agent", agent);
    }
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    Ok(builder.body(Body::from(event.to_string()))?)
}

/// Sizes in bytes of every profile item, by DynamoDB's rules, sorted.
async fn profile_sizes(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> anyhow::Result<Vec<usize>> {
    let mut sizes = Vec::new();
    let mut start = None;
    loop {
        let output = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in output.items() {
            let is_profile = item
                .get("sk")
                .and_then(|sk| sk.as_s().ok())
                .is_some_and(|sk| sk == "profile");
            if is_profile {
                sizes.push(item_size(item));
            }
        }
        start = output.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    sizes.sort_unstable();
    Ok(sizes)
}

/// Mean of `size / unit`, rounded up per item, to three decimals.
fn mean_units(sizes: &[usize], unit: usize) -> f64 {
    let total: usize = sizes.iter().map(|size| size.div_ceil(unit)).sum();
    (total as f64 / sizes.len().max(1) as f64 * 1000.0).round() / 1000.0
}

#[allow(clippy::too_many_arguments)]
fn summary(
    args: &Args,
    events: u64,
    accepted: u64,
    batches: u64,
    failed: u64,
    dynamodb: &RequestCounter,
    sqs: &RequestCounter,
    poller: &RequestCounter,
    sizes: &[usize],
    seconds: u64,
) -> Value {
    let per_event = |count: u64| (count as f64 / accepted.max(1) as f64 * 1000.0).round() / 1000.0;
    let reads =
        dynamodb.count("BatchGetItem") + dynamodb.count("GetItem") + dynamodb.count("Query");
    let writes = dynamodb.count("PutItem") + dynamodb.count("UpdateItem");
    let percentile = |p: f64| {
        sizes
            .get(((sizes.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    json!({
        "log": args.log.file_name().map(|name| name.to_string_lossy().into_owned()),
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "events": events,
        "accepted": accepted,
        "batches": batches,
        "events_per_batch": (accepted as f64 / batches.max(1) as f64 * 100.0).round() / 100.0,
        "failed_messages": failed,
        "dynamodb_requests": dynamodb.snapshot(),
        "dynamodb_items_read": dynamodb.items("BatchGetItem"),
        "dynamodb_read_requests_per_event": per_event(reads),
        "dynamodb_items_read_per_event": per_event(dynamodb.items("BatchGetItem")),
        "dynamodb_write_requests_per_event": per_event(writes),
        "sqs_producer_requests": sqs.snapshot(),
        "sqs_messages_sent": sqs.items("SendMessageBatch"),
        "sqs_send_requests_per_event": per_event(sqs.count("SendMessageBatch") + sqs.count("SendMessage")),
        "sqs_consumer_requests": poller.snapshot(),
        "sqs_consumer_requests_per_event": per_event(poller.snapshot().values().sum()),
        "profiles": sizes.len(),
        "profile_item_bytes": {
            "p50": percentile(0.5),
            "p95": percentile(0.95),
            "max": sizes.last().copied().unwrap_or(0),
        },
        // On-demand tables bill a write per started KB and a strongly consistent read per
        // started 4 KB; the final sizes estimate the units of every write and read.
        "profile_write_units_mean": mean_units(sizes, 1024),
        "profile_read_units_mean": mean_units(sizes, 4096),
        "elapsed_seconds": seconds,
    })
}
