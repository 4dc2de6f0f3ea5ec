//! The sealing pipeline: one persisted state machine per sector.
//!
//! Each sector is driven by its own task through [`SectorState`]s. A step does its work, then
//! the new state and everything the next steps need (ticket, PC1 output, CommR, the signed
//! message, seed, proof) are written to the database in one transaction before anything acts
//! on them. After a crash every sector resumes at its recorded state: finished work is not
//! redone, and a chain message is recorded before it is pushed and, on resume, handed to the
//! wait step (which pushes it again if the chain lacks it); only a message the chain refused
//! outright is made again. The chain sees one pre-commit and one prove-commit per sector. A failing step is retried with capped exponential backoff; after
//! `max_retries` the sector is `Failed` with the reason.
//!
//! Layout: [`record`] (what is stored per sector), [`pieces`] (deal pieces), and here the
//! pipeline and its steps.
//!
//! Heavy phases take a permit from their own semaphore (`[sealing]` limits). Proving and
//! mining never take these permits: they cannot queue behind sealing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use fil_actor_miner_state::v18::{
    CompactCommD, DataActivationNotification, PieceActivationManifest, PreCommitSectorBatchParams2,
    ProveCommitSectors3Params, SectorActivationManifest, SectorPreCommitInfo,
};
use fvm_ipld_encoding::RawBytes;
use fvm_shared::address::Address;
use fvm_shared::sector::RegisteredSealProof;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::{StateGetNetworkParams, StateSectorPreCommitInfo};
use nelumbo_chain_api::types::{SignedMessage, TipSetKey};
use nelumbo_miner_api::types::{HubEvent, SectorState};
use nelumbo_proofs::{Commit1Output, ProofMode, Prover, Replica, SealedCommitments};
use nelumbo_service::Worker;
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod pieces;
mod record;

pub use record::{DealPiece, SectorRecord, address_entropy, sealed_cid};

use crate::chain::{ChainClient, Landed, Outgoing, is_refusal};
use crate::config::SealingConfig;
use crate::db::Db;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::proof_worker::ProofWorkers;
use crate::storage::{SectorStorage, sync_sector};

/// Domain separation tags for the randomness sealing draws.
const SEAL_RANDOMNESS: i64 = 5;
const INTERACTIVE_SEAL_CHALLENGE_SEED: i64 = 6;

/// Miner actor methods the pipeline calls.
const PRE_COMMIT_SECTOR_BATCH2: u64 = 28;
const PROVE_COMMIT_SECTORS3: u64 = 34;

const MARKET_ACTOR: u64 = 5;

/// What the pipeline shares with the daemon.
#[derive(Debug)]
pub struct SealingContext {
    pub db: Arc<Db>,
    pub storage: Arc<SectorStorage>,
    pub chain: ChainClient,
    pub prover: Prover,
    /// Runs the heavy proofs in children at a low priority ([`crate::proof_worker`]).
    pub workers: ProofWorkers,
    /// Where each sector's task reports what it is doing (`workers list`).
    pub worker_list: nelumbo_service::Workers,
    pub mode: ProofMode,
    pub actor: Address,
    pub worker: Address,
    pub sector_size: SectorSize,
    pub config: SealingConfig,
    pub metrics: Metrics,
    pub events: Events,
    pub cancel: CancellationToken,
}

/// The sealing pipeline.
#[derive(Debug, Clone)]
pub struct Sealing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cx: SealingContext,
    pre_commit1: Semaphore,
    pre_commit2: Semaphore,
    commit2: Semaphore,
    /// Commit-1 outputs handed to commit 2 in memory (recomputed after a restart).
    commit1_outputs: Mutex<HashMap<u64, Commit1Output>>,
    /// A pause after a step's work and before its result is recorded, for crash tests
    /// (`NELUMBO_MINER_STALL=STATE:MILLISECONDS`).
    stall: Option<(SectorState, Duration)>,
    /// Serialises pledges so two cannot both pass the max-sealing check.
    pledge_lock: tokio::sync::Mutex<()>,
}

