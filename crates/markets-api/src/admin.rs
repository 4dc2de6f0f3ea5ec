//! The markets process's admin API (loopback, token): deals, the ask, the process's identity.
//! The `nelumbo-markets` CLI is its client.

use nelumbo_rpc::rpc_method;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A deal's step in the markets process. Each is persisted before it is acted on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum DealState {
    /// Accepted; waiting for a transfer slot (online) or for `deals import-data` (offline).
    Accepted,
    /// Pulling the data from the client's URL.
    Transferring,
    /// Checking the piece commitment and the CAR, and indexing its blocks.
    Verifying,
    /// Uploading the piece to the hub, which checks it and keeps it (before publishing: the
    /// hub never locks collateral for data it does not hold).
    Uploading,
    /// Asking the hub to publish the deal, waiting for its deal ID.
    Publishing,
    /// Asking the hub to put the piece into a sector.
    AddingPiece,
    /// The piece is in a sector; following it until the deal is active on chain.
    Sealing,
    /// The deal is active on chain.
    Active,
    /// Stopped with an error (`deals retry` resumes it from the step that failed).
    Failed,
    /// Cancelled by the operator before it was published.
    Cancelled,
}

impl DealState {
    pub const ALL: [DealState; 10] = [
        Self::Accepted,
        Self::Transferring,
        Self::Verifying,
        Self::Uploading,
        Self::Publishing,
        Self::AddingPiece,
        Self::Sealing,
        Self::Active,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Transferring => "Transferring",
            Self::Verifying => "Verifying",
            Self::Publishing => "Publishing",
            Self::Uploading => "Uploading",
            Self::AddingPiece => "AddingPiece",
            Self::Sealing => "Sealing",
            Self::Active => "Active",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }

    /// No more work will happen without the operator.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Active | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for DealState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A deal as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DealInfo {
    #[serde(rename = "UUID")]
    pub uuid: String,
    pub state: DealState,
    /// For `Failed`: the step it failed in (`deals retry` resumes there).
    pub failed_step: Option<DealState>,
    pub error: String,
    pub client: String,
    pub provider: String,
    #[serde(rename = "PieceCID")]
    pub piece_cid: String,
    /// Padded bytes.
    pub piece_size: u64,
    /// The CAR's root (`DealDataRoot`).
    pub data_root: String,
    #[serde(rename = "ProposalCID")]
    pub proposal_cid: String,
    pub is_offline: bool,
    pub verified: bool,
    pub start_epoch: i64,
    pub end_epoch: i64,
    /// attoFIL per epoch, for the whole piece.
    pub price_per_epoch: String,
    pub transfer_url: String,
    pub transfer_size: u64,
    pub bytes_received: u64,
    pub transfer_restarts: u32,
    #[serde(rename = "DealID")]
    pub deal_id: Option<u64>,
    pub publish_message: Option<String>,
    pub sector: Option<u64>,
    /// The sector's state on the hub, as last heard.
    pub sealing_status: String,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
}

/// One line of a deal's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DealLogEntry {
    /// Unix seconds.
    pub at: u64,
    pub state: DealState,
    pub message: String,
}

/// The storage ask: what this provider charges and which pieces it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AskSettings {
    /// attoFIL per GiB per epoch.
    pub price: String,
    /// attoFIL per GiB per epoch, for verified deals.
    pub verified_price: String,
    /// Padded bytes.
    pub min_piece_size: u64,
    pub max_piece_size: u64,
}

/// The process as clients and operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MarketsInfo {
    #[serde(rename = "PeerID")]
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub services: Vec<String>,
    pub miner: String,
    pub hub_connected: bool,
    /// The base URL of this process's retrieval listener, when retrieval runs here.
    #[serde(default)]
    pub retrieval_url: Option<String>,
}

/// One indexer's view, as `indexing status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct IndexerStatus {
    pub url: String,
    /// The newest head (sequence number) it accepted; 0: none yet.
    pub accepted_seq: u64,
    /// Unix seconds of the last announcement tried and of the last accepted; 0: never.
    pub last_attempt: u64,
    pub last_success: u64,
    pub last_error: String,
    pub consecutive_failures: u64,
}

