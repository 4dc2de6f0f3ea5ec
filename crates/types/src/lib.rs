//! Nelumbo's domain types: sector and piece sizes, chain identifiers, randomness. No IO.

mod ids;
mod size;

pub use ids::{ActorId, Randomness, SectorNumber};
pub use size::{PaddedPieceSize, SectorSize, SizeError, UnpaddedPieceSize};
