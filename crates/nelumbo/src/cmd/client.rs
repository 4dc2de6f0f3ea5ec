//! `nelumbo client`: a storage client that speaks Boost's deal protocols. It keeps its own
//! keys (`wallet`), packs a file into a CAR as `ipfs-car pack` does, serves it over HTTP for the
//! provider to pull, pays escrow, signs the proposal and sends it over libp2p; then follows the
//! deal with the status protocol.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use fvm_shared::piece::PaddedPieceSize;
use libp2p::{Multiaddr, PeerId, Swarm};
use nelumbo_chain_api::methods::{
    ChainHead, GasEstimateMessageGas, MpoolGetNonce, MpoolPush, StateMarketBalance, StateMinerInfo,
    StateWaitMsg,
};
use nelumbo_chain_api::types::{Message, Signature, SignedMessage, TipSetKey};
use nelumbo_chain_api::{Addr, CidJson};
use nelumbo_keys::{KeyKind, Keystore};
use nelumbo_markets_api::p2p::{MarketsBehaviour, Request, Response, build_swarm, request_once};
use nelumbo_markets_api::wire::{
    AskRequest, ClientDealProposal, DealParams, DealProposal, DealStatusRequest,
    DealStatusResponse, HttpRequest, Label, StorageAsk, Transfer, checkpoint,
};
use nelumbo_rpc::{ApiInfo, RpcClient};
use serde::{Deserialize, Serialize};

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The client's directory: keys, deals, packed CARs (default: NELUMBO_CLIENT_REPO or
    /// ~/.nelumbo/client).
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
    /// The chain's connection string (TOKEN:/ip4/HOST/tcp/PORT/http); default:
    /// FULLNODE_API_INFO.
    #[arg(long, global = true, env = "FULLNODE_API_INFO", hide_env_values = true)]
    chain_api: Option<String>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// The client's keys.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Make a storage deal for FILE with a provider.
    Deal(DealArgs),
    /// A deal's status, asked from its provider.
    DealStatus { uuid: String },
    /// A provider's storage ask.
    Ask {
        /// The miner actor (f0...).
        miner: String,
    },
    /// Get data back over HTTP: by payload CID (a CAR over /ipfs, every block checked, written
    /// out as the file or directory) or by piece CID (/piece, checked by its commitment).
    Retrieve(RetrieveArgs),
}

#[derive(Debug, Args)]
struct RetrieveArgs {
    /// The provider's miner actor (f0...): its HTTP address is asked of its libp2p peer.
    #[arg(long, required_unless_present_any = ["url", "peer"])]
    provider: Option<String>,
    /// The provider's retrieval base URL, instead of asking its peer.
    #[arg(long)]
    url: Option<String>,
    /// Where to write the file, directory or piece (default: the CID, here).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Also keep the CAR (payload retrievals) here.
    #[arg(long)]
    car: Option<PathBuf>,
    /// Seconds to keep asking while the provider answers "unavailable, retry after" (it is
    /// unsealing the data, or busy).
    #[arg(long, default_value_t = 600)]
    wait: u64,
    /// Fetch a payload CID over bitswap from the provider's libp2p peer instead of HTTP.
    #[arg(long, conflicts_with = "url")]
    bitswap: bool,
    /// With --bitswap: the peer's address (ending in /p2p/PEER_ID) instead of the one on chain.
    #[arg(long, requires = "bitswap")]
    peer: Option<String>,
    /// A payload (root) CID or a piece CID (v1 baga..., v2 bafkzcib...).
    cid: String,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Make a new key.
    New {
        /// secp256k1 or bls.
        #[arg(long = "type", default_value = "secp256k1")]
        kind: KeyKind,
    },
    /// The keys this client holds.
    List,
}

