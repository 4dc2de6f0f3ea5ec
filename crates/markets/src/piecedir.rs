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
use redb::{MultimapTableDefinition, ReadableMultimapTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// Block multihash -> "piece CID|offset|length" for each place the block is.
const BLOCKS: MultimapTableDefinition<&[u8], &str> = MultimapTableDefinition::new("piece_blocks");
/// Piece CID -> what indexing found (JSON).
const PIECES: TableDefinition<&str, &[u8]> = TableDefinition::new("pieces");
/// (piece CID, batch number) -> the multihashes of that batch of the piece's blocks, in CAR
/// order, each a uvarint length and the bytes: what an IPNI advertisement lists.
const PIECE_ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("piece_entries");

pub fn create_tables(txn: &redb::WriteTransaction) -> anyhow::Result<()> {
    txn.open_multimap_table(BLOCKS)?;
    txn.open_table(PIECES)?;
    txn.open_table(PIECE_ENTRIES)?;
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

/// Blocks indexed per write transaction: no transaction is held for a whole CAR (a large one
/// would block every other write to the database for its length).
const BATCH_BLOCKS: usize = 8192;

/// Indexes a piece's CAR, block by block as it is read, in batches of [`BATCH_BLOCKS`]; the
/// piece's record is written last, so a piece is listed only once all its blocks are. Blocking:
/// call it off the async runtime. Indexing the same piece again adds nothing (an interrupted
/// indexing is finished by the next one: entries already written are not duplicated).
pub fn index_piece(store: &Store, piece_cid: &Cid, path: &Path) -> anyhow::Result<IndexedPiece> {
    let piece = piece_cid.to_string();
    if let Some(indexed) = self::piece(store, &piece)? {
        return Ok(indexed);
    }
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut reader = CarReader::new(BufReader::with_capacity(1 << 20, file))?;
    let roots: Vec<String> = reader.roots().iter().map(|c| c.to_string()).collect();
    let (mut blocks, mut unverified) = (0u64, 0u64);
    let mut batch: Vec<(Vec<u8>, String)> = Vec::with_capacity(BATCH_BLOCKS);
    let mut batch_no = 0u64;
    let mut write = |batch: &mut Vec<(Vec<u8>, String)>| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = store.db.begin_write()?;
        {
            let list = encode_list(batch.iter().map(|(hash, _)| hash));
            txn.open_table(PIECE_ENTRIES)?
                .insert((piece.as_str(), batch_no), list.as_slice())?;
            let mut table = txn.open_multimap_table(BLOCKS)?;
            for (hash, entry) in batch.drain(..) {
                table.insert(hash.as_slice(), entry.as_str())?;
            }
        }
        txn.commit()?;
        batch_no += 1;
        Ok(())
    };
    while let Some((section, _data)) = reader.next_block()? {
        blocks += 1;
        if !section.verified {
            unverified += 1;
        }
        let entry = format!("{piece}|{}|{}", section.data_offset, section.data_len);
        let hash = section.cid.hash().to_bytes();
        anyhow::ensure!(
            hash.len() < 128,
            "block {} has a multihash of {} bytes (at most 127 are indexed)",
            section.cid,
            hash.len()
        );
        batch.push((hash, entry));
        if batch.len() >= BATCH_BLOCKS {
            write(&mut batch)?;
        }
    }
    write(&mut batch)?;
    let indexed = IndexedPiece {
        piece_cid: piece.clone(),
        roots,
        blocks,
        unverified_blocks: unverified,
        car_bytes: reader.position(),
    };
    let txn = store.db.begin_write()?;
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

/// The multihashes of a piece's blocks, in the order of its CAR (duplicates kept), or `None`
/// when the piece is not indexed. A piece indexed before the lists were kept gets its list
/// rebuilt from the block table once (a scan of every block: an upgrade's one-time cost).
pub fn multihashes(store: &Store, piece_cid: &str) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
    let Some(indexed) = piece(store, piece_cid)? else {
        return Ok(None);
    };
    match stored_multihashes(store, piece_cid, indexed.blocks)? {
        Some(list) => Ok(Some(list)),
        None => rebuild_multihashes(store, piece_cid, indexed.blocks).map(Some),
    }
}

/// The stored list, if it is complete.
fn stored_multihashes(
    store: &Store,
    piece_cid: &str,
    blocks: u64,
) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
    let indexed_blocks = blocks;
    let txn = store.db.begin_read()?;
    let table = txn.open_table(PIECE_ENTRIES)?;
    let mut out = Vec::with_capacity(blocks as usize);
    for entry in table.range((piece_cid, 0u64)..=(piece_cid, u64::MAX))? {
        let (_, list) = entry?;
        let mut rest = list.value();
        while let Some((&len, tail)) = rest.split_first() {
            let len = len as usize;
            anyhow::ensure!(tail.len() >= len, "a piece entry list is corrupt");
            out.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
    }
    if out.len() as u64 != indexed_blocks {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Rebuilds a piece's list from the block table (ordered by offset, which is CAR order) and
/// stores it.
fn rebuild_multihashes(
    store: &Store,
    piece_cid: &str,
    blocks: u64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let prefix = format!("{piece_cid}|");
    let mut found: Vec<(u64, Vec<u8>)> = Vec::new();
    {
        let txn = store.db.begin_read()?;
        let table = txn.open_multimap_table(BLOCKS)?;
        for entry in table.iter()? {
            let (hash, places) = entry?;
            for place in places {
                let place = place?;
                if let Some(rest) = place.value().strip_prefix(&prefix) {
                    let offset = rest
                        .split('|')
                        .next()
                        .and_then(|o| o.parse().ok())
                        .context("a piece directory entry is corrupt")?;
                    found.push((offset, hash.value().to_vec()));
                }
            }
        }
    }
    anyhow::ensure!(
        found.len() as u64 == blocks,
        "piece {piece_cid} lists {blocks} blocks but the block table holds {}",
        found.len()
    );
    found.sort_by_key(|(offset, _)| *offset);
    let list: Vec<Vec<u8>> = found.into_iter().map(|(_, hash)| hash).collect();
    let txn = store.db.begin_write()?;
    {
        let mut table = txn.open_table(PIECE_ENTRIES)?;
        for (batch_no, batch) in list.chunks(BATCH_BLOCKS).enumerate() {
            table.insert((piece_cid, batch_no as u64), encode_list(batch).as_slice())?;
        }
    }
    txn.commit()?;
    tracing::info!(
        piece = piece_cid,
        blocks,
        "piece directory: rebuilt the block list of a piece indexed by an older version"
    );
    Ok(list)
}

/// A list of multihashes as stored: each a one-byte length and its bytes.
fn encode_list<'a>(hashes: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut list = Vec::new();
    for hash in hashes {
        list.push(hash.len() as u8);
        list.extend_from_slice(hash);
    }
    list
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

#[cfg(test)]
mod tests {
    use super::*;
    use cid::multihash::Multihash;
    use sha2::{Digest, Sha256};

    #[test]
    fn block_lists_keep_car_order_and_are_rebuilt_for_pieces_indexed_without_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("m.redb")).expect("open");
        let car = dir.path().join("p.car");
        let cids: Vec<Cid> = (0..20_000u32)
            .map(|i| {
                // Block 7 again at the end: duplicates are kept in the list.
                let data = (if i == 19_999 { 7 } else { i }).to_le_bytes();
                Cid::new_v1(
                    0x55,
                    Multihash::wrap(0x12, &Sha256::digest(data)).expect("hash"),
                )
            })
            .collect();
        {
            let mut writer = nelumbo_car::CarWriter::new(
                std::fs::File::create(&car).expect("create"),
                &[cids[0]],
            )
            .expect("car");
            for (i, cid) in cids.iter().enumerate() {
                let i = if i == 19_999 { 7u32 } else { i as u32 };
                writer.write_block(cid, &i.to_le_bytes()).expect("block");
            }
            writer.finish().expect("finish");
        }
        let piece = Cid::new_v1(0xf101, Multihash::wrap(0x1012, &[1; 32]).expect("hash"));
        index_piece(&store, &piece, &car).expect("index");
        let expected: Vec<Vec<u8>> = cids.iter().map(|c| c.hash().to_bytes()).collect();
        let key = piece.to_string();
        assert_eq!(
            multihashes(&store, &key).expect("read"),
            Some(expected.clone())
        );

        // As an older version left it: no lists.
        let txn = store.db.begin_write().expect("txn");
        txn.delete_table(PIECE_ENTRIES).expect("drop");
        txn.open_table(PIECE_ENTRIES).expect("create");
        txn.commit().expect("commit");
        assert_eq!(
            stored_multihashes(&store, &key, 20_000).expect("read"),
            None
        );
        assert_eq!(
            multihashes(&store, &key).expect("rebuild"),
            Some(expected.clone())
        );
        assert_eq!(
            stored_multihashes(&store, &key, 20_000).expect("read"),
            Some(expected),
            "the rebuilt list is stored"
        );
        assert_eq!(multihashes(&store, "not indexed").expect("read"), None);
    }
}
