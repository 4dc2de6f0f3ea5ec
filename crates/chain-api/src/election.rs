//! Nelumbo devnet elections, shared by the chain (which checks won blocks) and the hub (which
//! decides whether to spend seconds on a WinningPoSt).
//!
//! The rule stands in for Filecoin's Poisson sortition: a miner wins epoch `E` (win count 1)
//! if the first 16 bytes of BLAKE2b-256 of its election proof (the worker's BLS signature
//! over the election randomness of `E`), read as a fraction of 2^128, fall below
//! `rate × miner power / network power`.

use num_bigint::BigInt;

/// Whether an election proof wins at `rate_permille` with this share of power.
pub fn wins(
    vrf_proof: &[u8],
    rate_permille: u64,
    miner_power: &BigInt,
    network_power: &BigInt,
) -> bool {
    let zero = BigInt::from(0u8);
    if *miner_power <= zero || *network_power <= zero {
        return false;
    }
    let hash = blake2b_simd::Params::new().hash_length(32).hash(vrf_proof);
    let mut draw = [0u8; 16];
    draw.copy_from_slice(&hash.as_bytes()[..16]);
    let draw = BigInt::from(u128::from_be_bytes(draw));
    let threshold = (BigInt::from(1u8) << 128u32) * BigInt::from(rate_permille) * miner_power
        / (BigInt::from(1000u32) * network_power);
    draw < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odds_follow_the_rate_and_power() {
        let all = BigInt::from(100);
        let wins_at = |rate: u64, power: i64| {
            (0u32..2000)
                .filter(|i| wins(&i.to_be_bytes(), rate, &BigInt::from(power), &all))
                .count()
        };
        assert_eq!(
            wins_at(1000, 100),
            2000,
            "rate 1000 with all the power wins always"
        );
        assert_eq!(wins_at(500, 0), 0, "no power, no wins");
        let half = wins_at(500, 100);
        assert!((850..1150).contains(&half), "{half} of 2000 at rate 500");
        let quarter = wins_at(500, 50);
        assert!(
            (400..600).contains(&quarter),
            "{quarter} of 2000 at half the power"
        );
    }
}
