//! Delivery: consent, age and identifier checks per destination, batching, sending with
//! retries, and counting what happened to each event.
//!
//! Delivery is idempotent through records of what each destination accepted: an event that a
//! destination accepted is never sent to it again, and when a destination takes an event in
//! several requests (Klaviyo's event and subscription), each accepted request is recorded as
//! `<destination>:<operation>` so that a redelivery sends only the requests that failed.

pub mod oauth;
mod retry;
pub mod retry_after;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::destinations::{Destination, EventFailure, OutboundRequest, Skip, Verdict};
use crate::enrich::EnrichedEvent;
use crate::ports::{Clock, Outcome, Transport};

pub use retry::{RetryPolicy, SendResult};

/// A destination with the transport its requests go through.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination: Arc<dyn Destination>,
    pub transport: Arc<dyn Transport>,
    /// Whether the transport reaches the platform (credentials configured) or the outbox.
    pub live: bool,
}

/// What delivery did with a set of events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryReport {
    /// Events per destination and outcome; `retried` counts retry attempts per event.
    pub counts: BTreeMap<(String, Outcome), u64>,
    /// Events sent to each destination carrying an email or phone (clear or hashed).
    pub identified: BTreeMap<String, u64>,
    /// Delivery records to keep: (event id, destination) for an event the destination took
    /// completely, (event id, `destination:operation`) for one request of an event that still
    /// has a failed request.
    pub accepted: Vec<(String, String)>,
    /// Events that failed in a way a later attempt may fix; the queue should redeliver them.
    pub retryable: BTreeSet<String>,
}

impl DeliveryReport {
    fn count(&mut self, destination: &str, outcome: Outcome, events: u64) {
        if events == 0 {
            return;
        }
        *self
            .counts
            .entry((destination.to_owned(), outcome))
            .or_default() += events;
    }

    /// The count of one outcome at one destination.
    pub fn get(&self, destination: &str, outcome: Outcome) -> u64 {
        self.counts
            .get(&(destination.to_owned(), outcome))
            .copied()
            .unwrap_or(0)
    }

    /// Adds another report's numbers to this one.
    pub fn merge(&mut self, other: DeliveryReport) {
        for (key, value) in other.counts {
            *self.counts.entry(key).or_default() += value;
        }
        for (key, value) in other.identified {
            *self.identified.entry(key).or_default() += value;
        }
        self.accepted.extend(other.accepted);
        self.retryable.extend(other.retryable);
    }

    /// Logs one line per destination with its outcome counts (ids and counts only).
    pub fn log_summary(&self) {
        let destinations: BTreeSet<&str> = self.counts.keys().map(|(d, _)| d.as_str()).collect();
        for destination in destinations {
            let count = |outcome| self.get(destination, outcome);
            tracing::info!(
                destination,
                sent = count(Outcome::Sent),
                accepted = count(Outcome::Accepted),
                unverified = count(Outcome::Unverified),
                retried = count(Outcome::Retried),
                failed = count(Outcome::Failed),
                expired = count(Outcome::Expired),
                withheld = count(Outcome::Withheld),
                unidentified = count(Outcome::Unidentified),
                duplicate = count(Outcome::Duplicate),
                "delivery outcomes"
            );
        }
    }
}

/// Record key for one accepted request of an event that has other requests.
pub fn operation_key(destination: &str, operation: &str) -> String {
    format!("{destination}:{operation}")
}

/// How the requests carrying one event fared at one destination.
#[derive(Debug, Default)]
struct EventProgress {
    accepted_operations: Vec<&'static str>,
    unverified: bool,
    failed: bool,
    retryable: bool,
}

/// Sends enriched events to every configured destination.
#[derive(Debug, Clone)]
pub struct Deliverer {
    routes: Vec<Route>,
    retry: RetryPolicy,
    /// Consent assumed for a purpose the page did not state.
    consent_default: bool,
    clock: Arc<dyn Clock>,
}

impl Deliverer {
    pub fn new(
        routes: Vec<Route>,
        retry: RetryPolicy,
        consent_default: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            routes,
            retry,
            consent_default,
            clock,
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Delivers `events` to every destination, the destinations concurrently.
    /// `already_accepted(event_id, key)` returns whether a delivery record exists, so accepted
    /// events and requests are not sent again.
    pub async fn deliver(
        &self,
        events: &[EnrichedEvent],
        already_accepted: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> DeliveryReport {
        let deliveries = self
            .routes
            .iter()
            .map(|route| self.deliver_route(route, events, already_accepted));
        let mut report = DeliveryReport::default();
        for route_report in futures_util::future::join_all(deliveries).await {
            report.merge(route_report);
        }
        report
    }

    async fn deliver_route(
        &self,
        route: &Route,
        events: &[EnrichedEvent],
        already_accepted: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let ready = self.select(route, events, already_accepted, &mut report);
        for chunk in ready.chunks(route.destination.max_batch().max(1)) {
            self.send_chunk(route, chunk, already_accepted, &mut report)
                .await;
        }
        report
    }

    fn select<'a>(
        &self,
        route: &Route,
        events: &'a [EnrichedEvent],
        already_accepted: &(dyn Fn(&str, &str) -> bool + Sync),
        report: &mut DeliveryReport,
    ) -> Vec<&'a EnrichedEvent> {
        let destination = route.destination.as_ref();
        let name = destination.name();
        let now = self.clock.now();
        let mut ready = Vec::new();
        for event in events {
            let outcome = if already_accepted(&event.event.event_id, name) {
                Some(Outcome::Duplicate)
            } else if !destination
                .purposes()
                .iter()
                .all(|purpose| event.event.consent.allows(*purpose, self.consent_default))
            {
                Some(Outcome::Withheld)
            } else {
                match destination.check(event) {
                    Err(Skip::NotMapped) => continue,
                    Err(Skip::Unidentified) => Some(Outcome::Unidentified),
                    Ok(()) if is_too_old(event, now, destination) => Some(Outcome::Expired),
                    Ok(()) => None,
                }
            };
            match outcome {
                Some(outcome) => report.count(name, outcome, 1),
                None => ready.push(event),
            }
        }
        ready
    }

