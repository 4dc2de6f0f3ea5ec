//! Actors, miners, power, deadlines, partitions, sectors and mining.

use cid::Cid;
use fvm_ipld_bitfield::BitField;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use num_bigint::BigInt;
use serde::{Deserialize, Serialize};

use super::BeaconEntry;
use crate::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Actor {
    #[serde(with = "json::cid_obj")]
    pub code: Cid,
    #[serde(with = "json::cid_obj")]
    pub head: Cid,
    pub nonce: u64,
    #[serde(with = "json::token")]
    pub balance: TokenAmount,
    #[serde(default, with = "json::opt_address")]
    pub delegated_address: Option<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BeneficiaryTerm {
    #[serde(with = "json::token")]
    pub quota: TokenAmount,
    #[serde(with = "json::token")]
    pub used_quota: TokenAmount,
    pub expiration: ChainEpoch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerInfo {
    #[serde(with = "json::address")]
    pub owner: Address,
    #[serde(with = "json::address")]
    pub worker: Address,
    #[serde(with = "json::opt_address_empty")]
    pub new_worker: Option<Address>,
    #[serde(with = "json::addresses")]
    pub control_addresses: Vec<Address>,
    pub worker_change_epoch: ChainEpoch,
    #[serde(with = "json::peer_id")]
    pub peer_id: Vec<u8>,
    #[serde(with = "json::bytes_list")]
    pub multiaddrs: Vec<Vec<u8>>,
    #[serde(rename = "WindowPoStProofType")]
    pub window_post_proof_type: i64,
    pub sector_size: u64,
    #[serde(rename = "WindowPoStPartitionSectors")]
    pub window_post_partition_sectors: u64,
    pub consensus_fault_elapsed: ChainEpoch,
    #[serde(default, with = "json::opt_address")]
    pub pending_owner_address: Option<Address>,
    #[serde(with = "json::address")]
    pub beneficiary: Address,
    pub beneficiary_term: BeneficiaryTerm,
    #[serde(default)]
    pub pending_beneficiary_term: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Claim {
    #[serde(with = "json::bigint")]
    pub raw_byte_power: BigInt,
    #[serde(with = "json::bigint")]
    pub quality_adj_power: BigInt,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerPower {
    pub miner_power: Claim,
    pub total_power: Claim,
    pub has_min_power: bool,
}

/// A miner's proving deadline (`dline.Info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Deadline {
    #[serde(with = "json::bitfield")]
    pub post_submissions: BitField,
    pub disputable_proof_count: u64,
    #[serde(default, with = "json::token")]
    pub daily_fee: TokenAmount,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Partition {
    #[serde(with = "json::bitfield")]
    pub all_sectors: BitField,
    #[serde(with = "json::bitfield")]
    pub faulty_sectors: BitField,
    #[serde(with = "json::bitfield")]
    pub recovering_sectors: BitField,
    #[serde(with = "json::bitfield")]
    pub live_sectors: BitField,
    #[serde(with = "json::bitfield")]
    pub active_sectors: BitField,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorOnChainInfo {
    pub sector_number: u64,
    pub seal_proof: i64,
    #[serde(rename = "SealedCID", with = "json::cid_obj")]
    pub sealed_cid: Cid,
    pub activation: ChainEpoch,
    pub expiration: ChainEpoch,
    #[serde(with = "json::bigint")]
    pub deal_weight: BigInt,
    #[serde(with = "json::bigint")]
    pub verified_deal_weight: BigInt,
    #[serde(with = "json::token")]
    pub initial_pledge: TokenAmount,
    #[serde(default, with = "json::opt_token")]
    pub expected_day_reward: Option<TokenAmount>,
    #[serde(default, with = "json::opt_token")]
    pub expected_storage_pledge: Option<TokenAmount>,
    #[serde(default)]
    pub power_base_epoch: ChainEpoch,
    #[serde(default, with = "json::opt_token")]
    pub replaced_day_reward: Option<TokenAmount>,
    #[serde(rename = "SectorKeyCID", default, with = "json::opt_cid")]
    pub sector_key_cid: Option<Cid>,
    #[serde(default)]
    pub flags: u64,
    #[serde(default, with = "json::token")]
    pub daily_fee: TokenAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPreCommitInfo {
    pub seal_proof: i64,
    pub sector_number: u64,
    #[serde(rename = "SealedCID", with = "json::cid_obj")]
    pub sealed_cid: Cid,
    pub seal_rand_epoch: ChainEpoch,
    #[serde(rename = "DealIDs", with = "json::nullable_vec")]
    pub deal_ids: Vec<u64>,
    pub expiration: ChainEpoch,
    #[serde(default, with = "json::opt_cid")]
    pub unsealed_cid: Option<Cid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPreCommitOnChainInfo {
    pub info: SectorPreCommitInfo,
    #[serde(with = "json::token")]
    pub pre_commit_deposit: TokenAmount,
    pub pre_commit_epoch: ChainEpoch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtendedSectorInfo {
    pub seal_proof: i64,
    pub sector_number: u64,
    #[serde(default, with = "json::opt_cid")]
    pub sector_key: Option<Cid>,
    #[serde(rename = "SealedCID", with = "json::cid_obj")]
    pub sealed_cid: Cid,
}

/// What a miner needs to check an election and prove a won block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MiningBaseInfo {
    #[serde(with = "json::bigint")]
    pub miner_power: BigInt,
    #[serde(with = "json::bigint")]
    pub network_power: BigInt,
    #[serde(with = "json::nullable_vec")]
    pub sectors: Vec<ExtendedSectorInfo>,
    #[serde(with = "json::address")]
    pub worker_key: Address,
    pub sector_size: u64,
    pub prev_beacon_entry: BeaconEntry,
    #[serde(with = "json::nullable_vec")]
    pub beacon_entries: Vec<BeaconEntry>,
    pub eligible_for_mining: bool,
    /// Nelumbo devnets only: expected won blocks per epoch for a miner holding all the power,
    /// in thousandths, for [`crate::election::wins`]. Lotus has no such field (its sortition
    /// constants are fixed); absent from Lotus answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_rate_permille: Option<u64>,
}
