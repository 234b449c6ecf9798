//! An estimate of a DynamoDB item's size, computed the way the DynamoDB Developer Guide ("Item
//! sizes and formats") describes it, so a write can be checked before it is sent.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Largest item the store writes, in bytes. DynamoDB's limit is 400 KB (409,600 bytes); this
/// keeps a margin below it and below moto's check, which rejects items over 405,000 bytes.
pub const MAX_ITEM_BYTES: usize = 400_000;

/// Estimates the size of `item` in bytes: attribute names plus values, by the rules of the
/// DynamoDB Developer Guide.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|number| number_size(number)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len()).sum(),
        // A list or map costs 3 bytes plus 1 byte per element besides the elements.
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(entries) => {
            3 + entries
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
        // A type added to the SDK later: count its debug form, which is never smaller.
        other => format!("{other:?}").len(),
    }
}

/// Estimates a number's size: 1 byte per two significant digits plus 1 byte.
fn number_size(number: &str) -> usize {
    let digits = number
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or_default()
        .replace('.', "");
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_size_counts_names_and_utf8_bytes() {
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("visitor#é".into())),
            ("n".to_owned(), AttributeValue::N("1740312345".into())),
        ]);

        // "pk" 2 + "visitor#é" 10 bytes; "n" 1 + 10 significant digits -> 5 + 1.
        assert_eq!(item_size(&item), 2 + 10 + 1 + 6);
    }

    #[test]
    fn item_size_trims_insignificant_zeros() {
        let item = HashMap::from([("n".to_owned(), AttributeValue::N("-0001700.000".into()))]);

        // Significant digits "17": 1 byte for the pair plus 1.
        assert_eq!(item_size(&item), 1 + 2);
    }

    #[test]
    fn item_size_counts_nested_maps() {
        let inner = HashMap::from([("a".to_owned(), AttributeValue::Bool(true))]);
        let item = HashMap::from([("m".to_owned(), AttributeValue::M(inner))]);

        assert_eq!(item_size(&item), 1 + 3 + 1 + 1 + 1);
    }
}