#[derive(Debug, Args)]
struct DealArgs {
    /// The provider's miner actor (f0...).
    #[arg(long)]
    provider: String,
    /// The client address paying for the deal (default: the wallet's only or first key).
    #[arg(long)]
    from: Option<String>,
    /// Where the provider downloads the CAR. Without it the CAR is served from this machine
    /// at --serve and the command waits until the provider has it.
    #[arg(long)]
    url: Option<String>,
    /// Where to serve the CAR from when no --url is given.
    #[arg(long, default_value = "127.0.0.1:0")]
    serve: std::net::SocketAddr,
    /// An offline deal: the provider gets the data another way (`deals import-data`).
    #[arg(long, conflicts_with = "url")]
    offline: bool,
    /// Epochs from now until the deal starts: enough for the provider to transfer, publish
    /// and seal (providers ask for a day by default: 2880 epochs of 30 s on mainnet).
    #[arg(long, default_value_t = 3000)]
    start_in: i64,
    /// Epochs the deal lasts.
    #[arg(long, default_value_t = 518_400)]
    duration: i64,
    /// A verified deal (uses DataCap and the verified price).
    #[arg(long)]
    verified: bool,
    /// Wait until the deal is active on chain, printing each step.
    #[arg(long)]
    wait_active: bool,
    /// Wrap the file in a directory (ipfs-car's default); --no-wrap for the bare file.
    #[arg(long)]
    no_wrap: bool,
    /// FILE is a CAR already (CARv1): its first root is the deal's data root, and it is stored
    /// as it is.
    #[arg(long, conflicts_with = "no_wrap")]
    car: bool,
    file: PathBuf,
}

/// A deal this client made (deals/UUID.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LocalDeal {
    uuid: String,
    provider: String,
    client: String,
    piece_cid: String,
    piece_size: u64,
    data_root: String,
    car: PathBuf,
    car_size: u64,
}

pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    nelumbo_chain_api::json::use_testnet_addresses();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: ClientArgs) -> anyhow::Result<()> {
    let repo = match args.repo {
        Some(dir) => dir,
        None => nelumbo_service::locate_repo(None, "NELUMBO_CLIENT_REPO", "client")?,
    };
    std::fs::create_dir_all(&repo).with_context(|| format!("create {}", repo.display()))?;
    let keystore = Keystore::open(&repo.join("keystore"))?;
    let chain = || -> anyhow::Result<RpcClient> {
        let info = args.chain_api.clone().filter(|s| !s.is_empty()).context(
            "no chain to talk to: set FULLNODE_API_INFO or --chain-api (the devnet prints it)",
        )?;
        Ok(RpcClient::from_api_info(&ApiInfo::parse(&info)?))
    };
    match args.command {
        ClientCommand::Wallet(WalletCommand::New { kind }) => {
            let address = keystore.generate(kind)?;
            println!("{address}");
            Ok(())
        }
        ClientCommand::Wallet(WalletCommand::List) => {
            let keys = keystore.list();
            if keys.is_empty() {
                println!("no keys: make one with `nelumbo client wallet new`");
            }
            let chain = chain().ok();
            for address in keys {
                let balance = match &chain {
                    Some(chain) => chain
                        .call::<nelumbo_chain_api::methods::WalletBalance>((Addr(address),))
                        .await
                        .map(|b| format!("{} FIL", nelumbo_chain_api::fil::format_fil(&b.0)))
                        .unwrap_or_else(|_| "?".into()),
                    None => "?".into(),
                };
                println!("{address}  {balance}");
            }
            Ok(())
        }
        ClientCommand::Ask { miner } => {
            let chain = chain()?;
            let miner = parse_address(&miner, "miner")?;
            let (peer, addrs, worker) = provider_peer(&chain, miner).await?;
            let ask = get_ask(&chain, miner, peer, &addrs, worker).await?;
            println!("miner:          {}", ask.miner);
            println!("price:          {} attoFIL/GiB/epoch", ask.price.atto());
            println!(
                "verified price: {} attoFIL/GiB/epoch",
                ask.verified_price.atto()
            );
            println!(
                "piece sizes:    {} to {} bytes",
                ask.min_piece_size, ask.max_piece_size
            );
            println!(
                "valid:          epochs {} to {} (seq {})",
                ask.timestamp, ask.expiry, ask.seq_no
            );
            println!("peer:           {peer} at {}", join(&addrs));
            Ok(())
        }
        ClientCommand::DealStatus { uuid } => {
            let chain = chain()?;
            let deal = load_deal(&repo, &uuid)?;
            let provider = parse_address(&deal.provider, "provider")?;
            let (peer, addrs, _) = provider_peer(&chain, provider).await?;
            let response = deal_status(&mut swarm()?, peer, &addrs, &keystore, &deal).await?;
            print_status(&response);
            Ok(())
        }
        ClientCommand::Deal(deal) => make_deal(&repo, &keystore, &chain()?, deal).await,
        ClientCommand::Retrieve(args) => {
            let cid: cid::Cid = args
                .cid
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{:?} is not a CID: {e}", args.cid))?;
            if args.bitswap {
                anyhow::ensure!(
                    nelumbo_commp::parse_piece_cid(&cid).is_err(),
                    "bitswap fetches blocks by payload CID; a piece CID is retrieved over HTTP"
                );
                let (peer, addrs) = match (&args.peer, &args.provider) {
                    (Some(text), _) => {
                        let addr: Multiaddr = text
                            .parse()
                            .map_err(|e| anyhow::anyhow!("--peer {text:?}: {e}"))?;
                        let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last()
                        else {
                            anyhow::bail!("--peer {text:?} does not end in /p2p/PEER_ID");
                        };
                        (peer, vec![addr])
                    }
                    (None, Some(provider)) => {
                        let miner = parse_address(provider, "--provider")?;
                        let (peer, addrs, _) = provider_peer(&chain()?, miner).await?;
                        (peer, addrs)
                    }
                    (None, None) => anyhow::bail!("--bitswap needs --provider or --peer"),
                };
                let out = args
                    .out
                    .clone()
                    .unwrap_or_else(|| super::retrieve::default_out(&cid));
                let started = std::time::Instant::now();
                let got = super::bitswap::fetch(
                    client_swarm(nelumbo_markets_api::p2p::Serve::BITSWAP_CLIENT)?,
                    peer,
                    &addrs,
                    &cid,
                    &out,
                    args.car.as_deref(),
                    Duration::from_secs(args.wait),
                )
                .await?;
                println!(
                    "{cid}: {} blocks over bitswap from {peer}, every block checked; {} file(s), {} bytes written to {} in {:.1?}",
                    got.blocks,
                    got.files,
                    got.bytes,
                    out.display(),
                    started.elapsed()
                );
                return Ok(());
            }
            let base = match (&args.url, &args.provider) {
                (Some(url), _) => url.clone(),
                (None, Some(provider)) => {
                    let miner = parse_address(provider, "--provider")?;
                    let (peer, addrs, _) = provider_peer(&chain()?, miner).await?;
                    super::retrieve::http_base(&mut swarm()?, peer, &addrs).await?
                }
                (None, None) => anyhow::bail!("name the provider (--provider) or its --url"),
            };
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| super::retrieve::default_out(&cid));
            let started = std::time::Instant::now();
            if nelumbo_commp::parse_piece_cid(&cid).is_ok() {
                let patience = Duration::from_secs(args.wait);
                let bytes = super::retrieve::piece(&base, &cid, &out, patience).await?;
                println!(
                    "piece {cid}: {bytes} bytes from {base}, piece commitment checked, written to {} in {:.1?}",
                    out.display(),
                    started.elapsed()
                );
            } else {
                let patience = Duration::from_secs(args.wait);
                let got =
                    super::retrieve::payload(&base, &cid, &out, args.car.as_deref(), patience)
                        .await?;
                println!(
                    "{cid}: {} blocks ({} CAR bytes) from {base}, every block checked; {} file(s), {} bytes written to {} in {:.1?}",
                    got.blocks,
                    got.car_bytes,
                    got.files,
                    got.bytes,
                    out.display(),
                    started.elapsed()
                );
            }
            Ok(())
        }
    }
}

