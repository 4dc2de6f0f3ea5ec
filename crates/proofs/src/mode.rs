//! Proof modes: real proofs, or a clearly named insecure testing mode for tests that are not
//! about proofs.
//!
//! An insecure testing proof is a tagged BLAKE2b digest of everything a real proof commits to.
//! It proves nothing about storage and exists only so that tests of deals, markets or chain
//! logic need not wait a minute per seal. The two modes cannot be mixed: every insecure proof
//! starts with [`INSECURE_PROOF_TAG`], a verifier in one mode refuses proofs of the other with
//! an error that says so, and a chain's genesis names its mode.

use std::fmt;
use std::str::FromStr;

use nelumbo_types::{ActorId, Randomness, SectorSize};
use serde::{Deserialize, Serialize};

use crate::error::ProofError;
use crate::post::{PostKind, ProvenSector};
use crate::prover::Prover;
use crate::seal::{Replica, SealedCommitments};

/// The first bytes of every insecure testing proof. A real Groth16 proof never starts with them
/// (it is a serialised curve point).
pub const INSECURE_PROOF_TAG: &[u8; 32] = b"NELUMBO INSECURE TESTING PROOF\0\x01";

/// Which proofs a node makes and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProofMode {
    /// Real Filecoin proofs (`filecoin-proofs-api`).
    Real,
    /// Tagged digests that prove nothing: for tests that are not about proofs.
    InsecureTesting,
}

impl fmt::Display for ProofMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Real => "real",
            Self::InsecureTesting => "insecure-testing",
        })
    }
}

impl FromStr for ProofMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "real" => Ok(Self::Real),
            "insecure-testing" => Ok(Self::InsecureTesting),
            other => Err(format!(
                "unknown proof mode {other:?}: use real or insecure-testing"
            )),
        }
    }
}

/// Whether `proof` is an insecure testing proof.
pub fn is_insecure_proof(proof: &[u8]) -> bool {
    proof.starts_with(INSECURE_PROOF_TAG)
}

fn tagged(domain: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
    state.update(domain.as_bytes());
    for part in parts {
        state.update(&(part.len() as u64).to_be_bytes());
        state.update(part);
    }
    let mut proof = INSECURE_PROOF_TAG.to_vec();
    proof.extend_from_slice(state.finalize().as_bytes());
    proof
}

/// The insecure testing seal proof of a replica.
pub fn insecure_seal_proof(
    replica: &Replica,
    sealed: &SealedCommitments,
    seed: Randomness,
) -> Vec<u8> {
    tagged(
        "seal",
        &[
            &replica.sector_size.bytes().to_be_bytes(),
            &replica.miner.0.to_be_bytes(),
            &replica.number.0.to_be_bytes(),
            &replica.ticket.0,
            &seed.0,
            &sealed.comm_r,
            &sealed.comm_d.0,
        ],
    )
}

/// The insecure testing PoSt proof over `sectors`.
pub fn insecure_post_proof(
    kind: PostKind,
    sector_size: SectorSize,
    miner: ActorId,
    randomness: Randomness,
    sectors: &[ProvenSector],
) -> Vec<u8> {
    let mut sorted = sectors.to_vec();
    sorted.sort_by_key(|s| s.number);
    let mut commitments = Vec::new();
    for s in &sorted {
        commitments.extend_from_slice(&s.number.0.to_be_bytes());
        commitments.extend_from_slice(&s.comm_r);
    }
    let kind = match kind {
        PostKind::Window => "window",
        PostKind::Winning => "winning",
    };
    tagged(
        "post",
        &[
            kind.as_bytes(),
            &sector_size.bytes().to_be_bytes(),
            &miner.0.to_be_bytes(),
            &randomness.0,
            &commitments,
        ],
    )
}

/// Verifies proofs in one mode, refusing proofs of the other.
#[derive(Debug, Clone)]
pub enum ProofVerifier {
    Real(Prover),
    InsecureTesting,
}

impl ProofVerifier {
    pub fn mode(&self) -> ProofMode {
        match self {
            Self::Real(_) => ProofMode::Real,
            Self::InsecureTesting => ProofMode::InsecureTesting,
        }
    }

    fn check_mode(&self, proof: &[u8]) -> Result<(), ProofError> {
        match (self.mode(), is_insecure_proof(proof)) {
            (ProofMode::Real, true) => Err(ProofError::Invalid(
                "an insecure testing proof was given where real proofs are required".into(),
            )),
            (ProofMode::InsecureTesting, false) => Err(ProofError::Invalid(
                "a real proof was given in insecure testing mode, which accepts only insecure testing proofs".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Like [`Prover::verify_seal`], in this verifier's mode.
    pub fn verify_seal(
        &self,
        replica: &Replica,
        sealed: &SealedCommitments,
        seed: Randomness,
        proof: &[u8],
    ) -> Result<bool, ProofError> {
        self.check_mode(proof)?;
        match self {
            Self::Real(prover) => prover.verify_seal(replica, sealed, seed, proof),
            Self::InsecureTesting => Ok(proof == insecure_seal_proof(replica, sealed, seed)),
        }
    }

    /// Like [`Prover::verify_post`], in this verifier's mode.
    pub fn verify_post(
        &self,
        kind: PostKind,
        sector_size: SectorSize,
        miner: ActorId,
        randomness: Randomness,
        sectors: &[ProvenSector],
        proof: &[u8],
    ) -> Result<bool, ProofError> {
        self.check_mode(proof)?;
        match self {
            Self::Real(prover) => {
                prover.verify_post(kind, sector_size, miner, randomness, sectors, proof)
            }
            Self::InsecureTesting => {
                Ok(proof == insecure_post_proof(kind, sector_size, miner, randomness, sectors))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nelumbo_commp::Commitment;
    use nelumbo_types::SectorNumber;

    use super::*;

    #[test]
    fn insecure_proofs_verify_only_in_insecure_mode_and_only_for_their_inputs() {
        let replica = Replica {
            sector_size: SectorSize::KIB_2,
            miner: ActorId(1000),
            number: SectorNumber(1),
            ticket: Randomness([1; 32]),
        };
        let sealed = SealedCommitments {
            comm_r: [2; 32],
            comm_d: Commitment([3; 32]),
        };
        let proof = insecure_seal_proof(&replica, &sealed, Randomness([4; 32]));
        assert!(is_insecure_proof(&proof));
        let insecure = ProofVerifier::InsecureTesting;
        assert_eq!(
            insecure
                .verify_seal(&replica, &sealed, Randomness([4; 32]), &proof)
                .ok(),
            Some(true)
        );
        assert_eq!(
            insecure
                .verify_seal(&replica, &sealed, Randomness([5; 32]), &proof)
                .ok(),
            Some(false)
        );
        let err = insecure
            .verify_seal(&replica, &sealed, Randomness([4; 32]), &[0xa0; 192])
            .expect_err("a real-looking proof was accepted in insecure mode");
        assert!(err.to_string().contains("insecure testing mode"), "{err}");
        assert_eq!(
            "insecure-testing".parse::<ProofMode>(),
            Ok(ProofMode::InsecureTesting)
        );
        assert!("fake".parse::<ProofMode>().is_err());
    }
}
