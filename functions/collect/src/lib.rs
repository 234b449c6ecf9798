//! The collect Lambda: API Gateway HTTP API requests (payload format 2.0) served by the
//! collector's router unchanged, with the client address taken from the request context.
//! `lambda_http` turns the v2 `cookies` array into one `Cookie` header, decodes base64 bodies,
//! and moves every `Set-Cookie` header of the response into the v2 `cookies` array.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context as _;
use aws_config::SdkConfig;
use axum::Router;
use axum::extract::Request;
use lambda_http::request::RequestContext;

use revisit_shared::adapters::clock::SystemClock;
use revisit_shared::adapters::sqs::{DEFAULT_MAX_MESSAGE_BYTES, SqsEventQueue, SqsQuarantine};
use revisit_shared::adapters::ssm::resolve_env_references;
use revisit_shared::collect::{ClientIp, Collector, router};
use revisit_shared::config::{Config, ConfigError};

/// Settings of the collect function besides the shared `Config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectSettings {
    /// `REVISIT_QUEUE_URL`: the FIFO event queue.
    pub queue_url: String,
    /// `REVISIT_QUARANTINE_QUEUE_URL`: the standard queue for rejected items.
    pub quarantine_queue_url: String,
    /// `REVISIT_QUEUE_MAX_MESSAGE_BYTES`: the queues' `MaximumMessageSize` (default 262144).
    pub max_message_bytes: usize,
}

impl CollectSettings {
    /// Reads the settings through `lookup`, which returns a variable's value.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .ok_or_else(|| ConfigError::new(name, "is required: the URL of an SQS queue"))
        };
        let max_message_bytes = match lookup("REVISIT_QUEUE_MAX_MESSAGE_BYTES") {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(text) => text
                .trim()
                .parse()
                .ok()
                .filter(|bytes| (1024..=1_048_576).contains(bytes))
                .ok_or_else(|| {
                    ConfigError::new(
                        "REVISIT_QUEUE_MAX_MESSAGE_BYTES",
                        format!("{text:?} is not a whole number of bytes from 1024 to 1048576"),
                    )
                })?,
        };
        Ok(Self {
            queue_url: required("REVISIT_QUEUE_URL")?,
            quarantine_queue_url: required("REVISIT_QUARANTINE_QUEUE_URL")?,
            max_message_bytes,
        })
    }
}

/// Builds the function's router from the environment: `REVISIT_SECRET` may be an
/// `ssm:/parameter/name` reference, read once here.
pub async fn build(
    sdk: &SdkConfig,
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
) -> anyhow::Result<Router> {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let resolved = resolve_env_references(&ssm, &["REVISIT_SECRET"], lookup)
        .await
        .context("reading REVISIT_SECRET from SSM")?;
    let config = Config::from_lookup(|name| resolved.get(name).cloned().or_else(|| lookup(name)))?;
    let settings = CollectSettings::from_lookup(lookup)?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = SqsEventQueue::new(sqs.clone(), settings.queue_url, settings.max_message_bytes);
    let quarantine = SqsQuarantine::new(
        sqs,
        settings.quarantine_queue_url,
        settings.max_message_bytes,
    );
    let collector = Collector::new(
        config.collector_settings(),
        Arc::new(queue),
        Arc::new(quarantine),
        Arc::new(SystemClock::new()),
    );
    tracing::info!(site_host = %config.site_host, "collect function configured");
    Ok(app(Arc::new(collector)))
}

/// Wraps the collector's router so that each request carries the client address from the
/// API Gateway request context.
pub fn app(collector: Arc<Collector>) -> Router {
    router(collector).layer(axum::middleware::map_request(client_ip_from_context))
}

async fn client_ip_from_context(mut request: Request) -> Request {
    let source_ip = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok()),
        _ => None,
    };
    if let Some(ip) = source_ip {
        request.extensions_mut().insert(ClientIp(ip));
    }
    request
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<CollectSettings, ConfigError> {
        let variables: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        CollectSettings::from_lookup(&|name| variables.get(name).cloned())
    }

    #[test]
    fn settings_default_to_256_kib_messages() {
        let parsed = settings(&[
            ("REVISIT_QUEUE_URL", "https://sqs.example/1/events.fifo"),
            (
                "REVISIT_QUARANTINE_QUEUE_URL",
                "https://sqs.example/1/quarantine",
            ),
        ]);

        assert_eq!(parsed.expect("valid settings").max_message_bytes, 262_144);
    }

    #[test]
    fn settings_name_missing_queue() {
        let error = settings(&[("REVISIT_QUEUE_URL", "https://sqs.example/1/events.fifo")])
            .expect_err("the quarantine queue is required");

        assert_eq!(error.setting, "REVISIT_QUARANTINE_QUEUE_URL");
    }

    #[test]
    fn settings_reject_out_of_range_size() {
        let error = settings(&[
            ("REVISIT_QUEUE_URL", "https://sqs.example/1/events.fifo"),
            (
                "REVISIT_QUARANTINE_QUEUE_URL",
                "https://sqs.example/1/quarantine",
            ),
            ("REVISIT_QUEUE_MAX_MESSAGE_BYTES", "2000000"),
        ])
        .expect_err("over SQS's maximum");

        assert_eq!(error.setting, "REVISIT_QUEUE_MAX_MESSAGE_BYTES");
        assert!(error.problem.contains("2000000"), "{}", error.problem);
    }
}
