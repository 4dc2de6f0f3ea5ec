//! The public libp2p side: the deal, status and ask protocols. Each request is answered by its
//! own task, so a slow check (the hub, the client's URL) never holds up the others.
//!
//! Bounded: one peer may have `[network] max_requests_per_peer` requests in flight and at most
//! `max_proposals_in_check` proposals are checked at once; beyond, the answer is "busy, try
//! again" at once, before any work. (Connections are bounded by the host, see
//! `nelumbo_markets_api::p2p::Limits`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use fvm_shared::address::Address;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm};
use nelumbo_chain_api::Addr;
use nelumbo_markets_api::admin::DealState;
use nelumbo_markets_api::p2p::{MarketsBehaviour, MarketsBehaviourEvent};
use nelumbo_markets_api::wire::{
    AskRequest, AskResponse, DealParams, DealResponse, DealStatusRequest, DealStatusResponse,
};
use nelumbo_miner_api::methods::StateAccountKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ask::AskBook;
use crate::deals::checks::{CheckContext, check_proposal, run_filter};
use crate::deals::{DealRecord, Deals};

/// What answering needs.
#[derive(Debug, Clone)]
pub struct Protocols {
    pub deals: Deals,
    pub asks: Arc<AskBook>,
    pub limits: RequestLimits,
    pub miner: Address,
    pub sector_size: u64,
    /// The answer to `/fil/retrieval/transports/1.0.0`.
    pub transports: nelumbo_markets_api::wire::TransportsResponse,
}

/// Requests in flight per peer, and proposals being checked.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    per_peer: Arc<Mutex<HashMap<PeerId, usize>>>,
    max_per_peer: usize,
    checks: Arc<Semaphore>,
}

/// A request counted against its peer until dropped.
struct InFlight {
    per_peer: Arc<Mutex<HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut per_peer = self
            .per_peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_peer.remove(&self.peer);
            }
        }
    }
}

impl RequestLimits {
    pub fn new(limits: &crate::config::ConnectionLimits) -> Self {
        Self {
            per_peer: Arc::default(),
            max_per_peer: limits.max_requests_per_peer,
            checks: Arc::new(Semaphore::new(limits.max_proposals_in_check)),
        }
    }

    fn enter(&self, peer: PeerId) -> Option<InFlight> {
        let mut per_peer = self
            .per_peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = per_peer.entry(peer).or_default();
        if *n >= self.max_per_peer {
            return None;
        }
        *n += 1;
        Some(InFlight {
            per_peer: self.per_peer.clone(),
            peer,
        })
    }

    fn check_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.checks.clone().try_acquire_owned().ok()
    }
}

/// The answer to a proposal that arrives when a limit is reached.
fn busy(p: &Protocols, limit: &str) -> DealResponse {
    p.deals.0.metrics.busy.with_label_values(&[limit]).inc();
    DealResponse {
        message: "provider is busy: too many requests at once; try again later".into(),
        accepted: false,
    }
}

enum Answer {
    Deal(ResponseChannel<DealResponse>, DealResponse),
    Status(ResponseChannel<DealStatusResponse>, Box<DealStatusResponse>),
    Ask(ResponseChannel<AskResponse>, Box<AskResponse>),
    Transports(
        ResponseChannel<nelumbo_markets_api::wire::TransportsResponse>,
        nelumbo_markets_api::wire::TransportsResponse,
    ),
}

/// Runs the host until `cancel`.
pub async fn serve(
    mut swarm: Swarm<MarketsBehaviour>,
    protocols: Protocols,
    cancel: CancellationToken,
) {
    let (answers_tx, mut answers) = mpsc::channel::<Answer>(256);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(answer) = answers.recv() => {
                let behaviour = swarm.behaviour_mut();
                let sent = match answer {
                    Answer::Deal(channel, response) => behaviour.deal.send_response(channel, response).is_ok(),
                    Answer::Status(channel, response) => behaviour.status.send_response(channel, *response).is_ok(),
                    Answer::Ask(channel, response) => behaviour.ask.send_response(channel, *response).is_ok(),
                    Answer::Transports(channel, response) => behaviour.transports.send_response(channel, response).is_ok(),
                };
                if !sent {
                    tracing::debug!("a client went away before its answer");
                }
            }
            event = swarm.select_next_some() => {
                if matches!(event, SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. }) {
                    let open = swarm.network_info().connection_counters().num_established();
                    protocols.deals.0.metrics.connections.set(i64::from(open));
                }
                handle(event, &protocols, &answers_tx)
            }
        }
    }
}

