//! Elections and won blocks.
//!
//! The devnet's tipsets come from its clock; miners with power take part in an election every
//! epoch and earn the block reward for each block they win. The rule, which stands in for
//! Filecoin's Poisson sortition:
//!
//! - the election proof for epoch `E` is the worker's BLS signature over
//!   `DrawRandomness(beacon(E), ElectionProofProduction, E, CBOR(miner))`;
//! - the miner wins (win count 1) if the first 16 bytes of BLAKE2b-256 of that proof, read as a
//!   fraction, fall below `election_rate × miner power / network power` (quality-adjusted);
//! - it must then prove its challenged sectors with a WinningPoSt (challenge randomness
//!   `DrawRandomness(beacon(E), WinningPoStChallengeSeed, E, CBOR(miner))`), sign the block
//!   header with its worker key and submit it with `SyncSubmitBlock`;
//! - a WinningPoSt takes 6 to 17 s on a small machine, longer than a devnet epoch, so a block
//!   for epoch `E` is accepted while the head is at most `block_acceptance_epochs` past `E`
//!   (and `E` is at most one epoch ahead of the head). Its reward is paid at the next tipset.

use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::crypto::signature::{Signature, SignatureType};
use nelumbo_chain_api::types::{BlockMsg, ExtendedSectorInfo, MiningBaseInfo, TipSetKey};
use nelumbo_proofs::{PostKind, ProvenSector, winning_post_challenges};
use nelumbo_types::{ActorId as ProofActorId, Randomness, SectorNumber, SectorSize};
use num_traits::Zero;

use super::Chain;
use crate::randomness::{address_entropy, draw, dst};
use crate::state::{ActorId, SectorStatus, State};
use crate::store::WonBlock;

pub use nelumbo_chain_api::election::wins;

/// The sectors a WinningPoSt at `epoch` challenges, and the randomness.
pub fn winning_challenge(
    state: &State,
    miner: ActorId,
    epoch: ChainEpoch,
    beacon: &crate::randomness::Beacon,
) -> Result<(Vec<ExtendedSectorInfo>, [u8; 32]), String> {
    let m = state
        .miners
        .get(&miner)
        .ok_or_else(|| format!("f0{miner} is not a miner"))?;
    let size = SectorSize::new(m.info.sector_size).map_err(|e| e.to_string())?;
    let randomness = draw(
        &beacon.digest(epoch),
        dst::WINNING_POST_CHALLENGE_SEED,
        epoch,
        &address_entropy(&Address::new_id(miner)),
    );
    let active: Vec<_> = m
        .sectors
        .values()
        .filter(|s| s.status == SectorStatus::Active)
        .collect();
    if active.is_empty() {
        return Ok((Vec::new(), randomness));
    }
    let indexes = winning_post_challenges(
        size,
        ProofActorId(miner),
        Randomness(randomness),
        active.len() as u64,
    )
    .map_err(|e| e.to_string())?;
    let sectors = indexes
        .into_iter()
        .filter_map(|i| active.get(i as usize))
        .map(|s| ExtendedSectorInfo {
            seal_proof: s.seal_proof,
            sector_number: s.number,
            sector_key: None,
            sealed_cid: s.sealed_cid,
        })
        .collect();
    Ok((sectors, randomness))
}

impl Chain {
    /// What a miner needs to run the election for `epoch` and prove a won block.
    pub fn base_info(
        &self,
        miner: &Address,
        epoch: ChainEpoch,
        key: &TipSetKey,
    ) -> anyhow::Result<Option<MiningBaseInfo>> {
        let (_, state) = self.state_at(key)?;
        let Some(id) = state
            .resolve(miner)
            .filter(|id| state.miners.contains_key(id))
        else {
            return Ok(None);
        };
        let m = &state.miners[&id];
        let worker_key = state
            .account_key(m.info.worker)
            .ok_or_else(|| anyhow::anyhow!("the worker of {miner} has no key"))?;
        let (_, miner_power) = m.power();
        let (_, network_power) = state.total_power();
        let (sectors, _) =
            winning_challenge(&state, id, epoch, &self.beacon).map_err(anyhow::Error::msg)?;
        Ok(Some(MiningBaseInfo {
            eligible_for_mining: !miner_power.is_zero() && m.fee_debt.is_zero(),
            miner_power,
            network_power,
            sectors,
            worker_key,
            sector_size: m.info.sector_size,
            prev_beacon_entry: self.beacon.entry(epoch - 1),
            beacon_entries: vec![self.beacon.entry(epoch)],
            election_rate_permille: Some(self.genesis.policy.election_rate_permille),
        }))
    }

