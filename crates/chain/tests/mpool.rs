//! The message pool as Lotus's behaves where senders rely on it: a message whose fee cap is
//! below the base fee waits, and holds back its sender's later messages; a replacement with
//! the same nonce and a premium at least 25% higher takes its place and executes; a smaller
//! raise is refused with the minimum named. Also the miner's control addresses
//! (`ChangeWorkerAddress`) and the market's collateral bounds.

mod common;

use common::*;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::{Message, TipSetKey};
use nelumbo_keys::{KeyInfo, KeyKind};

/// A transfer of 1 attoFIL from `key` with nonce `nonce` and the given fees.
fn transfer(key: &KeyInfo, to: Address, nonce: u64, premium: u64, fee_cap: u64) -> Message {
    let mut message = Message(plain_message(
        key.address().expect("address"),
        to,
        TokenAmount::from_atto(1),
        0,
        Vec::new(),
    ));
    message.0.sequence = nonce;
    message.0.gas_limit = 1_000_000;
    message.0.gas_premium = TokenAmount::from_atto(premium);
    message.0.gas_fee_cap = TokenAmount::from_atto(fee_cap);
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_fee_message_waits_until_replaced_by_fee() {
    let devnet = Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        "250",
    ])
    .await;
    let sender = KeyInfo::generate(KeyKind::Secp256k1);
    let from = sender.address().expect("address");
    devnet.fund(from, 10).await;
    let to = KeyInfo::generate(KeyKind::Secp256k1)
        .address()
        .expect("address");
    // The devnet's base fee is 1000 attoFIL per gas; the pool takes fee caps from 100.
    let stuck = sign(&sender, transfer(&sender, to, 0, 50, 600));
    let stuck_cid = devnet
        .client
        .call::<MpoolPush>((stuck.clone(),))
        .await
        .expect("a fee cap below the base fee waits in the pool")
        .0;
    // A later message of the same sender waits behind it.
    let behind = sign(&sender, transfer(&sender, to, 1, 1000, 10_000));
    let behind_cid = devnet
        .client
        .call::<MpoolPush>((behind,))
        .await
        .expect("push the next nonce")
        .0;
    let head = devnet.head().await;
    devnet.wait_height(head + 6).await;
    let pending = devnet
        .client
        .call::<MpoolPending>((TipSetKey::head(),))
        .await
        .expect("pending");
    let pending: Vec<_> = pending.iter().filter_map(|m| m.cid().ok()).collect();
    assert!(
        pending.contains(&stuck_cid) && pending.contains(&behind_cid),
        "{pending:?}"
    );
    for cid in [stuck_cid, behind_cid] {
        let found = devnet
            .client
            .call::<StateSearchMsg>((TipSetKey::head(), nelumbo_chain_api::CidJson(cid), -1, true))
            .await
            .expect("search");
        assert!(found.is_none(), "{cid} executed while held back");
    }

    // Too small a raise is refused, naming the least premium that replaces it.
    let error = devnet
        .client
        .call::<MpoolPush>((sign(&sender, transfer(&sender, to, 0, 60, 5000)),))
        .await
        .expect_err("a 20% raise replaced the message");
    assert!(error.to_string().contains("at least 63 attoFIL"), "{error}");

    // 25% more premium and a fee cap above the base fee: it replaces the stuck one, and both
    // nonces execute.
    let replacement = sign(&sender, transfer(&sender, to, 0, 63, 5000));
    let replacement_cid = devnet
        .client
        .call::<MpoolPush>((replacement,))
        .await
        .expect("the replacement is taken")
        .0;
    let lookup = devnet.wait(replacement_cid).await;
    assert_eq!(lookup.receipt.exit_code, 0);
    let lookup = devnet.wait(behind_cid).await;
    assert_eq!(lookup.receipt.exit_code, 0);
    let actor = devnet
        .client
        .call::<StateGetActor>((Addr(from), TipSetKey::head()))
        .await
        .expect("actor");
    assert_eq!(actor.nonce, 2);
    let found = devnet
        .client
        .call::<StateSearchMsg>((
            TipSetKey::head(),
            nelumbo_chain_api::CidJson(stuck_cid),
            -1,
            true,
        ))
        .await
        .expect("search");
    assert!(found.is_none(), "the replaced message executed too");

    // A fee cap under the pool's minimum is refused outright.
    let error = devnet
        .client
        .call::<MpoolPush>((sign(&sender, transfer(&sender, to, 2, 10, 50)),))
        .await
        .expect_err("a fee cap under the minimum was taken");
    assert!(error.to_string().contains("below the minimum"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_names_control_addresses_and_the_market_states_its_bounds() {
    let devnet = Devnet::start(&[
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
    let control = KeyInfo::generate(KeyKind::Secp256k1);
    let control_addr = control.address().expect("control");
    devnet.fund(control_addr, 1).await;
    let params = fil_actor_miner_state::v18::ChangeWorkerAddressParams {
        new_worker: miner.worker.address().expect("worker"),
        new_control_addresses: vec![control_addr],
    };
    // Only the owner may.
    let refused = devnet
        .push(
            &miner.worker,
            miner.address,
            3,
            cbor(&params),
            TokenAmount::from_atto(0),
        )
        .await
        .expect_err("the worker changed the control addresses");
    assert!(refused.to_string().contains("not the owner"), "{refused}");
    devnet
        .execute(
            &miner.owner,
            miner.address,
            3,
            cbor(&params),
            TokenAmount::from_atto(0),
        )
        .await;
    let info = devnet
        .client
        .call::<StateMinerInfo>((Addr(miner.address), TipSetKey::head()))
        .await
        .expect("info");
    let control_id = devnet
        .client
        .call::<StateLookupID>((Addr(control_addr), TipSetKey::head()))
        .await
        .expect("id");
    assert_eq!(info.control_addresses, vec![control_id.0]);

    let bounds = devnet
        .client
        .call::<StateDealProviderCollateralBounds>((2048, false, TipSetKey::head()))
        .await
        .expect("bounds");
    assert!(
        bounds.min <= bounds.max && bounds.max.is_positive(),
        "{bounds:?}"
    );
    let error = devnet
        .client
        .call::<StateDealProviderCollateralBounds>((1000, false, TipSetKey::head()))
        .await
        .expect_err("a size that is not a padded piece size");
    assert!(
        error.to_string().contains("not a padded piece size"),
        "{error}"
    );
}
