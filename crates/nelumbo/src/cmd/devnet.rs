//! `nelumbo devnet`: a chain, a hub and a markets spoke as separate processes under one
//! directory, with their logs in files, until Ctrl-C.
//!
//! It supervises them as systemd would: a process that exits is reported and started again
//! after a capped backoff (1 s, doubling to 30 s, reset once it has stayed up a minute), and the
//! others keep running: a markets crash never stops the hub, and the hub and markets wait for a
//! chain that went away.
//!
//! ```text
//! DIR/chain/      nelumbo-chain's repo (genesis, database, keys)
//! DIR/miner/      nelumbo-miner's repo (config.toml, keys, sectors under storage/)
//! DIR/markets/    nelumbo-markets' repo (config.toml, libp2p identity, deals, staging/)
//! DIR/chain.log   DIR/miner.log   DIR/markets.log
//! With --replicas N, also:
//! DIR/postgres/   a private PostgreSQL cluster (loopback only) holding the piece directory
//! DIR/replica-K/  retrieval replica K's repo (`--services=retrieval`, K = 1..N)
//! DIR/postgres.log  DIR/replica-K.log
//! ```
//!
//! A second run reuses what the first created: the chain continues from its database, the hub
//! resumes its sectors and markets its deals.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use nelumbo_types::SectorSize;

#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Where the devnet keeps its repos and logs.
    #[arg(long, default_value_os_t = default_dir())]
    dir: PathBuf,
    /// Sector size of the miner; a new chain allows only this size, so it needs only this
    /// size's proof parameters.
    #[arg(long, default_value = "2KiB", value_parser = parse_sector_size)]
    sector_size: SectorSize,
    /// real, or insecure-testing (proofs that prove nothing, for quick experiments).
    #[arg(long, default_value = "real")]
    proof_mode: String,
    /// Milliseconds per epoch for a new chain.
    #[arg(long, default_value_t = 2000)]
    epoch_ms: u64,
    /// Where the chain's API listens.
    #[arg(long, default_value = "127.0.0.1:1234")]
    chain_listen: String,
    /// Where the hub's API listens (recorded in its config.toml when the miner is created).
    #[arg(long, default_value = "127.0.0.1:2345")]
    hub_listen: String,
    /// Where the markets process takes deals (libp2p; recorded on chain as the miner's address).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/24001")]
    markets_listen: String,
    /// Where the markets admin API, health and metrics listen.
    #[arg(long, default_value = "127.0.0.1:24100")]
    markets_api: String,
    /// Where the markets process serves retrievals over HTTP (/piece, /ipfs).
    #[arg(long, default_value = "127.0.0.1:24080")]
    retrieval_listen: String,
    /// Seconds a sector waits for more deals before it is sealed (the hub's wait_deals_secs,
    /// set when the miner is created; short, so a devnet deal seals soon).
    #[arg(long, default_value_t = 30)]
    wait_deals_secs: u64,
    /// Retrieval replicas to run beside the markets process (`--services=retrieval`, each its
    /// own repo DIR/replica-N), sharing its piece directory on a private PostgreSQL cluster
    /// under DIR/postgres (needs PostgreSQL's server programs). Replica N serves retrievals on
    /// the retrieval port + N.
    #[arg(long, default_value_t = 0)]
    replicas: u16,
    /// Where the devnet's PostgreSQL listens, with --replicas (loopback only).
    #[arg(long, default_value_t = 24432)]
    postgres_port: u16,
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".nelumbo")
        .join("devnet")
}

fn parse_sector_size(text: &str) -> Result<SectorSize, String> {
    text.parse()
        .map_err(|e: nelumbo_types::SizeError| e.to_string())
}

/// A workspace binary: next to this one (a cargo build or an install), else on PATH.
fn binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run_ok(command: &mut Command, what: &str) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", command.get_program()))?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 30 s) when dropped.
struct Process {
    name: String,
    child: Child,
}

