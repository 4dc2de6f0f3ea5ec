//! Persistence in an embedded redb database: tipsets, blocks, messages, receipts, the state
//! after every tipset (within a retention window), the message pool and won blocks. Producing a
//! tipset is one write transaction, so a crash leaves the chain at the previous head or the new
//! one, never between.

use std::path::Path;

use anyhow::Context;
use cid::Cid;
use fvm_shared::clock::ChainEpoch;
use nelumbo_chain_api::json;
use nelumbo_chain_api::types::{BlockHeader, MessageReceipt, SignedMessage, TipSet, TipSetKey};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::state::State;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TIPSETS: TableDefinition<i64, &[u8]> = TableDefinition::new("tipsets");
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("receipts");
const STATES: TableDefinition<i64, &[u8]> = TableDefinition::new("states");
const MPOOL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("mpool");
const WON: TableDefinition<&[u8], &[u8]> = TableDefinition::new("won_blocks");
/// Unsigned message CID to signed message CID.
const UNSIGNED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("unsigned_messages");

/// A tipset and the messages its block includes (executed when the next tipset is made).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TipsetRecord {
    pub tipset: TipSet,
    pub messages: Vec<SignedMessage>,
}

/// Where and how a message was executed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptRecord {
    #[serde(with = "json::cid_obj")]
    pub message: Cid,
    pub receipt: MessageReceipt,
    /// Why it failed, when it did (Lotus receipts carry only the exit code).
    pub error: Option<String>,
    pub executed_height: ChainEpoch,
    pub executed_tipset: TipSetKey,
}

/// A block a miner won and submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WonBlock {
    pub header: BlockHeader,
    pub miner: u64,
    pub win_count: i64,
    /// The height of the tipset whose transition paid the reward.
    pub paid_at: Option<ChainEpoch>,
}

/// Everything one produced tipset changes, written in one transaction.
#[allow(missing_debug_implementations)]
pub struct Commit<'a> {
    pub record: &'a TipsetRecord,
    pub state: &'a State,
    pub receipts: &'a [ReceiptRecord],
    pub paid_blocks: &'a [Cid],
    pub prune_states_below: Option<ChainEpoch>,
}

#[derive(Debug)]
pub struct Store {
    db: Database,
}

fn to_json<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> anyhow::Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

