//! Filecoin proofs for Nelumbo, around `filecoin-proofs-api` (CPU only): the Groth16 parameter
//! cache and its seeded generation, sealing, WindowPoSt and WinningPoSt, unsealing.
//!
//! Everything that proves or verifies is a method of [`Prover`], which can only be had once the
//! proofs library is configured for the process, and which checks the parameter files an
//! operation needs before the library reads them. Those methods block for seconds to minutes:
//! async callers go through [`Prover::run`], which moves the work to blocking threads.

mod env;
mod error;
mod mode;
pub mod params;
mod post;
mod prover;
mod registry;
mod seal;
mod unseal;

pub use env::{InitError, ProofsConfig, current, default_cache_root, init};
pub use error::ProofError;
pub use mode::{
    INSECURE_PROOF_TAG, ProofMode, ProofVerifier, insecure_post_proof, insecure_seal_proof,
    is_insecure_proof,
};
pub use params::{ParamCache, ParamError, ParamEvent, ParamSeed, ParamStatus};
pub use post::{PostKind, ProvenSector, ProvingSector, winning_post_challenges};
pub use prover::{Prover, prover_id};
pub use registry::{Circuit, CircuitKind, SectorProofs};
pub use seal::{
    AddedPiece, Commit1Output, PreCommit1Output, Replica, SealProof, SealedCommitments,
    SectorPaths, fill_sector,
};
