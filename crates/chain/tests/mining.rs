//! Winning blocks as a miner does it: `MinerGetBaseInfo`, the election proof (the worker's BLS
//! signature over the election randomness), a WinningPoSt over the challenged sectors, a signed
//! header through `SyncSubmitBlock`, and the block reward. Forged, duplicate, late and
//! unproven blocks are refused. Insecure testing proofs (the real WinningPoSt is exercised by
//! the hub's end-to-end test); an election rate of 1000 makes the only miner with power win
//! every epoch.

mod common;

use common::*;
use fil_actor_miner_state::v18::{PoStPartition, SubmitWindowedPoStParams};
use fvm_ipld_bitfield::BitField;
use fvm_shared::econ::TokenAmount;
use fvm_shared::randomness::Randomness as FvmRandomness;
use fvm_shared::sector::RegisteredPoStProof;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::{
    BlockHeader, BlockMsg, ElectionProof, PoStProof, Signature, Ticket, TipSetKey,
};
use nelumbo_keys::KeyInfo;
use nelumbo_proofs::{PostKind, ProvenSector};
use nelumbo_types::{ActorId, SectorNumber, SectorSize};

const SIZE: SectorSize = SectorSize::KIB_2;
const ELECTION_PROOF_PRODUCTION: i64 = 2;
const WINNING_POST_SEED: i64 = 3;
const TICKET_PRODUCTION: i64 = 1;

/// Gives the miner one proven sector (power) on an insecure chain.
async fn proven_sector(devnet: &Devnet, miner: &TestMiner) -> PreCommitted {
    let (sector, _) = insecure_commit(devnet, miner, 1, Vec::new()).await;
    let (deadline, partition) = location(devnet, miner, 1).await;
    let dl = devnet.next_deadline(miner.address, deadline).await;
    devnet.wait_height(dl.open).await;
    let seed = randomness(
        devnet,
        true,
        WINDOW_POST_SEED,
        dl.challenge,
        entropy(&miner.address),
    )
    .await;
    let commit_rand = randomness(devnet, false, POST_CHAIN_COMMIT, dl.challenge, Vec::new()).await;
    let proof = nelumbo_proofs::insecure_post_proof(
        PostKind::Window,
        SIZE,
        ActorId(miner.id),
        nelumbo_types::Randomness(seed),
        &[ProvenSector {
            number: SectorNumber(1),
            comm_r: sector.comm_r,
        }],
    );
    let params = SubmitWindowedPoStParams {
        deadline,
        partitions: vec![PoStPartition {
            index: partition,
            skipped: BitField::new(),
        }],
        proofs: vec![fvm_shared::sector::PoStProof {
            post_proof: RegisteredPoStProof::from(SIZE.window_post_proof_number()),
            proof_bytes: proof,
        }],
        chain_commit_epoch: dl.challenge,
        chain_commit_rand: FvmRandomness(commit_rand.to_vec()),
    };
    devnet
        .execute(
            &miner.worker,
            miner.address,
            SUBMIT_WINDOWED_POST,
            cbor(&params),
            TokenAmount::from_atto(0),
        )
        .await;
    sector
}

fn bls_signature(key: &KeyInfo, bytes: &[u8]) -> Vec<u8> {
    key.sign(bytes).expect("sign").bytes
}

/// Builds and signs the block the miner won at `epoch` on the tipset before it.
async fn won_block(
    devnet: &Devnet,
    miner: &TestMiner,
    sector: &PreCommitted,
    epoch: i64,
) -> BlockMsg {
    let parent = devnet
        .client
        .call::<ChainGetTipSetByHeight>((epoch - 1, TipSetKey::head()))
        .await
        .expect("parent");
    let base = devnet
        .client
        .call::<MinerGetBaseInfo>((Addr(miner.address), epoch, TipSetKey(parent.cids.clone())))
        .await
        .expect("base info")
        .expect("a miner");
    assert!(base.eligible_for_mining, "the miner is not eligible");
    let vrf_input = randomness(
        devnet,
        true,
        ELECTION_PROOF_PRODUCTION,
        epoch,
        entropy(&miner.address),
    )
    .await;
    let ticket_input = randomness(
        devnet,
        true,
        TICKET_PRODUCTION,
        epoch,
        entropy(&miner.address),
    )
    .await;
    let challenge = randomness(
        devnet,
        true,
        WINNING_POST_SEED,
        epoch,
        entropy(&miner.address),
    )
    .await;
    let sectors: Vec<ProvenSector> = base
        .sectors
        .iter()
        .map(|s| {
            assert_eq!(s.sealed_cid, sealed_cid(&sector.comm_r));
            ProvenSector {
                number: SectorNumber(s.sector_number),
                comm_r: sector.comm_r,
            }
        })
        .collect();
    assert!(!sectors.is_empty(), "no sectors are challenged");
    let proof = nelumbo_proofs::insecure_post_proof(
        PostKind::Winning,
        SIZE,
        ActorId(miner.id),
        nelumbo_types::Randomness(challenge),
        &sectors,
    );
    let parent_block = &parent.blocks[0];
    let mut header = BlockHeader {
        miner: miner.address,
        ticket: Some(Ticket {
            vrf_proof: bls_signature(&miner.worker, &ticket_input),
        }),
        election_proof: Some(ElectionProof {
            win_count: 1,
            vrf_proof: bls_signature(&miner.worker, &vrf_input),
        }),
        beacon_entries: base.beacon_entries.clone(),
        win_post_proof: vec![PoStProof {
            post_proof: SIZE.winning_post_proof_number(),
            proof_bytes: proof,
        }],
        parents: parent.cids.clone(),
        parent_weight: parent_block.parent_weight.clone(),
        height: epoch,
        parent_state_root: parent_block.parent_state_root,
        parent_message_receipts: parent_block.parent_message_receipts,
        messages: parent_block.messages,
        bls_aggregate: None,
        timestamp: parent_block.timestamp + 1,
        block_sig: None,
        fork_signaling: 0,
        parent_base_fee: parent_block.parent_base_fee.clone(),
    };
    sign_header(&mut header, &miner.worker);
    BlockMsg {
        header,
        bls_messages: Vec::new(),
        secpk_messages: Vec::new(),
    }
}

