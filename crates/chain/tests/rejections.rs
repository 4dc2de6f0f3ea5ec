//! What the chain refuses, and how: each bad message is rejected at `MpoolPush` with an error
//! that names the problem, and leaves nonces, balances and actor state as they were. Deals are
//! published, consume DataCap and are activated through a sector's piece manifest.
//!
//! Insecure testing proofs: the chain's proof verification is exercised with real proofs in
//! `sector_lifecycle.rs`; here a "bad proof" is one that does not match what the sector commits
//! to, and a real-looking proof is refused for being of the wrong mode.

mod common;

use common::*;
use fil_actor_market_state::v18::{
    ClientDealProposal, DealProposal, Label, PublishStorageDealsParams, PublishStorageDealsReturn,
};
use fil_actor_miner_state::v18::{
    DataActivationNotification, PieceActivationManifest, PoStPartition, SubmitWindowedPoStParams,
};
use fvm_ipld_bitfield::BitField;
use fvm_ipld_encoding::RawBytes;
use fvm_shared::address::Address;
use fvm_shared::bigint::BigInt;
use fvm_shared::econ::TokenAmount;
use fvm_shared::piece::PaddedPieceSize;
use fvm_shared::randomness::Randomness as FvmRandomness;
use fvm_shared::sector::{PoStProof, RegisteredPoStProof};
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::{Message, TipSetKey};
use nelumbo_chain_api::{Addr, Big};
use nelumbo_keys::{KeyInfo, KeyKind};
use nelumbo_proofs::{PostKind, ProvenSector};
use nelumbo_types::{ActorId, SectorNumber, SectorSize};

const SIZE: SectorSize = SectorSize::KIB_2;
const VERIFREG: u64 = 6;

/// A devnet in insecure mode with quick epochs, short deadlines and a short ticket lookback.
async fn devnet() -> Devnet {
    let dir = tempfile::tempdir().expect("dir");
    let mut policy = nelumbo_chain::genesis::Policy::devnet();
    policy.epoch_duration_ms = 250;
    policy.wpost_challenge_window = 6;
    policy.wpost_challenge_lookback = 3;
    policy.fault_declaration_cutoff = 4;
    policy.max_pre_commit_randomness_lookback = 12;
    let path = dir.path().join("policy.json");
    std::fs::write(&path, serde_json::to_vec(&policy).expect("json")).expect("policy");
    Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--policy",
        path.to_str().expect("utf-8"),
    ])
    .await
}

/// A message with fixed gas, so that it reaches `MpoolPush` without the estimate's dry run.
fn fixed_gas_message(
    from: Address,
    to: Address,
    method: u64,
    params: Vec<u8>,
    value: TokenAmount,
    nonce: u64,
) -> Message {
    let mut message = plain_message(from, to, value, method, params);
    message.sequence = nonce;
    message.gas_limit = 100_000_000;
    message.gas_fee_cap = TokenAmount::from_atto(1000);
    message.gas_premium = TokenAmount::from_atto(100);
    Message(message)
}

/// What a rejection must not change: the sender's nonce and balance.
async fn account(devnet: &Devnet, address: Address) -> (u64, TokenAmount) {
    let nonce = devnet
        .client
        .call::<MpoolGetNonce>((Addr(address),))
        .await
        .expect("nonce");
    let balance = devnet
        .client
        .call::<WalletBalance>((Addr(address),))
        .await
        .expect("balance")
        .0;
    (nonce, balance)
}

/// Pushes `message` signed by `key`, expects a refusal mentioning each of `needles`, and checks
/// that the sender's nonce and balance did not change, even after the next tipsets.
async fn refused(devnet: &Devnet, key: &KeyInfo, message: Message, needles: &[&str]) -> String {
    let from = message.0.from;
    let before = account(devnet, from).await;
    let error = devnet
        .client
        .call::<MpoolPush>((sign(key, message),))
        .await
        .expect_err("the chain accepted a bad message");
    let text = error.to_string();
    for needle in needles {
        assert!(
            text.contains(needle),
            "{text:?} does not mention {needle:?}"
        );
    }
    let height = devnet.head().await;
    devnet.wait_height(height + 2).await;
    assert_eq!(
        account(devnet, from).await,
        before,
        "a refused message changed its sender"
    );
    text
}

