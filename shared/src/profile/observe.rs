//! Observations: the visitor facts an event carries, normalised, and how they update the
//! visitor's profile.

use std::collections::{BTreeMap, BTreeSet};

use super::{Fact, GA_SESSION_LIMIT, RECENT_EVENT_LIMIT, VisitorProfile, keys};
use crate::attribution::{self, Touch, click_id_kind};
use crate::event::CollectedEvent;
use crate::identity::{normalize, platform_ids};

const DAY_SECS: i64 = 86_400;

/// Settings that decide how observations are normalised and how long they are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePolicy {
    /// Identity and touches expire this many days after they were last seen.
    pub retention_days: i64,
    /// Region for phone numbers written in national format when the event names no country.
    pub default_region: String,
    /// Registrable domain of the store, to tell external referrers from internal ones.
    pub site_domain: String,
    /// Other registrable domains that count as the store (hosted checkout, payment pages).
    pub internal_domains: Vec<String>,
    /// Dots in the domain the server scopes its cookies to: the `fbc` subdomain index.
    pub fbc_subdomain_index: usize,
    /// Consent assumed for a purpose the page did not state.
    pub consent_default: bool,
}

/// The visitor facts one event carries, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    /// Identity values by `keys::*`, from the payload and the platform cookies.
    pub identity: BTreeMap<String, String>,
    /// Click ids from the page URL by stored key; under `fbc` is the raw fbclid.
    pub url_click_ids: BTreeMap<String, String>,
    /// Click ids from cookies by stored key, with the creation time in milliseconds if known.
    pub cookie_click_ids: BTreeMap<String, (String, Option<i64>)>,
    pub utm: BTreeMap<String, String>,
    /// The referrer when it is outside the store.
    pub external_referrer: Option<String>,
    pub page_url: Option<String>,
}

/// Normalises the visitor facts that `event` carries.
pub fn observe_event(event: &CollectedEvent, policy: &ProfilePolicy) -> Observations {
    let mut observations = Observations {
        page_url: event.page.url.clone(),
        ..Observations::default()
    };
    observe_user(event, policy, &mut observations.identity);
    observe_platform_ids(event, &mut observations);
    if let Some(page_url) = &event.page.url {
        let marketing = attribution::read_url(page_url);
        for (param, value) in marketing.click_ids {
            if let Some(kind) = attribution::CLICK_IDS
                .iter()
                .find(|kind| kind.param == param)
            {
                observations
                    .url_click_ids
                    .insert(kind.key.to_owned(), value);
            }
        }
        observations.utm = marketing.utm;
        if let Some(kx) = marketing.klaviyo_kx {
            observations.identity.insert(keys::KX.into(), kx);
        }
    }
    // The data layer's marketing block may carry landing-page click ids the URL lost.
    for kind in &attribution::CLICK_IDS {
        if let Some(value) = event
            .marketing
            .get(kind.param)
            .filter(|v| !v.trim().is_empty())
        {
            observations
                .url_click_ids
                .entry(kind.key.to_owned())
                .or_insert_with(|| value.clone());
        }
    }
    observations.external_referrer = event
        .page
        .referrer
        .as_ref()
        .filter(|referrer| {
            attribution::is_external_referrer(
                referrer,
                &policy.site_domain,
                &policy.internal_domains,
            )
        })
        .cloned();
    observations
}

