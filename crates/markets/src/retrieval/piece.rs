//! `GET`/`HEAD /piece/{pieceCid}` (FRC-0066): a piece's payload bytes, by piece CID v1 or v2
//! (FRC-0069), with `Range`. The payload is the piece's data without its zero padding, so a
//! client that recomputes the piece commitment of what it got (padding it to the piece size
//! for a v1 CID) gets the piece CID back.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use cid::Cid;

use super::gateway::refuse;
use super::reader::ReadError;
use super::{Retrieval, unavailable};

pub async fn serve(
    State(r): State<Arc<Retrieval>>,
    method: Method,
    UrlPath(text): UrlPath<String>,
    headers: HeaderMap,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Response {
    let head = method == Method::HEAD;
    let Some(slot) = r.slot(if head { "head" } else { "piece" }) else {
        return r.too_busy(if head { "head" } else { "piece" });
    };
    let (cid, info): (Cid, _) = match nelumbo_commp::parse_piece_cid_str(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("{text:?} is not a piece CID (v1 baga... or v2 bafkzcib...): {e}"),
            );
        }
    };
    let v1 = nelumbo_commp::piece_cid_v1(&info.commitment);
    if let Some(response) = r
        .check_access("piece", &[cid, v1], &text, Some(client))
        .await
    {
        return response;
    }
    let piece = match r.reader.open(&cid).await {
        Ok(piece) => piece,
        Err(ReadError::NotFound(why)) => return refuse(StatusCode::NOT_FOUND, why),
        Err(ReadError::Unavailable { why, retry_after }) => return unavailable(&why, retry_after),
        Err(ReadError::Internal(why)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, why),
    };
    if let Some(sizes) = info.sizes
        && (sizes.payload != piece.payload_size || sizes.piece_size.bytes() != piece.piece_size)
    {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "{cid} names a piece of {} payload bytes in {} bytes; the piece with that commitment here holds {} payload bytes in {} bytes",
                sizes.payload,
                sizes.piece_size.bytes(),
                piece.payload_size,
                piece.piece_size
            ),
        );
    }
    let etag = format!("\"{cid}\"");
    let size = piece.payload_size;
    let is_car = r.is_car(&v1).await;
    let mut response = Response::new(Body::empty());
    let out = response.headers_mut();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if is_car {
            "application/vnd.ipld.car; version=1"
        } else {
            "application/octet-stream"
        }),
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=29030400, immutable"),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{cid}.{}\"",
        if is_car { "car" } else { "bin" }
    )) {
        out.insert(header::CONTENT_DISPOSITION, value);
    }
    if super::not_modified(&headers, &etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    let range = match nelumbo_service::parse_range(&headers, size) {
        Ok(range) => range,
        Err(message) => return super::unsatisfiable(message, size),
    };
    let (start, len) = range.unwrap_or((0, size));
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&len.to_string()) {
        out.insert(header::CONTENT_LENGTH, value);
    }
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    if head || len == 0 {
        return response;
    }
    match r.reader.stream(&piece, start, len).await {
        Ok(stream) => {
            // The request keeps its place among the route's until its body has been sent.
            use futures::StreamExt;
            *response.body_mut() = Body::from_stream(stream.map(move |item| {
                let _slot = &slot;
                item
            }));
            response
        }
        Err(ReadError::NotFound(why)) => refuse(StatusCode::NOT_FOUND, why),
        Err(ReadError::Unavailable { why, retry_after }) => unavailable(&why, retry_after),
        Err(ReadError::Internal(why)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}
