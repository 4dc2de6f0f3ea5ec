//! The `nelumbo-miner run` process: checks its repo, storage and proof parameters, keeps a
//! connection to the chain, and serves the hub API until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nelumbo_chain_api::methods::Version;
use nelumbo_keys::Keystore;
use nelumbo_proofs::{ProofMode, Prover};
use nelumbo_rpc::{ApiInfo, Permission, ServerConfig, TokenSecret, rpc_router};
use nelumbo_service::{Backoff, Health, Workers, ops_router, shutdown_on_signals, stop_step};
use nelumbo_types::SectorSize;
use prometheus::{IntGauge, Registry};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiState, module};
use crate::chain::ChainClient;
use crate::config::Config;
use crate::db::Db;
use crate::deals::{DealPolicy, Publisher, PublisherSetup};
use crate::events::Events;
use crate::metrics::Metrics;
use crate::mining::Mining;
use crate::outbox::{OutboxMetrics, OutboxTask};
use crate::pieces::PieceStore;
use crate::proof_worker::ProofWorkers;
use crate::proving::{Proving, ProvingContext};
use crate::reads::PieceReads;
use crate::repo::Repo;
use crate::sealing::{Sealing, SealingContext};
use crate::spokes::Spokes;
use crate::storage::SectorStorage;

