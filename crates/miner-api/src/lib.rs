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

/// The namespace of this API's methods (every wire name starts with it).
pub const API_NAMESPACE: &str = "Nelumbo.";
/// The API's title in its OpenRPC document.
pub const API_TITLE: &str = "Nelumbo hub API (nelumbo-miner)";

/// The API's OpenRPC document, built from its method definitions: what `rpc.discover` answers
/// and what `docs/api/hub.openrpc.json` holds (a test keeps that file current).
pub fn openrpc() -> serde_json::Value {
    nelumbo_rpc::openrpc_document(API_TITLE, &nelumbo_rpc::definitions(API_NAMESPACE))
}

/// The hub API's version: 1.0.0, encoded as Lotus encodes versions (major, minor, patch bytes).
pub const API_VERSION: u32 = 1 << 16;

#[cfg(test)]
mod api_reference {
    #[test]
    fn the_checked_in_openrpc_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/api/hub.openrpc.json");
        nelumbo_rpc::check_checked_in(&path, &super::openrpc());
    }
}
