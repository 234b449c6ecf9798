//! Support for the tests against moto on 127.0.0.1: the SDK configuration, tables and queues
//! with names unique to each test, and an interceptor that counts AWS requests by operation.
//!
//! The rule for running: `scripts/test` starts moto and sets `REVISIT_TEST_MOTO=1`, and then
//! every AWS test runs and fails if moto cannot be reached. Only when `REVISIT_TEST_MOTO` is
//! unset (a developer's plain `cargo test`) does a test print a notice and return early.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use revisit_shared::adapters::dynamodb::{DynamoTables, EXPIRES_AT, PK, SK};

/// Variable that `scripts/test` sets once moto is up.
pub const MOTO_FLAG: &str = "REVISIT_TEST_MOTO";

/// A moto server reached through the real SDK clients.
#[derive(Debug, Clone)]
pub struct Moto {
    pub endpoint: String,
    pub sdk: SdkConfig,
}

/// Returns the moto server of this test run, or `None` (after a printed notice) when the run
/// has none.
///
/// Panics when `REVISIT_TEST_MOTO` is set but `AWS_ENDPOINT_URL` is not: under `scripts/test`
/// a missing emulator is a failure, never a skip.
pub async fn moto(test: &str) -> Option<Moto> {
    if std::env::var_os(MOTO_FLAG).is_none() {
        // Written to stderr directly: the test harness captures eprintln! of passing tests,
        // and a skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {test} skipped: {MOTO_FLAG} is unset, so no moto server runs. \
             scripts/test starts one and runs every AWS test."
        );
        return None;
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| panic!("{MOTO_FLAG} is set but AWS_ENDPOINT_URL is not"));
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "AWS_ENDPOINT_URL {endpoint} is not a loopback moto server"
    );
    Some(Moto {
        sdk: sdk_config(&endpoint).await,
        endpoint,
    })
}

