//! The outbox: every chain message the hub signs is recorded here, with what it is for, before
//! it leaves the process; and a task keeps what is recorded true.
//!
//! Each message has a purpose (`sector/12/pre-commit`, `wpost/4470/0`, `collateral/...`). A
//! caller that asks again for a purpose whose message is still pending, or has executed, gets
//! that same message back instead of a second one: after a crash the chain sees one WindowPoSt
//! per partition, one collateral top-up, one pre-commit per sector (invariant 6).
//!
//! The outbox task, every few seconds:
//! - settles entries: executed (with the epoch and exit code), or dropped when another message
//!   took the nonce or the chain refused it;
//! - pushes again, in nonce order, pending messages the chain does not have (a crash between
//!   recording and pushing, a chain that lost its pool);
//! - replaces a message that blocks its sender's queue (the lowest pending nonce, waiting
//!   longer than `[chain] replace_after_epochs`) with the same message at a higher fee: the
//!   premium raised by at least 25% and the fee cap to at least twice the base fee, Lotus's
//!   `MpoolReplace` rule. This covers messages of the hub's own addresses it did not record
//!   (another tool using the worker key, say), since the hub holds their keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::{ChainHead, MpoolPending, StateGetActor};
use nelumbo_chain_api::types::{SignedMessage, TipSetKey};
use prometheus::{IntCounter, IntGaugeVec};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::chain::{ChainClient, Fate};
use crate::db::Db;

/// A message the hub signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub cid: String,
    pub purpose: String,
    pub message: SignedMessage,
    pub state: OutboxState,
    /// The head's epoch when the outbox task first saw it waiting.
    #[serde(default)]
    pub waiting_since: Option<ChainEpoch>,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxState {
    /// Signed and recorded; maybe in the pool.
    Pending,
    /// Replaced in the pool by `by`, the same message at a higher fee.
    Replaced {
        by: String,
    },
    Executed {
        epoch: ChainEpoch,
        exit_code: u32,
    },
    /// It can never execute: another message took its nonce, or the chain refused it.
    Dropped {
        reason: String,
    },
}