fn observe_user(
    event: &CollectedEvent,
    policy: &ProfilePolicy,
    identity: &mut BTreeMap<String, String>,
) {
    let user = &event.user;
    let country = user
        .customer_country_code
        .as_deref()
        .or(user.customer_country.as_deref())
        .and_then(normalize::country_code);
    let region = country
        .clone()
        .unwrap_or_else(|| policy.default_region.clone());
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            identity.insert(key.to_owned(), value);
        }
    };
    put(
        keys::EMAIL,
        user.customer_email.as_deref().and_then(normalize::email),
    );
    put(
        keys::PHONE,
        user.customer_phone
            .as_deref()
            .and_then(|phone| normalize::phone_e164(phone, &region)),
    );
    let hashed = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|value| normalize::is_sha256_hex(value))
            .map(str::to_ascii_lowercase)
    };
    put(keys::EMAIL_SHA256, hashed(&user.customer_email_sha256));
    put(keys::PHONE_SHA256, hashed(&user.customer_phone_sha256));
    put(
        keys::CUSTOMER_ID,
        user.customer_id.as_deref().and_then(normalize::text),
    );
    put(
        keys::FIRST_NAME,
        user.customer_first_name
            .as_deref()
            .and_then(normalize::text),
    );
    put(
        keys::LAST_NAME,
        user.customer_last_name.as_deref().and_then(normalize::text),
    );
    put(
        keys::ADDRESS1,
        user.customer_address_1.as_deref().and_then(normalize::text),
    );
    put(
        keys::ADDRESS2,
        user.customer_address_2.as_deref().and_then(normalize::text),
    );
    put(
        keys::CITY,
        user.customer_city.as_deref().and_then(normalize::text),
    );
    put(
        keys::REGION,
        user.customer_province_code
            .as_deref()
            .or(user.customer_province.as_deref())
            .and_then(normalize::text),
    );
    put(
        keys::ZIP,
        user.customer_zip.as_deref().and_then(normalize::text),
    );
    put(keys::COUNTRY, country);
}

fn observe_platform_ids(event: &CollectedEvent, observations: &mut Observations) {
    let identity = &mut observations.identity;
    if let Some(fbp) = event
        .browser_value("_fbp")
        .filter(|v| platform_ids::is_valid_fbp(v))
    {
        identity.insert(keys::FBP.into(), fbp.trim().to_owned());
    }
    if let Some(ga) = event
        .browser_value("_ga")
        .filter(|v| platform_ids::ga_client_id(v).is_some())
    {
        identity.insert(keys::GA.into(), ga.trim().to_owned());
    }
    let sessions = event.cookies.iter().chain(event.marketing.iter());
    for (name, value) in sessions {
        if name.starts_with(keys::GA_SESSION_PREFIX) && platform_ids::ga_session(value).is_some() {
            identity.insert(name.clone(), value.trim().to_owned());
        }
    }
    for key in [keys::TTP, keys::SCID] {
        if let Some(value) = event.browser_value(key) {
            identity.insert(key.into(), value.trim().to_owned());
        }
    }
    if let Some(kx) = event.browser_value(keys::KX) {
        identity.insert(keys::KX.into(), kx.trim().to_owned());
    }
    let klaviyo = event
        .browser_value("__kla_id")
        .or(event.browser_value("_kla_id"))
        .and_then(platform_ids::klaviyo_cookie);
    if let Some(klaviyo) = klaviyo {
        if let Some(kx) = klaviyo.exchange_id {
            identity.entry(keys::KX.into()).or_insert(kx);
        }
        if let Some(email) = klaviyo.email.as_deref().and_then(normalize::email) {
            identity.entry(keys::EMAIL.into()).or_insert(email);
        }
    }
    let cookie_click_ids = &mut observations.cookie_click_ids;
    if let Some(fbc) = event
        .browser_value("_fbc")
        .filter(|v| platform_ids::is_valid_fbc(v))
    {
        let created = platform_ids::fbc_created_ms(fbc);
        cookie_click_ids.insert("fbc".into(), (fbc.trim().to_owned(), created));
    }
    if let Some(epik) = event.browser_value("_epik") {
        cookie_click_ids.insert("epik".into(), (epik.trim().to_owned(), None));
    }
    if let Some(msclkid) = event
        .browser_value("_uetmsclkid")
        .and_then(platform_ids::uet_msclkid)
    {
        cookie_click_ids.insert("msclkid".into(), (msclkid.to_owned(), None));
    }
    if let Some(gclid) = event
        .browser_value("_gcl_aw")
        .and_then(platform_ids::gcl_aw_gclid)
    {
        cookie_click_ids.insert("gclid".into(), (gclid.to_owned(), None));
    }
}

