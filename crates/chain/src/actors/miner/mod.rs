//! The storage miner actor: sector onboarding (pre-commit, prove-commit), WindowPoSt, faults
//! and recoveries, terminations, and the deadline bookkeeping cron does each epoch.

mod commit;
mod deadline;
mod post;

use fil_actor_miner_state::v18::{
    ChangeMultiaddrsParams, ChangePeerIDParams, ChangeWorkerAddressParams,
    GetControlAddressesReturn, Method, WithdrawBalanceParams, WithdrawBalanceReturn,
};
use fvm_shared::econ::TokenAmount;
use num_traits::Zero;

pub use deadline::cron;

use super::{decode, encode, id_addr, unhandled};
use crate::error::ActorError;
use crate::state::{ActorId, ActorKind, MinerState, State};
use crate::vm::Call;

pub const CONTROL_ADDRESSES: u64 = 2;
pub const CHANGE_WORKER_ADDRESS: u64 = 3;
/// Filecoin's limit on control addresses.
const MAX_CONTROL_ADDRESSES: usize = 10;
pub const CHANGE_PEER_ID: u64 = 4;
pub const SUBMIT_WINDOWED_POST: u64 = 5;
pub const TERMINATE_SECTORS: u64 = 9;
pub const DECLARE_FAULTS_RECOVERED: u64 = 11;
pub const WITHDRAW_BALANCE: u64 = 16;
pub const CHANGE_MULTIADDRS: u64 = 18;
pub const PRE_COMMIT_SECTOR_BATCH2: u64 = 28;
pub const PROVE_COMMIT_SECTORS3: u64 = 34;
/// FRC-0042 method numbers of the exported methods, as clients may call them.
pub const CHANGE_PEER_ID_EXPORTED: u64 = Method::ChangePeerIDExported as u64;
pub const CHANGE_MULTIADDRS_EXPORTED: u64 = Method::ChangeMultiaddrsExported as u64;
pub const WITHDRAW_BALANCE_EXPORTED: u64 = Method::WithdrawBalanceExported as u64;

pub fn invoke(
    call: &Call,
    state: &mut State,
    method: u64,
    params: &[u8],
) -> Result<Vec<u8>, ActorError> {
    match method {
        CONTROL_ADDRESSES => {
            let info = &miner(state, call.receiver)?.info;
            encode(&GetControlAddressesReturn {
                owner: id_addr(info.owner),
                worker: id_addr(info.worker),
                control_addresses: info.control.iter().map(|c| id_addr(*c)).collect(),
            })
        }
        CHANGE_WORKER_ADDRESS => {
            let params: ChangeWorkerAddressParams = decode(params, "ChangeWorkerAddress")?;
            change_control_addresses(call, state, params)?;
            Ok(Vec::new())
        }
        CHANGE_PEER_ID | CHANGE_PEER_ID_EXPORTED => {
            let params: ChangePeerIDParams = decode(params, "ChangePeerID")?;
            if params.new_id.len() > 128 {
                return Err(ActorError::illegal_argument(
                    "peer id longer than 128 bytes",
                ));
            }
            let m = controlled_miner(call, state)?;
            m.info.peer_id = params.new_id;
            Ok(Vec::new())
        }
        CHANGE_MULTIADDRS | CHANGE_MULTIADDRS_EXPORTED => {
            let params: ChangeMultiaddrsParams = decode(params, "ChangeMultiaddrs")?;
            let addrs: Vec<Vec<u8>> = params.new_multi_addrs.into_iter().map(|m| m.0).collect();
            if addrs.iter().map(Vec::len).sum::<usize>() > 1024 {
                return Err(ActorError::illegal_argument(
                    "multiaddrs longer than 1024 bytes in all",
                ));
            }
            let m = controlled_miner(call, state)?;
            m.info.multiaddrs = addrs;
            Ok(Vec::new())
        }
        WITHDRAW_BALANCE | WITHDRAW_BALANCE_EXPORTED => {
            let params: WithdrawBalanceParams = decode(params, "WithdrawBalance")?;
            encode(&withdraw_balance(call, state, params)?)
        }
        PRE_COMMIT_SECTOR_BATCH2 => {
            commit::pre_commit_sector_batch2(call, state, decode(params, "PreCommitSectorBatch2")?)
        }
        PROVE_COMMIT_SECTORS3 => {
            let ret =
                commit::prove_commit_sectors3(call, state, decode(params, "ProveCommitSectors3")?)?;
            encode(&ret)
        }
        SUBMIT_WINDOWED_POST => {
            post::submit_windowed_post(call, state, decode(params, "SubmitWindowedPoSt")?)?;
            Ok(Vec::new())
        }
        DECLARE_FAULTS_RECOVERED => {
            post::declare_faults_recovered(call, state, decode(params, "DeclareFaultsRecovered")?)?;
            Ok(Vec::new())
        }
        TERMINATE_SECTORS => encode(&post::terminate_sectors(
            call,
            state,
            decode(params, "TerminateSectors")?,
        )?),
        _ => Err(unhandled(ActorKind::Miner, method)),
    }
}

