//! Validation of one intake item: a data-layer event plus the page context the pixel adds.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ecommerce::{Ecommerce, optional_string};
use super::{Consent, EventName, LeadType, PageContext, UserProperties};

/// Maximum length of a browser event id.
const MAX_EVENT_ID_LEN: usize = 256;
/// Maximum length of a reported cookie value; longer values are dropped.
const MAX_COOKIE_VALUE_LEN: usize = 1024;

/// What is wrong with one item, naming the field by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct IntakeError {
    pub path: String,
    pub problem: String,
}

impl IntakeError {
    pub fn new(path: &str, problem: impl Into<String>) -> Self {
        let path = path.strip_prefix('.').unwrap_or(path);
        Self {
            path: if path.is_empty() {
                "body".to_owned()
            } else {
                path.to_owned()
            },
            problem: problem.into(),
        }
    }
}

/// A validated item, before the collector adds the visitor, the receive time and the client.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeItem {
    pub name: EventName,
    /// The browser's event id, `None` when the item had none.
    pub event_id: Option<String>,
    /// Browser time as sent, not yet clamped.
    pub event_time: Option<DateTime<Utc>>,
    pub page: PageContext,
    pub cookies: BTreeMap<String, String>,
    pub consent: Consent,
    pub user: UserProperties,
    pub ecommerce: Option<Ecommerce>,
    pub marketing: BTreeMap<String, String>,
    pub lead_type: Option<LeadType>,
    pub search_term: Option<String>,
}

/// Whether a script-set cookie is one the server keeps: the platform ids it forwards.
pub fn is_platform_cookie(name: &str) -> bool {
    const EXACT: [&str; 12] = [
        "_fbp",
        "_fbc",
        "_ga",
        "_ttp",
        "_kla_id",
        "__kla_id",
        "_kx",
        "_epik",
        "_scid",
        "_uetmsclkid",
        "_gcl_aw",
        "ttclid",
    ];
    EXACT.contains(&name) || (name.starts_with("_ga_") && name.len() > 4)
}

/// Validates one item of a `/collect` body; `path` prefixes field names in errors.
pub fn parse_item(value: &Value, path: &str) -> Result<IntakeItem, IntakeError> {
    let item = value
        .as_object()
        .ok_or_else(|| IntakeError::new(path, "must be a JSON object"))?;
    let name = parse_name(item, path)?;
    let context = object_field(item, "context", path)?;
    let context_path = format!("{path}.context");
    let lead_type = parse_lead_type(item, name, path)?;
    Ok(IntakeItem {
        name,
        event_id: parse_event_id(item, path)?,
        event_time: parse_event_time(item.get("event_time"), &format!("{path}.event_time"))?,
        page: parse_page(context, &context_path)?,
        cookies: parse_cookies(context, &context_path)?,
        consent: parse_consent(context, &context_path)?,
        user: parse_user_properties(item, path)?,
        ecommerce: match item.get("ecommerce") {
            None | Some(Value::Null) => None,
            Some(block) => Some(Ecommerce::from_value(block, &format!("{path}.ecommerce"))?),
        },
        marketing: parse_string_map(item.get("marketing"), &format!("{path}.marketing"))?,
        lead_type,
        search_term: optional_string(item, "search_term", path)?,
    })
}

fn parse_name(item: &Map<String, Value>, path: &str) -> Result<EventName, IntakeError> {
    let field = format!("{path}.event");
    match item.get("event") {
        None | Some(Value::Null) => Err(IntakeError::new(&field, "is required")),
        Some(Value::String(name)) => EventName::parse(name).ok_or_else(|| {
            IntakeError::new(
                &field,
                format!("unknown event name {name:?}; expected one of the dl_* data-layer events"),
            )
        }),
        Some(_) => Err(IntakeError::new(&field, "must be a string")),
    }
}

/// Reads the event id under `key`: a non-empty string (or whole number) of at most
/// `MAX_EVENT_ID_LEN` bytes without control characters.
pub(super) fn parse_event_id_at(
    item: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, IntakeError> {
    let field = format!("{path}.{key}");
    let id = match item.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(id)) => id.clone(),
        // Only whole numbers keep every digit when written back as text.
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
        Some(_) => {
            return Err(IntakeError::new(
                &field,
                "must be a string or a whole number",
            ));
        }
    };
    validate_event_id(id, &field).map(Some)
}

fn parse_event_id(item: &Map<String, Value>, path: &str) -> Result<Option<String>, IntakeError> {
    parse_event_id_at(item, "event_id", path)
}

