//! The IPNI HTTP publisher, on the public retrieval listener: what indexers fetch after an
//! announcement.
//!
//! - `GET /ipni/v1/ad/head`: the head, signed with the provider's key (DAG-JSON); 204 while the
//!   chain is empty; never cached (it moves).
//! - `GET /ipni/v1/ad/{cid}`: an advertisement or entry chunk, byte for byte as stored (an
//!   indexer hashes the body it gets against the CID it asked for); immutable.
//!
//! Entry chunks are stored when the advertisement is made, not rebuilt on request: rebuilding
//! chunk N needs the CIDs of every chunk after it (each links to the next), so serving one
//! chunk of a large piece would cost the whole piece's hashing per request, and a stranger
//! could make the provider do that in a loop. Stored, a request is one database read. The cost
//! is disk: about 60 bytes per block advertised.
//!
//! Bad input: a name that is not a CID is 400; a CID that is not DAG-JSON over SHA-256, or not
//! stored, is 404. At most `MAX_AT_ONCE` requests are served at once (429 beyond).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cid::Cid;
use tokio::sync::Semaphore;

use super::{Indexing, chain, ipni};

/// Publisher requests served at once.
const MAX_AT_ONCE: usize = 64;

#[derive(Debug, Clone)]
struct Publisher {
    indexing: Indexing,
    slots: Arc<Semaphore>,
    /// The encoded signed head, for the head it was made for (signing once per head).
    signed_head: Arc<std::sync::Mutex<Option<(Cid, bytes::Bytes)>>>,
}

pub fn router(indexing: Indexing) -> axum::Router {
    axum::Router::new()
        .route("/ipni/v1/ad/{name}", get(serve))
        .with_state(Publisher {
            indexing,
            slots: Arc::new(Semaphore::new(MAX_AT_ONCE)),
            signed_head: Arc::default(),
        })
}

/// What a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Head,
    /// An advertisement or entry chunk: DAG-JSON over SHA-256, as this publisher makes them.
    Block(Cid),
}

/// Reads the `{name}` of `/ipni/v1/ad/{name}`: the head, or a CID this publisher could have
/// made; anything else is refused with the status and message to answer.
pub fn requested(name: &str) -> Result<Requested, (StatusCode, String)> {
    if name == "head" {
        return Ok(Requested::Head);
    }
    let Ok(cid) = Cid::try_from(name) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "{:?} is not a CID",
                name.chars().take(100).collect::<String>()
            ),
        ));
    };
    if cid.codec() != ipni::DAG_JSON || cid.hash().code() != ipni::SHA2_256 {
        return Err((
            StatusCode::NOT_FOUND,
            format!("{cid} is not published here"),
        ));
    }
    Ok(Requested::Block(cid))
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, format!("{}\n", message.into())).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn serve(State(p): State<Publisher>, Path(name): Path<String>) -> Response {
    let Ok(_slot) = p.slots.clone().try_acquire_owned() else {
        let mut response = text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many IPNI requests at once: try again in a second",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let cid = match requested(&name) {
        Ok(Requested::Head) => return head(&p).await,
        Ok(Requested::Block(cid)) => cid,
        Err((status, message)) => return text(status, message),
    };
    match p.indexing.0.store.run(move |s| chain::block(s, &cid)).await {
        Ok(Some(bytes)) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=29030400, immutable"),
            );
            response
        }
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!("{cid} is not published here"),
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), ad_cid = %cid, "ipni publisher: cannot read the chain");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the advertisement chain",
            )
        }
    }
}

async fn head(p: &Publisher) -> Response {
    let current = *p.indexing.0.head.borrow();
    let Some((_, cid)) = current else {
        return (
            StatusCode::NO_CONTENT,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        )
            .into_response();
    };
    let cached = p
        .signed_head
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|(c, _)| *c == cid)
        .map(|(_, b)| b.clone());
    let body = match cached {
        Some(body) => body,
        None => match ipni::encode_signed_head(&cid, &p.indexing.0.key) {
            Ok(bytes) => {
                let bytes = bytes::Bytes::from(bytes);
                *p.signed_head.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((cid, bytes.clone()));
                bytes
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "ipni publisher: cannot sign the head");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign the head");
            }
        },
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
