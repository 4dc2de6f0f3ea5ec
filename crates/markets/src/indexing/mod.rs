//! `--services=indexing`: makes this provider's deals findable through IPNI.
//!
//! - The **reconciler** compares the pieces that should be advertised (those with a live deal:
//!   in `Sealing` or `Active`, not past its end epoch, not slashed, not `skip_ipni_announce`,
//!   not removed by the operator) with what the chain says of each piece, and appends one
//!   advertisement per difference: a piece's blocks when it becomes live, a removal (`IsRm`)
//!   when its last live deal ends. Deal changes wake it; it also looks every
//!   `[indexing] check_secs` (deal ends are a matter of chain height). Being derived from
//!   stored state, a crash at any point is finished by the next pass, never repeated.
//! - The **publisher** serves the chain on the retrieval listener (`/ipni/v1/ad/head`,
//!   `/ipni/v1/ad/{cid}`), see [`publisher`].
//! - One **announcer** per configured indexer sends the head (`PUT {indexer}/announce`) when it
//!   moves, retrying with capped backoff; each indexer on its own, so one that is down or slow
//!   delays nothing else.

pub mod chain;
pub mod ipni;
pub mod publisher;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use cid::Cid;
use libp2p::identity::Keypair;
use nelumbo_markets_api::admin::{DealState, IndexerStatus, IndexingStatus, PieceAdInfo};
use nelumbo_miner_api::methods::StateMarketStorageDeal;
use nelumbo_service::{Backoff, Worker, Workers};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::IndexingConfig;
use crate::deals::DealRecord;
use crate::hub::Hub;
use crate::store::AsyncStore;

/// The ContextID of a piece's advertisement: the CBOR tuple of its (v1) piece CID and padded
/// size, Curio's `PieceInfo` shape. At most 64 bytes for any piece CID.
pub fn context_id(piece_cid: &Cid, padded_size: u64) -> anyhow::Result<Vec<u8>> {
    Ok(fvm_ipld_encoding::to_vec(&(piece_cid, padded_size))?)
}

#[derive(Debug, Clone)]
pub struct IndexingMetrics {
    pub ads: IntCounterVec,
    pub entries: IntCounter,
    pub announces: IntCounterVec,
    pub head_seq: IntGauge,
    pub errors: IntCounter,
}

impl IndexingMetrics {
    pub fn new(registry: &Registry) -> anyhow::Result<Self> {
        let ads = IntCounterVec::new(
            Opts::new(
                "nelumbo_ipni_ads_published_total",
                "IPNI advertisements added to the chain, by kind (advertise or remove).",
            ),
            &["kind"],
        )?;
        let entries = IntCounter::new(
            "nelumbo_ipni_entries_published_total",
            "Multihashes listed by published advertisements.",
        )?;
        let announces = IntCounterVec::new(
            Opts::new(
                "nelumbo_ipni_announces_total",
                "Announcements of the head to indexers, by indexer and result (ok or failed).",
            ),
            &["indexer", "result"],
        )?;
        let head_seq = IntGauge::new(
            "nelumbo_ipni_head_seq",
            "The number of advertisements in the chain (the head's sequence number).",
        )?;
        let errors = IntCounter::new(
            "nelumbo_ipni_reconcile_errors_total",
            "Passes of the indexing reconciler that failed (see the log and `indexing status`).",
        )?;
        registry.register(Box::new(ads.clone()))?;
        registry.register(Box::new(entries.clone()))?;
        registry.register(Box::new(announces.clone()))?;
        registry.register(Box::new(head_seq.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self {
            ads,
            entries,
            announces,
            head_seq,
            errors,
        })
    }
}

/// What the announcers and the reconciler last saw, for `indexing status`.
#[derive(Debug, Default)]
struct Progress {
    indexers: BTreeMap<String, IndexerStatus>,
    last_error: String,
    last_chain_check: u64,
}

/// What advertisements and announcements say about where and how to retrieve.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The advertisements' addresses: the retrieval URL as a multiaddr, the libp2p addresses.
    pub addresses: Vec<String>,
    /// The advertisements' metadata (the transports served).
    pub metadata: Vec<u8>,
    /// The publisher's addresses, sent in announcements (with `/p2p/` added).
    pub publisher_addrs: Vec<libp2p::Multiaddr>,
}