/// `ChangeWorkerAddress`, owner only: the control addresses change at once. Changing the worker
/// itself (which Filecoin delays by a policy period) is not supported on the devnet.
fn change_control_addresses(
    call: &Call,
    state: &mut State,
    params: ChangeWorkerAddressParams,
) -> Result<(), ActorError> {
    if params.new_control_addresses.len() > MAX_CONTROL_ADDRESSES {
        return Err(ActorError::illegal_argument(format!(
            "at most {MAX_CONTROL_ADDRESSES} control addresses"
        )));
    }
    let mut control = Vec::new();
    for address in &params.new_control_addresses {
        let id = state
            .resolve(address)
            .filter(|id| state.account_key(*id).is_some())
            .ok_or_else(|| {
                ActorError::illegal_argument(format!(
                    "control address {address} is not an account on chain"
                ))
            })?;
        if !control.contains(&id) {
            control.push(id);
        }
    }
    let worker = state.resolve(&params.new_worker);
    let m = state.miners.get_mut(&call.receiver).ok_or_else(|| {
        ActorError::illegal_state(format!("f0{} has no miner state", call.receiver))
    })?;
    if call.caller != m.info.owner {
        return Err(ActorError::forbidden(format!(
            "f0{} is not the owner of miner f0{}",
            call.caller, call.receiver
        )));
    }
    if worker != Some(m.info.worker) {
        return Err(ActorError::illegal_argument(
            "changing the worker is not supported on the devnet; name the current worker",
        ));
    }
    m.info.control = control;
    Ok(())
}

pub(crate) fn miner(state: &State, id: ActorId) -> Result<&MinerState, ActorError> {
    state
        .miners
        .get(&id)
        .ok_or_else(|| ActorError::illegal_state(format!("f0{id} has no miner state")))
}

/// The receiver's state, if the caller is its owner, worker or a control address.
pub(crate) fn controlled_miner<'s>(
    call: &Call,
    state: &'s mut State,
) -> Result<&'s mut MinerState, ActorError> {
    let m = state.miners.get_mut(&call.receiver).ok_or_else(|| {
        ActorError::illegal_state(format!("f0{} has no miner state", call.receiver))
    })?;
    let info = &m.info;
    if call.caller != info.owner
        && call.caller != info.worker
        && !info.control.contains(&call.caller)
    {
        return Err(ActorError::forbidden(format!(
            "f0{} is not the owner, worker or a control address of miner f0{}",
            call.caller, call.receiver
        )));
    }
    Ok(m)
}

/// Balance not locked by deposits and pledges nor owed as fee debt.
pub(crate) fn available_balance(state: &State, id: ActorId) -> TokenAmount {
    let balance = state
        .actors
        .get(&id)
        .map(|a| a.balance.clone())
        .unwrap_or_default();
    state
        .miners
        .get(&id)
        .map(|m| balance.clone() - &m.locked - &m.fee_debt)
        .unwrap_or(balance)
}

/// Burns a penalty from the miner's available balance; what it cannot cover becomes fee debt.
pub(crate) fn burn_penalty(state: &mut State, id: ActorId, penalty: &TokenAmount) {
    if penalty.is_zero() {
        return;
    }
    let available = available_balance(state, id).max(TokenAmount::zero());
    let paid = penalty.clone().min(available);
    let _ = state.transfer(id, crate::state::BURNT_FUNDS, &paid);
    if let Some(m) = state.miners.get_mut(&id) {
        m.fee_debt += penalty - &paid;
        m.penalties += penalty;
    }
}

fn withdraw_balance(
    call: &Call,
    state: &mut State,
    params: WithdrawBalanceParams,
) -> Result<WithdrawBalanceReturn, ActorError> {
    let owner = miner(state, call.receiver)?.info.owner;
    if call.caller != owner {
        return Err(ActorError::forbidden(
            "only the owner may withdraw a miner's balance",
        ));
    }
    if params.amount_requested.is_negative() {
        return Err(ActorError::illegal_argument(
            "cannot withdraw a negative amount",
        ));
    }
    let amount = params
        .amount_requested
        .min(available_balance(state, call.receiver))
        .max(TokenAmount::zero());
    state.transfer(call.receiver, owner, &amount)?;
    Ok(WithdrawBalanceReturn {
        amount_withdrawn: amount,
    })
}
