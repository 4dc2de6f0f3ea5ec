//! Block mining: the election is checked at every epoch; when the hub wins, it proves its
//! challenged sectors with a WinningPoSt, signs the block header with the worker key and
//! submits it with `SyncSubmitBlock`.
//!
//! The election rule is the Nelumbo devnet's (`nelumbo_chain_api::election`), whose rate the
//! chain reports in `MinerGetBaseInfo`; against a chain that does not report one (Lotus), the
//! hub does not mine and says so once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::election::wins;
use nelumbo_chain_api::methods::{
    ChainGetTipSetByHeight, ChainHead, MinerGetBaseInfo, SyncSubmitBlock,
};
use nelumbo_chain_api::types::{
    BlockHeader, BlockMsg, ElectionProof, PoStProof, Signature, Ticket, TipSetKey,
};
use nelumbo_miner_api::types::HubEvent;
use nelumbo_proofs::{PostKind, ProofMode, Prover};
use nelumbo_service::Worker;
use nelumbo_types::SectorSize;
use tokio_util::sync::CancellationToken;

use crate::chain::ChainClient;
use crate::db::Db;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::proving::{generate_post, provable_sector};
use crate::sealing::address_entropy;
use crate::storage::SectorStorage;

const TICKET_PRODUCTION: i64 = 1;
const ELECTION_PROOF_PRODUCTION: i64 = 2;
const WINNING_POST_CHALLENGE_SEED: i64 = 3;

const TICK: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct Mining {
    pub db: Arc<Db>,
    pub storage: Arc<SectorStorage>,
    pub chain: ChainClient,
    pub prover: Prover,
    pub workers: crate::proof_worker::ProofWorkers,
    pub mode: ProofMode,
    pub actor: Address,
    pub worker: Address,
    pub sector_size: SectorSize,
    pub metrics: Metrics,
    pub events: Events,
}

