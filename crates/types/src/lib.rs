//! Nelumbo's domain types: sector and piece sizes today, ids and epochs as they arrive. No IO.

mod size;

pub use size::{PaddedPieceSize, SectorSize, SizeError, UnpaddedPieceSize};
