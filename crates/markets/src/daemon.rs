//! `nelumbo-markets run`: the libp2p host, the deals, the admin API with health and metrics,
//! and the link to the hub, until SIGTERM. The hub being away never stops the process: deals
//! wait in the step that needs it and `/health/ready` says so.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use fvm_shared::address::Address;
use nelumbo_markets_api::admin::MarketsInfo;
use nelumbo_miner_api::methods::{SpokeHeartbeat, SubscribeEvents};
use nelumbo_miner_api::types::{HubEvent, SpokeHello};
use nelumbo_rpc::{ApiInfo, Permission, ServerConfig, TokenSecret, rpc_router};
use nelumbo_service::{Backoff, Health, ops_router, shutdown_on_signals, stop_step};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiState, module};
use crate::ask::AskBook;
use crate::config::Config;
use crate::deals::{Deals, DealsSetup};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::p2p::Protocols;
use crate::repo::Repo;
use crate::store::{AsyncStore, Store};

/// The services a markets process can run.
pub const SERVICES: [&str; 3] = ["deals", "retrieval", "indexing"];

/// Parses `--services`: names from [`SERVICES`], comma-separated.
pub fn parse_services(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !SERVICES.contains(&name) {
            return Err(format!(
                "unknown service {name:?}: the services are {}",
                SERVICES.join(", ")
            ));
        }
        if !out.iter().any(|s| s == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err(format!(
            "name at least one service of {}",
            SERVICES.join(", ")
        ));
    }
    Ok(out)
}

