//! Delivery: consent, age and identifier checks per destination, batching, sending with
//! retries, and counting what happened to each event.

mod retry;
pub mod retry_after;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::destinations::{Destination, OutboundRequest, Skip, Verdict};
use crate::enrich::EnrichedEvent;
use crate::ports::{Clock, Outcome, Transport};

pub use retry::RetryPolicy;

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
    /// Events per destination and outcome.
    pub counts: BTreeMap<(String, Outcome), u64>,
    /// Events sent to each destination carrying an email or phone (clear or hashed).
    pub identified: BTreeMap<String, u64>,
    /// (event id, destination) pairs the destination accepted.
    pub accepted: Vec<(String, String)>,
    /// Events that failed in a way a later attempt may fix; the queue should redeliver them.
    pub retryable: BTreeSet<String>,
}

impl DeliveryReport {
    fn count(&mut self, destination: &str, outcome: Outcome, events: u64) {
        *self
            .counts
            .entry((destination.to_owned(), outcome))
            .or_default() += events;
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

    /// Delivers `events` to every destination; `already_accepted(event_id, destination)` tells
    /// which pairs were accepted before, so they are not sent again.
    pub async fn deliver(
        &self,
        events: &[EnrichedEvent],
        already_accepted: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        for route in &self.routes {
            let ready = self.select(route, events, already_accepted, &mut report);
            for chunk in ready.chunks(route.destination.max_batch().max(1)) {
                self.send_chunk(route, chunk, &mut report).await;
            }
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
            } else if is_too_old(event.event.event_time, now, destination.max_age()) {
                Some(Outcome::Expired)
            } else {
                match destination.check(event) {
                    Ok(()) => None,
                    Err(Skip::Unidentified) => Some(Outcome::Unidentified),
                    Err(Skip::NotMapped) => continue,
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
        report: &mut DeliveryReport,
    ) {
        let name = route.destination.name();
        let now = self.clock.now();
        let identified: BTreeSet<&str> = chunk
            .iter()
            .filter(|event| event.is_identified())
            .map(|event| event.event.event_id.as_str())
            .collect();
        for request in route.destination.build(chunk, now) {
            let events = request.event_ids.len() as u64;
            report.count(name, Outcome::Sent, events);
            let sent_identified = request
                .event_ids
                .iter()
                .filter(|id| identified.contains(id.as_str()))
                .count() as u64;
            *report.identified.entry(name.to_owned()).or_default() += sent_identified;
            let result = self.retry.send(route, &request).await;
            report.count(name, Outcome::Retried, u64::from(result.retries) * events);
            self.settle(route, &request, result.verdict, report).await;
        }
    }

    async fn settle(
        &self,
        route: &Route,
        request: &OutboundRequest,
        verdict: Verdict,
        report: &mut DeliveryReport,
    ) {
        let name = route.destination.name();
        let events = request.event_ids.len() as u64;
        match verdict {
            Verdict::Accepted => {
                report.count(name, Outcome::Accepted, events);
                for id in &request.event_ids {
                    report.accepted.push((id.clone(), name.to_owned()));
                }
            }
            Verdict::Retry { reason, .. } => {
                tracing::warn!(destination = name, events, reason = %reason, "delivery failed after retries; the queue will redeliver");
                report.count(name, Outcome::Failed, events);
                report.retryable.extend(request.event_ids.iter().cloned());
            }
            Verdict::Rejected { reason } => {
                tracing::warn!(destination = name, events, operation = request.operation, reason = %reason, "destination rejected request");
                report.count(name, Outcome::Failed, events);
            }
            Verdict::Fallback {
                request: fallback,
                reason,
            } => {
                tracing::warn!(destination = name, events, reason = %reason, "destination rejected request; sending fallback once");
                let result = self.retry.send(route, &fallback).await;
                let verdict = match result.verdict {
                    Verdict::Fallback { reason, .. } => Verdict::Rejected { reason },
                    other => other,
                };
                Box::pin(self.settle(route, &fallback, verdict, report)).await;
            }
        }
    }
}

fn is_too_old(
    event_time: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: Option<chrono::Duration>,
) -> bool {
    max_age.is_some_and(|max_age| now - event_time >= max_age)
}
