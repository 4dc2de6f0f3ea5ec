//! The full-node methods Nelumbo serves and calls, each defined once with its Lotus name,
//! positional parameters, permission and result.

use std::collections::BTreeMap;

use fvm_shared::clock::ChainEpoch;
use nelumbo_rpc::rpc_method;

use crate::types::*;
use crate::wrappers::*;

rpc_method!(Version, "Filecoin.Version", Read, "The node's version, API version and block delay (seconds).",
    [] () -> crate::types::Version);
rpc_method!(ChainHead, "Filecoin.ChainHead", Read, "The current head tipset.",
    [] () -> TipSet);
rpc_method!(ChainNotify, "Filecoin.ChainNotify", Read,
    "A channel of head changes: first the current head, then each applied tipset (WebSocket only).",
    [] () -> u64, channel of Vec<HeadChange>);
rpc_method!(ChainGetTipSetByHeight, "Filecoin.ChainGetTipSetByHeight", Read,
    "The tipset at a height, or the last one before it if that height was a null round.",
    ["height", "tsk"] (ChainEpoch, TipSetKey) -> TipSet);
rpc_method!(ChainGetMessage, "Filecoin.ChainGetMessage", Read, "A message by CID.",
    ["cid"] (CidJson) -> Message);
rpc_method!(ChainGetBlock, "Filecoin.ChainGetBlock", Read, "A block header by CID.",
    ["cid"] (CidJson) -> BlockHeader);
rpc_method!(ChainGetBlockMessages, "Filecoin.ChainGetBlockMessages", Read,
    "The messages a block includes: BLS-signed ones unsigned, secp256k1 ones signed, and all CIDs in order.",
    ["blockCid"] (CidJson) -> BlockMessages);
rpc_method!(StateGetRandomnessFromTickets, "Filecoin.StateGetRandomnessFromTickets", Read,
    "Chain randomness drawn from the tickets at an epoch, with a domain separation tag and entropy.",
    ["personalization", "randEpoch", "entropy", "tsk"] (i64, ChainEpoch, Base64, TipSetKey) -> Base64);
rpc_method!(StateGetRandomnessFromBeacon, "Filecoin.StateGetRandomnessFromBeacon", Read,
    "Randomness drawn from the beacon entry of an epoch, with a domain separation tag and entropy.",
    ["personalization", "randEpoch", "entropy", "tsk"] (i64, ChainEpoch, Base64, TipSetKey) -> Base64);
rpc_method!(StateNetworkVersion, "Filecoin.StateNetworkVersion", Read, "The network version.",
    ["tsk"] (TipSetKey) -> u32);
rpc_method!(StateGetNetworkParams, "Filecoin.StateGetNetworkParams", Read,
    "The network's name and the parameters miners need (epoch length, pre-commit challenge delay, proof types).",
    [] () -> NetworkParams);
rpc_method!(StateLookupID, "Filecoin.StateLookupID", Read, "The ID address of an address.",
    ["address", "tsk"] (Addr, TipSetKey) -> Addr);
rpc_method!(StateAccountKey, "Filecoin.StateAccountKey", Read, "The public-key address of an account.",
    ["address", "tsk"] (Addr, TipSetKey) -> Addr);
rpc_method!(StateGetActor, "Filecoin.StateGetActor", Read, "An actor's code, state root, nonce and balance.",
    ["actor", "tsk"] (Addr, TipSetKey) -> Actor);
rpc_method!(WalletNew, "Filecoin.WalletNew", Write, "Creates a key of the given type in the node's wallet.",
    ["keyType"] (KeyType) -> Addr);
rpc_method!(WalletList, "Filecoin.WalletList", Write, "The addresses in the node's wallet.",
    [] () -> Vec<Addr>);
rpc_method!(WalletBalance, "Filecoin.WalletBalance", Read, "An address's balance (0 if it has no actor).",
    ["address"] (Addr) -> Token);
rpc_method!(WalletSign, "Filecoin.WalletSign", Sign, "Signs bytes with a wallet key.",
    ["address", "data"] (Addr, Base64) -> Signature);
rpc_method!(WalletVerify, "Filecoin.WalletVerify", Read, "Whether a signature over bytes is an address's.",
    ["address", "data", "signature"] (Addr, Base64, Signature) -> bool);
rpc_method!(WalletDefaultAddress, "Filecoin.WalletDefaultAddress", Write, "The wallet's default address.",
    [] () -> Addr);
rpc_method!(MpoolPush, "Filecoin.MpoolPush", Write,
    "Adds a signed message to the message pool; returns its CID.",
    ["message"] (SignedMessage) -> CidJson);
rpc_method!(MpoolPushMessage, "Filecoin.MpoolPushMessage", Sign,
    "Assigns the nonce, estimates gas, signs with the wallet and pushes a message.",
    ["message", "spec"] (Message, Option<MessageSendSpec>) -> SignedMessage);
rpc_method!(MpoolPending, "Filecoin.MpoolPending", Read,
    "The signed messages waiting in the message pool.",
    ["tsk"] (TipSetKey) -> Vec<SignedMessage>);
