//! The chain away for a minute while one deal waits to be published and another is being
//! sealed: both wait (nothing fails), a proposal made meanwhile is told to try again (not
//! that it is bad), and once the chain is back both deals complete with no operator action,
//! each published once.

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

    // Deal B reaches its sector; deal A is stopped just before publishing.
    let (proposal, transfer) = w.good_deal().await;
    let (b, response) = w.propose(proposal, transfer).await;
    assert!(response.accepted, "{}", response.message);
    let b = b.to_string();
    w.markets
        .wait_deal(&b, DealState::Sealing, Duration::from_secs(60))
        .await;
    let other: Vec<u8> = (0..500u32).map(|i| (i * 13 % 256) as u8).collect();
    let mut car = std::io::Cursor::new(Vec::new());
    let packed =
        nelumbo_car::unixfs::pack(other.as_slice(), &mut car, Some("a.bin")).expect("pack");
    let car = car.into_inner();
    std::fs::write(w.devnet.dir.path().join("data").join("a.car"), &car).expect("write");
    let (mut proposal, _) = w.good_deal().await;
    let digest = nelumbo_commp::commp(&car).expect("commp");
    proposal.piece_cid = digest.cid_v1();
    proposal.piece_size = fvm_shared::piece::PaddedPieceSize(digest.piece_size.bytes());
    proposal.label = nelumbo_markets_api::wire::Label::String(packed.root.to_string());
    let (a, response) = w
        .propose_with_root(proposal, w.transfer("a.car", car.len() as u64), packed.root)
        .await;
    assert!(response.accepted, "{}", response.message);
    let a = a.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = w.markets.deal(&a).await.state;
        if state >= DealState::Uploading {
            break;
        }
        assert!(Instant::now() < deadline, "deal A is still {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.devnet.stop(false);

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
    let (deal_a, deal_b) = (w.markets.deal(&a).await, w.markets.deal(&b).await);
    assert_eq!(deal_a.state, DealState::Publishing, "{}", deal_a.error);
    assert_eq!(deal_b.state, DealState::Sealing, "{}", deal_b.error);

    // The chain is back: both complete, each published once.
    w.devnet.run().await;
    for uuid in [&a, &b] {
        w.markets
            .wait_deal(uuid, DealState::Active, Duration::from_secs(120))
            .await;
    }
    let batches = w
        .devnet
        .messages_to(Address::new_id(MARKET), PUBLISH_STORAGE_DEALS)
        .await;
    assert_eq!(batches.len(), 2, "{batches:?}");
}
