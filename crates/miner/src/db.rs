//! The hub's database (redb, one file in the repo): sector records, pieces, deals, the chain
//! messages the hub signed (its outbox), settings spokes change (the signed ask, spoke
//! bindings) and counters. Every write is a durable transaction, committed before anything acts
//! on it (invariant 6).

use std::path::Path;

use anyhow::Context;
use redb::{Database, ReadableTable, TableDefinition};

use crate::deals::DealRecord;
use crate::outbox::OutboxEntry;
use crate::pieces::StoredPiece;
use crate::sealing::SectorRecord;

/// Sector number -> the sector's record (JSON).
const SECTORS: TableDefinition<u64, &[u8]> = TableDefinition::new("sectors");
/// Piece CID (v1) -> a piece received and verified (JSON).
const PIECES: TableDefinition<&str, &[u8]> = TableDefinition::new("pieces");
/// Proposal CID -> a deal's publishing (JSON).
const DEALS: TableDefinition<&str, &[u8]> = TableDefinition::new("deals");
/// Counters: the next sector number, blocks won.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Named values (JSON): the last ask signed, spoke bindings, the last peer-info change.
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
/// Message CID -> a signed chain message and what became of it (JSON): the outbox.
const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");

const NEXT_SECTOR: &str = "next_sector";
const BLOCKS_WON: &str = "blocks_won";

#[derive(Debug)]
pub struct Db {
    db: Database,
}

