//! Piece upload: `PUT /pieces/{pieceCid}?size=`, authenticated like the API (a `spoke` or
//! `admin` token).
//!
//! What the hub keeps is bounded (invariant 4): the declared size is required and checked
//! against free space first (the upload must leave room for the sectors being sealed and one
//! more, so pieces never crowd out sealing); pieces no deal claims yet (spokes upload before
//! they publish) are kept up to `[deals] max_unclaimed_piece_bytes` in all, and each is deleted
//! `unclaimed_piece_ttl_secs` after it arrived unless a deal claimed it.
//!
//! The hub does not trust spokes (invariant 4): it recomputes the piece commitment of the
//! bytes while receiving them into a temporary file and keeps the piece only if the commitment
//! (zero-padded to the piece size, as deal pieces are) and, for v2 CIDs, the payload size
//! match. A mismatch is refused with both commitments named and nothing is kept. A kept piece
//! is fsynced and renamed into `PATH/pieces/` before the answer, and recorded in the database;
//! uploading it again is answered from the record without reading the body (idempotent by
//! piece CID).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use nelumbo_commp::{CommPHasher, PaddedPieceSize, pad_commitment, parse_piece_cid_str};
use nelumbo_rpc::{Permission, TokenSecret};
use nelumbo_types::SectorSize;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use std::collections::HashSet;

use crate::config::DealSettings;
use crate::db::Db;
use crate::storage::SectorStorage;

/// Uploads received at once; more wait.
const MAX_UPLOADS: usize = 4;

/// A piece the hub holds, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredPiece {
    #[serde(rename = "PieceCID")]
    pub piece_cid: String,
    /// Padded bytes.
    pub piece_size: u64,
    pub payload_size: u64,
    /// Where the piece's payload is kept.
    pub path: PathBuf,
    /// Unix seconds (0 for pieces kept before this was recorded).
    #[serde(default)]
    pub received_at: u64,
}

impl StoredPiece {
    /// What an uploader is told (not where the hub keeps it).
    fn answer(&self) -> Json<serde_json::Value> {
        Json(serde_json::json!({
            "PieceCID": self.piece_cid,
            "PieceSize": self.piece_size,
            "PayloadSize": self.payload_size,
        }))
    }
}

#[derive(Debug)]
pub struct PieceStore {
    dir: PathBuf,
    db: Arc<Db>,
    secret: TokenSecret,
    sector_size: SectorSize,
    uploads: Semaphore,
    storage: Arc<SectorStorage>,
    max_unclaimed_bytes: u64,
    unclaimed_ttl_secs: u64,
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    /// The padded piece size, for v1 piece CIDs (v2 CIDs carry it).
    size: Option<u64>,
}

/// An error answer: a status and a message that names the problem.
pub(crate) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

