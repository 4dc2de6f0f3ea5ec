//! Message execution: sender checks, gas, value transfer and dispatch to the actors, applied
//! transactionally (a failed message changes nothing but the sender's nonce and gas).
//!
//! Gas is charged simply and predictably, not with the FVM's instruction metering:
//! `gas used = 200,000 + 1,000 per byte of params + a flat cost per method` (see
//! [`method_gas`]). The sender pays `gas used × base fee` (burnt) plus `gas used × premium`
//! (also burnt: the devnet's block producer has no account), and must hold
//! `gas limit × fee cap` when the message executes.

use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use fvm_shared::error::ExitCode;
use fvm_shared::message::Message;
use nelumbo_proofs::ProofVerifier;
use num_traits::Zero;

use crate::actors;
use crate::error::ActorError;
use crate::genesis::Genesis;
use crate::randomness::RandomnessSource;
use crate::state::{ActorId, ActorKind, BURNT_FUNDS, State};

pub const BASE_GAS: u64 = 200_000;
pub const GAS_PER_PARAM_BYTE: u64 = 1_000;

/// What executing messages needs besides the state.
#[allow(missing_debug_implementations)]
pub struct Env<'a> {
    pub genesis: &'a Genesis,
    pub epoch: ChainEpoch,
    pub randomness: &'a dyn RandomnessSource,
    pub verifier: &'a ProofVerifier,
}

/// One actor call: who called whom with how much.
#[allow(missing_debug_implementations)]
pub struct Call<'a, 'b> {
    pub env: &'a Env<'b>,
    pub caller: ActorId,
    pub receiver: ActorId,
    pub value: TokenAmount,
}

/// The outcome of a message, with the reason for a failure (which a Lotus receipt omits but an
/// operator needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub exit_code: ExitCode,
    pub return_data: Vec<u8>,
    pub gas_used: u64,
    pub error: Option<String>,
}

impl Receipt {
    fn failed(code: ExitCode, gas_used: u64, error: impl Into<String>) -> Self {
        Self {
            exit_code: code,
            return_data: Vec::new(),
            gas_used,
            error: Some(error.into()),
        }
    }
}

/// The flat cost of a method, on top of the base and per-byte costs.
pub fn method_gas(kind: Option<ActorKind>, method: u64) -> u64 {
    match (kind, method) {
        (_, 0) => 0,
        (Some(ActorKind::Power), actors::power::CREATE_MINER) => 2_000_000,
        (Some(ActorKind::Miner), actors::miner::PRE_COMMIT_SECTOR_BATCH2) => 3_000_000,
        (Some(ActorKind::Miner), actors::miner::PROVE_COMMIT_SECTORS3) => 25_000_000,
        (Some(ActorKind::Miner), actors::miner::SUBMIT_WINDOWED_POST) => 20_000_000,
        (Some(ActorKind::Market), actors::market::PUBLISH_STORAGE_DEALS) => 5_000_000,
        _ => 500_000,
    }
}

/// The gas a message will use.
pub fn gas_used(state: &State, message: &Message) -> u64 {
    let kind = state
        .resolve(&message.to)
        .and_then(|id| state.actors.get(&id))
        .map(|a| a.kind);
    BASE_GAS
        + GAS_PER_PARAM_BYTE * message.params.len() as u64
        + method_gas(kind, message.method_num)
}

/// Applies one message to `state`.
pub fn apply_message(env: &Env, state: &mut State, message: &Message) -> Receipt {
    let Some(sender) = state.resolve(&message.from) else {
        return Receipt::failed(
            ExitCode::SYS_SENDER_INVALID,
            0,
            format!("sender {} has no actor", message.from),
        );
    };
    let Ok(actor) = state.actor(sender) else {
        return Receipt::failed(ExitCode::SYS_SENDER_INVALID, 0, "sender has no actor");
    };
    if actor.kind != ActorKind::Account {
        return Receipt::failed(
            ExitCode::SYS_SENDER_INVALID,
            0,
            format!("sender {} is not an account", message.from),
        );
    }
    if actor.nonce != message.sequence {
        return Receipt::failed(
            ExitCode::SYS_SENDER_STATE_INVALID,
            0,
            format!(
                "nonce {} does not match the sender's next nonce {}",
                message.sequence, actor.nonce
            ),
        );
    }
    let max_gas_cost =
        TokenAmount::from_atto(message.gas_limit) * message.gas_fee_cap.atto().clone();
    if actor.balance < max_gas_cost {
        return Receipt::failed(
            ExitCode::SYS_SENDER_STATE_INVALID,
            0,
            format!(
                "sender holds {} but the gas limit times the fee cap is {}",
                crate::genesis::format_fil(&actor.balance),
                crate::genesis::format_fil(&max_gas_cost)
            ),
        );
    }

    let gas = gas_used(state, message);
    let base_fee = TokenAmount::from_atto(env.genesis.policy.base_fee_atto);
    let premium = (&message.gas_fee_cap - &base_fee)
        .min(message.gas_premium.clone())
        .max(TokenAmount::zero());
    let charged_gas = gas.min(message.gas_limit);
    let fee = TokenAmount::from_atto(charged_gas) * (base_fee.atto() + premium.atto());
    // The nonce and the fee stick whatever the outcome.
    if let Ok(actor) = state.actor_mut(sender) {
        actor.nonce += 1;
    }
    let _ = state.transfer(sender, BURNT_FUNDS, &fee);
    if gas > message.gas_limit {
        return Receipt::failed(
            ExitCode::SYS_OUT_OF_GAS,
            charged_gas,
            format!(
                "out of gas: the message needs {gas} and its limit is {}",
                message.gas_limit
            ),
        );
    }

    let mut attempt = state.clone();
    match send(
        env,
        &mut attempt,
        sender,
        &message.to,
        &message.value,
        message.method_num,
        &message.params,
    ) {
        Ok(return_data) => {
            *state = attempt;
            Receipt {
                exit_code: ExitCode::OK,
                return_data,
                gas_used: gas,
                error: None,
            }
        }
        Err(error) => Receipt::failed(error.code, gas, error.message),
    }
}

/// Transfers `value` and invokes `method` on the actor at `to`.
pub fn send(
    env: &Env,
    state: &mut State,
    caller: ActorId,
    to: &Address,
    value: &TokenAmount,
    method: u64,
    params: &[u8],
) -> Result<Vec<u8>, ActorError> {
    let receiver = match state.resolve(to) {
        Some(id) => id,
        None if method == 0 => state.resolve_or_create_account(to)?,
        None => {
            return Err(ActorError::new(
                ExitCode::SYS_INVALID_RECEIVER,
                format!("receiver {to} has no actor, so method {method} cannot be called on it"),
            ));
        }
    };
    state
        .transfer(caller, receiver, value)
        .map_err(|e| ActorError::new(ExitCode::SYS_INSUFFICIENT_FUNDS, e.message))?;
    let call = Call {
        env,
        caller,
        receiver,
        value: value.clone(),
    };
    actors::invoke(&call, state, method, params)
}
