//! Deals through the real processes (chain, hub, markets, client), with insecure proofs so the
//! tests are about the deal flow: a deal made with `nelumbo client` goes from proposal to
//! active on chain; markets killed during the transfer and after publishing, and the hub
//! stopped mid-deal, all end with the deal active and published exactly once. And what
//! `workers list` shows of deals: a stalling sender's deal retrying, with the error and when it
//! tries again; a deal held back by `[deals] max_transfers` waiting for a transfer slot.

use std::time::{Duration, Instant};

use fvm_shared::address::Address;
use nelumbo_markets_api::admin::{DealState, DealsList, WorkersList};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, insecure_hub, text};
use nelumbo_testkit::markets::{DataServer, TestClient, TestMarkets};
use nelumbo_types::workers::{WorkerState, WorkerStatus};
use serde_json::json;

/// Market actor method 4: PublishStorageDeals.
const PUBLISH_STORAGE_DEALS: u64 = 4;

async fn setup() -> (Devnet, TestHub, TestMarkets) {
    setup_with(false).await
}

/// `fixed_hub_port`: the hub listens on one port across restarts (markets keeps its address).
async fn setup_with(fixed_hub_port: bool) -> (Devnet, TestHub, TestMarkets) {
    let devnet = Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        "250",
        "--pre-commit-delay",
        "4",
    ])
    .await;
    let mut hub = TestHub::init(
        &devnet,
        &["--sector-size", "2KiB", "--proof-mode", "insecure-testing"],
    )
    .await;
    hub.edit_config("enabled = true", "enabled = false");
    hub.edit_config("wait_deals_secs = 3600", "wait_deals_secs = 2");
    if fixed_hub_port {
        let port = nelumbo_testkit::markets::free_port();
        hub.edit_config(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    }
    hub.run(&[]).await;
    let mut markets = TestMarkets::init(&devnet, &hub);
    markets.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    markets.run().await;
    (devnet, hub, markets)
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deal_becomes_active_on_chain() {
    let (devnet, hub, markets) = setup().await;
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 10).await;
    let file = devnet.dir.path().join("photo.bin");
    std::fs::write(&file, payload(700, 1)).expect("write");
    let output = client.run(&[
        "deal",
        "--provider",
        &hub.actor.to_string(),
        "--start-in",
        "400",
        "--duration",
        "400",
        "--wait-active",
        file.to_str().expect("path"),
    ]);
    let printed = text(&output);
    assert!(
        output.status.success(),
        "client deal failed: {printed}\n{}",
        markets.log()
    );
    eprintln!("{printed}");
    let deals = markets.client.call::<DealsList>(()).await.expect("list");
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].state, DealState::Active, "{printed}");
    assert!(printed.contains("Complete"), "{printed}");
    assert_eq!(
        devnet
            .messages_to(Address::new_id(5), PUBLISH_STORAGE_DEALS)
            .await
            .len(),
        1
    );

    // The admin API serves exactly the methods of its checked-in reference
    // (docs/api/markets.openrpc.json), and its answers about the deal fit the schemas there.
    let token = std::fs::read_to_string(markets.repo.join("token")).expect("admin token");
    let call = async |method: &str, params: serde_json::Value| {
        nelumbo_testkit::api::raw_call(markets.client.url(), token.trim(), method, params).await
    };
    let discovered = call("rpc.discover", json!([])).await;
    nelumbo_testkit::api::assert_serves_reference(&discovered, "markets");
    let uuid = deals[0].uuid.clone();
    // Logs: what the deal's task logs carries its UUID, and the sector's sealing its number.
    assert!(
        markets.log().contains(&format!("deal{{deal_uuid={uuid}}}")),
        "no line in the deal's span:\n{}",
        markets.log()
    );
    let sector = deals[0].sector.expect("the deal's sector");
    assert!(
        hub.log().contains(&format!("sector{{sector={sector}}}")),
        "no line in sector {sector}'s span:\n{}",
        hub.log()
    );
    for (method, params) in [
        ("Markets.Info", json!([])),
        ("Markets.DealsList", json!([])),
        ("Markets.DealsShow", json!([uuid])),
        ("Markets.DealsLogs", json!([uuid])),
        ("Markets.WorkersList", json!([])),
        ("Markets.AskGet", json!([])),
    ] {
        let answer = call(method, params).await;
        nelumbo_testkit::api::assert_answer_fits("markets", method, &answer);
    }
}

/// Makes a deal whose data comes slowly from `server`; returns its UUID.
async fn slow_deal(
    devnet: &Devnet,
    hub: &TestHub,
    client: &TestClient,
    server: &DataServer,
    seed: u8,
) -> String {
    let file = devnet.dir.path().join(format!("file-{seed}.bin"));
    std::fs::write(&file, payload(700, seed)).expect("write");
    client.propose_from_url(&hub.actor, &format!("{}/latest.car", server.base), &file)
}

