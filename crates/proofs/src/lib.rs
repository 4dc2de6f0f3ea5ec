//! Filecoin proofs for Nelumbo, around `filecoin-proofs-api` (CPU only): the Groth16 parameter
//! cache and its seeded generation, sealing, WindowPoSt and WinningPoSt, unsealing.
//!
//! Everything here is blocking and CPU-heavy (seconds to minutes); async callers use the
//! wrappers that run the work on blocking threads.

mod env;
pub mod params;
mod registry;

pub use env::{default_cache_root, init, current, InitError, ProofsConfig};
pub use params::{ParamCache, ParamError, ParamEvent, ParamSeed, ParamStatus};
pub use registry::{Circuit, CircuitKind, SectorProofs};
