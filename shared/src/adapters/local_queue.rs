//! The in-process queue of local mode: one FIFO with a single consumer, so each visitor's
//! events are processed in the order they were collected. Failed events are retried in place
//! (holding back later events) and, after `max_receives` attempts, written to a dead-letter file.
//! A stop lets the current batch finish and hands back what is left, for the caller to spool.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Most events waiting at once; beyond it `enqueue` fails so the collector responds with 503.
    capacity: usize,
    stopping: AtomicBool,
}

/// Default `capacity`: events waiting before the collector pushes back.
pub const DEFAULT_CAPACITY: usize = 10_000;

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
            capacity: DEFAULT_CAPACITY,
            stopping: AtomicBool::new(false),
        }
    }

    /// Sets the most events that may wait at once.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Stops the consumer after its current batch; failed events are then put back instead of
    /// retried, and `enqueue` fails.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.arrived.notify_waiters();
    }

    /// Whether `stop` was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Removes and returns every event not yet processed, oldest first.
    pub fn take_pending(&self) -> Vec<CollectedEvent> {
        let events: Vec<CollectedEvent> = self.pending().drain(..).collect();
        self.unfinished.fetch_sub(events.len(), Ordering::SeqCst);
        self.finished.notify_waiters();
        events
    }

    /// Writes every event not yet processed to `path` as JSON lines and removes them from the
    /// queue; returns how many were written.
    pub fn spool(&self, path: &std::path::Path) -> std::io::Result<usize> {
        let events = self.take_pending();
        if events.is_empty() {
            return Ok(0);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for event in &events {
            let line = serde_json::to_string(event).map_err(std::io::Error::other)?;
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
        Ok(events.len())
    }

    /// Enqueues the events spooled in `path` by an earlier stop and deletes the file; returns
    /// how many were restored. Lines that cannot be read are moved to the dead-letter file.
    pub fn restore(&self, path: &std::path::Path) -> std::io::Result<usize> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        let events: Vec<CollectedEvent> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| match serde_json::from_str(line) {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::error!(error = %error, "unreadable spooled event skipped");
                    None
                }
            })
            .collect();
        self.unfinished.fetch_add(events.len(), Ordering::SeqCst);
        self.pending().extend(events.iter().cloned());
        self.arrived.notify_one();
        std::fs::remove_file(path)?;
        Ok(events.len())
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
            if self.is_stopping() {
                // Put the failed events back in front, in order, for the stop to spool.
                let put_back = std::mem::take(&mut remaining);
                self.unfinished.fetch_add(put_back.len(), Ordering::SeqCst);
                let mut pending = self.pending();
                for event in put_back.into_iter().rev() {
                    pending.push_front(event);
                }
                break;
            }
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

    /// Consumes the queue until `stop` is called.
    pub async fn consume(&self, worker: &Worker) {
        while !self.is_stopping() {
            let notified = self.arrived.notified();
            if self.run_once(worker).await.0 == 0 && !self.is_stopping() {
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
        let mut pending = self.pending();
        if self.is_stopping() || pending.len() + events.len() > self.capacity {
            let reason = if self.is_stopping() {
                "stopping"
            } else {
                "full"
            };
            return Err(QueueError::Unavailable {
                source: format!(
                    "the local queue is {reason} ({} events waiting)",
                    pending.len()
                )
                .into(),
            });
        }
        self.unfinished.fetch_add(events.len(), Ordering::SeqCst);
        pending.extend(events.iter().cloned());
        drop(pending);
        self.arrived.notify_one();
        Ok(())
    }
}
