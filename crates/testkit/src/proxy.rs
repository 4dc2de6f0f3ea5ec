//! A JSON-RPC proxy between a daemon and the chain that can turn hostile: hold the requests
//! that match a rule without answering (a chain that does not answer), and slow the others
//! down. Tests point the hub's `[chain] api_info` at it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// What the proxy does to requests while hostile.
#[derive(Debug, Clone, Default)]
pub struct Hostility {
    /// Requests whose body contains any of these strings are held this long, then dropped.
    pub hold_matching: Vec<String>,
    pub hold_for: Duration,
    /// Every other request waits up to this long (a pseudo-random share of it) first.
    pub delay_up_to: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    held: u64,
    delayed: u64,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    hostility: Mutex<Option<Hostility>>,
    counters: Mutex<Counters>,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct ChainProxy {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ChainProxy {
    /// Forwards `POST /rpc/v0` and `/rpc/v1` on a free loopback port to `upstream` (the chain's
    /// `http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            hostility: Mutex::new(None),
            counters: Mutex::default(),
        });
        let router = axum::Router::new()
            .route("/rpc/v0", axum::routing::post(forward))
            .route("/rpc/v1", axum::routing::post(forward))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { port, shared, task }
    }

    /// Turns hostile (`Some`) or friendly again (`None`).
    pub fn set(&self, hostility: Option<Hostility>) {
        *self
            .shared
            .hostility
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hostility;
    }

    /// Requests held and delayed so far.
    pub fn counts(&self) -> (u64, u64) {
        let c = self
            .shared
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (c.held, c.delayed)
    }
}

impl Drop for ChainProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hostility = shared
        .hostility
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(h) = hostility {
        let text = String::from_utf8_lossy(&body);
        if h.hold_matching.iter().any(|m| text.contains(m.as_str())) {
            if let Ok(mut c) = shared.counters.lock() {
                c.held += 1;
            }
            tokio::time::sleep(h.hold_for).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        if !h.delay_up_to.is_zero() {
            if let Ok(mut c) = shared.counters.lock() {
                c.delayed += 1;
            }
            let share = u64::from(rand::random::<u16>()) * h.delay_up_to.as_millis() as u64
                / u64::from(u16::MAX);
            tokio::time::sleep(Duration::from_millis(share)).await;
        }
    }
    let mut request = shared
        .http
        .post(format!("{}{}", shared.upstream, uri.path()))
        .body(body.to_vec());
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::header::CONTENT_TYPE,
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = answer.bytes().await.unwrap_or_default();
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