impl Db {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = nelumbo_service::open_database(path)
            .with_context(|| format!("open the hub database {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(SECTORS)?;
        txn.open_table(META)?;
        txn.open_table(PIECES)?;
        txn.open_table(DEALS)?;
        txn.open_table(SETTINGS)?;
        txn.open_table(MESSAGES)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Starts a write transaction. Waiting for another writer happens off the async runtime's
    /// worker (see [`off_runtime`]).
    fn begin_write(&self) -> anyhow::Result<redb::WriteTransaction> {
        off_runtime(|| Ok(self.db.begin_write()?))
    }

    /// A named value, if set.
    pub fn setting<T: serde::de::DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SETTINGS)?;
        table
            .get(key)?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .with_context(|| format!("the stored {key} is corrupt"))
            })
            .transpose()
    }

    pub fn put_setting<T: serde::Serialize>(&self, key: &str, value: &T) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(value)?;
        let txn = self.begin_write()?;
        txn.open_table(SETTINGS)?.insert(key, bytes.as_slice())?;
        commit(txn)?;
        Ok(())
    }

    pub fn remove_setting(&self, key: &str) -> anyhow::Result<()> {
        let txn = self.begin_write()?;
        txn.open_table(SETTINGS)?.remove(key)?;
        commit(txn)?;
        Ok(())
    }

    /// Every named value whose key starts with `prefix`.
    pub fn settings_with_prefix<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> anyhow::Result<Vec<(String, T)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SETTINGS)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..)? {
            let (key, value) = entry?;
            let key = key.value().to_string();
            if !key.starts_with(prefix) {
                break;
            }
            let value = serde_json::from_slice(value.value())
                .with_context(|| format!("the stored {key} is corrupt"))?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// An outbox entry by message CID.
    pub fn message(&self, cid: &str) -> anyhow::Result<Option<OutboxEntry>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        table
            .get(cid)?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .with_context(|| format!("outbox entry {cid} is corrupt"))
            })
            .transpose()
    }

    pub fn messages(&self) -> anyhow::Result<Vec<OutboxEntry>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push(
                serde_json::from_slice(value.value())
                    .with_context(|| format!("outbox entry {} is corrupt", key.value()))?,
            );
        }
        Ok(out)
    }

    pub fn put_message(&self, entry: &OutboxEntry) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(entry)?;
        let txn = self.begin_write()?;
        txn.open_table(MESSAGES)?
            .insert(entry.cid.as_str(), bytes.as_slice())?;
        commit(txn)?;
        Ok(())
    }

    /// Forgets outbox entries that reached an end before `before` (unix seconds).
    pub fn prune_messages(&self, before: u64) -> anyhow::Result<usize> {
        let txn = self.begin_write()?;
        let removed = {
            let mut table = txn.open_table(MESSAGES)?;
            let mut old = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let entry: OutboxEntry = serde_json::from_slice(value.value())?;
                if !entry.is_pending() && entry.updated_at < before {
                    old.push(key.value().to_string());
                }
            }
            for key in &old {
                table.remove(key.as_str())?;
            }
            old.len()
        };
        commit(txn)?;
        Ok(removed)
    }

    pub fn sector(&self, number: u64) -> anyhow::Result<Option<SectorRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECTORS)?;
        table
            .get(number)?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .with_context(|| format!("sector {number}'s record is corrupt"))
            })
            .transpose()
    }

    pub fn sectors(&self) -> anyhow::Result<Vec<SectorRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECTORS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (number, value) = entry?;
            out.push(
                serde_json::from_slice(value.value())
                    .with_context(|| format!("sector {}'s record is corrupt", number.value()))?,
            );
        }
        Ok(out)
    }

    pub fn put_sector(&self, record: &SectorRecord) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(record)?;
        let txn = self.begin_write()?;
        txn.open_table(SECTORS)?
            .insert(record.number, bytes.as_slice())?;
        commit(txn)?;
        Ok(())
    }

    /// Takes the next sector number and stores the record `make` builds for it, in one
    /// transaction: a number is never handed out twice, even across crashes.
    pub fn allocate_sector(
        &self,
        make: impl FnOnce(u64) -> SectorRecord,
    ) -> anyhow::Result<SectorRecord> {
        let txn = self.begin_write()?;
        let record = {
            let mut meta = txn.open_table(META)?;
            let number = meta.get(NEXT_SECTOR)?.map(|v| v.value()).unwrap_or(1);
            meta.insert(NEXT_SECTOR, number + 1)?;
            let record = make(number);
            let bytes = serde_json::to_vec(&record)?;
            txn.open_table(SECTORS)?.insert(number, bytes.as_slice())?;
            record
        };
        commit(txn)?;
        Ok(record)
    }

    pub fn piece(&self, cid: &str) -> anyhow::Result<Option<StoredPiece>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PIECES)?;
        table
            .get(cid)?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .with_context(|| format!("piece {cid}'s record is corrupt"))
            })
            .transpose()
    }

    pub fn pieces(&self) -> anyhow::Result<Vec<StoredPiece>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PIECES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push(
                serde_json::from_slice(value.value())
                    .with_context(|| format!("piece {}'s record is corrupt", key.value()))?,
            );
        }
        Ok(out)
    }

    pub fn remove_piece(&self, cid: &str) -> anyhow::Result<()> {
        let txn = self.begin_write()?;
        txn.open_table(PIECES)?.remove(cid)?;
        commit(txn)?;
        Ok(())
    }

    pub fn put_piece(&self, piece: &StoredPiece) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(piece)?;
        let txn = self.begin_write()?;
        txn.open_table(PIECES)?
            .insert(piece.piece_cid.as_str(), bytes.as_slice())?;
        commit(txn)?;
        Ok(())
    }

    pub fn deal(&self, proposal: &cid::Cid) -> anyhow::Result<Option<DealRecord>> {
        let key = proposal.to_string();
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEALS)?;
        table
            .get(key.as_str())?
            .map(|v| {
                serde_json::from_slice(v.value())
                    .with_context(|| format!("deal {key}'s record is corrupt"))
            })
            .transpose()
    }

    pub fn deals(&self) -> anyhow::Result<Vec<DealRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEALS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push(
                serde_json::from_slice(value.value())
                    .with_context(|| format!("deal {}'s record is corrupt", key.value()))?,
            );
        }
        Ok(out)
    }

    pub fn put_deal(&self, record: &DealRecord) -> anyhow::Result<()> {
        let key = record.proposal_cid.to_string();
        let bytes = serde_json::to_vec(record)?;
        let txn = self.begin_write()?;
        txn.open_table(DEALS)?
            .insert(key.as_str(), bytes.as_slice())?;
        commit(txn)?;
        Ok(())
    }

    pub fn add_block_won(&self) -> anyhow::Result<u64> {
        let txn = self.begin_write()?;
        let won = {
            let mut meta = txn.open_table(META)?;
            let won = meta.get(BLOCKS_WON)?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert(BLOCKS_WON, won)?;
            won
        };
        commit(txn)?;
        Ok(won)
    }

    pub fn blocks_won(&self) -> anyhow::Result<u64> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(BLOCKS_WON)?.map(|v| v.value()).unwrap_or(0))
    }
}

/// Commits `txn`; the wait for the disk happens off the async runtime's worker.
fn commit(txn: redb::WriteTransaction) -> anyhow::Result<()> {
    off_runtime(|| Ok(txn.commit()?))
}

/// Runs `f`, which may wait on the disk or on another writer, without holding up the async
/// runtime: on a worker of the multi-threaded runtime, the worker's other tasks (WindowPoSt's
/// among them) move to another thread while `f` runs (`block_in_place`). Anywhere else (a
/// blocking thread, no runtime, a current-thread runtime in a test) `f` just runs. Every hub
/// write is one small record, so this costs little and keeps a slow fsync on a disk busy with
/// sealing from stalling the runtime.
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
