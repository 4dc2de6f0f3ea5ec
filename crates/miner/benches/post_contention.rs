//! WindowPoSt against everything else the hub does on a 2-core machine, with real 2 KiB proofs:
//! 20 deadline occurrences with live sectors, while commit 2s (sectors being sealed, in worker
//! processes at nice 19) and WinningPoSts (a high election rate, workers at nice 10) run. It
//! prints how many deadlines were proven in their window and the WindowPoSt latency from the
//! challenge epoch to the message landing.
//!
//! Run: `cargo build --release -p nelumbo-chain -p nelumbo-miner && cargo bench -p nelumbo-miner --bench post_contention`
//! (or `--profile dev` for both, with the dependencies optimised the same).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nelumbo_miner_api::methods::{ProvingDeadlines, ProvingInfo};
use nelumbo_miner_api::types::SectorState;
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};

const DEADLINES: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    // Four deadlines of 10 one-second epochs: a proving period every 40 s.
    let devnet = Devnet::start_with_policy(
        &["--sector-size", "2KiB"],
        serde_json::json!({
            "epoch_duration_ms": 1000,
            "wpost_period_deadlines": 4,
            "wpost_challenge_window": 10,
            "wpost_challenge_lookback": 4,
            "fault_declaration_cutoff": 6,
            "pre_commit_challenge_delay": 5,
            "election_rate_permille": 500,
        }),
    )
    .await;
    let mut hub = TestHub::init(&devnet, &["--sector-size", "2KiB"]).await;
    hub.run(&[]).await;
    let output = hub.cli(&["sectors", "pledge"]);
    assert!(output.status.success(), "{}", text(&output));
    hub.wait_state(1, SectorState::Proving, Duration::from_secs(900))
        .await;
    // Four more sectors: a commit 2 runs through the whole measurement.
    for _ in 0..4 {
        let output = hub.cli(&["sectors", "pledge"]);
        assert!(output.status.success(), "{}", text(&output));
    }
    hub.wait_state(2, SectorState::Commit2, Duration::from_secs(300))
        .await;
    let started = Instant::now();
    let won_before = hub
        .client
        .call::<ProvingInfo>(())
        .await
        .expect("info")
        .blocks_won;

    // Each deadline occurrence (by its opening epoch): whether it had live sectors, and
    // whether it was proven, read just before it closes.
    let mut seen: BTreeMap<i64, (bool, bool)> = BTreeMap::new();
    let mut c2_busy = 0u32;
    let mut samples = 0u32;
    while seen.values().filter(|(live, _)| *live).count() < DEADLINES {
        let info = hub.client.call::<ProvingInfo>(()).await.expect("info");
        samples += 1;
        let sealing = hub
            .client
            .call::<nelumbo_miner_api::methods::SectorsList>(())
            .await
            .expect("sectors");
        if sealing.iter().any(|s| s.state == SectorState::Commit2) {
            c2_busy += 1;
        }
        if info.current_epoch >= info.deadline_close - 2 && !seen.contains_key(&info.deadline_open)
        {
            let deadlines = hub
                .client
                .call::<ProvingDeadlines>(())
                .await
                .expect("deadlines");
            if let Some(d) = deadlines.iter().find(|d| d.current) {
                seen.insert(info.deadline_open, (d.live_sectors > 0, d.proven));
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "not {DEADLINES} deadlines in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let info = hub.client.call::<ProvingInfo>(()).await.expect("info");
    let due: Vec<bool> = seen
        .values()
        .filter(|(live, _)| *live)
        .map(|(_, proven)| *proven)
        .take(DEADLINES)
        .collect();
    let proven = due.iter().filter(|p| **p).count();

    // Latency from the hub's log: epochs after the challenge, and seconds it took.
    let log = hub.log();
    let mut epochs: Vec<i64> = Vec::new();
    let mut seconds: Vec<f64> = Vec::new();
    for line in log.lines().filter(|l| l.contains("WindowPoSt accepted")) {
        if let Some(n) = field(line, "epochs_after_challenge=").and_then(|v| v.parse().ok()) {
            epochs.push(n);
        }
        if let Some(took) = field(line, "took=") {
            seconds.push(parse_duration(&took));
        }
    }
    epochs.sort();
    seconds.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
    println!();
    println!("| WindowPoSt under contention (2 KiB, real proofs) | |");
    println!("|---|---|");
    println!("| deadlines with live sectors | {} |", due.len());
    println!("| proven in their window | {proven} |");
    println!("| faulty sectors at the end | {} |", info.faulty_sectors);
    println!(
        "| blocks won meanwhile (a WinningPoSt each) | {} |",
        info.blocks_won - won_before
    );
    println!("| samples with a commit 2 running | {c2_busy} of {samples} |");
    println!(
        "| generation to landing, median / max | {:.1} s / {:.1} s |",
        median(&seconds),
        seconds.last().copied().unwrap_or(0.0)
    );
    println!(
        "| challenge epoch to landing, median / max | {} / {} epochs (window: 10 after a 4-epoch lookback) |",
        epochs.get(epochs.len() / 2).copied().unwrap_or(0),
        epochs.last().copied().unwrap_or(0)
    );
    println!("| wall time | {:.0?} |", started.elapsed());
    assert_eq!(proven, due.len(), "a deadline was missed:\n{log}");
}

/// The text after `key` in a log line, up to the next space.
fn field(line: &str, key: &str) -> Option<String> {
    let rest = line.split(key).nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// `1.234567s` or `850.2ms` as seconds.
fn parse_duration(text: &str) -> f64 {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse::<f64>().unwrap_or(0.0) / 1000.0
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse().unwrap_or(0.0)
    } else {
        0.0
    }
}
