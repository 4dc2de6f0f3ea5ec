//! The deal protocols' messages, byte-compatible with Boost (`storagemarket/types` and the
//! go-fil-markets 1.1.0 ask types it still serves).
//!
//! Boost's types are cbor-gen *map* encodings: every field is always written, keys go on the
//! wire in canonical order (shorter key first, then bytewise), unknown keys are skipped on
//! decode and missing ones take their zero value. Fields below are declared in that wire order,
//! and every field a 1.2.0 client may leave out has a default. The deal proposal inside is the
//! market actor's tuple encoding.

use cid::Cid;
use fvm_ipld_encoding::strict_bytes;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::crypto::signature::Signature;
use fvm_shared::econ::TokenAmount;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

pub use fil_actor_market_state::v18::{ClientDealProposal, DealProposal, Label};

pub const DEAL_PROTOCOL_1_2_1: StreamProtocol = StreamProtocol::new("/fil/storage/mk/1.2.1");
pub const DEAL_PROTOCOL_1_2_0: StreamProtocol = StreamProtocol::new("/fil/storage/mk/1.2.0");
pub const STATUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/fil/storage/status/1.2.0");
pub const ASK_PROTOCOL: StreamProtocol = StreamProtocol::new("/fil/storage/ask/1.1.0");
/// Boost's retrieval transports query: no request; the provider answers with the ways it serves
/// retrievals and closes the stream.
pub const TRANSPORTS_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/fil/retrieval/transports/1.0.0");

/// The largest deal proposal message read. Real proposals are a few KiB (the transfer
/// parameters are a URL and some headers); 1 MiB leaves room for long headers while bounding
/// what strangers can make the provider hold (with the stream and connection limits).
pub const MAX_DEAL_PARAMS_BYTES: usize = 1 << 20;
/// The largest of every other message.
pub const MAX_SMALL_MESSAGE_BYTES: usize = 64 << 10;

/// `/fil/storage/mk/1.2.x`: a client's deal proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealParams {
    #[serde(rename = "DealUUID", with = "strict_bytes")]
    pub deal_uuid: [u8; 16],
    #[serde(rename = "Transfer", default)]
    pub transfer: Transfer,
    #[serde(rename = "IsOffline", default)]
    pub is_offline: bool,
    #[serde(rename = "DealDataRoot")]
    pub deal_data_root: Cid,
    /// 1.2.1 only; absent means false.
    #[serde(rename = "SkipIPNIAnnounce", default)]
    pub skip_ipni_announce: bool,
    #[serde(rename = "ClientDealProposal")]
    pub client_deal_proposal: ClientDealProposal,
    /// 1.2.1 only; absent means false.
    #[serde(rename = "RemoveUnsealedCopy", default)]
    pub remove_unsealed_copy: bool,
}

/// How the provider gets the data. For `http` (and `libp2p`), `params` is the JSON
/// `{"URL": ..., "Headers": {...}}`; an offline deal has the zero value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    #[serde(rename = "Size", default)]
    pub size: u64,
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Params", with = "strict_bytes", default)]
    pub params: Vec<u8>,
    #[serde(rename = "ClientID", default)]
    pub client_id: String,
}

/// `Transfer.Params` for the `http` type (Go's field names, no tags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    #[serde(rename = "URL", alias = "url", alias = "Url")]
    pub url: String,
    #[serde(rename = "Headers", alias = "headers", default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

/// The provider's answer to a proposal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealResponse {
    #[serde(rename = "Message", default)]
    pub message: String,
    #[serde(rename = "Accepted", default)]
    pub accepted: bool,
}

/// `/fil/storage/status/1.2.0`: the client signs the 16 UUID bytes with the deal's client key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealStatusRequest {
    #[serde(rename = "DealUUID", with = "strict_bytes")]
    pub deal_uuid: [u8; 16],
    #[serde(rename = "Signature")]
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealStatusResponse {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "DealUUID", with = "strict_bytes")]
    pub deal_uuid: [u8; 16],
    #[serde(rename = "IsOffline", default)]
    pub is_offline: bool,
    #[serde(rename = "DealStatus", default)]
    pub deal_status: Option<DealStatus>,
    #[serde(rename = "TransferSize", default)]
    pub transfer_size: u64,
    #[serde(rename = "NBytesReceived", default)]
    pub n_bytes_received: u64,
}

