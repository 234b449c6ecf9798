//! The destinations file (TOML): which platforms receive events and with what settings.
//! Credentials are never written in the file, only references to where they live.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::klaviyo::{self, Klaviyo, KlaviyoConfig};
use super::meta::{self, Meta, MetaConfig};
use super::{Destination, Secret};
use crate::config::ConfigError;
use crate::delivery::Route;
use crate::ports::Transport;

/// The parsed destinations file. A destination without credentials writes to the outbox.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationsConfig {
    pub klaviyo: Option<KlaviyoSection>,
    pub meta: Option<MetaSection>,
}

/// `[klaviyo]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlaviyoSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Private API key reference, `env:NAME` or `ssm:/parameter/name`.
    pub api_key: Option<String>,
    pub endpoint: Option<String>,
    pub revision: Option<String>,
    pub subscribe_list_id: Option<String>,
    #[serde(default = "enabled")]
    pub send_page_views: bool,
}

/// `[meta]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub pixel_id: Option<String>,
    /// Access token reference, `env:NAME` or `ssm:/parameter/name`.
    pub access_token: Option<String>,
    pub endpoint: Option<String>,
    pub api_version: Option<String>,
    pub test_event_code: Option<String>,
}

fn enabled() -> bool {
    true
}

impl DestinationsConfig {
    /// Every destination enabled, writing to the outbox: local mode without a file.
    pub fn outbox_only() -> Self {
        Self {
            klaviyo: Some(KlaviyoSection {
                enabled: true,
                api_key: None,
                endpoint: None,
                revision: None,
                subscribe_list_id: None,
                send_page_views: true,
            }),
            meta: Some(MetaSection {
                enabled: true,
                pixel_id: None,
                access_token: None,
                endpoint: None,
                api_version: None,
                test_event_code: None,
            }),
        }
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                "REVISIT_DESTINATIONS_FILE",
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| {
            ConfigError::new(
                "REVISIT_DESTINATIONS_FILE",
                format!("invalid TOML: {}", error.message()),
            )
        })
    }

    /// Every credential reference in the file, for resolving them in one go.
    pub fn secret_refs(&self) -> Vec<String> {
        let klaviyo = self.klaviyo.iter().filter_map(|k| k.api_key.clone());
        let meta = self.meta.iter().filter_map(|m| m.access_token.clone());
        klaviyo.chain(meta).collect()
    }
}

/// Resolves `env:NAME` references from the process environment. Other references (such as
/// `ssm:`) must be in `resolved`, filled by the hosting adapter before start-up.
pub fn resolve_secret(
    setting: &str,
    reference: &str,
    resolved: &BTreeMap<String, Secret>,
) -> Result<Secret, ConfigError> {
    if let Some(secret) = resolved.get(reference) {
        return Ok(secret.clone());
    }
    if let Some(name) = reference.strip_prefix("env:") {
        return match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
            _ => Err(ConfigError::new(
                setting,
                format!("environment variable {name} is not set"),
            )),
        };
    }
    if reference.starts_with("ssm:") {
        return Err(ConfigError::new(
            setting,
            format!("{reference} was not resolved from SSM"),
        ));
    }
    Err(ConfigError::new(
        setting,
        "must be a reference such as env:NAME or ssm:/parameter/name, not the secret itself",
    ))
}

/// Builds the delivery routes: live over `http` for destinations with credentials, to
/// `outbox` for the rest. Incomplete settings are rejected with the setting's name.
pub fn build_destinations(
    config: &DestinationsConfig,
    resolved: &BTreeMap<String, Secret>,
    http: Arc<dyn Transport>,
    outbox: Arc<dyn Transport>,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::new();
    let route = |destination: Arc<dyn Destination>, live: bool| Route {
        destination,
        transport: if live {
            Arc::clone(&http)
        } else {
            Arc::clone(&outbox)
        },
        live,
    };
    if let Some(section) = config.klaviyo.as_ref().filter(|s| s.enabled) {
        let klaviyo_config = klaviyo_config(section, resolved)?;
        let live = klaviyo_config.api_key.is_some();
        routes.push(route(Arc::new(Klaviyo::new(klaviyo_config)), live));
    }
    if let Some(section) = config.meta.as_ref().filter(|s| s.enabled) {
        let meta_config = meta_config(section, resolved)?;
        let live = meta_config.access_token.is_some();
        routes.push(route(Arc::new(Meta::new(meta_config)), live));
    }
    Ok(routes)
}

fn klaviyo_config(
    section: &KlaviyoSection,
    resolved: &BTreeMap<String, Secret>,
) -> Result<KlaviyoConfig, ConfigError> {
    let api_key = section
        .api_key
        .as_deref()
        .map(|reference| resolve_secret("klaviyo.api_key", reference, resolved))
        .transpose()?;
    let revision = section
        .revision
        .clone()
        .unwrap_or_else(|| klaviyo::REVISION.into());
    let valid_revision = revision.len() >= 10
        && chrono::NaiveDate::parse_from_str(&revision[..10], "%Y-%m-%d").is_ok()
        && (revision.len() == 10 || revision[10..].starts_with('.'));
    if !valid_revision {
        return Err(ConfigError::new(
            "klaviyo.revision",
            format!("{revision:?} is not YYYY-MM-DD[.suffix]"),
        ));
    }
    if section
        .subscribe_list_id
        .as_deref()
        .is_some_and(|id| id.trim().is_empty())
    {
        return Err(ConfigError::new(
            "klaviyo.subscribe_list_id",
            "must not be empty",
        ));
    }
    Ok(KlaviyoConfig {
        api_key,
        endpoint: endpoint(
            "klaviyo.endpoint",
            section.endpoint.as_deref(),
            klaviyo::DEFAULT_ENDPOINT,
        )?,
        revision,
        subscribe_list_id: section.subscribe_list_id.clone(),
        send_page_views: section.send_page_views,
    })
}

fn meta_config(
    section: &MetaSection,
    resolved: &BTreeMap<String, Secret>,
) -> Result<MetaConfig, ConfigError> {
    let access_token = section
        .access_token
        .as_deref()
        .map(|reference| resolve_secret("meta.access_token", reference, resolved))
        .transpose()?;
    let pixel_id = section.pixel_id.clone();
    match pixel_id.as_deref() {
        Some(id) if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(ConfigError::new(
                "meta.pixel_id",
                format!("{id:?} is not a numeric dataset id"),
            ));
        }
        None if access_token.is_some() => {
            return Err(ConfigError::new(
                "meta.pixel_id",
                "is required when meta.access_token is set",
            ));
        }
        _ => {}
    }
    let api_version = section
        .api_version
        .clone()
        .unwrap_or_else(|| meta::DEFAULT_API_VERSION.into());
    let valid_version = api_version
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok());
    if !valid_version {
        return Err(ConfigError::new(
            "meta.api_version",
            format!("{api_version:?} is not like v25.0"),
        ));
    }
    if section
        .test_event_code
        .as_deref()
        .is_some_and(|code| code.trim().is_empty())
    {
        return Err(ConfigError::new(
            "meta.test_event_code",
            "must not be empty",
        ));
    }
    Ok(MetaConfig {
        pixel_id,
        access_token,
        endpoint: endpoint(
            "meta.endpoint",
            section.endpoint.as_deref(),
            meta::DEFAULT_ENDPOINT,
        )?,
        api_version,
        test_event_code: section.test_event_code.clone(),
    })
}

fn endpoint(setting: &str, value: Option<&str>, default: &str) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(default.to_owned());
    };
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError::new(
            setting,
            format!("{value:?} is not an http or https URL"),
        )),
    }
}
