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