impl Mining {
    /// Runs until `cancel`.
    pub async fn run(self, worker: Worker, cancel: CancellationToken) {
        worker.idle("the next epoch");
        let mut last_epoch: ChainEpoch = 0;
        let mut last_error = String::new();
        let mut warned_no_rule = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let head = match self.chain.rpc.call::<ChainHead>(()).await {
                Ok(head) => head,
                Err(_) => continue, // the chain watcher reports it
            };
            // Mine on top of the head's parent: the chain accepts a block for the head's
            // epoch, and the election randomness of that epoch exists.
            let epoch = head.height;
            if epoch <= last_epoch {
                continue;
            }
            last_epoch = epoch;
            worker.busy(format!("epoch {epoch}: election and WinningPoSt"));
            let result = self.try_epoch(epoch, &mut warned_no_rule).await;
            worker.idle(format!("the epoch after {epoch}"));
            match result {
                Ok(()) => {
                    worker.succeeded();
                    last_error.clear();
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    worker.retrying(&e, TICK, format!("the epoch after {epoch}"));
                    if e != last_error {
                        tracing::warn!(epoch, error = %e, "mining");
                        last_error = e;
                    }
                }
            }
        }
    }

    async fn try_epoch(&self, epoch: ChainEpoch, warned_no_rule: &mut bool) -> anyhow::Result<()> {
        let parent = self
            .chain
            .rpc
            .call::<ChainGetTipSetByHeight>((epoch - 1, TipSetKey::head()))
            .await?;
        let Some(base) = self
            .chain
            .rpc
            .call::<MinerGetBaseInfo>((Addr(self.actor), epoch, TipSetKey(parent.cids.clone())))
            .await?
        else {
            anyhow::bail!("the chain does not know miner {}", self.actor);
        };
        if !base.eligible_for_mining {
            return Ok(());
        }
        let Some(rate) = base.election_rate_permille else {
            if !*warned_no_rule {
                tracing::warn!(
                    "the chain reports no Nelumbo election rate (a Lotus node?): this hub does not mine on it"
                );
                *warned_no_rule = true;
            }
            return Ok(());
        };
        let entropy = address_entropy(&self.actor);
        let vrf_input = self
            .chain
            .randomness(true, ELECTION_PROOF_PRODUCTION, epoch, entropy.clone())
            .await?;
        let vrf_proof = self.chain.sign_bytes(&self.worker, &vrf_input)?.bytes;
        if !wins(&vrf_proof, rate, &base.miner_power, &base.network_power) {
            self.metrics.elections.with_label_values(&["lost"]).inc();
            return Ok(());
        }
        tracing::info!(epoch, "election won: proving the challenged sectors");
        let started = Instant::now();
        let challenge = self
            .chain
            .randomness(true, WINNING_POST_CHALLENGE_SEED, epoch, entropy.clone())
            .await?;
        let sectors = base
            .sectors
            .iter()
            .map(|info| {
                let n = info.sector_number;
                provable_sector(&self.db, &self.storage, n)
                    .map_err(|e| anyhow::anyhow!("challenged sector {n}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // A WinningPoSt runs in a worker at a lower priority than WindowPoSt (in the hub).
        let proof = match self.mode {
            ProofMode::Real => {
                let miner = nelumbo_types::ActorId(
                    self.actor.id().context("the miner address is not an ID")?,
                );
                self.workers
                    .winning_post(self.sector_size, miner, challenge, sectors)
                    .await?
            }
            ProofMode::InsecureTesting => {
                generate_post(
                    &self.prover,
                    self.mode,
                    PostKind::Winning,
                    self.sector_size,
                    self.actor,
                    challenge,
                    sectors,
                )
                .await?
            }
        };
        self.metrics.observe_proof("winning_post", started);
        let ticket_input = self
            .chain
            .randomness(true, TICKET_PRODUCTION, epoch, entropy)
            .await?;
        let parent_block = parent
            .blocks
            .first()
            .context("the parent tipset has no block")?;
        let mut header = BlockHeader {
            miner: self.actor,
            ticket: Some(Ticket {
                vrf_proof: self.chain.sign_bytes(&self.worker, &ticket_input)?.bytes,
            }),
            election_proof: Some(ElectionProof {
                win_count: 1,
                vrf_proof,
            }),
            beacon_entries: base.beacon_entries.clone(),
            win_post_proof: vec![PoStProof {
                post_proof: self.sector_size.winning_post_proof_number(),
                proof_bytes: proof,
            }],
            parents: parent.cids.clone(),
            parent_weight: parent_block.parent_weight.clone(),
            height: epoch,
            parent_state_root: parent_block.parent_state_root,
            parent_message_receipts: parent_block.parent_message_receipts,
            messages: parent_block.messages,
            bls_aggregate: None,
            timestamp: parent_block.timestamp + 1,
            block_sig: None,
            fork_signaling: 0,
            parent_base_fee: parent_block.parent_base_fee.clone(),
        };
        let signing = header.signing_bytes().map_err(anyhow::Error::msg)?;
        header.block_sig = Some(Signature::from_fvm(
            &self.chain.sign_bytes(&self.worker, &signing)?,
        ));
        let block = BlockMsg {
            header,
            bls_messages: Vec::new(),
            secpk_messages: Vec::new(),
        };
        match self.chain.rpc.call::<SyncSubmitBlock>((block,)).await {
            Ok(()) => {
                let won = self.db.add_block_won()?;
                self.metrics.blocks_won.inc();
                self.metrics.elections.with_label_values(&["won"]).inc();
                tracing::info!(epoch, blocks_won = won, took = ?started.elapsed(), "block accepted");
                self.events.emit(HubEvent::BlockWon { epoch });
                Ok(())
            }
            Err(e) => {
                self.metrics.elections.with_label_values(&["refused"]).inc();
                Err(anyhow::Error::from(e)
                    .context(format!("the chain refused our block for epoch {epoch}")))
            }
        }
    }
}
