//! Every method of the hub's API, with its permission.
//!
//! Operators hold Lotus's `read`, `write`, `sign` or `admin` tokens. A spoke holds a `spoke`
//! token (`nelumbo-miner auth api-info --perm spoke`), which reaches exactly the methods that
//! name `Spoke` below, listed in [`SPOKE_METHODS`]: the narrow chain view, its own deals'
//! publishing, pieces and sectors, the ask, its own peer info and heartbeat. It cannot pledge,
//! list the operator's sectors or proving state, or reach anything that spends funds beyond
//! what the hub's own deal policy allows (invariant 4).

use std::collections::BTreeMap;

use nelumbo_chain_api::types::{MarketBalance, MarketDeal, TipSet};
use nelumbo_chain_api::{Addr, Base64, Big, CidJson};
use nelumbo_rpc::rpc_method;

use crate::types::{
    self, DeadlineSummary, HubEvent, HubMinerInfo, HubVersion, PieceDealInfo, PieceLocation,
    PublishedDeal, SectorBrief, SectorOffset, SectorState, SectorStatus, SpokeAck, SpokeHello,
    SpokeStatus,
};

rpc_method!(Version, "Nelumbo.Version", Read | Spoke, "The hub's build and API version.",
    [] () -> HubVersion);
rpc_method!(ActorAddress, "Nelumbo.ActorAddress", Read | Spoke, "The address of the miner actor this hub operates.",
    [] () -> Addr);
rpc_method!(ActorSectorSize, "Nelumbo.ActorSectorSize", Read | Spoke, "The sector size of a miner actor, in bytes.",
    ["miner"] (Addr) -> u64);
rpc_method!(MinerInfo, "Nelumbo.MinerInfo", Read | Spoke, "The miner this hub operates: actor, owner, worker, sector size.",
    [] () -> HubMinerInfo);
rpc_method!(SectorsPledge, "Nelumbo.SectorsPledge", Write,
    "Starts a committed-capacity sector (no deals) and returns its number.",
    [] () -> u64);
rpc_method!(SectorsStatus, "Nelumbo.SectorsStatus", Read | Spoke,
    "A sector's state, commitments, messages, pieces and history.",
    ["sector"] (u64) -> SectorStatus);
rpc_method!(SectorsList, "Nelumbo.SectorsList", Read,
    "Every sector the hub knows, with its state.",
    [] () -> Vec<SectorBrief>);
rpc_method!(SectorsSummary, "Nelumbo.SectorsSummary", Read,
    "How many sectors are in each state.",
    [] () -> BTreeMap<SectorState, u64>);
rpc_method!(ProvingInfo, "Nelumbo.ProvingInfo", Read,
    "The proving period, the current deadline, sector counts and WindowPoSt and block counters.",
    [] () -> types::ProvingInfo);
rpc_method!(ProvingDeadlines, "Nelumbo.ProvingDeadlines", Read,
    "Every deadline of the proving period with its partitions, faults and whether it was proven.",
    [] () -> Vec<DeadlineSummary>);
rpc_method!(SubscribeEvents, "Nelumbo.SubscribeEvents", Read | Spoke,
    "A channel of hub events: sector state changes and errors, faults, recoveries, WindowPoSts, won blocks (WebSocket only).",
    [] () -> u64, channel of HubEvent);
rpc_method!(SpokeHeartbeat, "Nelumbo.SpokeHeartbeat", Spoke,
    "A spoke registers itself and says it is alive; send again within the returned interval. The first heartbeat (or peer-info change) of a spoke token binds the token to the peer ID it names; later ones must name the same.",
    ["hello"] (SpokeHello) -> SpokeAck);
rpc_method!(SpokesList, "Nelumbo.SpokesList", Read,
    "The spokes heard from since the hub started, with whether each is still sending heartbeats, and which peer ID each spoke token is bound to.",
    [] () -> Vec<SpokeStatus>);
rpc_method!(WorkersList, "Nelumbo.WorkersList", Read,
    "The hub's background workers (a sector's sealing, the publish batcher and its batches, unseal jobs, the WindowPoSt scheduler, mining) with what each is doing: busy, idle, waiting for a permit, or retrying at a time after failures.",
    [] () -> Vec<nelumbo_types::workers::WorkerStatus>);
rpc_method!(SpokesUnbind, "Nelumbo.SpokesUnbind", Admin,
    "Forgets the peer ID a spoke token is bound to, so the spoke holding it may register another (after its identity was replaced). Returns the peer ID it was bound to.",
    ["tokenName"] (String) -> Option<String>);
