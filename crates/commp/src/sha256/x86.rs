//! SHA-256 of 64-byte messages with the x86 SHA extensions, four messages interleaved.
//!
//! The state is kept the way the `sha256rnds2` instruction wants it: one register holds the
//! words ABEF, the other CDGH. Each step of the loop below runs four rounds for every message.

use std::arch::x86_64::*;

use super::{INITIAL_STATE, PADDING_SCHEDULE_PLUS_K, ROUND_CONSTANTS};

/// Messages hashed side by side. Four measured best on the 2-core AMD EPYC development machines
/// (two: 0.8 of the raw SHA-256 rate, four: about 1.0).
const LANES: usize = 4;

pub fn available() -> bool {
    is_x86_feature_detected!("sha")
        && is_x86_feature_detected!("sse4.1")
        && is_x86_feature_detected!("ssse3")
}

/// See [`super::hash_level`]: hashes the `output.len() / 32` pairs at `input` into `output`,
/// which may be `input` itself.
///
/// # Safety
/// The CPU must support `sha`, `sse4.1` and `ssse3` ([`available`]); `input` must be valid for
/// reads of `64 * pairs` bytes and `output` for writes of `32 * pairs` bytes; if they overlap,
/// `output` must start at `input`.
#[target_feature(enable = "sha,sse4.1,ssse3")]
pub unsafe fn hash_level(input: *const u8, output: *mut u8, pairs: usize) {
    let mut i = 0;
    while i + LANES <= pairs {
        // SAFETY: pairs i..i+LANES are in bounds; `hash_lanes` reads all of them before it
        // writes parents i..i+LANES, which land on bytes at or before the pairs just read
        // when the level is hashed in place.
        unsafe { hash_lanes::<LANES>(input, output, i) };
        i += LANES;
    }
    while i < pairs {
        // SAFETY: as above, one pair at a time.
        unsafe { hash_lanes::<1>(input, output, i) };
        i += 1;
    }
}

/// Hashes pairs `first .. first + N` at `input` and writes their parents to `output`.
///
/// # Safety
/// `input` valid for reads of `64 * (first + N)` bytes, `output` for writes of
/// `32 * (first + N)`; CPU features as above.
#[inline(always)]
unsafe fn hash_lanes<const N: usize>(input: *const u8, output: *mut u8, first: usize) {
    // SAFETY: the caller guarantees the bounds and the CPU features; every load and store
    // below is unaligned and within those bounds.
    unsafe {
        let byte_swap = _mm_set_epi64x(0x0c0d0e0f_08090a0b, 0x04050607_00010203);
        let (initial_abef, initial_cdgh) = initial_state();

        // The message schedule, four words per register, loaded big-endian.
        let mut w = [[_mm_setzero_si128(); 16]; N];
        for (n, schedule) in w.iter_mut().enumerate() {
            let message = input.add(64 * (first + n)) as *const __m128i;
            for (j, words) in schedule.iter_mut().take(4).enumerate() {
                *words = _mm_shuffle_epi8(_mm_loadu_si128(message.add(j)), byte_swap);
            }
        }

        // Block 1: the message itself.
        let mut abef = [initial_abef; N];
        let mut cdgh = [initial_cdgh; N];
        for i in 0..16 {
            let k = _mm_loadu_si128(ROUND_CONSTANTS.as_ptr().add(4 * i) as *const __m128i);
            for n in 0..N {
                if i >= 4 {
                    let s = &mut w[n];
                    let sigma0 = _mm_sha256msg1_epu32(s[i - 4], s[i - 3]);
                    let plus = _mm_add_epi32(sigma0, _mm_alignr_epi8(s[i - 1], s[i - 2], 4));
                    s[i] = _mm_sha256msg2_epu32(plus, s[i - 1]);
                }
                let wk = _mm_add_epi32(w[n][i], k);
                cdgh[n] = _mm_sha256rnds2_epu32(cdgh[n], abef[n], wk);
                abef[n] = _mm_sha256rnds2_epu32(abef[n], cdgh[n], _mm_shuffle_epi32(wk, 0x0e));
            }
        }
        for n in 0..N {
            abef[n] = _mm_add_epi32(abef[n], initial_abef);
            cdgh[n] = _mm_add_epi32(cdgh[n], initial_cdgh);
        }

        // Block 2: the constant padding block, schedule precomputed.
        let (after_abef, after_cdgh) = (abef, cdgh);
        for i in 0..16 {
            let wk = _mm_loadu_si128(PADDING_SCHEDULE_PLUS_K.as_ptr().add(4 * i) as *const __m128i);
            let wk_high = _mm_shuffle_epi32(wk, 0x0e);
            for n in 0..N {
                cdgh[n] = _mm_sha256rnds2_epu32(cdgh[n], abef[n], wk);
                abef[n] = _mm_sha256rnds2_epu32(abef[n], cdgh[n], wk_high);
            }
        }

        // Back to DCBA / HGFE order, big-endian bytes, top two bits cleared.
        let truncate = _mm_set_epi64x(0x3fff_ffff_ffff_ffff, -1);
        for n in 0..N {
            let abef = _mm_add_epi32(abef[n], after_abef[n]);
            let cdgh = _mm_add_epi32(cdgh[n], after_cdgh[n]);
            let feba = _mm_shuffle_epi32(abef, 0x1b);
            let dchg = _mm_shuffle_epi32(cdgh, 0xb1);
            let dcba = _mm_blend_epi16(feba, dchg, 0xf0);
            let hgfe = _mm_alignr_epi8(dchg, feba, 8);
            let out = output.add(32 * (first + n)) as *mut __m128i;
            _mm_storeu_si128(out, _mm_shuffle_epi8(dcba, byte_swap));
            let high = _mm_and_si128(_mm_shuffle_epi8(hgfe, byte_swap), truncate);
            _mm_storeu_si128(out.add(1), high);
        }
    }
}

/// The SHA-256 initial state as (ABEF, CDGH).
#[inline(always)]
unsafe fn initial_state() -> (__m128i, __m128i) {
    // SAFETY: reads the eight words of `INITIAL_STATE`; SSE4.1 is enabled by the caller.
    unsafe {
        let dcba = _mm_loadu_si128(INITIAL_STATE.as_ptr() as *const __m128i);
        let hgfe = _mm_loadu_si128(INITIAL_STATE.as_ptr().add(4) as *const __m128i);
        let cdab = _mm_shuffle_epi32(dcba, 0xb1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1b);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xf0),
        )
    }
}
