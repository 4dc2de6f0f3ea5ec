//! `MarketPublishDeals`: the hub checks every deal a spoke hands it against its own policy
//! (invariant 4), batches them into `PublishStorageDeals` messages signed by the worker, and
//! answers with the deal ID once the message has executed.
//!
//! The policy ([`crate::config::DealSettings`] and the last ask the hub signed), whatever the
//! spoke says: a piece the hub holds (uploaded and verified: no collateral is ever locked for
//! data the hub does not have), price at least the ask, piece size within the ask, provider
//! collateral within the chain's bounds and under the hub's cap, a start epoch far enough
//! ahead to seal, a duration within bounds, the client's signature and escrow.
//!
//! Each deal has a record keyed by its proposal CID, written before anything is sent: the
//! batch's signed message is recorded in every deal of the batch before it is pushed. A second
//! call for the same proposal is answered from the record (published), waits for the message
//! in flight, or (after a failure) checks and queues the deal again; after a restart, batches
//! that were sent are followed to their end. A chain that is away never fails a deal: checks
//! answer "unavailable" (the spoke calls again) and a sent batch is followed until the chain
//! says how it ended.

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
use nelumbo_chain_api::methods::{
    ChainHead, StateAccountKey, StateDealProviderCollateralBounds, StateLookupID,
    StateMarketBalance,
};
use nelumbo_chain_api::types::{SignedMessage, TipSetKey, cbor_cid};
use nelumbo_miner_api::ApiError;
use nelumbo_miner_api::error::from_chain_error;
use nelumbo_miner_api::types::PublishedDeal;
use nelumbo_service::{Backoff, Workers};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::chain::{ChainClient, Landed, Outgoing, is_refusal, is_transient};
use crate::config::DealSettings;
use crate::db::Db;
use crate::spokes::SignedAsk;

const MARKET_ACTOR: u64 = 5;
const ADD_BALANCE: u64 = 2;
const PUBLISH_STORAGE_DEALS: u64 = 4;

/// How long the publisher gathers deals into one message, and at most how many.
const BATCH_WAIT: Duration = Duration::from_secs(2);
const BATCH_MAX: usize = 8;
const GIB: u64 = 1 << 30;

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

    /// The piece a queued, sent or published deal claims (for the upload bound).
    pub fn claimed_piece(&self) -> Option<Cid> {
        if matches!(self.state, PublishState::Failed { .. }) {
            return None;
        }
        fvm_ipld_encoding::from_slice::<ClientDealProposal>(&self.deal)
            .ok()
            .map(|d| d.proposal.piece_cid)
    }
}

struct Request {
    proposal_cid: Cid,
    deal: ClientDealProposal,
    reply: oneshot::Sender<Result<PublishedDeal, ApiError>>,
    /// Held until the batcher has settled the deal, not only while the caller waits: a spoke
    /// that hangs up (it was killed, or its call timed out) and calls again must wait for
    /// this request's outcome, not queue the deal a second time (which put it in the same
    /// batch twice, or in two batches, and failed a deal that was in fact published).
    _claim: Claim,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("proposal_cid", &self.proposal_cid)
            .finish()
    }
}

/// The policy in force, parsed once.
#[derive(Debug, Clone)]
pub struct DealPolicy {
    pub max_provider_collateral: TokenAmount,
    pub min_start_lead_epochs: i64,
    pub min_duration_epochs: i64,
    pub max_duration_epochs: i64,
}

impl DealPolicy {
    pub fn from_settings(deals: &DealSettings) -> Self {
        Self {
            max_provider_collateral: deals.max_provider_collateral.clone(),
            min_start_lead_epochs: deals.min_start_lead_epochs,
            min_duration_epochs: deals.min_duration_epochs,
            max_duration_epochs: deals.max_duration_epochs,
        }
    }
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
    policy: DealPolicy,
}

/// What the publisher is made of.
#[derive(Debug)]
pub struct PublisherSetup {
    pub db: Arc<Db>,
    pub chain: ChainClient,
    /// The miner actor.
    pub actor: Address,
    /// The worker address, which signs and pays for `PublishStorageDeals`.
    pub worker: Address,
    pub sector_size: u64,
    pub policy: DealPolicy,
    /// The batcher and each batch it follows report here (`workers list`).
    pub worker_list: Workers,
}