impl VisitorProfile {
    /// Applies an event's observations at `now_ms` and returns the paths of the fields the
    /// event supplied itself (`identity.email`, `click_ids.fbc`, `utm.utm_source`, ...).
    pub fn apply(
        &mut self,
        observations: &Observations,
        event_id: &str,
        now_ms: i64,
        policy: &ProfilePolicy,
    ) -> BTreeSet<String> {
        let now_secs = now_ms.div_euclid(1000);
        let retention_secs = policy.retention_days * DAY_SECS;
        self.prune_expired(now_secs);
        let mut supplied = BTreeSet::new();
        for (key, value) in &observations.identity {
            let fact = self.identity.entry(key.clone()).or_insert_with(|| Fact {
                value: value.clone(),
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                expires_at: 0,
                event_id: event_id.to_owned(),
            });
            refresh_fact(fact, value, event_id, now_ms, now_secs + retention_secs);
            supplied.insert(format!("identity.{key}"));
        }
        // Retention is rolling: any activity of the visitor keeps what is known about them.
        for fact in self.identity.values_mut() {
            fact.expires_at = fact.expires_at.max(now_secs + retention_secs);
        }
        self.limit_ga_sessions();
        self.apply_click_ids(observations, event_id, now_ms, policy, &mut supplied);
        self.apply_touch(observations, event_id, now_ms, retention_secs);
        supplied.extend(observations.utm.keys().map(|param| format!("utm.{param}")));
        self.mark_applied(event_id, now_ms);
        self.refresh_expiry(now_secs + retention_secs);
        supplied
    }

