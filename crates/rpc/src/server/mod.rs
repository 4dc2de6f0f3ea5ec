//! The JSON-RPC server: HTTP POST and WebSocket on `/rpc/v0` and `/rpc/v1`, as Lotus serves
//! them, with token authentication and request size limits.

mod module;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

pub use module::RpcModule;
use module::{Outcome, Request, error_response};

use crate::error::RpcError;
use crate::permission::{Permission, Permissions};
use crate::token::TokenSecret;

/// How a server authenticates callers and bounds requests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Verifies bearer tokens.
    pub secret: TokenSecret,
    /// What a caller without a token may do: Lotus full nodes allow `read`; the hub allows
    /// nothing.
    pub anonymous: Option<Permission>,
    /// The largest request body (HTTP) or message (WebSocket) accepted.
    pub max_request_bytes: usize,
}

struct Shared<S> {
    module: RpcModule<S>,
    config: ServerConfig,
}

/// Routes `/rpc/v0` and `/rpc/v1` (HTTP POST, and WebSocket on GET) to `module`.
pub fn rpc_router<S: Clone + Send + Sync + 'static>(
    module: RpcModule<S>,
    config: ServerConfig,
) -> Router {
    let shared = Arc::new(Shared { module, config });
    Router::new()
        .route("/rpc/v0", post(http_call::<S>).get(ws_upgrade::<S>))
        .route("/rpc/v1", post(http_call::<S>).get(ws_upgrade::<S>))
        .with_state(shared)
}

impl<S> Shared<S> {
    /// The caller's permissions, from `Authorization: Bearer` or a `token` query parameter.
    /// A bad token is refused with the error to send back (HTTP 401).
    fn authenticate(&self, headers: &HeaderMap, uri: &Uri) -> Result<Permissions, RpcError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim()
                    .strip_prefix("Bearer ")
                    .unwrap_or(v)
                    .trim()
                    .to_string()
            });
        let query = uri.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
        });
        match header.or(query).filter(|t| !t.is_empty()) {
            Some(token) => self
                .config
                .secret
                .verify(&token)
                .map_err(|e| RpcError::invalid_request(e.to_string())),
            None => match self.config.anonymous {
                Some(p) => Ok(Permissions::new(p.with_lower())),
                // A server that gives strangers nothing does not even say what it offers.
                None => Err(RpcError::invalid_request(
                    "a token is required: send Authorization: Bearer TOKEN",
                )),
            },
        }
    }
}

async fn http_call<S: Clone + Send + Sync + 'static>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let permissions = match shared.authenticate(&headers, &uri) {
        Ok(p) => p,
        Err(error) => return unauthorized(error),
    };
    let limit = shared.config.max_request_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let error = RpcError::invalid_request(format!(
                "request body too large: the limit is {limit} bytes"
            ));
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(error_response(error)),
            )
                .into_response();
        }
    };
    match answer_text(&shared.module, &bytes, &permissions, false).await {
        Some(value) => (StatusCode::OK, axum::Json(value)).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

async fn ws_upgrade<S: Clone + Send + Sync + 'static>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let permissions = match shared.authenticate(&headers, &uri) {
        Ok(p) => p,
        Err(error) => return unauthorized(error),
    };
    let limit = shared.config.max_request_bytes;
    upgrade
        .max_message_size(limit)
        .on_upgrade(move |socket| ws::serve(socket, shared, permissions))
}

fn unauthorized(error: RpcError) -> Response {
    (StatusCode::UNAUTHORIZED, axum::Json(error_response(error))).into_response()
}

/// Answers a request body: one request or a batch. `None` when nothing is to be sent back.
async fn answer_text<S: Clone + Send + Sync + 'static>(
    module: &RpcModule<S>,
    bytes: &[u8],
    permissions: &Permissions,
    channels_allowed: bool,
) -> Option<Value> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            return Some(error_response(RpcError::parse(format!(
                "invalid JSON: {e}"
            ))));
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => {
            Some(error_response(RpcError::invalid_request("empty batch")))
        }
        Value::Array(items) => {
            let mut responses = Vec::new();
            for item in items {
                match answer_value(module, item, permissions, false).await {
                    Outcome::Response(r) => responses.push(r),
                    Outcome::Nothing | Outcome::Channel { .. } => {}
                }
            }
            (!responses.is_empty()).then_some(Value::Array(responses))
        }
        single => match answer_value(module, single, permissions, channels_allowed).await {
            Outcome::Response(r) => Some(r),
            Outcome::Nothing | Outcome::Channel { .. } => None,
        },
    }
}

async fn answer_value<S: Clone + Send + Sync + 'static>(
    module: &RpcModule<S>,
    value: Value,
    permissions: &Permissions,
    channels_allowed: bool,
) -> Outcome {
    match serde_json::from_value::<Request>(value) {
        Ok(request) => module.answer(request, permissions, channels_allowed).await,
        Err(e) => Outcome::Response(error_response(RpcError::invalid_request(format!(
            "not a JSON-RPC request: {e}"
        )))),
    }
}
