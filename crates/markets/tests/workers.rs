//! `nelumbo-markets workers list`: a deal whose sender keeps stalling shows as retrying, with
//! the error and when it tries again; a deal held back by `[deals] max_transfers` shows as
//! waiting for a transfer slot; the advertisement chain's worker is listed. Insecure proofs.

use std::time::{Duration, Instant};

use fvm_shared::address::Address;
use nelumbo_markets_api::admin::{DealState, WorkersList};
use nelumbo_testkit::hub::{insecure_hub, text};
use nelumbo_testkit::markets::{DataServer, TestClient, TestMarkets};
use nelumbo_types::workers::{WorkerState, WorkerStatus};

/// Proposes a deal whose data comes from `server`; returns its UUID.
fn propose(client: &TestClient, provider: &Address, server: &DataServer, seed: u8) -> String {
    let file = client.repo.join(format!("file-{seed}.bin"));
    let data: Vec<u8> = (0..700u32).map(|i| (i as u8) ^ seed).collect();
    std::fs::write(&file, data).expect("write");
    client.propose_from_url(provider, &format!("{}/latest.car", server.base), &file)
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
    let provider = hub.actor;
    let first = propose(&client, &provider, &server, 1);
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
    let second = propose(&client, &provider, &server, 2);
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
