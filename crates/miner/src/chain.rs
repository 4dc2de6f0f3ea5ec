//! The hub's chain client: reads through the Lotus API, and messages signed with the hub's own
//! keys.
//!
//! Sending ([`ChainClient::send`]) records every message in the outbox ([`crate::outbox`])
//! under its purpose before it leaves the process, then hands it to the caller's own `record`
//! (a sector's or deal's record), then pushes it. Asking again for a purpose whose message may
//! still execute returns that message, so a retry after a crash never makes a second one.
//!
//! Nonces: each sending address has its own lock, held from choosing the nonce to the push
//! (with the call timeout), never across anything else; WindowPoSt sends from its own control
//! address, so it never waits behind the worker's messages. When a push fails, the chain is
//! asked what became of the nonce (executed, another message in the pool, or free) rather than
//! reading the error's wording.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::methods::{
    ChainHead, GasEstimateMessageGas, MpoolGetNonce, MpoolPending, MpoolPush, StateGetActor,
    StateGetRandomnessFromBeacon, StateGetRandomnessFromTickets, StateSearchMsg,
};
use nelumbo_chain_api::types::{Message, MsgLookup, Signature, SignedMessage, TipSetKey};
use nelumbo_chain_api::{Addr, Base64, CidJson};
use nelumbo_keys::Keystore;
use nelumbo_rpc::{ClientError, RpcClient};

use crate::db::Db;
use crate::outbox::{self, OutboxEntry, OutboxState};

#[derive(Debug, Clone)]
pub struct ChainClient {
    pub rpc: RpcClient,
    keystore: Arc<Keystore>,
    /// Where sent messages are recorded; init's client has none and only prepares and pushes.
    outbox: Option<Arc<Db>>,
    /// One lock per sending address, and the next nonce it hands out.
    senders: Arc<Mutex<HashMap<Address, NonceLock>>>,
}

/// A sending address's lock, holding the next nonce it hands out (once known).
type NonceLock = Arc<tokio::sync::Mutex<Option<u64>>>;

/// A message to send: what it is for, and the call.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The outbox key: asking again for a purpose gets the message recorded for it.
    pub purpose: &'a str,
    pub from: Address,
    pub to: Address,
    pub method: u64,
    pub params: Vec<u8>,
    pub value: TokenAmount,
}

/// How a sent message ended.
#[derive(Debug)]
pub enum Landed {
    /// It executed (successfully or not: see the receipt).
    Executed(Box<MsgLookup>),
    /// Another message from the same sender took its nonce: it can never execute.
    NonceTaken,
    /// The chain refused it outright (it never entered the pool; its nonce is free).
    Refused(String),
}

/// What the chain says of a message the hub signed.
#[derive(Debug)]
pub enum Fate {
    Executed(Box<MsgLookup>),
    /// Its nonce was used by another message.
    NonceTaken,
    /// In the pool, waiting; `blocking` when its nonce is the sender's next (it holds back every
    /// later message of the sender).
    Waiting {
        blocking: bool,
    },
    /// Another message with its nonce waits in the pool.
    TakenByOther,
    /// Not in the pool and not executed, but a message with its nonce (this one or another) is
    /// in a block at the head, which executes with the next tipset: wait and look again.
    InBlock,
    /// Neither executed nor in the pool, and its nonce is free.
    NotInPool,
}

/// The chain refused a message outright: it did not enter the pool and its nonce is unused,
/// so the sender may make a new one. Any other push error leaves that open.
#[derive(Debug, thiserror::Error)]
#[error("the chain refused the message: {0}")]
pub struct Refused(pub String);

/// Whether `error` (from `send` or `push`) is a refusal of the message itself.
pub fn is_refusal(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Refused>().is_some()
}

/// Whether `error` says the chain was away or slow (worth trying again), as opposed to a
/// refusal or a local failure.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ClientError>()
        .is_some_and(ClientError::is_retryable)
}

/// How often a waiting caller looks at the chain.
const POLL: Duration = Duration::from_millis(250);

impl ChainClient {
    pub fn new(rpc: RpcClient, keystore: Keystore) -> Self {
        Self {
            rpc,
            keystore: Arc::new(keystore),
            outbox: None,
            senders: Arc::default(),
        }
    }

