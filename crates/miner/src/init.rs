//! `nelumbo-miner init`: the repo, its config, the owner and worker keys, and the miner actor on
//! chain.
//!
//! Init can be interrupted anywhere and run again: the keys are created once and recorded in
//! `wallet.json`; the `CreateMiner` message is signed and recorded in `init-message.json` before
//! it is sent, and a later run waits for that same message instead of creating a second miner.
//!
//! Besides the owner and the worker, init makes a control address for WindowPoSt (as Lotus
//! operators set up with `lotus-miner actor control set`): funded by the owner and named in
//! `ChangeWorkerAddress` once the miner exists, so proving has nonces of its own and never
//! waits behind the worker's sealing and deal messages.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::fil::format_fil;
use nelumbo_chain_api::methods::{Version, WalletBalance};
use nelumbo_chain_api::types::SignedMessage;
use nelumbo_keys::{KeyKind, Keystore};
use nelumbo_miner_api::types::HubMinerInfo;
use nelumbo_proofs::ProofMode;
use nelumbo_types::SectorSize;
use serde::{Deserialize, Serialize};

use crate::chain::ChainClient;
use crate::config::Config;
use crate::repo::{Repo, write_json};

/// The power actor and its `CreateMiner` method.
const POWER_ACTOR: u64 = 4;
const CREATE_MINER: u64 = 2;
/// The miner actor's `ChangeWorkerAddress` (which also sets control addresses).
const CHANGE_WORKER_ADDRESS: u64 = 3;

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub sector_size: SectorSize,
    /// The chain's connection string for `config.toml` (`FULLNODE_API_INFO` is used if absent).
    pub chain_api_info: Option<String>,
    pub listen: Option<SocketAddr>,
    pub storage: Vec<PathBuf>,
    pub proof_mode: ProofMode,
    /// FIL the owner sends to the new miner actor for pre-commit deposits and pledges.
    pub initial_balance: TokenAmount,
    /// FIL the owner sends to the worker, which pays the gas of every sealing and deal
    /// message.
    pub worker_balance: TokenAmount,
    /// FIL the owner sends to the WindowPoSt control address for its gas.
    pub control_balance: TokenAmount,
}

/// The keys init chose, recorded before anything is funded or sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wallet {
    #[serde(with = "nelumbo_chain_api::json::address")]
    owner: Address,
    #[serde(with = "nelumbo_chain_api::json::address")]
    worker: Address,
    /// The WindowPoSt control address (absent in wallets made before it existed).
    #[serde(default, with = "nelumbo_chain_api::json::opt_address")]
    control: Option<Address>,
}

