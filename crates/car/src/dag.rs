//! Reading IPLD blocks: dag-pb nodes (the PBNode protobuf), UnixFS `Data`, dag-cbor links, and
//! the hash UnixFS HAMT directories place their entries by. What a trustless gateway, a
//! retrieval client and bitswap need to walk a DAG; nothing here does IO.
//!
//! dag-pb and UnixFS are decoded by hand: two small protobuf messages whose decoding rules
//! (field numbers, wire types, lengths inside the block) are checked strictly, so a hostile block
//! is an error, never a panic or a huge allocation. dag-cbor goes through `serde_ipld_dagcbor`.

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::codec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DagError(pub String);

fn bad(why: impl Into<String>) -> DagError {
    DagError(why.into())
}

/// A dag-pb link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    pub cid: Cid,
    pub name: Option<String>,
    pub tsize: Option<u64>,
}

/// A dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    pub links: Vec<PbLink>,
    pub data: Option<Vec<u8>>,
}

/// Protobuf wire reading, bounded by the slice.
struct Wire<'a> {
    bytes: &'a [u8],
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64, DagError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or_else(|| bad("a varint is cut short"))?;
            self.bytes = rest;
            if i == 9 && byte > 1 {
                return Err(bad("a varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a varint is longer than 10 bytes"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DagError> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= self.bytes.len())
            .ok_or_else(|| bad("a length runs past the end of the block"))?;
        let (field, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(field)
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> Result<Option<(u64, u8)>, DagError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), DagError> {
        match wire_type {
            0 => self.varint().map(|_| ()),
            1 => self.take(8),
            2 => self.bytes().map(|_| ()),
            5 => self.take(4),
            t => Err(bad(format!("protobuf wire type {t} is not allowed here"))),
        }
    }

    fn take(&mut self, n: usize) -> Result<(), DagError> {
        if self.bytes.len() < n {
            return Err(bad("a field is cut short"));
        }
        self.bytes = &self.bytes[n..];
        Ok(())
    }
}

impl PbNode {
    /// Decodes a dag-pb block (DAG-PB spec: `Links` (2) and `Data` (1), nothing else).
    pub fn decode(block: &[u8]) -> Result<Self, DagError> {
        let mut wire = Wire { bytes: block };
        let mut node = PbNode::default();
        while let Some((field, wire_type)) = wire.key()? {
            match (field, wire_type) {
                (1, 2) => {
                    if node.data.is_some() {
                        return Err(bad("dag-pb: Data appears twice"));
                    }
                    node.data = Some(wire.bytes()?.to_vec());
                }
                (2, 2) => {
                    if node.data.is_some() {
                        return Err(bad("dag-pb: a link after Data"));
                    }
                    node.links.push(decode_link(wire.bytes()?)?);
                }
                _ => return Err(bad(format!("dag-pb: unexpected field {field}"))),
            }
        }
        Ok(node)
    }
}

fn decode_link(bytes: &[u8]) -> Result<PbLink, DagError> {
    let mut wire = Wire { bytes };
    let (mut cid, mut name, mut tsize) = (None, None, None);
    while let Some((field, wire_type)) = wire.key()? {
        match (field, wire_type) {
            (1, 2) => {
                let raw = wire.bytes()?;
                cid = Some(
                    Cid::try_from(raw).map_err(|e| bad(format!("dag-pb: a link's CID: {e}")))?,
                );
            }
            (2, 2) => {
                let raw = wire.bytes()?;
                name = Some(
                    String::from_utf8(raw.to_vec())
                        .map_err(|_| bad("dag-pb: a link's name is not UTF-8"))?,
                );
            }
            (3, 0) => tsize = Some(wire.varint()?),
            _ => return Err(bad(format!("dag-pb: unexpected link field {field}"))),
        }
    }
    Ok(PbLink {
        cid: cid.ok_or_else(|| bad("dag-pb: a link has no Hash"))?,
        name,
        tsize,
    })
}

/// UnixFS node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixFsType {
    Raw,
    Directory,
    File,
    Metadata,
    Symlink,
    HamtShard,
}

