//! JSON-RPC errors as go-jsonrpc reports them.

use serde::{Deserialize, Serialize};

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl RpcError {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    /// go-jsonrpc's code for an error returned by a method: the call was refused, and the same
    /// call will be refused again.
    pub const METHOD_FAILED: i64 = 1;
    /// The server cannot answer now because something it depends on is away (the chain behind
    /// the hub, say): the call was not refused and may succeed if made again later. go-jsonrpc
    /// leaves codes from 2 up to applications.
    pub const UNAVAILABLE: i64 = 2;

    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(Self::PARSE_ERROR, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_REQUEST, message)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            Self::METHOD_NOT_FOUND,
            format!("method '{method}' not found"),
        )
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_PARAMS, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Self::INTERNAL, message)
    }

    /// The method ran and failed: the message is for the caller.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Self::METHOD_FAILED, message)
    }

    /// The method cannot be answered now; calling again later may succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Self::UNAVAILABLE, message)
    }

    pub fn is_unavailable(&self) -> bool {
        self.code == Self::UNAVAILABLE
    }
}

impl From<serde_json::Error> for RpcError {
    fn from(e: serde_json::Error) -> Self {
        Self::internal(format!("encode result: {e}"))
    }
}
