//! Secret references resolved from SSM Parameter Store against moto, including a Secrets
//! Manager secret read through Parameter Store's reference path.

use std::collections::HashMap;

use revisit_shared::adapters::ssm::{
    ParameterError, parameter_value, resolve_env_references, resolve_ssm_references,
};
use revisit_shared::destinations::config::resolve_secret;
use revisit_tests::aws::{Moto, moto, unique_name};

async fn put_string(moto: &Moto, name: &str, value: &str) {
    moto.ssm()
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put parameter");
}

#[tokio::test]
async fn references_resolve_for_destinations() {
    let Some(moto) = moto("references_resolve_for_destinations").await else {
        return;
    };
    let prefix = format!("/{}", unique_name("params"));
    moto.put_secure_parameter(&format!("{prefix}/klaviyo"), "pk_live_secret")
        .await;
    put_string(&moto, &format!("{prefix}/pixel"), "123456789").await;
    let references = vec![
        format!("ssm:{prefix}/klaviyo"),
        format!("ssm:{prefix}/pixel"),
        "env:META_TOKEN".to_owned(),
    ];

    let resolved = resolve_ssm_references(&moto.ssm(), &references)
        .await
        .expect("resolve");

    assert_eq!(resolved.len(), 2);
    let klaviyo =
        resolve_secret("klaviyo.api_key", &references[0], &resolved).expect("resolved reference");
    assert_eq!(klaviyo.expose(), "pk_live_secret");
    assert_eq!(resolved[&references[1]].expose(), "123456789");
}

#[tokio::test]
async fn missing_parameter_is_named() {
    let Some(moto) = moto("missing_parameter_is_named").await else {
        return;
    };
    let name = format!("/{}/absent", unique_name("params"));

    let result = resolve_ssm_references(&moto.ssm(), &[format!("ssm:{name}")]).await;

    match result {
        Err(ParameterError::NotFound { names }) => assert_eq!(names, vec![name]),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn env_references_resolve_only_ssm_values() {
    let Some(moto) = moto("env_references_resolve_only_ssm_values").await else {
        return;
    };
    let name = format!("/{}/secret", unique_name("params"));
    moto.put_secure_parameter(&name, "0123456789abcdef0123456789abcdef")
        .await;
    let variables = HashMap::from([
        ("REVISIT_SECRET".to_owned(), format!("ssm:{name}")),
        (
            "REVISIT_SITE_HOST".to_owned(),
            "www.shop.example".to_owned(),
        ),
    ]);

    let resolved = resolve_env_references(
        &moto.ssm(),
        &["REVISIT_SECRET", "REVISIT_SITE_HOST"],
        &|variable| variables.get(variable).cloned(),
    )
    .await
    .expect("resolve");

    assert_eq!(resolved.len(), 1);
    assert_eq!(
        resolved["REVISIT_SECRET"],
        "0123456789abcdef0123456789abcdef"
    );
}

#[tokio::test]
async fn secrets_manager_reference_resolves() {
    let Some(moto) = moto("secrets_manager_reference_resolves").await else {
        return;
    };
    let secret = unique_name("meta-token");
    // No Secrets Manager client is linked into the project, so the secret is created with one
    // call of Secrets Manager's JSON protocol; moto does not check signatures.
    let created = reqwest::Client::new()
        .post(&moto.endpoint)
        .header("x-amz-target", "secretsmanager.CreateSecret")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(serde_json::json!({"Name": secret, "SecretString": "EAAB-token"}).to_string())
        .send()
        .await
        .expect("create secret");
    assert!(created.status().is_success(), "{}", created.status());

    let value = parameter_value(
        &moto.ssm(),
        &format!("/aws/reference/secretsmanager/{secret}"),
    )
    .await;

    assert_eq!(value.expect("secret value"), "EAAB-token");
}
