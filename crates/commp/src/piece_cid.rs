//! Piece CIDs: v1 (`baga6ea4seaq...`: fil-commitment-unsealed, sha2-256-trunc254-padded) and v2
//! (FRC-0069, `bafkzcib...`: raw, fr32-sha256-trunc254-padbintree, which also carries the tree
//! height and the zero padding, so the piece and payload sizes travel with the CID).

use std::fmt;

use cid::Cid;
use cid::multihash::Multihash;
use nelumbo_types::PaddedPieceSize;

use crate::Commitment;

/// Multicodec `fil-commitment-unsealed`.
pub const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// Multihash `sha2-256-trunc254-padded`.
pub const SHA2_256_TRUNC254_PADDED: u64 = 0x1012;
/// Multicodec `raw`.
pub const RAW: u64 = 0x55;
/// Multihash `fr32-sha256-trunc254-padbintree` (FRC-0069).
pub const FR32_SHA256_TRUNC254_PADBINTREE: u64 = 0x1011;

/// Why a CID is not a piece CID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceCidError {
    #[error(
        "{cid} is not a piece CID: expected codec fil-commitment-unsealed with sha2-256-trunc254-padded (v1, baga6ea4seaq...) or raw with fr32-sha256-trunc254-padbintree (v2, bafkzcib...)"
    )]
    NotAPieceCid { cid: String },
    #[error("{cid} is a malformed piece CID: {why}")]
    Malformed { cid: String, why: &'static str },
    #[error("cannot parse {text:?} as a CID: {why}")]
    Parse { text: String, why: String },
    #[error(
        "payload of {payload} bytes does not fit a piece of {piece_size} bytes (capacity {capacity})",
        capacity = piece_size.unpadded()
    )]
    PayloadTooLarge {
        payload: u64,
        piece_size: PaddedPieceSize,
    },
}

/// The piece CID v1 of a commitment.
pub fn piece_cid_v1(commitment: &Commitment) -> Cid {
    let hash = Multihash::wrap(SHA2_256_TRUNC254_PADDED, &commitment.0)
        .unwrap_or_else(|_| unreachable!("32 bytes fit a 64-byte multihash"));
    Cid::new_v1(FIL_COMMITMENT_UNSEALED, hash)
}

/// The piece CID v2 of a commitment over `payload` bytes in a piece of `piece_size`.
pub fn piece_cid_v2(
    commitment: &Commitment,
    payload: u64,
    piece_size: PaddedPieceSize,
) -> Result<Cid, PieceCidError> {
    let capacity = piece_size.unpadded().bytes();
    if payload > capacity {
        return Err(PieceCidError::PayloadTooLarge {
            payload,
            piece_size,
        });
    }
    let mut digest = Vec::with_capacity(10 + 1 + 32);
    write_uvarint(&mut digest, capacity - payload);
    digest.push(piece_size.tree_height() as u8);
    digest.extend_from_slice(&commitment.0);
    let hash = Multihash::wrap(FR32_SHA256_TRUNC254_PADBINTREE, &digest)
        .unwrap_or_else(|_| unreachable!("43 bytes fit a 64-byte multihash"));
    Ok(Cid::new_v1(RAW, hash))
}

/// What a piece CID says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceCidInfo {
    pub commitment: Commitment,
    /// Only v2 CIDs carry the sizes.
    pub sizes: Option<PieceSizes>,
}

/// The sizes a v2 piece CID carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceSizes {
    pub piece_size: PaddedPieceSize,
    pub payload: u64,
}

