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
use redb::{MultimapTableDefinition, ReadableTable, TableDefinition};
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

/// What reading a CAR found: its roots, (multihash, offset, length) per block, how many blocks
/// were not hash-checked, and its length.
#[derive(Debug)]
pub struct Scanned {
    pub roots: Vec<Cid>,
    pub entries: Vec<(Vec<u8>, u64, u64)>,
    pub unverified: u64,
    pub car_bytes: u64,
}

/// Reads the CAR at `path` (checking every block's hash); nothing is stored.
pub fn scan_car(path: &Path) -> anyhow::Result<Scanned> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut reader = CarReader::new(BufReader::with_capacity(1 << 20, file))?;
    let roots = reader.roots().to_vec();
    let mut entries = Vec::new();
    let mut unverified = 0;
    while let Some((section, _data)) = reader.next_block()? {
        if !section.verified {
            unverified += 1;
        }
        entries.push((
            section.cid.hash().to_bytes(),
            section.data_offset,
            section.data_len,
        ));
    }
    Ok(Scanned {
        roots,
        entries,
        unverified,
        car_bytes: reader.position(),
    })
}

/// Indexes a piece's CAR. Indexing the same piece again replaces nothing and adds nothing.
pub fn index_piece(store: &Store, piece_cid: &Cid, path: &Path) -> anyhow::Result<IndexedPiece> {
    let Scanned {
        roots,
        entries,
        unverified,
        car_bytes,
    } = scan_car(path)?;
    let piece = piece_cid.to_string();
    let indexed = IndexedPiece {
        piece_cid: piece.clone(),
        roots: roots.iter().map(|c| c.to_string()).collect(),
        blocks: entries.len() as u64,
        unverified_blocks: unverified,
        car_bytes,
    };
    let txn = store.db.begin_write()?;
    {
        let mut pieces = txn.open_table(PIECES)?;
        if pieces.get(piece.as_str())?.is_none() {
            let mut blocks = txn.open_multimap_table(BLOCKS)?;
            for (multihash, offset, length) in &entries {
                blocks.insert(
                    multihash.as_slice(),
                    format!("{piece}|{offset}|{length}").as_str(),
                )?;
            }
            pieces.insert(piece.as_str(), serde_json::to_vec(&indexed)?.as_slice())?;
        }
    }
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
