//! The retrieval service: a public HTTP listener (`[retrieval] listen`) serving `/piece`
//! (FRC-0066), `/ipfs` (the trustless gateway), `/info` and health and metrics, from the piece
//! reader (cache, then the hub's unsealed copy, then an unseal on the hub).
//!
//! Every route has its own cap on requests at once (answered 429 with `Retry-After`), the
//! listener bounds connections and cuts off slow and idle clients ([`server`]), CAR responses
//! are capped, the operator's denylist (451) and filter command (403) are asked first, and
//! each request is logged in one structured line (target `retrieval::access`).

pub mod bitswap;
pub mod blocks;
pub mod cache;
pub mod gateway;
pub mod metrics;
pub mod piece;
pub mod reader;
pub mod server;
pub mod wants;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use cid::Cid;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::RetrievalConfig;
use crate::store::AsyncStore;
use blocks::BlockSource;
use gateway::{Format, ResolveError, refuse};
use metrics::RetrievalMetrics;
use reader::{PieceReader, ReadError};

/// How long the filter command's answer for a CID is kept.
const FILTER_TTL: Duration = Duration::from_secs(60);
/// How long the filter command may take.
const FILTER_TIMEOUT: Duration = Duration::from_secs(5);

/// The filter command's answer for a key, and when it was given.
type FilterAnswer = (Instant, Result<(), String>);

/// What the retrieval routes share.
#[derive(Debug)]
pub struct Retrieval {
    pub reader: Arc<PieceReader>,
    pub blocks: BlockSource,
    pub metrics: RetrievalMetrics,
    store: AsyncStore,
    slots: HashMap<&'static str, Arc<Semaphore>>,
    deny: HashSet<String>,
    filter: String,
    filter_answers: Mutex<HashMap<String, FilterAnswer>>,
    car_limits: gateway::CarLimits,
    info: serde_json::Value,
}

impl Retrieval {
    /// Blocks by CID, for bitswap.
    pub fn block_source(&self) -> BlockSource {
        self.blocks.clone()
    }

    /// The CIDs never served.
    pub fn denylist(&self) -> HashSet<String> {
        self.deny.clone()
    }

    pub fn new(
        config: &RetrievalConfig,
        reader: Arc<PieceReader>,
        store: AsyncStore,
        metrics: RetrievalMetrics,
        info: serde_json::Value,
    ) -> Self {
        let slots = HashMap::from([
            ("piece", Arc::new(Semaphore::new(config.max_piece_requests))),
            ("ipfs", Arc::new(Semaphore::new(config.max_ipfs_requests))),
            ("head", Arc::new(Semaphore::new(config.max_head_requests))),
        ]);
        Self {
            blocks: BlockSource {
                store: store.clone(),
                reader: reader.clone(),
                metrics: metrics.clone(),
            },
            reader,
            metrics,
            store,
            slots,
            deny: config.deny.iter().filter_map(|c| normalise(c)).collect(),
            filter: config.filter.clone(),
            filter_answers: Mutex::default(),
            car_limits: gateway::CarLimits {
                max_blocks: config.max_car_blocks,
                max_bytes: config.max_car_bytes,
            },
            info,
        }
    }

    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/piece/{cid}", get(piece::serve).head(piece::serve))
            .route("/ipfs/{cid}", get(ipfs_root).head(ipfs_root))
            .route("/ipfs/{cid}/{*path}", get(ipfs_path).head(ipfs_path))
            .route("/info", get(info))
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(self, access_log))
    }

    /// A place among `route`'s requests at once, if one is free.
    fn slot(&self, route: &str) -> Option<OwnedSemaphorePermit> {
        self.slots.get(route)?.clone().try_acquire_owned().ok()
    }

    fn too_busy(&self, route: &str) -> Response {
        self.metrics.refused.with_label_values(&[route]).inc();
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many {route} requests at once: try again in a second"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }

    /// The denylist (451), then the operator's filter (403); `None` lets the request through.
    async fn check_access(
        &self,
        route: &str,
        cids: &[Cid],
        path: &str,
        client: Option<SocketAddr>,
    ) -> Option<Response> {
        for cid in cids {
            if self.deny.contains(&cid.to_string()) {
                return Some(refuse(
                    StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                    format!("{cid} is not served by this provider"),
                ));
            }
        }
        if self.filter.is_empty() {
            return None;
        }
        let key = format!(
            "{route}|{}",
            cids.first().map(|c| c.to_string()).unwrap_or_default()
        );
        let cached = self
            .filter_answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < FILTER_TTL)
            .map(|(_, answer)| answer.clone());
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let request = serde_json::json!({
                    "Route": route,
                    "Cid": cids.first().map(|c| c.to_string()),
                    "Path": path,
                    "Client": client.map(|c| c.ip().to_string()),
                });
                let answer = run_filter(&self.filter, &request).await;
                self.filter_answers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (Instant::now(), answer.clone()));
                answer
            }
        };
        answer.err().map(|why| {
            refuse(
                StatusCode::FORBIDDEN,
                format!("refused by the provider's retrieval filter: {why}"),
            )
        })
    }

    /// Whether a piece was indexed as a CAR (its payload is served as one).
    async fn is_car(&self, piece_v1: &Cid) -> bool {
        let key = piece_v1.to_string();
        crate::directory::run(self.store.directory(), move |d| d.piece(&key))
            .await
            .ok()
            .flatten()
            .is_some()
    }
}

