//! Normalisation of personal identifiers to the one stored form per kind. Destinations derive
//! their own hashed forms from these (see `destinations::hashing`).

use sha2::{Digest, Sha256};

/// Trims, lower-cases and validates an email address; `None` when it is not an address.
///
/// Dots and `+tags` are kept: removing them is a per-platform rule (Google's), not identity.
pub fn email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    (local_ok && domain_ok).then_some(email)
}

/// Parses a phone number with libphonenumber and writes it in E.164 (`+15555550100`).
///
/// `region` is the ISO 3166 alpha-2 country used for national formats such as
/// `(555) 555-0100`. A number is kept when it matches its country's general number pattern
/// (length and leading digits). That check is looser than libphonenumber's `is_valid`, which
/// also requires an assigned range and so drops the reserved 555-01xx numbers that stores use
/// for testing. Anything else, such as `12345`, gives `None`.
pub fn phone_e164(raw: &str, region: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let country = region
        .trim()
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .ok();
    let number = phonenumber::parse(country, trimmed).ok()?;
    if !phonenumber::is_valid(&number) && !matches_general_pattern(&number) {
        return None;
    }
    Some(number.format().mode(phonenumber::Mode::E164).to_string())
}

fn matches_general_pattern(number: &phonenumber::PhoneNumber) -> bool {
    let national = number.national().to_string();
    let code = number.code().value();
    phonenumber::metadata::DATABASE
        .by_code(&code)
        .unwrap_or_default()
        .iter()
        .any(|metadata| metadata.descriptors().general().is_match(&national))
}

/// Normalises an ISO 3166 alpha-2 country code to upper case; `None` for anything else.
pub fn country_code(raw: &str) -> Option<String> {
    let code = raw.trim().to_ascii_uppercase();
    let valid = code.len() == 2 && code.parse::<phonenumber::country::Id>().is_ok();
    valid.then_some(code)
}

/// Trims a free-text field and collapses inner whitespace; `None` when nothing is left.
pub fn text(raw: &str) -> Option<String> {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (!collapsed.is_empty()).then_some(collapsed)
}

/// Whether a value is already a SHA-256 digest in hex, so that it is passed on, not re-hashed.
pub fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 of the UTF-8 bytes of `value`, as lowercase hex.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_trims_and_lowercases_but_keeps_tags_and_dots() {
        let normalised = email("  User.Name+Promo@Example.COM ");

        assert_eq!(normalised.as_deref(), Some("user.name+promo@example.com"));
        assert_eq!(
            sha256_hex("user.name+promo@example.com"),
            "824a8949cf66140e376061c1980be391c1987ca952f652414e97003e239416fa"
        );
    }

    #[test]
    fn email_rejects_non_addresses() {
        for raw in [
            "",
            "user",
            "user@",
            "@example.com",
            "user@example",
            "a b@example.com",
        ] {
            assert_eq!(email(raw), None, "{raw:?} should be rejected");
        }
    }

    #[test]
    fn phone_uses_region_for_national_formats() {
        assert_eq!(
            phone_e164("(555) 555-0100", "US").as_deref(),
            Some("+15555550100")
        );
        assert_eq!(
            phone_e164("07700 900123", "GB").as_deref(),
            Some("+447700900123")
        );
        assert_eq!(
            phone_e164("+1 (555) 555-0100", "GB").as_deref(),
            Some("+15555550100")
        );
    }

    #[test]
    fn phone_rejects_invalid_numbers() {
        assert_eq!(phone_e164("12345", "US"), None);
        assert_eq!(phone_e164("not a phone", "US"), None);
        assert_eq!(phone_e164("", "US"), None);
    }

    #[test]
    fn sha256_hex_detection() {
        assert!(is_sha256_hex(&sha256_hex("user@example.com")));
        assert!(!is_sha256_hex("user@example.com"));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }

    #[test]
    fn country_code_accepts_alpha2_only() {
        assert_eq!(country_code(" gb ").as_deref(), Some("GB"));
        assert_eq!(country_code("United Kingdom"), None);
        assert_eq!(country_code("ZZ"), None);
    }
}
