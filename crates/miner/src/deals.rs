//! `MarketPublishDeals`: the hub checks every deal a spoke hands it (invariant 4), batches
//! them into `PublishStorageDeals` messages signed by the worker, and answers with the deal ID
//! once the message has executed.
//!
//! Each deal has a record keyed by its proposal CID, written before anything is sent: the
//! batch's signed message is recorded in every deal of the batch before it is pushed. A second
//! call for the same proposal is answered from the record (published), waits for the message
//! in flight, or (after a failure) checks and queues the deal again; after a restart, batches
//! that were sent are followed to their end. Nothing is published twice by the hub.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use cid::Cid;
use fil_actor_market_state::v18::{
    ClientDealProposal, PublishStorageDealsParams, PublishStorageDealsReturn,
};
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::{ChainHead, StateAccountKey, StateMarketBalance};
use nelumbo_chain_api::types::{SignedMessage, TipSetKey, cbor_cid};
use nelumbo_miner_api::types::PublishedDeal;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::chain::{ChainClient, Landed, is_refusal};
use crate::db::Db;

const MARKET_ACTOR: u64 = 5;
const ADD_BALANCE: u64 = 2;
const PUBLISH_STORAGE_DEALS: u64 = 4;

/// How long the publisher gathers deals into one message, and at most how many.
const BATCH_WAIT: Duration = Duration::from_secs(2);
const BATCH_MAX: usize = 8;

/// A deal's publishing, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PublishState {
    /// Checked and waiting for the next batch.
    Queued,
    /// In the batch `message`, at `index`.
    Sent {
        message: Box<SignedMessage>,
        index: u64,
    },
    Published {
        deal_id: u64,
        #[serde(with = "nelumbo_chain_api::json::cid_obj")]
        message: Cid,
        epoch: ChainEpoch,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DealRecord {
    #[serde(with = "nelumbo_chain_api::json::cid_obj")]
    pub proposal_cid: Cid,
    /// The CBOR `ClientDealProposal`.
    pub deal: Vec<u8>,
    pub state: PublishState,
}

impl DealRecord {
    fn published(&self) -> Option<PublishedDeal> {
        match &self.state {
            PublishState::Published {
                deal_id,
                message,
                epoch,
            } => Some(PublishedDeal {
                proposal_cid: self.proposal_cid,
                deal_id: *deal_id,
                message: *message,
                epoch: *epoch,
            }),
            _ => None,
        }
    }
}

struct Request {
    proposal_cid: Cid,
    deal: ClientDealProposal,
    reply: oneshot::Sender<Result<PublishedDeal, String>>,
}

/// Checks and queues deals; one task sends the batches.
#[derive(Debug, Clone)]
pub struct Publisher {
    queue: mpsc::Sender<Request>,
    /// Proposals a call is publishing now: a second call for one waits for the first.
    inflight: Arc<Mutex<HashSet<Cid>>>,
    db: Arc<Db>,
    chain: ChainClient,
    actor: Address,
    sector_size: u64,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("proposal_cid", &self.proposal_cid)
            .finish()
    }
}

impl Publisher {
    /// Starts the batching task, after following batches a previous run had sent.
    pub fn start(
        db: Arc<Db>,
        chain: ChainClient,
        actor: Address,
        worker: Address,
        sector_size: u64,
        cancel: CancellationToken,
    ) -> Self {
        let (queue, requests) = mpsc::channel(256);
        let batcher = Batcher {
            db: db.clone(),
            chain: chain.clone(),
            actor,
            worker,
        };
        tokio::spawn(batcher.run(requests, cancel));
        Self {
            queue,
            inflight: Arc::default(),
            db,
            chain,
            actor,
            sector_size,
        }
    }

