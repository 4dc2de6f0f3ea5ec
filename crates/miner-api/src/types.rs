//! Types the hub's API exchanges, in Lotus JSON style (PascalCase fields, addresses as strings).

use std::collections::BTreeMap;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use nelumbo_chain_api::json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The hub's version and the chain it is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct HubVersion {
    /// The `nelumbo-miner` build.
    pub version: String,
    #[serde(rename = "APIVersion")]
    pub api_version: u32,
}

/// The miner this hub operates, as recorded at `nelumbo-miner init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct HubMinerInfo {
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub actor: Address,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub owner: Address,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub worker: Address,
    /// The control address WindowPoSt is sent from (its own nonces, so proving never waits
    /// behind the worker's messages); hubs made before it existed have none and prove from the
    /// worker.
    #[serde(
        default,
        with = "json::opt_address",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "json::opt_address::schema")]
    pub control: Option<Address>,
    /// Bytes.
    pub sector_size: u64,
    /// The epoch at which the miner actor was created.
    pub created_at: ChainEpoch,
}

/// Where a sector is in the sealing pipeline. Names follow Lotus's sector states where one
/// exists.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum SectorState {
    /// Accepting deal pieces until it is full or its wait runs out.
    WaitDeals,
    /// Writing pieces (and filler) into the unsealed file.
    Packing,
    /// Drawing the sealing ticket from the chain.
    GetTicket,
    /// Pre-commit phase 1 (SDR labelling).
    PreCommit1,
    /// Pre-commit phase 2 (tree building; yields CommR).
    PreCommit2,
    /// Sending the pre-commit message.
    PreCommitting,
    /// Waiting for the pre-commit message to execute.
    PreCommitWait,
    /// Waiting for the interactive seed epoch.
    WaitSeed,
    /// Commit phase 1 (challenge proofs).
    Commit1,
    /// Commit phase 2 (the SNARK).
    Commit2,
    /// Sending the prove-commit message.
    Committing,
    /// Waiting for the prove-commit message to execute.
    CommitWait,
    /// Dropping sealing-only cache files.
    FinalizeSector,
    /// On chain and proven every proving period.
    Proving,
    /// Gave up after repeated failures; `LastError` says why. Needs the operator.
    Failed,
}

impl SectorState {
    pub const ALL: [SectorState; 15] = [
        Self::WaitDeals,
        Self::Packing,
        Self::GetTicket,
        Self::PreCommit1,
        Self::PreCommit2,
        Self::PreCommitting,
        Self::PreCommitWait,
        Self::WaitSeed,
        Self::Commit1,
        Self::Commit2,
        Self::Committing,
        Self::CommitWait,
        Self::FinalizeSector,
        Self::Proving,
        Self::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::WaitDeals => "WaitDeals",
            Self::Packing => "Packing",
            Self::GetTicket => "GetTicket",
            Self::PreCommit1 => "PreCommit1",
            Self::PreCommit2 => "PreCommit2",
            Self::PreCommitting => "PreCommitting",
            Self::PreCommitWait => "PreCommitWait",
            Self::WaitSeed => "WaitSeed",
            Self::Commit1 => "Commit1",
            Self::Commit2 => "Commit2",
            Self::Committing => "Committing",
            Self::CommitWait => "CommitWait",
            Self::FinalizeSector => "FinalizeSector",
            Self::Proving => "Proving",
            Self::Failed => "Failed",
        }
    }

    /// Whether the pipeline still has work to do for the sector.
    pub fn is_sealing(self) -> bool {
        !matches!(self, Self::Proving | Self::Failed)
    }
}

impl std::fmt::Display for SectorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of a sector's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorLogEntry {
    /// Unix seconds.
    pub at: u64,
    pub state: SectorState,
    pub message: String,
}

/// A piece in a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPieceInfo {
    #[serde(rename = "PieceCID", with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub piece_cid: Cid,
    /// Padded bytes.
    pub size: u64,
    /// Padded offset in the sector.
    pub offset: u64,
    /// The deal, for deal pieces; none for filler.
    pub deal_id: Option<u64>,
}

/// `SectorsStatus`: everything the hub knows about a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStatus {
    pub number: u64,
    pub state: SectorState,
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<SectorPieceInfo>>")]
    pub pieces: Vec<SectorPieceInfo>,
    pub ticket_epoch: Option<ChainEpoch>,
    #[serde(rename = "CommR", default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub comm_r: Option<Cid>,
    #[serde(rename = "CommD", default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub comm_d: Option<Cid>,
    #[serde(default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub pre_commit_message: Option<Cid>,
    pub pre_commit_epoch: Option<ChainEpoch>,
    pub seed_epoch: Option<ChainEpoch>,
    #[serde(default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub commit_message: Option<Cid>,
    /// The storage path that holds the sector's files.
    pub storage: String,
    /// The latest failure, while the pipeline retries it or after it gave up.
    pub last_error: Option<String>,
    pub retries: u32,
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<SectorLogEntry>>")]
    pub log: Vec<SectorLogEntry>,
}

/// `SectorsList`: one line per sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorBrief {
    pub number: u64,
    pub state: SectorState,
    pub last_error: Option<String>,
}

/// `ProvingInfo`: the miner's proving period as the hub sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ProvingInfo {
    pub current_epoch: ChainEpoch,
    pub period_start: ChainEpoch,
    pub deadline_index: u64,
    pub deadline_open: ChainEpoch,
    pub deadline_close: ChainEpoch,
    pub deadlines: u64,
    pub challenge_window: ChainEpoch,
    /// Sectors the chain holds for this miner, and how many of them are faulty.
    pub live_sectors: u64,
    pub faulty_sectors: u64,
    pub recovering_sectors: u64,
    /// Since the hub started.
    pub window_posts_submitted: u64,
    pub window_posts_failed: u64,
    pub blocks_won: u64,
}

