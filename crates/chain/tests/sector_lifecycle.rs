//! A sector's life against a running chain process, over JSON-RPC, with real 2 KiB proofs made
//! by the `proofs` crate: pre-commit, prove-commit, WindowPoSt (the sector gains power), a
//! missed deadline (the sector becomes faulty and a penalty is charged), a declared recovery and
//! a good WindowPoSt (active again). Bad proofs are refused along the way.

mod common;

use std::time::Duration;

use common::*;
use fil_actor_miner_state::v18::{
    CompactCommD, DeclareFaultsRecoveredParams, PoStPartition, PreCommitSectorBatchParams2,
    ProveCommitSectors3Params, RecoveryDeclaration, SectorActivationManifest, SectorPreCommitInfo,
    SubmitWindowedPoStParams,
};
use fvm_ipld_bitfield::BitField;
use fvm_ipld_encoding::RawBytes;
use fvm_shared::econ::TokenAmount;
use fvm_shared::randomness::Randomness as FvmRandomness;
use fvm_shared::sector::{PoStProof, RegisteredPoStProof, RegisteredSealProof};
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_chain_api::{Addr, OptBitField};
use nelumbo_proofs::{PostKind, Prover, ProvingSector, Replica, SectorPaths};
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize};

const SIZE: SectorSize = SectorSize::KIB_2;
const SECTOR: u64 = 1;
async fn raw_power(devnet: &Devnet, miner: &TestMiner) -> String {
    let power = devnet
        .client
        .call::<StateMinerPower>((Addr(miner.address), TipSetKey::head()))
        .await
        .expect("power");
    power.miner_power.raw_byte_power.to_string()
}

async fn balance(devnet: &Devnet, miner: &TestMiner) -> TokenAmount {
    devnet
        .client
        .call::<StateGetActor>((Addr(miner.address), TipSetKey::head()))
        .await
        .expect("actor")
        .balance
}

