//! Fr32 padding: every 127 bytes of payload become 128 bytes, four 32-byte field elements whose
//! top two bits are zero, so each fits the BLS12-381 scalar field.
//!
//! Bits are taken little-endian: output element `k` holds payload bits `254k .. 254k+254`. The
//! element boundaries fall at bit shifts 0, 6, 4 and 2 of bytes 0, 31, 63 and 95, so each element
//! is a shifted 33-byte window read as four 64-bit words.

/// Payload bytes per padded quad.
pub const UNPADDED_QUAD: usize = 127;
/// Padded bytes per quad.
pub const PADDED_QUAD: usize = 128;

const TOP_TWO_BITS_CLEAR: u64 = u64::MAX >> 2;

/// Pads one 127-byte quad into 128 bytes.
#[inline]
pub fn pad_quad(input: &[u8; UNPADDED_QUAD], out: &mut [u8; PADDED_QUAD]) {
    // (byte offset, bit shift) of each element's first bit.
    const STARTS: [(usize, u32); 4] = [(0, 0), (31, 6), (63, 4), (95, 2)];
    for (k, (offset, shift)) in STARTS.into_iter().enumerate() {
        let words = window(input, offset);
        let mut element = [0u64; 4];
        for j in 0..4 {
            element[j] = if shift == 0 {
                words[j]
            } else {
                (words[j] >> shift) | (words[j + 1] << (64 - shift))
            };
        }
        element[3] &= TOP_TWO_BITS_CLEAR;
        for (j, word) in element.iter().enumerate() {
            let at = 32 * k + 8 * j;
            out[at..at + 8].copy_from_slice(&word.to_le_bytes());
        }
    }
}

/// Reads up to 40 bytes from `offset` as five little-endian words, zero past the end of input.
#[inline(always)]
fn window(input: &[u8; UNPADDED_QUAD], offset: usize) -> [u64; 5] {
    let mut bytes = [0u8; 40];
    let end = (offset + 40).min(UNPADDED_QUAD);
    bytes[..end - offset].copy_from_slice(&input[offset..end]);
    std::array::from_fn(|j| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[8 * j..8 * j + 8]);
        u64::from_le_bytes(w)
    })
}

/// Pads whole quads: `input.len()` must be a multiple of 127 and `out` 128/127 of it.
///
/// # Panics
/// If the lengths do not match; callers size the buffers.
pub fn pad(input: &[u8], out: &mut [u8]) {
    assert_eq!(
        input.len() % UNPADDED_QUAD,
        0,
        "fr32 input must be whole quads"
    );
    assert_eq!(
        out.len(),
        input.len() / UNPADDED_QUAD * PADDED_QUAD,
        "fr32 output size"
    );
    for (quad, padded) in input
        .chunks_exact(UNPADDED_QUAD)
        .zip(out.chunks_exact_mut(PADDED_QUAD))
    {
        let quad: &[u8; UNPADDED_QUAD] = quad.try_into().unwrap_or_else(|_| unreachable!());
        let padded: &mut [u8; PADDED_QUAD] = padded.try_into().unwrap_or_else(|_| unreachable!());
        pad_quad(quad, padded);
    }
}

/// Removes the padding of one quad: the inverse of [`pad_quad`].
pub fn unpad_quad(input: &[u8; PADDED_QUAD], out: &mut [u8; UNPADDED_QUAD]) {
    // Collect the 4 × 254 payload bits into a bit accumulator, 64 at a time.
    let mut acc: u128 = 0;
    let mut acc_bits = 0u32;
    let mut written = 0usize;
    let mut staging = [0u8; 128];
    for element in input.chunks_exact(32) {
        for (j, word) in element.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let (value, bits) = if j == 3 {
                (u64::from_le_bytes(w) & TOP_TWO_BITS_CLEAR, 62)
            } else {
                (u64::from_le_bytes(w), 64)
            };
            acc |= u128::from(value) << acc_bits;
            acc_bits += bits;
            while acc_bits >= 64 {
                staging[written..written + 8].copy_from_slice(&(acc as u64).to_le_bytes());
                written += 8;
                acc >>= 64;
                acc_bits -= 64;
            }
        }
    }
    // 1016 bits = 15 full words + 56 bits left.
    staging[written..written + 8].copy_from_slice(&(acc as u64).to_le_bytes());
    out.copy_from_slice(&staging[..UNPADDED_QUAD]);
}

/// Removes padding from whole quads: the inverse of [`pad`].
///
/// # Panics
/// If the lengths do not match.
pub fn unpad(input: &[u8], out: &mut [u8]) {
    assert_eq!(
        input.len() % PADDED_QUAD,
        0,
        "fr32 padded input must be whole quads"
    );
    assert_eq!(
        out.len(),
        input.len() / PADDED_QUAD * UNPADDED_QUAD,
        "fr32 output size"
    );
    for (padded, quad) in input
        .chunks_exact(PADDED_QUAD)
        .zip(out.chunks_exact_mut(UNPADDED_QUAD))
    {
        let padded: &[u8; PADDED_QUAD] = padded.try_into().unwrap_or_else(|_| unreachable!());
        let quad: &mut [u8; UNPADDED_QUAD] = quad.try_into().unwrap_or_else(|_| unreachable!());
        unpad_quad(padded, quad);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition, bit by bit: output bit `256k + i` is input bit `254k + i` for i < 254.
    fn pad_reference(input: &[u8; 127]) -> [u8; 128] {
        let bit = |i: usize| (input[i / 8] >> (i % 8)) & 1;
        let mut out = [0u8; 128];
        for k in 0..4 {
            for i in 0..254 {
                let o = 256 * k + i;
                out[o / 8] |= bit(254 * k + i) << (o % 8);
            }
        }
        out
    }

    #[test]
    fn all_ones_leave_the_top_bits_clear() {
        let mut out = [0u8; 128];
        pad_quad(&[0xff; 127], &mut out);
        for k in 0..4 {
            assert_eq!(out[32 * k + 31], 0x3f);
            assert!(out[32 * k..32 * k + 31].iter().all(|&b| b == 0xff));
        }
    }

    proptest! {
        #[test]
        fn pad_matches_the_bit_definition(input in proptest::array::uniform32(any::<u8>()),
                                          rest in proptest::collection::vec(any::<u8>(), 95)) {
            let mut quad = [0u8; 127];
            quad[..32].copy_from_slice(&input);
            quad[32..].copy_from_slice(&rest);
            let mut out = [0u8; 128];
            pad_quad(&quad, &mut out);
            prop_assert_eq!(out, pad_reference(&quad));
        }

        #[test]
        fn unpad_inverts_pad(data in proptest::collection::vec(any::<u8>(), 127 * 3)) {
            let mut padded = vec![0u8; 128 * 3];
            pad(&data, &mut padded);
            let mut back = vec![0u8; 127 * 3];
            unpad(&padded, &mut back);
            prop_assert_eq!(back, data);
        }
    }
}
