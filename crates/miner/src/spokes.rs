//! What the hub does for its spokes beyond deals and pieces, and the limits it puts on them
//! (invariant 4: a compromised spoke can fail deals, not spend funds or redirect clients).
//!
//! - The registry: each spoke sends `Nelumbo.SpokeHeartbeat` every [`HEARTBEAT_SECS`];
//!   `SpokesList` shows which are alive. In memory: after a hub restart, spokes reappear with
//!   their next heartbeat.
//! - Bindings: a spoke token carries a name; the first heartbeat or peer-info change made with
//!   it binds the name to the peer ID it names (kept in the database). Later calls with that
//!   token must name the same peer ID, so a spoke can put on chain only its own identity, never
//!   redirect the miner's clients to another peer. `SpokesUnbind` (admin) releases a binding
//!   after an operator replaced a spoke's identity.
//! - `MarketSetPeerInfo`: bounded (peer ID and addresses well-formed, at most 16 addresses of
//!   at most 128 bytes), bound to the caller's identity, and at most one change per
//!   `[spokes] peer_info_min_interval_secs` (each change costs the worker gas).
//! - `MarketSignAsk`: only a complete, canonical CBOR `StorageAsk` for this miner, priced at
//!   least the hub's floors, is signed; the last ask signed is recorded, and deals are checked
//!   against it ([`crate::deals`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::StateMinerInfo;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_miner_api::ApiError;
use nelumbo_miner_api::error::from_chain_error;
use nelumbo_miner_api::types::{SpokeHello, SpokeStatus};
use nelumbo_rpc::Permissions;
use serde::{Deserialize, Serialize};

use crate::chain::{ChainClient, Landed, Outgoing};
use crate::db::Db;
use crate::outbox::now_secs;

/// How often spokes should call in.
pub const HEARTBEAT_SECS: u64 = 10;
/// A spoke silent this long is listed offline.
const OFFLINE_AFTER_SECS: u64 = 3 * HEARTBEAT_SECS;
/// The registry holds at most this many spokes (admin tokens can name any id).
const MAX_SPOKES: usize = 1024;
/// Limits on what a spoke says of itself and asks to put on chain.
const MAX_ID_BYTES: usize = 128;
const MAX_ADDRS: usize = 16;
const MAX_DEAL_STATES: usize = 16;
const MAX_ADDR_BYTES: usize = 256;
const MAX_PEER_ID_BYTES: usize = 64;
const MAX_CHAIN_ADDR_BYTES: usize = 128;

/// Where the last ask the hub signed is kept.
pub const ASK_KEY: &str = "ask";
const BINDING_PREFIX: &str = "spoke-binding/";
const PEER_INFO_CHANGED: &str = "peer-info-changed-at";

/// The last ask the hub signed: what deals are held to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAsk {
    #[serde(with = "nelumbo_chain_api::json::token")]
    pub price: TokenAmount,
    #[serde(with = "nelumbo_chain_api::json::token")]
    pub verified_price: TokenAmount,
    pub min_piece_size: u64,
    pub max_piece_size: u64,
    pub seq_no: u64,
    pub signed_at: u64,
}

/// A spoke token's name bound to a peer ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub peer_id: String,
    pub bound_at: u64,
}

#[derive(Debug, Clone)]
pub struct Spokes {
    known: Arc<Mutex<BTreeMap<String, SpokeStatus>>>,
    db: Arc<Db>,
}

impl Spokes {
    pub fn new(db: Arc<Db>) -> Self {
        Self {
            known: Arc::default(),
            db,
        }
    }

    /// The caller's token name when it is a spoke (bindings apply), `None` for an operator.
    fn spoke_name(caller: &Permissions) -> Result<Option<&str>, ApiError> {
        if !caller.is_spoke_only() {
            return Ok(None);
        }
        caller.name().map(Some).ok_or_else(|| {
            ApiError::refused(
                "this spoke token has no name: make one with `nelumbo-miner auth api-info --perm spoke`",
            )
        })
    }