pub async fn init(repo: &Repo, options: InitOptions) -> anyhow::Result<HubMinerInfo> {
    if let Ok(info) = repo.miner_info() {
        anyhow::bail!(
            "{} is already initialised for miner {}; to start over, move the repo away",
            repo.dir.display(),
            info.actor
        );
    }
    std::fs::create_dir_all(&repo.dir).with_context(|| format!("create {}", repo.dir.display()))?;
    let config = match Config::load(&repo.config()) {
        Ok(config) => config,
        Err(_) if !repo.config().exists() => {
            let mut config = Config::defaults(&repo.dir);
            if let Some(listen) = options.listen {
                config.api.listen = listen;
            }
            config.chain.api_info = options
                .chain_api_info
                .clone()
                .or_else(|| std::env::var(nelumbo_chain_api::FULLNODE_API_INFO).ok())
                .unwrap_or_default();
            if !options.storage.is_empty() {
                config.storage.paths = options.storage.clone();
            }
            config.proofs.mode = options.proof_mode;
            config.validate()?;
            nelumbo_service::write_atomic(&repo.config(), config.render().as_bytes())?;
            config
        }
        Err(e) => return Err(e),
    };
    for path in &config.storage.paths {
        std::fs::create_dir_all(path)
            .with_context(|| format!("create storage path {}", path.display()))?;
    }

    let keystore = Keystore::open(&repo.keystore())?;
    let wallet_path = repo.dir.join("wallet.json");
    let mut wallet: Wallet = match std::fs::read_to_string(&wallet_path) {
        Ok(text) => serde_json::from_str(&text).context("parse wallet.json")?,
        Err(_) => {
            let wallet = Wallet {
                owner: keystore.generate(KeyKind::Secp256k1)?,
                // The devnet and Filecoin's own tooling want a BLS worker.
                worker: keystore.generate(KeyKind::Bls)?,
                control: Some(keystore.generate(KeyKind::Secp256k1)?),
            };
            write_json(&wallet_path, &wallet)?;
            wallet
        }
    };
    if wallet.control.is_none() {
        wallet.control = Some(keystore.generate(KeyKind::Secp256k1)?);
        write_json(&wallet_path, &wallet)?;
    }
    let control = wallet
        .control
        .context("wallet.json has no control address")?;
    tracing::info!(owner = %wallet.owner, worker = %wallet.worker, control = %control, "keys");

    let chain = ChainClient::new(config.settings()?.chain.client()?, keystore);
    let version = chain.rpc.call::<Version>(()).await.with_context(|| {
        format!(
            "cannot reach the chain at {}: is it running, and is the token right?",
            chain.rpc.url()
        )
    })?;
    tracing::info!(chain = %version.version, "connected to the chain");

    let signed: SignedMessage = match std::fs::read_to_string(repo.init_message()) {
        Ok(text) => {
            tracing::info!("resuming: waiting for the CreateMiner message sent before");
            serde_json::from_str(&text).context("parse init-message.json")?
        }
        Err(_) => {
            let balance = chain
                .rpc
                .call::<WalletBalance>((Addr(wallet.owner),))
                .await?
                .0;
            let worker_balance = chain
                .rpc
                .call::<WalletBalance>((Addr(wallet.worker),))
                .await?
                .0;
            let worker_needs = if worker_balance < options.worker_balance {
                options.worker_balance.clone()
            } else {
                TokenAmount::from_atto(0)
            };
            let control_balance = chain.rpc.call::<WalletBalance>((Addr(control),)).await?.0;
            let control_needs = if control_balance < options.control_balance {
                options.control_balance.clone()
            } else {
                TokenAmount::from_atto(0)
            };
            let needed = &options.initial_balance
                + &worker_needs
                + &control_needs
                + TokenAmount::from_nano(30_000_000);
            anyhow::ensure!(
                balance >= needed,
                "the owner {owner} holds {balance} and needs at least {needed} (the miner's \
                 initial balance, the worker's and the WindowPoSt address's gas money, and gas): \
                 fund it, for example with `nelumbo-chain faucet {owner} 100` on a devnet, and \
                 run init again",
                owner = wallet.owner,
                balance = format_fil(&balance),
                needed = format_fil(&needed),
            );
            if worker_needs.is_positive() {
                fund(
                    repo,
                    &chain,
                    wallet.owner,
                    wallet.worker,
                    worker_needs,
                    "worker",
                )
                .await?;
            }
            if control_needs.is_positive() {
                fund(
                    repo,
                    &chain,
                    wallet.owner,
                    control,
                    control_needs,
                    "control",
                )
                .await?;
            }
            let params = fil_actor_power_state::v18::CreateMinerParams {
                owner: wallet.owner,
                worker: wallet.worker,
                window_post_proof_type: fvm_shared::sector::RegisteredPoStProof::from(
                    options.sector_size.window_post_proof_number(),
                ),
                peer: Vec::new(),
                multiaddrs: Vec::new(),
            };
            let signed = chain
                .prepare(
                    wallet.owner,
                    Address::new_id(POWER_ACTOR),
                    CREATE_MINER,
                    fvm_ipld_encoding::to_vec(&params)?,
                    options.initial_balance.clone(),
                )
                .await
                .context("prepare CreateMiner")?;
            // Recorded before it is sent: a crash from here on resumes with this message.
            write_json(&repo.init_message(), &signed)?;
            signed
        }
    };
    let cid = chain.push(&signed).await.context("send CreateMiner")?;
    tracing::info!(message_cid = %cid, "CreateMiner sent; waiting for it to execute");
    let lookup = chain.wait(cid).await?;
    anyhow::ensure!(
        lookup.receipt.exit_code == 0,
        "CreateMiner failed on chain with exit code {}; remove {} and run init again",
        lookup.receipt.exit_code,
        repo.init_message().display()
    );
    let created: fil_actor_power_state::v18::CreateMinerReturn =
        fvm_ipld_encoding::from_slice(&lookup.receipt.r#return)
            .context("decode CreateMiner's return value")?;
    set_control(repo, &chain, &wallet, created.id_address, control).await?;
    let info = HubMinerInfo {
        actor: created.id_address,
        owner: wallet.owner,
        worker: wallet.worker,
        control: Some(control),
        sector_size: options.sector_size.bytes(),
        created_at: lookup.height,
    };
    repo.write_miner_info(&info)?;
    let _ = std::fs::remove_file(repo.init_message());
    Ok(info)
}

/// Names `control` as the miner's control address (`ChangeWorkerAddress` from the owner, the
/// worker unchanged); recorded before it is sent, like init's other messages.
async fn set_control(
    repo: &Repo,
    chain: &ChainClient,
    wallet: &Wallet,
    actor: Address,
    control: Address,
) -> anyhow::Result<()> {
    let path = repo.dir.join("init-control.json");
    let signed: SignedMessage = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).context("parse init-control.json")?,
        Err(_) => {
            let params = fil_actor_miner_state::v18::ChangeWorkerAddressParams {
                new_worker: wallet.worker,
                new_control_addresses: vec![control],
            };
            let signed = chain
                .prepare(
                    wallet.owner,
                    actor,
                    CHANGE_WORKER_ADDRESS,
                    fvm_ipld_encoding::to_vec(&params)?,
                    TokenAmount::from_atto(0),
                )
                .await
                .context("prepare ChangeWorkerAddress")?;
            write_json(&path, &signed)?;
            signed
        }
    };
    let cid = chain
        .push(&signed)
        .await
        .context("send ChangeWorkerAddress")?;
    tracing::info!(message_cid = %cid, %control, "naming the WindowPoSt control address");
    let lookup = chain.wait(cid).await?;
    anyhow::ensure!(
        lookup.receipt.exit_code == 0,
        "ChangeWorkerAddress failed on chain with exit code {}; remove {} and run init again",
        lookup.receipt.exit_code,
        path.display()
    );
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Sends `to` (the worker, the control address) its gas money from the owner; the message is
/// recorded before it is sent so a crashed init waits for it rather than paying twice.
async fn fund(
    repo: &Repo,
    chain: &ChainClient,
    owner: Address,
    to: Address,
    amount: TokenAmount,
    role: &str,
) -> anyhow::Result<()> {
    let path = repo.dir.join(format!("init-fund-{role}.json"));
    let signed: SignedMessage = match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?
        }
        Err(_) => {
            let signed = chain
                .prepare(owner, to, 0, Vec::new(), amount.clone())
                .await
                .with_context(|| format!("prepare the {role}'s funding"))?;
            write_json(&path, &signed)?;
            signed
        }
    };
    let cid = chain
        .push(&signed)
        .await
        .with_context(|| format!("fund the {role}"))?;
    tracing::info!(message_cid = %cid, amount = %format_fil(&amount), %role, address = %to, "funding");
    let lookup = chain.wait(cid).await?;
    anyhow::ensure!(
        lookup.receipt.exit_code == 0,
        "funding the {role} failed on chain with exit code {}; remove {} and run init again",
        lookup.receipt.exit_code,
        path.display()
    );
    let _ = std::fs::remove_file(&path);
    Ok(())
}