rpc_method!(MpoolGetNonce, "Filecoin.MpoolGetNonce", Read,
    "The next nonce of an address, counting messages waiting in the pool.",
    ["address"] (Addr) -> u64);
rpc_method!(GasEstimateMessageGas, "Filecoin.GasEstimateMessageGas", Read,
    "Fills a message's unset gas limit, fee cap and premium; fails with the execution error if the message would fail.",
    ["message", "spec", "tsk"] (Message, Option<MessageSendSpec>, TipSetKey) -> Message);
rpc_method!(StateWaitMsg, "Filecoin.StateWaitMsg", Read,
    "Waits until a message has been executed and `confidence` more epochs have passed.",
    ["cid", "confidence", "limit", "allowReplaced"] (CidJson, u64, ChainEpoch, bool) -> MsgLookup);
rpc_method!(StateSearchMsg, "Filecoin.StateSearchMsg", Read,
    "Where a message was executed, or null if it has not been.",
    ["tsk", "cid", "limit", "allowReplaced"] (TipSetKey, CidJson, ChainEpoch, bool) -> Option<MsgLookup>);
rpc_method!(StateMinerInfo, "Filecoin.StateMinerInfo", Read, "A miner's owner, worker, peer, sector size and proof types.",
    ["miner", "tsk"] (Addr, TipSetKey) -> MinerInfo);
rpc_method!(StateMinerPower, "Filecoin.StateMinerPower", Read, "A miner's power and the network's.",
    ["miner", "tsk"] (Addr, TipSetKey) -> MinerPower);
rpc_method!(StateMinerProvingDeadline, "Filecoin.StateMinerProvingDeadline", Read,
    "The miner's current proving deadline.",
    ["miner", "tsk"] (Addr, TipSetKey) -> DeadlineInfo);
rpc_method!(StateMinerDeadlines, "Filecoin.StateMinerDeadlines", Read, "The miner's 48 deadlines.",
    ["miner", "tsk"] (Addr, TipSetKey) -> Vec<Deadline>);
rpc_method!(StateMinerPartitions, "Filecoin.StateMinerPartitions", Read, "The partitions of one deadline.",
    ["miner", "dlIdx", "tsk"] (Addr, u64, TipSetKey) -> Vec<Partition>);
rpc_method!(StateMinerSectors, "Filecoin.StateMinerSectors", Read,
    "A miner's sectors, all of them or those in a bitfield.",
    ["miner", "sectors", "tsk"] (Addr, OptBitField, TipSetKey) -> Vec<SectorOnChainInfo>);
rpc_method!(StateMinerActiveSectors, "Filecoin.StateMinerActiveSectors", Read,
    "A miner's active sectors (proven, not faulty).",
    ["miner", "tsk"] (Addr, TipSetKey) -> Vec<SectorOnChainInfo>);
rpc_method!(StateMinerFaults, "Filecoin.StateMinerFaults", Read, "A miner's faulty sectors.",
    ["miner", "tsk"] (Addr, TipSetKey) -> BitFieldJson);
rpc_method!(StateSectorGetInfo, "Filecoin.StateSectorGetInfo", Read, "One sector, or null.",
    ["miner", "sector", "tsk"] (Addr, u64, TipSetKey) -> Option<SectorOnChainInfo>);
rpc_method!(StateSectorPreCommitInfo, "Filecoin.StateSectorPreCommitInfo", Read,
    "A pre-committed sector, or null.",
    ["miner", "sector", "tsk"] (Addr, u64, TipSetKey) -> Option<SectorPreCommitOnChainInfo>);
rpc_method!(StateMarketBalance, "Filecoin.StateMarketBalance", Read, "An address's market escrow and locked funds.",
    ["address", "tsk"] (Addr, TipSetKey) -> MarketBalance);
rpc_method!(StateMarketStorageDeal, "Filecoin.StateMarketStorageDeal", Read, "A deal's proposal and state.",
    ["dealId", "tsk"] (u64, TipSetKey) -> MarketDeal);
rpc_method!(StateDealProviderCollateralBounds, "Filecoin.StateDealProviderCollateralBounds", Read,
    "The least and most provider collateral the market accepts for a deal of a padded piece size.",
    ["size", "verified", "tsk"] (u64, bool, TipSetKey) -> DealCollateralBounds);
rpc_method!(StateMarketDeals, "Filecoin.StateMarketDeals", Read, "Every deal, by deal ID.",
    ["tsk"] (TipSetKey) -> BTreeMap<String, MarketDeal>);
rpc_method!(StateVerifiedClientStatus, "Filecoin.StateVerifiedClientStatus", Read,
    "A verified client's remaining DataCap, or null.",
    ["address", "tsk"] (Addr, TipSetKey) -> Option<Big>);
rpc_method!(MinerGetBaseInfo, "Filecoin.MinerGetBaseInfo", Read,
    "What a miner needs to check its election for an epoch and prove a won block.",
    ["miner", "epoch", "tsk"] (Addr, ChainEpoch, TipSetKey) -> Option<MiningBaseInfo>);
rpc_method!(SyncSubmitBlock, "Filecoin.SyncSubmitBlock", Write,
    "Submits a won block (election proof, WinningPoSt, signature) for checking and reward.",
    ["block"] (BlockMsg) -> ());