/// Pushes with a fresh nonce and fixed gas; expects a refusal mentioning `needles`.
async fn refused_call(
    devnet: &Devnet,
    key: &KeyInfo,
    to: Address,
    method: u64,
    params: Vec<u8>,
    needles: &[&str],
) -> String {
    let from = key.address().expect("address");
    let nonce = account(devnet, from).await.0;
    let message = fixed_gas_message(from, to, method, params, TokenAmount::from_atto(0), nonce);
    refused(devnet, key, message, needles).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_without_a_trace() {
    let devnet = devnet().await;
    let alice = KeyInfo::generate(KeyKind::Secp256k1);
    let mallory = KeyInfo::generate(KeyKind::Secp256k1);
    let alice_addr = alice.address().expect("alice");
    let bob = Address::new_id(100);
    devnet.fund(alice_addr, 2).await;
    let (nonce, _) = account(&devnet, alice_addr).await;
    let send = |value: u64, nonce: u64| {
        fixed_gas_message(
            alice_addr,
            bob,
            0,
            Vec::new(),
            TokenAmount::from_whole(value),
            nonce,
        )
    };

    // Signed by another key.
    refused(&devnet, &mallory, send(1, nonce), &["bad signature"]).await;
    // A signature over other bytes by the right key.
    let mut tampered = sign(&alice, send(1, nonce));
    tampered.message.0.value = TokenAmount::from_whole(2);
    let error = devnet
        .client
        .call::<MpoolPush>((tampered,))
        .await
        .expect_err("a tampered message was accepted");
    assert!(error.to_string().contains("bad signature"), "{error}");
    // Nonces already used, and from the future.
    refused(
        &devnet,
        &alice,
        send(1, nonce + 1),
        &["wrong nonce", "the next nonce"],
    )
    .await;
    devnet
        .execute(&alice, bob, 0, Vec::new(), TokenAmount::from_atto(1))
        .await;
    refused(
        &devnet,
        &alice,
        send(1, nonce),
        &["wrong nonce", "already used"],
    )
    .await;
    // More than the balance.
    refused(
        &devnet,
        &alice,
        send(5, nonce + 1),
        &["message would fail", "SysErrInsufficientFunds", "is needed"],
    )
    .await;
    // Gas it cannot pay for.
    let mut greedy = send(0, nonce + 1);
    greedy.0.gas_limit = 9_000_000_000;
    greedy.0.gas_fee_cap = TokenAmount::from_atto(1_000_000_000);
    refused(&devnet, &alice, greedy, &["gas limit times the fee cap"]).await;

    // Malformed parameters and unknown methods, on a miner.
    let miner = create_miner(&devnet, SIZE.window_post_proof_number()).await;
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        PRE_COMMIT_SECTOR_BATCH2,
        vec![0xff, 0x00, 0x13],
        &["exit code 21", "ErrSerialization", "malformed"],
    )
    .await;
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        9999,
        Vec::new(),
        &["exit code 22", "ErrUnhandledMessage", "no method 9999"],
    )
    .await;
    // The account was not touched by any of it, and the chain still works.
    let (after, _) = account(&devnet, alice_addr).await;
    assert_eq!(after, nonce + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_seals_and_posts_are_refused() {
    let devnet = devnet().await;
    let miner = create_miner(&devnet, SIZE.window_post_proof_number()).await;
    let no_pre_commit = || async {
        devnet
            .client
            .call::<StateSectorPreCommitInfo>((Addr(miner.address), 7, TipSetKey::head()))
            .await
            .expect("pre-commit info")
    };

    // A ticket older than the lookback (12 epochs).
    let head = devnet.head().await;
    let params = pre_commit_params(7, &random_commitment(), head - 20, head + 5000, &[]);
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        PRE_COMMIT_SECTOR_BATCH2,
        cbor(&params),
        &["seal ticket epoch", "is too old"],
    )
    .await;
    assert!(no_pre_commit().await.is_none());

    // Prove-commit before the seed exists, with a proof that would otherwise be right.
    let sector = insecure_pre_commit(&devnet, &miner, 7, Vec::new()).await;
    let seed_epoch = sector.pre_commit_epoch + devnet.pre_commit_delay().await;
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        PROVE_COMMIT_SECTORS3,
        cbor(&prove_commit_params(&sector, vec![0; 64])),
        &["too early to prove sector 7"],
    )
    .await;
    devnet.wait_height(seed_epoch + 1).await;
    let proof = insecure_seal_proof(&devnet, &miner, &sector, seed_epoch).await;

    // A proof for another sealed replica, and a real-looking proof on an insecure chain.
    let mut other = sector.clone();
    other.comm_r = random_commitment();
    let wrong = insecure_seal_proof(&devnet, &miner, &other, seed_epoch).await;
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        PROVE_COMMIT_SECTORS3,
        cbor(&prove_commit_params(&sector, wrong)),
        &["invalid seal proof for sector 7"],
    )
    .await;
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        PROVE_COMMIT_SECTORS3,
        cbor(&prove_commit_params(&sector, vec![0x8a; 192])),
        &["a real proof was given in insecure testing mode"],
    )
    .await;
    assert!(
        devnet
            .client
            .call::<StateSectorGetInfo>((Addr(miner.address), 7, TipSetKey::head()))
            .await
            .expect("sector info")
            .is_none(),
        "a refused prove-commit activated the sector"
    );
    devnet
        .execute(
            &miner.worker,
            miner.address,
            PROVE_COMMIT_SECTORS3,
            cbor(&prove_commit_params(&sector, proof)),
            TokenAmount::from_atto(0),
        )
        .await;

    // WindowPoSt: a proof over the wrong commitment is refused; the right one gives power.
    let (deadline, partition) = location(&devnet, &miner, 7).await;
    let dl = devnet.next_deadline(miner.address, deadline).await;
    devnet.wait_height(dl.open).await;
    let seed = randomness(
        &devnet,
        true,
        WINDOW_POST_SEED,
        dl.challenge,
        entropy(&miner.address),
    )
    .await;
    let commit_rand = randomness(&devnet, false, POST_CHAIN_COMMIT, dl.challenge, Vec::new()).await;
    let post = |comm_r: [u8; 32]| {
        let proof = nelumbo_proofs::insecure_post_proof(
            PostKind::Window,
            SIZE,
            ActorId(miner.id),
            nelumbo_types::Randomness(seed),
            &[ProvenSector {
                number: SectorNumber(7),
                comm_r,
            }],
        );
        cbor(&SubmitWindowedPoStParams {
            deadline,
            partitions: vec![PoStPartition {
                index: partition,
                skipped: BitField::new(),
            }],
            proofs: vec![PoStProof {
                post_proof: RegisteredPoStProof::from(SIZE.window_post_proof_number()),
                proof_bytes: proof,
            }],
            chain_commit_epoch: dl.challenge,
            chain_commit_rand: FvmRandomness(commit_rand.to_vec()),
        })
    };
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        SUBMIT_WINDOWED_POST,
        post(random_commitment()),
        &["invalid WindowPoSt proof"],
    )
    .await;
    devnet
        .execute(
            &miner.worker,
            miner.address,
            SUBMIT_WINDOWED_POST,
            post(sector.comm_r),
            TokenAmount::from_atto(0),
        )
        .await;
    let power = devnet
        .client
        .call::<StateMinerPower>((Addr(miner.address), TipSetKey::head()))
        .await
        .expect("power");
    assert_eq!(power.miner_power.raw_byte_power.to_string(), "2048");
}

