//! `nelumbo-chain`: create a devnet genesis, run the chain, and talk to a running chain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fvm_shared::address::Address;
use nelumbo_chain::genesis::{Genesis, GenesisAccount, Policy, format_fil, parse_fil};
use nelumbo_chain::repo::Repo;
use nelumbo_chain_api::json::{parse_address, use_testnet_addresses};
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::{Message, TipSetKey};
use nelumbo_chain_api::{Addr, KeyType, OptBitField};
use nelumbo_keys::{KeyKind, Keystore};
use nelumbo_proofs::ProofMode;
use nelumbo_rpc::{ApiInfo, Permission, RpcClient, TokenSecret};
use nelumbo_types::SectorSize;
use rand::RngCore;

/// A local Filecoin devnet that speaks the Lotus full-node API.
#[derive(Debug, Parser)]
#[command(name = "nelumbo-chain", version, about)]
struct Cli {
    /// The chain's repo directory (default: NELUMBO_CHAIN_REPO or ~/.nelumbo/chain).
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the repo with a genesis file, a faucet key and a verified-registry root key.
    Genesis(GenesisArgs),
    /// Run the chain.
    Run {
        /// Address of the JSON-RPC API (loopback by default).
        #[arg(long, default_value = "127.0.0.1:1234")]
        listen: SocketAddr,
    },
    /// API tokens.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The node's wallet.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Send FIL from a wallet address (default: the faucet).
    Send {
        to: String,
        /// Amount in FIL.
        amount: String,
        #[arg(long)]
        from: Option<String>,
    },
    /// Send FIL from the devnet's faucet.
    Faucet { address: String, amount: String },
    /// Read chain state.
    #[command(subcommand)]
    State(StateCommand),
    /// The head tipset.
    Head,
}

#[derive(Debug, clap::Args)]
struct GenesisArgs {
    #[arg(long, default_value = "nelumbo-devnet")]
    network_name: String,
    /// real or insecure-testing.
    #[arg(long, default_value = "real")]
    proof_mode: ProofMode,
    /// Allowed sector sizes (repeat or separate with commas).
    #[arg(long = "sector-size", value_delimiter = ',', default_values = ["2KiB", "8MiB"])]
    sector_sizes: Vec<SectorSize>,
    /// Milliseconds per epoch.
    #[arg(long)]
    epoch_ms: Option<u64>,
    /// Epochs per deadline (Filecoin: 60).
    #[arg(long)]
    challenge_window: Option<i64>,
    /// Epochs before a deadline opens at which its challenge is drawn (Filecoin: 20).
    #[arg(long)]
    challenge_lookback: Option<i64>,
    /// Epochs before a deadline opens after which faults and recoveries for it are refused
    /// (Filecoin: 70).
    #[arg(long)]
    fault_cutoff: Option<i64>,
    /// Epochs between a pre-commit and its seed (Filecoin: 150).
    #[arg(long)]
    pre_commit_delay: Option<i64>,
    /// Expected won blocks per epoch, in thousandths, for a miner with all the power.
    #[arg(long)]
    election_rate: Option<u64>,
    /// FIL for the faucet.
    #[arg(long, default_value = "1000000")]
    faucet_balance: String,
    /// More genesis accounts: ADDRESS=FIL.
    #[arg(long = "account")]
    accounts: Vec<String>,
    /// A policy file (JSON, every field of the genesis `policy`) instead of the defaults.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Replace an existing genesis (the chain database must be deleted by hand).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Print a token granting PERM and every permission below it.
    CreateToken {
        #[arg(long)]
        perm: Permission,
    },
    /// Print FULLNODE_API_INFO for a running chain.
    ApiInfo {
        #[arg(long, default_value = "admin")]
        perm: Permission,
    },
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Create a key: bls or secp256k1.
    New {
        #[arg(default_value = "secp256k1")]
        kind: KeyType,
    },
    List,
    Balance {
        address: String,
    },
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// A miner's info and power.
    MinerInfo { miner: String },
    /// A miner's sectors.
    Sectors { miner: String },
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
        Command::Genesis(args) => genesis(&repo, args),
        Command::Run { listen } => nelumbo_chain::daemon::run(repo, listen).await,
        Command::Auth(AuthCommand::CreateToken { perm }) => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            println!("{}", secret.create_token(perm));
            Ok(())
        }
        Command::Auth(AuthCommand::ApiInfo { perm }) => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            let api = std::fs::read_to_string(repo.api()).with_context(|| {
                format!(
                    "no running chain found in {} (no api file)",
                    repo.dir.display()
                )
            })?;
            println!(
                "{}={}:{}",
                nelumbo_chain_api::FULLNODE_API_INFO,
                secret.create_token(perm),
                api.trim()
            );
            Ok(())
        }
        Command::Wallet(command) => wallet(&repo, command).await,
        Command::Send { to, amount, from } => {
            let client = client(&repo)?;
            let from = match from {
                Some(f) => parse_address(&f).map_err(anyhow::Error::msg)?,
                None => client.call::<WalletDefaultAddress>(()).await?.0,
            };
            send(&client, from, &to, &amount).await
        }
        Command::Faucet { address, amount } => {
            let client = client(&repo)?;
            let faucet = client
                .call::<WalletDefaultAddress>(())
                .await
                .context("find the faucet (the wallet's default address)")?;
            send(&client, faucet.0, &address, &amount).await
        }
        Command::State(command) => state(&repo, command).await,
        Command::Head => {
            let head = client(&repo)?.call::<ChainHead>(()).await?;
            println!("height {}", head.height);
            for cid in &head.cids {
                println!("{cid}");
            }
            Ok(())
        }
    }
}

