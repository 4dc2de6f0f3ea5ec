//! WebSocket connections: requests answered concurrently, and channel methods streamed with
//! go-jsonrpc's protocol: the response carries a channel id, values follow as `xrpc.ch.val`
//! notifications `[id, value]`, the end as `xrpc.ch.close` `[id]`; the client stops a channel
//! early with `xrpc.cancel` `[request id]`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::module::{Outcome, Request, error_response, response};
use crate::error::RpcError;
use crate::permission::Permissions;

/// Channels of one connection, by the id of the request that opened them.
type Channels = Arc<Mutex<HashMap<String, CancellationToken>>>;

pub(super) async fn serve<S: Clone + Send + Sync + 'static>(
    socket: WebSocket,
    shared: Arc<Shared<S>>,
    permissions: Permissions,
) {
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Value>(256);
    let connection = CancellationToken::new();
    let writer = {
        let connection = connection.clone();
        tokio::spawn(async move {
            while let Some(value) = rx.recv().await {
                if sink
                    .send(Message::Text(value.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            connection.cancel();
        })
    };
    let channels: Channels = Arc::default();
    let next_channel = Arc::new(AtomicU64::new(1));
    let permissions = Arc::new(permissions);

    loop {
        let message = tokio::select! {
            _ = connection.cancelled() => break,
            message = source.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text.to_string(),
            Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                tracing::debug!(%error, "websocket read failed");
                break;
            }
        };
        let request: Request = match serde_json::from_str(&text) {
            Ok(request) => request,
            Err(e) => {
                let error = match serde_json::from_str::<Value>(&text) {
                    Ok(_) => RpcError::invalid_request(format!("not a JSON-RPC request: {e}")),
                    Err(e) => RpcError::parse(format!("invalid JSON: {e}")),
                };
                let _ = tx.send(error_response(error)).await;
                continue;
            }
        };
        if request.method == "xrpc.cancel" {
            cancel(&channels, &request).await;
            continue;
        }
        let (shared, permissions, tx) = (shared.clone(), permissions.clone(), tx.clone());
        let (channels, next_channel, connection) =
            (channels.clone(), next_channel.clone(), connection.clone());
        tokio::spawn(async move {
            let key = request.id.as_ref().map(Value::to_string);
            match shared.module.answer(request, &permissions, true).await {
                Outcome::Response(value) => {
                    let _ = tx.send(value).await;
                }
                Outcome::Nothing => {}
                Outcome::Channel { id, mut stream } => {
                    let channel = next_channel.fetch_add(1, Ordering::Relaxed);
                    let stop = connection.child_token();
                    if let Some(key) = key.clone() {
                        channels.lock().await.insert(key, stop.clone());
                    }
                    if tx.send(response(id, Ok(channel.into()))).await.is_err() {
                        return;
                    }
                    loop {
                        let item = tokio::select! {
                            _ = stop.cancelled() => break,
                            item = stream.next() => item,
                        };
                        let Some(item) = item else { break };
                        let value = serde_json::json!({
                            "jsonrpc": "2.0", "method": "xrpc.ch.val", "params": [channel, item]
                        });
                        if tx.send(value).await.is_err() {
                            break;
                        }
                    }
                    let close = serde_json::json!({
                        "jsonrpc": "2.0", "method": "xrpc.ch.close", "params": [channel]
                    });
                    let _ = tx.send(close).await;
                    if let Some(key) = key {
                        channels.lock().await.remove(&key);
                    }
                }
            }
        });
    }
    // Stops this connection's channels; the writer ends once in-flight calls have dropped
    // their senders.
    connection.cancel();
    drop(writer);
}

async fn cancel(channels: &Channels, request: &Request) {
    let target = request
        .params
        .as_ref()
        .and_then(|p| serde_json::from_str::<Vec<Value>>(p.get()).ok())
        .and_then(|ids| ids.into_iter().next());
    if let Some(id) = target
        && let Some(token) = channels.lock().await.remove(&id.to_string())
    {
        token.cancel();
    }
}
