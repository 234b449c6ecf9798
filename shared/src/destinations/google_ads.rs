//! Google Ads: purchases with a Google click id go to `customers/{id}:uploadClickConversions`
//! (gclid, or else gbraid or wbraid); purchases without one can enhance the tag's conversion
//! through `:uploadConversionAdjustments` (enhanced conversions for web). Identifiers follow
//! Google's normalisation: gmail dots dropped, phone in E.164 with `+`, address in clear.
//! Contract: googleapis `google/ads/googleads/v22/services/conversion_upload_service.proto`,
//! `conversion_adjustment_upload_service.proto` and Google's upload-clicks guide.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::hashing::{self, email_hash, field_hash, phone_hash};
use super::mapping::{self, put};
use super::{
    Destination, EventFailure, OutboundRequest, Secret, SecretPlacement, Skip, TransportResponse,
    Verdict, amount, classify_status, platform_error,
};
use crate::enrich::EnrichedEvent;
use crate::event::{EventName, Purpose};
use crate::profile::keys;

pub const DEFAULT_ENDPOINT: &str = "https://googleads.googleapis.com";
pub const DEFAULT_API_VERSION: &str = "v22";
pub const DEFAULT_TOKEN_ENDPOINT: &str = "https://oauth2.googleapis.com/token";
/// `TOO_MANY_CONVERSIONS_IN_REQUEST` above 2,000.
const MAX_BATCH: usize = 2000;
/// The maximum click-through window of a conversion action.
const CLICK_MAX_AGE_DAYS: i64 = 90;
/// Enhancements must arrive within 24 hours of the conversion.
const ENHANCEMENT_MAX_AGE_HOURS: i64 = 24;
/// Google accepts at most five user identifiers per conversion.
const MAX_IDENTIFIERS: usize = 5;
/// Upload errors that mean the conversion is already recorded: the upload is done.
const ALREADY_RECORDED: [&str; 3] = [
    "CLICK_CONVERSION_ALREADY_EXISTS",
    "ORDER_ID_ALREADY_IN_USE",
    "DUPLICATE_ORDER_ID",
];
/// Upload errors that pass with time (Google: retry after 6 hours) or quota.
const RETRY_LATER: [&str; 3] = [
    "TOO_RECENT_EVENT",
    "TOO_RECENT_CONVERSION_ACTION",
    "RESOURCE_EXHAUSTED",
];

/// OAuth 2.0 credentials that obtain access tokens for the Google Ads API.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleOAuth {
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
    pub token_endpoint: String,
}

/// Settings of the Google Ads destination.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleAdsConfig {
    /// Customer id without dashes.
    pub customer_id: Option<String>,
    /// Manager account id for calls through an MCC, without dashes.
    pub login_customer_id: Option<String>,
    /// Conversion action that click uploads record.
    pub conversion_action_id: Option<String>,
    /// Tag-recorded (WEBPAGE) conversion action to enhance for purchases without a click id.
    pub enhancement_action_id: Option<String>,
    pub developer_token: Option<Secret>,
    pub oauth: Option<GoogleOAuth>,
    pub endpoint: String,
    pub api_version: String,
    /// Sends `validateOnly: true`: Google checks the upload and records nothing.
    pub validate_only: bool,
    pub retry_budget: Option<Duration>,
}

impl Default for GoogleAdsConfig {
    fn default() -> Self {
        Self {
            customer_id: None,
            login_customer_id: None,
            conversion_action_id: None,
            enhancement_action_id: None,
            developer_token: None,
            oauth: None,
            endpoint: DEFAULT_ENDPOINT.into(),
            api_version: DEFAULT_API_VERSION.into(),
            validate_only: false,
            retry_budget: None,
        }
    }
}

/// The Google click id a conversion carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Click {
    Gclid(String),
    Gbraid(String),
    Wbraid(String),
}

/// The Google Ads conversion upload destination.
#[derive(Debug, Clone)]
pub struct GoogleAds {
    config: GoogleAdsConfig,
}