/// The UnixFS `Data` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFs {
    pub kind: UnixFsType,
    pub data: Option<Vec<u8>>,
    pub filesize: Option<u64>,
    pub blocksizes: Vec<u64>,
    pub hash_type: Option<u64>,
    pub fanout: Option<u64>,
}

impl UnixFs {
    pub fn decode(bytes: &[u8]) -> Result<Self, DagError> {
        let mut wire = Wire { bytes };
        let (mut kind, mut data, mut filesize, mut hash_type, mut fanout) =
            (None, None, None, None, None);
        let mut blocksizes = Vec::new();
        while let Some((field, wire_type)) = wire.key()? {
            match (field, wire_type) {
                (1, 0) => {
                    kind = Some(match wire.varint()? {
                        0 => UnixFsType::Raw,
                        1 => UnixFsType::Directory,
                        2 => UnixFsType::File,
                        3 => UnixFsType::Metadata,
                        4 => UnixFsType::Symlink,
                        5 => UnixFsType::HamtShard,
                        t => return Err(bad(format!("UnixFS: unknown type {t}"))),
                    })
                }
                (2, 2) => data = Some(wire.bytes()?.to_vec()),
                (3, 0) => filesize = Some(wire.varint()?),
                (4, 0) => blocksizes.push(wire.varint()?),
                (4, 2) => {
                    // Packed, as some encoders write it.
                    let mut packed = Wire {
                        bytes: wire.bytes()?,
                    };
                    while !packed.bytes.is_empty() {
                        blocksizes.push(packed.varint()?);
                    }
                }
                (5, 0) => hash_type = Some(wire.varint()?),
                (6, 0) => fanout = Some(wire.varint()?),
                (_, t) => wire.skip(t)?, // mode, mtime: not needed to serve
            }
        }
        Ok(Self {
            kind: kind.ok_or_else(|| bad("UnixFS: no Type"))?,
            data,
            filesize,
            blocksizes,
            hash_type,
            fanout,
        })
    }
}

/// A dag-pb block with its UnixFS data, if it has any.
pub fn decode_unixfs(block: &[u8]) -> Result<(PbNode, Option<UnixFs>), DagError> {
    let node = PbNode::decode(block)?;
    let unixfs = match &node.data {
        Some(data) => Some(UnixFs::decode(data)?),
        None => None,
    };
    Ok((node, unixfs))
}

/// Decodes a dag-cbor block.
pub fn decode_cbor(block: &[u8]) -> Result<Ipld, DagError> {
    serde_ipld_dagcbor::from_slice(block).map_err(|e| bad(format!("dag-cbor: {e}")))
}

/// The links of a decoded dag-cbor value, in the order the block encodes them (DAG-CBOR map
/// keys are sorted by length, then bytes).
pub fn cbor_links(value: &Ipld, out: &mut Vec<Cid>) {
    match value {
        Ipld::Link(cid) => out.push(*cid),
        Ipld::List(items) => items.iter().for_each(|v| cbor_links(v, out)),
        Ipld::Map(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            for key in keys {
                cbor_links(&map[key], out);
            }
        }
        _ => {}
    }
}