fn join(addrs: &[Multiaddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_address(text: &str, what: &str) -> anyhow::Result<Address> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("{what} {text:?} is not an address: {e}"))
}

fn swarm() -> anyhow::Result<Swarm<MarketsBehaviour>> {
    client_swarm(false.into())
}

/// A client's swarm; `serve` says which streams it accepts (bitswap answers, or none).
fn client_swarm(serve: nelumbo_markets_api::p2p::Serve) -> anyhow::Result<Swarm<MarketsBehaviour>> {
    build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        &format!("nelumbo-client/{}", env!("CARGO_PKG_VERSION")),
        serve,
        nelumbo_markets_api::p2p::Limits::none(),
    )
    .map_err(|e| anyhow::anyhow!("start libp2p: {e}"))
}

/// The provider's peer ID, addresses and worker, from the chain.
async fn provider_peer(
    chain: &RpcClient,
    miner: Address,
) -> anyhow::Result<(PeerId, Vec<Multiaddr>, Address)> {
    let info = chain
        .call::<StateMinerInfo>((Addr(miner), TipSetKey::head()))
        .await
        .with_context(|| format!("look up miner {miner} on chain"))?;
    anyhow::ensure!(
        !info.peer_id.is_empty(),
        "miner {miner} has no peer ID on chain: its markets process has not set one yet"
    );
    let peer = PeerId::from_bytes(&info.peer_id)
        .map_err(|e| anyhow::anyhow!("miner {miner}'s peer ID on chain is not valid: {e}"))?;
    let addrs: Vec<Multiaddr> = info
        .multiaddrs
        .iter()
        .filter_map(|bytes| Multiaddr::try_from(bytes.clone()).ok())
        .collect();
    anyhow::ensure!(
        !addrs.is_empty(),
        "miner {miner} has no usable addresses on chain"
    );
    Ok((peer, addrs, info.worker))
}

