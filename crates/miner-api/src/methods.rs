//! Every method of the hub's API, with its permission. Spokes hold `write` tokens at most; the
//! `sign` and `admin` methods are for the operator.

use std::collections::BTreeMap;

use nelumbo_chain_api::types::{MarketBalance, MarketDeal, TipSet};
use nelumbo_chain_api::{Addr, Base64, Big, CidJson};
use nelumbo_rpc::{RpcChannel, rpc_method};

use crate::types::{
    self, DeadlineSummary, HubEvent, HubMinerInfo, HubVersion, PieceDealInfo, PieceLocation,
    PublishedDeal, SectorBrief, SectorOffset, SectorState, SectorStatus, SpokeAck, SpokeHello,
    SpokeStatus,
};

rpc_method!(Version, "Nelumbo.Version", Read, "The hub's build and API version.",
    [] () -> HubVersion);
rpc_method!(ActorAddress, "Nelumbo.ActorAddress", Read, "The address of the miner actor this hub operates.",
    [] () -> Addr);
rpc_method!(ActorSectorSize, "Nelumbo.ActorSectorSize", Read, "The sector size of a miner actor, in bytes.",
    ["miner"] (Addr) -> u64);
rpc_method!(MinerInfo, "Nelumbo.MinerInfo", Read, "The miner this hub operates: actor, owner, worker, sector size.",
    [] () -> HubMinerInfo);
rpc_method!(SectorsPledge, "Nelumbo.SectorsPledge", Write,
    "Starts a committed-capacity sector (no deals) and returns its number.",
    [] () -> u64);
rpc_method!(SectorsStatus, "Nelumbo.SectorsStatus", Read,
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
rpc_method!(SubscribeEvents, "Nelumbo.SubscribeEvents", Read,
    "A channel of hub events: sector state changes and errors, faults, recoveries, WindowPoSts, won blocks (WebSocket only).",
    [] () -> u64);
impl RpcChannel for SubscribeEvents {
    type Item = HubEvent;
}
rpc_method!(SpokeHeartbeat, "Nelumbo.SpokeHeartbeat", Write,
    "A spoke registers itself and says it is alive; send again within the returned interval.",
    ["hello"] (SpokeHello) -> SpokeAck);
rpc_method!(SpokesList, "Nelumbo.SpokesList", Read,
    "The spokes heard from since the hub started, with whether each is still sending heartbeats.",
    [] () -> Vec<SpokeStatus>);
rpc_method!(MarketPublishDeals, "Nelumbo.MarketPublishDeals", Write,
    "Checks a signed deal proposal (CBOR ClientDealProposal), publishes it in the next PublishStorageDeals batch, and returns its deal ID once on chain. Idempotent by proposal CID.",
    ["deal"] (Base64) -> PublishedDeal);
rpc_method!(SectorAddPieceToAny, "Nelumbo.SectorAddPieceToAny", Write,
    "Puts an uploaded, published deal piece into a sector that is waiting for deals (or a new one). Idempotent by deal UUID.",
    ["piece"] (PieceDealInfo) -> SectorOffset);
rpc_method!(PieceLocate, "Nelumbo.PieceLocate", Read,
    "The sectors and offsets that hold a piece, and whether an unsealed copy can be read now.",
    ["pieceCid"] (CidJson) -> Vec<PieceLocation>);
rpc_method!(SectorsUnsealPiece, "Nelumbo.SectorsUnsealPiece", Write,
    "Unseals a sector's copy of a piece (a queued job with a concurrency limit) and returns once GET /pieces/{cid} can serve it.",
    ["sector", "pieceCid"] (u64, CidJson) -> ());

// The chain view spokes get (invariant 1: spokes never talk to the chain). Allow-listed reads
// at the hub's head, answered from the hub's chain node.
rpc_method!(ChainHead, "Nelumbo.ChainHead", Read, "The chain's head tipset, as the hub sees it.",
    [] () -> TipSet);
rpc_method!(StateMarketBalance, "Nelumbo.StateMarketBalance", Read,
    "An address's market escrow and locked funds at the head.",
    ["address"] (Addr) -> MarketBalance);
rpc_method!(StateMarketStorageDeal, "Nelumbo.StateMarketStorageDeal", Read,
    "A published deal's proposal and state at the head.",
    ["dealId"] (u64) -> MarketDeal);
rpc_method!(StateVerifiedClientStatus, "Nelumbo.StateVerifiedClientStatus", Read,
    "A verified client's remaining DataCap at the head, or null.",
    ["address"] (Addr) -> Option<Big>);
rpc_method!(StateAccountKey, "Nelumbo.StateAccountKey", Read,
    "The public-key address of an account (to check a client's signature).",
    ["address"] (Addr) -> Addr);
rpc_method!(StateLookupID, "Nelumbo.StateLookupID", Read, "The ID address of an address.",
    ["address"] (Addr) -> Addr);

rpc_method!(MarketSignAsk, "Nelumbo.MarketSignAsk", Write,
    "Signs a storage ask (the CBOR StorageAsk of the ask protocol, for this hub's miner) with the worker key; returns the signature (type byte and data). Nothing else can be signed through it.",
    ["ask"] (Base64) -> Base64);
rpc_method!(MarketSetPeerInfo, "Nelumbo.MarketSetPeerInfo", Write,
    "Sets the miner's on-chain peer ID and multiaddrs (ChangePeerID and ChangeMultiaddrs from the worker) where they differ; returns once on chain, with whether anything changed.",
    ["peerId", "multiaddrs"] (Base64, Vec<Base64>) -> bool);
