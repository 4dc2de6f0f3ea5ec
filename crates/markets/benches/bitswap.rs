//! Bitswap throughput, measured in one run on loopback against the same DAG as a CAR over
//! `/ipfs` from the same process:
//!
//! - a 256 MiB UnixFS file fetched with `nelumbo client retrieve --bitswap --peer ...` (every
//!   block checked, the file written out) against `GET /ipfs/{root}?format=car`, both in DAG
//!   bytes per second;
//! - 16 peers fetching every block of the DAG at once (32 wants each in flight): blocks per
//!   second in all, and the markets process's peak resident memory meanwhile.
//!
//! `cargo build --release -p nelumbo && cargo bench -p nelumbo-markets --bench bitswap`. The
//! size is `NELUMBO_BENCH_BYTES` (default 256 MiB). The markets process runs only retrieval,
//! with the hub away; the piece is in its cache as an active deal would leave it.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{AsyncWriteExt, StreamExt};
use nelumbo_markets_api::bitswap::{self, Entry, Message, WantType, Wantlist};

const ROUNDS: usize = 3;
/// Peers fetching at once (`NELUMBO_BENCH_PEERS`, default 16).
const PEERS: usize = 16;
const WINDOW: usize = 32;

fn main() -> anyhow::Result<()> {
    let size: u64 = common::env_number("NELUMBO_BENCH_BYTES", 256 << 20);
    let nelumbo = std::env::current_exe()?
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("nelumbo"))
        .filter(|path| path.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("no nelumbo binary next to the bench: cargo build --release -p nelumbo")
        })?;
    let prepared = common::Prepared::new(size)?;
    let blocks = dag_blocks(&prepared.car)?;
    let mut markets = prepared.start_markets()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let info = common::markets_info(&prepared.repo).await?;
        let url = info
            .retrieval_url
            .ok_or_else(|| anyhow::anyhow!("retrieval is not running"))?;
        let peer: libp2p::PeerId = info.peer_id.parse()?;
        let addr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", prepared.p2p_port);
        let http = reqwest::Client::builder().no_proxy().build()?;
        let car_bytes = prepared.packed.car_size;
        let root = prepared.packed.root.to_string();

        let (mut car, mut ours) = (0f64, 0f64);
        for round in 0..ROUNDS {
            car = car.max(
                common::download(&http, &format!("{url}/ipfs/{root}?format=car"), car_bytes)
                    .await
                    .map_err(|e| anyhow::anyhow!("CAR over /ipfs: {e}"))?,
            );
            let out = prepared.dir().join(format!("out-{round}"));
            let started = Instant::now();
            let mut command = std::process::Command::new(&nelumbo);
            command
                .arg("client")
                .arg("--repo")
                .arg(prepared.dir().join("client"))
                .args(["retrieve", "--bitswap", "--peer", &addr, "--out"])
                .arg(&out)
                .arg(&root);
            let output = tokio::task::spawn_blocking(move || command.output()).await??;
            let took = started.elapsed();
            anyhow::ensure!(
                output.status.success(),
                "nelumbo client: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            anyhow::ensure!(
                std::fs::metadata(&out)?.len() == size,
                "the fetched file has the wrong size"
            );
            std::fs::remove_file(&out)?;
            ours = ours.max(car_bytes as f64 / 1e6 / took.as_secs_f64());
        }

        // 16 peers at once, each asking for every block; the markets process's memory sampled.
        let pid = markets.id();
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(rss) = resident_bytes(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let idle = resident_bytes(pid).unwrap_or(0);
        let peers: usize = common::env_number("NELUMBO_BENCH_PEERS", PEERS);
        let blocks = Arc::new(blocks);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..peers {
            let blocks = blocks.clone();
            let addr: libp2p::Multiaddr = addr.parse()?;
            tasks.push(tokio::spawn(
                async move { fetch_all(peer, addr, &blocks).await },
            ));
        }
        let mut received = 0u64;
        for task in tasks {
            received += task
                .await?
                .map_err(|e| anyhow::anyhow!("a peer of {PEERS}: {e}"))?;
        }
        let took = started.elapsed();
        sampling.abort();
        let rate = received as f64 / took.as_secs_f64();
        anyhow::Ok((
            car,
            ours,
            rate,
            received,
            idle,
            peak.load(Ordering::Relaxed),
        ))
    });
    let _ = markets.kill();
    let _ = markets.wait();
    if result.is_err() {
        let log = std::fs::read_to_string(prepared.dir().join("markets.log")).unwrap_or_default();
        let _ = std::fs::write(
            std::env::temp_dir().join("nelumbo-bitswap-bench-markets.log"),
            &log,
        );
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!("the markets log ends:");
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
    }
    let (car, ours, rate, received, idle, peak) = result?;
    let mib = size >> 20;
    println!();
    println!("| what (loopback, one run) | figure | reference | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| a {mib} MiB file over bitswap, `nelumbo client retrieve --bitswap` | {ours:.0} MB/s | CAR over /ipfs {car:.0} MB/s | {:.2} | at least 0.5 |",
        ours / car
    );
    println!(
        "| {PEERS} peers fetching every block at once | {rate:.0} blocks/s ({received} blocks) | | | |"
    );
    println!(
        "| markets resident memory, idle and peak meanwhile | {} MiB -> {} MiB | | | |",
        idle >> 20,
        peak >> 20
    );
    Ok(())
}