impl Sealing {
    /// Starts the pipeline and resumes every sector that was sealing when the hub stopped.
    pub fn start(cx: SealingContext) -> anyhow::Result<Self> {
        let stall = stall_from_env()?;
        if let Some((state, pause)) = stall {
            tracing::warn!(%state, ?pause, "NELUMBO_MINER_STALL is set: sectors pause in this state (crash testing only)");
        }
        let limit = |n: usize| Semaphore::new(n.max(1));
        let inner = Arc::new(Inner {
            pre_commit1: limit(cx.config.max_pre_commit_1),
            pre_commit2: limit(cx.config.max_pre_commit_2),
            commit2: limit(cx.config.max_commit_2),
            commit1_outputs: Mutex::default(),
            stall,
            pledge_lock: tokio::sync::Mutex::new(()),
            cx,
        });
        let sealing = Self { inner };
        let records = sealing.inner.cx.db.sectors()?;
        sealing.update_metrics(&records);
        for record in records {
            if record.state.is_sealing() {
                tracing::info!(sector = record.number, state = %record.state, "resuming sector");
                sealing.inner.cx.storage.reserve_existing(&record.storage);
                sealing.spawn(record.number);
            }
        }
        Ok(sealing)
    }

    /// Starts a committed-capacity sector.
    pub async fn pledge(&self) -> anyhow::Result<u64> {
        let cx = &self.inner.cx;
        let _guard = self.inner.pledge_lock.lock().await;
        let sealing = cx
            .db
            .sectors()?
            .iter()
            .filter(|r| r.state.is_sealing())
            .count();
        anyhow::ensure!(
            sealing < cx.config.max_sealing_sectors,
            "{sealing} sectors are sealing already ([sealing] max_sealing_sectors = {}): wait for one to finish or raise the limit",
            cx.config.max_sealing_sectors
        );
        let root = cx.storage.reserve_new()?;
        let record = cx
            .db
            .allocate_sector(|n| {
                SectorRecord::new(
                    n,
                    root.clone(),
                    SectorState::Packing,
                    "pledged: a committed-capacity sector",
                )
            })
            .inspect_err(|_| cx.storage.release(&root))?;
        tracing::info!(sector = record.number, storage = %root.display(), "pledged a committed-capacity sector");
        cx.events.emit(HubEvent::SectorState {
            sector: record.number,
            from: SectorState::Packing,
            to: SectorState::Packing,
            message: "pledged: a committed-capacity sector".into(),
            at: record.log.last().map(|l| l.at).unwrap_or(0),
        });
        self.update_metrics(&cx.db.sectors()?);
        self.spawn(record.number);
        Ok(record.number)
    }

    pub fn sector(&self, number: u64) -> anyhow::Result<Option<SectorRecord>> {
        self.inner.cx.db.sector(number)
    }

    pub fn sectors(&self) -> anyhow::Result<Vec<SectorRecord>> {
        self.inner.cx.db.sectors()
    }

    fn spawn(&self, number: u64) {
        let sealing = self.clone();
        // Every line a sector's sealing logs carries its number (the span).
        let span = tracing::info_span!("sector", sector = number);
        tokio::spawn(tracing::Instrument::instrument(
            async move { sealing.drive(number).await },
            span,
        ));
    }

    fn update_metrics(&self, records: &[SectorRecord]) {
        let mut counts: HashMap<SectorState, i64> = HashMap::new();
        for r in records {
            *counts.entry(r.state).or_default() += 1;
        }
        for state in SectorState::ALL {
            self.inner
                .cx
                .metrics
                .sectors
                .with_label_values(&[state.name()])
                .set(counts.get(&state).copied().unwrap_or(0));
        }
    }

