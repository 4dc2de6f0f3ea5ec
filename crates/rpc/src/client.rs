//! A typed JSON-RPC client: calls over HTTP, channels over WebSocket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::error::RpcError;
use crate::method::{RpcChannel, RpcMethod, encode_params};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the connection broke.
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with a JSON-RPC error.
    #[error("{method}: {error}")]
    Rpc {
        method: &'static str,
        error: RpcError,
    },
    /// The server answered something that is not the expected result.
    #[error("{method}: unexpected answer: {message}")]
    Decode {
        method: &'static str,
        message: String,
    },
    /// The connection string is not of the form `TOKEN:/ip4/HOST/tcp/PORT/http`.
    #[error("invalid API info {0:?}: expected TOKEN:/ip4/127.0.0.1/tcp/1234/http")]
    ApiInfo(String),
}

impl ClientError {
    /// Whether the peer was away (not listening, or no answer in time).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// Whether the call may succeed if made again later: the peer was away, or answered that
    /// something behind it is ([`RpcError::UNAVAILABLE`]). Anything else is a refusal.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Rpc { error, .. } => error.is_unavailable(),
            _ => false,
        }
    }
}

/// How long a call may take unless the caller says otherwise: long enough for any answer a
/// healthy peer gives, short enough that a stalled peer never holds a caller for long.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a daemon's API is and the token to call it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// `http://host:port`
    pub base: String,
    pub token: Option<String>,
}

impl ApiInfo {
    /// Parses Lotus's connection string `TOKEN:/ip4/127.0.0.1/tcp/1234/http` (the token is
    /// optional; `/ip6/` and `/dns/`, `/dns4/`, `/dns6/` hosts are accepted too).
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let invalid = || ClientError::ApiInfo(text.to_string());
        let text = text.trim();
        let (token, addr) = match text.split_once(":/") {
            Some((token, rest)) => (
                Some(token.to_string()).filter(|t| !t.is_empty()),
                format!("/{rest}"),
            ),
            None if text.starts_with('/') => (None, text.to_string()),
            None => return Err(invalid()),
        };
        let parts: Vec<&str> = addr.split('/').collect();
        let ["", proto, host, "tcp", port, rest @ ..] = parts.as_slice() else {
            return Err(invalid());
        };
        port.parse::<u16>().map_err(|_| invalid())?;
        let host = match *proto {
            "ip4" | "dns" | "dns4" | "dns6" => host.to_string(),
            "ip6" => format!("[{host}]"),
            _ => return Err(invalid()),
        };
        let scheme = match rest {
            [] | ["http"] | ["ws"] => "http",
            ["https"] | ["wss"] => "https",
            _ => return Err(invalid()),
        };
        Ok(Self {
            base: format!("{scheme}://{host}:{port}"),
            token,
        })
    }

    /// The connection string for a base URL like `http://127.0.0.1:1234` and a token.
    pub fn format(token: &str, host: &str, port: u16) -> String {
        let proto = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            "ip6"
        } else {
            "ip4"
        };
        format!("{token}:/{proto}/{host}/tcp/{port}/http")
    }
}

/// Calls one daemon's API (`/rpc/v1` unless another path is given).
#[derive(Debug, Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    next_id: Arc<AtomicU64>,
    timeout: Duration,
}

impl RpcClient {
    /// `url` is the full endpoint, e.g. `http://127.0.0.1:1234/rpc/v1`.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            http,
            url: url.into(),
            token,
            next_id: Arc::new(AtomicU64::new(1)),
            timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// The same client with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn from_api_info(info: &ApiInfo) -> Self {
        Self::new(format!("{}/rpc/v1", info.base), info.token.clone())
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `M` and decodes its result; a call without an answer within the client's timeout
    /// is [`ClientError::Unreachable`].
    pub async fn call<M: RpcMethod>(&self, params: M::Params) -> Result<M::Ok, ClientError> {
        self.call_with_timeout::<M>(params, self.timeout).await
    }

