//! Logging setup: structured `tracing` logs on stderr.
//!
//! Levels mean: ERROR an operator must act; WARN something is degraded but handled (a peer is
//! away, a retry is scheduled); INFO the life of the process and its work; DEBUG detail.
//! `RUST_LOG` overrides the default filter; `NELUMBO_LOG_FORMAT=json` prints one JSON object
//! per line for log shippers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset, for
/// example `"info"` or `"warn,nelumbo_chain=info"`. Calling it twice keeps the first.
pub fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("NELUMBO_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

/// The default filter for daemons: `info`, with the proofs library's per-step logs quieted so
/// operators read the process's own story.
pub const DAEMON_LOG_FILTER: &str = "info,storage_proofs_core=warn,storage_proofs_porep=warn,storage_proofs_post=warn,filecoin_proofs=warn,bellperson=warn";