    /// Runs a sector's steps until it is proving, has failed for good, or the hub stops.
    async fn drive(&self, number: u64) {
        let cx = &self.inner.cx;
        let worker = cx.worker_list.start("sealing", format!("sector {number}"));
        // Failures because the chain was away or slow, in a row: retried with their own
        // backoff and never counted against `max_retries` (a chain outage fails no sector).
        let mut transient_streak: u32 = 0;
        loop {
            let mut record = match cx.db.sector(number) {
                Ok(Some(record)) => record,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(sector = number, error = %format!("{e:#}"), "cannot read the sector's record; its sealing stops until the hub restarts");
                    return;
                }
            };
            if !record.state.is_sealing() {
                return;
            }
            let from = record.state;
            let started = Instant::now();
            match waits_for(from) {
                Some(what) => worker.idle(format!("{from}: waiting for {what}")),
                None => worker.busy(from.name()),
            }
            let result = tokio::select! {
                _ = cx.cancel.cancelled() => return,
                result = self.step(&mut record, &worker) => result,
            };
            let delay = match result {
                Err(e) if crate::chain::is_transient(&e) => {
                    transient_streak = transient_streak.saturating_add(1);
                    let delay =
                        Duration::from_secs(5u64 << transient_streak.min(4).saturating_sub(1))
                            .min(Duration::from_secs(60));
                    let error = format!("{e:#}");
                    worker.retrying(&error, delay, format!("{from}: the chain is away or slow"));
                    if transient_streak == 1 || transient_streak.is_multiple_of(10) {
                        tracing::warn!(sector = number, state = %record.state, retry_in = ?delay, %error, "the chain is away or slow; the sector waits");
                    }
                    tokio::select! {
                        _ = cx.cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
                Ok((next, message)) => {
                    transient_streak = 0;
                    worker.succeeded();
                    tracing::info!(sector = number, from = %from, to = %next, took = ?started.elapsed(), "{message}");
                    record.retries = 0;
                    record.last_error = None;
                    record.move_to(next, message.clone());
                    cx.events.emit(HubEvent::SectorState {
                        sector: number,
                        from,
                        to: next,
                        message,
                        at: record.log.last().map(|l| l.at).unwrap_or(0),
                    });
                    None
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    if from == SectorState::WaitDeals {
                        // Pieces may have been added since this record was read.
                        if let Ok(Some(fresh)) = cx.db.sector(number) {
                            record = fresh;
                        }
                    }
                    record.retries += 1;
                    record.last_error = Some(reason.clone());
                    cx.events.emit(HubEvent::SectorError {
                        sector: number,
                        state: record.state,
                        error: reason.clone(),
                        attempt: record.retries,
                        gave_up: record.retries > cx.config.max_retries,
                    });
                    if record.retries > cx.config.max_retries {
                        tracing::error!(sector = number, state = %record.state, error = %reason, "sealing failed for good");
                        cx.storage.release(&record.storage);
                        let message = format!(
                            "gave up in {} after {} attempts: {reason}",
                            from, record.retries
                        );
                        record.move_to(SectorState::Failed, message.clone());
                        cx.events.emit(HubEvent::SectorState {
                            sector: number,
                            from,
                            to: SectorState::Failed,
                            message,
                            at: record.log.last().map(|l| l.at).unwrap_or(0),
                        });
                        None
                    } else {
                        let delay = retry_delay(record.retries);
                        worker.retrying(
                            &reason,
                            delay,
                            format!(
                                "{from}: attempt {} of {} failed",
                                record.retries,
                                cx.config.max_retries + 1
                            ),
                        );
                        tracing::warn!(sector = number, state = %record.state, attempt = record.retries, retry_in = ?delay, error = %reason, "sealing step failed");
                        record.note(format!("attempt {} failed: {reason}", record.retries));
                        Some(delay)
                    }
                }
            };
            if record.state == SectorState::Proving {
                cx.storage.release(&record.storage);
            }
            if let Err(e) = cx.db.put_sector(&record) {
                tracing::error!(sector = number, error = %format!("{e:#}"), "cannot record the sector's state; its sealing stops until the hub restarts");
                return;
            }
            if let Ok(records) = cx.db.sectors() {
                self.update_metrics(&records);
            }
            if let Some(delay) = delay {
                tokio::select! {
                    _ = cx.cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    /// One step: the work of `record.state`. Returns the next state and what happened; may
    /// set fields of `record` for the next steps (saved with the new state).
    async fn step(
        &self,
        record: &mut SectorRecord,
        worker: &Worker,
    ) -> anyhow::Result<(SectorState, String)> {
        match record.state {
            SectorState::WaitDeals => self.wait_deals(record).await,
            SectorState::Packing => self.pack(record).await,
            SectorState::GetTicket => self.get_ticket(record).await,
            SectorState::PreCommit1 => self.pre_commit1(record, worker).await,
            SectorState::PreCommit2 => self.pre_commit2(record, worker).await,
            SectorState::PreCommitting => self.pre_commit(record).await,
            SectorState::PreCommitWait => self.pre_commit_wait(record).await,
            SectorState::WaitSeed => self.wait_seed(record).await,
            SectorState::Commit1 => self.commit1(record).await,
            SectorState::Commit2 => self.commit2(record, worker).await,
            SectorState::Committing => self.commit(record).await,
            SectorState::CommitWait => self.commit_wait(record).await,
            SectorState::FinalizeSector => self.finalize(record).await,
            SectorState::Proving | SectorState::Failed => {
                Ok((record.state, "nothing to do".to_string()))
            }
        }
    }

    fn replica(&self, record: &SectorRecord) -> anyhow::Result<Replica> {
        let cx = &self.inner.cx;
        Ok(Replica {
            sector_size: cx.sector_size,
            miner: ActorId(cx.actor.id().context("the miner address is not an ID")?),
            number: SectorNumber(record.number),
            ticket: Randomness(record.ticket.context("no ticket recorded")?),
        })
    }

    fn sealed(&self, record: &SectorRecord) -> anyhow::Result<SealedCommitments> {
        Ok(SealedCommitments {
            comm_r: record.comm_r.context("no CommR recorded")?,
            comm_d: nelumbo_commp::Commitment(record.comm_d.context("no CommD recorded")?),
        })
    }

    async fn stall(&self, state: SectorState) {
        if let Some((at, pause)) = self.inner.stall
            && at == state
        {
            tracing::warn!(%state, ?pause, "stalling (NELUMBO_MINER_STALL)");
            tokio::time::sleep(pause).await;
        }
    }

    async fn get_ticket(&self, record: &mut SectorRecord) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let epoch = cx.chain.head_height().await? - 1;
        let ticket = cx
            .chain
            .randomness(false, SEAL_RANDOMNESS, epoch, address_entropy(&cx.actor))
            .await?;
        record.ticket_epoch = Some(epoch);
        record.ticket = Some(ticket);
        Ok((
            SectorState::PreCommit1,
            format!("ticket drawn at epoch {epoch}"),
        ))
    }

    async fn pre_commit1(
        &self,
        record: &mut SectorRecord,
        worker: &Worker,
    ) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let _permit = worker
            .permit(
                &self.inner.pre_commit1,
                &permit_wait("pre_commit_1", cx.config.max_pre_commit_1),
                "PreCommit1",
            )
            .await?;
        let paths = cx.storage.sector_paths(&record.storage, record.number);
        // Start from clean files: a crash may have left half-written layers.
        let _ = std::fs::remove_dir_all(&paths.cache);
        let _ = std::fs::remove_file(&paths.sealed);
        let replica = self.replica(record)?;
        let pieces = record.sector_pieces()?;
        let started = Instant::now();
        let output = cx.workers.pre_commit1(replica, &paths, &pieces).await?;
        cx.metrics.observe_proof("pre_commit_1", started);
        record.pre_commit1 = Some(output);
        Ok((SectorState::PreCommit2, "pre-commit 1 done".into()))
    }

    async fn pre_commit2(
        &self,
        record: &mut SectorRecord,
        worker: &Worker,
    ) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let Some(phase1) = record.pre_commit1.clone() else {
            return Ok((
                SectorState::PreCommit1,
                "no pre-commit 1 output recorded: redoing pre-commit 1".into(),
            ));
        };
        let _permit = worker
            .permit(
                &self.inner.pre_commit2,
                &permit_wait("pre_commit_2", cx.config.max_pre_commit_2),
                "PreCommit2",
            )
            .await?;
        let paths = cx.storage.sector_paths(&record.storage, record.number);
        let started = Instant::now();
        let sealed = cx.workers.pre_commit2(phase1, &paths).await?;
        cx.metrics.observe_proof("pre_commit_2", started);
        let expected = if record.pieces.is_empty() {
            nelumbo_commp::zero_piece_commitment(cx.sector_size.padded())
        } else {
            nelumbo_commp::commd(cx.sector_size, &record.sector_pieces()?)?
        };
        anyhow::ensure!(
            sealed.comm_d == expected,
            "the sealed sector's CommD {} is not the pieces' {}",
            nelumbo_commp::piece_cid_v1(&sealed.comm_d),
            nelumbo_commp::piece_cid_v1(&expected)
        );
        tokio::task::spawn_blocking(move || sync_sector(&paths)).await??;
        self.stall(SectorState::PreCommit2).await;
        record.comm_r = Some(sealed.comm_r);
        record.comm_d = Some(sealed.comm_d.0);
        record.pre_commit1 = None;
        Ok((
            SectorState::PreCommitting,
            format!("sealed: CommR {}", sealed_cid(&sealed.comm_r)),
        ))
    }

    /// Sends the pre-commit: the recorded one if there is one (a resumed sector), else a
    /// new one, recorded before it is pushed.
    async fn pre_commit(&self, record: &mut SectorRecord) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        if let Some(message) = record.pre_commit_message.clone() {
            // Made before a restart: the wait pushes it again if the chain lacks it.
            return Ok((
                SectorState::PreCommitWait,
                format!(
                    "resuming with the recorded pre-commit message {}",
                    cid_of(&message)
                ),
            ));
        }
        // A pre-commit of ours may have landed although its wait said otherwise (its nonce
        // seen used before the chain's message index showed it, or a replacement): the chain
        // refuses a second one for the same sector, so look before sending.
        let sealed = sealed_cid(&record.comm_r.context("no CommR recorded")?);
        if let Some(info) = cx
            .chain
            .rpc
            .call::<StateSectorPreCommitInfo>((Addr(cx.actor), record.number, TipSetKey::head()))
            .await?
            && info.info.sealed_cid == sealed
        {
            record.expiration = Some(info.info.expiration);
            let seed_epoch = self.pre_committed(record, info.pre_commit_epoch).await?;
            return Ok((
                SectorState::WaitSeed,
                format!(
                    "already pre-committed on chain at epoch {}; the seed comes at epoch {seed_epoch}",
                    info.pre_commit_epoch
                ),
            ));
        }
        let head = cx.chain.head_height().await?;
        // The sector must outlive its deals.
        let last_deal_end = record.pieces.iter().map(|p| p.end_epoch).max().unwrap_or(0);
        let expiration = (head + cx.config.sector_lifetime_epochs).max(last_deal_end + 1);
        let unsealed_cid = if record.pieces.is_empty() {
            None
        } else {
            Some(nelumbo_commp::piece_cid_v1(&nelumbo_commp::Commitment(
                record.comm_d.context("no CommD recorded")?,
            )))
        };
        let params = PreCommitSectorBatchParams2 {
            sectors: vec![SectorPreCommitInfo {
                seal_proof: RegisteredSealProof::from(cx.sector_size.seal_proof_number()),
                sector_number: record.number,
                sealed_cid: sealed_cid(&record.comm_r.context("no CommR recorded")?),
                seal_rand_epoch: record.ticket_epoch.context("no ticket recorded")?,
                deal_ids: Vec::new(),
                expiration,
                unsealed_cid: CompactCommD(unsealed_cid),
            }],
        };
        let message = self
            .send_recorded(record, PRE_COMMIT_SECTOR_BATCH2, &params, |r, m| {
                r.pre_commit_message = Some(m);
                r.expiration = Some(expiration);
            })
            .await?;
        Ok((
            SectorState::PreCommitWait,
            format!("pre-commit message {} sent", cid_of(&message)),
        ))
    }

    async fn pre_commit_wait(
        &self,
        record: &mut SectorRecord,
    ) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let Some(message) = record.pre_commit_message.clone() else {
            return Ok((
                SectorState::PreCommitting,
                "no pre-commit message recorded: sending one".into(),
            ));
        };
        self.stall(SectorState::PreCommitWait).await;
        let lookup = self
            .landed(record, &message, |r| {
                r.pre_commit_message = None;
                r.state = SectorState::PreCommitting;
            })
            .await?;
        let info = cx
            .chain
            .rpc
            .call::<StateSectorPreCommitInfo>((Addr(cx.actor), record.number, TipSetKey::head()))
            .await?
            .with_context(|| {
                format!(
                    "the pre-commit executed at epoch {} but the chain holds no pre-commit for sector {}",
                    lookup.height, record.number
                )
            })?;
        let seed_epoch = self.pre_committed(record, info.pre_commit_epoch).await?;
        Ok((
            SectorState::WaitSeed,
            format!(
                "pre-committed at epoch {}; the seed comes at epoch {seed_epoch}",
                info.pre_commit_epoch
            ),
        ))
    }

