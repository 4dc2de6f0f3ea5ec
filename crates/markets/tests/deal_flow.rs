//! Deals through the real processes (chain, hub, markets, client), with insecure proofs so the
//! tests are about the deal flow: a deal made with `nelumbo client` goes from proposal to
//! active on chain; markets killed during the transfer and after publishing, and the hub
//! stopped mid-deal, all end with the deal active and published exactly once.

use std::time::Duration;

use fvm_shared::address::Address;
use nelumbo_markets_api::admin::{DealState, DealsList};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};
use nelumbo_testkit::markets::{TestClient, TestMarkets};

/// Market actor method 4: PublishStorageDeals.
const PUBLISH_STORAGE_DEALS: u64 = 4;

async fn setup() -> (Devnet, TestHub, TestMarkets) {
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
}