/// The links of any block this module reads (raw blocks have none).
pub fn links(cid: &Cid, block: &[u8]) -> Result<Vec<Cid>, DagError> {
    match cid.codec() {
        codec::DAG_PB => Ok(PbNode::decode(block)?
            .links
            .into_iter()
            .map(|l| l.cid)
            .collect()),
        codec::DAG_CBOR => {
            let mut out = Vec::new();
            cbor_links(&decode_cbor(block)?, &mut out);
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

/// The UnixFS HAMT's hash of an entry name: the first 64 bits of MurmurHash3 x64 128 (seed 0),
/// big-endian; each level of the HAMT takes its index from the next bits.
pub fn hamt_hash(name: &[u8]) -> [u8; 8] {
    murmur3_x64_128_h1(name).to_be_bytes()
}

/// The index an entry takes at `depth` of a HAMT with `fanout` (a power of two up to 256) links.
pub fn hamt_index(hash: &[u8; 8], depth: usize, fanout: u64) -> Option<usize> {
    if !fanout.is_power_of_two() || !(2..=256).contains(&fanout) {
        return None;
    }
    let bits = fanout.trailing_zeros() as usize;
    let start = depth.checked_mul(bits)?;
    if start > 64 - bits {
        return None;
    }
    let all = u64::from_be_bytes(*hash);
    Some(((all << start) >> (64 - bits)) as usize)
}

/// The hex width of a HAMT link name's prefix for `fanout` (2 for 256).
pub fn hamt_prefix_len(fanout: u64) -> usize {
    format!("{:X}", fanout.saturating_sub(1)).len()
}

/// MurmurHash3 x64 128 (Austin Appleby's public-domain algorithm), the first half of the digest.
fn murmur3_x64_128_h1(data: &[u8]) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let k1 = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
        let k2 = u64::from_le_bytes(block[8..].try_into().expect("8 bytes"));
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &byte) in tail.iter().enumerate() {
        if i < 8 {
            k1 |= u64::from(byte) << (8 * i);
        } else {
            k2 |= u64::from(byte) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1.wrapping_add(h2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // From the reference implementation's test suite (x64 128, seed 0), first 8 bytes
        // little-endian of the digest = h1.
        assert_eq!(murmur3_x64_128_h1(b""), 0);
        assert_eq!(
            murmur3_x64_128_h1(b"hello"),
            0xcbd8_a7b3_41bd_9b02,
            "{:x}",
            murmur3_x64_128_h1(b"hello")
        );
        assert_eq!(
            murmur3_x64_128_h1(b"The quick brown fox jumps over the lazy dog"),
            0xe34b_bc7b_bc07_1b6c,
        );
        // Names placed by go-unixfs in the gateway-conformance HAMT fixture: "1.txt" sits under
        // shard 07 then C1, "685.txt" under FD then E3.
        assert_eq!(hamt_hash(b"1.txt")[..2], [0x07, 0xC1]);
        assert_eq!(hamt_hash(b"685.txt")[..2], [0xFD, 0xE3]);
    }

    #[test]
    fn hamt_indexes_take_bits_from_the_top() {
        let hash = [0xAB, 0xCD, 0, 0, 0, 0, 0, 0x01];
        assert_eq!(hamt_index(&hash, 0, 256), Some(0xAB));
        assert_eq!(hamt_index(&hash, 1, 256), Some(0xCD));
        assert_eq!(hamt_index(&hash, 7, 256), Some(0x01));
        assert_eq!(hamt_index(&hash, 8, 256), None);
        assert_eq!(hamt_index(&hash, 0, 16), Some(0xA));
        assert_eq!(hamt_index(&hash, 1, 16), Some(0xB));
        assert_eq!(hamt_index(&hash, 0, 100), None);
        assert_eq!(hamt_prefix_len(256), 2);
        assert_eq!(hamt_prefix_len(16), 1);
        // Found by the dag_block fuzz target: a depth whose bit offset is near usize::MAX
        // overflowed the bounds check.
        assert_eq!(hamt_index(&hash, usize::MAX, 2), None);
        assert_eq!(hamt_index(&hash, usize::MAX / 8, 256), None);
        assert_eq!(hamt_index(&hash, 63, 2), Some(1));
    }

    #[test]
    fn hostile_dag_pb_is_an_error_not_a_panic() {
        for block in [
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f][..], // Data longer than the block
            &[0x12, 0x02, 0x0a, 0x00],                 // a link with an empty CID
            &[0x18, 0x01],                             // field 3
            &[0x0a, 0x00, 0x12, 0x00],                 // a link after Data
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ] {
            assert!(PbNode::decode(block).is_err(), "{block:?}");
        }
        assert_eq!(PbNode::decode(&[]).expect("empty node"), PbNode::default());
    }
}
