//! The JSON-RPC server and client end to end over real HTTP and WebSocket connections:
//! permissions, malformed requests, size limits and channels.

use std::time::Duration;

use futures::StreamExt;
use nelumbo_rpc::{
    ClientError, Permission, RpcClient, RpcError, RpcMethod, RpcModule, ServerConfig, TokenSecret,
    rpc_method, rpc_router,
};

rpc_method!(Add, "Test.Add", Read, "Adds two numbers.", ["a", "b"] (i64, i64) -> i64);
rpc_method!(Shared, "Test.Shared", Write | Spoke, "Operators and spokes.", [] () -> String);
rpc_method!(Secret, "Test.Secret", Sign, "Needs sign.", [] () -> String);
rpc_method!(Ticks, "Test.Ticks", Read, "Counts up.", ["count"] (u32) -> (), channel of u32);

const LIMIT: usize = 64 * 1024;

async fn start(secret: TokenSecret) -> String {
    start_with(secret, Some(Permission::Read)).await
}

async fn start_with(secret: TokenSecret, anonymous: Option<Permission>) -> String {
    let mut module = RpcModule::new("Test API", ());
    module.register_with_caller::<Shared, _, _>(|(), caller, ()| async move {
        Ok(caller.name().unwrap_or("(no name)").to_string())
    });
    module.register::<Add, _, _>(|(), (a, b)| async move {
        a.checked_add(b).ok_or_else(|| RpcError::failed("overflow"))
    });
    module.register::<Secret, _, _>(|(), ()| async { Ok("s3cret".to_string()) });
    module.register_channel::<Ticks, _, _>(|(), (count,)| async move {
        Ok(futures::stream::iter(0..count).boxed())
    });
    let router = rpc_router(
        module,
        ServerConfig {
            secret,
            anonymous,
            max_request_bytes: LIMIT,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/rpc/v1")
}

async fn raw(
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let value = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, value)
}

fn code(value: &serde_json::Value) -> i64 {
    value["error"]["code"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn calls_permissions_and_malformed_requests() {
    let secret = TokenSecret::generate();
    let url = start(secret.clone()).await;
    let anonymous = RpcClient::new(&url, None);
    assert_eq!(anonymous.call::<Add>((2, 3)).await.expect("add"), 5);

    // Permission: anonymous callers read only; a sign token may call Secret.
    let err = anonymous
        .call::<Secret>(())
        .await
        .expect_err("anonymous signed");
    assert!(
        err.to_string()
            .contains("missing permission to invoke 'Test.Secret' (need 'sign')"),
        "{err}"
    );
    let signer = RpcClient::new(&url, Some(secret.create_token(Permission::Sign)));
    assert_eq!(signer.call::<Secret>(()).await.expect("secret"), "s3cret");
    let writer = RpcClient::new(&url, Some(secret.create_token(Permission::Write)));
    assert!(writer.call::<Secret>(()).await.is_err());
    let forged = RpcClient::new(
        &url,
        Some(TokenSecret::generate().create_token(Permission::Admin)),
    );
    assert!(
        forged.call::<Add>((1, 1)).await.is_err(),
        "a token of another secret was accepted"
    );

    // Handler errors reach the caller.
    match anonymous.call::<Add>((i64::MAX, 1)).await {
        Err(ClientError::Rpc { error, .. }) => assert_eq!(error.message, "overflow"),
        other => panic!("expected an RPC error, got {other:?}"),
    }

    // Lotus clients may send text/plain.
    let (status, value) = raw(
        &url,
        "text/plain",
        r#"{"jsonrpc":"2.0","id":7,"method":"Test.Add","params":[1,2]}"#,
    )
    .await;
    assert_eq!(
        (status, value["result"].as_i64(), value["id"].as_i64()),
        (200, Some(3), Some(7))
    );

    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Test.Nope","params":[]}"#,
            RpcError::METHOD_NOT_FOUND,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Test.Add","params":[1]}"#,
            RpcError::INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Test.Add","params":[1,2,3]}"#,
            RpcError::INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Test.Add","params":["x",2]}"#,
            RpcError::INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Test.Add","params":{"a":1}}"#,
            RpcError::INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"#,
            RpcError::PARSE_ERROR,
        ),
        (r#"[1,2]"#, RpcError::INVALID_REQUEST),
        (r#""just a string""#, RpcError::INVALID_REQUEST),
    ];
    for (body, expected) in cases {
        let (status, value) = raw(&url, "application/json", body).await;
        assert_eq!(status, 200, "{body}");
        let got = match &value {
            serde_json::Value::Array(items) => code(&items[0]),
            single => code(single),
        };
        assert_eq!(got, expected, "{body}: {value}");
    }
    // A wrong-arity error names the method and the counts, as go-jsonrpc's does.
    let (_, value) = raw(
        &url,
        "application/json",
        r#"{"jsonrpc":"2.0","id":1,"method":"Test.Add","params":[1]}"#,
    )
    .await;
    assert!(
        value["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 != 2")),
        "{value}"
    );

    // A huge body is refused with a JSON-RPC error, and the server keeps serving.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"Test.Add","params":[1,"{}"]}}"#,
        "x".repeat(LIMIT * 2)
    );
    let (status, value) = raw(&url, "application/json", huge).await;
    assert_eq!(status, 413);
    assert!(
        value["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too large")),
        "{value}"
    );
    assert_eq!(
        anonymous.call::<Add>((1, 1)).await.expect("still serving"),
        2
    );

    // Channels need a websocket.
    let (_, value) = raw(
        &url,
        "application/json",
        r#"{"jsonrpc":"2.0","id":1,"method":"Test.Ticks","params":[3]}"#,
    )
    .await;
    assert_eq!(code(&value), RpcError::INVALID_REQUEST, "{value}");
}

