//! nelumbo-miner: the hub. It holds the wallet keys, talks to the chain, and serves the spokes
//! and the operator a narrow, authenticated API.
//!
//! Layout: [`repo`] (the repo directory and what `init` records), [`config`] (`config.toml`),
//! [`init`] (keys and the miner actor on chain), [`api`] (the hub API's handlers),
//! [`daemon`] (the `run` process), [`db`] (redb: sector records, counters), [`storage`]
//! (sector files and capacity), [`sealing`] (the per-sector state machine), [`proving`]
//! (WindowPoSt), [`mining`] (elections and WinningPoSt), [`pieces`] (verified piece upload), [`reads`] (piece reads and
//! unsealing),
//! [`deals`] (checked, batched deal publishing), [`events`] (the event channel), [`spokes`] (the spokes registry), [`metrics`].

pub mod api;
pub mod chain;
pub mod config;
pub mod daemon;
pub mod db;
pub mod deals;
pub mod events;
pub mod init;
pub mod metrics;
pub mod mining;
pub mod outbox;
pub mod pieces;
pub mod proof_worker;
pub mod proving;
pub mod reads;
pub mod repo;
pub mod sealing;
pub mod spokes;
pub mod status;
pub mod storage;
