//! Visitor identity: normalising and hashing what identifies a person, and reading the platform
//! ids that vendor scripts keep in cookies.

pub mod normalize;
pub mod platform_ids;

pub use normalize::{is_sha256_hex, sha256_hex};
