//! SQS producers: the event queue (FIFO, one message group per visitor) between `collect` and
//! `enrich`, and the quarantine (a standard queue) that keeps rejected intake items.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{CollectedEvent, IntakeError};
use crate::ports::{EventQueue, Quarantine, QuarantinedItem, QueueError};

/// SendMessageBatch takes at most 10 entries.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Message size limit of queues created before August 2025, in bytes. It is the default when
/// the queue's own `MaximumMessageSize` is not known.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 262_144;
/// Total payload of one SendMessageBatch call kept below this many bytes (AWS accepts
/// 256 KiB everywhere, 1 MiB on queues that allow 1 MiB messages).
const BATCH_PAYLOAD_BYTES: usize = 262_144;
/// Longest `MessageDeduplicationId` SQS accepts.
const MAX_DEDUPLICATION_ID: usize = 128;

/// Entries of a SendMessageBatch call that SQS did not accept.
#[derive(Debug, thiserror::Error)]
#[error("SQS rejected {} of {sent} messages (first: {} {})", failed.len(), failed[0].code, failed[0].message)]
pub struct BatchSendError {
    /// Messages in the call.
    pub sent: usize,
    /// The rejected entries, at least one.
    pub failed: Vec<FailedEntry>,
}

/// One rejected entry of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// The event id, or the quarantine item's position, of the rejected message.
    pub id: String,
    pub code: String,
    pub message: String,
    /// Whether SQS blames the request (sending it again cannot succeed) rather than itself.
    pub sender_fault: bool,
}

/// Reads a queue's `MaximumMessageSize` attribute, in bytes.
pub async fn max_message_bytes(client: &Client, queue_url: &str) -> Result<usize, QueueError> {
    let output = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::MaximumMessageSize)
        .send()
        .await
        .map_err(|error| QueueError::Unavailable {
            source: Box::new(error),
        })?;
    let value = output
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::MaximumMessageSize))
        .and_then(|value| value.parse().ok());
    value.ok_or_else(|| QueueError::Unavailable {
        source: format!("queue {queue_url} did not return MaximumMessageSize").into(),
    })
}

/// A message ready to send, with the id that names it in errors.
struct Outgoing {
    id: String,
    body: String,
    group_id: Option<String>,
    deduplication_id: Option<String>,
}

/// Sends messages in order, in batches of at most 10 entries and `BATCH_PAYLOAD_BYTES`, and
/// stops at the first batch with a rejected entry so that later messages of the same visitor
/// never overtake it.
async fn send_all(
    client: &Client,
    queue_url: &str,
    messages: Vec<Outgoing>,
) -> Result<(), QueueError> {
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut batch_bytes = 0;
    for message in messages {
        let full = batch.len() == MAX_BATCH_ENTRIES
            || (!batch.is_empty() && batch_bytes + message.body.len() > BATCH_PAYLOAD_BYTES);
        if full {
            send_batch(client, queue_url, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
        batch_bytes += message.body.len();
        batch.push(message);
    }
    if batch.is_empty() {
        return Ok(());
    }
    send_batch(client, queue_url, batch).await
}

async fn send_batch(
    client: &Client,
    queue_url: &str,
    batch: Vec<Outgoing>,
) -> Result<(), QueueError> {
    let mut entries = Vec::with_capacity(batch.len());
    for (position, message) in batch.iter().enumerate() {
        let entry = SendMessageBatchRequestEntry::builder()
            .id(position.to_string())
            .message_body(&message.body)
            .set_message_group_id(message.group_id.clone())
            .set_message_deduplication_id(message.deduplication_id.clone())
            .build()
            .map_err(|error| QueueError::Unavailable {
                source: Box::new(error),
            })?;
        entries.push(entry);
    }
    let output = client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|error| QueueError::Unavailable {
            source: Box::new(error),
        })?;
    if output.failed().is_empty() {
        return Ok(());
    }
    let failed = output
        .failed()
        .iter()
        .map(|entry| FailedEntry {
            id: entry
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|position| batch.get(position))
                .map_or_else(|| entry.id().to_owned(), |message| message.id.clone()),
            code: entry.code().to_owned(),
            message: entry.message().unwrap_or_default().to_owned(),
            sender_fault: entry.sender_fault(),
        })
        .collect();
    Err(QueueError::Unavailable {
        source: Box::new(BatchSendError {
            sent: batch.len(),
            failed,
        }),
    })
}

