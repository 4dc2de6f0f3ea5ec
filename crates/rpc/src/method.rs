//! One definition per method: its name, parameter names, permission and description as
//! constants, with typed parameters and result. Servers, clients and the OpenRPC document are
//! all built from these definitions, so they cannot drift apart.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::RpcError;
use crate::permission::Permission;

/// A JSON-RPC method. `Params` is a tuple (positional parameters, as Lotus uses), `()` for none.
pub trait RpcMethod: Send + Sync + 'static {
    /// The wire name, e.g. `Filecoin.ChainHead`.
    const NAME: &'static str;
    /// The parameter names, in order (for documentation; the wire is positional).
    const PARAMS: &'static [&'static str];
    /// The permission an operator's token needs.
    const PERMISSION: Permission;
    /// Other permissions that allow the method too (`spoke` for the methods spokes call).
    const ALSO_ALLOWED: &'static [Permission] = &[];
    const DESCRIPTION: &'static str;
    /// Whether the method answers with a channel (WebSocket only; see [`RpcChannel`]).
    const CHANNEL: bool = false;
    type Params: Serialize + DeserializeOwned + Send + 'static;
    type Ok: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
    /// The JSON schema of each parameter, in order (`rpc_method!` writes it from the types).
    fn param_schemas(generator: &mut SchemaGenerator) -> Vec<Schema>;
    /// The schema of what the method answers: its result, or for a channel method the values
    /// the channel carries.
    fn result_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<Self::Ok>()
    }
}

/// A method that answers with a channel of values over a WebSocket (go-jsonrpc's `<-chan`).
/// `rpc_method!(..., -> u64, channel of Item)` defines one.
pub trait RpcChannel: RpcMethod {
    type Item: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
}

/// Decodes positional parameters, checking their count first as go-jsonrpc does.
pub fn decode_params<M: RpcMethod>(raw: Option<&RawValue>) -> Result<M::Params, RpcError> {
    let expected = M::PARAMS.len();
    let text = raw.map(RawValue::get).unwrap_or("[]").trim();
    let text = if text == "null" { "[]" } else { text };
    let values: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| {
        RpcError::invalid_params(format!(
            "params of '{}' must be a JSON array of {expected} values ({})",
            M::NAME,
            M::PARAMS.join(", ")
        ))
    })?;
    if values.len() != expected {
        return Err(RpcError::invalid_params(format!(
            "wrong param count (method '{}'): {} != {expected} (expected: {})",
            M::NAME,
            values.len(),
            M::PARAMS.join(", ")
        )));
    }
    let text = if expected == 0 { "null" } else { text };
    serde_json::from_str(text)
        .map_err(|e| RpcError::invalid_params(format!("invalid params of '{}': {e}", M::NAME)))
}

/// Encodes parameters as the positional array the wire carries.
pub fn encode_params<M: RpcMethod>(params: &M::Params) -> Result<serde_json::Value, RpcError> {
    if M::PARAMS.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    let value = serde_json::to_value(params)
        .map_err(|e| RpcError::internal(format!("encode params of '{}': {e}", M::NAME)))?;
    Ok(match value {
        serde_json::Value::Array(_) => value,
        // A one-element tuple struct may encode as its element; wrap it.
        other => serde_json::Value::Array(vec![other]),
    })
}
