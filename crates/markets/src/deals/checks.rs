//! The checks a proposal must pass before it is accepted, each refusing with a message that
//! names the problem (sent to the client as Boost does, after "failed validation: ").
//!
//! Cheapest first: everything the proposal says about itself, the transfer URL's address, and
//! the client's signature (verified locally for key addresses) come before anything that costs
//! a hub or chain call, and the URL probe comes last. Every number from the proposal is used
//! with checked arithmetic. When the hub (or the chain behind it) is away, the client is told
//! to try again, never that its proposal is bad.

use std::time::Duration;

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Addr;
use nelumbo_markets_api::wire::{self, DealParams, Label};
use nelumbo_miner_api::methods::{StateAccountKey, StateMarketBalance, StateVerifiedClientStatus};

use crate::ask::Ask;
use crate::config::DealsConfig;
use crate::hub::{Hub, HubError};

use super::transfer::{self, HttpSource};

/// Why a proposal was refused, and which check refused it (for the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

fn reject(reason: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        message: message.into(),
    }
}

/// What the checks need to know about this provider.
#[derive(Debug)]
pub struct CheckContext<'a> {
    pub miner: Address,
    pub sector_size: u64,
    pub ask: &'a Ask,
    pub config: &'a DealsConfig,
    /// `[deals] max_provider_collateral`.
    pub max_provider_collateral: &'a TokenAmount,
    pub hub: &'a Hub,
    pub http: &'a reqwest::Client,
    /// Where transfers may reach.
    pub guard: &'a super::guard::Guard,
}

const GIB: u64 = 1 << 30;