/// The advertisement chain and the announcements (`indexing status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct IndexingStatus {
    /// The peer ID that signs (the miner's, on chain).
    pub provider: String,
    /// The head advertisement's CID; none while the chain is empty.
    pub head: Option<String>,
    /// Advertisements in the chain.
    pub ads: u64,
    pub pieces_advertised: u64,
    pub pieces_withdrawn: u64,
    pub removed_by_operator: u64,
    /// The addresses advertisements give for retrieval.
    pub addresses: Vec<String>,
    pub indexers: Vec<IndexerStatus>,
    /// Why the last pass could not bring the chain up to date; empty when it did.
    pub last_error: String,
}

/// A piece's latest advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PieceAdInfo {
    pub piece_cid: String,
    pub ad: String,
    pub seq: u64,
    /// A removal: the piece is no longer advertised.
    pub is_rm: bool,
    pub entries: u64,
    pub entry_chunks: u64,
    pub created_at: u64,
}

rpc_method!(Info, "Markets.Info", Read, "The process's peer ID, addresses, services and miner.",
    [] () -> MarketsInfo);
rpc_method!(DealsList, "Markets.DealsList", Read, "Every deal this process knows, newest first.",
    [] () -> Vec<DealInfo>);
rpc_method!(DealsShow, "Markets.DealsShow", Read, "One deal, by UUID.",
    ["uuid"] (String) -> DealInfo);
rpc_method!(DealsLogs, "Markets.DealsLogs", Read, "A deal's history, oldest first.",
    ["uuid"] (String) -> Vec<DealLogEntry>);
rpc_method!(DealsRetry, "Markets.DealsRetry", Admin,
    "Resumes a failed deal from the step that failed.",
    ["uuid"] (String) -> DealInfo);
rpc_method!(DealsCancel, "Markets.DealsCancel", Admin,
    "Cancels a deal that is not yet published (a published deal is on chain and cannot be taken back).",
    ["uuid"] (String) -> DealInfo);
rpc_method!(DealsImportData, "Markets.DealsImportData", Admin,
    "Gives an offline deal its data: a CAR file readable by the markets process, copied into staging.",
    ["uuid", "path"] (String, String) -> DealInfo);
rpc_method!(IndexStatus, "Markets.IndexStatus", Read,
    "The IPNI advertisement chain's head and size, and each indexer's announcements.",
    [] () -> IndexingStatus);
rpc_method!(IndexList, "Markets.IndexList", Read,
    "Every piece's latest advertisement (or removal), oldest first.",
    [] () -> Vec<PieceAdInfo>);
rpc_method!(IndexShow, "Markets.IndexShow", Read, "A piece's latest advertisement, if any.",
    ["pieceCid"] (String) -> Option<PieceAdInfo>);
rpc_method!(IndexAnnounce, "Markets.IndexAnnounce", Admin,
    "Announces the head to every configured indexer again now.",
    [] () -> ());
rpc_method!(IndexRemove, "Markets.IndexRemove", Admin,
    "Withdraws a piece's advertisement (an IsRm advertisement) and keeps it withdrawn, whatever its deals, until IndexRestore. Returns whether the piece was advertised.",
    ["pieceCid"] (String) -> bool);
rpc_method!(IndexRestore, "Markets.IndexRestore", Admin,
    "Undoes IndexRemove: the piece is advertised again while it has a live deal. Returns whether it had been removed.",
    ["pieceCid"] (String) -> bool);
rpc_method!(WorkersList, "Markets.WorkersList", Read,
    "This process's background workers (each running deal, the IPNI advertisement chain, one announcer per indexer) with what each is doing: busy, idle, waiting for a transfer slot, or retrying at a time after failures.",
    [] () -> Vec<nelumbo_types::workers::WorkerStatus>);
rpc_method!(AskGet, "Markets.AskGet", Read, "The current storage ask.",
    [] () -> AskSettings);
rpc_method!(AskSet, "Markets.AskSet", Admin, "Sets the storage ask; takes effect for the next deal.",
    ["ask"] (AskSettings) -> AskSettings);
