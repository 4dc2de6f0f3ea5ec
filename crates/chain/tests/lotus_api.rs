//! The chain as a Lotus JSON-RPC client sees it: raw HTTP and WebSocket requests with Lotus
//! method names, positional params and Lotus JSON; tokens with Lotus's permissions; malformed
//! requests answered with JSON-RPC errors, never a crash.

mod common;

use std::process::Command;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn insecure_devnet() -> Devnet {
    Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        "250",
    ])
    .await
}

/// A token made by the CLI, as an operator would make one.
fn token(devnet: &Devnet, perm: &str) -> String {
    let output = Command::new(chain_binary())
        .args(["--repo", devnet.repo.to_str().expect("utf-8")])
        .args(["auth", "create-token", "--perm", perm])
        .output()
        .expect("auth create-token");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

async fn post(url: &str, token: Option<&str>, content_type: &str, body: String) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {text:?}"));
    (status, value)
}

fn call(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn is_cid(value: &Value) -> bool {
    value["/"].as_str().is_some_and(|s| s.starts_with("baf"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lotus_clients_get_lotus_json() {
    let devnet = insecure_devnet().await;
    let url = devnet.url.clone();
    let v0 = url.replace("/rpc/v1", "/rpc/v0");

    // Some Lotus clients send text/plain; both versions of the path answer.
    for (endpoint, content_type) in [(&url, "text/plain"), (&v0, "application/json")] {
        let (status, answer) = post(
            endpoint,
            None,
            content_type,
            call("Filecoin.Version", json!([])),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(
            keys(&answer["result"]),
            ["APIVersion", "Agent", "BlockDelay", "Version"]
        );
        assert!(answer["result"]["APIVersion"].is_u64());
    }

    let head = devnet.raw_ok("Filecoin.ChainHead", json!([])).await;
    assert_eq!(keys(&head), ["Blocks", "Cids", "Height"]);
    assert!(head["Cids"].as_array().expect("Cids").iter().all(is_cid));
    let block = &head["Blocks"][0];
    for field in [
        "Miner",
        "Ticket",
        "ElectionProof",
        "BeaconEntries",
        "WinPoStProof",
        "Parents",
        "ParentWeight",
        "Height",
        "ParentStateRoot",
        "ParentMessageReceipts",
        "Messages",
        "BLSAggregate",
        "Timestamp",
        "BlockSig",
        "ForkSignaling",
        "ParentBaseFee",
    ] {
        assert!(
            block.get(field).is_some(),
            "block header lacks {field}: {block}"
        );
    }
    assert!(
        block["ParentWeight"].is_string(),
        "big integers are strings"
    );
    assert!(block["ParentBaseFee"].is_string());
    assert!(is_cid(&block["ParentStateRoot"]));

    // A transfer, then the message, its receipt and the actors as Lotus shows them.
    let faucet = devnet
        .raw_ok("Filecoin.WalletDefaultAddress", json!([]))
        .await;
    let faucet = faucet.as_str().expect("address").to_string();
    assert!(faucet.starts_with("t1"), "{faucet}");
    let to = devnet.raw_ok("Filecoin.WalletNew", json!(["bls"])).await;
    let to = to.as_str().expect("address").to_string();
    assert!(to.starts_with("t3"), "{to}");
    let message = json!({
        "Version": 0, "To": to, "From": faucet, "Nonce": 0, "Value": "1500000000000000000",
        "GasLimit": 0, "GasFeeCap": "0", "GasPremium": "0", "Method": 0, "Params": null
    });
    let estimated = devnet
        .raw_ok(
            "Filecoin.GasEstimateMessageGas",
            json!([message, {"MaxFee": "0"}, []]),
        )
        .await;
    assert!(estimated["GasLimit"].as_u64().expect("GasLimit") > 0);
    assert!(estimated["GasFeeCap"].is_string());
    let signed = devnet
        .raw_ok("Filecoin.MpoolPushMessage", json!([message, null]))
        .await;
    assert_eq!(keys(&signed), ["CID", "Message", "Signature"]);
    assert_eq!(
        signed["Signature"]["Type"], 1,
        "secp256k1 signatures are type 1"
    );
    let cid = signed["CID"].clone();
    let lookup = devnet
        .raw_ok("Filecoin.StateWaitMsg", json!([cid, 1, -1, true]))
        .await;
    assert_eq!(
        keys(&lookup),
        ["Height", "Message", "Receipt", "ReturnDec", "TipSet"]
    );
    assert_eq!(lookup["Message"], cid);
    assert_eq!(lookup["Receipt"]["ExitCode"], 0);
    assert!(lookup["Receipt"].get("GasUsed").is_some());
    assert!(
        lookup["TipSet"]
            .as_array()
            .expect("TipSet")
            .iter()
            .all(is_cid)
    );
    let search = devnet
        .raw_ok("Filecoin.StateSearchMsg", json!([[], cid, -1, true]))
        .await;
    assert_eq!(search["Height"], lookup["Height"]);
    let got = devnet
        .raw_ok("Filecoin.ChainGetMessage", json!([cid]))
        .await;
    assert_eq!(got["Value"], "1500000000000000000");
    assert_eq!(got["To"], to);
    // A secp256k1 message has two CIDs: the signed one the pool and StateWaitMsg use, and the
    // unsigned one that ChainGetMessage's message carries, as in Lotus.
    assert_eq!(got["CID"], signed["Message"]["CID"]);
    assert_ne!(got["CID"], cid);

    let balance = devnet.raw_ok("Filecoin.WalletBalance", json!([to])).await;
    assert_eq!(balance, "1500000000000000000");
    let actor = devnet
        .raw_ok("Filecoin.StateGetActor", json!([to, []]))
        .await;
    assert_eq!(
        keys(&actor),
        ["Balance", "Code", "DelegatedAddress", "Head", "Nonce"]
    );
    assert!(is_cid(&actor["Code"]));
    let id = devnet
        .raw_ok("Filecoin.StateLookupID", json!([to, []]))
        .await;
    let id = id.as_str().expect("id").to_string();
    assert!(id.starts_with("t0"), "{id}");
    let key = devnet
        .raw_ok("Filecoin.StateAccountKey", json!([id, []]))
        .await;
    assert_eq!(key, to.as_str());
    let version = devnet
        .raw_ok("Filecoin.StateNetworkVersion", json!([[]]))
        .await;
    assert!(version.as_u64().expect("network version") >= 21);
    let tipset = devnet
        .raw_ok("Filecoin.ChainGetTipSetByHeight", json!([1, []]))
        .await;
    assert_eq!(tipset["Height"], 1);

    // Sign and verify: bytes are base64, signatures {Type, Data}.
    let data = "aGVsbG8gbG90dXM="; // "hello lotus"
    let signature = devnet
        .raw_ok("Filecoin.WalletSign", json!([to, data]))
        .await;
    assert_eq!(signature["Type"], 2, "BLS signatures are type 2");
    let valid = devnet
        .raw_ok("Filecoin.WalletVerify", json!([to, data, signature]))
        .await;
    assert_eq!(valid, true);
    let other = devnet
        .raw_ok("Filecoin.WalletVerify", json!([to, "b3RoZXI=", signature]))
        .await;
    assert_eq!(other, false);

    // A miner's deadline, as Lotus's dline.Info.
    let miner = create_miner(
        &devnet,
        nelumbo_types::SectorSize::KIB_2.window_post_proof_number(),
    )
    .await;
    let deadline = devnet
        .raw_ok(
            "Filecoin.StateMinerProvingDeadline",
            json!([miner.address.to_string(), []]),
        )
        .await;
    assert_eq!(
        keys(&deadline),
        [
            "Challenge",
            "Close",
            "CurrentEpoch",
            "FaultCutoff",
            "FaultDeclarationCutoff",
            "Index",
            "Open",
            "PeriodStart",
            "WPoStChallengeLookback",
            "WPoStChallengeWindow",
            "WPoStPeriodDeadlines",
            "WPoStProvingPeriod",
        ]
    );
    assert_eq!(deadline["WPoStPeriodDeadlines"], 48);
    let info = devnet
        .raw_ok(
            "Filecoin.StateMinerInfo",
            json!([miner.address.to_string(), []]),
        )
        .await;
    assert_eq!(info["SectorSize"], 2048);
    assert_eq!(
        info["Worker"].as_str().map(|w| w.starts_with("t0")),
        Some(true)
    );

    // The chain serves exactly the methods of its checked-in reference (docs/api/chain.openrpc.json),
    // and every answer above fits the schema published there.
    let discovered = devnet.raw_ok("rpc.discover", json!([])).await;
    nelumbo_testkit::api::assert_serves_reference(&discovered, "chain");
    for (method, answer) in [
        ("Filecoin.ChainHead", &head),
        ("Filecoin.WalletDefaultAddress", &json!(faucet)),
        ("Filecoin.GasEstimateMessageGas", &estimated),
        ("Filecoin.MpoolPushMessage", &signed),
        ("Filecoin.StateWaitMsg", &lookup),
        ("Filecoin.StateSearchMsg", &search),
        ("Filecoin.ChainGetMessage", &got),
        ("Filecoin.WalletBalance", &balance),
        ("Filecoin.StateGetActor", &actor),
        ("Filecoin.StateLookupID", &json!(id)),
        ("Filecoin.StateNetworkVersion", &version),
        ("Filecoin.ChainGetTipSetByHeight", &tipset),
        ("Filecoin.WalletSign", &signature),
        ("Filecoin.WalletVerify", &valid),
        ("Filecoin.StateMinerProvingDeadline", &deadline),
        ("Filecoin.StateMinerInfo", &info),
    ] {
        nelumbo_testkit::api::assert_answer_fits("chain", method, answer);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_notify_streams_head_changes_over_websocket() {
    let devnet = insecure_devnet().await;
    let ws = devnet.url.replacen("http", "ws", 1);
    let mut request = ws.into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", token(&devnet, "read"))
            .parse()
            .expect("header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    socket
        .send(WsMessage::Text(
            call("Filecoin.ChainNotify", json!([])).into(),
        ))
        .await
        .expect("send");
    let mut next = async || loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("open")
            .expect("frame");
        if let WsMessage::Text(text) = message {
            return serde_json::from_str::<Value>(&text).expect("JSON");
        }
    };
    let opened = next().await;
    assert_eq!(opened["id"], 7);
    let channel = opened["result"].clone();
    assert!(channel.is_u64(), "the answer is a channel id: {opened}");

    let first = next().await;
    assert_eq!(first["method"], "xrpc.ch.val");
    assert_eq!(first["params"][0], channel);
    assert_eq!(first["params"][1][0]["Type"], "current");
    let current = first["params"][1][0]["Val"]["Height"]
        .as_i64()
        .expect("height");
    let mut last = current;
    for _ in 0..3 {
        let change = next().await;
        assert_eq!(change["method"], "xrpc.ch.val");
        let changes = change["params"][1].as_array().expect("changes");
        for c in changes {
            assert_eq!(c["Type"], "apply");
            let height = c["Val"]["Height"].as_i64().expect("height");
            assert!(height > last, "heights go up: {last} then {height}");
            last = height;
            assert_eq!(keys(&c["Val"]), ["Blocks", "Cids", "Height"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_low_permissions_get_json_rpc_errors() {
    let devnet = insecure_devnet().await;
    let url = devnet.url.clone();
    let admin = devnet.token.clone();
    let admin = Some(admin.as_str());
    let error_code = |answer: &Value| answer["error"]["code"].as_i64();

    // Not JSON, not a request, an unknown method, the wrong number or types of params.
    let (_, answer) = post(&url, admin, "application/json", "{not json".into()).await;
    assert_eq!(error_code(&answer), Some(-32700), "{answer}");
    let (_, answer) = post(&url, admin, "application/json", "[1, 2]".into()).await;
    assert!(
        answer
            .as_array()
            .is_some_and(|a| a.iter().all(|e| error_code(e) == Some(-32600))),
        "{answer}"
    );
    let (_, answer) = post(
        &url,
        admin,
        "application/json",
        call("Filecoin.NoSuchMethod", json!([])),
    )
    .await;
    assert_eq!(error_code(&answer), Some(-32601), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Filecoin.NoSuchMethod"), "{message}");
    let (_, answer) = post(
        &url,
        admin,
        "application/json",
        call("Filecoin.WalletBalance", json!([])),
    )
    .await;
    assert_eq!(error_code(&answer), Some(-32602), "{answer}");
    let (_, answer) = post(
        &url,
        admin,
        "application/json",
        call("Filecoin.ChainGetTipSetByHeight", json!([1, [], "extra"])),
    )
    .await;
    assert_eq!(error_code(&answer), Some(-32602), "{answer}");
    let (_, answer) = post(
        &url,
        admin,
        "application/json",
        call("Filecoin.ChainGetTipSetByHeight", json!(["one", []])),
    )
    .await;
    assert_eq!(error_code(&answer), Some(-32602), "{answer}");
    let (_, answer) = post(
        &url,
        admin,
        "application/json",
        call("Filecoin.StateLookupID", json!(["not-an-address", []])),
    )
    .await;
    assert!(answer.get("error").is_some(), "{answer}");

    // A body over the limit: a JSON-RPC error with HTTP 413, and the node lives on. The node
    // answers as soon as the limit is passed and closes the connection, so a client still
    // writing the rest may see its write cut off instead of the answer; both are a refusal.
    let huge = call("Filecoin.Version", json!(["x".repeat(64 << 20)]));
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .body(huge);
    if let Some(token) = admin {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => {
            assert_eq!(response.status().as_u16(), 413);
            let answer: Value = response.json().await.expect("a JSON answer");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("too large")),
                "{answer}"
            );
        }
        Err(e) => assert!(
            e.is_request() || e.is_body(),
            "the oversized request failed otherwise: {e:?}"
        ),
    }

    // Permissions: anonymous callers read; a write token cannot sign; a sign token can.
    let (_, answer) = post(
        &url,
        None,
        "application/json",
        call("Filecoin.ChainHead", json!([])),
    )
    .await;
    assert!(answer.get("result").is_some(), "{answer}");
    let faucet = devnet
        .raw_ok("Filecoin.WalletDefaultAddress", json!([]))
        .await;
    let sign = call("Filecoin.WalletSign", json!([faucet, "aGk="]));
    let (_, answer) = post(&url, None, "application/json", sign.clone()).await;
    assert_eq!(error_code(&answer), Some(1), "{answer}");
    let write = token(&devnet, "write");
    let (_, answer) = post(&url, Some(&write), "application/json", sign.clone()).await;
    assert_eq!(error_code(&answer), Some(1), "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sign")),
        "the error names the missing permission: {answer}"
    );
    let signer = token(&devnet, "sign");
    let (_, answer) = post(&url, Some(&signer), "application/json", sign).await;
    assert!(answer.get("result").is_some(), "{answer}");
    let (status, _) = post(
        &url,
        Some("not-a-token"),
        "application/json",
        call("Filecoin.ChainHead", json!([])),
    )
    .await;
    assert_eq!(status, 401);

    // After all of that, the node is alive and producing tipsets.
    let height = devnet.head().await;
    devnet.wait_height(height + 2).await;
}
