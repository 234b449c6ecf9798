//! The data layer's `ecommerce` block, read into one typed shape whatever the event name.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::intake::IntakeError;

/// Products and order facts of an event, from the data layer's `ecommerce` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ecommerce {
    /// ISO 4217 code, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Order revenue for purchases, otherwise the sum of price times quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
    /// Name of the product list (collection, search results) the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<Product>,
}

/// One product line of an ecommerce block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// The data layer's `id`, usually the SKU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Product {
    /// The id destinations use for the product: the SKU-like `id`, else the variant or product id.
    pub fn best_id(&self) -> Option<&str> {
        self.id
            .as_deref()
            .or(self.variant_id.as_deref())
            .or(self.product_id.as_deref())
    }

    /// Quantity, one when the data layer left it out.
    pub fn quantity_or_one(&self) -> f64 {
        self.quantity.unwrap_or(1.0)
    }
}

/// Action keys of the data-layer ecommerce block, in the order they are looked up.
const ACTION_KEYS: [&str; 8] = [
    "purchase",
    "checkout",
    "add",
    "remove",
    "detail",
    "click",
    "cart_contents",
    "impressions",
];

impl Ecommerce {
    /// Reads the block at `path`, rejecting values of the wrong type with their path.
    pub fn from_value(value: &Value, path: &str) -> Result<Self, IntakeError> {
        let block = value
            .as_object()
            .ok_or_else(|| IntakeError::new(path, "must be an object"))?;
        let mut ecommerce = Ecommerce {
            currency: optional_string(block, "currencyCode", path)?
                .or(optional_string(block, "currency", path)?)
                .map(|code| code.trim().to_ascii_uppercase())
                .filter(|code| !code.is_empty()),
            ..Ecommerce::default()
        };
        if let Some(key) = ACTION_KEYS.into_iter().find(|key| block.contains_key(*key)) {
            let action_path = format!("{path}.{key}");
            ecommerce.read_action(&block[key], &action_path)?;
        }
        if ecommerce.value.is_none() && !ecommerce.products.is_empty() {
            let sum = ecommerce
                .products
                .iter()
                .filter_map(|product| product.price.map(|price| price * product.quantity_or_one()))
                .sum::<f64>();
            ecommerce.value = Some((sum * 100.0).round() / 100.0);
        }
        Ok(ecommerce)
    }

    fn read_action(&mut self, action: &Value, path: &str) -> Result<(), IntakeError> {
        // `impressions` is a bare product array; every other action is an object.
        if action.is_array() {
            self.products = read_products(action, path)?;
            return Ok(());
        }
        let action = action
            .as_object()
            .ok_or_else(|| IntakeError::new(path, "must be an object or an array"))?;
        if let Some(products) = action.get("products") {
            self.products = read_products(products, &format!("{path}.products"))?;
        }
        if let Some(field) = action.get("actionField") {
            let field_path = format!("{path}.actionField");
            let field = field
                .as_object()
                .ok_or_else(|| IntakeError::new(&field_path, "must be an object"))?;
            self.order_id = optional_string(field, "id", &field_path)?;
            self.value = optional_amount(field, "revenue", &field_path)?;
            self.tax = optional_amount(field, "tax", &field_path)?;
            self.shipping = optional_amount(field, "shipping", &field_path)?;
            self.coupon = optional_string(field, "coupon", &field_path)?;
            self.list = optional_string(field, "list", &field_path)?;
        }
        Ok(())
    }
}

fn read_products(value: &Value, path: &str) -> Result<Vec<Product>, IntakeError> {
    let items = value
        .as_array()
        .ok_or_else(|| IntakeError::new(path, "must be an array of products"))?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| read_product(item, &format!("{path}[{index}]")))
        .collect()
}

fn read_product(value: &Value, path: &str) -> Result<Product, IntakeError> {
    let item = value
        .as_object()
        .ok_or_else(|| IntakeError::new(path, "must be an object"))?;
    Ok(Product {
        id: optional_string(item, "id", path)?.or(optional_string(item, "sku", path)?),
        product_id: optional_string(item, "product_id", path)?,
        variant_id: optional_string(item, "variant_id", path)?,
        name: optional_string(item, "name", path)?,
        brand: optional_string(item, "brand", path)?,
        category: optional_string(item, "category", path)?,
        variant: optional_string(item, "variant", path)?,
        price: optional_amount(item, "price", path)?,
        quantity: optional_quantity(item, "quantity", path)?,
        url: optional_string(item, "url", path)?,
        image: optional_string(item, "image", path)?,
    })
}

/// Reads a string field; numbers are accepted and written as strings, since ids often are.
pub(crate) fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, IntakeError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(IntakeError::new(
            &format!("{path}.{key}"),
            "must be a string",
        )),
    }
}

/// Spellings of "no value" that storefront templates write into numeric fields (Python's
/// `None`, JavaScript's `undefined`); they are read as a missing value, not as an error.
const NULL_SPELLINGS: [&str; 5] = ["none", "null", "undefined", "nan", "n/a"];

/// Largest accepted money amount (price, revenue, tax, shipping), in the event's currency.
const MAX_AMOUNT: f64 = 1e12;
/// Largest accepted quantity of one product line.
const MAX_QUANTITY: f64 = 1e6;

/// Reads a money amount: a number from 0 to `MAX_AMOUNT`.
pub(crate) fn optional_amount(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<f64>, IntakeError> {
    optional_bounded(object, key, path, MAX_AMOUNT)
}

/// Reads a product quantity: a number from 0 to `MAX_QUANTITY`.
pub(crate) fn optional_quantity(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<f64>, IntakeError> {
    optional_bounded(object, key, path, MAX_QUANTITY)
}

/// Reads a number from 0 to `max`, so that no absurd value reaches a destination (where it
/// would be sent as null or make a platform reject a whole batch).
fn optional_bounded(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
    max: f64,
) -> Result<Option<f64>, IntakeError> {
    let value = optional_number(object, key, path)?;
    match value {
        Some(number) if !(0.0..=max).contains(&number) => Err(IntakeError::new(
            &format!("{path}.{key}"),
            format!("must be a number from 0 to {max}, not {number}"),
        )),
        _ => Ok(value),
    }
}

/// Reads a number field; numeric strings such as `"24.50"` are accepted.
pub(crate) fn optional_number(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<f64>, IntakeError> {
    let invalid = || IntakeError::new(&format!("{path}.{key}"), "must be a number");
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_f64()
            .filter(|number| number.is_finite())
            .map(Some)
            .ok_or_else(invalid),
        Some(Value::String(text))
            if text.trim().is_empty()
                || NULL_SPELLINGS.contains(&text.trim().to_ascii_lowercase().as_str()) =>
        {
            Ok(None)
        }
        Some(Value::String(text)) => {
            let parsed: f64 = text.trim().parse().map_err(|_| invalid())?;
            if parsed.is_finite() {
                Ok(Some(parsed))
            } else {
                Err(invalid())
            }
        }
        Some(_) => Err(invalid()),
    }
}
