//! WindowPoSt: every deadline with live sectors is proven inside its window.
//!
//! The scheduler looks at the chain four times an epoch. When the challenge epoch of the
//! current or next deadline has come, it reads the deadline's partitions, checks each live,
//! non-faulty (or recovering) sector's files, proves the good ones (skipping the others, which
//! the chain then marks faulty), and submits one `SubmitWindowedPoSt` per partition once the
//! window is open. Faulty sectors whose files are good again are declared recovered before
//! the fault cutoff of their next deadline. Proofs run on the blocking pool, never behind the
//! sealing pipeline's phase limits.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use fil_actor_miner_state::v18::{
    DeclareFaultsRecoveredParams, PoStPartition, RecoveryDeclaration, SubmitWindowedPoStParams,
};
use fvm_ipld_bitfield::BitField;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::randomness::Randomness as FvmRandomness;
use fvm_shared::sector::{PoStProof, RegisteredPoStProof};
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::{
    ChainHead, StateMinerDeadlines, StateMinerPartitions, StateMinerProvingDeadline,
};
use nelumbo_chain_api::types::{DeadlineInfo, Partition, TipSetKey};
use nelumbo_miner_api::types::HubEvent;
use nelumbo_proofs::{PostKind, ProofMode, ProvenSector, Prover, ProvingSector};
use nelumbo_service::{Worker, Workers};
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize};
use tokio_util::sync::CancellationToken;

use crate::chain::{ChainClient, Landed, Outgoing};
use crate::db::Db;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::sealing::address_entropy;
use crate::storage::SectorStorage;

const WINDOWED_POST_CHALLENGE_SEED: i64 = 4;
const POST_CHAIN_COMMIT: i64 = 9;
const SUBMIT_WINDOWED_POST: u64 = 5;
const DECLARE_FAULTS_RECOVERED: u64 = 11;

const TICK: Duration = Duration::from_millis(250);

/// What proving shares with the daemon.
#[derive(Debug)]
pub struct ProvingContext {
    pub db: Arc<Db>,
    pub storage: Arc<SectorStorage>,
    pub chain: ChainClient,
    pub prover: Prover,
    pub mode: ProofMode,
    pub actor: Address,
    /// Sends WindowPoSt and recovery declarations: the control address, else the worker.
    pub post_sender: Address,
    pub sector_size: SectorSize,
    pub metrics: Metrics,
    pub events: Events,
    /// Where the scheduler reports what it is doing (`workers list`).
    pub worker_list: Workers,
}

/// Counters since the hub started, for `proving info`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProvingCounters {
    pub submitted: u64,
    pub failed: u64,
}

#[derive(Debug, Clone)]
pub struct Proving {
    cx: Arc<ProvingContext>,
    counters: Arc<Mutex<ProvingCounters>>,
}

/// A sector to prove, or the reason it cannot be.
pub type Checked = Result<ProvingSector, String>;