    /// Records the epoch the sector was pre-committed at and the seed epoch that follows;
    /// returns the seed epoch.
    async fn pre_committed(
        &self,
        record: &mut SectorRecord,
        pre_commit_epoch: i64,
    ) -> anyhow::Result<i64> {
        let delay = self
            .inner
            .cx
            .chain
            .rpc
            .call::<StateGetNetworkParams>(())
            .await?
            .pre_commit_challenge_delay;
        let seed_epoch = pre_commit_epoch + delay;
        record.pre_commit_epoch = Some(pre_commit_epoch);
        record.seed_epoch = Some(seed_epoch);
        Ok(seed_epoch)
    }

    async fn wait_seed(&self, record: &mut SectorRecord) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let seed_epoch = record.seed_epoch.context("no seed epoch recorded")?;
        while cx.chain.head_height().await? <= seed_epoch {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let seed = cx
            .chain
            .randomness(
                true,
                INTERACTIVE_SEAL_CHALLENGE_SEED,
                seed_epoch,
                address_entropy(&cx.actor),
            )
            .await?;
        record.seed = Some(seed);
        Ok((
            SectorState::Commit1,
            format!("seed drawn at epoch {seed_epoch}"),
        ))
    }

    async fn commit1(&self, record: &mut SectorRecord) -> anyhow::Result<(SectorState, String)> {
        if self.inner.cx.mode == ProofMode::Real {
            let output = self.run_commit1(record).await?;
            self.commit1_outputs().insert(record.number, output);
        }
        Ok((SectorState::Commit2, "commit 1 done".into()))
    }

