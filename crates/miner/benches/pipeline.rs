//! The sealing pipeline's overhead: the wall time of one 2 KiB committed-capacity sector from
//! `sectors pledge` to `Proving` through the real chain and hub, next to the sum of the raw
//! proof calls for the same work (pre-commit 1 and 2, commit 1 and 2) made directly with the
//! proofs library in this process, in the same run.
//!
//! The pipeline's extra time is mostly the chain: the pre-commit and prove-commit messages land
//! an epoch or two after they are pushed, and the seed comes `pre_commit_challenge_delay`
//! epochs after the pre-commit (here 5 epochs of 1 s).
//!
//! Run: `cargo build --release -p nelumbo-chain -p nelumbo-miner && cargo bench -p nelumbo-miner --bench pipeline`

use std::time::{Duration, Instant};

use nelumbo_miner_api::types::SectorState;
use nelumbo_proofs::{Prover, Replica, SectorPaths};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};
use nelumbo_types::{ActorId, Randomness, SectorNumber, SectorSize};

const SIZE: SectorSize = SectorSize::KIB_2;

/// PC1, PC2, C1 and C2 of one committed-capacity sector, timed one by one.
fn raw_proofs(prover: &Prover) -> Vec<(&'static str, Duration)> {
    let dir = tempfile::tempdir().expect("dir");
    let paths = SectorPaths {
        unsealed: dir.path().join("unsealed"),
        sealed: dir.path().join("sealed"),
        cache: dir.path().join("cache"),
    };
    std::fs::write(&paths.unsealed, []).expect("unsealed");
    let replica = Replica {
        sector_size: SIZE,
        miner: ActorId(1000),
        number: SectorNumber(1),
        ticket: Randomness([7; 32]),
    };
    let mut times = Vec::new();
    let t = Instant::now();
    let phase1 = prover.pre_commit1(&replica, &paths, &[]).expect("PC1");
    times.push(("pre-commit 1", t.elapsed()));
    let t = Instant::now();
    let sealed = prover.pre_commit2(phase1, &paths).expect("PC2");
    times.push(("pre-commit 2", t.elapsed()));
    let t = Instant::now();
    let c1 = prover
        .commit1(&replica, &paths, Randomness([9; 32]), &sealed, &[])
        .expect("C1");
    times.push(("commit 1", t.elapsed()));
    let t = Instant::now();
    prover.commit2(&replica, c1).expect("C2");
    times.push(("commit 2", t.elapsed()));
    times
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let prover = Prover::from_env().expect("proofs");
    prover
        .param_cache()
        .ensure(SIZE, &|e| eprintln!("{e:?}"))
        .expect("2 KiB parameters");

    let raw = raw_proofs(&prover);
    let raw_sum: Duration = raw.iter().map(|(_, d)| *d).sum();

    let (wall, pipeline_proofs) = runtime.block_on(async {
        // 1 s epochs and a 5-epoch pre-commit challenge delay.
        let devnet = Devnet::start_with_policy(
            &["--sector-size", "2KiB"],
            serde_json::json!({
                "epoch_duration_ms": 1000,
                "wpost_challenge_lookback": 4,
                "fault_declaration_cutoff": 6,
                "pre_commit_challenge_delay": 5,
            }),
        )
        .await;
        let mut hub = TestHub::init(&devnet, &["--sector-size", "2KiB"]).await;
        hub.edit_config("enabled = true", "enabled = false");
        hub.run(&[]).await;
        let started = Instant::now();
        let output = hub.cli(&["sectors", "pledge"]);
        assert!(output.status.success(), "{}", text(&output));
        hub.wait_state(1, SectorState::Proving, Duration::from_secs(900))
            .await;
        let wall = started.elapsed();
        let metrics = hub.metrics().await;
        let proof_seconds: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("nelumbo_miner_proof_seconds_sum"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (wall, Duration::from_secs_f64(proof_seconds))
    });

    println!("one 2 KiB committed-capacity sector, real proofs");
    for (step, time) in &raw {
        println!("  raw {step:<19} {:>9.3} s", time.as_secs_f64());
    }
    println!("  raw proof calls, sum    {:>9.3} s", raw_sum.as_secs_f64());
    println!(
        "  pipeline proof calls    {:>9.3} s  (the hub's nelumbo_miner_proof_seconds)",
        pipeline_proofs.as_secs_f64()
    );
    println!(
        "  pipeline wall time      {:>9.3} s  (pledge to Proving, chain waits included)",
        wall.as_secs_f64()
    );
    println!(
        "  wall / raw sum          {:>9.2}",
        wall.as_secs_f64() / raw_sum.as_secs_f64()
    );
}
