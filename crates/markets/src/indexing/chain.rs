//! The advertisement chain, kept in the markets database: the blocks served to indexers
//! (advertisements and entry chunks, byte for byte as first encoded), the head, one record per
//! advertisement in chain order, and what each piece's latest advertisement says.
//!
//! Crash safety: entry chunks are content-addressed and written first (a crash leaves at most
//! unreferenced chunks, which the next attempt writes again with the same CIDs). The
//! advertisement, its record, the piece's state and the new head are one transaction, so the
//! chain never forks, a piece's advertisement is never written twice, and the head never names
//! an advertisement that is not stored. Signing happens before that transaction, which checks
//! that the head it built on is still the head.

use anyhow::{Context, ensure};
use cid::Cid;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::ipni::{self, Advertisement};
use crate::store::Store;

/// Block CID (bytes) -> the block as served (DAG-JSON).
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ipni_blocks");
/// Sequence number (1 for the first advertisement) -> [`AdRecord`] (JSON).
const ADS: TableDefinition<u64, &[u8]> = TableDefinition::new("ipni_ads");
/// Piece CID -> sequence number of its latest advertisement.
const PIECES: TableDefinition<&str, u64> = TableDefinition::new("ipni_pieces");
/// Pieces the operator removed (`index remove`): piece CID -> unix seconds.
const REMOVED: TableDefinition<&str, u64> = TableDefinition::new("ipni_removed");
/// The key [`set_announced`] records heads under while no indexer is configured.
pub const NO_INDEXER: &str = "";

/// Indexer URL -> the sequence number of the newest head it accepted.
const ANNOUNCED: TableDefinition<&str, u64> = TableDefinition::new("ipni_announced");
/// Deals the chain says were slashed or terminated: deal UUID -> unix seconds when seen.
/// Kept, so that a restart while the hub is away does not advertise their pieces again.
const ENDED: TableDefinition<&str, u64> = TableDefinition::new("ipni_ended_deals");

pub fn create_tables(txn: &redb::WriteTransaction) -> anyhow::Result<()> {
    txn.open_table(BLOCKS)?;
    txn.open_table(ADS)?;
    txn.open_table(PIECES)?;
    txn.open_table(REMOVED)?;
    txn.open_table(ANNOUNCED)?;
    txn.open_table(ENDED)?;
    Ok(())
}

/// One advertisement of the chain, as `index list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdRecord {
    pub seq: u64,
    pub cid: String,
    pub piece_cid: String,
    pub is_rm: bool,
    /// Multihashes listed (0 for a removal).
    pub entries: u64,
    pub entry_chunks: u64,
    pub created_at: u64,
    /// The piece's padded size (its ContextID is made from it; a removal needs the same).
    #[serde(default)]
    pub padded_size: Option<u64>,
}

/// What a new advertisement says about its piece.
#[derive(Debug, Clone)]
pub struct NewAd {
    pub piece_cid: String,
    pub padded_size: u64,
    pub context_id: Vec<u8>,
    /// `None`: a removal.
    pub multihashes: Option<Vec<Vec<u8>>>,
    pub addresses: Vec<String>,
    pub metadata: Vec<u8>,
}

/// The head: its sequence number and CID, `None` while the chain is empty.
pub fn head(store: &Store) -> anyhow::Result<Option<(u64, Cid)>> {
    let txn = store.db.begin_read()?;
    let ads = txn.open_table(ADS)?;
    let Some(last) = ads.last()? else {
        return Ok(None);
    };
    let record: AdRecord = serde_json::from_slice(last.1.value())?;
    Ok(Some((record.seq, record.cid.parse()?)))
}

/// A stored block (advertisement or entry chunk), as it was first encoded.
pub fn block(store: &Store, cid: &Cid) -> anyhow::Result<Option<Vec<u8>>> {
    let txn = store.db.begin_read()?;
    let blocks = txn.open_table(BLOCKS)?;
    Ok(blocks
        .get(cid.to_bytes().as_slice())?
        .map(|v| v.value().to_vec()))
}

/// Every advertisement record, oldest first, from sequence `from`, at most `limit`.
pub fn ads(store: &Store, from: u64, limit: usize) -> anyhow::Result<Vec<AdRecord>> {
    let txn = store.db.begin_read()?;
    let ads = txn.open_table(ADS)?;
    let mut out = Vec::new();
    for entry in ads.range(from..)?.take(limit) {
        out.push(serde_json::from_slice(entry?.1.value())?);
    }
    Ok(out)
}

pub fn ad_count(store: &Store) -> anyhow::Result<u64> {
    let txn = store.db.begin_read()?;
    Ok(txn.open_table(ADS)?.len()?)
}

