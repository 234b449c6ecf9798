//! Settings shared by the collector and the worker, read from the environment. Every
//! variable is listed with its default in the README's configuration table.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::collect::{CollectorSettings, CorsPolicy, VisitorCookie, cookie};
use crate::destinations::Secret;
use crate::profile::ProfilePolicy;

/// A setting that is missing or invalid; start-up stops with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: &str, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Minimum length of `REVISIT_SECRET`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Settings of revisit's core, shared by `collect`, `enrich` and `revisit serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `REVISIT_SITE_HOST`: host of the storefront, such as `www.shop.example`.
    pub site_host: String,
    /// `REVISIT_ALLOWED_ORIGINS`: origins allowed to send events with cookies.
    pub allowed_origins: Vec<String>,
    /// `REVISIT_COOKIE_NAME`: name of the visitor cookie.
    pub cookie_name: String,
    /// `REVISIT_SECRET`: signs visitor ids and keys the identity index.
    pub secret: Secret,
    /// `REVISIT_RETENTION_DAYS`: days identity and touches are kept after last being seen.
    pub retention_days: i64,
    /// `REVISIT_DEFAULT_REGION`: country for phone numbers without a country code.
    pub default_region: String,
    /// `REVISIT_INTERNAL_DOMAINS`: domains whose referrers do not count as a touch.
    pub internal_domains: Vec<String>,
    /// `REVISIT_CONSENT_DEFAULT`: whether a purpose the page did not state counts as granted.
    pub consent_default: bool,
    /// `REVISIT_TRUSTED_PROXY_HOPS`: proxies in front of the collector.
    pub trusted_proxy_hops: usize,
    /// `REVISIT_DESTINATIONS_FILE`: the destinations file.
    pub destinations_file: Option<PathBuf>,
    /// `REVISIT_HTTP_TIMEOUT_MS`: timeout of one request to a destination.
    pub http_timeout: Duration,
    /// `REVISIT_DELIVERY_BUDGET_MS`: time one request may spend in retries.
    pub delivery_budget: Duration,
    /// `REVISIT_COUNTER_FLUSH_SECS`: longest time daily counts wait before they are written.
    pub counter_flush: Duration,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, which returns a variable's value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let site_host = get("REVISIT_SITE_HOST")
            .ok_or_else(|| {
                ConfigError::new(
                    "REVISIT_SITE_HOST",
                    "is required, for example www.shop.example",
                )
            })?
            .to_ascii_lowercase();
        check_site_host(&site_host)?;
        let allowed_origins = match get("REVISIT_ALLOWED_ORIGINS") {
            Some(list) => parse_origins(&list)?,
            None => vec![format!("https://{site_host}")],
        };
        if allowed_origins.is_empty() {
            return Err(ConfigError::new(
                "REVISIT_ALLOWED_ORIGINS",
                "lists no origin; give at least one, such as https://www.shop.example",
            ));
        }
        let secret = get("REVISIT_SECRET").ok_or_else(|| {
            ConfigError::new(
                "REVISIT_SECRET",
                format!("is required: at least {MIN_SECRET_LEN} random characters"),
            )
        })?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(
                "REVISIT_SECRET",
                format!(
                    "is {} bytes; use at least {MIN_SECRET_LEN} random characters",
                    secret.len()
                ),
            ));
        }
        let cookie_name = get("REVISIT_COOKIE_NAME").unwrap_or_else(|| "rv_uid".into());
        let valid_name = cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name || cookie_name.len() > MAX_COOKIE_NAME_LEN {
            return Err(ConfigError::new(
                "REVISIT_COOKIE_NAME",
                format!("may contain only letters, digits, _ and -, at most {MAX_COOKIE_NAME_LEN}"),
            ));
        }
        // Browsers drop a `__Host-` cookie that carries a Domain, which a site cookie needs.
        if cookie_name.starts_with("__Host-") && cookie::cookie_domain(&site_host).is_some() {
            return Err(ConfigError::new(
                "REVISIT_COOKIE_NAME",
                "a __Host- cookie cannot carry the Domain attribute that this site needs",
            ));
        }
        let default_region = get("REVISIT_DEFAULT_REGION").unwrap_or_else(|| "US".into());
        let default_region =
            crate::identity::normalize::country_code(&default_region).ok_or_else(|| {
                ConfigError::new(
                    "REVISIT_DEFAULT_REGION",
                    format!("{default_region:?} is not an ISO 3166 alpha-2 country code"),
                )
            })?;
        let consent_default = match get("REVISIT_CONSENT_DEFAULT")
            .as_deref()
            .unwrap_or("granted")
        {
            "granted" => true,
            "denied" => false,
            other => {
                return Err(ConfigError::new(
                    "REVISIT_CONSENT_DEFAULT",
                    format!("{other:?} must be granted or denied"),
                ));
            }
        };
        Ok(Self {
            allowed_origins,
            cookie_name,
            secret: Secret::new(secret),
            retention_days: number(&get, "REVISIT_RETENTION_DAYS", 365, 1, 3650)?,
            default_region,
            internal_domains: parse_domains(
                &get("REVISIT_INTERNAL_DOMAINS")
                    .unwrap_or_else(|| "shopify.com,myshopify.com,shop.app".into()),
            )?,
            consent_default,
            trusted_proxy_hops: number(&get, "REVISIT_TRUSTED_PROXY_HOPS", 0, 0, 10)? as usize,
            destinations_file: get("REVISIT_DESTINATIONS_FILE").map(PathBuf::from),
            http_timeout: Duration::from_millis(number(
                &get,
                "REVISIT_HTTP_TIMEOUT_MS",
                5000,
                100,
                60_000,
            )? as u64),
            counter_flush: Duration::from_secs(number(
                &get,
                "REVISIT_COUNTER_FLUSH_SECS",
                0,
                0,
                3600,
            )? as u64),
            delivery_budget: Duration::from_millis(number(
                &get,
                "REVISIT_DELIVERY_BUDGET_MS",
                10_000,
                0,
                600_000,
            )? as u64),
            site_host,
        })
    }

    /// A key derived from the secret for one purpose, so no two uses share a key.
    pub fn derived_key(&self, purpose: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    pub fn collector_settings(&self) -> CollectorSettings {
        CollectorSettings {
            cookie: VisitorCookie::new(
                &self.cookie_name,
                &self.derived_key("visitor-cookie"),
                &self.site_host,
            ),
            cors: CorsPolicy::new(self.allowed_origins.iter().cloned()),
            trusted_proxy_hops: self.trusted_proxy_hops,
        }
    }

    pub fn profile_policy(&self) -> ProfilePolicy {
        let site_domain = crate::attribution::registrable_domain(&self.site_host)
            .unwrap_or_else(|| self.site_host.clone());
        ProfilePolicy {
            retention_days: self.retention_days,
            default_region: self.default_region.clone(),
            site_domain,
            internal_domains: self.internal_domains.clone(),
            fbc_subdomain_index: cookie::fbc_subdomain_index(&self.site_host),
            consent_default: self.consent_default,
        }
    }

    /// Key of the HMAC that turns emails and phones into identity index keys.
    pub fn index_key(&self) -> Vec<u8> {
        self.derived_key("identity-index")
    }
}