async fn publish_count(devnet: &Devnet) -> usize {
    devnet
        .messages_to(Address::new_id(5), PUBLISH_STORAGE_DEALS)
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_killed_mid_transfer_and_after_publishing_completes_the_deal_once() {
    let (devnet, _hub_guard, mut markets) = setup().await;
    let hub = &_hub_guard;
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 10).await;
    let server = DataServer::start(client.repo.join("cars"), Duration::from_millis(150)).await;
    let uuid = slow_deal(&devnet, hub, &client, &server, 2).await;

    // Mid-transfer: some bytes are in staging, not all.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let deal = markets.deal(&uuid).await;
        if deal.bytes_received >= 128 {
            assert!(
                deal.bytes_received < deal.transfer_size,
                "the transfer was too fast to interrupt"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer did not start: {deal:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    markets.stop(true);
    markets.run().await;
    let deal = markets
        .wait_deal_until(
            &uuid,
            "published",
            |d| d.deal_id.is_some(),
            Duration::from_secs(60),
        )
        .await;
    assert_ne!(
        deal.state,
        DealState::Active,
        "the deal went too fast to interrupt after publishing"
    );
    let resumed = server.ranges.lock().expect("ranges").clone();
    assert!(
        resumed.iter().any(|r| r
            .as_deref()
            .is_some_and(|r| r != "bytes=0-0" && !r.starts_with("bytes=0-"))),
        "the restarted transfer did not resume with Range: {resumed:?}"
    );

    // After publishing.
    markets.stop(true);
    assert_eq!(publish_count(&devnet).await, 1);
    markets.run().await;
    let deal = markets
        .wait_deal(&uuid, DealState::Active, Duration::from_secs(120))
        .await;
    assert_eq!(
        publish_count(&devnet).await,
        1,
        "the deal was published twice"
    );
    let logs = markets.cli(&["deals", "logs", &uuid]);
    let logs = text(&logs);
    for step in [
        "Transferring",
        "Verifying",
        "Publishing",
        "Uploading",
        "AddingPiece",
        "Sealing",
        "Active",
    ] {
        assert!(
            logs.contains(step),
            "no {step} in the deal's history:\n{logs}"
        );
    }
    let sector = deal.sector.expect("sector");
    let status = hub.status(sector).await;
    assert_eq!(status.pieces.len(), 1, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_waits_for_a_stopped_hub_and_completes_when_it_returns() {
    let (devnet, mut hub, markets) = setup_with(true).await;
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 10).await;
    let server = DataServer::start(client.repo.join("cars"), Duration::from_millis(100)).await;
    let uuid = slow_deal(&devnet, &hub, &client, &server, 3).await;
    hub.stop(false);

    // The transfer finishes without the hub; the upload (before publishing) waits for it, and
    // health says why.
    markets
        .wait_deal(&uuid, DealState::Uploading, Duration::from_secs(60))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("{}/health/ready", markets.url))
            .await
            .expect("health");
        let status = ready.status();
        let body = ready.text().await.unwrap_or_default();
        if status == 503 && body.contains("hub") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health does not report the hub away: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(markets.deal(&uuid).await.state, DealState::Uploading);

    hub.run(&[]).await;
    markets
        .wait_deal(&uuid, DealState::Active, Duration::from_secs(120))
        .await;
    assert_eq!(publish_count(&devnet).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transfer_fails_and_retry_resumes_it_and_cancel_stops_a_deal() {
    let (devnet, hub, mut markets) = setup().await;
    markets.stop(false);
    markets.edit_config("stall_timeout_secs = 60", "stall_timeout_secs = 1");
    markets.edit_config("max_transfer_attempts = 10", "max_transfer_attempts = 2");
    markets.run().await;
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 10).await;
    // Each 64 bytes take longer than the stall timeout: every attempt stalls.
    let server = DataServer::start(client.repo.join("cars"), Duration::from_millis(1500)).await;
    let uuid = slow_deal(&devnet, &hub, &client, &server, 4).await;
    let failed = markets
        .wait_deal(&uuid, DealState::Failed, Duration::from_secs(60))
        .await;
    assert!(
        failed.error.contains("stalled") && failed.error.contains("after 2 attempts"),
        "{}",
        failed.error
    );
    assert_eq!(failed.failed_step, Some(DealState::Transferring));

    // The operator fixes the source and retries: the deal completes.
    server.set_delay(Duration::ZERO);
    let output = markets.cli(&["deals", "retry", &uuid]);
    assert!(output.status.success(), "{}", text(&output));
    markets
        .wait_deal(&uuid, DealState::Active, Duration::from_secs(120))
        .await;
    let output = markets.cli(&["deals", "cancel", &uuid]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("only deals not yet sent for publishing"),
        "{}",
        text(&output)
    );

    // A deal cancelled mid-transfer stops and its staged data goes.
    server.set_delay(Duration::from_millis(300));
    let second = slow_deal(&devnet, &hub, &client, &server, 5).await;
    markets
        .wait_deal(&second, DealState::Transferring, Duration::from_secs(30))
        .await;
    let output = markets.cli(&["deals", "cancel", &second]);
    assert!(output.status.success(), "{}", text(&output));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(markets.deal(&second).await.state, DealState::Cancelled);
    assert!(!markets.repo.join(format!("staging/{second}.car")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_deal_waits_for_imported_data() {
    let (devnet, hub, markets) = setup().await;
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 10).await;
    let file = devnet.dir.path().join("offline.bin");
    std::fs::write(&file, payload(900, 6)).expect("write");
    let output = client.run(&[
        "deal",
        "--provider",
        &hub.actor.to_string(),
        "--offline",
        "--start-in",
        "600",
        "--duration",
        "400",
        file.to_str().expect("path"),
    ]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    let uuid = printed
        .split("deal ")
        .filter_map(|rest| rest.split_whitespace().next())
        .find(|word| word.len() == 36)
        .expect("uuid")
        .to_string();
    let car = printed
        .split("give the provider ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("car path")
        .to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = markets.deal(&uuid).await;
    assert_eq!(waiting.state, DealState::Accepted);
    assert!(waiting.is_offline);

    // Data too large for the deal's piece is refused; the right CAR completes the deal.
    let wrong = devnet.dir.path().join("wrong.car");
    std::fs::write(&wrong, vec![7u8; 4000]).expect("write");
    let output = markets.cli(&["deals", "import-data", &uuid, wrong.to_str().expect("path")]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("more than a piece"),
        "{}",
        text(&output)
    );
    let output = markets.cli(&["deals", "import-data", &uuid, &car]);
    assert!(output.status.success(), "{}", text(&output));
    markets
        .wait_deal(&uuid, DealState::Active, Duration::from_secs(120))
        .await;
}

/// Waits until the worker named `name` is listed, in `state` if one is given.
async fn wait_for_worker(
    markets: &TestMarkets,
    name: &str,
    state: Option<WorkerState>,
) -> WorkerStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = markets.client.call::<WorkersList>(()).await.expect("list");
        if let Some(w) = listed
            .iter()
            .find(|w| w.name == name && state.is_none_or(|s| w.state == s))
        {
            return w.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never showed as {state:?}: {listed:#?}\n{}",
            markets.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_list_shows_a_stalling_transfer_retrying_and_a_deal_waiting_for_a_slot() {
    let (devnet, mut hub) = insecure_hub(250, &[]).await;
    hub.run(&[]).await;
    let mut markets = TestMarkets::init(&devnet, &hub);
    markets.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    markets.edit_config("max_transfers = 4", "max_transfers = 1");
    markets.edit_config("stall_timeout_secs = 60", "stall_timeout_secs = 2");
    markets.edit_config("max_transfer_attempts = 10", "max_transfer_attempts = 1000");
    markets.run_services("deals,retrieval,indexing").await;

    let chain = wait_for_worker(&markets, "IPNI advertisement chain", None).await;
    assert_eq!(chain.kind, "indexing");

    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 10).await;
    // 64 bytes, then a pause longer than the stall timeout: every attempt stalls.
    let server = DataServer::start(client.repo.join("cars"), Duration::from_secs(5)).await;
    let first = slow_deal(&devnet, &hub, &client, &server, 11).await;
    let retrying = wait_for_worker(&markets, &first, Some(WorkerState::Retrying)).await;
    assert_eq!(retrying.kind, "deal");
    assert!(
        retrying
            .detail
            .starts_with("Transferring: resuming at byte"),
        "{retrying:?}"
    );
    assert!(
        retrying
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("stalled")),
        "{retrying:?}"
    );
    assert!(retrying.retry_at.is_some(), "{retrying:?}");

    // The only transfer slot is held by the stalling deal: the next one waits for it.
    let second = slow_deal(&devnet, &hub, &client, &server, 12).await;
    let waiting = wait_for_worker(&markets, &second, Some(WorkerState::Waiting)).await;
    assert!(
        waiting
            .detail
            .contains("a transfer slot: all 1 in use ([deals] max_transfers)"),
        "{waiting:?}"
    );
    assert_eq!(markets.deal(&second).await.state, DealState::Accepted);

    let output = markets.cli(&["workers", "list"]);
    assert!(output.status.success(), "{}", text(&output));
    let table = text(&output);
    println!("{table}");
    let row = |uuid: &str| {
        table
            .lines()
            .find(|l| l.contains(uuid))
            .unwrap_or_else(|| panic!("no row for {uuid}:\n{table}"))
            .to_string()
    };
    assert!(row(&second).contains("waiting"), "{table}");
    let first_row = row(&first);
    assert!(
        first_row.contains("retrying") || first_row.contains("busy"),
        "{table}"
    );

    // A cancelled deal's worker leaves the list, and its slot goes to the waiting deal.
    let output = markets.cli(&["deals", "cancel", &first]);
    assert!(output.status.success(), "{}", text(&output));
    wait_for_worker(&markets, &second, Some(WorkerState::Busy)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while markets
        .client
        .call::<WorkersList>(())
        .await
        .expect("list")
        .iter()
        .any(|w| w.name == first)
    {
        assert!(
            Instant::now() < deadline,
            "the cancelled deal's worker stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