impl PieceStore {
    pub fn new(
        storage: Arc<SectorStorage>,
        db: Arc<Db>,
        secret: TokenSecret,
        sector_size: SectorSize,
        deals: &DealSettings,
    ) -> anyhow::Result<Self> {
        let root = storage
            .paths()
            .first()
            .context("no storage path is configured")?
            .clone();
        let dir = root.join("pieces");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // Uploads and unseals cut short by a crash leave temporary files; none is a piece.
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with(".upload-") || name.contains(".unsealing-") {
                tracing::info!(path = %path.display(), "removing a temporary file left by an interrupted upload or unseal");
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir,
            db,
            secret,
            sector_size,
            uploads: Semaphore::new(MAX_UPLOADS),
            storage,
            max_unclaimed_bytes: deals.max_unclaimed_piece_bytes,
            unclaimed_ttl_secs: deals.unclaimed_piece_ttl.as_secs(),
        })
    }

    /// Piece CIDs a deal or a sector claims: a queued, sent or published deal, or a sector's
    /// piece.
    fn claimed(&self) -> anyhow::Result<HashSet<String>> {
        let mut claimed = HashSet::new();
        for deal in self.db.deals()? {
            if let Some(cid) = deal.claimed_piece()
                && let Ok(info) = nelumbo_commp::parse_piece_cid(&cid)
            {
                claimed.insert(nelumbo_commp::piece_cid_v1(&info.commitment).to_string());
            }
        }
        for sector in self.db.sectors()? {
            for piece in &sector.pieces {
                claimed.insert(piece.piece_cid.to_string());
            }
        }
        Ok(claimed)
    }

    /// Bytes held by kept pieces no deal or sector claims, and those pieces.
    fn unclaimed(&self) -> anyhow::Result<(u64, Vec<StoredPiece>)> {
        let claimed = self.claimed()?;
        let pieces: Vec<StoredPiece> = self
            .db
            .pieces()?
            .into_iter()
            .filter(|p| !claimed.contains(&p.piece_cid) && p.path.is_file())
            .collect();
        let bytes = pieces.iter().map(|p| p.payload_size).sum();
        Ok((bytes, pieces))
    }

    /// Whether a piece of `size` (padded) may be kept now: room on disk beside sealing, and
    /// under the bound on unclaimed pieces. The error is the answer to send.
    fn admit(&self, size: PaddedPieceSize) -> Result<(), (StatusCode, String)> {
        let bytes = size.unpadded().bytes();
        let internal = |e: anyhow::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
        let (unclaimed, _) = self.unclaimed().map_err(internal)?;
        if unclaimed.saturating_add(bytes) > self.max_unclaimed_bytes {
            return Err((
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "the hub already keeps {unclaimed} bytes of pieces no deal has claimed yet; {bytes} more would pass its limit of {} ([deals] max_unclaimed_piece_bytes): publish deals for them or wait",
                    self.max_unclaimed_bytes
                ),
            ));
        }
        let free = crate::storage::available_bytes(&self.dir)
            .map_err(|e| internal(anyhow::anyhow!("free space of {}: {e}", self.dir.display())))?;
        let root = self.dir.parent().unwrap_or(&self.dir);
        let sealing = self
            .storage
            .usage()
            .into_iter()
            .find(|(path, _, _)| path == root)
            .map_or(0, |(_, _, reserved)| reserved);
        room_for_piece(free, bytes, sealing, self.storage.sealing_footprint())
            .map_err(|message| (StatusCode::INSUFFICIENT_STORAGE, message))
    }

    /// Deletes unclaimed pieces older than the limit (looking four times per limit, at most
    /// once a minute), until `cancel`.
    pub async fn run_janitor(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let every = std::time::Duration::from_secs((self.unclaimed_ttl_secs / 4).clamp(1, 60));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let store = self.clone();
            let swept = tokio::task::spawn_blocking(move || store.sweep()).await;
            match swept {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(
                    pieces = n,
                    "deleted uploaded pieces no deal claimed in time"
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot sweep unclaimed pieces")
                }
                Err(e) => tracing::warn!(error = %e, "the piece sweep failed"),
            }
        }
    }

    /// One sweep: unclaimed pieces past their time are deleted (record and file).
    pub fn sweep(&self) -> anyhow::Result<usize> {
        let now = crate::outbox::now_secs();
        let (_, unclaimed) = self.unclaimed()?;
        let mut deleted = 0;
        for piece in unclaimed {
            if now.saturating_sub(piece.received_at) < self.unclaimed_ttl_secs {
                continue;
            }
            // Claimed since the scan (a deal queued meanwhile) keeps it.
            if self.claimed()?.contains(&piece.piece_cid) {
                continue;
            }
            tracing::info!(piece_cid = %piece.piece_cid, bytes = piece.payload_size, "deleting an uploaded piece no deal claimed");
            let _ = std::fs::remove_file(&piece.path);
            self.db.remove_piece(&piece.piece_cid)?;
            deleted += 1;
        }
        Ok(deleted)
    }

    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/pieces/{cid}", axum::routing::put(upload))
            .with_state(self)
    }
}