/// Every block CID of the CAR, in order.
fn dag_blocks(car: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut reader =
        nelumbo_car::CarReader::new(std::io::BufReader::new(std::fs::File::open(car)?))?;
    let mut out = Vec::new();
    while let Some((section, _)) = reader.next_block()? {
        out.push(section.cid.to_bytes());
    }
    Ok(out)
}

fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One peer asks for every block, `WINDOW` at a time; returns the blocks received.
async fn fetch_all(
    provider: libp2p::PeerId,
    addr: libp2p::Multiaddr,
    blocks: &[Vec<u8>],
) -> anyhow::Result<u64> {
    let mut swarm = nelumbo_markets_api::p2p::build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        "bench",
        nelumbo_markets_api::p2p::Serve::BITSWAP_CLIENT,
        nelumbo_markets_api::p2p::Limits::none(),
    )
    .map_err(|e| anyhow::anyhow!("swarm: {e}"))?;
    swarm.add_peer_address(provider, addr);
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = swarm
        .behaviour_mut()
        .bitswap
        .take()
        .ok_or_else(|| anyhow::anyhow!("the swarm's bitswap streams are taken"))?;
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let (sender, mut answers) = tokio::sync::mpsc::channel::<Message>(64);
    let reader = tokio::spawn(async move {
        while let Some(nelumbo_markets_api::inbound::Inbound { mut stream, .. }) =
            incoming.next().await
        {
            let sender = sender.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) =
                    bitswap::read_message(&mut stream, bitswap::MAX_MESSAGE_BYTES).await
                {
                    let _ = sender.send(message).await;
                }
            });
        }
    });
    let mut wants = control
        .open_stream(provider, bitswap::PROTOCOL_1_2_0)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut queue: VecDeque<&Vec<u8>> = blocks.iter().collect();
    let mut in_flight = 0usize;
    let mut received = 0u64;
    let result = async {
        loop {
            let mut entries = Vec::new();
            while in_flight < WINDOW {
                let Some(cid) = queue.pop_front() else { break };
                in_flight += 1;
                entries.push(Entry {
                    block: cid.clone(),
                    priority: 1,
                    cancel: false,
                    want_type: WantType::Block as i32,
                    send_dont_have: true,
                });
            }
            if !entries.is_empty() {
                let message = Message {
                    wantlist: Some(Wantlist {
                        entries,
                        full: false,
                    }),
                    ..Default::default()
                };
                bitswap::write_message(&mut wants, &message)
                    .await
                    .map_err(|e| anyhow::anyhow!("send wants after {received} blocks: {e}"))?;
            }
            if in_flight == 0 {
                return anyhow::Ok(());
            }
            let message = tokio::time::timeout(Duration::from_secs(60), answers.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no answer in 60 s"))?
                .ok_or_else(|| anyhow::anyhow!("the answers stopped"))?;
            anyhow::ensure!(
                message.block_presences.is_empty(),
                "the provider said DONT_HAVE"
            );
            in_flight -= message.payload.len();
            received += message.payload.len() as u64;
        }
    }
    .await;
    let _ = wants.close().await;
    driver.abort();
    reader.abort();
    result?;
    Ok(received)
}
