//! The storage market: escrow (`AddBalance`, `WithdrawBalance`), `PublishStorageDeals`, deal
//! activation when a sector is proven, and deal expiry and settlement each epoch.
//!
//! Payments settle in one step when a deal ends (the client's escrow pays the provider the
//! whole price), not epoch by epoch as on Filecoin; the amounts are the same.

use fil_actor_market_state::v18::{
    ClientDealProposal, DealProposal, PublishStorageDealsParams, PublishStorageDealsReturn,
    WithdrawBalanceParams, WithdrawBalanceReturn,
};
use fvm_ipld_bitfield::BitField;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::types::cbor_cid;
use num_traits::Zero;

use super::{decode, encode, id_addr, unhandled};
use crate::error::ActorError;
use crate::state::{ActorId, ActorKind, BURNT_FUNDS, DealState, MARKET, State};
use crate::vm::Call;

pub const ADD_BALANCE: u64 = 2;
pub const WITHDRAW_BALANCE: u64 = 3;
pub const PUBLISH_STORAGE_DEALS: u64 = 4;
const MAX_LABEL_BYTES: usize = 256;

pub fn invoke(
    call: &Call,
    state: &mut State,
    method: u64,
    params: &[u8],
) -> Result<Vec<u8>, ActorError> {
    match method {
        ADD_BALANCE => {
            let address: Address = decode(params, "AddBalance")?;
            add_balance(call, state, &address)?;
            Ok(Vec::new())
        }
        WITHDRAW_BALANCE => {
            let params: WithdrawBalanceParams = decode(params, "WithdrawBalance")?;
            encode(&withdraw_balance(call, state, params)?)
        }
        PUBLISH_STORAGE_DEALS => {
            let params: PublishStorageDealsParams = decode(params, "PublishStorageDeals")?;
            encode(&publish_storage_deals(call, state, params)?)
        }
        _ => Err(unhandled(ActorKind::Market, method)),
    }
}

fn add_balance(call: &Call, state: &mut State, address: &Address) -> Result<(), ActorError> {
    if call.value.is_zero() {
        return Err(ActorError::illegal_argument(
            "AddBalance needs a positive value: send the FIL to add",
        ));
    }
    let id = state.resolve_or_create_account(address)?;
    match state.actor(id)?.kind {
        ActorKind::Account | ActorKind::Miner => {}
        other => {
            return Err(ActorError::illegal_argument(format!(
                "cannot add market balance for a {} actor",
                other.name()
            )));
        }
    }
    state.market.add_escrow(id, &call.value);
    Ok(())
}

fn withdraw_balance(
    call: &Call,
    state: &mut State,
    params: WithdrawBalanceParams,
) -> Result<WithdrawBalanceReturn, ActorError> {
    let id = state.resolve(&params.provider_or_client).ok_or_else(|| {
        ActorError::not_found(format!("{} has no actor", params.provider_or_client))
    })?;
    let recipient = match state.miners.get(&id) {
        Some(miner) => {
            if call.caller != miner.info.owner && call.caller != miner.info.worker {
                return Err(ActorError::forbidden(
                    "only the provider's owner or worker may withdraw its market balance",
                ));
            }
            miner.info.owner
        }
        None => {
            if call.caller != id {
                return Err(ActorError::forbidden(
                    "only the client itself may withdraw its market balance",
                ));
            }
            id
        }
    };
    if params.amount.is_negative() {
        return Err(ActorError::illegal_argument(
            "cannot withdraw a negative amount",
        ));
    }
    let amount = params
        .amount
        .min(state.market.available(id))
        .max(TokenAmount::zero());
    *state
        .market
        .escrow
        .entry(id)
        .or_insert_with(TokenAmount::zero) -= &amount;
    state.transfer(MARKET, recipient, &amount)?;
    Ok(WithdrawBalanceReturn {
        amount_withdrawn: amount,
    })
}

/// What a batch of deals needs locked, accumulated as deals are accepted.
#[derive(Default)]
struct Reserved {
    client: std::collections::BTreeMap<ActorId, TokenAmount>,
    provider: TokenAmount,
    datacap: std::collections::BTreeMap<ActorId, u64>,
    cids: std::collections::BTreeSet<Vec<u8>>,
}

