//! The whole deal with real proofs and real processes: chain, hub, markets and `nelumbo client`.
//! A file packed by the client goes from proposal to a deal active on chain; the hub's sector
//! holds exactly that piece; the status protocol reported each step on the way. Then the file
//! comes back with `nelumbo client retrieve`: from markets' cache while the hub is stopped; with
//! the piece out of the cache and the hub still away, a request gets 503 with `Retry-After`;
//! with the hub back but keeping no unsealed copy, the retrieval unseals the sealed sector
//! (the client told to retry until then) while a bitswap retrieval of the same file is told
//! DONT_HAVE and gets it after the unseal; and the piece itself comes back by piece CID.

use std::time::Duration;

use nelumbo_chain_api::methods::StateMarketStorageDeal;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_markets_api::admin::{DealState, DealsList};
use nelumbo_miner_api::types::SectorState;
use nelumbo_proofs::Prover;
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};
use nelumbo_testkit::markets::{TestClient, TestMarkets};
use nelumbo_types::SectorSize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_made_with_the_client_is_sealed_with_real_proofs_and_active_on_chain() {
    Prover::from_env()
        .expect("proofs")
        .param_cache()
        .ensure(SectorSize::KIB_2, &|e| eprintln!("{e:?}"))
        .expect("2 KiB parameters");
    let devnet = Devnet::start_with_policy(
        &["--sector-size", "2KiB"],
        serde_json::json!({ "epoch_duration_ms": 1000, "pre_commit_challenge_delay": 5 }),
    )
    .await;
    let mut hub = TestHub::init(&devnet, &["--sector-size", "2KiB"]).await;
    hub.edit_config("enabled = true", "enabled = false");
    hub.edit_config("wait_deals_secs = 3600", "wait_deals_secs = 5");
    hub.edit_config("keep_unsealed = true", "keep_unsealed = false");
    // One port across restarts, so markets finds the hub again.
    let port = nelumbo_testkit::markets::free_port();
    hub.edit_config(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    hub.run(&[]).await;
    let mut markets = TestMarkets::init(&devnet, &hub);
    markets.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    // Every service, as an SP runs it: indexing reports IndexedAndAnnounced while sealing.
    markets.run_services("deals,retrieval,indexing").await;

    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 10).await;
    let output = client.run(&["ask", &hub.actor.to_string()]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("piece sizes:    256 to 2048 bytes"),
        "{}",
        text(&output)
    );

    let file = devnet.dir.path().join("notes.txt");
    let payload: Vec<u8> = (0..1200u32).map(|i| b"nelumbo "[i as usize % 8]).collect();
    std::fs::write(&file, &payload).expect("write");
    let printed = client.deal_active(&hub.actor, &file, &[], || markets.log());
    eprintln!("{printed}");

    // The status protocol reported the deal's checkpoints in order as the client followed it.
    let mut at = 0;
    for step in ["Transferred", "IndexedAndAnnounced", "Complete"] {
        let found = printed[at..]
            .find(&format!("\n{step}: "))
            .unwrap_or_else(|| panic!("the client never saw {step}:\n{printed}"));
        at += found + 1;
    }

    let deals = markets.client.call::<DealsList>(()).await.expect("deals");
    assert_eq!(deals.len(), 1);
    let deal = &deals[0];
    assert_eq!(deal.state, DealState::Active);
    let deal_id = deal.deal_id.expect("deal id");
    let sector = deal.sector.expect("sector");

    // On chain: the deal is active in that sector.
    let onchain = devnet
        .client
        .call::<StateMarketStorageDeal>((deal_id, TipSetKey::head()))
        .await
        .expect("deal on chain");
    assert!(onchain.state.sector_start_epoch >= 0, "{onchain:?}");
    assert_eq!(onchain.proposal.piece_cid.to_string(), deal.piece_cid);

    // The hub's sector holds exactly that deal's piece, and is proven.
    let status = hub
        .wait_state(sector, SectorState::Proving, Duration::from_secs(120))
        .await;
    let deal_pieces: Vec<_> = status
        .pieces
        .iter()
        .filter(|p| p.deal_id.is_some())
        .collect();
    assert_eq!(deal_pieces.len(), 1, "{status:?}");
    assert_eq!(deal_pieces[0].deal_id, Some(deal_id));
    assert_eq!(deal_pieces[0].piece_cid.to_string(), deal.piece_cid);

    // The client's status command agrees.
    let output = client.run(&["deal-status", &deal.uuid]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("status:      Complete"),
        "{}",
        text(&output)
    );

    let root = TestClient::data_root(&printed);
    let actor = hub.actor.to_string();
    let retrieve = |out: &std::path::Path, cid: &str, wait: &str| {
        client.run(&[
            "retrieve",
            "--provider",
            &actor,
            "--out",
            out.to_str().expect("path"),
            "--wait",
            wait,
            cid,
        ])
    };

    // The hub stopped: the deal's data went into markets' cache when it became active, so the
    // file comes back without the hub, every block checked.
    hub.stop(false);
    let out = devnet.dir.path().join("cached");
    let output = retrieve(&out, &root, "0");
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output),
        markets.log()
    );
    assert_eq!(
        std::fs::read(out.join("notes.txt")).expect("the file"),
        payload
    );

    // Out of the cache (markets restarted without it) with the hub still away: 503 with
    // Retry-After, and markets stays up.
    markets.stop(false);
    let cache = markets.repo.join("piece-cache");
    for ext in ["data", "meta"] {
        std::fs::remove_file(cache.join(format!("{}.{ext}", deal.piece_cid)))
            .expect("the piece was cached");
    }
    markets.run().await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/piece/{}",
            markets.retrieval_url, deal.piece_cid
        ))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        reqwest::get(format!("{}/health/live", markets.retrieval_url))
            .await
            .expect("an answer")
            .status(),
        200
    );

    // The hub back, keeping no unsealed copy: the retrieval has the hub unseal the sealed sector
    // (real proofs) while the client is told to retry, then gets the file byte for byte. A
    // bitswap retrieval at the same time is told DONT_HAVE (at once: nothing waits for the
    // unseal) and gets the file once the unseal is done.
    hub.run(&[]).await;
    let bitswap_out = devnet.dir.path().join("back-bitswap");
    let bitswap = client
        .command(&[
            "retrieve",
            "--bitswap",
            "--provider",
            &actor,
            "--out",
            bitswap_out.to_str().expect("path"),
            "--wait",
            "300",
            &root,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a bitswap retrieval");
    let out = devnet.dir.path().join("back");
    let output = retrieve(&out, &root, "300");
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        text(&output),
        markets.log(),
        hub.log()
    );
    assert!(
        text(&output).contains("asking again"),
        "the first answer was not 'retry after': {}",
        text(&output)
    );
    assert_eq!(
        std::fs::read(out.join("notes.txt")).expect("the file"),
        payload
    );
    assert!(hub.log().contains("unsealed"), "{}", hub.log());
    let output = bitswap.wait_with_output().expect("the bitswap retrieval");
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output),
        markets.log()
    );
    assert!(
        text(&output).contains("does not have") && text(&output).contains("over bitswap"),
        "the first bitswap answer was not DONT_HAVE: {}",
        text(&output)
    );
    assert_eq!(
        std::fs::read(bitswap_out.join("notes.txt")).expect("the file"),
        payload
    );

    // Back by piece CID, checked by its commitment.
    let out = devnet.dir.path().join("piece.car");
    let output = retrieve(&out, &deal.piece_cid, "60");
    assert!(output.status.success(), "{}", text(&output));
    let car = std::fs::read(&out).expect("the piece");
    let digest = nelumbo_commp::commp(&car).expect("commp");
    let size = nelumbo_commp::PaddedPieceSize::new(deal.piece_size).expect("size");
    let padded =
        nelumbo_commp::pad_commitment(&digest.commitment, digest.piece_size, size).expect("pad");
    assert_eq!(
        nelumbo_commp::piece_cid_v1(&padded).to_string(),
        deal.piece_cid
    );
}
