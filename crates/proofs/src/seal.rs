//! Sealing: add pieces to an unsealed sector file, pre-commit phases 1 and 2, commit phases 1
//! and 2, and seal verification. Blocking; pre-commit 1 and commit 2 take seconds to minutes.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use filecoin_proofs_api::seal::{
    self, SealCommitPhase1Output, SealPreCommitPhase1Output, SealPreCommitPhase2Output,
};
use filecoin_proofs_api::{PieceInfo, SectorId, UnpaddedBytesAmount};
use nelumbo_commp::{Commitment, SectorPiece, zero_piece_commitment};
use nelumbo_types::{
    ActorId, PaddedPieceSize, Randomness, SectorNumber, SectorSize, UnpaddedPieceSize,
};
use serde::{Deserialize, Serialize};

use crate::error::ProofError;
use crate::prover::{Need, Prover, prover_id};
use crate::registry::{Circuit, CircuitKind, SectorProofs};

/// What makes a replica unique: the sector, its miner and the sealing ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub sector_size: SectorSize,
    pub miner: ActorId,
    pub number: SectorNumber,
    pub ticket: Randomness,
}

impl Replica {
    fn proofs(&self) -> SectorProofs {
        SectorProofs::for_size(self.sector_size)
    }
}

/// The files of one sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorPaths {
    /// fr32-padded piece data, as written by [`Prover::add_piece`].
    pub unsealed: PathBuf,
    /// The replica, written by pre-commit 1 and sealed in place by pre-commit 2.
    pub sealed: PathBuf,
    /// A directory for labels and trees.
    pub cache: PathBuf,
}

/// A piece written into an unsealed sector file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddedPiece {
    pub piece: SectorPiece,
    /// Unpadded bytes written, including the zero alignment before the piece.
    pub written: u64,
}

/// The result of pre-commit 1, kept until pre-commit 2 runs (serialisable, so a pipeline can
/// persist it and resume after a crash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreCommit1Output(SealPreCommitPhase1Output);

/// The commitments a pre-commit puts on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedCommitments {
    /// CommR: the replica commitment.
    pub comm_r: [u8; 32],
    /// CommD: the unsealed data commitment.
    pub comm_d: Commitment,
}

/// The result of commit 1, the input of commit 2 (serialisable, like [`PreCommit1Output`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit1Output(SealCommitPhase1Output);

/// A seal proof (a PoRep SNARK) as it goes on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealProof(pub Vec<u8>);

/// The pieces of a sector, with zero pieces appended so they fill it, as the proofs library
/// expects (a pipeline writes the same zeros into the unsealed file, or leaves them implicit).
pub fn fill_sector(sector_size: SectorSize, pieces: &[SectorPiece]) -> Vec<SectorPiece> {
    let mut filled = pieces.to_vec();
    let mut end = nelumbo_commp::piece_offsets(pieces)
        .last()
        .zip(pieces.last())
        .map(|(offset, piece)| offset + piece.size.bytes())
        .unwrap_or(0);
    while end < sector_size.bytes() {
        let align = if end == 0 {
            sector_size.bytes()
        } else {
            1 << end.trailing_zeros()
        };
        let size = align.min(sector_size.bytes() - end);
        let size = PaddedPieceSize::new(size).unwrap_or(PaddedPieceSize::MIN);
        filled.push(SectorPiece {
            commitment: zero_piece_commitment(size),
            size,
        });
        end += size.bytes();
    }
    filled
}

fn piece_infos(pieces: &[SectorPiece]) -> Result<Vec<PieceInfo>, ProofError> {
    pieces
        .iter()
        .map(|p| {
            PieceInfo::new(
                p.commitment.0,
                UnpaddedBytesAmount(p.size.unpadded().bytes()),
            )
            .map_err(ProofError::library("describe piece"))
        })
        .collect()
}

fn sector_id(number: SectorNumber) -> SectorId {
    SectorId::from(number.0)
}

impl Prover {
    /// Writes one piece, fr32-padded and aligned after `existing` pieces, to `target` (an
    /// unsealed sector file positioned at its end). `source` must yield exactly `size` bytes:
    /// zero-pad a shorter payload.
    pub fn add_piece(
        &self,
        sector_size: SectorSize,
        source: impl Read,
        size: UnpaddedPieceSize,
        existing: &[UnpaddedPieceSize],
        target: impl Read + Write + Seek,
    ) -> Result<AddedPiece, ProofError> {
        let mut end = 0u64;
        for piece in existing {
            end = end.next_multiple_of(piece.padded().bytes()) + piece.padded().bytes();
        }
        let start = end.next_multiple_of(size.padded().bytes());
        if start + size.padded().bytes() > sector_size.bytes() {
            return Err(ProofError::Invalid(format!(
                "a piece of {} padded bytes does not fit a {sector_size} sector already holding {end} padded bytes (pieces are aligned to their size)",
                size.padded()
            )));
        }
        let lengths: Vec<UnpaddedBytesAmount> = existing
            .iter()
            .map(|p| UnpaddedBytesAmount(p.bytes()))
            .collect();
        let (info, written) = seal::add_piece(
            SectorProofs::for_size(sector_size).seal,
            source,
            target,
            UnpaddedBytesAmount(size.bytes()),
            &lengths,
        )
        .map_err(ProofError::library("add piece"))?;
        Ok(AddedPiece {
            piece: SectorPiece {
                commitment: Commitment(info.commitment),
                size: size.padded(),
            },
            written: written.0,
        })
    }

