//! The in-process queue of local mode: one FIFO with a single consumer, so each visitor's
//! events are processed in the order they were collected. Failed events are retried in place
//! (holding back later events) and, after `max_receives` attempts, written to a dead-letter file.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::event::CollectedEvent;
use crate::ports::{EventQueue, QueueError};
use crate::worker::{BatchOutcome, Worker};

/// An in-process FIFO between the collector and the worker.
#[derive(Debug)]
pub struct LocalQueue {
    pending: Mutex<VecDeque<CollectedEvent>>,
    /// Events enqueued and not yet finished (processed or dead-lettered).
    unfinished: AtomicUsize,
    arrived: Notify,
    finished: Notify,
    batch_size: usize,
    max_receives: u32,
    retry_delay: Duration,
    dead_letter: Option<PathBuf>,
}

impl LocalQueue {
    /// A queue handing the worker batches of up to `batch_size` events.
    pub fn new(batch_size: usize, dead_letter: Option<PathBuf>) -> Self {
        Self {
            pending: Mutex::new(VecDeque::new()),
            unfinished: AtomicUsize::new(0),
            arrived: Notify::new(),
            finished: Notify::new(),
            batch_size: batch_size.max(1),
            max_receives: 5,
            retry_delay: Duration::from_millis(200),
            dead_letter,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<CollectedEvent>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the events not yet taken by the worker, oldest first.
    pub fn pending_events(&self) -> Vec<CollectedEvent> {
        self.pending().iter().cloned().collect()
    }

    fn take_batch(&self) -> Vec<CollectedEvent> {
        let mut pending = self.pending();
        let count = pending.len().min(self.batch_size);
        pending.drain(..count).collect()
    }

    /// Processes one batch, retrying its failed events; returns the events taken (0 when
    /// the queue was empty) and the outcome of the first attempt.
    pub async fn run_once(&self, worker: &Worker) -> (usize, Option<BatchOutcome>) {
        let batch = self.take_batch();
        if batch.is_empty() {
            return (0, None);
        }
        let taken = batch.len();
        let mut first = None;
        let mut remaining = batch;
        for receive in 1..=self.max_receives {
            let outcome = worker.process_batch(&remaining).await;
            let failed: Vec<CollectedEvent> = outcome
                .failed
                .iter()
                .map(|&index| remaining[index].clone())
                .collect();
            first.get_or_insert(outcome);
            if failed.is_empty() {
                remaining = Vec::new();
                break;
            }
            remaining = failed;
            if receive < self.max_receives {
                tokio::time::sleep(self.retry_delay * 2u32.pow(receive - 1)).await;
            }
        }
        if !remaining.is_empty() {
            self.dead_letter(&remaining);
        }
        self.unfinished.fetch_sub(taken, Ordering::SeqCst);
        self.finished.notify_waiters();
        (taken, first)
    }

    /// Processes batches until the queue is empty.
    pub async fn drain(&self, worker: &Worker) {
        while self.run_once(worker).await.0 > 0 {}
    }

    /// Consumes the queue until the task is aborted.
    pub async fn consume(&self, worker: &Worker) {
        loop {
            let notified = self.arrived.notified();
            if self.run_once(worker).await.0 == 0 {
                notified.await;
            }
        }
    }

    /// Waits until every enqueued event has been processed or dead-lettered.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.finished.notified();
            if self.unfinished.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn dead_letter(&self, events: &[CollectedEvent]) {
        tracing::error!(
            events = events.len(),
            "events failed every attempt; moved to the dead-letter file"
        );
        let Some(path) = &self.dead_letter else {
            return;
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| {
                for event in events {
                    let line = serde_json::to_string(event).map_err(std::io::Error::other)?;
                    writeln!(file, "{line}")?;
                }
                Ok(())
            });
        if let Err(error) = written {
            tracing::error!(path = %path.display(), error = %error, "writing dead-letter file failed");
        }
    }
}

#[async_trait]
impl EventQueue for LocalQueue {
    async fn enqueue(&self, events: &[CollectedEvent]) -> Result<(), QueueError> {
        self.unfinished.fetch_add(events.len(), Ordering::SeqCst);
        self.pending().extend(events.iter().cloned());
        self.arrived.notify_one();
        Ok(())
    }
}
