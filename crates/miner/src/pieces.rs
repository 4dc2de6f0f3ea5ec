//! Piece upload: `PUT /pieces/{pieceCid}`, authenticated like the API (a `write` token).
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

use crate::db::Db;

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
        storage: &Path,
        db: Arc<Db>,
        secret: TokenSecret,
        sector_size: SectorSize,
    ) -> anyhow::Result<Self> {
        let dir = storage.join("pieces");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // Uploads cut short by a crash leave temporary files; none of them is a piece.
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".upload-"))
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir,
            db,
            secret,
            sector_size,
            uploads: Semaphore::new(MAX_UPLOADS),
        })
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
    if let Err((status, message)) = authorise(&store.secret, &headers, Permission::Write) {
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
        (Some(sizes), _) => Some(sizes.piece_size),
        (None, Some(size)) => match PaddedPieceSize::new(size) {
            Ok(size) => Some(size),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("size={size}: {e}")),
        },
        (None, None) => None,
    };
    if let Some(size) = declared
        && size.bytes() > store.sector_size.bytes()
    {
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
    let temp = TempFile(store.dir.join(format!(".upload-{}", rand_suffix())));
    // Dropped with the request (a client that disconnects included): the file goes with it
    // unless it became the piece.
    let result = receive(&store, &temp.0, body, &info, declared, &cid, &key).await;
    match result {
        Ok(piece) => (StatusCode::CREATED, piece.answer()).into_response(),
        Err((status, message)) => {
            tracing::warn!(piece = %cid, %message, "piece upload refused");
            refuse(status, message)
        }
    }
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
    };
    store
        .db
        .put_piece(&piece)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    tracing::info!(piece = %key, payload, piece_size = size.bytes(), "piece received and verified");
    Ok(piece)
}

/// Checks the request's bearer token against the API's secret: the token must grant `needed`.
pub(crate) fn authorise(
    secret: &TokenSecret,
    headers: &HeaderMap,
    needed: Permission,
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
    if !permissions.allows(needed) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("missing permission for this request (need '{needed}')"),
        ));
    }
    Ok(())
}
