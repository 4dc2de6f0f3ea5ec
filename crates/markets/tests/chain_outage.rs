//! The chain away for a minute while one deal waits to be published, one waits to be added to
//! a sector (its publish landed) and one is being sealed: all three wait (nothing fails), a
//! proposal made meanwhile is told to try again (not that it is bad), and once the chain is back
//! every deal completes with no operator action, each published once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fvm_shared::address::Address;
use nelumbo_markets_api::admin::DealState;

const MARKET: u64 = 5;
const PUBLISH_STORAGE_DEALS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_without_the_chain_delays_deals_and_loses_none() {
    let mut w = world().await;

    // Deal B reaches its sector.
    let (proposal, transfer) = w.good_deal().await;
    let (b, response) = w.propose(proposal, transfer).await;
    assert!(response.accepted, "{}", response.message);
    let b = b.to_string();
    w.markets
        .wait_deal(&b, DealState::Sealing, Duration::from_secs(60))
        .await;

    // Deal A is published, but markets is away when it lands: it has yet to be added to a
    // sector. Deal C is still arriving (a slow sender) when markets goes away.
    let a = propose_payload(&w, "a.car", 13).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.hub.log().matches("PublishStorageDeals sent").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "deal A was not sent for publishing: {}",
            w.markets.deal(&a).await.error
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.server.set_delay(Duration::from_millis(1000));
    let c = propose_payload(&w, "c.car", 29).await;
    w.markets
        .wait_deal(&c, DealState::Transferring, Duration::from_secs(30))
        .await;
    w.markets.stop(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.hub.log().matches("deal published").count() < 2 {
        assert!(Instant::now() < deadline, "{}", w.hub.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.devnet.stop(false);
    w.server.set_delay(Duration::ZERO);
    w.markets.run().await;

    // A minute without the chain: the deals wait; a new proposal is told to try again.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (proposal, transfer) = w.good_deal_at(1_000_000).await;
    let (_, response) = w.propose(proposal, transfer).await;
    assert!(!response.accepted);
    assert!(
        response.message.contains("try again later") && !response.message.contains("signature"),
        "{}",
        response.message
    );
    tokio::time::sleep(Duration::from_secs(40)).await;
    for (uuid, state) in [
        (&a, DealState::AddingPiece),
        (&b, DealState::Sealing),
        (&c, DealState::Publishing),
    ] {
        let deal = w.markets.deal(uuid).await;
        assert_eq!(deal.state, state, "{uuid}: {}", deal.error);
    }

    // The chain is back: all three complete, each published once.
    w.devnet.run().await;
    for uuid in [&a, &b, &c] {
        w.markets
            .wait_deal(uuid, DealState::Active, Duration::from_secs(120))
            .await;
    }
    let batches = w
        .devnet
        .messages_to(Address::new_id(MARKET), PUBLISH_STORAGE_DEALS)
        .await;
    assert_eq!(batches.len(), 3, "{batches:?}");
}

/// Proposes a deal for a small file of its own (`seed` varies its bytes), served as `name`.
async fn propose_payload(w: &World, name: &str, seed: u32) -> String {
    let bytes: Vec<u8> = (0..500u32).map(|i| (i * seed % 256) as u8).collect();
    let mut car = std::io::Cursor::new(Vec::new());
    let packed =
        nelumbo_car::unixfs::pack(bytes.as_slice(), &mut car, Some("a.bin")).expect("pack");
    let car = car.into_inner();
    std::fs::write(w.devnet.dir.path().join("data").join(name), &car).expect("write");
    let (mut proposal, _) = w.good_deal().await;
    let digest = nelumbo_commp::commp(&car).expect("commp");
    proposal.piece_cid = digest.cid_v1();
    proposal.piece_size = fvm_shared::piece::PaddedPieceSize(digest.piece_size.bytes());
    proposal.label = nelumbo_markets_api::wire::Label::String(packed.root.to_string());
    let (uuid, response) = w
        .propose_with_root(proposal, w.transfer(name, car.len() as u64), packed.root)
        .await;
    assert!(response.accepted, "{}", response.message);
    uuid.to_string()
}