/// Reads a piece CID of either version.
pub fn parse_piece_cid(cid: &Cid) -> Result<PieceCidInfo, PieceCidError> {
    let hash = cid.hash();
    let malformed = |why| PieceCidError::Malformed {
        cid: cid.to_string(),
        why,
    };
    match (cid.version(), cid.codec(), hash.code()) {
        (cid::Version::V1, FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED) => {
            let commitment = Commitment::from_slice(hash.digest())
                .ok_or_else(|| malformed("the digest is not 32 bytes"))?;
            Ok(PieceCidInfo {
                commitment,
                sizes: None,
            })
        }
        (cid::Version::V1, RAW, FR32_SHA256_TRUNC254_PADBINTREE) => {
            let digest = hash.digest();
            let (padding, rest) =
                read_uvarint(digest).ok_or_else(|| malformed("the padding varint is invalid"))?;
            let (&height, root) = rest
                .split_first()
                .ok_or_else(|| malformed("the tree height is missing"))?;
            let commitment = Commitment::from_slice(root)
                .ok_or_else(|| malformed("the root is not 32 bytes"))?;
            let piece_size = 32u64
                .checked_shl(u32::from(height))
                .filter(|_| (2..59).contains(&height))
                .and_then(|bytes| PaddedPieceSize::new(bytes).ok())
                .ok_or_else(|| malformed("the tree height is out of range"))?;
            let payload = piece_size
                .unpadded()
                .bytes()
                .checked_sub(padding)
                .ok_or_else(|| malformed("the padding exceeds the piece"))?;
            Ok(PieceCidInfo {
                commitment,
                sizes: Some(PieceSizes {
                    piece_size,
                    payload,
                }),
            })
        }
        _ => Err(PieceCidError::NotAPieceCid {
            cid: cid.to_string(),
        }),
    }
}

/// Parses text as a piece CID of either version.
pub fn parse_piece_cid_str(text: &str) -> Result<(Cid, PieceCidInfo), PieceCidError> {
    let cid = Cid::try_from(text.trim()).map_err(|e| PieceCidError::Parse {
        text: text.to_string(),
        why: e.to_string(),
    })?;
    let info = parse_piece_cid(&cid)?;
    Ok((cid, info))
}

fn write_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a minimal unsigned varint of at most 9 bytes (the multiformats limit).
fn read_uvarint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(9) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return None; // not minimal
            }
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

impl fmt::Display for PieceCidInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", piece_cid_v1(&self.commitment))?;
        if let Some(sizes) = self.sizes {
            write!(
                f,
                " ({} payload bytes in {})",
                sizes.payload, sizes.piece_size
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commitment_of(v1: &str) -> Commitment {
        let (_, info) = parse_piece_cid_str(v1).expect("v1");
        assert_eq!(info.sizes, None);
        info.commitment
    }

    #[test]
    fn frc_0069_test_cases() {
        // (v1 CID, payload bytes, padded piece size, v2 CID), from FRC-0069's test cases.
        let table = [
            (
                "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi",
                127 * 4,
                512,
                "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi",
            ),
            (
                "baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy",
                0,
                128,
                "bafkzcibcp4bdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy",
            ),
            (
                "baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy",
                127,
                128,
                "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy",
            ),
            (
                "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
                (32 << 30) / 128 * 127,
                32 << 30,
                "bafkzcibcaapao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
            ),
            (
                "baga6ea4seaqomqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
                (64 << 30) / 128 * 127,
                64 << 30,
                "bafkzcibcaap6mqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
            ),
            (
                "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa",
                128 * 4,
                1024,
                "bafkzcibd7abqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4",
            ),
            (
                "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa",
                128 * 4 + 1,
                1024,
                "bafkzcibd64bqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4",
            ),
        ];
        for (v1, payload, padded, v2) in table {
            let commitment = commitment_of(v1);
            let piece_size = PaddedPieceSize::new(padded).expect("valid");
            let cid = piece_cid_v2(&commitment, payload, piece_size).expect("fits");
            assert_eq!(cid.to_string(), v2, "payload {payload}");
            assert_eq!(piece_cid_v1(&commitment).to_string(), v1);

            let (_, info) = parse_piece_cid_str(v2).expect("v2 parses");
            assert_eq!(info.commitment, commitment);
            assert_eq!(
                info.sizes,
                Some(PieceSizes {
                    piece_size,
                    payload
                })
            );
        }
    }

    #[test]
    fn other_cids_are_refused_with_a_reason() {
        let err =
            parse_piece_cid_str("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
                .expect_err("raw sha256 is not a piece CID");
        assert!(err.to_string().contains("not a piece CID"), "{err}");
        let err = parse_piece_cid_str("not-a-cid").expect_err("garbage");
        assert!(err.to_string().contains("cannot parse"), "{err}");
        let big = piece_cid_v2(&Commitment([0; 32]), 128, PaddedPieceSize::MIN);
        assert!(matches!(big, Err(PieceCidError::PayloadTooLarge { .. })));
    }
}
