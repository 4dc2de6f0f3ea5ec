//! The hub API's errors as a spoke must tell them apart: a refusal (the same call will be
//! refused again), the chain or another dependency being away (call again later), and the
//! specific answers a spoke acts on. Each has its own JSON-RPC error code.

use nelumbo_rpc::RpcError;

/// An error a hub method answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The call itself is refused (bad input, against the hub's policy); the message says why.
    #[error("{0}")]
    Refused(String),
    /// Something the hub depends on (the chain) is away or slow: nothing was refused, call
    /// again later.
    #[error("{0}")]
    Unavailable(String),
    /// `MarketPublishDeals`: the hub does not hold the deal's piece; upload it, then call again.
    #[error("{0}")]
    PieceMissing(String),
}

impl ApiError {
    /// go-jsonrpc's code for a method's error.
    pub const REFUSED: i64 = RpcError::METHOD_FAILED;
    pub const UNAVAILABLE: i64 = RpcError::UNAVAILABLE;
    pub const PIECE_MISSING: i64 = 3;

    pub fn code(&self) -> i64 {
        match self {
            Self::Refused(_) => Self::REFUSED,
            Self::Unavailable(_) => Self::UNAVAILABLE,
            Self::PieceMissing(_) => Self::PIECE_MISSING,
        }
    }

    /// What a caller reads from the wire; unknown codes are refusals.
    pub fn from_rpc(error: &RpcError) -> Self {
        match error.code {
            Self::UNAVAILABLE => Self::Unavailable(error.message.clone()),
            Self::PIECE_MISSING => Self::PieceMissing(error.message.clone()),
            _ => Self::Refused(error.message.clone()),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::Refused(message.into())
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }
}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> Self {
        let code = e.code();
        RpcError::new(code, e.to_string())
    }
}

/// A chain call that failed: the chain was away or slow (unavailable), or it answered with an
/// error (which the hub passes on as a refusal).
pub fn from_chain_error(what: &str, e: &nelumbo_rpc::ClientError) -> ApiError {
    if e.is_retryable() {
        ApiError::Unavailable(format!(
            "{what}: the hub cannot reach its chain node right now ({e}); try again later"
        ))
    } else {
        ApiError::Refused(format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for e in [
            ApiError::refused("no"),
            ApiError::unavailable("later"),
            ApiError::PieceMissing("upload it".into()),
        ] {
            let wire: RpcError = e.clone().into();
            assert_eq!(ApiError::from_rpc(&wire), e);
        }
        assert_eq!(
            ApiError::from_rpc(&RpcError::new(-32602, "bad params")),
            ApiError::refused("bad params")
        );
    }
}
