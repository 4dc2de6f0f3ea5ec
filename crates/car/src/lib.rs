//! CAR (content-addressed archive) files: reading CARv1 and CARv2 block by block with each
//! block's place in the file and its hash checked, writing CARv1, and packing a file into a
//! UnixFS DAG the way `ipfs-car pack` does ([`unixfs`]).
//!
//! No async and no files of its own: readers and writers are `std::io` streams, so the same code
//! indexes a staged deal file and checks a CAR in a test.

pub mod dag;
mod read;
pub mod unixfs;
mod varint;
mod write;

pub use read::{BlockSection, CarReader};
pub use write::CarWriter;

/// The largest header a reader accepts (as go-car's default).
pub const MAX_HEADER_BYTES: u64 = 32 << 20;
/// The largest section (CID and block) a reader accepts (as go-car's default).
pub const MAX_SECTION_BYTES: u64 = 8 << 20;

/// Multicodec codes used here.
pub mod codec {
    pub const RAW: u64 = 0x55;
    pub const DAG_PB: u64 = 0x70;
    pub const DAG_CBOR: u64 = 0x71;
    pub const SHA2_256: u64 = 0x12;
    pub const BLAKE2B_256: u64 = 0xb220;
    pub const IDENTITY: u64 = 0x00;
}

#[derive(Debug, thiserror::Error)]
pub enum CarError {
    #[error("read the CAR: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a CAR file: {0}")]
    BadHeader(String),
    #[error("CAR version {0} is not supported (only 1 and 2 are)")]
    UnsupportedVersion(u64),
    #[error("the CAR is cut short: {0}")]
    Truncated(String),
    #[error("a CAR section at byte {offset} is {length} bytes, more than the {max} allowed")]
    SectionTooLarge { offset: u64, length: u64, max: u64 },
    #[error("the block at byte {offset} does not match its CID {cid}: the data was altered")]
    HashMismatch { offset: u64, cid: cid::Cid },
    #[error("a CID at byte {offset} cannot be read: {reason}")]
    BadCid { offset: u64, reason: String },
}

/// Checks `data` against the multihash in `cid`: `Some(true)` if it matches, `Some(false)` if
/// not, `None` when the hash function is one this crate does not compute (the block is then
/// unchecked, not rejected).
pub fn verify_block(cid: &cid::Cid, data: &[u8]) -> Option<bool> {
    let mh = cid.hash();
    let computed: Vec<u8> = match mh.code() {
        codec::SHA2_256 => {
            use sha2::Digest;
            sha2::Sha256::digest(data).to_vec()
        }
        codec::BLAKE2B_256 => blake2b_simd::Params::new()
            .hash_length(32)
            .hash(data)
            .as_bytes()
            .to_vec(),
        codec::IDENTITY => data.to_vec(),
        _ => return None,
    };
    Some(computed.as_slice() == mh.digest())
}

/// A CIDv1 with a SHA2-256 multihash of `data`.
pub fn cid_v1_sha256(codec: u64, data: &[u8]) -> cid::Cid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    let mh = cid::multihash::Multihash::<64>::wrap(codec::SHA2_256, &digest)
        .expect("a 32-byte digest fits a multihash");
    cid::Cid::new_v1(codec, mh)
}
