//! State to Lotus JSON: actors, miner info, sectors, deals.

use cid::Cid;
use fil_actor_market_state::v18::DealProposal;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::types::{
    Actor, BeneficiaryTerm, DealProposal as DealJson, MarketDeal, MarketDealState, MinerInfo,
    SectorOnChainInfo, SectorPreCommitInfo, SectorPreCommitOnChainInfo,
};
use num_traits::Zero;

use crate::state::{ActorId, ActorKind, DealState, MinerState, PreCommit, Sector, State, raw_cid};

/// The code CIDs of the builtin actors v18 devnet bundle, as Lotus embeds them, so that tools
/// which recognise actors by code CID work against this chain.
pub fn code_cid(kind: ActorKind) -> Cid {
    let text = match kind {
        ActorKind::Account => "bafk2bzacedpmhtrp2kdjoga2phrbi3f7z7wn25s3tluxoagcu7hsg2ppktxbw",
        ActorKind::Cron => "bafk2bzacedrv5m6tczd6dz6ly3zmenkljnokovduvgkbmgxvsawbalerciieg",
        ActorKind::DataCap => "bafk2bzaceamho7atkl2a7c3m3t24v6tf3wzceaewp3ph6rjmwza3xdy3gmqb6",
        ActorKind::Init => "bafk2bzaced23vlf6nemlulavy2ouxuvudxe3jbu4klc74tcgruafrqu2fnt3c",
        ActorKind::Reward => "bafk2bzacedchalmz2omgitfunbqg5opzcvrlvju77k6dr5zt2poyy7jjzkvwa",
        ActorKind::Market => "bafk2bzacecjrg6jueodndhwtkaa3n2v2tkjakmzu4c57hrhg5ige4d4kjggcg",
        ActorKind::Miner => "bafk2bzacedhvcxgdz2w75izwa5s5dwvsrxsnzkjcbpbresziyrrjrsvjzwvxe",
        ActorKind::Power => "bafk2bzacebydegz3ap6xgejojdu3usfddhyrj476f25ooahgcqko6d7djynas",
        ActorKind::System => "bafk2bzacedced5maxljwmavukjvtnmknpzoullfcwk3upaz5x5hvvdl2pk24e",
        ActorKind::VerifiedRegistry => {
            "bafk2bzaceccqnqgyehy72nkmujvpyibikslvpyxfhpqivzjmbkmdbme5xzm2u"
        }
    };
    Cid::try_from(text).unwrap_or_default()
}

/// An actor's state root: the hash of the part of the state it owns.
fn head(state: &State, id: ActorId, kind: ActorKind) -> Cid {
    let mut bytes = Vec::new();
    let _ = match kind {
        ActorKind::Miner => ciborium::into_writer(&state.miners.get(&id), &mut bytes),
        ActorKind::Market => ciborium::into_writer(&state.market, &mut bytes),
        ActorKind::VerifiedRegistry => ciborium::into_writer(&state.verifreg, &mut bytes),
        _ => ciborium::into_writer(&state.actors.get(&id), &mut bytes),
    };
    raw_cid(&bytes)
}

pub fn actor(state: &State, id: ActorId) -> Option<Actor> {
    let a = state.actors.get(&id)?;
    Some(Actor {
        code: code_cid(a.kind),
        head: head(state, id, a.kind),
        nonce: a.nonce,
        balance: a.balance.clone(),
        delegated_address: None,
    })
}

pub fn miner_info(m: &MinerState) -> MinerInfo {
    let owner = Address::new_id(m.info.owner);
    MinerInfo {
        owner,
        worker: Address::new_id(m.info.worker),
        new_worker: None,
        control_addresses: m.info.control.iter().map(|c| Address::new_id(*c)).collect(),
        worker_change_epoch: -1,
        peer_id: m.info.peer_id.clone(),
        multiaddrs: m.info.multiaddrs.clone(),
        window_post_proof_type: m.info.window_post_proof,
        sector_size: m.info.sector_size,
        window_post_partition_sectors: m.info.partition_sectors,
        consensus_fault_elapsed: -1,
        pending_owner_address: None,
        beneficiary: owner,
        beneficiary_term: BeneficiaryTerm {
            quota: TokenAmount::zero(),
            used_quota: TokenAmount::zero(),
            expiration: 0,
        },
        pending_beneficiary_term: None,
    }
}

pub fn sector(s: &Sector) -> SectorOnChainInfo {
    SectorOnChainInfo {
        sector_number: s.number,
        seal_proof: s.seal_proof,
        sealed_cid: s.sealed_cid,
        activation: s.activation,
        expiration: s.expiration,
        deal_weight: s.deal_weight.clone(),
        verified_deal_weight: s.verified_deal_weight.clone(),
        initial_pledge: s.initial_pledge.clone(),
        expected_day_reward: Some(TokenAmount::zero()),
        expected_storage_pledge: Some(TokenAmount::zero()),
        power_base_epoch: s.activation,
        replaced_day_reward: Some(TokenAmount::zero()),
        sector_key_cid: None,
        flags: 0,
        daily_fee: TokenAmount::zero(),
    }
}

pub fn pre_commit(p: &PreCommit) -> SectorPreCommitOnChainInfo {
    SectorPreCommitOnChainInfo {
        info: SectorPreCommitInfo {
            seal_proof: p.seal_proof,
            sector_number: p.number,
            sealed_cid: p.sealed_cid,
            seal_rand_epoch: p.seal_rand_epoch,
            deal_ids: Vec::new(),
            expiration: p.expiration,
            unsealed_cid: p.unsealed_cid,
        },
        pre_commit_deposit: p.deposit.clone(),
        pre_commit_epoch: p.epoch,
    }
}

pub fn deal(proposal: &DealProposal, state: Option<&DealState>) -> MarketDeal {
    MarketDeal {
        proposal: DealJson {
            piece_cid: proposal.piece_cid,
            piece_size: proposal.piece_size.0,
            verified_deal: proposal.verified_deal,
            client: proposal.client,
            provider: proposal.provider,
            // Lotus prints a byte label as "".
            label: match &proposal.label {
                fil_actor_market_state::v18::Label::String(s) => s.clone(),
                fil_actor_market_state::v18::Label::Bytes(_) => String::new(),
            },
            start_epoch: proposal.start_epoch,
            end_epoch: proposal.end_epoch,
            storage_price_per_epoch: proposal.storage_price_per_epoch.clone(),
            provider_collateral: proposal.provider_collateral.clone(),
            client_collateral: proposal.client_collateral.clone(),
        },
        state: state
            .map(|s| MarketDealState {
                sector_number: s.sector_number,
                sector_start_epoch: s.sector_start_epoch,
                last_updated_epoch: s.last_updated_epoch,
                slash_epoch: s.slash_epoch,
            })
            .unwrap_or(MarketDealState::EMPTY),
    }
}