/// A signed deal proposal for a 2 KiB piece of random data.
fn proposal(
    client: &KeyInfo,
    provider: Address,
    start: i64,
    verified: bool,
) -> (ClientDealProposal, PieceActivationManifest) {
    let data: Vec<u8> = (0..1500).map(|_| rand::random::<u8>()).collect();
    let piece = nelumbo_commp::commp(&data).expect("commp");
    let proposal = DealProposal {
        piece_cid: piece.cid_v1(),
        piece_size: PaddedPieceSize(2048),
        verified_deal: verified,
        client: client.address().expect("client"),
        provider,
        label: Label::String("a test deal".into()),
        start_epoch: start,
        end_epoch: start + 400,
        storage_price_per_epoch: TokenAmount::from_nano(1),
        provider_collateral: TokenAmount::from_nano(10),
        client_collateral: TokenAmount::from_atto(0),
    };
    let signature = client.sign(&cbor(&proposal)).expect("sign");
    let manifest = PieceActivationManifest {
        cid: proposal.piece_cid,
        size: proposal.piece_size,
        verified_allocation_key: None,
        notify: Vec::new(),
    };
    (
        ClientDealProposal {
            proposal,
            client_signature: signature,
        },
        manifest,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_are_checked_published_and_activated() {
    let devnet = devnet().await;
    let miner = create_miner(&devnet, SIZE.window_post_proof_number()).await;
    let client = KeyInfo::generate(KeyKind::Secp256k1);
    let client_addr = client.address().expect("client");
    devnet.fund(client_addr, 10).await;
    let market = Address::new_id(MARKET);
    // Escrow: the client's storage price, the provider's collateral.
    devnet
        .execute(
            &client,
            market,
            2,
            cbor(&client_addr),
            TokenAmount::from_whole(1),
        )
        .await;
    devnet
        .execute(
            &miner.owner,
            market,
            2,
            cbor(&miner.address),
            TokenAmount::from_whole(1),
        )
        .await;
    // DataCap: the root makes a notary, the notary a verified client.
    let root = devnet.verified_registry_root();
    let notary = KeyInfo::generate(KeyKind::Secp256k1);
    devnet.fund(notary.address().expect("notary"), 10).await;
    let message = plain_message(
        root,
        Address::new_id(VERIFREG),
        TokenAmount::from_atto(0),
        2,
        cbor(&fil_actor_verifreg_state::v18::AddVerifierParams {
            address: notary.address().expect("notary"),
            allowance: BigInt::from(1u64 << 20),
        }),
    );
    let signed = devnet
        .client
        .call::<MpoolPushMessage>((Message(message), None))
        .await
        .expect("add notary");
    assert_eq!(
        devnet
            .wait(signed.cid().expect("cid"))
            .await
            .receipt
            .exit_code,
        0
    );
    devnet
        .execute(
            &notary,
            Address::new_id(VERIFREG),
            4,
            cbor(&fil_actor_verifreg_state::v18::AddVerifiedClientParams {
                address: client_addr,
                allowance: BigInt::from(4096),
            }),
            TokenAmount::from_atto(0),
        )
        .await;
    let datacap = || async {
        devnet
            .client
            .call::<StateVerifiedClientStatus>((Addr(client_addr), TipSetKey::head()))
            .await
            .expect("verified client status")
            .map(|b: Big| b.0.to_string())
    };
    assert_eq!(datacap().await.as_deref(), Some("4096"));

    let escrow = || async {
        devnet
            .client
            .call::<StateMarketBalance>((Addr(client_addr), TipSetKey::head()))
            .await
            .expect("market balance")
    };
    let start = devnet.head().await + 120;
    let publish = |deals: Vec<ClientDealProposal>| cbor(&PublishStorageDealsParams { deals });

    // A signature by someone else.
    let (mut forged, _) = proposal(&client, miner.address, start, false);
    forged.client_signature = KeyInfo::generate(KeyKind::Secp256k1)
        .sign(&cbor(&forged.proposal))
        .expect("sign");
    refused_call(
        &devnet,
        &miner.worker,
        market,
        4,
        publish(vec![forged]),
        &[
            "All deal proposals invalid",
            "deal 0: client signature is invalid",
        ],
    )
    .await;
    // More than the escrow holds (1 FIL; this deal costs 400 FIL).
    let (mut dear, _) = proposal(&client, miner.address, start, false);
    dear.proposal.storage_price_per_epoch = TokenAmount::from_whole(1);
    dear.client_signature = client.sign(&cbor(&dear.proposal)).expect("sign");
    refused_call(
        &devnet,
        &miner.worker,
        market,
        4,
        publish(vec![dear]),
        &["client escrow is insufficient"],
    )
    .await;
    // Only the provider's worker or control addresses publish.
    let (deal, _) = proposal(&client, miner.address, start, false);
    refused_call(
        &devnet,
        &client,
        market,
        4,
        publish(vec![deal]),
        &["is not the worker or a control address"],
    )
    .await;
    let unchanged = escrow().await;
    assert_eq!(
        unchanged.locked,
        TokenAmount::from_atto(0),
        "refused deals locked funds"
    );

    // Two good deals, one verified, in one message.
    let (plain, plain_piece) = proposal(&client, miner.address, start, false);
    let (verified, verified_piece) = proposal(&client, miner.address, start, true);
    let lookup = devnet
        .execute(
            &miner.worker,
            market,
            4,
            publish(vec![plain, verified]),
            TokenAmount::from_atto(0),
        )
        .await;
    let ret: PublishStorageDealsReturn =
        fvm_ipld_encoding::from_slice(&lookup.receipt.r#return).expect("return");
    assert_eq!(ret.ids.len(), 2);
    assert_eq!(
        datacap().await.as_deref(),
        Some("2048"),
        "the verified deal used DataCap"
    );
    let locked = escrow().await.locked;
    assert_eq!(
        locked,
        TokenAmount::from_nano(2 * 400),
        "the deals' price is locked"
    );

    // Each deal in its own sector, activated through the piece manifest's market notification.
    for (number, (id, mut piece)) in ret
        .ids
        .iter()
        .zip([plain_piece, verified_piece])
        .enumerate()
    {
        piece.notify = vec![DataActivationNotification {
            address: market,
            payload: RawBytes::new(cbor(id)),
        }];
        let number = 10 + number as u64;
        let (_, lookup) = insecure_commit(&devnet, &miner, number, vec![piece]).await;
        let deal = devnet
            .client
            .call::<StateMarketStorageDeal>((*id, TipSetKey::head()))
            .await
            .expect("deal");
        assert_eq!(deal.state.sector_number, number);
        let sector = devnet
            .client
            .call::<StateSectorGetInfo>((Addr(miner.address), number, TipSetKey::head()))
            .await
            .expect("sector")
            .expect("on chain");
        assert_eq!(deal.state.sector_start_epoch, sector.activation);
        assert!(sector.activation < lookup.height);
        let weight = if number == 11 {
            &sector.verified_deal_weight
        } else {
            &sector.deal_weight
        };
        assert_ne!(
            weight.to_string(),
            "0",
            "sector {number} has no deal weight"
        );
    }

    // A deal activates once: another sector naming it is refused, and holds nothing.
    let (_, mut piece) = proposal(&client, miner.address, start, false);
    let first = &ret.ids[0];
    let deal = devnet
        .client
        .call::<StateMarketStorageDeal>((*first, TipSetKey::head()))
        .await
        .expect("deal");
    piece.cid = deal.proposal.piece_cid;
    piece.notify = vec![DataActivationNotification {
        address: market,
        payload: RawBytes::new(cbor(first)),
    }];
    let sector = insecure_pre_commit(&devnet, &miner, 12, vec![piece]).await;
    let seed_epoch = sector.pre_commit_epoch + devnet.pre_commit_delay().await;
    devnet.wait_height(seed_epoch + 1).await;
    let proof = insecure_seal_proof(&devnet, &miner, &sector, seed_epoch).await;
    refused_call(
        &devnet,
        &miner.worker,
        miner.address,
        PROVE_COMMIT_SECTORS3,
        cbor(&prove_commit_params(&sector, proof)),
        &[&format!("deal {first} is already active")],
    )
    .await;
}