/// The largest API request (a batch of deals is a few hundred KiB).
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// How often the chain connection is checked.
const CHAIN_CHECK_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(repo: Repo) -> anyhow::Result<()> {
    let _lock = nelumbo_service::lock_repo(&repo.dir, "nelumbo-miner")?;
    let settings = Config::load(&repo.config())?.settings()?;
    let miner = repo.miner_info()?;
    let keystore = Keystore::open(&repo.keystore())?;
    for (role, address) in [("owner", miner.owner), ("worker", miner.worker)] {
        anyhow::ensure!(
            keystore.has(&address),
            "the {role} key {address} is missing from {}",
            keystore.dir().display()
        );
    }
    let health = Health::default();
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;

    check_storage(&settings.storage_paths, &health);
    let sector_size = SectorSize::new(miner.sector_size)?;
    let params_checked = check_parameters(settings.proof_mode, sector_size, &health);

    let db = Arc::new(Db::open(&repo.database())?);
    let chain = ChainClient::new(settings.chain.client()?, keystore).with_outbox(db.clone());
    let post_sender = match miner.control {
        Some(control) if chain.has_key(&control) => control,
        Some(control) => anyhow::bail!(
            "the control key {control} is missing from {}",
            repo.keystore().display()
        ),
        None => {
            tracing::warn!(
                worker = %miner.worker,
                "this hub has no WindowPoSt control address (made before they existed): WindowPoSt is sent from the worker and shares its nonces"
            );
            miner.worker
        }
    };
    let storage = Arc::new(SectorStorage::new(
        settings.storage_paths.clone(),
        miner
            .actor
            .id()
            .context("the miner address in miner.json is not an ID address")?,
        sector_size,
    )?);
    let prover = Prover::from_env().context("set up the proofs library")?;
    let workers = ProofWorkers::new(
        settings.sealing.worker_nice,
        settings.mining.worker_nice,
        params_checked,
    )?;
    if let Ok(delay) = std::env::var("NELUMBO_PROOF_WORKER_DELAY") {
        tracing::warn!(%delay, "NELUMBO_PROOF_WORKER_DELAY is set: proof workers pause before this job (crash testing only)");
    }
    let cancel = CancellationToken::new();
    let events = Events::default();
    let worker_list = Workers::default();
    let sealing = Sealing::start(SealingContext {
        db: db.clone(),
        storage: storage.clone(),
        chain: chain.clone(),
        prover: prover.clone(),
        workers: workers.clone(),
        worker_list: worker_list.clone(),
        mode: settings.proof_mode,
        actor: miner.actor,
        worker: miner.worker,
        sector_size,
        config: settings.sealing.clone(),
        metrics: metrics.clone(),
        events: events.clone(),
        cancel: cancel.clone(),
    })?;
    let proving = Proving::new(ProvingContext {
        db: db.clone(),
        storage: storage.clone(),
        chain: chain.clone(),
        prover: prover.clone(),
        mode: settings.proof_mode,
        actor: miner.actor,
        post_sender,
        sector_size,
        metrics: metrics.clone(),
        events: events.clone(),
        worker_list: worker_list.clone(),
    });

    let secret = TokenSecret::load_or_create(&repo.token_secret())?;
    nelumbo_service::write_private(&repo.token(), &secret.create_token(Permission::Admin))?;
    let reads = Arc::new(
        PieceReads::new(
            db.clone(),
            storage.clone(),
            workers.clone(),
            miner.actor.id()?,
            sector_size,
            secret.clone(),
            settings.sealing.max_unseal,
        )
        .with_metrics(&metrics)
        .with_workers(&worker_list),
    );
    let pieces = Arc::new(PieceStore::new(
        storage.clone(),
        db.clone(),
        secret.clone(),
        sector_size,
        &settings.deals,
    )?);
    let policy = DealPolicy::from_settings(&settings.deals);
    let ask_floors = Arc::new((
        settings.deals.min_price.clone(),
        settings.deals.min_verified_price.clone(),
    ));
    let router = rpc_router(
        module(ApiState {
            miner: Arc::new(miner.clone()),
            chain: chain.clone(),
            db: db.clone(),
            sealing,
            proving: proving.clone(),
            events: events.clone(),
            spokes: Spokes::new(db.clone()),
            publisher: Publisher::start(
                PublisherSetup {
                    db: db.clone(),
                    chain: chain.clone(),
                    actor: miner.actor,
                    worker: miner.worker,
                    sector_size: sector_size.bytes(),
                    policy,
                    worker_list: worker_list.clone(),
                },
                cancel.clone(),
            ),
            reads: reads.clone(),
            ask_floors,
            peer_info_min_interval_secs: settings.peer_info_min_interval.as_secs(),
            workers: worker_list.clone(),
        }),
        ServerConfig {
            secret,
            // Invariant 2: no token, no answer.
            anonymous: None,
            max_request_bytes: MAX_REQUEST_BYTES,
        },
    )
    .merge(pieces.clone().router())
    .merge(reads.router())
    .merge(crate::status::router())
    .merge(ops_router(health.clone(), registry.clone()));
    let listener = tokio::net::TcpListener::bind(settings.api_listen)
        .await
        .with_context(|| format!("listen on {} ([api] listen)", settings.api_listen))?;
    let local = listener.local_addr()?;
    std::fs::write(
        repo.api(),
        ApiInfo::format("", &local.ip().to_string(), local.port()).trim_start_matches(':'),
    )?;
    tracing::info!(
        api = %format!("http://{local}/rpc/v1"),
        miner = %miner.actor,
        sector_size = %sector_size,
        proof_mode = %settings.proof_mode,
        "nelumbo-miner is running"
    );

    shutdown_on_signals(cancel.clone());
    health.not_ready("chain", "connecting");
    let mut tasks = vec![
        tokio::spawn(watch_chain(
            chain.clone(),
            health.clone(),
            metrics.chain_connected.clone(),
            cancel.clone(),
        )),
        tokio::spawn(watch_storage(
            storage.clone(),
            metrics.clone(),
            cancel.clone(),
        )),
        tokio::spawn(proving.run(cancel.clone())),
        tokio::spawn(pieces.run_janitor(cancel.clone())),
        tokio::spawn(
            OutboxTask {
                db: db.clone(),
                chain: chain.clone(),
                addresses: [Some(miner.worker), miner.control, Some(miner.owner)]
                    .into_iter()
                    .flatten()
                    .filter(|a| chain.has_key(a))
                    .collect(),
                replace_after_epochs: settings.chain.replace_after_epochs,
                metrics: OutboxMetrics {
                    pending: metrics.messages_pending.clone(),
                    replaced: metrics.messages_replaced.clone(),
                },
            }
            .run(cancel.clone()),
        ),
    ];
    if settings.mining.enabled {
        let mining = Mining {
            db,
            storage,
            chain: chain.clone(),
            prover,
            workers,
            mode: settings.proof_mode,
            actor: miner.actor,
            worker: miner.worker,
            sector_size,
            metrics,
            events,
        };
        let worker = worker_list.start("mining", "block production");
        tasks.push(tokio::spawn(mining.run(worker, cancel.clone())));
    } else {
        tracing::info!("mining is off ([mining] enabled = false)");
    }
    let shutdown = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    cancel.cancelled().await;
    // In order, each bounded: requests in flight (an unseal waiting on its worker is dropped,
    // which kills the worker), then sealing, proving and mining (a running proof worker is
    // killed; the step runs again at the next start). Then the API file goes.
    stop_step("API", Duration::from_secs(10), async {
        match server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the API server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "the API server task failed"),
            Ok(Ok(())) => {}
        }
    })
    .await;
    stop_step("background work", Duration::from_secs(10), async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    let _ = std::fs::remove_file(repo.api());
    tracing::info!("nelumbo-miner stopped");
    Ok(())
}

