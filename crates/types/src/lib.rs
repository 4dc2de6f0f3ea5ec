//! Nelumbo's domain types: sector and piece sizes, chain identifiers, randomness. No IO.

mod ids;
mod size;
pub mod workers;

pub use ids::{ActorId, Randomness, SectorNumber};
pub use size::{PaddedPieceSize, SectorSize, SizeError, UnpaddedPieceSize};