    async fn run_commit1(&self, record: &SectorRecord) -> anyhow::Result<Commit1Output> {
        let cx = &self.inner.cx;
        let replica = self.replica(record)?;
        let sealed = self.sealed(record)?;
        let seed = Randomness(record.seed.context("no seed recorded")?);
        let paths = cx.storage.sector_paths(&record.storage, record.number);
        let pieces = record.sector_pieces()?;
        let started = Instant::now();
        let output = cx
            .workers
            .commit1(replica, &paths, seed, &sealed, &pieces)
            .await?;
        cx.metrics.observe_proof("commit_1", started);
        Ok(output)
    }

    fn commit1_outputs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Commit1Output>> {
        self.inner
            .commit1_outputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn commit2(
        &self,
        record: &mut SectorRecord,
        worker: &Worker,
    ) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let replica = self.replica(record)?;
        let proof = match cx.mode {
            ProofMode::InsecureTesting => nelumbo_proofs::insecure_seal_proof(
                &replica,
                &self.sealed(record)?,
                Randomness(record.seed.context("no seed recorded")?),
            ),
            ProofMode::Real => {
                let phase1 = self.commit1_outputs().remove(&record.number);
                let phase1 = match phase1 {
                    Some(output) => output,
                    // After a restart: commit 1 again (seconds) rather than keep its output.
                    None => self.run_commit1(record).await?,
                };
                let _permit = worker
                    .permit(
                        &self.inner.commit2,
                        &permit_wait("commit_2", cx.config.max_commit_2),
                        "Commit2",
                    )
                    .await?;
                let started = Instant::now();
                let proof = cx.workers.commit2(replica, phase1).await?;
                cx.metrics.observe_proof("commit_2", started);
                proof
            }
        };
        record.proof = Some(proof);
        Ok((SectorState::Committing, "seal proof made".into()))
    }

