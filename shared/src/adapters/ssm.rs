//! Secrets from SSM Parameter Store: resolves `ssm:/name` references before start-up. A
//! Secrets Manager secret is read the same way through Parameter Store's
//! `ssm:/aws/reference/secretsmanager/<secret id>` path.

use std::collections::BTreeMap;

use aws_sdk_ssm::Client;

use crate::destinations::Secret;

/// Prefix of a reference to an SSM parameter.
pub const SSM_PREFIX: &str = "ssm:";
/// Parameter Store path under which a Secrets Manager secret is read by its id.
const SECRETS_MANAGER_PREFIX: &str = "/aws/reference/secretsmanager/";
/// GetParameters takes at most 10 names per request.
const NAMES_PER_REQUEST: usize = 10;

/// A failure to read parameters.
#[derive(Debug, thiserror::Error)]
pub enum ParameterError {
    /// The parameters do not exist (or the role may not see them).
    #[error("SSM parameters not found: {}", names.join(", "))]
    NotFound { names: Vec<String> },
    /// SSM could not be reached or refused the call.
    #[error("reading SSM parameters failed")]
    Unavailable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ParameterError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Reads the `ssm:` references among `references`, decrypting SecureString values, and
/// returns each reference with its value. Other references are left for the caller.
pub async fn resolve_ssm_references(
    client: &Client,
    references: &[String],
) -> Result<BTreeMap<String, Secret>, ParameterError> {
    let names: Vec<&str> = references
        .iter()
        .filter_map(|reference| reference.strip_prefix(SSM_PREFIX))
        .collect();
    let values = parameter_values(client, &names).await?;
    Ok(values
        .into_iter()
        .map(|(name, value)| (format!("{SSM_PREFIX}{name}"), Secret::new(value)))
        .collect())
}

/// Reads one parameter's value (decrypted when it is a SecureString).
pub async fn parameter_value(client: &Client, name: &str) -> Result<String, ParameterError> {
    let mut values = parameter_values(client, &[name]).await?;
    values.remove(name).ok_or_else(|| ParameterError::NotFound {
        names: vec![name.to_owned()],
    })
}

/// Environment values that are `ssm:` references, resolved: for each of `names` whose value
/// from `lookup` starts with `ssm:`, the parameter's value.
pub async fn resolve_env_references(
    client: &Client,
    names: &[&str],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ParameterError> {
    let references: Vec<(&str, String)> = names
        .iter()
        .filter_map(|name| {
            let value = lookup(name)?;
            let parameter = value.trim().strip_prefix(SSM_PREFIX)?.to_owned();
            Some((*name, parameter))
        })
        .collect();
    let parameters: Vec<&str> = references.iter().map(|(_, p)| p.as_str()).collect();
    let values = parameter_values(client, &parameters).await?;
    Ok(references
        .iter()
        .filter_map(|(name, parameter)| Some((name.to_string(), values.get(parameter)?.clone())))
        .collect())
}

async fn parameter_values(
    client: &Client,
    names: &[&str],
) -> Result<BTreeMap<String, String>, ParameterError> {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for chunk in names.chunks(NAMES_PER_REQUEST) {
        let output = client
            .get_parameters()
            .set_names(Some(chunk.iter().map(|name| name.to_string()).collect()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|error| ParameterError::Unavailable {
                source: Box::new(error),
            })?;
        missing.extend(output.invalid_parameters().iter().cloned());
        for parameter in output.parameters() {
            if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                values.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    for name in names {
        if values.contains_key(*name) {
            continue;
        }
        // moto 5.2.5 returns a Secrets Manager reference under the secret's own name rather
        // than the requested path, so both spellings are accepted.
        let secret = name.strip_prefix(SECRETS_MANAGER_PREFIX);
        if let Some(value) = secret.and_then(|secret| values.remove(secret)) {
            values.insert((*name).to_owned(), value);
            continue;
        }
        if !missing.iter().any(|m| m == name) {
            missing.push((*name).to_owned());
        }
    }
    if missing.is_empty() {
        return Ok(values);
    }
    Err(ParameterError::NotFound { names: missing })
}
