//! Proofs of spacetime: WindowPoSt over a deadline's sectors and WinningPoSt for a block.
//! Blocking; a 2 KiB WinningPoSt takes about 6 s on two cores, a WindowPoSt about 1.5 s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use filecoin_proofs_api::post;
use filecoin_proofs_api::{PrivateReplicaInfo, PublicReplicaInfo, RegisteredPoStProof, SectorId};
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize};

use crate::error::ProofError;
use crate::prover::{Need, Prover, prover_id};
use crate::registry::{Circuit, CircuitKind, SectorProofs};

/// A sealed sector as the prover sees it: its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvingSector {
    pub number: SectorNumber,
    pub comm_r: [u8; 32],
    pub sealed: PathBuf,
    pub cache: PathBuf,
}

/// A sealed sector as a verifier sees it: its commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenSector {
    pub number: SectorNumber,
    pub comm_r: [u8; 32],
}

/// Which PoSt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostKind {
    Window,
    Winning,
}

impl PostKind {
    fn registered(self, size: SectorSize) -> RegisteredPoStProof {
        let proofs = SectorProofs::for_size(size);
        match self {
            PostKind::Window => proofs.window_post,
            PostKind::Winning => proofs.winning_post,
        }
    }

    fn circuit(self, size: SectorSize) -> Circuit {
        match self {
            PostKind::Window => Circuit::new(CircuitKind::WindowPost, size),
            PostKind::Winning => Circuit::new(CircuitKind::WinningPost, size),
        }
    }
}

/// PoSt randomness must be a field element: Lotus clears the top two bits before proving and
/// verifying, and so does Nelumbo.
fn post_randomness(randomness: Randomness) -> [u8; 32] {
    let mut r = randomness.0;
    r[31] &= 0x3f;
    r
}

impl Prover {
    /// Proves `sectors` for a WindowPoSt deadline or a WinningPoSt.
    ///
    /// For WinningPoSt, `sectors` are the challenged sectors (see
    /// [`Prover::winning_post_challenges`]).
    pub fn generate_post(
        &self,
        kind: PostKind,
        sector_size: SectorSize,
        miner: ActorId,
        randomness: Randomness,
        sectors: &[ProvingSector],
    ) -> Result<Vec<u8>, ProofError> {
        if sectors.is_empty() {
            return Err(ProofError::Invalid(
                "a PoSt needs at least one sector".into(),
            ));
        }
        self.check(kind.circuit(sector_size), Need::Prove)?;
        let registered = kind.registered(sector_size);
        let replicas: BTreeMap<SectorId, PrivateReplicaInfo> = sectors
            .iter()
            .map(|s| {
                let info = PrivateReplicaInfo::new(
                    registered,
                    s.comm_r,
                    s.cache.clone(),
                    s.sealed.clone(),
                );
                (SectorId::from(s.number.0), info)
            })
            .collect();
        let randomness = post_randomness(randomness);
        let prover = prover_id(miner);
        let proofs = match kind {
            PostKind::Window => post::generate_window_post(&randomness, &replicas, prover)
                .map_err(ProofError::library("generate WindowPoSt"))?,
            PostKind::Winning => post::generate_winning_post(&randomness, &replicas, prover)
                .map_err(ProofError::library("generate WinningPoSt"))?,
        };
        let [(_, proof)] = <[_; 1]>::try_from(proofs).map_err(|p: Vec<_>| {
            ProofError::Invalid(format!(
                "expected one PoSt proof, the library made {}",
                p.len()
            ))
        })?;
        Ok(proof)
    }

    /// Checks a PoSt proof. `Ok(false)` is a proof that does not verify; an error is a proof
    /// that could not be checked at all.
    pub fn verify_post(
        &self,
        kind: PostKind,
        sector_size: SectorSize,
        miner: ActorId,
        randomness: Randomness,
        sectors: &[ProvenSector],
        proof: &[u8],
    ) -> Result<bool, ProofError> {
        if sectors.is_empty() {
            return Err(ProofError::Invalid(
                "a PoSt covers at least one sector".into(),
            ));
        }
        self.check(kind.circuit(sector_size), Need::Verify)?;
        let registered = kind.registered(sector_size);
        let replicas: BTreeMap<SectorId, PublicReplicaInfo> = sectors
            .iter()
            .map(|s| {
                (
                    SectorId::from(s.number.0),
                    PublicReplicaInfo::new(registered, s.comm_r),
                )
            })
            .collect();
        let randomness = post_randomness(randomness);
        let prover = prover_id(miner);
        match kind {
            PostKind::Window => {
                post::verify_window_post(&randomness, &[(registered, proof)], &replicas, prover)
                    .map_err(ProofError::library("verify WindowPoSt"))
            }
            PostKind::Winning => post::verify_winning_post(&randomness, proof, &replicas, prover)
                .map_err(ProofError::library("verify WinningPoSt")),
        }
    }

    /// See [`winning_post_challenges`].
    pub fn winning_post_challenges(
        &self,
        sector_size: SectorSize,
        miner: ActorId,
        randomness: Randomness,
        sector_count: u64,
    ) -> Result<Vec<u64>, ProofError> {
        winning_post_challenges(sector_size, miner, randomness, sector_count)
    }
}

/// Which of a miner's `sector_count` proving sectors (indexes into its sector set sorted by
/// number) a WinningPoSt with this randomness must prove. Needs no parameters: the chain and the
/// miner both compute it.
pub fn winning_post_challenges(
    sector_size: SectorSize,
    miner: ActorId,
    randomness: Randomness,
    sector_count: u64,
) -> Result<Vec<u64>, ProofError> {
    if sector_count == 0 {
        return Err(ProofError::Invalid(
            "a miner without sectors cannot be challenged".into(),
        ));
    }
    post::generate_winning_post_sector_challenge(
        PostKind::Winning.registered(sector_size),
        &post_randomness(randomness),
        sector_count,
        prover_id(miner),
    )
    .map_err(ProofError::library("derive WinningPoSt challenges"))
}
