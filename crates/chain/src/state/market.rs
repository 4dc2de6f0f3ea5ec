//! The storage market: escrow, locked funds, deal proposals and deal states.

use std::collections::{BTreeMap, BTreeSet};

use fil_actor_market_state::v18::DealProposal;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use num_traits::Zero;
use serde::{Deserialize, Serialize};

use super::ActorId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealState {
    pub sector_number: u64,
    pub sector_start_epoch: ChainEpoch,
    pub last_updated_epoch: ChainEpoch,
    pub slash_epoch: ChainEpoch,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarketState {
    pub next_deal_id: u64,
    /// Proposals with client and provider as id addresses.
    pub proposals: BTreeMap<u64, DealProposal>,
    /// States of activated deals.
    pub states: BTreeMap<u64, DealState>,
    /// CIDs (bytes) of published proposals not yet activated or expired.
    pub pending: BTreeSet<Vec<u8>>,
    pub escrow: BTreeMap<ActorId, TokenAmount>,
    pub locked: BTreeMap<ActorId, TokenAmount>,
}

impl MarketState {
    pub fn escrow(&self, id: ActorId) -> TokenAmount {
        self.escrow
            .get(&id)
            .cloned()
            .unwrap_or_else(TokenAmount::zero)
    }

    pub fn locked(&self, id: ActorId) -> TokenAmount {
        self.locked
            .get(&id)
            .cloned()
            .unwrap_or_else(TokenAmount::zero)
    }

    /// Escrow not locked by deals.
    pub fn available(&self, id: ActorId) -> TokenAmount {
        self.escrow(id) - self.locked(id)
    }

    pub fn add_escrow(&mut self, id: ActorId, amount: &TokenAmount) {
        *self.escrow.entry(id).or_insert_with(TokenAmount::zero) += amount;
    }

    pub fn lock(&mut self, id: ActorId, amount: &TokenAmount) {
        *self.locked.entry(id).or_insert_with(TokenAmount::zero) += amount;
    }

    pub fn unlock(&mut self, id: ActorId, amount: &TokenAmount) {
        let locked = self.locked.entry(id).or_insert_with(TokenAmount::zero);
        *locked -= amount;
        if locked.is_negative() {
            *locked = TokenAmount::zero();
        }
    }

    /// Moves escrow (locked on the way) from one party to another, unlocking it.
    pub fn pay(&mut self, from: ActorId, to: ActorId, amount: &TokenAmount) {
        self.unlock(from, amount);
        *self.escrow.entry(from).or_insert_with(TokenAmount::zero) -= amount;
        self.add_escrow(to, amount);
    }

    /// Removes locked escrow of `from` (it is burnt by the caller).
    pub fn slash(&mut self, from: ActorId, amount: &TokenAmount) {
        self.unlock(from, amount);
        *self.escrow.entry(from).or_insert_with(TokenAmount::zero) -= amount;
    }
}
