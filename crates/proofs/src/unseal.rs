//! Unsealing: recovering unsealed bytes of a range of a sealed sector.

use std::fs::File;
use std::io::Write;

use filecoin_proofs_api::{SectorId, UnpaddedByteIndex, UnpaddedBytesAmount, seal};
use nelumbo_commp::Commitment;

use crate::error::ProofError;
use crate::prover::{Prover, prover_id};
use crate::registry::SectorProofs;
use crate::seal::{Replica, SectorPaths};

impl Prover {
    /// Writes `len` unsealed (payload) bytes starting at unsealed byte `offset` of the sector to
    /// `out`. Offsets and lengths count payload bytes, as piece offsets in a deal do; unsealing
    /// a whole piece is the usual call. Regenerates the sector key, so it costs about as much as
    /// pre-commit 1.
    pub fn unseal_range(
        &self,
        replica: &Replica,
        paths: &SectorPaths,
        comm_d: &Commitment,
        offset: u64,
        len: u64,
        out: impl Write,
    ) -> Result<u64, ProofError> {
        let capacity = replica.sector_size.unpadded().bytes();
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > capacity) {
            return Err(ProofError::Invalid(format!(
                "cannot unseal {len} bytes at offset {offset}: a {} sector holds {capacity} unsealed bytes",
                replica.sector_size
            )));
        }
        let sealed = File::open(&paths.sealed).map_err(|e| {
            ProofError::Invalid(format!("open sealed file {}: {e}", paths.sealed.display()))
        })?;
        let written = seal::unseal_range(
            SectorProofs::for_size(replica.sector_size).seal,
            &paths.cache,
            sealed,
            out,
            prover_id(replica.miner),
            SectorId::from(replica.number.0),
            comm_d.0,
            replica.ticket.0,
            UnpaddedByteIndex(offset),
            UnpaddedBytesAmount(len),
        )
        .map_err(ProofError::library("unseal range"))?;
        Ok(written.0)
    }
}
