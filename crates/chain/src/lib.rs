//! nelumbo-chain: a local Filecoin devnet that answers the Lotus full-node JSON-RPC API,
//! verifies real proofs (or, when its genesis says so, insecure testing proofs), and persists
//! its state in an embedded database.
//!
//! Layout: [`genesis`] (parameters), [`state`] (the world at one epoch), [`vm`] and [`actors`]
//! (message execution), [`chain`] (head, pool, production, elections), [`store`] (redb),
//! [`api`] (JSON-RPC handlers), [`daemon`] (the process).

pub mod actors;
pub mod api;
pub mod chain;
pub mod daemon;
pub mod error;
pub mod genesis;
pub mod metrics;
pub mod randomness;
pub mod repo;
pub mod state;
pub mod store;
pub mod vm;