    /// Binds the caller's token to `peer_id` if it is not bound yet; refuses another peer ID.
    fn bind(&self, caller: &Permissions, peer_id: &str) -> Result<(), ApiError> {
        let Some(name) = Self::spoke_name(caller)? else {
            return Ok(());
        };
        let key = format!("{BINDING_PREFIX}{name}");
        let internal = |e: anyhow::Error| ApiError::refused(format!("{e:#}"));
        match self.db.setting::<Binding>(&key).map_err(internal)? {
            Some(binding) if binding.peer_id == peer_id => Ok(()),
            Some(binding) => Err(ApiError::refused(format!(
                "spoke token {name:?} is bound to peer {}, not {peer_id}: a spoke may register and publish only its own identity (an operator releases the binding with `nelumbo-miner spokes unbind {name}`)",
                binding.peer_id
            ))),
            None => {
                self.db
                    .put_setting(
                        &key,
                        &Binding {
                            peer_id: peer_id.to_string(),
                            bound_at: now_secs(),
                        },
                    )
                    .map_err(internal)?;
                tracing::info!(
                    token = name,
                    peer = peer_id,
                    "spoke token bound to its peer ID"
                );
                Ok(())
            }
        }
    }

    /// `SpokesUnbind`: the peer ID the token was bound to.
    pub fn unbind(&self, name: &str) -> anyhow::Result<Option<String>> {
        let key = format!("{BINDING_PREFIX}{name}");
        let previous = self.db.setting::<Binding>(&key)?;
        self.db.remove_setting(&key)?;
        if let Some(binding) = &previous {
            tracing::info!(token = name, peer = %binding.peer_id, "spoke binding released");
        }
        Ok(previous.map(|b| b.peer_id))
    }

    pub fn heartbeat(&self, caller: &Permissions, hello: SpokeHello) -> Result<(), ApiError> {
        let too_long = |what: &str, limit: usize| {
            ApiError::refused(format!("a spoke's {what} is limited to {limit} bytes"))
        };
        if hello.id.trim().is_empty() || hello.id.len() > MAX_ID_BYTES {
            return Err(ApiError::refused(format!(
                "a spoke id must be 1 to {MAX_ID_BYTES} characters"
            )));
        }
        if hello.version.len() > MAX_ID_BYTES {
            return Err(too_long("version", MAX_ID_BYTES));
        }
        if hello.services.len() > 8 || hello.services.iter().any(|s| s.len() > 32) {
            return Err(ApiError::refused(
                "a spoke names at most 8 services of at most 32 bytes",
            ));
        }
        if hello.deals.len() > MAX_DEAL_STATES || hello.deals.keys().any(|s| s.len() > 32) {
            return Err(ApiError::refused(format!(
                "a spoke reports at most {MAX_DEAL_STATES} deal states of at most 32 bytes"
            )));
        }
        if hello.public_addrs.len() > MAX_ADDRS
            || hello.public_addrs.iter().any(|a| a.len() > MAX_ADDR_BYTES)
        {
            return Err(ApiError::refused(format!(
                "a spoke names at most {MAX_ADDRS} addresses of at most {MAX_ADDR_BYTES} bytes"
            )));
        }
        self.bind(caller, &hello.id)?;
        let now = now_secs();
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !known.contains_key(&hello.id) && known.len() >= MAX_SPOKES {
            // Forget the longest silent one.
            if let Some(oldest) = known
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| id.clone())
            {
                known.remove(&oldest);
            }
        }
        let first_seen = match known.get(&hello.id) {
            Some(status) => status.first_seen,
            None => {
                tracing::info!(spoke = %hello.id, token = caller.name().unwrap_or(""), services = ?hello.services, addrs = ?hello.public_addrs, "spoke registered");
                now
            }
        };
        known.insert(
            hello.id.clone(),
            SpokeStatus {
                hello,
                token: caller.name().map(str::to_string),
                first_seen,
                last_seen: now,
                online: true,
            },
        );
        Ok(())
    }

    pub fn list(&self) -> Vec<SpokeStatus> {
        let now = now_secs();
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .map(|mut s| {
                s.online = now.saturating_sub(s.last_seen) <= OFFLINE_AFTER_SECS;
                s
            })
            .collect()
    }

    /// Every binding, by token name (for the operator).
    pub fn bindings(&self) -> anyhow::Result<Vec<(String, Binding)>> {
        Ok(self
            .db
            .settings_with_prefix::<Binding>(BINDING_PREFIX)?
            .into_iter()
            .map(|(key, b)| (key.trim_start_matches(BINDING_PREFIX).to_string(), b))
            .collect())
    }
}

