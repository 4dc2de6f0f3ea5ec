//! `nelumbo-miner`: the hub daemon and its CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nelumbo_chain_api::json::use_testnet_addresses;
use nelumbo_miner::init::{InitOptions, init};
use nelumbo_miner::repo::Repo;
use nelumbo_miner_api::MINER_API_INFO;
use nelumbo_miner_api::methods::MinerInfo;
use nelumbo_proofs::ProofMode;
use nelumbo_rpc::{ApiInfo, Permission, RpcClient, TokenSecret};
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
    },
    /// Run the hub.
    Run,
    /// API tokens.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The miner: actor, owner, worker, sector size.
    Info,
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Print a token granting PERM and every permission below it.
    CreateToken {
        #[arg(long)]
        perm: Permission,
    },
    /// Print MINER_API_INFO for the running hub.
    ApiInfo {
        #[arg(long, default_value = "admin")]
        perm: Permission,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        } => {
            let initial_balance = nelumbo_chain_api::fil::parse_fil(&initial_balance)
                .map_err(|e| anyhow::anyhow!("--initial-balance: {e}"))?;
            let info = init(
                &repo,
                InitOptions {
                    sector_size,
                    chain_api_info: chain_api,
                    listen,
                    storage,
                    proof_mode,
                    initial_balance,
                },
            )
            .await?;
            println!("miner {} created", info.actor);
            println!(
                "owner {} (secp256k1), worker {} (BLS)",
                info.owner, info.worker
            );
            println!(
                "start the hub with: nelumbo-miner --repo {} run",
                repo.dir.display()
            );
            Ok(())
        }
        Command::Run => nelumbo_miner::daemon::run(repo).await,
        Command::Auth(AuthCommand::CreateToken { perm }) => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            println!("{}", secret.create_token(perm));
            Ok(())
        }
        Command::Auth(AuthCommand::ApiInfo { perm }) => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            let api = running_api(&repo)?;
            println!("{MINER_API_INFO}={}:{}", secret.create_token(perm), api);
            Ok(())
        }
        Command::Info => {
            let info = client(&repo)?.call::<MinerInfo>(()).await?;
            println!("miner:       {}", info.actor);
            println!("sector size: {}", SectorSize::new(info.sector_size)?);
            println!("owner:       {}", info.owner);
            println!("worker:      {}", info.worker);
            println!("created at:  epoch {}", info.created_at);
            Ok(())
        }
    }
}

fn running_api(repo: &Repo) -> anyhow::Result<String> {
    let api = std::fs::read_to_string(repo.api()).with_context(|| {
        format!(
            "no running hub found in {} (no api file): start it with `nelumbo-miner run`",
            repo.dir.display()
        )
    })?;
    Ok(api.trim().to_string())
}

/// A client of the running hub: MINER_API_INFO if set, else the repo's api and token.
fn client(repo: &Repo) -> anyhow::Result<RpcClient> {
    if let Ok(info) = std::env::var(MINER_API_INFO) {
        return Ok(RpcClient::from_api_info(&ApiInfo::parse(&info)?));
    }
    let mut info = ApiInfo::parse(&running_api(repo)?)?;
    info.token = std::fs::read_to_string(repo.token())
        .ok()
        .map(|t| t.trim().to_string());
    Ok(RpcClient::from_api_info(&info))
}