impl GoogleAds {
    pub fn new(config: GoogleAdsConfig) -> Self {
        Self { config }
    }

    /// Builds the token request for the configured OAuth credentials, secrets kept apart.
    pub fn token_request(&self) -> Option<OutboundRequest> {
        let oauth = self.config.oauth.as_ref()?;
        Some(OutboundRequest {
            destination: "google_ads",
            operation: "oauth_token",
            method: http::Method::POST,
            url: oauth.token_endpoint.clone(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            secrets: vec![
                (
                    SecretPlacement::Form("client_secret".into()),
                    oauth.client_secret.clone(),
                ),
                (
                    SecretPlacement::Form("refresh_token".into()),
                    oauth.refresh_token.clone(),
                ),
            ],
            body: json!({"grant_type": "refresh_token", "client_id": oauth.client_id}),
            event_ids: Vec::new(),
        })
    }

    fn customer(&self) -> &str {
        self.config
            .customer_id
            .as_deref()
            .unwrap_or("{customer_id}")
    }

    fn action(&self, id: Option<&str>) -> String {
        format!(
            "customers/{}/conversionActions/{}",
            self.customer(),
            id.unwrap_or("{conversion_action_id}")
        )
    }

    /// gclid wins; otherwise gbraid, otherwise wbraid. Google rejects gbraid and wbraid
    /// together (`GBRAID_WBRAID_BOTH_SET`) and a braid next to a gclid.
    fn click(event: &EnrichedEvent) -> Option<Click> {
        if let Some(gclid) = mapping::click_id(event, "gclid", None) {
            return Some(Click::Gclid(gclid));
        }
        if let Some(gbraid) = mapping::click_id(event, "gbraid", None) {
            return Some(Click::Gbraid(gbraid));
        }
        mapping::click_id(event, "wbraid", None).map(Click::Wbraid)
    }

    fn click_conversion(&self, event: &EnrichedEvent) -> Value {
        let mut conversion = Map::new();
        conversion.insert(
            "conversionAction".into(),
            json!(self.action(self.config.conversion_action_id.as_deref())),
        );
        conversion.insert(
            "conversionDateTime".into(),
            json!(conversion_time(event.event.event_time)),
        );
        add_value(&mut conversion, event);
        match Self::click(event) {
            Some(Click::Gclid(gclid)) => {
                conversion.insert("gclid".into(), json!(gclid));
                // Click uploads take only hashed email and phone, and only with a gclid.
                let identifiers = contact_identifiers(event);
                if !identifiers.is_empty() {
                    conversion.insert("userIdentifiers".into(), Value::Array(identifiers));
                }
            }
            Some(Click::Gbraid(gbraid)) => {
                conversion.insert("gbraid".into(), json!(gbraid));
            }
            Some(Click::Wbraid(wbraid)) => {
                conversion.insert("wbraid".into(), json!(wbraid));
            }
            None => {}
        }
        add_consent(&mut conversion, event);
        Value::Object(conversion)
    }

    fn enhancement(&self, event: &EnrichedEvent) -> Value {
        let mut adjustment = Map::new();
        adjustment.insert(
            "conversionAction".into(),
            json!(self.action(self.config.enhancement_action_id.as_deref())),
        );
        adjustment.insert("adjustmentType".into(), json!("ENHANCEMENT"));
        put(&mut adjustment, "orderId", mapping::order_id(event));
        let mut identifiers = contact_identifiers(event);
        let address = address_info(event);
        if !address.is_empty() {
            identifiers
                .push(json!({"userIdentifierSource": "FIRST_PARTY", "addressInfo": address}));
        }
        identifiers.truncate(MAX_IDENTIFIERS);
        adjustment.insert("userIdentifiers".into(), Value::Array(identifiers));
        put(
            &mut adjustment,
            "userAgent",
            event.event.client.user_agent.clone(),
        );
        Value::Object(adjustment)
    }

    fn request(
        &self,
        operation: &'static str,
        list: &str,
        items: Vec<Value>,
        ids: Vec<String>,
    ) -> OutboundRequest {
        let mut headers = vec![("content-type".into(), "application/json".into())];
        if let Some(login) = &self.config.login_customer_id {
            headers.push(("login-customer-id".into(), login.clone()));
        }
        let secrets = self
            .config
            .developer_token
            .iter()
            .map(|token| {
                (
                    SecretPlacement::Header("developer-token".into()),
                    token.clone(),
                )
            })
            .collect();
        let path = match operation {
            "upload_click_conversions" => "uploadClickConversions",
            _ => "uploadConversionAdjustments",
        };
        OutboundRequest {
            destination: "google_ads",
            operation,
            method: http::Method::POST,
            url: format!(
                "{}/{}/customers/{}:{path}",
                self.config.endpoint.trim_end_matches('/'),
                self.config.api_version,
                self.customer()
            ),
            headers,
            secrets,
            // Google requires partialFailure to be true for these uploads.
            body: json!({
                list: items,
                "partialFailure": true,
                "validateOnly": self.config.validate_only,
            }),
            event_ids: ids,
        }
    }
}

impl Destination for GoogleAds {
    fn name(&self) -> &'static str {
        "google_ads"
    }

