//! What the markets process says to the outside: the deal protocols' messages, byte-compatible
//! with Boost ([`wire`]), their framing on libp2p streams ([`codec`]), and the admin API its CLI
//! uses ([`admin`]), and bitswap's messages ([`bitswap`]). Shared by `nelumbo-markets` (the provider side) and `nelumbo client`.

pub mod admin;
pub mod bitswap;
pub mod codec;
pub mod inbound;
pub mod ip_limits;
pub mod p2p;
pub mod wire;

/// The environment variable that holds the markets admin API's connection string.
pub const MARKETS_API_INFO: &str = "MARKETS_API_INFO";

nelumbo_rpc::api_reference!(
    "Markets.",
    "Nelumbo markets API (nelumbo-markets)",
    "markets"
);
