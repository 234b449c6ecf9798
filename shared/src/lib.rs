//! The revisit domain library: storefront events, visitor identity and attribution, enrichment,
//! destination mapping, the ports the Lambdas and the local server plug into, and the adapters
//! that need no cloud account.

pub mod adapters;
pub mod attribution;
pub mod collect;
pub mod config;
pub mod delivery;
pub mod destinations;
pub mod enrich;
pub mod event;
pub mod identity;
pub mod ports;
pub mod profile;
pub mod worker;

pub use event::{CollectedEvent, EventName, VisitorId};
pub use profile::VisitorProfile;
