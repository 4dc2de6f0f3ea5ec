//! Types the hub's API exchanges, in Lotus JSON style (PascalCase fields, addresses as strings).

use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use nelumbo_chain_api::json;
use serde::{Deserialize, Serialize};

/// The hub's version and the chain it is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HubVersion {
    /// The `nelumbo-miner` build.
    pub version: String,
    #[serde(rename = "APIVersion")]
    pub api_version: u32,
}

/// The miner this hub operates, as recorded at `nelumbo-miner init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HubMinerInfo {
    #[serde(with = "json::address")]
    pub actor: Address,
    #[serde(with = "json::address")]
    pub owner: Address,
    #[serde(with = "json::address")]
    pub worker: Address,
    /// Bytes.
    pub sector_size: u64,
    /// The epoch at which the miner actor was created.
    pub created_at: ChainEpoch,
}