impl Proving {
    pub fn new(cx: ProvingContext) -> Self {
        Self {
            cx: Arc::new(cx),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> ProvingCounters {
        *self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, f: impl FnOnce(&mut ProvingCounters)) {
        f(&mut self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Runs until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        // Deadline occurrences (by opening epoch) already proven or declared for.
        let mut proven: BTreeSet<ChainEpoch> = BTreeSet::new();
        let mut declared: BTreeSet<ChainEpoch> = BTreeSet::new();
        let mut last_error = String::new();
        let worker = self
            .cx
            .worker_list
            .start("window-post", "WindowPoSt scheduler");
        worker.idle("the chain's proving deadline");
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            match self.tick(&mut proven, &mut declared, &worker).await {
                Ok(()) => {
                    worker.succeeded();
                    last_error.clear();
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    worker.retrying(&e, TICK, "the WindowPoSt scheduler's next tick");
                    if e != last_error {
                        tracing::warn!(error = %e, "WindowPoSt scheduler");
                        last_error = e;
                    }
                }
            }
        }
    }

    async fn tick(
        &self,
        proven: &mut BTreeSet<ChainEpoch>,
        declared: &mut BTreeSet<ChainEpoch>,
        worker: &Worker,
    ) -> anyhow::Result<()> {
        let cx = &self.cx;
        let current = cx
            .chain
            .rpc
            .call::<StateMinerProvingDeadline>((Addr(cx.actor), TipSetKey::head()))
            .await?;
        let head = current.current_epoch;
        for ahead in 0..=1 {
            let dl = occurrence(&current, ahead);
            if head >= dl.challenge && head < dl.close && !proven.contains(&dl.open) {
                worker.busy(format!(
                    "deadline {}: proving (challenge at epoch {}, closes at epoch {})",
                    dl.index, dl.challenge, dl.close
                ));
                self.prove_deadline(&dl).await?;
                proven.insert(dl.open);
            }
        }
        for ahead in 1..=2 {
            let dl = occurrence(&current, ahead);
            if head + 1 < dl.fault_cutoff && !declared.contains(&dl.open) {
                worker.busy(format!("deadline {}: declaring recoveries", dl.index));
                self.declare_recoveries(&dl).await?;
                declared.insert(dl.open);
            }
        }
        let next = occurrence(&current, 1);
        worker.idle(format!(
            "deadline {} (challenge at epoch {})",
            next.index, next.challenge
        ));
        let horizon = head - 2 * current.wpost_proving_period;
        proven.retain(|open| *open > horizon);
        declared.retain(|open| *open > horizon);
        Ok(())
    }

    /// Checks the files of `sectors` (numbers on chain) against the hub's records.
    fn check(&self, sectors: impl Iterator<Item = u64>) -> Vec<(u64, Checked)> {
        sectors
            .map(|n| (n, provable_sector(&self.cx.db, &self.cx.storage, n)))
            .collect()
    }

    async fn prove_deadline(&self, dl: &DeadlineInfo) -> anyhow::Result<()> {
        let cx = &self.cx;
        let partitions = cx
            .chain
            .rpc
            .call::<StateMinerPartitions>((Addr(cx.actor), dl.index, TipSetKey::head()))
            .await?;
        if partitions.iter().all(|p| p.live_sectors.is_empty()) {
            return Ok(());
        }
        let deadlines = cx
            .chain
            .rpc
            .call::<StateMinerDeadlines>((Addr(cx.actor), TipSetKey::head()))
            .await?;
        let posted = deadlines
            .get(dl.index as usize)
            .map(|d| d.post_submissions.clone())
            .unwrap_or_default();
        let mut jobs = Vec::new();
        for (index, partition) in partitions.iter().enumerate() {
            if posted.get(index as u64) || partition.live_sectors.is_empty() {
                continue;
            }
            let candidates = to_prove(partition);
            let mut good = Vec::new();
            let mut skipped = BitField::new();
            for (n, checked) in self.check(candidates.iter()) {
                match checked {
                    Ok(sector) => good.push(sector),
                    Err(reason) => {
                        tracing::error!(deadline = dl.index, partition = index, sector = n, %reason, "sector cannot be proven: skipping it (the chain marks it faulty)");
                        cx.events.emit(HubEvent::Fault {
                            deadline: dl.index,
                            partition: index as u64,
                            sector: n,
                            reason,
                        });
                        skipped.set(n);
                    }
                }
            }
            if good.is_empty() {
                if !skipped.is_empty() {
                    tracing::error!(
                        deadline = dl.index,
                        partition = index,
                        "no sector of the partition can be proven: its WindowPoSt is missed"
                    );
                    cx.metrics.window_posts_missed.inc();
                }
                continue;
            }
            jobs.push((index as u64, good, skipped));
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let seed = cx
            .chain
            .randomness(
                true,
                WINDOWED_POST_CHALLENGE_SEED,
                dl.challenge,
                address_entropy(&cx.actor),
            )
            .await?;
        let commit_rand = cx
            .chain
            .randomness(false, POST_CHAIN_COMMIT, dl.challenge, Vec::new())
            .await?;
        let mut failed = 0;
        let challenged = Instant::now();
        for (partition, sectors, skipped) in jobs {
            let started = Instant::now();
            let proof = self.generate(seed, sectors.clone()).await?;
            cx.metrics.observe_proof("window_post", started);
            // The message executes in the tipset after the head it joins.
            loop {
                let head = cx.chain.rpc.call::<ChainHead>(()).await?.height;
                // A message joins the tipset after the head: at `close` it is too late.
                if head + 1 >= dl.close {
                    cx.metrics.window_posts_missed.inc();
                    anyhow::bail!(
                        "deadline {} closed at epoch {} before its WindowPoSt was ready",
                        dl.index,
                        dl.close
                    );
                }
                if head + 1 >= dl.open {
                    break;
                }
                tokio::time::sleep(TICK).await;
            }
            let params = SubmitWindowedPoStParams {
                deadline: dl.index,
                partitions: vec![PoStPartition {
                    index: partition,
                    skipped: skipped.clone(),
                }],
                proofs: vec![PoStProof {
                    post_proof: RegisteredPoStProof::from(
                        cx.sector_size.window_post_proof_number(),
                    ),
                    proof_bytes: proof,
                }],
                chain_commit_epoch: dl.challenge,
                chain_commit_rand: FvmRandomness(commit_rand.to_vec()),
            };
            let result = self
                .send_until(
                    &format!("wpost/{}/{partition}", dl.open),
                    SUBMIT_WINDOWED_POST,
                    &params,
                    dl.close,
                )
                .await;
            match result {
                Ok(height) => {
                    cx.metrics
                        .window_post_latency_seconds
                        .observe(challenged.elapsed().as_secs_f64());
                    cx.metrics
                        .window_post_latency_epochs
                        .observe((height - dl.challenge) as f64);
                    self.count(|c| c.submitted += 1);
                    cx.metrics
                        .window_posts
                        .with_label_values(&["submitted"])
                        .inc();
                    tracing::info!(
                        deadline = dl.index,
                        partition,
                        sectors = sectors.len(),
                        skipped = skipped.len(),
                        landed_at = height,
                        epochs_after_challenge = height - dl.challenge,
                        took = ?started.elapsed(),
                        "WindowPoSt accepted"
                    );
                    cx.events.emit(HubEvent::WindowPost {
                        deadline: dl.index,
                        partition,
                        accepted: true,
                        detail: format!("{} sectors proven at epoch {height}", sectors.len()),
                    });
                }
                Err(e) => {
                    failed += 1;
                    self.count(|c| c.failed += 1);
                    cx.metrics.window_posts.with_label_values(&["failed"]).inc();
                    tracing::error!(deadline = dl.index, partition, error = %format!("{e:#}"), "WindowPoSt failed");
                    cx.events.emit(HubEvent::WindowPost {
                        deadline: dl.index,
                        partition,
                        accepted: false,
                        detail: format!("{e:#}"),
                    });
                }
            }
        }
        // Partitions that failed are tried again while the window is open (those that landed
        // are skipped then: the chain lists them as posted).
        anyhow::ensure!(
            failed == 0,
            "{failed} WindowPoSt(s) of deadline {} failed; retrying while its window is open",
            dl.index
        );
        Ok(())
    }

    async fn generate(
        &self,
        seed: [u8; 32],
        sectors: Vec<ProvingSector>,
    ) -> anyhow::Result<Vec<u8>> {
        let cx = &self.cx;
        generate_post(
            &cx.prover,
            cx.mode,
            PostKind::Window,
            cx.sector_size,
            cx.actor,
            seed,
            sectors,
        )
        .await
    }

    /// Sends a message for `purpose` from the PoSt sender and waits until it lands, at most
    /// until `until`. After a restart the recorded message for the purpose is waited for, not
    /// sent again.
    async fn send_until<P: serde::Serialize>(
        &self,
        purpose: &str,
        method: u64,
        params: &P,
        until: ChainEpoch,
    ) -> anyhow::Result<ChainEpoch> {
        let cx = &self.cx;
        let signed = cx
            .chain
            .send(
                Outgoing {
                    purpose,
                    from: cx.post_sender,
                    to: cx.actor,
                    method,
                    params: fvm_ipld_encoding::to_vec(params)?,
                    value: fvm_shared::econ::TokenAmount::from_atto(0),
                },
                |_| Ok(()),
            )
            .await?;
        match cx.chain.wait_landed(&signed, Some(until)).await? {
            Some(Landed::Executed(lookup)) if lookup.receipt.exit_code == 0 => Ok(lookup.height),
            Some(Landed::Executed(lookup)) => anyhow::bail!(
                "the message failed on chain with exit code {}",
                lookup.receipt.exit_code
            ),
            Some(Landed::NonceTaken) => {
                anyhow::bail!("another message from the PoSt sender took its nonce")
            }
            Some(Landed::Refused(reason)) => anyhow::bail!("the chain refused it: {reason}"),
            None => anyhow::bail!("it did not land by epoch {until}"),
        }
    }

    /// Declares recovered the faulty sectors of `dl` whose files are good again.
    async fn declare_recoveries(&self, dl: &DeadlineInfo) -> anyhow::Result<()> {
        let cx = &self.cx;
        let partitions = cx
            .chain
            .rpc
            .call::<StateMinerPartitions>((Addr(cx.actor), dl.index, TipSetKey::head()))
            .await?;
        let mut recoveries = Vec::new();
        for (index, partition) in partitions.iter().enumerate() {
            let faulty = &partition.faulty_sectors - &partition.recovering_sectors;
            let mut back = BitField::new();
            for (n, checked) in self.check(faulty.iter()) {
                if checked.is_ok() {
                    back.set(n);
                }
            }
            if !back.is_empty() {
                recoveries.push(RecoveryDeclaration {
                    deadline: dl.index,
                    partition: index as u64,
                    sectors: back,
                });
            }
        }
        if recoveries.is_empty() {
            return Ok(());
        }
        let count: u64 = recoveries.iter().map(|r| r.sectors.len()).sum();
        let height = self
            .send_until(
                &format!("recover/{}", dl.open),
                DECLARE_FAULTS_RECOVERED,
                &DeclareFaultsRecoveredParams { recoveries },
                dl.fault_cutoff,
            )
            .await
            .with_context(|| {
                format!("declare {count} sectors of deadline {} recovered", dl.index)
            })?;
        tracing::info!(
            deadline = dl.index,
            sectors = count,
            landed_at = height,
            "faulty sectors whose files are back declared recovered"
        );
        cx.events.emit(HubEvent::Recovered {
            deadline: dl.index,
            sectors: count,
        });
        Ok(())
    }
}

/// A sector's files as a PoSt reads them, or why it cannot be proven: the hub's record (for
/// CommR and the storage path) and intact files (`check_sealed`).
pub fn provable_sector(db: &Db, storage: &SectorStorage, n: u64) -> Checked {
    let record = match db.sector(n) {
        Ok(Some(record)) => record,
        Ok(None) => return Err("the hub has no record of it".to_string()),
        Err(e) => return Err(format!("its record cannot be read: {e:#}")),
    };
    let comm_r = record
        .comm_r
        .ok_or_else(|| "the hub has no CommR for it".to_string())?;
    storage.check_sealed(&record.storage, n)?;
    let paths = storage.sector_paths(&record.storage, n);
    Ok(ProvingSector {
        number: SectorNumber(n),
        comm_r,
        sealed: paths.sealed,
        cache: paths.cache,
    })
}

/// A WindowPoSt or WinningPoSt over `sectors`: real on the blocking pool, or the insecure
/// testing proof for chains whose genesis says so.
pub async fn generate_post(
    prover: &Prover,
    mode: ProofMode,
    kind: PostKind,
    size: SectorSize,
    actor: Address,
    seed: [u8; 32],
    sectors: Vec<ProvingSector>,
) -> anyhow::Result<Vec<u8>> {
    let miner = ActorId(actor.id().context("the miner address is not an ID")?);
    match mode {
        ProofMode::Real => Ok(prover
            .run(move |p| p.generate_post(kind, size, miner, Randomness(seed), &sectors))
            .await?),
        ProofMode::InsecureTesting => {
            let proven: Vec<ProvenSector> = sectors
                .iter()
                .map(|s| ProvenSector {
                    number: s.number,
                    comm_r: s.comm_r,
                })
                .collect();
            Ok(nelumbo_proofs::insecure_post_proof(
                kind,
                size,
                miner,
                Randomness(seed),
                &proven,
            ))
        }
    }
}

/// The occurrence of the deadline `ahead` deadlines after `current`.
pub fn occurrence(current: &DeadlineInfo, ahead: u64) -> DeadlineInfo {
    let shift = ahead as ChainEpoch * current.wpost_challenge_window;
    let open = current.open + shift;
    DeadlineInfo {
        index: (current.index + ahead) % current.wpost_period_deadlines,
        open,
        close: open + current.wpost_challenge_window,
        challenge: open - current.wpost_challenge_lookback,
        fault_cutoff: open - current.fault_declaration_cutoff,
        period_start: current.period_start
            + if current.index + ahead >= current.wpost_period_deadlines {
                current.wpost_proving_period
            } else {
                0
            },
        ..*current
    }
}

/// The sectors a partition's WindowPoSt covers: live ones, except faults not declared
/// recovered.
fn to_prove(partition: &Partition) -> BitField {
    let faulty = &partition.faulty_sectors - &partition.recovering_sectors;
    &partition.live_sectors - &faulty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> DeadlineInfo {
        DeadlineInfo {
            current_epoch: 105,
            period_start: 100,
            index: 47,
            open: 100 + 47 * 10,
            close: 100 + 48 * 10,
            challenge: 100 + 47 * 10 - 3,
            fault_cutoff: 100 + 47 * 10 - 5,
            wpost_period_deadlines: 48,
            wpost_proving_period: 480,
            wpost_challenge_window: 10,
            wpost_challenge_lookback: 3,
            fault_declaration_cutoff: 5,
        }
    }

    #[test]
    fn the_next_deadline_wraps_into_the_next_period() {
        let next = occurrence(&current(), 1);
        assert_eq!(next.index, 0);
        assert_eq!(next.open, current().close);
        assert_eq!(next.challenge, next.open - 3);
        assert_eq!(next.period_start, 100 + 480);
        assert_eq!(occurrence(&current(), 0), current());
    }

    #[test]
    fn faults_not_declared_recovered_are_left_out() {
        let bits = |v: &[u64]| BitField::try_from_bits(v.iter().copied()).expect("bits");
        let partition = Partition {
            all_sectors: bits(&[1, 2, 3, 4]),
            faulty_sectors: bits(&[2, 3]),
            recovering_sectors: bits(&[3]),
            live_sectors: bits(&[1, 2, 3, 4]),
            active_sectors: bits(&[1, 4]),
        };
        assert_eq!(
            to_prove(&partition).iter().collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
    }
}
