//! Which registered proofs Nelumbo uses for each sector size, and the circuits behind them.

use std::fmt;

use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};
use nelumbo_types::SectorSize;

/// The proofs a sector of one size goes through.
///
/// Sealing uses the interactive PoRep at API version 1.1 (`StackedDrg*V1_1`), WindowPoSt the
/// grinding-resistant version 1.2 and WinningPoSt version 1, as Filecoin mainnet does today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SectorProofs {
    pub sector_size: SectorSize,
    pub seal: RegisteredSealProof,
    pub window_post: RegisteredPoStProof,
    pub winning_post: RegisteredPoStProof,
}

impl SectorProofs {
    pub fn for_size(sector_size: SectorSize) -> Self {
        use RegisteredPoStProof::*;
        use RegisteredSealProof::*;
        let (seal, window_post, winning_post) = match sector_size {
            SectorSize::KIB_2 => (
                StackedDrg2KiBV1_1,
                StackedDrgWindow2KiBV1_2,
                StackedDrgWinning2KiBV1,
            ),
            SectorSize::MIB_8 => (
                StackedDrg8MiBV1_1,
                StackedDrgWindow8MiBV1_2,
                StackedDrgWinning8MiBV1,
            ),
            SectorSize::MIB_512 => (
                StackedDrg512MiBV1_1,
                StackedDrgWindow512MiBV1_2,
                StackedDrgWinning512MiBV1,
            ),
            SectorSize::GIB_32 => (
                StackedDrg32GiBV1_1,
                StackedDrgWindow32GiBV1_2,
                StackedDrgWinning32GiBV1,
            ),
            // `SectorSize` only holds supported sizes; this arm is 64 GiB.
            _ => (
                StackedDrg64GiBV1_1,
                StackedDrgWindow64GiBV1_2,
                StackedDrgWinning64GiBV1,
            ),
        };
        Self {
            sector_size,
            seal,
            window_post,
            winning_post,
        }
    }

    /// The Groth16 circuits these proofs need parameters for, in generation order.
    pub fn circuits(&self) -> [Circuit; 3] {
        [
            Circuit::new(CircuitKind::Porep, self.sector_size),
            Circuit::new(CircuitKind::WindowPost, self.sector_size),
            Circuit::new(CircuitKind::WinningPost, self.sector_size),
        ]
    }
}

/// The three SNARK circuits a storage provider proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CircuitKind {
    Porep,
    WindowPost,
    WinningPost,
}

impl fmt::Display for CircuitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CircuitKind::Porep => "PoRep",
            CircuitKind::WindowPost => "WindowPoSt",
            CircuitKind::WinningPost => "WinningPoSt",
        })
    }
}

/// One Groth16 circuit: a kind at a sector size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Circuit {
    pub kind: CircuitKind,
    pub sector_size: SectorSize,
}

impl Circuit {
    pub const fn new(kind: CircuitKind, sector_size: SectorSize) -> Self {
        Self { kind, sector_size }
    }

    /// The library's cache identifier, e.g. `stacked-proof-of-replication-...-<sha256>`.
    pub fn identifier(&self) -> anyhow::Result<String> {
        let proofs = SectorProofs::for_size(self.sector_size);
        match self.kind {
            CircuitKind::Porep => proofs.seal.circuit_identifier(),
            CircuitKind::WindowPost => proofs.window_post.circuit_identifier(),
            CircuitKind::WinningPost => proofs.winning_post.circuit_identifier(),
        }
    }
}

impl fmt::Display for Circuit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.sector_size, self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_matching_proofs() {
        for size in SectorSize::ALL {
            let proofs = SectorProofs::for_size(size);
            assert_eq!(u64::from(proofs.seal.sector_size()), size.bytes());
            assert_eq!(u64::from(proofs.window_post.sector_size()), size.bytes());
            assert_eq!(u64::from(proofs.winning_post.sector_size()), size.bytes());
            assert_eq!(
                proofs.window_post.typ(),
                filecoin_proofs_api::PoStType::Window
            );
            assert_eq!(
                proofs.winning_post.typ(),
                filecoin_proofs_api::PoStType::Winning
            );
        }
    }
}
