//! `revisit serve` on AWS services: DynamoDB as the store and an SQS FIFO queue between the
//! collector and the worker, reached with the SDK's standard settings (`AWS_REGION`,
//! credentials, `AWS_ENDPOINT_URL`), so the same command runs against moto or an account.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use revisit_shared::adapters::aws::load_sdk_config;
use revisit_shared::adapters::dynamodb::{DynamoStore, DynamoTables};
use revisit_shared::adapters::embedded::EmbeddedStore;
use revisit_shared::adapters::sqs::{SqsEventQueue, SqsQuarantine, max_message_bytes};
use revisit_shared::adapters::sqs_consumer::SqsPoller;
use revisit_shared::ports::{Clock, EventQueue, Quarantine};

use crate::app::{LocalApp, LocalStore};

/// The store of profiles, the identity index and the daily counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The embedded database file in the data directory.
    #[default]
    Embedded,
    /// The DynamoDB tables named by --profiles-table and --counters-table.
    Dynamodb,
}

/// The queue that carries events from the collector to the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    /// An in-process queue.
    #[default]
    Local,
    /// The SQS FIFO queue at --queue-url, polled by this process.
    Sqs,
}

/// Options of `revisit serve` that select AWS services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// Store of profiles, identity index and counters.
    #[arg(long, env = "REVISIT_STORE", value_enum, default_value_t)]
    pub store: StoreKind,
    /// Queue between the collector and the worker.
    #[arg(long, env = "REVISIT_QUEUE", value_enum, default_value_t)]
    pub queue: QueueKind,
    /// DynamoDB table of profiles and the identity index (with --store dynamodb).
    #[arg(long, env = "REVISIT_PROFILES_TABLE")]
    pub profiles_table: Option<String>,
    /// DynamoDB table of daily counters (with --store dynamodb).
    #[arg(long, env = "REVISIT_COUNTERS_TABLE")]
    pub counters_table: Option<String>,
    /// URL of the SQS FIFO event queue (with --queue sqs).
    #[arg(long, env = "REVISIT_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// URL of the SQS queue for rejected items (with --queue sqs and --store dynamodb; the
    /// embedded store keeps rejected items itself).
    #[arg(long, env = "REVISIT_QUARANTINE_QUEUE_URL")]
    pub quarantine_queue_url: Option<String>,
}

/// The store and queue `revisit serve` runs on.
#[derive(Debug)]
pub struct Backends {
    pub store: LocalStore,
    /// The queue the collector sends events to: the local queue or SQS.
    pub collector_queue: Arc<dyn EventQueue>,
    /// The SQS consumer, with --queue sqs.
    pub poller: Option<SqsPoller>,
}

impl Backends {
    /// Connects what `args` selects. `embedded` is the store by default, and it keeps the
    /// rejected items unless both the store and the queue are on AWS.
    pub async fn connect(
        args: &AwsArgs,
        embedded: Arc<EmbeddedStore>,
        local_queue: Arc<dyn EventQueue>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if args.store == StoreKind::Embedded && args.queue == QueueKind::Local {
            return Ok(Self {
                store: LocalStore::Embedded(embedded),
                collector_queue: local_queue,
                poller: None,
            });
        }
        // Every option is checked before the SDK configuration loads, which may look for a
        // region and credentials.
        let options = checked_options(args)?;
        let sdk = load_sdk_config().await;

        let mut collector_queue = local_queue;
        let mut quarantine: Arc<dyn Quarantine> = embedded.clone();
        let mut poller = None;
        if let Some(url) = options.queue_url {
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let limit = max_message_bytes(&sqs, &url)
                .await
                .with_context(|| format!("reading the attributes of {url}"))?;
            collector_queue = Arc::new(SqsEventQueue::new(sqs.clone(), &url, limit));
            poller = Some(SqsPoller::new(sqs, url));
        }
        if let Some(url) = options.quarantine_queue_url {
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let limit = max_message_bytes(&sqs, &url)
                .await
                .with_context(|| format!("reading the attributes of {url}"))?;
            quarantine = Arc::new(SqsQuarantine::new(sqs, url, limit));
        }

        let store = match options.tables {
            None => LocalStore::Embedded(embedded),
            Some(tables) => {
                let client = aws_sdk_dynamodb::Client::new(&sdk);
                let store = Arc::new(DynamoStore::new(client, tables, clock));
                LocalStore::Dynamo { store, quarantine }
            }
        };
        Ok(Self {
            store,
            collector_queue,
            poller,
        })
    }
}

/// The AWS resources that `args` select.
struct AwsOptions {
    queue_url: Option<String>,
    quarantine_queue_url: Option<String>,
    tables: Option<DynamoTables>,
}

/// Reads the AWS resources that `args` select, or returns an error naming a missing option.
fn checked_options(args: &AwsArgs) -> anyhow::Result<AwsOptions> {
    let on_sqs = args.queue == QueueKind::Sqs;
    let on_dynamodb = args.store == StoreKind::Dynamodb;
    let queue_url = on_sqs
        .then(|| required(&args.queue_url, "--queue-url"))
        .transpose()?;
    let quarantine_queue_url = (on_sqs && on_dynamodb)
        .then(|| required(&args.quarantine_queue_url, "--quarantine-queue-url"))
        .transpose()?;
    let tables = on_dynamodb
        .then(|| -> anyhow::Result<DynamoTables> {
            Ok(DynamoTables {
                profiles: required(&args.profiles_table, "--profiles-table")?,
                counters: required(&args.counters_table, "--counters-table")?,
            })
        })
        .transpose()?;
    Ok(AwsOptions {
        queue_url,
        quarantine_queue_url,
        tables,
    })
}

fn required(value: &Option<String>, flag: &str) -> anyhow::Result<String> {
    value
        .clone()
        .filter(|value| !value.trim().is_empty())
        .with_context(|| format!("{flag} is required with the selected --store or --queue"))
}

/// Starts the worker's consumer: the SQS poller when there is one, otherwise the local queue.
pub fn spawn_consumer(app: LocalApp, poller: Option<SqsPoller>) -> JoinHandle<()> {
    match poller {
        None => tokio::spawn(async move { app.queue.consume(&app.worker).await }),
        // SQS keeps unprocessed messages itself, so a stop only ends the polling.
        Some(poller) => tokio::spawn(async move {
            while !app.queue.is_stopping() {
                match poller.poll_once(&app.worker).await {
                    Ok(report) if report.received > 0 => {
                        tracing::debug!(
                            received = report.received,
                            failed = report.failed,
                            "batch processed"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = %error, "receiving from SQS failed; retrying in 1 s");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }),
    }
}
