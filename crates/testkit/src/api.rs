//! The APIs' checked-in references (`docs/api/*.openrpc.json`, kept current by each API crate's
//! unit test) against what the running daemons serve: `rpc.discover` must answer the reference
//! itself (so every method defined is served, and nothing else), and real answers must fit the
//! reference's result schemas (so the schemas describe the wire, not just the Rust types).

use std::path::PathBuf;

use serde_json::{Value, json};

/// Sends one raw JSON-RPC request (a Lotus client's view) to `url` with `token` and returns
/// the whole response object.
pub async fn raw_response(url: &str, token: &str, method: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{method}: the answer is not JSON: {e}"))
}

/// Calls `method` at `url` with `token` and returns its result as the wire carries it (no Rust
/// type in between); an error answer fails the test.
pub async fn raw_call(url: &str, token: &str, method: &str, params: Value) -> Value {
    let mut answer = raw_response(url, token, method, params.clone()).await;
    assert!(
        answer.get("error").is_none(),
        "{method}({params}) failed: {answer}"
    );
    answer["result"].take()
}

/// The checked-in OpenRPC document of API `name` (`hub`, `markets` or `chain`).
pub fn reference(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../docs/api/{name}.openrpc.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn method_names(document: &Value) -> Vec<String> {
    document["methods"]
        .as_array()
        .map(|methods| {
            methods
                .iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `discovered`, a running daemon's answer to `rpc.discover`, is the reference of API `name`.
pub fn assert_serves_reference(discovered: &Value, name: &str) {
    let reference = reference(name);
    assert_eq!(
        method_names(discovered),
        method_names(&reference),
        "the methods served differ from the methods defined in docs/api/{name}.openrpc.json"
    );
    assert!(
        *discovered == reference,
        "rpc.discover differs from docs/api/{name}.openrpc.json"
    );
}

/// `answer`, the result of calling `method` on API `name`, fits the result schema its
/// reference gives.
pub fn assert_answer_fits(name: &str, method: &str, answer: &Value) {
    let reference = reference(name);
    let entry = reference["methods"]
        .as_array()
        .and_then(|methods| methods.iter().find(|m| m["name"] == method))
        .unwrap_or_else(|| panic!("{method} is not in docs/api/{name}.openrpc.json"));
    // The result's schema, with the shared types where its references point.
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "allOf": [entry["result"]["schema"]],
        "components": reference["components"],
    });
    let validator = jsonschema::draft7::new(&schema)
        .unwrap_or_else(|e| panic!("the schema of {method} in {name}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(answer)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method}'s answer does not fit its schema in docs/api/{name}.openrpc.json:\n{}\nanswer: {answer}",
        errors.join("\n")
    );
}
