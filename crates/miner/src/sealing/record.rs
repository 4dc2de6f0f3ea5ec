//! A sector's record: everything the hub keeps about it, stored as JSON in the database.

use std::path::PathBuf;

use cid::Cid;
use cid::multihash::Multihash;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use nelumbo_chain_api::types::SignedMessage;
use nelumbo_miner_api::types::{SectorLogEntry, SectorState, SectorStatus};
use nelumbo_proofs::PreCommit1Output;
use serde::{Deserialize, Serialize};

/// Log lines kept per sector.
const MAX_LOG: usize = 64;

/// Everything the hub keeps about one sector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SectorRecord {
    pub number: u64,
    pub state: SectorState,
    /// The storage path holding the sector's files.
    pub storage: PathBuf,
    pub ticket_epoch: Option<ChainEpoch>,
    pub ticket: Option<[u8; 32]>,
    /// Kept from pre-commit 1 until pre-commit 2 has recorded CommR.
    pub pre_commit1: Option<PreCommit1Output>,
    pub comm_r: Option<[u8; 32]>,
    pub comm_d: Option<[u8; 32]>,
    pub expiration: Option<ChainEpoch>,
    /// Recorded before it is pushed.
    pub pre_commit_message: Option<SignedMessage>,
    pub pre_commit_epoch: Option<ChainEpoch>,
    pub seed_epoch: Option<ChainEpoch>,
    pub seed: Option<[u8; 32]>,
    /// Kept from commit 2 until the prove-commit has executed.
    pub proof: Option<Vec<u8>>,
    pub commit_message: Option<SignedMessage>,
    pub last_error: Option<String>,
    pub retries: u32,
    pub log: Vec<SectorLogEntry>,
    /// Deal pieces, in offset order (none for committed capacity).
    #[serde(default)]
    pub pieces: Vec<DealPiece>,
    /// While waiting for deals: start sealing at this time (Unix seconds) even if not full.
    #[serde(default)]
    pub wait_until: Option<u64>,
    /// Set once the sector stops taking pieces.
    #[serde(default)]
    pub sealing_started: bool,
}

/// A deal's piece in a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealPiece {
    pub deal_uuid: String,
    pub deal_id: u64,
    #[serde(with = "nelumbo_chain_api::json::cid_obj")]
    pub piece_cid: Cid,
    /// Padded size and offset.
    pub size: u64,
    pub offset: u64,
    pub payload_size: u64,
    pub start_epoch: ChainEpoch,
    pub end_epoch: ChainEpoch,
}

impl SectorRecord {
    pub(super) fn new(number: u64, storage: PathBuf, state: SectorState, message: &str) -> Self {
        let mut record = Self {
            number,
            state,
            storage,
            ticket_epoch: None,
            ticket: None,
            pre_commit1: None,
            comm_r: None,
            comm_d: None,
            expiration: None,
            pre_commit_message: None,
            pre_commit_epoch: None,
            seed_epoch: None,
            seed: None,
            proof: None,
            commit_message: None,
            last_error: None,
            retries: 0,
            log: Vec::new(),
            pieces: Vec::new(),
            wait_until: None,
            sealing_started: false,
        };
        record.note(message.to_string());
        record
    }

    /// Padded bytes used, with alignment padding.
    pub(super) fn end(&self) -> u64 {
        self.pieces.last().map(|p| p.offset + p.size).unwrap_or(0)
    }

    /// The pieces as the proofs library and CommD see them.
    pub(super) fn sector_pieces(&self) -> anyhow::Result<Vec<nelumbo_commp::SectorPiece>> {
        self.pieces
            .iter()
            .map(|p| {
                Ok(nelumbo_commp::SectorPiece {
                    commitment: nelumbo_commp::parse_piece_cid(&p.piece_cid)?.commitment,
                    size: nelumbo_commp::PaddedPieceSize::new(p.size)?,
                })
            })
            .collect()
    }

    pub(super) fn note(&mut self, message: String) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.log.push(SectorLogEntry {
            at,
            state: self.state,
            message,
        });
        if self.log.len() > MAX_LOG {
            self.log.remove(0);
        }
    }

    pub(super) fn move_to(&mut self, state: SectorState, message: String) {
        self.state = state;
        self.note(message);
    }

    pub fn status(&self) -> SectorStatus {
        let message_cid = |m: &Option<SignedMessage>| m.as_ref().and_then(|m| m.cid().ok());
        SectorStatus {
            number: self.number,
            state: self.state,
            pieces: self
                .pieces
                .iter()
                .map(|p| nelumbo_miner_api::types::SectorPieceInfo {
                    piece_cid: p.piece_cid,
                    size: p.size,
                    offset: p.offset,
                    deal_id: Some(p.deal_id),
                })
                .collect(),
            ticket_epoch: self.ticket_epoch,
            comm_r: self.comm_r.as_ref().map(sealed_cid),
            comm_d: self
                .comm_d
                .map(|d| nelumbo_commp::piece_cid_v1(&nelumbo_commp::Commitment(d))),
            pre_commit_message: message_cid(&self.pre_commit_message),
            pre_commit_epoch: self.pre_commit_epoch,
            seed_epoch: self.seed_epoch,
            commit_message: message_cid(&self.commit_message),
            storage: self.storage.display().to_string(),
            last_error: self.last_error.clone(),
            retries: self.retries,
            log: self.log.clone(),
        }
    }
}

/// The CID of a sealed sector's CommR (Filecoin's sealed-commitment codec and hash).
pub fn sealed_cid(comm_r: &[u8; 32]) -> Cid {
    const FIL_COMMITMENT_SEALED: u64 = 0xf102;
    const POSEIDON_BLS12_381_A1_FC1: u64 = 0xb401;
    let digest =
        Multihash::wrap(POSEIDON_BLS12_381_A1_FC1, comm_r).unwrap_or_else(|_| Multihash::default());
    Cid::new_v1(FIL_COMMITMENT_SEALED, digest)
}

/// The CBOR of an address: the entropy of every per-miner randomness draw.
pub fn address_entropy(address: &Address) -> Vec<u8> {
    fvm_ipld_encoding::to_vec(address).unwrap_or_default()
}

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_keep_a_bounded_log() {
        let mut record = SectorRecord::new(3, PathBuf::from("/s"), SectorState::Packing, "x");
        for i in 0..100 {
            record.note(format!("line {i}"));
        }
        assert_eq!(record.log.len(), MAX_LOG);
        let json = serde_json::to_vec(&record).expect("json");
        let back: SectorRecord = serde_json::from_slice(&json).expect("parse");
        assert_eq!(back.log.last().map(|l| l.message.as_str()), Some("line 99"));
        assert_eq!(back.status().number, 3);
    }
}