/// Checks the proposal and returns the transfer source of an online deal.
pub async fn check_proposal(
    params: &DealParams,
    cx: &CheckContext<'_>,
) -> Result<Option<HttpSource>, Rejection> {
    let deal = &params.client_deal_proposal;
    let p = &deal.proposal;

    if p.provider != cx.miner {
        return Err(reject(
            "provider",
            format!(
                "incorrect provider for deal; proposal.Provider: {}; provider.Address: {}",
                p.provider, cx.miner
            ),
        ));
    }
    let piece = nelumbo_commp::parse_piece_cid(&p.piece_cid).map_err(|e| {
        reject(
            "piece_cid",
            format!("proposal PieceCID is not a piece commitment: {e}"),
        )
    })?;
    if piece.sizes.is_some() || p.piece_cid.version() != cid::Version::V1 {
        return Err(reject(
            "piece_cid",
            "proposal PieceCID had wrong prefix: deals name pieces by v1 piece CIDs (baga...)",
        ));
    }
    let size = p.piece_size.0;
    if nelumbo_commp::PaddedPieceSize::new(size).is_err() {
        return Err(reject(
            "piece_size",
            format!("proposal piece size is invalid: {size} is not a power of two of at least 128"),
        ));
    }
    if size > cx.ask.max_piece_size {
        return Err(reject(
            "piece_too_large",
            format!(
                "piece size more than maximum allowed size: {size} > {}",
                cx.ask.max_piece_size
            ),
        ));
    }
    if size < cx.ask.min_piece_size {
        return Err(reject(
            "piece_too_small",
            format!(
                "piece size less than minimum required size: {size} < {}",
                cx.ask.min_piece_size
            ),
        ));
    }
    if size > cx.sector_size {
        return Err(reject(
            "piece_too_large",
            format!(
                "piece size more than the miner's sector size: {size} > {}",
                cx.sector_size
            ),
        ));
    }
    let label_len = match &p.label {
        Label::String(s) => s.len(),
        Label::Bytes(b) => b.len(),
    };
    if label_len > 256 {
        return Err(reject(
            "label",
            format!("deal label can be at most 256 bytes, is {label_len}"),
        ));
    }
    let duration = p.end_epoch.checked_sub(p.start_epoch).unwrap_or(-1);
    if p.start_epoch < 0 || duration <= 0 {
        return Err(reject(
            "epochs",
            format!(
                "proposal end {} before proposal start {}",
                p.end_epoch, p.start_epoch
            ),
        ));
    }
    if duration < cx.config.min_duration_epochs || duration > cx.config.max_duration_epochs {
        return Err(reject(
            "duration",
            format!(
                "deal duration out of bounds (min, max, provided): {}, {}, {duration}",
                cx.config.min_duration_epochs, cx.config.max_duration_epochs
            ),
        ));
    }

    // Price: at least the ask's price for this size (the verified price for verified deals).
    let (ask_price, which) = if p.verified_deal {
        (&cx.ask.verified_price, "verified asking price")
    } else {
        (&cx.ask.price, "asking price")
    };
    let min_price = TokenAmount::from_atto(ask_price.atto() * size / GIB);
    if p.storage_price_per_epoch < min_price {
        return Err(reject(
            "price",
            format!(
                "storage price per epoch less than {which}: {} < {} attoFIL (the ask is {} attoFIL per GiB per epoch)",
                p.storage_price_per_epoch.atto(),
                min_price.atto(),
                ask_price.atto()
            ),
        ));
    }
    if p.provider_collateral.is_negative()
        || p.client_collateral.is_negative()
        || p.storage_price_per_epoch.is_negative()
    {
        return Err(reject("collateral", "collateral cannot be negative"));
    }
    if &p.provider_collateral > cx.max_provider_collateral {
        return Err(reject(
            "collateral",
            format!(
                "proposed provider collateral {} above maximum {} attoFIL",
                p.provider_collateral.atto(),
                cx.max_provider_collateral.atto()
            ),
        ));
    }

    // Transfer.
    let source = if params.is_offline {
        None
    } else {
        if params.transfer.kind != "http" && params.transfer.kind != "libp2p" {
            return Err(reject(
                "transfer",
                format!(
                    "unsupported transfer type {:?}: this provider pulls data over http(s)",
                    params.transfer.kind
                ),
            ));
        }
        let request = wire::http_request(&params.transfer).map_err(|e| reject("transfer", e))?;
        if !(request.url.starts_with("http://") || request.url.starts_with("https://")) {
            return Err(reject(
                "transfer",
                format!(
                    "transfer URL {:?} is not http(s): libp2p transfers are not supported by this provider",
                    request.url
                ),
            ));
        }
        cx.guard
            .check_url(&request.url)
            .map_err(|why| reject("transfer_address", why))?;
        let capacity = size / 128 * 127;
        if params.transfer.size == 0 || params.transfer.size > capacity {
            return Err(reject(
                "transfer_size",
                format!(
                    "transfer size {} does not fit the piece: a piece of {size} bytes holds 1 to {capacity} bytes",
                    params.transfer.size
                ),
            ));
        }
        Some(HttpSource {
            url: request.url,
            headers: request.headers.unwrap_or_default(),
        })
    };

    let unavailable = |e: HubError| {
        reject(
            "hub",
            format!(
                "server error: the provider cannot check deals right now ({e}); try again later"
            ),
        )
    };
    // The client's signature: a key address is checked locally; an ID address needs its key
    // from the chain, through the hub.
    let signed = wire::proposal_bytes(p).map_err(|e| {
        reject(
            "signature",
            format!("server error: encode the proposal: {e}"),
        )
    })?;
    let key = match p.client.payload() {
        fvm_shared::address::Payload::Secp256k1(_) | fvm_shared::address::Payload::BLS(_) => {
            p.client
        }
        _ => {
            cx.hub
                .call::<StateAccountKey>((Addr(p.client),))
                .await
                .map_err(|e| match e {
                    HubError::Refused(why) => reject(
                        "signature",
                        format!(
                            "failed to get account key for client addr {}: {why}",
                            p.client
                        ),
                    ),
                    e => unavailable(e),
                })?
                .0
        }
    };
    nelumbo_keys::verify(&deal.client_signature, &signed, &key).map_err(|e| {
        reject(
            "signature",
            format!(
                "invalid signature: the proposal is not signed by the client {}: {e}",
                p.client
            ),
        )
    })?;

    // The chain, through the hub: start epoch, escrow, DataCap.
    let head = cx.hub.head_height().await.map_err(unavailable)?;
    let earliest = head.saturating_add(cx.config.min_start_lead_epochs);
    if p.start_epoch < earliest {
        return Err(reject(
            "start_epoch",
            format!(
                "deal start epoch {} is too soon: the current epoch is {head} and this provider needs {} epochs to transfer, publish and seal, so the earliest start is {earliest}",
                p.start_epoch, cx.config.min_start_lead_epochs
            ),
        ));
    }
    let balance = cx
        .hub
        .call::<StateMarketBalance>((Addr(p.client),))
        .await
        .map_err(unavailable)?;
    let available = balance.escrow.clone() - balance.locked.clone();
    let cost = p.storage_price_per_epoch.clone() * duration + p.client_collateral.clone();
    if available < cost {
        return Err(reject(
            "client_funds",
            format!(
                "client available funds in escrow {} not enough to meet storage cost for deal {} (attoFIL); add funds with MarketAddBalance",
                available.atto(),
                cost.atto()
            ),
        ));
    }
    if p.verified_deal {
        let datacap = cx
            .hub
            .call::<StateVerifiedClientStatus>((Addr(p.client),))
            .await
            .map_err(unavailable)?;
        match datacap {
            None => return Err(reject("verified", "client is not a verified client")),
            Some(cap) if cap.0 < num_bigint::BigInt::from(size) => {
                return Err(reject(
                    "verified",
                    format!(
                        "verified deal DataCap {} too small for proposed piece size {size}",
                        cap.0
                    ),
                ));
            }
            Some(_) => {}
        }
    }

    // Last, the URL itself (the check that takes longest).
    if let Some(source) = &source {
        transfer::probe(cx.http, source, params.transfer.size)
            .await
            .map_err(|e| reject("transfer", e))?;
    }
    Ok(source)
}