/// A daemon the devnet keeps running: how to start it, and its restarts.
struct Supervised {
    name: String,
    program: PathBuf,
    args: Vec<std::ffi::OsString>,
    repo: PathBuf,
    log: PathBuf,
    process: Option<Process>,
    started_at: Instant,
    restarts: u32,
    /// When to start it again, after it exited.
    restart_at: Option<Instant>,
    backoff: Duration,
    /// The uid and gid to run it as (PostgreSQL, when the devnet runs as root).
    owner: Option<(u32, u32)>,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process up this long is healthy again: its next restart comes after the first backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);

impl Supervised {
    fn new(
        name: &str,
        program: &Path,
        args: Vec<std::ffi::OsString>,
        repo: &Path,
        log: &Path,
    ) -> Self {
        Self {
            name: name.to_string(),
            program: program.to_path_buf(),
            args,
            repo: repo.to_path_buf(),
            log: log.to_path_buf(),
            process: None,
            started_at: Instant::now(),
            restarts: 0,
            restart_at: None,
            backoff: FIRST_BACKOFF,
            owner: None,
        }
    }

    fn start(&mut self) -> anyhow::Result<()> {
        // A SIGKILLed daemon leaves its api file: a new one is written once it serves.
        let _ = std::fs::remove_file(self.repo.join("api"));
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid).current_dir(&self.repo);
        }
        self.process = Some(Process::start(&self.name, &mut command, &self.log)?);
        self.started_at = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    fn process(&mut self) -> anyhow::Result<&mut Process> {
        self.process
            .as_mut()
            .with_context(|| format!("{} is not running", self.name))
    }

    /// Reports an exit and schedules the restart; starts it when its time has come.
    fn watch(&mut self) {
        if let Some(process) = &mut self.process
            && let Some(status) = process.exited()
        {
            self.process = None;
            if self.started_at.elapsed() >= STABLE_AFTER {
                self.backoff = FIRST_BACKOFF;
            }
            self.restarts += 1;
            println!(
                "{} exited ({}); restarting in {:?} (restart {}; see {})",
                self.name,
                describe(status),
                self.backoff,
                self.restarts,
                self.log.display()
            );
            self.restart_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        if let Some(at) = self.restart_at
            && Instant::now() >= at
        {
            match self.start() {
                Ok(()) => println!("{} started again", self.name),
                Err(e) => {
                    println!(
                        "{} cannot be started: {e:#}; trying again in {:?}",
                        self.name, self.backoff
                    );
                    self.restart_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }
}

/// How a process ended, as an operator reads it.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "killed by SIGKILL".to_string(),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

impl Process {
    fn start(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("start {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                println!("{} stopped", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("{} killed after 30 s", self.name);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for a daemon to write its `api` file, or fails with its log.
fn wait_for_api(
    process: &mut Process,
    repo: &Path,
    log: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        anyhow::ensure!(
            !stop.load(std::sync::atomic::Ordering::SeqCst),
            "interrupted while {} was starting",
            process.name
        );
        if let Ok(api) = std::fs::read_to_string(repo.join("api"))
            && !api.trim().is_empty()
        {
            return Ok(api.trim().to_string());
        }
        if let Some(status) = process.exited() {
            anyhow::bail!(
                "{} exited with {status}; see {}",
                process.name,
                log.display()
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not start within 2 minutes; see {}",
            process.name,
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn run(args: DevnetArgs) -> anyhow::Result<()> {
    let real = match args.proof_mode.as_str() {
        "real" => true,
        "insecure-testing" => false,
        other => anyhow::bail!("--proof-mode {other}: use real or insecure-testing"),
    };
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    if real {
        println!(
            "checking the {} proof parameters (generated once per machine)",
            args.sector_size
        );
        super::proofs::params(args.sector_size, false, None)?;
    }
    // From here on Ctrl-C stops the daemons, even while they are still coming up (before,
    // during parameter generation, it simply ends the program: no daemon runs yet).
    let stop = signal_flag()?;
    let chain_repo = args.dir.join("chain");
    let miner_repo = args.dir.join("miner");
    let chain_log = args.dir.join("chain.log");
    let miner_log = args.dir.join("miner.log");
    let markets_repo = args.dir.join("markets");
    let markets_log = args.dir.join("markets.log");
    let markets_bin = binary("nelumbo-markets");
    let chain_bin = binary("nelumbo-chain");
    let miner_bin = binary("nelumbo-miner");

    if !chain_repo.join("genesis.json").exists() {
        println!("creating the chain in {}", chain_repo.display());
        run_ok(
            Command::new(&chain_bin)
                .arg("--repo")
                .arg(&chain_repo)
                .args(["genesis", "--proof-mode", &args.proof_mode])
                .args(["--sector-size", &args.sector_size.to_string()])
                .args(["--epoch-ms", &args.epoch_ms.to_string()]),
            "nelumbo-chain genesis",
        )?;
    }
    let mut chain = Supervised::new(
        "nelumbo-chain",
        &chain_bin,
        os_args(
            &["--repo"],
            &chain_repo,
            &["run", "--listen", &args.chain_listen],
        ),
        &chain_repo,
        &chain_log,
    );
    chain.start()?;
    let chain_api = wait_for_api(chain.process()?, &chain_repo, &chain_log, &stop)?;
    println!("chain running: {chain_api} (log {})", chain_log.display());
    // A restarted chain must come back where the hub looks for it.
    let chain_address = bound_address(&chain_api)?;
    chain.args = os_args(
        &["--repo"],
        &chain_repo,
        &["run", "--listen", &chain_address],
    );

    if !miner_repo.join("miner.json").exists() {
        init_miner(&args, &chain_bin, &miner_bin, &chain_repo, &miner_repo)?;
    } else {
        upgrade_hub_config(&miner_repo)?;
    }
    let mut miner = Supervised::new(
        "nelumbo-miner",
        &miner_bin,
        os_args(&["--repo"], &miner_repo, &["run"]),
        &miner_repo,
        &miner_log,
    );
    miner.start()?;
    let miner_api = wait_for_api(miner.process()?, &miner_repo, &miner_log, &stop)?;
    println!("hub running: {miner_api} (log {})", miner_log.display());
    // And a restarted hub where markets looks for it.
    pin_listen_port(&miner_repo.join("config.toml"), &bound_address(&miner_api)?)?;

    if markets_repo.join("config.toml").exists() {
        upgrade_markets_repo(
            &miner_bin,
            &miner_repo,
            &markets_repo,
            &args.retrieval_listen,
        )?;
    } else {
        println!("creating the markets process in {}", markets_repo.display());
        let write_token = run_ok(
            Command::new(&miner_bin)
                .arg("--repo")
                .arg(&miner_repo)
                .args([
                    "auth",
                    "api-info",
                    "--perm",
                    "spoke",
                    "--name",
                    "devnet-markets",
                ]),
            "nelumbo-miner auth api-info",
        )?;
        let hub_api = String::from_utf8_lossy(&write_token.stdout)
            .trim()
            .trim_start_matches("MINER_API_INFO=")
            .to_string();
        run_ok(
            Command::new(&markets_bin)
                .arg("--repo")
                .arg(&markets_repo)
                .args(["init", "--hub-api", &hub_api])
                .args(["--listen", &args.markets_listen])
                .args(["--api", &args.markets_api])
                .args(["--retrieval-listen", &args.retrieval_listen]),
            "nelumbo-markets init",
        )?;
        // Devnet epochs are seconds, not 30 s: 60 epochs of lead is enough to seal small sectors.
        let config = markets_repo.join("config.toml");
        let text = std::fs::read_to_string(&config)?;
        // The devnet's client serves deal data on this machine: let transfers reach loopback.
        std::fs::write(
            &config,
            text.replace("min_start_lead_epochs = 2880", "min_start_lead_epochs = 60")
                .replace(
                    "transfer_allow = []",
                    "transfer_allow = [\"127.0.0.0/8\", \"::1\"]",
                ),
        )?;
    }
    let mut database = None;
    if args.replicas > 0 {
        let (cluster, url) = start_postgres(&args, &markets_repo, &stop)?;
        set_database_url(&markets_repo.join("config.toml"), &url)?;
        database = Some((cluster, url));
    }
    let mut markets = Supervised::new(
        "nelumbo-markets",
        &markets_bin,
        os_args(
            &["--repo"],
            &markets_repo,
            &["run", "--services=deals,retrieval,indexing"],
        ),
        &markets_repo,
        &markets_log,
    );
    markets.start()?;
    let markets_api = wait_for_api(markets.process()?, &markets_repo, &markets_log, &stop)?;
    println!(
        "markets running: deals at {}, retrievals and the IPNI publisher at http://{}, admin API {markets_api} (log {})",
        args.markets_listen,
        args.retrieval_listen,
        markets_log.display()
    );

    let mut replicas = Vec::new();
    if let Some((_, url)) = &database {
        for n in 1..=args.replicas {
            let replica =
                start_replica(&args, n, url, &miner_bin, &miner_repo, &markets_bin, &stop)?;
            replicas.push(replica);
        }
    }

    let chain_info = run_ok(
        Command::new(&chain_bin)
            .arg("--repo")
            .arg(&chain_repo)
            .args(["auth", "api-info", "--perm", "admin"]),
        "nelumbo-chain auth api-info",
    )?;
    let miner_info = run_ok(
        Command::new(&miner_bin)
            .arg("--repo")
            .arg(&miner_repo)
            .args(["auth", "api-info", "--perm", "admin"]),
        "nelumbo-miner auth api-info",
    )?;
    let miner_repo_text = miner_repo.display();
    let miner_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(miner_repo.join("miner.json"))?)?;
    let actor = miner_json["Actor"].as_str().unwrap_or("t01000").to_string();
    let chain_info_text = String::from_utf8_lossy(&chain_info.stdout)
        .trim()
        .to_string();
    println!();
    println!("The devnet is up. Connection strings (admin tokens):");
    println!("  {chain_info_text}");
    println!("  {}", String::from_utf8_lossy(&miner_info.stdout).trim());
    println!();
    println!("Make a deal, in another terminal:");
    println!("  export {chain_info_text}");
    println!("  nelumbo client wallet new");
    println!(
        "  nelumbo-chain --repo {} faucet ADDRESS 10",
        chain_repo.display()
    );
    println!("  nelumbo client deal --provider {actor} --wait-active FILE");
    println!("  nelumbo client retrieve --provider {actor} PAYLOAD_CID_OR_PIECE_CID");
    println!(
        "  nelumbo-markets --repo {} deals list",
        markets_repo.display()
    );
    println!(
        "  nelumbo-markets --repo {} indexing status   # IPNI: GET http://{}/ipni/v1/ad/head",
        markets_repo.display(),
        args.retrieval_listen
    );
    if !replicas.is_empty() {
        println!();
        println!("Retrieval replicas (they share the piece directory in PostgreSQL):");
        for n in 1..=args.replicas {
            println!(
                "  curl -H 'Accept: application/vnd.ipld.car' http://{}/ipfs/PAYLOAD_CID > out.car",
                offset_port(&args.retrieval_listen, n)?
            );
        }
    }
    println!();
    println!("Or look at the hub:");
    println!("  nelumbo-miner --repo {miner_repo_text} info");
    println!("  nelumbo-miner --repo {miner_repo_text} sectors pledge");
    println!("  nelumbo-miner --repo {miner_repo_text} sectors list");
    println!("  nelumbo-miner --repo {miner_repo_text} proving info");
    println!("  nelumbo-chain --repo {} head", chain_repo.display());
    println!();
    println!("A process that exits is started again; Ctrl-C stops everything.");

    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        for daemon in [&mut chain, &mut miner, &mut markets] {
            daemon.watch();
        }
        for daemon in replicas.iter_mut() {
            daemon.watch();
        }
        if let Some((cluster, _)) = &mut database {
            cluster.watch();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stopping");
    // The public side first, the chain last, the database after its clients.
    for replica in replicas.iter_mut() {
        replica.stop();
    }
    markets.stop();
    miner.stop();
    chain.stop();
    if let Some((cluster, _)) = &mut database {
        cluster.stop();
    }
    Ok(())
}

/// A devnet hub made by an earlier version has no `[deals]` section, so the production lead
/// (a day of mainnet epochs) applies: give it the devnet's.
fn upgrade_hub_config(miner_repo: &Path) -> anyhow::Result<()> {
    let path = miner_repo.join("config.toml");
    let text = std::fs::read_to_string(&path)?;
    if !text.contains("[deals]") {
        println!("updating {}: deals may start 20 epochs out", path.display());
        std::fs::write(&path, text + "\n[deals]\nmin_start_lead_epochs = 20\n")?;
    }
    Ok(())
}

/// A devnet markets repo made by an earlier version holds a `write` token for the hub, which
/// no longer reaches what spokes do (they have a permission of their own), and no transfer
/// allow list (its client serves data on loopback): give it both.
fn upgrade_markets_repo(
    miner_bin: &Path,
    miner_repo: &Path,
    markets_repo: &Path,
    retrieval_listen: &str,
) -> anyhow::Result<()> {
    let api_info = markets_repo.join("hub-api-info");
    let current = std::fs::read_to_string(&api_info).unwrap_or_default();
    let token = current.split(':').next().unwrap_or_default();
    let is_spoke = nelumbo_rpc::claimed_permissions(token).is_some_and(|allow| allow == ["spoke"]);
    if !is_spoke {
        println!("updating {}: a spoke token for the hub", api_info.display());
        let made = run_ok(
            Command::new(miner_bin).arg("--repo").arg(miner_repo).args([
                "auth",
                "create-token",
                "--perm",
                "spoke",
                "--name",
                "devnet-markets",
            ]),
            "nelumbo-miner auth create-token",
        )?;
        let address = current.split_once(':').map(|(_, a)| a).unwrap_or_default();
        let line = format!(
            "{}:{}",
            String::from_utf8_lossy(&made.stdout).trim(),
            address.trim()
        );
        nelumbo_service::write_private(&api_info, &line)?;
    }
    let config = markets_repo.join("config.toml");
    let text = std::fs::read_to_string(&config)?;
    if !text.contains("transfer_allow") {
        println!(
            "updating {}: transfers may reach loopback",
            config.display()
        );
        std::fs::write(
            &config,
            text.replace(
                "[deals]\n",
                "[deals]\ntransfer_allow = [\"127.0.0.0/8\", \"::1\"]\n",
            ),
        )?;
    }
    let text = std::fs::read_to_string(&config)?;
    if !text.contains("[retrieval]") {
        println!(
            "updating {}: retrieval over HTTP at {retrieval_listen}",
            config.display()
        );
        std::fs::write(
            &config,
            format!("{text}\n[retrieval]\nlisten = \"{retrieval_listen}\"\n"),
        )?;
    }
    Ok(())
}

/// `127.0.0.1:PORT` of an api file's `/ip4/127.0.0.1/tcp/PORT/http`.
fn bound_address(api: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = api.trim().split('/').collect();
    match parts.as_slice() {
        ["", "ip4", host, "tcp", port, ..] => Ok(format!("{host}:{port}")),
        ["", "ip6", host, "tcp", port, ..] => Ok(format!("[{host}]:{port}")),
        _ => anyhow::bail!("cannot read the address in {api:?}"),
    }
}

/// A daemon configured to listen on port 0 got a port from the system: write that port into
/// its config, so that it comes back on the same one when restarted.
fn pin_listen_port(config: &Path, address: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let pinned: Vec<String> = text
        .lines()
        .map(|line| {
            let listening_on_any_port =
                line.trim_start().starts_with("listen = \"") && line.trim_end().ends_with(":0\"");
            if listening_on_any_port {
                format!("listen = \"{address}\"")
            } else {
                line.to_string()
            }
        })
        .collect();
    std::fs::write(config, pinned.join("\n") + "\n")?;
    Ok(())
}

/// The devnet's PostgreSQL cluster under DIR/postgres (made once with `initdb`: user
/// `nelumbo`, trust on loopback only), started and supervised; returns it and its URL. Refused
/// for a devnet whose markets process already keeps an embedded piece directory (its pieces
/// would not be in the new database).
fn start_postgres(
    args: &DevnetArgs,
    markets_repo: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<(Supervised, String)> {
    use nelumbo_piecedir::local;
    let bin = local::bin_dir().context(local::INSTALL_HINT)?;
    let url = format!(
        "postgres://nelumbo@127.0.0.1:{}/postgres",
        args.postgres_port
    );
    anyhow::ensure!(
        !markets_repo.join("piecedir.redb").exists()
            || std::fs::read_to_string(markets_repo.join("config.toml"))?.contains(&url),
        "--replicas: this devnet's markets process keeps its piece directory in {} (it ran          without --replicas before), so its deals would not be found by replicas: start a new          devnet with --dir",
        markets_repo.join("piecedir.redb").display()
    );
    let dir = args.dir.join("postgres");
    let data = dir.join("data");
    let owner = local::server_owner()?;
    std::fs::create_dir_all(&dir)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    if !data.join("PG_VERSION").exists() {
        println!("creating the PostgreSQL cluster in {}", data.display());
        run_ok(
            local::command(&bin, "initdb", owner)
                .arg("-D")
                .arg(&data)
                .args(local::INITDB_ARGS)
                .current_dir(&dir),
            "initdb",
        )?;
    }
    let log = args.dir.join("postgres.log");
    let mut cluster = Supervised::new(
        "postgres",
        &bin.join("postgres"),
        vec![
            "-D".into(),
            data.into_os_string(),
            "-p".into(),
            args.postgres_port.to_string().into(),
            "-k".into(),
            dir.clone().into_os_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
        ],
        &dir,
        &log,
    );
    cluster.owner = owner;
    cluster.start()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            !stop.load(std::sync::atomic::Ordering::SeqCst),
            "interrupted while PostgreSQL was starting"
        );
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &args.postgres_port.to_string(),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        if let Some(status) = cluster.process()?.exited() {
            anyhow::bail!("PostgreSQL exited with {status}; see {}", log.display());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "PostgreSQL did not start within a minute; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("PostgreSQL running: {url} (log {})", log.display());
    Ok((cluster, url))
}

/// Points a markets repo's `[database] url` at `url`.
fn set_database_url(config: &Path, url: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let mut found = false;
    let edited: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("url = ") {
                found = true;
                format!("url = \"{url}\"")
            } else {
                line.to_string()
            }
        })
        .collect();
    let mut edited = edited.join("\n") + "\n";
    if !found {
        // A repo made before [database] existed.
        edited.push_str(&format!("\n[database]\nurl = \"{url}\"\n"));
    }
    std::fs::write(config, edited)?;
    Ok(())
}

/// Retrieval replica `n`: its repo DIR/replica-N (made once, with `--skip-peer-info` so the
/// markets process's peer ID stays the one on chain), on the shared directory, started and
/// supervised. It listens on the markets process's ports + N.
fn start_replica(
    args: &DevnetArgs,
    n: u16,
    url: &str,
    miner_bin: &Path,
    miner_repo: &Path,
    markets_bin: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Supervised> {
    let name = format!("replica-{n}");
    let repo = args.dir.join(&name);
    let log = args.dir.join(format!("{name}.log"));
    let retrieval = offset_port(&args.retrieval_listen, n)?;
    if !repo.join("config.toml").exists() {
        println!("creating retrieval replica {n} in {}", repo.display());
        let token = run_ok(
            Command::new(miner_bin)
                .arg("--repo")
                .arg(miner_repo)
                .args(["auth", "api-info", "--perm", "spoke", "--name"])
                .arg(format!("devnet-{name}")),
            "nelumbo-miner auth api-info",
        )?;
        let hub_api = String::from_utf8_lossy(&token.stdout)
            .trim()
            .trim_start_matches("MINER_API_INFO=")
            .to_string();
        run_ok(
            Command::new(markets_bin)
                .arg("--repo")
                .arg(&repo)
                .args(["init", "--skip-peer-info", "--hub-api", &hub_api])
                .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
                .args(["--api", "127.0.0.1:0"])
                .args(["--retrieval-listen", &retrieval]),
            "nelumbo-markets init (replica)",
        )?;
        set_database_url(&repo.join("config.toml"), url)?;
    }
    let mut replica = Supervised::new(
        &format!("nelumbo-markets {name}"),
        markets_bin,
        os_args(&["--repo"], &repo, &["run", "--services=retrieval"]),
        &repo,
        &log,
    );
    replica.start()?;
    let api = wait_for_api(replica.process()?, &repo, &log, stop)?;
    // Restarted, it comes back on the same admin port.
    pin_listen_port(&repo.join("config.toml"), &bound_address(&api)?)?;
    println!(
        "retrieval replica {n} running: retrievals at http://{retrieval}, admin API {api} (log {})",
        log.display()
    );
    Ok(replica)
}

/// `HOST:PORT` with the port raised by `n`.
fn offset_port(address: &str, n: u16) -> anyhow::Result<String> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("{address} has no port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("{address}: bad port"))?;
    anyhow::ensure!(
        port != 0,
        "--replicas needs a fixed --retrieval-listen port (replica N listens on it + N)"
    );
    Ok(format!("{host}:{}", port + n))
}

/// `before REPO after...` as a command's arguments.
fn os_args(before: &[&str], repo: &Path, after: &[&str]) -> Vec<std::ffi::OsString> {
    before
        .iter()
        .map(std::ffi::OsString::from)
        .chain(std::iter::once(repo.as_os_str().to_os_string()))
        .chain(after.iter().map(std::ffi::OsString::from))
        .collect()
}

fn init_miner(
    args: &DevnetArgs,
    chain_bin: &Path,
    miner_bin: &Path,
    chain_repo: &Path,
    miner_repo: &Path,
) -> anyhow::Result<()> {
    println!("creating the hub's miner in {}", miner_repo.display());
    let info = run_ok(
        Command::new(chain_bin)
            .arg("--repo")
            .arg(chain_repo)
            .args(["auth", "api-info", "--perm", "sign"]),
        "nelumbo-chain auth api-info",
    )?;
    let chain_api = String::from_utf8_lossy(&info.stdout)
        .trim()
        .trim_start_matches("FULLNODE_API_INFO=")
        .to_string();
    let init = || {
        Command::new(miner_bin)
            .arg("--repo")
            .arg(miner_repo)
            .args(["init", "--chain-api", &chain_api])
            .args(["--sector-size", &args.sector_size.to_string()])
            .args(["--proof-mode", &args.proof_mode])
            .args(["--listen", &args.hub_listen])
            .output()
    };
    let first = init().context("run nelumbo-miner init")?;
    if first.status.success() {
        return shorten_wait_deals(args, miner_repo);
    }
    // Init stops until its owner is funded; on a devnet the faucet does that.
    let wallet: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(miner_repo.join("wallet.json")).with_context(|| {
            format!(
                "nelumbo-miner init failed before creating keys:\n{}",
                String::from_utf8_lossy(&first.stderr)
            )
        })?,
    )?;
    let owner = wallet["owner"]
        .as_str()
        .context("wallet.json has no owner")?
        .to_string();
    run_ok(
        Command::new(chain_bin)
            .arg("--repo")
            .arg(chain_repo)
            .args(["faucet", &owner, "100"]),
        "fund the owner from the faucet",
    )?;
    let second = init().context("run nelumbo-miner init")?;
    anyhow::ensure!(
        second.status.success(),
        "nelumbo-miner init failed:\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    shorten_wait_deals(args, miner_repo)
}

/// A new devnet hub seals deal sectors after `--wait-deals-secs`, not the production hour, and
/// takes deals starting 20 epochs out rather than a production day.
fn shorten_wait_deals(args: &DevnetArgs, miner_repo: &Path) -> anyhow::Result<()> {
    let path = miner_repo.join("config.toml");
    let text = std::fs::read_to_string(&path)?;
    let edited: String = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("wait_deals_secs") {
                format!("wait_deals_secs = {}", args.wait_deals_secs)
            } else if line.trim_start().starts_with("min_start_lead_epochs") {
                // Devnet sectors seal in minutes, not the production day.
                "min_start_lead_epochs = 20".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, edited + "\n")?;
    Ok(())
}

/// A flag set by SIGINT or SIGTERM.
fn signal_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone()).context("install the Ctrl-C handler")?;
    }
    Ok(flag)
}
