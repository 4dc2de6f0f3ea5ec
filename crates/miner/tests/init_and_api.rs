//! The hub from an operator's seat: `init` against a running chain (refusing to go on until the
//! owner is funded, then creating the miner actor once), the keystore's permissions, `run` with
//! its token-only API on loopback, the CLI, and health that follows the chain going away and
//! coming back without the hub falling over.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::StateMinerInfo;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_testkit::chain::Devnet;
use serde_json::{Value, json};

fn miner(repo: &Path, args: &[&str]) -> Output {
    Command::new(nelumbo_testkit::binary("nelumbo-miner"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .expect("run nelumbo-miner")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A chain connection string with a `sign` token, as an operator would make one.
fn chain_api_info(devnet: &Devnet) -> String {
    let output = Command::new(nelumbo_testkit::chain::chain_binary())
        .arg("--repo")
        .arg(&devnet.repo)
        .args(["auth", "api-info", "--perm", "sign"])
        .output()
        .expect("api-info");
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .trim_start_matches("FULLNODE_API_INFO=")
        .to_string()
}

struct Hub {
    child: Child,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ready_state(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/health/ready"))
        .await
        .expect("health");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_one_miner_and_run_serves_a_token_only_api() {
    let mut devnet = Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        "250",
    ])
    .await;
    let repo = devnet.dir.path().join("miner");
    let repo_str = repo.to_str().expect("utf-8").to_string();
    let chain_api = chain_api_info(&devnet);
    let init_args = [
        "init",
        "--sector-size",
        "2KiB",
        "--chain-api",
        chain_api.as_str(),
        "--proof-mode",
        "insecure-testing",
        "--listen",
        "127.0.0.1:0",
    ];

    // Unfunded: init stops, says what to do, and keeps its keys for the next run.
    let output = miner(&repo, &init_args);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(message.contains("fund it"), "{message}");
    let owner = message
        .split("nelumbo-chain faucet ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no owner address in {message}"))
        .to_string();
    let owner = nelumbo_chain_api::json::parse_address(&owner).expect("owner address");
    devnet.fund(owner, 100).await;

    let output = miner(&repo, &init_args);
    assert!(output.status.success(), "{}", text(&output));
    let printed = text(&output);
    let actor = printed
        .split("miner ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("miner address")
        .to_string();
    assert!(actor.starts_with("t0"), "{printed}");
    let output = miner(&repo, &init_args);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("already initialised"),
        "{}",
        text(&output)
    );

    // The chain knows the miner: its owner is ours, its sectors are 2 KiB.
    let address = nelumbo_chain_api::json::parse_address(&actor).expect("actor");
    let info = devnet
        .client
        .call::<StateMinerInfo>((Addr(address), TipSetKey::head()))
        .await
        .expect("miner info");
    assert_eq!(info.sector_size, 2048);
    // WindowPoSt has its own control address, on chain, distinct from the worker.
    let miner_json: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("miner.json")).expect("miner.json"),
    )
    .expect("json");
    let control = nelumbo_chain_api::json::parse_address(
        miner_json["Control"]
            .as_str()
            .expect("a control address in miner.json"),
    )
    .expect("control address");
    assert_eq!(info.control_addresses.len(), 1, "{info:?}");
    let control_id = devnet
        .client
        .call::<nelumbo_chain_api::methods::StateLookupID>((Addr(control), TipSetKey::head()))
        .await
        .expect("control id");
    assert_eq!(info.control_addresses[0], control_id.0);
    assert_ne!(info.control_addresses[0], info.worker);

    // Keys are owner-only files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let keys: Vec<_> = std::fs::read_dir(repo.join("keystore"))
            .expect("keystore")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(keys.len(), 3, "owner, worker and control");
        for key in keys {
            let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is readable by others", key.display());
        }
    }
    let config = std::fs::read_to_string(repo.join("config.toml")).expect("config");
    assert!(
        config.contains("# Where the hub API"),
        "config.toml explains itself"
    );

    // Run: the API listens on loopback and answers only with a token.
    let log = std::fs::File::create(devnet.dir.path().join("miner.log")).expect("log");
    let _hub = Hub {
        child: Command::new(nelumbo_testkit::binary("nelumbo-miner"))
            .args(["--repo", &repo_str, "run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the hub"),
    };
    wait_for("the hub's api file", async || repo.join("api").exists()).await;
    let api = std::fs::read_to_string(repo.join("api")).expect("api");
    assert!(api.starts_with("/ip4/127.0.0.1/tcp/"), "{api}");
    let port = api.split('/').nth(4).expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let rpc = format!("{base}/rpc/v1");
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "Nelumbo.ActorAddress", "params": []});
    let anonymous = reqwest::Client::new()
        .post(&rpc)
        .json(&request)
        .send()
        .await
        .expect("post");
    let status = anonymous.status().as_u16();
    let body: Value = anonymous.json().await.expect("json");
    assert_eq!(status, 401, "an anonymous call was answered: {body}");
    assert!(body.get("result").is_none(), "{body}");
    // Nothing without a token: not even what the API offers, nor a WebSocket.
    let discover = reqwest::Client::new()
        .post(&rpc)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "rpc.discover", "params": []}))
        .send()
        .await
        .expect("post");
    assert_eq!(discover.status().as_u16(), 401);
    let socket = tokio_tungstenite::connect_async(rpc.replacen("http", "ws", 1)).await;
    assert!(socket.is_err(), "a websocket opened without a token");
    let forged = reqwest::Client::new()
        .post(&rpc)
        .bearer_auth("eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJhZG1pbiJdfQ.bad")
        .json(&request)
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status().as_u16(), 401);
    let output = miner(&repo, &["auth", "create-token", "--perm", "read"]);
    assert!(output.status.success(), "{}", text(&output));
    let read_token = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let answer: Value = reqwest::Client::new()
        .post(&rpc)
        .bearer_auth(&read_token)
        .json(&request)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["result"], actor.as_str(), "{answer}");

    // The API describes itself as its checked-in reference (docs/api/hub.openrpc.json) does:
    // every method defined is served, and the answers fit the schemas published there.
    let call = async |method: &str, params: Value| {
        nelumbo_testkit::api::raw_call(&rpc, &read_token, method, params).await
    };
    let discovered = call("rpc.discover", json!([])).await;
    nelumbo_testkit::api::assert_serves_reference(&discovered, "hub");
    for method in [
        "Nelumbo.Version",
        "Nelumbo.ActorAddress",
        "Nelumbo.MinerInfo",
        "Nelumbo.ChainHead",
        "Nelumbo.SectorsList",
        "Nelumbo.SectorsSummary",
        "Nelumbo.ProvingInfo",
        "Nelumbo.ProvingDeadlines",
        "Nelumbo.SpokesList",
        "Nelumbo.WorkersList",
    ] {
        let answer = call(method, json!([])).await;
        nelumbo_testkit::api::assert_answer_fits("hub", method, &answer);
    }
    let balance = call("Nelumbo.StateMarketBalance", json!([actor])).await;
    nelumbo_testkit::api::assert_answer_fits("hub", "Nelumbo.StateMarketBalance", &balance);

    // The CLI talks to the running hub.
    let output = miner(&repo, &["info"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains(&actor), "{}", text(&output));
    assert!(text(&output).contains("2KiB"), "{}", text(&output));
    let output = miner(&repo, &["auth", "api-info", "--perm", "write"]);
    assert!(
        text(&output).starts_with("MINER_API_INFO=ey"),
        "{}",
        text(&output)
    );

    // Health follows the chain: ready, then not while it is down, then ready again.
    wait_for("the hub to be ready", async || {
        ready_state(&base).await.0 == 200
    })
    .await;
    devnet.stop(false);
    wait_for("the hub to notice the chain is gone", async || {
        let (status, checks) = ready_state(&base).await;
        status == 503 && checks["chain"]["state"] == "notready"
    })
    .await;
    devnet.run().await;
    wait_for("the hub to reconnect", async || {
        ready_state(&base).await.0 == 200
    })
    .await;
}
