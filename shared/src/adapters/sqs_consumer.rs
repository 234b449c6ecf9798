//! The SQS consumer side: a batch of queue messages through the worker, reporting the message
//! ids to redeliver, plus a poller that does what Lambda's event source mapping does, for
//! `revisit serve` and benchmarks.

use std::collections::BTreeSet;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

use crate::event::CollectedEvent;
use crate::ports::QueueError;
use crate::worker::{BatchOutcome, Worker};

/// One received message, without the SDK's or the Lambda event's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    pub body: String,
    /// The FIFO message group (the visitor id), when the queue reported it.
    pub group_id: Option<String>,
}

/// The result of processing a batch of messages.
#[derive(Debug, Default)]
pub struct ProcessedBatch {
    /// Ids of the messages to redeliver, in batch order.
    pub failed_message_ids: Vec<String>,
    /// Messages whose body was not a collected event.
    pub undecodable: usize,
    /// The worker's outcome for the decoded events.
    pub outcome: BatchOutcome,
}

/// Processes `messages` in order. A message that fails is reported for redelivery together
/// with every later message of its message group, so one visitor's events are never applied
/// out of order. Other groups are processed. An undecodable body fails too, so that after the
/// queue's `maxReceiveCount` receives it reaches the dead-letter queue instead of vanishing.
pub async fn process_messages(worker: &Worker, messages: &[QueueMessage]) -> ProcessedBatch {
    let mut failed: BTreeSet<usize> = BTreeSet::new();
    let mut blocked_groups: BTreeSet<String> = BTreeSet::new();
    let mut events: Vec<CollectedEvent> = Vec::new();
    let mut positions: Vec<usize> = Vec::new();
    let mut undecodable = 0;
    for (position, message) in messages.iter().enumerate() {
        let decoded = serde_json::from_str::<CollectedEvent>(&message.body);
        let group = message.group_id.clone().or_else(|| {
            decoded
                .as_ref()
                .ok()
                .map(|event| event.visitor_id.to_string())
        });
        if group
            .as_ref()
            .is_some_and(|group| blocked_groups.contains(group))
        {
            failed.insert(position);
            continue;
        }
        match decoded {
            Ok(event) => {
                events.push(event);
                positions.push(position);
            }
            Err(error) => {
                undecodable += 1;
                tracing::error!(message_id = %message.message_id, error = %error, "message is not a collected event; it will reach the dead-letter queue");
                failed.insert(position);
                blocked_groups.extend(group);
            }
        }
    }
    // Events after an undecodable message of their group were held back above, so the
    // worker gets each group's events as an unbroken prefix.
    let outcome = worker.process_batch(&events).await;
    failed.extend(outcome.failed.iter().map(|&index| positions[index]));
    ProcessedBatch {
        failed_message_ids: failed
            .into_iter()
            .map(|position| messages[position].message_id.clone())
            .collect(),
        undecodable,
        outcome,
    }
}

/// Receives batches from a queue, processes them and deletes what succeeded, as Lambda's
/// event source mapping with `ReportBatchItemFailures` does.
#[derive(Debug, Clone)]
pub struct SqsPoller {
    client: Client,
    queue_url: String,
    /// Messages per receive, 1 to 10.
    pub max_messages: i32,
    /// Long-poll wait of one receive, 0 to 20 seconds.
    pub wait_seconds: i32,
}

/// The result of one poll.
#[derive(Debug, Default)]
pub struct PollReport {
    pub received: usize,
    pub failed: usize,
    /// The batch's processing result, when a batch was received.
    pub batch: Option<ProcessedBatch>,
}

impl SqsPoller {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            max_messages: 10,
            wait_seconds: 20,
        }
    }

    /// Receives one batch, processes it and deletes the messages that succeeded. Failed
    /// messages stay on the queue and come back after its visibility timeout.
    pub async fn poll_once(&self, worker: &Worker) -> Result<PollReport, QueueError> {
        let unavailable = |error: Box<dyn std::error::Error + Send + Sync>| {
            QueueError::Unavailable { source: error }
        };
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.max_messages)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|error| unavailable(Box::new(error)))?;
        let received = output.messages();
        if received.is_empty() {
            return Ok(PollReport::default());
        }
        let messages: Vec<QueueMessage> = received
            .iter()
            .map(|message| QueueMessage {
                message_id: message.message_id().unwrap_or_default().to_owned(),
                body: message.body().unwrap_or_default().to_owned(),
                group_id: message
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned(),
            })
            .collect();
        let batch = process_messages(worker, &messages).await;
        let failed: BTreeSet<&str> = batch
            .failed_message_ids
            .iter()
            .map(String::as_str)
            .collect();
        let mut entries = Vec::new();
        for (position, message) in received.iter().enumerate() {
            let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            if failed.contains(id) {
                continue;
            }
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(position.to_string())
                .receipt_handle(handle)
                .build()
                .map_err(|error| unavailable(Box::new(error)))?;
            entries.push(entry);
        }
        if !entries.is_empty() {
            let deleted = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| unavailable(Box::new(error)))?;
            for entry in deleted.failed() {
                // The message comes back after the visibility timeout; processing it again
                // changes nothing because the profile remembers applied and delivered events.
                tracing::warn!(
                    entry = entry.id(),
                    code = entry.code(),
                    "deleting a processed message failed"
                );
            }
        }
        Ok(PollReport {
            received: messages.len(),
            failed: batch.failed_message_ids.len(),
            batch: Some(batch),
        })
    }
}
