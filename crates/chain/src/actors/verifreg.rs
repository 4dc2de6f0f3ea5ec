//! The verified registry: the root key adds verifiers, verifiers grant DataCap to clients.

use fil_actor_verifreg_state::v18::{AddVerifiedClientParams, VerifierParams};
use num_traits::ToPrimitive;

use super::{decode, unhandled};
use crate::error::ActorError;
use crate::state::{ActorKind, State};
use crate::vm::Call;

pub const ADD_VERIFIER: u64 = 2;
pub const ADD_VERIFIED_CLIENT: u64 = 4;

pub fn invoke(
    call: &Call,
    state: &mut State,
    method: u64,
    params: &[u8],
) -> Result<Vec<u8>, ActorError> {
    match method {
        ADD_VERIFIER => {
            let params: VerifierParams = decode(params, "AddVerifier")?;
            let root = state.resolve(&state.verifreg.root);
            if root != Some(call.caller) {
                return Err(ActorError::forbidden(format!(
                    "only the verified registry root {} may add verifiers",
                    state.verifreg.root
                )));
            }
            let verifier = state.resolve_or_create_account(&params.address)?;
            let allowance = datacap(&params.allowance)?;
            state.verifreg.verifiers.insert(verifier, allowance);
            Ok(Vec::new())
        }
        ADD_VERIFIED_CLIENT => {
            let params: AddVerifiedClientParams = decode(params, "AddVerifiedClient")?;
            let allowance = datacap(&params.allowance)?;
            let remaining = state
                .verifreg
                .verifiers
                .get(&call.caller)
                .copied()
                .ok_or_else(|| {
                    ActorError::forbidden(format!("f0{} is not a verifier", call.caller))
                })?;
            if allowance > remaining {
                return Err(ActorError::illegal_argument(format!(
                    "the verifier may grant {remaining} bytes of DataCap, not {allowance}"
                )));
            }
            let client = state.resolve_or_create_account(&params.address)?;
            if state.verifreg.verifiers.contains_key(&client) {
                return Err(ActorError::illegal_argument(
                    "a verifier cannot be a verified client",
                ));
            }
            state
                .verifreg
                .verifiers
                .insert(call.caller, remaining - allowance);
            *state.verifreg.clients.entry(client).or_insert(0) += allowance;
            Ok(Vec::new())
        }
        _ => Err(unhandled(ActorKind::VerifiedRegistry, method)),
    }
}

fn datacap(amount: &num_bigint::BigInt) -> Result<u64, ActorError> {
    amount.to_u64().filter(|a| *a > 0).ok_or_else(|| {
        ActorError::illegal_argument(format!(
            "DataCap {amount} must be a positive number of bytes"
        ))
    })
}
