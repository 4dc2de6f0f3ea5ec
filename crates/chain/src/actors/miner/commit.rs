//! Sector onboarding: `PreCommitSectorBatch2` and `ProveCommitSectors3`.

use fil_actor_miner_state::v18::{
    PreCommitSectorBatchParams2, ProveCommitSectors3Params, ProveCommitSectors3Return,
    SectorActivationManifest,
};
use fil_actors_shared::v18::{BatchReturn, FailCode};
use fvm_ipld_encoding::RawBytes;
use fvm_shared::econ::TokenAmount;
use fvm_shared::error::ExitCode;
use nelumbo_commp::{Commitment, SectorPiece, commd, piece_cid_v1};
use nelumbo_proofs::{Replica, SealedCommitments};
use nelumbo_types::{
    ActorId as ProofActorId, PaddedPieceSize, Randomness, SectorNumber, SectorSize,
};
use num_bigint::BigInt;

use super::{available_balance, controlled_miner, miner};
use crate::actors::{id_addr, market};
use crate::error::ActorError;
use crate::genesis::parse_fil;
use crate::randomness::{address_entropy, dst};
use crate::state::{MARKET, PreCommit, Sector, SectorStatus, State};
use crate::vm::Call;

/// Multicodec `fil-commitment-sealed` and multihash `poseidon-bls12_381-a1-fc1`.
const FIL_COMMITMENT_SEALED: u64 = 0xf102;
const POSEIDON_BLS12_381_A1_FC1: u64 = 0xb401;
const MAX_BATCH: usize = 256;

pub fn pre_commit_sector_batch2(
    call: &Call,
    state: &mut State,
    params: PreCommitSectorBatchParams2,
) -> Result<Vec<u8>, ActorError> {
    let policy = &call.env.genesis.policy;
    let epoch = call.env.epoch;
    controlled_miner(call, state)?;
    let m = miner(state, call.receiver)?;
    let sector_size = SectorSize::new(m.info.sector_size)
        .map_err(|e| ActorError::illegal_state(e.to_string()))?;
    if params.sectors.is_empty() || params.sectors.len() > MAX_BATCH {
        return Err(ActorError::illegal_argument(format!(
            "a batch pre-commits 1 to {MAX_BATCH} sectors, not {}",
            params.sectors.len()
        )));
    }
    let mut numbers = std::collections::BTreeSet::new();
    for info in &params.sectors {
        let n = info.sector_number;
        let proof: i64 = info.seal_proof.into();
        if proof != sector_size.seal_proof_number() {
            return Err(ActorError::illegal_argument(format!(
                "sector {n}: seal proof {proof} is not this miner's ({}: StackedDrg{sector_size}V1_1)",
                sector_size.seal_proof_number()
            )));
        }
        if m.allocated.contains(&n) || !numbers.insert(n) {
            return Err(ActorError::illegal_argument(format!(
                "sector number {n} is already allocated"
            )));
        }
        if info.sealed_cid.codec() != FIL_COMMITMENT_SEALED
            || info.sealed_cid.hash().code() != POSEIDON_BLS12_381_A1_FC1
        {
            return Err(ActorError::illegal_argument(format!(
                "sector {n}: sealed CID {} is not a replica commitment (CommR)",
                info.sealed_cid
            )));
        }
        if let Some(unsealed) = &info.unsealed_cid.0
            && (unsealed.codec() != nelumbo_commp::FIL_COMMITMENT_UNSEALED
                || unsealed.hash().code() != nelumbo_commp::SHA2_256_TRUNC254_PADDED)
        {
            return Err(ActorError::illegal_argument(format!(
                "sector {n}: unsealed CID {unsealed} is not a data commitment (CommD)"
            )));
        }
        if !info.deal_ids.is_empty() {
            return Err(ActorError::illegal_argument(format!(
                "sector {n}: pre-committing deal IDs is not supported: activate deals with ProveCommitSectors3 piece manifests that notify the market actor (f05)"
            )));
        }
        if info.seal_rand_epoch >= epoch {
            return Err(ActorError::illegal_argument(format!(
                "sector {n}: seal ticket epoch {} must be before the current epoch {epoch}",
                info.seal_rand_epoch
            )));
        }
        if epoch - info.seal_rand_epoch > policy.max_pre_commit_randomness_lookback {
            return Err(ActorError::illegal_argument(format!(
                "sector {n}: seal ticket epoch {} is too old: at most {} epochs before the pre-commit (epoch {epoch})",
                info.seal_rand_epoch, policy.max_pre_commit_randomness_lookback
            )));
        }
        let lifetime = info.expiration - epoch;
        if lifetime < policy.min_sector_expiration || lifetime > policy.max_sector_expiration {
            return Err(ActorError::illegal_argument(format!(
                "sector {n}: expiration {} is {lifetime} epochs away; it must be {} to {} epochs away",
                info.expiration, policy.min_sector_expiration, policy.max_sector_expiration
            )));
        }
    }
    let per_sector = parse_fil(&policy.pre_commit_deposit)
        .map_err(|e| ActorError::illegal_state(e.to_string()))?;
    let deposit = &per_sector * params.sectors.len() as u64;
    let available = available_balance(state, call.receiver);
    if available < deposit {
        return Err(ActorError::insufficient_funds(format!(
            "pre-commit deposit of {} exceeds the miner's available balance of {}",
            crate::genesis::format_fil(&deposit),
            crate::genesis::format_fil(&available)
        )));
    }
    let m = state
        .miners
        .get_mut(&call.receiver)
        .ok_or_else(|| ActorError::illegal_state("miner vanished"))?;
    for info in params.sectors {
        m.allocated.insert(info.sector_number);
        m.pre_commits.insert(
            info.sector_number,
            PreCommit {
                seal_proof: info.seal_proof.into(),
                number: info.sector_number,
                sealed_cid: info.sealed_cid,
                seal_rand_epoch: info.seal_rand_epoch,
                expiration: info.expiration,
                unsealed_cid: info.unsealed_cid.0,
                deposit: per_sector.clone(),
                epoch,
            },
        );
    }
    m.locked += &deposit;
    Ok(Vec::new())
}

