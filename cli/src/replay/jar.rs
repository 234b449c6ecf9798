//! A simulated browser cookie jar: the server cookie as the collector set it, and script-set
//! vendor cookies that the browser drops a fixed number of days after their last write.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use http::HeaderMap;
use serde_json::Value;

use revisit_shared::identity::{normalize, platform_ids};

use super::VisitLine;

/// Name of the simulated vendor identity cookie: Klaviyo's, whose script writes the visitor's
/// email into it once the visitor is known and rewrites it on every page.
const IDENTITY_COOKIE: &str = "__kla_id";

/// A script-set cookie with its last write.
#[derive(Debug, Clone)]
struct ScriptCookie {
    value: String,
    written: DateTime<Utc>,
    max_age: Duration,
}

impl ScriptCookie {
    fn is_alive(&self, now: DateTime<Utc>) -> bool {
        now < self.written + self.max_age
    }
}

/// One browser's cookies.
#[derive(Debug, Clone, Default)]
pub struct Jar {
    /// `name=value` pairs the server set, sent back on every request.
    server: BTreeMap<String, String>,
    script: BTreeMap<String, ScriptCookie>,
}

impl Jar {
    /// Applies what the page's scripts write before the event is sent: the cookies the log
    /// lists, and the identity cookie, written when the event identifies the visitor and
    /// rewritten while it is still alive.
    pub(super) fn write_script_cookies(&mut self, visit: &VisitLine, days: i64, identified: bool) {
        let now = visit.at;
        let max_age = Duration::days(days);
        self.script.retain(|_, cookie| cookie.is_alive(now));
        if let Some(cookies) = &visit.cookies {
            for (name, value) in cookies {
                if let Some(value) = value.as_str() {
                    let cookie = ScriptCookie {
                        value: value.to_owned(),
                        written: now,
                        max_age,
                    };
                    self.script.insert(name.clone(), cookie);
                }
            }
        }
        let email = identified
            .then(|| visit.event["user_properties"]["customer_email"].as_str())
            .flatten()
            .and_then(normalize::email);
        match (email, self.script.get_mut(IDENTITY_COOKIE)) {
            (Some(email), _) => {
                let value = platform_ids::encode_klaviyo_cookie(Some(&email), None);
                self.script.insert(
                    IDENTITY_COOKIE.into(),
                    ScriptCookie {
                        value,
                        written: now,
                        max_age,
                    },
                );
            }
            (None, Some(existing)) => existing.written = now,
            (None, None) => {}
        }
    }

    /// Whether the vendor identity cookie is alive and names a visitor.
    pub fn has_identity_cookie(&self, now: DateTime<Utc>) -> bool {
        self.script
            .get(IDENTITY_COOKIE)
            .filter(|cookie| cookie.is_alive(now))
            .and_then(|cookie| platform_ids::klaviyo_cookie(&cookie.value))
            .is_some_and(|decoded| decoded.email.is_some() || decoded.phone.is_some())
    }

    /// The live script cookies as the pixel reports them.
    pub fn script_cookie_values(&self, now: DateTime<Utc>) -> serde_json::Map<String, Value> {
        self.script
            .iter()
            .filter(|(_, cookie)| cookie.is_alive(now))
            .map(|(name, cookie)| (name.clone(), Value::String(cookie.value.clone())))
            .collect()
    }

    /// The `Cookie` header with every server-set cookie.
    pub fn cookie_header(&self) -> Option<String> {
        let pairs: Vec<String> = self
            .server
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Keeps the cookies of the collector's `Set-Cookie` headers.
    pub fn store_set_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(http::header::SET_COOKIE) {
            let Some((name, rest)) = value.to_str().ok().and_then(|text| text.split_once('='))
            else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default();
            self.server.insert(name.trim().to_owned(), value.to_owned());
        }
    }
}
