//! `nelumbo-markets`: the markets spoke and its CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nelumbo_chain_api::json::use_testnet_addresses;
use nelumbo_markets::config::{DEFAULT_API_LISTEN, DEFAULT_P2P_LISTEN, DEFAULT_RETRIEVAL_LISTEN};
use nelumbo_markets::init::{InitOptions, init};
use nelumbo_markets::repo::Repo;
use nelumbo_markets_api::MARKETS_API_INFO;
use nelumbo_markets_api::admin::*;
use nelumbo_rpc::{Permission, RpcClient, TokenSecret};

/// The Nelumbo markets spoke: storage deals over Boost's protocols, handed to the hub.
#[derive(Debug, Parser)]
#[command(name = "nelumbo-markets", version, about)]
struct Cli {
    /// The repo directory (default: NELUMBO_MARKETS_REPO or ~/.nelumbo/markets).
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the repo: config.toml, the libp2p identity, the hub's connection string; and put
    /// the peer ID and addresses on chain through the hub.
    Init {
        /// The hub's connection string (TOKEN:/ip4/HOST/tcp/PORT/http, a write token); default:
        /// MINER_API_INFO.
        #[arg(long, env = "MINER_API_INFO")]
        hub_api: String,
        /// libp2p listen multiaddrs (repeat for several).
        #[arg(long = "listen", default_value = DEFAULT_P2P_LISTEN)]
        listen: Vec<String>,
        /// Multiaddrs to publish instead of the listen addresses (repeat for several).
        #[arg(long = "announce")]
        announce: Vec<String>,
        /// Where the admin API, health and metrics listen.
        #[arg(long, default_value = DEFAULT_API_LISTEN)]
        api: SocketAddr,
        /// Where deal data is staged (default: REPO/staging).
        #[arg(long)]
        staging: Option<PathBuf>,
        /// Where retrieval's public HTTP listener listens (/piece, /ipfs).
        #[arg(long, default_value = DEFAULT_RETRIEVAL_LISTEN)]
        retrieval_listen: SocketAddr,
        /// Leave the miner's peer ID and addresses on chain as they are: for a retrieval
        /// replica beside the process that takes deals (only a process running `deals` or
        /// `indexing` keeps them on chain).
        #[arg(long)]
        skip_peer_info: bool,
    },
    /// Run the services.
    Run {
        /// Comma-separated: deals, retrieval, indexing.
        #[arg(long, default_value = "deals,retrieval,indexing")]
        services: String,
    },
    /// Deals: list, inspect, retry, cancel, import offline data.
    #[command(subcommand)]
    Deals(DealsCommand),
    /// The storage ask.
    #[command(subcommand)]
    Ask(AskCommand),
    /// API tokens.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The peer ID, addresses, services and miner of the running process.
    Info,
    /// IPNI advertisements, piece by piece.
    #[command(subcommand)]
    Index(IndexCommand),
    /// The IPNI advertisement chain and its announcements.
    #[command(subcommand)]
    Indexing(IndexingCommand),
    /// The shared database ([database] url): schema migrations.
    #[command(subcommand)]
    Db(DbCommand),
    /// The running process's background workers and what each is doing.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// config.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print config.toml with every setting at its default, each explained (what `init`
    /// writes before its flags are applied).
    Default,
}

