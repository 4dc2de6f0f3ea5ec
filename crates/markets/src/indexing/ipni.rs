//! IPNI's data model and its encodings: advertisements, entry chunks and the signed head, in
//! DAG-JSON (the codec go-libipni's publisher serves), their CIDs, the advertisement signature
//! (a libp2p signed envelope, domain `indexer`, payload type `/indexer/ingest/adSignature`) and
//! the transport metadata.
//!
//! Written here rather than taken from a crate: no maintained Rust IPNI library exists, and the
//! parts are small. What was checked against what: the signed payload and envelope follow
//! go-libipni's `ingest/schema/envelope.go`; an advertisement made and signed by
//! `@web3-storage/ipni` verifies here and one of ours verifies there (`tests/indexing.rs`).

use anyhow::{Context, bail, ensure};
use base64::Engine;
use cid::Cid;
use cid::multihash::Multihash;
use libp2p::core::SignedEnvelope;
use libp2p::identity::{Keypair, PeerId, PublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Multicodec of DAG-JSON, the codec of advertisements, entry chunks and the head.
pub const DAG_JSON: u64 = 0x0129;
/// Multicodec of raw bytes (the `NoEntries` CID).
pub const RAW: u64 = 0x55;
/// Multihash code of SHA2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihashes per entry chunk (as Boost and Curio chunk): about 0.75 MB encoded, well under
/// the 4 MB an indexer accepts for one block.
pub const ENTRIES_PER_CHUNK: usize = 16_384;
/// Limits the IPNI spec sets (an indexer refuses an advertisement over them).
pub const MAX_CONTEXT_ID_BYTES: usize = 64;
pub const MAX_METADATA_BYTES: usize = 1024;
/// The envelope's domain and payload type for advertisement signatures.
pub const SIGNATURE_DOMAIN: &str = "indexer";
pub const SIGNATURE_PAYLOAD_TYPE: &[u8] = b"/indexer/ingest/adSignature";
/// The topic the head is signed with (indexers assume it when absent).
pub const TOPIC: &str = "/indexer/ingest/mainnet";
/// The largest advertisement or entry chunk this code decodes (an indexer's own bound).
pub const MAX_BLOCK_BYTES: usize = 4 << 20;

/// The transports a provider serves, with their multicodec codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// `transport-bitswap`: the code alone.
    Bitswap = 0x0900,
    /// `transport-ipfs-gateway-http`: the code and an empty payload.
    IpfsGatewayHttp = 0x0920,
    /// `transport-filecoin-piece-http`: the code and an empty payload.
    FilecoinPieceHttp = 0x0930,
}

/// The metadata of an advertisement: each transport's code (uvarint), sorted by code, with a
/// zero-length payload for the HTTP ones (go-libipni's encodings).
pub fn metadata(transports: &[Transport]) -> Vec<u8> {
    let mut sorted = transports.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut out = Vec::new();
    for t in sorted {
        put_uvarint(&mut out, t as u64);
        if t != Transport::Bitswap {
            out.push(0);
        }
    }
    out
}

/// The transports named by metadata, in order; an unknown code is an error.
pub fn parse_metadata(mut bytes: &[u8]) -> anyhow::Result<Vec<Transport>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (code, rest) = read_uvarint(bytes).context("metadata: a truncated transport code")?;
        bytes = rest;
        let transport = match code {
            0x0900 => Transport::Bitswap,
            0x0920 => Transport::IpfsGatewayHttp,
            0x0930 => Transport::FilecoinPieceHttp,
            other => bail!("metadata: unknown transport code {other:#x}"),
        };
        if transport != Transport::Bitswap {
            let (len, rest) = read_uvarint(bytes).context("metadata: a truncated payload")?;
            ensure!(len == 0, "metadata: transport {code:#x} carries a payload");
            bytes = rest;
        }
        out.push(transport);
    }
    Ok(out)
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_uvarint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(9) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &bytes[i + 1..]));
        }
    }
    None
}

/// The CID of a DAG-JSON block.
pub fn dag_json_cid(bytes: &[u8]) -> Cid {
    Cid::new_v1(DAG_JSON, sha256_multihash(bytes))
}

fn sha256_multihash(bytes: &[u8]) -> Multihash<64> {
    Multihash::wrap(SHA2_256, &Sha256::digest(bytes)).expect("32 bytes fit")
}

