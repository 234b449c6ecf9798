//! The AWS SDK configuration shared by every AWS adapter.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

/// The loader of the SDK configuration: region, credentials and endpoints come only from the
/// SDK's standard sources (`AWS_REGION`, the Lambda role, `AWS_ENDPOINT_URL`, ...). The code
/// never sets an endpoint itself, so a deployed function always talks to AWS.
pub fn sdk_config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
}

/// Loads the SDK configuration from the standard sources.
pub async fn load_sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}
