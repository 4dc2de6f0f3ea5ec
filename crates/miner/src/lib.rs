//! nelumbo-miner: the hub. It holds the wallet keys, talks to the chain, and serves the spokes
//! and the operator a narrow, authenticated API.
//!
//! Layout: [`repo`] (the repo directory and what `init` records), [`config`] (`config.toml`),
//! [`init`] (keys and the miner actor on chain), [`api`] (the hub API's handlers),
//! [`daemon`] (the `run` process).

pub mod api;
pub mod chain;
pub mod config;
pub mod daemon;
pub mod init;
pub mod repo;
