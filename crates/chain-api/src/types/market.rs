//! Market balances and deals.

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MarketBalance {
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub escrow: TokenAmount,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub locked: TokenAmount,
}

/// `StateDealProviderCollateralBounds`: the market's bounds on provider collateral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DealCollateralBounds {
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub min: TokenAmount,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub max: TokenAmount,
}

/// A deal proposal in Lotus JSON. A byte label prints as `""`, as Lotus prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DealProposal {
    #[serde(rename = "PieceCID", with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub piece_cid: Cid,
    pub piece_size: u64,
    pub verified_deal: bool,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub client: Address,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub provider: Address,
    pub label: String,
    pub start_epoch: ChainEpoch,
    pub end_epoch: ChainEpoch,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub storage_price_per_epoch: TokenAmount,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub provider_collateral: TokenAmount,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub client_collateral: TokenAmount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MarketDealState {
    /// 0 until the deal is in a proven sector (0 is also a valid sector number).
    pub sector_number: u64,
    /// -1 until the deal is in a proven sector.
    pub sector_start_epoch: ChainEpoch,
    pub last_updated_epoch: ChainEpoch,
    /// -1 unless the deal was slashed.
    pub slash_epoch: ChainEpoch,
}

impl MarketDealState {
    /// The state of a deal not yet activated.
    pub const EMPTY: Self = Self {
        sector_number: 0,
        sector_start_epoch: -1,
        last_updated_epoch: -1,
        slash_epoch: -1,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MarketDeal {
    pub proposal: DealProposal,
    pub state: MarketDealState,
}
