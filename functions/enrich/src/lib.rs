//! The enrich Lambda: passes SQS FIFO batches to the worker and returns a partial batch
//! response that names exactly the messages to redeliver. The handler never fails the whole batch:
//! that would redeliver, and send again, events that destinations already accepted.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use revisit_shared::adapters::clock::SystemClock;
use revisit_shared::adapters::dynamodb::{DynamoStore, DynamoTables};
use revisit_shared::adapters::http::HttpTransport;
use revisit_shared::adapters::outbox::Outbox;
use revisit_shared::adapters::sqs_consumer::{QueueMessage, process_messages};
use revisit_shared::adapters::ssm::{
    parameter_value, resolve_env_references, resolve_ssm_references,
};
use revisit_shared::config::{Config, ConfigError};
use revisit_shared::delivery::{Deliverer, RetryPolicy};
use revisit_shared::destinations::DestinationsConfig;
use revisit_shared::destinations::config::build_destinations;
use revisit_shared::worker::{Worker, WorkerStores};

/// Settings of the enrich function besides the shared `Config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichSettings {
    /// `REVISIT_PROFILES_TABLE` and `REVISIT_COUNTERS_TABLE`.
    pub tables: DynamoTables,
    /// `REVISIT_DESTINATIONS_PARAMETER`: SSM parameter holding the destinations file (TOML),
    /// used when `REVISIT_DESTINATIONS_FILE` is unset. Without either, nothing is delivered.
    pub destinations_parameter: Option<String>,
    /// `REVISIT_OUTBOX_DIR`: where destinations without credentials write their requests
    /// (default: `revisit-outbox` in the temporary directory, which Lambda discards).
    pub outbox_dir: PathBuf,
}

impl EnrichSettings {
    /// Reads the settings through `lookup`, which returns a variable's value.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let table = |name: &str| {
            get(name).ok_or_else(|| ConfigError::new(name, "is required: a DynamoDB table name"))
        };
        Ok(Self {
            tables: DynamoTables {
                profiles: table("REVISIT_PROFILES_TABLE")?,
                counters: table("REVISIT_COUNTERS_TABLE")?,
            },
            destinations_parameter: get("REVISIT_DESTINATIONS_PARAMETER"),
            outbox_dir: get("REVISIT_OUTBOX_DIR").map_or_else(
                || std::env::temp_dir().join("revisit-outbox"),
                PathBuf::from,
            ),
        })
    }
}

/// Builds the worker from the environment, reading `REVISIT_SECRET` (when it is an
/// `ssm:` reference), the destinations file and the destinations' credentials from SSM once.
pub async fn build(
    sdk: &SdkConfig,
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
) -> anyhow::Result<Worker> {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let resolved = resolve_env_references(&ssm, &["REVISIT_SECRET"], lookup)
        .await
        .context("reading REVISIT_SECRET from SSM")?;
    let config = Config::from_lookup(|name| resolved.get(name).cloned().or_else(|| lookup(name)))?;
    let settings = EnrichSettings::from_lookup(lookup)?;
    let destinations = match (&config.destinations_file, &settings.destinations_parameter) {
        (Some(path), _) => DestinationsConfig::load(path)?,
        (None, Some(name)) => {
            let text = parameter_value(&ssm, name)
                .await
                .with_context(|| format!("reading the destinations file from SSM {name}"))?;
            DestinationsConfig::parse(&text)?
        }
        (None, None) => {
            tracing::warn!("no destinations configured; events only update profiles");
            DestinationsConfig::default()
        }
    };
    let secrets = resolve_ssm_references(&ssm, &destinations.secret_refs())
        .await
        .context("reading destination credentials from SSM")?;
    let http = HttpTransport::new(config.http_timeout).context("building the HTTP client")?;
    let outbox = Outbox::new(&settings.outbox_dir)
        .with_context(|| format!("creating the outbox {}", settings.outbox_dir.display()))?;
    let routes = build_destinations(&destinations, &secrets, Arc::new(http), Arc::new(outbox))?;
    for route in &routes {
        let mode = if route.live { "live" } else { "outbox" };
        tracing::info!(
            destination = route.destination.name(),
            mode,
            "destination configured"
        );
    }
    let clock = Arc::new(SystemClock::new());
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let store = Arc::new(DynamoStore::new(dynamodb, settings.tables, clock.clone()));
    let stores = WorkerStores {
        reader: store.clone(),
        writer: store.clone(),
        index: store.clone(),
        counters: store,
    };
    let retry = RetryPolicy {
        budget: config.delivery_budget,
        ..RetryPolicy::default()
    };
    let deliverer = Deliverer::new(routes, retry, config.consent_default, clock.clone());
    let policy = config.profile_policy();
    Ok(
        Worker::new(stores, deliverer, clock, policy, config.index_key())
            .with_counter_flush(config.counter_flush),
    )
}

/// Processes one SQS event and returns the messages to redeliver: each failed message and
/// the later messages of its visitor. Never an error, which would fail the whole batch.
pub async fn handle(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    let messages: Vec<QueueMessage> = event
        .records
        .into_iter()
        .map(|record| QueueMessage {
            message_id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            group_id: record.attributes.get("MessageGroupId").cloned(),
        })
        .collect();
    let processed = process_messages(worker, &messages).await;
    tracing::info!(
        messages = messages.len(),
        failed = processed.failed_message_ids.len(),
        undecodable = processed.undecodable,
        "batch processed"
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = processed
        .failed_message_ids
        .into_iter()
        .map(|message_id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<EnrichSettings, ConfigError> {
        let variables: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        EnrichSettings::from_lookup(&|name| variables.get(name).cloned())
    }

    #[test]
    fn settings_read_tables_and_parameter() {
        let parsed = settings(&[
            ("REVISIT_PROFILES_TABLE", "revisit-profiles"),
            ("REVISIT_COUNTERS_TABLE", "revisit-counters"),
            ("REVISIT_DESTINATIONS_PARAMETER", "/revisit/destinations"),
        ])
        .expect("valid settings");

        assert_eq!(parsed.tables.profiles, "revisit-profiles");
        assert_eq!(parsed.tables.counters, "revisit-counters");
        assert_eq!(
            parsed.destinations_parameter.as_deref(),
            Some("/revisit/destinations")
        );
    }

    #[test]
    fn settings_name_missing_table() {
        let error = settings(&[("REVISIT_PROFILES_TABLE", "revisit-profiles")])
            .expect_err("the counters table is required");

        assert_eq!(error.setting, "REVISIT_COUNTERS_TABLE");
    }
}