rpc_method!(MarketPublishDeals, "Nelumbo.MarketPublishDeals", Spoke,
    "Checks a signed deal proposal (CBOR ClientDealProposal) against the hub's own deal policy (price at least the ask the hub signed, provider collateral within the chain's bounds and the hub's cap, start epoch far enough ahead, duration, a piece the hub holds), publishes it in the next PublishStorageDeals batch, and returns its deal ID once on chain. Idempotent by proposal CID. Error code 3: upload the piece first; 2: the chain is away, call again.",
    ["deal"] (Base64) -> PublishedDeal);
rpc_method!(SectorAddPieceToAny, "Nelumbo.SectorAddPieceToAny", Spoke,
    "Puts an uploaded, published deal piece into a sector that is waiting for deals (or a new one). Idempotent by deal UUID.",
    ["piece"] (PieceDealInfo) -> SectorOffset);
rpc_method!(PieceLocate, "Nelumbo.PieceLocate", Read | Spoke,
    "The sectors and offsets that hold a piece, and whether an unsealed copy can be read now.",
    ["pieceCid"] (CidJson) -> Vec<PieceLocation>);
rpc_method!(SectorsUnsealPiece, "Nelumbo.SectorsUnsealPiece", Spoke,
    "Unseals a sector's copy of a piece (a queued job with a concurrency limit) and returns once GET /pieces/{cid} can serve it.",
    ["sector", "pieceCid"] (u64, CidJson) -> ());

// The chain view spokes get (invariant 1: spokes never talk to the chain). Allow-listed reads
// at the hub's head, answered from the hub's chain node.
rpc_method!(ChainHead, "Nelumbo.ChainHead", Read | Spoke, "The chain's head tipset, as the hub sees it.",
    [] () -> TipSet);
rpc_method!(StateMarketBalance, "Nelumbo.StateMarketBalance", Read | Spoke,
    "An address's market escrow and locked funds at the head.",
    ["address"] (Addr) -> MarketBalance);
rpc_method!(StateMarketStorageDeal, "Nelumbo.StateMarketStorageDeal", Read | Spoke,
    "A published deal's proposal and state at the head.",
    ["dealId"] (u64) -> MarketDeal);
rpc_method!(StateVerifiedClientStatus, "Nelumbo.StateVerifiedClientStatus", Read | Spoke,
    "A verified client's remaining DataCap at the head, or null.",
    ["address"] (Addr) -> Option<Big>);
rpc_method!(StateAccountKey, "Nelumbo.StateAccountKey", Read | Spoke,
    "The public-key address of an account (to check a client's signature).",
    ["address"] (Addr) -> Addr);
rpc_method!(StateLookupID, "Nelumbo.StateLookupID", Read | Spoke, "The ID address of an address.",
    ["address"] (Addr) -> Addr);

rpc_method!(MarketSignAsk, "Nelumbo.MarketSignAsk", Spoke,
    "Signs a storage ask (the CBOR StorageAsk of the ask protocol, for this hub's miner) with the worker key; returns the signature (type byte and data). Nothing else can be signed through it.",
    ["ask"] (Base64) -> Base64);
rpc_method!(MarketSetPeerInfo, "Nelumbo.MarketSetPeerInfo", Spoke,
    "Sets the miner's on-chain peer ID and multiaddrs (ChangePeerID and ChangeMultiaddrs from the worker) where they differ; returns once on chain, with whether anything changed. A spoke may set only the peer ID its token is bound to, at most 16 addresses of at most 128 bytes each, and not more often than the hub allows.",
    ["peerId", "multiaddrs"] (Base64, Vec<Base64>) -> bool);

/// The methods a `spoke` token may call, and nothing else (checked by the hub's tests against
/// the running API). Every one also answers an `admin` token.
pub const SPOKE_METHODS: &[&str] = &[
    "Nelumbo.ActorAddress",
    "Nelumbo.ActorSectorSize",
    "Nelumbo.ChainHead",
    "Nelumbo.MarketPublishDeals",
    "Nelumbo.MarketSetPeerInfo",
    "Nelumbo.MarketSignAsk",
    "Nelumbo.MinerInfo",
    "Nelumbo.PieceLocate",
    "Nelumbo.SectorAddPieceToAny",
    "Nelumbo.SectorsStatus",
    "Nelumbo.SectorsUnsealPiece",
    "Nelumbo.SpokeHeartbeat",
    "Nelumbo.StateAccountKey",
    "Nelumbo.StateLookupID",
    "Nelumbo.StateMarketBalance",
    "Nelumbo.StateMarketStorageDeal",
    "Nelumbo.StateVerifiedClientStatus",
    "Nelumbo.SubscribeEvents",
    "Nelumbo.Version",
];