/// The FIFO queue between `collect` and `enrich`. Each visitor is a message group, so one
/// visitor's events are processed in order while visitors proceed in parallel.
#[derive(Debug, Clone)]
pub struct SqsEventQueue {
    client: Client,
    queue_url: String,
    max_message_bytes: usize,
}

impl SqsEventQueue {
    /// Creates a producer for the FIFO queue at `queue_url` whose `MaximumMessageSize` is
    /// `max_message_bytes`.
    pub fn new(client: Client, queue_url: impl Into<String>, max_message_bytes: usize) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            max_message_bytes,
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}

/// Returns the `MessageDeduplicationId` of an event: its id when SQS accepts it (1 to 128
/// printable ASCII characters), otherwise the SHA-256 of the id in hex, so that a redelivered
/// copy still gets the same value.
pub fn deduplication_id(event_id: &str) -> String {
    let accepted = !event_id.is_empty()
        && event_id.len() <= MAX_DEDUPLICATION_ID
        && event_id.bytes().all(|byte| byte.is_ascii_graphic());
    if accepted {
        return event_id.to_owned();
    }
    hex::encode(Sha256::digest(event_id.as_bytes()))
}

#[async_trait]
impl EventQueue for SqsEventQueue {
    async fn enqueue(&self, events: &[CollectedEvent]) -> Result<(), QueueError> {
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let body = serde_json::to_string(event).map_err(|error| QueueError::Unavailable {
                source: Box::new(error),
            })?;
            // SQS limits the UTF-8 byte length of a message, not its character count.
            if body.len() > self.max_message_bytes {
                return Err(QueueError::TooLarge {
                    event_id: event.event_id.clone(),
                    size: body.len(),
                    limit: self.max_message_bytes,
                });
            }
            messages.push(Outgoing {
                id: event.event_id.clone(),
                body,
                group_id: Some(event.visitor_id.to_string()),
                deduplication_id: Some(deduplication_id(&event.event_id)),
            });
        }
        send_all(&self.client, &self.queue_url, messages).await
    }
}

/// The quarantine on a standard SQS queue: each rejected item is one message, kept for the
/// queue's retention period for someone to read with ReceiveMessage.
#[derive(Debug, Clone)]
pub struct SqsQuarantine {
    client: Client,
    queue_url: String,
    max_message_bytes: usize,
}

impl SqsQuarantine {
    pub fn new(client: Client, queue_url: impl Into<String>, max_message_bytes: usize) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            max_message_bytes,
        }
    }

    /// Encodes the item as a message body that fits the queue. An oversize `raw` is cut to
    /// fit, and the cut is recorded among the item's errors.
    fn body(&self, item: &QuarantinedItem) -> Result<String, QueueError> {
        let encode = |item: &QuarantinedItem| {
            serde_json::to_string(item).map_err(|error| QueueError::Unavailable {
                source: Box::new(error),
            })
        };
        let body = encode(item)?;
        if body.len() <= self.max_message_bytes {
            return Ok(body);
        }

        let raw = match &item.raw {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let mut cut = item.clone();
        cut.errors.push(IntakeError::new(
            "raw",
            format!(
                "was {} bytes and was cut to fit the quarantine queue",
                raw.len()
            ),
        ));
        cut.raw = Value::String(String::new());

        // JSON escaping can at most multiply a character's size by 6 (`\u0000`).
        let room = self.max_message_bytes.saturating_sub(encode(&cut)?.len()) / 6;
        let mut end = room.min(raw.len());
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        cut.raw = Value::String(raw[..end].to_owned());
        encode(&cut)
    }
}

#[async_trait]
impl Quarantine for SqsQuarantine {
    async fn quarantine(&self, items: &[QuarantinedItem]) -> Result<(), QueueError> {
        let mut messages = Vec::with_capacity(items.len());
        for item in items {
            messages.push(Outgoing {
                id: format!("item {}", item.index),
                body: self.body(item)?,
                group_id: None,
                deduplication_id: None,
            });
        }
        send_all(&self.client, &self.queue_url, messages).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deduplication_id_keeps_printable_ids() {
        assert_eq!(deduplication_id("e-1.2:3"), "e-1.2:3");
    }

    #[test]
    fn deduplication_id_hashes_other_ids() {
        let long = "x".repeat(129);

        assert_eq!(deduplication_id("with space").len(), 64);
        assert_eq!(deduplication_id("é").len(), 64);
        assert_eq!(deduplication_id(&long).len(), 64);
        assert_eq!(
            deduplication_id("with space"),
            deduplication_id("with space")
        );
    }
}