/// The `Entries` link of an advertisement that carries none (removals): the raw CID of the
/// SHA-256 of nothing, cut to 16 bytes, as go-libipni defines it.
pub fn no_entries() -> Cid {
    let digest = Sha256::digest(b"");
    Cid::new_v1(
        RAW,
        Multihash::wrap(SHA2_256, &digest[..16]).expect("16 bytes fit"),
    )
}

/// An advertisement (no extended providers: this provider publishes only for itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    pub previous: Option<Cid>,
    /// The provider's peer ID (the miner's, on chain).
    pub provider: String,
    /// Multiaddrs the content is retrieved from.
    pub addresses: Vec<String>,
    /// The signed envelope, protobuf-encoded.
    pub signature: Vec<u8>,
    pub entries: Cid,
    pub context_id: Vec<u8>,
    pub metadata: Vec<u8>,
    pub is_rm: bool,
}

impl Advertisement {
    /// What the envelope signs: the SHA-256 multihash of PreviousID, Entries, Provider, each
    /// address, Metadata and IsRm, concatenated (ContextID is not signed).
    pub fn signed_payload(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Some(previous) = &self.previous {
            buf.extend_from_slice(&previous.to_bytes());
        }
        buf.extend_from_slice(&self.entries.to_bytes());
        buf.extend_from_slice(self.provider.as_bytes());
        for address in &self.addresses {
            buf.extend_from_slice(address.as_bytes());
        }
        buf.extend_from_slice(&self.metadata);
        buf.push(u8::from(self.is_rm));
        sha256_multihash(&buf).to_bytes()
    }

    /// Signs it with the provider's key (whose peer ID must be `provider`).
    pub fn sign(&mut self, key: &Keypair) -> anyhow::Result<()> {
        ensure!(
            key.public().to_peer_id().to_string() == self.provider,
            "the advertisement names provider {} but the key is {}",
            self.provider,
            key.public().to_peer_id()
        );
        let envelope = SignedEnvelope::new(
            key,
            SIGNATURE_DOMAIN.to_string(),
            SIGNATURE_PAYLOAD_TYPE.to_vec(),
            self.signed_payload(),
        )
        .map_err(|e| anyhow::anyhow!("sign the advertisement: {e}"))?;
        self.signature = envelope.into_protobuf_encoding();
        Ok(())
    }

    /// Checks the signature: a valid envelope of the right domain and type, over this
    /// advertisement's fields, by the key of the peer named as provider. Returns the signer.
    pub fn verify(&self) -> anyhow::Result<PeerId> {
        let envelope = SignedEnvelope::from_protobuf_encoding(&self.signature)
            .map_err(|e| anyhow::anyhow!("the signature is not a signed envelope: {e}"))?;
        let (payload, key) = envelope
            .payload_and_signing_key(SIGNATURE_DOMAIN.to_string(), SIGNATURE_PAYLOAD_TYPE)
            .map_err(|e| anyhow::anyhow!("the signature does not verify: {e}"))?;
        ensure!(
            payload == self.signed_payload().as_slice(),
            "the signature is over other fields than this advertisement's"
        );
        let signer = key.to_peer_id();
        ensure!(
            signer.to_string() == self.provider,
            "signed by {signer}, not by the provider {}",
            self.provider
        );
        Ok(signer)
    }

