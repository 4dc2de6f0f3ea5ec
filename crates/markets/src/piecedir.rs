//! The piece directory, embedded: for every block of every deal's CAR, the piece it is in and
//! where (offset and length of the block's bytes in the piece's unpadded data). Retrieval looks
//! blocks up here; indexing announces from it.
//!
//! Tables live in the markets database. The design's shared PostgreSQL backend (for several
//! markets processes) is not built yet.

use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use cid::Cid;
use nelumbo_car::CarReader;
use redb::{MultimapTableDefinition, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// Block multihash -> "piece CID|offset|length" for each place the block is.
const BLOCKS: MultimapTableDefinition<&[u8], &str> = MultimapTableDefinition::new("piece_blocks");
/// Piece CID -> what indexing found (JSON).
const PIECES: TableDefinition<&str, &[u8]> = TableDefinition::new("pieces");

pub fn create_tables(txn: &redb::WriteTransaction) -> anyhow::Result<()> {
    txn.open_multimap_table(BLOCKS)?;
    txn.open_table(PIECES)?;
    Ok(())
}

/// A piece's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPiece {
    pub piece_cid: String,
    pub roots: Vec<String>,
    pub blocks: u64,
    /// Blocks whose hash function is not one the CAR reader computes (not checked).
    pub unverified_blocks: u64,
    pub car_bytes: u64,
}

/// Where a block is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLocation {
    pub piece_cid: String,
    pub offset: u64,
    pub length: u64,
}

/// Indexes a piece's CAR, block by block as it is read (one transaction: all or nothing).
/// Indexing the same piece again adds nothing.
pub fn index_piece(store: &Store, piece_cid: &Cid, path: &Path) -> anyhow::Result<IndexedPiece> {
    let piece = piece_cid.to_string();
    if let Some(indexed) = self::piece(store, &piece)? {
        return Ok(indexed);
    }
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut reader = CarReader::new(BufReader::with_capacity(1 << 20, file))?;
    let roots: Vec<String> = reader.roots().iter().map(|c| c.to_string()).collect();
    let txn = store.db.begin_write()?;
    let (blocks, unverified) = {
        let mut table = txn.open_multimap_table(BLOCKS)?;
        let (mut blocks, mut unverified) = (0u64, 0u64);
        while let Some((section, _data)) = reader.next_block()? {
            blocks += 1;
            if !section.verified {
                unverified += 1;
            }
            let entry = format!("{piece}|{}|{}", section.data_offset, section.data_len);
            table.insert(section.cid.hash().to_bytes().as_slice(), entry.as_str())?;
        }
        (blocks, unverified)
    };
    let indexed = IndexedPiece {
        piece_cid: piece.clone(),
        roots,
        blocks,
        unverified_blocks: unverified,
        car_bytes: reader.position(),
    };
    txn.open_table(PIECES)?
        .insert(piece.as_str(), serde_json::to_vec(&indexed)?.as_slice())?;
    txn.commit()?;
    Ok(indexed)
}

pub fn piece(store: &Store, piece_cid: &str) -> anyhow::Result<Option<IndexedPiece>> {
    let txn = store.db.begin_read()?;
    let table = txn.open_table(PIECES)?;
    table
        .get(piece_cid)?
        .map(|v| serde_json::from_slice(v.value()).context("a piece index record is corrupt"))
        .transpose()
}

/// Every place a block (by multihash) is.
pub fn locate(store: &Store, multihash: &[u8]) -> anyhow::Result<Vec<BlockLocation>> {
    let txn = store.db.begin_read()?;
    let table = txn.open_multimap_table(BLOCKS)?;
    let mut out = Vec::new();
    for value in table.get(multihash)? {
        let value = value?;
        let mut parts = value.value().split('|');
        let (Some(piece), Some(offset), Some(length)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("a piece directory entry is corrupt");
        };
        out.push(BlockLocation {
            piece_cid: piece.to_string(),
            offset: offset.parse()?,
            length: length.parse()?,
        });
    }
    Ok(out)
}
