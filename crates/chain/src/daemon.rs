//! The `nelumbo-chain run` process: opens the repo, serves the API and produces tipsets until
//! SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use nelumbo_keys::Keystore;
use nelumbo_proofs::{ProofMode, ProofVerifier, Prover, SectorProofs};
use nelumbo_rpc::{ApiInfo, Permission, ServerConfig, TokenSecret, rpc_router};
use nelumbo_service::{Health, ops_router, shutdown_on_signals};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiState, module};
use crate::chain::{Chain, run_clock};
use crate::genesis::Genesis;
use crate::repo::Repo;
use crate::store::Store;

/// The largest JSON-RPC request accepted (a PoSt or seal proof message is a few KiB).
const MAX_REQUEST_BYTES: usize = 16 << 20;

pub async fn run(repo: Repo, listen: SocketAddr) -> anyhow::Result<()> {
    let _lock = repo.lock()?;
    nelumbo_chain_api::json::use_testnet_addresses();
    let genesis = Genesis::read(&repo.genesis()).with_context(|| {
        format!(
            "no usable genesis in {}: create one with `nelumbo-chain genesis`",
            repo.dir.display()
        )
    })?;
    let health = Health::default();
    let verifier = verifier(&genesis, &health)?;
    let store = Store::open(&repo.database())?;
    let wallet = Keystore::open(&repo.keystore())?;
    let chain = Chain::open(genesis, store, wallet, verifier)?;
    let default_address = std::fs::read_to_string(repo.default_address())
        .ok()
        .and_then(|t| nelumbo_chain_api::json::parse_address(&t).ok());

    let secret = TokenSecret::load_or_create(&repo.token_secret())?;
    Repo::write_private(&repo.token(), &secret.create_token(Permission::Admin))?;
    let router = rpc_router(
        module(ApiState {
            chain: chain.clone(),
            default_address,
        }),
        ServerConfig {
            secret,
            anonymous: Some(Permission::Read),
            max_request_bytes: MAX_REQUEST_BYTES,
        },
    )
    .merge(ops_router(health.clone(), chain.metrics.registry.clone()));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let local = listener.local_addr()?;
    std::fs::write(
        repo.api(),
        ApiInfo::format("", &local.ip().to_string(), local.port()).trim_start_matches(':'),
    )?;
    let head = chain.head();
    tracing::info!(
        api = %format!("http://{local}/rpc/v1"),
        network = %chain.genesis.network_name,
        proof_mode = %chain.genesis.proof_mode,
        head = head.height,
        "nelumbo-chain is running"
    );

    let cancel = CancellationToken::new();
    shutdown_on_signals(cancel.clone());
    health.ready("chain");
    let producer = tokio::spawn(run_clock(chain.clone(), cancel.clone()));
    let shutdown = cancel.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serve the API")?;
    cancel.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), producer).await;
    let _ = std::fs::remove_file(repo.api());
    tracing::info!(head = chain.head().height, "nelumbo-chain stopped");
    Ok(())
}

/// A verifier for the genesis's proof mode; in real mode, the verifying keys of every allowed
/// sector size must be present and intact.
fn verifier(genesis: &Genesis, health: &Health) -> anyhow::Result<ProofVerifier> {
    match genesis.proof_mode {
        ProofMode::InsecureTesting => {
            tracing::warn!("this chain runs in INSECURE TESTING proof mode: proofs prove nothing");
            health.ready("proof parameters");
            Ok(ProofVerifier::InsecureTesting)
        }
        ProofMode::Real => {
            let prover = Prover::from_env()?;
            for size in &genesis.sector_sizes {
                for circuit in SectorProofs::for_size(*size).circuits() {
                    prover.param_cache().verify_key(circuit).with_context(|| {
                        format!("the chain verifies {size} proofs and needs their verifying keys")
                    })?;
                }
            }
            health.ready("proof parameters");
            Ok(ProofVerifier::Real(prover))
        }
    }
}
