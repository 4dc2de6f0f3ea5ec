//! The chain's state: actors and their balances, the address map, miners, the market and the
//! verified registry. One `State` value is the whole world at one epoch; it is cloned to apply a
//! message transactionally and stored (CBOR) after every tipset.

mod market;
mod miner;
mod verifreg;

use std::collections::BTreeMap;

use cid::Cid;
use fvm_shared::address::{Address, Payload};
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use num_bigint::BigInt;
use num_traits::Zero;
use serde::{Deserialize, Serialize};

pub use market::{DealState, MarketState};
pub use miner::{
    Deadline, MinerInfo, MinerState, Partition, PreCommit, Sector, SectorStatus, bits,
};
pub use verifreg::VerifRegState;

use crate::error::ActorError;

pub type ActorId = u64;

pub const SYSTEM: ActorId = 0;
pub const INIT: ActorId = 1;
pub const REWARD: ActorId = 2;
pub const CRON: ActorId = 3;
pub const POWER: ActorId = 4;
pub const MARKET: ActorId = 5;
pub const VERIFREG: ActorId = 6;
pub const DATACAP: ActorId = 7;
pub const BURNT_FUNDS: ActorId = 99;
/// Genesis accounts get ids from here, as on Lotus devnets (t0100, t0101, ...).
pub const FIRST_GENESIS_ACCOUNT: ActorId = 100;
/// Actors created after genesis get ids from here (the first miner is t01000).
pub const FIRST_NON_GENESIS: ActorId = 1000;

/// The kinds of actor this chain implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorKind {
    System,
    Init,
    Reward,
    Cron,
    Power,
    Market,
    VerifiedRegistry,
    DataCap,
    Account,
    Miner,
}

impl ActorKind {
    /// The builtin-actors name, as in the actor bundle manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Init => "init",
            Self::Reward => "reward",
            Self::Cron => "cron",
            Self::Power => "storagepower",
            Self::Market => "storagemarket",
            Self::VerifiedRegistry => "verifiedregistry",
            Self::DataCap => "datacap",
            Self::Account => "account",
            Self::Miner => "storageminer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub nonce: u64,
    pub balance: TokenAmount,
    /// An account's public-key address, or a miner's robust (f2) address.
    pub address: Option<Address>,
}

/// A won block's reward, paid at the next state transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReward {
    pub miner: ActorId,
    pub epoch: ChainEpoch,
    pub win_count: i64,
    pub block: Cid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub next_actor_id: ActorId,
    pub actors: BTreeMap<ActorId, Actor>,
    /// Public-key and robust addresses (as bytes) to ids: the init actor's map.
    pub address_ids: BTreeMap<Vec<u8>, ActorId>,
    pub miners: BTreeMap<ActorId, MinerState>,
    pub market: MarketState,
    pub verifreg: VerifRegState,
    pub pending_rewards: Vec<PendingReward>,
}

impl State {
    pub fn empty(verifreg_root: Address) -> Self {
        let mut state = Self {
            next_actor_id: FIRST_GENESIS_ACCOUNT,
            actors: BTreeMap::new(),
            address_ids: BTreeMap::new(),
            miners: BTreeMap::new(),
            market: MarketState::default(),
            verifreg: VerifRegState::new(verifreg_root),
            pending_rewards: Vec::new(),
        };
        for (id, kind) in [
            (SYSTEM, ActorKind::System),
            (INIT, ActorKind::Init),
            (REWARD, ActorKind::Reward),
            (CRON, ActorKind::Cron),
            (POWER, ActorKind::Power),
            (MARKET, ActorKind::Market),
            (VERIFREG, ActorKind::VerifiedRegistry),
            (DATACAP, ActorKind::DataCap),
            (BURNT_FUNDS, ActorKind::Account),
        ] {
            state.actors.insert(
                id,
                Actor {
                    kind,
                    nonce: 0,
                    balance: TokenAmount::zero(),
                    address: None,
                },
            );
        }
        state
    }

    /// The CBOR this state is stored as.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        ciborium::into_writer(self, &mut bytes)?;
        Ok(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        Ok(ciborium::from_reader(bytes)?)
    }

    /// The state root: a BLAKE2b-256 CID of the stored bytes (raw codec: the encoding is this
    /// chain's own, not the builtin actors' HAMTs).
    pub fn root(&self) -> anyhow::Result<Cid> {
        Ok(raw_cid(&self.to_bytes()?))
    }

    /// The id of an address, if it has an actor.
    pub fn resolve(&self, address: &Address) -> Option<ActorId> {
        match address.payload() {
            Payload::ID(id) => self.actors.contains_key(id).then_some(*id),
            _ => self.address_ids.get(&address.to_bytes()).copied(),
        }
    }