/// The latest advertisement of a piece.
pub fn piece_ad(store: &Store, piece_cid: &str) -> anyhow::Result<Option<AdRecord>> {
    let txn = store.db.begin_read()?;
    let pieces = txn.open_table(PIECES)?;
    let Some(seq) = pieces.get(piece_cid)?.map(|v| v.value()) else {
        return Ok(None);
    };
    let ads = txn.open_table(ADS)?;
    let record = ads
        .get(seq)?
        .context("a piece names an advertisement that is not stored")?;
    Ok(Some(serde_json::from_slice(record.value())?))
}

/// Every piece's latest advertisement.
pub fn piece_ads(store: &Store) -> anyhow::Result<Vec<AdRecord>> {
    let txn = store.db.begin_read()?;
    let pieces = txn.open_table(PIECES)?;
    let ads = txn.open_table(ADS)?;
    let mut out = Vec::new();
    for entry in pieces.iter()? {
        let (_, seq) = entry?;
        let record = ads
            .get(seq.value())?
            .context("a piece names an advertisement that is not stored")?;
        out.push(serde_json::from_slice(record.value())?);
    }
    Ok(out)
}

/// Appends one advertisement for a piece and makes it the head. Blocking (it hashes, signs and
/// commits): call it off the async runtime, from one task at a time.
pub fn append(
    store: &Store,
    key: &libp2p::identity::Keypair,
    ad: NewAd,
) -> anyhow::Result<AdRecord> {
    ensure!(
        ad.context_id.len() <= ipni::MAX_CONTEXT_ID_BYTES,
        "a ContextID of {} bytes is over {}",
        ad.context_id.len(),
        ipni::MAX_CONTEXT_ID_BYTES
    );
    ensure!(
        ad.metadata.len() <= ipni::MAX_METADATA_BYTES,
        "metadata of {} bytes is over {}",
        ad.metadata.len(),
        ipni::MAX_METADATA_BYTES
    );
    let (entries, entry_count, chunk_count) = match &ad.multihashes {
        Some(hashes) => {
            let (first, chunks) = ipni::build_entry_chunks(hashes);
            let first = first.context("a piece with no blocks cannot be advertised")?;
            let count = chunks.len() as u64;
            // Content-addressed: written before the advertisement, again if a crash came
            // between (same bytes, same keys).
            let txn = store.db.begin_write()?;
            {
                let mut blocks = txn.open_table(BLOCKS)?;
                for (cid, bytes) in &chunks {
                    blocks.insert(cid.to_bytes().as_slice(), bytes.as_slice())?;
                }
            }
            txn.commit()?;
            (first, hashes.len() as u64, count)
        }
        None => (ipni::no_entries(), 0, 0),
    };
    let previous = head(store)?;
    let mut advertisement = Advertisement {
        previous: previous.map(|(_, cid)| cid),
        provider: key.public().to_peer_id().to_string(),
        addresses: ad.addresses,
        signature: Vec::new(),
        entries,
        context_id: ad.context_id,
        metadata: ad.metadata,
        is_rm: ad.multihashes.is_none(),
    };
    advertisement.sign(key)?;
    let bytes = advertisement.encode();
    let cid = ipni::dag_json_cid(&bytes);
    let seq = previous.map_or(1, |(seq, _)| seq + 1);
    let record = AdRecord {
        seq,
        cid: cid.to_string(),
        piece_cid: ad.piece_cid.clone(),
        is_rm: advertisement.is_rm,
        entries: entry_count,
        entry_chunks: chunk_count,
        created_at: crate::now_secs(),
        padded_size: Some(ad.padded_size),
    };
    let txn = store.db.begin_write()?;
    {
        let mut ads = txn.open_table(ADS)?;
        let last = ads.last()?.map(|(k, _)| k.value());
        ensure!(
            last == previous.map(|(seq, _)| seq),
            "the advertisement chain moved while an advertisement was being signed (two writers?)"
        );
        ads.insert(seq, serde_json::to_vec(&record)?.as_slice())?;
        txn.open_table(BLOCKS)?
            .insert(cid.to_bytes().as_slice(), bytes.as_slice())?;
        txn.open_table(PIECES)?.insert(ad.piece_cid.as_str(), seq)?;
    }
    txn.commit()?;
    Ok(record)
}

/// Marks a piece removed by the operator (its advertisement is withdrawn and not made again
/// until [`restore_piece`]).
pub fn remove_piece(store: &Store, piece_cid: &str) -> anyhow::Result<()> {
    let txn = store.db.begin_write()?;
    txn.open_table(REMOVED)?
        .insert(piece_cid, crate::now_secs())?;
    txn.commit()?;
    Ok(())
}

/// Undoes [`remove_piece`]; returns whether the piece had been removed.
pub fn restore_piece(store: &Store, piece_cid: &str) -> anyhow::Result<bool> {
    let txn = store.db.begin_write()?;
    let was = txn.open_table(REMOVED)?.remove(piece_cid)?.is_some();
    txn.commit()?;
    Ok(was)
}

