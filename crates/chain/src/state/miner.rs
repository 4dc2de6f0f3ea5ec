//! A storage miner's state: info, pre-commits, sectors, deadlines and partitions, locked funds.

use std::collections::{BTreeMap, BTreeSet};

use cid::Cid;
use fvm_ipld_bitfield::BitField;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::types::DeadlineInfo;
use num_bigint::BigInt;
use num_traits::Zero;
use serde::{Deserialize, Serialize};

use super::ActorId;
use crate::genesis::Policy;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerInfo {
    pub owner: ActorId,
    pub worker: ActorId,
    pub control: Vec<ActorId>,
    pub peer_id: Vec<u8>,
    pub multiaddrs: Vec<Vec<u8>>,
    /// `RegisteredPoStProof` number of the miner's WindowPoSt.
    pub window_post_proof: i64,
    pub sector_size: u64,
    pub partition_sectors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommit {
    pub seal_proof: i64,
    pub number: u64,
    pub sealed_cid: Cid,
    pub seal_rand_epoch: ChainEpoch,
    pub expiration: ChainEpoch,
    pub unsealed_cid: Option<Cid>,
    pub deposit: TokenAmount,
    pub epoch: ChainEpoch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectorStatus {
    /// Proven at commit but not yet by a WindowPoSt: no power yet.
    Unproven,
    Active,
    Faulty,
    /// Faulty, declared recovered, waiting for a WindowPoSt.
    Recovering,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sector {
    pub number: u64,
    pub seal_proof: i64,
    pub sealed_cid: Cid,
    pub unsealed_cid: Cid,
    pub activation: ChainEpoch,
    pub expiration: ChainEpoch,
    pub deal_ids: Vec<u64>,
    /// Deal space times duration, as Filecoin weighs it.
    pub deal_weight: BigInt,
    pub verified_deal_weight: BigInt,
    /// Bytes of verified deals: quality-adjusted power counts them ten times.
    pub verified_space: u64,
    pub initial_pledge: TokenAmount,
    pub deadline: u64,
    pub partition: u64,
    pub status: SectorStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub sectors: BTreeSet<u64>,
    pub terminated: BTreeSet<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub partitions: Vec<Partition>,
    /// Partitions proven in the current challenge window.
    pub posted: BTreeSet<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerState {
    pub info: MinerInfo,
    /// The start of the miner's first proving period; later periods follow every
    /// `wpost_proving_period` epochs.
    pub proving_period_start: ChainEpoch,
    pub pre_commits: BTreeMap<u64, PreCommit>,
    pub allocated: BTreeSet<u64>,
    pub sectors: BTreeMap<u64, Sector>,
    pub deadlines: Vec<Deadline>,
    /// Pre-commit deposits and initial pledges.
    pub locked: TokenAmount,
    pub fee_debt: TokenAmount,
    /// Penalties burnt so far (faults and terminations), for operators.
    pub penalties: TokenAmount,
    pub blocks_won: u64,
}

impl MinerState {
    pub fn new(info: MinerInfo, proving_period_start: ChainEpoch, deadlines: u64) -> Self {
        Self {
            info,
            proving_period_start,
            pre_commits: BTreeMap::new(),
            allocated: BTreeSet::new(),
            sectors: BTreeMap::new(),
            deadlines: vec![Deadline::default(); deadlines as usize],
            locked: TokenAmount::zero(),
            fee_debt: TokenAmount::zero(),
            penalties: TokenAmount::zero(),
            blocks_won: 0,
        }
    }

    /// Raw and quality-adjusted power: active sectors only.
    pub fn power(&self) -> (BigInt, BigInt) {
        let mut raw = BigInt::zero();
        let mut qa = BigInt::zero();
        for sector in self
            .sectors
            .values()
            .filter(|s| s.status == SectorStatus::Active)
        {
            raw += self.info.sector_size;
            qa += self.info.sector_size + 9 * sector.verified_space;
        }
        (raw, qa)
    }

    /// The miner's deadline at `epoch`, computed as the miner actor does.
    pub fn deadline_info(&self, policy: &Policy, epoch: ChainEpoch) -> DeadlineInfo {
        let period = policy.wpost_proving_period();
        let offset = self.proving_period_start.rem_euclid(period);
        let period_start = epoch - (epoch - offset).rem_euclid(period);
        let index = ((epoch - period_start) / policy.wpost_challenge_window) as u64;
        deadline_info(policy, epoch, period_start, index)
    }

    /// The next (or current) occurrence of deadline `index` that has not closed at `epoch`.
    pub fn next_deadline_occurrence(
        &self,
        policy: &Policy,
        epoch: ChainEpoch,
        index: u64,
    ) -> DeadlineInfo {
        let current = self.deadline_info(policy, epoch);
        let info = deadline_info(policy, epoch, current.period_start, index);
        if info.close <= epoch {
            deadline_info(
                policy,
                epoch,
                current.period_start + policy.wpost_proving_period(),
                index,
            )
        } else {
            info
        }
    }

    pub fn faulty_sectors(&self) -> BitField {
        bits(
            self.sectors
                .values()
                .filter(|s| matches!(s.status, SectorStatus::Faulty | SectorStatus::Recovering))
                .map(|s| s.number),
        )
    }

    /// The five bitfields of a partition, as Lotus reports them.
    pub fn partition_view(&self, deadline: u64, partition: u64) -> Option<[BitField; 5]> {
        let p = self
            .deadlines
            .get(deadline as usize)?
            .partitions
            .get(partition as usize)?;
        let status = |n: &u64| self.sectors.get(n).map(|s| s.status);
        let all = bits(p.sectors.iter().chain(&p.terminated).copied());
        let faulty = bits(p.sectors.iter().copied().filter(|n| {
            matches!(
                status(n),
                Some(SectorStatus::Faulty | SectorStatus::Recovering)
            )
        }));
        let recovering = bits(
            p.sectors
                .iter()
                .copied()
                .filter(|n| status(n) == Some(SectorStatus::Recovering)),
        );
        let live = bits(p.sectors.iter().copied());
        let active = bits(
            p.sectors
                .iter()
                .copied()
                .filter(|n| status(n) == Some(SectorStatus::Active)),
        );
        Some([all, faulty, recovering, live, active])
    }

    /// Chooses a deadline and partition for a newly proven sector.
    ///
    /// Like the miner actor, only deadlines that are neither open nor next may take new sectors.
    /// Among them it takes the one whose partitions would stay fewest, and of those the one that
    /// opens soonest, so that a small miner's first WindowPoSt comes quickly and a large one's
    /// sectors spread over the proving period.
    pub fn assign_deadline(&self, policy: &Policy, epoch: ChainEpoch) -> (u64, u64) {
        let current = self.deadline_info(policy, epoch);
        let n = policy.wpost_period_deadlines;
        let per_partition = self.info.partition_sectors as usize;
        let mut best: Option<(usize, u64, u64, u64)> = None; // (partitions after, order, deadline, partition)
        for step in 2..n {
            let index = (current.index + step) % n;
            let deadline = &self.deadlines[index as usize];
            let open_partition = deadline
                .partitions
                .iter()
                .position(|p| p.sectors.len() + p.terminated.len() < per_partition);
            let (partitions_after, partition) = match open_partition {
                Some(p) => (deadline.partitions.len(), p as u64),
                None => (
                    deadline.partitions.len() + 1,
                    deadline.partitions.len() as u64,
                ),
            };
            let candidate = (partitions_after, step, index, partition);
            if best.is_none_or(|b| (candidate.0, candidate.1) < (b.0, b.1)) {
                best = Some(candidate);
            }
        }
        let (_, _, deadline, partition) = best.unwrap_or((0, 0, (current.index + 2) % n, 0));
        (deadline, partition)
    }
}

pub fn deadline_info(
    policy: &Policy,
    epoch: ChainEpoch,
    period_start: ChainEpoch,
    index: u64,
) -> DeadlineInfo {
    let open = period_start + index as ChainEpoch * policy.wpost_challenge_window;
    DeadlineInfo {
        current_epoch: epoch,
        period_start,
        index,
        open,
        close: open + policy.wpost_challenge_window,
        challenge: open - policy.wpost_challenge_lookback,
        fault_cutoff: open - policy.fault_declaration_cutoff,
        wpost_period_deadlines: policy.wpost_period_deadlines,
        wpost_proving_period: policy.wpost_proving_period(),
        wpost_challenge_window: policy.wpost_challenge_window,
        wpost_challenge_lookback: policy.wpost_challenge_lookback,
        fault_declaration_cutoff: policy.fault_declaration_cutoff,
    }
}

pub fn bits(numbers: impl IntoIterator<Item = u64>) -> BitField {
    BitField::try_from_bits(numbers).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner(start: ChainEpoch) -> MinerState {
        let info = MinerInfo {
            owner: 100,
            worker: 100,
            control: vec![],
            peer_id: vec![],
            multiaddrs: vec![],
            window_post_proof: 10,
            sector_size: 2048,
            partition_sectors: 2,
        };
        MinerState::new(info, start, 48)
    }

    #[test]
    fn deadlines_follow_the_proving_period() {
        let mut policy = Policy::devnet();
        policy.wpost_challenge_window = 4;
        let m = miner(7);
        let period = policy.wpost_proving_period();
        let at = m.deadline_info(&policy, 7);
        assert_eq!(
            (at.period_start, at.index, at.open, at.close),
            (7, 0, 7, 11)
        );
        let later = m.deadline_info(&policy, 7 + period + 9);
        assert_eq!((later.period_start, later.index), (7 + period, 2));
        let before = m.deadline_info(&policy, 3);
        assert_eq!(before.period_start, 7 - period);
        assert!(before.is_open());
        let next = m.next_deadline_occurrence(&policy, 20, 1);
        assert_eq!(
            next.open,
            7 + period + 4,
            "deadline 1 of this period has closed"
        );
    }

    #[test]
    fn new_sectors_skip_the_open_and_next_deadline_and_fill_partitions() {
        let mut policy = Policy::devnet();
        policy.wpost_challenge_window = 4;
        let mut m = miner(0);
        let (d, p) = m.assign_deadline(&policy, 1);
        assert_eq!((d, p), (2, 0));
        m.deadlines[2].partitions.push(Partition {
            sectors: [1].into(),
            terminated: BTreeSet::new(),
        });
        assert_eq!(
            m.assign_deadline(&policy, 1),
            (2, 0),
            "the partition has room"
        );
        m.deadlines[2].partitions[0].sectors.insert(2);
        assert_eq!(
            m.assign_deadline(&policy, 1),
            (3, 0),
            "a full partition moves on"
        );
    }
}
