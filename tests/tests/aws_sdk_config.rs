//! The SDK configuration: the tests' helper carries region, static credentials and the
//! emulator endpoint itself, while production configuration takes endpoints only from the
//! SDK's standard variables and never sets one in code.

use aws_config::Region;
use aws_types::os_shim_internal::{Env, Fs};

use revisit_shared::adapters::aws::sdk_config_loader;
use revisit_tests::aws::moto;

#[tokio::test]
async fn helper_config_reaches_emulator() {
    let Some(moto) = moto("helper_config_reaches_emulator").await else {
        return;
    };

    let tables = moto.dynamodb().list_tables().send().await;

    // An endpoint alone gives no region; the helper sets one instead of relying on AWS_REGION.
    assert_eq!(moto.sdk.region(), Some(&Region::new("us-east-1")));
    assert_eq!(moto.sdk.endpoint_url(), Some(moto.endpoint.as_str()));
    assert!(tables.is_ok(), "{tables:?}");
}

#[tokio::test]
async fn production_config_sets_no_endpoint() {
    // A Lambda environment: region and credentials from the runtime, no endpoint variable.
    let env = Env::from_slice(&[
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "example"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);

    let config = sdk_config_loader()
        .env(env)
        .fs(Fs::from_slice(&[]))
        .load()
        .await;

    assert_eq!(config.endpoint_url(), None);
    assert_eq!(config.region(), Some(&Region::new("eu-west-1")));
}

#[tokio::test]
async fn production_config_honours_endpoint_variable() {
    let env = Env::from_slice(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
    ]);

    let config = sdk_config_loader()
        .env(env)
        .fs(Fs::from_slice(&[]))
        .load()
        .await;

    assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4566"));
}
