//! Parsers for the ids that vendor scripts keep in first-party cookies, and builders for the
//! ones the server may mint itself (Meta's `fbc` from a `fbclid`).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// GA4 client id from an `_ga` cookie: `GA1.1.1234567890.1700000000` gives
/// `1234567890.1700000000` (the `GA1.<n>.` prefix removed).
pub fn ga_client_id(cookie: &str) -> Option<String> {
    let parts: Vec<&str> = cookie.trim().split('.').collect();
    let [version, _, random, timestamp] = parts.as_slice() else {
        return None;
    };
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    (version.starts_with("GA") && numeric(random) && numeric(timestamp))
        .then(|| format!("{random}.{timestamp}"))
}

/// A GA4 session read from an `_ga_<stream>` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaSession {
    /// Session start in Unix seconds, which GA4 uses as the session id.
    pub session_id: i64,
    pub session_number: Option<i64>,
}

/// Reads a session cookie in either format: `GS1.1.<session>.<number>.…` (before 2025) or
/// `GS2.1.s<session>$o<number>$g…$t…` (prefix-keyed, `$`-separated, any order).
pub fn ga_session(cookie: &str) -> Option<GaSession> {
    let cookie = cookie.trim();
    if let Some(rest) = cookie.strip_prefix("GS1.") {
        let mut parts = rest.split('.').skip(1);
        let session_id = parts.next()?.parse().ok()?;
        let session_number = parts.next().and_then(|n| n.parse().ok());
        return Some(GaSession {
            session_id,
            session_number,
        });
    }
    let rest = cookie.strip_prefix("GS2.")?;
    let (_, fields) = rest.split_once('.')?;
    let field = |prefix: char| {
        fields
            .split('$')
            .find_map(|part| part.strip_prefix(prefix))
            .and_then(|value| value.parse::<i64>().ok())
    };
    Some(GaSession {
        session_id: field('s')?,
        session_number: field('o'),
    })
}

/// Whether an `_fbc` value is well formed: `fb.<subdomain index>.<creation ms>.<fbclid>`, with an
/// optional fifth segment that Meta's parameter builder appends. A value whose fbclid part is
/// empty is rejected, because Meta refuses the whole event for it.
pub fn is_valid_fbc(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('.').collect();
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    matches!(parts.len(), 4 | 5)
        && parts[0] == "fb"
        && numeric(parts[1])
        && numeric(parts[2])
        && !parts[3].is_empty()
        && parts.get(4).is_none_or(|appendix| !appendix.is_empty())
}

/// Whether an `_fbp` value is well formed: `fb.<subdomain index>.<creation ms>.<random>`.
pub fn is_valid_fbp(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('.').collect();
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    matches!(parts.len(), 4 | 5)
        && parts[0] == "fb"
        && numeric(parts[1])
        && numeric(parts[2])
        && numeric(parts[3])
}

/// The fbclid inside an `fbc` value.
pub fn fbc_click_id(fbc: &str) -> Option<&str> {
    fbc.split('.').nth(3).filter(|part| !part.is_empty())
}

/// The creation time in milliseconds inside an `fbc` value.
pub fn fbc_created_ms(fbc: &str) -> Option<i64> {
    fbc.split('.').nth(2)?.parse().ok()
}

/// Builds Meta's `fbc` from a `fbclid` seen at `seen_ms` (Unix milliseconds).
///
/// The fbclid is kept byte for byte because Meta treats it as case-sensitive. The subdomain
/// index is the number of dots in the domain the cookie is scoped to: 1 for `shop.example`,
/// 2 for a host-only cookie on `www.shop.example` (Meta's fbp-and-fbc parameter page).
pub fn fbc_from_fbclid(fbclid: &str, seen_ms: i64, subdomain_index: usize) -> String {
    format!("fb.{subdomain_index}.{seen_ms}.{fbclid}")
}

/// The contents of Klaviyo's `__kla_id` cookie: base64 of a JSON object whose
/// `$exchange_id` is the `_kx` identifier and, once the visitor is known, `$email`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KlaviyoCookie {
    pub exchange_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Decodes a `__kla_id` cookie; `None` when it is not base64 JSON.
pub fn klaviyo_cookie(value: &str) -> Option<KlaviyoCookie> {
    let decoded = percent_decode(value.trim());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(decoded.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(decoded.as_bytes()))
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let field = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    Some(KlaviyoCookie {
        exchange_id: field("$exchange_id"),
        email: field("$email"),
        phone: field("$phone_number"),
    })
}