pub fn prove_commit_sectors3(
    call: &Call,
    state: &mut State,
    params: ProveCommitSectors3Params,
) -> Result<ProveCommitSectors3Return, ActorError> {
    let policy = &call.env.genesis.policy;
    let epoch = call.env.epoch;
    controlled_miner(call, state)?;
    if !params.aggregate_proof.is_empty() || params.aggregate_proof_type.is_some() {
        return Err(ActorError::illegal_argument(
            "aggregate proofs are not supported here: give one proof per sector in sector_proofs",
        ));
    }
    if params.sector_activations.is_empty()
        || params.sector_activations.len() != params.sector_proofs.len()
    {
        return Err(ActorError::illegal_argument(format!(
            "{} activation manifests and {} proofs: give one proof per sector",
            params.sector_activations.len(),
            params.sector_proofs.len()
        )));
    }
    let m = miner(state, call.receiver)?;
    let sector_size = SectorSize::new(m.info.sector_size)
        .map_err(|e| ActorError::illegal_state(e.to_string()))?;

    // Whole-message checks first: a sector proven too early or with pieces that do not match
    // its pre-committed CommD fails the message.
    for manifest in &params.sector_activations {
        let n = manifest.sector_number;
        let Some(pre) = m.pre_commits.get(&n) else {
            continue;
        };
        let seed_epoch = pre.epoch + policy.pre_commit_challenge_delay;
        if epoch <= seed_epoch {
            return Err(ActorError::forbidden(format!(
                "too early to prove sector {n}: its interactive seed is drawn at epoch {seed_epoch} and the current epoch is {epoch}"
            )));
        }
        let computed = manifest_commd(sector_size, manifest)?;
        let expected = pre.unsealed_cid.unwrap_or_else(|| {
            piece_cid_v1(&nelumbo_commp::zero_piece_commitment(sector_size.padded()))
        });
        if piece_cid_v1(&computed) != expected {
            return Err(ActorError::illegal_argument(format!(
                "unsealed CID does not match pieces for sector {n}: pre-committed {expected}, pieces give {}",
                piece_cid_v1(&computed)
            )));
        }
    }

    let pledge_per_sector =
        parse_fil(&policy.initial_pledge).map_err(|e| ActorError::illegal_state(e.to_string()))?;
    let mut fail_codes = Vec::new();
    let mut reasons = Vec::new();
    for (index, (manifest, proof)) in params
        .sector_activations
        .iter()
        .zip(&params.sector_proofs)
        .enumerate()
    {
        match prove_one(
            call,
            state,
            sector_size,
            manifest,
            proof,
            &pledge_per_sector,
            params.require_notification_success,
        ) {
            Ok(()) => {}
            Err(error) => {
                tracing::info!(miner = call.receiver, sector = manifest.sector_number, reason = %error.message, "sector activation failed");
                // A sector's own failure skips it unless every sector must succeed; anything
                // else (a broken state) fails the message.
                let sector_failure = [
                    ExitCode::USR_ILLEGAL_ARGUMENT,
                    ExitCode::USR_NOT_FOUND,
                    ExitCode::USR_INSUFFICIENT_FUNDS,
                ]
                .contains(&error.code);
                if params.require_activation_success || !sector_failure {
                    return Err(error);
                }
                reasons.push(format!(
                    "sector {}: {}",
                    manifest.sector_number, error.message
                ));
                fail_codes.push(FailCode {
                    idx: index as u32,
                    code: error.code,
                });
            }
        }
    }
    let success_count = (params.sector_activations.len() - fail_codes.len()) as u32;
    if success_count == 0 {
        return Err(ActorError::illegal_argument(format!(
            "no sector was activated: {}",
            reasons.join("; ")
        )));
    }
    Ok(ProveCommitSectors3Return {
        activation_results: BatchReturn {
            success_count,
            fail_codes,
        },
    })
}