pub async fn run(repo: Repo, services: Vec<String>) -> anyhow::Result<()> {
    let _lock = nelumbo_service::lock_repo(&repo.dir, "nelumbo-markets")?;
    let settings = Config::load(&repo.config())?.settings()?;
    let key = repo.load_identity()?;
    let peer_id = key.public().to_peer_id();
    let miner_record = repo.miner_record()?;
    let miner: Address = miner_record
        .actor
        .parse::<Address>()
        .map_err(|e| anyhow::anyhow!("miner.json: {e}"))?;
    let retrieval_on = services.iter().any(|s| s == "retrieval");
    let indexing_on = services.iter().any(|s| s == "indexing");
    anyhow::ensure!(
        !indexing_on || retrieval_on,
        "--services: indexing publishes its advertisements on the retrieval listener and \
         advertises what retrieval serves here: run it with retrieval"
    );

    let health = Health::default();
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    metrics
        .staging_max_bytes
        .set(i64::try_from(settings.deals.staging_max_bytes).unwrap_or(i64::MAX));
    let hub = Hub::new(
        &repo.hub_connection()?,
        health.clone(),
        metrics.hub_connected.clone(),
    )?;
    let store = Arc::new(Store::open(&repo.database())?);
    let directory = open_directory(
        &settings.database,
        repo.piece_directory(),
        store.clone(),
        &health,
    )
    .await?;
    let store = AsyncStore::new(store, directory);
    let staging = settings
        .deals
        .staging_dir
        .clone()
        .unwrap_or_else(|| repo.default_staging());
    check_staging(&staging, &health);
    let cancel = CancellationToken::new();
    let piece_cache = if retrieval_on {
        let dir = settings
            .retrieval
            .cache_dir
            .clone()
            .unwrap_or_else(|| repo.dir.join("piece-cache"));
        let max = settings.retrieval.cache_max_bytes;
        Some(Arc::new(
            tokio::task::spawn_blocking(move || {
                crate::retrieval::cache::PieceCache::open(&dir, max)
            })
            .await??,
        ))
    } else {
        None
    };
    let worker_list = nelumbo_service::Workers::default();
    let deals = Deals::new(
        DealsSetup {
            store: store.clone(),
            hub: hub.clone(),
            config: settings.deals.clone(),
            transfer_allow: settings.transfer_allow.clone(),
            max_provider_collateral: settings.max_provider_collateral.clone(),
            staging,
            metrics: metrics.clone(),
            piece_cache: piece_cache.clone(),
            worker_list: worker_list.clone(),
        },
        cancel.clone(),
    )?;
    let asks = Arc::new(AskBook::load(
        store.blocking(),
        settings.ask.clone(),
        miner,
    )?);

    // The public side.
    let signing_key = key.clone();
    let limits = settings.network.limits.clone();
    let mut swarm = nelumbo_markets_api::p2p::build_swarm(
        key,
        &format!("nelumbo-markets/{}", env!("CARGO_PKG_VERSION")),
        nelumbo_markets_api::p2p::Serve {
            deals: services.iter().any(|s| s == "deals"),
            retrieval: retrieval_on,
            bitswap: retrieval_on,
        },
        nelumbo_markets_api::p2p::Limits {
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            max_connections_per_peer: limits.max_connections_per_peer,
            max_pending_connections: limits.max_pending_connections,
        },
    )
    .map_err(|e| anyhow::anyhow!("start libp2p: {e}"))?;
    for addr in &settings.network.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listen on {addr} ([network] listen)"))?;
    }
    let public = crate::init::public_addrs(&settings.network.announce, &settings.network.listen);

    // Retrieval's public listener.
    let retrieval = match &piece_cache {
        Some(cache) => {
            let listener = tokio::net::TcpListener::bind(settings.retrieval.listen)
                .await
                .with_context(|| {
                    format!(
                        "listen on {} ([retrieval] listen)",
                        settings.retrieval.listen
                    )
                })?;
            let local = listener.local_addr()?;
            let url = settings
                .public_url
                .clone()
                .unwrap_or_else(|| crate::retrieval::server::default_public_url(local));
            Some((listener, url, cache.clone()))
        }
        None => None,
    };
    let mut transports = nelumbo_markets_api::wire::TransportsResponse {
        protocols: retrieval
            .iter()
            .filter_map(|(_, url, _)| {
                let addr = nelumbo_markets_api::wire::http_multiaddr(&url.parse().ok()?)?;
                Some(nelumbo_markets_api::wire::TransportProtocol {
                    name: "http".into(),
                    addresses: vec![addr.to_vec().into()],
                })
            })
            .collect(),
    };
    if retrieval.is_some() {
        // Bitswap is served on this host: its public addresses with the peer ID.
        transports
            .protocols
            .push(nelumbo_markets_api::wire::TransportProtocol {
                name: "bitswap".into(),
                addresses: public
                    .iter()
                    .map(|a| {
                        a.clone()
                            .with_p2p(peer_id)
                            .unwrap_or_else(|a| a)
                            .to_vec()
                            .into()
                    })
                    .collect(),
            });
    }
    let indexing = match (&retrieval, indexing_on) {
        (Some((_, url, _)), true) => {
            let http = url
                .parse()
                .ok()
                .and_then(|u| nelumbo_markets_api::wire::http_multiaddr(&u))
                .with_context(|| {
                    format!("the retrieval URL {url} cannot be written as an http multiaddr")
                })?;
            let mut addresses = vec![http.to_string()];
            addresses.extend(public.iter().map(|a| a.to_string()));
            use crate::indexing::ipni::Transport;
            Some(crate::indexing::Indexing::new(
                store.clone(),
                hub.clone(),
                signing_key,
                crate::indexing::Provider {
                    addresses,
                    metadata: crate::indexing::ipni::metadata(&[
                        Transport::Bitswap,
                        Transport::IpfsGatewayHttp,
                        Transport::FilecoinPieceHttp,
                    ]),
                    publisher_addrs: vec![http],
                },
                settings.indexing.clone(),
                crate::indexing::IndexingMetrics::new(&registry)?,
                deals.0.changes.clone(),
            )?)
        }
        _ => None,
    };
    let stream_control = swarm.behaviour().stream.new_control();
    let bitswap_inbound = swarm.behaviour_mut().bitswap.take();
    let bitswap_dropped = swarm.behaviour().bitswap.dropped();

    // The admin API, health and metrics.
    let secret = TokenSecret::load_or_create(&repo.token_secret())?;
    nelumbo_service::write_private(&repo.token(), &secret.create_token(Permission::Admin))?;
    let info = MarketsInfo {
        peer_id: peer_id.to_string(),
        listen_addrs: public.iter().map(|a| a.to_string()).collect(),
        services: services.clone(),
        miner: miner.to_string(),
        hub_connected: false,
        retrieval_url: retrieval.as_ref().map(|(_, url, _)| url.clone()),
    };
    let router = rpc_router(
        module(ApiState {
            deals: deals.clone(),
            asks: asks.clone(),
            info: Arc::new(info),
            indexing: indexing.clone(),
            workers: worker_list.clone(),
        }),
        ServerConfig {
            secret,
            anonymous: None,
            max_request_bytes: 1 << 20,
        },
    )
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
        peer = %peer_id,
        miner = %miner,
        api = %format!("http://{local}/rpc/v1"),
        services = %services.join(","),
        "nelumbo-markets is running"
    );
    if let Some(state) = crate::deals::panic_failpoint() {
        tracing::warn!(
            %state,
            "{} is set: deal steps in this state panic (testing only)",
            crate::deals::PANIC_FAILPOINT
        );
    }

    shutdown_on_signals(cancel.clone());
    let cancel_retrieval = cancel.clone();
    deals.resume_all().await?;
    let protocols = Protocols {
        deals: deals.clone(),
        asks: asks.clone(),
        limits: crate::p2p::RequestLimits::new(&limits),
        miner,
        sector_size: miner_record.sector_size,
        transports,
    };
    let hello = SpokeHello {
        id: peer_id.to_string(),
        services: services.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        public_addrs: public.iter().map(|a| a.to_string()).collect(),
        deals: Default::default(),
    };
    let mut tasks = vec![
        tokio::spawn(crate::p2p::serve(swarm, protocols, cancel.clone())),
        tokio::spawn(heartbeat(
            hub.clone(),
            hello,
            peer_id,
            // Only a process that takes deals (clients dial the peer ID on chain) or signs
            // IPNI advertisements (indexers check the signer against it) keeps the miner's
            // peer info on chain: a retrieval replica's identity is neither.
            if services.iter().any(|s| s == "deals" || s == "indexing") {
                public
            } else {
                Vec::new()
            },
            asks.clone(),
            services.iter().any(|s| s == "deals").then(|| deals.clone()),
            cancel.clone(),
        )),
        tokio::spawn(follow_events(hub.clone(), deals.clone(), cancel.clone())),
        tokio::spawn(deals.clone().run_janitor(cancel.clone())),
    ];
    if let Some((listener, url, cache)) = retrieval {
        let r = &settings.retrieval;
        let retrieval_metrics = crate::retrieval::metrics::RetrievalMetrics::new(&registry)?;
        let reader = Arc::new(crate::retrieval::reader::PieceReader::new(
            cache.clone(),
            hub.clone(),
            retrieval_metrics.clone(),
            Duration::from_secs(r.wait_secs),
            r.max_unseals,
        ));
        let info = serde_json::json!({
            "Version": env!("CARGO_PKG_VERSION"),
            "Server": "nelumbo-markets",
            "Miner": miner.to_string(),
            "PeerID": peer_id.to_string(),
            "Routes": ["/piece/{pieceCid}", "/ipfs/{cid}"],
        });
        let service = Arc::new(crate::retrieval::Retrieval::new(
            r,
            reader,
            store.clone(),
            retrieval_metrics.clone(),
            info,
        ));
        // Public: readiness without its reasons (they name the hub's address).
        let (block_source, denylist) = (service.block_source(), service.denylist());
        let mut router = service.router().merge(nelumbo_service::public_ops_router(
            health.clone(),
            registry.clone(),
        ));
        if let Some(indexing) = &indexing {
            router = router.merge(crate::indexing::publisher::router(indexing.clone()));
            tasks.push(tokio::spawn(
                indexing.clone().run(worker_list.clone(), cancel.clone()),
            ));
            tracing::info!(
                indexers = %settings.indexing.indexers.join(","),
                "indexing: advertising live deals to IPNI, published at {url}/ipni/v1/ad/head"
            );
        }
        let limits = crate::retrieval::server::ServerLimits {
            max_connections: r.max_connections,
            max_connections_per_ip: r.max_connections_per_ip,
            header_timeout: Duration::from_secs(r.header_timeout_secs),
            idle_timeout: Duration::from_secs(r.idle_timeout_secs),
            min_send_bytes: r.min_send_bytes,
            send_window: Duration::from_secs(r.send_window_secs),
        };
        let bitswap = crate::retrieval::bitswap::BitswapServer::new(
            block_source,
            denylist,
            crate::retrieval::bitswap::BitswapLimits {
                max_peers: r.bitswap_max_peers,
                max_wants_per_peer: r.bitswap_max_wants_per_peer,
                message_bytes: r.bitswap_message_bytes,
                max_reads: r.bitswap_max_reads,
                peer_bytes: r.bitswap_peer_bytes,
            },
            crate::retrieval::bitswap::BitswapMetrics::new(&registry)?,
        );
        let cancel_bitswap = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let inbound = bitswap_inbound
                .ok_or_else(|| anyhow::anyhow!("bitswap's streams were taken twice"));
            let run = async {
                bitswap
                    .run(inbound?, bitswap_dropped, stream_control, cancel_bitswap)
                    .await
            };
            if let Err(e) = run.await {
                tracing::error!(error = %format!("{e:#}"), "bitswap cannot be served");
            }
        }));
        tracing::info!(url = %url, cache = %format!("{} of {} bytes", cache.usage().0, cache.max_bytes()), "retrieval is serving /piece and /ipfs, and bitswap on the libp2p host");
        tasks.push(tokio::spawn(crate::retrieval::server::serve(
            listener,
            router,
            limits,
            retrieval_metrics.clone(),
            cancel.clone(),
            Duration::from_secs(5),
        )));
        tasks.push(tokio::spawn(async move {
            // The cache's size as a gauge.
            loop {
                let (bytes, pieces) = cache.usage();
                retrieval_metrics.cache_bytes.set(bytes as i64);
                retrieval_metrics.cache_pieces.set(pieces as i64);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = cancel_retrieval.cancelled() => return,
                }
            }
        }));
    }
    let shutdown = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    cancel.cancelled().await;
    // In order, each bounded: the public side and background tasks (deal tasks stop where
    // they are; their state is on disk), then the admin API.
    stop_step(
        "libp2p and background work",
        Duration::from_secs(10),
        async {
            for task in tasks {
                let _ = task.await;
            }
        },
    )
    .await;
    stop_step("admin API", Duration::from_secs(5), async {
        if let Ok(Err(e)) = server.await {
            tracing::warn!(error = %e, "the admin API ended with an error");
        }
    })
    .await;
    let _ = std::fs::remove_file(repo.api());
    tracing::info!("nelumbo-markets stopped");
    Ok(())
}

