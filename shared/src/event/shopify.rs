//! Shopify Web Pixel events, the standard customer events a custom pixel subscribes to, mapped
//! to the data-layer vocabulary so that they travel on as the same `CollectedEvent`s.
//!
//! Field names follow Shopify's Web Pixels API reference (standard events, `ProductVariant`,
//! `CartLine`, `Checkout`, `MailingAddress`). The pixel may add a `revisit` object with
//! `cookies`, `consent` and `customer` (the `init.data.customer` of a logged-in shopper).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::ecommerce::{optional_amount, optional_quantity, optional_string};
use super::intake::{IntakeError, IntakeItem, parse_consent, parse_cookies, parse_event_id_at};
use super::{Ecommerce, EventName, PageContext, Product, UserProperties};

/// Shopify's placeholder title of the only variant of a product without options.
const DEFAULT_VARIANT_TITLE: &str = "Default Title";

/// The standard events that revisit maps, with the data-layer event each becomes.
///
/// Shopify has no contact or address step in the data layer: both become `dl_user_data`, the
/// event that carries what is known about the shopper, so their email and address reach the
/// visitor's profile.
pub const STANDARD_EVENTS: [(&str, EventName); 13] = [
    ("page_viewed", EventName::UserData),
    ("collection_viewed", EventName::ViewItemList),
    ("search_submitted", EventName::ViewSearchResults),
    ("product_viewed", EventName::ViewItem),
    ("product_added_to_cart", EventName::AddToCart),
    ("product_removed_from_cart", EventName::RemoveFromCart),
    ("cart_viewed", EventName::ViewCart),
    ("checkout_started", EventName::BeginCheckout),
    ("checkout_contact_info_submitted", EventName::UserData),
    ("checkout_address_info_submitted", EventName::UserData),
    (
        "checkout_shipping_info_submitted",
        EventName::AddShippingInfo,
    ),
    ("payment_info_submitted", EventName::AddPaymentInfo),
    ("checkout_completed", EventName::Purchase),
];

/// Maps a Shopify standard event name to its data-layer event, `None` for events revisit ignores.
pub fn event_name(shopify_name: &str) -> Option<EventName> {
    STANDARD_EVENTS
        .iter()
        .find(|(name, _)| *name == shopify_name)
        .map(|(_, event)| *event)
}

/// A validated Shopify event with the pixel's client id, which identifies the browser when the
/// request carries no visitor cookie.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopifyItem {
    pub item: IntakeItem,
    /// The event's `clientId`.
    pub client_id: Option<String>,
}

/// Validates one Shopify event of a `/collect/shopify` body; `path` prefixes field names in
/// errors.
pub fn parse_shopify_event(value: &Value, path: &str) -> Result<ShopifyItem, IntakeError> {
    let event = value
        .as_object()
        .ok_or_else(|| IntakeError::new(path, "must be a JSON object"))?;
    let name = parse_name(event, path)?;

    let data = object(event, "data", path)?.unwrap_or(&*EMPTY);
    let data_path = format!("{path}.data");
    let extension = object(event, "revisit", path)?;
    let extension_path = format!("{path}.revisit");
    let customer = match extension {
        Some(extension) => object(extension, "customer", &extension_path)?,
        None => None,
    };
    let checkout = object(data, "checkout", &data_path)?;

    let mut item = IntakeItem {
        name,
        event_id: parse_event_id_at(event, "id", path)?,
        event_time: parse_timestamp(event, path)?,
        page: parse_page(event, path)?,
        cookies: parse_cookies(extension, &extension_path)?,
        consent: parse_consent(extension, &extension_path)?,
        user: UserProperties::default(),
        ecommerce: parse_ecommerce(data, &data_path)?,
        marketing: Default::default(),
        lead_type: None,
        search_term: None,
    };

    if let Some(search) = object(data, "searchResult", &data_path)? {
        item.search_term = optional_string(search, "query", &format!("{data_path}.searchResult"))?;
    }
    item.user = parse_user(
        checkout,
        &format!("{data_path}.checkout"),
        customer,
        &format!("{extension_path}.customer"),
    )?;
    Ok(ShopifyItem {
        item,
        client_id: optional_string(event, "clientId", path)?,
    })
}

