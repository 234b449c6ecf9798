//! The enrich Lambda's entry point: configuration and clients once, then the event loop.

use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use revisit_shared::adapters::aws::load_sdk_config;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // JSON lines when the function's LoggingConfig sets LogFormat JSON.
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = load_sdk_config().await;
    let worker = Arc::new(revisit_enrich::build(&sdk, &|name| std::env::var(name).ok()).await?);
    // Lambda sends SIGTERM before it retires the environment: write the buffered counters.
    let flushing = Arc::clone(&worker);
    lambda_runtime::spawn_graceful_shutdown_handler(
        || async move { flushing.flush_counters().await },
    )
    .await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = Arc::clone(&worker);
        async move { Ok::<_, Infallible>(revisit_enrich::handle(&worker, event.payload).await) }
    }))
    .await
}
