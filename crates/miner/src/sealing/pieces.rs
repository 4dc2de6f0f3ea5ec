//! Deal pieces in sectors: placing an uploaded piece (`SectorAddPieceToAny`), waiting for
//! deals, packing the pieces into the unsealed file, and dropping uploaded copies once a
//! sector holds them.

use std::time::Duration;

use anyhow::Context;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::{StateLookupID, StateMarketStorageDeal};
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_miner_api::types::{HubEvent, PieceDealInfo, SectorOffset, SectorState};

use super::Sealing;
use super::record::{DealPiece, SectorRecord, now_secs};

impl Sealing {
    /// `SectorAddPieceToAny`: puts an uploaded deal piece into a sector waiting for deals, or
    /// a new one. Idempotent by deal UUID.
    pub async fn add_piece(&self, info: PieceDealInfo) -> anyhow::Result<SectorOffset> {
        let cx = &self.inner.cx;
        let _guard = self.inner.pledge_lock.lock().await;
        let records = cx.db.sectors()?;
        for record in records.iter().filter(|r| r.state != SectorState::Failed) {
            if let Some(p) = record.pieces.iter().find(|p| p.deal_uuid == info.deal_uuid) {
                return Ok(SectorOffset {
                    sector: record.number,
                    offset: p.offset,
                });
            }
            anyhow::ensure!(
                !record.pieces.iter().any(|p| p.deal_id == info.deal_id),
                "deal {} is already in sector {} under another deal UUID",
                info.deal_id,
                record.number
            );
        }
        // Invariant 4: the deal as the chain has it, not as the spoke says.
        let deal = cx
            .chain
            .rpc
            .call::<StateMarketStorageDeal>((info.deal_id, TipSetKey::head()))
            .await
            .with_context(|| format!("deal {} is not on chain", info.deal_id))?;
        let provider = cx
            .chain
            .rpc
            .call::<StateLookupID>((Addr(deal.proposal.provider), TipSetKey::head()))
            .await?;
        anyhow::ensure!(
            provider.0 == cx.actor,
            "deal {} is with provider {}, not this hub's miner {}",
            info.deal_id,
            deal.proposal.provider,
            cx.actor
        );
        anyhow::ensure!(
            nelumbo_commp::parse_piece_cid(&deal.proposal.piece_cid)?.commitment
                == nelumbo_commp::parse_piece_cid(&info.piece_cid)?.commitment
                && deal.proposal.piece_size == info.piece_size,
            "deal {} is for piece {} of {} bytes, not {} of {}",
            info.deal_id,
            deal.proposal.piece_cid,
            deal.proposal.piece_size,
            info.piece_cid,
            info.piece_size
        );
        anyhow::ensure!(
            deal.state.sector_start_epoch < 0,
            "deal {} is already active (since epoch {})",
            info.deal_id,
            deal.state.sector_start_epoch
        );
        let head = cx.chain.head_height().await?;
        anyhow::ensure!(
            deal.proposal.start_epoch > head,
            "deal {} started at epoch {} and can no longer be activated (the chain is at {head})",
            info.deal_id,
            deal.proposal.start_epoch
        );
        let (start_epoch, end_epoch) = (deal.proposal.start_epoch, deal.proposal.end_epoch);
        let key = nelumbo_commp::piece_cid_v1(
            &nelumbo_commp::parse_piece_cid(&info.piece_cid)?.commitment,
        );
        let stored = cx
            .db
            .piece(&key.to_string())?
            .filter(|p| p.path.is_file())
            .with_context(|| {
                format!(
                    "piece {} has not been uploaded: PUT /pieces/{} first",
                    info.piece_cid, info.piece_cid
                )
            })?;
        anyhow::ensure!(
            stored.piece_size == info.piece_size,
            "piece {} was uploaded as {} padded bytes, the deal says {}",
            info.piece_cid,
            stored.piece_size,
            info.piece_size
        );
        let size = info.piece_size;
        anyhow::ensure!(
            size.is_power_of_two() && size >= 128 && size <= cx.sector_size.bytes(),
            "a piece of {size} padded bytes does not fit a {} sector",
            cx.sector_size
        );
        let piece = |offset: u64| DealPiece {
            deal_uuid: info.deal_uuid.clone(),
            deal_id: info.deal_id,
            piece_cid: key,
            size,
            offset,
            payload_size: stored.payload_size,
            start_epoch,
            end_epoch,
        };
        let open = records.into_iter().find(|r| {
            r.state == SectorState::WaitDeals
                && !r.sealing_started
                && r.end().next_multiple_of(size) + size <= cx.sector_size.bytes()
        });
        let record = match open {
            Some(mut record) => {
                let offset = record.end().next_multiple_of(size);
                record.pieces.push(piece(offset));
                record.note(format!(
                    "deal {} piece {} added at offset {offset}",
                    info.deal_id, key
                ));
                cx.db.put_sector(&record)?;
                record
            }
            None => {
                let sealing = cx
                    .db
                    .sectors()?
                    .iter()
                    .filter(|r| r.state.is_sealing())
                    .count();
                anyhow::ensure!(
                    sealing < cx.config.max_sealing_sectors,
                    "{sealing} sectors are sealing already ([sealing] max_sealing_sectors = {}): try again later",
                    cx.config.max_sealing_sectors
                );
                let root = cx.storage.reserve_new()?;
                let wait_until = now_secs() + cx.config.wait_deals_secs;
                let record = cx
                    .db
                    .allocate_sector(|n| {
                        let mut record = SectorRecord::new(
                            n,
                            root.clone(),
                            SectorState::WaitDeals,
                            "opened for deals",
                        );
                        record.wait_until = Some(wait_until);
                        record.pieces.push(piece(0));
                        record.note(format!(
                            "deal {} piece {} added at offset 0",
                            info.deal_id, key
                        ));
                        record
                    })
                    .inspect_err(|_| cx.storage.release(&root))?;
                cx.events.emit(HubEvent::SectorState {
                    sector: record.number,
                    from: SectorState::WaitDeals,
                    to: SectorState::WaitDeals,
                    message: "opened for deals".into(),
                    at: now_secs(),
                });
                self.update_metrics(&cx.db.sectors()?);
                self.spawn(record.number);
                record
            }
        };
        let offset = record
            .pieces
            .iter()
            .find(|p| p.deal_uuid == info.deal_uuid)
            .map(|p| p.offset)
            .unwrap_or(0);
        tracing::info!(sector = record.number, offset, deal_id = info.deal_id, piece_cid = %key, "deal piece assigned");
        Ok(SectorOffset {
            sector: record.number,
            offset,
        })
    }
}

