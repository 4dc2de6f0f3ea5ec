//! What is stored per deal, and how the admin API and the status protocol show it.

use base64::Engine;
use cid::Cid;
use nelumbo_markets_api::admin::{DealInfo, DealState};
use nelumbo_markets_api::wire::{self, ClientDealProposal, DealParams, DealStatus, checkpoint};
use serde::{Deserialize, Serialize};

use super::transfer::HttpSource;

/// A deal as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealRecord {
    pub uuid: String,
    pub state: DealState,
    pub failed_step: Option<DealState>,
    pub error: String,
    /// The signed proposal, CBOR `ClientDealProposal`, base64.
    pub proposal: String,
    /// Boost's `SignedProposalCid`.
    pub proposal_cid: String,
    pub piece_cid: String,
    pub piece_size: u64,
    pub data_root: String,
    pub client: String,
    pub provider: String,
    pub verified: bool,
    pub start_epoch: i64,
    pub end_epoch: i64,
    pub price_per_epoch: String,
    pub is_offline: bool,
    pub source: Option<HttpSource>,
    pub transfer_size: u64,
    pub bytes_received: u64,
    pub transfer_attempts: u32,
    pub transfer_restarts: u32,
    pub remove_unsealed_copy: bool,
    pub skip_ipni_announce: bool,
    pub deal_id: Option<u64>,
    pub publish_message: Option<String>,
    pub sector: Option<u64>,
    pub sealing_status: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// When its transfer first started (unix seconds): the overall deadline counts from here.
    #[serde(default)]
    pub transfer_started_at: Option<u64>,
    /// Its staged data was removed after it failed (a retry fetches it again).
    #[serde(default)]
    pub staging_released: bool,
}

impl DealRecord {
    pub fn new(params: &DealParams, source: Option<HttpSource>) -> anyhow::Result<Self> {
        let deal = &params.client_deal_proposal;
        let p = &deal.proposal;
        let now = crate::now_secs();
        Ok(Self {
            uuid: uuid::Uuid::from_bytes(params.deal_uuid).to_string(),
            state: DealState::Accepted,
            failed_step: None,
            error: String::new(),
            proposal: base64::engine::general_purpose::STANDARD
                .encode(fvm_ipld_encoding::to_vec(deal)?),
            proposal_cid: wire::signed_proposal_cid(deal)?.to_string(),
            piece_cid: p.piece_cid.to_string(),
            piece_size: p.piece_size.0,
            data_root: params.deal_data_root.to_string(),
            client: p.client.to_string(),
            provider: p.provider.to_string(),
            verified: p.verified_deal,
            start_epoch: p.start_epoch,
            end_epoch: p.end_epoch,
            price_per_epoch: p.storage_price_per_epoch.atto().to_string(),
            is_offline: params.is_offline,
            source,
            transfer_size: params.transfer.size,
            bytes_received: 0,
            transfer_attempts: 0,
            transfer_restarts: 0,
            remove_unsealed_copy: params.remove_unsealed_copy,
            skip_ipni_announce: params.skip_ipni_announce,
            deal_id: None,
            publish_message: None,
            sector: None,
            sealing_status: String::new(),
            created_at: now,
            updated_at: now,
            transfer_started_at: None,
            staging_released: false,
        })
    }

    pub fn client_deal_proposal(&self) -> anyhow::Result<ClientDealProposal> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.proposal)?;
        Ok(fvm_ipld_encoding::from_slice(&bytes)?)
    }

    pub fn info(&self) -> DealInfo {
        DealInfo {
            uuid: self.uuid.clone(),
            state: self.state,
            failed_step: self.failed_step,
            error: self.error.clone(),
            client: self.client.clone(),
            provider: self.provider.clone(),
            piece_cid: self.piece_cid.clone(),
            piece_size: self.piece_size,
            data_root: self.data_root.clone(),
            proposal_cid: self.proposal_cid.clone(),
            is_offline: self.is_offline,
            verified: self.verified,
            start_epoch: self.start_epoch,
            end_epoch: self.end_epoch,
            price_per_epoch: self.price_per_epoch.clone(),
            transfer_url: self
                .source
                .as_ref()
                .map(|s| s.url.clone())
                .unwrap_or_default(),
            transfer_size: self.transfer_size,
            bytes_received: self.bytes_received,
            transfer_restarts: self.transfer_restarts,
            deal_id: self.deal_id,
            publish_message: self.publish_message.clone(),
            sector: self.sector,
            sealing_status: self.sealing_status.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Boost's checkpoint for the status protocol: the last one reached. `announced`: the
    /// deal's piece is advertised to IPNI and announced (`IndexedAndAnnounced` while sealing).
    pub fn checkpoint(&self, announced: bool) -> &'static str {
        let step = match self.state {
            DealState::Failed | DealState::Cancelled => {
                self.failed_step.unwrap_or(DealState::Accepted)
            }
            s => s,
        };
        match step {
            DealState::Accepted | DealState::Transferring => checkpoint::ACCEPTED,
            DealState::Verifying | DealState::Uploading | DealState::Publishing => {
                checkpoint::TRANSFERRED
            }
            DealState::AddingPiece => checkpoint::PUBLISH_CONFIRMED,
            DealState::Sealing if announced && self.state == DealState::Sealing => {
                checkpoint::INDEXED_AND_ANNOUNCED
            }
            DealState::Sealing => checkpoint::ADDED_PIECE,
            DealState::Active => checkpoint::COMPLETE,
            DealState::Failed | DealState::Cancelled => checkpoint::ACCEPTED,
        }
    }

    /// The status protocol's view of this deal.
    pub fn status(&self, announced: bool) -> anyhow::Result<DealStatus> {
        let deal = self.client_deal_proposal()?;
        Ok(DealStatus {
            error: self.error.clone(),
            status: self.checkpoint(announced).to_string(),
            proposal: deal.proposal,
            publish_cid: self
                .publish_message
                .as_deref()
                .map(Cid::try_from)
                .transpose()?,
            chain_deal_id: self.deal_id.unwrap_or(0),
            sealing_status: self.sealing_status.clone(),
            signed_proposal_cid: Cid::try_from(self.proposal_cid.as_str())?,
        })
    }
}
