//! The node hash of Filecoin's piece trees: SHA-256 of two 32-byte children, with the two most
//! significant bits of the last byte cleared so the result is a BLS12-381 field element.
//!
//! Every node hashes exactly one 64-byte message, so the second SHA-256 block (the padding) is
//! always the same. On x86-64 with the SHA extensions the bulk path hashes four nodes at once,
//! interleaved, with that second block's message schedule precomputed: a single SHA-256 stream
//! is latency-bound on the `sha256rnds2` instruction, and independent streams fill the gaps.
//! Elsewhere it falls back to the `sha2` crate's block function.

#[cfg(target_arch = "x86_64")]
mod x86;

use sha2::Digest;

/// One node of a piece tree.
pub type Node = [u8; 32];

const ROUND_CONSTANTS: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The second block of every 64-byte message: `0x80`, zeros, and the length (512 bits).
const PADDING_BLOCK: [u8; 64] = {
    let mut block = [0u8; 64];
    block[0] = 0x80;
    block[62] = 0x02;
    block
};

/// The padding block's message schedule with the round constants already added.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PADDING_SCHEDULE_PLUS_K: [u32; 64] = {
    let mut w = [0u32; 64];
    let mut i = 0;
    while i < 16 {
        w[i] = u32::from_be_bytes([
            PADDING_BLOCK[4 * i],
            PADDING_BLOCK[4 * i + 1],
            PADDING_BLOCK[4 * i + 2],
            PADDING_BLOCK[4 * i + 3],
        ]);
        i += 1;
    }
    while i < 64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
        i += 1;
    }
    let mut j = 0;
    while j < 64 {
        w[j] = w[j].wrapping_add(ROUND_CONSTANTS[j]);
        j += 1;
    }
    w
};

/// Hashes two children into their parent.
pub fn hash_node(left: &Node, right: &Node) -> Node {
    let mut out: Node = sha2::Sha256::new()
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into();
    out[31] &= 0x3f;
    out
}

/// Hashes one level of a tree in place: `buf` holds `n` pairs of children (`64 * n` bytes);
/// afterwards its first `32 * n` bytes hold the `n` parents, in order.
///
/// # Panics
/// If `buf.len()` is not a multiple of 64.
pub fn hash_level_in_place(buf: &mut [u8]) {
    assert_eq!(buf.len() % 64, 0, "a tree level is whole pairs of nodes");
    let pairs = buf.len() / 64;
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        let at = buf.as_mut_ptr();
        // SAFETY: the CPU has the SHA extensions and SSE4.1 (checked just above); `buf` holds
        // `pairs` pairs and their parents are written from its start.
        unsafe { x86::hash_level(at, at, pairs) };
        return;
    }
    for i in 0..pairs {
        let mut pair = [0u8; 64];
        pair.copy_from_slice(&buf[64 * i..64 * i + 64]);
        let parent = hash_pair_portable(&pair);
        buf[32 * i..32 * i + 32].copy_from_slice(&parent);
    }
}

/// Hashes the pairs of children in `input` into their parents in `output`.
///
/// # Panics
/// If `input` is not whole pairs or `output` is not half its size.
pub fn hash_level(input: &[u8], output: &mut [u8]) {
    assert_eq!(input.len() % 64, 0, "a tree level is whole pairs of nodes");
    assert_eq!(
        output.len() * 2,
        input.len(),
        "a level of parents is half its children"
    );
    let pairs = input.len() / 64;
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: CPU features checked; the slices have the sizes `hash_level` needs and, being
        // a shared and an exclusive borrow, do not overlap.
        unsafe { x86::hash_level(input.as_ptr(), output.as_mut_ptr(), pairs) };
        return;
    }
    for (pair, parent) in input.chunks_exact(64).zip(output.chunks_exact_mut(32)) {
        let pair: &[u8; 64] = pair.try_into().unwrap_or_else(|_| unreachable!());
        parent.copy_from_slice(&hash_pair_portable(pair));
    }
}

/// The portable path, also the reference the SIMD path is tested against.
fn hash_pair_portable(pair: &[u8; 64]) -> Node {
    let mut state = INITIAL_STATE;
    sha2::compress256(&mut state, &[(*pair).into(), PADDING_BLOCK.into()]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out[31] &= 0x3f;
    out
}

/// Whether the fast SIMD path is in use on this machine (shown in benchmarks).
pub fn accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reference(level: &[u8]) -> Vec<u8> {
        level
            .chunks_exact(64)
            .flat_map(|pair| {
                let (l, r) = pair.split_at(32);
                hash_node(
                    l.try_into().expect("32 bytes"),
                    r.try_into().expect("32 bytes"),
                )
            })
            .collect()
    }

    #[test]
    fn zero_pair_matches_the_known_commitment() {
        // The commitment of 64 zero bytes (a 64-byte piece of zeros).
        let parent = hash_node(&[0; 32], &[0; 32]);
        assert_eq!(
            hex::encode(parent),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb0b"
        );
    }

    proptest! {
        #[test]
        fn bulk_paths_match_the_node_hash(pairs in 0usize..40, seed in any::<u64>()) {
            let mut level: Vec<u8> = (0..pairs * 64)
                .map(|i| (seed.wrapping_mul(i as u64 + 1) >> 13) as u8)
                .collect();
            let expected = reference(&level);
            let portable: Vec<u8> = level
                .chunks_exact(64)
                .flat_map(|p| hash_pair_portable(p.try_into().expect("64 bytes")))
                .collect();
            prop_assert_eq!(&portable[..], &expected[..]);
            let mut parents = vec![0u8; pairs * 32];
            hash_level(&level, &mut parents);
            prop_assert_eq!(&parents[..], &expected[..]);
            hash_level_in_place(&mut level);
            prop_assert_eq!(&level[..pairs * 32], &expected[..]);
        }
    }
}
