//! The destinations file (TOML): which platforms receive events and with what settings.
//! Credentials are never written in the file, only references to where they live.

mod sections;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::ga4::Ga4;
use super::google_ads::GoogleAds;
use super::klaviyo::Klaviyo;
use super::meta::Meta;
use super::microsoft::Microsoft;
use super::pinterest::Pinterest;
use super::snapchat::Snapchat;
use super::tiktok::TikTok;
use super::{Destination, Secret};
use crate::config::ConfigError;
use crate::delivery::Route;
use crate::delivery::oauth::TokenTransport;
use crate::ports::Transport;

pub use sections::{
    Ga4Section, GoogleAdsSection, KlaviyoSection, MetaSection, MicrosoftSection, PinterestSection,
    SnapchatSection, TikTokSection,
};

/// The parsed destinations file, one optional section per platform. A destination without
/// credentials writes to the outbox.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationsConfig {
    pub klaviyo: Option<KlaviyoSection>,
    pub meta: Option<MetaSection>,
    pub ga4: Option<Ga4Section>,
    pub tiktok: Option<TikTokSection>,
    pub pinterest: Option<PinterestSection>,
    pub snapchat: Option<SnapchatSection>,
    pub google_ads: Option<GoogleAdsSection>,
    pub microsoft: Option<MicrosoftSection>,
}

impl DestinationsConfig {
    /// Every destination enabled with its defaults, writing to the outbox: local mode
    /// without a file.
    pub fn outbox_only() -> Self {
        let sections = [
            "klaviyo",
            "meta",
            "ga4",
            "tiktok",
            "pinterest",
            "snapchat",
            "google_ads",
            "microsoft",
        ];
        let text: String = sections.iter().map(|name| format!("[{name}]\n")).collect();
        Self::parse(&text).unwrap_or_default()
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
            // The line shows which setting is wrong, since the message alone does not name it.
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let place = line
                .map(|line| format!(" at line {line}"))
                .unwrap_or_default();
            ConfigError::new(
                "REVISIT_DESTINATIONS_FILE",
                format!("invalid TOML{place}: {}", error.message()),
            )
        })
    }

    /// Every credential reference in the file, for resolving them in one go.
    pub fn secret_refs(&self) -> Vec<String> {
        let mut refs: Vec<Option<&String>> = Vec::new();
        if let Some(section) = &self.klaviyo {
            refs.push(section.api_key.as_ref());
        }
        if let Some(section) = &self.meta {
            refs.push(section.access_token.as_ref());
        }
        if let Some(section) = &self.ga4 {
            refs.push(section.api_secret.as_ref());
        }
        if let Some(section) = &self.tiktok {
            refs.push(section.access_token.as_ref());
        }
        if let Some(section) = &self.pinterest {
            refs.push(section.access_token.as_ref());
        }
        if let Some(section) = &self.snapchat {
            refs.push(section.access_token.as_ref());
        }
        if let Some(section) = &self.google_ads {
            refs.push(section.developer_token.as_ref());
            refs.push(section.client_secret.as_ref());
            refs.push(section.refresh_token.as_ref());
        }
        if let Some(section) = &self.microsoft {
            refs.push(section.api_token.as_ref());
        }
        refs.into_iter().flatten().cloned().collect()
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
    let mut add = |destination: Arc<dyn Destination>, transport: Option<Arc<dyn Transport>>| {
        let live = transport.is_some();
        let transport = transport.unwrap_or_else(|| Arc::clone(&outbox));
        routes.push(Route {
            destination,
            transport,
            live,
        });
    };
    let live = |credentials: bool| credentials.then(|| Arc::clone(&http));
    if let Some(section) = config.klaviyo.as_ref().filter(|s| s.enabled) {
        let settings = section.build(resolved)?;
        let transport = live(settings.api_key.is_some());
        add(Arc::new(Klaviyo::new(settings)), transport);
    }
    if let Some(section) = config.meta.as_ref().filter(|s| s.enabled) {
        let settings = section.build(resolved)?;
        let transport = live(settings.access_token.is_some());
        add(Arc::new(Meta::new(settings)), transport);
    }
    if let Some(section) = config.ga4.as_ref().filter(|s| s.enabled) {
        let settings = section.build(resolved)?;
        let transport = live(settings.api_secret.is_some());
        add(Arc::new(Ga4::new(settings)), transport);
    }
    if let Some(section) = config.tiktok.as_ref().filter(|s| s.enabled) {
        let settings = section.build(resolved)?;
        let transport = live(settings.access_token.is_some());
        add(Arc::new(TikTok::new(settings)), transport);
    }
    if let Some(section) = config.pinterest.as_ref().filter(|s| s.enabled) {
        let settings = section.build(resolved)?;
        let transport = live(settings.access_token.is_some());
        add(Arc::new(Pinterest::new(settings)), transport);
    }
    if let Some(section) = config.snapchat.as_ref().filter(|s| s.enabled) {
        let settings = section.build(resolved)?;
        let transport = live(settings.access_token.is_some());
        add(Arc::new(Snapchat::new(settings)), transport);
    }
    if let Some(section) = config.google_ads.as_ref().filter(|s| s.enabled) {
        let google_ads = GoogleAds::new(section.build(resolved)?);
        // Google Ads authorises with short-lived OAuth tokens obtained per deployment.
        let transport = google_ads.token_request().map(|token_request| {
            Arc::new(TokenTransport::new(Arc::clone(&http), token_request)) as Arc<dyn Transport>
        });
        add(Arc::new(google_ads), transport);
    }
    if let Some(section) = config.microsoft.as_ref().filter(|s| s.enabled) {
        let settings = section.build(resolved)?;
        let transport = live(settings.api_token.is_some());
        add(Arc::new(Microsoft::new(settings)), transport);
    }
    Ok(routes)
}
