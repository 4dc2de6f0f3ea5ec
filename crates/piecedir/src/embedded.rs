//! The embedded backend: a redb file of its own (`piecedir.redb` in the markets repo).
//!
//! Pieces get ids from a counter; a block's place is `(piece id, offset, length)` in a multimap
//! keyed by multihash, so indexing the same block twice stores it once. Batches are separate
//! write transactions (redb has one writer at a time, and a transaction held for a whole CAR
//! would stall every other write), and the piece's record is written last: an interrupted
//! indexing leaves blocks under the piece's id but no record, and the next indexing writes the
//! same blocks again, which adds nothing.

use std::path::Path;

use anyhow::Context;
use redb::{
    Database, MultimapTableDefinition, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::{BlockLocation, IndexedPiece, OpenSource, PieceDirectory};

/// Piece CID -> its id.
const PIECE_IDS: TableDefinition<&str, u64> = TableDefinition::new("piece_ids");
/// Piece id -> piece CID.
const PIECE_CIDS: TableDefinition<u64, &str> = TableDefinition::new("piece_cids");
/// Piece id -> its record (JSON), written once every block is in.
const PIECES: TableDefinition<u64, &[u8]> = TableDefinition::new("pieces");
/// Block multihash -> (piece id, offset, length) for each place the block is.
const BLOCKS: MultimapTableDefinition<&[u8], (u64, u64, u64)> =
    MultimapTableDefinition::new("blocks");
/// (piece id, batch number) -> the multihashes of that batch of the piece's blocks, in CAR
/// order ([`crate::encode_list`]).
const LISTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("block_lists");
/// Counters: the next piece id.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_piece_id";

#[derive(Debug)]
pub struct Embedded {
    db: Database,
}

impl Embedded {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = nelumbo_service::open_database(path)
            .with_context(|| format!("open the piece directory {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(PIECE_IDS)?;
        txn.open_table(PIECE_CIDS)?;
        txn.open_table(PIECES)?;
        txn.open_multimap_table(BLOCKS)?;
        txn.open_table(LISTS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// The piece's id, given it one if it has none.
    fn piece_id(&self, piece_cid: &str) -> anyhow::Result<u64> {
        if let Some(id) = self
            .db
            .begin_read()?
            .open_table(PIECE_IDS)?
            .get(piece_cid)?
        {
            return Ok(id.value());
        }
        let txn = self.db.begin_write()?;
        let id = {
            let mut ids = txn.open_table(PIECE_IDS)?;
            let existing = ids.get(piece_cid)?.map(|v| v.value());
            match existing {
                Some(id) => id,
                None => {
                    let mut meta = txn.open_table(META)?;
                    let id = meta.get(NEXT_ID)?.map(|v| v.value()).unwrap_or(1);
                    meta.insert(NEXT_ID, id + 1)?;
                    ids.insert(piece_cid, id)?;
                    txn.open_table(PIECE_CIDS)?.insert(id, piece_cid)?;
                    id
                }
            }
        };
        txn.commit()?;
        Ok(id)
    }

    fn record(&self, id: u64) -> anyhow::Result<Option<IndexedPiece>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PIECES)?;
        table
            .get(id)?
            .map(|v| serde_json::from_slice(v.value()).context("a piece record is corrupt"))
            .transpose()
    }
}

impl PieceDirectory for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn add_piece(&self, piece_cid: &str, open: &OpenSource<'_>) -> anyhow::Result<IndexedPiece> {
        if let Some(indexed) = self.piece(piece_cid)? {
            return Ok(indexed);
        }
        let id = self.piece_id(piece_cid)?;
        let indexed = crate::read_batches(piece_cid, open(), |batch_no, batch| {
            let txn = self.db.begin_write()?;
            {
                let list = crate::encode_list(batch.iter().map(|b| b.multihash.as_slice()));
                txn.open_table(LISTS)?
                    .insert((id, batch_no), list.as_slice())?;
                let mut blocks = txn.open_multimap_table(BLOCKS)?;
                for block in batch {
                    blocks.insert(block.multihash.as_slice(), (id, block.offset, block.length))?;
                }
            }
            txn.commit()?;
            Ok(())
        })?;
        let txn = self.db.begin_write()?;
        {
            // A piece indexed before with more blocks than now would leave stale lists: drop
            // any list past the last batch.
            let mut lists = txn.open_table(LISTS)?;
            let batches = indexed.blocks.div_ceil(crate::BATCH_BLOCKS as u64);
            let stale: Vec<u64> = lists
                .range((id, batches)..=(id, u64::MAX))?
                .map(|e| e.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            for batch_no in stale {
                lists.remove((id, batch_no))?;
            }
            txn.open_table(PIECES)?
                .insert(id, serde_json::to_vec(&indexed)?.as_slice())?;
        }
        txn.commit()?;
        Ok(indexed)
    }

    fn piece(&self, piece_cid: &str) -> anyhow::Result<Option<IndexedPiece>> {
        let id = {
            let txn = self.db.begin_read()?;
            let ids = txn.open_table(PIECE_IDS)?;
            ids.get(piece_cid)?.map(|v| v.value())
        };
        match id {
            Some(id) => self.record(id),
            None => Ok(None),
        }
    }

    fn multihashes(&self, piece_cid: &str) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        let txn = self.db.begin_read()?;
        let Some(id) = txn
            .open_table(PIECE_IDS)?
            .get(piece_cid)?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let Some(record) = txn.open_table(PIECES)?.get(id)? else {
            return Ok(None);
        };
        let indexed: IndexedPiece =
            serde_json::from_slice(record.value()).context("a piece record is corrupt")?;
        let mut out = Vec::with_capacity(indexed.blocks as usize);
        for entry in txn.open_table(LISTS)?.range((id, 0)..=(id, u64::MAX))? {
            let (_, list) = entry?;
            crate::decode_list(list.value(), &mut out)?;
        }
        anyhow::ensure!(
            out.len() as u64 == indexed.blocks,
            "piece {piece_cid} lists {} blocks but its record says {}",
            out.len(),
            indexed.blocks
        );
        Ok(Some(out))
    }

    fn locate(&self, multihash: &[u8]) -> anyhow::Result<Vec<BlockLocation>> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_multimap_table(BLOCKS)?;
        let cids = txn.open_table(PIECE_CIDS)?;
        let mut out = Vec::new();
        for place in blocks.get(multihash)? {
            let (id, offset, length) = place?.value();
            let piece_cid = cids
                .get(id)?
                .context("a block names a piece id with no piece")?
                .value()
                .to_string();
            out.push(BlockLocation {
                piece_cid,
                offset,
                length,
            });
        }
        Ok(out)
    }

    fn piece_count(&self) -> anyhow::Result<u64> {
        Ok(self.db.begin_read()?.open_table(PIECES)?.len()?)
    }
}