/// A CID in the form the denylist compares: CIDv1 base32 (v0 CIDs upgraded); piece CIDs are
/// listed in both versions by the caller.
fn normalise(text: &str) -> Option<String> {
    let cid: Cid = text.trim().parse().ok()?;
    let cid = if cid.version() == cid::Version::V0 {
        Cid::new_v1(nelumbo_car::codec::DAG_PB, *cid.hash())
    } else {
        cid
    };
    Some(cid.to_string())
}

async fn run_filter(command: &str, request: &serde_json::Value) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let run = async {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("the filter command cannot start: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(request.to_string().as_bytes()).await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| format!("the filter command failed: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&output.stdout);
            Err(text.trim().chars().take(200).collect::<String>())
        }
    };
    match tokio::time::timeout(FILTER_TIMEOUT, run).await {
        Ok(answer) => answer,
        Err(_) => Err("the filter command did not answer in time".into()),
    }
}

/// Whether `If-None-Match` names `etag` (or `*`): the client has the bytes already.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// 416 for a `Range` outside `size` bytes, with `Content-Range: bytes */SIZE`.
fn unsatisfiable(message: String, size: u64) -> Response {
    let mut refusal = refuse(StatusCode::RANGE_NOT_SATISFIABLE, message);
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        refusal.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    refusal
}