/// SDK configuration for an emulator at `endpoint`. An endpoint alone is not enough: the SDK
/// still needs a region and credentials, so both are set here rather than read from the
/// environment (without them the credential chain would try the instance-metadata address).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Returns a name no other test uses: `prefix` plus random hex.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl Moto {
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk)
    }

    /// Builds a DynamoDB client whose requests `counter` counts.
    pub fn counted_dynamodb(&self, counter: &RequestCounter) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(&self.sdk)
            .interceptor(counter.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Builds an SQS client whose requests `counter` counts.
    pub fn counted_sqs(&self, counter: &RequestCounter) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::config::Builder::from(&self.sdk)
            .interceptor(counter.clone())
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    /// Creates the profiles and counters tables as template.yaml defines them (`pk`/`sk`
    /// string keys, TTL on `expires_at`), named after `prefix`.
    pub async fn create_tables(&self, prefix: &str) -> DynamoTables {
        let tables = DynamoTables {
            profiles: unique_name(&format!("{prefix}-profiles")),
            counters: unique_name(&format!("{prefix}-counters")),
        };
        for name in [&tables.profiles, &tables.counters] {
            self.create_table(name).await;
        }
        tables
    }

    async fn create_table(&self, name: &str) {
        let client = self.dynamodb();
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition")
        };
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .expect("key schema")
        };
        client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(PK))
            .attribute_definitions(attribute(SK))
            .key_schema(key(PK, KeyType::Hash))
            .key_schema(key(SK, KeyType::Range))
            .send()
            .await
            .expect("create table");
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()
            .expect("ttl specification");
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(ttl)
            .send()
            .await
            .expect("enable TTL");
    }

    /// Creates a FIFO event queue as template.yaml defines it (per-group deduplication, 256 KiB
    /// messages) with a FIFO dead-letter queue after `max_receive_count` receives. Returns the
    /// queue URL and the dead-letter queue URL.
    pub async fn create_event_queue(
        &self,
        prefix: &str,
        visibility_timeout: u32,
        max_receive_count: u32,
    ) -> (String, String) {
        let client = self.sqs();
        let name = unique_name(prefix);
        let dead_letter = client
            .create_queue()
            .queue_name(format!("{name}-dlq.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .expect("create dead-letter queue");
        let dead_letter_url = dead_letter.queue_url().expect("queue URL").to_owned();
        let dead_letter_arn = self.queue_arn(&dead_letter_url).await;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_letter_arn,
            "maxReceiveCount": max_receive_count,
        });
        let queue = client
            .create_queue()
            .queue_name(format!("{name}.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::DeduplicationScope, "messageGroup")
            .attributes(QueueAttributeName::FifoThroughputLimit, "perMessageGroupId")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(QueueAttributeName::MaximumMessageSize, "262144")
            .send()
            .await
            .expect("create event queue");
        (
            queue.queue_url().expect("queue URL").to_owned(),
            dead_letter_url,
        )
    }

    /// Creates a standard queue with `attributes`; returns its URL.
    pub async fn create_queue(
        &self,
        prefix: &str,
        attributes: &[(QueueAttributeName, &str)],
    ) -> String {
        let mut request = self.sqs().create_queue().queue_name(unique_name(prefix));
        for (name, value) in attributes {
            request = request.attributes(name.clone(), *value);
        }
        let output = request.send().await.expect("create queue");
        output.queue_url().expect("queue URL").to_owned()
    }

    async fn queue_arn(&self, url: &str) -> String {
        let output = self
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        output
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
            .expect("queue ARN")
            .clone()
    }

    /// Receives and deletes every message on `queue_url` (several receives of up to 10), with
    /// their system attributes. Deleting is what lets a FIFO queue hand out the later messages
    /// of a message group.
    pub async fn take_all(&self, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let mut messages = Vec::new();
        loop {
            let output = self
                .sqs()
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive messages");
            let received = output.messages().to_vec();
            if received.is_empty() {
                return messages;
            }
            for message in &received {
                self.sqs()
                    .delete_message()
                    .queue_url(queue_url)
                    .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                    .send()
                    .await
                    .expect("delete message");
            }
            messages.extend(received);
        }
    }

    /// Stores an SSM parameter (a SecureString, as secrets are stored).
    pub async fn put_secure_parameter(&self, name: &str, value: &str) {
        self.ssm()
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("put parameter");
    }
}

/// Counts AWS requests by operation (such as `BatchGetItem` or `SendMessageBatch`), retries
/// included, by reading the `X-Amz-Target` header of each request as it is sent. For batch
/// operations it also counts the items (keys or entries) the requests carry.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    items: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests of `operation` so far.
    pub fn count(&self, operation: &str) -> u64 {
        self.snapshot().get(operation).copied().unwrap_or(0)
    }

    /// Requests so far by operation.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("counter lock").clone()
    }

    /// Items carried by the requests of a batch operation so far: keys of `BatchGetItem`,
    /// entries of `SendMessageBatch` and `DeleteMessageBatch`.
    pub fn items(&self, operation: &str) -> u64 {
        let items = self.items.lock().expect("counter lock");
        items.get(operation).copied().unwrap_or(0)
    }

    pub fn reset(&self) {
        self.counts.lock().expect("counter lock").clear();
        self.items.lock().expect("counter lock").clear();
    }
}

/// Keys or entries in a batch request's JSON body.
fn batch_items(operation: &str, body: &[u8]) -> Option<u64> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let count = match operation {
        "BatchGetItem" => body["RequestItems"]
            .as_object()?
            .values()
            .map(|table| table["Keys"].as_array().map_or(0, Vec::len))
            .sum(),
        "SendMessageBatch" | "DeleteMessageBatch" => body["Entries"].as_array()?.len(),
        _ => return None,
    };
    Some(count as u64)
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        // DynamoDB and SQS (JSON protocol) name the operation as `<service>.<operation>`.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        let body = context.request().body().bytes().unwrap_or_default();
        if let Some(items) = batch_items(&operation, body) {
            *self
                .items
                .lock()
                .expect("counter lock")
                .entry(operation.clone())
                .or_default() += items;
        }
        *self
            .counts
            .lock()
            .expect("counter lock")
            .entry(operation)
            .or_default() += 1;
        Ok(())
    }
}
