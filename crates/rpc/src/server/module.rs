//! The method registry and request dispatch, independent of the transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::RpcError;
use crate::method::{RpcChannel, RpcMethod, decode_params};
use crate::openrpc::{MethodDef, openrpc_document};
use crate::permission::Permissions;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type CallFn<S> = Arc<
    dyn Fn(S, Permissions, Option<Box<RawValue>>) -> BoxFuture<Result<Value, RpcError>>
        + Send
        + Sync,
>;
type ChannelFn<S> = Arc<
    dyn Fn(S, Option<Box<RawValue>>) -> BoxFuture<Result<BoxStream<'static, Value>, RpcError>>
        + Send
        + Sync,
>;

enum Handler<S> {
    Call(CallFn<S>),
    Channel(ChannelFn<S>),
}

struct Entry<S> {
    def: MethodDef,
    handler: Handler<S>,
}

/// The methods a server offers, each with its handler, over shared state `S`.
pub struct RpcModule<S> {
    state: S,
    /// The API's name in its OpenRPC document (`rpc.discover`).
    title: &'static str,
    methods: BTreeMap<&'static str, Entry<S>>,
}

impl<S> std::fmt::Debug for RpcModule<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcModule")
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One JSON-RPC request as it arrives.
#[derive(Debug, Deserialize)]
pub(crate) struct Request {
    #[serde(default)]
    pub jsonrpc: Option<String>,
    pub method: String,
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
    #[serde(default)]
    pub id: Option<Value>,
}

/// What answering one request produced.
pub(crate) enum Outcome {
    /// A complete response object.
    Response(Value),
    /// A channel method: the caller sends the channel id as the result and streams the values.
    Channel {
        id: Value,
        stream: BoxStream<'static, Value>,
    },
    /// A notification (no id): nothing to send.
    Nothing,
}

impl<S: Clone + Send + Sync + 'static> RpcModule<S> {
    /// A module named `title` in its OpenRPC document.
    pub fn new(title: &'static str, state: S) -> Self {
        Self {
            state,
            title,
            methods: BTreeMap::new(),
        }
    }

    /// Registers the handler of a method. Registering a name twice is a programming error.
    pub fn register<M, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        M: RpcMethod,
        F: Fn(S, M::Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Ok, RpcError>> + Send + 'static,
    {
        self.register_with_caller::<M, _, _>(move |state, _caller, params| handler(state, params))
    }

    /// Registers the handler of a method that needs to know who calls: it gets the caller's
    /// permissions and token name.
    pub fn register_with_caller<M, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        M: RpcMethod,
        F: Fn(S, Permissions, M::Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Ok, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let call: CallFn<S> = Arc::new(move |state, caller, raw| {
            let handler = handler.clone();
            Box::pin(async move {
                let params = decode_params::<M>(raw.as_deref())?;
                let ok = handler(state, caller, params).await?;
                Ok(serde_json::to_value(ok)?)
            })
        });
        assert!(
            !M::CHANNEL,
            "{} is a channel method: register_channel",
            M::NAME
        );
        self.insert::<M>(Handler::Call(call));
        self
    }

    /// Registers a channel method, answered over WebSocket connections only.
    pub fn register_channel<M, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        M: RpcChannel,
        F: Fn(S, M::Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BoxStream<'static, M::Item>, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let open: ChannelFn<S> = Arc::new(move |state, raw| {
            let handler = handler.clone();
            Box::pin(async move {
                let params = decode_params::<M>(raw.as_deref())?;
                let stream = handler(state, params).await?;
                Ok(stream
                    .map(|item| serde_json::to_value(item).unwrap_or(Value::Null))
                    .boxed())
            })
        });
        self.insert::<M>(Handler::Channel(open));
        self
    }

    fn insert<M: RpcMethod>(&mut self, handler: Handler<S>) {
        let previous = self.methods.insert(
            M::NAME,
            Entry {
                def: MethodDef::of::<M>(),
                handler,
            },
        );
        assert!(previous.is_none(), "method {} registered twice", M::NAME);
    }

    pub fn method_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.methods.keys().copied()
    }

    /// The methods a caller holding `permissions` may call.
    pub fn allowed_methods(&self, permissions: &Permissions) -> Vec<&'static str> {
        self.methods
            .iter()
            .filter(|(_, e)| permissions.allows_any(e.def.permission, e.def.also_allowed))
            .map(|(name, _)| *name)
            .collect()
    }

    /// The OpenRPC document of every method registered: names, parameters and results with
    /// their schemas, permissions and descriptions.
    pub fn openrpc(&self) -> Value {
        let defs: Vec<MethodDef> = self.methods.values().map(|e| e.def).collect();
        openrpc_document(self.title, &defs)
    }

    /// Answers one request for a caller holding `permissions`.
    pub(crate) async fn answer(
        &self,
        request: Request,
        permissions: &Permissions,
        channels_allowed: bool,
    ) -> Outcome {
        let id = request.id.clone();
        let respond = |result: Result<Value, RpcError>| match &id {
            None => Outcome::Nothing,
            Some(id) => Outcome::Response(response(id.clone(), result)),
        };
        if request.jsonrpc.as_deref().is_some_and(|v| v != "2.0") {
            return respond(Err(RpcError::invalid_request("jsonrpc must be \"2.0\"")));
        }
        if request.method == "rpc.discover" {
            // The API's shape is for callers the server knows.
            if permissions.is_empty() {
                return respond(Err(RpcError::failed(
                    "missing permission to invoke 'rpc.discover' (need a token)",
                )));
            }
            return respond(Ok(self.openrpc()));
        }
        let Some(entry) = self.methods.get(request.method.as_str()) else {
            return respond(Err(RpcError::method_not_found(&request.method)));
        };
        if !permissions.allows_any(entry.def.permission, entry.def.also_allowed) {
            let also: Vec<&str> = entry.def.also_allowed.iter().map(|p| p.as_str()).collect();
            let need = if also.is_empty() {
                format!("'{}'", entry.def.permission)
            } else {
                format!("'{}' or '{}'", entry.def.permission, also.join("' or '"))
            };
            return respond(Err(RpcError::failed(format!(
                "missing permission to invoke '{}' (need {need})",
                request.method
            ))));
        }
        let state = self.state.clone();
        match &entry.handler {
            Handler::Call(call) => respond(call(state, permissions.clone(), request.params).await),
            Handler::Channel(open) => {
                if !channels_allowed {
                    return respond(Err(RpcError::invalid_request(format!(
                        "'{}' returns a channel: call it over a WebSocket connection",
                        request.method
                    ))));
                }
                match (open(state, request.params).await, id) {
                    (Ok(stream), Some(id)) => Outcome::Channel { id, stream },
                    (Ok(_), None) => Outcome::Nothing,
                    (Err(e), Some(id)) => Outcome::Response(response(id, Err(e))),
                    (Err(_), None) => Outcome::Nothing,
                }
            }
        }
    }
}

/// A response object for request `id`.
pub(crate) fn response(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error}),
    }
}

/// A response to a request that could not be read far enough to find its id.
pub(crate) fn error_response(error: RpcError) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error})
}