/// 503 with `Retry-After`.
pub fn unavailable(why: &str, retry_after: u64) -> Response {
    let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, why);
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn info(State(r): State<Arc<Retrieval>>) -> Response {
    let mut response = Response::new(Body::from(r.info.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn ipfs_root(
    state: State<Arc<Retrieval>>,
    method: Method,
    UrlPath(cid): UrlPath<String>,
    query: RawQuery,
    headers: HeaderMap,
    client: ConnectInfo<SocketAddr>,
) -> Response {
    ipfs(state, method, cid, String::new(), query, headers, client).await
}

async fn ipfs_path(
    state: State<Arc<Retrieval>>,
    method: Method,
    UrlPath((cid, path)): UrlPath<(String, String)>,
    query: RawQuery,
    headers: HeaderMap,
    client: ConnectInfo<SocketAddr>,
) -> Response {
    ipfs(state, method, cid, path, query, headers, client).await
}

async fn ipfs(
    State(r): State<Arc<Retrieval>>,
    method: Method,
    cid: String,
    path: String,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Response {
    let head = method == Method::HEAD;
    let route = if head { "head" } else { "ipfs" };
    let Some(slot) = r.slot(route) else {
        return r.too_busy(route);
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let request = match gateway::parse_request(&cid, &path, &query, &headers) {
        Ok(request) => request,
        Err((status, message)) => return refuse(status, message),
    };
    let request_path = if path.is_empty() {
        format!("/ipfs/{cid}")
    } else {
        format!("/ipfs/{cid}/{path}")
    };
    if let Some(response) = r
        .check_access("ipfs", &[request.root], &request_path, Some(client))
        .await
    {
        return response;
    }
    // Identity CIDs (the bafkqaaa probe) resolve from the CID itself.
    let resolved = match gateway::resolve(&r.blocks, &request.root, &request.path).await {
        Ok(resolved) => resolved,
        Err(ResolveError::NotFound(why)) => return refuse(StatusCode::NOT_FOUND, why),
        Err(ResolveError::Read(ReadError::NotFound(why))) => {
            return refuse(StatusCode::NOT_FOUND, why);
        }
        Err(ResolveError::Read(ReadError::Unavailable { why, retry_after })) => {
            return unavailable(&why, retry_after);
        }
        Err(ResolveError::Read(ReadError::Internal(why))) => {
            return refuse(StatusCode::BAD_GATEWAY, why);
        }
    };
    if resolved.terminal != request.root
        && let Some(response) = r
            .check_access("ipfs", &[resolved.terminal], &request_path, Some(client))
            .await
    {
        return response;
    }
    let mut response = Response::new(Body::empty());
    gateway::common_headers(response.headers_mut(), &request_path, &resolved.roots);
    let out = response.headers_mut();
    let etag = match request.format {
        Format::Raw => format!("\"{}.raw\"", request.root),
        Format::Car { .. } => gateway::car_etag(&request, &resolved.terminal),
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    let default_name = match request.format {
        Format::Raw => format!("{}.bin", request.root),
        Format::Car { .. } => format!("{}.car", request.root),
    };
    let name = request.filename.clone().unwrap_or(default_name);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        out.insert(header::CONTENT_DISPOSITION, value);
    }
    if not_modified(&headers, &etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    match request.format {
        Format::Raw => {
            let data = resolved
                .blocks
                .last()
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            let out = response.headers_mut();
            out.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.ipld.raw"),
            );
            out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let size = data.len() as u64;
            let (start, len) = match nelumbo_service::parse_range(&headers, size) {
                Ok(Some(range)) => {
                    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                    if let Ok(value) = HeaderValue::from_str(&format!(
                        "bytes {}-{}/{size}",
                        range.0,
                        range.0 + range.1 - 1
                    )) {
                        response.headers_mut().insert(header::CONTENT_RANGE, value);
                    }
                    range
                }
                Ok(None) => (0, size),
                Err(message) => return unsatisfiable(message, size),
            };
            if let Ok(value) = HeaderValue::from_str(&len.to_string()) {
                response.headers_mut().insert(header::CONTENT_LENGTH, value);
            }
            if !head {
                *response.body_mut() =
                    Body::from(data.slice(start as usize..(start + len) as usize));
            }
            response
        }
        Format::Car { dups } => {
            let out = response.headers_mut();
            let content_type = format!(
                "application/vnd.ipld.car; version=1; order=dfs; dups={}",
                if dups { "y" } else { "n" }
            );
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                out.insert(header::CONTENT_TYPE, value);
            }
            out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
            if head {
                return response;
            }
            let (sender, receiver) =
                tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
            let retrieval = r.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let result = gateway::write_car(
                    &retrieval.blocks,
                    &request,
                    resolved,
                    retrieval.car_limits,
                    &sender,
                )
                .await;
                match result {
                    Ok(blocks) => retrieval.metrics.car_blocks.observe(blocks as f64),
                    Err(why) => {
                        tracing::warn!(root = %request.root, path = %request.path.join("/"), why, "a CAR response was cut short");
                        let _ = sender.send(Err(std::io::Error::other(why))).await;
                    }
                }
            });
            *response.body_mut() =
                Body::from_stream(futures::stream::unfold(receiver, |mut r| async move {
                    r.recv().await.map(|item| (item, r))
                }));
            response
        }
    }
}

/// Logs one line per request once its response has ended (method, path, status, bytes,
/// duration, client, and the error for refusals), and feeds the metrics.
async fn access_log(State(r): State<Arc<Retrieval>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = match path.split('/').nth(1) {
        Some("piece") => "piece",
        Some("ipfs") => "ipfs",
        Some("info") => "info",
        _ => "other",
    };
    let response = next.run(request).await;
    let status = response.status();
    r.metrics
        .first_byte
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    r.metrics
        .requests
        .with_label_values(&[route, status.as_str()])
        .inc();
    let (parts, body) = response.into_parts();
    let mut line = AccessLine {
        method,
        path,
        status,
        bytes: 0,
        started,
        client,
        error: None,
        route,
        metrics: r.metrics.clone(),
    };
    if !status.is_success() && status != StatusCode::NOT_MODIFIED {
        let mut parts = parts;
        if parts.headers.contains_key(header::RETRY_AFTER) {
            // The client is told to come back later; by then its idle keep-alive connection
            // may have met the header timeout, and a request written into that closing
            // connection is reset. Closing it now makes the next attempt open a fresh one (and
            // gives the connection's slot back while the client waits).
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // Refusals are short text: keep it for the log line.
        let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        line.error = Some(String::from_utf8_lossy(&bytes).trim().to_string());
        line.bytes = bytes.len() as u64;
        return Response::from_parts(parts, Body::from(bytes));
    }
    Response::from_parts(
        parts,
        Body::from_stream(Logged {
            inner: body.into_data_stream(),
            line,
        }),
    )
}

/// A response body that counts what it sends into its access-log line.
struct Logged<S> {
    inner: S,
    line: AccessLine,
}

impl<S> futures::Stream for Logged<S>
where
    S: futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
{
    type Item = Result<bytes::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let item = futures::ready!(self.inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(chunk)) => self.line.bytes += chunk.len() as u64,
            Some(Err(e)) => self.line.error = Some(e.to_string()),
            None => {}
        }
        std::task::Poll::Ready(item)
    }
}

/// One access-log line, written when the response body ends or is dropped.
struct AccessLine {
    method: Method,
    path: String,
    status: StatusCode,
    bytes: u64,
    started: Instant,
    client: Option<SocketAddr>,
    error: Option<String>,
    route: &'static str,
    metrics: RetrievalMetrics,
}

impl Drop for AccessLine {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        self.metrics
            .bytes
            .with_label_values(&[self.route])
            .inc_by(self.bytes);
        self.metrics
            .duration
            .with_label_values(&[self.route])
            .observe(duration.as_secs_f64());
        tracing::info!(
            target: "retrieval::access",
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            bytes = self.bytes,
            duration_ms = duration.as_millis() as u64,
            client = %self.client.map(|c| c.ip().to_string()).unwrap_or_default(),
            error = %self.error.as_deref().unwrap_or(""),
            "request"
        );
    }
}
