//! A deal's piece from upload to a proven sector and back, as a spoke drives it: upload the
//! piece, publish the deal, `SectorAddPieceToAny` (idempotent by deal UUID); the sector waits
//! for deals, packs the piece, seals with its CommD, and the prove-commit activates the deal on
//! chain. Then the piece is located and read back over HTTP (whole and with Range) from the
//! uploaded copy, from the sector's unsealed copy, and, once that is gone, after
//! `SectorsUnsealPiece`. Insecure proofs for speed; pre-commit 1 and 2 and unsealing are real.
//! Last, SIGTERM while an unseal is running in its worker: the hub exits within its bound (the
//! worker with it), and the same unseal works after the restart.

use std::time::Duration;

use fil_actor_market_state::v18::{ClientDealProposal, DealProposal, Label};
use fvm_shared::econ::TokenAmount;
use fvm_shared::piece::PaddedPieceSize;
use nelumbo_chain_api::methods::StateMarketStorageDeal;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_chain_api::{Base64, CidJson};
use nelumbo_miner_api::methods::{
    MarketPublishDeals, PieceLocate, SectorAddPieceToAny, SectorsUnsealPiece,
};
use nelumbo_miner_api::types::{PieceDealInfo, SectorState};
use nelumbo_testkit::chain::{Devnet, cbor};
use nelumbo_testkit::deals::funded_client;
use nelumbo_testkit::hub::TestHub;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_piece_is_sealed_activated_and_read_back() {
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
    let token = hub.token("spoke");
    hub.sign_ask(&hub.client, 0, 0).await;
    let http = reqwest::Client::new();

    // The client: funds, escrow, a 1000-byte payload in a 1 KiB piece.
    let client = funded_client(&devnet, 10, 1).await;
    let client_addr = client.address().expect("client");
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 13 % 256) as u8).collect();
    let digest = nelumbo_commp::commp(&data).expect("commp");
    assert_eq!(digest.piece_size.bytes(), 1024);
    let piece_cid = digest.cid_v1();
    let mut piece_bytes = data.clone();
    piece_bytes.resize(1016, 0);

    let response = http
        .put(format!("{}/pieces/{piece_cid}?size=1024", hub.url))
        .bearer_auth(&token)
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);

    let start = devnet.head().await + 400;
    let proposal = DealProposal {
        piece_cid,
        piece_size: PaddedPieceSize(1024),
        verified_deal: false,
        client: client_addr,
        provider: hub.actor,
        label: Label::String("read me back".into()),
        start_epoch: start,
        end_epoch: start + 400,
        storage_price_per_epoch: TokenAmount::from_nano(1),
        provider_collateral: TokenAmount::from_atto(0),
        client_collateral: TokenAmount::from_atto(0),
    };
    let client_signature = client.sign(&cbor(&proposal)).expect("sign");
    let published = hub
        .client
        .call::<MarketPublishDeals>((Base64(cbor(&ClientDealProposal {
            proposal,
            client_signature,
        })),))
        .await
        .expect("publish");

    let info = PieceDealInfo {
        deal_uuid: "0b0e7e7a-5b1c-4c47-9d6b-1c0de0000001".into(),
        deal_id: published.deal_id,
        piece_cid,
        piece_size: 1024,
        start_epoch: start,
        end_epoch: start + 400,
    };
    let placed = hub
        .client
        .call::<SectorAddPieceToAny>((info.clone(),))
        .await
        .expect("add piece");
    assert_eq!(placed.offset, 0);
    let again = hub
        .client
        .call::<SectorAddPieceToAny>((info.clone(),))
        .await
        .expect("add piece again");
    assert_eq!(again, placed, "a repeated call placed the piece twice");
    // The hub checks the deal on chain, not the spoke's word.
    for (wrong, expected) in [
        (
            PieceDealInfo {
                deal_uuid: "another".into(),
                ..info.clone()
            },
            "already in sector",
        ),
        (
            PieceDealInfo {
                deal_uuid: "another".into(),
                deal_id: 999,
                ..info.clone()
            },
            "not on chain",
        ),
    ] {
        let error = hub
            .client
            .call::<SectorAddPieceToAny>((wrong,))
            .await
            .expect_err("a wrong piece was placed");
        assert!(error.to_string().contains(expected), "{error}");
    }

    // While the sector waits and seals, the uploaded copy serves reads.
    let get = |range: Option<&'static str>| {
        let request = http
            .get(format!("{}/pieces/{piece_cid}", hub.url))
            .bearer_auth(&token);
        let request = match range {
            Some(range) => request.header("Range", range),
            None => request,
        };
        async move { request.send().await.expect("get") }
    };
    let whole = get(None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.expect("bytes").to_vec(), piece_bytes);

    let status = hub
        .wait_state(
            placed.sector,
            SectorState::Proving,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(status.pieces.len(), 1);
    assert!(status.comm_d.is_some());
    let deal = devnet
        .client
        .call::<StateMarketStorageDeal>((published.deal_id, TipSetKey::head()))
        .await
        .expect("deal");
    assert_eq!(deal.state.sector_number, placed.sector);
    assert!(
        deal.state.sector_start_epoch > 0,
        "the deal is not active: {deal:?}"
    );

    // After sealing: the sector's unsealed copy serves, whole and by range.
    let located = hub
        .client
        .call::<PieceLocate>((CidJson(piece_cid),))
        .await
        .expect("locate");
    assert_eq!(located.len(), 1);
    assert_eq!(
        (located[0].sector, located[0].offset, located[0].size),
        (placed.sector, 0, 1024)
    );
    assert!(located[0].unsealed);
    let whole = get(None).await;
    assert_eq!(whole.status(), 200);
    let bytes = whole.bytes().await.expect("bytes").to_vec();
    assert_eq!(bytes, piece_bytes);
    assert_eq!(
        nelumbo_commp::commp(&bytes).expect("commp").cid_v1(),
        piece_cid
    );
    let part = get(Some("bytes=100-299")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().expect("header"),
        "bytes 100-299/1016"
    );
    assert_eq!(
        part.bytes().await.expect("bytes").to_vec(),
        piece_bytes[100..300]
    );
    assert_eq!(get(Some("bytes=5000-")).await.status(), 416);

    // Without an unsealed copy: 404 naming the way out, then an unseal job.
    let unsealed = hub.repo.join("storage/unsealed").join(format!(
        "s-t0{}-{}",
        hub.actor.id().expect("id"),
        placed.sector
    ));
    std::fs::remove_file(&unsealed).expect("remove the unsealed copy");
    let missing = get(None).await;
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .expect("text")
            .contains("SectorsUnsealPiece")
    );
    let located = hub
        .client
        .call::<PieceLocate>((CidJson(piece_cid),))
        .await
        .expect("locate");
    assert!(!located[0].unsealed);
    hub.client
        .call::<SectorsUnsealPiece>((placed.sector, CidJson(piece_cid)))
        .await
        .expect("unseal");
    let whole = get(None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.expect("bytes").to_vec(), piece_bytes);
    let part = get(Some("bytes=-16")).await;
    assert_eq!(
        part.bytes().await.expect("bytes").to_vec(),
        piece_bytes[1000..]
    );

    // SIGTERM during an unseal: the worker is held in the job (a failpoint), the hub is asked
    // to stop, and it does within the bound, taking the worker with it.
    // The unseal wrote the piece back to the upload directory; without it, the next read
    // needs another unseal.
    let kept = hub.repo.join("storage/pieces").join(piece_cid.to_string());
    std::fs::remove_file(&kept).expect("remove the unsealed piece");
    hub.stop(false);
    hub.run(&[("NELUMBO_PROOF_WORKER_DELAY", "Unseal:60000")])
        .await;
    let unsealing = {
        let client = hub.client.clone();
        tokio::spawn(async move {
            client
                .call::<SectorsUnsealPiece>((placed.sector, CidJson(piece_cid)))
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let workers = loop {
        let workers = hub.proof_workers_for("Unseal");
        if !workers.is_empty() {
            break workers;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no unseal worker started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stopping = std::time::Instant::now();
    hub.stop(false);
    let took = stopping.elapsed();
    eprintln!("the hub stopped {took:?} after SIGTERM during an unseal");
    assert!(
        took < Duration::from_secs(25),
        "the hub took {took:?} to stop"
    );
    let gone = nelumbo_testkit::wait_gone(&workers, Duration::from_secs(10))
        .expect("an unseal worker outlived the hub by 10 s");
    eprintln!("its worker was gone {gone:?} after the hub");
    assert!(unsealing.await.expect("task").is_err());
    assert!(hub.log().contains("nelumbo-miner stopped"), "{}", hub.log());
    // The next start unseals it.
    hub.run(&[]).await;
    hub.client
        .call::<SectorsUnsealPiece>((placed.sector, CidJson(piece_cid)))
        .await
        .expect("unseal after the restart");
    let whole = http
        .get(format!("{}/pieces/{piece_cid}", hub.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.expect("bytes").to_vec(), piece_bytes);
}
