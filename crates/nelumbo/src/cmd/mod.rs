//! The tool's subcommands, one module each.

pub mod proofs;
