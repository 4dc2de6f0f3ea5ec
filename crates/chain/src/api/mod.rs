//! The Lotus full-node JSON-RPC API over this chain: each method of `nelumbo_chain_api::methods`
//! with its handler.

mod convert;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use fvm_shared::address::{Address, Payload};
use nelumbo_chain_api::methods::*;
use nelumbo_chain_api::types::{
    BlockMessages, HeadChange, MsgLookup, NetworkParams, Signature, TipSetKey,
};
use nelumbo_chain_api::{Addr, Base64, Big, BitFieldJson, CidJson, KeyType, OptBitField, Token};
use nelumbo_keys::KeyKind;
use nelumbo_rpc::{RpcError, RpcModule};
use num_bigint::BigInt;
use tokio::sync::broadcast::error::RecvError;

pub use convert::code_cid;

use crate::chain::Chain;
use crate::state::{SectorStatus, State};

/// What handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub chain: Arc<Chain>,
    /// The wallet's default address (the faucet on a devnet).
    pub default_address: Option<Address>,
}

fn failed(e: impl std::fmt::Display) -> RpcError {
    RpcError::failed(e.to_string())
}

fn anyhow_failed(e: anyhow::Error) -> RpcError {
    RpcError::failed(format!("{e:#}"))
}

/// Lotus's code for "actor not found".
fn actor_not_found(address: &Address) -> RpcError {
    RpcError::new(11, format!("actor not found: {address}"))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RpcError> + Send + 'static,
) -> Result<T, RpcError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RpcError::internal(format!("task failed: {e}")))?
}

fn miner_id(state: &State, address: &Address) -> Result<u64, RpcError> {
    state
        .resolve(address)
        .filter(|id| state.miners.contains_key(id))
        .ok_or_else(|| failed(format!("{address} is not a miner")))
}