/// `ProvingDeadlines`: one deadline of the proving period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineSummary {
    pub index: u64,
    pub open: ChainEpoch,
    pub partitions: u64,
    pub live_sectors: u64,
    pub faulty_sectors: u64,
    pub recovering_sectors: u64,
    /// Whether this deadline's WindowPoSt landed in its current (or last) window.
    pub proven: bool,
    pub current: bool,
}

/// What the hub reports on its event channel (`Nelumbo.SubscribeEvents`). Events are not
/// stored: a subscriber that reconnects reads the current state with `SectorsStatus` and
/// `ProvingInfo`, then follows the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "Kind")]
pub enum HubEvent {
    /// A sector moved to another state.
    SectorState {
        #[serde(rename = "Sector")]
        sector: u64,
        #[serde(rename = "From")]
        from: SectorState,
        #[serde(rename = "To")]
        to: SectorState,
        #[serde(rename = "Message")]
        message: String,
        /// Unix seconds.
        #[serde(rename = "At")]
        at: u64,
    },
    /// A sealing step failed and will be retried (or, with `Gave up`, will not).
    SectorError {
        #[serde(rename = "Sector")]
        sector: u64,
        #[serde(rename = "State")]
        state: SectorState,
        #[serde(rename = "Error")]
        error: String,
        #[serde(rename = "Attempt")]
        attempt: u32,
        #[serde(rename = "GaveUp")]
        gave_up: bool,
    },
    /// Sectors the hub could not prove in a WindowPoSt: the chain marks them faulty.
    Fault {
        #[serde(rename = "Deadline")]
        deadline: u64,
        #[serde(rename = "Partition")]
        partition: u64,
        #[serde(rename = "Sector")]
        sector: u64,
        #[serde(rename = "Reason")]
        reason: String,
    },
    /// Faulty sectors declared recovered.
    Recovered {
        #[serde(rename = "Deadline")]
        deadline: u64,
        #[serde(rename = "Sectors")]
        sectors: u64,
    },
    /// A WindowPoSt landed (`Accepted`) or did not.
    WindowPost {
        #[serde(rename = "Deadline")]
        deadline: u64,
        #[serde(rename = "Partition")]
        partition: u64,
        #[serde(rename = "Accepted")]
        accepted: bool,
        #[serde(rename = "Detail")]
        detail: String,
    },
    /// A deal's piece is in a proven sector: the deal is active on chain.
    DealActivated {
        #[serde(rename = "Sector")]
        sector: u64,
        #[serde(rename = "DealID")]
        deal_id: u64,
        #[serde(rename = "DealUUID")]
        deal_uuid: String,
    },
    /// A block this hub won was accepted by the chain.
    BlockWon {
        #[serde(rename = "Epoch")]
        epoch: ChainEpoch,
    },
}

/// What a spoke tells the hub with each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SpokeHello {
    /// Stable across the spoke's restarts (for example its libp2p peer ID).
    pub id: String,
    /// The services it runs: deals, retrieval, indexing.
    pub services: Vec<String>,
    pub version: String,
    /// Where clients reach it.
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<String>>")]
    pub public_addrs: Vec<String>,
    /// How many of its deals are in each state (a deals service's), for the hub's status
    /// view. As the spoke says: shown, never acted on.
    #[serde(default)]
    pub deals: BTreeMap<String, u64>,
}

/// The hub's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SpokeAck {
    /// Send the next heartbeat within this many seconds; a spoke silent for three intervals is
    /// listed offline.
    pub heartbeat_secs: u64,
}

/// `SpokesList`: a spoke the hub has heard from since it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SpokeStatus {
    #[serde(flatten)]
    pub hello: SpokeHello,
    /// The name of the spoke token it calls with (its binding), if any.
    #[serde(default)]
    pub token: Option<String>,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    pub online: bool,
}

/// `MarketPublishDeals`: a deal on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PublishedDeal {
    #[serde(rename = "ProposalCID", with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub proposal_cid: Cid,
    #[serde(rename = "DealID")]
    pub deal_id: u64,
    /// The `PublishStorageDeals` message that published it (with others, perhaps).
    #[serde(with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub message: Cid,
    /// Where that message executed.
    pub epoch: ChainEpoch,
}

/// `SectorAddPieceToAny`: a published deal's piece, already uploaded with `PUT /pieces/{cid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PieceDealInfo {
    /// The spoke's deal UUID: the call is idempotent by it.
    #[serde(rename = "DealUUID")]
    pub deal_uuid: String,
    #[serde(rename = "DealID")]
    pub deal_id: u64,
    #[serde(rename = "PieceCID", with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub piece_cid: Cid,
    /// Padded bytes.
    pub piece_size: u64,
    /// For the spoke's records; the hub reads the deal's epochs from the chain.
    pub start_epoch: ChainEpoch,
    pub end_epoch: ChainEpoch,
}

/// Where a piece went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SectorOffset {
    pub sector: u64,
    /// Padded offset of the piece in the sector.
    pub offset: u64,
}

/// `PieceLocate`: a sector that holds a piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PieceLocation {
    pub sector: u64,
    /// Padded offset and size.
    pub offset: u64,
    pub size: u64,
    /// Payload bytes of the piece (the rest is zero padding).
    pub payload_size: u64,
    #[serde(rename = "DealID")]
    pub deal_id: u64,
    pub sector_state: SectorState,
    /// Whether the hub can serve the piece now (`GET /pieces/{cid}`) without unsealing.
    pub unsealed: bool,
}