fn publish_storage_deals(
    call: &Call,
    state: &mut State,
    params: PublishStorageDealsParams,
) -> Result<PublishStorageDealsReturn, ActorError> {
    let first = params
        .deals
        .first()
        .ok_or_else(|| ActorError::illegal_argument("Empty deals parameter"))?;
    let provider = state.resolve(&first.proposal.provider).ok_or_else(|| {
        ActorError::not_found(format!(
            "deal provider {} not found",
            first.proposal.provider
        ))
    })?;
    let miner = state.miners.get(&provider).ok_or_else(|| {
        ActorError::illegal_argument("deal provider is not a storage miner actor")
    })?;
    let info = miner.info.clone();
    if call.caller != info.worker
        && call.caller != info.owner
        && !info.control.contains(&call.caller)
    {
        return Err(ActorError::forbidden(format!(
            "f0{} is not the worker or a control address of provider f0{provider}",
            call.caller
        )));
    }

    let mut reserved = Reserved::default();
    let mut accepted = Vec::new();
    let mut reasons = Vec::new();
    for (index, deal) in params.deals.iter().enumerate() {
        match validate_deal(call, state, provider, info.sector_size, deal, &mut reserved) {
            Ok((proposal, cid)) => accepted.push((index as u64, proposal, cid)),
            Err(why) => {
                tracing::info!(deal_id = index, reason = %why, "deal proposal rejected");
                reasons.push(format!("deal {index}: {why}"));
            }
        }
    }
    if accepted.is_empty() {
        return Err(ActorError::illegal_argument(format!(
            "All deal proposals invalid: {}",
            reasons.join("; ")
        )));
    }

    let mut ids = Vec::new();
    let mut valid = Vec::new();
    for (index, proposal, cid) in accepted {
        let client = state.resolve(&proposal.client).unwrap_or_default();
        state.market.lock(client, &client_cost(&proposal));
        state.market.lock(provider, &proposal.provider_collateral);
        if proposal.verified_deal {
            let cap = state.verifreg.clients.entry(client).or_insert(0);
            *cap = cap.saturating_sub(proposal.piece_size.0);
        }
        let id = state.market.next_deal_id;
        state.market.next_deal_id += 1;
        state.market.pending.insert(cid);
        state.market.proposals.insert(id, proposal);
        ids.push(id);
        valid.push(index);
    }
    Ok(PublishStorageDealsReturn {
        ids,
        valid_deals: BitField::try_from_bits(valid).unwrap_or_default(),
    })
}

/// The least and most provider collateral a deal may carry. Filecoin's maximum is the total
/// supply (2 billion FIL); its minimum grows with the circulating supply and shrinks with the
/// network's power, which a devnet barely has, so here it is 0.
pub fn provider_collateral_bounds() -> (TokenAmount, TokenAmount) {
    (TokenAmount::zero(), TokenAmount::from_whole(2_000_000_000))
}

/// The client's whole cost: storage price for the deal's duration plus its collateral.
pub fn client_cost(proposal: &DealProposal) -> TokenAmount {
    let duration = (proposal.end_epoch - proposal.start_epoch).max(0);
    &proposal.storage_price_per_epoch * duration + &proposal.client_collateral
}

