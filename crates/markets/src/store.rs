//! The markets database (redb, `markets.redb` in the repo): deal records and their history, the
//! ask, and the IPNI advertisement chain ([`crate::indexing::chain`]). Every write is a durable
//! transaction, committed before the deal acts on it (invariant 6). The piece directory has a
//! file of its own ([`crate::directory`]).
//!
//! [`Store`] is the blocking API; async code goes through [`AsyncStore`], which runs each call
//! on the blocking pool: a commit waits on the disk (fsync), and the async runtime that answers
//! clients must never wait on a disk.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use nelumbo_markets_api::admin::{AskSettings, DealLogEntry, DealState};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::deals::DealRecord;

/// Deal UUID -> the deal's record (JSON).
const DEALS: TableDefinition<&str, &[u8]> = TableDefinition::new("deals");
/// (deal UUID, sequence) -> one line of its history (JSON).
const DEAL_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("deal_log");
/// Settings changed at run time: the ask.
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
/// Signed proposal CID -> deal UUID: one deal per signed proposal, found without a scan.
const PROPOSALS: TableDefinition<&str, &str> = TableDefinition::new("deal_proposals");

const ASK: &str = "ask";

/// The piece directory's tables as versions before `nelumbo-piecedir` kept them here, read once
/// to move them ([`crate::directory::move_legacy_index`]): multihash -> "piece|offset|length",
/// piece CID -> its record (JSON), and (piece, batch) -> block lists.
const LEGACY_BLOCKS: redb::MultimapTableDefinition<&[u8], &str> =
    redb::MultimapTableDefinition::new("piece_blocks");
const LEGACY_PIECES: TableDefinition<&str, &[u8]> = TableDefinition::new("pieces");
const LEGACY_LISTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("piece_entries");

#[derive(Debug)]
pub struct Store {
    pub(crate) db: Database,
}

impl Store {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = nelumbo_service::open_database(path)
            .with_context(|| format!("open the markets database {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(DEALS)?;
        txn.open_table(DEAL_LOG)?;
        txn.open_table(SETTINGS)?;
        crate::indexing::chain::create_tables(&txn)?;
        {
            // Databases made before the proposal index: build it once.
            let mut proposals = txn.open_table(PROPOSALS)?;
            if proposals.is_empty()? {
                let deals = txn.open_table(DEALS)?;
                for entry in deals.iter()? {
                    let (uuid, value) = entry?;
                    let record: DealRecord = serde_json::from_slice(value.value())?;
                    proposals.insert(record.proposal_cid.as_str(), uuid.value())?;
                }
            }
        }
        txn.commit()?;
        Ok(Self { db })
    }

    /// The pieces an older version indexed in this file, each with its blocks in CAR order
    /// (one scan of the old block table; an upgrade's one-time cost). Empty when there are none.
    pub fn legacy_piece_index(
        &self,
    ) -> anyhow::Result<Vec<(nelumbo_piecedir::IndexedPiece, Vec<nelumbo_piecedir::Block>)>> {
        use redb::ReadableMultimapTable;
        let txn = self.db.begin_read()?;
        let pieces = match txn.open_table(LEGACY_PIECES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<(nelumbo_piecedir::IndexedPiece, Vec<nelumbo_piecedir::Block>)> =
            Vec::new();
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for entry in pieces.iter()? {
            let (piece, record) = entry?;
            let record: nelumbo_piecedir::IndexedPiece = serde_json::from_slice(record.value())
                .with_context(|| format!("the old index record of {} is corrupt", piece.value()))?;
            index.insert(piece.value().to_string(), out.len());
            out.push((record, Vec::new()));
        }
        if out.is_empty() {
            return Ok(out);
        }
        let blocks = txn.open_multimap_table(LEGACY_BLOCKS)?;
        for entry in blocks.iter()? {
            let (hash, places) = entry?;
            for place in places {
                let place = place?;
                let mut parts = place.value().split('|');
                let (Some(piece), Some(offset), Some(length)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    anyhow::bail!("an old piece directory entry is corrupt");
                };
                // Blocks of a piece whose indexing never finished: that piece is indexed again
                // by its deal.
                let Some(&i) = index.get(piece) else {
                    continue;
                };
                let multihash = hash.value().to_vec();
                out[i].1.push(nelumbo_piecedir::Block {
                    // The CAR reader checks SHA-256 blocks; the old table did not say.
                    verified: multihash.first() == Some(&0x12),
                    multihash,
                    offset: offset.parse()?,
                    length: length.parse()?,
                });
            }
        }
        for (record, blocks) in &mut out {
            blocks.sort_by_key(|b| b.offset);
            anyhow::ensure!(
                blocks.len() as u64 == record.blocks,
                "the old index of piece {} lists {} blocks but holds {}",
                record.piece_cid,
                record.blocks,
                blocks.len()
            );
        }
        Ok(out)
    }

    /// Drops the old piece directory tables once their pieces are moved.
    pub fn drop_legacy_piece_index(&self) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        txn.delete_multimap_table(LEGACY_BLOCKS)?;
        txn.delete_table(LEGACY_PIECES)?;
        txn.delete_table(LEGACY_LISTS)?;
        txn.commit()?;
        Ok(())
    }

    /// The deal with this signed proposal CID, if any.
    pub fn deal_by_proposal(&self, proposal_cid: &str) -> anyhow::Result<Option<DealRecord>> {
        let uuid = {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(PROPOSALS)?;
            table.get(proposal_cid)?.map(|v| v.value().to_string())
        };
        match uuid {
            Some(uuid) => self.deal(&uuid),
            None => Ok(None),
        }
    }

    pub fn deal(&self, uuid: &str) -> anyhow::Result<Option<DealRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEALS)?;
        table
            .get(uuid)?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .with_context(|| format!("deal {uuid}'s record is corrupt"))
            })
            .transpose()
    }

    pub fn deals(&self) -> anyhow::Result<Vec<DealRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEALS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (uuid, value) = entry?;
            out.push(
                serde_json::from_slice(value.value())
                    .with_context(|| format!("deal {}'s record is corrupt", uuid.value()))?,
            );
        }
        Ok(out)
    }

    /// Stores a new deal unless one with its UUID, or with its signed proposal, exists; returns
    /// the stored one in that case (checked in the same transaction as the insert).
    pub fn insert_new(
        &self,
        record: &DealRecord,
        message: &str,
    ) -> anyhow::Result<Option<DealRecord>> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(DEALS)?;
            if let Some(existing) = table.get(record.uuid.as_str())? {
                let existing = serde_json::from_slice(existing.value())?;
                return Ok(Some(existing));
            }
            let mut proposals = txn.open_table(PROPOSALS)?;
            if let Some(uuid) = proposals.get(record.proposal_cid.as_str())? {
                let uuid = uuid.value().to_string();
                if let Some(existing) = table.get(uuid.as_str())? {
                    return Ok(Some(serde_json::from_slice(existing.value())?));
                }
            }
            let bytes = serde_json::to_vec(record)?;
            table.insert(record.uuid.as_str(), bytes.as_slice())?;
            proposals.insert(record.proposal_cid.as_str(), record.uuid.as_str())?;
            append_log(&txn, &record.uuid, record.state, message)?;
        }
        txn.commit()?;
        Ok(None)
    }

    /// Stores `record`, with a line of history when `message` is given.
    pub fn put(&self, record: &DealRecord, message: Option<&str>) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(record)?;
        let txn = self.db.begin_write()?;
        txn.open_table(DEALS)?
            .insert(record.uuid.as_str(), bytes.as_slice())?;
        if let Some(message) = message {
            append_log(&txn, &record.uuid, record.state, message)?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn logs(&self, uuid: &str) -> anyhow::Result<Vec<DealLogEntry>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEAL_LOG)?;
        let mut out = Vec::new();
        for entry in table.range((uuid, 0)..=(uuid, u64::MAX))? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value())?);
        }
        Ok(out)
    }

    /// The ask last set at run time, with its sequence number.
    pub fn ask(&self) -> anyhow::Result<Option<(AskSettings, u64)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SETTINGS)?;
        table
            .get(ASK)?
            .map(|v| serde_json::from_slice(v.value()).context("the stored ask is corrupt"))
            .transpose()
    }

    pub fn put_ask(&self, ask: &AskSettings, seq_no: u64) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(&(ask, seq_no))?;
        let txn = self.db.begin_write()?;
        txn.open_table(SETTINGS)?.insert(ASK, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}

