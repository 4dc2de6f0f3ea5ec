//! The genesis file: network parameters, proof mode, sector sizes, initial accounts, the
//! verified-registry root key and the randomness seed.

use std::path::Path;

use anyhow::{Context, ensure};
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::json;
use nelumbo_proofs::ProofMode;
use nelumbo_types::SectorSize;
use serde::{Deserialize, Serialize};

/// Everything a chain starts from. Two nodes with the same genesis build the same chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub network_name: String,
    /// Unix seconds of epoch 0.
    pub timestamp: u64,
    /// Which proofs the chain accepts: `real` or `insecure-testing`.
    pub proof_mode: ProofMode,
    /// Sector sizes miners may use.
    pub sector_sizes: Vec<SectorSize>,
    /// 32 bytes (hex) from which the beacon and block tickets derive.
    pub randomness_seed: String,
    pub policy: Policy,
    /// Accounts funded at genesis.
    pub accounts: Vec<GenesisAccount>,
    /// The key that may add verifiers to the verified registry.
    #[serde(with = "json::address")]
    pub verified_registry_root: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    #[serde(with = "json::address")]
    pub address: Address,
    /// Balance in FIL, as a decimal string.
    pub balance: String,
}

/// Network parameters. The structure is Filecoin's (48 deadlines per proving period, a
/// challenge window per deadline, a pre-commit challenge delay, a fault declaration cutoff);
/// the durations are shorter so that a test sees several deadlines in minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Milliseconds per epoch.
    pub epoch_duration_ms: u64,
    /// Deadlines per proving period (Filecoin: 48).
    pub wpost_period_deadlines: u64,
    /// Epochs per deadline (Filecoin: 60).
    pub wpost_challenge_window: ChainEpoch,
    /// Epochs before a deadline opens at which its challenge is drawn (Filecoin: 20).
    pub wpost_challenge_lookback: ChainEpoch,
    /// Epochs before a deadline opens after which faults and recoveries cannot be declared for
    /// it (Filecoin: 70).
    pub fault_declaration_cutoff: ChainEpoch,
    /// Epochs between a pre-commit and its interactive seed (Filecoin: 150; Lotus devnets: 10).
    pub pre_commit_challenge_delay: ChainEpoch,
    /// The oldest seal ticket a pre-commit may use, in epochs before it (Filecoin: 3780).
    pub max_pre_commit_randomness_lookback: ChainEpoch,
    /// Epochs after the seed within which a pre-commit must be proven.
    pub max_prove_commit_duration: ChainEpoch,
    /// Shortest and longest sector lifetimes, in epochs from activation.
    pub min_sector_expiration: ChainEpoch,
    pub max_sector_expiration: ChainEpoch,
    /// Shortest and longest deals, in epochs.
    pub min_deal_duration: ChainEpoch,
    pub max_deal_duration: ChainEpoch,
    /// FIL paid per won block (times its win count).
    pub block_reward: String,
    /// Expected won blocks per epoch for a miner holding all the power, in thousandths.
    pub election_rate_permille: u64,
    /// Epochs after its epoch during which a won block is still accepted: a WinningPoSt takes
    /// 6 to 17 s on a small machine, longer than a devnet epoch.
    pub block_acceptance_epochs: ChainEpoch,
    /// Base fee in attoFIL per unit of gas (fixed). The default, 1000, is ten times the pool's
    /// minimum fee cap (Lotus's 100), so a message can be priced under the base fee and wait in
    /// the pool as it would on Filecoin when the base fee rises.
    pub base_fee_atto: u64,
    /// FIL locked per pre-committed sector until it is proven.
    pub pre_commit_deposit: String,
    /// FIL locked per proven sector until it ends.
    pub initial_pledge: String,
    /// FIL burnt per faulty sector at each deadline it is found or stays faulty.
    pub fault_fee: String,
    /// FIL burnt per sector terminated early.
    pub termination_fee: String,
    /// Sectors per WindowPoSt partition (Filecoin: 2 for test sizes, 2349 for 32 GiB).
    pub window_post_partition_sectors: u64,
    /// Past states kept for queries at older tipsets, in epochs.
    pub state_retention_epochs: ChainEpoch,
    /// Null rounds per thousand epochs (0: none), to exercise clients' handling of them.
    #[serde(default)]
    pub null_round_permille: u64,
}