    async fn send_chunk(
        &self,
        route: &Route,
        chunk: &[&EnrichedEvent],
        already_accepted: &(dyn Fn(&str, &str) -> bool + Sync),
        report: &mut DeliveryReport,
    ) {
        let name = route.destination.name();
        let now = self.clock.now();
        let requests: Vec<OutboundRequest> = route
            .destination
            .build(chunk, now)
            .into_iter()
            .filter(|request| {
                let key = operation_key(name, request.operation);
                !request
                    .event_ids
                    .iter()
                    .all(|id| already_accepted(id, &key))
            })
            .collect();
        let mut progress: BTreeMap<String, EventProgress> = BTreeMap::new();
        for request in &requests {
            for id in &request.event_ids {
                progress.entry(id.clone()).or_default();
            }
        }
        report.count(name, Outcome::Sent, progress.len() as u64);
        let identified = chunk
            .iter()
            .filter(|event| event.is_identified() && progress.contains_key(&event.event.event_id))
            .count() as u64;
        if identified > 0 {
            *report.identified.entry(name.to_owned()).or_default() += identified;
        }
        let policy = match route.destination.retry_budget() {
            Some(budget) => RetryPolicy {
                budget,
                ..self.retry
            },
            None => self.retry,
        };
        for request in &requests {
            let result = policy.send(route, request).await;
            report.count(
                name,
                Outcome::Retried,
                u64::from(result.retries) * request.event_ids.len() as u64,
            );
            let verdict = self.settle(route, &policy, request, result.verdict).await;
            apply_verdict(name, request, verdict, &mut progress);
        }
        for (event_id, state) in progress {
            if state.failed {
                report.count(name, Outcome::Failed, 1);
                if state.retryable {
                    report.retryable.insert(event_id.clone());
                }
                for operation in state.accepted_operations {
                    report
                        .accepted
                        .push((event_id.clone(), operation_key(name, operation)));
                }
            } else {
                let outcome = if state.unverified {
                    Outcome::Unverified
                } else {
                    Outcome::Accepted
                };
                report.count(name, outcome, 1);
                report.accepted.push((event_id, name.to_owned()));
            }
        }
    }

    /// Sends the fallback a rejection offers, once, and returns the verdict that counts.
    async fn settle(
        &self,
        route: &Route,
        policy: &RetryPolicy,
        request: &OutboundRequest,
        verdict: Verdict,
    ) -> Verdict {
        let name = route.destination.name();
        let events = request.event_ids.len();
        match verdict {
            Verdict::Fallback {
                request: fallback,
                reason,
            } => {
                tracing::warn!(destination = name, operation = request.operation, events, reason = %reason, "destination rejected request; sending the fallback once");
                match policy.send(route, &fallback).await.verdict {
                    Verdict::Fallback { reason, .. } => Verdict::Rejected { reason },
                    other => other,
                }
            }
            other => other,
        }
    }
}

/// Applies one request's verdict to the progress of the events it carried, logging failures.
fn apply_verdict(
    destination: &str,
    request: &OutboundRequest,
    verdict: Verdict,
    progress: &mut BTreeMap<String, EventProgress>,
) {
    let events = request.event_ids.len();
    let operation = request.operation;
    let unverified = matches!(verdict, Verdict::Unverified);
    let mut fail = |failure: EventFailure| {
        if let Some(state) = progress.get_mut(&failure.event_id) {
            state.failed = true;
            state.retryable |= failure.retryable;
        }
    };
    let failures: Vec<EventFailure> = match verdict {
        Verdict::Accepted | Verdict::Unverified => Vec::new(),
        Verdict::Retry { reason, .. } => {
            tracing::warn!(destination, operation, events, reason = %reason, "delivery failed after retries; the queue will redeliver");
            all_failed(request, &reason, true)
        }
        Verdict::Rejected { reason } | Verdict::Fallback { reason, .. } => {
            tracing::warn!(destination, operation, events, reason = %reason, "destination rejected request");
            all_failed(request, &reason, false)
        }
        Verdict::Partial { failures } => {
            for failure in &failures {
                tracing::warn!(destination, operation, event_id = %failure.event_id, retryable = failure.retryable, reason = %failure.reason, "destination rejected event");
            }
            failures
        }
    };
    let failed_ids: BTreeSet<String> = failures.iter().map(|f| f.event_id.clone()).collect();
    for failure in failures {
        fail(failure);
    }
    for id in &request.event_ids {
        if failed_ids.contains(id) {
            continue;
        }
        if let Some(state) = progress.get_mut(id) {
            state.accepted_operations.push(operation);
            state.unverified |= unverified;
        }
    }
}

fn all_failed(request: &OutboundRequest, reason: &str, retryable: bool) -> Vec<EventFailure> {
    request
        .event_ids
        .iter()
        .map(|event_id| EventFailure {
            event_id: event_id.clone(),
            reason: reason.to_owned(),
            retryable,
        })
        .collect()
}

fn is_too_old(event: &EnrichedEvent, now: DateTime<Utc>, destination: &dyn Destination) -> bool {
    destination
        .max_age_for(event)
        .is_some_and(|max_age| now - event.event.event_time >= max_age)
}