    fn purposes(&self) -> &'static [Purpose] {
        &[Purpose::Marketing]
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn max_age(&self) -> Option<chrono::Duration> {
        Some(chrono::Duration::days(CLICK_MAX_AGE_DAYS))
    }

    fn max_age_for(&self, event: &EnrichedEvent) -> Option<chrono::Duration> {
        match Self::click(event) {
            Some(_) => self.max_age(),
            None => Some(chrono::Duration::hours(ENHANCEMENT_MAX_AGE_HOURS)),
        }
    }

    /// Purchases only: with a Google click id, or, when an enhancement action is set, with an
    /// order id and an email or phone to enhance the tag's conversion with.
    fn check(&self, event: &EnrichedEvent) -> Result<(), Skip> {
        if event.event.name != EventName::Purchase {
            return Err(Skip::NotMapped);
        }
        if Self::click(event).is_some() {
            return Ok(());
        }
        let can_enhance = self.config.enhancement_action_id.is_some()
            && mapping::order_id(event).is_some()
            && !contact_identifiers(event).is_empty();
        if can_enhance {
            Ok(())
        } else {
            Err(Skip::Unidentified)
        }
    }

    fn build(&self, events: &[&EnrichedEvent], _now: DateTime<Utc>) -> Vec<OutboundRequest> {
        let (clicks, enhancements): (Vec<&EnrichedEvent>, Vec<&EnrichedEvent>) = events
            .iter()
            .partition(|event| Self::click(event).is_some());
        let mut requests = Vec::new();
        if !clicks.is_empty() {
            let items = clicks.iter().map(|e| self.click_conversion(e)).collect();
            let ids = clicks.iter().map(|e| e.event.event_id.clone()).collect();
            requests.push(self.request("upload_click_conversions", "conversions", items, ids));
        }
        if !enhancements.is_empty() {
            let items = enhancements.iter().map(|e| self.enhancement(e)).collect();
            let ids = enhancements
                .iter()
                .map(|e| e.event.event_id.clone())
                .collect();
            requests.push(self.request(
                "upload_conversion_adjustments",
                "conversionAdjustments",
                items,
                ids,
            ));
        }
        requests
    }