    /// DAG-JSON, keys in the spec's order (sorted by their bytes); optional fields absent.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512 + self.signature.len() * 2);
        out.push('{');
        out.push_str("\"Addresses\":[");
        for (i, address) in self.addresses.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(address));
        }
        out.push_str("],\"ContextID\":");
        push_bytes(&mut out, &self.context_id);
        out.push_str(",\"Entries\":");
        push_link(&mut out, &self.entries);
        out.push_str(",\"IsRm\":");
        out.push_str(if self.is_rm { "true" } else { "false" });
        out.push_str(",\"Metadata\":");
        push_bytes(&mut out, &self.metadata);
        if let Some(previous) = &self.previous {
            out.push_str(",\"PreviousID\":");
            push_link(&mut out, previous);
        }
        out.push_str(",\"Provider\":");
        out.push_str(&json_string(&self.provider));
        out.push_str(",\"Signature\":");
        push_bytes(&mut out, &self.signature);
        out.push('}');
        out.into_bytes()
    }

    /// Decodes DAG-JSON from anyone (an indexer's view): limits checked, unknown fields
    /// refused except `ExtendedProvider`, which is refused by name (not supported).
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        ensure!(
            bytes.len() <= MAX_BLOCK_BYTES,
            "an advertisement of {} bytes is over {MAX_BLOCK_BYTES}",
            bytes.len()
        );
        let value: Value =
            serde_json::from_slice(bytes).context("the advertisement is not JSON")?;
        let map = value
            .as_object()
            .context("the advertisement is not a map")?;
        for key in map.keys() {
            match key.as_str() {
                "PreviousID" | "Provider" | "Addresses" | "Signature" | "Entries" | "ContextID"
                | "Metadata" | "IsRm" => {}
                "ExtendedProvider" => bail!("advertisements with ExtendedProvider are not read"),
                other => bail!("the advertisement has an unknown field {other:?}"),
            }
        }
        let field = |name: &str| map.get(name).with_context(|| format!("{name} is missing"));
        let previous = match map.get("PreviousID") {
            None | Some(Value::Null) => None,
            Some(v) => Some(read_link(v).context("PreviousID")?),
        };
        let addresses = field("Addresses")?
            .as_array()
            .context("Addresses is not a list")?
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_string)
                    .context("an address is not a string")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ad = Self {
            previous,
            provider: field("Provider")?
                .as_str()
                .context("Provider is not a string")?
                .to_string(),
            addresses,
            signature: read_bytes(field("Signature")?).context("Signature")?,
            entries: read_link(field("Entries")?).context("Entries")?,
            context_id: read_bytes(field("ContextID")?).context("ContextID")?,
            metadata: read_bytes(field("Metadata")?).context("Metadata")?,
            is_rm: field("IsRm")?.as_bool().context("IsRm is not a boolean")?,
        };
        ensure!(
            ad.context_id.len() <= MAX_CONTEXT_ID_BYTES,
            "ContextID is {} bytes, over {MAX_CONTEXT_ID_BYTES}",
            ad.context_id.len()
        );
        ensure!(
            ad.metadata.len() <= MAX_METADATA_BYTES,
            "Metadata is {} bytes, over {MAX_METADATA_BYTES}",
            ad.metadata.len()
        );
        Ok(ad)
    }
}

/// One chunk of an advertisement's multihashes, linked to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChunk {
    pub entries: Vec<Vec<u8>>,
    pub next: Option<Cid>,
}

impl EntryChunk {
    pub fn encode(&self) -> Vec<u8> {
        encode_entry_chunk(&self.entries, self.next.as_ref())
    }

    pub fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        ensure!(
            bytes.len() <= MAX_BLOCK_BYTES,
            "an entry chunk of {} bytes is over {MAX_BLOCK_BYTES}",
            bytes.len()
        );
        let value: Value = serde_json::from_slice(bytes).context("the entry chunk is not JSON")?;
        let map = value.as_object().context("the entry chunk is not a map")?;
        for key in map.keys() {
            ensure!(
                key == "Entries" || key == "Next",
                "the entry chunk has an unknown field {key:?}"
            );
        }
        let entries = map
            .get("Entries")
            .context("Entries is missing")?
            .as_array()
            .context("Entries is not a list")?
            .iter()
            .map(|e| {
                let bytes = read_bytes(e)?;
                Multihash::<64>::from_bytes(&bytes).context("an entry is not a multihash")?;
                Ok(bytes)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next = match map.get("Next") {
            None | Some(Value::Null) => None,
            Some(v) => Some(read_link(v).context("Next")?),
        };
        Ok(Self { entries, next })
    }
}

fn encode_entry_chunk(entries: &[Vec<u8>], next: Option<&Cid>) -> Vec<u8> {
    let mut out = String::with_capacity(32 + entries.len() * 64);
    out.push_str("{\"Entries\":[");
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_bytes(&mut out, entry);
    }
    out.push(']');
    if let Some(next) = next {
        out.push_str(",\"Next\":");
        push_link(&mut out, next);
    }
    out.push('}');
    out.into_bytes()
}

/// Builds the entry chunks of a list of multihashes: chunks of [`ENTRIES_PER_CHUNK`], each
/// linking to the next, encoded from the last to the first (a chunk's link needs the next one's
/// CID). Returns the first chunk's CID (the advertisement's `Entries`) and every chunk, first
/// first. No multihashes: no chunks, and `None`.
pub fn build_entry_chunks(multihashes: &[Vec<u8>]) -> (Option<Cid>, Vec<(Cid, Vec<u8>)>) {
    let mut chunks: Vec<(Cid, Vec<u8>)> = Vec::new();
    let mut next: Option<Cid> = None;
    for part in multihashes.rchunks(ENTRIES_PER_CHUNK) {
        let bytes = encode_entry_chunk(part, next.as_ref());
        let cid = dag_json_cid(&bytes);
        next = Some(cid);
        chunks.push((cid, bytes));
    }
    chunks.reverse();
    (next, chunks)
}

