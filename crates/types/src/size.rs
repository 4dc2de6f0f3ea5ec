//! Sector sizes and piece sizes, with Filecoin's padded/unpadded arithmetic.
//!
//! A piece is stored fr32-padded: every 127 bytes of payload become 128 bytes, so a piece of
//! padded size `2^n` (at least 128 bytes) carries `2^n / 128 * 127` payload bytes.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("unsupported sector size {0}: use one of 2KiB, 8MiB, 512MiB, 32GiB, 64GiB")]
    UnsupportedSectorSize(String),
    #[error("padded piece size {0} is invalid: it must be a power of two of at least 128 bytes")]
    InvalidPadded(u64),
    #[error(
        "unpadded piece size {0} is invalid: it must be 127 times a power of two (127, 254, 508, ...)"
    )]
    InvalidUnpadded(u64),
}

/// A sector size that Filecoin's proofs support.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct SectorSize(u64);

impl SectorSize {
    pub const KIB_2: SectorSize = SectorSize(2 << 10);
    pub const MIB_8: SectorSize = SectorSize(8 << 20);
    pub const MIB_512: SectorSize = SectorSize(512 << 20);
    pub const GIB_32: SectorSize = SectorSize(32 << 30);
    pub const GIB_64: SectorSize = SectorSize(64 << 30);

    /// Every supported size, smallest first.
    pub const ALL: [SectorSize; 5] = [
        Self::KIB_2,
        Self::MIB_8,
        Self::MIB_512,
        Self::GIB_32,
        Self::GIB_64,
    ];

    /// The largest supported sector size.
    pub const LARGEST: SectorSize = Self::GIB_64;

    /// Accepts `bytes` only if it is one of the supported sector sizes.
    pub fn new(bytes: u64) -> Result<Self, SizeError> {
        Self::ALL
            .into_iter()
            .find(|s| s.0 == bytes)
            .ok_or_else(|| SizeError::UnsupportedSectorSize(bytes.to_string()))
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The sector as one padded piece.
    pub const fn padded(self) -> PaddedPieceSize {
        PaddedPieceSize(self.0)
    }

    fn index(self) -> i64 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as i64
    }

    /// The on-chain `RegisteredSealProof` number of its interactive PoRep (`StackedDrg*V1_1`).
    pub fn seal_proof_number(self) -> i64 {
        5 + self.index()
    }

    /// The on-chain `RegisteredPoStProof` number of its WindowPoSt (`StackedDrgWindow*V1_1`).
    pub fn window_post_proof_number(self) -> i64 {
        10 + self.index()
    }

    /// The on-chain `RegisteredPoStProof` number of its WinningPoSt (`StackedDrgWinning*V1`).
    pub fn winning_post_proof_number(self) -> i64 {
        self.index()
    }

    /// The sector size of an on-chain `RegisteredSealProof` number (any PoRep variant).
    pub fn from_seal_proof_number(number: i64) -> Option<Self> {
        (0..20)
            .contains(&number)
            .then(|| Self::ALL[(number % 5) as usize])
    }

    /// The sector size of an on-chain `RegisteredPoStProof` number.
    pub fn from_post_proof_number(number: i64) -> Option<Self> {
        (0..15)
            .contains(&number)
            .then(|| Self::ALL[(number % 5) as usize])
    }

    /// The payload bytes a sector can hold once fr32 padding is accounted for.
    pub const fn unpadded(self) -> UnpaddedPieceSize {
        self.padded().unpadded()
    }
}

impl From<SectorSize> for u64 {
    fn from(s: SectorSize) -> u64 {
        s.0
    }
}

impl TryFrom<u64> for SectorSize {
    type Error = SizeError;
    fn try_from(bytes: u64) -> Result<Self, SizeError> {
        Self::new(bytes)
    }
}

impl fmt::Display for SectorSize {
    /// Prints sizes the way operators write them: `2KiB`, `8MiB`, `32GiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
        for (unit, shift) in UNITS {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for SectorSize {
    type Err = SizeError;

    /// Accepts `2KiB`, `8MiB`, `512MiB`, `32GiB`, `64GiB` (case-insensitive, `KB`/`K` as
    /// binary units too) or the plain number of bytes.
    fn from_str(s: &str) -> Result<Self, SizeError> {
        let unsupported = || SizeError::UnsupportedSectorSize(s.to_string());
        let trimmed = s.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: u64 = number.parse().map_err(|_| unsupported())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            _ => return Err(unsupported()),
        };
        let bytes = number.checked_shl(shift).filter(|b| b >> shift == number);
        bytes
            .and_then(|b| Self::new(b).ok())
            .ok_or_else(unsupported)
    }
}

/// The size of a piece after fr32 padding: a power of two, at least 128 bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct PaddedPieceSize(u64);

impl PaddedPieceSize {
    pub const MIN: PaddedPieceSize = PaddedPieceSize(128);

