//! Reading pieces back: `PieceLocate`, `GET /pieces/{pieceCid}` (with `Range`) and unsealing.
//!
//! A piece is served as its unpadded bytes (payload, then zeros up to the piece's unpadded
//! size), so its piece commitment is the piece CID. The bytes come from the uploaded copy while
//! it is kept, else from the sector's unsealed file (fr32-padded; unpadded while reading), else
//! the answer is 404 naming `SectorsUnsealPiece`, which unseals the piece into the upload
//! directory as a queued job. Reads and unseals each take a permit from their own small pool,
//! so a burst of reads cannot take the cores from sealing or proving.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cid::Cid;
use nelumbo_commp::PaddedPieceSize;
use nelumbo_miner_api::types::{PieceLocation, SectorState};
use nelumbo_proofs::Replica;
use nelumbo_rpc::{Permission, TokenSecret};
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize};
use tokio::sync::Semaphore;

use crate::db::Db;
use crate::pieces::{authorise, refuse};
use crate::proof_worker::ProofWorkers;
use crate::sealing::{DealPiece, SectorRecord};
use crate::storage::SectorStorage;

/// Reads served at once.
const MAX_READS: usize = 4;
/// Unpadded bytes per streamed chunk (a multiple of 127: 1016 fr32 quads of 127 bytes).
const CHUNK: u64 = 127 * 1024;

#[derive(Debug)]
pub struct PieceReads {
    pub db: Arc<Db>,
    pub storage: Arc<SectorStorage>,
    pub workers: ProofWorkers,
    pub miner: u64,
    pub sector_size: SectorSize,
    pub secret: TokenSecret,
    pub reads: Arc<Semaphore>,
    pub unseals: Semaphore,
    /// Unseal requests running or waiting for a slot; past [`MAX_QUEUED_UNSEALS`] per slot
    /// more are refused as "busy", so spokes cannot queue unseals without bound.
    queued: std::sync::atomic::AtomicUsize,
    max_queued: usize,
    /// `queued` as a metric.
    queued_gauge: prometheus::IntGauge,
    /// Each unseal job reports here (`workers list`).
    worker_list: nelumbo_service::Workers,
}

/// Unseal requests that may wait per unsealing slot.
const MAX_QUEUED_UNSEALS: usize = 4;

/// Why an unseal was not done.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// Too many unseals queued: call again later.
    #[error("{0}")]
    Busy(String),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

/// Where the bytes of a piece can be read.
enum Source {
    /// The uploaded (or unsealed) copy: payload, then zeros.
    Staged(PathBuf),
    /// The sector's unsealed file, fr32-padded, at a padded offset.
    Sector { path: PathBuf, offset: u64 },
}

impl PieceReads {
    pub fn new(
        db: Arc<Db>,
        storage: Arc<SectorStorage>,
        workers: ProofWorkers,
        miner: u64,
        sector_size: SectorSize,
        secret: TokenSecret,
        max_unseal: usize,
    ) -> Self {
        let max_queued = max_unseal.max(1) * MAX_QUEUED_UNSEALS;
        Self {
            db,
            storage,
            workers,
            miner,
            sector_size,
            secret,
            reads: Arc::new(Semaphore::new(MAX_READS)),
            unseals: Semaphore::new(max_unseal.max(1)),
            queued: std::sync::atomic::AtomicUsize::new(0),
            max_queued,
            queued_gauge: prometheus::IntGauge::new("unseals_queued", "not exported")
                .expect("a valid metric name"),
            worker_list: nelumbo_service::Workers::default(),
        }
    }

    /// Lists each unseal job in `worker_list`.
    pub fn with_workers(mut self, worker_list: &nelumbo_service::Workers) -> Self {
        self.worker_list = worker_list.clone();
        self
    }

    fn unseals_limit(&self) -> usize {
        self.max_queued / MAX_QUEUED_UNSEALS
    }

