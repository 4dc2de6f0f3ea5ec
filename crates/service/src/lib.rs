//! Process lifecycle shared by Nelumbo's daemons: logging, shutdown on signals, health checks,
//! Prometheus metrics, capped backoff for retrying missing peers, repo directories, and the workers registry.

mod backoff;
mod health;
mod http;
mod logging;
mod main_loop;
mod repo;
mod shutdown;
mod workers;

pub use backoff::Backoff;
pub use health::{Health, HealthState, ops_router, public_ops_router};
pub use http::parse_range;
pub use logging::{DAEMON_LOG_FILTER, init_logging};
pub use main_loop::block_on_main;
pub use repo::{
    check_writable, locate_repo, lock_repo, open_database, write_atomic, write_private,
};
pub use shutdown::{shutdown_on_signals, stop_step};
pub use workers::{Worker, Workers};
