//! The hub API's handlers: one per method of `nelumbo_miner_api::methods`.

use std::sync::Arc;

use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::StateMinerInfo;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_miner_api::methods::*;
use nelumbo_miner_api::types::{HubMinerInfo, HubVersion};
use nelumbo_rpc::{RpcError, RpcModule};

use crate::chain::ChainClient;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub miner: Arc<HubMinerInfo>,
    pub chain: ChainClient,
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
        });
    module
}
