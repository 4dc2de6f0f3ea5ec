//! The piece reader every retrieval path shares. For a piece it tries, in order:
//!
//! 1. this process's piece cache (see [`super::cache`]);
//! 2. the hub's unsealed copy, read with `Range` (`GET /pieces/{cid}`), which the hub serves
//!    from a small pool of read slots;
//! 3. an unseal job on the hub (`SectorsUnsealPiece`), at most `[retrieval] max_unseals` at a
//!    time from this process and one per piece; the request that found the piece sealed is
//!    answered "unavailable, retry after N seconds" (or waits up to `[retrieval] wait_secs`),
//!    never with an error and never by hanging, and the next request after the job is served.
//!
//! A piece read from the hub is copied into the cache in the background (one at a time, its
//! piece commitment checked before it is kept), so the hub serves each piece once rather than
//! on every request. The hub being away is a state: cached pieces are still served and the
//! rest are answered "unavailable".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use futures::{Stream, StreamExt};
use nelumbo_chain_api::CidJson;
use nelumbo_miner_api::methods::{PieceLocate, SectorsUnsealPiece};
use nelumbo_miner_api::types::SectorState;
use tokio::sync::{Notify, Semaphore};

use super::cache::{CacheReadError, Meta, PieceCache};
use super::metrics::RetrievalMetrics;
use crate::hub::{Hub, HubError};

/// How long a hub answer about where a piece is stays good.
const LOCATE_TTL: Duration = Duration::from_secs(10);
/// Unpadded bytes per chunk streamed from the cache.
const STREAM_CHUNK: u64 = super::cache::CHUNK;

/// Why a piece cannot be read now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Neither this process nor the hub holds the piece (or the block).
    #[error("{0}")]
    NotFound(String),
    /// It exists but cannot be read now (the hub is away or busy, or an unseal runs): come
    /// back after `retry_after` seconds.
    #[error("{why}")]
    Unavailable { why: String, retry_after: u64 },
    /// Something is wrong here (a corrupt copy, a disk error).
    #[error("{0}")]
    Internal(String),
}

impl ReadError {
    fn unavailable(why: impl Into<String>, retry_after: u64) -> Self {
        Self::Unavailable {
            why: why.into(),
            retry_after,
        }
    }
}

/// Where an opened piece is read from.
#[derive(Debug, Clone)]
pub enum Source {
    Cache(Arc<Meta>),
    Hub,
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Cache(_) => "cache",
            Self::Hub => "hub",
        }
    }
}

/// A piece ready to be read.
#[derive(Debug, Clone)]
pub struct OpenPiece {
    /// The v1 piece CID (what the hub and the cache key by).
    pub cid: Cid,
    pub payload_size: u64,
    pub piece_size: u64,
    pub source: Source,
}

#[derive(Debug, Clone, Copy)]
struct Located {
    payload_size: u64,
    piece_size: u64,
    unsealed: bool,
    /// A proving sector to unseal from, if one holds it.
    sector: Option<u64>,
}

#[derive(Debug)]
pub struct PieceReader {
    pub cache: Arc<PieceCache>,
    hub: Hub,
    metrics: RetrievalMetrics,
    wait: Duration,
    located: Mutex<HashMap<String, (Instant, Option<Located>)>>,
    /// Unseal jobs in flight by piece, each with what wakes its waiters.
    unseals: Mutex<HashMap<String, Arc<Notify>>>,
    unseal_slots: Arc<Semaphore>,
    fill_slot: Arc<Semaphore>,
}

impl PieceReader {
    pub fn new(
        cache: Arc<PieceCache>,
        hub: Hub,
        metrics: RetrievalMetrics,
        wait: Duration,
        max_unseals: usize,
    ) -> Self {
        Self {
            cache,
            hub,
            metrics,
            wait,
            located: Mutex::default(),
            unseals: Mutex::default(),
            unseal_slots: Arc::new(Semaphore::new(max_unseals.max(1))),
            fill_slot: Arc::new(Semaphore::new(1)),
        }
    }