/// The empty object used in place of a missing optional object.
static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

fn parse_name(event: &Map<String, Value>, path: &str) -> Result<EventName, IntakeError> {
    let field = format!("{path}.name");
    let name = optional_string(event, "name", path)?
        .ok_or_else(|| IntakeError::new(&field, "is required"))?;
    event_name(&name).ok_or_else(|| {
        let known: Vec<&str> = STANDARD_EVENTS.iter().map(|(name, _)| *name).collect();
        IntakeError::new(
            &field,
            format!(
                "{name:?} is not a Shopify standard event that revisit maps; expected one of {}",
                known.join(", ")
            ),
        )
    })
}

fn parse_timestamp(
    event: &Map<String, Value>,
    path: &str,
) -> Result<Option<DateTime<Utc>>, IntakeError> {
    let Some(text) = optional_string(event, "timestamp", path)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| Some(time.with_timezone(&Utc)))
        .map_err(|_| IntakeError::new(&format!("{path}.timestamp"), "must be an RFC 3339 time"))
}

/// Reads the page from `context.document`, falling back to `context.window.location`.
fn parse_page(event: &Map<String, Value>, path: &str) -> Result<PageContext, IntakeError> {
    let context_path = format!("{path}.context");
    let Some(context) = object(event, "context", path)? else {
        return Ok(PageContext::default());
    };
    let document_path = format!("{context_path}.document");
    let document = object(context, "document", &context_path)?.unwrap_or(&*EMPTY);
    let window_path = format!("{context_path}.window");
    let window = object(context, "window", &context_path)?.unwrap_or(&*EMPTY);
    let href = |parent: &Map<String, Value>, parent_path: &str| match object(
        parent,
        "location",
        parent_path,
    )? {
        Some(location) => optional_string(location, "href", &format!("{parent_path}.location")),
        None => Ok(None),
    };
    let url = match href(document, &document_path)? {
        Some(url) => Some(url),
        None => href(window, &window_path)?,
    };
    Ok(PageContext {
        // Only a web page's URL is kept: Meta and others reject `javascript:` or `about:` URLs.
        url: url.filter(|url| {
            url::Url::parse(url).is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https"))
        }),
        referrer: optional_string(document, "referrer", &document_path)?,
        title: optional_string(document, "title", &document_path)?,
    })
}