/// The miner's identity the spokes-facing signing services act for.
#[derive(Debug, Clone)]
pub struct MinerKeys {
    pub actor: Address,
    pub worker: Address,
}

/// The ask protocol's StorageAsk (go-fil-markets 1.1.0), every field required, no other keys,
/// in cbor-gen's key order.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct StorageAsk {
    #[serde(rename = "Miner")]
    miner: Address,
    #[serde(rename = "Price")]
    price: TokenAmount,
    #[serde(rename = "SeqNo")]
    seq_no: u64,
    #[serde(rename = "Expiry")]
    expiry: i64,
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "MaxPieceSize")]
    max_piece_size: u64,
    #[serde(rename = "MinPieceSize")]
    min_piece_size: u64,
    #[serde(rename = "VerifiedPrice")]
    verified_price: TokenAmount,
}

/// `MarketSignAsk`: only a canonical CBOR storage ask for this miner, at or above the hub's
/// price floors, is signed; it is recorded as the ask deals are held to.
pub fn sign_ask(
    db: &Db,
    chain: &ChainClient,
    miner: &MinerKeys,
    floors: (&TokenAmount, &TokenAmount),
    cbor: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let ask: StorageAsk = fvm_ipld_encoding::from_slice(cbor)
        .map_err(|e| ApiError::refused(format!("not a CBOR StorageAsk: {e}")))?;
    if fvm_ipld_encoding::to_vec(&ask).ok().as_deref() != Some(cbor) {
        return Err(ApiError::refused(
            "the StorageAsk is not in its canonical encoding",
        ));
    }
    if ask.miner != miner.actor {
        return Err(ApiError::refused(format!(
            "the ask is for {}, not this hub's miner {}",
            ask.miner, miner.actor
        )));
    }
    let (min_price, min_verified) = floors;
    if &ask.price < min_price || &ask.verified_price < min_verified {
        return Err(ApiError::refused(format!(
            "the ask's prices ({} and {} verified, attoFIL per GiB per epoch) are below the hub's floors ({} and {}: [deals] min_price, min_verified_price)",
            ask.price.atto(),
            ask.verified_price.atto(),
            min_price.atto(),
            min_verified.atto()
        )));
    }
    if ask.min_piece_size > ask.max_piece_size {
        return Err(ApiError::refused(
            "the ask's minimum piece size is above its maximum",
        ));
    }
    let signature = chain
        .sign_bytes(&miner.worker, cbor)
        .map_err(|e| ApiError::refused(format!("{e:#}")))?;
    db.put_setting(
        ASK_KEY,
        &SignedAsk {
            price: ask.price,
            verified_price: ask.verified_price,
            min_piece_size: ask.min_piece_size,
            max_piece_size: ask.max_piece_size,
            seq_no: ask.seq_no,
            signed_at: now_secs(),
        },
    )
    .map_err(|e| ApiError::refused(format!("record the ask: {e:#}")))?;
    let mut bytes = vec![signature.signature_type() as u8];
    bytes.extend_from_slice(signature.bytes());
    Ok(bytes)
}