async fn upload(
    State(store): State<Arc<PieceStore>>,
    UrlPath(cid): UrlPath<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err((status, message)) = authorise(
        &store.secret,
        &headers,
        Permission::Admin,
        &[Permission::Spoke],
    ) {
        return refuse(status, message);
    }
    let (cid, info) = match parse_piece_cid_str(&cid) {
        Ok(parsed) => parsed,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("{e}")),
    };
    let key = nelumbo_commp::piece_cid_v1(&info.commitment).to_string();
    match store.db.piece(&key) {
        // Kept and still on disk (sealed pieces' uploaded copies are deleted at finalize).
        Ok(Some(piece)) if piece.path.is_file() => {
            return (StatusCode::OK, piece.answer()).into_response();
        }
        Ok(Some(_)) => {}
        Ok(None) => {}
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
    let declared = match (info.sizes, query.size) {
        (Some(sizes), _) => sizes.piece_size,
        (None, Some(size)) => match PaddedPieceSize::new(size) {
            Ok(size) => size,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("size={size}: {e}")),
        },
        (None, None) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "give the padded piece size (?size=) with a v1 piece CID: the hub checks for room before it reads a byte",
            );
        }
    };
    let size = declared;
    if size.bytes() > store.sector_size.bytes() {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "a piece of {size} does not fit this hub's {} sectors",
                store.sector_size
            ),
        );
    }
    let _permit = match store.uploads.acquire().await {
        Ok(permit) => permit,
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "the hub is stopping"),
    };
    let admit = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.admit(size)).await
    };
    match admit {
        Ok(Ok(())) => {}
        Ok(Err((status, message))) => {
            tracing::warn!(piece_cid = %cid, detail = %message, "piece upload refused");
            return refuse(status, message);
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    let declared = Some(declared);
    let temp = TempFile(store.dir.join(format!(".upload-{}", rand_suffix())));
    // Dropped with the request (a client that disconnects included): the file goes with it
    // unless it became the piece.
    let result = receive(&store, &temp.0, body, &info, declared, &cid, &key).await;
    match result {
        Ok(piece) => (StatusCode::CREATED, piece.answer()).into_response(),
        Err((status, message)) => {
            tracing::warn!(piece_cid = %cid, detail = %message, "piece upload refused");
            refuse(status, message)
        }
    }
}

/// Whether a piece of `bytes` fits in `free` bytes while leaving what sealing was promised
/// (`sealing`) and room for one more sector (`footprint`): pieces never crowd out sealing.
pub fn room_for_piece(free: u64, bytes: u64, sealing: u64, footprint: u64) -> Result<(), String> {
    let keep_free = sealing.saturating_add(footprint);
    if bytes.checked_add(keep_free).is_none_or(|need| free < need) {
        return Err(format!(
            "the hub's storage has {free} bytes free; a piece of {bytes} bytes must leave {keep_free} for the sectors being sealed and one more: free space or add a storage path"
        ));
    }
    Ok(())
}

/// A temporary file removed when dropped (after a rename it no longer exists: nothing happens).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

async fn receive(
    store: &PieceStore,
    temp: &Path,
    body: Body,
    info: &nelumbo_commp::PieceCidInfo,
    declared: Option<PaddedPieceSize>,
    cid: &cid::Cid,
    key: &str,
) -> Result<StoredPiece, (StatusCode, String)> {
    let internal = |e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let limit = declared
        .map(|s| s.unpadded().bytes())
        .unwrap_or(store.sector_size.unpadded().bytes());
    let mut file = std::fs::File::create(temp).map_err(internal)?;
    let mut hasher = CommPHasher::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the upload broke off: {e}"),
            )
        })?;
        if hasher.payload_size() + chunk.len() as u64 > limit {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the data is longer than the {limit} bytes a piece of this size holds"),
            ));
        }
        tokio::task::block_in_place(|| {
            hasher
                .update(&chunk)
                .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
            file.write_all(&chunk).map_err(internal)
        })?;
    }
    let payload = hasher.payload_size();
    let digest = hasher
        .finish()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}")))?;
    let size = declared.unwrap_or(digest.piece_size);
    let commitment = pad_commitment(&digest.commitment, digest.piece_size, size).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "{payload} bytes need a piece of at least {}, larger than the declared {size}: nothing was kept",
                digest.piece_size
            ),
        )
    })?;
    if commitment != info.commitment {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "the data's piece commitment at {size} is {}, not {cid}'s: nothing was kept",
                nelumbo_commp::piece_cid_v1(&commitment)
            ),
        ));
    }
    if let Some(sizes) = info.sizes
        && sizes.payload != payload
    {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "{cid} says {} payload bytes, the upload had {payload}: nothing was kept",
                sizes.payload
            ),
        ));
    }
    file.sync_all().map_err(internal)?;
    drop(file);
    let path = store.dir.join(key);
    std::fs::rename(temp, &path).map_err(internal)?;
    std::fs::File::open(&store.dir)
        .and_then(|d| d.sync_all())
        .map_err(internal)?;
    let piece = StoredPiece {
        piece_cid: key.to_string(),
        piece_size: size.bytes(),
        payload_size: payload,
        path,
        received_at: crate::outbox::now_secs(),
    };
    store
        .db
        .put_piece(&piece)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    tracing::info!(piece_cid = %key, payload, piece_size = size.bytes(), "piece received and verified");
    Ok(piece)
}

/// Checks the request's bearer token against the API's secret: the token must grant `needed`
/// or one of `also`.
pub(crate) fn authorise(
    secret: &TokenSecret,
    headers: &HeaderMap,
    needed: Permission,
    also: &[Permission],
) -> Result<(), (StatusCode, String)> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("Bearer ").trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                format!("a token is required: send Authorization: Bearer TOKEN (a {needed} token)"),
            )
        })?;
    let permissions = secret
        .verify(token)
        .map_err(|e| (StatusCode::UNAUTHORIZED, format!("bad token: {e}")))?;
    if !permissions.allows_any(needed, also) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("missing permission for this request (need '{needed}')"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_must_leave_room_for_sealing() {
        // 100 free, sealing promised 30, a sector needs 40: 30 bytes of pieces fit, 31 do not.
        assert!(room_for_piece(100, 30, 30, 40).is_ok());
        let error = room_for_piece(100, 31, 30, 40).expect_err("crowds out sealing");
        assert!(error.contains("100 bytes free"), "{error}");
        assert!(room_for_piece(u64::MAX, u64::MAX, u64::MAX, 1).is_err());
    }
}
