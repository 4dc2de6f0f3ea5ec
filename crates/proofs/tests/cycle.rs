//! A full real 2 KiB cycle: add pieces, seal, verify, WindowPoSt, WinningPoSt, unseal back to
//! the same bytes; and tampered proofs, a wrong seed and a wrong CommR fail verification.
//!
//! Uses the machine's parameter cache and generates the 2 KiB parameters first if they are
//! missing (about 15 minutes, once per machine).

use std::fs::OpenOptions;
use std::io::{Cursor, Read, Seek, SeekFrom};

use nelumbo_commp::{commd, commp};
use nelumbo_proofs::{
    PostKind, ProofError, ProvenSector, Prover, ProvingSector, Replica, SealedCommitments,
    SectorPaths,
};
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize, UnpaddedPieceSize};

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn randomness(seed: u64) -> Randomness {
    Randomness(random_bytes(32, seed).try_into().expect("32 bytes"))
}

fn prover() -> Prover {
    let prover = Prover::from_env().expect("configure proofs");
    prover
        .param_cache()
        .ensure(SectorSize::KIB_2, &|event| eprintln!("{event:?}"))
        .expect("2 KiB parameters");
    prover
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_2kib_cycle_with_real_proofs() {
    let prover = prover();
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = SectorPaths {
        unsealed: dir.path().join("unsealed"),
        sealed: dir.path().join("sealed"),
        cache: dir.path().join("cache"),
    };
    let size = SectorSize::KIB_2;

    // Two pieces: 127 payload bytes (a 128-byte piece) and 1016 (a 1 KiB piece, aligned at 1 KiB).
    let first = random_bytes(127, 1);
    let second = random_bytes(1016, 2);
    let mut unsealed = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&paths.unsealed)
        .expect("unsealed file");
    let mut pieces = Vec::new();
    let mut existing = Vec::new();
    for data in [&first, &second] {
        let piece_size = UnpaddedPieceSize::new(data.len() as u64).expect("piece size");
        let added = prover
            .add_piece(
                size,
                Cursor::new(data),
                piece_size,
                &existing,
                &mut unsealed,
            )
            .expect("add piece");
        assert_eq!(
            added.piece.commitment,
            commp(data).expect("commp").commitment,
            "the library and nelumbo-commp disagree on a piece"
        );
        existing.push(piece_size);
        pieces.push(added.piece);
    }
    drop(unsealed);

    let replica = Replica {
        sector_size: size,
        miner: ActorId(1000),
        number: SectorNumber(7),
        ticket: randomness(3),
    };
    let phase1 = prover
        .pre_commit1(&replica, &paths, &pieces)
        .expect("pre-commit 1");
    let sealed = prover.pre_commit2(phase1, &paths).expect("pre-commit 2");
    assert_eq!(
        sealed.comm_d,
        commd(size, &pieces).expect("commd"),
        "CommD of the sealed sector differs from nelumbo-commp's"
    );

    let seed = randomness(4);
    let phase1 = prover
        .commit1(&replica, &paths, seed, &sealed, &pieces)
        .expect("commit 1");
    let proof = {
        let (prover, replica) = (prover.clone(), replica);
        // Commit 2 through the async path: it must run on a blocking thread.
        prover
            .run(move |p| p.commit2(&replica, phase1))
            .await
            .expect("commit 2")
    };
    assert!(
        prover
            .verify_seal(&replica, &sealed, seed, &proof.0)
            .expect("verify"),
        "a valid seal proof did not verify"
    );

    // Tampered proof, wrong seed, wrong CommR: none verifies.
    let mut tampered = proof.0.clone();
    tampered[40] ^= 0x01;
    assert_rejected(
        prover.verify_seal(&replica, &sealed, seed, &tampered),
        "tampered proof",
    );
    assert_rejected(
        prover.verify_seal(&replica, &sealed, randomness(5), &proof.0),
        "wrong seed",
    );
    let wrong_comm_r = SealedCommitments {
        comm_r: randomness(6).0.map(|b| b & 0x3f),
        ..sealed
    };
    assert_rejected(
        prover.verify_seal(&replica, &wrong_comm_r, seed, &proof.0),
        "wrong CommR",
    );
    let other_ticket = Replica {
        ticket: randomness(8),
        ..replica
    };
    assert_rejected(
        prover.verify_seal(&other_ticket, &sealed, seed, &proof.0),
        "wrong ticket",
    );

    // Proving reads only what finalising keeps.
    prover.finalize_cache(&paths).expect("finalize cache");
    let proving = [ProvingSector {
        number: replica.number,
        comm_r: sealed.comm_r,
        sealed: paths.sealed.clone(),
        cache: paths.cache.clone(),
    }];
    let proven = [ProvenSector {
        number: replica.number,
        comm_r: sealed.comm_r,
    }];

    let window_randomness = randomness(9);
    let window = prover
        .generate_post(
            PostKind::Window,
            size,
            replica.miner,
            window_randomness,
            &proving,
        )
        .expect("WindowPoSt");
    assert!(
        prover
            .verify_post(
                PostKind::Window,
                size,
                replica.miner,
                window_randomness,
                &proven,
                &window
            )
            .expect("verify WindowPoSt")
    );
    assert_rejected(
        prover.verify_post(
            PostKind::Window,
            size,
            replica.miner,
            randomness(10),
            &proven,
            &window,
        ),
        "WindowPoSt with other randomness",
    );
    // WindowPoSt challenges do not depend on the prover id (CommR already binds the replica to
    // its miner), so the check that matters is the sector's CommR.
    let other_replica = [ProvenSector {
        comm_r: wrong_comm_r.comm_r,
        ..proven[0]
    }];
    assert_rejected(
        prover.verify_post(
            PostKind::Window,
            size,
            replica.miner,
            window_randomness,
            &other_replica,
            &window,
        ),
        "WindowPoSt against another CommR",
    );

    let winning_randomness = randomness(11);
    let challenged = prover
        .winning_post_challenges(size, replica.miner, winning_randomness, 1)
        .expect("challenges");
    assert_eq!(challenged, vec![0], "one sector: it is the one challenged");
    let winning = prover
        .generate_post(
            PostKind::Winning,
            size,
            replica.miner,
            winning_randomness,
            &proving,
        )
        .expect("WinningPoSt");
    assert!(
        prover
            .verify_post(
                PostKind::Winning,
                size,
                replica.miner,
                winning_randomness,
                &proven,
                &winning
            )
            .expect("verify WinningPoSt")
    );
    let mut tampered = winning.clone();
    tampered[100] ^= 0x01;
    assert_rejected(
        prover.verify_post(
            PostKind::Winning,
            size,
            replica.miner,
            winning_randomness,
            &proven,
            &tampered,
        ),
        "tampered WinningPoSt",
    );

    // Unseal each piece back to its bytes: the second starts at unpadded offset 1016 (1 KiB).
    let comm_d = sealed.comm_d;
    for (data, offset) in [(&first, 0u64), (&second, 1016)] {
        let mut out = Vec::new();
        let written = prover
            .unseal_range(
                &replica,
                &paths,
                &comm_d,
                offset,
                data.len() as u64,
                &mut out,
            )
            .expect("unseal");
        assert_eq!(written, data.len() as u64);
        assert_eq!(&out, data, "unsealed bytes at {offset} differ");
    }
    let err = prover
        .unseal_range(&replica, &paths, &comm_d, 2000, 100, &mut Vec::new())
        .expect_err("a range past the sector unsealed");
    assert!(err.to_string().contains("2032 unsealed bytes"), "{err}");

    // The sealed file really is the replica: it differs from the unsealed data.
    let mut sealed_bytes = Vec::new();
    let mut file = std::fs::File::open(&paths.sealed).expect("sealed");
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.read_to_end(&mut sealed_bytes).expect("read");
    assert_eq!(sealed_bytes.len(), 2048);
    assert_ne!(&sealed_bytes[..127], &first[..]);
}

fn assert_rejected(result: Result<bool, ProofError>, what: &str) {
    assert!(!matches!(result, Ok(true)), "{what} verified");
}

#[test]
fn pieces_that_do_not_fit_are_refused_before_any_work() {
    let prover = Prover::from_env().expect("configure proofs");
    let big = UnpaddedPieceSize::new(2032).expect("size");
    let err = prover
        .add_piece(
            SectorSize::KIB_2,
            Cursor::new(vec![0u8; 2032]),
            big,
            &[UnpaddedPieceSize::new(127).expect("size")],
            Cursor::new(Vec::new()),
        )
        .expect_err("overfull sector accepted");
    assert!(err.to_string().contains("does not fit"), "{err}");
    let err = prover
        .generate_post(
            PostKind::Window,
            SectorSize::KIB_2,
            ActorId(1),
            randomness(1),
            &[],
        )
        .expect_err("empty PoSt accepted");
    assert!(err.to_string().contains("at least one sector"), "{err}");
}
