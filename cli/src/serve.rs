//! `revisit serve`: the collector, the worker and the embedded store in one process on
//! 127.0.0.1, with the local defaults a first run needs, plus the storefront script, the
//! Shopify custom pixel and a demo storefront page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use revisit_shared::adapters::clock::SystemClock;
use revisit_shared::adapters::embedded::EmbeddedStore;
use revisit_shared::adapters::local_queue::LocalQueue;
use revisit_shared::collect::{ClientIp, router};
use revisit_shared::config::Config;

use crate::app;
use crate::aws::{self, AwsArgs, Backends};

/// Events the local worker takes per batch, as an SQS event source would hand them over.
const BATCH_SIZE: usize = 10;
/// How long shutdown waits for queued events to be processed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the worker to finish the batch it is on.
const CONSUMER_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The storefront script, served at `/revisit.js`.
pub const REVISIT_JS: &str = include_str!("../../web/src/revisit.js");
/// The Shopify custom pixel, served at `/shopify-pixel.js` for merchants to copy.
pub const SHOPIFY_PIXEL_JS: &str = include_str!("../../web/src/shopify-pixel.js");
/// The demo storefront page, served at `/`.
pub const DEMO_PAGE: &str = include_str!("../../web/demo/index.html");

/// Options of `revisit serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REVISIT_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Folder for the embedded store, the generated secret, the outbox and dead letters.
    #[arg(long, env = "REVISIT_DATA_DIR", default_value = ".revisit")]
    pub data_dir: PathBuf,
    /// Folder for outbox files [default: DATA_DIR/outbox].
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// Serve POST /__dev/clock, which moves the server clock forward (for browser tests).
    #[arg(long)]
    pub dev_clock: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// A running local server.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub outbox_dir: PathBuf,
    pub app: app::LocalApp,
    shutdown: Option<oneshot::Sender<()>>,
    http: JoinHandle<std::io::Result<()>>,
    consumer: JoinHandle<()>,
    spool_path: PathBuf,
}

impl Server {
    /// Stops accepting requests, processes what is queued for up to `DRAIN_TIMEOUT`, spools
    /// what is left to `DATA_DIR/spool.jsonl` for the next start, and releases the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.http).await.context("HTTP server task")??;
        if tokio::time::timeout(DRAIN_TIMEOUT, self.app.queue.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("queued events were still being processed at shutdown");
        }
        self.app.queue.stop();
        // The consumer finishes its current batch; failed events go back to the queue.
        if tokio::time::timeout(CONSUMER_STOP_TIMEOUT, &mut self.consumer)
            .await
            .is_err()
        {
            tracing::warn!(
                "the worker did not finish its batch in time; its events may be sent again"
            );
            self.consumer.abort();
        }
        self.app.worker.flush_counters().await;
        let spooled = self
            .app
            .queue
            .spool(&self.spool_path)
            .with_context(|| format!("writing {}", self.spool_path.display()))?;
        if spooled > 0 {
            tracing::warn!(events = spooled, path = %self.spool_path.display(), "unprocessed events spooled for the next start");
        }
        tracing::info!("revisit stopped");
        Ok(())
    }
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let server = start(args).await?;
    shutdown_signal().await;
    server.stop().await
}

/// Starts the server and returns once it listens.
pub async fn start(args: ServeArgs) -> anyhow::Result<Server> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    // The data directory contains the secret, visitors' emails in the outbox and the store.
    restrict_permissions(&args.data_dir, 0o700)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // A set REVISIT_SECRET wins; only without it is the data directory's secret used.
    let secret = match std::env::var("REVISIT_SECRET") {
        Ok(_) => String::new(),
        Err(_) => local_secret(&args.data_dir)?,
    };
    let config = Config::from_lookup(|name| local_default(name, addr, &secret))?;
    let store = EmbeddedStore::open(&args.data_dir.join("revisit.redb"))
        .context("opening the embedded store")?;
    let outbox_dir = args
        .outbox
        .clone()
        .unwrap_or_else(|| args.data_dir.join("outbox"));
    let clock = Arc::new(SystemClock::new());
    let queue = Arc::new(LocalQueue::new(
        BATCH_SIZE,
        Some(args.data_dir.join("dead-letter.jsonl")),
    ));
    let spool_path = args.data_dir.join("spool.jsonl");
    let restored = queue
        .restore(&spool_path)
        .with_context(|| format!("reading {}", spool_path.display()))?;
    if restored > 0 {
        tracing::info!(
            events = restored,
            "events spooled at the last stop queued again"
        );
    }
    let backends =
        Backends::connect(&args.aws, Arc::new(store), queue.clone(), clock.clone()).await?;
    let app = app::build_with_queue(
        &config,
        backends.store,
        &outbox_dir,
        clock.clone(),
        queue,
        backends.collector_queue,
        app::Delivery::Live,
    )?;
    let mut routes = router(Arc::clone(&app.collector)).merge(web_routes());
    if args.dev_clock {
        routes = routes.merge(
            Router::new()
                .route("/__dev/clock", post(advance_clock))
                .with_state(clock),
        );
    }
    let routes = routes
        .layer(middleware::from_fn(request_timeout))
        .layer(middleware::from_fn(socket_address));
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = shutdown_rx.await;
        })
        .await
    });
    let consumer = aws::spawn_consumer(app.clone(), backends.poller);
    tracing::info!(
        address = %addr,
        data_dir = %args.data_dir.display(),
        outbox = %outbox_dir.display(),
        site_host = %config.site_host,
        "revisit listening"
    );
    Ok(Server {
        addr,
        outbox_dir,
        app,
        shutdown: Some(shutdown),
        http,
        consumer,
        spool_path,
    })
}

