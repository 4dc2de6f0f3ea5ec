//! What spokes and operators see besides sealing: the event channel over WebSocket (a pledged
//! sector's state changes arrive in order, up to Proving), the spokes registry (a heartbeat with
//! a write token registers a spoke, `SpokesList` and `spokes list` show it; a read token cannot
//! send one), and `workers list` (a sector held back by the pre-commit 2 limit shows as waiting
//! for that permit, not as busy or stuck; a sector whose step fails shows as retrying with its
//! error and its next try; the WindowPoSt scheduler and the publish batcher are always listed),
//! with the status view's page and headers (the devnet test loads it in Chromium).

use std::time::{Duration, Instant};

use futures::StreamExt;
use nelumbo_miner_api::methods::{
    SectorsPledge, SpokeHeartbeat, SpokesList, SubscribeEvents, WorkersList,
};
use nelumbo_miner_api::types::{HubEvent, SectorState, SpokeHello};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, insecure_hub, text};
use nelumbo_types::workers::{WorkerState, WorkerStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_a_sector_and_spokes_register_with_heartbeats() {
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
    hub.run(&[]).await;

    // Events: subscribe (read token), pledge, follow the sector to Proving.
    let reader = hub.client_with("read");
    let mut events = reader
        .subscribe::<SubscribeEvents>(())
        .await
        .expect("subscribe");
    let sector = hub.client.call::<SectorsPledge>(()).await.expect("pledge");
    let mut seen = Vec::new();
    let followed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(event) = events.next().await {
            if let HubEvent::SectorState { sector: n, to, .. } = event.expect("event") {
                assert_eq!(n, sector);
                seen.push(to);
                if to == SectorState::Proving {
                    return;
                }
            }
        }
        panic!("the event channel closed");
    })
    .await;
    assert!(
        followed.is_ok(),
        "no Proving event; saw {seen:?}\n{}",
        hub.log()
    );
    let expected = [
        SectorState::Packing,
        SectorState::GetTicket,
        SectorState::PreCommit1,
        SectorState::PreCommit2,
        SectorState::PreCommitting,
        SectorState::PreCommitWait,
        SectorState::WaitSeed,
        SectorState::Commit1,
        SectorState::Commit2,
        SectorState::Committing,
        SectorState::CommitWait,
        SectorState::FinalizeSector,
        SectorState::Proving,
    ];
    assert_eq!(seen, expected);

    // Spokes: a read or write token cannot register; a spoke token can, and the list shows it.
    let hello = SpokeHello {
        id: "12D3KooWmarkets1".into(),
        services: vec!["deals".into(), "retrieval".into()],
        version: "nelumbo-markets test".into(),
        public_addrs: vec!["/ip4/203.0.113.7/tcp/24001".into()],
        deals: [("Active".to_string(), 2), ("Transferring".to_string(), 1)].into(),
    };
    for perm in ["read", "write"] {
        let error = hub
            .client_with(perm)
            .call::<SpokeHeartbeat>((hello.clone(),))
            .await
            .expect_err("an operator's token registered a spoke");
        assert!(
            error.to_string().contains("need 'spoke'"),
            "{perm}: {error}"
        );
    }
    let spoke = hub.client_with("spoke");
    let ack = spoke
        .call::<SpokeHeartbeat>((hello.clone(),))
        .await
        .expect("heartbeat");
    assert!(ack.heartbeat_secs > 0);
    let spokes = reader.call::<SpokesList>(()).await.expect("list");
    assert_eq!(spokes.len(), 1);
    assert_eq!(spokes[0].hello, hello);
    assert!(spokes[0].online);
    let token_name = spokes[0].token.clone().expect("the spoke token's name");
    assert!(token_name.starts_with("spoke-"), "{token_name}");
    let shown = text(&hub.cli(&["spokes", "list"]));
    assert!(
        shown.contains("12D3KooWmarkets1")
            && shown.contains("online")
            && shown.contains("deals,retrieval")
            && shown.contains(&token_name),
        "{shown}"
    );
    let error = spoke
        .call::<SpokeHeartbeat>((SpokeHello {
            id: String::new(),
            ..hello.clone()
        },))
        .await
        .expect_err("an empty id was accepted");
    assert!(error.to_string().contains("spoke id"), "{error}");
    let error = spoke
        .call::<SpokeHeartbeat>((SpokeHello {
            deals: (0..17).map(|i| (format!("State{i}"), 1)).collect(),
            ..hello.clone()
        },))
        .await
        .expect_err("17 deal states were accepted");
    assert!(error.to_string().contains("deal states"), "{error}");

    // The token is bound to the peer ID it first named: it cannot register another.
    let other = SpokeHello {
        id: "12D3KooWimpostor".into(),
        ..hello.clone()
    };
    let error = spoke
        .call::<SpokeHeartbeat>((other.clone(),))
        .await
        .expect_err("a spoke token registered a second identity");
    assert!(
        error.to_string().contains("bound to peer 12D3KooWmarkets1"),
        "{error}"
    );
    // A new spoke token is a new spoke; the operator can release a binding.
    hub.client_with("spoke")
        .call::<SpokeHeartbeat>((other.clone(),))
        .await
        .expect("a second spoke token binds its own identity");
    let released = hub.cli(&["spokes", "unbind", &token_name]);
    assert!(
        text(&released).contains("no longer bound to 12D3KooWmarkets1"),
        "{}",
        text(&released)
    );
    spoke
        .call::<SpokeHeartbeat>((other,))
        .await
        .expect("after unbinding, the token binds again");
}

