//! The `revisit` command line as a library, so tests drive it in-process.

pub mod app;
pub mod aws;
pub mod check_domain;
pub mod logging;
pub mod replay;
pub mod serve;
