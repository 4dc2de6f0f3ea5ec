//! The hub's chain client: reads through the Lotus API, and messages signed with the hub's own
//! keys.
//!
//! Sending is split so that callers can persist a message before it leaves the process:
//! [`ChainClient::prepare`] fills gas and nonce and signs; the caller records the signed message
//! (and its CID); [`ChainClient::push`] sends it, treating "already in the pool or on chain" as
//! success, so a retry after a crash never sends a second, different message.

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::methods::{
    ChainHead, GasEstimateMessageGas, MpoolGetNonce, MpoolPush, StateGetActor,
    StateGetRandomnessFromBeacon, StateGetRandomnessFromTickets, StateSearchMsg, StateWaitMsg,
};
use nelumbo_chain_api::types::{Message, MsgLookup, Signature, SignedMessage, TipSetKey};
use nelumbo_chain_api::{Addr, Base64, CidJson};
use nelumbo_keys::Keystore;
use nelumbo_rpc::{ClientError, RpcClient};

#[derive(Debug, Clone)]
pub struct ChainClient {
    pub rpc: RpcClient,
    keystore: Arc<Keystore>,
    /// Held from nonce to push, so two tasks never sign two messages with one nonce.
    send_lock: Arc<tokio::sync::Mutex<()>>,
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

/// The chain refused a message outright: it did not enter the pool and its nonce is unused,
/// so the sender may make a new one. Any other push error leaves that open.
#[derive(Debug, thiserror::Error)]
#[error("the chain refused the message: {0}")]
pub struct Refused(pub String);

/// Whether `error` (from `send` or `push`) is a refusal of the message itself.
pub fn is_refusal(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Refused>().is_some()
}

/// Pool answers that mean the nonce is already taken by a pooled or executed message: this
/// one (harmless) or another (the caller finds out while waiting). Nelumbo's devnet and Lotus
/// word it differently.
const NONCE_TAKEN: [&str; 3] = [
    "already used or waiting",
    "already in mpool",
    "nonce too low",
];

/// How often a waiting caller looks at the chain.
const POLL: Duration = Duration::from_millis(250);

impl ChainClient {
    pub fn new(rpc: RpcClient, keystore: Keystore) -> Self {
        Self {
            rpc,
            keystore: Arc::new(keystore),
            send_lock: Arc::default(),
        }
    }

    /// Prepares a message, hands it to `record` (which persists it), then pushes it. If
    /// `record` fails nothing is sent. The send lock makes nonces unique among the hub's tasks.
    pub async fn send(
        &self,
        from: Address,
        to: Address,
        method: u64,
        params: Vec<u8>,
        value: TokenAmount,
        record: impl FnOnce(&SignedMessage) -> anyhow::Result<()>,
    ) -> anyhow::Result<SignedMessage> {
        let _guard = self.send_lock.lock().await;
        let signed = self.prepare(from, to, method, params, value).await?;
        record(&signed)?;
        self.push(&signed).await?;
        Ok(signed)
    }

    /// Waits until a pushed message executes, pushing it again while it is neither on chain
    /// nor superseded (a chain that restarted may have lost its pool), and reporting when
    /// another message took its nonce. Gives up at `until` (an epoch), if given.
    pub async fn wait_landed(
        &self,
        signed: &SignedMessage,
        until: Option<ChainEpoch>,
    ) -> anyhow::Result<Option<Landed>> {
        let cid = signed
            .cid()
            .map_err(|e| anyhow::anyhow!("message CID: {e}"))?;
        let from = signed.message.0.from;
        let nonce = signed.message.0.sequence;
        let mut pushed_at = None;
        loop {
            if let Some(lookup) = self.search(cid).await? {
                return Ok(Some(Landed::Executed(Box::new(lookup))));
            }
            let head = self.rpc.call::<ChainHead>(()).await?;
            let actor = self
                .rpc
                .call::<StateGetActor>((Addr(from), TipSetKey::head()))
                .await?;
            if actor.nonce > nonce {
                // Its nonce is used: by this message in a tipset our search just missed, or by
                // another one.
                return Ok(Some(match self.search(cid).await? {
                    Some(lookup) => Landed::Executed(Box::new(lookup)),
                    None => Landed::NonceTaken,
                }));
            }
            if until.is_some_and(|until| head.height > until) {
                return Ok(None);
            }
            if pushed_at.is_none_or(|at| head.height > at + 5) {
                // Not executed five epochs after a push: make sure the pool has it.
                match self.push(signed).await {
                    Ok(_) => {}
                    Err(e) => match e.downcast::<Refused>() {
                        Ok(Refused(reason)) => return Ok(Some(Landed::Refused(reason))),
                        Err(e) => {
                            tracing::warn!(%cid, error = %format!("{e:#}"), "pushing the message again failed")
                        }
                    },
                }
                pushed_at = Some(head.height);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Signs `bytes` with a key of the hub's keystore (election proofs, tickets, blocks).
    pub fn sign_bytes(
        &self,
        address: &Address,
        bytes: &[u8],
    ) -> anyhow::Result<fvm_shared::crypto::signature::Signature> {
        Ok(self.keystore.get(address)?.sign(bytes)?)
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

    /// Builds, prices and signs a message from `from` (a key in the hub's keystore).
    pub async fn prepare(
        &self,
        from: Address,
        to: Address,
        method: u64,
        params: Vec<u8>,
        value: TokenAmount,
    ) -> anyhow::Result<SignedMessage> {
        let key = self.keystore.get(&from)?;
        let mut message = self
            .rpc
            .call::<GasEstimateMessageGas>((
                Message::unpriced(from, to, value, method, params),
                None,
                TipSetKey::head(),
            ))
            .await?;
        message.0.sequence = self.rpc.call::<MpoolGetNonce>((Addr(from),)).await?;
        let signature = key.sign(&message.cid().to_bytes())?;
        Ok(SignedMessage {
            message,
            signature: Signature::from_fvm(&signature),
        })
    }

    /// Sends a prepared message. Sending it again (after a crash, say) is harmless: a message
    /// already waiting in the pool or already executed counts as sent.
    pub async fn push(&self, signed: &SignedMessage) -> anyhow::Result<Cid> {
        let cid = signed
            .cid()
            .map_err(|e| anyhow::anyhow!("message CID: {e}"))?;
        if self.search(cid).await?.is_some() {
            return Ok(cid);
        }
        match self.rpc.call::<MpoolPush>((signed.clone(),)).await {
            Ok(pushed) => Ok(pushed.0),
            Err(ClientError::Rpc { error, .. })
                if NONCE_TAKEN.iter().any(|m| error.message.contains(m)) =>
            {
                // Our nonce is taken: by this very message (fine) or by another one, which
                // the caller finds out when it waits for this CID.
                Ok(cid)
            }
            Err(ClientError::Rpc { error, .. }) => Err(Refused(error.message).into()),
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

    /// Waits until `cid` has executed.
    pub async fn wait(&self, cid: Cid) -> anyhow::Result<MsgLookup> {
        Ok(self
            .rpc
            .call::<StateWaitMsg>((CidJson(cid), 0, -1, true))
            .await?)
    }
}