fn worker<'a>(workers: &'a [WorkerStatus], name: &str) -> Option<&'a WorkerStatus> {
    workers.iter().find(|w| w.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_list_shows_a_sector_waiting_for_a_permit_and_a_failing_step_retrying() {
    let (_devnet, mut hub) = insecure_hub(500, &[]).await;
    // Sector 1 holds the only pre-commit 2 permit for a minute once its work is done.
    hub.run(&[("NELUMBO_MINER_STALL", "PreCommit2:60000")])
        .await;
    let reader = hub.client_with("read");

    // The status view's page needs no token (it holds no data; its script calls the API with
    // the operator's) and forbids everything but its own script, style and API.
    let page = reqwest::get(format!("{}/status", hub.url))
        .await
        .expect("GET /status");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("a policy")
        .to_string();
    assert!(
        policy.contains("default-src 'none'")
            && policy.contains("script-src 'self'")
            && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert!(page.text().await.expect("page").contains("/status.js"));

    let listed = reader.call::<WorkersList>(()).await.expect("workers");
    for always in ["WindowPoSt scheduler", "PublishStorageDeals batcher"] {
        assert!(
            worker(&listed, always).is_some(),
            "{always} is not listed: {listed:#?}"
        );
    }

    for _ in 0..2 {
        let output = hub.cli(&["sectors", "pledge"]);
        assert!(output.status.success(), "{}", text(&output));
    }
    hub.wait_state(2, SectorState::PreCommit2, Duration::from_secs(60))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = reader.call::<WorkersList>(()).await.expect("workers");
        if worker(&listed, "sector 2").is_some_and(|w| w.state == WorkerState::Waiting) {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "sector 2 never showed as waiting for the permit: {listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let waiting = worker(&listed, "sector 2").expect("sector 2");
    assert_eq!(waiting.kind, "sealing");
    assert!(
        waiting.detail.contains("pre_commit_2 permit") && waiting.detail.contains("all 1 in use"),
        "{waiting:?}"
    );
    let holder = worker(&listed, "sector 1").expect("sector 1");
    assert_eq!(holder.state, WorkerState::Busy, "{holder:?}");
    assert_eq!(holder.detail, "PreCommit2");

    // The operator's view says the same in words.
    let output = hub.cli(&["workers", "list"]);
    assert!(output.status.success(), "{}", text(&output));
    let table = text(&output);
    let row = table
        .lines()
        .find(|l| l.contains("sector 2"))
        .unwrap_or_else(|| panic!("no row for sector 2:\n{table}"));
    assert!(
        row.contains("waiting") && row.contains("max_pre_commit_2"),
        "{row}"
    );

    // Sector 3's pre-commit 1 cannot write its cache (a file stands where its directory
    // goes): the step fails and is retried, and the list says when and why.
    let cache = hub.repo.join("storage").join("cache");
    let sector1 = std::fs::read_dir(&cache)
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with("-1"))
        .unwrap_or_else(|| panic!("no cache of sector 1 in {}", cache.display()));
    let sector3 = format!("{}-3", sector1.trim_end_matches("-1"));
    std::fs::write(cache.join(sector3), b"in the way").expect("block sector 3's cache");
    let output = hub.cli(&["sectors", "pledge"]);
    assert!(output.status.success(), "{}", text(&output));
    let deadline = Instant::now() + Duration::from_secs(60);
    let failing = loop {
        let listed = reader.call::<WorkersList>(()).await.expect("workers");
        if let Some(w) = worker(&listed, "sector 3")
            && w.state == WorkerState::Retrying
        {
            break w.clone();
        }
        assert!(
            Instant::now() < deadline,
            "sector 3 never showed as retrying: {listed:#?}\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        failing.detail.starts_with("PreCommit1: attempt 1 of"),
        "{failing:?}"
    );
    assert!(failing.last_error.is_some(), "{failing:?}");
    assert_eq!((failing.errors, failing.consecutive_errors), (1, 1));
    let retry_at = failing.retry_at.expect("a retrying worker says when");
    assert!(
        retry_at >= failing.since + 4 && retry_at <= failing.since + 6,
        "the first retry comes about 5 s after the failure: {failing:?}"
    );
    let output = hub.cli(&["workers", "list"]);
    let table = text(&output);
    println!("{table}");
    let row = table
        .lines()
        .find(|l| l.contains("sector 3"))
        .unwrap_or_else(|| panic!("no row for sector 3:\n{table}"));
    assert!(
        row.contains("retrying") && row.contains("next try in") && row.contains("last error"),
        "{row}"
    );
}