pub fn module(api: ApiState) -> RpcModule<ApiState> {
    let mut m = RpcModule::new(nelumbo_chain_api::API_TITLE, api);
    m.register::<Version, _, _>(|api, ()| async move {
        Ok(nelumbo_chain_api::types::Version {
            version: format!(
                "{}+nelumbo-chain+{}",
                env!("CARGO_PKG_VERSION"),
                api.chain.genesis.network_name
            ),
            api_version: nelumbo_chain_api::API_VERSION,
            block_delay: (api.chain.genesis.policy.epoch_duration_ms / 1000).max(1),
            agent: "nelumbo-chain".into(),
        })
    });
    m.register::<ChainHead, _, _>(|api, ()| async move { Ok(api.chain.head()) });
    m.register_channel::<ChainNotify, _, _>(|api, ()| async move {
        let receiver = api.chain.subscribe();
        let current = vec![HeadChange {
            change: "current".into(),
            tipset: api.chain.head(),
        }];
        let updates = futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(tipset) => Some((
                    vec![HeadChange {
                        change: "apply".into(),
                        tipset,
                    }],
                    receiver,
                )),
                // A consumer that fell behind is closed, as Lotus does, rather than skipped.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => None,
            }
        });
        Ok(futures::stream::iter([current]).chain(updates).boxed())
    });
    m.register::<ChainGetTipSetByHeight, _, _>(|api, (height, key)| async move {
        let from = api.chain.tipset(&key).map_err(anyhow_failed)?;
        if height > from.height {
            return Err(failed(format!(
                "looking for tipset with height greater than start point ({height} > {})",
                from.height
            )));
        }
        api.chain
            .store()
            .tipset_at_or_before(height)
            .map_err(anyhow_failed)?
            .map(|r| r.tipset)
            .ok_or_else(|| failed(format!("no tipset at or before height {height}")))
    });
    m.register::<ChainGetMessage, _, _>(|api, (cid,)| async move {
        let store = api.chain.store();
        let signed = match store.message(&cid).map_err(anyhow_failed)? {
            Some(m) => Some(m),
            None => store.message_by_unsigned(&cid).map_err(anyhow_failed)?,
        };
        signed
            .map(|s| s.message)
            .ok_or_else(|| failed(format!("message {} not found", *cid)))
    });
    m.register::<ChainGetBlock, _, _>(|api, (cid,)| async move {
        api.chain
            .store()
            .block(&cid)
            .map_err(anyhow_failed)?
            .ok_or_else(|| failed(format!("block {} not found", *cid)))
    });
    m.register::<ChainGetBlockMessages, _, _>(|api, (cid,)| async move {
        let store = api.chain.store();
        let header = store
            .block(&cid)
            .map_err(anyhow_failed)?
            .ok_or_else(|| failed(format!("block {} not found", *cid)))?;
        // Messages travel in the sequencer's block of each tipset; won blocks carry none.
        let included = match store.tipset(header.height).map_err(anyhow_failed)? {
            Some(record) if record.tipset.cids.first() == Some(&*cid) => record.messages,
            _ => Vec::new(),
        };
        let mut messages = BlockMessages {
            bls_messages: Vec::new(),
            secpk_messages: Vec::new(),
            cids: Vec::new(),
        };
        // As in Lotus: `Cids` lists the BLS messages, then the secp256k1 ones.
        let mut secpk_cids = Vec::new();
        for signed in included {
            let cid = signed.cid().map_err(failed)?;
            if signed.signature.sig_type == Signature::BLS {
                messages.cids.push(cid);
                messages.bls_messages.push(signed.message);
            } else {
                secpk_cids.push(cid);
                messages.secpk_messages.push(signed);
            }
        }
        messages.cids.extend(secpk_cids);
        Ok(messages)
    });
    m.register::<StateGetRandomnessFromTickets, _, _>(
        |api, (tag, epoch, entropy, key)| async move {
            let head = api.chain.tipset(&key).map_err(anyhow_failed)?;
            if epoch > head.height {
                return Err(failed(format!(
                    "cannot draw randomness from the future: epoch {epoch} is after {}",
                    head.height
                )));
            }
            use crate::randomness::RandomnessSource;
            let r = api
                .chain
                .randomness()
                .chain_randomness(tag, epoch, &entropy)
                .map_err(failed)?;
            Ok(Base64(r.to_vec()))
        },
    );
    m.register::<StateGetRandomnessFromBeacon, _, _>(
        |api, (tag, epoch, entropy, key)| async move {
            let head = api.chain.tipset(&key).map_err(anyhow_failed)?;
            if epoch > head.height + 1 {
                return Err(failed(format!(
                    "cannot draw randomness from the future: epoch {epoch} is after {}",
                    head.height
                )));
            }
            use crate::randomness::RandomnessSource;
            Ok(Base64(
                api.chain
                    .randomness()
                    .beacon_randomness(tag, epoch, &entropy)
                    .to_vec(),
            ))
        },
    );
    m.register::<StateNetworkVersion, _, _>(|_, (_key,)| async move {
        Ok(nelumbo_chain_api::NETWORK_VERSION)
    });
    m.register::<StateGetNetworkParams, _, _>(|api, ()| async move {
        let genesis = &api.chain.genesis;
        Ok(NetworkParams {
            network_name: genesis.network_name.clone(),
            block_delay_secs: genesis.policy.epoch_duration_ms / 1000,
            consensus_miner_min_power: BigInt::from(0),
            supported_proof_types: genesis
                .sector_sizes
                .iter()
                .map(|size| size.seal_proof_number())
                .collect(),
            pre_commit_challenge_delay: genesis.policy.pre_commit_challenge_delay,
            eip155_chain_id: 31415926,
            nelumbo_epoch_ms: Some(genesis.policy.epoch_duration_ms),
        })
    });
    m.register::<StateLookupID, _, _>(|api, (address, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        state
            .resolve(&address)
            .map(|id| Addr(Address::new_id(id)))
            .ok_or_else(|| actor_not_found(&address))
    });
    m.register::<StateAccountKey, _, _>(|api, (address, key)| async move {
        if matches!(address.payload(), Payload::Secp256k1(_) | Payload::BLS(_)) {
            return Ok(address);
        }
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = state
            .resolve(&address)
            .ok_or_else(|| actor_not_found(&address))?;
        state
            .account_key(id)
            .map(Addr)
            .ok_or_else(|| failed(format!("{} is not an account", *address)))
    });
    m.register::<StateGetActor, _, _>(|api, (address, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = state
            .resolve(&address)
            .ok_or_else(|| actor_not_found(&address))?;
        convert::actor(&state, id).ok_or_else(|| actor_not_found(&address))
    });
    m.register::<WalletNew, _, _>(|api, (kind,)| async move {
        let kind = match kind {
            KeyType::Bls => KeyKind::Bls,
            KeyType::Secp256k1 => KeyKind::Secp256k1,
        };
        api.chain.wallet.generate(kind).map(Addr).map_err(failed)
    });
    m.register::<WalletList, _, _>(|api, ()| async move {
        Ok(api.chain.wallet.list().into_iter().map(Addr).collect())
    });
    m.register::<WalletBalance, _, _>(|api, (address,)| async move {
        let (_, state) = api
            .chain
            .state_at(&TipSetKey::head())
            .map_err(anyhow_failed)?;
        let balance = state
            .resolve(&address)
            .and_then(|id| state.actors.get(&id))
            .map(|a| a.balance.clone())
            .unwrap_or_default();
        Ok(Token(balance))
    });
    m.register::<WalletSign, _, _>(|api, (address, data)| async move {
        let key = wallet_key(&api, &address)?;
        let sig = api
            .chain
            .wallet
            .get(&key)
            .map_err(failed)?
            .sign(&data)
            .map_err(failed)?;
        Ok(nelumbo_chain_api::types::Signature::from_fvm(&sig))
    });
    m.register::<WalletVerify, _, _>(|api, (address, data, signature)| async move {
        let key = wallet_key(&api, &address)?;
        let sig = signature.to_fvm().map_err(failed)?;
        Ok(sig.verify(&data, &key).is_ok())
    });
    m.register::<WalletDefaultAddress, _, _>(|api, ()| async move {
        api.default_address
            .map(Addr)
            .ok_or_else(|| failed("no default wallet address is set"))
    });
    m.register::<MpoolPush, _, _>(|api, (signed,)| async move {
        let chain = api.chain.clone();
        blocking(move || chain.push(signed).map(CidJson).map_err(failed)).await
    });
    m.register::<MpoolPushMessage, _, _>(|api, (message, spec)| async move {
        api.chain.push_message(message, spec).await.map_err(failed)
    });
    m.register::<MpoolPending, _, _>(|api, (_key,)| async move { Ok(api.chain.pending()) });
    m.register::<MpoolGetNonce, _, _>(|api, (address,)| async move {
        Ok(api.chain.next_nonce(&address))
    });
    m.register::<GasEstimateMessageGas, _, _>(|api, (message, spec, _key)| async move {
        let chain = api.chain.clone();
        blocking(move || chain.estimate_gas(message, spec.as_ref()).map_err(failed)).await
    });
    m.register::<StateWaitMsg, _, _>(|api, (cid, confidence, _limit, _replaced)| async move {
        let mut heads = api.chain.subscribe();
        loop {
            if let Some(record) = api.chain.store().receipt(&cid).map_err(anyhow_failed)? {
                if api.chain.head().height >= record.executed_height + confidence as i64 {
                    return Ok(lookup(record));
                }
            } else if api
                .chain
                .store()
                .message(&cid)
                .map_err(anyhow_failed)?
                .is_none()
            {
                return Err(failed(format!(
                    "message {} is neither in the message pool nor on chain",
                    *cid
                )));
            }
            match heads.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(failed("the chain is shutting down")),
            }
        }
    });
    m.register::<StateSearchMsg, _, _>(|api, (_key, cid, _limit, _replaced)| async move {
        Ok(api
            .chain
            .store()
            .receipt(&cid)
            .map_err(anyhow_failed)?
            .map(lookup))
    });
    m.register::<StateMinerInfo, _, _>(|api, (miner, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        Ok(convert::miner_info(&state.miners[&id]))
    });
    m.register::<StateMinerPower, _, _>(|api, (miner, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        let (raw, qa) = state.miners[&id].power();
        let (total_raw, total_qa) = state.total_power();
        Ok(nelumbo_chain_api::types::MinerPower {
            has_min_power: raw >= BigInt::from(2048),
            miner_power: nelumbo_chain_api::types::Claim {
                raw_byte_power: raw,
                quality_adj_power: qa,
            },
            total_power: nelumbo_chain_api::types::Claim {
                raw_byte_power: total_raw,
                quality_adj_power: total_qa,
            },
        })
    });
    m.register::<StateMinerProvingDeadline, _, _>(|api, (miner, key)| async move {
        let (tipset, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        Ok(state.miners[&id].deadline_info(&api.chain.genesis.policy, tipset.height))
    });
    m.register::<StateMinerDeadlines, _, _>(|api, (miner, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        Ok(state.miners[&id]
            .deadlines
            .iter()
            .map(|d| nelumbo_chain_api::types::Deadline {
                post_submissions: crate::state::bits(d.posted.iter().copied()),
                disputable_proof_count: 0,
                daily_fee: Default::default(),
            })
            .collect())
    });
    m.register::<StateMinerPartitions, _, _>(|api, (miner, deadline, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        let m = &state.miners[&id];
        let count = m
            .deadlines
            .get(deadline as usize)
            .map(|d| d.partitions.len())
            .ok_or_else(|| failed(format!("invalid deadline {deadline}")))?;
        Ok((0..count as u64)
            .filter_map(|p| m.partition_view(deadline, p))
            .map(
                |[all, faulty, recovering, live, active]| nelumbo_chain_api::types::Partition {
                    all_sectors: all,
                    faulty_sectors: faulty,
                    recovering_sectors: recovering,
                    live_sectors: live,
                    active_sectors: active,
                },
            )
            .collect())
    });
    m.register::<StateMinerSectors, _, _>(|api, (miner, filter, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        let OptBitField(filter) = filter;
        Ok(state.miners[&id]
            .sectors
            .values()
            .filter(|s| filter.as_ref().is_none_or(|f| f.get(s.number)))
            .map(convert::sector)
            .collect())
    });
    m.register::<StateMinerActiveSectors, _, _>(|api, (miner, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        Ok(state.miners[&id]
            .sectors
            .values()
            .filter(|s| s.status == SectorStatus::Active)
            .map(convert::sector)
            .collect())
    });
    m.register::<StateMinerFaults, _, _>(|api, (miner, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        Ok(BitFieldJson(state.miners[&id].faulty_sectors()))
    });
    m.register::<StateSectorGetInfo, _, _>(|api, (miner, number, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        Ok(state.miners[&id].sectors.get(&number).map(convert::sector))
    });
    m.register::<StateSectorPreCommitInfo, _, _>(|api, (miner, number, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = miner_id(&state, &miner)?;
        Ok(state.miners[&id]
            .pre_commits
            .get(&number)
            .map(convert::pre_commit))
    });
    m.register::<StateMarketBalance, _, _>(|api, (address, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let id = state.resolve(&address);
        Ok(nelumbo_chain_api::types::MarketBalance {
            escrow: id.map(|id| state.market.escrow(id)).unwrap_or_default(),
            locked: id.map(|id| state.market.locked(id)).unwrap_or_default(),
        })
    });
    m.register::<StateMarketStorageDeal, _, _>(|api, (deal, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        let proposal = state
            .market
            .proposals
            .get(&deal)
            .ok_or_else(|| failed(format!("deal {deal} not found")))?;
        Ok(convert::deal(proposal, state.market.states.get(&deal)))
    });
    m.register::<StateDealProviderCollateralBounds, _, _>(
        |_, (size, _verified, _key)| async move {
            if size < 128 || !size.is_power_of_two() {
                return Err(failed(format!("{size} is not a padded piece size")));
            }
            let (min, max) = crate::actors::market::provider_collateral_bounds();
            Ok(nelumbo_chain_api::types::DealCollateralBounds { min, max })
        },
    );
    m.register::<StateMarketDeals, _, _>(|api, (key,)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        Ok(state
            .market
            .proposals
            .iter()
            .map(|(id, p)| {
                (
                    id.to_string(),
                    convert::deal(p, state.market.states.get(id)),
                )
            })
            .collect::<BTreeMap<_, _>>())
    });
    m.register::<StateVerifiedClientStatus, _, _>(|api, (address, key)| async move {
        let (_, state) = api.chain.state_at(&key).map_err(anyhow_failed)?;
        Ok(state
            .resolve(&address)
            .and_then(|id| state.verifreg.clients.get(&id))
            .map(|cap| Big(BigInt::from(*cap))))
    });
    m.register::<MinerGetBaseInfo, _, _>(|api, (miner, epoch, key)| async move {
        let chain = api.chain.clone();
        blocking(move || chain.base_info(&miner, epoch, &key).map_err(anyhow_failed)).await
    });
    m.register::<SyncSubmitBlock, _, _>(|api, (block,)| async move {
        let chain = api.chain.clone();
        blocking(move || chain.submit_block(block).map_err(anyhow_failed)).await
    });
    m
}

fn wallet_key(api: &ApiState, address: &Address) -> Result<Address, RpcError> {
    if matches!(address.payload(), Payload::Secp256k1(_) | Payload::BLS(_)) {
        return Ok(*address);
    }
    let (_, state) = api
        .chain
        .state_at(&TipSetKey::head())
        .map_err(anyhow_failed)?;
    state
        .resolve(address)
        .and_then(|id| state.account_key(id))
        .ok_or_else(|| actor_not_found(address))
}

fn lookup(record: crate::store::ReceiptRecord) -> MsgLookup {
    MsgLookup {
        message: record.message,
        receipt: record.receipt,
        return_dec: None,
        tipset: record.executed_tipset,
        height: record.executed_height,
    }
}
