//! WindowPoSt wins every contest for the chain: while the chain (through a hostile proxy)
//! answers nothing about the worker and everything else slowly, and a low-fee message from the
//! worker blocks the worker's queue in the pool, every deadline with live sectors is still
//! proven in its window, from the control address. Afterwards the hub replaces the blocking
//! message at a higher fee and the sealing it held back goes on.

use std::time::{Duration, Instant};

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::{MpoolGetNonce, MpoolPush, StateMinerFaults};
use nelumbo_chain_api::types::{Message, TipSetKey};
use nelumbo_miner_api::types::SectorState;
use nelumbo_testkit::chain::{Devnet, plain_message, sign};
use nelumbo_testkit::hub::TestHub;
use nelumbo_testkit::proxy::{ChainProxy, Hostility};

/// A Prometheus counter or gauge of the hub, summed over its labels.
async fn metric(hub: &TestHub, name: &str) -> f64 {
    let text = hub.metrics().await;
    nelumbo_testkit::metrics::sum(&text, name)
}

fn address_of(miner_json: &serde_json::Value, role: &str) -> Address {
    nelumbo_chain_api::json::parse_address(miner_json[role].as_str().expect(role)).expect(role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_post_lands_while_the_chain_is_hostile_and_the_worker_is_stuck() {
    // Four deadlines of 6 half-second epochs: a proving period every 12 s.
    let devnet = Devnet::start_with_policy(
        &["--proof-mode", "insecure-testing", "--sector-size", "2KiB"],
        serde_json::json!({
            "epoch_duration_ms": 500,
            "wpost_period_deadlines": 4,
            "wpost_challenge_window": 6,
            "fault_declaration_cutoff": 4,
            "pre_commit_challenge_delay": 4,
            "election_rate_permille": 0,
        }),
    )
    .await;
    let mut hub = TestHub::init(
        &devnet,
        &["--sector-size", "2KiB", "--proof-mode", "insecure-testing"],
    )
    .await;
    hub.edit_config("enabled = true", "enabled = false");
    hub.edit_config("call_timeout_secs = 30", "call_timeout_secs = 5");
    // The hub reaches the chain only through the proxy.
    let chain_port = devnet
        .url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .expect("port")
        .to_string();
    let proxy = ChainProxy::start(&format!("http://127.0.0.1:{chain_port}")).await;
    hub.edit_config(
        &format!("/tcp/{chain_port}/http"),
        &format!("/tcp/{}/http", proxy.port),
    );
    hub.run(&[]).await;
    let miner: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hub.repo.join("miner.json")).expect("miner.json"),
    )
    .expect("json");
    let worker = address_of(&miner, "Worker");

    // Two proving sectors, each proven once before the trouble starts.
    for _ in 0..2 {
        let output = hub.cli(&["sectors", "pledge"]);
        assert!(output.status.success());
    }
    for sector in [1, 2] {
        hub.wait_state(sector, SectorState::Proving, Duration::from_secs(120))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    // What the unseal-backlog alert compares: none queued, and the limit (`max_unseal` x 4).
    assert_eq!(metric(&hub, "nelumbo_miner_unseals_queued").await, 0.0);
    assert!(metric(&hub, "nelumbo_miner_unseals_queue_limit").await >= 4.0);
    while metric(&hub, "nelumbo_miner_window_posts_total").await < 2.0 {
        assert!(
            Instant::now() < deadline,
            "no WindowPoSt before the test:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The trouble: the chain holds every call about the worker for 40 s and answers the rest
    // late; a low-fee worker message blocks the worker's queue; and the hub has sealing to do.
    let worker_id = devnet
        .client
        .call::<nelumbo_chain_api::methods::StateLookupID>((Addr(worker), TipSetKey::head()))
        .await
        .expect("worker id")
        .0;
    proxy.set(Some(Hostility {
        hold_matching: vec![format!("\"{worker}\""), format!("\"{worker_id}\"")],
        hold_for: Duration::from_secs(40),
        delay_up_to: Duration::from_millis(300),
    }));
    let keystore =
        nelumbo_keys::Keystore::open(&hub.repo.join("keystore")).expect("the hub's keystore");
    let worker_key = keystore.get(&worker).expect("worker key");
    let mut stuck = Message(plain_message(
        worker,
        worker,
        TokenAmount::from_atto(1),
        0,
        Vec::new(),
    ));
    stuck.0.sequence = devnet
        .client
        .call::<MpoolGetNonce>((Addr(worker),))
        .await
        .expect("nonce");
    stuck.0.gas_limit = 1_000_000;
    stuck.0.gas_premium = TokenAmount::from_atto(100);
    stuck.0.gas_fee_cap = TokenAmount::from_atto(200); // the base fee is 1000
    devnet
        .client
        .call::<MpoolPush>((sign(&worker_key, stuck),))
        .await
        .expect("a low-fee message waits in the pool");
    let submitted_before = metric(&hub, "nelumbo_miner_window_posts_total").await;
    let output = hub.cli(&["sectors", "pledge"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Over three proving periods of trouble: every deadline with sectors is proven in its
    // window (the two sectors share a partition: one WindowPoSt per period).
    tokio::time::sleep(Duration::from_secs(40)).await;
    let (held, delayed) = proxy.counts();
    assert!(
        held > 0 && delayed > 0,
        "the proxy was not in the way: {held} held, {delayed} delayed"
    );
    let submitted = metric(&hub, "nelumbo_miner_window_posts_total").await - submitted_before;
    assert!(
        submitted >= 3.0,
        "only {submitted} WindowPoSts in three proving periods:\n{}",
        hub.log()
    );
    assert_eq!(
        metric(&hub, "nelumbo_miner_window_posts_missed_total").await,
        0.0,
        "{}",
        hub.log()
    );
    let faults = devnet
        .client
        .call::<StateMinerFaults>((Addr(hub.actor), TipSetKey::head()))
        .await
        .expect("faults");
    assert!(faults.0.is_empty(), "sectors went faulty: {:?}", faults.0);
    assert!(metric(&hub, "nelumbo_miner_window_post_latency_seconds_count").await >= 3.0);
    let sector3 = hub.status(3).await;
    assert!(
        sector3.state < SectorState::Proving,
        "the pledge went through the held worker calls: {:?}",
        sector3.state
    );

    // The chain is friendly again: the blocking message is replaced at a higher fee, and the
    // sealing it held back goes on.
    proxy.set(None);
    hub.wait_state(3, SectorState::Proving, Duration::from_secs(120))
        .await;
    assert!(metric(&hub, "nelumbo_miner_messages_replaced_total").await >= 1.0);
    assert!(
        hub.log().contains("replaced it at a higher fee"),
        "{}",
        hub.log()
    );
}