/// Longest accepted visitor cookie name.
const MAX_COOKIE_NAME_LEN: usize = 64;

/// Checks that the site host is an IP address or a DNS name that is not itself a public
/// suffix (a cookie for `co.uk` would be refused by every browser).
fn check_site_host(host: &str) -> Result<(), ConfigError> {
    let invalid = |problem: &str| {
        Err(ConfigError::new(
            "REVISIT_SITE_HOST",
            format!("{host:?} {problem}"),
        ))
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if !is_dns_name(host) {
        return invalid(
            "must be a host name such as www.shop.example, without scheme, port or path",
        );
    }
    let is_suffix = psl::suffix(host.as_bytes())
        .is_some_and(|suffix| suffix.is_known() && suffix.as_bytes() == host.as_bytes());
    if is_suffix {
        return invalid("is a public suffix; give the storefront's own host");
    }
    Ok(())
}

/// Whether `name` is a DNS name: dot-separated labels of letters, digits and inner hyphens.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn parse_domains(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(|domain| domain.trim().to_ascii_lowercase())
        .filter(|domain| !domain.is_empty())
        .map(|domain| {
            if is_dns_name(&domain) {
                Ok(domain)
            } else {
                Err(ConfigError::new(
                    "REVISIT_INTERNAL_DOMAINS",
                    format!("{domain:?} is not a domain name such as shopify.com"),
                ))
            }
        })
        .collect()
}