fn append_log(
    txn: &redb::WriteTransaction,
    uuid: &str,
    state: DealState,
    message: &str,
) -> anyhow::Result<()> {
    let mut table = txn.open_table(DEAL_LOG)?;
    let next = table
        .range((uuid, 0)..=(uuid, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value().1 + 1);
    let entry = DealLogEntry {
        at: crate::now_secs(),
        state,
        message: message.to_string(),
    };
    table.insert((uuid, next), serde_json::to_vec(&entry)?.as_slice())?;
    Ok(())
}

/// The store for async code: each call runs on the blocking pool. It carries the piece
/// directory too, so every service that reads deals can find their blocks.
#[derive(Clone)]
pub struct AsyncStore(Arc<Store>, crate::directory::Directory);

impl std::fmt::Debug for AsyncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AsyncStore")
            .field(&self.0)
            .field(&self.1.backend())
            .finish()
    }
}

impl AsyncStore {
    pub fn new(store: Arc<Store>, directory: crate::directory::Directory) -> Self {
        Self(store, directory)
    }

    /// The piece directory.
    pub fn directory(&self) -> &crate::directory::Directory {
        &self.1
    }

    /// The blocking store, for code already on a blocking thread.
    pub fn blocking(&self) -> &Arc<Store> {
        &self.0
    }

    /// Runs `f` on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
    {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| anyhow::anyhow!("the database task ended abnormally: {e}"))?
    }

    pub async fn deal(&self, uuid: &str) -> anyhow::Result<Option<DealRecord>> {
        let uuid = uuid.to_string();
        self.run(move |s| s.deal(&uuid)).await
    }

    pub async fn deal_by_proposal(&self, proposal_cid: &str) -> anyhow::Result<Option<DealRecord>> {
        let cid = proposal_cid.to_string();
        self.run(move |s| s.deal_by_proposal(&cid)).await
    }

    pub async fn deals(&self) -> anyhow::Result<Vec<DealRecord>> {
        self.run(|s| s.deals()).await
    }

    pub async fn insert_new(
        &self,
        record: &DealRecord,
        message: &str,
    ) -> anyhow::Result<Option<DealRecord>> {
        let (record, message) = (record.clone(), message.to_string());
        self.run(move |s| s.insert_new(&record, &message)).await
    }

    pub async fn put(&self, record: &DealRecord, message: Option<&str>) -> anyhow::Result<()> {
        let (record, message) = (record.clone(), message.map(str::to_string));
        self.run(move |s| s.put(&record, message.as_deref())).await
    }

    pub async fn logs(&self, uuid: &str) -> anyhow::Result<Vec<DealLogEntry>> {
        let uuid = uuid.to_string();
        self.run(move |s| s.logs(&uuid)).await
    }

    pub async fn put_ask(&self, ask: &AskSettings, seq_no: u64) -> anyhow::Result<()> {
        let ask = ask.clone();
        self.run(move |s| s.put_ask(&ask, seq_no)).await
    }
}
