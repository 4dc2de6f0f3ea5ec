//! The power actor: `CreateMiner`. Claims are not stored separately: a miner's power is the sum
//! of its active sectors, computed from its state.

use fil_actor_power_state::v18::{CreateMinerParams, CreateMinerReturn};
use fvm_shared::address::{Address, Protocol};
use nelumbo_types::SectorSize;

use super::{caller_is_account, decode, encode, unhandled};
use crate::error::ActorError;
use crate::randomness::{address_entropy, blake2b256};
use crate::state::{ActorKind, MinerInfo, MinerState, POWER, State};
use crate::vm::Call;

pub const CREATE_MINER: u64 = 2;

pub fn invoke(
    call: &Call,
    state: &mut State,
    method: u64,
    params: &[u8],
) -> Result<Vec<u8>, ActorError> {
    match method {
        CREATE_MINER => {
            let params: CreateMinerParams = decode(params, "CreateMiner")?;
            encode(&create_miner(call, state, params)?)
        }
        _ => Err(unhandled(ActorKind::Power, method)),
    }
}

fn create_miner(
    call: &Call,
    state: &mut State,
    params: CreateMinerParams,
) -> Result<CreateMinerReturn, ActorError> {
    caller_is_account(call, state)?;
    let policy = &call.env.genesis.policy;
    let owner = state.resolve_or_create_account(&params.owner)?;
    let worker = state.resolve_or_create_account(&params.worker)?;
    for (role, id) in [("owner", owner), ("worker", worker)] {
        if state.actor(id)?.kind != ActorKind::Account {
            return Err(ActorError::illegal_argument(format!(
                "the {role} f0{id} is not an account"
            )));
        }
    }
    if state.account_key(worker).map(|k| k.protocol()) != Some(Protocol::BLS) {
        return Err(ActorError::illegal_argument(
            "the worker must be a BLS (f3) key: miners sign election proofs and blocks with it",
        ));
    }
    let proof: i64 = params.window_post_proof_type.into();
    let sector_size = SectorSize::from_post_proof_number(proof)
        .filter(|s| s.window_post_proof_number() == proof)
        .ok_or_else(|| {
            ActorError::illegal_argument(format!(
                "window PoSt proof type {proof} is not a WindowPoSt proof (StackedDrgWindow*V1_1: 10 to 14)"
            ))
        })?;
    if !call.env.genesis.sector_sizes.contains(&sector_size) {
        return Err(ActorError::illegal_argument(format!(
            "sector size {sector_size} is not allowed on this chain (allowed: {})",
            call.env
                .genesis
                .sector_sizes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if params.peer.len() > 128 {
        return Err(ActorError::illegal_argument(
            "peer id longer than 128 bytes",
        ));
    }
    let multiaddrs: Vec<Vec<u8>> = params.multiaddrs.iter().map(|m| m.0.clone()).collect();
    if multiaddrs.iter().map(Vec::len).sum::<usize>() > 1024 {
        return Err(ActorError::illegal_argument(
            "multiaddrs longer than 1024 bytes in all",
        ));
    }

    let robust = Address::new_actor(
        &[
            b"nelumbo miner".as_slice(),
            &state.next_actor_id.to_be_bytes(),
        ]
        .concat(),
    );
    let id = state.create_actor(ActorKind::Miner, Some(robust));
    // The proving period starts at an offset derived from the miner's address, as on Filecoin,
    // so that miners' deadlines spread over the period.
    let seed = blake2b256(
        &[
            address_entropy(&Address::new_id(id)),
            call.env.epoch.to_be_bytes().to_vec(),
        ]
        .concat(),
    );
    let offset = u64::from_be_bytes([
        seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
    ]) % policy.wpost_proving_period() as u64;
    let info = MinerInfo {
        owner,
        worker,
        control: Vec::new(),
        peer_id: params.peer,
        multiaddrs,
        window_post_proof: proof,
        sector_size: sector_size.bytes(),
        partition_sectors: policy.window_post_partition_sectors,
    };
    state.miners.insert(
        id,
        MinerState::new(info, offset as i64, policy.wpost_period_deadlines),
    );
    state.transfer(POWER, id, &call.value)?;
    tracing::info!(miner = %Address::new_id(id), %sector_size, "miner created");
    Ok(CreateMinerReturn {
        id_address: Address::new_id(id),
        robust_address: robust,
    })
}