/// FIL the verified registry root starts with, for gas.
const VERIFREG_ROOT_BALANCE: &str = "100";

fn genesis(repo: &Repo, args: GenesisArgs) -> anyhow::Result<()> {
    if repo.genesis().exists() && !args.force {
        anyhow::bail!(
            "{} already has a genesis; use --force to replace it (and delete {} to restart the chain)",
            repo.dir.display(),
            repo.database().display()
        );
    }
    std::fs::create_dir_all(&repo.dir).with_context(|| format!("create {}", repo.dir.display()))?;
    let keystore = Keystore::open(&repo.keystore())?;
    let faucet = keystore.generate(KeyKind::Secp256k1)?;
    let root = keystore.generate(KeyKind::Secp256k1)?;
    let mut policy = match &args.policy {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
        )
        .with_context(|| format!("parse policy {}", path.display()))?,
        None => Policy::devnet(),
    };
    if let Some(ms) = args.epoch_ms {
        policy.epoch_duration_ms = ms;
    }
    if let Some(window) = args.challenge_window {
        policy.wpost_challenge_window = window;
    }
    if let Some(lookback) = args.challenge_lookback {
        policy.wpost_challenge_lookback = lookback;
    }
    if let Some(cutoff) = args.fault_cutoff {
        policy.fault_declaration_cutoff = cutoff;
    }
    if let Some(delay) = args.pre_commit_delay {
        policy.pre_commit_challenge_delay = delay;
    }
    if let Some(rate) = args.election_rate {
        policy.election_rate_permille = rate;
    }
    parse_fil(&args.faucet_balance).context("--faucet-balance")?;
    // The verified registry root signs its own messages, so it needs an account and gas.
    let mut accounts = vec![
        GenesisAccount {
            address: faucet,
            balance: args.faucet_balance.clone(),
        },
        GenesisAccount {
            address: root,
            balance: VERIFREG_ROOT_BALANCE.to_string(),
        },
    ];
    for spec in &args.accounts {
        let (address, balance) = spec
            .split_once('=')
            .with_context(|| format!("--account {spec:?}: write ADDRESS=FIL"))?;
        accounts.push(GenesisAccount {
            address: parse_address(address).map_err(anyhow::Error::msg)?,
            balance: balance.to_string(),
        });
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let genesis = Genesis {
        network_name: args.network_name,
        timestamp: nelumbo_chain::chain::now_seconds(),
        proof_mode: args.proof_mode,
        sector_sizes: args.sector_sizes,
        randomness_seed: hex::encode(seed),
        policy,
        accounts,
        verified_registry_root: root,
    };
    genesis.validate()?;
    genesis.write(&repo.genesis())?;
    std::fs::write(repo.default_address(), faucet.to_string())?;
    println!("genesis written to {}", repo.genesis().display());
    println!("faucet: {faucet} ({} FIL)", args.faucet_balance);
    println!("verified registry root: {root}");
    println!("proof mode: {}", genesis.proof_mode);
    println!(
        "start the chain with: nelumbo-chain run --repo {}",
        repo.dir.display()
    );
    Ok(())
}

/// A client of the running chain: FULLNODE_API_INFO if set, else the repo's api and token.
fn client(repo: &Repo) -> anyhow::Result<RpcClient> {
    if let Ok(info) = std::env::var(nelumbo_chain_api::FULLNODE_API_INFO) {
        return Ok(RpcClient::from_api_info(&ApiInfo::parse(&info)?));
    }
    let api = std::fs::read_to_string(repo.api()).with_context(|| {
        format!(
            "no running chain found: {} has no api file; start one with `nelumbo-chain run` or set {}",
            repo.dir.display(),
            nelumbo_chain_api::FULLNODE_API_INFO
        )
    })?;
    let token = std::fs::read_to_string(repo.token())
        .ok()
        .map(|t| t.trim().to_string());
    let mut info = ApiInfo::parse(api.trim())?;
    info.token = token;
    Ok(RpcClient::from_api_info(&info))
}