    /// Pre-commit 1: copies the unsealed data to the sealed path, checks it against `pieces`,
    /// and computes the SDR labels into the cache directory.
    pub fn pre_commit1(
        &self,
        replica: &Replica,
        paths: &SectorPaths,
        pieces: &[SectorPiece],
    ) -> Result<PreCommit1Output, ProofError> {
        let infos = piece_infos(&fill_sector(replica.sector_size, pieces))?;
        std::fs::create_dir_all(&paths.cache).map_err(|e| {
            ProofError::Invalid(format!(
                "create cache directory {}: {e}",
                paths.cache.display()
            ))
        })?;
        // The library wants the sealed file to exist.
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&paths.sealed)
            .map_err(|e| {
                ProofError::Invalid(format!(
                    "create sealed file {}: {e}",
                    paths.sealed.display()
                ))
            })?;
        let output = seal::seal_pre_commit_phase1(
            replica.proofs().seal,
            &paths.cache,
            &paths.unsealed,
            &paths.sealed,
            prover_id(replica.miner),
            sector_id(replica.number),
            replica.ticket.0,
            &infos,
        )
        .map_err(ProofError::library("pre-commit phase 1"))?;
        Ok(PreCommit1Output(output))
    }

    /// Pre-commit 2: encodes the replica in place and builds its trees; returns CommR and CommD.
    pub fn pre_commit2(
        &self,
        phase1: PreCommit1Output,
        paths: &SectorPaths,
    ) -> Result<SealedCommitments, ProofError> {
        let SealPreCommitPhase2Output { comm_r, comm_d, .. } =
            seal::seal_pre_commit_phase2(phase1.0, &paths.cache, &paths.sealed)
                .map_err(ProofError::library("pre-commit phase 2"))?;
        Ok(SealedCommitments {
            comm_r,
            comm_d: Commitment(comm_d),
        })
    }

    /// Commit 1: the vanilla proofs for the challenges derived from the interactive `seed`.
    pub fn commit1(
        &self,
        replica: &Replica,
        paths: &SectorPaths,
        seed: Randomness,
        sealed: &SealedCommitments,
        pieces: &[SectorPiece],
    ) -> Result<Commit1Output, ProofError> {
        let infos = piece_infos(&fill_sector(replica.sector_size, pieces))?;
        let pre_commit = SealPreCommitPhase2Output {
            registered_proof: replica.proofs().seal,
            comm_r: sealed.comm_r,
            comm_d: sealed.comm_d.0,
        };
        let output = seal::seal_commit_phase1(
            &paths.cache,
            &paths.sealed,
            prover_id(replica.miner),
            sector_id(replica.number),
            replica.ticket.0,
            seed.0,
            pre_commit,
            &infos,
        )
        .map_err(ProofError::library("commit phase 1"))?;
        Ok(Commit1Output(output))
    }

    /// Commit 2: the SNARK. Uses both cores and several GB of memory for about a minute.
    pub fn commit2(
        &self,
        replica: &Replica,
        phase1: Commit1Output,
    ) -> Result<SealProof, ProofError> {
        self.check(
            Circuit::new(CircuitKind::Porep, replica.sector_size),
            Need::Prove,
        )?;
        let output = seal::seal_commit_phase2(
            phase1.0,
            prover_id(replica.miner),
            sector_id(replica.number),
        )
        .map_err(ProofError::library("commit phase 2"))?;
        Ok(SealProof(output.proof))
    }

    /// Checks a seal proof. `Ok(false)` is a proof that does not verify; an error is a proof
    /// that could not be checked at all (malformed bytes, missing verifying key).
    pub fn verify_seal(
        &self,
        replica: &Replica,
        sealed: &SealedCommitments,
        seed: Randomness,
        proof: &[u8],
    ) -> Result<bool, ProofError> {
        self.check(
            Circuit::new(CircuitKind::Porep, replica.sector_size),
            Need::Verify,
        )?;
        seal::verify_seal(
            replica.proofs().seal,
            sealed.comm_r,
            sealed.comm_d.0,
            prover_id(replica.miner),
            sector_id(replica.number),
            replica.ticket.0,
            seed.0,
            proof,
        )
        .map_err(ProofError::library("verify seal proof"))
    }

    /// Removes the layers and intermediate trees a sealed sector no longer needs, keeping what
    /// proving reads (tree-r-last and p_aux).
    pub fn finalize_cache(&self, paths: &SectorPaths) -> Result<(), ProofError> {
        seal::clear_cache(&paths.cache).map_err(ProofError::library("clear sector cache"))
    }
}
