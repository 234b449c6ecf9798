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

/// Where profiles, the identity index and the daily counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The embedded database file in the data directory.
    #[default]
    Embedded,
    /// The DynamoDB tables named by --profiles-table and --counters-table.
    Dynamodb,
}

/// How events travel from the collector to the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    /// An in-process queue.
    #[default]
    Local,
    /// The SQS FIFO queue at --queue-url, polled by this process; rejected items go to the
    /// queue at --quarantine-queue-url.
    Sqs,
}

/// Options of `revisit serve` that select AWS services.
#[derive(Debug, Clone, clap::Args)]
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
    /// URL of the SQS queue for rejected items (with --queue sqs).
    #[arg(long, env = "REVISIT_QUARANTINE_QUEUE_URL")]
    pub quarantine_queue_url: Option<String>,
}

/// The store and queue `revisit serve` runs on.
#[derive(Debug)]
pub struct Backends {
    pub store: LocalStore,
    /// Where the collector sends events: the local queue or SQS.
    pub collector_queue: Arc<dyn EventQueue>,
    /// The SQS consumer, with --queue sqs.
    pub poller: Option<SqsPoller>,
}

impl Backends {
    /// Connects what `args` selects. `embedded` serves as the store by default and keeps the
    /// quarantine unless the queue is SQS.
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
        let queue_urls = match args.queue {
            QueueKind::Local => None,
            QueueKind::Sqs => Some((
                required(&args.queue_url, "--queue-url")?,
                required(&args.quarantine_queue_url, "--quarantine-queue-url")?,
            )),
        };
        let tables = match args.store {
            StoreKind::Embedded => None,
            StoreKind::Dynamodb => Some(DynamoTables {
                profiles: required(&args.profiles_table, "--profiles-table")?,
                counters: required(&args.counters_table, "--counters-table")?,
            }),
        };
        let sdk = load_sdk_config().await;
        let mut collector_queue = local_queue;
        let mut quarantine: Arc<dyn Quarantine> = embedded.clone();
        let mut poller = None;
        if let Some((url, quarantine_url)) = queue_urls {
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let limit = max_message_bytes(&sqs, &url)
                .await
                .with_context(|| format!("reading the attributes of {url}"))?;
            let quarantine_limit = max_message_bytes(&sqs, &quarantine_url)
                .await
                .with_context(|| format!("reading the attributes of {quarantine_url}"))?;
            collector_queue = Arc::new(SqsEventQueue::new(sqs.clone(), &url, limit));
            quarantine = Arc::new(SqsQuarantine::new(
                sqs.clone(),
                quarantine_url,
                quarantine_limit,
            ));
            poller = Some(SqsPoller::new(sqs, url));
        }
        let store = match tables {
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
        Some(poller) => tokio::spawn(async move {
            loop {
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