    /// The same client, recording what it sends in `db`'s outbox.
    pub fn with_outbox(mut self, db: Arc<Db>) -> Self {
        self.outbox = Some(db);
        self
    }

    fn outbox(&self) -> anyhow::Result<&Arc<Db>> {
        self.outbox
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this chain client keeps no outbox: it cannot send"))
    }

    fn sender_lock(&self, from: &Address) -> NonceLock {
        self.senders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(*from)
            .or_default()
            .clone()
    }

    /// Sends a message for `purpose`: the message already recorded for it if one may still
    /// execute (or executed), else a new one. `record` persists it in the caller's own record
    /// before it is pushed; if `record` fails nothing is pushed. A push the chain did not answer
    /// is left to [`Self::wait_landed`], which pushes again; only an outright refusal is an
    /// error here.
    pub async fn send(
        &self,
        outgoing: Outgoing<'_>,
        record: impl FnOnce(&SignedMessage) -> anyhow::Result<()>,
    ) -> anyhow::Result<SignedMessage> {
        let Outgoing {
            purpose,
            from,
            to,
            method,
            params,
            value,
        } = outgoing;
        let db = self.outbox()?.clone();
        if let Some(entry) = outbox::for_purpose(&db, purpose)? {
            record(&entry.message)?;
            if entry.state == OutboxState::Pending
                && let Err(e) = self.push(&entry.message).await
                && !is_transient(&e)
            {
                tracing::debug!(message_cid = %entry.cid, error = %format!("{e:#}"), "pushing a recorded message again");
            }
            return Ok(entry.message);
        }
        let estimated = self
            .rpc
            .call::<GasEstimateMessageGas>((
                Message::unpriced(from, to, value, method, params),
                None,
                TipSetKey::head(),
            ))
            .await?;
        let pool_nonce = self.rpc.call::<MpoolGetNonce>((Addr(from),)).await?;
        let lock = self.sender_lock(&from);
        let mut next = lock.lock().await;
        let held = outbox::pending_nonces(&db, &from)?;
        let mut nonce = pool_nonce.max(next.unwrap_or(0));
        while held.contains(&nonce) {
            nonce += 1;
        }
        let mut message = estimated;
        message.0.sequence = nonce;
        let signed = self.sign_message(message)?;
        let mut entry = OutboxEntry::new(purpose, signed.clone())?;
        db.put_message(&entry)?;
        if let Err(e) = record(&signed) {
            entry.settle(OutboxState::Dropped {
                reason: format!("not recorded by its sender: {e:#}"),
            });
            db.put_message(&entry)?;
            return Err(e);
        }
        *next = Some(nonce + 1);
        match self.push(&signed).await {
            Ok(_) => Ok(signed),
            Err(e) if is_refusal(&e) => {
                entry.settle(OutboxState::Dropped {
                    reason: format!("{e:#}"),
                });
                db.put_message(&entry)?;
                // The nonce is free again: the next message takes it, leaving no gap.
                *next = Some(nonce);
                Err(e)
            }
            Err(e) => {
                tracing::warn!(message_cid = %entry.cid, %purpose, error = %format!("{e:#}"), "pushing a message failed; it is recorded and will be pushed again");
                Ok(signed)
            }
        }
    }

    /// Signs `message` with the hub's key for its sender.
    pub fn sign_message(&self, message: Message) -> anyhow::Result<SignedMessage> {
        let key = self.keystore.get(&message.0.from)?;
        let signature = key.sign(&message.cid().to_bytes())?;
        Ok(SignedMessage {
            message,
            signature: Signature::from_fvm(&signature),
        })
    }

