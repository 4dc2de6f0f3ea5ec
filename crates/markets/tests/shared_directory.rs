//! Two markets processes on one PostgreSQL piece directory (a private server the test starts):
//! a deal taken by the first (deals and retrieval) is served over `/ipfs` by a retrieval-only
//! replica on another repo, which has no deal of its own and reads the piece through the hub;
//! it goes on serving with the first stopped. With the database stopped the replica answers
//! 503 with Retry-After and its readiness names the database; once it is back, both recover
//! with no restart.

use std::time::Duration;

use nelumbo_chain_api::methods::StateMinerInfo;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_markets_api::admin::{DealState, DealsList, Info};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::TestHub;
use nelumbo_testkit::markets::{TestClient, TestMarkets};
use nelumbo_testkit::postgres::PostgresServer;

const DIR_CAR: &str = "gwconf-dir-with-dag-cbor-with-links.car";
/// The CAR's root (a UnixFS directory).
const ROOT: &str = "bafybeia264q44a3kmfc2otctzu4egp2k235o3t7mslz2yjraymp4nv6asi";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gateway")
        .join(name)
}

/// The fixture's blocks by CID.
fn fixture_blocks() -> std::collections::HashMap<String, Vec<u8>> {
    let file = std::fs::File::open(fixture(DIR_CAR)).expect("fixture");
    let mut reader = nelumbo_car::CarReader::new(file).expect("car");
    let mut out = std::collections::HashMap::new();
    while let Some((section, data)) = reader.next_block().expect("block") {
        out.insert(section.cid.to_string(), data);
    }
    out
}

/// The miner's peer ID and addresses on chain.
async fn chain_peer_info(devnet: &Devnet, hub: &TestHub) -> (Vec<u8>, String) {
    let info = devnet
        .client
        .call::<StateMinerInfo>((hub.actor.into(), TipSetKey::head()))
        .await
        .expect("miner info");
    (info.peer_id.clone(), format!("{:?}", info.multiaddrs))
}

fn on_database(markets: &TestMarkets, url: &str) {
    // `public_url = ""` ends the same way: match the line from its start.
    markets.edit_config("\nurl = \"\"", &format!("\nurl = \"{url}\""));
}

/// GET `/ipfs/ROOT` as a CAR: the status, and the blocks when it is 200.
async fn fetch_car(base: &str) -> (u16, Option<String>, Vec<(String, Vec<u8>)>) {
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let response = http
        .get(format!("{base}/ipfs/{ROOT}"))
        .header("Accept", "application/vnd.ipld.car")
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().await.expect("body");
    let mut blocks = Vec::new();
    if status == 200 {
        let mut reader = nelumbo_car::CarReader::new(body.as_ref()).expect("a CAR");
        while let Some((section, data)) = reader.next_block().expect("a checked block") {
            blocks.push((section.cid.to_string(), data));
        }
    }
    (status, retry_after, blocks)
}

async fn ready(markets: &TestMarkets) -> (u16, String) {
    let response = reqwest::get(format!("{}/health/ready", markets.url))
        .await
        .expect("health");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

async fn wait_ready(markets: &TestMarkets, want: impl Fn(u16, &str) -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ready(markets).await;
        if want(status, &body) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: readiness is {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrieval_replica_serves_deals_taken_elsewhere_and_waits_out_the_database() {
    let mut database = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("postgres");
    let url = database.url();
    let (devnet, mut hub) = nelumbo_testkit::hub::insecure_deal_devnet().await;
    hub.run(&[]).await;

    // The deals process, on the shared directory.
    let mut deals = TestMarkets::init(&devnet, &hub);
    deals.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    on_database(&deals, &url);
    deals.run().await;
    // Start applied the schema; the CLI says so without the password.
    for (args, expected) in [
        (
            &["db", "status"][..],
            "piecedir: schema version 1 of 1 (up to date)",
        ),
        (&["db", "migrate"][..], "piece directory: up to date"),
    ] {
        let output = deals.cli(args);
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text}");
        assert!(
            text.contains("database: postgres://nelumbo@127.0.0.1:"),
            "{text}"
        );
    }
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 20).await;
    client.deal_cars_at_once(&hub.actor, &[fixture(DIR_CAR)], &deals);
    let list = deals.client.call::<DealsList>(()).await.expect("deals");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, DealState::Active, "{list:?}");

    // A retrieval replica: its own repo and identity, no deals, the same directory.
    let peer_info = chain_peer_info(&devnet, &hub).await;
    let mut replica = TestMarkets::init_with(&devnet, &hub, "replica", &["--skip-peer-info"]);
    on_database(&replica, &url);
    replica.run_services("retrieval").await;
    let replica_deals = replica.client.call::<DealsList>(()).await.expect("deals");
    assert!(replica_deals.is_empty(), "{replica_deals:?}");
    // The replica left the deals process's identity on chain (clients dial it for deals).
    let deals_peer = deals.client.call::<Info>(()).await.expect("info").peer_id;
    assert_eq!(
        libp2p::PeerId::from_bytes(&peer_info.0)
            .expect("a peer ID")
            .to_string(),
        deals_peer
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(chain_peer_info(&devnet, &hub).await, peer_info);

    let expected = fixture_blocks();
    for (who, base) in [
        ("the deals process", deals.retrieval_url.clone()),
        ("the replica", replica.retrieval_url.clone()),
    ] {
        let (status, _, blocks) = fetch_car(&base).await;
        assert_eq!(status, 200, "{who}");
        assert_eq!(
            blocks.len(),
            expected.len(),
            "{who}: every block of the DAG"
        );
        for (cid, data) in &blocks {
            assert_eq!(expected.get(cid), Some(data), "{who}: block {cid}");
        }
    }

    // The deals process stopped: the replica serves alone.
    deals.stop(false);
    let (status, _, blocks) = fetch_car(&replica.retrieval_url).await;
    assert_eq!(status, 200);
    assert_eq!(blocks.len(), expected.len());

    // The database stopped: 503 with Retry-After, and readiness names the database.
    wait_ready(&replica, |s, _| s == 200, "before the outage").await;
    tokio::task::block_in_place(|| database.stop());
    let (status, retry_after, _) = fetch_car(&replica.retrieval_url).await;
    assert_eq!(status, 503, "a lookup while the database is down");
    assert!(retry_after.is_some(), "503 without Retry-After");
    wait_ready(
        &replica,
        |s, body| s == 503 && body.contains("database"),
        "the outage",
    )
    .await;

    // Back: served again, ready again, with no restart.
    tokio::task::block_in_place(|| database.resume());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, blocks) = fetch_car(&replica.retrieval_url).await;
        if status == 200 {
            assert_eq!(blocks.len(), expected.len());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_ready(&replica, |s, _| s == 200, "after the outage").await;
    replica.stop(false);
    drop(hub);
}