    pub fn new(bytes: u64) -> Result<Self, SizeError> {
        if bytes < 128 || !bytes.is_power_of_two() {
            return Err(SizeError::InvalidPadded(bytes));
        }
        Ok(Self(bytes))
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn unpadded(self) -> UnpaddedPieceSize {
        UnpaddedPieceSize(self.0 - self.0 / 128)
    }

    /// The number of 32-byte leaves of the piece's binary Merkle tree.
    pub const fn leaves(self) -> u64 {
        self.0 / 32
    }

    /// The height of the piece's binary Merkle tree (0 for a single 32-byte leaf).
    pub const fn tree_height(self) -> u32 {
        self.leaves().trailing_zeros()
    }

    /// The smallest padded piece that holds `payload` bytes after fr32 padding.
    ///
    /// Returns `None` when no power of two fits (only for payloads near `u64::MAX`).
    pub fn for_payload(payload: u64) -> Option<Self> {
        let quads = payload.div_ceil(127).max(1);
        let padded = quads.checked_mul(128)?.checked_next_power_of_two()?;
        Some(Self(padded))
    }
}

impl From<PaddedPieceSize> for u64 {
    fn from(s: PaddedPieceSize) -> u64 {
        s.0
    }
}

impl TryFrom<u64> for PaddedPieceSize {
    type Error = SizeError;
    fn try_from(bytes: u64) -> Result<Self, SizeError> {
        Self::new(bytes)
    }
}

impl fmt::Display for PaddedPieceSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The payload capacity of a piece: 127 times a power of two.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct UnpaddedPieceSize(u64);

impl UnpaddedPieceSize {
    pub fn new(bytes: u64) -> Result<Self, SizeError> {
        if bytes < 127 || !bytes.is_multiple_of(127) || !(bytes / 127).is_power_of_two() {
            return Err(SizeError::InvalidUnpadded(bytes));
        }
        Ok(Self(bytes))
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn padded(self) -> PaddedPieceSize {
        PaddedPieceSize(self.0 + self.0 / 127)
    }
}

impl From<UnpaddedPieceSize> for u64 {
    fn from(s: UnpaddedPieceSize) -> u64 {
        s.0
    }
}

impl TryFrom<u64> for UnpaddedPieceSize {
    type Error = SizeError;
    fn try_from(bytes: u64) -> Result<Self, SizeError> {
        Self::new(bytes)
    }
}

impl fmt::Display for UnpaddedPieceSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sector_sizes_parse_and_print() {
        let table = [
            ("2KiB", 2048),
            ("2kib", 2048),
            ("2048", 2048),
            ("8MiB", 8 << 20),
            ("512MiB", 512 << 20),
            ("32GiB", 32 << 30),
            ("64G", 64 << 30),
        ];
        for (text, bytes) in table {
            let size: SectorSize = text.parse().expect(text);
            assert_eq!(size.bytes(), bytes, "{text}");
        }
        assert_eq!(SectorSize::KIB_2.to_string(), "2KiB");
        assert_eq!(SectorSize::MIB_512.to_string(), "512MiB");
        assert_eq!(SectorSize::GIB_64.to_string(), "64GiB");
    }

    #[test]
    fn unsupported_sector_sizes_name_the_valid_ones() {
        for bad in [
            "4KiB",
            "1GiB",
            "",
            "KiB",
            "2XB",
            "99999999999999999999G",
            "-2KiB",
        ] {
            let err = bad.parse::<SectorSize>().expect_err(bad);
            assert!(err.to_string().contains("2KiB, 8MiB"), "{err}");
        }
    }

    #[test]
    fn proof_numbers_match_the_chain() {
        assert_eq!(SectorSize::KIB_2.seal_proof_number(), 5);
        assert_eq!(SectorSize::GIB_32.seal_proof_number(), 8);
        assert_eq!(SectorSize::GIB_32.window_post_proof_number(), 13);
        assert_eq!(SectorSize::GIB_32.winning_post_proof_number(), 3);
        assert_eq!(
            SectorSize::from_seal_proof_number(8),
            Some(SectorSize::GIB_32)
        );
        assert_eq!(
            SectorSize::from_post_proof_number(10),
            Some(SectorSize::KIB_2)
        );
        assert_eq!(SectorSize::from_post_proof_number(15), None);
    }

    #[test]
    fn piece_sizes() {
        assert_eq!(
            PaddedPieceSize::new(128).map(|p| p.unpadded().bytes()),
            Ok(127)
        );
        assert_eq!(
            UnpaddedPieceSize::new(1016).map(|u| u.padded().bytes()),
            Ok(1024)
        );
        assert!(PaddedPieceSize::new(64).is_err());
        assert!(PaddedPieceSize::new(384).is_err());
        assert!(UnpaddedPieceSize::new(128).is_err());
        assert!(UnpaddedPieceSize::new(381).is_err());
        assert_eq!(SectorSize::KIB_2.unpadded().bytes(), 2032);
        assert_eq!(PaddedPieceSize::MIN.tree_height(), 2);
    }

    #[test]
    fn payload_fits_smallest_piece() {
        let table = [
            (0, 128),
            (1, 128),
            (127, 128),
            (128, 256),
            (254, 256),
            (255, 512),
        ];
        for (payload, padded) in table {
            assert_eq!(
                PaddedPieceSize::for_payload(payload).map(u64::from),
                Some(padded),
                "{payload}"
            );
        }
    }

    proptest! {
        #[test]
        fn for_payload_is_the_smallest_fit(payload in 0u64..(1 << 40)) {
            let padded = PaddedPieceSize::for_payload(payload).expect("fits");
            prop_assert!(padded.unpadded().bytes() >= payload);
            if padded.bytes() > 128 {
                prop_assert!(padded.unpadded().bytes() / 2 < payload);
            }
        }

        #[test]
        fn padded_unpadded_round_trip(height in 7u32..40) {
            let padded = PaddedPieceSize::new(1 << height).expect("valid");
            prop_assert_eq!(padded.unpadded().padded(), padded);
            prop_assert_eq!(UnpaddedPieceSize::new(padded.unpadded().bytes()), Ok(padded.unpadded()));
        }
    }
}