    /// Reads failed conversions by index from a 200's `partialFailureError` details.
    fn classify(&self, request: &OutboundRequest, response: &TransportResponse) -> Verdict {
        if !(200..300).contains(&response.status) {
            let verdict = classify_status(response);
            let quota = response.body.contains("RESOURCE_EXHAUSTED");
            return match verdict {
                Verdict::Rejected { reason } if quota => Verdict::Retry {
                    after: response.retry_after,
                    reason,
                },
                other => other,
            };
        }
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        let details = parsed["partialFailureError"]["details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut failures: Vec<EventFailure> = Vec::new();
        for error in details
            .iter()
            .flat_map(|d| d["errors"].as_array().cloned().unwrap_or_default())
        {
            let index = error["location"]["fieldPathElements"]
                .as_array()
                .and_then(|path| path.iter().find_map(|element| element["index"].as_u64()));
            let Some(event_id) = index.and_then(|i| request.event_ids.get(i as usize)) else {
                continue;
            };
            let code = error_code(&error);
            if ALREADY_RECORDED.contains(&code.as_str())
                || failures.iter().any(|f| &f.event_id == event_id)
            {
                continue;
            }
            failures.push(EventFailure {
                event_id: event_id.clone(),
                reason: format!(
                    "{code}: {}",
                    platform_error(error["message"].as_str().unwrap_or_default())
                ),
                retryable: RETRY_LATER.contains(&code.as_str()),
            });
        }
        if failures.is_empty() {
            Verdict::Accepted
        } else {
            Verdict::Partial { failures }
        }
    }

    fn retry_budget(&self) -> Option<Duration> {
        self.config.retry_budget
    }
}

/// Returns the first value of an error's `errorCode` object, such as `TOO_RECENT_EVENT`.
fn error_code(error: &Value) -> String {
    error["errorCode"]
        .as_object()
        .and_then(|codes| codes.values().next())
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN")
        .to_owned()
}

/// `yyyy-mm-dd hh:mm:ss+00:00`, the format Google requires.
fn conversion_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
}

fn add_value(conversion: &mut Map<String, Value>, event: &EnrichedEvent) {
    if let (Some(value), Some(currency)) = (mapping::value(event), mapping::currency(event)) {
        conversion.insert("conversionValue".into(), amount(value));
        conversion.insert("currencyCode".into(), json!(currency));
    }
    // One conversion per order id and action: the order id deduplicates against the tag,
    // which reports the same order id as its transaction id.
    let order = mapping::order_id(event).unwrap_or(&event.event.event_id);
    conversion.insert("orderId".into(), json!(order));
}

fn add_consent(conversion: &mut Map<String, Value>, event: &EnrichedEvent) {
    if let Some(granted) = mapping::marketing_consent(event) {
        let status = mapping::google_consent(granted);
        conversion.insert(
            "consent".into(),
            json!({"adUserData": status, "adPersonalization": status}),
        );
    }
}

/// Hashed email and phone, one identifier each, after Google's normalisation.
fn contact_identifiers(event: &EnrichedEvent) -> Vec<Value> {
    let mut identifiers = Vec::new();
    if let Some(email) = email_hash(event, hashing::google_email) {
        identifiers.push(json!({"userIdentifierSource": "FIRST_PARTY", "hashedEmail": email}));
    }
    if let Some(phone) = phone_hash(event, hashing::phone_e164) {
        identifiers
            .push(json!({"userIdentifierSource": "FIRST_PARTY", "hashedPhoneNumber": phone}));
    }
    identifiers
}

/// `OfflineUserAddressInfo`: names and street hashed, city, state, country and postal code
/// in clear. Google needs both names with the country and postal code, or none of it.
fn address_info(event: &EnrichedEvent) -> Map<String, Value> {
    let mut address = Map::new();
    let first = field_hash(event, keys::FIRST_NAME, hashing::letters_name);
    let last = field_hash(event, keys::LAST_NAME, hashing::letters_name);
    let country = event.identity_value(keys::COUNTRY);
    let postal = event.identity_value(keys::ZIP);
    let (Some(first), Some(last), Some(country), Some(postal)) = (first, last, country, postal)
    else {
        return address;
    };
    address.insert("hashedFirstName".into(), json!(first));
    address.insert("hashedLastName".into(), json!(last));
    address.insert("countryCode".into(), json!(country));
    address.insert("postalCode".into(), json!(postal));
    put(
        &mut address,
        "hashedStreetAddress",
        field_hash(event, keys::ADDRESS1, hashing::lower_text),
    );
    put(&mut address, "city", event.identity_value(keys::CITY));
    put(&mut address, "state", event.identity_value(keys::REGION));
    address
}