/// Reads the ecommerce block from whichever payload the event carries, `None` for a page view.
fn parse_ecommerce(
    data: &Map<String, Value>,
    path: &str,
) -> Result<Option<Ecommerce>, IntakeError> {
    if let Some(variant) = object(data, "productVariant", path)? {
        let product = read_variant(variant, &format!("{path}.productVariant"))?;
        return Ok(Some(Ecommerce {
            currency: money_currency(variant.get("price")),
            value: product.price,
            products: vec![product],
            ..Ecommerce::default()
        }));
    }
    if let Some(line) = object(data, "cartLine", path)? {
        let line_path = format!("{path}.cartLine");
        let product = read_cart_line(line, &line_path)?;
        let cost = money_at(line, &["cost", "totalAmount"], &line_path)?;
        return Ok(Some(Ecommerce {
            currency: cost.1.or(product_currency(line)),
            value: cost
                .0
                .or(product.price.map(|price| price * product.quantity_or_one())),
            products: vec![product],
            ..Ecommerce::default()
        }));
    }
    for (key, list_title) in [("collection", true), ("searchResult", false)] {
        if let Some(list) = object(data, key, path)? {
            let list_path = format!("{path}.{key}");
            let variants = array(list, "productVariants", &list_path)?;
            let products = variants
                .iter()
                .enumerate()
                .map(|(index, variant)| {
                    let variant_path = format!("{list_path}.productVariants[{index}]");
                    let variant = as_object(variant, &variant_path)?;
                    read_variant(variant, &variant_path)
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Some(Ecommerce {
                currency: variants
                    .first()
                    .and_then(|first| money_currency(first.get("price"))),
                list: if list_title {
                    optional_string(list, "title", &list_path)?
                } else {
                    None
                },
                products,
                ..Ecommerce::default()
            }));
        }
    }
    if data.contains_key("cart") {
        return parse_cart(data, path);
    }
    match object(data, "checkout", path)? {
        Some(checkout) => parse_checkout(checkout, &format!("{path}.checkout")).map(Some),
        None => Ok(None),
    }
}

/// Reads the `cart_viewed` payload. Shopify sends `cart: null` for an empty cart.
fn parse_cart(data: &Map<String, Value>, path: &str) -> Result<Option<Ecommerce>, IntakeError> {
    let Some(cart) = object(data, "cart", path)? else {
        return Ok(Some(Ecommerce::default()));
    };
    let cart_path = format!("{path}.cart");
    let products = array(cart, "lines", &cart_path)?
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let line_path = format!("{cart_path}.lines[{index}]");
            read_cart_line(as_object(line, &line_path)?, &line_path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (value, currency) = money_at(cart, &["cost", "totalAmount"], &cart_path)?;
    Ok(Some(Ecommerce {
        currency,
        value,
        products,
        ..Ecommerce::default()
    }))
}

fn parse_checkout(checkout: &Map<String, Value>, path: &str) -> Result<Ecommerce, IntakeError> {
    let products = array(checkout, "lineItems", path)?
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let line_path = format!("{path}.lineItems[{index}]");
            let line = as_object(line, &line_path)?;
            let mut product = match object(line, "variant", &line_path)? {
                Some(variant) => read_variant(variant, &format!("{line_path}.variant"))?,
                None => Product::default(),
            };
            product.quantity = optional_quantity(line, "quantity", &line_path)?;
            if product.name.is_none() {
                product.name = optional_string(line, "title", &line_path)?;
            }
            Ok(product)
        })
        .collect::<Result<Vec<_>, IntakeError>>()?;
    let (value, total_currency) = money_at(checkout, &["totalPrice"], path)?;
    let coupon = array(checkout, "discountApplications", path)?
        .iter()
        .filter_map(Value::as_object)
        .filter(|discount| discount.get("type").and_then(Value::as_str) == Some("DISCOUNT_CODE"))
        .find_map(|discount| discount.get("title").and_then(Value::as_str))
        .map(str::to_owned);
    Ok(Ecommerce {
        currency: optional_string(checkout, "currencyCode", path)?
            .map(|code| code.trim().to_ascii_uppercase())
            .or(total_currency),
        value,
        order_id: parse_order_id(checkout, path)?,
        tax: money_at(checkout, &["totalTax"], path)?.0,
        shipping: money_at(checkout, &["shippingLine", "price"], path)?.0,
        coupon,
        list: None,
        products,
    })
}

/// Reads the order id of a completed checkout: the number at the end of Shopify's global id
/// (`gid://shopify/OrderIdentity/5396439498987`), as order webhooks and the Admin API write it.
fn parse_order_id(
    checkout: &Map<String, Value>,
    path: &str,
) -> Result<Option<String>, IntakeError> {
    let Some(order) = object(checkout, "order", path)? else {
        return Ok(None);
    };
    let id = optional_string(order, "id", &format!("{path}.order"))?;
    Ok(id.map(|id| match id.rsplit_once('/') {
        Some((_, number)) if !number.is_empty() => number.to_owned(),
        _ => id,
    }))
}

fn read_cart_line(line: &Map<String, Value>, path: &str) -> Result<Product, IntakeError> {
    let mut product = match object(line, "merchandise", path)? {
        Some(variant) => read_variant(variant, &format!("{path}.merchandise"))?,
        None => Product::default(),
    };
    product.quantity = optional_quantity(line, "quantity", path)?;
    Ok(product)
}