impl Store {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = nelumbo_service::open_database(path)
            .with_context(|| format!("open chain database {}", path.display()))?;
        let txn = db.begin_write()?;
        for table in [BLOCKS, MESSAGES, RECEIPTS, MPOOL, WON, UNSIGNED] {
            txn.open_table(table)?;
        }
        txn.open_table(META)?;
        txn.open_table(TIPSETS)?;
        txn.open_table(STATES)?;
        txn.commit()?;
        Ok(Self { db })
    }

    pub fn head_height(&self) -> anyhow::Result<Option<ChainEpoch>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TIPSETS)?;
        Ok(table.last()?.map(|(k, _)| k.value()))
    }

    pub fn tipset(&self, height: ChainEpoch) -> anyhow::Result<Option<TipsetRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TIPSETS)?;
        table.get(height)?.map(|v| from_json(v.value())).transpose()
    }

    /// The tipset at `height`, or the last one before it if `height` was a null round.
    pub fn tipset_at_or_before(&self, height: ChainEpoch) -> anyhow::Result<Option<TipsetRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TIPSETS)?;
        let last = table.range(..=height)?.next_back().transpose()?;
        last.map(|(_, v)| from_json(v.value())).transpose()
    }

    /// Every tipset height, for randomness lookups.
    pub fn heights(&self) -> anyhow::Result<Vec<ChainEpoch>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TIPSETS)?;
        let mut heights = Vec::new();
        for entry in table.iter()? {
            heights.push(entry?.0.value());
        }
        Ok(heights)
    }

    pub fn block(&self, cid: &Cid) -> anyhow::Result<Option<BlockHeader>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOCKS)?;
        table
            .get(cid.to_bytes().as_slice())?
            .map(|v| from_json(v.value()))
            .transpose()
    }

    pub fn message(&self, cid: &Cid) -> anyhow::Result<Option<SignedMessage>> {
        let txn = self.db.begin_read()?;
        for table in [MESSAGES, MPOOL] {
            let table = txn.open_table(table)?;
            if let Some(v) = table.get(cid.to_bytes().as_slice())? {
                return from_json(v.value()).map(Some);
            }
        }
        Ok(None)
    }

    pub fn receipt(&self, message: &Cid) -> anyhow::Result<Option<ReceiptRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECEIPTS)?;
        table
            .get(message.to_bytes().as_slice())?
            .map(|v| from_json(v.value()))
            .transpose()
    }

    pub fn state(&self, height: ChainEpoch) -> anyhow::Result<Option<State>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(STATES)?;
        table
            .get(height)?
            .map(|v| State::from_bytes(v.value()))
            .transpose()
    }

    pub fn mpool(&self) -> anyhow::Result<Vec<SignedMessage>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MPOOL)?;
        let mut messages = Vec::new();
        for entry in table.iter()? {
            messages.push(from_json(entry?.1.value())?);
        }
        Ok(messages)
    }

    pub fn add_to_mpool(&self, message: &SignedMessage) -> anyhow::Result<Cid> {
        let cid = message.cid().map_err(anyhow::Error::msg)?;
        let txn = self.db.begin_write()?;
        txn.open_table(MPOOL)?
            .insert(cid.to_bytes().as_slice(), to_json(message)?.as_slice())?;
        txn.open_table(UNSIGNED)?.insert(
            message.message.cid().to_bytes().as_slice(),
            cid.to_bytes().as_slice(),
        )?;
        txn.commit()?;
        Ok(cid)
    }

    /// The signed message whose unsigned CID is `cid` (secp256k1 messages have two CIDs).
    pub fn message_by_unsigned(&self, cid: &Cid) -> anyhow::Result<Option<SignedMessage>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(UNSIGNED)?;
        let signed = table
            .get(cid.to_bytes().as_slice())?
            .map(|v| v.value().to_vec());
        drop(table);
        drop(txn);
        match signed {
            Some(bytes) => self.message(&Cid::try_from(bytes.as_slice())?),
            None => Ok(None),
        }
    }

    pub fn won_blocks(&self) -> anyhow::Result<Vec<WonBlock>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(WON)?;
        let mut blocks = Vec::new();
        for entry in table.iter()? {
            blocks.push(from_json(entry?.1.value())?);
        }
        Ok(blocks)
    }

    pub fn add_won_block(&self, cid: &Cid, block: &WonBlock) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(WON)?
            .insert(cid.to_bytes().as_slice(), to_json(block)?.as_slice())?;
        txn.open_table(BLOCKS)?.insert(
            cid.to_bytes().as_slice(),
            to_json(&block.header)?.as_slice(),
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Writes a produced tipset and everything it changed.
    pub fn commit(&self, commit: Commit<'_>) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let tipset = &commit.record.tipset;
            txn.open_table(TIPSETS)?
                .insert(tipset.height, to_json(commit.record)?.as_slice())?;
            let mut blocks = txn.open_table(BLOCKS)?;
            for (cid, header) in tipset.cids.iter().zip(&tipset.blocks) {
                blocks.insert(cid.to_bytes().as_slice(), to_json(header)?.as_slice())?;
            }
            let mut states = txn.open_table(STATES)?;
            states.insert(tipset.height, commit.state.to_bytes()?.as_slice())?;
            if let Some(below) = commit.prune_states_below {
                let old: Vec<i64> = states
                    .range(..below)?
                    .map(|e| e.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for height in old.into_iter().filter(|h| *h > 0) {
                    states.remove(height)?;
                }
            }
            let mut receipts = txn.open_table(RECEIPTS)?;
            for receipt in commit.receipts {
                receipts.insert(
                    receipt.message.to_bytes().as_slice(),
                    to_json(receipt)?.as_slice(),
                )?;
            }
            let mut messages = txn.open_table(MESSAGES)?;
            let mut mpool = txn.open_table(MPOOL)?;
            for message in &commit.record.messages {
                let cid = message.cid().map_err(anyhow::Error::msg)?;
                messages.insert(cid.to_bytes().as_slice(), to_json(message)?.as_slice())?;
                mpool.remove(cid.to_bytes().as_slice())?;
            }
            let mut won = txn.open_table(WON)?;
            for cid in commit.paid_blocks {
                let key = cid.to_bytes();
                let record = won
                    .get(key.as_slice())?
                    .map(|v| from_json::<WonBlock>(v.value()))
                    .transpose()?;
                if let Some(mut record) = record {
                    record.paid_at = Some(tipset.height);
                    won.insert(key.as_slice(), to_json(&record)?.as_slice())?;
                }
            }
            txn.open_table(META)?
                .insert("head", tipset.height.to_be_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Drops messages from the pool that can never execute (their nonce was used).
    pub fn remove_from_mpool(&self, cids: &[Cid]) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut mpool = txn.open_table(MPOOL)?;
            for cid in cids {
                mpool.remove(cid.to_bytes().as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