fn validate_deal(
    call: &Call,
    state: &State,
    provider: ActorId,
    sector_size: u64,
    deal: &ClientDealProposal,
    reserved: &mut Reserved,
) -> Result<(DealProposal, Vec<u8>), String> {
    let policy = &call.env.genesis.policy;
    let p = &deal.proposal;
    let client = state
        .resolve(&p.client)
        .ok_or_else(|| format!("client {} has no actor", p.client))?;
    let key = state
        .account_key(client)
        .ok_or_else(|| format!("client {} is not an account that can sign", p.client))?;
    let signed = fvm_ipld_encoding::to_vec(p).map_err(|e| format!("encode proposal: {e}"))?;
    deal.client_signature
        .verify(&signed, &key)
        .map_err(|e| format!("client signature is invalid: {e}"))?;
    if p.label.len() > MAX_LABEL_BYTES {
        return Err(format!(
            "label is {} bytes, more than {MAX_LABEL_BYTES}",
            p.label.len()
        ));
    }
    let size = p.piece_size.0;
    if size < 128 || !size.is_power_of_two() {
        return Err(format!(
            "piece size {size} is not a valid padded piece size (a power of two, at least 128)"
        ));
    }
    if size > sector_size {
        return Err(format!(
            "piece size {size} exceeds the provider's sector size {sector_size}"
        ));
    }
    if p.piece_cid.codec() != nelumbo_commp::FIL_COMMITMENT_UNSEALED
        || p.piece_cid.hash().code() != nelumbo_commp::SHA2_256_TRUNC254_PADDED
    {
        return Err(format!(
            "piece CID {} is not a piece commitment (baga6ea4seaq...)",
            p.piece_cid
        ));
    }
    if p.end_epoch <= p.start_epoch {
        return Err(format!(
            "end epoch {} is not after start epoch {}",
            p.end_epoch, p.start_epoch
        ));
    }
    if p.start_epoch < call.env.epoch {
        return Err(format!(
            "start epoch {} has passed (current epoch {})",
            p.start_epoch, call.env.epoch
        ));
    }
    let duration = p.end_epoch - p.start_epoch;
    if duration < policy.min_deal_duration || duration > policy.max_deal_duration {
        return Err(format!(
            "duration {duration} epochs is outside [{}, {}]",
            policy.min_deal_duration, policy.max_deal_duration
        ));
    }
    for (name, amount) in [
        ("storage price", &p.storage_price_per_epoch),
        ("provider collateral", &p.provider_collateral),
        ("client collateral", &p.client_collateral),
    ] {
        if amount.is_negative() {
            return Err(format!("{name} is negative"));
        }
    }
    let bounds = provider_collateral_bounds();
    if p.provider_collateral < bounds.0 || p.provider_collateral > bounds.1 {
        return Err(format!(
            "provider collateral {} is outside the bounds [{}, {}]",
            crate::genesis::format_fil(&p.provider_collateral),
            crate::genesis::format_fil(&bounds.0),
            crate::genesis::format_fil(&bounds.1)
        ));
    }
    if state.resolve(&p.provider) != Some(provider) {
        return Err("every deal of a message must have the same provider".into());
    }

    let cost = client_cost(p);
    let client_reserved = reserved
        .client
        .get(&client)
        .cloned()
        .unwrap_or_else(TokenAmount::zero);
    let client_available = state.market.available(client);
    if client_available < &client_reserved + &cost {
        return Err(format!(
            "client escrow is insufficient: {} available, {} needed",
            crate::genesis::format_fil(&(client_available - client_reserved)),
            crate::genesis::format_fil(&cost)
        ));
    }
    let provider_available = state.market.available(provider);
    if provider_available < &reserved.provider + &p.provider_collateral {
        return Err(format!(
            "provider escrow is insufficient for the collateral: {} available, {} needed",
            crate::genesis::format_fil(&(provider_available - &reserved.provider)),
            crate::genesis::format_fil(&p.provider_collateral)
        ));
    }
    if p.verified_deal {
        let cap = state.verifreg.clients.get(&client).copied().unwrap_or(0);
        let used = reserved.datacap.get(&client).copied().unwrap_or(0);
        if cap < used + size {
            return Err(format!(
                "verified deal needs {size} bytes of DataCap and the client has {}",
                cap.saturating_sub(used)
            ));
        }
    }

    let mut normalised = p.clone();
    normalised.client = id_addr(client);
    normalised.provider = id_addr(provider);
    let cid =
        cbor_cid(&fvm_ipld_encoding::to_vec(&normalised).map_err(|e| e.to_string())?).to_bytes();
    if state.market.pending.contains(&cid) || reserved.cids.contains(&cid) {
        return Err("this proposal is already published".into());
    }

    *reserved
        .client
        .entry(client)
        .or_insert_with(TokenAmount::zero) += cost;
    reserved.provider += &p.provider_collateral;
    if p.verified_deal {
        *reserved.datacap.entry(client).or_insert(0) += size;
    }
    reserved.cids.insert(cid.clone());
    Ok((normalised, cid))
}

