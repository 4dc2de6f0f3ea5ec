//! Tipset production: the genesis tipset, then one tipset per epoch on the clock. Producing
//! tipset `H` executes the messages of its parent (at the parent's epoch), runs cron for every
//! epoch from the parent up to `H` (null rounds included), pays won blocks, then includes the
//! messages waiting in the pool; the result is written in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cid::Cid;
use fvm_ipld_encoding::BytesSer;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::types::{
    BlockHeader, MessageReceipt, SignedMessage, Ticket, TipSet, cbor_cid,
};
use num_bigint::BigInt;
use tokio_util::sync::CancellationToken;

use super::{Chain, ChainRandomness, Inner};
use crate::actors::cron::end_of_epoch;
use crate::genesis::{Genesis, parse_fil};
use crate::randomness::Beacon;
use crate::state::{ActorKind, FIRST_NON_GENESIS, PendingReward, REWARD, State};
use crate::store::{Commit, ReceiptRecord, Store, TipsetRecord};
use crate::vm::{Env, apply_message};

/// Messages one tipset includes at most.
const MAX_MESSAGES_PER_TIPSET: usize = 1000;
/// FIL the reward actor holds at genesis to pay block rewards.
const REWARD_POOL_FIL: u64 = 1_000_000_000;

/// The devnet's own blocks carry the system actor as their miner: they are made by the clock,
/// not won. Miners' won blocks are checked and rewarded separately (see `mining`).
fn sequencer() -> Address {
    Address::new_id(crate::state::SYSTEM)
}

pub fn write_genesis(genesis: &Genesis, beacon: &Beacon, store: &Store) -> anyhow::Result<()> {
    let mut state = State::empty(genesis.verified_registry_root);
    state
        .actor_mut(REWARD)
        .map_err(|e| anyhow::anyhow!(e.message))?
        .balance = TokenAmount::from_whole(REWARD_POOL_FIL);
    for account in &genesis.accounts {
        let balance = parse_fil(&account.balance)?;
        let id = state
            .resolve_or_create_account(&account.address)
            .map_err(|e| anyhow::anyhow!("genesis account {}: {}", account.address, e.message))?;
        state
            .actor_mut(id)
            .map_err(|e| anyhow::anyhow!(e.message))?
            .balance += balance;
    }
    state.next_actor_id = state.next_actor_id.max(FIRST_NON_GENESIS);
    let header = header(genesis, beacon, 0, &[], &state, &[], &[], genesis.timestamp)?;
    let tipset = tipset(header)?;
    store.commit(Commit {
        record: &TipsetRecord {
            tipset,
            messages: Vec::new(),
        },
        state: &state,
        receipts: &[],
        paid_blocks: &[],
        prune_states_below: None,
    })?;
    tracing::info!(network = %genesis.network_name, accounts = genesis.accounts.len(), "genesis written");
    Ok(())
}

fn tipset(header: BlockHeader) -> anyhow::Result<TipSet> {
    let cid = header.cid().map_err(anyhow::Error::msg)?;
    Ok(TipSet {
        cids: vec![cid],
        height: header.height,
        blocks: vec![header],
    })
}