fn sign_header(header: &mut BlockHeader, worker: &KeyInfo) {
    let signing = header.signing_bytes().expect("signing bytes");
    header.block_sig = Some(Signature::from_fvm(&worker.sign(&signing).expect("sign")));
}

async fn submit(devnet: &Devnet, block: BlockMsg) -> Result<(), String> {
    devnet
        .client
        .call::<SyncSubmitBlock>((block,))
        .await
        .map_err(|e| e.to_string())
}

async fn miner_balance(devnet: &Devnet, miner: &TestMiner) -> TokenAmount {
    devnet
        .client
        .call::<WalletBalance>((Addr(miner.address),))
        .await
        .expect("balance")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_with_power_wins_blocks_and_is_paid() {
    let devnet = Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        "250",
        "--challenge-window",
        "6",
        "--challenge-lookback",
        "3",
        "--fault-cutoff",
        "4",
        "--election-rate",
        "1000",
    ])
    .await;
    let miner = create_miner(&devnet, SIZE.window_post_proof_number()).await;

    // Without power there is nothing to win.
    let head = devnet.head().await;
    let base = devnet
        .client
        .call::<MinerGetBaseInfo>((Addr(miner.address), head, TipSetKey::head()))
        .await
        .expect("base info")
        .expect("a miner");
    assert!(!base.eligible_for_mining);

    let sector = proven_sector(&devnet, &miner).await;
    // The election at E runs on the state of E's parent, which must include the proof.
    devnet.wait_height(devnet.head().await + 2).await;
    let epoch = devnet.head().await;
    let block = won_block(&devnet, &miner, &sector, epoch).await;

    // Forgeries: a tampered WinningPoSt, an election proof by another key, a bad signature.
    let mut tampered = block.clone();
    tampered.header.win_post_proof[0].proof_bytes[40] ^= 1;
    sign_header(&mut tampered.header, &miner.worker);
    let error = submit(&devnet, tampered)
        .await
        .expect_err("tampered WinningPoSt");
    assert!(error.contains("invalid WinningPoSt"), "{error}");
    let mut forged = block.clone();
    let stranger = KeyInfo::generate(nelumbo_keys::KeyKind::Bls);
    forged
        .header
        .election_proof
        .as_mut()
        .expect("election")
        .vrf_proof = bls_signature(&stranger, b"anything");
    let error = submit(&devnet, forged)
        .await
        .expect_err("forged election proof");
    assert!(error.contains("invalid election proof"), "{error}");
    let mut unsigned = block.clone();
    unsigned.header.timestamp += 1;
    let error = submit(&devnet, unsigned)
        .await
        .expect_err("stale signature");
    assert!(error.contains("invalid block signature"), "{error}");

    // The real thing is accepted once and paid (10 FIL) at the next tipset.
    let before = miner_balance(&devnet, &miner).await;
    submit(&devnet, block.clone()).await.expect("won block");
    let error = submit(&devnet, block).await.expect_err("duplicate");
    assert!(error.contains("already has a block for epoch"), "{error}");
    let paid_by = devnet.head().await + 2;
    devnet.wait_height(paid_by).await;
    let after = miner_balance(&devnet, &miner).await;
    assert_eq!(
        after - before,
        TokenAmount::from_whole(10),
        "the block reward"
    );

    // Too late: the acceptance window is 20 epochs.
    let late = epoch + 1;
    let block = won_block(&devnet, &miner, &sector, late).await;
    devnet.wait_height(late + 21).await;
    let error = submit(&devnet, block).await.expect_err("late block");
    assert!(error.contains("too late"), "{error}");
}