/// The head a publisher serves: the latest advertisement's CID, signed with the provider's key
/// over the CID's bytes and the topic.
pub fn encode_signed_head(head: &Cid, key: &Keypair) -> anyhow::Result<Vec<u8>> {
    let mut signed = head.to_bytes();
    signed.extend_from_slice(TOPIC.as_bytes());
    let sig = key
        .sign(&signed)
        .map_err(|e| anyhow::anyhow!("sign the head: {e}"))?;
    let mut out = String::with_capacity(256);
    out.push_str("{\"head\":");
    push_link(&mut out, head);
    out.push_str(",\"pubkey\":");
    push_bytes(&mut out, &key.public().encode_protobuf());
    out.push_str(",\"sig\":");
    push_bytes(&mut out, &sig);
    out.push_str(",\"topic\":");
    out.push_str(&json_string(TOPIC));
    out.push('}');
    Ok(out.into_bytes())
}

/// Reads and checks a signed head; returns the head CID and the signer.
pub fn verify_signed_head(bytes: &[u8]) -> anyhow::Result<(Cid, PeerId)> {
    ensure!(bytes.len() <= 64 << 10, "the head is over 64 KiB");
    let value: Value = serde_json::from_slice(bytes).context("the head is not JSON")?;
    let head = read_link(value.get("head").context("head is missing")?).context("head")?;
    let pubkey = read_bytes(value.get("pubkey").context("pubkey is missing")?)?;
    let sig = read_bytes(value.get("sig").context("sig is missing")?)?;
    let mut signed = head.to_bytes();
    if let Some(topic) = value.get("topic").and_then(Value::as_str) {
        signed.extend_from_slice(topic.as_bytes());
    }
    let key = PublicKey::try_decode_protobuf(&pubkey).context("pubkey is not a libp2p key")?;
    ensure!(
        key.verify(&signed, &sig),
        "the head's signature does not verify"
    );
    Ok((head, key.to_peer_id()))
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string encodes")
}

fn push_bytes(out: &mut String, bytes: &[u8]) {
    out.push_str("{\"/\":{\"bytes\":\"");
    base64::engine::general_purpose::STANDARD_NO_PAD.encode_string(bytes, out);
    out.push_str("\"}}");
}

fn push_link(out: &mut String, cid: &Cid) {
    out.push_str("{\"/\":\"");
    out.push_str(&cid.to_string());
    out.push_str("\"}");
}

fn read_link(value: &Value) -> anyhow::Result<Cid> {
    let text = value
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get("/"))
        .and_then(Value::as_str)
        .context("not a DAG-JSON link")?;
    Cid::try_from(text).with_context(|| format!("{text:?} is not a CID"))
}