impl Publisher {
    /// Starts the batching task, after following batches a previous run had sent.
    pub fn start(setup: PublisherSetup, cancel: CancellationToken) -> Self {
        let PublisherSetup {
            db,
            chain,
            actor,
            worker,
            sector_size,
            policy,
            worker_list,
        } = setup;
        let (queue, requests) = mpsc::channel(256);
        let batcher = Batcher {
            db: db.clone(),
            chain: chain.clone(),
            actor,
            worker,
            policy: policy.clone(),
            worker_list,
        };
        tokio::spawn(batcher.run(requests, cancel));
        Self {
            queue,
            inflight: Arc::default(),
            db,
            chain,
            actor,
            sector_size,
            policy,
        }
    }

    /// `MarketPublishDeals`: checks `cbor` (a `ClientDealProposal`) and publishes it, or answers
    /// from what the hub already did for it.
    pub async fn publish(&self, cbor: &[u8]) -> Result<PublishedDeal, ApiError> {
        let internal = |e: anyhow::Error| ApiError::refused(format!("{e:#}"));
        let deal: ClientDealProposal = fvm_ipld_encoding::from_slice(cbor).map_err(|e| {
            ApiError::refused(format!("the deal is not a CBOR ClientDealProposal: {e}"))
        })?;
        let proposal_bytes = fvm_ipld_encoding::to_vec(&deal.proposal)
            .map_err(|e| ApiError::refused(format!("encode the proposal: {e}")))?;
        let proposal_cid = cbor_cid(&proposal_bytes);
        loop {
            let record = self.db.deal(&proposal_cid).map_err(internal)?;
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
        let claim = Claim {
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
            .map_err(internal)?;
        let (reply, answer) = oneshot::channel();
        let stopping = || ApiError::unavailable("the hub is stopping; call again");
        self.queue
            .send(Request {
                proposal_cid,
                deal,
                reply,
                _claim: claim,
            })
            .await
            .map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?
    }

    /// What the hub checks before it signs anything for a deal: its own policy first (no chain
    /// call), then what only the chain can say.
    async fn check(
        &self,
        deal: &ClientDealProposal,
        proposal_bytes: &[u8],
    ) -> Result<(), ApiError> {
        check_policy(deal, &self.policy, self.sector_size, &self.db)?;
        let p = &deal.proposal;
        let chain = |what: &str, e: nelumbo_rpc::ClientError| from_chain_error(what, &e);
        let provider = match self
            .chain
            .rpc
            .call::<StateLookupID>((Addr(p.provider), TipSetKey::head()))
            .await
        {
            Ok(id) => Some(id.0),
            Err(e) if e.is_retryable() => return Err(chain("look up the deal's provider", e)),
            // No such actor: certainly not this miner.
            Err(_) => None,
        };
        if provider != Some(self.actor) {
            return Err(ApiError::refused(format!(
                "the deal's provider is {}, not this hub's miner {}",
                p.provider, self.actor
            )));
        }
        let key = self
            .chain
            .rpc
            .call::<StateAccountKey>((Addr(p.client), TipSetKey::head()))
            .await
            .map_err(|e| chain(&format!("the client {}'s account key", p.client), e))?;
        deal.client_signature
            .verify(proposal_bytes, &key.0)
            .map_err(|e| {
                ApiError::refused(format!("the client's signature does not verify: {e}"))
            })?;
        let head = self
            .chain
            .rpc
            .call::<ChainHead>(())
            .await
            .map_err(|e| chain("the chain's head", e))?
            .height;
        let earliest = head.saturating_add(self.policy.min_start_lead_epochs);
        if p.start_epoch < earliest {
            return Err(ApiError::refused(format!(
                "the deal starts at epoch {}, too soon to seal: the chain is at {head} and the hub needs {} epochs ([deals] min_start_lead_epochs), so the earliest start is {earliest}",
                p.start_epoch, self.policy.min_start_lead_epochs
            )));
        }
        let bounds = self
            .chain
            .rpc
            .call::<StateDealProviderCollateralBounds>((
                p.piece_size.0,
                p.verified_deal,
                TipSetKey::head(),
            ))
            .await
            .map_err(|e| chain("the market's collateral bounds", e))?;
        if p.provider_collateral < bounds.min || p.provider_collateral > bounds.max {
            return Err(ApiError::refused(format!(
                "provider collateral {} is outside the chain's bounds [{}, {}]",
                p.provider_collateral.atto(),
                bounds.min.atto(),
                bounds.max.atto()
            )));
        }
        let cost =
            &p.storage_price_per_epoch * (p.end_epoch - p.start_epoch) + &p.client_collateral;
        let balance = self
            .chain
            .rpc
            .call::<StateMarketBalance>((Addr(p.client), TipSetKey::head()))
            .await
            .map_err(|e| chain("the client's market balance", e))?;
        let available = &balance.escrow - &balance.locked;
        if available < cost {
            return Err(ApiError::refused(format!(
                "the client's market escrow has {} available, the deal needs {}",
                nelumbo_chain_api::fil::format_fil(&available),
                nelumbo_chain_api::fil::format_fil(&cost)
            )));
        }
        Ok(())
    }
}

/// The hub's policy for a deal, without the chain: the piece it holds, the ask it signed, its
/// caps and bounds. Every number from the proposal is checked before it is used.
pub fn check_policy(
    deal: &ClientDealProposal,
    policy: &DealPolicy,
    sector_size: u64,
    db: &Db,
) -> Result<(), ApiError> {
    let p = &deal.proposal;
    let size = p.piece_size.0;
    if size < 128 || !size.is_power_of_two() || size > sector_size {
        return Err(ApiError::refused(format!(
            "piece size {size} is not a padded piece size that fits a {sector_size}-byte sector"
        )));
    }
    let duration = p.end_epoch.checked_sub(p.start_epoch).unwrap_or(-1);
    if p.start_epoch < 0 || duration <= 0 {
        return Err(ApiError::refused(format!(
            "the deal's epochs are not a span: start {}, end {}",
            p.start_epoch, p.end_epoch
        )));
    }
    if duration < policy.min_duration_epochs || duration > policy.max_duration_epochs {
        return Err(ApiError::refused(format!(
            "the deal lasts {duration} epochs; the hub publishes deals of {} to {} epochs ([deals] min_duration_epochs, max_duration_epochs)",
            policy.min_duration_epochs, policy.max_duration_epochs
        )));
    }
    if p.provider_collateral.is_negative()
        || p.client_collateral.is_negative()
        || p.storage_price_per_epoch.is_negative()
    {
        return Err(ApiError::refused("a deal's amounts cannot be negative"));
    }
    if p.provider_collateral > policy.max_provider_collateral {
        return Err(ApiError::refused(format!(
            "the deal asks {} attoFIL of provider collateral, more than the hub's cap of {} ([deals] max_provider_collateral)",
            p.provider_collateral.atto(),
            policy.max_provider_collateral.atto()
        )));
    }
    let ask: SignedAsk = db
        .setting(crate::spokes::ASK_KEY)
        .map_err(|e| ApiError::refused(format!("{e:#}")))?
        .ok_or_else(|| {
            ApiError::refused(
                "the hub has signed no ask for this miner yet: a deal's price is checked against it (markets has its ask signed when it starts)",
            )
        })?;
    let (ask_price, which) = if p.verified_deal {
        (&ask.verified_price, "verified price")
    } else {
        (&ask.price, "price")
    };
    let floor = TokenAmount::from_atto(ask_price.atto() * size / GIB);
    if p.storage_price_per_epoch < floor {
        return Err(ApiError::refused(format!(
            "the deal pays {} attoFIL per epoch, less than the {which} of the ask the hub signed ({} attoFIL per GiB per epoch, {} for this piece)",
            p.storage_price_per_epoch.atto(),
            ask_price.atto(),
            floor.atto()
        )));
    }
    if size < ask.min_piece_size || size > ask.max_piece_size {
        return Err(ApiError::refused(format!(
            "piece size {size} is outside the ask the hub signed ({} to {})",
            ask.min_piece_size, ask.max_piece_size
        )));
    }
    let key = nelumbo_commp::parse_piece_cid(&p.piece_cid)
        .map(|info| nelumbo_commp::piece_cid_v1(&info.commitment).to_string())
        .map_err(|e| ApiError::refused(format!("the deal's piece CID: {e}")))?;
    let held = db
        .piece(&key)
        .map_err(|e| ApiError::refused(format!("{e:#}")))?
        .filter(|piece| piece.path.is_file());
    match held {
        Some(piece) if piece.piece_size == size => Ok(()),
        Some(piece) => Err(ApiError::refused(format!(
            "the hub holds piece {key} at {} bytes, not the deal's {size}",
            piece.piece_size
        ))),
        None => Err(ApiError::PieceMissing(format!(
            "the hub does not hold piece {key}: upload it (PUT /pieces/{key}?size={size}) before publishing; no collateral is locked for data the hub does not have"
        ))),
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
#[derive(Clone)]
struct Batcher {
    db: Arc<Db>,
    chain: ChainClient,
    actor: Address,
    worker: Address,
    policy: DealPolicy,
    /// The batcher and each batch it follows report here (`workers list`).
    worker_list: Workers,
}

/// A batch's purpose in the outbox: the same deals make the same purpose.
fn batch_purpose(prefix: &str, cids: &[Cid]) -> String {
    let mut sorted: Vec<String> = cids.iter().map(Cid::to_string).collect();
    sorted.sort();
    let digest = blake2b_simd::Params::new()
        .hash_length(16)
        .hash(sorted.join(",").as_bytes());
    format!("{prefix}/{}", digest.to_hex())
}

impl Batcher {
    async fn run(self, mut requests: mpsc::Receiver<Request>, cancel: CancellationToken) {
        self.resume(&cancel);
        let worker = self
            .worker_list
            .start("publish", "PublishStorageDeals batcher");
        loop {
            worker.idle("deals to publish");
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
            worker.busy(format!("publishing a batch of {} deals", batch.len()));
            let outcomes = tokio::select! {
                _ = cancel.cancelled() => return,
                outcomes = self.publish(&batch, &cancel) => outcomes,
            };
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
        }
    }

    /// Follows, each in its own task, the batches a previous run sent.
    fn resume(&self, cancel: &CancellationToken) {
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
            let (batcher, cancel) = (self.clone(), cancel.clone());
            let message_cid = message.cid().map(|c| c.to_string()).unwrap_or_default();
            let span = tracing::info_span!("publish_batch", message_cid);
            let follow = async move {
                tracing::info!(
                    deals = deals.len(),
                    "following a PublishStorageDeals batch sent before the restart"
                );
                let count = deals
                    .iter()
                    .map(|(i, _)| *i as usize + 1)
                    .max()
                    .unwrap_or(0);
                let Some(outcome) = batcher.follow(&message, count, &cancel).await else {
                    return;
                };
                for (index, cid) in deals {
                    let result = outcome.as_ref().map_err(Clone::clone).and_then(|ids| {
                        ids.get(index as usize)
                            .cloned()
                            .unwrap_or_else(|| Err("the batch has no deal at this index".into()))
                    });
                    let _ = batcher.settle(cid, Some(&message), result);
                }
            };
            tokio::spawn(tracing::Instrument::instrument(follow, span));
        }
    }

    /// Sends one batch; one outcome per request, in order.
    async fn publish(
        &self,
        batch: &[Request],
        cancel: &CancellationToken,
    ) -> Vec<Result<PublishedDeal, ApiError>> {
        let cids: Vec<Cid> = batch.iter().map(|r| r.proposal_cid).collect();
        // Before anything is signed, a chain that is away fails nothing: the deals are
        // forgotten (their records say why) and the spokes call again.
        let not_now = |e: anyhow::Error| -> Vec<Result<PublishedDeal, ApiError>> {
            let error = if is_transient(&e) {
                ApiError::unavailable(format!(
                    "the hub cannot reach its chain node to publish ({e:#}); call again later"
                ))
            } else {
                ApiError::refused(format!("{e:#}"))
            };
            for request in batch {
                self.forget(request.proposal_cid, &error.to_string());
            }
            batch.iter().map(|_| Err(error.clone())).collect()
        };
        if let Err(e) = self.provide_collateral(batch, &cids).await {
            return not_now(e);
        }
        let params = PublishStorageDealsParams {
            deals: batch.iter().map(|r| r.deal.clone()).collect(),
        };
        let params = match fvm_ipld_encoding::to_vec(&params) {
            Ok(params) => params,
            Err(e) => return not_now(e.into()),
        };
        let db = self.db.clone();
        let sent = self
            .chain
            .send(
                Outgoing {
                    purpose: &batch_purpose("publish", &cids),
                    from: self.worker,
                    to: Address::new_id(MARKET_ACTOR),
                    method: PUBLISH_STORAGE_DEALS,
                    params,
                    value: TokenAmount::from_atto(0),
                },
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
                return batch
                    .iter()
                    .map(|r| self.settle(r.proposal_cid, None, Err(reason.clone())))
                    .collect();
            }
            Err(e) => return not_now(e),
        };
        tracing::info!(deals = batch.len(), message_cid = %message.cid().map(|c| c.to_string()).unwrap_or_default(), "PublishStorageDeals sent");
        let Some(outcome) = self.follow(&message, batch.len(), cancel).await else {
            return batch
                .iter()
                .map(|_| Err(ApiError::unavailable("the hub is stopping; call again")))
                .collect();
        };
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

    /// A queued deal that was never signed for: the next call checks it again.
    fn forget(&self, proposal_cid: Cid, reason: &str) {
        if let Ok(Some(mut record)) = self.db.deal(&proposal_cid)
            && matches!(record.state, PublishState::Queued)
        {
            record.state = PublishState::Failed {
                reason: reason.to_string(),
            };
            let _ = self.db.put_deal(&record);
        }
    }

    /// Tops up the provider's market escrow from the worker when the batch's collateral needs
    /// it: never more than the batch's collateral, each deal's under the hub's cap. One top-up
    /// at a time; it is recorded before it is sent, so a restart never pays twice.
    async fn provide_collateral(&self, batch: &[Request], cids: &[Cid]) -> anyhow::Result<()> {
        let needed: TokenAmount = batch
            .iter()
            .map(|r| r.deal.proposal.provider_collateral.clone())
            .sum();
        if needed.is_zero() {
            return Ok(());
        }
        let cap = &self.policy.max_provider_collateral * batch.len() as u64;
        anyhow::ensure!(
            needed <= cap,
            "the batch asks more collateral than the hub's cap allows"
        );
        // A top-up sent before (this run or the last) is waited for first.
        for earlier in crate::outbox::pending_with_prefix(&self.db, "collateral/")? {
            self.chain.wait_landed(&earlier.message, None).await?;
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
        let signed = self
            .chain
            .send(
                Outgoing {
                    purpose: &batch_purpose("collateral", cids),
                    from: self.worker,
                    to: Address::new_id(MARKET_ACTOR),
                    method: ADD_BALANCE,
                    params,
                    value: shortfall,
                },
                |_| Ok(()),
            )
            .await?;
        match self.chain.wait_landed(&signed, None).await? {
            Some(Landed::Executed(lookup)) if lookup.receipt.exit_code == 0 => Ok(()),
            other => anyhow::bail!("adding provider collateral failed: {other:?}"),
        }
    }

    /// Waits for a batch, through chain outages (with capped backoff), until the chain says
    /// how it ended; per deal index, its ID or why the market refused it. `None` when the hub
    /// is stopping (the batch is followed again at the next start).
    async fn follow(
        &self,
        message: &SignedMessage,
        count: usize,
        cancel: &CancellationToken,
    ) -> Option<BatchOutcome> {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let cid = message.cid().map(|c| c.to_string()).unwrap_or_default();
        let worker = self
            .worker_list
            .start("publish", format!("PublishStorageDeals {cid}"));
        let waiting = format!("the batch of {count} deals to execute");
        worker.idle(&waiting);
        let landed = loop {
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return None,
                attempt = self.chain.wait_landed(message, None) => attempt,
            };
            match attempt {
                Ok(landed) => break landed,
                Err(e) => {
                    let delay = backoff.next_delay();
                    let error = format!("{e:#}");
                    worker.retrying(&error, delay, &waiting);
                    if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(%error, retry_in = ?delay, "cannot follow a PublishStorageDeals batch yet; it stays sent");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        Some(outcome(landed, count))
    }

    /// Records a deal's outcome and returns it as the caller sees it.
    fn settle(
        &self,
        proposal_cid: Cid,
        message: Option<&SignedMessage>,
        result: Result<(u64, ChainEpoch), String>,
    ) -> Result<PublishedDeal, ApiError> {
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
            // A published deal stays published: no later outcome (a second batch that named
            // it, refused by the market as a duplicate) may fail it.
            Ok(Some(record)) if result.is_err() && record.published().is_some() => {
                tracing::error!(proposal_cid = %proposal_cid, reason = ?result.as_ref().err(), "a second outcome for a published deal is ignored: a bug");
                return record
                    .published()
                    .ok_or_else(|| ApiError::refused("inconsistent deal record"));
            }
            Ok(Some(mut record)) => {
                record.state = state;
                record
            }
            _ => return Err(ApiError::refused("the deal's record vanished")),
        };
        if let Err(e) = self.db.put_deal(&record) {
            return Err(ApiError::refused(format!("record the deal: {e:#}")));
        }
        match &result {
            Ok((deal_id, _)) => {
                tracing::info!(proposal_cid = %proposal_cid, deal_id, "deal published")
            }
            Err(reason) => {
                tracing::warn!(proposal_cid = %proposal_cid, %reason, "deal not published")
            }
        }
        result.map_err(ApiError::Refused).and_then(|_| {
            record
                .published()
                .ok_or_else(|| ApiError::refused("inconsistent deal record"))
        })
    }
}

/// What became of a batch: per deal index, its ID and epoch or why the market refused it; or
/// why the whole batch failed.
type BatchOutcome = Result<Vec<Result<(u64, ChainEpoch), String>>, String>;

/// What a landed (or not) batch means for each of its deals.
fn outcome(landed: Option<Landed>, count: usize) -> BatchOutcome {
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
    let ret: PublishStorageDealsReturn = fvm_ipld_encoding::from_slice(&lookup.receipt.r#return)
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
