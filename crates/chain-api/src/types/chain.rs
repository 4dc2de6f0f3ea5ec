//! Tipsets, block headers and their parts.

use cid::Cid;
use fvm_ipld_encoding::BytesSer;
use fvm_shared::address::Address;
use fvm_shared::bigint::bigint_ser::BigIntSer;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::crypto::signature::{Signature as FvmSignature, SignatureType};
use fvm_shared::econ::TokenAmount;
use num_bigint::BigInt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cbor_cid;
use crate::json;

/// A tipset key: the CIDs of its blocks. `[]` (or `null`) means "the current head".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct TipSetKey(
    #[serde(with = "json::cids")]
    #[schemars(schema_with = "json::cids::schema")]
    pub Vec<Cid>,
);

impl TipSetKey {
    pub fn head() -> Self {
        Self::default()
    }

    pub fn is_head(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TipSet {
    #[serde(with = "json::cids")]
    #[schemars(schema_with = "json::cids::schema")]
    pub cids: Vec<Cid>,
    pub blocks: Vec<BlockHeader>,
    pub height: ChainEpoch,
}

impl TipSet {
    pub fn key(&self) -> TipSetKey {
        TipSetKey(self.cids.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    #[serde(rename = "VRFProof", with = "json::bytes")]
    #[schemars(schema_with = "json::bytes::schema")]
    pub vrf_proof: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ElectionProof {
    #[serde(rename = "WinCount")]
    pub win_count: i64,
    #[serde(rename = "VRFProof", with = "json::bytes")]
    #[schemars(schema_with = "json::bytes::schema")]
    pub vrf_proof: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BeaconEntry {
    pub round: u64,
    #[serde(with = "json::bytes")]
    #[schemars(schema_with = "json::bytes::schema")]
    pub data: Vec<u8>,
}

/// A PoSt proof as it goes on chain: the registered proof type and the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PoStProof {
    #[serde(rename = "PoStProof")]
    pub post_proof: i64,
    #[serde(rename = "ProofBytes", with = "json::bytes")]
    #[schemars(schema_with = "json::bytes::schema")]
    pub proof_bytes: Vec<u8>,
}

/// A signature: `Type` 1 is secp256k1, 2 is BLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Signature {
    #[serde(rename = "Type")]
    pub sig_type: u8,
    #[serde(with = "json::bytes")]
    #[schemars(schema_with = "json::bytes::schema")]
    pub data: Vec<u8>,
}

impl Signature {
    pub const SECP256K1: u8 = 1;
    pub const BLS: u8 = 2;

    pub fn to_fvm(&self) -> Result<FvmSignature, String> {
        let sig_type = match self.sig_type {
            Self::SECP256K1 => SignatureType::Secp256k1,
            Self::BLS => SignatureType::BLS,
            other => {
                return Err(format!(
                    "unsupported signature type {other}: use 1 (secp256k1) or 2 (BLS)"
                ));
            }
        };
        Ok(FvmSignature {
            sig_type,
            bytes: self.data.clone(),
        })
    }

    pub fn from_fvm(sig: &FvmSignature) -> Self {
        Self {
            sig_type: match sig.sig_type {
                SignatureType::Secp256k1 => Self::SECP256K1,
                SignatureType::BLS => Self::BLS,
            },
            data: sig.bytes.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BlockHeader {
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    pub miner: Address,
    pub ticket: Option<Ticket>,
    pub election_proof: Option<ElectionProof>,
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<BeaconEntry>>")]
    pub beacon_entries: Vec<BeaconEntry>,
    #[serde(rename = "WinPoStProof", with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<PoStProof>>")]
    pub win_post_proof: Vec<PoStProof>,
    #[serde(with = "json::cids")]
    #[schemars(schema_with = "json::cids::schema")]
    pub parents: Vec<Cid>,
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub parent_weight: BigInt,
    pub height: ChainEpoch,
    #[serde(with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub parent_state_root: Cid,
    #[serde(with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub parent_message_receipts: Cid,
    #[serde(with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub messages: Cid,
    #[serde(rename = "BLSAggregate")]
    pub bls_aggregate: Option<Signature>,
    pub timestamp: u64,
    pub block_sig: Option<Signature>,
    pub fork_signaling: u64,
    #[serde(with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    pub parent_base_fee: TokenAmount,
}

impl BlockHeader {
    /// The header's CBOR: Lotus's 16-field tuple.
    pub fn cbor(&self) -> Result<Vec<u8>, String> {
        self.encode(self.block_sig.as_ref())
    }

    /// The bytes the miner's worker key signs: the header with `BlockSig` null.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, String> {
        self.encode(None)
    }

    pub fn cid(&self) -> Result<Cid, String> {
        Ok(cbor_cid(&self.cbor()?))
    }

    fn encode(&self, block_sig: Option<&Signature>) -> Result<Vec<u8>, String> {
        let fvm = |s: Option<&Signature>| s.map(Signature::to_fvm).transpose();
        let ticket = self.ticket.as_ref().map(|t| (BytesSer(&t.vrf_proof),));
        let election = self
            .election_proof
            .as_ref()
            .map(|e| (e.win_count, BytesSer(&e.vrf_proof)));
        let beacons: Vec<_> = self
            .beacon_entries
            .iter()
            .map(|b| (b.round, BytesSer(&b.data)))
            .collect();
        let posts: Vec<_> = self
            .win_post_proof
            .iter()
            .map(|p| (p.post_proof, BytesSer(&p.proof_bytes)))
            .collect();
        let tuple = (
            &self.miner,
            ticket,
            election,
            beacons,
            posts,
            &self.parents,
            BigIntSer(&self.parent_weight),
            self.height,
            &self.parent_state_root,
            &self.parent_message_receipts,
            &self.messages,
            fvm(self.bls_aggregate.as_ref())?,
            self.timestamp,
            fvm(block_sig)?,
            self.fork_signaling,
            &self.parent_base_fee,
        );
        fvm_ipld_encoding::to_vec(&tuple).map_err(|e| format!("encode block header: {e}"))
    }
}

/// A head change, as `ChainNotify` sends them: `current`, then `apply` (or `revert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeadChange {
    #[serde(rename = "Type")]
    pub change: String,
    #[serde(rename = "Val")]
    pub tipset: TipSet,
}

/// A block a miner submits with `SyncSubmitBlock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BlockMsg {
    pub header: BlockHeader,
    #[serde(with = "json::cids")]
    #[schemars(schema_with = "json::cids::schema")]
    pub bls_messages: Vec<Cid>,
    #[serde(with = "json::cids")]
    #[schemars(schema_with = "json::cids::schema")]
    pub secpk_messages: Vec<Cid>,
}

/// `Filecoin.Version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub version: String,
    #[serde(rename = "APIVersion")]
    pub api_version: u32,
    pub block_delay: u64,
    #[serde(default)]
    pub agent: String,
}

/// `Filecoin.ChainGetBlockMessages`: what a block includes. BLS-signed messages appear
/// unsigned (their signatures are aggregated in the header), secp256k1 ones signed; `Cids`
/// lists the BLS messages' CIDs, then the secp256k1 ones', as Lotus does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BlockMessages {
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<super::Message>>")]
    pub bls_messages: Vec<super::Message>,
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<super::SignedMessage>>")]
    pub secpk_messages: Vec<super::SignedMessage>,
    #[serde(with = "json::cids")]
    #[schemars(schema_with = "json::cids::schema")]
    pub cids: Vec<Cid>,
}

/// `Filecoin.StateGetNetworkParams` (Lotus's `ForkUpgradeParams` are left out: a devnet has no
/// upgrades).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkParams {
    pub network_name: String,
    pub block_delay_secs: u64,
    #[serde(with = "json::bigint")]
    #[schemars(schema_with = "json::bigint::schema")]
    pub consensus_miner_min_power: BigInt,
    #[serde(with = "json::nullable_vec")]
    #[schemars(with = "Option<Vec<i64>>")]
    pub supported_proof_types: Vec<i64>,
    pub pre_commit_challenge_delay: ChainEpoch,
    #[serde(rename = "Eip155ChainID")]
    pub eip155_chain_id: u64,
    /// Nelumbo devnets only: the epoch length in milliseconds (`BlockDelaySecs` rounds a
    /// sub-second devnet epoch down to 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nelumbo_epoch_ms: Option<u64>,
}
