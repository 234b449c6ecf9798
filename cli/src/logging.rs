//! Log set-up: compact text by default, JSON with `REVISIT_LOG_FORMAT=json`, level from
//! `RUST_LOG` (default `info`). Colours only when standard error is a terminal.

use std::io::IsTerminal as _;

use anyhow::bail;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing. Fails on an unknown
/// `REVISIT_LOG_FORMAT` or an invalid `RUST_LOG`, naming the variable.
pub fn init() -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => match EnvFilter::try_new(&directives) {
            Ok(filter) => filter,
            Err(error) => bail!("invalid setting RUST_LOG: {directives:?} ({error})"),
        },
        Err(_) => EnvFilter::new("info"),
    };
    let json = match std::env::var("REVISIT_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => false,
        Ok("json") => true,
        Ok(other) => bail!("invalid setting REVISIT_LOG_FORMAT: {other:?} must be text or json"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!json && std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
    Ok(())
}