    /// Reports the unseal backlog in `metrics` (`nelumbo_miner_unseals_queued`, `..._limit`).
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        metrics.unseals_queue_limit.set(self.max_queued as i64);
        self.queued_gauge = metrics.unseals_queued.clone();
        self
    }

    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/pieces/{cid}", axum::routing::get(read))
            .with_state(self)
    }

    /// Every sector piece with this commitment.
    fn holders(&self, cid: &Cid) -> anyhow::Result<Vec<(SectorRecord, DealPiece)>> {
        let commitment = nelumbo_commp::parse_piece_cid(cid)?.commitment;
        let key = nelumbo_commp::piece_cid_v1(&commitment);
        let mut out = Vec::new();
        for record in self.db.sectors()? {
            for piece in record.pieces.clone() {
                if piece.piece_cid == key {
                    out.push((record.clone(), piece));
                }
            }
        }
        Ok(out)
    }

    fn staged(&self, cid: &Cid) -> anyhow::Result<Option<(PathBuf, u64, u64)>> {
        let commitment = nelumbo_commp::parse_piece_cid(cid)?.commitment;
        let key = nelumbo_commp::piece_cid_v1(&commitment).to_string();
        // A copy shorter than the payload is not the piece (a write cut short): not served.
        Ok(self
            .db
            .piece(&key)?
            .filter(|p| std::fs::metadata(&p.path).is_ok_and(|m| m.len() >= p.payload_size))
            .map(|p| (p.path, p.piece_size, p.payload_size)))
    }

    /// `PieceLocate`.
    pub fn locate(&self, cid: &Cid) -> anyhow::Result<Vec<PieceLocation>> {
        let staged = self.staged(cid)?.is_some();
        Ok(self
            .holders(cid)?
            .into_iter()
            .map(|(record, piece)| {
                let unsealed = staged
                    || self
                        .storage
                        .sector_paths(&record.storage, record.number)
                        .unsealed
                        .is_file();
                PieceLocation {
                    sector: record.number,
                    offset: piece.offset,
                    size: piece.size,
                    payload_size: piece.payload_size,
                    deal_id: piece.deal_id,
                    sector_state: record.state,
                    unsealed,
                }
            })
            .collect())
    }

    /// What to read for `cid`, and the piece's unpadded size.
    fn source(&self, cid: &Cid) -> anyhow::Result<Option<(Source, u64)>> {
        if let Some((path, size, _)) = self.staged(cid)? {
            return Ok(Some((Source::Staged(path), unpadded(size)?)));
        }
        for (record, piece) in self.holders(cid)? {
            let path = self
                .storage
                .sector_paths(&record.storage, record.number)
                .unsealed;
            // The unsealed file is complete once packing is over.
            let packed = !matches!(
                record.state,
                SectorState::WaitDeals | SectorState::Packing | SectorState::Failed
            );
            if packed && path.is_file() {
                return Ok(Some((
                    Source::Sector {
                        path,
                        offset: piece.offset,
                    },
                    unpadded(piece.size)?,
                )));
            }
        }
        Ok(None)
    }

    /// `SectorsUnsealPiece`: unseals `sector`'s copy of `cid` into the upload directory,
    /// unless the piece can be read already.
    pub async fn unseal(&self, sector: u64, cid: &Cid) -> Result<(), UnsealError> {
        use std::sync::atomic::Ordering;
        if self.source(cid)?.is_some() {
            return Ok(());
        }
        struct Queued<'a>(&'a PieceReads);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.queued.fetch_sub(1, Ordering::SeqCst);
                self.0.queued_gauge.dec();
            }
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(UnsealError::Busy(format!(
                "{} unseal requests are queued already, the most this hub takes: call again later",
                self.max_queued
            )));
        }
        self.queued_gauge.inc();
        let _queued = Queued(self);
        let span = tracing::info_span!("unseal", sector, piece_cid = %cid);
        Ok(tracing::Instrument::instrument(self.unseal_queued(sector, cid), span).await?)
    }

    async fn unseal_queued(&self, sector: u64, cid: &Cid) -> anyhow::Result<()> {
        let (record, piece) = self
            .holders(cid)?
            .into_iter()
            .find(|(r, _)| r.number == sector)
            .with_context(|| format!("sector {sector} does not hold piece {cid}"))?;
        anyhow::ensure!(
            record.state == SectorState::Proving,
            "sector {sector} is {}: only proving sectors are unsealed",
            record.state
        );
        let worker = self
            .worker_list
            .start("unseal", format!("sector {sector} piece {cid}"));
        let _permit = worker
            .permit(
                &self.unseals,
                &format!(
                    "an unseal slot: all {} in use ([sealing] max_unseal)",
                    self.unseals_limit()
                ),
                "unsealing",
            )
            .await?;
        if self.source(cid)?.is_some() {
            return Ok(()); // another job did it while this one waited
        }
        let replica = Replica {
            sector_size: self.sector_size,
            miner: ActorId(self.miner),
            number: SectorNumber(sector),
            ticket: Randomness(record.ticket.context("the sector has no ticket recorded")?),
        };
        let comm_d =
            nelumbo_commp::Commitment(record.comm_d.context("the sector has no CommD recorded")?);
        let paths = self.storage.sector_paths(&record.storage, sector);
        let stored = self
            .db
            .piece(&piece.piece_cid.to_string())?
            .context("the piece has no record")?;
        let target = stored.path.clone();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let temp = target.with_extension(format!("unsealing-{nanos}"));
        let offset = piece.offset / 128 * 127;
        let len = unpadded(piece.size)?;
        tracing::info!(sector, piece_cid = %cid, "unsealing");
        let started = std::time::Instant::now();
        // The temporary file goes with an unseal that fails or is stopped (SIGTERM kills the
        // worker); leftovers of a crash are removed at the next start.
        struct Temp(PathBuf);
        impl Drop for Temp {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let temp = Temp(temp);
        let written = self
            .workers
            .unseal(replica, &paths, comm_d, offset, len, temp.0.clone())
            .await?;
        anyhow::ensure!(
            written == len,
            "unsealing wrote {written} bytes, expected {len}"
        );
        tokio::fs::rename(&temp.0, &target).await?;
        tracing::info!(sector, piece_cid = %cid, took = ?started.elapsed(), "unsealed");
        Ok(())
    }
}