impl Policy {
    /// Devnet defaults: 2 s epochs, 20 s deadlines, a 16-minute proving period.
    pub fn devnet() -> Self {
        Self {
            epoch_duration_ms: 2000,
            wpost_period_deadlines: 48,
            wpost_challenge_window: 10,
            wpost_challenge_lookback: 3,
            fault_declaration_cutoff: 5,
            pre_commit_challenge_delay: 10,
            max_pre_commit_randomness_lookback: 600,
            max_prove_commit_duration: 3000,
            min_sector_expiration: 1000,
            max_sector_expiration: 1_000_000,
            min_deal_duration: 100,
            max_deal_duration: 1_000_000,
            block_reward: "10".into(),
            election_rate_permille: 50,
            block_acceptance_epochs: 20,
            base_fee_atto: 1000,
            pre_commit_deposit: "0.01".into(),
            initial_pledge: "0.1".into(),
            fault_fee: "0.01".into(),
            termination_fee: "0.05".into(),
            window_post_partition_sectors: 2,
            state_retention_epochs: 3000,
            null_round_permille: 0,
        }
    }

    pub fn wpost_proving_period(&self) -> ChainEpoch {
        self.wpost_challenge_window * self.wpost_period_deadlines as ChainEpoch
    }

    /// Checks that the parameters make a working chain.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.epoch_duration_ms >= 100,
            "epoch_duration_ms must be at least 100"
        );
        // A new sector goes to a deadline other than the current and the next one (whose
        // challenge may already be drawn), as on Filecoin: that needs at least three.
        ensure!(
            self.wpost_period_deadlines >= 3,
            "wpost_period_deadlines must be at least 3 (new sectors go to neither the current nor the next deadline)"
        );
        ensure!(
            self.wpost_challenge_window >= 2,
            "wpost_challenge_window must be at least 2 epochs"
        );
        ensure!(
            self.wpost_challenge_lookback >= 1,
            "wpost_challenge_lookback must be at least 1 epoch"
        );
        ensure!(
            self.fault_declaration_cutoff > self.wpost_challenge_lookback,
            "fault_declaration_cutoff must exceed wpost_challenge_lookback, so declarations close before the challenge is drawn"
        );
        ensure!(
            self.pre_commit_challenge_delay >= 1,
            "pre_commit_challenge_delay must be at least 1"
        );
        ensure!(
            self.max_pre_commit_randomness_lookback >= 1,
            "max_pre_commit_randomness_lookback must be positive"
        );
        ensure!(
            self.min_sector_expiration <= self.max_sector_expiration,
            "min_sector_expiration exceeds max_sector_expiration"
        );
        ensure!(
            self.min_deal_duration <= self.max_deal_duration,
            "min_deal_duration exceeds max_deal_duration"
        );
        ensure!(
            self.election_rate_permille <= 1000,
            "election_rate_permille is at most 1000"
        );
        ensure!(
            self.null_round_permille < 1000,
            "null_round_permille must be below 1000"
        );
        ensure!(
            self.window_post_partition_sectors > 0,
            "window_post_partition_sectors must be positive"
        );
        ensure!(
            self.state_retention_epochs >= self.wpost_proving_period(),
            "state_retention_epochs must cover at least one proving period"
        );
        for (name, value) in [
            ("block_reward", &self.block_reward),
            ("pre_commit_deposit", &self.pre_commit_deposit),
            ("initial_pledge", &self.initial_pledge),
            ("fault_fee", &self.fault_fee),
            ("termination_fee", &self.termination_fee),
        ] {
            parse_fil(value).with_context(|| format!("policy.{name}"))?;
        }
        Ok(())
    }
}

impl Genesis {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read genesis file {}", path.display()))?;
        let genesis: Self = serde_json::from_str(&text)
            .with_context(|| format!("parse genesis file {}", path.display()))?;
        genesis
            .validate()
            .with_context(|| format!("check genesis file {}", path.display()))?;
        Ok(genesis)
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("write genesis file {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.network_name.is_empty(), "network_name is empty");
        ensure!(
            !self.sector_sizes.is_empty(),
            "sector_sizes is empty: allow at least one sector size"
        );
        self.seed()?;
        self.policy.validate()?;
        for account in &self.accounts {
            parse_fil(&account.balance)
                .with_context(|| format!("balance of genesis account {}", account.address))?;
        }
        Ok(())
    }

    pub fn seed(&self) -> anyhow::Result<[u8; 32]> {
        let bytes =
            hex::decode(self.randomness_seed.trim()).context("randomness_seed is not hex")?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("randomness_seed must be 32 bytes (64 hex characters)"))
    }
}

/// Parses an amount of FIL written as a decimal (`"1"`, `"0.25"`, `"1000000"`) into attoFIL.
pub fn parse_fil(text: &str) -> anyhow::Result<TokenAmount> {
    nelumbo_chain_api::fil::parse_fil(text).map_err(anyhow::Error::msg)
}

pub use nelumbo_chain_api::fil::format_fil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_policy_is_valid() {
        Policy::devnet().validate().expect("valid");
        let mut bad = Policy::devnet();
        bad.fault_declaration_cutoff = 1;
        assert!(bad.validate().is_err());
    }
}