    async fn commit(&self, record: &mut SectorRecord) -> anyhow::Result<(SectorState, String)> {
        if let Some(message) = record.commit_message.clone() {
            return Ok((
                SectorState::CommitWait,
                format!(
                    "resuming with the recorded prove-commit message {}",
                    cid_of(&message)
                ),
            ));
        }
        let Some(proof) = record.proof.clone() else {
            return Ok((
                SectorState::Commit1,
                "no seal proof recorded: proving again".into(),
            ));
        };
        let params = ProveCommitSectors3Params {
            sector_activations: vec![SectorActivationManifest {
                sector_number: record.number,
                pieces: record
                    .pieces
                    .iter()
                    .map(|p| PieceActivationManifest {
                        cid: p.piece_cid,
                        size: fvm_shared::piece::PaddedPieceSize(p.size),
                        verified_allocation_key: None,
                        // The market actor activates the deal when notified with its ID.
                        notify: vec![DataActivationNotification {
                            address: Address::new_id(MARKET_ACTOR),
                            payload: RawBytes::new(
                                fvm_ipld_encoding::to_vec(&p.deal_id).unwrap_or_default(),
                            ),
                        }],
                    })
                    .collect(),
            }],
            sector_proofs: vec![RawBytes::new(proof)],
            aggregate_proof: RawBytes::default(),
            aggregate_proof_type: None,
            require_activation_success: true,
            require_notification_success: true,
        };
        let message = self
            .send_recorded(record, PROVE_COMMIT_SECTORS3, &params, |r, m| {
                r.commit_message = Some(m)
            })
            .await?;
        Ok((
            SectorState::CommitWait,
            format!("prove-commit message {} sent", cid_of(&message)),
        ))
    }