/// Asks for the provider's ask and checks its worker's signature.
async fn get_ask(
    chain: &RpcClient,
    miner: Address,
    peer: PeerId,
    addrs: &[Multiaddr],
    worker: Address,
) -> anyhow::Result<StorageAsk> {
    let response = request_once(
        &mut swarm()?,
        peer,
        addrs,
        Request::Ask(AskRequest { miner }),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let Response::Ask(response) = response else {
        anyhow::bail!("the provider answered another protocol");
    };
    let signed = response
        .ask
        .with_context(|| format!("the provider has no ask for {miner}"))?;
    let ask = signed.ask.context("the provider's answer holds no ask")?;
    let signature = signed
        .signature
        .context("the provider's ask is not signed")?;
    anyhow::ensure!(
        ask.miner == miner,
        "the provider sent the ask of {}",
        ask.miner
    );
    let key = chain
        .call::<nelumbo_chain_api::methods::StateAccountKey>((Addr(worker), TipSetKey::head()))
        .await?;
    nelumbo_keys::verify(&signature, &fvm_ipld_encoding::to_vec(&ask)?, &key.0).map_err(|e| {
        anyhow::anyhow!("the ask is not signed by the miner's worker {worker}: {e}")
    })?;
    Ok(ask)
}

async fn make_deal(
    repo: &Path,
    keystore: &Keystore,
    chain: &RpcClient,
    args: DealArgs,
) -> anyhow::Result<()> {
    let provider = parse_address(&args.provider, "--provider")?;
    let from = match &args.from {
        Some(text) => parse_address(text, "--from")?,
        None => *keystore.list().first().context(
            "the wallet has no key: make one with `nelumbo client wallet new` and fund it",
        )?,
    };
    let key = keystore.get(&from)?;
    let (peer, addrs, worker) = provider_peer(chain, provider).await?;

    // Pack the file (or take the CAR as it is) and compute its piece.
    let cars = repo.join("cars");
    std::fs::create_dir_all(&cars)?;
    let (car, root) = if args.car {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("open {}", args.file.display()))?;
        let reader = nelumbo_car::CarReader::new(std::io::BufReader::new(file))
            .with_context(|| format!("{} is not a CAR", args.file.display()))?;
        anyhow::ensure!(
            reader.version() == 1,
            "{} is a CARv{}: deals here store CARv1 data",
            args.file.display(),
            reader.version()
        );
        let root = *reader
            .roots()
            .first()
            .with_context(|| format!("{} names no root", args.file.display()))?;
        (args.file.clone(), root)
    } else {
        let temp = cars.join(format!(".packing-{}", std::process::id()));
        let name = args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let input = std::fs::File::open(&args.file)
            .with_context(|| format!("open {}", args.file.display()))?;
        let packed = nelumbo_car::unixfs::pack(
            std::io::BufReader::with_capacity(1 << 20, input),
            std::io::BufWriter::new(std::fs::File::create(&temp)?),
            if args.no_wrap {
                None
            } else {
                Some(name.as_str())
            },
        )?;
        let car = cars.join(format!("{}.car", packed.root));
        std::fs::rename(&temp, &car)?;
        (car, packed.root)
    };
    let digest = {
        use std::io::Read;
        let mut hasher = nelumbo_commp::CommPHasher::new();
        let mut file = std::fs::File::open(&car)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n])?;
        }
        hasher.finish()?
    };
    let ask = get_ask(chain, provider, peer, &addrs, worker).await?;
    let piece_size = digest.piece_size.bytes().max(ask.min_piece_size);
    let padded = nelumbo_commp::pad_commitment(
        &digest.commitment,
        digest.piece_size,
        nelumbo_commp::PaddedPieceSize::new(piece_size)?,
    )
    .context("pad the piece commitment")?;
    let piece_cid = nelumbo_commp::piece_cid_v1(&padded);
    let car_size = digest.payload_size;
    if args.car {
        println!("CAR {} ({car_size} bytes)", car.display());
    } else {
        println!(
            "packed {} into {} ({car_size} bytes)",
            args.file.display(),
            car.display(),
        );
    }
    println!("data root: {root}");
    println!("piece:     {piece_cid} ({piece_size} bytes)");

    // Price, epochs, escrow.
    let ask_price = if args.verified {
        &ask.verified_price
    } else {
        &ask.price
    };
    let price_per_epoch = TokenAmount::from_atto(ask_price.atto() * piece_size / (1u64 << 30));
    let head = chain.call::<ChainHead>(()).await?.height;
    let start = head + args.start_in;
    let end = start + args.duration;
    let cost = price_per_epoch.clone() * args.duration;
    let balance = chain
        .call::<StateMarketBalance>((Addr(from), TipSetKey::head()))
        .await?;
    let available = balance.escrow.clone() - balance.locked.clone();
    if available < cost {
        let top_up = cost.clone() - available;
        println!(
            "adding {} FIL to {from}'s market escrow",
            nelumbo_chain_api::fil::format_fil(&top_up)
        );
        send_and_wait(
            chain,
            &key,
            from,
            Address::new_id(5),
            2,
            fvm_ipld_encoding::to_vec(&from)?,
            top_up,
        )
        .await
        .context("top up market escrow")?;
    }

    // Serve the CAR unless the provider gets it elsewhere.
    let mut server = None;
    let url = match (&args.url, args.offline) {
        (_, true) => None,
        (Some(url), false) => Some(url.clone()),
        (None, false) => {
            let listener = tokio::net::TcpListener::bind(args.serve)
                .await
                .with_context(|| format!("serve the CAR on {}", args.serve))?;
            let local = listener.local_addr()?;
            let path = format!("/{root}.car");
            let router = axum::Router::new()
                .route_service(&path, tower_http::services::ServeFile::new(&car));
            server = Some(tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }));
            Some(format!("http://{local}{path}"))
        }
    };

    let proposal = DealProposal {
        piece_cid,
        piece_size: PaddedPieceSize(piece_size),
        verified_deal: args.verified,
        client: from,
        provider,
        label: Label::String(root.to_string()),
        start_epoch: start,
        end_epoch: end,
        storage_price_per_epoch: price_per_epoch,
        provider_collateral: TokenAmount::default(),
        client_collateral: TokenAmount::default(),
    };
    let client_signature = key.sign(&fvm_ipld_encoding::to_vec(&proposal)?)?;
    let uuid = uuid::Uuid::new_v4();
    let transfer = match &url {
        None => Transfer::default(),
        Some(url) => Transfer {
            size: car_size,
            kind: "http".into(),
            params: serde_json::to_vec(&HttpRequest {
                url: url.clone(),
                headers: None,
            })?,
            client_id: String::new(),
        },
    };
    let params = DealParams {
        deal_uuid: *uuid.as_bytes(),
        transfer,
        is_offline: args.offline,
        deal_data_root: root,
        skip_ipni_announce: false,
        client_deal_proposal: ClientDealProposal {
            proposal,
            client_signature,
        },
        remove_unsealed_copy: false,
    };
    let deal = LocalDeal {
        uuid: uuid.to_string(),
        provider: provider.to_string(),
        client: from.to_string(),
        piece_cid: piece_cid.to_string(),
        piece_size,
        data_root: root.to_string(),
        car: car.clone(),
        car_size,
    };
    save_deal(repo, &deal)?;
    let response = request_once(&mut swarm()?, peer, &addrs, Request::Deal(Box::new(params)))
        .await
        .map_err(anyhow::Error::msg)?;
    let Response::Deal(response) = response else {
        anyhow::bail!("the provider answered another protocol");
    };
    if !response.accepted {
        anyhow::bail!("the provider rejected the deal: {}", response.message);
    }
    println!("deal {uuid} accepted by {provider} (epochs {start} to {end})");
    if args.offline {
        println!(
            "offline deal: give the provider {} to import",
            car.display()
        );
    }

    // Follow it: while serving, until the provider has the data; with --wait-active, to the end.
    if server.is_some() || args.wait_active {
        let mut last = String::new();
        let mut follower = swarm()?;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let status = match deal_status(&mut follower, peer, &addrs, keystore, &deal).await {
                Ok(status) => status,
                Err(e) => {
                    eprintln!("status: {e:#}");
                    continue;
                }
            };
            let line = status_line(&status);
            if line != last {
                println!("{line}");
                last = line;
            }
            if !status.error.is_empty() {
                anyhow::bail!("the provider cannot report the deal: {}", status.error);
            }
            let Some(s) = &status.deal_status else {
                continue;
            };
            if !s.error.is_empty() {
                anyhow::bail!("the deal failed: {}", s.error);
            }
            let transferred = s.status != checkpoint::ACCEPTED;
            if s.status == checkpoint::COMPLETE || (!args.wait_active && transferred) {
                break;
            }
        }
    }
    if let Some(server) = server {
        server.abort();
    }
    Ok(())
}

