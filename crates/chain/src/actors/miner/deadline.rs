//! Per-epoch miner bookkeeping: deadline ends (missed WindowPoSts make sectors faulty and cost a
//! penalty), expired pre-commits and sectors.
//!
//! One deviation from Filecoin, for a devnet: a penalty of `fault_fee` per faulty sector is
//! burnt at every deadline end where the sector is faulty, including the one that found it
//! faulty, so the cost of a missed WindowPoSt shows within one proving period (Filecoin charges
//! only faults that persist, and adds a daily fee).

use fvm_shared::clock::ChainEpoch;

use super::burn_penalty;
use crate::actors::market;
use crate::genesis::{Policy, parse_fil};
use crate::state::{ActorId, SectorStatus, State};

/// Runs the miners' end-of-epoch work for `epoch`.
pub fn cron(state: &mut State, policy: &Policy, epoch: ChainEpoch) {
    let fault_fee = parse_fil(&policy.fault_fee).unwrap_or_default();
    let ids: Vec<ActorId> = state.miners.keys().copied().collect();
    for id in ids {
        expire_pre_commits(state, policy, id, epoch);
        expire_sectors(state, id, epoch);
        let Some(m) = state.miners.get(&id) else {
            continue;
        };
        let info = m.deadline_info(policy, epoch);
        if epoch != info.close - 1 {
            continue;
        }
        let Some(m) = state.miners.get_mut(&id) else {
            continue;
        };
        let deadline = &mut m.deadlines[info.index as usize];
        let posted = std::mem::take(&mut deadline.posted);
        let mut newly_faulty = 0u64;
        let mut faulty = 0u64;
        for (index, partition) in deadline.partitions.iter().enumerate() {
            if posted.contains(&(index as u64)) {
                continue;
            }
            for n in &partition.sectors {
                let Some(sector) = m.sectors.get_mut(n) else {
                    continue;
                };
                match sector.status {
                    SectorStatus::Active | SectorStatus::Unproven | SectorStatus::Recovering => {
                        sector.status = SectorStatus::Faulty;
                        newly_faulty += 1;
                        faulty += 1;
                    }
                    SectorStatus::Faulty => faulty += 1,
                }
            }
        }
        if faulty > 0 {
            let penalty = &fault_fee * faulty;
            tracing::warn!(
                miner = id,
                deadline = info.index,
                newly_faulty,
                faulty,
                penalty = %crate::genesis::format_fil(&penalty),
                "deadline closed without a WindowPoSt for some sectors: they are faulty"
            );
            burn_penalty(state, id, &penalty);
        }
    }
}

fn expire_pre_commits(state: &mut State, policy: &Policy, id: ActorId, epoch: ChainEpoch) {
    let Some(m) = state.miners.get_mut(&id) else {
        return;
    };
    let limit = policy.pre_commit_challenge_delay + policy.max_prove_commit_duration;
    let expired: Vec<u64> = m
        .pre_commits
        .values()
        .filter(|p| epoch > p.epoch + limit)
        .map(|p| p.number)
        .collect();
    let mut burnt = fvm_shared::econ::TokenAmount::from_atto(0);
    for n in expired {
        if let Some(p) = m.pre_commits.remove(&n) {
            m.locked -= &p.deposit;
            burnt += p.deposit;
            tracing::warn!(
                miner = id,
                sector = n,
                "pre-commit expired unproven; its deposit is burnt"
            );
        }
    }
    let _ = state.transfer(id, crate::state::BURNT_FUNDS, &burnt);
}

fn expire_sectors(state: &mut State, id: ActorId, epoch: ChainEpoch) {
    let Some(m) = state.miners.get_mut(&id) else {
        return;
    };
    let expired: Vec<u64> = m
        .sectors
        .values()
        .filter(|s| s.expiration <= epoch)
        .map(|s| s.number)
        .collect();
    let mut deals = Vec::new();
    for n in expired {
        if let Some(sector) = m.sectors.remove(&n) {
            m.locked -= &sector.initial_pledge;
            let partition =
                &mut m.deadlines[sector.deadline as usize].partitions[sector.partition as usize];
            partition.sectors.remove(&n);
            partition.terminated.insert(n);
            deals.extend(sector.deal_ids);
            tracing::info!(
                miner = id,
                sector = n,
                "sector expired; its pledge is released"
            );
        }
    }
    market::terminate_deals(state, &deals, epoch);
}