/// Reads a `ProductVariant` as a product line, with the variant's SKU as `id` when it has one.
fn read_variant(variant: &Map<String, Value>, path: &str) -> Result<Product, IntakeError> {
    let product_path = format!("{path}.product");
    let product = object(variant, "product", path)?.unwrap_or(&*EMPTY);
    let title = |object: &Map<String, Value>, path: &str| -> Result<Option<String>, IntakeError> {
        Ok(optional_string(object, "untranslatedTitle", path)?
            .or(optional_string(object, "title", path)?))
    };
    let image = match object(variant, "image", path)? {
        Some(image) => optional_string(image, "src", &format!("{path}.image"))?,
        None => None,
    };
    Ok(Product {
        id: optional_string(variant, "sku", path)?,
        product_id: optional_string(product, "id", &product_path)?,
        variant_id: optional_string(variant, "id", path)?,
        name: title(product, &product_path)?,
        brand: optional_string(product, "vendor", &product_path)?,
        category: optional_string(product, "type", &product_path)?,
        variant: title(variant, path)?.filter(|title| title != DEFAULT_VARIANT_TITLE),
        price: money_at(variant, &["price"], path)?.0,
        quantity: None,
        url: optional_string(product, "url", &product_path)?,
        // Shopify writes storefront images protocol-relative (`//shop/cdn/...`).
        image: image.map(|src| match src.strip_prefix("//") {
            Some(rest) => format!("https://{rest}"),
            None => src,
        }),
    })
}

/// Reads customer fields from the checkout, else from the logged-in customer the pixel passed on.
fn parse_user(
    checkout: Option<&Map<String, Value>>,
    checkout_path: &str,
    customer: Option<&Map<String, Value>>,
    customer_path: &str,
) -> Result<UserProperties, IntakeError> {
    let checkout = checkout.unwrap_or(&*EMPTY);
    let customer = customer.unwrap_or(&*EMPTY);
    let address = pick_address(checkout, checkout_path)?;
    let (address, address_path) = address.unwrap_or((&*EMPTY, String::new()));
    let text =
        |object: &Map<String, Value>, key: &str, path: &str| optional_string(object, key, path);
    let first = |values: [Option<String>; 3]| values.into_iter().flatten().next();
    Ok(UserProperties {
        customer_id: text(customer, "id", customer_path)?,
        customer_email: first([
            text(checkout, "email", checkout_path)?,
            text(customer, "email", customer_path)?,
            None,
        ]),
        customer_phone: first([
            text(checkout, "phone", checkout_path)?,
            text(address, "phone", &address_path)?,
            text(customer, "phone", customer_path)?,
        ]),
        customer_first_name: first([
            text(address, "firstName", &address_path)?,
            text(customer, "firstName", customer_path)?,
            None,
        ]),
        customer_last_name: first([
            text(address, "lastName", &address_path)?,
            text(customer, "lastName", customer_path)?,
            None,
        ]),
        customer_address_1: text(address, "address1", &address_path)?,
        customer_address_2: text(address, "address2", &address_path)?,
        customer_city: text(address, "city", &address_path)?,
        customer_province: text(address, "province", &address_path)?,
        customer_province_code: text(address, "provinceCode", &address_path)?,
        customer_zip: text(address, "zip", &address_path)?,
        customer_country: text(address, "country", &address_path)?,
        customer_country_code: text(address, "countryCode", &address_path)?,
        ..UserProperties::default()
    })
}

/// A JSON object with the path it was read at.
type Located<'a> = (&'a Map<String, Value>, String);

/// Picks the billing address when it has any field filled in, else the shipping address.
fn pick_address<'a>(
    checkout: &'a Map<String, Value>,
    path: &str,
) -> Result<Option<Located<'a>>, IntakeError> {
    for key in ["billingAddress", "shippingAddress"] {
        let Some(address) = object(checkout, key, path)? else {
            continue;
        };
        let filled = address
            .values()
            .any(|value| value.as_str().is_some_and(|text| !text.trim().is_empty()));
        if filled {
            return Ok(Some((address, format!("{path}.{key}"))));
        }
    }
    Ok(None)
}