pub fn removed_pieces(store: &Store) -> anyhow::Result<std::collections::HashSet<String>> {
    let txn = store.db.begin_read()?;
    let table = txn.open_table(REMOVED)?;
    let mut out = std::collections::HashSet::new();
    for entry in table.iter()? {
        out.insert(entry?.0.value().to_string());
    }
    Ok(out)
}

/// Records deals the chain says ended before their end epoch.
pub fn mark_ended(store: &Store, uuids: &[String]) -> anyhow::Result<()> {
    let txn = store.db.begin_write()?;
    {
        let mut table = txn.open_table(ENDED)?;
        for uuid in uuids {
            table.insert(uuid.as_str(), crate::now_secs())?;
        }
    }
    txn.commit()?;
    Ok(())
}

pub fn ended_deals(store: &Store) -> anyhow::Result<std::collections::HashSet<String>> {
    let txn = store.db.begin_read()?;
    let table = txn.open_table(ENDED)?;
    let mut out = std::collections::HashSet::new();
    for entry in table.iter()? {
        out.insert(entry?.0.value().to_string());
    }
    Ok(out)
}

/// Records that an indexer accepted the head at `seq` (kept across restarts: a deal's
/// `IndexedAndAnnounced` depends on it).
pub fn set_announced(store: &Store, indexer: &str, seq: u64) -> anyhow::Result<()> {
    let txn = store.db.begin_write()?;
    {
        let mut table = txn.open_table(ANNOUNCED)?;
        let old = table.get(indexer)?.map(|v| v.value()).unwrap_or(0);
        if seq > old {
            table.insert(indexer, seq)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// The newest head each indexer accepted.
pub fn announced(store: &Store) -> anyhow::Result<Vec<(String, u64)>> {
    let txn = store.db.begin_read()?;
    let table = txn.open_table(ANNOUNCED)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_string(), v.value()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("m.redb")).expect("open");
        (dir, store)
    }

    fn hashes(n: usize, salt: u8) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut h = vec![0x12, 0x20];
                h.extend_from_slice(&sha2::Sha256::digest([
                    salt,
                    (i % 256) as u8,
                    (i / 256) as u8,
                ]));
                h
            })
            .collect()
    }
    use sha2::Digest;

    #[test]
    fn appends_link_each_advertisement_to_the_last_and_removals_carry_no_entries() {
        let (_dir, store) = open();
        let key = libp2p::identity::Keypair::generate_ed25519();
        assert_eq!(head(&store).expect("head"), None);
        let new = |piece: &str, hashes: Option<Vec<Vec<u8>>>| NewAd {
            piece_cid: piece.into(),
            padded_size: 2048,
            context_id: piece.as_bytes().to_vec(),
            multihashes: hashes,
            addresses: vec!["/ip4/127.0.0.1/tcp/1/http".into()],
            metadata: ipni::metadata(&[ipni::Transport::IpfsGatewayHttp]),
        };
        let a = append(&store, &key, new("a", Some(hashes(20_000, 1)))).expect("a");
        let b = append(&store, &key, new("b", Some(hashes(3, 2)))).expect("b");
        let rm = append(&store, &key, new("a", None)).expect("rm");
        assert_eq!((a.seq, b.seq, rm.seq), (1, 2, 3));
        assert_eq!((a.entry_chunks, b.entry_chunks, rm.entry_chunks), (2, 1, 0));
        assert_eq!(
            head(&store).expect("head").map(|h| h.1.to_string()),
            Some(rm.cid.clone())
        );
        // Walk back from the head: rm -> b -> a, each signed, each stored byte for byte.
        let mut link: Option<Cid> = Some(rm.cid.parse().expect("cid"));
        let mut seen = Vec::new();
        while let Some(cid) = link {
            let bytes = block(&store, &cid).expect("read").expect("stored");
            assert_eq!(ipni::dag_json_cid(&bytes), cid);
            let ad = Advertisement::decode(&bytes).expect("decodes");
            ad.verify().expect("verifies");
            seen.push((String::from_utf8(ad.context_id).expect("utf-8"), ad.is_rm));
            if ad.is_rm {
                assert_eq!(ad.entries, ipni::no_entries());
            } else {
                assert!(block(&store, &ad.entries).expect("read").is_some());
            }
            link = ad.previous;
        }
        assert_eq!(
            seen,
            [("a".into(), true), ("b".into(), false), ("a".into(), false)]
        );
        assert_eq!(
            piece_ad(&store, "a").expect("a").map(|r| r.is_rm),
            Some(true)
        );
        assert_eq!(ad_count(&store).expect("count"), 3);
    }
}
