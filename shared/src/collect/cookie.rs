//! The visitor cookie: a random visitor id signed with the deployment secret, set by the server
//! for one year and scoped to the store's registrable domain.

use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::event::VisitorId;

/// One year in seconds: the visitor cookie's `Max-Age`.
pub const ONE_YEAR_SECS: i64 = 365 * 86_400;

/// Issues and reads the server-set visitor cookie.
#[derive(Clone)]
pub struct VisitorCookie {
    name: String,
    key: Vec<u8>,
    domain: Option<String>,
}

impl std::fmt::Debug for VisitorCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorCookie")
            .field("name", &self.name)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl VisitorCookie {
    /// A cookie named `name` for the site at `site_host`, signed with `key`.
    pub fn new(name: &str, key: &[u8], site_host: &str) -> Self {
        Self {
            name: name.to_owned(),
            key: key.to_vec(),
            domain: cookie_domain(site_host),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `Domain` attribute, or `None` for a host-only cookie.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// Reads the visitor id from a `Cookie` header. A missing, malformed or unsigned value
    /// gives `None`, so the caller mints a new id.
    pub fn read(&self, cookie_header: Option<&str>) -> Option<VisitorId> {
        let header = cookie_header?;
        Cookie::split_parse(header)
            .filter_map(Result::ok)
            .filter(|cookie| cookie.name() == self.name)
            .find_map(|cookie| self.verify(cookie.value()))
    }

    /// The `Set-Cookie` value that (re)issues `visitor_id` for one more year.
    pub fn issue(&self, visitor_id: &VisitorId) -> String {
        let value = format!("{visitor_id}.{}", self.sign(visitor_id.as_str()));
        let mut cookie = Cookie::build((self.name.clone(), value))
            .max_age(cookie::time::Duration::seconds(ONE_YEAR_SECS))
            .path("/")
            .secure(true)
            .http_only(true)
            .same_site(SameSite::Lax);
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        cookie.build().to_string()
    }

    /// The visitor id of a browser known only by a platform client id (Shopify's pixel
    /// `clientId`): the first 128 bits of an HMAC of the prefixed client id, so one client id
    /// always gives one visitor and nobody without the key can link the two. The prefix keeps
    /// these MACs apart from cookie signatures, which cover bare 32-digit ids.
    pub fn visitor_for_client_id(&self, client_id: &str) -> VisitorId {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(b"client-id:");
        mac.update(client_id.as_bytes());
        let id = hex::encode(&mac.finalize().into_bytes()[..16]);
        VisitorId::parse(&id).expect("32 lowercase hex digits form a visitor id")
    }

    fn sign(&self, id: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn verify(&self, value: &str) -> Option<VisitorId> {
        let (id, signature) = value.split_once('.')?;
        let id = VisitorId::parse(id)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(id.as_str().as_bytes());
        let expected = hex::decode(signature).ok()?;
        mac.verify_truncated_left(&expected).ok()?;
        (expected.len() == 16).then_some(id)
    }
}

/// The `Domain` for a cookie set by `host`: its registrable domain by the Public Suffix List,
/// or `None` (host-only) for IP addresses, single-label hosts and hosts under a platform
/// suffix from the list's private section such as `myshopify.com` or `cloudfront.net`, where
/// the store does not own the parent domain.
pub fn cookie_domain(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
        return None;
    }
    let suffix = psl::suffix(host.as_bytes())?;
    if suffix.typ() == Some(psl::Type::Private) {
        return None;
    }
    let domain = psl::domain(host.as_bytes())?;
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_owned)
}

/// The `fbc` subdomain index for cookies scoped as this collector scopes them: the number of
/// dots in the cookie's domain (1 for `shop.example`, 2 for host-only `www.shop.example`).
pub fn fbc_subdomain_index(host: &str) -> usize {
    let scope = cookie_domain(host).unwrap_or_else(|| host.to_ascii_lowercase());
    scope.matches('.').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie() -> VisitorCookie {
        VisitorCookie::new(
            "rv_uid",
            b"test-secret-test-secret-test-secret",
            "www.shop.example",
        )
    }

    #[test]
    fn issued_cookie_has_every_attribute() {
        let id = VisitorId::parse("0123456789abcdef0123456789abcdef").expect("valid id");

        let header = cookie().issue(&id);

        assert!(header.starts_with("rv_uid=0123456789abcdef0123456789abcdef."));
        for attribute in [
            "Max-Age=31536000",
            "Path=/",
            "Domain=shop.example",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
        ] {
            assert!(header.contains(attribute), "{header} lacks {attribute}");
        }
    }

    #[test]
    fn read_accepts_only_signed_ids() {
        let id = VisitorId::random();
        let issued = cookie().issue(&id);
        let pair = issued.split(';').next().expect("name=value first");

        assert_eq!(
            cookie().read(Some(&format!("other=1; {pair}"))),
            Some(id.clone())
        );
        let forged = format!("rv_uid={id}.00000000000000000000000000000000");
        assert_eq!(cookie().read(Some(&forged)), None);
        assert_eq!(cookie().read(Some("rv_uid=not-an-id")), None);
        assert_eq!(cookie().read(Some(&format!("rv_uid={id}"))), None);
        assert_eq!(cookie().read(None), None);
        let other_key = VisitorCookie::new("rv_uid", b"another-key", "www.shop.example");
        assert_eq!(other_key.read(Some(pair)), None);
    }

    #[test]
    fn client_id_gives_stable_keyed_visitor() {
        let first = cookie().visitor_for_client_id("ece6cea2-0914-4dcd-8345-8d64ce97b76b");
        let again = cookie().visitor_for_client_id("ece6cea2-0914-4dcd-8345-8d64ce97b76b");
        let other_client = cookie().visitor_for_client_id("another-client");
        let other_key = VisitorCookie::new("rv_uid", b"another-key", "www.shop.example")
            .visitor_for_client_id("ece6cea2-0914-4dcd-8345-8d64ce97b76b");

        assert_eq!(first, again);
        assert_ne!(first, other_client);
        assert_ne!(first, other_key);
    }

    #[test]
    fn cookie_domain_follows_public_suffix_list() {
        assert_eq!(
            cookie_domain("www.shop.example").as_deref(),
            Some("shop.example")
        );
        assert_eq!(cookie_domain("t.shop.co.uk").as_deref(), Some("shop.co.uk"));
        assert_eq!(cookie_domain("store-a.myshopify.com"), None);
        assert_eq!(cookie_domain("abc.cloudfront.net"), None);
        assert_eq!(cookie_domain("127.0.0.1"), None);
        assert_eq!(cookie_domain("localhost"), None);
    }

    #[test]
    fn fbc_index_counts_dots_of_cookie_scope() {
        assert_eq!(fbc_subdomain_index("www.shop.example"), 1);
        assert_eq!(fbc_subdomain_index("store-a.myshopify.com"), 2);
    }
}
