//! Process lifecycle shared by Nelumbo's daemons: logging, shutdown on signals, health checks,
//! Prometheus metrics, and capped backoff for retrying missing peers.

mod backoff;
mod health;
mod logging;
mod shutdown;

pub use backoff::Backoff;
pub use health::{Health, HealthState, ops_router};
pub use logging::init_logging;
pub use shutdown::shutdown_on_signals;
