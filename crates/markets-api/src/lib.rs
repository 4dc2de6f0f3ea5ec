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

/// The namespace of this API's methods (every wire name starts with it).
pub const API_NAMESPACE: &str = "Markets.";
/// The API's title in its OpenRPC document.
pub const API_TITLE: &str = "Nelumbo markets API (nelumbo-markets)";

/// The API's OpenRPC document, built from its method definitions: what `rpc.discover` answers
/// and what `docs/api/markets.openrpc.json` holds (a test keeps that file current).
pub fn openrpc() -> serde_json::Value {
    nelumbo_rpc::openrpc_document(API_TITLE, &nelumbo_rpc::definitions(API_NAMESPACE))
}

#[cfg(test)]
mod api_reference {
    #[test]
    fn the_checked_in_openrpc_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/api/markets.openrpc.json");
        nelumbo_rpc::check_checked_in(&path, &super::openrpc());
    }
}