    /// `MarketPublishDeals`: checks `cbor` (a `ClientDealProposal`) and publishes it, or answers
    /// from what the hub already did for it.
    pub async fn publish(&self, cbor: &[u8]) -> Result<PublishedDeal, String> {
        let deal: ClientDealProposal = fvm_ipld_encoding::from_slice(cbor)
            .map_err(|e| format!("the deal is not a CBOR ClientDealProposal: {e}"))?;
        let proposal_bytes = fvm_ipld_encoding::to_vec(&deal.proposal)
            .map_err(|e| format!("encode the proposal: {e}"))?;
        let proposal_cid = cbor_cid(&proposal_bytes);
        loop {
            let record = self.db.deal(&proposal_cid).map_err(|e| format!("{e:#}"))?;
            if let Some(published) = record.as_ref().and_then(|r| r.published()) {
                return Ok(published);
            }
            let sent = matches!(
                record.as_ref().map(|r| &r.state),
                Some(PublishState::Sent { .. })
            );
            {
                let mut inflight = self
                    .inflight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // A batch in flight (this run's or one resumed after a restart) or another
                // call for the same proposal: wait for its outcome. Otherwise this call takes it.
                if !sent && inflight.insert(proposal_cid) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let _claim = Claim {
            inflight: self.inflight.clone(),
            cid: proposal_cid,
        };
        self.check(&deal, &proposal_bytes).await?;
        self.db
            .put_deal(&DealRecord {
                proposal_cid,
                deal: cbor.to_vec(),
                state: PublishState::Queued,
            })
            .map_err(|e| format!("{e:#}"))?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request {
                proposal_cid,
                deal,
                reply,
            })
            .await
            .map_err(|_| "the hub is stopping".to_string())?;
        answer
            .await
            .map_err(|_| "the hub is stopping".to_string())?
    }

    /// What the hub checks before it signs anything for a deal.
    async fn check(&self, deal: &ClientDealProposal, proposal_bytes: &[u8]) -> Result<(), String> {
        let p = &deal.proposal;
        let chain_error = |e: nelumbo_rpc::ClientError| format!("ask the chain: {e}");
        let provider = self
            .chain
            .rpc
            .call::<nelumbo_chain_api::methods::StateLookupID>((
                Addr(p.provider),
                TipSetKey::head(),
            ))
            .await
            .map(|a| a.0)
            .unwrap_or(p.provider);
        if provider != self.actor {
            return Err(format!(
                "the deal's provider is {}, not this hub's miner {}",
                p.provider, self.actor
            ));
        }
        let key = self
            .chain
            .rpc
            .call::<StateAccountKey>((Addr(p.client), TipSetKey::head()))
            .await
            .map_err(|e| format!("the client {} has no account key: {e}", p.client))?;
        deal.client_signature
            .verify(proposal_bytes, &key.0)
            .map_err(|e| format!("the client's signature does not verify: {e}"))?;
        let size = p.piece_size.0;
        if size < 128 || !size.is_power_of_two() || size > self.sector_size {
            return Err(format!(
                "piece size {size} is not a padded piece size that fits a {}-byte sector",
                self.sector_size
            ));
        }
        let head = self
            .chain
            .rpc
            .call::<ChainHead>(())
            .await
            .map_err(chain_error)?
            .height;
        if p.start_epoch <= head {
            return Err(format!(
                "the deal starts at epoch {}, which has passed (the chain is at {head})",
                p.start_epoch
            ));
        }
        if p.end_epoch <= p.start_epoch {
            return Err(format!(
                "the deal ends at epoch {}, not after its start {}",
                p.end_epoch, p.start_epoch
            ));
        }
        let cost =
            &p.storage_price_per_epoch * (p.end_epoch - p.start_epoch) + &p.client_collateral;
        let balance = self
            .chain
            .rpc
            .call::<StateMarketBalance>((Addr(p.client), TipSetKey::head()))
            .await
            .map_err(chain_error)?;
        let available = &balance.escrow - &balance.locked;
        if available < cost {
            return Err(format!(
                "the client's market escrow has {} available, the deal needs {}",
                nelumbo_chain_api::fil::format_fil(&available),
                nelumbo_chain_api::fil::format_fil(&cost)
            ));
        }
        Ok(())
    }
}

/// Releases a proposal claimed by a call, however the call ends.
struct Claim {
    inflight: Arc<Mutex<HashSet<Cid>>>,
    cid: Cid,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.cid);
    }
}

/// The task that sends batches.
struct Batcher {
    db: Arc<Db>,
    chain: ChainClient,
    actor: Address,
    worker: Address,
}

