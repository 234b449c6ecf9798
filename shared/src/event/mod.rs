//! Storefront events: the data-layer vocabulary, the validated intake item and the event as it
//! travels on the queue from `collect` to `enrich`.

mod ecommerce;
mod intake;
pub mod shopify;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use ecommerce::{Ecommerce, Product};
pub use intake::{IntakeError, IntakeItem, parse_item};
pub use shopify::{ShopifyItem, parse_shopify_event};

/// Random id of one browser, carried in the server-set visitor cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VisitorId(String);

impl VisitorId {
    /// Mints a new id from 128 random bits, written as 32 lowercase hex digits.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Accepts an id in the minted format: 32 lowercase hex digits.
    pub fn parse(value: &str) -> Option<Self> {
        let well_formed = value.len() == 32
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The data-layer event names that revisit accepts (Elevar's `dl_*` vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventName {
    #[serde(rename = "dl_user_data")]
    UserData,
    #[serde(rename = "dl_view_item_list")]
    ViewItemList,
    #[serde(rename = "dl_view_search_results")]
    ViewSearchResults,
    #[serde(rename = "dl_select_item")]
    SelectItem,
    #[serde(rename = "dl_view_item")]
    ViewItem,
    #[serde(rename = "dl_add_to_cart")]
    AddToCart,
    #[serde(rename = "dl_remove_from_cart")]
    RemoveFromCart,
    #[serde(rename = "dl_view_cart")]
    ViewCart,
    #[serde(rename = "dl_begin_checkout")]
    BeginCheckout,
    #[serde(rename = "dl_add_shipping_info")]
    AddShippingInfo,
    #[serde(rename = "dl_add_payment_info")]
    AddPaymentInfo,
    #[serde(rename = "dl_purchase")]
    Purchase,
    #[serde(rename = "dl_sign_up")]
    SignUp,
    #[serde(rename = "dl_login")]
    Login,
    #[serde(rename = "dl_subscribe")]
    Subscribe,
}

impl EventName {
    /// Every accepted name, in funnel order.
    pub const ALL: [EventName; 15] = [
        Self::UserData,
        Self::ViewItemList,
        Self::ViewSearchResults,
        Self::SelectItem,
        Self::ViewItem,
        Self::AddToCart,
        Self::RemoveFromCart,
        Self::ViewCart,
        Self::BeginCheckout,
        Self::AddShippingInfo,
        Self::AddPaymentInfo,
        Self::Purchase,
        Self::SignUp,
        Self::Login,
        Self::Subscribe,
    ];

    /// The data-layer spelling, such as `dl_add_to_cart`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserData => "dl_user_data",
            Self::ViewItemList => "dl_view_item_list",
            Self::ViewSearchResults => "dl_view_search_results",
            Self::SelectItem => "dl_select_item",
            Self::ViewItem => "dl_view_item",
            Self::AddToCart => "dl_add_to_cart",
            Self::RemoveFromCart => "dl_remove_from_cart",
            Self::ViewCart => "dl_view_cart",
            Self::BeginCheckout => "dl_begin_checkout",
            Self::AddShippingInfo => "dl_add_shipping_info",
            Self::AddPaymentInfo => "dl_add_payment_info",
            Self::Purchase => "dl_purchase",
            Self::SignUp => "dl_sign_up",
            Self::Login => "dl_login",
            Self::Subscribe => "dl_subscribe",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|name| name.as_str() == value)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The channel a `dl_subscribe` event signed the visitor up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadType {
    Email,
    Phone,
}

/// Customer fields of the data layer's `user_properties` block, as sent (not yet normalised).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_address_1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_address_2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_province: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_province_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_zip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_country_code: Option<String>,
    /// SHA-256 of the normalised email, for storefronts that never expose the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email_sha256: Option<String>,
    /// SHA-256 of the phone, for storefronts that never expose the number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_phone_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_type: Option<String>,
}

/// Page the event happened on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Network facts the collector saw; they stay in clear for every destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Consent the shopper gave on the page, per purpose. `None` means the page did not state it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketing: Option<bool>,
}

/// A purpose that a destination needs consent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Analytics,
    Marketing,
}

impl Consent {
    /// Whether `purpose` is granted, using `default` where the page did not state it.
    pub fn allows(&self, purpose: Purpose, default: bool) -> bool {
        let stated = match purpose {
            Purpose::Analytics => self.analytics,
            Purpose::Marketing => self.marketing,
        };
        stated.unwrap_or(default)
    }
}

/// Where an event came from on the storefront.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    #[default]
    DataLayer,
    ShopifyPixel,
}

/// A validated event with its visitor and receive time: the message on the event queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectedEvent {
    pub visitor_id: VisitorId,
    /// The browser's id, kept byte for byte because destinations deduplicate on it.
    pub event_id: String,
    pub name: EventName,
    /// Server receive time, in milliseconds.
    pub received_at: DateTime<Utc>,
    /// Browser time, clamped so that it never lies after `received_at`.
    pub event_time: DateTime<Utc>,
    #[serde(default)]
    pub source: EventSource,
    #[serde(default)]
    pub page: PageContext,
    #[serde(default)]
    pub client: ClientContext,
    /// Script-set cookies that the pixel read on the page, by cookie name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cookies: BTreeMap<String, String>,
    #[serde(default)]
    pub consent: Consent,
    #[serde(default)]
    pub user: UserProperties,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecommerce: Option<Ecommerce>,
    /// The data layer's `marketing` block: platform cookies and click ids as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marketing: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_type: Option<LeadType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_term: Option<String>,
}

impl CollectedEvent {
    /// The value of a cookie the pixel reported, or of the same key in the `marketing` block.
    pub fn browser_value(&self, name: &str) -> Option<&str> {
        self.cookies
            .get(name)
            .or_else(|| self.marketing.get(name))
            .map(String::as_str)
            .filter(|value| !value.trim().is_empty())
    }
}