/// CommD of the pieces a manifest lists, in order.
fn manifest_commd(
    sector_size: SectorSize,
    manifest: &SectorActivationManifest,
) -> Result<Commitment, ActorError> {
    let mut pieces = Vec::new();
    for piece in &manifest.pieces {
        let info = nelumbo_commp::parse_piece_cid(&piece.cid).map_err(|e| {
            ActorError::illegal_argument(format!("sector {}: {e}", manifest.sector_number))
        })?;
        let size = PaddedPieceSize::new(piece.size.0).map_err(|e| {
            ActorError::illegal_argument(format!("sector {}: {e}", manifest.sector_number))
        })?;
        pieces.push(SectorPiece {
            commitment: info.commitment,
            size,
        });
    }
    commd(sector_size, &pieces).map_err(|e| {
        ActorError::illegal_argument(format!("sector {}: {e}", manifest.sector_number))
    })
}

fn prove_one(
    call: &Call,
    state: &mut State,
    sector_size: SectorSize,
    manifest: &SectorActivationManifest,
    proof: &RawBytes,
    pledge: &TokenAmount,
    require_notification_success: bool,
) -> Result<(), ActorError> {
    let policy = &call.env.genesis.policy;
    let epoch = call.env.epoch;
    let n = manifest.sector_number;
    let pre = miner(state, call.receiver)?
        .pre_commits
        .get(&n)
        .cloned()
        .ok_or_else(|| ActorError::not_found(format!("sector {n} is not pre-committed")))?;
    let seed_epoch = pre.epoch + policy.pre_commit_challenge_delay;
    if epoch > seed_epoch + policy.max_prove_commit_duration {
        return Err(ActorError::illegal_argument(format!(
            "sector {n}'s pre-commit expired at epoch {}",
            seed_epoch + policy.max_prove_commit_duration
        )));
    }
    let entropy = address_entropy(&id_addr(call.receiver));
    let ticket = call
        .env
        .randomness
        .chain_randomness(dst::SEAL_RANDOMNESS, pre.seal_rand_epoch, &entropy)
        .map_err(ActorError::illegal_state)?;
    let seed = call.env.randomness.beacon_randomness(
        dst::INTERACTIVE_SEAL_CHALLENGE_SEED,
        seed_epoch,
        &entropy,
    );
    let comm_r: [u8; 32] = pre.sealed_cid.hash().digest().try_into().map_err(|_| {
        ActorError::illegal_argument(format!("sector {n}: sealed CID digest is not 32 bytes"))
    })?;
    let comm_d = manifest_commd(sector_size, manifest)?;
    let replica = Replica {
        sector_size,
        miner: ProofActorId(call.receiver),
        number: SectorNumber(n),
        ticket: Randomness(ticket),
    };
    let sealed = SealedCommitments { comm_r, comm_d };
    match call
        .env
        .verifier
        .verify_seal(&replica, &sealed, Randomness(seed), proof.bytes())
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(ActorError::illegal_argument(format!(
                "invalid seal proof for sector {n}"
            )));
        }
        Err(e) => {
            return Err(ActorError::illegal_argument(format!(
                "invalid seal proof for sector {n}: {e}"
            )));
        }
    }

    let available = available_balance(state, call.receiver) + &pre.deposit;
    if available < *pledge {
        return Err(ActorError::insufficient_funds(format!(
            "initial pledge of {} exceeds the miner's available balance of {}",
            crate::genesis::format_fil(pledge),
            crate::genesis::format_fil(&available)
        )));
    }

    // Activate the deals the pieces name.
    let mut deal_ids = Vec::new();
    let mut deal_space = 0u64;
    let mut verified_space = 0u64;
    for piece in &manifest.pieces {
        for notification in &piece.notify {
            if state.resolve(&notification.address) != Some(MARKET) {
                continue;
            }
            let deal_id: u64 = match fvm_ipld_encoding::from_slice(notification.payload.bytes()) {
                Ok(id) => id,
                Err(e) => {
                    let why =
                        format!("sector {n}: market notification payload is not a deal ID: {e}");
                    if require_notification_success {
                        return Err(ActorError::illegal_argument(why));
                    }
                    tracing::info!(reason = %why, "deal not activated");
                    continue;
                }
            };
            match market::activate_deal(
                state,
                call.receiver,
                deal_id,
                (&piece.cid, piece.size.0),
                (n, pre.expiration),
                epoch,
            ) {
                Ok(proposal) => {
                    deal_ids.push(deal_id);
                    deal_space += piece.size.0;
                    if proposal.verified_deal {
                        verified_space += piece.size.0;
                    }
                }
                Err(why) => {
                    if require_notification_success {
                        return Err(ActorError::illegal_argument(format!("sector {n}: {why}")));
                    }
                    tracing::info!(sector = n, reason = %why, "deal not activated");
                }
            }
        }
    }

    let policy = &call.env.genesis.policy;
    let m = state
        .miners
        .get_mut(&call.receiver)
        .ok_or_else(|| ActorError::illegal_state("miner vanished"))?;
    let (deadline, partition) = m.assign_deadline(policy, epoch);
    let dl = &mut m.deadlines[deadline as usize];
    while dl.partitions.len() <= partition as usize {
        dl.partitions.push(Default::default());
    }
    dl.partitions[partition as usize].sectors.insert(n);
    let duration = BigInt::from(pre.expiration - epoch);
    m.sectors.insert(
        n,
        Sector {
            number: n,
            seal_proof: pre.seal_proof,
            sealed_cid: pre.sealed_cid,
            unsealed_cid: piece_cid_v1(&comm_d),
            activation: epoch,
            expiration: pre.expiration,
            deal_ids,
            deal_weight: BigInt::from(deal_space) * &duration,
            verified_deal_weight: BigInt::from(verified_space) * &duration,
            verified_space,
            initial_pledge: pledge.clone(),
            deadline,
            partition,
            status: SectorStatus::Unproven,
        },
    );
    m.pre_commits.remove(&n);
    m.locked -= &pre.deposit;
    m.locked += pledge;
    tracing::info!(
        miner = call.receiver,
        sector = n,
        deadline,
        partition,
        "sector proven; it gains power at its first WindowPoSt"
    );
    Ok(())
}
