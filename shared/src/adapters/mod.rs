//! Adapters that need no cloud account: clocks, the in-memory store for unit tests, the
//! embedded store and in-process queue of local mode, and the HTTP and outbox transports.

pub mod clock;
pub mod embedded;
pub mod http;
pub mod local_queue;
pub mod memory;
pub mod outbox;