    /// [`Self::call`] with its own timeout, for calls that wait on purpose.
    pub async fn call_with_timeout<M: RpcMethod>(
        &self,
        params: M::Params,
        timeout: Duration,
    ) -> Result<M::Ok, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = encode_params::<M>(&params).map_err(|error| ClientError::Rpc {
            method: M::NAME,
            error,
        })?;
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": M::NAME, "params": params});
        let mut request = self.http.post(&self.url).json(&body).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: self.url.clone(),
            message: if e.is_timeout() {
                format!("{} did not answer within {timeout:?}", M::NAME)
            } else {
                e.to_string()
            },
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let value: Value = serde_json::from_str(&text).map_err(|_| ClientError::Decode {
            method: M::NAME,
            message: format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
        })?;
        decode_response::<M::Ok>(M::NAME, value)
    }

    /// Opens channel method `M` over a new WebSocket connection and streams its values; the
    /// stream ends when the server closes the channel or the connection drops.
    pub async fn subscribe<M: RpcChannel>(
        &self,
        params: M::Params,
    ) -> Result<BoxStream<'static, Result<M::Item, ClientError>>, ClientError> {
        let ws_url = self.url.replacen("http", "ws", 1);
        let unreachable = |message: String| ClientError::Unreachable {
            url: ws_url.clone(),
            message,
        };
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| unreachable(e.to_string()))?;
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::ApiInfo("token is not a valid header".into()))?;
            request.headers_mut().insert("Authorization", value);
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let params = encode_params::<M>(&params).map_err(|error| ClientError::Rpc {
            method: M::NAME,
            error,
        })?;
        let open =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": M::NAME, "params": params});
        socket
            .send(Message::Text(open.to_string().into()))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // The first answer is the channel id (or an error).
        let channel: Value = loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value =
                        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
                            method: M::NAME,
                            message: e.to_string(),
                        })?;
                    if value.get("id").is_some_and(|id| *id == 1) {
                        break decode_response::<Value>(M::NAME, value)?;
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(unreachable(e.to_string())),
                None => return Err(unreachable("connection closed".into())),
            }
        };
        let stream = futures::stream::unfold(Some(socket), move |socket| {
            let channel = channel.clone();
            async move {
                let mut socket = socket?;
                loop {
                    let text = match socket.next().await {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None => return None,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            let error = ClientError::Unreachable {
                                url: String::new(),
                                message: e.to_string(),
                            };
                            return Some((Err(error), None));
                        }
                    };
                    let Ok(value) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    let method = value.get("method").and_then(Value::as_str);
                    let params = value.get("params").and_then(Value::as_array);
                    match (method, params) {
                        (Some("xrpc.ch.val"), Some(p)) if p.first() == Some(&channel) => {
                            let item = p.get(1).cloned().unwrap_or(Value::Null);
                            let item = serde_json::from_value::<M::Item>(item).map_err(|e| {
                                ClientError::Decode {
                                    method: M::NAME,
                                    message: e.to_string(),
                                }
                            });
                            return Some((item, Some(socket)));
                        }
                        (Some("xrpc.ch.close"), Some(p)) if p.first() == Some(&channel) => {
                            return None;
                        }
                        _ => continue,
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
}

fn decode_response<T: serde::de::DeserializeOwned>(
    method: &'static str,
    mut value: Value,
) -> Result<T, ClientError> {
    if let Some(error) = value.get_mut("error").filter(|e| !e.is_null()) {
        let error: RpcError = serde_json::from_value(error.take())
            .unwrap_or_else(|_| RpcError::internal("malformed error object"));
        return Err(ClientError::Rpc { method, error });
    }
    let result = value
        .get_mut("result")
        .map(Value::take)
        .unwrap_or(Value::Null);
    serde_json::from_value(result).map_err(|e| ClientError::Decode {
        method,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_info_parses_lotus_connection_strings() {
        let info = ApiInfo::parse("eyJhbGc:/ip4/127.0.0.1/tcp/1234/http").expect("parse");
        assert_eq!(info.base, "http://127.0.0.1:1234");
        assert_eq!(info.token.as_deref(), Some("eyJhbGc"));
        let info = ApiInfo::parse("/ip6/::1/tcp/99/http").expect("parse");
        assert_eq!(info.base, "http://[::1]:99");
        assert_eq!(info.token, None);
        assert!(ApiInfo::parse("nonsense").is_err());
        assert!(ApiInfo::parse("t:/ip4/1.2.3.4/udp/1/http").is_err());
        assert_eq!(
            ApiInfo::format("T", "127.0.0.1", 1234),
            "T:/ip4/127.0.0.1/tcp/1234/http"
        );
    }
}
