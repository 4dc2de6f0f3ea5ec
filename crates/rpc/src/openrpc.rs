//! The registry of every method defined with `rpc_method!` and the OpenRPC document built
//! from it.
//!
//! Each `rpc_method!` adds its definition to [`METHODS`] (a link-time list, so a method cannot
//! be defined without being listed). An API is a namespace (`Nelumbo.` for the hub,
//! `Markets.` for a markets process, `Filecoin.` for the chain); its reference is
//! [`openrpc_document`] of [`definitions`] in that namespace, which each API crate checks in
//! under `docs/api/` and each server answers to `rpc.discover`.

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Value, json};

use crate::method::RpcMethod;
use crate::permission::Permission;

/// One method's definition, as the registry holds it.
#[derive(Debug, Clone, Copy)]
pub struct MethodDef {
    pub name: &'static str,
    pub params: &'static [&'static str],
    pub permission: Permission,
    pub also_allowed: &'static [Permission],
    pub description: &'static str,
    pub channel: bool,
    param_schemas: fn(&mut SchemaGenerator) -> Vec<Schema>,
    result_schema: fn(&mut SchemaGenerator) -> Schema,
}

impl MethodDef {
    /// The definition of `M`.
    pub const fn of<M: RpcMethod>() -> Self {
        Self {
            name: M::NAME,
            params: M::PARAMS,
            permission: M::PERMISSION,
            also_allowed: M::ALSO_ALLOWED,
            description: M::DESCRIPTION,
            channel: M::CHANNEL,
            param_schemas: M::param_schemas,
            result_schema: M::result_schema,
        }
    }

    /// The method's OpenRPC object; its schemas refer to `generator`'s definitions.
    fn openrpc(&self, generator: &mut SchemaGenerator) -> Value {
        let schemas = (self.param_schemas)(generator);
        assert_eq!(
            schemas.len(),
            self.params.len(),
            "{}: one name per parameter type",
            self.name
        );
        let params: Vec<Value> = self
            .params
            .iter()
            .zip(schemas)
            .map(|(name, schema)| json!({"name": name, "required": true, "schema": schema}))
            .collect();
        let result = if self.channel {
            json!({
                "name": "channel",
                "description": "A channel (WebSocket only): each value the channel carries has this schema.",
                "schema": (self.result_schema)(generator),
            })
        } else {
            json!({"name": "result", "schema": (self.result_schema)(generator)})
        };
        json!({
            "name": self.name,
            "summary": self.description,
            "paramStructure": "by-position",
            "params": params,
            "result": result,
            "x-permission": self.permission,
            "x-also-allowed": self.also_allowed,
            "x-channel": self.channel,
        })
    }
}

/// Every method defined with `rpc_method!` in the crates linked into this program.
#[linkme::distributed_slice]
pub static METHODS: [MethodDef];

/// The methods defined in `namespace` (a wire-name prefix such as `"Nelumbo."`), by name.
pub fn definitions(namespace: &str) -> Vec<MethodDef> {
    let mut defs: Vec<MethodDef> = METHODS
        .iter()
        .filter(|d| d.name.starts_with(namespace))
        .copied()
        .collect();
    defs.sort_by_key(|d| d.name);
    defs
}

/// The OpenRPC 1.2.6 document of `methods`: parameters and results as JSON Schema (draft 7),
/// the types they share under `components.schemas`, and each method's permissions (`x-`
/// fields). Its version is Nelumbo's (every crate of the workspace shares it).
pub fn openrpc_document(title: &str, methods: &[MethodDef]) -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let mut settings = SchemaSettings::draft07();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let mut sorted = methods.to_vec();
    sorted.sort_by_key(|d| d.name);
    let methods: Vec<Value> = sorted.iter().map(|d| d.openrpc(&mut generator)).collect();
    json!({
        "openrpc": "1.2.6",
        "info": {
            "title": title,
            "version": version,
            "description": "Positional JSON-RPC 2.0 over HTTP POST and WebSocket at /rpc/v0 and /rpc/v1, with a bearer token (Lotus's JWTs). x-permission is the operator's permission a method needs; x-also-allowed lists others that allow it too.",
        },
        "methods": methods,
        "components": {"schemas": generator.take_definitions(true)},
    })
}

/// For each API's test: `document` must equal the checked-in file at `path`. With
/// `NELUMBO_UPDATE_API_DOCS=1` the file is written instead (after an API change; review the
/// diff like code).
pub fn check_checked_in(path: &std::path::Path, document: &Value) {
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(document).expect("a JSON value prints")
    );
    if std::env::var_os("NELUMBO_UPDATE_API_DOCS").is_some() {
        std::fs::write(path, &text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == text,
        "{} is not the API's OpenRPC document as the method definitions give it; after changing \
         the API, run the tests with NELUMBO_UPDATE_API_DOCS=1 and review the diff",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::rpc_method!(Echo, "OpenRpcTest.Echo", Read | Spoke, "Echoes.",
        ["text", "times"] (String, Option<u32>) -> Vec<String>);
    crate::rpc_method!(Ticks, "OpenRpcTest.Ticks", Read, "Counts.", [] () -> u64, channel of u32);

    #[test]
    fn definitions_are_listed_by_namespace_with_schemas() {
        let defs = definitions("OpenRpcTest.");
        let names: Vec<&str> = defs.iter().map(|d| d.name).collect();
        assert_eq!(names, ["OpenRpcTest.Echo", "OpenRpcTest.Ticks"]);
        let doc = openrpc_document("t", &defs);
        let echo = &doc["methods"][0];
        assert_eq!(echo["params"][0]["name"], "text");
        assert_eq!(echo["params"][0]["schema"]["type"], "string");
        assert_eq!(
            echo["params"][1]["schema"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(echo["result"]["schema"]["type"], "array");
        assert_eq!(echo["x-also-allowed"], json!(["spoke"]));
        let ticks = &doc["methods"][1];
        assert_eq!(ticks["x-channel"], true);
        assert_eq!(ticks["result"]["schema"]["type"], "integer");
        assert_eq!(ticks["result"]["schema"]["format"], "uint32");
    }
}