fn handle(
    event: SwarmEvent<MarketsBehaviourEvent>,
    protocols: &Protocols,
    answers: &mpsc::Sender<Answer>,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            tracing::info!(%address, "libp2p listening");
        }
        SwarmEvent::Behaviour(MarketsBehaviourEvent::Deal(request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        })) => {
            let (p, answers) = (protocols.clone(), answers.clone());
            let in_flight = protocols.limits.enter(peer);
            let slot = protocols.limits.check_slot();
            tokio::spawn(async move {
                let response = match (in_flight, slot) {
                    (None, _) => busy(&p, "per_peer"),
                    (_, None) => busy(&p, "proposals_in_check"),
                    (Some(_in_flight), Some(_slot)) => propose(&p, peer, request).await,
                };
                let _ = answers.send(Answer::Deal(channel, response)).await;
            });
        }
        SwarmEvent::Behaviour(MarketsBehaviourEvent::Status(
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            },
        )) => {
            let (p, answers) = (protocols.clone(), answers.clone());
            let in_flight = protocols.limits.enter(peer);
            tokio::spawn(async move {
                let response = match in_flight {
                    None => {
                        p.deals
                            .0
                            .metrics
                            .busy
                            .with_label_values(&["per_peer"])
                            .inc();
                        DealStatusResponse::error(
                            request.deal_uuid,
                            "provider is busy: too many requests at once; try again later",
                        )
                    }
                    Some(_in_flight) => status(&p, request).await,
                };
                let _ = answers
                    .send(Answer::Status(channel, Box::new(response)))
                    .await;
            });
        }
        SwarmEvent::Behaviour(MarketsBehaviourEvent::Ask(request_response::Event::Message {
            peer,
            message:
                request_response::Message::Request {
                    request, channel, ..
                },
            ..
        })) => {
            let (p, answers) = (protocols.clone(), answers.clone());
            let in_flight = protocols.limits.enter(peer);
            tokio::spawn(async move {
                let response = match in_flight {
                    None => {
                        p.deals
                            .0
                            .metrics
                            .busy
                            .with_label_values(&["per_peer"])
                            .inc();
                        AskResponse { ask: None }
                    }
                    Some(_in_flight) => ask(&p, request).await,
                };
                let _ = answers.send(Answer::Ask(channel, Box::new(response))).await;
            });
        }
        SwarmEvent::Behaviour(MarketsBehaviourEvent::Transports(
            request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            },
        )) => {
            // Nothing to look up: queued for the swarm at once (dropped if the queue is full;
            // the client then sees the stream close and may ask again).
            let _ = answers.try_send(Answer::Transports(channel, protocols.transports.clone()));
        }
        SwarmEvent::Behaviour(MarketsBehaviourEvent::Deal(
            request_response::Event::InboundFailure { peer, error, .. },
        )) => {
            tracing::info!(%peer, %error, "a deal proposal could not be read or answered");
        }
        _ => {}
    }
}

/// `/fil/storage/mk/1.2.x`.
pub async fn propose(p: &Protocols, peer: PeerId, params: DealParams) -> DealResponse {
    let uuid = uuid::Uuid::from_bytes(params.deal_uuid).to_string();
    let deals = &p.deals.0;
    let proposal_cid = nelumbo_markets_api::wire::signed_proposal_cid(&params.client_deal_proposal)
        .map(|c| c.to_string())
        .unwrap_or_default();
    // The same proposal again (a client retrying) gets the same answer.
    match deals.store.deal(&uuid).await {
        Ok(Some(existing)) if existing.proposal_cid == proposal_cid => return accepted(),
        Ok(Some(existing)) => {
            return rejected(
                p,
                "duplicate",
                format!(
                    "deal has the same uuid as deal {} (proposed at {})",
                    existing.uuid, existing.created_at
                ),
            );
        }
        Ok(None) => {}
        Err(e) => return rejected(p, "server", format!("server error: {e:#}")),
    }
    // The same signed proposal under another UUID would be one deal on chain for two records.
    if let Ok(Some(twin)) = deals.store.deal_by_proposal(&proposal_cid).await {
        return rejected(
            p,
            "duplicate",
            format!(
                "deal proposal is identical to deal {} (proposed at {})",
                twin.uuid, twin.created_at
            ),
        );
    }
    let ask = p.asks.ask();
    let cx = CheckContext {
        miner: p.miner,
        sector_size: p.sector_size,
        ask: &ask,
        config: &deals.config,
        max_provider_collateral: &deals.max_provider_collateral,
        hub: &deals.hub,
        http: &deals.http,
        guard: &deals.guard,
    };
    let source = match check_proposal(&params, &cx).await {
        Ok(source) => source,
        Err(r) => {
            tracing::info!(deal_uuid = %uuid, %peer, reason = r.reason, detail = %r.message, "deal rejected");
            return rejected(p, r.reason, format!("failed validation: {}", r.message));
        }
    };
    if !deals.config.filter.is_empty()
        && let Err(r) = run_filter(&deals.config.filter, &params).await
    {
        tracing::info!(deal_uuid = %uuid, %peer, detail = %r.message, "deal rejected by the filter");
        return rejected(p, r.reason, r.message);
    }
    let record = match DealRecord::new(&params, source) {
        Ok(record) => record,
        Err(e) => return rejected(p, "server", format!("server error: {e:#}")),
    };
    let message = format!(
        "accepted from peer {peer}: piece {} ({} bytes), client {}, {}",
        record.piece_cid,
        record.piece_size,
        record.client,
        if record.is_offline {
            "offline (waiting for `deals import-data`)".to_string()
        } else {
            format!(
                "{} bytes from {}",
                record.transfer_size,
                record.source.as_ref().map_or("", |s| s.url.as_str())
            )
        }
    );
    // Staging is held for the deal from here (checked and taken at once); released if the
    // deal is not stored after all.
    if let Err(why) = p.deals.hold_staging(&uuid, record.transfer_size) {
        tracing::info!(deal_uuid = %uuid, %peer, detail = %why, "deal rejected: staging");
        return rejected(p, "staging_space", why);
    }
    let inserted = deals.store.insert_new(&record, &message).await;
    if !matches!(inserted, Ok(None)) {
        p.deals.forget_holding(&uuid);
    }
    match inserted {
        Ok(None) => {
            tracing::info!(deal_uuid = %uuid, "{message}");
            p.deals.track(&record);
            p.deals.spawn(&uuid);
            accepted()
        }
        Ok(Some(existing)) if existing.uuid == uuid && existing.proposal_cid == proposal_cid => {
            accepted()
        }
        Ok(Some(existing)) if existing.uuid == uuid => rejected(
            p,
            "duplicate",
            format!(
                "deal has the same uuid as deal {} (proposed at {})",
                existing.uuid, existing.created_at
            ),
        ),
        Ok(Some(existing)) => rejected(
            p,
            "duplicate",
            format!(
                "deal proposal is identical to deal {} (proposed at {})",
                existing.uuid, existing.created_at
            ),
        ),
        Err(e) => rejected(p, "server", format!("server error: {e:#}")),
    }
}

