//! The hub killed while a `PublishStorageDeals` batch waits in the pool, and the chain killed
//! at the same moment; then both come back, in either order. The batch is followed, not
//! failed: every deal is published exactly once (counted over every block), the collateral is
//! topped up once, and every deal ends active on chain (no collateral burnt for a deal that
//! was published but never sealed).

use std::time::{Duration, Instant};

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Base64;
use nelumbo_chain_api::methods::{MpoolPending, StateMarketStorageDeal};
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_miner_api::methods::{MarketPublishDeals, SectorAddPieceToAny};
use nelumbo_miner_api::types::PieceDealInfo;
use nelumbo_testkit::deals::{DealSpec, funded_client, signed_deal};
use nelumbo_testkit::hub::insecure_hub;

const MARKET: u64 = 5;
const ADD_BALANCE: u64 = 2;
const PUBLISH_STORAGE_DEALS: u64 = 4;

async fn scenario(hub_back_first: bool) {
    let (mut devnet, mut hub) = insecure_hub(1000, &["--pre-commit-delay", "3"]).await;
    hub.edit_config("wait_deals_secs = 3600", "wait_deals_secs = 2");
    hub.run(&[]).await;
    let (token, spoke) = hub.spoke();
    hub.sign_ask(&spoke, 0, 0).await;
    let client = funded_client(&devnet, 10, 1).await;
    let start = devnet.head().await + 300;
    let specs: Vec<DealSpec> = (1..=3u8)
        .map(|seed| DealSpec {
            provider_collateral: TokenAmount::from_atto(100),
            ..DealSpec::small(seed, start)
        })
        .collect();
    let deals: Vec<Vec<u8>> = specs
        .iter()
        .map(|spec| signed_deal(&client, hub.actor, spec))
        .collect();
    for spec in &specs {
        assert!(
            hub.upload_piece(&token, &spec.data, spec.piece_size)
                .await
                .is_success()
        );
    }

    // Publish the three at once; kill the hub and the chain while the batch is in the pool.
    for deal in &deals {
        let spoke = spoke.clone();
        let deal = deal.clone();
        tokio::spawn(async move {
            let _ = spoke.call::<MarketPublishDeals>((Base64(deal),)).await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = devnet
            .client
            .call::<MpoolPending>((TipSetKey::head(),))
            .await
            .expect("pool");
        if pending.iter().any(|m| {
            m.message.0.to == Address::new_id(MARKET)
                && m.message.0.method_num == PUBLISH_STORAGE_DEALS
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch never reached the pool:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.stop(true);
    devnet.stop(true);

    if hub_back_first {
        hub.run(&[]).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        devnet.run().await;
    } else {
        devnet.run().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        hub.run(&[]).await;
    }

    // The spoke calls again, as markets does: the same batch answers every deal.
    let spoke = hub.client_with_token(&token);
    let mut published = Vec::new();
    for deal in &deals {
        let deadline = Instant::now() + Duration::from_secs(120);
        let answer = loop {
            match spoke
                .call::<MarketPublishDeals>((Base64(deal.clone()),))
                .await
            {
                Ok(answer) => break answer,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("publishing failed after the restart: {e}\n{}", hub.log()),
            }
        };
        published.push(answer);
    }
    assert!(
        published.iter().all(|p| p.message == published[0].message),
        "{published:?}"
    );
    assert_eq!(
        devnet
            .messages_to(Address::new_id(MARKET), PUBLISH_STORAGE_DEALS)
            .await,
        vec![published[0].message],
        "a deal was published twice"
    );
    assert_eq!(
        devnet
            .messages_to(Address::new_id(MARKET), ADD_BALANCE)
            .await
            .len(),
        2,
        "the client's escrow and one collateral top-up"
    );

    // And every deal becomes active.
    for (i, (spec, deal)) in specs.iter().zip(&published).enumerate() {
        spoke
            .call::<SectorAddPieceToAny>((PieceDealInfo {
                deal_uuid: format!("outage-{i}"),
                deal_id: deal.deal_id,
                piece_cid: spec.piece_cid(),
                piece_size: spec.piece_size,
                start_epoch: spec.start,
                end_epoch: spec.start + spec.duration,
            },))
            .await
            .expect("add piece");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for deal in &published {
        loop {
            let onchain = devnet
                .client
                .call::<StateMarketStorageDeal>((deal.deal_id, TipSetKey::head()))
                .await
                .expect("deal");
            if onchain.state.sector_start_epoch >= 0 {
                assert_eq!(onchain.state.slash_epoch, -1);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "deal {} never became active:\n{}",
                deal.deal_id,
                hub.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_the_pool_survives_the_hub_and_chain_dying_hub_back_first() {
    scenario(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_the_pool_survives_the_hub_and_chain_dying_chain_back_first() {
    scenario(false).await;
}

/// Found by the chaos run (`markets/tests/chaos.rs`): a spoke killed while its deal waited for
/// a batch, and restarted at once, called again and the hub queued the deal a second time, so
/// one `PublishStorageDeals` carried it twice; the market refused the copy and the hub
/// recorded the published deal as failed. The hub now holds a deal's claim until the batch
/// settles, so the second call waits for the first's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_that_hangs_up_and_calls_again_gets_its_deal_published_once() {
    let (devnet, mut hub) = insecure_hub(500, &[]).await;
    hub.run(&[]).await;
    let (token, spoke) = hub.spoke();
    hub.sign_ask(&spoke, 0, 0).await;
    let client = funded_client(&devnet, 10, 1).await;
    let spec = DealSpec {
        provider_collateral: TokenAmount::from_atto(100),
        ..DealSpec::small(7, devnet.head().await + 300)
    };
    let deal = signed_deal(&client, hub.actor, &spec);
    assert!(
        hub.upload_piece(&token, &spec.data, spec.piece_size)
            .await
            .is_success()
    );

    // The first call hangs up while its batch is still gathering deals (the hub waits 2 s for
    // more); the second comes straight after, as a restarted spoke's does.
    let first = tokio::time::timeout(
        Duration::from_millis(500),
        spoke.call::<MarketPublishDeals>((Base64(deal.clone()),)),
    )
    .await;
    assert!(
        first.is_err(),
        "the first call was meant to hang up: {first:?}"
    );
    let spoke = hub.client_with_token(&token);
    let published = spoke
        .call::<MarketPublishDeals>((Base64(deal.clone()),))
        .await
        .unwrap_or_else(|e| panic!("the second call: {e}\n{}", hub.log()));

    let counts = devnet.published_proposals().await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![1],
        "the deal went into publish messages more than once: {counts:?}"
    );
    assert_eq!(
        devnet
            .messages_to(Address::new_id(MARKET), PUBLISH_STORAGE_DEALS)
            .await,
        vec![published.message]
    );
}