fn validate_event_id(id: String, field: &str) -> Result<String, IntakeError> {
    if id.is_empty() {
        return Err(IntakeError::new(field, "must not be empty"));
    }
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(IntakeError::new(
            field,
            format!(
                "is {} bytes long; the maximum is {MAX_EVENT_ID_LEN}",
                id.len()
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(IntakeError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(id)
}

/// Reads an event time given as RFC 3339 text or as epoch seconds, milliseconds or
/// microseconds (told apart by magnitude, since browsers send all three).
pub fn parse_event_time(
    value: Option<&Value>,
    path: &str,
) -> Result<Option<DateTime<Utc>>, IntakeError> {
    let invalid = || {
        IntakeError::new(
            path,
            "must be an RFC 3339 time or a Unix time in seconds or milliseconds",
        )
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text.trim())
            .map(|time| Some(time.with_timezone(&Utc)))
            .map_err(|_| invalid()),
        Some(Value::Number(number)) => {
            let raw = number.as_f64().ok_or_else(invalid)?;
            if !raw.is_finite() || raw <= 0.0 {
                return Err(invalid());
            }
            let millis = if raw >= 1e14 {
                raw / 1000.0
            } else if raw >= 1e11 {
                raw
            } else {
                raw * 1000.0
            };
            Utc.timestamp_millis_opt(millis as i64)
                .single()
                .map(Some)
                .ok_or_else(invalid)
        }
        Some(_) => Err(invalid()),
    }
}

fn parse_lead_type(
    item: &Map<String, Value>,
    name: EventName,
    path: &str,
) -> Result<Option<LeadType>, IntakeError> {
    let field = format!("{path}.lead_type");
    let lead_type = match optional_string(item, "lead_type", path)?.as_deref() {
        None => None,
        Some("email") => Some(LeadType::Email),
        Some("phone") => Some(LeadType::Phone),
        Some(other) => {
            return Err(IntakeError::new(
                &field,
                format!("must be \"email\" or \"phone\", not {other:?}"),
            ));
        }
    };
    if name == EventName::Subscribe && lead_type.is_none() {
        return Err(IntakeError::new(&field, "is required for dl_subscribe"));
    }
    Ok(lead_type)
}

fn object_field<'a>(
    item: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, IntakeError> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(IntakeError::new(
            &format!("{path}.{key}"),
            "must be an object",
        )),
    }
}

fn parse_page(
    context: Option<&Map<String, Value>>,
    path: &str,
) -> Result<PageContext, IntakeError> {
    let Some(context) = context else {
        return Ok(PageContext::default());
    };
    let page_url = optional_string(context, "page_url", path)?;
    if let Some(url) = &page_url {
        let parsed = url::Url::parse(url).map_err(|error| {
            IntakeError::new(
                &format!("{path}.page_url"),
                format!("is not a URL ({error})"),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(IntakeError::new(
                &format!("{path}.page_url"),
                "must be an http or https URL",
            ));
        }
    }
    Ok(PageContext {
        url: page_url,
        referrer: optional_string(context, "referrer", path)?,
        title: optional_string(context, "page_title", path)?,
    })
}

pub(super) fn parse_cookies(
    context: Option<&Map<String, Value>>,
    path: &str,
) -> Result<BTreeMap<String, String>, IntakeError> {
    let Some(context) = context else {
        return Ok(BTreeMap::new());
    };
    let mut cookies = parse_string_map(context.get("cookies"), &format!("{path}.cookies"))?;
    cookies.retain(|name, value| is_platform_cookie(name) && value.len() <= MAX_COOKIE_VALUE_LEN);
    Ok(cookies)
}

pub(super) fn parse_consent(
    context: Option<&Map<String, Value>>,
    path: &str,
) -> Result<Consent, IntakeError> {
    let Some(consent) = context.and_then(|context| context.get("consent")) else {
        return Ok(Consent::default());
    };
    let path = format!("{path}.consent");
    let consent = match consent {
        Value::Null => return Ok(Consent::default()),
        Value::Object(object) => object,
        _ => return Err(IntakeError::new(&path, "must be an object")),
    };
    let flag = |key: &str| match consent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(IntakeError::new(
            &format!("{path}.{key}"),
            "must be true or false",
        )),
    };
    Ok(Consent {
        analytics: flag("analytics")?,
        marketing: flag("marketing")?,
    })
}

fn parse_user_properties(
    item: &Map<String, Value>,
    path: &str,
) -> Result<UserProperties, IntakeError> {
    let Some(properties) = object_field(item, "user_properties", path)? else {
        return Ok(UserProperties::default());
    };
    let path = format!("{path}.user_properties");
    let text = |key: &str| optional_string(properties, key, &path);
    Ok(UserProperties {
        customer_id: text("customer_id")?,
        customer_email: text("customer_email")?,
        customer_phone: text("customer_phone")?,
        customer_first_name: text("customer_first_name")?,
        customer_last_name: text("customer_last_name")?,
        customer_address_1: text("customer_address_1")?,
        customer_address_2: text("customer_address_2")?,
        customer_city: text("customer_city")?,
        customer_province: text("customer_province")?,
        customer_province_code: text("customer_province_code")?,
        customer_zip: text("customer_zip")?,
        customer_country: text("customer_country")?,
        customer_country_code: text("customer_country_code")?,
        customer_email_sha256: text("customer_email_sha256")?.or(text("sha256_email_address")?),
        customer_phone_sha256: text("customer_phone_sha256")?.or(text("sha256_phone_number")?),
        visitor_type: text("visitor_type")?,
    })
}

fn parse_string_map(
    value: Option<&Value>,
    path: &str,
) -> Result<BTreeMap<String, String>, IntakeError> {
    let object = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(IntakeError::new(path, "must be an object of strings")),
    };
    let mut map = BTreeMap::new();
    for key in object.keys() {
        if let Some(text) = optional_string(object, key, path)? {
            map.insert(key.clone(), text);
        }
    }
    Ok(map)
}