    /// Waits until a pushed message executes, pushing it again while it is neither on chain
    /// nor in the pool (a chain that restarted may have lost its pool), and reporting when
    /// another message took its nonce. A replacement the outbox made (the same message at a
    /// higher fee) counts as the message. Gives up at `until` (an epoch), if given. A chain that
    /// does not answer is an error: the caller decides whether to wait on.
    pub async fn wait_landed(
        &self,
        signed: &SignedMessage,
        until: Option<ChainEpoch>,
    ) -> anyhow::Result<Option<Landed>> {
        let mut pushed_at: Option<ChainEpoch> = None;
        loop {
            if let Some(lookup) = self.search_any(signed).await? {
                self.settle(signed, Some(&lookup), None);
                return Ok(Some(Landed::Executed(Box::new(lookup))));
            }
            let head = self.rpc.call::<ChainHead>(()).await?;
            let from = signed.message.0.from;
            let actor = self
                .rpc
                .call::<StateGetActor>((Addr(from), TipSetKey::head()))
                .await?;
            if actor.nonce > signed.message.0.sequence {
                // Its nonce is used: by this message (or its replacement) in a tipset our
                // search just missed (a node may show the new nonce a moment before it finds
                // the message), or by another one. Look a few more times before deciding.
                for _ in 0..5 {
                    if let Some(lookup) = self.search_any(signed).await? {
                        self.settle(signed, Some(&lookup), None);
                        return Ok(Some(Landed::Executed(Box::new(lookup))));
                    }
                    tokio::time::sleep(POLL).await;
                }
                self.settle(signed, None, Some("another message took its nonce"));
                return Ok(Some(Landed::NonceTaken));
            }
            if until.is_some_and(|until| head.height > until) {
                return Ok(None);
            }
            if pushed_at.is_none_or(|at| head.height > at + 2) {
                match self.push(signed).await {
                    Ok(_) => {}
                    Err(e) => match e.downcast::<Refused>() {
                        Ok(Refused(reason)) => {
                            self.settle(signed, None, Some(&reason));
                            return Ok(Some(Landed::Refused(reason)));
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "pushing the message again failed")
                        }
                    },
                }
                pushed_at = Some(head.height);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Records how a message ended in the outbox (when it is there).
    fn settle(&self, signed: &SignedMessage, lookup: Option<&MsgLookup>, dropped: Option<&str>) {
        let (Some(db), Ok(cid)) = (&self.outbox, signed.cid()) else {
            return;
        };
        let cid = cid.to_string();
        let Ok(Some(mut entry)) = db.message(&cid) else {
            return;
        };
        let state = match (lookup, dropped) {
            (Some(lookup), _) => OutboxState::Executed {
                epoch: lookup.height,
                exit_code: lookup.receipt.exit_code,
            },
            (None, Some(reason)) => OutboxState::Dropped {
                reason: reason.to_string(),
            },
            (None, None) => return,
        };
        if entry.state != state {
            entry.settle(state);
            if let Err(e) = db.put_message(&entry) {
                tracing::warn!(message_cid = %cid, error = %format!("{e:#}"), "cannot record how a message ended");
            }
        }
    }

    /// Where the message, or a replacement of it, executed.
    async fn search_any(&self, signed: &SignedMessage) -> anyhow::Result<Option<MsgLookup>> {
        let cid = signed.cid().map_err(anyhow::Error::msg)?;
        let cids = match &self.outbox {
            Some(db) => outbox::replacements(db, &cid.to_string()),
            None => vec![cid.to_string()],
        };
        for text in cids {
            let cid: Cid = text.parse()?;
            if let Some(lookup) = self.search(cid).await? {
                return Ok(Some(lookup));
            }
        }
        Ok(None)
    }

    /// What became of a message: asks the chain for its execution, its sender's nonce and the
    /// pool, never the wording of an error.
    pub async fn fate(&self, signed: &SignedMessage) -> anyhow::Result<Fate> {
        if let Some(lookup) = self.search_any(signed).await? {
            return Ok(Fate::Executed(Box::new(lookup)));
        }
        let from = signed.message.0.from;
        let nonce = signed.message.0.sequence;
        let actor = self
            .rpc
            .call::<StateGetActor>((Addr(from), TipSetKey::head()))
            .await?;
        if actor.nonce > nonce {
            return Ok(match self.search_any(signed).await? {
                Some(lookup) => Fate::Executed(Box::new(lookup)),
                None => Fate::NonceTaken,
            });
        }
        let cid = signed.cid().map_err(anyhow::Error::msg)?;
        let pool = self.rpc.call::<MpoolPending>((TipSetKey::head(),)).await?;
        let waiting = pool
            .iter()
            .find(|m| m.message.0.from == from && m.message.0.sequence == nonce);
        Ok(match waiting {
            Some(m) if m.cid().ok() == Some(cid) => Fate::Waiting {
                blocking: actor.nonce == nonce,
            },
            Some(_) => Fate::TakenByOther,
            None => {
                // The head's state is its parent's: a message included at the head has left the
                // pool but not yet moved its sender's nonce. The pool's next nonce counts it.
                let pool_next = self.rpc.call::<MpoolGetNonce>((Addr(from),)).await?;
                if pool_next > nonce {
                    Fate::InBlock
                } else {
                    Fate::NotInPool
                }
            }
        })
    }

    /// Signs `bytes` with a key of the hub's keystore (election proofs, tickets, blocks).
    pub fn sign_bytes(
        &self,
        address: &Address,
        bytes: &[u8],
    ) -> anyhow::Result<fvm_shared::crypto::signature::Signature> {
        Ok(self.keystore.get(address)?.sign(bytes)?)
    }

    /// Whether the hub's keystore holds `address`'s key.
    pub fn has_key(&self, address: &Address) -> bool {
        self.keystore.has(address)
    }

    /// Randomness from the chain's tickets (`beacon: false`) or its beacon, for `tag` at `epoch`.
    pub async fn randomness(
        &self,
        beacon: bool,
        tag: i64,
        epoch: ChainEpoch,
        entropy: Vec<u8>,
    ) -> anyhow::Result<[u8; 32]> {
        let bytes = if beacon {
            self.rpc
                .call::<StateGetRandomnessFromBeacon>((
                    tag,
                    epoch,
                    Base64(entropy),
                    TipSetKey::head(),
                ))
                .await?
        } else {
            self.rpc
                .call::<StateGetRandomnessFromTickets>((
                    tag,
                    epoch,
                    Base64(entropy),
                    TipSetKey::head(),
                ))
                .await?
        };
        bytes
            .0
            .try_into()
            .map_err(|_| anyhow::anyhow!("the chain's randomness is not 32 bytes"))
    }

    pub async fn head_height(&self) -> anyhow::Result<ChainEpoch> {
        Ok(self.rpc.call::<ChainHead>(()).await?.height)
    }

    /// Builds, prices and signs a message from `from` (a key in the hub's keystore), with the
    /// pool's next nonce. For init, which records its few messages in files; everything else
    /// goes through [`Self::send`].
    pub async fn prepare(
        &self,
        from: Address,
        to: Address,
        method: u64,
        params: Vec<u8>,
        value: TokenAmount,
    ) -> anyhow::Result<SignedMessage> {
        let mut message = self
            .rpc
            .call::<GasEstimateMessageGas>((
                Message::unpriced(from, to, value, method, params),
                None,
                TipSetKey::head(),
            ))
            .await?;
        message.0.sequence = self.rpc.call::<MpoolGetNonce>((Addr(from),)).await?;
        self.sign_message(message)
    }

    /// Sends a prepared message. Sending it again (after a crash, say) is harmless. When the
    /// pool does not take it, the chain is asked why: a message executed, waiting, or whose
    /// nonce another message holds counts as sent (the wait tells which); only a message that
    /// is nowhere and whose nonce is free is [`Refused`].
    pub async fn push(&self, signed: &SignedMessage) -> anyhow::Result<Cid> {
        let cid = signed
            .cid()
            .map_err(|e| anyhow::anyhow!("message CID: {e}"))?;
        if self.search(cid).await?.is_some() {
            return Ok(cid);
        }
        match self.rpc.call::<MpoolPush>((signed.clone(),)).await {
            Ok(pushed) => Ok(pushed.0),
            Err(ClientError::Rpc { error, .. }) if !error.is_unavailable() => {
                match self.fate(signed).await? {
                    Fate::NotInPool => Err(Refused(error.message).into()),
                    _ => Ok(cid),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Where `cid` executed, if it has.
    pub async fn search(&self, cid: Cid) -> anyhow::Result<Option<MsgLookup>> {
        Ok(self
            .rpc
            .call::<StateSearchMsg>((TipSetKey::head(), CidJson(cid), -1, true))
            .await?)
    }

    /// Waits until `cid` has executed, looking every second (no call is held open).
    pub async fn wait(&self, cid: Cid) -> anyhow::Result<MsgLookup> {
        loop {
            if let Some(lookup) = self.search(cid).await? {
                return Ok(lookup);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