fn unpadded(size: u64) -> anyhow::Result<u64> {
    Ok(PaddedPieceSize::new(size)?.unpadded().bytes())
}

/// Reads unpadded bytes `[start, start + len)` of a piece from `source`.
fn read_range(source: &Source, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
    match source {
        Source::Staged(path) => {
            let mut file = std::fs::File::open(path)?;
            let file_len = file.metadata()?.len();
            let mut out = vec![0u8; len as usize];
            if start < file_len {
                file.seek(SeekFrom::Start(start))?;
                let n = (file_len - start).min(len) as usize;
                file.read_exact(&mut out[..n])?;
            }
            Ok(out)
        }
        Source::Sector { path, offset } => {
            // Whole fr32 quads (127 unpadded bytes in 128 padded) covering the range.
            let first = start / 127;
            let last = (start + len).div_ceil(127);
            let mut padded = vec![0u8; ((last - first) * 128) as usize];
            let mut file = std::fs::File::open(path)?;
            file.seek(SeekFrom::Start(offset + first * 128))?;
            file.read_exact(&mut padded)?;
            let mut plain = vec![0u8; ((last - first) * 127) as usize];
            nelumbo_commp::fr32::unpad(&padded, &mut plain);
            let skip = (start - first * 127) as usize;
            Ok(plain[skip..skip + len as usize].to_vec())
        }
    }
}

async fn read(
    State(reads): State<Arc<PieceReads>>,
    UrlPath(cid): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, message)) = authorise(
        &reads.secret,
        &headers,
        Permission::Read,
        &[Permission::Spoke],
    ) {
        return refuse(status, message);
    }
    let cid: Cid = match nelumbo_commp::parse_piece_cid_str(&cid) {
        Ok((cid, _)) => cid,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (source, size) = match reads.source(&cid) {
        Ok(Some(found)) => found,
        Ok(None) => {
            let held = reads.holders(&cid).map(|h| h.len()).unwrap_or(0);
            let message = if held == 0 {
                format!("this hub holds no piece {cid}")
            } else {
                format!(
                    "piece {cid} has no unsealed copy: unseal it with SectorsUnsealPiece, then read again"
                )
            };
            return refuse(StatusCode::NOT_FOUND, message);
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    };
    let range = match nelumbo_service::parse_range(&headers, size) {
        Ok(range) => range,
        Err(message) => {
            let mut response = refuse(StatusCode::RANGE_NOT_SATISFIABLE, message);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let (start, len) = range.unwrap_or((0, size));
    let permit = match reads.reads.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many piece reads at once: try again shortly",
            );
        }
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            let chunk = read_range(&source, start + done, n);
            let failed = chunk.is_err();
            if sender.blocking_send(chunk).is_err() || failed {
                return;
            }
            done += n;
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/piece"),
    );
    if let Ok(value) = HeaderValue::from_str(&len.to_string()) {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_reads_unpad_across_quads() {
        let dir = tempfile::tempdir().expect("dir");
        let plain: Vec<u8> = (0..127 * 8).map(|i| (i % 251) as u8).collect();
        let mut padded = vec![0u8; 128 * 8];
        nelumbo_commp::fr32::pad(&plain, &mut padded);
        let path = dir.path().join("unsealed");
        // The piece sits 1024 padded bytes into the file.
        let mut file = vec![0u8; 1024];
        file.extend_from_slice(&padded);
        std::fs::write(&path, file).expect("write");
        let source = Source::Sector { path, offset: 1024 };
        for (start, len) in [(0, 10), (120, 20), (127, 127), (300, 500), (0, 127 * 8)] {
            assert_eq!(
                read_range(&source, start, len).expect("read"),
                plain[start as usize..(start + len) as usize],
                "{start}+{len}"
            );
        }
    }
}