/// Every storage path must exist and be writable.
fn check_storage(paths: &[std::path::PathBuf], health: &Health) {
    for path in paths {
        if let Err(e) = nelumbo_service::check_writable(path) {
            tracing::error!(path = %path.display(), error = %e, "storage path is not writable");
            health.not_ready(
                "storage",
                format!("{} is not writable: {e}", path.display()),
            );
            return;
        }
    }
    health.ready("storage");
}

/// In real mode, the sector size's parameters must be present and intact; whether they are.
fn check_parameters(mode: ProofMode, size: SectorSize, health: &Health) -> bool {
    if mode == ProofMode::InsecureTesting {
        tracing::warn!("INSECURE TESTING proof mode: this hub's proofs prove nothing");
        health.ready("proof parameters");
        return false;
    }
    let result = Prover::from_env()
        .map_err(anyhow::Error::from)
        .and_then(|prover| Ok(prover.param_cache().verify_sector_size(size)?));
    match result {
        Ok(()) => {
            health.ready("proof parameters");
            true
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "proof parameters are not usable; generate them with `nelumbo proofs params --sector-size {size}`");
            health.not_ready("proof parameters", format!("{e:#}"));
            false
        }
    }
}

/// Keeps the storage gauges current.
async fn watch_storage(storage: Arc<SectorStorage>, metrics: Metrics, cancel: CancellationToken) {
    loop {
        for (path, free, reserved) in storage.usage() {
            let label = path.display().to_string();
            metrics
                .storage_free_bytes
                .with_label_values(&[label.as_str()])
                .set(free.min(i64::MAX as u64) as i64);
            metrics
                .storage_reserved_bytes
                .with_label_values(&[label.as_str()])
                .set(reserved.min(i64::MAX as u64) as i64);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Keeps `chain` in the health report: ready while it answers, retried with capped backoff
/// while it does not. The hub never exits because the chain is away.
async fn watch_chain(
    chain: ChainClient,
    health: Health,
    connected: IntGauge,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let delay = match chain.rpc.call::<Version>(()).await {
            Ok(_) => {
                if connected.get() == 0 {
                    tracing::info!(url = %chain.rpc.url(), "chain connected");
                }
                connected.set(1);
                health.ready("chain");
                backoff.reset();
                CHAIN_CHECK_INTERVAL
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if connected.get() == 1 || backoff.attempts() == 1 {
                    tracing::warn!(url = %chain.rpc.url(), error = %e, retry_in = ?delay, "chain unreachable");
                }
                connected.set(0);
                health.not_ready("chain", e.to_string());
                delay
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
