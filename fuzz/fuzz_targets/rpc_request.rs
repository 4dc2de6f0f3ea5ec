//! The hub's JSON-RPC endpoint as a spoke (or anyone who reaches it) calls it: the token, from
//! `Authorization` or the query, and the body (one request or a batch), through the real
//! router with every method of the hub's API registered, so each method's parameters are
//! decoded into their real types. The handlers refuse, so only the parsing is exercised. The
//! answer is always a JSON-RPC response or a plain refusal, never a server error.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use nelumbo_miner_api::methods;
use nelumbo_rpc::{Permission, RpcError, RpcModule, ServerConfig, TokenSecret, rpc_router};
use tower::ServiceExt;

/// The hub's limit (`miner/src/daemon.rs`) is 16 MiB; a smaller one lets inputs reach it.
const MAX_REQUEST_BYTES: usize = 64 << 10;

const REFUSED: &str = "refused by the fuzz target";

struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
    spoke_token: String,
    admin_token: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let secret = TokenSecret::generate();
        let mut module = RpcModule::new("fuzz", ());
        macro_rules! refuse_all {
            ($($method:ident),* $(,)?) => {
                $(module.register::<methods::$method, _, _>(|_, _| async {
                    Err(RpcError::failed(REFUSED))
                });)*
            };
        }
        refuse_all!(
            Version,
            ActorAddress,
            ActorSectorSize,
            MinerInfo,
            SectorsPledge,
            SectorsStatus,
            SectorsList,
            SectorsSummary,
            ProvingInfo,
            ProvingDeadlines,
            SpokeHeartbeat,
            SpokesList,
            WorkersList,
            SpokesUnbind,
            MarketPublishDeals,
            SectorAddPieceToAny,
            PieceLocate,
            SectorsUnsealPiece,
            ChainHead,
            StateMarketBalance,
            StateMarketStorageDeal,
            StateVerifiedClientStatus,
            StateAccountKey,
            StateLookupID,
            MarketSignAsk,
            MarketSetPeerInfo,
        );
        let config = ServerConfig {
            secret: secret.clone(),
            anonymous: None,
            max_request_bytes: MAX_REQUEST_BYTES,
        };
        Server {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
            router: rpc_router(module, config),
            spoke_token: secret.create_named_token(Permission::Spoke, Some("spoke-1")),
            admin_token: secret.create_token(Permission::Admin),
        }
    })
}

#[derive(Debug, Arbitrary)]
enum Token {
    None,
    Spoke,
    Admin,
    /// A valid token with bytes changed.
    AlteredSpoke {
        at: usize,
        byte: u8,
    },
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Call {
    token: Token,
    /// In `?token=` rather than `Authorization`.
    in_query: bool,
    v1: bool,
    body: Vec<u8>,
}

fuzz_target!(|call: Call| {
    let server = server();
    let token = match call.token {
        Token::None => None,
        Token::Spoke => Some(server.spoke_token.clone()),
        Token::Admin => Some(server.admin_token.clone()),
        Token::AlteredSpoke { at, byte } => {
            let mut bytes = server.spoke_token.clone().into_bytes();
            let at = at % bytes.len();
            bytes[at] = byte;
            String::from_utf8(bytes).ok()
        }
        Token::Other(text) => Some(text),
    };
    let mut uri = String::from(if call.v1 { "/rpc/v1" } else { "/rpc/v0" });
    let mut request = Request::post(&uri);
    if let Some(token) = &token {
        if call.in_query {
            uri.push_str("?token=");
            uri.push_str(token);
            request = Request::post(&uri);
        } else {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
    }
    let sent = call.body;
    let Ok(request) = request
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(sent.clone()))
    else {
        return; // Not a valid URI or header: no HTTP server would pass it on.
    };
    let response = server
        .runtime
        .block_on(server.router.clone().oneshot(request))
        .expect("the router always answers");
    let status = response.status();
    assert!(
        [
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::PAYLOAD_TOO_LARGE
        ]
        .contains(&status),
        "answered {status}"
    );
    let body = server
        .runtime
        .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .expect("the body");
    if body.is_empty() {
        return;
    }
    let value: serde_json::Value = serde_json::from_slice(&body).expect("every answer is JSON");
    if status != StatusCode::OK {
        return;
    }
    let answers = match &value {
        serde_json::Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    // For a single request, the method it named.
    let method = serde_json::from_slice::<serde_json::Value>(&sent)
        .ok()
        .and_then(|v| v.get("method").and_then(|m| m.as_str()).map(str::to_string));
    for answer in answers {
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        if let Some(result) = answer.get("result") {
            // The handlers refuse: only the API's description succeeds.
            assert!(result["openrpc"].is_string(), "{answer}");
        }
        if answer["error"]["message"] == REFUSED {
            // The call reached its handler: the token must allow the method.
            assert!(
                token.is_some(),
                "a call without a token reached a handler: {answer}"
            );
            let spoke = token.as_deref() == Some(server.spoke_token.as_str());
            let admin = token.as_deref() == Some(server.admin_token.as_str());
            assert!(spoke || admin, "a bad token reached a handler: {answer}");
            if spoke && let Some(method) = &method {
                assert!(
                    methods::SPOKE_METHODS.contains(&method.as_str()),
                    "a spoke token reached {method}"
                );
            }
        }
    }
});
