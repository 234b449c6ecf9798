//! The collect Lambda's entry point: configuration and clients once, then the request loop.

use revisit_shared::adapters::aws::load_sdk_config;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // JSON lines when the function's LoggingConfig sets LogFormat JSON.
    lambda_http::tracing::init_default_subscriber();
    let sdk = load_sdk_config().await;
    let app = revisit_collect::build(&sdk, &|name| std::env::var(name).ok()).await?;
    lambda_http::run(app).await
}
