//! The devnet's deterministic randomness: a beacon derived from the genesis seed, block
//! tickets, and Filecoin's `DrawRandomness` with domain separation tags, as Lotus and the
//! builtin actors compute it.

use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use nelumbo_chain_api::types::BeaconEntry;

/// Domain separation tags (go-state-types `crypto.DomainSeparationTag`).
pub mod dst {
    pub const TICKET_PRODUCTION: i64 = 1;
    pub const ELECTION_PROOF_PRODUCTION: i64 = 2;
    pub const WINNING_POST_CHALLENGE_SEED: i64 = 3;
    pub const WINDOWED_POST_CHALLENGE_SEED: i64 = 4;
    pub const SEAL_RANDOMNESS: i64 = 5;
    pub const INTERACTIVE_SEAL_CHALLENGE_SEED: i64 = 6;
    pub const POST_CHAIN_COMMIT: i64 = 9;
}

pub fn blake2b256(data: &[u8]) -> [u8; 32] {
    let hash = blake2b_simd::Params::new().hash_length(32).hash(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// `DrawRandomness`: BLAKE2b-256 of the tag, the digest of the randomness base, the round and
/// the entropy.
pub fn draw(digest: &[u8; 32], tag: i64, round: ChainEpoch, entropy: &[u8]) -> [u8; 32] {
    let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
    state.update(&tag.to_be_bytes());
    state.update(digest);
    state.update(&round.to_be_bytes());
    state.update(entropy);
    let mut out = [0u8; 32];
    out.copy_from_slice(state.finalize().as_bytes());
    out
}

/// The entropy the builtin actors mix in for a miner: the CBOR of its address.
pub fn address_entropy(address: &Address) -> Vec<u8> {
    fvm_ipld_encoding::to_vec(address).unwrap_or_default()
}

/// The beacon and tickets of one chain, from its genesis seed.
#[derive(Debug, Clone, Copy)]
pub struct Beacon {
    seed: [u8; 32],
}

impl Beacon {
    pub fn new(seed: [u8; 32]) -> Self {
        Self { seed }
    }

    /// The beacon entry of a round (a drand stand-in: anyone with the genesis can compute it).
    pub fn entry(&self, round: ChainEpoch) -> BeaconEntry {
        let mut input = b"nelumbo beacon".to_vec();
        input.extend_from_slice(&self.seed);
        input.extend_from_slice(&(round.max(0) as u64).to_be_bytes());
        BeaconEntry {
            round: round.max(0) as u64,
            data: blake2b256(&input).to_vec(),
        }
    }

    /// The digest beacon randomness at `round` draws from.
    pub fn digest(&self, round: ChainEpoch) -> [u8; 32] {
        blake2b256(&self.entry(round).data)
    }

    /// The ticket of the devnet's block at `height`.
    pub fn ticket(&self, height: ChainEpoch) -> Vec<u8> {
        let mut input = b"nelumbo ticket".to_vec();
        input.extend_from_slice(&self.seed);
        input.extend_from_slice(&height.to_be_bytes());
        blake2b256(&input).to_vec()
    }

    /// Whether `height` is a null round: the chain sometimes skips an epoch, as a real chain
    /// does when no miner produced a block, with probability `permille / 1000`.
    pub fn is_null_round(&self, height: ChainEpoch, permille: u64) -> bool {
        if permille == 0 || height <= 0 {
            return false;
        }
        let mut input = b"nelumbo null round".to_vec();
        input.extend_from_slice(&self.seed);
        input.extend_from_slice(&height.to_be_bytes());
        let h = blake2b256(&input);
        u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) % 1000 < permille
    }
}

/// Randomness the actors draw while executing messages.
pub trait RandomnessSource {
    /// The digest of the ticket that chain randomness at `round` comes from: the ticket of the
    /// tipset at `round`, or of the next one if `round` was a null round.
    fn ticket_digest(&self, round: ChainEpoch) -> Result<[u8; 32], String>;
    fn beacon_digest(&self, round: ChainEpoch) -> [u8; 32];

    fn chain_randomness(
        &self,
        tag: i64,
        round: ChainEpoch,
        entropy: &[u8],
    ) -> Result<[u8; 32], String> {
        Ok(draw(&self.ticket_digest(round)?, tag, round, entropy))
    }

    fn beacon_randomness(&self, tag: i64, round: ChainEpoch, entropy: &[u8]) -> [u8; 32] {
        draw(&self.beacon_digest(round), tag, round, entropy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_entropy_is_the_cbor_byte_string() {
        // t01000: CBOR byte string (0x43) of protocol 0 and LEB128(1000).
        assert_eq!(
            address_entropy(&Address::new_id(1000)),
            vec![0x43, 0x00, 0xe8, 0x07]
        );
    }

    #[test]
    fn randomness_separates_domains_rounds_and_entropy() {
        let digest = [7u8; 32];
        let base = draw(&digest, 1, 10, b"e");
        assert_ne!(base, draw(&digest, 2, 10, b"e"));
        assert_ne!(base, draw(&digest, 1, 11, b"e"));
        assert_ne!(base, draw(&digest, 1, 10, b"f"));
        let beacon = Beacon::new([1; 32]);
        assert_eq!(beacon.entry(5), beacon.entry(5));
        assert_ne!(beacon.digest(5), Beacon::new([2; 32]).digest(5));
    }
}