/// Activates a deal whose piece a sector now holds. The reason is returned on refusal.
pub fn activate_deal<'s>(
    state: &'s mut State,
    miner: ActorId,
    deal_id: u64,
    piece: (&cid::Cid, u64),
    sector: (u64, ChainEpoch),
    epoch: ChainEpoch,
) -> Result<&'s DealProposal, String> {
    let proposal = state
        .market
        .proposals
        .get(&deal_id)
        .ok_or_else(|| format!("deal {deal_id} not found"))?;
    if state.resolve(&proposal.provider) != Some(miner) {
        return Err(format!(
            "deal {deal_id} belongs to provider {}",
            proposal.provider
        ));
    }
    if state.market.states.contains_key(&deal_id) {
        return Err(format!("deal {deal_id} is already active"));
    }
    if epoch > proposal.start_epoch {
        return Err(format!(
            "deal {deal_id} had to start by epoch {}",
            proposal.start_epoch
        ));
    }
    if proposal.end_epoch > sector.1 {
        return Err(format!(
            "deal {deal_id} ends at {} after the sector expires at {}",
            proposal.end_epoch, sector.1
        ));
    }
    if proposal.piece_cid != *piece.0 || proposal.piece_size.0 != piece.1 {
        return Err(format!(
            "deal {deal_id} is for piece {} of {} bytes, not {} of {} bytes",
            proposal.piece_cid, proposal.piece_size.0, piece.0, piece.1
        ));
    }
    state.market.states.insert(
        deal_id,
        DealState {
            sector_number: sector.0,
            sector_start_epoch: epoch,
            last_updated_epoch: -1,
            slash_epoch: -1,
        },
    );
    let proposal = &state.market.proposals[&deal_id];
    let cid = cbor_cid(&fvm_ipld_encoding::to_vec(proposal).unwrap_or_default()).to_bytes();
    state.market.pending.remove(&cid);
    Ok(&state.market.proposals[&deal_id])
}

/// Ends the deals of a terminated sector: the client gets back what it has not used, the
/// provider's collateral is burnt.
pub fn terminate_deals(state: &mut State, deal_ids: &[u64], epoch: ChainEpoch) {
    for id in deal_ids {
        let (Some(proposal), Some(_)) = (
            state.market.proposals.remove(id),
            state.market.states.remove(id),
        ) else {
            continue;
        };
        let (client, provider) = parties(state, &proposal);
        let elapsed =
            (epoch - proposal.start_epoch).clamp(0, proposal.end_epoch - proposal.start_epoch);
        let earned = &proposal.storage_price_per_epoch * elapsed;
        state.market.pay(client, provider, &earned);
        state
            .market
            .unlock(client, &(client_cost(&proposal) - earned));
        state.market.slash(provider, &proposal.provider_collateral);
        let _ = state.transfer(MARKET, BURNT_FUNDS, &proposal.provider_collateral);
        tracing::info!(
            deal_id = id,
            "deal terminated with its sector; provider collateral burnt"
        );
    }
}

fn parties(state: &State, proposal: &DealProposal) -> (ActorId, ActorId) {
    (
        state.resolve(&proposal.client).unwrap_or_default(),
        state.resolve(&proposal.provider).unwrap_or_default(),
    )
}

/// Deals that missed their start epoch expire; deals that reached their end settle.
pub fn cron(state: &mut State, epoch: ChainEpoch) {
    let expired: Vec<u64> = state
        .market
        .proposals
        .iter()
        .filter(|(id, p)| !state.market.states.contains_key(id) && p.start_epoch < epoch)
        .map(|(id, _)| *id)
        .collect();
    for id in expired {
        let Some(proposal) = state.market.proposals.remove(&id) else {
            continue;
        };
        let (client, provider) = parties(state, &proposal);
        state.market.unlock(client, &client_cost(&proposal));
        state.market.slash(provider, &proposal.provider_collateral);
        let _ = state.transfer(MARKET, BURNT_FUNDS, &proposal.provider_collateral);
        let cid = cbor_cid(&fvm_ipld_encoding::to_vec(&proposal).unwrap_or_default()).to_bytes();
        state.market.pending.remove(&cid);
        tracing::info!(
            deal_id = id,
            "deal expired unactivated; provider collateral burnt"
        );
    }
    let ended: Vec<u64> = state
        .market
        .states
        .keys()
        .copied()
        .filter(|id| {
            state
                .market
                .proposals
                .get(id)
                .is_some_and(|p| p.end_epoch <= epoch)
        })
        .collect();
    for id in ended {
        let (Some(proposal), Some(_)) = (
            state.market.proposals.remove(&id),
            state.market.states.remove(&id),
        ) else {
            continue;
        };
        let (client, provider) = parties(state, &proposal);
        let price = &proposal.storage_price_per_epoch * (proposal.end_epoch - proposal.start_epoch);
        state.market.pay(client, provider, &price);
        state.market.unlock(client, &proposal.client_collateral);
        state.market.unlock(provider, &proposal.provider_collateral);
        tracing::info!(deal_id = id, "deal completed and paid");
    }
}