impl OutboxEntry {
    pub fn new(purpose: &str, message: SignedMessage) -> anyhow::Result<Self> {
        let now = now_secs();
        Ok(Self {
            cid: message.cid().map_err(anyhow::Error::msg)?.to_string(),
            purpose: purpose.to_string(),
            message,
            state: OutboxState::Pending,
            waiting_since: None,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn is_pending(&self) -> bool {
        matches!(
            self.state,
            OutboxState::Pending | OutboxState::Replaced { .. }
        )
    }

    pub fn from(&self) -> Address {
        self.message.message.0.from
    }

    pub fn nonce(&self) -> u64 {
        self.message.message.0.sequence
    }

    /// Whether a caller asking again for this purpose gets this message back: it may still
    /// execute, or it executed successfully.
    pub fn answers_its_purpose(&self) -> bool {
        matches!(
            self.state,
            OutboxState::Pending | OutboxState::Executed { exit_code: 0, .. }
        )
    }

    pub fn settle(&mut self, state: OutboxState) {
        self.state = state;
        self.updated_at = now_secs();
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The message recorded for `purpose` that answers it (pending or executed), following
/// replacements to the newest.
pub fn for_purpose(db: &Db, purpose: &str) -> anyhow::Result<Option<OutboxEntry>> {
    let mut found: Option<OutboxEntry> = None;
    for entry in db.messages()? {
        if entry.purpose == purpose
            && entry.answers_its_purpose()
            && found
                .as_ref()
                .is_none_or(|f| f.created_at <= entry.created_at)
        {
            found = Some(entry);
        }
    }
    Ok(found)
}

/// Whether a pending message's purpose starts with `prefix`.
pub fn pending_with_prefix(db: &Db, prefix: &str) -> anyhow::Result<Vec<OutboxEntry>> {
    Ok(db
        .messages()?
        .into_iter()
        .filter(|e| e.is_pending() && e.purpose.starts_with(prefix))
        .collect())
}

/// The CIDs that stand for `cid` on chain: itself and every replacement made of it.
pub fn replacements(db: &Db, cid: &str) -> Vec<String> {
    let mut chain = vec![cid.to_string()];
    let mut current = cid.to_string();
    while let Ok(Some(entry)) = db.message(&current) {
        match entry.state {
            OutboxState::Replaced { by } if !chain.contains(&by) => {
                chain.push(by.clone());
                current = by;
            }
            _ => break,
        }
    }
    chain
}

/// Nonces of `from` held by recorded messages that may still execute.
pub fn pending_nonces(db: &Db, from: &Address) -> anyhow::Result<Vec<u64>> {
    Ok(db
        .messages()?
        .into_iter()
        .filter(|e| matches!(e.state, OutboxState::Pending) && &e.from() == from)
        .map(|e| e.nonce())
        .collect())
}

/// The replacement of a message that blocks its sender: same nonce, gas limit and content;
/// premium at least 25% higher, fee cap at least 25% higher and at least twice `base_fee`
/// plus the premium.
pub fn bumped(
    message: &SignedMessage,
    base_fee: &TokenAmount,
) -> nelumbo_chain_api::types::Message {
    let mut m = message.message.clone();
    let premium = ratio_up(&m.0.gas_premium).max(TokenAmount::from_atto(1));
    let cap = ratio_up(&m.0.gas_fee_cap).max(base_fee * 2 + &premium);
    m.0.gas_premium = premium;
    m.0.gas_fee_cap = cap;
    m
}

/// `amount` × 1.25, rounded up.
fn ratio_up(amount: &TokenAmount) -> TokenAmount {
    let scaled = amount.atto() * 125u32;
    let quotient = &scaled / 100u32;
    if (&scaled % 100u32) == num_bigint::BigInt::from(0) {
        TokenAmount::from_atto(quotient)
    } else {
        TokenAmount::from_atto(quotient + 1u32)
    }
}

/// What the outbox task reports.
#[derive(Debug, Clone)]
pub struct OutboxMetrics {
    pub pending: IntGaugeVec,
    pub replaced: IntCounter,
}

/// Keeps the outbox true: see the module documentation.
#[derive(Debug)]
pub struct OutboxTask {
    pub db: Arc<Db>,
    pub chain: ChainClient,
    /// The hub's own sending addresses (worker, control, owner): their stuck messages are
    /// replaced even when the outbox did not record them.
    pub addresses: Vec<Address>,
    pub replace_after_epochs: ChainEpoch,
    pub metrics: OutboxMetrics,
}

const TICK: Duration = Duration::from_secs(2);
/// Entries that ended are kept this long, for `sectors status` and the logs to refer to.
const KEEP_SETTLED_SECS: u64 = 7 * 24 * 3600;

impl OutboxTask {
    pub async fn run(self, cancel: CancellationToken) {
        // Foreign messages seen blocking a sender: CID -> the epoch first seen.
        let mut foreign_since: HashMap<String, ChainEpoch> = HashMap::new();
        let mut last_error = String::new();
        let mut ticks: u64 = 0;
        loop {
            match self.tick(&mut foreign_since).await {
                Ok(()) => last_error.clear(),
                Err(e) => {
                    let e = format!("{e:#}");
                    if e != last_error {
                        tracing::warn!(error = %e, "outbox: cannot check the chain's view of the hub's messages");
                        last_error = e;
                    }
                }
            }
            ticks += 1;
            if ticks.is_multiple_of(1800) {
                let before = now_secs().saturating_sub(KEEP_SETTLED_SECS);
                if let Err(e) = self.db.prune_messages(before) {
                    tracing::warn!(error = %format!("{e:#}"), "outbox: cannot prune old entries");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn tick(&self, foreign_since: &mut HashMap<String, ChainEpoch>) -> anyhow::Result<()> {
        let entries = self.db.messages()?;
        let mut by_sender: BTreeMap<String, Vec<OutboxEntry>> = BTreeMap::new();
        for entry in entries
            .into_iter()
            .filter(|e| e.state == OutboxState::Pending)
        {
            by_sender
                .entry(entry.from().to_string())
                .or_default()
                .push(entry);
        }
        for address in &self.addresses {
            let count = by_sender.get(&address.to_string()).map_or(0, Vec::len);
            self.metrics
                .pending
                .with_label_values(&[address.to_string().as_str()])
                .set(count as i64);
        }
        let head = self.chain.rpc.call::<ChainHead>(()).await?;
        let base_fee = head
            .blocks
            .first()
            .map(|b| b.parent_base_fee.clone())
            .unwrap_or_default();
        for (_, mut entries) in by_sender {
            entries.sort_by_key(OutboxEntry::nonce);
            for mut entry in entries {
                match self.chain.fate(&entry.message).await? {
                    Fate::Executed(lookup) => {
                        entry.settle(OutboxState::Executed {
                            epoch: lookup.height,
                            exit_code: lookup.receipt.exit_code,
                        });
                        self.db.put_message(&entry)?;
                    }
                    Fate::NonceTaken => {
                        entry.settle(OutboxState::Dropped {
                            reason: "another message took its nonce".into(),
                        });
                        self.db.put_message(&entry)?;
                    }
                    Fate::NotInPool => {
                        // Recorded but not in the pool: push it (in nonce order).
                        match self.chain.push(&entry.message).await {
                            Ok(_) => {}
                            Err(e) if crate::chain::is_refusal(&e) => {
                                tracing::warn!(message_cid = %entry.cid, purpose = %entry.purpose, error = %format!("{e:#}"), "outbox: the chain refused a recorded message");
                                entry.settle(OutboxState::Dropped {
                                    reason: format!("{e:#}"),
                                });
                                self.db.put_message(&entry)?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Fate::Waiting { blocking } => {
                        let since = *entry.waiting_since.get_or_insert(head.height);
                        if entry.waiting_since == Some(head.height) {
                            self.db.put_message(&entry)?;
                        }
                        if blocking && head.height - since >= self.replace_after_epochs {
                            self.replace(&entry.message, &entry.purpose, &base_fee)
                                .await?;
                        }
                    }
                    Fate::TakenByOther | Fate::InBlock => {}
                }
            }
        }
        self.replace_foreign(head.height, &base_fee, foreign_since)
            .await
    }

    /// Replaces `message` with the same message at a higher fee, recorded under `purpose`.
    async fn replace(
        &self,
        message: &SignedMessage,
        purpose: &str,
        base_fee: &TokenAmount,
    ) -> anyhow::Result<()> {
        let old = message.cid().map_err(anyhow::Error::msg)?.to_string();
        let bumped = bumped(message, base_fee);
        let signed = self.chain.sign_message(bumped)?;
        let mut entry = OutboxEntry::new(purpose, signed.clone())?;
        entry.waiting_since = None;
        self.db.put_message(&entry)?;
        if let Some(mut previous) = self.db.message(&old)? {
            previous.settle(OutboxState::Replaced {
                by: entry.cid.clone(),
            });
            self.db.put_message(&previous)?;
        }
        tracing::warn!(
            replaced = %old,
            by = %entry.cid,
            from = %signed.message.0.from,
            nonce = signed.message.0.sequence,
            premium = %signed.message.0.gas_premium.atto(),
            fee_cap = %signed.message.0.gas_fee_cap.atto(),
            %purpose,
            "outbox: a message blocked its sender's queue; replaced it at a higher fee"
        );
        self.metrics.replaced.inc();
        match self.chain.push(&signed).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(message_cid = %entry.cid, error = %format!("{e:#}"), "outbox: pushing the replacement failed; trying again next time");
                Ok(())
            }
        }
    }

    /// Messages of the hub's addresses the outbox did not record, blocking their sender.
    async fn replace_foreign(
        &self,
        head: ChainEpoch,
        base_fee: &TokenAmount,
        foreign_since: &mut HashMap<String, ChainEpoch>,
    ) -> anyhow::Result<()> {
        let pool = self
            .chain
            .rpc
            .call::<MpoolPending>((TipSetKey::head(),))
            .await?;
        let mut blocking = Vec::new();
        for address in &self.addresses {
            let mine: Vec<&SignedMessage> = pool
                .iter()
                .filter(|m| &m.message.0.from == address)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let actor = self
                .chain
                .rpc
                .call::<StateGetActor>((Addr(*address), TipSetKey::head()))
                .await?;
            if let Some(first) = mine.iter().find(|m| m.message.0.sequence == actor.nonce) {
                let cid = first.cid().map_err(anyhow::Error::msg)?.to_string();
                if self.db.message(&cid)?.is_none() {
                    blocking.push(((*first).clone(), cid));
                }
            }
        }
        foreign_since.retain(|cid, _| blocking.iter().any(|(_, c)| c == cid));
        for (message, cid) in blocking {
            let since = *foreign_since.entry(cid.clone()).or_insert(head);
            if head - since >= self.replace_after_epochs {
                self.replace(&message, &format!("replace/{cid}"), base_fee)
                    .await?;
                foreign_since.remove(&cid);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nelumbo_chain_api::types::{Message, Signature};

    #[test]
    fn a_replacement_raises_premium_and_cap_by_a_quarter_at_least() {
        let mut m = Message::unpriced(
            Address::new_id(100),
            Address::new_id(1000),
            TokenAmount::from_atto(0),
            5,
            Vec::new(),
        );
        m.0.sequence = 7;
        m.0.gas_limit = 1_000_000;
        m.0.gas_premium = TokenAmount::from_atto(101);
        m.0.gas_fee_cap = TokenAmount::from_atto(150);
        let signed = SignedMessage {
            message: m,
            signature: Signature {
                sig_type: Signature::SECP256K1,
                data: vec![0; 65],
            },
        };
        let base_fee = TokenAmount::from_atto(100);
        let bumped = bumped(&signed, &base_fee);
        assert_eq!(bumped.0.sequence, 7);
        assert_eq!(bumped.0.gas_limit, 1_000_000);
        // 101 × 1.25 = 126.25, rounded up.
        assert_eq!(bumped.0.gas_premium, TokenAmount::from_atto(127));
        // max(150 × 1.25 = 187.5 -> 188, 2 × 100 + 127 = 327).
        assert_eq!(bumped.0.gas_fee_cap, TokenAmount::from_atto(327));
    }
}
