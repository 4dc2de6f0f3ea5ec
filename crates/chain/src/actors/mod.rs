//! The actors storage providers use, implemented natively over [`State`]: power (miner
//! creation), miner (sectors, proving, faults), market (escrow, deals), verified registry; and
//! the per-epoch work of cron and rewards. Parameters and returns are the builtin actors' CBOR
//! types (`fil_actor_*_state` v18), so messages are byte-compatible with Filecoin's.

pub mod cron;
pub mod market;
pub mod miner;
pub mod power;
pub mod verifreg;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ActorError;
use crate::state::{ActorId, ActorKind, State};
use crate::vm::Call;

/// Invokes `method` of the receiver of `call`.
pub fn invoke(
    call: &Call,
    state: &mut State,
    method: u64,
    params: &[u8],
) -> Result<Vec<u8>, ActorError> {
    if method == 0 {
        return Ok(Vec::new());
    }
    let kind = state.actor(call.receiver)?.kind;
    match kind {
        ActorKind::Power => power::invoke(call, state, method, params),
        ActorKind::Miner => miner::invoke(call, state, method, params),
        ActorKind::Market => market::invoke(call, state, method, params),
        ActorKind::VerifiedRegistry => verifreg::invoke(call, state, method, params),
        _ => Err(unhandled(kind, method)),
    }
}

pub fn unhandled(kind: ActorKind, method: u64) -> ActorError {
    ActorError::unhandled(format!("the {} actor has no method {method}", kind.name()))
}

/// Decodes CBOR parameters, naming what was expected on failure.
pub fn decode<T: DeserializeOwned>(params: &[u8], what: &str) -> Result<T, ActorError> {
    fvm_ipld_encoding::from_slice(params)
        .map_err(|e| ActorError::serialization(format!("malformed {what} parameters: {e}")))
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ActorError> {
    fvm_ipld_encoding::to_vec(value)
        .map_err(|e| ActorError::serialization(format!("encode return value: {e}")))
}

/// Checks that the caller is an account (a key holder), as methods that need a signature do.
pub fn caller_is_account(call: &Call, state: &State) -> Result<(), ActorError> {
    match state.actor(call.caller)?.kind {
        ActorKind::Account => Ok(()),
        other => Err(ActorError::forbidden(format!(
            "only accounts may call this method, not a {} actor",
            other.name()
        ))),
    }
}

/// `f0<id>` for messages.
pub fn id_addr(id: ActorId) -> fvm_shared::address::Address {
    fvm_shared::address::Address::new_id(id)
}