/// `MarketSetPeerInfo`: `ChangePeerID` and `ChangeMultiaddrs` where the chain differs, for the
/// caller's own identity, within size limits and the change interval.
pub async fn set_peer_info(
    spokes: &Spokes,
    chain: &ChainClient,
    miner: &MinerKeys,
    min_interval_secs: u64,
    caller: &Permissions,
    peer_id: Vec<u8>,
    multiaddrs: Vec<Vec<u8>>,
) -> Result<bool, ApiError> {
    use fil_actor_miner_state::v18::{ChangeMultiaddrsParams, ChangePeerIDParams, Method};
    if peer_id.is_empty()
        || peer_id.len() > MAX_PEER_ID_BYTES
        || cid::multihash::Multihash::<64>::from_bytes(&peer_id).is_err()
    {
        return Err(ApiError::refused(format!(
            "the peer ID is not a libp2p peer ID (a multihash of at most {MAX_PEER_ID_BYTES} bytes)"
        )));
    }
    if multiaddrs.len() > MAX_ADDRS
        || multiaddrs
            .iter()
            .any(|a| a.is_empty() || a.len() > MAX_CHAIN_ADDR_BYTES)
    {
        return Err(ApiError::refused(format!(
            "at most {MAX_ADDRS} multiaddrs of 1 to {MAX_CHAIN_ADDR_BYTES} bytes each"
        )));
    }
    let peer_text = cid::multibase::Base::Base58Btc.encode(&peer_id);
    spokes.bind(caller, &peer_text)?;
    let info = chain
        .rpc
        .call::<StateMinerInfo>((Addr(miner.actor), TipSetKey::head()))
        .await
        .map_err(|e| from_chain_error("read the miner's info", &e))?;
    let mut changes = Vec::new();
    if info.peer_id != peer_id {
        let params = fvm_ipld_encoding::to_vec(&ChangePeerIDParams { new_id: peer_id })
            .map_err(|e| ApiError::refused(e.to_string()))?;
        changes.push((
            "ChangePeerID",
            format!("peer-id/{peer_text}"),
            Method::ChangePeerID as u64,
            params,
        ));
    }
    if info.multiaddrs != multiaddrs {
        let digest = blake2b_simd::Params::new()
            .hash_length(16)
            .hash(&multiaddrs.concat());
        let params = fvm_ipld_encoding::to_vec(&ChangeMultiaddrsParams {
            new_multi_addrs: multiaddrs
                .into_iter()
                .map(fvm_ipld_encoding::BytesDe)
                .collect(),
        })
        .map_err(|e| ApiError::refused(e.to_string()))?;
        changes.push((
            "ChangeMultiaddrs",
            format!("multiaddrs/{}", digest.to_hex()),
            Method::ChangeMultiaddrs as u64,
            params,
        ));
    }
    if changes.is_empty() {
        return Ok(false);
    }
    let internal = |e: anyhow::Error| ApiError::refused(format!("{e:#}"));
    let last: Option<u64> = spokes.db.setting(PEER_INFO_CHANGED).map_err(internal)?;
    if let Some(last) = last {
        let since = now_secs().saturating_sub(last);
        if since < min_interval_secs {
            return Err(ApiError::refused(format!(
                "the miner's peer info changed {since} s ago; the hub allows one change per {min_interval_secs} s ([spokes] peer_info_min_interval_secs)"
            )));
        }
    }
    spokes
        .db
        .put_setting(PEER_INFO_CHANGED, &now_secs())
        .map_err(internal)?;
    for (name, purpose, method, params) in changes {
        let sent = chain
            .send(
                Outgoing {
                    purpose: &purpose,
                    from: miner.worker,
                    to: miner.actor,
                    method,
                    params,
                    value: TokenAmount::default(),
                },
                |_| Ok(()),
            )
            .await
            .map_err(|e| transient_or_refused(name, e))?;
        match chain
            .wait_landed(&sent, None)
            .await
            .map_err(|e| transient_or_refused(name, e))?
        {
            Some(Landed::Executed(lookup)) if lookup.receipt.exit_code == 0 => {
                tracing::info!(message_cid = name, peer = %peer_text, "the miner's peer info changed on chain");
            }
            other => {
                return Err(ApiError::refused(format!(
                    "{name} did not execute: {other:?}"
                )));
            }
        }
    }
    Ok(true)
}

fn transient_or_refused(what: &str, e: anyhow::Error) -> ApiError {
    if crate::chain::is_transient(&e) {
        ApiError::unavailable(format!(
            "{what}: the chain is away ({e:#}); call again later"
        ))
    } else {
        ApiError::refused(format!("{what}: {e:#}"))
    }
}
