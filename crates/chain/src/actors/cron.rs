//! The work done at the end of every epoch, after its messages: block rewards, miners'
//! deadlines and expiries, deal expiry and settlement.

use fvm_shared::clock::ChainEpoch;

use super::{market, miner};
use crate::genesis::{Policy, parse_fil};
use crate::state::{REWARD, State};

pub fn end_of_epoch(state: &mut State, policy: &Policy, epoch: ChainEpoch) {
    pay_rewards(state, policy);
    miner::cron(state, policy, epoch);
    market::cron(state, epoch);
}

/// Pays the rewards of won blocks accepted since the last epoch, straight to the miners'
/// balances (Filecoin vests 75 % of them over 180 days; a devnet pays at once).
fn pay_rewards(state: &mut State, policy: &Policy) {
    let reward = parse_fil(&policy.block_reward).unwrap_or_default();
    for won in std::mem::take(&mut state.pending_rewards) {
        let amount = &reward * won.win_count.max(0) as u64;
        match state.transfer(REWARD, won.miner, &amount) {
            Ok(()) => {
                if let Some(m) = state.miners.get_mut(&won.miner) {
                    m.blocks_won += 1;
                }
                tracing::info!(miner = won.miner, epoch = won.epoch, reward = %crate::genesis::format_fil(&amount), "block reward paid");
            }
            Err(error) => {
                tracing::error!(miner = won.miner, %error, "block reward not paid: the reward actor is empty")
            }
        }
    }
}
