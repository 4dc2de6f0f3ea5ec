//! WindowPoSt when storage fails: a proving sector whose replica disappears is skipped (the
//! chain marks it faulty) while the hub keeps proving; when the file is back, the hub declares
//! it recovered before the fault cutoff and the next WindowPoSt makes it active again. Insecure
//! proofs and a short proving period (4 deadlines of 8 quarter-second epochs).

use std::time::{Duration, Instant};

use futures::StreamExt;
use nelumbo_miner_api::methods::{ProvingInfo, SectorsPledge, SubscribeEvents};
use nelumbo_miner_api::types::{HubEvent, SectorState};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};

async fn wait_for(
    hub: &TestHub,
    what: &str,
    check: impl Fn(&nelumbo_miner_api::types::ProvingInfo) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = hub
            .client
            .call::<ProvingInfo>(())
            .await
            .expect("proving info");
        if check(&info) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {info:?}\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sector_with_missing_files_is_skipped_then_recovered() {
    let devnet = Devnet::start_with_policy(
        &["--proof-mode", "insecure-testing", "--sector-size", "2KiB"],
        serde_json::json!({
            "epoch_duration_ms": 250,
            "wpost_period_deadlines": 4,
            "wpost_challenge_window": 8,
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
    hub.run(&[]).await;
    let mut events = hub
        .client
        .subscribe::<SubscribeEvents>(())
        .await
        .expect("subscribe");
    let sector = hub.client.call::<SectorsPledge>(()).await.expect("pledge");
    hub.wait_state(sector, SectorState::Proving, Duration::from_secs(120))
        .await;
    wait_for(&hub, "a first WindowPoSt", |i| {
        i.window_posts_submitted >= 1 && i.live_sectors == 1
    })
    .await;

    // The replica goes missing: the sector is skipped and the chain marks it faulty.
    let sealed = hub
        .repo
        .join("storage/sealed")
        .join(format!("s-t0{}-{sector}", hub.actor.id().expect("id")));
    let aside = sealed.with_extension("aside");
    std::fs::rename(&sealed, &aside).expect("move the replica away");
    wait_for(&hub, "the fault", |i| i.faulty_sectors == 1).await;
    let fault = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            if let Ok(HubEvent::Fault {
                sector: n, reason, ..
            }) = event
            {
                return (n, reason);
            }
        }
        panic!("the event channel closed");
    })
    .await
    .expect("a Fault event");
    assert_eq!(fault.0, sector);
    assert!(fault.1.contains("sealed file"), "{}", fault.1);
    let shown = text(&hub.cli(&["proving", "info"]));
    assert!(shown.contains("faulty sectors:    1"), "{shown}");

    // The file is back: declared recovered, proven, active.
    std::fs::rename(&aside, &sealed).expect("put the replica back");
    wait_for(&hub, "the recovery", |i| {
        i.faulty_sectors == 0 && i.recovering_sectors == 0
    })
    .await;
    assert!(hub.log().contains("declared recovered"), "{}", hub.log());
    let submitted = hub
        .client
        .call::<ProvingInfo>(())
        .await
        .expect("proving info")
        .window_posts_submitted;
    wait_for(&hub, "a WindowPoSt after the recovery", |i| {
        i.window_posts_submitted > submitted && i.faulty_sectors == 0
    })
    .await;
}