/// Runs the operator's deal filter (Boost's format): the deal as JSON on stdin; exit 0 accepts,
/// any other exit rejects with stdout and stderr as the reason.
pub async fn run_filter(command: &str, params: &DealParams) -> Result<(), Rejection> {
    use tokio::io::AsyncWriteExt;
    let input = filter_input(params)
        .map_err(|e| reject("filter", format!("server error: deal filter input: {e}")))?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(command, error = %e, "the deal filter cannot be run");
            reject("filter", "server error: deal filter error")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input).await;
    }
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| {
            reject(
                "filter",
                "server error: the deal filter took longer than 30 s",
            )
        })?
        .map_err(|_| reject("filter", "server error: deal filter error"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut reason = String::from_utf8_lossy(&output.stdout).into_owned();
    reason.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(reject("filter", reason))
}

/// Boost's `DealFilterParams` JSON, for the fields this provider knows.
fn filter_input(params: &DealParams) -> anyhow::Result<Vec<u8>> {
    let deal = &params.client_deal_proposal;
    let p = &deal.proposal;
    let label = match &p.label {
        Label::String(s) => s.clone(),
        Label::Bytes(_) => String::new(),
    };
    let signature = {
        use base64::Engine;
        serde_json::json!({
            "Type": deal.client_signature.signature_type() as u8,
            "Data": base64::engine::general_purpose::STANDARD.encode(deal.client_signature.bytes()),
        })
    };
    let value = serde_json::json!({
        "DealUUID": uuid::Uuid::from_bytes(params.deal_uuid).to_string(),
        "IsOffline": params.is_offline,
        "ClientDealProposal": {
            "Proposal": {
                "PieceCID": {"/": p.piece_cid.to_string()},
                "PieceSize": p.piece_size.0,
                "VerifiedDeal": p.verified_deal,
                "Client": p.client.to_string(),
                "Provider": p.provider.to_string(),
                "Label": label,
                "StartEpoch": p.start_epoch,
                "EndEpoch": p.end_epoch,
                "StoragePricePerEpoch": p.storage_price_per_epoch.atto().to_string(),
                "ProviderCollateral": p.provider_collateral.atto().to_string(),
                "ClientCollateral": p.client_collateral.atto().to_string(),
            },
            "ClientSignature": signature,
        },
        "DealDataRoot": {"/": params.deal_data_root.to_string()},
        "Transfer": {
            "Type": params.transfer.kind,
            "ClientID": params.transfer.client_id,
            "Params": "",
            "Size": params.transfer.size,
        },
        "RemoveUnsealedCopy": params.remove_unsealed_copy,
        "SkipIPNIAnnounce": params.skip_ipni_announce,
        "DealType": "storage",
        "FormatVersion": "2.2.0",
        "Agent": "nelumbo",
    });
    Ok(serde_json::to_vec_pretty(&value)?)
}