/// Waits for the next occurrence of the sector's deadline, proves it and returns the message
/// outcome. With `tamper`, first submits a corrupted proof and checks it is refused.
async fn window_post(
    devnet: &Devnet,
    prover: &Prover,
    miner: &TestMiner,
    sector: &ProvingSector,
    deadline: u64,
    partition: u64,
    tamper: bool,
) -> nelumbo_chain_api::types::DeadlineInfo {
    let dl = devnet.next_deadline(miner.address, deadline).await;
    devnet.wait_height(dl.challenge).await;
    let seed = randomness(
        devnet,
        true,
        WINDOW_POST_SEED,
        dl.challenge,
        entropy(&miner.address),
    )
    .await;
    let commit_rand = randomness(devnet, false, POST_CHAIN_COMMIT, dl.challenge, Vec::new()).await;
    let proof = prover
        .generate_post(
            PostKind::Window,
            SIZE,
            ActorId(miner.id),
            Randomness(seed),
            std::slice::from_ref(sector),
        )
        .expect("WindowPoSt");
    // The message executes one epoch after the head it is pushed at: wait for the window.
    devnet.wait_height(dl.open - 1).await;
    let params = |bytes: Vec<u8>| SubmitWindowedPoStParams {
        deadline,
        partitions: vec![PoStPartition {
            index: partition,
            skipped: BitField::new(),
        }],
        proofs: vec![PoStProof {
            post_proof: RegisteredPoStProof::from(SIZE.window_post_proof_number()),
            proof_bytes: bytes,
        }],
        chain_commit_epoch: dl.challenge,
        chain_commit_rand: FvmRandomness(commit_rand.to_vec()),
    };
    if tamper {
        let mut bad = proof.clone();
        bad[10] ^= 0xff;
        let err = devnet
            .push(
                &miner.worker,
                miner.address,
                5,
                cbor(&params(bad)),
                TokenAmount::from_atto(0),
            )
            .await
            .expect_err("a tampered WindowPoSt was accepted");
        assert!(err.to_string().contains("invalid WindowPoSt"), "{err}");
    }
    let cid = devnet
        .push(
            &miner.worker,
            miner.address,
            5,
            cbor(&params(proof)),
            TokenAmount::from_atto(0),
        )
        .await
        .expect("push WindowPoSt");
    let lookup = devnet.wait(cid).await;
    assert_eq!(
        lookup.receipt.exit_code,
        0,
        "WindowPoSt failed:\n{}",
        devnet.log()
    );
    assert!(
        lookup.height <= dl.close,
        "the WindowPoSt landed after its window"
    );
    dl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sector_is_proven_faults_and_recovers_with_real_proofs() {
    let prover = Prover::from_env().expect("proofs");
    prover
        .param_cache()
        .ensure(SIZE, &|e| eprintln!("{e:?}"))
        .expect("2 KiB parameters");
    // 500 ms epochs, 8-epoch deadlines, 6 deadlines (a proving period is 24 s: the test waits
    // through about three); the challenge is drawn 6 epochs before a deadline opens, which
    // leaves 7 s to prove and land a WindowPoSt.
    let devnet = Devnet::start_with_policy(
        &[
            "--sector-size",
            "2KiB",
            "--epoch-ms",
            "500",
            "--challenge-window",
            "8",
            "--challenge-lookback",
            "6",
            "--fault-cutoff",
            "8",
        ],
        serde_json::json!({ "wpost_period_deadlines": 6 }),
    )
    .await;
    let miner = create_miner(&devnet, SIZE.window_post_proof_number()).await;

    // Seal locally with a ticket from the chain.
    let ticket_epoch = devnet.head().await - 1;
    let ticket = randomness(
        &devnet,
        false,
        SEAL_RANDOMNESS,
        ticket_epoch,
        entropy(&miner.address),
    )
    .await;
    let dir = devnet.dir.path().join("sector");
    std::fs::create_dir_all(&dir).expect("dir");
    let paths = SectorPaths {
        unsealed: dir.join("unsealed"),
        sealed: dir.join("sealed"),
        cache: dir.join("cache"),
    };
    std::fs::write(&paths.unsealed, []).expect("unsealed");
    let replica = Replica {
        sector_size: SIZE,
        miner: ActorId(miner.id),
        number: SectorNumber(SECTOR),
        ticket: Randomness(ticket),
    };
    let phase1 = prover
        .pre_commit1(&replica, &paths, &[])
        .expect("pre-commit 1");
    let sealed = prover.pre_commit2(phase1, &paths).expect("pre-commit 2");

    let pre_commit = PreCommitSectorBatchParams2 {
        sectors: vec![SectorPreCommitInfo {
            seal_proof: RegisteredSealProof::from(SIZE.seal_proof_number()),
            sector_number: SECTOR,
            sealed_cid: sealed_cid(&sealed.comm_r),
            seal_rand_epoch: ticket_epoch,
            deal_ids: vec![],
            expiration: devnet.head().await + 5000,
            unsealed_cid: CompactCommD(None),
        }],
    };
    let lookup = devnet
        .execute(
            &miner.worker,
            miner.address,
            28,
            cbor(&pre_commit),
            TokenAmount::from_atto(0),
        )
        .await;
    let info = devnet
        .client
        .call::<StateSectorPreCommitInfo>((Addr(miner.address), SECTOR, TipSetKey::head()))
        .await
        .expect("pre-commit info")
        .expect("pre-committed");
    assert!(info.pre_commit_epoch < lookup.height);

    // Prove-commit once the interactive seed exists (pre-commit delay: 10 epochs).
    let prove = |proof: Vec<u8>| ProveCommitSectors3Params {
        sector_activations: vec![SectorActivationManifest {
            sector_number: SECTOR,
            pieces: vec![],
        }],
        sector_proofs: vec![RawBytes::new(proof)],
        aggregate_proof: RawBytes::default(),
        aggregate_proof_type: None,
        require_activation_success: true,
        require_notification_success: true,
    };
    let seed_epoch = info.pre_commit_epoch + 10;
    let early = devnet
        .push(
            &miner.worker,
            miner.address,
            34,
            cbor(&prove(vec![0; 192])),
            TokenAmount::from_atto(0),
        )
        .await
        .expect_err("a prove-commit before the seed was accepted");
    assert!(
        early.to_string().contains("too early to prove sector 1"),
        "{early}"
    );
    devnet.wait_height(seed_epoch + 1).await;
    let seed = randomness(
        &devnet,
        true,
        INTERACTIVE_SEED,
        seed_epoch,
        entropy(&miner.address),
    )
    .await;
    let phase1 = prover
        .commit1(&replica, &paths, Randomness(seed), &sealed, &[])
        .expect("commit 1");
    let proof = prover.commit2(&replica, phase1).expect("commit 2").0;

    let mut tampered = proof.clone();
    tampered[5] ^= 0x01;
    let err = devnet
        .push(
            &miner.worker,
            miner.address,
            34,
            cbor(&prove(tampered)),
            TokenAmount::from_atto(0),
        )
        .await
        .expect_err("a tampered seal proof was accepted");
    assert!(
        err.to_string().contains("invalid seal proof for sector 1"),
        "{err}"
    );
    let insecure = nelumbo_proofs::insecure_seal_proof(&replica, &sealed, Randomness(seed));
    let err = devnet
        .push(
            &miner.worker,
            miner.address,
            34,
            cbor(&prove(insecure)),
            TokenAmount::from_atto(0),
        )
        .await
        .expect_err("an insecure testing proof was accepted by a real-proof chain");
    assert!(
        err.to_string().contains("real proofs are required"),
        "{err}"
    );

    devnet
        .execute(
            &miner.worker,
            miner.address,
            34,
            cbor(&prove(proof)),
            TokenAmount::from_atto(0),
        )
        .await;
    let onchain = devnet
        .client
        .call::<StateSectorGetInfo>((Addr(miner.address), SECTOR, TipSetKey::head()))
        .await
        .expect("sector info")
        .expect("sector on chain");
    assert_eq!(onchain.sealed_cid, sealed_cid(&sealed.comm_r));
    assert_eq!(
        raw_power(&devnet, &miner).await,
        "0",
        "an unproven sector has power"
    );

    // Finalise like a real pipeline, then prove the sector's deadline: it gains power.
    prover.finalize_cache(&paths).expect("finalize");
    let proving = ProvingSector {
        number: SectorNumber(SECTOR),
        comm_r: sealed.comm_r,
        sealed: paths.sealed.clone(),
        cache: paths.cache.clone(),
    };
    let (deadline, partition) = location(&devnet, &miner, SECTOR).await;
    let proven = window_post(
        &devnet, &prover, &miner, &proving, deadline, partition, true,
    )
    .await;
    assert_eq!(
        raw_power(&devnet, &miner).await,
        "2048",
        "the proven sector has no power"
    );
    let active = devnet
        .client
        .call::<StateMinerActiveSectors>((Addr(miner.address), TipSetKey::head()))
        .await
        .expect("active");
    assert_eq!(
        active.iter().map(|s| s.sector_number).collect::<Vec<_>>(),
        vec![SECTOR]
    );

    // Miss the next occurrence: the sector becomes faulty and a penalty is burnt.
    devnet.wait_height(proven.close).await;
    let before = balance(&devnet, &miner).await;
    let missed = devnet.next_deadline(miner.address, deadline).await;
    assert!(
        missed.open > proven.open,
        "the next occurrence is in the next proving period"
    );
    devnet.wait_height(missed.close + 1).await;
    let faults = devnet
        .client
        .call::<StateMinerFaults>((Addr(miner.address), TipSetKey::head()))
        .await
        .expect("faults");
    assert!(
        faults.get(SECTOR),
        "a missed WindowPoSt did not make the sector faulty"
    );
    assert_eq!(
        raw_power(&devnet, &miner).await,
        "0",
        "a faulty sector kept its power"
    );
    let after = balance(&devnet, &miner).await;
    assert_eq!(
        &before - &after,
        TokenAmount::from_atto(10_000_000_000_000_000u64),
        "the fault fee (0.01 FIL) was not charged"
    );

    // Declare the recovery before the next window's cutoff, then prove it: active again.
    let recovery = DeclareFaultsRecoveredParams {
        recoveries: vec![RecoveryDeclaration {
            deadline,
            partition,
            sectors: BitField::try_from_bits([SECTOR]).expect("bits"),
        }],
    };
    devnet
        .execute(
            &miner.worker,
            miner.address,
            11,
            cbor(&recovery),
            TokenAmount::from_atto(0),
        )
        .await;
    let partitions = devnet
        .client
        .call::<StateMinerPartitions>((Addr(miner.address), deadline, TipSetKey::head()))
        .await
        .expect("partitions");
    assert!(
        partitions[partition as usize]
            .recovering_sectors
            .get(SECTOR)
    );
    window_post(
        &devnet, &prover, &miner, &proving, deadline, partition, false,
    )
    .await;
    assert_eq!(
        raw_power(&devnet, &miner).await,
        "2048",
        "the recovered sector has no power"
    );
    let faults = devnet
        .client
        .call::<StateMinerFaults>((Addr(miner.address), TipSetKey::head()))
        .await
        .expect("faults");
    assert!(!faults.get(SECTOR), "the recovered sector is still faulty");
    let sectors = devnet
        .client
        .call::<StateMinerSectors>((Addr(miner.address), OptBitField(None), TipSetKey::head()))
        .await
        .expect("sectors");
    assert_eq!(sectors.len(), 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
