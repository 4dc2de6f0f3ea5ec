//! `nelumbo-miner`: the hub daemon and its CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nelumbo_chain_api::json::use_testnet_addresses;
use nelumbo_miner::init::{InitOptions, init};
use nelumbo_miner::repo::Repo;
use nelumbo_miner_api::MINER_API_INFO;
use nelumbo_miner_api::methods::{
    MinerInfo, ProvingDeadlines, ProvingInfo, SectorsList, SectorsPledge, SectorsStatus,
    SectorsSummary, SpokesList, SpokesUnbind, WorkersList,
};
use nelumbo_proofs::ProofMode;
use nelumbo_rpc::{Permission, RpcClient, TokenSecret};
use nelumbo_types::SectorSize;

/// The Nelumbo hub: sealing, proving, mining and keys, with a narrow API for spokes.
#[derive(Debug, Parser)]
#[command(name = "nelumbo-miner", version, about)]
struct Cli {
    /// The hub's repo directory (default: NELUMBO_MINER_REPO or ~/.nelumbo/miner).
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the repo (config.toml, owner and worker keys) and the miner actor on chain.
    Init {
        /// Sector size: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB.
        #[arg(long, default_value = "8MiB")]
        sector_size: SectorSize,
        /// The chain's connection string (TOKEN:/ip4/HOST/tcp/PORT/http); default:
        /// FULLNODE_API_INFO.
        #[arg(long)]
        chain_api: Option<String>,
        /// Where the hub API listens (default 127.0.0.1:2345).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A directory for sectors (repeat for several; default: REPO/storage).
        #[arg(long = "storage")]
        storage: Vec<PathBuf>,
        /// real, or insecure-testing for a chain whose genesis says so.
        #[arg(long, default_value = "real")]
        proof_mode: ProofMode,
        /// FIL the owner gives the new miner actor for deposits and pledges.
        #[arg(long, default_value = "10")]
        initial_balance: String,
        /// FIL the owner gives the worker for the gas of sealing and deal messages.
        #[arg(long, default_value = "1")]
        worker_balance: String,
        /// FIL the owner gives the WindowPoSt control address for its gas.
        #[arg(long, default_value = "1")]
        control_balance: String,
    },
    /// Run the hub.
    Run,
    /// API tokens.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The miner: actor, owner, worker, sector size, power, sectors and blocks won.
    Info,
    /// Sectors: list, inspect, pledge.
    #[command(subcommand)]
    Sectors(SectorsCommand),
    /// WindowPoSt: the proving period and its deadlines.
    #[command(subcommand)]
    Proving(ProvingCommand),
    /// The spokes (markets processes) that report to this hub.
    #[command(subcommand)]
    Spokes(SpokesCommand),
    /// A link to the hub's status view (a browser page on the API listener), with a new read
    /// token in its fragment.
    StatusUrl,
    /// The hub's background workers and what each is doing.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// config.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Internal: runs one proof job read on standard input (the hub starts these).
    #[command(hide = true)]
    ProofWorker {
        /// CPU priority (nice) to run at.
        #[arg(long, default_value_t = 19)]
        nice: i32,
        /// What the job is (for `ps`; the job itself comes on standard input).
        #[arg(long)]
        job: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print config.toml with every setting at its default, each explained (what `init`
    /// writes before its flags are applied).
    Default,
}

#[derive(Debug, Subcommand)]
enum WorkersCommand {
    /// Every worker (a sector's sealing, the publish batcher and its batches, unseal jobs, the
    /// WindowPoSt scheduler, mining): busy, idle, waiting for a permit, or retrying, with
    /// its errors and when it tries again.
    List {
        /// Print JSON rather than a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SpokesCommand {
    /// Every spoke heard from since the hub started, whether it is still alive, and the peer ID
    /// each spoke token is bound to.
    List,
    /// Release the peer ID a spoke token is bound to (after replacing that spoke's identity).
    Unbind {
        /// The spoke token's name (shown by `spokes list` and when the token was made).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SectorsCommand {
    /// Every sector with its state.
    List,
    /// One sector: state, commitments, messages, history.
    Status {
        sector: u64,
        /// Print the full JSON.
        #[arg(long)]
        json: bool,
    },
    /// Seal a committed-capacity sector (no deals).
    Pledge,
}

#[derive(Debug, Subcommand)]
enum ProvingCommand {
    /// The current deadline, sector counts and WindowPoSt counters.
    Info,
    /// Every deadline of the proving period.
    Deadlines,
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Print a token granting PERM and every permission below it (read, write, sign, admin);
    /// `spoke` makes a markets process's token, which reaches only what spokes need.
    CreateToken {
        #[arg(long)]
        perm: Permission,
        /// A spoke token's name (default: spoke- and random letters); the hub binds it to the
        /// peer ID of the first spoke that uses it.
        #[arg(long)]
        name: Option<String>,
    },
    /// Print MINER_API_INFO for the running hub (`--perm spoke` for a markets process).
    ApiInfo {
        #[arg(long, default_value = "admin")]
        perm: Permission,
        /// A spoke token's name, as for create-token.
        #[arg(long)]
        name: Option<String>,
    },
}

/// The token `create-token` and `api-info` print; a spoke token always carries a name, said on
/// standard error.
fn make_token(
    secret: &TokenSecret,
    perm: Permission,
    name: Option<String>,
) -> anyhow::Result<String> {
    if perm != Permission::Spoke {
        anyhow::ensure!(name.is_none(), "--name is for spoke tokens (--perm spoke)");
        return Ok(secret.create_token(perm));
    }
    let name = match name {
        Some(name) => {
            anyhow::ensure!(
                !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'),
                "--name: 1 to 64 letters, digits, '-', '_' or '.'"
            );
            name
        }
        None => {
            let mut bytes = [0u8; 4];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            format!("spoke-{}", hex::encode(bytes))
        }
    };
    eprintln!(
        "spoke token {name:?}: the hub binds it to the peer ID of the first spoke that uses it"
    );
    Ok(secret.create_named_token(perm, Some(&name)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ProofWorker { nice, .. } = cli.command {
        // A child of the hub: no async runtime, one job, errors on standard error.
        use_testnet_addresses();
        return match nelumbo_miner::proof_worker::serve(nice) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    nelumbo_service::init_logging(nelumbo_service::DAEMON_LOG_FILTER);
    use_testnet_addresses();
    nelumbo_service::block_on_main(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let repo = Repo::locate(cli.repo)?;
    match cli.command {
        Command::Init {
            sector_size,
            chain_api,
            listen,
            storage,
            proof_mode,
            initial_balance,
            worker_balance,
            control_balance,
        } => {
            let initial_balance = nelumbo_chain_api::fil::parse_fil(&initial_balance)
                .map_err(|e| anyhow::anyhow!("--initial-balance: {e}"))?;
            let worker_balance = nelumbo_chain_api::fil::parse_fil(&worker_balance)
                .map_err(|e| anyhow::anyhow!("--worker-balance: {e}"))?;
            let control_balance = nelumbo_chain_api::fil::parse_fil(&control_balance)
                .map_err(|e| anyhow::anyhow!("--control-balance: {e}"))?;
            let info = init(
                &repo,
                InitOptions {
                    sector_size,
                    chain_api_info: chain_api,
                    listen,
                    storage,
                    proof_mode,
                    initial_balance,
                    worker_balance,
                    control_balance,
                },
            )
            .await?;
            println!("miner {} created", info.actor);
            println!(
                "owner {} (secp256k1), worker {} (BLS), WindowPoSt control {} (secp256k1)",
                info.owner,
                info.worker,
                info.control.map(|c| c.to_string()).unwrap_or_default()
            );
            println!(
                "start the hub with: nelumbo-miner --repo {} run",
                repo.dir.display()
            );
            Ok(())
        }
        Command::Run => nelumbo_miner::daemon::run(repo).await,
        Command::ProofWorker { .. } => unreachable!("handled before the runtime starts"),
        Command::Auth(AuthCommand::CreateToken { perm, name }) => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            println!("{}", make_token(&secret, perm, name)?);
            Ok(())
        }
        Command::Auth(AuthCommand::ApiInfo { perm, name }) => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            let api = running_api(&repo)?;
            println!(
                "{MINER_API_INFO}={}:{}",
                make_token(&secret, perm, name)?,
                api
            );
            Ok(())
        }
        Command::Info => {
            let client = client(&repo)?;
            let info = client.call::<MinerInfo>(()).await?;
            println!("miner:       {}", info.actor);
            println!("sector size: {}", SectorSize::new(info.sector_size)?);
            println!("owner:       {}", info.owner);
            println!("worker:      {}", info.worker);
            match info.control {
                Some(control) => println!("control:     {control} (sends WindowPoSt)"),
                None => println!(
                    "control:     none: WindowPoSt is sent from the worker and shares its nonces (a hub made before control addresses)"
                ),
            }
            println!("created at:  epoch {}", info.created_at);
            let proving = client.call::<ProvingInfo>(()).await?;
            println!(
                "power:       {} ({} live sectors, {} faulty)",
                SectorSize::new(info.sector_size)
                    .map(|s| format_bytes(
                        s.bytes() * (proving.live_sectors - proving.faulty_sectors)
                    ))
                    .unwrap_or_default(),
                proving.live_sectors,
                proving.faulty_sectors
            );
            println!("blocks won:  {}", proving.blocks_won);
            let summary = client.call::<SectorsSummary>(()).await?;
            let states: Vec<String> = summary.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            println!(
                "sectors:     {}",
                if states.is_empty() {
                    "none".to_string()
                } else {
                    states.join(", ")
                }
            );
            Ok(())
        }
        Command::Sectors(SectorsCommand::List) => {
            let sectors = client(&repo)?.call::<SectorsList>(()).await?;
            if sectors.is_empty() {
                println!("no sectors: seal one with `nelumbo-miner sectors pledge`");
            }
            println!("{:>8}  {:<16}  LAST ERROR", "SECTOR", "STATE");
            for s in sectors {
                println!(
                    "{:>8}  {:<16}  {}",
                    s.number,
                    s.state.name(),
                    s.last_error.unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Sectors(SectorsCommand::Status { sector, json }) => {
            let status = client(&repo)?.call::<SectorsStatus>((sector,)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            println!("sector:          {}", status.number);
            println!("state:           {}", status.state);
            println!("storage:         {}", status.storage);
            println!(
                "ticket epoch:    {}",
                opt(status.ticket_epoch.map(|e| e.to_string()))
            );
            println!(
                "CommR:           {}",
                opt(status.comm_r.map(|c| c.to_string()))
            );
            println!(
                "CommD:           {}",
                opt(status.comm_d.map(|c| c.to_string()))
            );
            println!(
                "pre-commit:      {}",
                opt(status.pre_commit_message.map(|c| c.to_string()))
            );
            println!(
                "pre-commit epoch {}",
                opt(status.pre_commit_epoch.map(|e| e.to_string()))
            );
            println!(
                "seed epoch:      {}",
                opt(status.seed_epoch.map(|e| e.to_string()))
            );
            println!(
                "prove-commit:    {}",
                opt(status.commit_message.map(|c| c.to_string()))
            );
            if let Some(error) = &status.last_error {
                println!("last error:      {error} (attempt {})", status.retries);
            }
            println!("history:");
            for entry in &status.log {
                println!(
                    "  {}  {:<16} {}",
                    entry.at,
                    entry.state.name(),
                    entry.message
                );
            }
            Ok(())
        }
        Command::Sectors(SectorsCommand::Pledge) => {
            let number = client(&repo)?.call::<SectorsPledge>(()).await?;
            println!(
                "sector {number} pledged; follow it with `nelumbo-miner sectors status {number}`"
            );
            Ok(())
        }
        Command::Proving(ProvingCommand::Info) => {
            let info = client(&repo)?.call::<ProvingInfo>(()).await?;
            println!("current epoch:     {}", info.current_epoch);
            println!("period start:      {}", info.period_start);
            println!(
                "deadline:          {} of {} (open {} to {}, {} epochs each)",
                info.deadline_index,
                info.deadlines,
                info.deadline_open,
                info.deadline_close,
                info.challenge_window
            );
            println!("live sectors:      {}", info.live_sectors);
            println!(
                "faulty sectors:    {} ({} recovering)",
                info.faulty_sectors, info.recovering_sectors
            );
            println!(
                "WindowPoSts:       {} accepted, {} failed (since the hub started)",
                info.window_posts_submitted, info.window_posts_failed
            );
            println!("blocks won:        {}", info.blocks_won);
            Ok(())
        }
        Command::Spokes(SpokesCommand::Unbind { name }) => {
            match client(&repo)?.call::<SpokesUnbind>((name.clone(),)).await? {
                Some(peer) => println!(
                    "spoke token {name:?} is no longer bound to {peer}; the next spoke to use it binds it again"
                ),
                None => println!("spoke token {name:?} was not bound"),
            }
            Ok(())
        }
        Command::StatusUrl => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            let api = nelumbo_rpc::ApiInfo::parse(&running_api(&repo)?)?;
            println!(
                "{}/status#token={}",
                api.base,
                secret.create_token(Permission::Read)
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            println!(
                "# nelumbo-miner {}: every setting at its default; `init` writes this file with its flags\n# applied.\n",
                env!("CARGO_PKG_VERSION")
            );
            print!(
                "{}",
                nelumbo_miner::config::Config::defaults(&repo.dir).render()
            );
            Ok(())
        }
        Command::Workers(WorkersCommand::List { json }) => {
            let workers = client(&repo)?.call::<WorkersList>(()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&workers)?);
            } else {
                print!(
                    "{}",
                    nelumbo_types::workers::workers_table(&workers, unix_now())
                );
            }
            Ok(())
        }
        Command::Spokes(SpokesCommand::List) => {
            let spokes = client(&repo)?.call::<SpokesList>(()).await?;
            if spokes.is_empty() {
                println!("no spoke has reported since the hub started");
                return Ok(());
            }
            let now = unix_now();
            println!(
                "{:<52}  {:<16}  {:<8}  {:<24}  {:>9}  VERSION / ADDRESSES",
                "ID", "TOKEN", "STATUS", "SERVICES", "LAST SEEN"
            );
            for s in spokes {
                println!(
                    "{:<52}  {:<16}  {:<8}  {:<24}  {:>8}s  {} {}",
                    s.hello.id,
                    s.token.as_deref().unwrap_or("(operator)"),
                    if s.online { "online" } else { "offline" },
                    s.hello.services.join(","),
                    now.saturating_sub(s.last_seen),
                    s.hello.version,
                    s.hello.public_addrs.join(" ")
                );
                if !s.hello.deals.is_empty() {
                    let deals: Vec<String> = s
                        .hello
                        .deals
                        .iter()
                        .map(|(state, n)| format!("{state} {n}"))
                        .collect();
                    println!("    deals (as the spoke reports): {}", deals.join(", "));
                }
            }
            Ok(())
        }
        Command::Proving(ProvingCommand::Deadlines) => {
            let deadlines = client(&repo)?.call::<ProvingDeadlines>(()).await?;
            println!(
                "{:>8}  {:>10}  {:>10}  {:>6}  {:>7}  {:>10}  PROVEN",
                "DEADLINE", "OPENS", "PARTITIONS", "LIVE", "FAULTY", "RECOVERING"
            );
            for d in deadlines {
                println!(
                    "{:>8}  {:>10}  {:>10}  {:>6}  {:>7}  {:>10}  {}{}",
                    d.index,
                    d.open,
                    d.partitions,
                    d.live_sectors,
                    d.faulty_sectors,
                    d.recovering_sectors,
                    if d.proven { "yes" } else { "no" },
                    if d.current { "  (current)" } else { "" }
                );
            }
            Ok(())
        }
    }
}

fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn running_api(repo: &Repo) -> anyhow::Result<String> {
    nelumbo_rpc::running_api(&repo.dir, "nelumbo-miner").map_err(anyhow::Error::msg)
}

/// A client of the running process: MINER_API_INFO if set, else the repo's api and token.
fn client(repo: &Repo) -> anyhow::Result<RpcClient> {
    nelumbo_rpc::local_client(MINER_API_INFO, &repo.dir, "nelumbo-miner")
        .map_err(anyhow::Error::msg)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
