//! The running chain: its head and state, the message pool, tipset production on the clock,
//! won blocks, and the reads the API answers.

mod mining;
mod mpool;
mod produce;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use cid::Cid;
use fvm_shared::clock::ChainEpoch;
use nelumbo_chain_api::types::{SignedMessage, TipSet, TipSetKey};
use nelumbo_keys::Keystore;
use nelumbo_proofs::ProofVerifier;
use tokio::sync::broadcast;

pub use produce::{now_seconds, run_clock};

use crate::genesis::Genesis;
use crate::metrics::ChainMetrics;
use crate::randomness::{Beacon, RandomnessSource, blake2b256};
use crate::state::State;
use crate::store::{Store, WonBlock};

/// The chain, shared by the producer, the API and the CLI's daemon.
pub struct Chain {
    pub genesis: Genesis,
    pub beacon: Beacon,
    pub wallet: Keystore,
    pub metrics: ChainMetrics,
    store: Store,
    verifier: ProofVerifier,
    inner: RwLock<Inner>,
    heads: broadcast::Sender<TipSet>,
    /// Serialises nonce assignment of `MpoolPushMessage`.
    push_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("network", &self.genesis.network_name)
            .finish()
    }
}

#[derive(Clone)]
struct Inner {
    head: TipSet,
    /// The state tipset `head` says it starts from: after the messages of its parent.
    head_state: Arc<State>,
    /// Messages `head` includes, executed when the next tipset is made.
    head_messages: Vec<SignedMessage>,
    /// Heights that have a tipset (the others were null rounds).
    heights: Arc<BTreeSet<ChainEpoch>>,
    /// Messages waiting for inclusion, in arrival order.
    mpool: Vec<SignedMessage>,
    /// Accepted won blocks whose reward is not yet paid.
    unpaid: Vec<(Cid, WonBlock)>,
}

/// Randomness from this chain's tickets and beacon.
#[derive(Debug)]
pub struct ChainRandomness {
    beacon: Beacon,
    heights: Arc<BTreeSet<ChainEpoch>>,
}

impl RandomnessSource for ChainRandomness {
    fn ticket_digest(&self, round: ChainEpoch) -> Result<[u8; 32], String> {
        let round = round.max(0);
        let height = self.heights.range(round..).next().copied().ok_or_else(|| {
            let head = self.heights.last().copied().unwrap_or(0);
            format!("chain randomness for epoch {round} is not available yet: the head is at epoch {head}")
        })?;
        Ok(blake2b256(&self.beacon.ticket(height)))
    }

    fn beacon_digest(&self, round: ChainEpoch) -> [u8; 32] {
        self.beacon.digest(round)
    }
}

impl Chain {
    /// Opens the chain in `store`, writing the genesis tipset if the store is new.
    pub fn open(
        genesis: Genesis,
        store: Store,
        wallet: Keystore,
        verifier: ProofVerifier,
    ) -> anyhow::Result<Arc<Self>> {
        let beacon = Beacon::new(genesis.seed()?);
        if store.head_height()?.is_none() {
            produce::write_genesis(&genesis, &beacon, &store)
                .context("write the genesis tipset")?;
        }
        let height = store
            .head_height()?
            .context("the chain database has no tipsets")?;
        let record = store
            .tipset(height)?
            .context("the head tipset is missing")?;
        let head_state = store
            .state(height)?
            .with_context(|| format!("the state of the head tipset {height} is missing"))?;
        let heights: BTreeSet<ChainEpoch> = store.heights()?.into_iter().collect();
        let executed: BTreeSet<Cid> = record
            .messages
            .iter()
            .filter_map(|m| m.cid().ok())
            .collect();
        let mpool = store
            .mpool()?
            .into_iter()
            .filter(|m| m.cid().map(|c| !executed.contains(&c)).unwrap_or(false))
            .collect();
        let unpaid = store
            .won_blocks()?
            .into_iter()
            .filter(|b| b.paid_at.is_none())
            .filter_map(|b| b.header.cid().ok().map(|c| (c, b)))
            .collect();
        let (heads, _) = broadcast::channel(64);
        let metrics = ChainMetrics::new();
        metrics.head_height.set(height);
        Ok(Arc::new(Self {
            genesis,
            beacon,
            wallet,
            metrics,
            store,
            verifier,
            inner: RwLock::new(Inner {
                head: record.tipset,
                head_state: Arc::new(head_state),
                head_messages: record.messages,
                heights: Arc::new(heights),
                mpool,
                unpaid,
            }),
            heads,
            push_lock: tokio::sync::Mutex::new(()),
        }))
    }

    fn inner(&self) -> Inner {
        match self.inner.read() {
            Ok(inner) => inner.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn head(&self) -> TipSet {
        self.inner().head
    }

    pub fn randomness(&self) -> ChainRandomness {
        ChainRandomness {
            beacon: self.beacon,
            heights: self.inner().heights,
        }
    }

    /// New heads as they are made.
    pub fn subscribe(&self) -> broadcast::Receiver<TipSet> {
        self.heads.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn verifier(&self) -> &ProofVerifier {
        &self.verifier
    }

    /// The tipset a key names (the head for an empty key).
    pub fn tipset(&self, key: &TipSetKey) -> anyhow::Result<TipSet> {
        if key.is_head() {
            return Ok(self.head());
        }
        let first = key.0.first().context("empty tipset key")?;
        let block = self
            .store
            .block(first)?
            .with_context(|| format!("tipset {first} not found"))?;
        let record = self
            .store
            .tipset(block.height)?
            .with_context(|| format!("tipset at height {} not found", block.height))?;
        anyhow::ensure!(
            record.tipset.cids == key.0,
            "tipset {first} is not on this chain"
        );
        Ok(record.tipset)
    }

    /// The state a tipset starts from (its parent state), as Lotus's `State*` methods read it.
    pub fn state_at(&self, key: &TipSetKey) -> anyhow::Result<(TipSet, Arc<State>)> {
        let inner = self.inner();
        if key.is_head() || key.0 == inner.head.cids {
            return Ok((inner.head, inner.head_state));
        }
        let tipset = self.tipset(key)?;
        let state = self.store.state(tipset.height)?.with_context(|| {
            format!(
                "the state at height {} was pruned (this node keeps {} epochs of history)",
                tipset.height, self.genesis.policy.state_retention_epochs
            )
        })?;
        Ok((tipset, Arc::new(state)))
    }
}