    /// Records that the event was applied, without keeping anything it carried.
    pub fn mark_applied(&mut self, event_id: &str, now_ms: i64) {
        if !self.has_applied(event_id) {
            self.recent_event_ids.push(event_id.to_owned());
            let excess = self
                .recent_event_ids
                .len()
                .saturating_sub(RECENT_EVENT_LIMIT);
            self.recent_event_ids.drain(..excess);
            self.event_count += 1;
        }
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    fn apply_click_ids(
        &mut self,
        observations: &Observations,
        event_id: &str,
        now_ms: i64,
        policy: &ProfilePolicy,
        supplied: &mut BTreeSet<String>,
    ) {
        for (key, raw) in &observations.url_click_ids {
            let Some(kind) = click_id_kind(key) else {
                continue;
            };
            let (value, first_seen_ms) = if key == "fbc" {
                self.fbc_for_click(raw, observations, now_ms, policy)
            } else {
                (raw.clone(), now_ms)
            };
            // A click id lives its platform's window, but never past the retention.
            let expires_at = (first_seen_ms.div_euclid(1000) + kind.window_days * DAY_SECS)
                .min(now_ms.div_euclid(1000) + policy.retention_days * DAY_SECS);
            store_click_id(
                &mut self.click_ids,
                key,
                value,
                first_seen_ms,
                expires_at,
                event_id,
                now_ms,
            );
            supplied.insert(format!("click_ids.{key}"));
        }
        // Cookies only fill a click id that no URL supplied and none is remembered for.
        for (key, (value, created_ms)) in &observations.cookie_click_ids {
            let Some(kind) = click_id_kind(key) else {
                continue;
            };
            if observations.url_click_ids.contains_key(key) {
                continue;
            }
            let first_seen_ms = created_ms.unwrap_or(now_ms).min(now_ms);
            // A click id lives its platform's window, but never past the retention.
            let expires_at = (first_seen_ms.div_euclid(1000) + kind.window_days * DAY_SECS)
                .min(now_ms.div_euclid(1000) + policy.retention_days * DAY_SECS);
            if expires_at <= now_ms.div_euclid(1000) {
                continue;
            }
            let newer = self.click_ids.get(key).is_none_or(|stored| {
                stored.value == *value || stored.first_seen_ms < first_seen_ms
            });
            if newer {
                store_click_id(
                    &mut self.click_ids,
                    key,
                    value.clone(),
                    first_seen_ms,
                    expires_at,
                    event_id,
                    now_ms,
                );
                supplied.insert(format!("click_ids.{key}"));
            }
        }
    }

    /// The `fbc` for a fbclid in the URL: the remembered value or cookie when it carries the same
    /// fbclid (so the creation time of the first click is kept), else a new one built now.
    fn fbc_for_click(
        &self,
        fbclid: &str,
        observations: &Observations,
        now_ms: i64,
        policy: &ProfilePolicy,
    ) -> (String, i64) {
        let same_click = |fbc: &str| platform_ids::fbc_click_id(fbc) == Some(fbclid);
        if let Some(stored) = self
            .click_ids
            .get("fbc")
            .filter(|fact| same_click(&fact.value))
        {
            return (stored.value.clone(), stored.first_seen_ms);
        }
        if let Some((cookie, Some(created))) = observations.cookie_click_ids.get("fbc")
            && same_click(cookie)
            && *created <= now_ms
        {
            return (cookie.clone(), *created);
        }
        let fbc = platform_ids::fbc_from_fbclid(fbclid, now_ms, policy.fbc_subdomain_index);
        (fbc, now_ms)
    }

    fn apply_touch(
        &mut self,
        observations: &Observations,
        event_id: &str,
        now_ms: i64,
        retention_secs: i64,
    ) {
        let has_marketing = !observations.url_click_ids.is_empty() || !observations.utm.is_empty();
        if !has_marketing && observations.external_referrer.is_none() {
            return;
        }
        let click_ids = observations
            .url_click_ids
            .keys()
            .filter_map(|key| {
                self.click_ids
                    .get(key)
                    .map(|fact| (key.clone(), fact.value.clone()))
            })
            .collect();
        let touch = Touch {
            utm: observations.utm.clone(),
            click_ids,
            referrer: observations.external_referrer.clone(),
            landing_page: observations.page_url.clone().unwrap_or_default(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            expires_at: now_ms.div_euclid(1000) + retention_secs,
            event_id: event_id.to_owned(),
        };
        match &mut self.first_touch {
            None => self.first_touch = Some(touch.clone()),
            Some(first) if first.same_source(&touch) => {
                first.last_seen_ms = first.last_seen_ms.max(now_ms);
                first.expires_at = first.expires_at.max(touch.expires_at);
            }
            Some(_) => {}
        }
        match &mut self.last_touch {
            Some(last) if last.same_source(&touch) => {
                last.last_seen_ms = last.last_seen_ms.max(now_ms);
                last.expires_at = last.expires_at.max(touch.expires_at);
            }
            _ => self.last_touch = Some(touch),
        }
    }

    /// Keeps the most recently seen GA4 session cookies when a visitor carries many streams.
    fn limit_ga_sessions(&mut self) {
        let mut sessions: Vec<(String, i64)> = self
            .identity
            .iter()
            .filter(|(key, _)| key.starts_with(keys::GA_SESSION_PREFIX))
            .map(|(key, fact)| (key.clone(), fact.last_seen_ms))
            .collect();
        if sessions.len() <= GA_SESSION_LIMIT {
            return;
        }
        sessions.sort_by_key(|(_, last_seen)| std::cmp::Reverse(*last_seen));
        for (key, _) in sessions.into_iter().skip(GA_SESSION_LIMIT) {
            self.identity.remove(&key);
        }
    }
}

fn refresh_fact(fact: &mut Fact, value: &str, event_id: &str, now_ms: i64, expires_at: i64) {
    if fact.value != value {
        *fact = Fact {
            value: value.to_owned(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            expires_at,
            event_id: event_id.to_owned(),
        };
        return;
    }
    fact.last_seen_ms = fact.last_seen_ms.max(now_ms);
    fact.expires_at = fact.expires_at.max(expires_at);
}

fn store_click_id(
    click_ids: &mut BTreeMap<String, Fact>,
    key: &str,
    value: String,
    first_seen_ms: i64,
    expires_at: i64,
    event_id: &str,
    now_ms: i64,
) {
    match click_ids.get_mut(key) {
        Some(stored) if stored.value == value => {
            stored.last_seen_ms = stored.last_seen_ms.max(now_ms);
            stored.expires_at = stored.expires_at.max(expires_at);
        }
        _ => {
            click_ids.insert(
                key.to_owned(),
                Fact {
                    value,
                    first_seen_ms,
                    last_seen_ms: now_ms,
                    expires_at,
                    event_id: event_id.to_owned(),
                },
            );
        }
    }
}