    /// Checks a won block and records it for its reward. Blocking: verifies a WinningPoSt.
    pub fn submit_block(&self, block: BlockMsg) -> anyhow::Result<()> {
        let header = block.header;
        let epoch = header.height;
        let head = self.head().height;
        let window = self.genesis.policy.block_acceptance_epochs;
        anyhow::ensure!(
            epoch <= head + 1,
            "block for epoch {epoch} is from the future: the head is at {head}"
        );
        anyhow::ensure!(
            head - epoch <= window,
            "block for epoch {epoch} is too late: blocks are accepted up to {window} epochs after their epoch and the head is at {head}"
        );
        let base = TipSetKey(header.parents.clone());
        let (_, state) = self
            .state_at(&base)
            .map_err(|e| anyhow::anyhow!("the block's parents: {e:#}"))?;
        let miner = state
            .resolve(&header.miner)
            .filter(|id| state.miners.contains_key(id))
            .ok_or_else(|| anyhow::anyhow!("{} is not a miner", header.miner))?;
        let cid = header.cid().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            !self
                .inner()
                .unpaid
                .iter()
                .any(|(_, b)| b.miner == miner && b.header.height == epoch)
                && self
                    .store
                    .won_blocks()?
                    .iter()
                    .all(|b| !(b.miner == miner && b.header.height == epoch)),
            "f0{miner} already has a block for epoch {epoch}"
        );
        let m = &state.miners[&miner];
        let worker = state
            .account_key(m.info.worker)
            .ok_or_else(|| anyhow::anyhow!("the worker of f0{miner} has no key"))?;
        let entropy = address_entropy(&Address::new_id(miner));

        let election = header
            .election_proof
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the block has no election proof"))?;
        let vrf_input = draw(
            &self.beacon.digest(epoch),
            dst::ELECTION_PROOF_PRODUCTION,
            epoch,
            &entropy,
        );
        bls(&election.vrf_proof)
            .verify(&vrf_input, &worker)
            .map_err(|e| anyhow::anyhow!("invalid election proof: not the worker's signature over the election randomness ({e})"))?;
        let (_, miner_power) = m.power();
        let (_, network_power) = state.total_power();
        anyhow::ensure!(
            wins(
                &election.vrf_proof,
                self.genesis.policy.election_rate_permille,
                &miner_power,
                &network_power
            ),
            "the election proof does not win epoch {epoch}"
        );
        anyhow::ensure!(
            election.win_count == 1,
            "win count {} is wrong: this chain's elections give 1",
            election.win_count
        );

        let sig = header
            .block_sig
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the block is not signed"))?;
        bls(&sig.data)
            .verify(
                &header.signing_bytes().map_err(anyhow::Error::msg)?,
                &worker,
            )
            .map_err(|e| anyhow::anyhow!("invalid block signature: not the worker's ({e})"))?;

        let (challenged, randomness) =
            winning_challenge(&state, miner, epoch, &self.beacon).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            !challenged.is_empty(),
            "f0{miner} has no active sectors to prove"
        );
        let [proof] = header.win_post_proof.as_slice() else {
            anyhow::bail!(
                "expected one WinningPoSt proof, got {}",
                header.win_post_proof.len()
            );
        };
        let size = SectorSize::new(m.info.sector_size)?;
        anyhow::ensure!(
            proof.post_proof == size.winning_post_proof_number(),
            "WinningPoSt proof type {} is not {} for {size} sectors",
            proof.post_proof,
            size.winning_post_proof_number()
        );
        let sectors: Vec<ProvenSector> = challenged
            .iter()
            .map(|s| {
                let comm_r: [u8; 32] = s.sealed_cid.hash().digest().try_into().unwrap_or([0; 32]);
                ProvenSector {
                    number: SectorNumber(s.sector_number),
                    comm_r,
                }
            })
            .collect();
        match self.verifier.verify_post(
            PostKind::Winning,
            size,
            ProofActorId(miner),
            Randomness(randomness),
            &sectors,
            &proof.proof_bytes,
        ) {
            Ok(true) => {}
            Ok(false) => anyhow::bail!(
                "invalid WinningPoSt: it does not verify against the challenged sectors"
            ),
            Err(e) => anyhow::bail!("invalid WinningPoSt: {e}"),
        }

        let won = WonBlock {
            header,
            miner,
            win_count: 1,
            paid_at: None,
        };
        self.store.add_won_block(&cid, &won)?;
        if let Ok(mut inner) = self.inner.write() {
            inner.unpaid.push((cid, won));
        }
        self.metrics.blocks_won.inc();
        tracing::info!(miner = %Address::new_id(miner), epoch, block = %cid, "won block accepted; reward paid at the next tipset");
        Ok(())
    }
}

fn bls(bytes: &[u8]) -> Signature {
    Signature {
        sig_type: SignatureType::BLS,
        bytes: bytes.to_vec(),
    }
}
