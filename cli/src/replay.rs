//! `revisit replay`: runs a visit log through the real collect router and worker, simulating
//! each browser's cookie jar, and reports how many events were identifiable.

mod jar;
mod report;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::body::Body;
use chrono::{DateTime, Utc};
use http::Request;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use revisit_shared::adapters::clock::ManualClock;
use revisit_shared::adapters::local_queue::LocalQueue;
use revisit_shared::adapters::memory::MemoryStore;
use revisit_shared::collect::router;
use revisit_shared::config::Config;
use revisit_shared::identity::normalize;

use crate::app::{self, LocalStore};
use jar::Jar;
pub use report::Report;

/// Options of `revisit replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Visit log: one JSON object per line (see the README for the format).
    pub file: PathBuf,
    /// Folder for the outbox files, one per destination.
    #[arg(long, default_value = "replay-outbox")]
    pub outbox: PathBuf,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Days after their last write that the simulated browser keeps script-set vendor cookies
    /// (Safari caps them at 7).
    #[arg(long, default_value_t = 7)]
    pub script_cookie_days: i64,
    /// Storefront host [default: the host of the first page URL in the log].
    #[arg(long)]
    pub site_host: Option<String>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Destinations file [default: REVISIT_DESTINATIONS_FILE, else every destination in
    /// outbox mode].
    #[arg(long)]
    pub destinations: Option<PathBuf>,
    /// Send to destinations that have credentials in the destinations file. Without it every
    /// request only goes to the outbox, so replaying old events never reaches a platform.
    #[arg(long)]
    pub live: bool,
}

/// One line of a visit log.
#[derive(Debug, Deserialize)]
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

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let report = replay(&args).await?;
    let rendered = report.render();
    #[allow(clippy::print_stdout)]
    {
        println!("{rendered}");
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Replays the log and returns the report.
pub async fn replay(args: &ReplayArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = BufReader::new(file);
    let site_host = match &args.site_host {
        Some(host) => host.clone(),
        None => first_host(&args.file)?,
    };
    let secret: [u8; 32] = rand::random();
    let secret_hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let config = Config::from_lookup(|name| match name {
        "REVISIT_SITE_HOST" => Some(site_host.clone()),
        "REVISIT_SECRET" => Some(secret_hex.clone()),
        "REVISIT_DESTINATIONS_FILE" => args
            .destinations
            .as_ref()
            .map(|path| path.display().to_string())
            .or_else(|| std::env::var(name).ok()),
        _ => std::env::var(name).ok(),
    })?;
    let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
    let queue = Arc::new(LocalQueue::new(1, None));
    let store = LocalStore::Memory(Arc::new(MemoryStore::new()));
    let delivery = if args.live {
        app::Delivery::Live
    } else {
        app::Delivery::OutboxOnly
    };
    let app = app::build(&config, store, &args.outbox, clock.clone(), queue, delivery)?;
    let routes = router(Arc::clone(&app.collector));
    let progress = progress_bar(size, args.quiet);
    let mut report = Report::new(args.script_cookie_days);
    for route in app.worker.deliverer().routes() {
        report.add_destination(route.destination.name(), route.live);
        // The outbox appends; a replay's output starts empty so runs do not mix.
        let previous = args
            .outbox
            .join(format!("{}.jsonl", route.destination.name()));
        match std::fs::remove_file(&previous) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("removing {}", previous.display()));
            }
        }
    }
    let mut jars: HashMap<String, Jar> = HashMap::new();
    let mut browsers = BTreeSet::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", number + 1))?;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let visit: VisitLine = match serde_json::from_str(&line) {
            Ok(visit) => visit,
            Err(error) => {
                report.invalid_line(number + 1, &error.to_string());
                continue;
            }
        };
        clock.set(visit.at);
        let mut anonymous = Jar::default();
        let jar = match &visit.browser {
            Some(browser) => {
                browsers.insert(browser.clone());
                jars.entry(browser.clone()).or_default()
            }
            None => {
                report.anonymous_jars += 1;
                &mut anonymous
            }
        };
        let payload_identified = carries_email_or_phone(&visit.event);
        jar.write_script_cookies(&visit, args.script_cookie_days, payload_identified);
        let script_identified = payload_identified || jar.has_identity_cookie(visit.at);
        let request = build_request(&visit, jar)?;
        let response = routes
            .clone()
            .oneshot(request)
            .await
            .context("collect router")?;
        let status = response.status();
        jar.store_set_cookies(response.headers());
        report.events += 1;
        if !status.is_success() {
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
            report.reject(answer["error"].as_str().unwrap_or("unknown"));
            continue;
        }
        report.payload_identified += u64::from(payload_identified);
        report.script_cookie_identified += u64::from(script_identified);
        loop {
            let (taken, outcome) = app.queue.run_once(&app.worker).await;
            if taken == 0 {
                break;
            }
            if let Some(outcome) = outcome {
                report.add_outcome(&outcome);
            }
        }
    }
    progress.finish_and_clear();
    report.browsers = browsers.len() as u64;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.log_destinations();
    Ok(report)
}

/// Whether the event itself carries a valid email or phone, as the browser sent it.
fn carries_email_or_phone(event: &Value) -> bool {
    let properties = &event["user_properties"];
    let email = properties["customer_email"]
        .as_str()
        .and_then(normalize::email);
    let phone = properties["customer_phone"]
        .as_str()
        .and_then(|phone| normalize::phone_e164(phone, "US"));
    email.is_some() || phone.is_some()
}

fn build_request(visit: &VisitLine, jar: &Jar) -> anyhow::Result<Request<Body>> {
    let mut event = visit.event.clone();
    let context = json!({
        "page_url": visit.page_url,
        "referrer": visit.referrer,
        "cookies": jar.script_cookie_values(visit.at),
    });
    if let Some(object) = event.as_object_mut() {
        object.insert("context".into(), context);
    }
    let mut builder = Request::post("/collect").header("content-type", "application/json");
    if let Some(agent) = &visit.user_agent {
        builder = builder.header("user-agent", agent);
    }
    if let Some(cookie) = jar.cookie_header() {
        builder = builder.header("cookie", cookie);
    }
    Ok(builder.body(Body::from(event.to_string()))?)
}

fn first_host(path: &PathBuf) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)?;
    for line in BufReader::new(file).lines().take(1000) {
        let line = line?;
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let host = value["page_url"]
            .as_str()
            .and_then(|url| url::Url::parse(url).ok())
            .and_then(|url| url.host_str().map(str::to_owned));
        if let Some(host) = host {
            return Ok(host);
        }
    }
    anyhow::bail!(
        "no page_url in the first lines of {}; pass --site-host",
        path.display()
    )
}

fn progress_bar(size: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} replaying [{bar:40}] {percent}% {elapsed_precise} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