    /// Finds where `piece` (a piece CID of either version) can be read, waiting for an unseal
    /// or for the hub as long as configured (`[retrieval] wait_secs`).
    pub async fn open(self: &Arc<Self>, piece: &Cid) -> Result<OpenPiece, ReadError> {
        self.open_within(piece, self.wait).await
    }

    /// [`Self::open`], waiting at most `wait` (zero: answer at once).
    pub async fn open_within(
        self: &Arc<Self>,
        piece: &Cid,
        wait: Duration,
    ) -> Result<OpenPiece, ReadError> {
        let info = nelumbo_commp::parse_piece_cid(piece)
            .map_err(|e| ReadError::NotFound(e.to_string()))?;
        let cid = nelumbo_commp::piece_cid_v1(&info.commitment);
        let key = cid.to_string();
        if let Some(meta) = self.cache.get(&key) {
            return Ok(OpenPiece {
                cid,
                payload_size: meta.payload_size,
                piece_size: meta.piece_size,
                source: Source::Cache(meta),
            });
        }
        let deadline = Instant::now() + wait;
        loop {
            let located = self.locate(&cid, false).await?;
            let Some(located) = located else {
                return Err(ReadError::NotFound(format!(
                    "no piece {piece} here: this provider holds no deal with it"
                )));
            };
            if located.unsealed {
                return Ok(OpenPiece {
                    cid,
                    payload_size: located.payload_size,
                    piece_size: located.piece_size,
                    source: Source::Hub,
                });
            }
            let Some(sector) = located.sector else {
                return Err(ReadError::unavailable(
                    format!("piece {piece} is being sealed and has no readable copy yet"),
                    60,
                ));
            };
            let done = self.request_unseal(&cid, sector);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::unavailable(
                    format!("piece {piece} is sealed; it is being unsealed: try again shortly"),
                    10,
                ));
            }
            self.metrics.unseal_waits.inc();
            // Woken when the job ends; looked at again every two seconds regardless (a job
            // that ended before this wait began wakes nobody).
            let _ = tokio::time::timeout(left.min(Duration::from_secs(2)), done.notified()).await;
        }
    }

    fn forget(&self, key: &str) {
        self.lock_located().remove(key);
    }

    fn lock_located(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Located>)>> {
        self.located.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the hub where a piece is (answers kept for a few seconds, so a burst of requests
    /// costs the hub one call).
    async fn locate(&self, cid: &Cid, fresh: bool) -> Result<Option<Located>, ReadError> {
        let key = cid.to_string();
        if !fresh
            && let Some((at, located)) = self.lock_located().get(&key).copied()
            && at.elapsed() < LOCATE_TTL
        {
            return Ok(located);
        }
        let locations = match self.hub.call::<PieceLocate>((CidJson(*cid),)).await {
            Ok(locations) => locations,
            // What clients are told names nothing inside (the hub's address, its errors).
            Err(HubError::Unreachable(why)) => {
                self.metrics.hub_errors.inc();
                tracing::debug!(piece_cid = %cid, why, "the hub cannot say where a piece is");
                return Err(ReadError::unavailable(
                    "the piece's storage is unavailable right now; try again shortly",
                    10,
                ));
            }
            Err(e) => {
                self.metrics.hub_errors.inc();
                tracing::warn!(piece_cid = %cid, error = %e, "the hub refused a piece lookup");
                return Err(ReadError::Internal(
                    "the piece's storage could not be asked where the piece is".into(),
                ));
            }
        };
        let located = locations.first().map(|first| Located {
            payload_size: first.payload_size,
            piece_size: first.size,
            unsealed: locations.iter().any(|l| l.unsealed),
            sector: locations
                .iter()
                .find(|l| l.sector_state == SectorState::Proving)
                .map(|l| l.sector),
        });
        self.lock_located().insert(key, (Instant::now(), located));
        Ok(located)
    }

    /// Starts an unseal of `cid` from `sector` unless one runs; returns what wakes when it ends.
    fn request_unseal(self: &Arc<Self>, cid: &Cid, sector: u64) -> Arc<Notify> {
        let key = cid.to_string();
        let mut unseals = self.unseals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = unseals.get(&key) {
            return done.clone();
        }
        let done = Arc::new(Notify::new());
        let Ok(slot) = self.unseal_slots.clone().try_acquire_owned() else {
            // Every slot is busy: this request is told to come back; a later one starts it.
            tracing::debug!(piece_cid = %key, "an unseal is needed but every unseal slot is busy");
            return done;
        };
        unseals.insert(key.clone(), done.clone());
        drop(unseals);
        let reader = self.clone();
        let cid = *cid;
        self.metrics.unseals.inc();
        tokio::spawn(async move {
            let _slot = slot;
            tracing::info!(piece_cid = %cid, sector, "asking the hub to unseal a piece for retrieval");
            let started = Instant::now();
            match reader
                .hub
                .call::<SectorsUnsealPiece>((sector, CidJson(cid)))
                .await
            {
                Ok(()) => {
                    tracing::info!(piece_cid = %cid, sector, took = ?started.elapsed(), "piece unsealed")
                }
                Err(e) => {
                    reader.metrics.hub_errors.inc();
                    tracing::warn!(piece_cid = %cid, sector, error = %e, "the hub could not unseal the piece")
                }
            }
            reader.forget(&cid.to_string());
            let removed = reader
                .unseals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&cid.to_string());
            if let Some(done) = removed {
                done.notify_waiters();
            }
        });
        done
    }

    /// Streams payload bytes `[start, start + len)` of an opened piece. A read from the hub
    /// stops when the stream is dropped (the client went away), and starts a background copy
    /// into the cache.
    pub async fn stream(
        self: &Arc<Self>,
        piece: &OpenPiece,
        start: u64,
        len: u64,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, ReadError> {
        self.metrics
            .reads
            .with_label_values(&[piece.source.label()])
            .inc();
        match &piece.source {
            Source::Cache(meta) => {
                let cache = self.cache.clone();
                let meta = meta.clone();
                let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
                tokio::task::spawn_blocking(move || {
                    let file = match cache.open_data(&meta) {
                        Ok(file) => file,
                        Err(e) => {
                            let _ = sender.blocking_send(Err(std::io::Error::other(e)));
                            return;
                        }
                    };
                    let mut done = 0;
                    while done < len {
                        // Chunk-aligned reads, so each chunk's CRC is checked once.
                        let at = start + done;
                        let n = (STREAM_CHUNK - at % STREAM_CHUNK).min(len - done);
                        let chunk = cache
                            .read_checked_from(&file, &meta, at, n)
                            .map(Bytes::from)
                            .map_err(std::io::Error::other);
                        let failed = chunk.is_err();
                        if sender.blocking_send(chunk).is_err() || failed {
                            return;
                        }
                        done += n;
                    }
                });
                Ok(futures::stream::unfold(receiver, |mut r| async move {
                    r.recv().await.map(|item| (item, r))
                })
                .left_stream())
            }
            Source::Hub => {
                let response = self.read_hub(piece, start, len).await?;
                self.fill_later(piece);
                Ok(response
                    .bytes_stream()
                    .map(|item| item.map_err(std::io::Error::other))
                    .right_stream())
            }
        }
    }

    async fn read_hub(
        &self,
        piece: &OpenPiece,
        start: u64,
        len: u64,
    ) -> Result<reqwest::Response, ReadError> {
        match self.hub.read_piece(&piece.cid, start, len).await {
            Ok(response) => Ok(response),
            Err(e) => {
                self.metrics.hub_errors.inc();
                tracing::warn!(piece_cid = %piece.cid, start, len, error = %e, "reading a piece from the hub failed");
                Err(match e {
                    // The copy went away since the lookup (or needs an unseal now).
                    HubError::PieceMissing(_) => {
                        self.forget(&piece.cid.to_string());
                        ReadError::unavailable(
                            "the piece has no readable copy right now; try again shortly",
                            30,
                        )
                    }
                    HubError::Unreachable(_) => ReadError::unavailable(
                        "the piece's storage is unavailable or busy; try again shortly",
                        5,
                    ),
                    HubError::Refused(_) => {
                        ReadError::Internal("the piece's storage refused the read".into())
                    }
                })
            }
        }
    }

    /// Reads `[offset, offset + len)` of an opened piece whole (blocks; the caller checks them
    /// against their CIDs).
    pub async fn read(
        self: &Arc<Self>,
        piece: &OpenPiece,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ReadError> {
        let end = offset.checked_add(len).filter(|&e| e <= piece.payload_size);
        if end.is_none() {
            tracing::error!(piece_cid = %piece.cid, offset, len, payload = piece.payload_size, "the piece directory places a block outside its piece");
            return Err(ReadError::Internal(
                "a block's recorded place is wrong".into(),
            ));
        }
        match &piece.source {
            Source::Cache(meta) => {
                let cache = self.cache.clone();
                let meta = meta.clone();
                tokio::task::spawn_blocking(move || cache.read_unchecked(&meta, offset, len))
                    .await
                    .map_err(|e| ReadError::Internal(e.to_string()))?
                    .map(Bytes::from)
                    .map_err(|e: CacheReadError| {
                        tracing::warn!(error = %e, "reading the piece cache failed");
                        ReadError::Internal("reading the cached copy failed".into())
                    })
            }
            Source::Hub => {
                let response = self.read_hub(piece, offset, len).await?;
                self.fill_later(piece);
                let body = response.bytes().await.map_err(|e| {
                    tracing::warn!(piece_cid = %piece.cid, error = %e, "reading a block from the hub was cut short");
                    ReadError::unavailable("the piece's storage stopped answering; try again", 5)
                })?;
                if body.len() as u64 != len {
                    tracing::warn!(piece_cid = %piece.cid, got = body.len(), len, "the hub sent a short read");
                    return Err(ReadError::Internal(
                        "the piece's storage sent a short read".into(),
                    ));
                }
                Ok(body)
            }
        }
    }

    /// Copies a piece read from the hub into the cache, in the background and one at a time;
    /// kept only if its piece commitment matches.
    fn fill_later(self: &Arc<Self>, piece: &OpenPiece) {
        let key = piece.cid.to_string();
        if !self.cache.fits(piece.payload_size) || self.cache.contains(&key) {
            return;
        }
        // One at a time (the slot is held until the copy ends): a later read starts the next.
        let Ok(slot) = self.fill_slot.clone().try_acquire_owned() else {
            return;
        };
        let reader = self.clone();
        let piece = piece.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            match reader.fill(&piece).await {
                Ok(()) => {
                    reader.metrics.cache_fills.with_label_values(&["ok"]).inc();
                    tracing::info!(piece_cid = %piece.cid, bytes = piece.payload_size, took = ?started.elapsed(), "piece copied into the cache");
                }
                Err(e) => {
                    reader
                        .metrics
                        .cache_fills
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::warn!(piece_cid = %piece.cid, error = %format!("{e:#}"), "copying a piece into the cache failed");
                }
            }
        });
    }

    async fn fill(&self, piece: &OpenPiece) -> anyhow::Result<()> {
        let response = self
            .read_hub(piece, 0, piece.payload_size)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let cache = self.cache.clone();
        let (key, piece_size, payload_size) =
            (piece.cid.to_string(), piece.piece_size, piece.payload_size);
        let commitment = nelumbo_commp::parse_piece_cid(&piece.cid)?.commitment;
        let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut admission = cache.admit(&key, piece_size)?;
            let mut hasher = nelumbo_commp::CommPHasher::new();
            while let Some(chunk) = receiver.blocking_recv() {
                admission.write(&chunk)?;
                hasher.update(&chunk)?;
            }
            anyhow::ensure!(
                admission.written() == payload_size,
                "the hub sent {} of {payload_size} bytes",
                admission.written()
            );
            let digest = hasher.finish()?;
            let size = nelumbo_commp::PaddedPieceSize::new(piece_size)?;
            let padded = nelumbo_commp::pad_commitment(&digest.commitment, digest.piece_size, size);
            anyhow::ensure!(
                padded == Some(commitment),
                "the bytes the hub sent do not hash to the piece commitment"
            );
            admission.commit()
        });
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            if sender.send(chunk?).await.is_err() {
                break; // the writer failed; its error says why
            }
        }
        drop(sender);
        writer.await?
    }
}