#[derive(Debug)]
pub struct IndexingInner {
    store: AsyncStore,
    hub: Hub,
    key: Keypair,
    provider: Provider,
    config: IndexingConfig,
    metrics: IndexingMetrics,
    /// Woken when a deal changes state.
    pub wake: Arc<Notify>,
    /// The head: sequence number and CID.
    head: watch::Sender<Option<(u64, Cid)>>,
    /// Asks every announcer to send the head again now (`index announce`).
    reannounce: watch::Sender<u64>,
    progress: Mutex<Progress>,
    http: reqwest::Client,
}

#[derive(Debug, Clone)]
pub struct Indexing(pub Arc<IndexingInner>);

impl Indexing {
    pub fn new(
        store: AsyncStore,
        hub: Hub,
        key: Keypair,
        provider: Provider,
        config: IndexingConfig,
        metrics: IndexingMetrics,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let head = chain::head(store.blocking())?;
        metrics.head_seq.set(head.map_or(0, |h| h.0) as i64);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.announce_timeout_secs))
            .user_agent(concat!("nelumbo-markets/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let indexers = config
            .indexers
            .iter()
            .map(|url| {
                (
                    url.clone(),
                    IndexerStatus {
                        url: url.clone(),
                        ..IndexerStatus::default()
                    },
                )
            })
            .collect();
        Ok(Self(Arc::new(IndexingInner {
            store,
            hub,
            key,
            provider,
            config,
            metrics,
            wake,
            head: watch::Sender::new(head),
            reannounce: watch::Sender::new(0),
            progress: Mutex::new(Progress {
                indexers,
                ..Progress::default()
            }),
            http,
        })))
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.0.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reconciler and one announcer per indexer, until cancelled.
    pub async fn run(self, worker_list: Workers, cancel: CancellationToken) {
        let mut tasks = Vec::new();
        for indexer in self.0.config.indexers.clone() {
            let worker = worker_list.start("announcer", indexer.clone());
            let span = tracing::info_span!("announcer", indexer = %indexer);
            tasks.push(tokio::spawn(tracing::Instrument::instrument(
                self.clone().announce_loop(indexer, worker, cancel.clone()),
                span,
            )));
        }
        let worker = worker_list.start("indexing", "IPNI advertisement chain");
        self.reconcile_loop(&worker, cancel).await;
        for task in tasks {
            let _ = task.await;
        }
    }

    async fn reconcile_loop(&self, worker: &Worker, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let wake = self.0.wake.notified();
            worker.busy("bringing the advertisements in line with the deals");
            let delay = match self.reconcile(&cancel).await {
                Ok(()) => {
                    backoff.reset();
                    self.progress().last_error.clear();
                    worker.succeeded();
                    worker.idle(format!(
                        "a deal to change state (or the check every {} s)",
                        self.0.config.check_secs
                    ));
                    Duration::from_secs(self.0.config.check_secs)
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    let delay = backoff.next_delay();
                    worker.retrying(&error, delay, "bringing the advertisements up to date");
                    tracing::warn!(error = %error, "indexing: cannot bring the advertisements up to date; trying again");
                    self.0.metrics.errors.inc();
                    self.progress().last_error = error;
                    delay
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake => {
                    // Deals save often (transfer progress): let a burst of changes settle
                    // into one pass.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One pass: appends the advertisements that bring the chain in line with the deals.
    async fn reconcile(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let deals = self.0.store.deals().await?;
        // Without the chain's height a deal past its end would look live: wait for the hub.
        let height =
            self.0.hub.head_height().await.map_err(|e| {
                anyhow::anyhow!("waiting for the hub to know the chain's height: {e}")
            })?;
        self.check_deals_on_chain(&deals).await?;
        let (removed, ended) = self
            .0
            .store
            .run(|s| Ok((chain::removed_pieces(s)?, chain::ended_deals(s)?)))
            .await?;
        let live = live_pieces(&deals, height, &ended, &removed);
        let advertised: HashMap<String, bool> = self
            .0
            .store
            .run(chain::piece_ads)
            .await?
            .into_iter()
            .map(|r| (r.piece_cid, !r.is_rm))
            .collect();
        // Pieces to advertise, then pieces to withdraw, each in a stable order.
        let add: BTreeSet<&String> = live
            .keys()
            .filter(|p| !advertised.get(*p).copied().unwrap_or(false))
            .collect();
        let withdraw: BTreeSet<&String> = advertised
            .iter()
            .filter(|(p, on)| **on && !live.contains_key(*p))
            .map(|(p, _)| p)
            .collect();
        // One piece that cannot be advertised (say, never indexed here) holds up no other.
        let mut errors = Vec::new();
        let work = add
            .into_iter()
            .map(|p| (p, Some(live[p])))
            .chain(withdraw.into_iter().map(|p| (p, None)));
        for (piece, size) in work {
            if cancel.is_cancelled() {
                return Ok(());
            }
            if let Err(e) = self.publish(piece, size).await {
                errors.push(format!("{piece}: {e:#}"));
            }
        }
        anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
        Ok(())
    }

    /// Appends one advertisement (`padded_size` given) or removal (`None`) for a piece.
    async fn publish(&self, piece: &str, padded_size: Option<u64>) -> anyhow::Result<()> {
        let piece_cid: Cid = piece.parse().with_context(|| format!("piece {piece}"))?;
        let inner = self.0.clone();
        let piece_owned = piece.to_string();
        let started = std::time::Instant::now();
        let directory = self.0.store.directory().clone();
        let record = self
            .0
            .store
            .run(move |s| {
                let multihashes = match padded_size {
                    Some(_) => Some(directory.multihashes(&piece_owned)?.with_context(|| {
                        format!(
                            "piece {piece_owned} is not in this process's piece directory \
                                 (its deal was taken by a deals service on another repo): its \
                                 blocks cannot be listed"
                        )
                    })?),
                    None => None,
                };
                // A removal's ContextID must equal the advertisement's: the size comes from
                // the piece's last advertisement then.
                let size = match padded_size {
                    Some(size) => size,
                    None => chain::piece_ad(s, &piece_owned)?
                        .and_then(|r| r.padded_size)
                        .context("a removal for a piece that was never advertised")?,
                };
                chain::append(
                    s,
                    &inner.key,
                    chain::NewAd {
                        piece_cid: piece_owned.clone(),
                        padded_size: size,
                        context_id: context_id(&piece_cid, size)?,
                        multihashes,
                        addresses: inner.provider.addresses.clone(),
                        metadata: inner.provider.metadata.clone(),
                    },
                )
            })
            .await?;
        let kind = if record.is_rm { "remove" } else { "advertise" };
        self.0.metrics.ads.with_label_values(&[kind]).inc();
        self.0.metrics.entries.inc_by(record.entries);
        self.0.metrics.head_seq.set(record.seq as i64);
        tracing::info!(
            piece_cid = %piece,
            ad = %record.cid,
            seq = record.seq,
            entries = record.entries,
            chunks = record.entry_chunks,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "indexing: {}",
            if record.is_rm { "removal published" } else { "advertisement published" }
        );
        if self.0.config.indexers.is_empty() {
            // Nobody to announce to: published is as announced as it gets.
            let seq = record.seq;
            self.0
                .store
                .run(move |s| chain::set_announced(s, chain::NO_INDEXER, seq))
                .await?;
        }
        self.0
            .head
            .send_replace(Some((record.seq, record.cid.parse()?)));
        Ok(())
    }

    /// Every `check_secs`, asks the chain (through the hub) whether each active deal was
    /// slashed or terminated. A deal the hub cannot say anything about is left as it is.
    async fn check_deals_on_chain(&self, deals: &[DealRecord]) -> anyhow::Result<()> {
        let now = crate::now_secs();
        {
            let progress = self.progress();
            if now < progress.last_chain_check + self.0.config.check_secs {
                return Ok(());
            }
        }
        let mut ended = Vec::new();
        let known = self.0.store.run(chain::ended_deals).await?;
        for deal in deals
            .iter()
            .filter(|d| d.state == DealState::Active && !known.contains(&d.uuid))
        {
            let Some(id) = deal.deal_id else { continue };
            if let Ok(on_chain) = self.0.hub.call::<StateMarketStorageDeal>((id,)).await
                && on_chain.state.slash_epoch >= 0
            {
                ended.push(deal.uuid.clone());
            }
        }
        for uuid in &ended {
            tracing::info!(deal_uuid = %uuid, "indexing: the deal was slashed or terminated on chain");
        }
        if !ended.is_empty() {
            self.0
                .store
                .run(move |s| chain::mark_ended(s, &ended))
                .await?;
        }
        self.progress().last_chain_check = now;
        Ok(())
    }

    async fn announce_loop(self, indexer: String, worker: Worker, cancel: CancellationToken) {
        let mut head = self.0.head.subscribe();
        let mut again = self.0.reannounce.subscribe();
        let mut accepted = self
            .0
            .store
            .run(chain::announced)
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|(u, _)| *u == indexer).map(|(_, s)| s))
            .unwrap_or(0);
        {
            let mut progress = self.progress();
            if let Some(status) = progress.indexers.get_mut(&indexer) {
                status.accepted_seq = accepted;
            }
        }
        let mut backoff = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(self.0.config.announce_max_backoff_secs),
        );
        let mut forced = false;
        loop {
            let current = *head.borrow_and_update();
            if let Some((seq, cid)) = current
                && (seq > accepted || forced)
            {
                worker.busy(format!("announcing head {seq} ({cid})"));
                let delay = match self.announce(&indexer, &cid).await {
                    Ok(()) => {
                        worker.succeeded();
                        forced = false;
                        backoff.reset();
                        accepted = accepted.max(seq);
                        self.0
                            .metrics
                            .announces
                            .with_label_values(&[&indexer, "ok"])
                            .inc();
                        let _ = self
                            .0
                            .store
                            .run({
                                let indexer = indexer.clone();
                                move |s| chain::set_announced(s, &indexer, seq)
                            })
                            .await;
                        let mut progress = self.progress();
                        if let Some(status) = progress.indexers.get_mut(&indexer) {
                            status.accepted_seq = accepted;
                            status.last_success = crate::now_secs();
                            status.last_error.clear();
                            status.consecutive_failures = 0;
                        }
                        tracing::info!(indexer = %indexer, head = %cid, seq, "indexing: the indexer accepted the announcement");
                        None
                    }
                    Err(e) => {
                        let error = format!("{e:#}");
                        self.0
                            .metrics
                            .announces
                            .with_label_values(&[&indexer, "failed"])
                            .inc();
                        let delay = backoff.next_delay();
                        worker.retrying(&error, delay, format!("announcing head {seq}"));
                        let mut progress = self.progress();
                        if let Some(status) = progress.indexers.get_mut(&indexer) {
                            status.last_error = error.clone();
                            status.consecutive_failures += 1;
                        }
                        tracing::warn!(indexer = %indexer, error = %error, retry_in_secs = delay.as_secs(), "indexing: announcement failed");
                        Some(delay)
                    }
                };
                {
                    let mut progress = self.progress();
                    if let Some(status) = progress.indexers.get_mut(&indexer) {
                        status.last_attempt = crate::now_secs();
                    }
                }
                if let Some(delay) = delay {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
            worker.idle(format!(
                "a new advertisement (the indexer has accepted head {accepted})"
            ));
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = head.changed() => if changed.is_err() { return },
                changed = again.changed() => {
                    if changed.is_err() { return }
                    forced = true;
                }
            }
        }
    }

    /// `PUT {indexer}/announce`: go-libipni's JSON message (the head's CID and the publisher's
    /// addresses with `/p2p/`); 200 or 204 is accepted.
    async fn announce(&self, indexer: &str, head: &Cid) -> anyhow::Result<()> {
        let url = format!("{}/announce", indexer.trim_end_matches('/'));
        let peer = self.0.key.public().to_peer_id();
        let addrs: Vec<String> = self
            .0
            .provider
            .publisher_addrs
            .iter()
            .map(|a| {
                let a = a.clone().with_p2p(peer).unwrap_or_else(|a| a);
                base64::engine::general_purpose::STANDARD.encode(a.to_vec())
            })
            .collect();
        let body = serde_json::json!({ "Cid": { "/": head.to_string() }, "Addrs": addrs });
        let response = self
            .0
            .http
            .put(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK && status != reqwest::StatusCode::NO_CONTENT {
            let text = response.text().await.unwrap_or_default();
            anyhow::bail!(
                "PUT {url} answered {status}: {}",
                text.chars().take(200).collect::<String>()
            );
        }
        Ok(())
    }

    /// `index announce`: every indexer gets the head again now.
    pub fn reannounce(&self) {
        self.0.reannounce.send_modify(|n| *n += 1);
    }

    /// `index remove PIECE`: withdraws a piece's advertisement and keeps it withdrawn (a piece
    /// not advertised yet is kept from being advertised). Returns whether it was advertised.
    pub async fn remove(&self, piece: &str) -> anyhow::Result<bool> {
        let key = piece_key(piece)?;
        let advertised = self
            .0
            .store
            .run(move |s| {
                chain::remove_piece(s, &key)?;
                Ok(chain::piece_ad(s, &key)?.is_some_and(|r| !r.is_rm))
            })
            .await?;
        self.0.wake.notify_waiters();
        Ok(advertised)
    }

    /// `index restore PIECE`: undoes `index remove`. Returns whether the piece had been removed.
    pub async fn restore(&self, piece: &str) -> anyhow::Result<bool> {
        let key = piece_key(piece)?;
        let was = self
            .0
            .store
            .run(move |s| chain::restore_piece(s, &key))
            .await?;
        self.0.wake.notify_waiters();
        Ok(was)
    }

    pub async fn status(&self) -> anyhow::Result<IndexingStatus> {
        let (head, pieces, removed) = self
            .0
            .store
            .run(|s| {
                Ok((
                    chain::head(s)?,
                    chain::piece_ads(s)?,
                    chain::removed_pieces(s)?,
                ))
            })
            .await?;
        let progress = self.progress();
        Ok(IndexingStatus {
            provider: self.0.key.public().to_peer_id().to_string(),
            head: head.map(|h| h.1.to_string()),
            ads: head.map_or(0, |h| h.0),
            pieces_advertised: pieces.iter().filter(|p| !p.is_rm).count() as u64,
            pieces_withdrawn: pieces.iter().filter(|p| p.is_rm).count() as u64,
            removed_by_operator: removed.len() as u64,
            addresses: self.0.provider.addresses.clone(),
            indexers: progress.indexers.values().cloned().collect(),
            last_error: progress.last_error.clone(),
        })
    }

    pub async fn pieces(&self) -> anyhow::Result<Vec<PieceAdInfo>> {
        let records = self.0.store.run(chain::piece_ads).await?;
        Ok(records.into_iter().map(piece_info).collect())
    }

    pub async fn piece(&self, piece: &str) -> anyhow::Result<Option<PieceAdInfo>> {
        let key = piece.to_string();
        let record = self.0.store.run(move |s| chain::piece_ad(s, &key)).await?;
        Ok(record.map(piece_info))
    }

    /// Whether a piece's latest advertisement is in the chain and some indexer accepted a
    /// head at or after it (published while no indexer was configured counts).
    pub fn announced(store: &crate::store::Store, piece: &str) -> anyhow::Result<bool> {
        let Some(record) = chain::piece_ad(store, piece)? else {
            return Ok(false);
        };
        if record.is_rm {
            return Ok(false);
        }
        let announced = chain::announced(store)?;
        Ok(announced.iter().any(|(_, seq)| *seq >= record.seq))
    }
}

/// A piece CID as the chain keys it (the canonical string of a parsed CID).
fn piece_key(piece: &str) -> anyhow::Result<String> {
    let cid: Cid = piece
        .parse()
        .with_context(|| format!("{piece:?} is not a piece CID"))?;
    Ok(cid.to_string())
}

fn piece_info(r: chain::AdRecord) -> PieceAdInfo {
    PieceAdInfo {
        piece_cid: r.piece_cid,
        ad: r.cid,
        seq: r.seq,
        is_rm: r.is_rm,
        entries: r.entries,
        entry_chunks: r.entry_chunks,
        created_at: r.created_at,
    }
}

/// The pieces that should be advertised, with their padded sizes: those with a live deal.
/// A deal is live in `Sealing` (its piece is with the hub, readable) or `Active`, unless it
/// asked not to be announced, its end epoch has passed, the chain
/// says it ended, or the operator removed its piece.
pub fn live_pieces(
    deals: &[DealRecord],
    height: i64,
    ended: &HashSet<String>,
    removed: &HashSet<String>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for deal in deals {
        let live = matches!(deal.state, DealState::Sealing | DealState::Active)
            && !deal.skip_ipni_announce
            && height < deal.end_epoch
            && !ended.contains(&deal.uuid)
            && !removed.contains(&deal.piece_cid);
        if live {
            out.insert(deal.piece_cid.clone(), deal.piece_size);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal(uuid: &str, piece: &str, state: DealState, end_epoch: i64) -> DealRecord {
        DealRecord {
            uuid: uuid.into(),
            state,
            failed_step: None,
            error: String::new(),
            proposal: String::new(),
            proposal_cid: format!("proposal-{uuid}"),
            piece_cid: piece.into(),
            piece_size: 2048,
            data_root: String::new(),
            client: String::new(),
            provider: String::new(),
            verified: false,
            start_epoch: 100,
            end_epoch,
            price_per_epoch: "0".into(),
            is_offline: false,
            source: None,
            transfer_size: 0,
            bytes_received: 0,
            transfer_attempts: 0,
            transfer_restarts: 0,
            remove_unsealed_copy: false,
            skip_ipni_announce: false,
            deal_id: None,
            publish_message: None,
            sector: None,
            sealing_status: String::new(),
            created_at: 0,
            updated_at: 0,
            transfer_started_at: None,
            staging_released: false,
        }
    }

    #[test]
    fn a_piece_is_live_while_any_of_its_deals_is() {
        let none = HashSet::new();
        let live = |deals: &[DealRecord], ended: &HashSet<String>, removed: &HashSet<String>| {
            live_pieces(deals, 500, ended, removed)
                .into_keys()
                .collect::<Vec<_>>()
        };
        // Only sealing and active deals make a piece live; not before, not after failing.
        for (state, expected) in [
            (DealState::Accepted, false),
            (DealState::Verifying, false),
            (DealState::AddingPiece, false),
            (DealState::Sealing, true),
            (DealState::Active, true),
            (DealState::Failed, false),
            (DealState::Cancelled, false),
        ] {
            let deals = [deal("a", "p", state, 1000)];
            assert_eq!(!live(&deals, &none, &none).is_empty(), expected, "{state}");
        }
        // Past its end epoch (the head at 500), a deal is not live.
        assert!(live(&[deal("a", "p", DealState::Active, 500)], &none, &none).is_empty());
        assert_eq!(
            live(&[deal("a", "p", DealState::Active, 501)], &none, &none),
            ["p"]
        );
        // Asked not to be announced.
        let mut quiet = deal("a", "p", DealState::Active, 1000);
        quiet.skip_ipni_announce = true;
        assert!(live(&[quiet], &none, &none).is_empty());
        // Two deals for one piece: it stays while either is live.
        let deals = [
            deal("a", "p", DealState::Active, 400),
            deal("b", "p", DealState::Active, 1000),
            deal("c", "q", DealState::Active, 1000),
        ];
        assert_eq!(live(&deals, &none, &none), ["p", "q"]);
        let ended = HashSet::from(["b".to_string()]);
        assert_eq!(live(&deals, &ended, &none), ["q"], "slashed on chain");
        let removed = HashSet::from(["q".to_string()]);
        assert_eq!(
            live(&deals, &none, &removed),
            ["p"],
            "removed by the operator"
        );
    }

    #[test]
    fn indexed_and_announced_comes_between_added_piece_and_complete() {
        use nelumbo_markets_api::wire::checkpoint;
        let sealing = deal("a", "p", DealState::Sealing, 1000);
        assert_eq!(sealing.checkpoint(false), checkpoint::ADDED_PIECE);
        assert_eq!(sealing.checkpoint(true), checkpoint::INDEXED_AND_ANNOUNCED);
        let active = deal("a", "p", DealState::Active, 1000);
        assert_eq!(active.checkpoint(true), checkpoint::COMPLETE);
        // A deal that failed while sealing reports where it stopped, not an announcement.
        let mut failed = deal("a", "p", DealState::Failed, 1000);
        failed.failed_step = Some(DealState::Sealing);
        assert_eq!(failed.checkpoint(true), checkpoint::ADDED_PIECE);
    }
}
