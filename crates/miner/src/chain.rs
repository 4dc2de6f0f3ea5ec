//! The hub's chain client: reads through the Lotus API, and messages signed with the hub's own
//! keys.
//!
//! Sending is split so that callers can persist a message before it leaves the process:
//! [`ChainClient::prepare`] fills gas and nonce and signs; the caller records the signed message
//! (and its CID); [`ChainClient::push`] sends it, treating "already in the pool or on chain" as
//! success, so a retry after a crash never sends a second, different message.

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::methods::{
    GasEstimateMessageGas, MpoolGetNonce, MpoolPush, StateSearchMsg, StateWaitMsg,
};
use nelumbo_chain_api::types::{Message, MsgLookup, Signature, SignedMessage, TipSetKey};
use nelumbo_chain_api::{Addr, CidJson};
use nelumbo_keys::Keystore;
use nelumbo_rpc::{ClientError, RpcClient};

#[derive(Debug, Clone)]
pub struct ChainClient {
    pub rpc: RpcClient,
    keystore: std::sync::Arc<Keystore>,
}

impl ChainClient {
    pub fn new(rpc: RpcClient, keystore: Keystore) -> Self {
        Self {
            rpc,
            keystore: std::sync::Arc::new(keystore),
        }
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
                if error.message.contains("already used or waiting") =>
            {
                // Our nonce is taken: by this very message (fine) or by another one, which
                // the caller finds out when it waits for this CID.
                Ok(cid)
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

    /// Waits until `cid` has executed.
    pub async fn wait(&self, cid: Cid) -> anyhow::Result<MsgLookup> {
        Ok(self
            .rpc
            .call::<StateWaitMsg>((CidJson(cid), 0, -1, true))
            .await?)
    }
}