/// Reads the amount and currency of the `MoneyV2` at `keys` below `parent`. Missing parts are
/// `None`.
fn money_at(
    parent: &Map<String, Value>,
    keys: &[&str],
    path: &str,
) -> Result<(Option<f64>, Option<String>), IntakeError> {
    let mut current = parent;
    let mut current_path = path.to_owned();
    for key in keys {
        match object(current, key, &current_path)? {
            Some(next) => current = next,
            None => return Ok((None, None)),
        }
        current_path = format!("{current_path}.{key}");
    }
    let amount = optional_amount(current, "amount", &current_path)?;
    let currency = optional_string(current, "currencyCode", &current_path)?
        .map(|code| code.trim().to_ascii_uppercase());
    Ok((amount, currency))
}

fn money_currency(money: Option<&Value>) -> Option<String> {
    money?
        .get("currencyCode")?
        .as_str()
        .map(|code| code.trim().to_ascii_uppercase())
        .filter(|code| !code.is_empty())
}

fn product_currency(line: &Map<String, Value>) -> Option<String> {
    money_currency(line.get("merchandise")?.get("price"))
}

fn object<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, IntakeError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => as_object(value, &format!("{path}.{key}")).map(Some),
    }
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, IntakeError> {
    value
        .as_object()
        .ok_or_else(|| IntakeError::new(path, "must be an object"))
}

fn array<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], IntakeError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(IntakeError::new(
            &format!("{path}.{key}"),
            "must be an array",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_event_is_rejected_with_path() {
        let error = parse_shopify_event(&json!({"name": "alert_displayed"}), "[2]")
            .expect_err("alert_displayed is not mapped");

        assert_eq!(error.path, "[2].name");
        assert!(error.problem.contains("page_viewed"), "{}", error.problem);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let event = json!({"name": "product_viewed", "data": {"productVariant": {"price": "x"}}});

        let error = parse_shopify_event(&event, "").expect_err("price must be money");

        assert_eq!(error.path, "data.productVariant.price");
    }

    #[test]
    fn empty_cart_view_has_no_products() {
        let event = json!({"name": "cart_viewed", "data": {"cart": null}});

        let parsed = parse_shopify_event(&event, "").expect("valid");

        assert_eq!(parsed.item.name, EventName::ViewCart);
        assert_eq!(parsed.item.ecommerce, Some(Ecommerce::default()));
    }

    #[test]
    fn revisit_extension_carries_cookies_consent_customer() {
        let event = json!({
            "name": "page_viewed",
            "clientId": "c-1",
            "revisit": {
                "cookies": {"_fbp": "fb.1.1700000000000.42", "_shopify_y": "dropped"},
                "consent": {"analytics": true, "marketing": false},
                "customer": {"id": "77", "email": "A@Example.com", "phone": "+15555550100"}
            }
        });

        let parsed = parse_shopify_event(&event, "").expect("valid");

        assert_eq!(parsed.client_id.as_deref(), Some("c-1"));
        assert_eq!(parsed.item.cookies.len(), 1);
        assert_eq!(parsed.item.consent.marketing, Some(false));
        assert_eq!(parsed.item.user.customer_id.as_deref(), Some("77"));
        assert_eq!(
            parsed.item.user.customer_email.as_deref(),
            Some("A@Example.com")
        );
        assert_eq!(
            parsed.item.user.customer_phone.as_deref(),
            Some("+15555550100")
        );
    }

    #[test]
    fn billing_address_wins_when_filled() {
        let event = json!({"name": "payment_info_submitted", "data": {"checkout": {
            "billingAddress": {"city": "Lyon", "countryCode": "FR"},
            "shippingAddress": {"city": "Paris", "countryCode": "FR"}
        }}});

        let parsed = parse_shopify_event(&event, "").expect("valid");

        assert_eq!(parsed.item.user.customer_city.as_deref(), Some("Lyon"));
    }

    #[test]
    fn discount_code_becomes_coupon() {
        let event = json!({"name": "checkout_completed", "data": {"checkout": {
            "discountApplications": [
                {"type": "AUTOMATIC", "title": "Summer"},
                {"type": "DISCOUNT_CODE", "title": "WELCOME10"}
            ]
        }}});

        let parsed = parse_shopify_event(&event, "").expect("valid");

        let ecommerce = parsed.item.ecommerce.expect("checkout block");
        assert_eq!(ecommerce.coupon.as_deref(), Some("WELCOME10"));
    }
}
