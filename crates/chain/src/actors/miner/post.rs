//! Proving: `SubmitWindowedPoSt`, `DeclareFaultsRecovered` and `TerminateSectors`.

use fil_actor_miner_state::v18::{
    DeclareFaultsRecoveredParams, SubmitWindowedPoStParams, TerminateSectorsParams,
    TerminateSectorsReturn,
};
use nelumbo_proofs::{PostKind, ProvenSector};
use nelumbo_types::{ActorId as ProofActorId, Randomness, SectorNumber, SectorSize};

use super::{burn_penalty, controlled_miner, miner};
use crate::actors::{id_addr, market};
use crate::error::ActorError;
use crate::genesis::parse_fil;
use crate::randomness::{address_entropy, dst};
use crate::state::{SectorStatus, State};
use crate::vm::Call;

pub fn submit_windowed_post(
    call: &Call,
    state: &mut State,
    params: SubmitWindowedPoStParams,
) -> Result<(), ActorError> {
    let policy = &call.env.genesis.policy;
    let epoch = call.env.epoch;
    controlled_miner(call, state)?;
    let m = miner(state, call.receiver)?;
    let [proof] = params.proofs.as_slice() else {
        return Err(ActorError::illegal_argument(format!(
            "expected exactly one proof, got {}",
            params.proofs.len()
        )));
    };
    let proof_type: i64 = proof.post_proof.into();
    if proof_type != m.info.window_post_proof {
        return Err(ActorError::illegal_argument(format!(
            "proof type {proof_type} is not the miner's WindowPoSt proof type {}",
            m.info.window_post_proof
        )));
    }
    if params.deadline >= policy.wpost_period_deadlines {
        return Err(ActorError::illegal_argument(format!(
            "invalid deadline {}",
            params.deadline
        )));
    }
    let current = m.deadline_info(policy, epoch);
    if params.deadline != current.index {
        return Err(ActorError::illegal_argument(format!(
            "invalid deadline {} at epoch {epoch}, expected {} (open from {} to {})",
            params.deadline, current.index, current.open, current.close
        )));
    }
    if params.chain_commit_epoch < current.challenge || params.chain_commit_epoch >= epoch {
        return Err(ActorError::illegal_argument(format!(
            "chain commit epoch {} must be at or after the challenge epoch {} and before the current epoch {epoch}",
            params.chain_commit_epoch, current.challenge
        )));
    }
    let commit_rand = call
        .env
        .randomness
        .chain_randomness(dst::POST_CHAIN_COMMIT, params.chain_commit_epoch, &[])
        .map_err(ActorError::illegal_argument)?;
    if params.chain_commit_rand.0.as_slice() != commit_rand.as_slice() {
        return Err(ActorError::illegal_argument(
            "post commit randomness mismatched",
        ));
    }

    let deadline = &m.deadlines[params.deadline as usize];
    let mut seen = std::collections::BTreeSet::new();
    let mut to_prove = Vec::new();
    let mut skipped = Vec::new();
    for p in &params.partitions {
        let partition = deadline.partitions.get(p.index as usize).ok_or_else(|| {
            ActorError::illegal_argument(format!(
                "deadline {} has no partition {}",
                params.deadline, p.index
            ))
        })?;
        if !seen.insert(p.index) || deadline.posted.contains(&p.index) {
            return Err(ActorError::illegal_argument(format!(
                "partition {} already proven in this window",
                p.index
            )));
        }
        for n in p.skipped.iter() {
            if !partition.sectors.contains(&n) {
                return Err(ActorError::illegal_argument(format!(
                    "skipped sector {n} is not live in partition {}",
                    p.index
                )));
            }
            skipped.push(n);
        }
        for n in &partition.sectors {
            let status = m.sectors.get(n).map(|s| s.status);
            if !p.skipped.get(*n)
                && matches!(
                    status,
                    Some(SectorStatus::Active | SectorStatus::Unproven | SectorStatus::Recovering)
                )
            {
                to_prove.push(*n);
            }
        }
    }
    if to_prove.is_empty() {
        return Err(ActorError::illegal_argument(
            "cannot prove partitions with no active sectors",
        ));
    }

    let sector_size = SectorSize::new(m.info.sector_size)
        .map_err(|e| ActorError::illegal_state(e.to_string()))?;
    let randomness = call.env.randomness.beacon_randomness(
        dst::WINDOWED_POST_CHALLENGE_SEED,
        current.challenge,
        &address_entropy(&id_addr(call.receiver)),
    );
    let mut sectors = Vec::new();
    for n in &to_prove {
        let sector = &m.sectors[n];
        let comm_r: [u8; 32] = sector
            .sealed_cid
            .hash()
            .digest()
            .try_into()
            .map_err(|_| ActorError::illegal_state("bad CommR"))?;
        sectors.push(ProvenSector {
            number: SectorNumber(*n),
            comm_r,
        });
    }
    match call.env.verifier.verify_post(
        PostKind::Window,
        sector_size,
        ProofActorId(call.receiver),
        Randomness(randomness),
        &sectors,
        &proof.proof_bytes,
    ) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ActorError::illegal_argument(
                "invalid WindowPoSt proof: it does not verify against the partitions' sectors",
            ));
        }
        Err(e) => {
            return Err(ActorError::illegal_argument(format!(
                "invalid WindowPoSt proof: {e}"
            )));
        }
    }

    let m = state
        .miners
        .get_mut(&call.receiver)
        .ok_or_else(|| ActorError::illegal_state("miner vanished"))?;
    for n in &skipped {
        if let Some(s) = m.sectors.get_mut(n) {
            s.status = SectorStatus::Faulty;
        }
    }
    for n in &to_prove {
        if let Some(s) = m.sectors.get_mut(n) {
            s.status = SectorStatus::Active;
        }
    }
    let deadline = &mut m.deadlines[params.deadline as usize];
    deadline
        .posted
        .extend(params.partitions.iter().map(|p| p.index));
    tracing::info!(
        miner = call.receiver,
        deadline = params.deadline,
        sectors = to_prove.len(),
        skipped = skipped.len(),
        "WindowPoSt accepted"
    );
    Ok(())
}

