//! One TOML section per destination and its start-up checks. Each check names the setting
//! it rejects as `<section>.<key>`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::resolve_secret;
use crate::config::ConfigError;
use crate::destinations::Secret;
use crate::destinations::ga4::{self, Ga4Config};
use crate::destinations::google_ads::{self, GoogleAdsConfig, GoogleOAuth};
use crate::destinations::klaviyo::{self, KlaviyoConfig};
use crate::destinations::meta::{self, MetaConfig};
use crate::destinations::microsoft::{self, MicrosoftConfig, PhoneFormat};
use crate::destinations::pinterest::{self, PinterestConfig};
use crate::destinations::snapchat::{self, SnapchatConfig};
use crate::destinations::tiktok::{self, TikTokConfig};

type Resolved = BTreeMap<String, Secret>;

fn enabled() -> bool {
    true
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
    pub retry_budget_ms: Option<u64>,
}

impl KlaviyoSection {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<KlaviyoConfig, ConfigError> {
        let revision = self
            .revision
            .clone()
            .unwrap_or_else(|| klaviyo::REVISION.into());
        let (date, suffix) = revision
            .split_at_checked(10)
            .unwrap_or((revision.as_str(), "x"));
        let valid_revision = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
            && (suffix.is_empty() || suffix.starts_with('.'));
        if !valid_revision {
            return Err(ConfigError::new(
                "klaviyo.revision",
                format!("{revision:?} is not YYYY-MM-DD[.suffix]"),
            ));
        }
        Ok(KlaviyoConfig {
            api_key: secret("klaviyo.api_key", &self.api_key, resolved)?,
            endpoint: endpoint(
                "klaviyo.endpoint",
                &self.endpoint,
                klaviyo::DEFAULT_ENDPOINT,
            )?,
            revision,
            subscribe_list_id: non_empty("klaviyo.subscribe_list_id", &self.subscribe_list_id)?,
            send_page_views: self.send_page_views,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
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
    #[serde(default)]
    pub limited_data_use: bool,
    pub retry_budget_ms: Option<u64>,
}

impl MetaSection {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<MetaConfig, ConfigError> {
        let access_token = secret("meta.access_token", &self.access_token, resolved)?;
        let pixel_id = digits("meta.pixel_id", &self.pixel_id, 32)?;
        required_with(
            "meta.pixel_id",
            &pixel_id,
            "meta.access_token",
            &access_token,
        )?;
        let api_version = self
            .api_version
            .clone()
            .unwrap_or_else(|| meta::DEFAULT_API_VERSION.into());
        let valid_version = api_version
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(major, minor)| {
                major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()
            });
        if !valid_version {
            return Err(ConfigError::new(
                "meta.api_version",
                format!("{api_version:?} is not like v25.0"),
            ));
        }
        Ok(MetaConfig {
            pixel_id,
            access_token,
            endpoint: endpoint("meta.endpoint", &self.endpoint, meta::DEFAULT_ENDPOINT)?,
            api_version,
            test_event_code: non_empty("meta.test_event_code", &self.test_event_code)?,
            limited_data_use: self.limited_data_use,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
}

/// `[ga4]` settings: one web data stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Section {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub measurement_id: Option<String>,
    /// API secret reference; the secret must be created under `measurement_id`'s stream.
    pub api_secret: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub send_page_views: bool,
    pub retry_budget_ms: Option<u64>,
}

impl Ga4Section {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<Ga4Config, ConfigError> {
        let api_secret = secret("ga4.api_secret", &self.api_secret, resolved)?;
        let measurement_id = non_empty("ga4.measurement_id", &self.measurement_id)?;
        // An id and a secret of different streams are accepted by /mp/collect with a 2xx and
        // recorded nowhere, so the two are set together, as one stream's pair.
        required_with(
            "ga4.measurement_id",
            &measurement_id,
            "ga4.api_secret",
            &api_secret,
        )?;
        required_with(
            "ga4.api_secret",
            &api_secret,
            "ga4.measurement_id",
            &measurement_id,
        )?;
        if let Some(id) = &measurement_id {
            let valid = id.strip_prefix("G-").is_some_and(|stream| {
                !stream.is_empty() && stream.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !valid {
                return Err(ConfigError::new(
                    "ga4.measurement_id",
                    format!("{id:?} is not a web stream measurement id like G-ABC123"),
                ));
            }
        }
        Ok(Ga4Config {
            measurement_id,
            api_secret,
            endpoint: endpoint("ga4.endpoint", &self.endpoint, ga4::DEFAULT_ENDPOINT)?,
            debug: self.debug,
            send_page_views: self.send_page_views,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
}

/// `[tiktok]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TikTokSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub pixel_code: Option<String>,
    pub access_token: Option<String>,
    pub endpoint: Option<String>,
    pub api_version: Option<String>,
    pub test_event_code: Option<String>,
    #[serde(default)]
    pub limited_data_use: bool,
    pub retry_budget_ms: Option<u64>,
}

impl TikTokSection {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<TikTokConfig, ConfigError> {
        let access_token = secret("tiktok.access_token", &self.access_token, resolved)?;
        let pixel_code = non_empty("tiktok.pixel_code", &self.pixel_code)?;
        required_with(
            "tiktok.pixel_code",
            &pixel_code,
            "tiktok.access_token",
            &access_token,
        )?;
        let api_version = version(
            "tiktok.api_version",
            &self.api_version,
            tiktok::DEFAULT_API_VERSION,
        )?;
        Ok(TikTokConfig {
            pixel_code,
            access_token,
            endpoint: endpoint("tiktok.endpoint", &self.endpoint, tiktok::DEFAULT_ENDPOINT)?,
            api_version,
            test_event_code: non_empty("tiktok.test_event_code", &self.test_event_code)?,
            limited_data_use: self.limited_data_use,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
}

/// `[pinterest]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinterestSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub ad_account_id: Option<String>,
    pub access_token: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default)]
    pub test: bool,
    #[serde(default)]
    pub limited_data_processing: bool,
    pub retry_budget_ms: Option<u64>,
}

impl PinterestSection {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<PinterestConfig, ConfigError> {
        let access_token = secret("pinterest.access_token", &self.access_token, resolved)?;
        let ad_account_id = digits("pinterest.ad_account_id", &self.ad_account_id, 18)?;
        required_with(
            "pinterest.ad_account_id",
            &ad_account_id,
            "pinterest.access_token",
            &access_token,
        )?;
        Ok(PinterestConfig {
            ad_account_id,
            access_token,
            endpoint: endpoint(
                "pinterest.endpoint",
                &self.endpoint,
                pinterest::DEFAULT_ENDPOINT,
            )?,
            test: self.test,
            limited_data_processing: self.limited_data_processing,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
}

/// `[snapchat]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapchatSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub pixel_id: Option<String>,
    pub access_token: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default)]
    pub validate_only: bool,
    pub retry_budget_ms: Option<u64>,
}

impl SnapchatSection {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<SnapchatConfig, ConfigError> {
        let access_token = secret("snapchat.access_token", &self.access_token, resolved)?;
        let pixel_id = non_empty("snapchat.pixel_id", &self.pixel_id)?;
        required_with(
            "snapchat.pixel_id",
            &pixel_id,
            "snapchat.access_token",
            &access_token,
        )?;
        Ok(SnapchatConfig {
            pixel_id,
            access_token,
            endpoint: endpoint(
                "snapchat.endpoint",
                &self.endpoint,
                snapchat::DEFAULT_ENDPOINT,
            )?,
            validate_only: self.validate_only,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
}

/// `[google_ads]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAdsSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub customer_id: Option<String>,
    pub login_customer_id: Option<String>,
    pub conversion_action_id: Option<String>,
    pub enhancement_action_id: Option<String>,
    pub developer_token: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub token_endpoint: Option<String>,
    pub endpoint: Option<String>,
    pub api_version: Option<String>,
    #[serde(default)]
    pub validate_only: bool,
    pub retry_budget_ms: Option<u64>,
}

impl GoogleAdsSection {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<GoogleAdsConfig, ConfigError> {
        let developer_token = secret(
            "google_ads.developer_token",
            &self.developer_token,
            resolved,
        )?;
        let client_secret = secret("google_ads.client_secret", &self.client_secret, resolved)?;
        let refresh_token = secret("google_ads.refresh_token", &self.refresh_token, resolved)?;
        let client_id = non_empty("google_ads.client_id", &self.client_id)?;
        let customer_id = parse_customer_id("google_ads.customer_id", &self.customer_id)?;
        let conversion_action_id = digits(
            "google_ads.conversion_action_id",
            &self.conversion_action_id,
            20,
        )?;
        let enhancement_action_id = digits(
            "google_ads.enhancement_action_id",
            &self.enhancement_action_id,
            20,
        )?;
        let live = developer_token.is_some() || client_secret.is_some() || refresh_token.is_some();
        if live {
            // Every credential and the account are needed together; name the first missing.
            let needed = [
                ("google_ads.developer_token", developer_token.is_some()),
                ("google_ads.client_id", client_id.is_some()),
                ("google_ads.client_secret", client_secret.is_some()),
                ("google_ads.refresh_token", refresh_token.is_some()),
                ("google_ads.customer_id", customer_id.is_some()),
                (
                    "google_ads.conversion_action_id",
                    conversion_action_id.is_some() || enhancement_action_id.is_some(),
                ),
            ];
            if let Some((setting, _)) = needed.iter().find(|(_, present)| !present) {
                return Err(ConfigError::new(
                    setting,
                    "is required when Google Ads credentials are set",
                ));
            }
        }
        let oauth = match (client_id, client_secret, refresh_token) {
            (Some(client_id), Some(client_secret), Some(refresh_token)) => Some(GoogleOAuth {
                client_id,
                client_secret,
                refresh_token,
                token_endpoint: endpoint(
                    "google_ads.token_endpoint",
                    &self.token_endpoint,
                    google_ads::DEFAULT_TOKEN_ENDPOINT,
                )?,
            }),
            _ => None,
        };
        Ok(GoogleAdsConfig {
            customer_id,
            login_customer_id: parse_customer_id(
                "google_ads.login_customer_id",
                &self.login_customer_id,
            )?,
            conversion_action_id,
            enhancement_action_id,
            developer_token,
            oauth,
            endpoint: endpoint(
                "google_ads.endpoint",
                &self.endpoint,
                google_ads::DEFAULT_ENDPOINT,
            )?,
            api_version: version(
                "google_ads.api_version",
                &self.api_version,
                google_ads::DEFAULT_API_VERSION,
            )?,
            validate_only: self.validate_only,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
}

/// `[microsoft]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrosoftSection {
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub uet_tag_id: Option<String>,
    pub api_token: Option<String>,
    pub endpoint: Option<String>,
    /// `digits` (default) or `e164`: how the phone is written before hashing.
    pub phone_format: Option<String>,
    pub retry_budget_ms: Option<u64>,
}

impl MicrosoftSection {
    pub(super) fn build(&self, resolved: &Resolved) -> Result<MicrosoftConfig, ConfigError> {
        let api_token = secret("microsoft.api_token", &self.api_token, resolved)?;
        let uet_tag_id = digits("microsoft.uet_tag_id", &self.uet_tag_id, 20)?;
        required_with(
            "microsoft.uet_tag_id",
            &uet_tag_id,
            "microsoft.api_token",
            &api_token,
        )?;
        let phone_format = match self.phone_format.as_deref() {
            None | Some("digits") => PhoneFormat::Digits,
            Some("e164") => PhoneFormat::E164,
            Some(other) => {
                return Err(ConfigError::new(
                    "microsoft.phone_format",
                    format!("{other:?} must be digits or e164"),
                ));
            }
        };
        Ok(MicrosoftConfig {
            uet_tag_id,
            api_token,
            endpoint: endpoint(
                "microsoft.endpoint",
                &self.endpoint,
                microsoft::DEFAULT_ENDPOINT,
            )?,
            phone_format,
            retry_budget: budget(self.retry_budget_ms),
        })
    }
}

fn secret(
    setting: &str,
    reference: &Option<String>,
    resolved: &Resolved,
) -> Result<Option<Secret>, ConfigError> {
    reference
        .as_deref()
        .map(|reference| resolve_secret(setting, reference, resolved))
        .transpose()
}

/// Rejects an id missing while the credential that needs it is set.
fn required_with<T, U>(
    setting: &str,
    value: &Option<T>,
    credential: &str,
    credential_value: &Option<U>,
) -> Result<(), ConfigError> {
    if value.is_none() && credential_value.is_some() {
        return Err(ConfigError::new(
            setting,
            format!("is required when {credential} is set"),
        ));
    }
    Ok(())
}

fn non_empty(setting: &str, value: &Option<String>) -> Result<Option<String>, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some("") => Err(ConfigError::new(setting, "must not be empty")),
        Some(value) => Ok(Some(value.to_owned())),
        None => Ok(None),
    }
}

/// An id made of 1 to `max_len` digits.
fn digits(
    setting: &str,
    value: &Option<String>,
    max_len: usize,
) -> Result<Option<String>, ConfigError> {
    let Some(id) = non_empty(setting, value)? else {
        return Ok(None);
    };
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::new(
            setting,
            format!("{id:?} must contain digits only"),
        ));
    }
    if id.len() > max_len {
        return Err(ConfigError::new(
            setting,
            format!("{id:?} has {} digits; the maximum is {max_len}", id.len()),
        ));
    }
    Ok(Some(id))
}

/// A Google Ads customer id, written with or without dashes (`123-456-7890`), as 10 digits.
fn parse_customer_id(setting: &str, value: &Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(id) = non_empty(setting, value)? else {
        return Ok(None);
    };
    let compact: String = id.chars().filter(|c| *c != '-').collect();
    if compact.len() != 10 || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::new(
            setting,
            format!("{id:?} is not a 10-digit customer id like 123-456-7890"),
        ));
    }
    Ok(Some(compact))
}

/// An API version like `v1.3` or `v22`.
fn version(setting: &str, value: &Option<String>, default: &str) -> Result<String, ConfigError> {
    let version = value.clone().unwrap_or_else(|| default.to_owned());
    let valid = version.strip_prefix('v').is_some_and(|rest| {
        !rest.is_empty() && rest.split('.').all(|part| part.parse::<u32>().is_ok())
    });
    if valid {
        Ok(version)
    } else {
        Err(ConfigError::new(
            setting,
            format!("{version:?} is not a version like {default}"),
        ))
    }
}

fn budget(millis: Option<u64>) -> Option<Duration> {
    millis.map(Duration::from_millis)
}

fn endpoint(setting: &str, value: &Option<String>, default: &str) -> Result<String, ConfigError> {
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
