//! The Lotus-shaped full-node API that Nelumbo's hub uses to reach a chain, whether
//! `nelumbo-chain` or a Lotus node: Lotus JSON types (and the CBOR that gives blocks and
//! messages their CIDs), the method definitions, and helpers shared by both sides.
//!
//! This crate depends on no daemon.

pub mod election;
pub mod fil;
pub mod json;
pub mod methods;
pub mod types;
mod wrappers;

pub use wrappers::*;

/// The network version `nelumbo-chain` reports (actors v18, as a Lotus devnet genesis).
pub const NETWORK_VERSION: u32 = 28;
/// Lotus's full-node API version 2.3.0, as `Filecoin.Version` reports it on `/rpc/v1`.
pub const API_VERSION: u32 = (2 << 16) | (3 << 8);

/// Environment variable holding a full node's connection string, as Lotus tools read it.
pub const FULLNODE_API_INFO: &str = "FULLNODE_API_INFO";

nelumbo_rpc::api_reference!(
    "Filecoin.",
    "Nelumbo devnet chain API (nelumbo-chain, Lotus full-node methods)",
    "chain"
);
