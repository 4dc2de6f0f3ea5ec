//! The piece directory: for every block of every deal's data, the piece it is in and where (the
//! offset and length of the block's bytes in the piece's unpadded data), and for every piece its
//! blocks in CAR order. Retrieval looks blocks up here; indexing advertises from it.
//!
//! One trait, [`PieceDirectory`], two backends:
//! - [`Embedded`] (redb, a file in the markets repo): the default, for one markets process;
//! - [`Postgres`] (PostgreSQL, or YugabyteDB's YSQL): shared by any number of markets
//!   processes, so retrieval replicas behind a load balancer all find every block.
//!
//! Both keep pieces by a small integer id, so a block's location is three integers rather than a
//! piece CID string per block, and both pass the same test suite (`tests/suite.rs`). Every call
//! blocks (a commit waits on a disk or a server): async code calls them on the blocking pool.

mod embedded;
pub mod local;
pub mod migrations;
mod postgres;

use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use cid::Cid;
use nelumbo_car::CarReader;
use serde::{Deserialize, Serialize};

pub use embedded::Embedded;
pub use postgres::{Postgres, PostgresOptions, is_transient};

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

/// One block of a piece, as indexing finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub multihash: Vec<u8>,
    pub offset: u64,
    pub length: u64,
    /// Whether its bytes were checked against its CID.
    pub verified: bool,
}

/// The blocks of one piece, in CAR order. A backend may read them more than once (a PostgreSQL
/// transaction that must be retried starts again from a fresh source).
pub trait BlockSource {
    fn roots(&self) -> Vec<String>;
    fn next_block(&mut self) -> anyhow::Result<Option<Block>>;
    /// The bytes read so far (after the last block: the CAR's size).
    fn bytes_read(&self) -> u64;
}

/// Opens a fresh [`BlockSource`] for a piece.
pub type OpenSource<'a> = dyn Fn() -> anyhow::Result<Box<dyn BlockSource>> + 'a;

/// The longest multihash indexed (a SHA-256 multihash is 34 bytes; the lists store a one-byte
/// length).
pub const MAX_MULTIHASH: usize = 127;

/// Blocks written per batch (per redb transaction, per PostgreSQL `COPY`), and multihashes per
/// stored block list row.
pub const BATCH_BLOCKS: usize = 8192;

pub trait PieceDirectory: Send + Sync {
    /// Which backend this is, for logs and status ("embedded" or "postgres").
    fn backend(&self) -> &'static str;

    /// Indexes a piece from its blocks. Indexing a piece already indexed reads nothing and
    /// returns its record; an interrupted indexing is finished by the next one, and a piece is
    /// listed ([`PieceDirectory::piece`]) only once all its blocks are in.
    fn add_piece(&self, piece_cid: &str, open: &OpenSource<'_>) -> anyhow::Result<IndexedPiece>;

    /// A piece's record, if it is indexed.
    fn piece(&self, piece_cid: &str) -> anyhow::Result<Option<IndexedPiece>>;

    /// The multihashes of a piece's blocks in the order of its CAR (duplicates kept), or `None`
    /// when the piece is not indexed.
    fn multihashes(&self, piece_cid: &str) -> anyhow::Result<Option<Vec<Vec<u8>>>>;

    /// Every place a block (by multihash) is.
    fn locate(&self, multihash: &[u8]) -> anyhow::Result<Vec<BlockLocation>>;

    /// How many pieces are indexed.
    fn piece_count(&self) -> anyhow::Result<u64>;
}

/// Indexes a piece's CAR file (blocking: call it off the async runtime).
pub fn index_car(
    directory: &dyn PieceDirectory,
    piece_cid: &Cid,
    car: &Path,
) -> anyhow::Result<IndexedPiece> {
    let open = || -> anyhow::Result<Box<dyn BlockSource>> { Ok(Box::new(CarSource::open(car)?)) };
    directory.add_piece(&piece_cid.to_string(), &open)
}

/// A CAR file's blocks.
pub struct CarSource {
    reader: CarReader<BufReader<std::fs::File>>,
}

impl std::fmt::Debug for CarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarSource")
            .field("position", &self.reader.position())
            .finish()
    }
}

impl CarSource {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let reader = CarReader::new(BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("read the CAR {}", path.display()))?;
        Ok(Self { reader })
    }
}