/// Encodes a `__kla_id` cookie the way Klaviyo's script writes it.
pub fn encode_klaviyo_cookie(email: Option<&str>, exchange_id: Option<&str>) -> String {
    let mut object = serde_json::Map::new();
    if let Some(email) = email {
        object.insert("$email".into(), email.into());
    }
    if let Some(exchange_id) = exchange_id {
        object.insert("$exchange_id".into(), exchange_id.into());
    }
    base64::engine::general_purpose::STANDARD.encode(serde_json::Value::Object(object).to_string())
}

/// The msclkid inside Microsoft's `_uetmsclkid` cookie (`_uet<msclkid>`).
pub fn uet_msclkid(cookie: &str) -> Option<&str> {
    cookie
        .trim()
        .strip_prefix("_uet")
        .filter(|id| !id.is_empty())
}

/// The gclid inside Google's `_gcl_aw` cookie (`GCL.<unix seconds>.<gclid>`).
pub fn gcl_aw_gclid(cookie: &str) -> Option<&str> {
    let mut parts = cookie.trim().splitn(3, '.');
    (parts.next()? == "GCL").then_some(())?;
    parts.next()?.parse::<i64>().ok()?;
    parts.next().filter(|gclid| !gclid.is_empty())
}

fn percent_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga_client_id_strips_version_prefix() {
        assert_eq!(
            ga_client_id("GA1.1.1234567890.1700000000").as_deref(),
            Some("1234567890.1700000000")
        );
        assert_eq!(
            ga_client_id("GA1.2.99.1700000000").as_deref(),
            Some("99.1700000000")
        );
        assert_eq!(ga_client_id("3f2a9c1e-0000-4000-8000-000000000000"), None);
        assert_eq!(ga_client_id("GA1.1.abc.1700000000"), None);
    }

    #[test]
    fn ga_session_reads_both_cookie_formats() {
        let legacy = ga_session("GS1.1.1700000000.3.1.1700000300.0.0.0");
        let current = ga_session("GS2.1.s1700000000$o3$g1$t1700000300$j60$l0$h0");

        let expected = GaSession {
            session_id: 1_700_000_000,
            session_number: Some(3),
        };
        assert_eq!(legacy, Some(expected));
        assert_eq!(current, Some(expected));
        assert_eq!(ga_session("GS2.1.o3$g1"), None);
    }

    #[test]
    fn fbc_validation_rejects_missing_click_id() {
        assert!(!is_valid_fbc("fb.1.1700000000000."));
        assert!(!is_valid_fbc("fb.1.1700000000000"));
        assert!(!is_valid_fbc("fb.x.1700000000000.AbC"));
        assert!(is_valid_fbc("fb.1.1700000000000.AbC-d_E123"));
        assert!(is_valid_fbc("fb.1.1700000000000.AbC-d_E123.BA"));
    }

    #[test]
    fn fbc_from_fbclid_keeps_case_and_milliseconds() {
        let fbc = fbc_from_fbclid("IwAR2F4-dbP0l7Mn", 1_700_000_000_123, 1);

        assert_eq!(fbc, "fb.1.1700000000123.IwAR2F4-dbP0l7Mn");
        assert_eq!(fbc_click_id(&fbc), Some("IwAR2F4-dbP0l7Mn"));
        assert_eq!(fbc_created_ms(&fbc), Some(1_700_000_000_123));
    }

    #[test]
    fn klaviyo_cookie_round_trips() {
        let cookie = encode_klaviyo_cookie(Some("user@example.com"), Some("kx-1"));

        let decoded = klaviyo_cookie(&cookie);

        assert_eq!(
            decoded,
            Some(KlaviyoCookie {
                exchange_id: Some("kx-1".into()),
                email: Some("user@example.com".into()),
                phone: None,
            })
        );
        assert_eq!(klaviyo_cookie("not base64 json"), None);
    }

    #[test]
    fn cookie_click_ids() {
        assert_eq!(uet_msclkid("_uetabc123"), Some("abc123"));
        assert_eq!(gcl_aw_gclid("GCL.1700000000.Cj0KCQ"), Some("Cj0KCQ"));
        assert_eq!(gcl_aw_gclid("GCL.x.Cj0KCQ"), None);
    }
}
