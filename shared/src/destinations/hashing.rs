//! Per-platform normalisation before SHA-256. Platforms disagree: Meta, Pinterest and Snapchat
//! hash phones as digits only, Google and TikTok hash E.164 with the `+`, and only Google drops
//! the dots of Gmail addresses. Values that arrive already hashed are passed on unchanged.

use crate::enrich::EnrichedEvent;
use crate::identity::normalize::{is_sha256_hex, sha256_hex};
use crate::profile::keys;

/// A normalisation rule: the value a platform hashes, or `None` when nothing usable is left.
pub type Rule = fn(&str) -> Option<String>;

/// Hashes `value` after `normalize`, unless it already is a SHA-256 hex digest, which is
/// passed through in lower case. Returns `None` when normalisation leaves nothing.
pub fn hash_with(value: &str, normalize: impl Fn(&str) -> Option<String>) -> Option<String> {
    let trimmed = value.trim();
    if is_sha256_hex(trimmed) {
        return Some(trimmed.to_ascii_lowercase());
    }
    normalize(trimmed).map(|normalized| sha256_hex(&normalized))
}

/// Hashes the visitor's email under `rule`. A raw email wins over a pre-hashed one, which is
/// passed on as it arrived when no raw email is known.
pub fn email_hash(event: &EnrichedEvent, rule: Rule) -> Option<String> {
    event
        .email()
        .and_then(|email| hash_with(email, rule))
        .or_else(|| event.identity_value(keys::EMAIL_SHA256).map(str::to_owned))
}

/// Hashes the visitor's phone (stored in E.164) under `rule`, else returns the pre-hashed
/// phone.
pub fn phone_hash(event: &EnrichedEvent, rule: Rule) -> Option<String> {
    event
        .phone()
        .and_then(|phone| hash_with(phone, rule))
        .or_else(|| event.identity_value(keys::PHONE_SHA256).map(str::to_owned))
}

/// Hashes the identity value under `key` under `rule`.
pub fn field_hash(event: &EnrichedEvent, key: &str, rule: Rule) -> Option<String> {
    event
        .identity_value(key)
        .and_then(|value| hash_with(value, rule))
}

/// Normalises the identity value under `key` under `rule`, in clear.
pub fn field_clear(event: &EnrichedEvent, key: &str, rule: Rule) -> Option<String> {
    event.identity_value(key).and_then(rule)
}

/// Email for every platform except Google: trimmed and lower-cased.
pub fn email(value: &str) -> Option<String> {
    let email = value.trim().to_lowercase();
    email.contains('@').then_some(email)
}

/// Email for Google (GA4 user-provided data, Google Ads enhanced conversions): lower-cased,
/// with the dots of the local part removed for gmail.com and googlemail.com.
pub fn google_email(value: &str) -> Option<String> {
    let email = email(value)?;
    let (local, domain) = email.rsplit_once('@')?;
    if matches!(domain, "gmail.com" | "googlemail.com") {
        return Some(format!("{}@{domain}", local.replace('.', "")));
    }
    Some(email)
}

/// Phone as digits only with the country code and no `+` or leading zeros (Meta, Pinterest,
/// Snapchat). Input is the stored E.164 form.
pub fn phone_digits(value: &str) -> Option<String> {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0');
    (digits.len() >= 7).then(|| digits.to_owned())
}

/// Phone in E.164 with the leading `+` (Google, TikTok).
pub fn phone_e164(value: &str) -> Option<String> {
    phone_digits(value).map(|digits| format!("+{digits}"))
}

/// Name for Meta: lower case without whitespace or punctuation (Meta's parameter builder).
pub fn meta_name(value: &str) -> Option<String> {
    let name: String = value
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    (!name.is_empty()).then_some(name)
}

/// City for Meta: lower-case letters only, no spaces, punctuation or digits.
pub fn meta_city(value: &str) -> Option<String> {
    let city: String = value
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect();
    (!city.is_empty()).then_some(city)
}

/// State for Meta, Pinterest and Snapchat: the two-letter code in lower case.
pub fn state_code(value: &str) -> Option<String> {
    let letters: String = value
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect();
    (letters.len() == 2).then_some(letters)
}

/// Zip for Meta: lower case, no spaces, the part before a dash; US codes keep five digits.
pub fn meta_zip(value: &str, country: Option<&str>) -> Option<String> {
    let compact: String = value.to_lowercase().split_whitespace().collect();
    let zip = compact.split('-').next().unwrap_or_default().to_owned();
    let zip = if country.is_some_and(|c| c.eq_ignore_ascii_case("us")) {
        zip.chars().take(5).collect()
    } else {
        zip
    };
    (!zip.is_empty()).then_some(zip)
}

/// Country for Meta, Pinterest and Snapchat: ISO 3166 alpha-2 in lower case.
pub fn country_code(value: &str) -> Option<String> {
    let code = value.trim().to_ascii_lowercase();
    (code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic())).then_some(code)
}