/// Local defaults: the listening host as the site, its origins as allowed origins, and the
/// generated secret. Set variables always win.
fn local_default(name: &str, addr: SocketAddr, secret: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name) {
        return Some(value);
    }
    match name {
        "REVISIT_SITE_HOST" => Some(addr.ip().to_string()),
        "REVISIT_ALLOWED_ORIGINS" => {
            Some(format!("http://{addr},http://localhost:{}", addr.port()))
        }
        "REVISIT_SECRET" => Some(secret.to_owned()),
        _ => None,
    }
}

/// The secret of this data directory, generated on first start and kept in `secret` so that
/// visitor cookies stay valid across restarts.
fn local_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() < revisit_shared::config::MIN_SECRET_LEN {
            anyhow::bail!(
                "{} contains {} bytes, an invalid secret: it needs at least {}. Delete the file to generate a new one (every visitor then starts afresh) or set REVISIT_SECRET",
                path.display(),
                secret.len(),
                revisit_shared::config::MIN_SECRET_LEN
            );
        }
        return Ok(secret);
    }
    let bytes: [u8; 32] = rand::random();
    let secret: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    restrict_permissions(&path, 0o600)?;
    Ok(secret)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("restricting access to {}", path.display()))
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

/// Maximum time a request, its body included, may take before the response is 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Ends requests that take longer than `REQUEST_TIMEOUT`, such as a client that stops sending
/// its body half-way.
async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = Response::new(axum::body::Body::from("request timed out"));
            *response.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
            response
        }
    }
}

async fn socket_address(mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(ClientIp(addr.ip()));
    }
    next.run(request).await
}

/// `GET /`, `/revisit.js` and `/shopify-pixel.js`: the web files built into the binary.
fn web_routes() -> Router {
    const HTML: &str = "text/html; charset=utf-8";
    const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
    Router::new()
        .route("/", get(|| async { web_file(HTML, DEMO_PAGE) }))
        .route(
            "/revisit.js",
            get(|| async { web_file(JAVASCRIPT, REVISIT_JS) }),
        )
        .route(
            "/shopify-pixel.js",
            get(|| async { web_file(JAVASCRIPT, SHOPIFY_PIXEL_JS) }),
        )
}

fn web_file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    // A local server is restarted with new files, so browsers revalidate on every load.
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// Body of `POST /__dev/clock`.
#[derive(Debug, serde::Deserialize)]
struct ClockChange {
    advance_seconds: i64,
}

/// Largest move of the development clock: ten years.
const MAX_CLOCK_ADVANCE_SECS: i64 = 10 * 365 * 86_400;

async fn advance_clock(
    State(clock): State<Arc<SystemClock>>,
    Json(change): Json<ClockChange>,
) -> (http::StatusCode, Json<serde_json::Value>) {
    if !(0..=MAX_CLOCK_ADVANCE_SECS).contains(&change.advance_seconds) {
        let message = format!(
            "advance_seconds must be from 0 to {MAX_CLOCK_ADVANCE_SECS}; the clock only moves forward"
        );
        return (
            http::StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": message})),
        );
    }
    clock.advance(chrono::Duration::seconds(change.advance_seconds));
    tracing::info!(
        advance_seconds = change.advance_seconds,
        "server clock moved forward"
    );
    let offset = clock.offset().num_seconds();
    (
        http::StatusCode::OK,
        Json(serde_json::json!({"offset_seconds": offset})),
    )
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
