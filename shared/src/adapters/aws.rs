//! The AWS SDK configuration shared by every AWS adapter.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

/// Returns the loader of the SDK configuration. Region, credentials and endpoints come only
/// from the SDK's standard sources (`AWS_REGION`, the Lambda role, `AWS_ENDPOINT_URL`, ...).
/// This code sets no endpoint itself, so a deployed function always reaches AWS.
pub fn sdk_config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
}

/// Loads the SDK configuration from the standard sources.
pub async fn load_sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}