fn parse_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let parsed = url::Url::parse(origin).ok().filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.path() == "/"
                    && url.query().is_none()
            });
            match parsed {
                Some(url) => Ok(url.origin().ascii_serialization()),
                None => Err(ConfigError::new(
                    "REVISIT_ALLOWED_ORIGINS",
                    format!("{origin:?} is not an origin like https://www.shop.example"),
                )),
            }
        })
        .collect()
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let Some(text) = get(name) else {
        return Ok(default);
    };
    let value: i64 = text
        .parse()
        .map_err(|_| ConfigError::new(name, format!("{text:?} is not a whole number")))?;
    if !(min..=max).contains(&value) {
        return Err(ConfigError::new(
            name,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(settings: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut values = std::collections::BTreeMap::from([
            ("REVISIT_SITE_HOST", "www.shop.example"),
            ("REVISIT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]);
        values.extend(settings.iter().copied());
        Config::from_lookup(|name| values.get(name).map(|value| (*value).to_owned()))
    }

    #[test]
    fn defaults_apply() {
        let config = config_with(&[]).expect("valid");

        assert_eq!(config.allowed_origins, ["https://www.shop.example"]);
        assert_eq!(config.cookie_name, "rv_uid");
        assert_eq!(config.retention_days, 365);
        assert_eq!(config.default_region, "US");
        assert!(config.consent_default);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            ("REVISIT_SITE_HOST", "www shop example"),
            ("REVISIT_SITE_HOST", "a..b"),
            ("REVISIT_SITE_HOST", "co.uk"),
            ("REVISIT_SITE_HOST", "com"),
            ("REVISIT_SITE_HOST", "https://www.shop.example/"),
            ("REVISIT_ALLOWED_ORIGINS", ","),
            ("REVISIT_ALLOWED_ORIGINS", "www.shop.example"),
            ("REVISIT_SECRET", "short"),
            ("REVISIT_COOKIE_NAME", "rv uid"),
            ("REVISIT_COOKIE_NAME", "__Host-rv"),
            ("REVISIT_RETENTION_DAYS", "0"),
            ("REVISIT_RETENTION_DAYS", "a year"),
            ("REVISIT_DEFAULT_REGION", "United States"),
            ("REVISIT_INTERNAL_DOMAINS", "https://shop.app/"),
            ("REVISIT_CONSENT_DEFAULT", "yes"),
            ("REVISIT_TRUSTED_PROXY_HOPS", "-1"),
            ("REVISIT_HTTP_TIMEOUT_MS", "10"),
        ];

        for (setting, value) in cases {
            let error = config_with(&[(setting, value)]).expect_err(value);

            assert_eq!(error.setting, setting, "{value:?}");
        }
        let long_name = "x".repeat(65);
        let error = config_with(&[("REVISIT_COOKIE_NAME", &long_name)]).expect_err("too long");
        assert_eq!(error.setting, "REVISIT_COOKIE_NAME");
    }

    #[test]
    fn platform_and_ip_hosts_are_valid() {
        for host in [
            "store-a.myshopify.com",
            "127.0.0.1",
            "localhost",
            "shop.co.uk",
        ] {
            assert!(
                config_with(&[("REVISIT_SITE_HOST", host)]).is_ok(),
                "{host}"
            );
        }
        let host_only = config_with(&[
            ("REVISIT_SITE_HOST", "127.0.0.1"),
            ("REVISIT_COOKIE_NAME", "__Host-rv"),
        ]);
        assert!(host_only.is_ok());
    }
}