/// Name for Google and Snapchat: lower case, digits and symbols removed, inner spaces kept
/// (Google's user-provided data rules; Snapchat's "no punctuation, UTF-8", so `Raphaël`
/// stays `raphaël`).
pub fn letters_name(value: &str) -> Option<String> {
    let kept: String = value
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic() || c.is_whitespace())
        .collect();
    let name = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    (!name.is_empty()).then_some(name)
}

/// Trimmed and lower-cased text (Pinterest and TikTok names, Snapchat cities).
pub fn lower_text(value: &str) -> Option<String> {
    let text = value.trim().to_lowercase();
    (!text.is_empty()).then_some(text)
}

/// Lower-case letters and digits only: Pinterest's city without spaces or punctuation, and
/// the clear city, state and country TikTok takes.
pub fn compact_lower(value: &str) -> Option<String> {
    let text: String = value
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    (!text.is_empty()).then_some(text)
}

/// Zip for Pinterest: digits only, the part before a dash. Postcodes with letters (UK,
/// Canada) keep their letters in lower case without spaces, since digits alone would merge
/// unrelated codes.
pub fn pinterest_zip(value: &str) -> Option<String> {
    let head = value.split('-').next().unwrap_or_default();
    let zip: String = if head.chars().any(char::is_alphabetic) {
        head.to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect()
    } else {
        head.chars().filter(char::is_ascii_digit).collect()
    };
    (!zip.is_empty()).then_some(zip)
}

/// External id: trimmed and lower-cased before hashing.
pub fn external_id(value: &str) -> Option<String> {
    let id = value.trim().to_lowercase();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL_HASH: &str = "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514";
    const PHONE_DIGITS_HASH: &str =
        "e2bd2ffe3d8da79ec3f8f3f130c79347c398e24df2805976fdc2fa0cf96b5f37";
    const PHONE_PLUS_HASH: &str =
        "0cbf019479241f66c9c60d39e69e06989f108bc47da5b938a87045a615cad4a4";

    #[test]
    fn phone_hash_differs_by_platform_rule() {
        let digits = hash_with("+15555550100", phone_digits);
        let plus = hash_with("+15555550100", phone_e164);

        assert_eq!(digits.as_deref(), Some(PHONE_DIGITS_HASH));
        assert_eq!(plus.as_deref(), Some(PHONE_PLUS_HASH));
    }

    #[test]
    fn prehashed_values_are_not_hashed_twice() {
        let upper = EMAIL_HASH.to_ascii_uppercase();

        assert_eq!(hash_with(EMAIL_HASH, email).as_deref(), Some(EMAIL_HASH));
        assert_eq!(hash_with(&upper, email).as_deref(), Some(EMAIL_HASH));
    }

    #[test]
    fn email_hash_trims_and_lowercases() {
        assert_eq!(
            hash_with(" User@Example.com ", email).as_deref(),
            Some(EMAIL_HASH)
        );
    }

    #[test]
    fn google_email_drops_gmail_dots_only() {
        assert_eq!(
            google_email("first.last@gmail.com").as_deref(),
            Some("firstlast@gmail.com")
        );
        assert_eq!(
            google_email("first.last@googlemail.com").as_deref(),
            Some("firstlast@googlemail.com")
        );
        assert_eq!(
            google_email("first.last@example.com").as_deref(),
            Some("first.last@example.com")
        );
        assert_eq!(
            email("first.last@gmail.com").as_deref(),
            Some("first.last@gmail.com")
        );
    }

    #[test]
    fn meta_address_rules() {
        assert_eq!(meta_city("New York 2").as_deref(), Some("newyork"));
        assert_eq!(state_code(" CA ").as_deref(), Some("ca"));
        assert_eq!(state_code("California"), None);
        assert_eq!(meta_zip("94107-1234", Some("US")).as_deref(), Some("94107"));
        assert_eq!(meta_zip("SW1A 1AA", Some("GB")).as_deref(), Some("sw1a1aa"));
        assert_eq!(country_code("GB").as_deref(), Some("gb"));
        assert_eq!(meta_name(" Mary-Ann ").as_deref(), Some("maryann"));
    }

    #[test]
    fn name_rules_by_platform() {
        assert_eq!(letters_name(" Raphaël 2nd ").as_deref(), Some("raphaël nd"));
        assert_eq!(letters_name("Mary-Ann").as_deref(), Some("maryann"));
        assert_eq!(lower_text(" Mary Ann ").as_deref(), Some("mary ann"));
        assert_eq!(
            compact_lower("San Francisco").as_deref(),
            Some("sanfrancisco")
        );
    }

    #[test]
    fn pinterest_zip_keeps_digits_or_postcode_letters() {
        assert_eq!(pinterest_zip("94107-1234").as_deref(), Some("94107"));
        assert_eq!(pinterest_zip("SW1A 1AA").as_deref(), Some("sw1a1aa"));
    }
}
