//! The hub API's handlers: one per method of `nelumbo_miner_api::methods`.

use std::collections::BTreeMap;
use std::sync::Arc;

use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::methods::{
    self as chain, StateMinerDeadlines, StateMinerInfo, StateMinerPartitions,
    StateMinerProvingDeadline,
};
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_chain_api::{Addr, Base64};
use nelumbo_miner_api::ApiError;
use nelumbo_miner_api::error::from_chain_error;
use nelumbo_miner_api::methods::*;
use nelumbo_miner_api::types::{
    self, DeadlineSummary, HubMinerInfo, HubVersion, SectorBrief, SpokeAck,
};
use nelumbo_rpc::{RpcError, RpcModule};

use crate::chain::ChainClient;
use crate::db::Db;
use crate::deals::Publisher;
use crate::events::Events;
use crate::proving::Proving;
use crate::reads::PieceReads;
use crate::sealing::Sealing;
use crate::spokes::{HEARTBEAT_SECS, MinerKeys, Spokes};

/// What handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub miner: Arc<HubMinerInfo>,
    pub chain: ChainClient,
    pub db: Arc<Db>,
    pub sealing: Sealing,
    pub proving: Proving,
    pub events: Events,
    pub spokes: Spokes,
    pub publisher: Publisher,
    pub reads: Arc<PieceReads>,
    /// `[deals] min_price` and `min_verified_price`: floors under any ask the hub signs.
    pub ask_floors: Arc<(TokenAmount, TokenAmount)>,
    /// `[spokes] peer_info_min_interval_secs`.
    pub peer_info_min_interval_secs: u64,
    pub workers: nelumbo_service::Workers,
}

impl ApiState {
    fn keys(&self) -> MinerKeys {
        MinerKeys {
            actor: self.miner.actor,
            worker: self.miner.worker,
        }
    }
}

fn internal(e: anyhow::Error) -> RpcError {
    RpcError::failed(format!("{e:#}"))
}

/// A chain call's failure as the hub's callers see it: "unavailable, call again" when the chain
/// is away or slow, a refusal when it answered with an error.
fn chain_error(e: nelumbo_rpc::ClientError) -> RpcError {
    from_chain_error("ask the chain", &e).into()
}

/// An error from a step that may have been a chain call.
fn step_error(e: anyhow::Error) -> RpcError {
    if crate::chain::is_transient(&e) {
        ApiError::unavailable(format!(
            "the hub's chain node is away or slow ({e:#}); call again later"
        ))
        .into()
    } else {
        internal(e)
    }
}

/// Every deadline of the miner's proving period, from the chain.
async fn deadlines(s: &ApiState) -> Result<Vec<DeadlineSummary>, RpcError> {
    let miner = Addr(s.miner.actor);
    let current = s
        .chain
        .rpc
        .call::<StateMinerProvingDeadline>((miner.clone(), TipSetKey::head()))
        .await
        .map_err(chain_error)?;
    let posted = s
        .chain
        .rpc
        .call::<StateMinerDeadlines>((miner.clone(), TipSetKey::head()))
        .await
        .map_err(chain_error)?;
    let mut out = Vec::new();
    for index in 0..current.wpost_period_deadlines {
        let partitions = s
            .chain
            .rpc
            .call::<StateMinerPartitions>((miner.clone(), index, TipSetKey::head()))
            .await
            .map_err(chain_error)?;
        let count = |f: fn(&nelumbo_chain_api::types::Partition) -> u64| {
            partitions.iter().map(f).sum::<u64>()
        };
        let ahead = (index + current.wpost_period_deadlines - current.index)
            % current.wpost_period_deadlines;
        let proven = posted
            .get(index as usize)
            .is_some_and(|d| !d.post_submissions.is_empty());
        out.push(DeadlineSummary {
            index,
            open: crate::proving::occurrence(&current, ahead).open,
            partitions: partitions.len() as u64,
            live_sectors: count(|p| p.live_sectors.len()),
            faulty_sectors: count(|p| p.faulty_sectors.len()),
            recovering_sectors: count(|p| p.recovering_sectors.len()),
            proven,
            current: index == current.index,
        });
    }
    Ok(out)
}

