//! Restarting the chain keeps its state exactly: the same tipsets at every height, the same
//! balances, nonces, actors, miner, sectors and deadlines, after a clean stop (SIGTERM) and
//! after a crash (SIGKILL); a message the pool accepted just before a crash still executes,
//! once. Insecure testing proofs: this test is about persistence, not proofs.

mod common;

use common::*;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_keys::{KeyInfo, KeyKind};
use serde_json::{Value, json};

/// Everything a client can read about the chain up to and at `head`, as Lotus JSON.
async fn snapshot(devnet: &Devnet, head: &Value, accounts: &[Address], miner: Address) -> Value {
    let key = head["Cids"].clone();
    let height = head["Height"].as_i64().expect("height");
    let mut tipsets = Vec::new();
    for h in 0..=height {
        let tipset = devnet
            .raw_ok("Filecoin.ChainGetTipSetByHeight", json!([h, key]))
            .await;
        tipsets.push(json!([tipset["Height"], tipset["Cids"]]));
    }
    let mut actors = Vec::new();
    for account in accounts.iter().chain([&miner]) {
        let address = account.to_string();
        actors.push(json!({
            "actor": devnet.raw_ok("Filecoin.StateGetActor", json!([address, key])).await,
            "id": devnet.raw_ok("Filecoin.StateLookupID", json!([address, key])).await,
            "market": devnet.raw_ok("Filecoin.StateMarketBalance", json!([address, key])).await,
        }));
    }
    let m = miner.to_string();
    json!({
        "tipsets": tipsets,
        "actors": actors,
        "miner_info": devnet.raw_ok("Filecoin.StateMinerInfo", json!([m, key])).await,
        "power": devnet.raw_ok("Filecoin.StateMinerPower", json!([m, key])).await,
        "sectors": devnet.raw_ok("Filecoin.StateMinerSectors", json!([m, null, key])).await,
        "deadlines": devnet.raw_ok("Filecoin.StateMinerDeadlines", json!([m, key])).await,
        "proving": devnet.raw_ok("Filecoin.StateMinerProvingDeadline", json!([m, key])).await,
    })
}

/// Asserts the restarted chain holds exactly `before` at the old head, and moves on from it.
async fn assert_kept(
    devnet: &Devnet,
    before: &Value,
    head: &Value,
    accounts: &[Address],
    miner: Address,
) {
    let after = snapshot(devnet, head, accounts, miner).await;
    assert_eq!(
        before, &after,
        "the state at the old head changed across a restart"
    );
    let old = head["Height"].as_i64().expect("height");
    devnet.wait_height(old + 3).await;
    let tipset = devnet
        .raw_ok("Filecoin.ChainGetTipSetByHeight", json!([old, null]))
        .await;
    assert_eq!(
        tipset["Cids"], head["Cids"],
        "the restarted chain forked from its old head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_the_state_exactly() {
    let mut devnet = Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        "250",
    ])
    .await;
    let miner = create_miner(
        &devnet,
        nelumbo_types::SectorSize::KIB_2.window_post_proof_number(),
    )
    .await;
    insecure_commit(&devnet, &miner, 1, Vec::new()).await;
    insecure_commit(&devnet, &miner, 2, Vec::new()).await;
    let alice = KeyInfo::generate(KeyKind::Secp256k1);
    let bob = KeyInfo::generate(KeyKind::Bls);
    let (alice_addr, bob_addr) = (alice.address().expect("a"), bob.address().expect("b"));
    devnet.fund(alice_addr, 50).await;
    devnet
        .execute(&alice, bob_addr, 0, Vec::new(), TokenAmount::from_whole(7))
        .await;
    // Escrow in the market actor.
    devnet
        .execute(
            &alice,
            Address::new_id(MARKET),
            2,
            cbor(&alice_addr),
            TokenAmount::from_whole(3),
        )
        .await;
    let accounts = [alice_addr, bob_addr, miner.owner.address().expect("owner")];

    // A clean stop.
    let head = devnet.raw_ok("Filecoin.ChainHead", json!([])).await;
    let before = snapshot(&devnet, &head, &accounts, miner.address).await;
    assert_eq!(
        before["actors"][1]["actor"]["Balance"], "7000000000000000000",
        "bob's balance"
    );
    assert_eq!(before["sectors"].as_array().expect("sectors").len(), 2);
    devnet.stop(false);
    devnet.run().await;
    assert_kept(&devnet, &before, &head, &accounts, miner.address).await;

    // A crash right after the pool accepted a message: it still executes, exactly once.
    let nonce = devnet
        .raw_ok("Filecoin.MpoolGetNonce", json!([alice_addr.to_string()]))
        .await;
    let cid = devnet
        .push(&alice, bob_addr, 0, Vec::new(), TokenAmount::from_whole(1))
        .await
        .expect("push");
    let head = devnet.raw_ok("Filecoin.ChainHead", json!([])).await;
    let before = snapshot(&devnet, &head, &accounts, miner.address).await;
    devnet.stop(true);
    devnet.run().await;
    assert_kept(&devnet, &before, &head, &accounts, miner.address).await;
    let lookup = devnet.wait(cid).await;
    assert_eq!(lookup.receipt.exit_code, 0);
    let bob_balance = devnet
        .raw_ok("Filecoin.WalletBalance", json!([bob_addr.to_string()]))
        .await;
    assert_eq!(bob_balance, "8000000000000000000", "the transfer ran once");
    let next = devnet
        .raw_ok("Filecoin.MpoolGetNonce", json!([alice_addr.to_string()]))
        .await;
    assert_eq!(next.as_u64(), nonce.as_u64().map(|n| n + 1));
}
