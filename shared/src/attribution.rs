//! Attribution: the click ids, UTM parameters and external referrer that show where a visit came
//! from, read from the page URL the pixel reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A click id that ad platforms append to landing-page URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickIdKind {
    /// Query parameter name as the platform writes it (matched without regard to case).
    pub param: &'static str,
    /// Key under which the value is stored and enriched.
    pub key: &'static str,
    /// How long after the click the platform still attributes a conversion to it, in days.
    pub window_days: i64,
}

/// Every click id revisit remembers, with its attribution window.
///
/// Windows: Meta's `_fbc` cookie lives 90 days (Meta parameter builder); Google Ads' longest
/// click-through window is 90 days; Microsoft's `_uetmsclkid` cookie lives 90 days; TikTok
/// documents 7-day ttclid validity.
// NOTE: the 30-day windows of Pinterest, X, LinkedIn and Impact and Snap's 28 days are each
// platform's default attribution window, not a documented expiry of the id itself.
pub const CLICK_IDS: [ClickIdKind; 12] = [
    ClickIdKind {
        param: "fbclid",
        key: "fbc",
        window_days: 90,
    },
    ClickIdKind {
        param: "gclid",
        key: "gclid",
        window_days: 90,
    },
    ClickIdKind {
        param: "gbraid",
        key: "gbraid",
        window_days: 90,
    },
    ClickIdKind {
        param: "wbraid",
        key: "wbraid",
        window_days: 90,
    },
    ClickIdKind {
        param: "dclid",
        key: "dclid",
        window_days: 90,
    },
    ClickIdKind {
        param: "msclkid",
        key: "msclkid",
        window_days: 90,
    },
    ClickIdKind {
        param: "ttclid",
        key: "ttclid",
        window_days: 7,
    },
    ClickIdKind {
        param: "epik",
        key: "epik",
        window_days: 30,
    },
    ClickIdKind {
        param: "ScCid",
        key: "sccid",
        window_days: 28,
    },
    ClickIdKind {
        param: "twclid",
        key: "twclid",
        window_days: 30,
    },
    ClickIdKind {
        param: "li_fat_id",
        key: "li_fat_id",
        window_days: 30,
    },
    ClickIdKind {
        param: "irclickid",
        key: "irclickid",
        window_days: 30,
    },
];

/// The UTM parameters kept with a touch.
pub const UTM_PARAMS: [&str; 6] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_id",
];

/// The click-id kind stored under `key`.
pub fn click_id_kind(key: &str) -> Option<&'static ClickIdKind> {
    CLICK_IDS.iter().find(|kind| kind.key == key)
}

/// Marketing parameters read from one page URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlMarketing {
    /// Raw click ids by `ClickIdKind::param`, decoded once, case kept.
    pub click_ids: BTreeMap<&'static str, String>,
    pub utm: BTreeMap<String, String>,
    /// Klaviyo's `_kx` parameter from email links.
    pub klaviyo_kx: Option<String>,
}

impl UrlMarketing {
    /// Whether the URL carries anything that marks a new marketing touch.
    pub fn is_touch(&self) -> bool {
        !self.click_ids.is_empty() || !self.utm.is_empty()
    }
}

/// Reads click ids, UTMs and `_kx` from a page URL's query, decoding each value exactly once.
pub fn read_url(page_url: &str) -> UrlMarketing {
    let mut marketing = UrlMarketing::default();
    let Ok(url) = url::Url::parse(page_url) else {
        return marketing;
    };
    for (name, value) in url.query_pairs() {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if let Some(kind) = CLICK_IDS
            .iter()
            .find(|kind| kind.param.eq_ignore_ascii_case(&name))
        {
            marketing
                .click_ids
                .entry(kind.param)
                .or_insert_with(|| value.to_owned());
        } else if let Some(utm) = UTM_PARAMS
            .iter()
            .find(|utm| utm.eq_ignore_ascii_case(&name))
        {
            marketing
                .utm
                .entry((*utm).to_owned())
                .or_insert_with(|| value.to_owned());
        } else if name == "_kx" {
            marketing.klaviyo_kx = Some(value.to_owned());
        }
    }
    marketing
}

/// The registrable domain (eTLD+1) of a host, by the Public Suffix List.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let domain = psl::domain(host.as_bytes())?;
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_owned)
}

/// Whether `referrer` comes from outside the store: its registrable domain is neither the
/// site's nor one of `internal_domains` (such as a hosted checkout).
pub fn is_external_referrer(
    referrer: &str,
    site_domain: &str,
    internal_domains: &[String],
) -> bool {
    let Some(host) = url::Url::parse(referrer)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
    else {
        return false;
    };
    let Some(domain) = registrable_domain(&host) else {
        return false;
    };
    let internal = domain == site_domain
        || internal_domains
            .iter()
            .any(|internal| domain == *internal || host.ends_with(&format!(".{internal}")));
    !internal
}

/// A marketing touch: how a visit arrived, with when it was first and last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub utm: BTreeMap<String, String>,
    /// Click ids of the landing URL by stored key (the `fbc` entry is the built fbc value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub click_ids: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    pub landing_page: String,
    /// Unix milliseconds.
    pub first_seen_ms: i64,
    /// Unix milliseconds.
    pub last_seen_ms: i64,
    /// Unix seconds after which the touch is no longer used.
    pub expires_at: i64,
    /// Event that first recorded this touch.
    pub event_id: String,
}

impl Touch {
    /// Whether two touches describe the same arrival (same UTMs, click ids and referrer).
    pub fn same_source(&self, other: &Touch) -> bool {
        self.utm == other.utm
            && self.click_ids == other.click_ids
            && self.referrer == other.referrer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_url_decodes_once_and_keeps_case() {
        let marketing = read_url(
            "https://shop.example/p/1?epik=dj0yJnU9Abc&FBCLID=IwAR2F4-dbP0l7Mn&utm_source=news%2540letter&ScCid=s-1&_kx=kx.1",
        );

        assert_eq!(
            marketing.click_ids.get("epik").map(String::as_str),
            Some("dj0yJnU9Abc")
        );
        assert_eq!(
            marketing.click_ids.get("fbclid").map(String::as_str),
            Some("IwAR2F4-dbP0l7Mn")
        );
        assert_eq!(
            marketing.click_ids.get("ScCid").map(String::as_str),
            Some("s-1")
        );
        assert_eq!(
            marketing.utm.get("utm_source").map(String::as_str),
            Some("news%40letter")
        );
        assert_eq!(marketing.klaviyo_kx.as_deref(), Some("kx.1"));
    }

    #[test]
    fn registrable_domain_uses_public_suffix_list() {
        assert_eq!(
            registrable_domain("t.shop.co.uk").as_deref(),
            Some("shop.co.uk")
        );
        assert_eq!(
            registrable_domain("store-a.myshopify.com").as_deref(),
            Some("store-a.myshopify.com")
        );
        assert_eq!(
            registrable_domain("www.shop.example").as_deref(),
            Some("shop.example")
        );
    }

    #[test]
    fn external_referrer_excludes_own_and_internal_domains() {
        let internal = vec!["shopify.com".to_owned()];

        assert!(is_external_referrer(
            "https://www.google.com/",
            "shop.example",
            &internal
        ));
        assert!(!is_external_referrer(
            "https://www.shop.example/cart",
            "shop.example",
            &internal
        ));
        assert!(!is_external_referrer(
            "https://checkout.shopify.com/x",
            "shop.example",
            &internal
        ));
        assert!(!is_external_referrer(
            "not a url",
            "shop.example",
            &internal
        ));
    }
}