pub fn module(state: ApiState) -> RpcModule<ApiState> {
    let mut module = RpcModule::new(nelumbo_miner_api::API_TITLE, state);
    module
        .register::<Version, _, _>(|_, ()| async move {
            Ok(HubVersion {
                version: format!("nelumbo-miner {}", env!("CARGO_PKG_VERSION")),
                api_version: nelumbo_miner_api::API_VERSION,
            })
        })
        .register::<ActorAddress, _, _>(|s, ()| async move { Ok(Addr(s.miner.actor)) })
        .register::<MinerInfo, _, _>(|s, ()| async move { Ok((*s.miner).clone()) })
        .register::<ActorSectorSize, _, _>(|s, (miner,)| async move {
            if miner.0 == s.miner.actor {
                return Ok(s.miner.sector_size);
            }
            let info = s
                .chain
                .rpc
                .call::<StateMinerInfo>((miner, TipSetKey::head()))
                .await
                .map_err(|e| RpcError::failed(format!("ask the chain: {e}")))?;
            Ok(info.sector_size)
        })
        .register::<SectorsPledge, _, _>(|s, ()| async move {
            s.sealing.pledge().await.map_err(step_error)
        })
        .register::<SectorsStatus, _, _>(|s, (number,)| async move {
            s.sealing
                .sector(number)
                .map_err(internal)?
                .map(|r| r.status())
                .ok_or_else(|| RpcError::failed(format!("sector {number} is unknown to this hub")))
        })
        .register::<SectorsList, _, _>(|s, ()| async move {
            Ok(s.sealing
                .sectors()
                .map_err(internal)?
                .into_iter()
                .map(|r| SectorBrief {
                    number: r.number,
                    state: r.state,
                    last_error: r.last_error,
                })
                .collect())
        })
        .register::<SectorsSummary, _, _>(|s, ()| async move {
            let mut counts = BTreeMap::new();
            for r in s.sealing.sectors().map_err(internal)? {
                *counts.entry(r.state).or_insert(0u64) += 1;
            }
            Ok(counts)
        })
        .register::<ProvingInfo, _, _>(|s, ()| async move {
            let current = s
                .chain
                .rpc
                .call::<StateMinerProvingDeadline>((Addr(s.miner.actor), TipSetKey::head()))
                .await
                .map_err(chain_error)?;
            let all = deadlines(&s).await?;
            let counters = s.proving.counters();
            Ok(types::ProvingInfo {
                current_epoch: current.current_epoch,
                period_start: current.period_start,
                deadline_index: current.index,
                deadline_open: current.open,
                deadline_close: current.close,
                deadlines: current.wpost_period_deadlines,
                challenge_window: current.wpost_challenge_window,
                live_sectors: all.iter().map(|d| d.live_sectors).sum(),
                faulty_sectors: all.iter().map(|d| d.faulty_sectors).sum(),
                recovering_sectors: all.iter().map(|d| d.recovering_sectors).sum(),
                window_posts_submitted: counters.submitted,
                window_posts_failed: counters.failed,
                blocks_won: s.db.blocks_won().map_err(internal)?,
            })
        })
        .register::<ProvingDeadlines, _, _>(|s, ()| async move { deadlines(&s).await })
        .register_with_caller::<SpokeHeartbeat, _, _>(|s, caller, (hello,)| async move {
            s.spokes.heartbeat(&caller, hello)?;
            Ok(SpokeAck {
                heartbeat_secs: HEARTBEAT_SECS,
            })
        })
        .register::<SpokesList, _, _>(|s, ()| async move { Ok(s.spokes.list()) })
        .register::<WorkersList, _, _>(|s, ()| async move { Ok(s.workers.list()) })
        .register::<SpokesUnbind, _, _>(|s, (name,)| async move {
            s.spokes.unbind(&name).map_err(internal)
        })
        .register::<SectorAddPieceToAny, _, _>(|s, (piece,)| async move {
            s.sealing.add_piece(piece).await.map_err(step_error)
        })
        // The spokes' chain view: allow-listed reads, passed through to the chain at the head.
        .register::<ChainHead, _, _>(|s, ()| async move {
            s.chain
                .rpc
                .call::<chain::ChainHead>(())
                .await
                .map_err(chain_error)
        })
        .register::<StateMarketBalance, _, _>(|s, (address,)| async move {
            s.chain
                .rpc
                .call::<chain::StateMarketBalance>((address, TipSetKey::head()))
                .await
                .map_err(chain_error)
        })
        .register::<StateMarketStorageDeal, _, _>(|s, (deal,)| async move {
            s.chain
                .rpc
                .call::<chain::StateMarketStorageDeal>((deal, TipSetKey::head()))
                .await
                .map_err(chain_error)
        })
        .register::<StateVerifiedClientStatus, _, _>(|s, (address,)| async move {
            s.chain
                .rpc
                .call::<chain::StateVerifiedClientStatus>((address, TipSetKey::head()))
                .await
                .map_err(chain_error)
        })
        .register::<StateAccountKey, _, _>(|s, (address,)| async move {
            s.chain
                .rpc
                .call::<chain::StateAccountKey>((address, TipSetKey::head()))
                .await
                .map_err(chain_error)
        })
        .register::<StateLookupID, _, _>(|s, (address,)| async move {
            s.chain
                .rpc
                .call::<chain::StateLookupID>((address, TipSetKey::head()))
                .await
                .map_err(chain_error)
        })
        .register::<PieceLocate, _, _>(
            |s, (cid,)| async move { s.reads.locate(&cid).map_err(internal) },
        )
        .register::<SectorsUnsealPiece, _, _>(|s, (sector, cid)| async move {
            s.reads.unseal(sector, &cid).await.map_err(|e| match e {
                crate::reads::UnsealError::Busy(why) => ApiError::unavailable(why).into(),
                crate::reads::UnsealError::Failed(e) => internal(e),
            })
        })
        .register::<MarketPublishDeals, _, _>(|s, (deal,)| async move {
            Ok(s.publisher.publish(&deal.0).await?)
        })
        .register::<MarketSignAsk, _, _>(|s, (ask,)| async move {
            let (min_price, min_verified) = &*s.ask_floors;
            let signature = crate::spokes::sign_ask(
                &s.db,
                &s.chain,
                &s.keys(),
                (min_price, min_verified),
                &ask.0,
            )?;
            Ok(Base64(signature))
        })
        .register_with_caller::<MarketSetPeerInfo, _, _>(|s, caller, (peer, addrs)| async move {
            Ok(crate::spokes::set_peer_info(
                &s.spokes,
                &s.chain,
                &s.keys(),
                s.peer_info_min_interval_secs,
                &caller,
                peer.0,
                addrs.into_iter().map(|a| a.0).collect(),
            )
            .await?)
        })
        .register_channel::<SubscribeEvents, _, _>(|s, ()| async move { Ok(s.events.subscribe()) });
    module
}
