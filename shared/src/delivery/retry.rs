//! Retries with exponential backoff and jitter, within a time budget per request.

use std::time::{Duration, Instant};

use rand::Rng;

use super::Route;
use crate::destinations::{OutboundRequest, Verdict};

/// How a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled for each later one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Total time a request may take, attempts and waits together: no retry starts when its
    /// wait would end past the budget.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            budget: Duration::from_secs(10),
        }
    }
}

/// The final verdict on a request and how many retries it took.
#[derive(Debug, Clone, PartialEq)]
pub struct SendResult {
    pub verdict: Verdict,
    pub retries: u32,
}

impl RetryPolicy {
    /// Sends `request`, retrying timeouts, connection errors, 429 and 5xx responses. The wait
    /// is the platform's `Retry-After` when it sent one, else the backoff; a wait that would
    /// end past the budget ends the retries at once, leaving the event to the queue.
    pub async fn send(&self, route: &Route, request: &OutboundRequest) -> SendResult {
        let started = Instant::now();
        let mut retries = 0;
        loop {
            let verdict = match route.transport.send(request).await {
                // The outbox only records the request, so its response is not read as the
                // platform's.
                Ok(response) if !route.live && (200..300).contains(&response.status) => {
                    Verdict::Accepted
                }
                Ok(response) => route.destination.classify(request, &response),
                Err(error) if error.is_retryable() => Verdict::Retry {
                    after: None,
                    reason: error_chain(&error),
                },
                Err(error) => Verdict::Rejected {
                    reason: error_chain(&error),
                },
            };
            let Verdict::Retry { after, reason } = verdict else {
                return SendResult { verdict, retries };
            };
            let delay = after.unwrap_or_else(|| self.backoff(retries));
            let attempts = retries + 1;
            if attempts >= self.max_attempts || started.elapsed() + delay > self.budget {
                return SendResult {
                    verdict: Verdict::Retry { after, reason },
                    retries,
                };
            }
            tracing::debug!(destination = request.destination, attempt = attempts, delay_ms = delay.as_millis() as u64, reason = %reason, "retrying request");
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// Equal-jitter backoff: a random delay between half and all of `base * 2^retry`, capped
    /// at `max_delay`, so that retries of many workers spread out but never come at once.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_max() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };

        for retry in 0..8 {
            let ceiling = (100u64 << retry).min(1000);
            for _ in 0..50 {
                let delay = policy.backoff(retry).as_millis() as u64;

                assert!(delay >= ceiling / 2, "retry {retry}: {delay} ms");
                assert!(delay <= ceiling, "retry {retry}: {delay} ms");
            }
        }
    }
}
