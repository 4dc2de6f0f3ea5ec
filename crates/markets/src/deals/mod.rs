//! Storage deals: each is a state machine persisted in the markets database, driven by one task
//! from acceptance to active on chain. Every step is recorded before it is acted on and every
//! call to the hub is idempotent (by proposal CID, piece CID or deal UUID), so a crash at any
//! point resumes where it stopped.
//!
//! ```text
//! Accepted -> Transferring -> Verifying -> Uploading -> Publishing -> AddingPiece -> Sealing -> Active
//!    (offline: Accepted waits for `deals import-data`)          any step -> Failed (retry resumes)
//! ```
//!
//! The piece goes to the hub before the deal is published: the hub publishes only deals whose
//! piece it holds, so no collateral is ever locked for data that never arrives.

mod actions;
pub mod checks;
pub mod guard;
mod record;
pub mod staging;
pub mod transfer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use cid::Cid;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Base64;
use nelumbo_markets_api::admin::DealState;
use nelumbo_miner_api::methods::{
    ChainHead, MarketPublishDeals, SectorAddPieceToAny, SectorsStatus, StateMarketStorageDeal,
};
use nelumbo_miner_api::types::{PieceDealInfo, SectorState};
use nelumbo_service::{Backoff, Worker, Workers};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::DealsConfig;
use crate::hub::{Hub, HubError};
use crate::metrics::Metrics;
use crate::store::AsyncStore;
pub use record::DealRecord;
use transfer::TransferError;

/// How often a running transfer logs its progress.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What every deal task shares.
#[derive(Debug)]
pub struct DealsInner {
    pub store: AsyncStore,
    pub hub: Hub,
    pub config: DealsConfig,
    /// `[deals] max_provider_collateral`, parsed.
    pub max_provider_collateral: TokenAmount,
    pub staging: PathBuf,
    pub metrics: Metrics,
    /// Fetches deal data: every connection passes the guard (public addresses only).
    pub http: reqwest::Client,
    pub guard: guard::Guard,
    transfers: Semaphore,
    /// What each deal holds of staging, and its state (for the metrics).
    holdings: Mutex<staging::Holdings>,
    /// Offline deals whose data is being imported now.
    importing: Mutex<HashSet<String>>,
    /// Bytes held by running transfers (the stored figure is updated less often).
    progress: Mutex<HashMap<String, u64>>,
    /// Running deal tasks, to cancel them, and whether each must drive its deal once more
    /// (asked while it was finishing).
    running: Mutex<HashMap<String, (CancellationToken, bool)>>,
    /// Woken by hub events about sectors.
    pub sector_news: Notify,
    /// Woken whenever a deal's record is saved (indexing follows deal states).
    pub changes: Arc<Notify>,
    cancel: CancellationToken,
    /// With retrieval in this process: an active deal's staged data moves into the piece cache
    /// rather than being deleted.
    piece_cache: Option<Arc<crate::retrieval::cache::PieceCache>>,
    /// Each running deal task reports here (`workers list`).
    worker_list: Workers,
}

#[derive(Debug, Clone)]
pub struct Deals(pub Arc<DealsInner>);

/// How a step ended.
enum Step {
    /// Go on with the record's (new) state.
    Next,
    /// Nothing more to do for now (offline deal waiting for data, final state).
    Park,
}

/// What the deals service is made of.
#[derive(Debug)]
pub struct DealsSetup {
    pub store: AsyncStore,
    pub hub: Hub,
    pub config: DealsConfig,
    /// `[deals] transfer_allow` and `max_provider_collateral`, parsed.
    pub transfer_allow: guard::AllowList,
    pub max_provider_collateral: TokenAmount,
    /// Where transfers write deal data.
    pub staging: PathBuf,
    pub metrics: Metrics,
    /// With retrieval in this process: where an active deal's staged data goes.
    pub piece_cache: Option<Arc<crate::retrieval::cache::PieceCache>>,
    /// Each running deal task reports here (`workers list`).
    pub worker_list: Workers,
}