    async fn commit_wait(
        &self,
        record: &mut SectorRecord,
    ) -> anyhow::Result<(SectorState, String)> {
        let Some(message) = record.commit_message.clone() else {
            return Ok((
                SectorState::Committing,
                "no prove-commit message recorded: sending one".into(),
            ));
        };
        self.stall(SectorState::CommitWait).await;
        let lookup = self
            .landed(record, &message, |r| {
                r.commit_message = None;
                r.state = SectorState::Committing;
            })
            .await?;
        record.proof = None;
        for piece in &record.pieces {
            self.inner.cx.events.emit(HubEvent::DealActivated {
                sector: record.number,
                deal_id: piece.deal_id,
                deal_uuid: piece.deal_uuid.clone(),
            });
        }
        Ok((
            SectorState::FinalizeSector,
            format!(
                "prove-committed at epoch {}{}",
                lookup.height,
                if record.pieces.is_empty() {
                    String::new()
                } else {
                    format!("; {} deals active", record.pieces.len())
                }
            ),
        ))
    }

    async fn finalize(&self, record: &mut SectorRecord) -> anyhow::Result<(SectorState, String)> {
        let cx = &self.inner.cx;
        let paths = cx.storage.sector_paths(&record.storage, record.number);
        cx.prover
            .run({
                let paths = paths.clone();
                move |p| p.finalize_cache(&paths)
            })
            .await?;
        tokio::task::spawn_blocking(move || sync_sector(&paths)).await??;
        cx.storage
            .check_sealed(&record.storage, record.number)
            .map_err(anyhow::Error::msg)?;
        let unsealed = cx
            .storage
            .sector_paths(&record.storage, record.number)
            .unsealed;
        if record.pieces.is_empty() || !cx.config.keep_unsealed {
            let _ = std::fs::remove_file(&unsealed);
        }
        self.drop_staged_pieces(record).await?;
        Ok((
            SectorState::Proving,
            "cache finalised; the sector is proving".into(),
        ))
    }

