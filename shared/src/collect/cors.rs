//! CORS for credentialed requests: the exact allowed origin is echoed with
//! `Access-Control-Allow-Credentials: true`, never `*`. The one exception is the Shopify pixel
//! route, which also answers the opaque origin of a sandboxed iframe, without credentials.

use http::{HeaderMap, HeaderValue, header};

/// The `Origin` a browser sends from a sandboxed iframe without `allow-same-origin`, such as
/// the lax sandbox that Shopify runs custom pixels in.
pub const OPAQUE_ORIGIN: &str = "null";

/// The origins allowed to send events with cookies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<String>,
}

impl CorsPolicy {
    pub fn new(origins: impl IntoIterator<Item = String>) -> Self {
        Self {
            origins: origins
                .into_iter()
                .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|origin| !origin.is_empty())
                .collect(),
        }
    }

    /// The allowed origin that `origin` matches, as configured.
    fn configured(&self, origin: &str) -> Option<&str> {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.origins
            .iter()
            .find(|allowed| **allowed == origin)
            .map(String::as_str)
    }

    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.origins.contains(&origin)
    }

    /// Adds the headers of an actual (non-preflight) response.
    pub fn apply(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        // Echo the configured spelling, which is what a browser sends for that origin.
        let Some(origin) = origin.and_then(|origin| self.configured(origin)) else {
            return;
        };
        if let Ok(value) = HeaderValue::from_str(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Adds the headers of a preflight response; nothing but `Vary` for other origins.
    pub fn apply_preflight(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        self.apply(origin, headers);
        if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("7200"),
        );
    }

    /// Adds the headers of an actual response on a route that also serves sandboxed iframes:
    /// for the opaque origin, `Access-Control-Allow-Origin: *` without credentials, because
    /// echoing `null` with credentials would trust every sandboxed document on the web.
    pub fn apply_with_opaque(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        if origin != Some(OPAQUE_ORIGIN) {
            self.apply(origin, headers);
            return;
        }
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }

    /// Adds the preflight headers for a route that also serves sandboxed iframes.
    pub fn apply_preflight_with_opaque(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        if origin != Some(OPAQUE_ORIGIN) {
            self.apply_preflight(origin, headers);
            return;
        }
        self.apply_with_opaque(origin, headers);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("7200"),
        );
    }
}