    pub fn actor(&self, id: ActorId) -> Result<&Actor, ActorError> {
        self.actors
            .get(&id)
            .ok_or_else(|| ActorError::not_found(format!("actor f0{id} not found")))
    }

    pub fn actor_mut(&mut self, id: ActorId) -> Result<&mut Actor, ActorError> {
        self.actors
            .get_mut(&id)
            .ok_or_else(|| ActorError::not_found(format!("actor f0{id} not found")))
    }

    /// The public-key address of an account.
    pub fn account_key(&self, id: ActorId) -> Option<Address> {
        self.actors
            .get(&id)
            .filter(|a| a.kind == ActorKind::Account)
            .and_then(|a| a.address)
    }

    /// The id of `address`, creating an account actor for a public-key address that has none.
    pub fn resolve_or_create_account(&mut self, address: &Address) -> Result<ActorId, ActorError> {
        if let Some(id) = self.resolve(address) {
            return Ok(id);
        }
        match address.payload() {
            Payload::Secp256k1(_) | Payload::BLS(_) => {
                Ok(self.create_actor(ActorKind::Account, Some(*address)))
            }
            Payload::ID(id) => Err(ActorError::not_found(format!("actor f0{id} not found"))),
            _ => Err(ActorError::illegal_argument(format!(
                "cannot create an actor for {address}: only secp256k1 (f1) and BLS (f3) addresses become accounts"
            ))),
        }
    }

    /// Creates an actor with the next id, registering `address` for it.
    pub fn create_actor(&mut self, kind: ActorKind, address: Option<Address>) -> ActorId {
        let id = self.next_actor_id;
        self.next_actor_id += 1;
        if let Some(address) = address {
            self.address_ids.insert(address.to_bytes(), id);
        }
        self.actors.insert(
            id,
            Actor {
                kind,
                nonce: 0,
                balance: TokenAmount::zero(),
                address,
            },
        );
        id
    }

    /// Moves funds between actors.
    pub fn transfer(
        &mut self,
        from: ActorId,
        to: ActorId,
        amount: &TokenAmount,
    ) -> Result<(), ActorError> {
        if amount.is_negative() {
            return Err(ActorError::illegal_argument(format!(
                "negative transfer of {amount}"
            )));
        }
        if amount.is_zero() || from == to {
            return Ok(());
        }
        let sender = self.actor_mut(from)?;
        if sender.balance < *amount {
            return Err(ActorError::insufficient_funds(format!(
                "f0{from} has {} but {} is needed",
                crate::genesis::format_fil(&sender.balance),
                crate::genesis::format_fil(amount)
            )));
        }
        sender.balance -= amount;
        self.actor_mut(to)?.balance += amount;
        Ok(())
    }

    /// Quality-adjusted and raw power of every miner, and the totals.
    pub fn total_power(&self) -> (BigInt, BigInt) {
        self.miners
            .values()
            .fold((BigInt::zero(), BigInt::zero()), |(raw, qa), m| {
                let (r, q) = m.power();
                (raw + r, qa + q)
            })
    }
}

/// A CID of bytes in this chain's own encoding: CIDv1, raw, BLAKE2b-256.
pub fn raw_cid(bytes: &[u8]) -> Cid {
    let digest = blake2b_simd::Params::new().hash_length(32).hash(bytes);
    let hash =
        cid::multihash::Multihash::wrap(nelumbo_chain_api::types::BLAKE2B_256, digest.as_bytes())
            .unwrap_or_else(|_| unreachable!("32 bytes fit a multihash"));
    Cid::new_v1(0x55, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_cbor() {
        let root = Address::new_id(100);
        let mut state = State::empty(root);
        let key = Address::new_secp256k1(&[4; 65]).expect("address");
        let id = state.resolve_or_create_account(&key).expect("account");
        state.actor_mut(id).expect("actor").balance = TokenAmount::from_whole(5);
        let bytes = state.to_bytes().expect("encode");
        let back = State::from_bytes(&bytes).expect("decode");
        assert_eq!(back, state);
        assert_eq!(back.resolve(&key), Some(id));
        assert_eq!(back.root().expect("root"), state.root().expect("root"));
    }

    #[test]
    fn transfers_check_balances() {
        let mut state = State::empty(Address::new_id(100));
        let a = state.create_actor(ActorKind::Account, None);
        let b = state.create_actor(ActorKind::Account, None);
        state.actor_mut(a).expect("a").balance = TokenAmount::from_whole(1);
        let err = state
            .transfer(a, b, &TokenAmount::from_whole(2))
            .expect_err("overdraft");
        assert!(err.message.contains("has 1 FIL"), "{err}");
        state
            .transfer(a, b, &TokenAmount::from_whole(1))
            .expect("transfer");
        assert_eq!(
            state.actor(b).expect("b").balance,
            TokenAmount::from_whole(1)
        );
    }
}