#[allow(clippy::too_many_arguments)]
fn header(
    genesis: &Genesis,
    beacon: &Beacon,
    height: ChainEpoch,
    parents: &[Cid],
    parent_state: &State,
    receipts: &[MessageReceipt],
    messages: &[SignedMessage],
    timestamp: u64,
) -> anyhow::Result<BlockHeader> {
    let receipt_list: Vec<_> = receipts
        .iter()
        .map(|r| (r.exit_code, BytesSer(&r.r#return), r.gas_used))
        .collect();
    let message_cids: Vec<Cid> = messages
        .iter()
        .map(|m| m.cid().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    Ok(BlockHeader {
        miner: sequencer(),
        ticket: Some(Ticket {
            vrf_proof: beacon.ticket(height),
        }),
        election_proof: None,
        beacon_entries: vec![beacon.entry(height)],
        win_post_proof: Vec::new(),
        parents: parents.to_vec(),
        parent_weight: BigInt::from(height),
        height,
        parent_state_root: parent_state.root()?,
        parent_message_receipts: cbor_cid(&fvm_ipld_encoding::to_vec(&receipt_list)?),
        messages: cbor_cid(&fvm_ipld_encoding::to_vec(&message_cids)?),
        bls_aggregate: None,
        timestamp,
        block_sig: None,
        fork_signaling: 0,
        parent_base_fee: TokenAmount::from_atto(genesis.policy.base_fee_atto),
    })
}

impl Chain {
    /// Makes the tipset at `height` on top of the head. Blocking: it executes messages, which
    /// may verify proofs.
    pub fn produce(&self, height: ChainEpoch) -> anyhow::Result<TipSet> {
        let started = Instant::now();
        let inner = self.inner();
        let parent = inner.head.clone();
        anyhow::ensure!(
            height > parent.height,
            "tipset {height} is not above the head {}",
            parent.height
        );
        let randomness = ChainRandomness {
            beacon: self.beacon,
            heights: inner.heights.clone(),
        };
        let (state, receipts, paid) = self.transition(&inner, &randomness, height);

        let base_fee = TokenAmount::from_atto(self.genesis.policy.base_fee_atto);
        let (included, stale) = select_messages(&state, &inner.mpool, &base_fee);
        let lotus_receipts: Vec<MessageReceipt> = receipts.iter().map(|(_, r)| r.clone()).collect();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = header(
            &self.genesis,
            &self.beacon,
            height,
            &parent.cids,
            &state,
            &lotus_receipts,
            &included,
            timestamp,
        )?;
        let tipset = tipset(header)?;
        let key = tipset.key();
        let records: Vec<ReceiptRecord> = receipts
            .into_iter()
            .map(|((cid, error), receipt)| ReceiptRecord {
                message: cid,
                receipt,
                error,
                executed_height: height,
                executed_tipset: key.clone(),
            })
            .collect();
        let retention = self.genesis.policy.state_retention_epochs;
        let prune = (height % 100 == 0).then(|| height - retention);
        let record = TipsetRecord {
            tipset: tipset.clone(),
            messages: included.clone(),
        };
        self.store.commit(Commit {
            record: &record,
            state: &state,
            receipts: &records,
            paid_blocks: &paid,
            prune_states_below: prune,
        })?;
        if !stale.is_empty() {
            self.store.remove_from_mpool(&stale)?;
        }

        let mut guard = self
            .inner
            .write()
            .map_err(|_| anyhow::anyhow!("chain lock poisoned"))?;
        let mut heights = (*guard.heights).clone();
        heights.insert(height);
        let gone: std::collections::BTreeSet<Cid> = included
            .iter()
            .filter_map(|m| m.cid().ok())
            .chain(stale)
            .collect();
        guard
            .mpool
            .retain(|m| m.cid().map(|c| !gone.contains(&c)).unwrap_or(false));
        guard.unpaid.retain(|(cid, _)| !paid.contains(cid));
        guard.head = tipset.clone();
        guard.head_state = Arc::new(state);
        guard.head_messages = included;
        guard.heights = Arc::new(heights);
        let pool = guard.mpool.len();
        drop(guard);

        self.metrics.head_height.set(height);
        self.metrics.mpool_messages.set(pool as i64);
        self.metrics
            .tipset_seconds
            .observe(started.elapsed().as_secs_f64());
        for record in &records {
            self.metrics
                .messages_executed
                .with_label_values(&[&record.receipt.exit_code.to_string()])
                .inc();
        }
        tracing::debug!(
            height,
            messages = record.messages.len(),
            executed = records.len(),
            "tipset produced"
        );
        let _ = self.heads.send(tipset.clone());
        Ok(tipset)
    }

    /// The state after the head's messages and the cron of every epoch up to `height`.
    #[allow(clippy::type_complexity)]
    fn transition(
        &self,
        inner: &Inner,
        randomness: &ChainRandomness,
        height: ChainEpoch,
    ) -> (
        State,
        Vec<((Cid, Option<String>), MessageReceipt)>,
        Vec<Cid>,
    ) {
        let parent_height = inner.head.height;
        let env = Env {
            genesis: &self.genesis,
            epoch: parent_height,
            randomness,
            verifier: &self.verifier,
        };
        let mut state = (*inner.head_state).clone();
        let mut receipts = Vec::new();
        for message in &inner.head_messages {
            let receipt = apply_message(&env, &mut state, &message.message.0);
            if let Some(error) = &receipt.error {
                tracing::info!(message_cid = %message.message.cid(), exit_code = receipt.exit_code.value(), %error, "message failed");
            }
            let cid = message.cid().unwrap_or_else(|_| message.message.cid());
            receipts.push((
                (cid, receipt.error.clone()),
                MessageReceipt {
                    exit_code: receipt.exit_code.value(),
                    r#return: receipt.return_data,
                    gas_used: receipt.gas_used,
                    events_root: None,
                },
            ));
        }
        let paid: Vec<Cid> = inner.unpaid.iter().map(|(cid, _)| *cid).collect();
        state
            .pending_rewards
            .extend(inner.unpaid.iter().map(|(cid, block)| PendingReward {
                miner: block.miner,
                epoch: block.header.height,
                win_count: block.win_count,
                block: *cid,
            }));
        for epoch in parent_height..height {
            end_of_epoch(&mut state, &self.genesis.policy, epoch);
        }
        (state, receipts, paid)
    }
}

/// The pool's messages that can execute next, by sender in nonce order, and the stale ones
/// (nonce already used) to drop. A message whose fee cap is below the base fee holds back
/// itself and every later message of its sender, as on Filecoin.
fn select_messages(
    state: &State,
    pool: &[SignedMessage],
    base_fee: &TokenAmount,
) -> (Vec<SignedMessage>, Vec<Cid>) {
    let mut by_sender: BTreeMap<Vec<u8>, Vec<&SignedMessage>> = BTreeMap::new();
    for message in pool {
        by_sender
            .entry(message.message.0.from.to_bytes())
            .or_default()
            .push(message);
    }
    let mut included = Vec::new();
    let mut stale = Vec::new();
    for (_, mut messages) in by_sender {
        messages.sort_by_key(|m| m.message.0.sequence);
        let sender = state
            .resolve(&messages[0].message.0.from)
            .and_then(|id| state.actors.get(&id));
        let Some(actor) = sender.filter(|a| a.kind == ActorKind::Account) else {
            continue;
        };
        let mut next = actor.nonce;
        let mut budget = actor.balance.clone();
        for message in messages {
            let m = &message.message.0;
            if m.sequence < next {
                stale.extend(message.cid().ok());
                continue;
            }
            let cost =
                TokenAmount::from_atto(m.gas_limit) * m.gas_fee_cap.atto().clone() + &m.value;
            if m.sequence != next
                || cost > budget
                || &m.gas_fee_cap < base_fee
                || included.len() >= MAX_MESSAGES_PER_TIPSET
            {
                break;
            }
            budget -= cost;
            next += 1;
            included.push(message.clone());
        }
    }
    (included, stale)
}

/// Produces a tipset every epoch until `cancel`. After a restart the clock resumes from the
/// head (the chain does not make up the epochs it was down for); if production falls behind
/// the clock, the skipped epochs become null rounds, as on a real chain.
pub async fn run_clock(chain: Arc<Chain>, cancel: CancellationToken) {
    let epoch = Duration::from_millis(chain.genesis.policy.epoch_duration_ms);
    let start_height = chain.head().height;
    let zero = Instant::now() - epoch * start_height.max(0) as u32;
    tracing::info!(
        head = start_height,
        epoch_ms = epoch.as_millis() as u64,
        "block production started"
    );
    loop {
        let head = chain.head().height;
        let next = head + 1;
        let due = zero + epoch * next as u32;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        let on_clock = (zero.elapsed().as_millis() / epoch.as_millis().max(1)) as ChainEpoch;
        let mut height = on_clock.max(next);
        while chain
            .beacon
            .is_null_round(height, chain.genesis.policy.null_round_permille)
        {
            height += 1;
        }
        if height > next {
            tracing::debug!(from = next, to = height - 1, "null rounds");
        }
        let worker = chain.clone();
        match tokio::task::spawn_blocking(move || worker.produce(height)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::error!(height, error = %format!("{error:#}"), "tipset production failed; retrying next epoch");
            }
            Err(error) => tracing::error!(height, %error, "tipset production panicked"),
        }
    }
    tracing::info!("block production stopped");
}

/// The genesis timestamp, now, for a new genesis file.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
