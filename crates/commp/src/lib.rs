//! Filecoin piece commitments, without IO: fr32 padding, size arithmetic, zero-piece
//! commitments, a streaming and multi-threaded piece-commitment hasher, piece CIDs v1 and v2,
//! and the unsealed sector commitment (CommD) of an ordered list of pieces.

mod commd;
pub mod fr32;
mod hasher;
mod piece_cid;
pub mod sha256;
mod zero;

use std::fmt;

pub use commd::{CommDError, SectorPiece, commd, pad_commitment, piece_offsets};
pub use hasher::{CommPError, CommPHasher, MAX_PAYLOAD, Parallelism, commp};
pub use nelumbo_types::{PaddedPieceSize, SectorSize, UnpaddedPieceSize};
pub use piece_cid::{
    FIL_COMMITMENT_UNSEALED, FR32_SHA256_TRUNC254_PADBINTREE, PieceCidError, PieceCidInfo,
    PieceSizes, RAW, SHA2_256_TRUNC254_PADDED, parse_piece_cid, parse_piece_cid_str, piece_cid_v1,
    piece_cid_v2,
};
pub use zero::{zero_node, zero_piece_commitment};

/// A 32-byte piece or sector commitment (the root of a sha2-256-trunc254-padded tree).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Commitment(pub [u8; 32]);

impl Commitment {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Debug for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Commitment({})", piece_cid_v1(self))
    }
}

/// The result of hashing a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceDigest {
    pub commitment: Commitment,
    /// Bytes of payload hashed.
    pub payload_size: u64,
    /// The smallest piece that holds the payload.
    pub piece_size: PaddedPieceSize,
}

impl PieceDigest {
    pub fn cid_v1(&self) -> ::cid::Cid {
        piece_cid_v1(&self.commitment)
    }

    pub fn cid_v2(&self) -> ::cid::Cid {
        piece_cid_v2(&self.commitment, self.payload_size, self.piece_size)
            .unwrap_or_else(|_| unreachable!("the piece size was chosen to fit the payload"))
    }
}
