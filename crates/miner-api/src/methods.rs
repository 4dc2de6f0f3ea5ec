//! Every method of the hub's API, with its permission. Spokes hold `write` tokens at most; the
//! `sign` and `admin` methods are for the operator.

use nelumbo_chain_api::Addr;
use nelumbo_rpc::rpc_method;

use crate::types::{HubMinerInfo, HubVersion};

rpc_method!(Version, "Nelumbo.Version", Read, "The hub's build and API version.",
    [] () -> HubVersion);
rpc_method!(ActorAddress, "Nelumbo.ActorAddress", Read, "The address of the miner actor this hub operates.",
    [] () -> Addr);
rpc_method!(ActorSectorSize, "Nelumbo.ActorSectorSize", Read, "The sector size of a miner actor, in bytes.",
    ["miner"] (Addr) -> u64);
rpc_method!(MinerInfo, "Nelumbo.MinerInfo", Read, "The miner this hub operates: actor, owner, worker, sector size.",
    [] () -> HubMinerInfo);