async fn send(client: &RpcClient, from: Address, to: &str, amount: &str) -> anyhow::Result<()> {
    let to = parse_address(to).map_err(anyhow::Error::msg)?;
    let value = parse_fil(amount)?;
    let message = Message::unpriced(from, to, value.clone(), 0, Vec::new());
    let signed = client.call::<MpoolPushMessage>((message, None)).await?;
    let cid = signed.cid().map_err(anyhow::Error::msg)?;
    println!(
        "sent {} from {from} to {to}: message {cid}",
        format_fil(&value)
    );
    let lookup = client
        .call::<StateWaitMsg>((cid.into(), 0, -1, true))
        .await?;
    anyhow::ensure!(
        lookup.receipt.exit_code == 0,
        "message failed with exit code {}",
        lookup.receipt.exit_code
    );
    println!("executed at height {}", lookup.height);
    Ok(())
}

async fn wallet(repo: &Repo, command: WalletCommand) -> anyhow::Result<()> {
    let client = client(repo)?;
    match command {
        WalletCommand::New { kind } => println!("{}", *client.call::<WalletNew>((kind,)).await?),
        WalletCommand::List => {
            for address in client.call::<WalletList>(()).await? {
                let balance = client.call::<WalletBalance>((address.clone(),)).await?;
                println!("{}  {}", *address, format_fil(&balance.0));
            }
        }
        WalletCommand::Balance { address } => {
            let address = Addr(parse_address(&address).map_err(anyhow::Error::msg)?);
            println!(
                "{}",
                format_fil(&client.call::<WalletBalance>((address,)).await?.0)
            );
        }
    }
    Ok(())
}

async fn state(repo: &Repo, command: StateCommand) -> anyhow::Result<()> {
    let client = client(repo)?;
    match command {
        StateCommand::MinerInfo { miner } => {
            let miner = Addr(parse_address(&miner).map_err(anyhow::Error::msg)?);
            let info = client
                .call::<StateMinerInfo>((miner.clone(), TipSetKey::head()))
                .await?;
            let power = client
                .call::<StateMinerPower>((miner.clone(), TipSetKey::head()))
                .await?;
            let deadline = client
                .call::<StateMinerProvingDeadline>((miner.clone(), TipSetKey::head()))
                .await?;
            let actor = client
                .call::<StateGetActor>((miner.clone(), TipSetKey::head()))
                .await?;
            println!("miner:        {}", *miner);
            println!("owner:        {}", info.owner);
            println!("worker:       {}", info.worker);
            println!(
                "sector size:  {}",
                SectorSize::new(info.sector_size)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            println!("balance:      {}", format_fil(&actor.balance));
            println!(
                "power:        {} bytes raw, {} quality-adjusted, of {} in the network",
                power.miner_power.raw_byte_power,
                power.miner_power.quality_adj_power,
                power.total_power.quality_adj_power
            );
            println!(
                "deadline:     {} of {} (open {}..{}, now {})",
                deadline.index,
                deadline.wpost_period_deadlines,
                deadline.open,
                deadline.close,
                deadline.current_epoch
            );
        }
        StateCommand::Sectors { miner } => {
            let miner = Addr(parse_address(&miner).map_err(anyhow::Error::msg)?);
            let sectors = client
                .call::<StateMinerSectors>((miner.clone(), OptBitField(None), TipSetKey::head()))
                .await?;
            let active: std::collections::BTreeSet<u64> = client
                .call::<StateMinerActiveSectors>((miner.clone(), TipSetKey::head()))
                .await?
                .into_iter()
                .map(|s| s.sector_number)
                .collect();
            let faults = client
                .call::<StateMinerFaults>((miner, TipSetKey::head()))
                .await?;
            println!(
                "{:>8}  {:<10} {:>10} {:>10}  sealed CID",
                "sector", "status", "activation", "expiration"
            );
            for s in sectors {
                let status = if faults.get(s.sector_number) {
                    "faulty"
                } else if active.contains(&s.sector_number) {
                    "active"
                } else {
                    "unproven"
                };
                println!(
                    "{:>8}  {status:<10} {:>10} {:>10}  {}",
                    s.sector_number, s.activation, s.expiration, s.sealed_cid
                );
            }
        }
    }
    Ok(())
}