impl BlockSource for CarSource {
    fn roots(&self) -> Vec<String> {
        self.reader.roots().iter().map(|c| c.to_string()).collect()
    }

    fn next_block(&mut self) -> anyhow::Result<Option<Block>> {
        let Some((section, _data)) = self.reader.next_block()? else {
            return Ok(None);
        };
        Ok(Some(Block {
            multihash: section.cid.hash().to_bytes(),
            offset: section.data_offset,
            length: section.data_len,
            verified: section.verified,
        }))
    }

    fn bytes_read(&self) -> u64 {
        self.reader.position()
    }
}

/// Blocks given as a list (an upgrade moving an older index, tests).
#[derive(Debug)]
pub struct ListSource {
    roots: Vec<String>,
    blocks: std::vec::IntoIter<Block>,
    car_bytes: u64,
}

impl ListSource {
    /// A piece with these roots, blocks (in CAR order) and CAR size.
    pub fn new(roots: Vec<String>, blocks: Vec<Block>, car_bytes: u64) -> Self {
        Self {
            roots,
            blocks: blocks.into_iter(),
            car_bytes,
        }
    }
}

impl BlockSource for ListSource {
    fn roots(&self) -> Vec<String> {
        self.roots.clone()
    }

    fn next_block(&mut self) -> anyhow::Result<Option<Block>> {
        Ok(self.blocks.next())
    }

    fn bytes_read(&self) -> u64 {
        self.car_bytes
    }
}

/// Marks an error as the data's fault (a CAR that cannot be read, a block the directory cannot
/// keep), as against the directory's (a database that is down): a deal fails on the first and
/// waits out the second.
#[derive(Debug, Clone, Copy)]
pub struct BadData;

impl std::fmt::Display for BadData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the piece's data cannot be indexed")
    }
}

/// Whether an indexing error is the data's fault ([`BadData`]).
pub fn is_bad_data(error: &anyhow::Error) -> bool {
    error.downcast_ref::<BadData>().is_some()
}

/// Reads a source to its end in batches of [`BATCH_BLOCKS`], calling `write` with each batch
/// and its number, and returns the piece's record.
pub(crate) fn read_batches(
    piece_cid: &str,
    source: anyhow::Result<Box<dyn BlockSource>>,
    mut write: impl FnMut(u64, &[Block]) -> anyhow::Result<()>,
) -> anyhow::Result<IndexedPiece> {
    let mut source = source.context(BadData)?;
    let roots = source.roots();
    let (mut blocks, mut unverified, mut batch_no) = (0u64, 0u64, 0u64);
    let mut batch: Vec<Block> = Vec::with_capacity(BATCH_BLOCKS);
    loop {
        let next = source.next_block().context(BadData)?;
        let done = next.is_none();
        if let Some(block) = next {
            if block.multihash.len() > MAX_MULTIHASH {
                return Err(anyhow::anyhow!(
                    "block {blocks} of piece {piece_cid} has a multihash of {} bytes (at most {MAX_MULTIHASH} are indexed)",
                    block.multihash.len()
                )
                .context(BadData));
            }
            blocks += 1;
            if !block.verified {
                unverified += 1;
            }
            batch.push(block);
        }
        if batch.len() >= BATCH_BLOCKS || (done && !batch.is_empty()) {
            write(batch_no, &batch)?;
            batch_no += 1;
            batch.clear();
        }
        if done {
            break;
        }
    }
    Ok(IndexedPiece {
        piece_cid: piece_cid.to_string(),
        roots,
        blocks,
        unverified_blocks: unverified,
        car_bytes: source.bytes_read(),
    })
}

/// A stored list of multihashes: each a one-byte length and its bytes.
pub(crate) fn encode_list<'a>(hashes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut list = Vec::new();
    for hash in hashes {
        list.push(hash.len() as u8);
        list.extend_from_slice(hash);
    }
    list
}

/// Appends the multihashes of a stored list to `out`.
pub(crate) fn decode_list(mut list: &[u8], out: &mut Vec<Vec<u8>>) -> anyhow::Result<()> {
    while let Some((&len, tail)) = list.split_first() {
        let len = len as usize;
        anyhow::ensure!(tail.len() >= len, "a stored block list is corrupt");
        out.push(tail[..len].to_vec());
        list = &tail[len..];
    }
    Ok(())
}
