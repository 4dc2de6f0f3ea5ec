//! The hub's read-only status view: one static page (`GET /status`) and its script and style,
//! served on the hub's private API listener. The page holds no data: its script calls the
//! hub's JSON-RPC API with a read token that the operator hands it in the URL's fragment
//! (`nelumbo-miner status-url` prints such a link), so the view shows exactly what the API
//! and the CLI show, and needs no permission of its own.
//!
//! The responses forbid everything the page does not need (a strict Content-Security-Policy:
//! only this origin's script, style and API; no framing), and the script writes whatever it
//! shows as text, never as HTML: spoke names and versions come from spokes, which the hub does
//! not trust.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const PAGE: &str = include_str!("status.html");
const SCRIPT: &str = include_str!("status.js");
const STYLE: &str = include_str!("status.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// `GET /status`, `/status.js` and `/status.css`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/status",
            get(|| async { serve("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/status.js",
            get(|| async { serve("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/status.css",
            get(|| async { serve("text/css; charset=utf-8", STYLE) }),
        )
}

fn serve(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