#[derive(Debug, Subcommand)]
enum WorkersCommand {
    /// Every worker (each running deal, the advertisement chain, each indexer's announcer):
    /// busy, idle, waiting for a transfer slot, or retrying, with its errors and when it
    /// tries again.
    List {
        /// Print JSON rather than a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply the schema migrations this version needs (start does it too unless
    /// [database] migrate_on_start is off).
    Migrate,
    /// Where the shared state is kept, and which migrations are applied and pending.
    Status,
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Every piece's latest advertisement (or removal).
    List,
    /// A piece's latest advertisement.
    Show { piece: String },
    /// Announce the head to every configured indexer again now.
    Announce,
    /// Withdraw a piece's advertisement (IsRm) and keep it withdrawn.
    Remove { piece: String },
    /// Undo `remove`: the piece is advertised again while it has a live deal.
    Restore { piece: String },
}

#[derive(Debug, Subcommand)]
enum IndexingCommand {
    /// The head, the number of advertisements, and each indexer's last announcement.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DealsCommand {
    /// Every deal, newest first.
    List,
    /// One deal.
    Show {
        uuid: String,
        #[arg(long)]
        json: bool,
    },
    /// A deal's history.
    Logs { uuid: String },
    /// Resume a failed deal from the step that failed.
    Retry { uuid: String },
    /// Cancel a deal not yet sent for publishing.
    Cancel { uuid: String },
    /// Give an offline deal its data (a CAR file the markets process can read).
    ImportData { uuid: String, file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum AskCommand {
    /// The current ask.
    Get,
    /// Change the ask; unnamed fields keep their value.
    Set {
        /// attoFIL per GiB per epoch.
        #[arg(long)]
        price: Option<String>,
        /// attoFIL per GiB per epoch, for verified deals.
        #[arg(long)]
        verified_price: Option<String>,
        /// Padded bytes.
        #[arg(long)]
        min_size: Option<u64>,
        #[arg(long)]
        max_size: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Print MARKETS_API_INFO for the running process.
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
            hub_api,
            listen,
            announce,
            api,
            staging,
            retrieval_listen,
            skip_peer_info,
        } => {
            init(
                &repo,
                InitOptions {
                    hub_api_info: hub_api,
                    listen,
                    announce,
                    api,
                    staging,
                    retrieval_listen,
                    skip_peer_info,
                },
            )
            .await
        }
        Command::Run { services } => {
            let services = nelumbo_markets::daemon::parse_services(&services)
                .map_err(|e| anyhow::anyhow!("--services: {e}"))?;
            nelumbo_markets::daemon::run(repo, services).await
        }
        Command::Info => {
            let info = client(&repo)?.call::<Info>(()).await?;
            println!("peer ID:   {}", info.peer_id);
            println!("addresses: {}", info.listen_addrs.join(" "));
            println!("services:  {}", info.services.join(","));
            println!("miner:     {}", info.miner);
            println!(
                "hub:       {}",
                if info.hub_connected {
                    "connected"
                } else {
                    "unreachable"
                }
            );
            Ok(())
        }
        Command::Deals(DealsCommand::List) => {
            let deals = client(&repo)?.call::<DealsList>(()).await?;
            if deals.is_empty() {
                println!("no deals yet");
                return Ok(());
            }
            println!(
                "{:<36}  {:<12}  {:>8}  {:>12}  {:<12}  ERROR",
                "UUID", "STATE", "DEAL ID", "RECEIVED", "SEALING"
            );
            for d in deals {
                println!(
                    "{:<36}  {:<12}  {:>8}  {:>12}  {:<12}  {}",
                    d.uuid,
                    d.state.name(),
                    d.deal_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    format!("{}/{}", d.bytes_received, d.transfer_size),
                    d.sealing_status,
                    d.error
                );
            }
            Ok(())
        }
        Command::Deals(DealsCommand::Show { uuid, json }) => {
            let d = client(&repo)?.call::<DealsShow>((uuid,)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(());
            }
            print_deal(&d);
            Ok(())
        }
        Command::Deals(DealsCommand::Logs { uuid }) => {
            for entry in client(&repo)?.call::<DealsLogs>((uuid,)).await? {
                println!(
                    "{}  {:<12}  {}",
                    entry.at,
                    entry.state.name(),
                    entry.message
                );
            }
            Ok(())
        }
        Command::Deals(DealsCommand::Retry { uuid }) => {
            let d = client(&repo)?.call::<DealsRetry>((uuid,)).await?;
            println!("deal {} resumes in {}", d.uuid, d.state);
            Ok(())
        }
        Command::Deals(DealsCommand::Cancel { uuid }) => {
            let d = client(&repo)?.call::<DealsCancel>((uuid,)).await?;
            println!("deal {} is {}", d.uuid, d.state);
            Ok(())
        }
        Command::Deals(DealsCommand::ImportData { uuid, file }) => {
            let file = std::fs::canonicalize(&file)
                .with_context(|| format!("{} cannot be read", file.display()))?;
            let d = client(&repo)?
                .call::<DealsImportData>((uuid, file.display().to_string()))
                .await?;
            println!("deal {} has its data and is {}", d.uuid, d.state);
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            println!(
                "# nelumbo-markets {}: every setting at its default; `init` writes this file with its flags\n# applied.\n",
                env!("CARGO_PKG_VERSION")
            );
            print!("{}", nelumbo_markets::config::Config::defaults().render());
            Ok(())
        }
        Command::Workers(WorkersCommand::List { json }) => {
            let workers = client(&repo)?.call::<WorkersList>(()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&workers)?);
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                print!("{}", nelumbo_types::workers::workers_table(&workers, now));
            }
            Ok(())
        }
        Command::Ask(AskCommand::Get) => {
            print_ask(&client(&repo)?.call::<AskGet>(()).await?);
            Ok(())
        }
        Command::Ask(AskCommand::Set {
            price,
            verified_price,
            min_size,
            max_size,
        }) => {
            let client = client(&repo)?;
            let mut ask = client.call::<AskGet>(()).await?;
            if let Some(v) = price {
                ask.price = v;
            }
            if let Some(v) = verified_price {
                ask.verified_price = v;
            }
            if let Some(v) = min_size {
                ask.min_piece_size = v;
            }
            if let Some(v) = max_size {
                ask.max_piece_size = v;
            }
            print_ask(&client.call::<AskSet>((ask,)).await?);
            Ok(())
        }
        Command::Index(IndexCommand::List) => {
            let pieces = client(&repo)?.call::<IndexList>(()).await?;
            if pieces.is_empty() {
                println!("no advertisements yet");
                return Ok(());
            }
            println!(
                "{:<64}  {:>5}  {:<7}  {:>9}  AD",
                "PIECE", "SEQ", "STATE", "ENTRIES"
            );
            for p in pieces {
                println!(
                    "{:<64}  {:>5}  {:<7}  {:>9}  {}",
                    p.piece_cid,
                    p.seq,
                    if p.is_rm { "removed" } else { "live" },
                    p.entries,
                    p.ad
                );
            }
            Ok(())
        }
        Command::Index(IndexCommand::Show { piece }) => {
            match client(&repo)?.call::<IndexShow>((piece.clone(),)).await? {
                None => anyhow::bail!("piece {piece} has never been advertised"),
                Some(p) => {
                    println!("piece:         {}", p.piece_cid);
                    println!(
                        "state:         {}",
                        if p.is_rm {
                            "removed (IsRm)"
                        } else {
                            "advertised"
                        }
                    );
                    println!("advertisement: {} (#{} of the chain)", p.ad, p.seq);
                    println!(
                        "entries:       {} multihashes in {} chunks",
                        p.entries, p.entry_chunks
                    );
                    println!("published at:  {} (unix seconds)", p.created_at);
                }
            }
            Ok(())
        }
        Command::Index(IndexCommand::Announce) => {
            client(&repo)?.call::<IndexAnnounce>(()).await?;
            println!("the head is being announced to every configured indexer");
            Ok(())
        }
        Command::Index(IndexCommand::Remove { piece }) => {
            if client(&repo)?.call::<IndexRemove>((piece.clone(),)).await? {
                println!("piece {piece} is withdrawn: a removal advertisement is being published");
            } else {
                println!(
                    "piece {piece} is not advertised now; it will not be while removed \
                     (`index restore` undoes this)"
                );
            }
            Ok(())
        }
        Command::Index(IndexCommand::Restore { piece }) => {
            if client(&repo)?
                .call::<IndexRestore>((piece.clone(),))
                .await?
            {
                println!("piece {piece} is advertised again while it has a live deal");
            } else {
                println!("piece {piece} was not removed: nothing to undo");
            }
            Ok(())
        }
        Command::Indexing(IndexingCommand::Status { json }) => {
            let s = client(&repo)?.call::<IndexStatus>(()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!("provider:   {}", s.provider);
            println!(
                "head:       {}",
                s.head.as_deref().unwrap_or("- (no advertisements yet)")
            );
            println!("ads:        {}", s.ads);
            println!(
                "pieces:     {} advertised, {} withdrawn ({} by the operator)",
                s.pieces_advertised, s.pieces_withdrawn, s.removed_by_operator
            );
            println!("addresses:  {}", s.addresses.join(" "));
            if !s.last_error.is_empty() {
                println!("error:      {}", s.last_error);
            }
            if s.indexers.is_empty() {
                println!("indexers:   none configured ([indexing] indexers)");
            }
            for i in s.indexers {
                let state = if i.accepted_seq >= s.ads && s.ads > 0 {
                    "up to date".to_string()
                } else {
                    format!("{} behind", s.ads.saturating_sub(i.accepted_seq))
                };
                println!(
                    "indexer:    {}  accepted #{} ({state}), last success {}, last attempt {}{}",
                    i.url,
                    i.accepted_seq,
                    ago(i.last_success),
                    ago(i.last_attempt),
                    if i.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", {} failures in a row: {}",
                            i.consecutive_failures, i.last_error
                        )
                    }
                );
            }
            Ok(())
        }
        Command::Db(command) => {
            let config = nelumbo_markets::config::Config::load(&repo.config())?;
            let Some(url) = config.database.url() else {
                println!(
                    "database: embedded ({}); nothing to migrate",
                    repo.piece_directory().display()
                );
                return Ok(());
            };
            use nelumbo_piecedir::Postgres;
            println!("database: {}", Postgres::describe_url(&url));
            match command {
                DbCommand::Migrate => {
                    let applied =
                        tokio::task::spawn_blocking(move || Postgres::migrate_schema(&url))
                            .await??;
                    if applied.is_empty() {
                        println!("piece directory: up to date");
                    }
                    for version in applied {
                        println!("piece directory: applied migration {version}");
                    }
                }
                DbCommand::Status => {
                    let status = tokio::task::spawn_blocking(move || Postgres::schema_status(&url))
                        .await??;
                    if !status.unknown.is_empty() {
                        println!(
                            "{}: schema version {}, newer than this build knows (up to {}): migration(s) {:?} came from a newer nelumbo-markets; run that version",
                            status.component, status.applied, status.latest, status.unknown
                        );
                        return Ok(());
                    }
                    println!(
                        "{}: schema version {} of {}{}",
                        status.component,
                        status.applied,
                        status.latest,
                        if status.pending.is_empty() {
                            " (up to date)".to_string()
                        } else {
                            format!(
                                "; pending: {} (run `nelumbo-markets db migrate`)",
                                status
                                    .pending
                                    .iter()
                                    .map(|(v, d)| format!("{v} {d}"))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            )
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Auth(AuthCommand::ApiInfo { perm }) => {
            let secret = TokenSecret::load_or_create(&repo.token_secret())?;
            println!(
                "{MARKETS_API_INFO}={}:{}",
                secret.create_token(perm),
                running_api(&repo)?
            );
            Ok(())
        }
    }
}

/// "never" or "N s ago".
fn ago(at: u64) -> String {
    if at == 0 {
        return "never".into();
    }
    format!("{} s ago", nelumbo_markets::now_secs().saturating_sub(at))
}

fn print_ask(ask: &AskSettings) {
    println!("price:          {} attoFIL/GiB/epoch", ask.price);
    println!("verified price: {} attoFIL/GiB/epoch", ask.verified_price);
    println!(
        "piece sizes:    {} to {} bytes",
        ask.min_piece_size, ask.max_piece_size
    );
}

fn print_deal(d: &DealInfo) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("deal:           {}", d.uuid);
    println!("state:          {}", d.state);
    if !d.error.is_empty() {
        println!(
            "error:          {} (in {})",
            d.error,
            opt(d.failed_step.map(|s| s.to_string()))
        );
    }
    println!("client:         {}", d.client);
    println!("provider:       {}", d.provider);
    println!("piece:          {} ({} bytes)", d.piece_cid, d.piece_size);
    println!("data root:      {}", d.data_root);
    println!("proposal:       {}", d.proposal_cid);
    println!("epochs:         {} to {}", d.start_epoch, d.end_epoch);
    println!(
        "price:          {} attoFIL/epoch{}",
        d.price_per_epoch,
        if d.verified { " (verified)" } else { "" }
    );
    if d.is_offline {
        println!(
            "transfer:       offline ({} bytes imported)",
            d.bytes_received
        );
    } else {
        println!(
            "transfer:       {} of {} bytes from {} ({} restarts)",
            d.bytes_received, d.transfer_size, d.transfer_url, d.transfer_restarts
        );
    }
    println!("deal ID:        {}", opt(d.deal_id.map(|i| i.to_string())));
    println!("published by:   {}", opt(d.publish_message.clone()));
    println!("sector:         {}", opt(d.sector.map(|s| s.to_string())));
    println!(
        "sealing:        {}",
        if d.sealing_status.is_empty() {
            "-"
        } else {
            &d.sealing_status
        }
    );
}

fn running_api(repo: &Repo) -> anyhow::Result<String> {
    nelumbo_rpc::running_api(&repo.dir, "nelumbo-markets").map_err(anyhow::Error::msg)
}

/// A client of the running process: MARKETS_API_INFO if set, else the repo's api and token.
fn client(repo: &Repo) -> anyhow::Result<RpcClient> {
    nelumbo_rpc::local_client(MARKETS_API_INFO, &repo.dir, "nelumbo-markets")
        .map_err(anyhow::Error::msg)
}