fn status_line(status: &DealStatusResponse) -> String {
    match &status.deal_status {
        None => format!("error: {}", status.error),
        Some(s) => {
            let mut line = format!(
                "{}: {} of {} bytes received",
                s.status, status.n_bytes_received, status.transfer_size
            );
            if s.status != checkpoint::ACCEPTED && s.status != checkpoint::TRANSFERRED {
                line.push_str(&format!(", deal ID {}", s.chain_deal_id));
            }
            if !s.sealing_status.is_empty() {
                line.push_str(&format!(", sector {}", s.sealing_status));
            }
            if !s.error.is_empty() {
                line.push_str(&format!(", error: {}", s.error));
            }
            line
        }
    }
}

fn print_status(status: &DealStatusResponse) {
    let uuid = uuid::Uuid::from_bytes(status.deal_uuid);
    println!("deal:        {uuid}");
    if !status.error.is_empty() {
        println!("error:       {}", status.error);
        return;
    }
    if let Some(s) = &status.deal_status {
        println!("status:      {}", s.status);
        if !s.error.is_empty() {
            println!("deal error:  {}", s.error);
        }
        println!(
            "received:    {} of {} bytes{}",
            status.n_bytes_received,
            status.transfer_size,
            if status.is_offline { " (offline)" } else { "" }
        );
        println!(
            "deal ID:     {}",
            if s.chain_deal_id == 0 {
                "-".to_string()
            } else {
                s.chain_deal_id.to_string()
            }
        );
        println!(
            "published:   {}",
            s.publish_cid
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into())
        );
        println!(
            "sealing:     {}",
            if s.sealing_status.is_empty() {
                "-"
            } else {
                &s.sealing_status
            }
        );
        println!("proposal:    {}", s.signed_proposal_cid);
    }
}