fn read_bytes(value: &Value) -> anyhow::Result<Vec<u8>> {
    let text = value
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get("/"))
        .and_then(Value::as_object)
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get("bytes"))
        .and_then(Value::as_str)
        .context("not DAG-JSON bytes")?;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .context("DAG-JSON bytes are not base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Keypair {
        Keypair::ed25519_from_bytes([7u8; 32]).expect("a key")
    }

    fn ad(key: &Keypair) -> Advertisement {
        Advertisement {
            previous: Some(dag_json_cid(b"{}")),
            provider: key.public().to_peer_id().to_string(),
            addresses: vec![
                "/ip4/127.0.0.1/tcp/24080/http".into(),
                "/ip4/127.0.0.1/tcp/24001".into(),
            ],
            signature: Vec::new(),
            entries: dag_json_cid(b"{\"Entries\":[]}"),
            context_id: vec![1, 2, 3],
            metadata: metadata(&[Transport::FilecoinPieceHttp, Transport::Bitswap]),
            is_rm: false,
        }
    }

    #[test]
    fn metadata_is_sorted_by_code_with_go_libipni_payloads() {
        let bytes = metadata(&[
            Transport::FilecoinPieceHttp,
            Transport::IpfsGatewayHttp,
            Transport::Bitswap,
        ]);
        // uvarint(0x0900) = 80 12; uvarint(0x0920) = a0 12 then 00; uvarint(0x0930) = b0 12 00.
        assert_eq!(bytes, [0x80, 0x12, 0xa0, 0x12, 0x00, 0xb0, 0x12, 0x00]);
        assert_eq!(
            parse_metadata(&bytes).expect("parses"),
            [
                Transport::Bitswap,
                Transport::IpfsGatewayHttp,
                Transport::FilecoinPieceHttp
            ]
        );
        assert!(
            parse_metadata(&[0x90, 0x12]).is_err(),
            "graphsync is not ours"
        );
        assert!(parse_metadata(&[0xa0, 0x12, 0x01, 0x00]).is_err());
    }

    #[test]
    fn no_entries_is_the_spec_cid() {
        assert_eq!(
            no_entries().to_string(),
            "bafkreehdwdcefgh4dqkjv67uzcmw7oje"
        );
    }

    #[test]
    fn a_signed_advertisement_round_trips_and_verifies() {
        let key = key();
        let mut ad = ad(&key);
        ad.sign(&key).expect("signs");
        let bytes = ad.encode();
        let decoded = Advertisement::decode(&bytes).expect("decodes");
        assert_eq!(decoded, ad);
        assert_eq!(
            decoded.verify().expect("verifies"),
            key.public().to_peer_id()
        );
        // Same fields, same bytes, same CID.
        assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn every_signed_field_is_bound_by_the_signature() {
        let key = key();
        let mut signed = ad(&key);
        signed.sign(&key).expect("signs");
        let changes: [fn(&mut Advertisement); 6] = [
            |a| a.previous = None,
            |a| a.entries = no_entries(),
            |a| {
                a.addresses.pop();
            },
            |a| a.metadata.push(0),
            |a| a.is_rm = true,
            |a| a.provider = PeerId::random().to_string(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut ad = signed.clone();
            change(&mut ad);
            assert!(ad.verify().is_err(), "change {i} still verifies");
        }
        // ContextID is not signed (the spec's choice).
        let mut ad = signed.clone();
        ad.context_id = vec![9];
        ad.verify().expect("ContextID is outside the signature");
        // Another key cannot sign for this provider.
        let other = Keypair::generate_ed25519();
        assert!(ad.clone().sign(&other).is_err());
    }

    #[test]
    fn entry_chunks_link_in_order_and_hold_every_multihash() {
        let hashes: Vec<Vec<u8>> = (0..ENTRIES_PER_CHUNK * 2 + 5)
            .map(|i| sha256_multihash(&(i as u64).to_le_bytes()).to_bytes())
            .collect();
        let (first, chunks) = build_entry_chunks(&hashes);
        assert_eq!(chunks.len(), 3);
        assert_eq!(first, Some(chunks[0].0));
        let mut seen = Vec::new();
        let mut link = first;
        for (cid, bytes) in &chunks {
            assert_eq!(Some(*cid), link);
            assert_eq!(dag_json_cid(bytes), *cid);
            let chunk = EntryChunk::decode(bytes).expect("decodes");
            seen.extend(chunk.entries);
            link = chunk.next;
        }
        assert_eq!(link, None);
        assert_eq!(seen, hashes);
        assert!(chunks[0].1.len() < MAX_BLOCK_BYTES);
        assert_eq!(build_entry_chunks(&[]), (None, Vec::new()));
    }

    #[test]
    fn a_signed_head_verifies_and_a_changed_one_does_not() {
        let key = key();
        let head = dag_json_cid(b"ad");
        let bytes = encode_signed_head(&head, &key).expect("signs");
        let (cid, signer) = verify_signed_head(&bytes).expect("verifies");
        assert_eq!((cid, signer), (head, key.public().to_peer_id()));
        let text = String::from_utf8(bytes).expect("utf-8");
        let other = text.replace(&head.to_string(), &dag_json_cid(b"other").to_string());
        assert!(verify_signed_head(other.as_bytes()).is_err());
    }

    #[test]
    fn hostile_advertisements_are_refused_with_reasons() {
        let key = key();
        let mut good = ad(&key);
        good.sign(&key).expect("signs");
        let text = String::from_utf8(good.encode()).expect("utf-8");
        for (bad, why) in [
            ("[]".to_string(), "not a map"),
            (text.replace("\"IsRm\":false", "\"IsRm\":0"), "IsRm"),
            (text.replacen("{", "{\"Extra\":1,", 1), "unknown field"),
            (
                text.replacen("{", "{\"ExtendedProvider\":{},", 1),
                "ExtendedProvider",
            ),
            (
                text.replace("\"Provider\":", "\"Provide\":"),
                "unknown field",
            ),
        ] {
            let error = format!(
                "{:#}",
                Advertisement::decode(bad.as_bytes()).expect_err(why)
            );
            assert!(error.contains(why), "{why}: {error}");
        }
        let mut long = good.clone();
        long.context_id = vec![0; 65];
        assert!(Advertisement::decode(&long.encode()).is_err());
    }
}