fn accepted() -> DealResponse {
    DealResponse {
        message: String::new(),
        accepted: true,
    }
}

fn rejected(p: &Protocols, reason: &str, message: String) -> DealResponse {
    p.deals
        .0
        .metrics
        .rejections
        .with_label_values(&[reason])
        .inc();
    DealResponse {
        message,
        accepted: false,
    }
}

/// `/fil/storage/status/1.2.0`: only the deal's client may ask.
pub async fn status(p: &Protocols, request: DealStatusRequest) -> DealStatusResponse {
    let uuid = uuid::Uuid::from_bytes(request.deal_uuid);
    let deals = &p.deals.0;
    let record = match deals.store.deal(&uuid.to_string()).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return DealStatusResponse::error(
                request.deal_uuid,
                format!("no storage deal found with deal UUID {uuid}"),
            );
        }
        Err(_) => {
            return DealStatusResponse::error(request.deal_uuid, "failed to fetch deal status");
        }
    };
    let Ok(client) = record.client.parse::<Address>().map(Addr) else {
        return DealStatusResponse::error(request.deal_uuid, "failed to fetch deal status");
    };
    let key = match deals.hub.call::<StateAccountKey>((client.clone(),)).await {
        Ok(key) => key,
        Err(_) => {
            return DealStatusResponse::error(
                request.deal_uuid,
                format!(
                    "failed to get account key for client addr {}",
                    record.client
                ),
            );
        }
    };
    if nelumbo_keys::verify(&request.signature, uuid.as_bytes(), &key.0).is_err() {
        return DealStatusResponse::error(request.deal_uuid, "signature verification failed");
    }
    let announced = if record.state == DealState::Sealing {
        let piece = record.piece_cid.clone();
        deals
            .store
            .run(move |s| crate::indexing::Indexing::announced(s, &piece))
            .await
            .unwrap_or(false)
    } else {
        false
    };
    match record.status(announced) {
        Ok(status) => DealStatusResponse {
            error: String::new(),
            deal_uuid: request.deal_uuid,
            is_offline: record.is_offline,
            deal_status: Some(status),
            transfer_size: record.transfer_size,
            n_bytes_received: p.deals.bytes_received(&record),
        },
        Err(_) => DealStatusResponse::error(request.deal_uuid, "failed to fetch deal status"),
    }
}

/// `/fil/storage/ask/1.1.0`.
pub async fn ask(p: &Protocols, request: AskRequest) -> AskResponse {
    if request.miner != p.miner {
        return AskResponse { ask: None };
    }
    match p.asks.signed(&p.deals.0.hub).await {
        Ok(signed) => AskResponse { ask: Some(signed) },
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot sign the ask (the hub signs it)");
            AskResponse { ask: None }
        }
    }
}
