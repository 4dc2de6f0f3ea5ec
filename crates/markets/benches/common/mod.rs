//! What the retrieval benchmarks share: a markets repo with one file's piece cached and indexed
//! as an active deal would leave it, the markets process (retrieval only, the hub away), and
//! timing downloads.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nelumbo_markets::config::Config;
use nelumbo_markets::repo::{MinerRecord, Repo};

/// A number from the environment variable `name`, or `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A pseudo-random file, its CAR (as ipfs-car packs it) and the CAR's piece, with a markets
/// repo holding the piece in its cache and its blocks in the piece directory.
pub struct Prepared {
    pub work: tempfile::TempDir,
    pub file: PathBuf,
    pub car: PathBuf,
    pub packed: nelumbo_car::unixfs::Packed,
    pub piece: cid::Cid,
    pub repo: Repo,
    /// The cached piece's data file.
    pub cached: PathBuf,
    /// The libp2p port the markets process listens on.
    pub p2p_port: u16,
}

impl Prepared {
    pub fn new(size: u64) -> anyhow::Result<Self> {
        let work = tempfile::Builder::new()
            .prefix("nelumbo-retrieval-bench")
            .tempdir()?;
        let dir = work.path().to_path_buf();
        // nginx's workers run as another user when started by root: let them in.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        }
        println!("preparing {size} bytes in {} ...", dir.display());
        let file = dir.join("file.bin");
        write_pseudo_random(&file, size)?;
        let car = dir.join("file.car");
        let packed = nelumbo_car::unixfs::pack(
            std::io::BufReader::new(std::fs::File::open(&file)?),
            std::io::BufWriter::new(std::fs::File::create(&car)?),
            None,
        )?;
        let digest = {
            let mut hasher = nelumbo_commp::CommPHasher::new();
            let mut input = std::fs::File::open(&car)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n])?;
            }
            hasher.finish()?
        };
        let piece = digest.cid_v1();
        let repo = Repo {
            dir: dir.join("markets"),
        };
        std::fs::create_dir_all(&repo.dir)?;
        let key = libp2p::identity::Keypair::generate_ed25519();
        write_private(&repo.identity(), &key.to_protobuf_encoding()?)?;
        write_private(&repo.hub_api_info(), b"none:/ip4/127.0.0.1/tcp/1/http")?;
        std::fs::write(
            repo.miner(),
            serde_json::to_vec(&MinerRecord {
                actor: "t01000".into(),
                sector_size: 64 << 30,
            })?,
        )?;
        let p2p_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut config = Config::new(
            vec![format!("/ip4/127.0.0.1/tcp/{p2p_port}")],
            vec![],
            "127.0.0.1:0".parse()?,
            64 << 30,
        );
        config.retrieval.listen = "127.0.0.1:0".parse()?;
        config.retrieval.cache_max_bytes = size * 2;
        config.retrieval.max_car_bytes = size * 2;
        std::fs::write(repo.config(), config.render())?;
        {
            let directory = nelumbo_piecedir::Embedded::open(&repo.piece_directory())?;
            let indexed = nelumbo_piecedir::index_car(&directory, &piece, &car)?;
            println!("indexed {} blocks", indexed.blocks);
            let cache = nelumbo_markets::retrieval::cache::PieceCache::open(
                &repo.dir.join("piece-cache"),
                size * 2,
            )?;
            let copy = dir.join("cache-copy.car");
            std::fs::copy(&car, &copy)?;
            cache.admit_file(&piece.to_string(), digest.piece_size.bytes(), &copy)?;
        }
        let cached = repo.dir.join("piece-cache").join(format!("{piece}.data"));
        Ok(Self {
            work,
            file,
            car,
            packed,
            piece,
            repo,
            cached,
            p2p_port,
        })
    }

    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// Starts `nelumbo-markets run --services=retrieval` on the repo (stderr to markets.log,
    /// at `NELUMBO_BENCH_LOG`'s level, default warn).
    pub fn start_markets(&self) -> anyhow::Result<Child> {
        Ok(Command::new(env!("CARGO_BIN_EXE_nelumbo-markets"))
            .arg("--repo")
            .arg(&self.repo.dir)
            .args(["run", "--services=retrieval"])
            .env(
                "RUST_LOG",
                std::env::var("NELUMBO_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir().join("markets.log"))?)
            .spawn()?)
    }
}

/// The markets process's info from its admin API once it answers.
pub async fn markets_info(repo: &Repo) -> anyhow::Result<nelumbo_markets_api::admin::MarketsInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let (Ok(api), Ok(token)) = (
            std::fs::read_to_string(repo.api()),
            std::fs::read_to_string(repo.token()),
        ) {
            let client = nelumbo_rpc::RpcClient::new(
                format!("http://{}/rpc/v1", bound(&api)),
                Some(token.trim().to_string()),
            );
            if let Ok(info) = client.call::<nelumbo_markets_api::admin::Info>(()).await {
                return Ok(info);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "nelumbo-markets did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The retrieval listener's URL.
pub async fn retrieval_url(repo: &Repo) -> anyhow::Result<String> {
    markets_info(repo)
        .await?
        .retrieval_url
        .ok_or_else(|| anyhow::anyhow!("retrieval is not running"))
}

/// Deterministic bytes that do not compress or repeat (xorshift).
pub fn write_pseudo_random(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

/// `HOST:PORT` of `/ip4/HOST/tcp/PORT/http`.
pub fn bound(api: &str) -> String {
    let parts: Vec<&str> = api.trim().split('/').collect();
    format!(
        "{}:{}",
        parts.get(2).unwrap_or(&""),
        parts.get(4).unwrap_or(&"")
    )
}

pub async fn download(http: &reqwest::Client, url: &str, expected: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let response = http.get(url).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        total += chunk?.len() as u64;
    }
    anyhow::ensure!(
        total >= expected,
        "{url}: {total} bytes, expected at least {expected}"
    );
    Ok(total as f64 / 1e6 / started.elapsed().as_secs_f64())
}
