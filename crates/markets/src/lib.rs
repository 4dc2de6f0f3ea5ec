//! nelumbo-markets: the public spoke. It takes storage deals over Boost's libp2p protocols,
//! pulls and checks their data, indexes it, and hands it to the hub, which publishes, seals and
//! proves. It holds its libp2p identity and nothing that can move funds.

pub mod api;
pub mod ask;
pub mod config;
pub mod daemon;
pub mod deals;
pub mod directory;
pub mod hub;
pub mod indexing;
pub mod init;
pub mod metrics;
pub mod p2p;
pub mod repo;
pub mod retrieval;
pub mod store;

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
