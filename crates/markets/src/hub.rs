//! The markets process's link to the hub: its JSON-RPC API and the piece upload, with the
//! connection's state kept for health and metrics. The hub being away is a state, never a crash
//! (invariant 5): callers retry with capped backoff.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cid::Cid;
use nelumbo_miner_api::ApiError;
use nelumbo_rpc::{ApiInfo, ClientError, RpcClient, RpcMethod};
use nelumbo_service::Health;
use prometheus::IntGauge;

/// Why a hub call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub is away (not listening, timed out) or said that what it depends on is (the
    /// chain): try again later.
    #[error("the hub is unavailable: {0}")]
    Unreachable(String),
    /// The hub answered and refused.
    #[error("the hub refused: {0}")]
    Refused(String),
    /// `MarketPublishDeals`: the hub does not hold the piece; upload it first.
    #[error("the hub does not hold the piece: {0}")]
    PieceMissing(String),
}

impl HubError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// How long calls that wait on purpose may take: publishing waits for the chain to execute the
/// batch, unsealing for the hub's job.
const LONG_CALL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct Hub {
    pub rpc: RpcClient,
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    connected: Arc<AtomicBool>,
    health: Health,
    gauge: IntGauge,
    /// The last head height read, and when.
    head: Arc<std::sync::Mutex<Option<(std::time::Instant, i64)>>>,
}

impl Hub {
    pub fn new(api_info: &str, health: Health, gauge: IntGauge) -> anyhow::Result<Self> {
        let info = ApiInfo::parse(api_info)
            .map_err(|e| anyhow::anyhow!("the hub's connection string: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // An upload streams for as long as it needs; a hub that stops reading for this
            // long is treated as away.
            .read_timeout(Duration::from_secs(120))
            .no_proxy()
            .build()?;
        health.not_ready("hub", "not yet reached");
        Ok(Self {
            rpc: RpcClient::from_api_info(&info),
            base: info.base,
            token: info.token,
            http,
            connected: Arc::new(AtomicBool::new(false)),
            health,
            gauge,
            head: Arc::default(),
        })
    }

    /// The chain's height as the hub sees it, at most two seconds old: checking a burst of
    /// proposals costs the hub one call, not one each.
    pub async fn head_height(&self) -> Result<i64, HubError> {
        const FRESH: Duration = Duration::from_secs(2);
        if let Ok(cached) = self.head.lock()
            && let Some((at, height)) = *cached
            && at.elapsed() < FRESH
        {
            return Ok(height);
        }
        let height = self
            .call::<nelumbo_miner_api::methods::ChainHead>(())
            .await?
            .height;
        if let Ok(mut cached) = self.head.lock() {
            *cached = Some((std::time::Instant::now(), height));
        }
        Ok(height)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn mark(&self, result: Result<(), &str>) {
        match result {
            Ok(()) => {
                if !self.connected.swap(true, Ordering::Relaxed) {
                    tracing::info!(hub = %self.base, "hub connected");
                }
                self.gauge.set(1);
                self.health.ready("hub");
            }
            Err(why) => {
                if self.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(hub = %self.base, error = why, "hub unreachable");
                }
                self.gauge.set(0);
                self.health.not_ready("hub", format!("unreachable: {why}"));
            }
        }
    }

    pub async fn call<M: RpcMethod>(&self, params: M::Params) -> Result<M::Ok, HubError> {
        let timeout = match M::NAME {
            "Nelumbo.MarketPublishDeals"
            | "Nelumbo.SectorsUnsealPiece"
            | "Nelumbo.MarketSetPeerInfo" => LONG_CALL,
            _ => nelumbo_rpc::DEFAULT_CALL_TIMEOUT,
        };
        match self.rpc.call_with_timeout::<M>(params, timeout).await {
            Ok(v) => {
                self.mark(Ok(()));
                Ok(v)
            }
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: ClientError) -> HubError {
        if e.is_unreachable() {
            let text = e.to_string();
            self.mark(Err(&text));
            return HubError::Unreachable(text);
        }
        self.mark(Ok(()));
        match &e {
            ClientError::Rpc { error, .. } => match ApiError::from_rpc(error) {
                ApiError::Unavailable(why) => HubError::Unreachable(why),
                ApiError::PieceMissing(why) => HubError::PieceMissing(why),
                ApiError::Refused(_) => HubError::Refused(e.to_string()),
            },
            _ => HubError::Refused(e.to_string()),
        }
    }

    /// Reads unpadded bytes `[start, start + len)` of a piece from the hub (`GET
    /// /pieces/{cid}` with `Range`); the body streams, and dropping it ends the hub's read.
    /// `PieceMissing`: the hub has no copy it can read now (it may need an unseal).
    pub async fn read_piece(
        &self,
        piece: &Cid,
        start: u64,
        len: u64,
    ) -> Result<reqwest::Response, HubError> {
        let last = start.saturating_add(len.max(1)) - 1;
        let mut request = self
            .http
            .get(format!("{}/pieces/{piece}", self.base))
            .header(reqwest::header::RANGE, format!("bytes={start}-{last}"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Err(e) => {
                let text = crate::deals::transfer::error_chain(&e);
                self.mark(Err(&text));
                Err(HubError::Unreachable(text))
            }
            Ok(response) => {
                self.mark(Ok(()));
                let status = response.status();
                if status.is_success() {
                    return Ok(response);
                }
                let body = response.text().await.unwrap_or_default();
                Err(match status {
                    reqwest::StatusCode::NOT_FOUND => HubError::PieceMissing(body),
                    reqwest::StatusCode::SERVICE_UNAVAILABLE
                    | reqwest::StatusCode::TOO_MANY_REQUESTS => {
                        HubError::Unreachable(format!("{status}: {body}"))
                    }
                    _ => HubError::Refused(format!("{status}: {body}")),
                })
            }
        }
    }

    /// Streams a staged CAR to the hub as a piece (`PUT /pieces/{cid}?size=`); the hub pads it,
    /// recomputes its commitment and refuses a mismatch. Repeating an upload is harmless.
    pub async fn upload_piece(
        &self,
        piece: &Cid,
        piece_size: u64,
        path: &Path,
    ) -> Result<(), HubError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| {
            HubError::Refused(format!("open the staged data {}: {e}", path.display()))
        })?;
        let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let mut request = self
            .http
            .put(format!("{}/pieces/{piece}?size={piece_size}", self.base))
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Err(e) => {
                let text = crate::deals::transfer::error_chain(&e);
                if e.is_connect() || e.is_timeout() || e.is_request() {
                    self.mark(Err(&text));
                    Err(HubError::Unreachable(text))
                } else {
                    Err(HubError::Refused(text))
                }
            }
            Ok(response) => {
                self.mark(Ok(()));
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let body = response.text().await.unwrap_or_default();
                    // 503: busy or stopping; 507: no room now (sealing needs it, or too many
                    // pieces wait for deals): come back later. Anything else is a refusal.
                    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                        || status == reqwest::StatusCode::INSUFFICIENT_STORAGE
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    {
                        Err(HubError::Unreachable(format!("{status}: {body}")))
                    } else {
                        Err(HubError::Refused(format!("{status}: {body}")))
                    }
                }
            }
        }
    }
}
