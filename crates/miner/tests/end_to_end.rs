//! The hub's main job with real processes and real 2 KiB proofs: a chain and a hub start, an
//! operator pledges a sector with the CLI, the sector is sealed (real PC1, PC2, C1, C2) and
//! reaches Proving, the hub proves its deadline with real WindowPoSts accepted by the chain in
//! two proving periods without a fault, and wins blocks whose WinningPoSt the chain verified.
//!
//! The chain runs a short proving period (4 deadlines of 10 one-second epochs) so that two
//! WindowPoSts fit in a test; everything else is the devnet's default policy.
//!
//! Then proving under contention: a second sector is pledged, so a commit 2 (both cores for a
//! minute) runs while the hub keeps winning blocks (WinningPoSts) at a high election rate; every
//! deadline that opens meanwhile must still be proven in its window.

use std::time::{Duration, Instant};

use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::{StateMinerPower, StateSectorGetInfo};
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_miner_api::methods::ProvingInfo;
use nelumbo_miner_api::types::SectorState;
use nelumbo_proofs::Prover;
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};
use nelumbo_types::SectorSize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pledged_sector_is_sealed_proven_and_mines_blocks_with_real_proofs() {
    Prover::from_env()
        .expect("proofs")
        .param_cache()
        .ensure(SectorSize::KIB_2, &|e| eprintln!("{e:?}"))
        .expect("2 KiB parameters");
    // A short proving period (4 deadlines of 10 one-second epochs), blocks now and then.
    let devnet = Devnet::start_with_policy(
        &["--sector-size", "2KiB"],
        serde_json::json!({
            "epoch_duration_ms": 1000,
            "wpost_period_deadlines": 4,
            "wpost_challenge_lookback": 4,
            "fault_declaration_cutoff": 6,
            "pre_commit_challenge_delay": 5,
            "election_rate_permille": 400,
        }),
    )
    .await;
    let mut hub = TestHub::init(&devnet, &["--sector-size", "2KiB"]).await;
    hub.run(&[]).await;
    let ready = reqwest::get(format!("{}/health/ready", hub.url))
        .await
        .expect("health");
    assert_eq!(
        ready.status(),
        200,
        "{}",
        ready.text().await.unwrap_or_default()
    );

    let started = Instant::now();
    let output = hub.cli(&["sectors", "pledge"]);
    assert!(output.status.success(), "{}", text(&output));
    let status = hub
        .wait_state(1, SectorState::Proving, Duration::from_secs(600))
        .await;
    eprintln!("sector 1 sealed and on chain in {:?}", started.elapsed());
    let onchain = devnet
        .client
        .call::<StateSectorGetInfo>((Addr(hub.actor), 1, TipSetKey::head()))
        .await
        .expect("sector info")
        .expect("sector 1 on chain");
    assert_eq!(Some(onchain.sealed_cid), status.comm_r);

    // Two WindowPoSts accepted, no fault, power for the sector.
    let deadline = Instant::now() + Duration::from_secs(300);
    let info = loop {
        let info = hub
            .client
            .call::<ProvingInfo>(())
            .await
            .expect("proving info");
        assert_eq!(info.faulty_sectors, 0, "a fault: {info:?}\n{}", hub.log());
        assert_eq!(
            info.window_posts_failed,
            0,
            "a WindowPoSt failed:\n{}",
            hub.log()
        );
        if info.window_posts_submitted >= 2 && info.blocks_won >= 1 {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "after 5 minutes: {info:?}\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("{info:?} after {:?}", started.elapsed());
    let power = devnet
        .client
        .call::<StateMinerPower>((Addr(hub.actor), TipSetKey::head()))
        .await
        .expect("power");
    assert_eq!(power.miner_power.raw_byte_power.to_string(), "2048");
    assert!(hub.log().contains("WindowPoSt accepted"), "{}", hub.log());
    assert!(hub.log().contains("block accepted"), "{}", hub.log());

    // What an operator reads.
    let shown = text(&hub.cli(&["info"]));
    assert!(shown.contains("power:       2.0 KiB"), "{shown}");
    assert!(!shown.contains("blocks won:  0"), "{shown}");
    let shown = text(&hub.cli(&["proving", "deadlines"]));
    assert!(
        shown.contains("yes"),
        "no deadline shows as proven:\n{shown}"
    );
    let metrics = hub.metrics().await;
    for line in [
        "nelumbo_miner_sectors{state=\"Proving\"} 1",
        "nelumbo_miner_proof_seconds_count{kind=\"commit_2\"} 1",
        "nelumbo_miner_chain_connected 1",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    assert!(
        metrics.contains("nelumbo_miner_window_posts_total{result=\"submitted\"}"),
        "{metrics}"
    );

    // SIGTERM during a commit 2: the hub stops within its bound, its worker with it, and
    // the next start resumes the commit 2.
    let output = hub.cli(&["sectors", "pledge"]);
    assert!(output.status.success(), "{}", text(&output));
    hub.wait_state(2, SectorState::Commit2, Duration::from_secs(300))
        .await;
    wait_for_worker(&hub, "Commit2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let workers = hub.proof_workers();
    let stopping = Instant::now();
    hub.stop(false);
    let took = stopping.elapsed();
    eprintln!("the hub stopped {took:?} after SIGTERM during commit 2");
    assert!(
        took < Duration::from_secs(25),
        "the hub took {took:?} to stop"
    );
    let gone = nelumbo_testkit::wait_gone(&workers, Duration::from_secs(10))
        .expect("the commit 2 worker outlived the hub by 10 s");
    eprintln!("its worker was gone {gone:?} after the hub");
    hub.run(&[]).await;
    assert_eq!(hub.status(2).await.state, SectorState::Commit2);
    wait_for_worker(&hub, "Commit2").await;

    // Contention: that commit 2 and WinningPoSts while deadlines come and go, for two proving
    // periods.
    let before = hub
        .client
        .call::<ProvingInfo>(())
        .await
        .expect("proving info");
    let winning_before = winning_posts(&hub).await;
    tokio::time::sleep(Duration::from_secs(85)).await;
    let after = hub
        .client
        .call::<ProvingInfo>(())
        .await
        .expect("proving info");
    let proven = after.window_posts_submitted - before.window_posts_submitted;
    let state = hub.status(2).await.state;
    eprintln!(
        "over 85 s of commit 2 (sector 2 now {state}): {proven} WindowPoSts accepted, {} blocks won",
        after.blocks_won - before.blocks_won
    );
    assert!(state >= SectorState::Commit2, "sector 2 is {state}");
    assert_eq!(after.faulty_sectors, 0, "{after:?}\n{}", hub.log());
    assert_eq!(after.window_posts_failed, 0, "{}", hub.log());
    // A WinningPoSt ran beside the commit 2 (whether its block then made its epoch depends
    // on what else the machine runs: it is not what this test is about).
    assert!(
        winning_posts(&hub).await > winning_before,
        "no WinningPoSt ran:\n{}",
        hub.log()
    );
    // A 40 s proving period: 85 s spans two of sector 1's deadlines.
    assert!(proven >= 2, "{proven} WindowPoSts in 85 s:\n{}", hub.log());
    let metrics = hub.metrics().await;
    assert!(
        metrics.contains("nelumbo_miner_window_posts_missed_total 0"),
        "{metrics}"
    );
}

/// The hub's proof workers for `job`, once one runs.
async fn wait_for_worker(hub: &TestHub, job: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let workers = hub.proof_workers_for(job);
        if !workers.is_empty() {
            return workers;
        }
        assert!(Instant::now() < deadline, "no proof worker:\n{}", hub.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// WinningPoSts the hub has computed (`nelumbo_miner_proof_seconds{kind="winning_post"}`).
async fn winning_posts(hub: &TestHub) -> f64 {
    let page = hub.metrics().await;
    nelumbo_testkit::metrics::value(
        &page,
        "nelumbo_miner_proof_seconds_count{kind=\"winning_post\"}",
    )
    .unwrap_or(0.0)
}