fn check_staging(staging: &std::path::Path, health: &Health) {
    match nelumbo_service::check_writable(staging) {
        Ok(()) => health.ready("staging"),
        Err(e) => {
            tracing::error!(path = %staging.display(), error = %e, "staging is not writable");
            health.not_ready(
                "staging",
                format!("{} is not writable: {e}", staging.display()),
            );
        }
    }
}

/// Tells the hub this spoke is alive, keeps the miner's peer info on chain in step with this
/// process's identity and addresses, and has the hub sign the ask (deals are held to the ask
/// the hub signed): each checked once per connection to the hub.
async fn heartbeat(
    hub: Hub,
    hello: SpokeHello,
    peer: libp2p::PeerId,
    public: Vec<libp2p::Multiaddr>,
    asks: Arc<AskBook>,
    deals: Option<Deals>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut peer_info_set = false;
    let mut ask_signed = false;
    let mut hello = hello;
    loop {
        if let Some(deals) = &deals {
            hello.deals = deals.state_counts();
        }
        let delay = match hub.call::<SpokeHeartbeat>((hello.clone(),)).await {
            Ok(ack) => {
                backoff.reset();
                if !ask_signed {
                    match asks.signed(&hub).await {
                        Ok(_) => ask_signed = true,
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "the hub cannot sign the ask yet")
                        }
                    }
                }
                if !peer_info_set && !public.is_empty() {
                    match crate::init::set_peer_info(&hub.rpc, &peer, &public).await {
                        Ok(changed) => {
                            peer_info_set = true;
                            if changed {
                                tracing::info!(%peer, "the miner's peer ID and addresses are now on chain");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "cannot set the miner's peer info yet")
                        }
                    }
                }
                Duration::from_secs(ack.heartbeat_secs.max(1))
            }
            Err(e) => {
                if backoff.attempts() == 0 && !matches!(e, crate::hub::HubError::Unreachable(_)) {
                    tracing::error!(error = %e, "the hub refuses this spoke's heartbeat");
                }
                peer_info_set = false;
                ask_signed = false;
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Follows the hub's events: sector changes wake the deals that follow their sectors.
async fn follow_events(hub: Hub, deals: Deals, cancel: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        match hub.rpc.subscribe::<SubscribeEvents>(()).await {
            Ok(mut events) => {
                backoff.reset();
                loop {
                    let event = tokio::select! {
                        _ = cancel.cancelled() => return,
                        event = events.next() => event,
                    };
                    match event {
                        Some(Ok(HubEvent::SectorState { .. } | HubEvent::DealActivated { .. })) => {
                            deals.0.sector_news.notify_waiters();
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to hub events yet"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Opens the piece directory (and moves an older repo's index into it). A database that cannot
/// be reached is waited for, with capped backoff and a log line each try: it may be starting
/// with this process. Any other error (a refused password, a schema that needs
/// `db migrate`) stops the start.
async fn open_directory(
    database: &crate::config::DatabaseConfig,
    embedded_path: std::path::PathBuf,
    store: Arc<Store>,
    health: &Health,
) -> anyhow::Result<crate::directory::Directory> {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let (database, path, store) = (database.clone(), embedded_path.clone(), store.clone());
        let health_now = health.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let directory = crate::directory::open(&database, &path, &health_now)?;
            crate::directory::move_legacy_index(&store, directory.as_ref())?;
            anyhow::Ok(directory)
        })
        .await?;
        match opened {
            Ok(directory) => {
                tracing::info!(backend = directory.backend(), "piece directory open");
                return Ok(directory);
            }
            Err(e) if nelumbo_piecedir::is_transient(&e) => {
                health.not_ready(
                    crate::directory::HEALTH_CHECK,
                    format!("unreachable: {e:#}"),
                );
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = %format!("{e:#}"),
                    retry_in_secs = delay.as_secs(),
                    "the database is unreachable; waiting for it"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_and_unknown_names_list_the_valid_ones() {
        assert_eq!(
            parse_services("deals, retrieval,deals").expect("valid"),
            vec!["deals", "retrieval"]
        );
        let error = parse_services("deals,storage").expect_err("unknown");
        assert!(
            error.contains("\"storage\"") && error.contains("deals, retrieval, indexing"),
            "{error}"
        );
        assert!(parse_services(" , ").is_err());
    }
}
