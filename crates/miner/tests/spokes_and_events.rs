//! What spokes use besides sealing: the event channel over WebSocket (a pledged sector's state
//! changes arrive in order, up to Proving) and the spokes registry (a heartbeat with a write
//! token registers a spoke, `SpokesList` and `spokes list` show it; a read token cannot send
//! one).

use std::time::Duration;

use futures::StreamExt;
use nelumbo_miner_api::methods::{SectorsPledge, SpokeHeartbeat, SpokesList, SubscribeEvents};
use nelumbo_miner_api::types::{HubEvent, SectorState, SpokeHello};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};

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