#[tokio::test]
async fn channels_stream_over_websocket() {
    let url = start(TokenSecret::generate()).await;
    let client = RpcClient::new(&url, None);
    let values: Vec<u32> = client
        .subscribe::<Ticks>((5,))
        .await
        .expect("subscribe")
        .map(|v| v.expect("value"))
        .collect()
        .await;
    assert_eq!(values, vec![0, 1, 2, 3, 4]);

    // Several requests on one socket are answered independently.
    let (mut socket, _) = tokio_tungstenite::connect_async(url.replacen("http", "ws", 1))
        .await
        .expect("connect");
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    for id in 1..=3 {
        let request =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"Test.Add","params":[{id},{id}]}}"#);
        socket
            .send(Message::Text(request.into()))
            .await
            .expect("send");
    }
    socket
        .send(Message::Text("garbage".into()))
        .await
        .expect("send");
    let mut answers = Vec::new();
    while answers.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("answer in time")
            .expect("open")
            .expect("message");
        if let Message::Text(text) = message {
            answers.push(serde_json::from_str::<serde_json::Value>(&text).expect("json"));
        }
    }
    let mut sums: Vec<i64> = answers
        .iter()
        .filter_map(|a| a["result"].as_i64())
        .collect();
    sums.sort();
    assert_eq!(sums, vec![2, 4, 6]);
    assert!(answers.iter().any(|a| code(a) == RpcError::PARSE_ERROR));
    assert_eq!(Add::NAME, "Test.Add");
}

#[tokio::test]
async fn spoke_tokens_reach_only_what_names_spoke() {
    let secret = TokenSecret::generate();
    let url = start(secret.clone()).await;
    let spoke = RpcClient::new(
        &url,
        Some(secret.create_named_token(Permission::Spoke, Some("edge-1"))),
    );
    // The handler sees who called.
    assert_eq!(spoke.call::<Shared>(()).await.expect("shared"), "edge-1");
    let err = spoke.call::<Add>((1, 2)).await.expect_err("spoke read");
    assert!(err.to_string().contains("need 'read'"), "{err}");
    let err = RpcClient::new(&url, Some(secret.create_token(Permission::Read)))
        .call::<Shared>(())
        .await
        .expect_err("read called a write|spoke method");
    assert!(err.to_string().contains("need 'write' or 'spoke'"), "{err}");
    let admin = RpcClient::new(&url, Some(secret.create_token(Permission::Admin)));
    assert_eq!(admin.call::<Shared>(()).await.expect("admin"), "(no name)");
}

#[tokio::test]
async fn a_server_without_anonymous_access_answers_nothing_without_a_token() {
    let secret = TokenSecret::generate();
    let url = start_with(secret.clone(), None).await;
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"rpc.discover","params":[]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"Test.Add","params":[1,2]}"#,
    ] {
        let (status, value) = raw(&url, "application/json", body).await;
        assert_eq!(status, 401, "{body}: {value}");
        assert!(value.get("result").is_none(), "{value}");
    }
    // No WebSocket either.
    let refused = tokio_tungstenite::connect_async(url.replacen("http", "ws", 1)).await;
    assert!(refused.is_err(), "a websocket opened without a token");
    // With a token, the API describes itself.
    let (status, value) = reqwest::Client::new()
        .post(&url)
        .bearer_auth(secret.create_token(Permission::Read))
        .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"rpc.discover","params":[]}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("send");
    let value: serde_json::Value = value.json().await.expect("json");
    assert_eq!(status, 200);
    assert!(
        value["result"]["methods"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{value}"
    );
}

#[tokio::test]
async fn a_call_without_an_answer_in_time_is_unreachable_and_retryable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = RpcClient::new(format!("http://{addr}/rpc/v1"), None)
        .with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = client.call::<Add>((1, 2)).await.expect_err("no answer");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.is_retryable() && err.to_string().contains("did not answer"),
        "{err}"
    );
}