pub fn declare_faults_recovered(
    call: &Call,
    state: &mut State,
    params: DeclareFaultsRecoveredParams,
) -> Result<(), ActorError> {
    let policy = &call.env.genesis.policy;
    let epoch = call.env.epoch;
    controlled_miner(call, state)?;
    // Recoveries need the miner's fee debt paid first.
    let debt = miner(state, call.receiver)?.fee_debt.clone();
    if debt.is_positive() {
        let free = super::available_balance(state, call.receiver) + &debt;
        if free < debt {
            return Err(ActorError::insufficient_funds(format!(
                "the miner owes {} in fees: add funds before declaring recoveries",
                crate::genesis::format_fil(&debt)
            )));
        }
        state.transfer(call.receiver, crate::state::BURNT_FUNDS, &debt)?;
        if let Some(m) = state.miners.get_mut(&call.receiver) {
            m.fee_debt = fvm_shared::econ::TokenAmount::from_atto(0);
        }
    }
    let m = state
        .miners
        .get_mut(&call.receiver)
        .ok_or_else(|| ActorError::illegal_state("miner vanished"))?;
    if params.recoveries.is_empty() {
        return Err(ActorError::illegal_argument("no recoveries declared"));
    }
    let mut changes = Vec::new();
    for declaration in &params.recoveries {
        if declaration.deadline >= policy.wpost_period_deadlines {
            return Err(ActorError::illegal_argument(format!(
                "invalid deadline {}",
                declaration.deadline
            )));
        }
        let target = m.next_deadline_occurrence(policy, epoch, declaration.deadline);
        if epoch >= target.fault_cutoff {
            return Err(ActorError::illegal_argument(format!(
                "late fault or recovery declaration for deadline {}: declarations for its window opening at epoch {} closed at epoch {}",
                declaration.deadline, target.open, target.fault_cutoff
            )));
        }
        let partition = m.deadlines[declaration.deadline as usize]
            .partitions
            .get(declaration.partition as usize)
            .ok_or_else(|| {
                ActorError::illegal_argument(format!(
                    "deadline {} has no partition {}",
                    declaration.deadline, declaration.partition
                ))
            })?;
        for n in declaration.sectors.iter() {
            if !partition.sectors.contains(&n) {
                return Err(ActorError::illegal_argument(format!(
                    "sector {n} is not live in deadline {} partition {}",
                    declaration.deadline, declaration.partition
                )));
            }
            changes.push(n);
        }
    }
    for n in changes {
        if let Some(s) = m.sectors.get_mut(&n)
            && s.status == SectorStatus::Faulty
        {
            s.status = SectorStatus::Recovering;
        }
    }
    Ok(())
}

pub fn terminate_sectors(
    call: &Call,
    state: &mut State,
    params: TerminateSectorsParams,
) -> Result<TerminateSectorsReturn, ActorError> {
    let policy = &call.env.genesis.policy;
    let epoch = call.env.epoch;
    controlled_miner(call, state)?;
    let fee =
        parse_fil(&policy.termination_fee).map_err(|e| ActorError::illegal_state(e.to_string()))?;
    let m = miner(state, call.receiver)?;
    let current = m.deadline_info(policy, epoch);
    let mut terminated = Vec::new();
    for declaration in &params.terminations {
        let next = (current.index + 1) % policy.wpost_period_deadlines;
        if declaration.deadline == current.index || declaration.deadline == next {
            return Err(ActorError::illegal_argument(format!(
                "cannot terminate sectors in deadline {}: it is open or next to open; retry once it has passed",
                declaration.deadline
            )));
        }
        let partition = m
            .deadlines
            .get(declaration.deadline as usize)
            .and_then(|d| d.partitions.get(declaration.partition as usize))
            .ok_or_else(|| {
                ActorError::illegal_argument(format!(
                    "no partition {} in deadline {}",
                    declaration.partition, declaration.deadline
                ))
            })?;
        for n in declaration.sectors.iter() {
            if !partition.sectors.contains(&n) {
                return Err(ActorError::illegal_argument(format!(
                    "sector {n} is not live in that partition"
                )));
            }
            terminated.push((declaration.deadline, declaration.partition, n));
        }
    }
    let mut deals = Vec::new();
    let mut penalty = fvm_shared::econ::TokenAmount::from_atto(0);
    let m = state
        .miners
        .get_mut(&call.receiver)
        .ok_or_else(|| ActorError::illegal_state("miner vanished"))?;
    for (d, p, n) in &terminated {
        let partition = &mut m.deadlines[*d as usize].partitions[*p as usize];
        partition.sectors.remove(n);
        partition.terminated.insert(*n);
        if let Some(sector) = m.sectors.remove(n) {
            m.locked -= &sector.initial_pledge;
            deals.extend(sector.deal_ids);
            penalty += &fee;
        }
    }
    burn_penalty(state, call.receiver, &penalty);
    market::terminate_deals(state, &deals, epoch);
    tracing::info!(
        miner = call.receiver,
        sectors = terminated.len(),
        "sectors terminated"
    );
    Ok(TerminateSectorsReturn { done: true })
}