/// Asks the provider at `peer` for a deal's status, signed with the deal's client key.
async fn deal_status(
    swarm: &mut Swarm<MarketsBehaviour>,
    peer: PeerId,
    addrs: &[Multiaddr],
    keystore: &Keystore,
    deal: &LocalDeal,
) -> anyhow::Result<DealStatusResponse> {
    let client = parse_address(&deal.client, "client")?;
    let key = keystore.get(&client)?;
    let uuid = uuid::Uuid::parse_str(&deal.uuid)?;
    let signature = key.sign(uuid.as_bytes())?;
    let response = request_once(
        swarm,
        peer,
        addrs,
        Request::Status(DealStatusRequest {
            deal_uuid: *uuid.as_bytes(),
            signature,
        }),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    match response {
        Response::Status(status) => Ok(*status),
        _ => anyhow::bail!("the provider answered another protocol"),
    }
}

fn save_deal(repo: &Path, deal: &LocalDeal) -> anyhow::Result<()> {
    let dir = repo.join("deals");
    std::fs::create_dir_all(&dir)?;
    nelumbo_service::write_atomic(
        &dir.join(format!("{}.json", deal.uuid)),
        &serde_json::to_vec_pretty(deal)?,
    )?;
    Ok(())
}

fn load_deal(repo: &Path, uuid: &str) -> anyhow::Result<LocalDeal> {
    let path = repo.join("deals").join(format!("{uuid}.json"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no deal {uuid} was made from {}", repo.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Signs and sends a message from a wallet key, and waits for it to execute successfully.
async fn send_and_wait(
    chain: &RpcClient,
    key: &nelumbo_keys::KeyInfo,
    from: Address,
    to: Address,
    method: u64,
    params: Vec<u8>,
    value: TokenAmount,
) -> anyhow::Result<()> {
    let mut message = chain
        .call::<GasEstimateMessageGas>((
            Message::unpriced(from, to, value, method, params),
            None,
            TipSetKey::head(),
        ))
        .await?;
    message.0.sequence = chain.call::<MpoolGetNonce>((Addr(from),)).await?;
    let signature = key.sign(&message.cid().to_bytes())?;
    let signed = SignedMessage {
        message,
        signature: Signature::from_fvm(&signature),
    };
    let cid = chain.call::<MpoolPush>((signed,)).await?;
    let lookup = chain
        .call::<StateWaitMsg>((CidJson(cid.0), 0, -1, true))
        .await?;
    anyhow::ensure!(
        lookup.receipt.exit_code == 0,
        "message {} failed with exit code {}",
        cid.0,
        lookup.receipt.exit_code
    );
    Ok(())
}
