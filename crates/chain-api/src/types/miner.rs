//! Actors, miners, power, deadlines, partitions, sectors and mining.

use cid::Cid;
use fvm_ipld_bitfield::BitField;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use num_bigint::BigInt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::BeaconEntry;
use crate::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Actor {
    #[serde(with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub code: Cid,
    #[serde(with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub head: Cid,
    pub nonce: u64,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub balance: TokenAmount,
    #[serde(default, with = "json::opt_address")]
    #[schemars(schema_with = "json::opt_address::schema")]
    pub delegated_address: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BeneficiaryTerm {
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub quota: TokenAmount,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub used_quota: TokenAmount,
    pub expiration: ChainEpoch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MinerInfo {
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub owner: Address,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub worker: Address,
    #[serde(with = "json::opt_address_empty")]
    #[schemars(schema_with = "json::opt_address_empty::schema")]
    pub new_worker: Option<Address>,
    #[serde(with = "json::addresses")]
    #[schemars(schema_with = "json::addresses::schema")]
    pub control_addresses: Vec<Address>,
    pub worker_change_epoch: ChainEpoch,
    #[serde(with = "json::peer_id")]
    #[schemars(schema_with = "json::peer_id::schema")]
    pub peer_id: Vec<u8>,
    #[serde(with = "json::bytes_list")]
    #[schemars(schema_with = "json::bytes_list::schema")]
    pub multiaddrs: Vec<Vec<u8>>,
    #[serde(rename = "WindowPoStProofType")]
    pub window_post_proof_type: i64,
    pub sector_size: u64,
    #[serde(rename = "WindowPoStPartitionSectors")]
    pub window_post_partition_sectors: u64,
    pub consensus_fault_elapsed: ChainEpoch,
    #[serde(default, with = "json::opt_address")]
    #[schemars(schema_with = "json::opt_address::schema")]
    pub pending_owner_address: Option<Address>,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub beneficiary: Address,
    pub beneficiary_term: BeneficiaryTerm,
    #[serde(default)]
    pub pending_beneficiary_term: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Claim {
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub raw_byte_power: BigInt,
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub quality_adj_power: BigInt,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MinerPower {
    pub miner_power: Claim,
    pub total_power: Claim,
    pub has_min_power: bool,
}

/// A miner's proving deadline (`dline.Info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineInfo {
    pub current_epoch: ChainEpoch,
    pub period_start: ChainEpoch,
    pub index: u64,
    pub open: ChainEpoch,
    pub close: ChainEpoch,
    pub challenge: ChainEpoch,
    pub fault_cutoff: ChainEpoch,
    #[serde(rename = "WPoStPeriodDeadlines")]
    pub wpost_period_deadlines: u64,
    #[serde(rename = "WPoStProvingPeriod")]
    pub wpost_proving_period: ChainEpoch,
    #[serde(rename = "WPoStChallengeWindow")]
    pub wpost_challenge_window: ChainEpoch,
    #[serde(rename = "WPoStChallengeLookback")]
    pub wpost_challenge_lookback: ChainEpoch,
    pub fault_declaration_cutoff: ChainEpoch,
}

impl DeadlineInfo {
    pub fn is_open(&self) -> bool {
        self.current_epoch >= self.open && self.current_epoch < self.close
    }

    pub fn has_elapsed(&self) -> bool {
        self.current_epoch >= self.close
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Deadline {
    #[serde(with = "json::bitfield")]
    #[schemars(schema_with = "json::bitfield::schema")]
    pub post_submissions: BitField,
    pub disputable_proof_count: u64,
    #[serde(default, with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub daily_fee: TokenAmount,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Partition {
    #[serde(with = "json::bitfield")]
    #[schemars(schema_with = "json::bitfield::schema")]
    pub all_sectors: BitField,
    #[serde(with = "json::bitfield")]
    #[schemars(schema_with = "json::bitfield::schema")]
    pub faulty_sectors: BitField,
    #[serde(with = "json::bitfield")]
    #[schemars(schema_with = "json::bitfield::schema")]
    pub recovering_sectors: BitField,
    #[serde(with = "json::bitfield")]
    #[schemars(schema_with = "json::bitfield::schema")]
    pub live_sectors: BitField,
    #[serde(with = "json::bitfield")]
    #[schemars(schema_with = "json::bitfield::schema")]
    pub active_sectors: BitField,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorOnChainInfo {
    pub sector_number: u64,
    pub seal_proof: i64,
    #[serde(rename = "SealedCID", with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub sealed_cid: Cid,
    pub activation: ChainEpoch,
    pub expiration: ChainEpoch,
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub deal_weight: BigInt,
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub verified_deal_weight: BigInt,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub initial_pledge: TokenAmount,
    #[serde(default, with = "json::opt_token")]
    #[schemars(schema_with = "json::opt_token::schema")]
    pub expected_day_reward: Option<TokenAmount>,
    #[serde(default, with = "json::opt_token")]
    #[schemars(schema_with = "json::opt_token::schema")]
    pub expected_storage_pledge: Option<TokenAmount>,
    #[serde(default)]
    pub power_base_epoch: ChainEpoch,
    #[serde(default, with = "json::opt_token")]
    #[schemars(schema_with = "json::opt_token::schema")]
    pub replaced_day_reward: Option<TokenAmount>,
    #[serde(rename = "SectorKeyCID", default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub sector_key_cid: Option<Cid>,
    #[serde(default)]
    pub flags: u64,
    #[serde(default, with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub daily_fee: TokenAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPreCommitInfo {
    pub seal_proof: i64,
    pub sector_number: u64,
    #[serde(rename = "SealedCID", with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub sealed_cid: Cid,
    pub seal_rand_epoch: ChainEpoch,
    #[serde(rename = "DealIDs", with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<u64>>")]
    pub deal_ids: Vec<u64>,
    pub expiration: ChainEpoch,
    #[serde(default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub unsealed_cid: Option<Cid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPreCommitOnChainInfo {
    pub info: SectorPreCommitInfo,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub pre_commit_deposit: TokenAmount,
    pub pre_commit_epoch: ChainEpoch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ExtendedSectorInfo {
    pub seal_proof: i64,
    pub sector_number: u64,
    #[serde(default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub sector_key: Option<Cid>,
    #[serde(rename = "SealedCID", with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub sealed_cid: Cid,
}

/// What a miner needs to check an election and prove a won block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MiningBaseInfo {
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub miner_power: BigInt,
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub network_power: BigInt,
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<ExtendedSectorInfo>>")]
    pub sectors: Vec<ExtendedSectorInfo>,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub worker_key: Address,
    pub sector_size: u64,
    pub prev_beacon_entry: BeaconEntry,
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<BeaconEntry>>")]
    pub beacon_entries: Vec<BeaconEntry>,
    pub eligible_for_mining: bool,
    /// Nelumbo devnets only: expected won blocks per epoch for a miner holding all the power,
    /// in thousandths, for [`crate::election::wins`]. Lotus has no such field (its sortition
    /// constants are fixed); absent from Lotus answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_rate_permille: Option<u64>,
}