impl Sealing {
    /// Waits until the sector is full or its wait is over, then stops it taking pieces.
    pub(super) async fn wait_deals(
        &self,
        record: &mut SectorRecord,
    ) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        loop {
            {
                let _guard = self.inner.pledge_lock.lock().await;
                let mut fresh = cx
                    .db
                    .sector(record.number)?
                    .context("the sector's record vanished")?;
                let full = fresh.end() >= cx.sector_size.bytes();
                let due = fresh.wait_until.is_none_or(|t| now_secs() >= t);
                if full || due {
                    fresh.sealing_started = true;
                    cx.db.put_sector(&fresh)?;
                    let why = if full {
                        "full"
                    } else {
                        "the wait for deals is over"
                    };
                    let message = format!("{why}: sealing {} deal pieces", fresh.pieces.len());
                    *record = fresh;
                    return Ok((SectorState::Packing, message));
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Writes the unsealed file: the deal pieces (fr32-padded, with alignment padding), or
    /// nothing for committed capacity (pre-commit 1 fills the rest of the sector with zeros).
    pub(super) async fn pack(
        &self,
        record: &mut SectorRecord,
    ) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let paths = cx.storage.sector_paths(&record.storage, record.number);
        if record.pieces.is_empty() {
            std::fs::write(&paths.unsealed, [])
                .with_context(|| format!("create {}", paths.unsealed.display()))?;
            return Ok((
                SectorState::GetTicket,
                "packed: committed capacity (zeros)".into(),
            ));
        }
        let mut sources = Vec::new();
        for piece in &record.pieces {
            let stored = cx
                .db
                .piece(&piece.piece_cid.to_string())?
                .with_context(|| format!("piece {} is no longer stored", piece.piece_cid))?;
            sources.push((stored.path, piece.payload_size, piece.size));
        }
        let size = cx.sector_size;
        let expected = record.sector_pieces()?;
        let count = sources.len();
        cx.prover
            .run(move |prover| {
                let io = |e: std::io::Error| nelumbo_proofs::ProofError::Invalid(e.to_string());
                let mut unsealed = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&paths.unsealed)
                    .map_err(io)?;
                let mut existing = Vec::new();
                for ((path, payload, padded), want) in sources.into_iter().zip(&expected) {
                    let file = std::fs::File::open(&path).map_err(io)?;
                    let unpadded = nelumbo_commp::PaddedPieceSize::new(padded)
                        .map_err(|e| nelumbo_proofs::ProofError::Invalid(e.to_string()))?
                        .unpadded();
                    let source = std::io::Read::chain(
                        std::io::Read::take(file, payload),
                        std::io::Read::take(std::io::repeat(0), unpadded.bytes() - payload),
                    );
                    let added =
                        prover.add_piece(size, source, unpadded, &existing, &mut unsealed)?;
                    if added.piece.commitment != want.commitment {
                        return Err(nelumbo_proofs::ProofError::Invalid(format!(
                            "{} does not hold the piece it was stored as",
                            path.display()
                        )));
                    }
                    existing.push(unpadded);
                }
                unsealed.sync_all().map_err(io)?;
                Ok(())
            })
            .await?;
        Ok((
            SectorState::GetTicket,
            format!("packed {count} deal pieces"),
        ))
    }

    /// Deletes the uploaded copies of this sector's pieces that no other unsealed sector still
    /// needs: the sector's unsealed copy (or unsealing) serves them from now on.
    pub(super) async fn drop_staged_pieces(&self, record: &SectorRecord) -> anyhow::Result<()> {
        let cx = &self.inner.cx;
        // Under the lock that places pieces, so none is placed on a copy being deleted.
        let _guard = self.inner.pledge_lock.lock().await;
        let others = cx.db.sectors()?;
        for piece in &record.pieces {
            let needed = others.iter().any(|r| {
                r.number != record.number
                    && matches!(r.state, SectorState::WaitDeals | SectorState::Packing)
                    && r.pieces.iter().any(|p| p.piece_cid == piece.piece_cid)
            });
            if !needed && let Some(stored) = cx.db.piece(&piece.piece_cid.to_string())? {
                let _ = std::fs::remove_file(&stored.path);
            }
        }
        Ok(())
    }
}