impl DealStatusResponse {
    /// An error answer: only the UUID and the error, as Boost sends.
    pub fn error(deal_uuid: [u8; 16], error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            deal_uuid,
            is_offline: false,
            deal_status: None,
            transfer_size: 0,
            n_bytes_received: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealStatus {
    #[serde(rename = "Error", default)]
    pub error: String,
    /// Boost's checkpoint names: see [`checkpoint`].
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Proposal")]
    pub proposal: DealProposal,
    #[serde(rename = "PublishCid", default)]
    pub publish_cid: Option<Cid>,
    #[serde(rename = "ChainDealID", default)]
    pub chain_deal_id: u64,
    /// The sector's state on the hub (Lotus's names).
    #[serde(rename = "SealingStatus", default)]
    pub sealing_status: String,
    #[serde(rename = "SignedProposalCid")]
    pub signed_proposal_cid: Cid,
}

/// Boost's deal checkpoints, in order.
pub mod checkpoint {
    pub const ACCEPTED: &str = "Accepted";
    pub const TRANSFERRED: &str = "Transferred";
    pub const PUBLISHED: &str = "Published";
    pub const PUBLISH_CONFIRMED: &str = "PublishConfirmed";
    pub const ADDED_PIECE: &str = "AddedPiece";
    pub const INDEXED_AND_ANNOUNCED: &str = "IndexedAndAnnounced";
    pub const COMPLETE: &str = "Complete";
}

/// `/fil/storage/ask/1.1.0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskRequest {
    #[serde(rename = "Miner")]
    pub miner: Address,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskResponse {
    #[serde(rename = "Ask", default)]
    pub ask: Option<SignedStorageAsk>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedStorageAsk {
    #[serde(rename = "Ask", default)]
    pub ask: Option<StorageAsk>,
    /// The miner's worker key's signature over the CBOR of `ask`.
    #[serde(rename = "Signature", default)]
    pub signature: Option<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageAsk {
    #[serde(rename = "Miner")]
    pub miner: Address,
    /// attoFIL per GiB per epoch.
    #[serde(rename = "Price")]
    pub price: TokenAmount,
    #[serde(rename = "SeqNo", default)]
    pub seq_no: u64,
    #[serde(rename = "Expiry", default)]
    pub expiry: ChainEpoch,
    #[serde(rename = "Timestamp", default)]
    pub timestamp: ChainEpoch,
    #[serde(rename = "MaxPieceSize", default)]
    pub max_piece_size: u64,
    #[serde(rename = "MinPieceSize", default)]
    pub min_piece_size: u64,
    #[serde(rename = "VerifiedPrice")]
    pub verified_price: TokenAmount,
}

/// Boost's `SignedProposalCid`: CIDv1, DAG-CBOR, SHA2-256 of the `ClientDealProposal`.
pub fn signed_proposal_cid(deal: &ClientDealProposal) -> Result<Cid, fvm_ipld_encoding::Error> {
    let bytes = fvm_ipld_encoding::to_vec(deal)?;
    Ok(dag_cbor_cid(&bytes))
}

/// CIDv1, DAG-CBOR, SHA2-256 of `bytes`.
pub fn dag_cbor_cid(bytes: &[u8]) -> Cid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest)
        .expect("a 32-byte digest fits a multihash");
    Cid::new_v1(fvm_ipld_encoding::DAG_CBOR, hash)
}

/// The bytes a client signs for its proposal: the CBOR of the `DealProposal`.
pub fn proposal_bytes(proposal: &DealProposal) -> Result<Vec<u8>, fvm_ipld_encoding::Error> {
    fvm_ipld_encoding::to_vec(proposal)
}

/// Parses `Transfer.Params` for the `http` and `libp2p` types.
pub fn http_request(transfer: &Transfer) -> Result<HttpRequest, String> {
    serde_json::from_slice(&transfer.params).map_err(|e| {
        format!("the transfer parameters are not {{\"URL\": ..., \"Headers\": {{...}}}} JSON: {e}")
    })
}

/// `/fil/retrieval/transports/1.0.0`'s answer (a DAG-CBOR map, as Boost encodes it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TransportsResponse {
    #[serde(rename = "Protocols")]
    pub protocols: Vec<TransportProtocol>,
}

/// One way to retrieve: `"http"` with the base URL as a multiaddr (`/ip4/.../tcp/PORT/http`,
/// `/dns/HOST/tcp/443/https`), `"libp2p"`, `"bitswap"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportProtocol {
    // DAG-CBOR orders map keys by length: Name before Addresses.
    #[serde(rename = "Name")]
    pub name: String,
    /// Binary multiaddrs.
    #[serde(rename = "Addresses")]
    pub addresses: Vec<serde_bytes::ByteBuf>,
}

/// The multiaddr of an `http`/`https` base URL, as Boost announces it (`/dns/HOST/tcp/PORT/https`,
/// `/ip4/A.B.C.D/tcp/PORT/http`); `None` for other schemes or URLs with a path.
pub fn http_multiaddr(url: &url::Url) -> Option<libp2p::Multiaddr> {
    use libp2p::multiaddr::Protocol;
    let scheme = match url.scheme() {
        "http" => Protocol::Http,
        "https" => Protocol::Https,
        _ => return None,
    };
    if url.path() != "/" && !url.path().is_empty() {
        return None;
    }
    let port = url.port_or_known_default()?;
    let host = match url.host()? {
        url::Host::Ipv4(ip) => Protocol::Ip4(ip),
        url::Host::Ipv6(ip) => Protocol::Ip6(ip),
        url::Host::Domain(name) => Protocol::Dns(name.to_string().into()),
    };
    Some(
        libp2p::Multiaddr::empty()
            .with(host)
            .with(Protocol::Tcp(port))
            .with(scheme),
    )
}

/// The base URL of an `http`/`https` multiaddr (the inverse of [`http_multiaddr`]).
pub fn multiaddr_http_url(addr: &libp2p::Multiaddr) -> Option<String> {
    use libp2p::multiaddr::Protocol;
    let (mut host, mut port, mut scheme) = (None, None, None);
    for part in addr.iter() {
        match part {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(format!("[{ip}]")),
            Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
                host = Some(name.to_string())
            }
            Protocol::Tcp(p) => port = Some(p),
            Protocol::Http => scheme = Some("http"),
            Protocol::Https | Protocol::Tls => scheme = Some("https"),
            _ => {}
        }
    }
    Some(format!("{}://{}:{}", scheme?, host?, port?))
}
