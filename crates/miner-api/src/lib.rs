//! The hub's API, as the spokes and the `nelumbo-miner` CLI see it: each method defined once,
//! with its permission, for both the server and the typed client ([`nelumbo_rpc::RpcClient`]).
//!
//! Clients find the hub through the `MINER_API_INFO` environment variable
//! (`TOKEN:/ip4/127.0.0.1/tcp/2345/http`), as Lotus's miner clients do.

pub mod error;
pub mod methods;
pub mod types;

pub use error::ApiError;

/// The environment variable that holds the hub's connection string.
pub const MINER_API_INFO: &str = "MINER_API_INFO";

nelumbo_rpc::api_reference!("Nelumbo.", "Nelumbo hub API (nelumbo-miner)", "hub");

/// The hub API's version: 1.0.0, encoded as Lotus encodes versions (major, minor, patch bytes).
pub const API_VERSION: u32 = 1 << 16;
