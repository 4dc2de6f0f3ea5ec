//! The tool's subcommands, one module each.

pub mod bitswap;
pub mod client;
pub mod commp;
pub mod devnet;
pub mod proofs;
pub mod retrieve;