impl Deals {
    pub fn new(setup: DealsSetup, cancel: CancellationToken) -> anyhow::Result<Self> {
        let DealsSetup {
            store,
            hub,
            config,
            transfer_allow,
            max_provider_collateral,
            staging,
            metrics,
            piece_cache,
            worker_list,
        } = setup;
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("create the staging directory {}", staging.display()))?;
        let guard = guard::Guard::new(transfer_allow);
        let http = guard.http_client()?;
        let transfers = Semaphore::new(config.max_transfers);
        Ok(Self(Arc::new(DealsInner {
            store,
            hub,
            config,
            max_provider_collateral,
            staging,
            metrics,
            http,
            guard,
            transfers,
            holdings: Mutex::default(),
            importing: Mutex::default(),
            progress: Mutex::default(),
            running: Mutex::default(),
            sector_news: Notify::new(),
            changes: Arc::new(Notify::new()),
            cancel,
            piece_cache,
            worker_list,
        })))
    }

    /// Resumes every deal that was in flight when the process stopped.
    pub async fn resume_all(&self) -> anyhow::Result<()> {
        let deals = self.0.store.deals().await?;
        {
            let mut holdings = self.holdings();
            for deal in &deals {
                holdings.insert(deal.uuid.clone(), staging::Holding::of(deal));
            }
            self.count_states(&holdings);
        }
        for deal in deals {
            if !deal.state.is_final() {
                tracing::info!(deal_uuid = %deal.uuid, state = %deal.state, "resuming deal");
                self.spawn(&deal.uuid);
            } else if deal.state == DealState::Active {
                // A crash between recording Active and removing the staged copy.
                self.cleanup_staging(&deal);
            }
        }
        // Imports interrupted by a crash.
        if let Ok(entries) = std::fs::read_dir(&self.0.staging) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|e| e == "import") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    pub fn staged_path(&self, uuid: &str) -> PathBuf {
        self.0.staging.join(format!("{uuid}.car"))
    }

    /// Bytes received for a deal, live while it transfers.
    pub fn bytes_received(&self, record: &DealRecord) -> u64 {
        self.0
            .progress
            .lock()
            .ok()
            .and_then(|p| p.get(&record.uuid).copied())
            .unwrap_or(record.bytes_received)
    }

    /// Starts the deal's task; if one runs, it reads the deal again before it ends (so a
    /// task that was just finishing cannot miss a retry or an import).
    pub fn spawn(&self, uuid: &str) {
        let token = {
            let Ok(mut running) = self.0.running.lock() else {
                return;
            };
            if let Some((_, again)) = running.get_mut(uuid) {
                *again = true;
                return;
            }
            let token = self.0.cancel.child_token();
            running.insert(uuid.to_string(), (token.clone(), false));
            token
        };
        let deals = self.clone();
        let uuid = uuid.to_string();
        // Every line the deal's task logs, down to the transfer and the hub's answers, carries
        // its UUID (the span), whichever module logs it.
        let span = tracing::info_span!("deal", deal_uuid = %uuid);
        let task = async move {
            let worker = deals.0.worker_list.start("deal", uuid.clone());
            loop {
                deals.drive(&uuid, &token, &worker).await;
                let Ok(mut running) = deals.0.running.lock() else {
                    return;
                };
                match running.get_mut(&uuid) {
                    Some((_, again)) if *again && !token.is_cancelled() => *again = false,
                    _ => {
                        running.remove(&uuid);
                        return;
                    }
                }
            }
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
    }

    fn is_running(&self, uuid: &str) -> bool {
        self.0
            .running
            .lock()
            .map(|r| r.contains_key(uuid))
            .unwrap_or(false)
    }

    /// Stops the deal's task, if it runs.
    fn stop_task(&self, uuid: &str) {
        if let Ok(running) = self.0.running.lock()
            && let Some((token, _)) = running.get(uuid)
        {
            token.cancel();
        }
    }

    async fn save(&self, record: &mut DealRecord, message: Option<&str>) -> anyhow::Result<()> {
        record.updated_at = crate::now_secs();
        self.0.store.put(record, message).await?;
        self.track(record);
        self.0.changes.notify_waiters();
        if let Some(message) = message {
            tracing::info!(deal_uuid = %record.uuid, state = %record.state, "{message}");
        }
        Ok(())
    }

    /// Moves the deal to `state`, recording why.
    async fn advance(
        &self,
        record: &mut DealRecord,
        state: DealState,
        message: &str,
    ) -> anyhow::Result<()> {
        record.state = state;
        self.save(record, Some(message)).await
    }

    async fn fail(&self, record: &mut DealRecord, error: String) -> anyhow::Result<()> {
        tracing::warn!(deal_uuid = %record.uuid, step = %record.state, error = %error, "deal failed");
        record.failed_step = Some(record.state);
        record.error = error.clone();
        record.state = DealState::Failed;
        self.save(record, Some(&format!("failed: {error}"))).await?;
        self.0
            .metrics
            .deal_failures
            .with_label_values(&[record.failed_step.map_or("", |s| s.name())])
            .inc();
        Ok(())
    }

    /// Drives a deal until it parks; a panic in a step (a bug) fails the deal with the
    /// panic's message rather than leaving it stuck.
    async fn drive(&self, uuid: &str, cancel: &CancellationToken, worker: &Worker) {
        use futures::FutureExt;
        let run =
            std::panic::AssertUnwindSafe(self.drive_steps(uuid, cancel, worker)).catch_unwind();
        if let Err(panic) = run.await {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            tracing::error!(deal_uuid = uuid, panic = %what, "a deal step panicked (a bug): failing the deal");
            if let Ok(Some(mut record)) = self.0.store.deal(uuid).await
                && !record.state.is_final()
            {
                let _ = self
                    .fail(&mut record, format!("internal error (a bug): {what}"))
                    .await;
            }
        }
    }

    async fn drive_steps(&self, uuid: &str, cancel: &CancellationToken, worker: &Worker) {
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let mut record = match self.0.store.deal(uuid).await {
                Ok(Some(record)) => record,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(deal_uuid = uuid, error = %format!("{e:#}"), "cannot read the deal");
                    return;
                }
            };
            worker.busy(record.state.name());
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                result = self.step(&mut record, cancel, worker) => result,
            };
            match result {
                Ok(Step::Next) => worker.succeeded(),
                Ok(Step::Park) => return,
                Err(e) => {
                    // Only the database can fail here: wait and read the record again.
                    let error = format!("{e:#}");
                    let delay = Duration::from_secs(5);
                    worker.retrying(&error, delay, record.state.name());
                    tracing::error!(deal_uuid = uuid, %error, "deal step failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn step(
        &self,
        record: &mut DealRecord,
        cancel: &CancellationToken,
        worker: &Worker,
    ) -> anyhow::Result<Step> {
        if panic_failpoint() == Some(record.state.name()) {
            panic!("{PANIC_FAILPOINT} is set for {}", record.state);
        }
        match record.state {
            DealState::Accepted if record.is_offline => Ok(Step::Park),
            DealState::Accepted => {
                let _permit = self.transfer_permit(worker).await?;
                record.transfer_started_at = Some(crate::now_secs());
                self.advance(record, DealState::Transferring, "transfer started")
                    .await?;
                self.transfer(record, cancel, worker).await
            }
            DealState::Transferring => {
                let _permit = self.transfer_permit(worker).await?;
                self.transfer(record, cancel, worker).await
            }
            DealState::Verifying => self.verify(record).await,
            DealState::Publishing => self.publish(record, worker).await,
            DealState::Uploading => self.upload(record, worker).await,
            DealState::AddingPiece => self.add_piece(record, worker).await,
            DealState::Sealing => self.follow_sealing(record, worker).await,
            DealState::Active | DealState::Failed | DealState::Cancelled => Ok(Step::Park),
        }
    }

    async fn transfer_permit(
        &self,
        worker: &Worker,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, tokio::sync::AcquireError> {
        worker
            .permit(
                &self.0.transfers,
                &format!(
                    "a transfer slot: all {} in use ([deals] max_transfers)",
                    self.0.config.max_transfers
                ),
                "Transferring",
            )
            .await
    }

    async fn transfer(
        &self,
        record: &mut DealRecord,
        cancel: &CancellationToken,
        worker: &Worker,
    ) -> anyhow::Result<Step> {
        let Some(source) = record.source.clone() else {
            self.fail(record, "an online deal has no transfer URL".into())
                .await?;
            return Ok(Step::Park);
        };
        if let Err(why) = self.0.guard.check_url(&source.url) {
            self.fail(record, why).await?;
            return Ok(Step::Park);
        }
        let path = self.staged_path(&record.uuid);
        let config = &self.0.config;
        let limits = transfer::Limits {
            stall: Duration::from_secs(config.stall_timeout_secs),
            min_bytes_per_sec: config.min_transfer_bytes_per_sec,
            rate_window: Duration::from_secs(config.transfer_rate_window_secs),
        };
        let started = *record.transfer_started_at.get_or_insert(crate::now_secs());
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let running_for = crate::now_secs().saturating_sub(started);
            if running_for >= config.transfer_deadline_secs {
                self.fail_transfer_deadline(record).await?;
                return Ok(Step::Park);
            }
            // The deadline also cuts an attempt short: a sender just above the minimum rate
            // would otherwise hold a slot for as long as the deal's size allows.
            let remaining = Duration::from_secs(config.transfer_deadline_secs - running_for);
            record.transfer_attempts += 1;
            let uuid = record.uuid.clone();
            let metrics = self.0.metrics.clone();
            let mut last = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let total = record.transfer_size;
            let mut logged = (std::time::Instant::now(), last);
            let attempt =
                transfer::pull_once(&self.0.http, &source, &path, total, &limits, |have| {
                    metrics.bytes_received.inc_by(have.saturating_sub(last));
                    last = have;
                    if let Ok(mut p) = self.0.progress.lock() {
                        p.insert(uuid.clone(), have);
                    }
                    // A progress line every 10 s for operators reading the log.
                    let elapsed = logged.0.elapsed();
                    if elapsed >= PROGRESS_LOG_INTERVAL {
                        let rate = have.saturating_sub(logged.1) as f64 / elapsed.as_secs_f64();
                        tracing::info!(
                            deal_uuid = %uuid,
                            received = have,
                            total,
                            percent = have * 100 / total.max(1),
                            bytes_per_sec = rate as u64,
                            "transfer progress"
                        );
                        logged = (std::time::Instant::now(), have);
                    }
                });
            let result = tokio::time::timeout(remaining, attempt).await;
            record.bytes_received = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let Ok(result) = result else {
                self.fail_transfer_deadline(record).await?;
                return Ok(Step::Park);
            };
            match result {
                Ok(()) => {
                    self.forget_progress(&record.uuid);
                    self.advance(
                        record,
                        DealState::Verifying,
                        &format!("received all {} bytes", record.transfer_size),
                    )
                    .await?;
                    return Ok(Step::Next);
                }
                Err(TransferError::Fatal(why)) => {
                    self.forget_progress(&record.uuid);
                    self.0.metrics.transfer_failures.inc();
                    self.fail(record, why).await?;
                    return Ok(Step::Park);
                }
                Err(TransferError::Retry(why)) => {
                    if record.transfer_attempts >= self.0.config.max_transfer_attempts {
                        self.forget_progress(&record.uuid);
                        self.0.metrics.transfer_failures.inc();
                        self.fail(
                            record,
                            format!(
                                "the transfer failed after {} attempts; last: {why}",
                                record.transfer_attempts
                            ),
                        )
                        .await?;
                        return Ok(Step::Park);
                    }
                    record.transfer_restarts += 1;
                    self.0.metrics.transfer_restarts.inc();
                    let delay = backoff.next_delay();
                    worker.retrying(
                        &why,
                        delay,
                        format!(
                            "Transferring: resuming at byte {} of {}",
                            record.bytes_received, record.transfer_size
                        ),
                    );
                    self.save(
                        record,
                        Some(&format!(
                            "transfer attempt {} stopped at byte {}: {why}; resuming in {delay:?}",
                            record.transfer_attempts, record.bytes_received
                        )),
                    )
                    .await?;
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(Step::Park),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn fail_transfer_deadline(&self, record: &mut DealRecord) -> anyhow::Result<()> {
        self.forget_progress(&record.uuid);
        self.0.metrics.transfer_failures.inc();
        self.fail(
            record,
            format!(
                "the transfer did not finish within {} s ([deals] transfer_deadline_secs); {} of {} bytes arrived",
                self.0.config.transfer_deadline_secs, record.bytes_received, record.transfer_size
            ),
        )
        .await
    }

    fn forget_progress(&self, uuid: &str) {
        if let Ok(mut p) = self.0.progress.lock() {
            p.remove(uuid);
        }
    }

    /// The data must be the proposal's piece and a CAR rooted at `DealDataRoot`; its blocks go
    /// into the piece directory.
    async fn verify(&self, record: &mut DealRecord) -> anyhow::Result<Step> {
        let path = self.staged_path(&record.uuid);
        let piece_cid: Cid = record.piece_cid.parse()?;
        let piece_size = record.piece_size;
        let check_path = path.clone();
        let computed =
            tokio::task::spawn_blocking(move || piece_commitment(&check_path, piece_size)).await?;
        match computed {
            Ok(cid) if cid == piece_cid => {}
            Ok(cid) => {
                self.fail(
                    record,
                    format!(
                        "the data's piece commitment {cid} does not match the proposal's piece CID {piece_cid}"
                    ),
                ).await?;
                return Ok(Step::Park);
            }
            Err(e) => {
                self.fail(record, format!("{e:#}")).await?;
                return Ok(Step::Park);
            }
        }
        // The root first, so a CAR of other data is never indexed.
        let root = std::fs::File::open(&path)
            .map_err(nelumbo_car::CarError::from)
            .and_then(|f| nelumbo_car::CarReader::new(std::io::BufReader::new(f)))
            .map(|r| r.roots().first().map(|c| c.to_string()));
        match root {
            Ok(Some(root)) if root == record.data_root => {}
            Ok(root) => {
                self.fail(
                    record,
                    format!(
                        "the CAR's root {} is not the proposal's DealDataRoot {}",
                        root.as_deref().unwrap_or("(none)"),
                        record.data_root
                    ),
                )
                .await?;
                return Ok(Step::Park);
            }
            Err(e) => {
                self.fail(record, format!("the data is not a valid CAR: {e}"))
                    .await?;
                return Ok(Step::Park);
            }
        }
        let index_path = path.clone();
        let indexed = crate::directory::run(self.0.store.directory(), move |directory| {
            nelumbo_piecedir::index_car(directory, &piece_cid, &index_path)
        })
        .await;
        let indexed = match indexed {
            Ok(indexed) => indexed,
            Err(e) if nelumbo_piecedir::is_bad_data(&e) => {
                self.fail(record, format!("the data is not a valid CAR: {e:#}"))
                    .await?;
                return Ok(Step::Park);
            }
            // The directory is unreachable (its database down): the step is tried again.
            Err(e) => return Err(e.context("index the piece in the piece directory")),
        };
        self.advance(
            record,
            DealState::Uploading,
            &format!(
                "piece commitment matches; {} blocks indexed in the piece directory",
                indexed.blocks
            ),
        )
        .await?;
        Ok(Step::Next)
    }

    /// Waits with capped backoff while the hub is away; `Ok(None)` if it refused (the deal has
    /// failed then).
    async fn with_hub<T, F, Fut>(
        &self,
        record: &mut DealRecord,
        worker: &Worker,
        what: &str,
        call: F,
    ) -> anyhow::Result<Option<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, HubError>>,
    {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            match call().await {
                Ok(v) => {
                    worker.succeeded();
                    return Ok(Some(v));
                }
                Err(HubError::Refused(why)) => {
                    self.fail(record, format!("{what}: {why}")).await?;
                    return Ok(None);
                }
                Err(HubError::PieceMissing(why)) => {
                    // The hub lost or deleted the piece (it keeps unclaimed pieces for a
                    // while): upload it again, then publish.
                    self.advance(
                        record,
                        DealState::Uploading,
                        &format!("{what}: {why}; uploading the piece again"),
                    )
                    .await?;
                    return Ok(None);
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    worker.retrying(
                        &e.to_string(),
                        delay,
                        format!("{}: {what} (the hub is away or busy)", record.state),
                    );
                    if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                        self.save(
                            record,
                            Some(&format!(
                                "{what}: {e}; waiting for the hub (retry in {delay:?})"
                            )),
                        )
                        .await?;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn publish(&self, record: &mut DealRecord, worker: &Worker) -> anyhow::Result<Step> {
        let proposal = base64::engine::general_purpose::STANDARD.decode(&record.proposal)?;
        let hub = self.0.hub.clone();
        let published = self
            .with_hub(record, worker, "publish the deal", || {
                let hub = hub.clone();
                let proposal = proposal.clone();
                async move { hub.call::<MarketPublishDeals>((Base64(proposal),)).await }
            })
            .await?;
        let Some(published) = published else {
            // Failed (parked), or sent back to Uploading (go on).
            return Ok(if record.state == DealState::Uploading {
                Step::Next
            } else {
                Step::Park
            });
        };
        record.deal_id = Some(published.deal_id);
        record.publish_message = Some(published.message.to_string());
        self.advance(
            record,
            DealState::AddingPiece,
            &format!(
                "published as deal {} by message {} at epoch {}",
                published.deal_id, published.message, published.epoch
            ),
        )
        .await?;
        Ok(Step::Next)
    }

    async fn upload(&self, record: &mut DealRecord, worker: &Worker) -> anyhow::Result<Step> {
        let piece: Cid = record.piece_cid.parse()?;
        let path = self.staged_path(&record.uuid);
        let hub = self.0.hub.clone();
        let size = record.piece_size;
        let done = self
            .with_hub(record, worker, "upload the piece to the hub", || {
                let hub = hub.clone();
                let path = path.clone();
                async move { hub.upload_piece(&piece, size, &path).await }
            })
            .await?;
        if done.is_none() {
            return Ok(Step::Park);
        }
        self.advance(
            record,
            DealState::Publishing,
            "the hub holds the piece and checked its commitment",
        )
        .await?;
        Ok(Step::Next)
    }

    async fn add_piece(&self, record: &mut DealRecord, worker: &Worker) -> anyhow::Result<Step> {
        let info = PieceDealInfo {
            deal_uuid: record.uuid.clone(),
            deal_id: record
                .deal_id
                .context("a deal in AddingPiece has no deal ID")?,
            piece_cid: record.piece_cid.parse()?,
            piece_size: record.piece_size,
            start_epoch: record.start_epoch,
            end_epoch: record.end_epoch,
        };
        let hub = self.0.hub.clone();
        let placed = self
            .with_hub(record, worker, "add the piece to a sector", || {
                let hub = hub.clone();
                let info = info.clone();
                async move { hub.call::<SectorAddPieceToAny>((info,)).await }
            })
            .await?;
        let Some(placed) = placed else {
            return Ok(Step::Park);
        };
        record.sector = Some(placed.sector);
        self.advance(
            record,
            DealState::Sealing,
            &format!("in sector {} at offset {}", placed.sector, placed.offset),
        )
        .await?;
        Ok(Step::Next)
    }

    /// Follows the sector until the deal is active on chain; hub events wake it early.
    async fn follow_sealing(
        &self,
        record: &mut DealRecord,
        worker: &Worker,
    ) -> anyhow::Result<Step> {
        let deal_id = record.deal_id.context("a deal in Sealing has no deal ID")?;
        let sector = record.sector.context("a deal in Sealing has no sector")?;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let wake = self.0.sector_news.notified();
            let status = self.0.hub.call::<SectorsStatus>((sector,)).await;
            let deal = self.0.hub.call::<StateMarketStorageDeal>((deal_id,)).await;
            match (status, deal) {
                (Ok(status), Ok(deal)) => {
                    backoff.reset();
                    worker.succeeded();
                    worker.idle(format!(
                        "Sealing: sector {sector} is {} on the hub",
                        status.state
                    ));
                    let state = status.state.name().to_string();
                    if state != record.sealing_status {
                        record.sealing_status = state.clone();
                        self.save(record, Some(&format!("sector {sector} is {state}")))
                            .await?;
                    }
                    if deal.state.sector_start_epoch >= 0 {
                        self.advance(
                            record,
                            DealState::Active,
                            &format!(
                                "the deal is active on chain since epoch {} (sector {sector})",
                                deal.state.sector_start_epoch
                            ),
                        )
                        .await?;
                        self.cleanup_staging(record);
                        return Ok(Step::Park);
                    }
                    if status.state == SectorState::Failed {
                        self.fail(
                            record,
                            format!(
                                "the hub's sector {sector} failed: {}",
                                status.last_error.unwrap_or_default()
                            ),
                        )
                        .await?;
                        return Ok(Step::Park);
                    }
                    if head_after(&self.0.hub, record.start_epoch).await {
                        self.fail(
                            record,
                            format!(
                                "the deal was not activated before its start epoch {} (sector {sector} is {})",
                                record.start_epoch, status.state
                            ),
                        ).await?;
                        return Ok(Step::Park);
                    }
                    tokio::select! {
                        _ = wake => {}
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    // A deal never activated is dropped by the market after its start epoch:
                    // then it can never become active.
                    if head_after(&self.0.hub, record.start_epoch).await {
                        self.fail(
                            record,
                            format!(
                                "the deal was not activated before its start epoch {} (sector {sector}; last error: {e})",
                                record.start_epoch
                            ),
                        ).await?;
                        return Ok(Step::Park);
                    }
                    let delay = backoff.next_delay();
                    worker.retrying(
                        &e.to_string(),
                        delay,
                        format!("Sealing: following sector {sector}"),
                    );
                    if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(deal_uuid = %record.uuid, sector, error = %e, retry_in = ?delay, "cannot follow the deal's sector yet");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The hub holds the piece (its unsealed copy and the sector): the staged copy can go, into
    /// the piece cache when retrieval runs here (its commitment was checked when it arrived).
    fn cleanup_staging(&self, record: &DealRecord) {
        let path = self.staged_path(&record.uuid);
        let cache = self.0.piece_cache.clone();
        let (piece, piece_size) = (record.piece_cid.clone(), record.piece_size);
        let remove = move || {
            if let Some(cache) = cache
                && path.exists()
            {
                match cache.admit_file(&piece, piece_size, &path) {
                    Ok(true) => {
                        tracing::info!(piece_cid = %piece, "the deal's data is now in the piece cache")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(piece_cid = %piece, error = %format!("{e:#}"), "cannot move the deal's data into the piece cache")
                    }
                }
            }
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove staged data");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
    }
}

/// Whether the chain is past `epoch` (false when the hub cannot say).
async fn head_after(hub: &Hub, epoch: i64) -> bool {
    hub.call::<ChainHead>(())
        .await
        .is_ok_and(|head| head.height > epoch)
}

/// The piece CID of a staged file zero-padded to `piece_size`.
pub fn piece_commitment(path: &Path, piece_size: u64) -> anyhow::Result<Cid> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("open the staged data {}", path.display()))?;
    let mut hasher = nelumbo_commp::CommPHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n])?;
    }
    let digest = hasher.finish()?;
    let target = nelumbo_commp::PaddedPieceSize::new(piece_size)?;
    let padded = nelumbo_commp::pad_commitment(&digest.commitment, digest.piece_size, target)
        .with_context(|| {
            format!(
                "the data ({} bytes) needs a piece of {}, larger than the proposal's {piece_size}",
                digest.payload_size, digest.piece_size
            )
        })?;
    Ok(nelumbo_commp::piece_cid_v1(&padded))
}

/// A failpoint for the tests of a bug in a deal step: `NELUMBO_DEAL_STEP_PANIC=Verifying` makes
/// every step of a deal in that state panic (the daemon warns at start when it is set).
pub const PANIC_FAILPOINT: &str = "NELUMBO_DEAL_STEP_PANIC";

/// The deal state [`PANIC_FAILPOINT`] names, read once.
pub fn panic_failpoint() -> Option<&'static str> {
    static STATE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| {
            std::env::var(PANIC_FAILPOINT)
                .ok()
                .filter(|s| !s.is_empty())
        })
        .as_deref()
}