impl Batcher {
    async fn run(self, mut requests: mpsc::Receiver<Request>, cancel: CancellationToken) {
        self.resume().await;
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                request = requests.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
            };
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + BATCH_WAIT;
            while batch.len() < BATCH_MAX {
                match tokio::time::timeout_at(until, requests.recv()).await {
                    Ok(Some(request)) => batch.push(request),
                    _ => break,
                }
            }
            let outcomes = self.publish(&batch).await;
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
        }
    }

    /// Follows the batches a previous run sent.
    async fn resume(&self) {
        let Ok(records) = self.db.deals() else {
            return;
        };
        let mut sent: Vec<(SignedMessage, Vec<(u64, Cid)>)> = Vec::new();
        for mut record in records {
            if matches!(record.state, PublishState::Queued) {
                // Checked but never sent before the restart: the next call checks it again.
                record.state = PublishState::Failed {
                    reason: "the hub restarted before publishing it; call again".into(),
                };
                if let Err(e) = self.db.put_deal(&record) {
                    tracing::error!(error = %format!("{e:#}"), "cannot record a deal");
                }
                continue;
            }
            if let PublishState::Sent { message, index } = record.state {
                let message = *message;
                match sent.iter_mut().find(|(m, _)| m == &message) {
                    Some((_, deals)) => deals.push((index, record.proposal_cid)),
                    None => sent.push((message, vec![(index, record.proposal_cid)])),
                }
            }
        }
        for (message, deals) in sent {
            tracing::info!(
                deals = deals.len(),
                "following a PublishStorageDeals batch sent before the restart"
            );
            let outcome = self.follow(&message, deals.len()).await;
            for (index, cid) in deals {
                let result = outcome.as_ref().map_err(Clone::clone).and_then(|ids| {
                    ids.get(index as usize)
                        .cloned()
                        .unwrap_or_else(|| Err("the batch has no deal at this index".into()))
                });
                let _ = self.settle(cid, Some(&message), result);
            }
        }
    }

    /// Sends one batch; one outcome per request, in order.
    async fn publish(&self, batch: &[Request]) -> Vec<Result<PublishedDeal, String>> {
        let fail_all = |reason: String| batch.iter().map(|_| Err(reason.clone())).collect();
        if let Err(e) = self.provide_collateral(batch).await {
            let reason = format!("{e:#}");
            for request in batch {
                let _ = self.settle(request.proposal_cid, None, Err(reason.clone()));
            }
            return fail_all(reason);
        }
        let params = PublishStorageDealsParams {
            deals: batch.iter().map(|r| r.deal.clone()).collect(),
        };
        let params = match fvm_ipld_encoding::to_vec(&params) {
            Ok(params) => params,
            Err(e) => return fail_all(e.to_string()),
        };
        let db = self.db.clone();
        let sent = self
            .chain
            .send(
                self.worker,
                Address::new_id(MARKET_ACTOR),
                PUBLISH_STORAGE_DEALS,
                params,
                TokenAmount::from_atto(0),
                |signed| {
                    for (index, request) in batch.iter().enumerate() {
                        let mut record = db
                            .deal(&request.proposal_cid)?
                            .context("a queued deal has no record")?;
                        record.state = PublishState::Sent {
                            message: Box::new(signed.clone()),
                            index: index as u64,
                        };
                        db.put_deal(&record)?;
                    }
                    Ok(())
                },
            )
            .await;
        let message = match sent {
            Ok(message) => message,
            Err(e) if is_refusal(&e) => {
                // Refused outright (every deal invalid, say): the chain took nothing.
                let reason = format!("{e:#}");
                for request in batch {
                    let _ = self.settle(request.proposal_cid, None, Err(reason.clone()));
                }
                return fail_all(reason);
            }
            Err(e) => {
                // The batch may have been recorded and may be in the pool: follow it if so.
                let recorded = self
                    .db
                    .deal(&batch[0].proposal_cid)
                    .ok()
                    .flatten()
                    .and_then(|r| match r.state {
                        PublishState::Sent { message, .. } => Some(*message),
                        _ => None,
                    });
                match recorded {
                    Some(message) => {
                        tracing::warn!(error = %format!("{e:#}"), "PublishStorageDeals push failed; following the recorded batch");
                        message
                    }
                    None => {
                        let reason = format!("PublishStorageDeals could not be made: {e:#}");
                        for request in batch {
                            let _ = self.settle(request.proposal_cid, None, Err(reason.clone()));
                        }
                        return fail_all(reason);
                    }
                }
            }
        };
        tracing::info!(deals = batch.len(), message = %message.cid().map(|c| c.to_string()).unwrap_or_default(), "PublishStorageDeals sent");
        let outcome = self.follow(&message, batch.len()).await;
        batch
            .iter()
            .enumerate()
            .map(|(index, request)| {
                let result = outcome.as_ref().map_err(Clone::clone).and_then(|ids| {
                    ids.get(index)
                        .cloned()
                        .unwrap_or_else(|| Err("the batch has no deal at this index".into()))
                });
                self.settle(request.proposal_cid, Some(&message), result)
            })
            .collect()
    }

    /// Tops up the provider's market escrow from the worker when the batch's collateral needs it.
    async fn provide_collateral(&self, batch: &[Request]) -> anyhow::Result<()> {
        let needed: TokenAmount = batch
            .iter()
            .map(|r| r.deal.proposal.provider_collateral.clone())
            .sum();
        if needed.is_zero() {
            return Ok(());
        }
        let balance = self
            .chain
            .rpc
            .call::<StateMarketBalance>((Addr(self.actor), TipSetKey::head()))
            .await?;
        let available = &balance.escrow - &balance.locked;
        if available >= needed {
            return Ok(());
        }
        let shortfall = needed - available;
        tracing::info!(amount = %nelumbo_chain_api::fil::format_fil(&shortfall), "adding provider collateral to the market escrow");
        let params = fvm_ipld_encoding::to_vec(&self.actor)?;
        // Not recorded: if the hub stops before it lands, the next batch tops up again and
        // the provider's escrow holds a little more (withdrawable) collateral.
        let signed = self
            .chain
            .send(
                self.worker,
                Address::new_id(MARKET_ACTOR),
                ADD_BALANCE,
                params,
                shortfall,
                |_| Ok(()),
            )
            .await?;
        match self.chain.wait_landed(&signed, None).await? {
            Some(Landed::Executed(lookup)) if lookup.receipt.exit_code == 0 => Ok(()),
            other => anyhow::bail!("adding provider collateral failed: {other:?}"),
        }
    }

    /// Waits for a batch; per deal index, its ID or why the market refused it.
    async fn follow(
        &self,
        message: &SignedMessage,
        count: usize,
    ) -> Result<Vec<Result<(u64, ChainEpoch), String>>, String> {
        let landed = self
            .chain
            .wait_landed(message, None)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let lookup = match landed {
            Some(Landed::Executed(lookup)) => lookup,
            Some(Landed::NonceTaken) => {
                return Err(
                    "another message from the worker took the batch's nonce; call again".into(),
                );
            }
            Some(Landed::Refused(reason)) => {
                return Err(format!("the chain refused PublishStorageDeals: {reason}"));
            }
            None => return Err("gave up waiting for PublishStorageDeals".into()),
        };
        if lookup.receipt.exit_code != 0 {
            return Err(format!(
                "PublishStorageDeals failed on chain with exit code {}",
                lookup.receipt.exit_code
            ));
        }
        let ret: PublishStorageDealsReturn =
            fvm_ipld_encoding::from_slice(&lookup.receipt.r#return)
                .map_err(|e| format!("decode PublishStorageDeals' return: {e}"))?;
        let mut ids = ret.ids.into_iter();
        Ok((0..count as u64)
            .map(|index| {
                if ret.valid_deals.get(index) {
                    ids.next()
                        .map(|id| (id, lookup.height))
                        .ok_or_else(|| "the market returned too few deal IDs".to_string())
                } else {
                    Err("the market actor refused this deal (see the chain's log for why)".into())
                }
            })
            .collect())
    }

    /// Records a deal's outcome and returns it as the caller sees it.
    fn settle(
        &self,
        proposal_cid: Cid,
        message: Option<&SignedMessage>,
        result: Result<(u64, ChainEpoch), String>,
    ) -> Result<PublishedDeal, String> {
        let message = message.and_then(|m| m.cid().ok());
        let state = match (&result, message) {
            (Ok((deal_id, epoch)), Some(message)) => PublishState::Published {
                deal_id: *deal_id,
                message,
                epoch: *epoch,
            },
            (Ok(_), None) => PublishState::Failed {
                reason: "published without a message: a bug".into(),
            },
            (Err(reason), _) => PublishState::Failed {
                reason: reason.clone(),
            },
        };
        let record = match self.db.deal(&proposal_cid) {
            Ok(Some(mut record)) => {
                record.state = state;
                record
            }
            _ => return Err("the deal's record vanished".into()),
        };
        if let Err(e) = self.db.put_deal(&record) {
            return Err(format!("record the deal: {e:#}"));
        }
        match &result {
            Ok((deal_id, _)) => tracing::info!(proposal = %proposal_cid, deal_id, "deal published"),
            Err(reason) => tracing::warn!(proposal = %proposal_cid, %reason, "deal not published"),
        }
        result.map(|_| ()).and_then(|()| {
            record
                .published()
                .ok_or_else(|| "inconsistent deal record".to_string())
        })
    }
}
