//! Commitments of all-zero pieces, one per tree height.

use std::sync::OnceLock;

use nelumbo_types::PaddedPieceSize;

use crate::sha256::{Node, hash_node};

/// Tree heights up to 64 GiB pieces (2^31 leaves) and a margin.
pub const MAX_HEIGHT: usize = 40;

/// The root of a tree of `2^height` zero leaves.
pub fn zero_node(height: u32) -> &'static Node {
    static TABLE: OnceLock<[Node; MAX_HEIGHT + 1]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [[0u8; 32]; MAX_HEIGHT + 1];
        for h in 1..=MAX_HEIGHT {
            table[h] = hash_node(&table[h - 1], &table[h - 1]);
        }
        table
    });
    &table[height as usize]
}

/// The piece commitment of a piece of zeros (zero payload padded is zero).
pub fn zero_piece_commitment(size: PaddedPieceSize) -> crate::Commitment {
    crate::Commitment(*zero_node(size.tree_height()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_32_gib_zero_piece_matches_frc_0069() {
        // FRC-0069 test case: the empty 32 GiB piece.
        let size = PaddedPieceSize::new(32 << 30).expect("valid");
        assert_eq!(
            crate::piece_cid_v1(&zero_piece_commitment(size)).to_string(),
            "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"
        );
    }
}
