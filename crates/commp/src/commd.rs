//! The unsealed sector commitment (CommD): the root over a sector's pieces in order, each
//! aligned to its own size by zero padding pieces, with zeros to the end of the sector.

use nelumbo_types::{PaddedPieceSize, SectorSize};

use crate::Commitment;
use crate::sha256::{Node, hash_node};
use crate::zero::zero_node;

/// A piece placed in a sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorPiece {
    pub commitment: Commitment,
    pub size: PaddedPieceSize,
}

/// Why a CommD could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommDError {
    #[error(
        "the pieces need {needed} bytes with alignment padding, more than the {sector_size} sector holds"
    )]
    DoesNotFit {
        needed: u64,
        sector_size: SectorSize,
    },
}

/// Where each piece lands, as padded byte offsets, once aligned.
pub fn piece_offsets(pieces: &[SectorPiece]) -> Vec<u64> {
    let mut offset = 0u64;
    pieces
        .iter()
        .map(|piece| {
            offset = offset.next_multiple_of(piece.size.bytes());
            let at = offset;
            offset += piece.size.bytes();
            at
        })
        .collect()
}

/// Computes CommD of a sector holding `pieces` in order.
pub fn commd(sector_size: SectorSize, pieces: &[SectorPiece]) -> Result<Commitment, CommDError> {
    let mut tree = AlignedTree::default();
    for piece in pieces {
        let size = piece.size.bytes();
        tree.pad_to(tree.len.next_multiple_of(size));
        tree.push(piece.commitment.0, piece.size.tree_height());
    }
    if tree.len > sector_size.bytes() {
        return Err(CommDError::DoesNotFit {
            needed: tree.len,
            sector_size,
        });
    }
    tree.pad_to(sector_size.bytes());
    Ok(Commitment(tree.root(sector_size.padded().tree_height())))
}

/// The commitment of a piece zero-padded from `from` to `to` padded bytes: the piece's tree
/// becomes the leftmost subtree and the rest is zeros. Deal pieces are padded so when a
/// proposal's piece size exceeds the smallest piece that holds the payload. `None` if `to` is
/// smaller than `from`.
pub fn pad_commitment(
    commitment: &Commitment,
    from: PaddedPieceSize,
    to: PaddedPieceSize,
) -> Option<Commitment> {
    if to.bytes() < from.bytes() {
        return None;
    }
    let mut node = commitment.0;
    let mut height = (from.bytes() / 32).trailing_zeros();
    let target = (to.bytes() / 32).trailing_zeros();
    while height < target {
        node = hash_node(&node, zero_node(height));
        height += 1;
    }
    Some(Commitment(node))
}

/// A tree built left to right from aligned subtrees.
#[derive(Default)]
struct AlignedTree {
    /// (height, root) of complete subtrees, heights strictly decreasing.
    stack: Vec<(u32, Node)>,
    /// Padded bytes covered so far.
    len: u64,
}

impl AlignedTree {
    /// Appends a subtree; its offset must be aligned to its size.
    fn push(&mut self, mut node: Node, mut height: u32) {
        self.len += 32u64 << height;
        while let Some(&(top, left)) = self.stack.last() {
            if top != height {
                break;
            }
            self.stack.pop();
            node = hash_node(&left, &node);
            height += 1;
        }
        self.stack.push((height, node));
    }

    /// Appends the largest aligned zero subtrees up to `target`.
    fn pad_to(&mut self, target: u64) {
        while self.len < target {
            let align = if self.len == 0 {
                u64::MAX
            } else {
                1 << self.len.trailing_zeros()
            };
            let gap = target - self.len;
            let size = align.min(1 << (63 - gap.leading_zeros()));
            let height = (size / 32).trailing_zeros();
            self.push(*zero_node(height), height);
        }
    }

    fn root(self, height: u32) -> Node {
        match self.stack.as_slice() {
            [(h, root)] if *h == height => *root,
            _ => *zero_node(height),
        }
    }
}

#[cfg(test)]
mod padding_tests {
    use super::*;
    use crate::zero_piece_commitment;

    fn size(bytes: u64) -> PaddedPieceSize {
        PaddedPieceSize::new(bytes).expect("size")
    }

    #[test]
    fn padding_a_piece_is_the_sector_commitment_of_that_piece_alone() {
        let zeros = zero_piece_commitment(size(128));
        assert_eq!(
            pad_commitment(&zeros, size(128), size(1024)),
            Some(zero_piece_commitment(size(1024)))
        );
        let piece = crate::commp(&[0xab; 300]).expect("commp");
        let alone = commd(
            SectorSize::KIB_2,
            &[SectorPiece {
                commitment: piece.commitment,
                size: piece.piece_size,
            }],
        )
        .expect("commd");
        assert_eq!(
            pad_commitment(&piece.commitment, piece.piece_size, size(2048)),
            Some(alone)
        );
        assert_eq!(
            pad_commitment(&piece.commitment, piece.piece_size, piece.piece_size),
            Some(piece.commitment)
        );
        assert_eq!(
            pad_commitment(&piece.commitment, size(512), size(256)),
            None
        );
    }
}
