//! Retrieval throughput against nginx, measured in one run on loopback from the same disk:
//!
//! - `/piece` of a 1 GiB piece from the piece cache, against nginx serving the same bytes;
//! - a 1 GiB UnixFS file as a CAR over `/ipfs` (every block looked up, read and checked
//!   against its CID), against nginx serving that CAR as a file;
//! - raw block requests per second with 16 clients at once, against nginx serving each block
//!   as a file.
//!
//! `cargo bench -p nelumbo-markets --bench retrieval` (nginx from scripts/setup). The size is
//! `NELUMBO_BENCH_BYTES` (default 1 GiB). The markets process runs with only the retrieval
//! service and no hub (the hub being away is a state): the piece is put in its cache and piece
//! directory as an active deal would leave it.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const RPS_SECONDS: u64 = 5;
const ROUNDS: usize = 5;

fn main() -> anyhow::Result<()> {
    let size: u64 = common::env_number("NELUMBO_BENCH_BYTES", 1 << 30);
    let prepared = common::Prepared::new(size)?;
    let dir = prepared.dir();
    let (car, packed, piece) = (&prepared.car, &prepared.packed, prepared.piece);

    // nginx on the same files (hard links: the same bytes on the same disk).
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("blocks"))?;
    std::fs::hard_link(&prepared.cached, www.join("piece.bin"))?;
    std::fs::hard_link(car, www.join("file.car"))?;
    let leaves = leaf_blocks(car, &www.join("blocks"), 200)?;
    let (mut nginx, nginx_url) = start_nginx(dir, &www)?;

    let mut markets = prepared.start_markets()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let markets_url = common::retrieval_url(&prepared.repo).await?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let mut rows = Vec::new();

        let (ours, theirs) = alternate(
            &http,
            &format!("{markets_url}/piece/{piece}"),
            &format!("{nginx_url}/piece.bin"),
            packed.car_size,
        )
        .await?;
        let mib = size >> 20;
        rows.push((
            format!("/piece, a {mib} MiB piece from the cache"),
            ours,
            theirs,
            "MB/s",
            0.9,
        ));
        let (ours, theirs) = alternate(
            &http,
            &format!("{markets_url}/ipfs/{}?format=car", packed.root),
            &format!("{nginx_url}/file.car"),
            packed.car_size,
        )
        .await?;
        rows.push((
            format!("/ipfs, the CAR of a {mib} MiB UnixFS file"),
            ours,
            theirs,
            "MB/s",
            0.7,
        ));
        // The CAR path checks every block against its CID: SHA-256 over every byte. Its
        // bound is SHA-256 on this machine, measured on the same bytes.
        let car_path = car.clone();
        let sha = tokio::task::spawn_blocking(move || sha256_throughput(&car_path)).await??;
        rows.push((
            format!("/ipfs CAR against SHA-256 of the same {mib} MiB on one core"),
            ours,
            sha,
            "MB/s",
            0.0,
        ));
        let ours = requests_per_second(&http, &leaves, |cid| {
            format!("{markets_url}/ipfs/{cid}?format=raw")
        })
        .await?;
        let theirs =
            requests_per_second(&http, &leaves, |cid| format!("{nginx_url}/blocks/{cid}")).await?;
        rows.push((
            format!("raw 1 MiB blocks, {CLIENTS} clients at once"),
            ours,
            theirs,
            "req/s",
            0.0,
        ));
        anyhow::Ok(rows)
    });
    let _ = markets.kill();
    let _ = markets.wait();
    let _ = nginx.kill();
    let _ = nginx.wait();
    let rows = result?;

    println!();
    println!(
        "| what (loopback, same disk, one run) | nelumbo-markets | reference (nginx unless named) | ratio | target |"
    );
    println!("|---|---|---|---|---|");
    for (what, ours, theirs, unit, target) in rows {
        println!(
            "| {what} | {ours:.0} {unit} | {theirs:.0} {unit} | {:.2} | {} |",
            ours / theirs,
            if target > 0.0 {
                format!("at least {target}")
            } else {
                "-".into()
            }
        );
    }
    Ok(())
}

/// MB/s of SHA-256 over `path` on one core, read from the page cache in 1 MiB blocks as the
/// CAR path reads them (the best of `ROUNDS`).
fn sha256_throughput(path: &Path) -> anyhow::Result<f64> {
    use sha2::Digest;
    let mut best = 0f64;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut input = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut hasher = sha2::Sha256::new();
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            // One digest per block, as the server computes.
            hasher.update(&buf[..n]);
            std::hint::black_box(hasher.finalize_reset());
            total += n as u64;
        }
        best = best.max(total as f64 / 1e6 / started.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Up to `count` raw leaves of the CAR, each also written as a file named by its CID.
fn leaf_blocks(car: &Path, dir: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let mut reader =
        nelumbo_car::CarReader::new(std::io::BufReader::new(std::fs::File::open(car)?))?;
    let mut out = Vec::new();
    while let Some((section, data)) = reader.next_block()? {
        if section.cid.codec() == nelumbo_car::codec::RAW {
            let cid = section.cid.to_string();
            std::fs::write(dir.join(&cid), &data)?;
            out.push(cid);
            if out.len() == count {
                break;
            }
        }
    }
    Ok(out)
}

/// nginx as Debian ships it, with a private configuration and prefix, on a free port.
fn start_nginx(dir: &Path, www: &Path) -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let config = prefix.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "worker_processes 1;\npid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n\
               client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n\
               uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            log = prefix.join("logs/error.log").display(),
            tmp = prefix.display(),
            root = www.display(),
        ),
    )?;
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&config)
        .arg("-e")
        .arg(prefix.join("logs/error.log"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("start nginx ({e}): install it with scripts/setup"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, format!("http://127.0.0.1:{port}")))
}

/// Downloads both URLs `ROUNDS` times, alternating, and returns the best MB/s of each.
async fn alternate(
    http: &reqwest::Client,
    ours: &str,
    theirs: &str,
    expected: u64,
) -> anyhow::Result<(f64, f64)> {
    let (mut best_ours, mut best_theirs) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        best_ours = best_ours.max(common::download(http, ours, expected).await?);
        best_theirs = best_theirs.max(common::download(http, theirs, expected).await?);
    }
    Ok((best_ours, best_theirs))
}

/// Requests per second for `RPS_SECONDS` with `CLIENTS` at once, each asking for the blocks in
/// turn.
async fn requests_per_second(
    http: &reqwest::Client,
    blocks: &[String],
    url: impl Fn(&str) -> String,
) -> anyhow::Result<f64> {
    let urls: Arc<Vec<String>> = Arc::new(blocks.iter().map(|c| url(c)).collect());
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(RPS_SECONDS);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (http, urls, done) = (http.clone(), urls.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = client;
            while Instant::now() < deadline {
                let response = http.get(&urls[i % urls.len()]).send().await?;
                anyhow::ensure!(response.status().is_success(), "{}", response.status());
                response.bytes().await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += CLIENTS;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / RPS_SECONDS as f64)
}