    /// Prepares a message from the worker to the miner actor, records it with `keep` (in the
    /// database, before it leaves the process) and pushes it.
    async fn send_recorded<P: Serialize>(
        &self,
        record: &mut SectorRecord,
        method: u64,
        params: &P,
        keep: impl FnOnce(&mut SectorRecord, SignedMessage),
    ) -> anyhow::Result<SignedMessage> {
        let cx = &self.inner.cx;
        let params = fvm_ipld_encoding::to_vec(params)?;
        let db = cx.db.clone();
        let purpose = match method {
            PRE_COMMIT_SECTOR_BATCH2 => format!("sector/{}/pre-commit", record.number),
            _ => format!("sector/{}/prove-commit", record.number),
        };
        let result = cx
            .chain
            .send(
                Outgoing {
                    purpose: &purpose,
                    from: cx.worker,
                    to: cx.actor,
                    method,
                    params,
                    value: zero(),
                },
                |signed| {
                    keep(record, signed.clone());
                    record.note(format!("message {} recorded", cid_of(signed)));
                    db.put_sector(record)
                },
            )
            .await;
        match result {
            Ok(message) => Ok(message),
            Err(e) if is_refusal(&e) => {
                // The chain refused it outright: it never took the nonce. Forget it.
                self.forget_message(record, method)?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn forget_message(&self, record: &mut SectorRecord, method: u64) -> anyhow::Result<()> {
        match method {
            PRE_COMMIT_SECTOR_BATCH2 => record.pre_commit_message = None,
            _ => record.commit_message = None,
        }
        self.inner.cx.db.put_sector(record)
    }

    /// Waits for a sent message; on failure, `back` rewinds the record so the message is
    /// made again on the next attempt.
    async fn landed(
        &self,
        record: &mut SectorRecord,
        message: &SignedMessage,
        back: impl FnOnce(&mut SectorRecord),
    ) -> anyhow::Result<nelumbo_chain_api::types::MsgLookup> {
        let cid = cid_of(message);
        match self.inner.cx.chain.wait_landed(message, None).await? {
            Some(Landed::Executed(lookup)) if lookup.receipt.exit_code == 0 => Ok(*lookup),
            Some(Landed::Executed(lookup)) => {
                back(record);
                anyhow::bail!(
                    "message {cid} failed on chain at epoch {} with exit code {}",
                    lookup.height,
                    lookup.receipt.exit_code
                )
            }
            Some(Landed::NonceTaken) => {
                back(record);
                anyhow::bail!(
                    "another message from the worker took the nonce of {cid}; a new one will be made"
                )
            }
            Some(Landed::Refused(reason)) => {
                back(record);
                anyhow::bail!("the chain refused {cid}: {reason}; a new one will be made")
            }
            None => anyhow::bail!("gave up waiting for {cid}"),
        }
    }
}

fn zero() -> fvm_shared::econ::TokenAmount {
    fvm_shared::econ::TokenAmount::from_atto(0)
}

fn cid_of(message: &SignedMessage) -> String {
    message
        .cid()
        .map(|c| c.to_string())
        .unwrap_or_else(|e| format!("(no CID: {e})"))
}

/// 5 s, 10 s, 20 s ... capped at 5 minutes.
/// What a sector in `state` waits for, if the state is a wait rather than work.
fn waits_for(state: SectorState) -> Option<&'static str> {
    match state {
        SectorState::WaitDeals => Some("deals (until full or its wait for deals ends)"),
        SectorState::PreCommitWait => Some("the pre-commit message to execute"),
        SectorState::WaitSeed => Some("the interactive seed epoch"),
        SectorState::CommitWait => Some("the prove-commit message to execute"),
        _ => None,
    }
}

/// What a sector waiting for a heavy phase's permit shows in `workers list`.
fn permit_wait(phase: &str, limit: usize) -> String {
    format!(
        "a {phase} permit: all {} in use ([sealing] max_{phase})",
        limit.max(1)
    )
}

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << attempt.saturating_sub(1).min(6)))
        .min(Duration::from_secs(300))
}

fn stall_from_env() -> anyhow::Result<Option<(SectorState, Duration)>> {
    let Ok(value) = std::env::var("NELUMBO_MINER_STALL") else {
        return Ok(None);
    };
    let (state, millis) = value
        .split_once(':')
        .context("NELUMBO_MINER_STALL must be STATE:MILLISECONDS, e.g. PreCommit2:10000")?;
    let state = SectorState::ALL
        .into_iter()
        .find(|s| s.name() == state)
        .with_context(|| format!("NELUMBO_MINER_STALL: unknown sector state {state}"))?;
    let millis: u64 = millis
        .parse()
        .context("NELUMBO_MINER_STALL: milliseconds must be a number")?;
    Ok(Some((state, Duration::from_millis(millis))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(5));
        assert_eq!(retry_delay(2), Duration::from_secs(10));
        assert_eq!(retry_delay(20), Duration::from_secs(300));
    }
}
