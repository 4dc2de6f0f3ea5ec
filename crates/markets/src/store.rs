//! The markets database (redb, `markets.redb` in the repo): deal records and their history, the
//! ask, and the piece directory's tables ([`crate::piecedir`]). Every write is a durable
//! transaction, committed before the deal acts on it (invariant 6).

use std::path::Path;

use anyhow::Context;
use nelumbo_markets_api::admin::{AskSettings, DealLogEntry, DealState};
use redb::{Database, ReadableTable, TableDefinition};

use crate::deals::DealRecord;

/// Deal UUID -> the deal's record (JSON).
const DEALS: TableDefinition<&str, &[u8]> = TableDefinition::new("deals");
/// (deal UUID, sequence) -> one line of its history (JSON).
const DEAL_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("deal_log");
/// Settings changed at run time: the ask.
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");

const ASK: &str = "ask";

#[derive(Debug)]
pub struct Store {
    pub(crate) db: Database,
}

impl Store {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Database::create(path)
            .with_context(|| format!("open the markets database {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(DEALS)?;
        txn.open_table(DEAL_LOG)?;
        txn.open_table(SETTINGS)?;
        crate::piecedir::create_tables(&txn)?;
        txn.commit()?;
        Ok(Self { db })
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
            for entry in table.iter()? {
                let (_, value) = entry?;
                let existing: DealRecord = serde_json::from_slice(value.value())?;
                if existing.proposal_cid == record.proposal_cid {
                    return Ok(Some(existing));
                }
            }
            let bytes = serde_json::to_vec(record)?;
            table.insert(record.uuid.as_str(), bytes.as_slice())?;
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
