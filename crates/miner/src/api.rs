//! The hub API's handlers: one per method of `nelumbo_miner_api::methods`.

use std::collections::BTreeMap;
use std::sync::Arc;

use nelumbo_chain_api::methods::{
    self as chain, StateMinerDeadlines, StateMinerInfo, StateMinerPartitions,
    StateMinerProvingDeadline,
};
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_chain_api::{Addr, Base64};
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
use crate::spokes::{HEARTBEAT_SECS, Spokes};

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
}

fn internal(e: anyhow::Error) -> RpcError {
    RpcError::failed(format!("{e:#}"))
}

fn chain_error(e: nelumbo_rpc::ClientError) -> RpcError {
    RpcError::failed(format!("ask the chain: {e}"))
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
    let mut module = RpcModule::new(state);
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
            s.sealing.pledge().await.map_err(internal)
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
        .register::<SpokeHeartbeat, _, _>(|s, (hello,)| async move {
            s.spokes
                .heartbeat(hello)
                .map_err(RpcError::invalid_params)?;
            Ok(SpokeAck {
                heartbeat_secs: HEARTBEAT_SECS,
            })
        })
        .register::<SpokesList, _, _>(|s, ()| async move { Ok(s.spokes.list()) })
        .register::<SectorAddPieceToAny, _, _>(|s, (piece,)| async move {
            s.sealing.add_piece(piece).await.map_err(internal)
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
            s.reads.unseal(sector, &cid).await.map_err(internal)
        })
        .register::<MarketPublishDeals, _, _>(|s, (deal,)| async move {
            s.publisher.publish(&deal.0).await.map_err(RpcError::failed)
        })
        .register::<MarketSignAsk, _, _>(|s, (ask,)| async move { sign_ask(&s, &ask.0) })
        .register::<MarketSetPeerInfo, _, _>(|s, (peer, addrs)| async move {
            set_peer_info(&s, peer.0, addrs.into_iter().map(|a| a.0).collect()).await
        })
        .register_channel::<SubscribeEvents, _, _>(|s, ()| async move { Ok(s.events.subscribe()) });
    module
}

/// `MarketSignAsk`: only a CBOR storage ask for this miner is signed.
fn sign_ask(s: &ApiState, cbor: &[u8]) -> Result<Base64, RpcError> {
    // The ask protocol's StorageAsk (go-fil-markets 1.1.0), every field required, no other
    // keys, in cbor-gen's key order: only bytes that are exactly such an ask are signed.
    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct StorageAsk {
        #[serde(rename = "Miner")]
        miner: fvm_shared::address::Address,
        #[serde(rename = "Price")]
        price: fvm_shared::econ::TokenAmount,
        #[serde(rename = "SeqNo")]
        seq_no: u64,
        #[serde(rename = "Expiry")]
        expiry: i64,
        #[serde(rename = "Timestamp")]
        timestamp: i64,
        #[serde(rename = "MaxPieceSize")]
        max_piece_size: u64,
        #[serde(rename = "MinPieceSize")]
        min_piece_size: u64,
        #[serde(rename = "VerifiedPrice")]
        verified_price: fvm_shared::econ::TokenAmount,
    }
    let ask: StorageAsk = fvm_ipld_encoding::from_slice(cbor)
        .map_err(|e| RpcError::invalid_params(format!("not a CBOR StorageAsk: {e}")))?;
    if fvm_ipld_encoding::to_vec(&ask).ok().as_deref() != Some(cbor) {
        return Err(RpcError::invalid_params(
            "the StorageAsk is not in its canonical encoding",
        ));
    }
    if ask.miner != s.miner.actor {
        return Err(RpcError::invalid_params(format!(
            "the ask is for {}, not this hub's miner {}",
            ask.miner, s.miner.actor
        )));
    }
    let signature = s
        .chain
        .sign_bytes(&s.miner.worker, cbor)
        .map_err(internal)?;
    let mut bytes = vec![signature.signature_type() as u8];
    bytes.extend_from_slice(signature.bytes());
    Ok(Base64(bytes))
}

/// `MarketSetPeerInfo`: ChangePeerID and ChangeMultiaddrs where the chain differs.
async fn set_peer_info(
    s: &ApiState,
    peer_id: Vec<u8>,
    multiaddrs: Vec<Vec<u8>>,
) -> Result<bool, RpcError> {
    use fil_actor_miner_state::v18::{ChangeMultiaddrsParams, ChangePeerIDParams, Method};
    let info = s
        .chain
        .rpc
        .call::<StateMinerInfo>((Addr(s.miner.actor), TipSetKey::head()))
        .await
        .map_err(chain_error)?;
    let mut changes = Vec::new();
    if info.peer_id != peer_id {
        let params = fvm_ipld_encoding::to_vec(&ChangePeerIDParams { new_id: peer_id })
            .map_err(|e| internal(e.into()))?;
        changes.push(("ChangePeerID", Method::ChangePeerID as u64, params));
    }
    if info.multiaddrs != multiaddrs {
        let params = fvm_ipld_encoding::to_vec(&ChangeMultiaddrsParams {
            new_multi_addrs: multiaddrs
                .into_iter()
                .map(fvm_ipld_encoding::BytesDe)
                .collect(),
        })
        .map_err(|e| internal(e.into()))?;
        changes.push(("ChangeMultiaddrs", Method::ChangeMultiaddrs as u64, params));
    }
    let changed = !changes.is_empty();
    for (name, method, params) in changes {
        let signed = s
            .chain
            .send(
                s.miner.worker,
                s.miner.actor,
                method,
                params,
                fvm_shared::econ::TokenAmount::default(),
                |_| Ok(()),
            )
            .await
            .map_err(internal)?;
        match s.chain.wait_landed(&signed, None).await.map_err(internal)? {
            Some(crate::chain::Landed::Executed(lookup)) if lookup.receipt.exit_code == 0 => {
                tracing::info!(message = name, "the miner's peer info changed on chain");
            }
            other => {
                return Err(RpcError::failed(format!(
                    "{name} did not execute: {other:?}"
                )));
            }
        }
    }
    Ok(changed)
}
