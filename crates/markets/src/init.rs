//! `nelumbo-markets init`: the repo, the libp2p identity, the hub's connection string, and the
//! miner's peer ID and addresses on chain (set through the hub, which holds the keys).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use nelumbo_miner_api::methods::{ActorAddress, ActorSectorSize};
use nelumbo_rpc::{ApiInfo, RpcClient};

use crate::config::Config;
use crate::repo::{MinerRecord, Repo};

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub hub_api_info: String,
    pub listen: Vec<String>,
    pub announce: Vec<String>,
    pub api: SocketAddr,
    pub staging: Option<PathBuf>,
    pub retrieval_listen: SocketAddr,
    /// Leave the miner's peer ID and addresses on chain as they are: for a process that takes
    /// no deals (a retrieval replica), whose identity is not the one clients dial for deals.
    pub skip_peer_info: bool,
}

pub async fn init(repo: &Repo, options: InitOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        !repo.config().exists(),
        "{} is already set up (it has a config.toml); use another --repo to make a new one",
        repo.dir.display()
    );
    let info = ApiInfo::parse(&options.hub_api_info)
        .map_err(|e| anyhow::anyhow!("the hub's connection string: {e}"))?;
    let token = info.token.as_deref().context(
        "the hub's connection string has no token: make one with `nelumbo-miner auth api-info --perm spoke`",
    )?;
    check_spoke_token(token)?;
    let hub = RpcClient::from_api_info(&info);
    let actor = hub
        .call::<ActorAddress>(())
        .await
        .context("ask the hub for its miner (init needs the hub running)")?;
    let sector_size = hub
        .call::<ActorSectorSize>((actor.clone(),))
        .await
        .context("ask the hub for the sector size")?;

    std::fs::create_dir_all(&repo.dir).with_context(|| format!("create {}", repo.dir.display()))?;
    let _lock = nelumbo_service::lock_repo(&repo.dir, "nelumbo-markets")?;
    let key = if repo.identity().exists() {
        repo.load_identity()?
    } else {
        let key = libp2p::identity::Keypair::generate_ed25519();
        write_private_bytes(&repo.identity(), &key.to_protobuf_encoding()?)?;
        key
    };
    nelumbo_service::write_private(&repo.hub_api_info(), options.hub_api_info.trim())?;
    let miner = MinerRecord {
        actor: actor.0.to_string(),
        sector_size,
    };
    nelumbo_service::write_atomic(&repo.miner(), &serde_json::to_vec_pretty(&miner)?)?;
    let mut config = Config::new(options.listen, options.announce, options.api, sector_size);
    config.deals.staging_dir = options.staging;
    config.retrieval.listen = options.retrieval_listen;
    let settings = config.settings()?;
    let addrs = public_addrs(&settings.network.announce, &settings.network.listen);
    if config.network.announce.is_empty()
        && config
            .network
            .listen
            .iter()
            .any(|a| a.contains("/0.0.0.0/") || a.contains("/::/"))
    {
        eprintln!(
            "warning: no --announce address: clients are told to dial {}; give your public address with --announce",
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if options.skip_peer_info {
        println!("on chain: peer ID and addresses left as they are (--skip-peer-info)");
    } else {
        let changed = set_peer_info(&hub, &key.public().to_peer_id(), &addrs).await?;
        println!(
            "on chain: peer ID and {} address(es) {}",
            addrs.len(),
            if changed { "set" } else { "already set" }
        );
    }
    // The config goes last: its presence means init finished.
    nelumbo_service::write_atomic(&repo.config(), config.render().as_bytes())?;
    // Owner-only: [database] url may be given a password.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.config(), std::fs::Permissions::from_mode(0o600))?;
    }
    println!("peer ID: {}", key.public().to_peer_id());
    println!("miner:   {}", miner.actor);
    println!(
        "repo:    {} (start it with `nelumbo-markets --repo {} run`; it publishes its addresses on chain through the hub)",
        repo.dir.display(),
        repo.dir.display()
    );
    Ok(())
}

/// A markets process holds a spoke token and nothing more: a broader one (write, admin) would
/// let whoever takes over this public-facing process pledge sectors or read everything.
fn check_spoke_token(token: &str) -> anyhow::Result<()> {
    let allow = nelumbo_rpc::claimed_permissions(token).context("the hub token is not a JWT")?;
    anyhow::ensure!(
        allow == ["spoke"],
        "the hub token grants [{}]; a markets process must hold only a spoke token, which reaches \
         exactly what spokes need: make one with `nelumbo-miner auth api-info --perm spoke`",
        allow.join(", ")
    );
    Ok(())
}

fn write_private_bytes(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("write {}", temp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

/// The addresses to publish: the announce list, else the listen list with unspecified hosts
/// (0.0.0.0, ::) replaced by loopback and port-0 entries left out.
pub fn public_addrs(
    announce: &[libp2p::Multiaddr],
    listen: &[libp2p::Multiaddr],
) -> Vec<libp2p::Multiaddr> {
    use libp2p::multiaddr::Protocol;
    if !announce.is_empty() {
        return announce.to_vec();
    }
    listen
        .iter()
        .filter(|addr| !addr.iter().any(|p| matches!(p, Protocol::Tcp(0))))
        .map(|addr| {
            addr.iter()
                .map(|p| match p {
                    Protocol::Ip4(ip) if ip.is_unspecified() => {
                        Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST)
                    }
                    Protocol::Ip6(ip) if ip.is_unspecified() => {
                        Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST)
                    }
                    p => p,
                })
                .collect()
        })
        .collect()
}

/// Asks the hub to put the peer ID and addresses on chain (nothing is sent if they are there).
pub async fn set_peer_info(
    hub: &RpcClient,
    peer: &libp2p::PeerId,
    addrs: &[libp2p::Multiaddr],
) -> anyhow::Result<bool> {
    use nelumbo_chain_api::Base64;
    use nelumbo_miner_api::methods::MarketSetPeerInfo;
    hub.call::<MarketSetPeerInfo>((
        Base64(peer.to_bytes()),
        addrs.iter().map(|a| Base64(a.to_vec())).collect(),
    ))
    .await
    .context("set the miner's peer ID and addresses on chain through the hub")
}
