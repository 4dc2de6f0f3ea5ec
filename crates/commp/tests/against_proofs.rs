//! The piece commitment and CommD agree with `filecoin-proofs-api`'s own functions on random
//! payloads of many sizes, fed in random chunkings, and on random lists of pieces.

use std::io::{Cursor, Read};

use filecoin_proofs_api::seal::{compute_comm_d, generate_piece_commitment};
use filecoin_proofs_api::{PieceInfo, RegisteredSealProof, UnpaddedBytesAmount};
use nelumbo_commp::{
    CommPHasher, Commitment, PaddedPieceSize, Parallelism, SectorPiece, SectorSize, commd, commp,
    zero_piece_commitment,
};
use proptest::prelude::*;

/// The proofs library's piece commitment of `payload`, zero-padded to the smallest piece.
fn proofs_commp(payload: &[u8]) -> Commitment {
    let piece = PaddedPieceSize::for_payload(payload.len() as u64).expect("fits");
    let info = generate_piece_commitment(
        RegisteredSealProof::StackedDrg64GiBV1_1,
        // The library reads exactly the unpadded piece size: the zero padding is ours to add.
        Cursor::new(payload)
            .chain(std::io::repeat(0))
            .take(piece.unpadded().bytes()),
        UnpaddedBytesAmount(piece.unpadded().bytes()),
    )
    .expect("proofs commp");
    Commitment(info.commitment)
}

/// Sizes at and around every boundary: 1, 65, 127, 128, one under and over each power of two,
/// and around the hasher's chunk (1,040,384) and minimum batch (4,161,536) sizes.
fn boundary_sizes() -> Vec<usize> {
    let mut sizes = vec![1, 2, 31, 32, 33, 63, 64, 65, 126, 127, 128, 129, 254, 255];
    for k in 8..=23 {
        let p = 1usize << k;
        sizes.extend([p - 1, p, p + 1]);
    }
    for base in [127 * 8192, 127 * 8192 * 4] {
        sizes.extend([base - 1, base, base + 1, 2 * base + 127 * 5 + 3]);
    }
    sizes
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn commp_matches_the_proofs_library_at_every_boundary() {
    for (i, len) in boundary_sizes().into_iter().enumerate() {
        let data = payload(len, i as u64 + 7);
        let ours = commp(&data).expect("commp");
        assert_eq!(
            ours.commitment,
            proofs_commp(&data),
            "payload of {len} bytes"
        );
        assert_eq!(ours.payload_size, len as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn commp_matches_in_any_chunking(
        len in 1usize..3_000_000,
        seed in any::<u64>(),
        cuts in proptest::collection::vec(1usize..1_200_000, 0..8),
        sequential in any::<bool>(),
    ) {
        let data = payload(len, seed);
        let parallelism = if sequential { Parallelism::Sequential } else { Parallelism::Global };
        let mut hasher = CommPHasher::with_parallelism(parallelism);
        let mut rest = &data[..];
        for cut in cuts {
            let (head, tail) = rest.split_at(cut.min(rest.len()));
            hasher.update(head).expect("update");
            rest = tail;
        }
        hasher.update(rest).expect("update");
        let ours = hasher.finish().expect("finish");
        prop_assert_eq!(ours.commitment, proofs_commp(&data));
    }

    #[test]
    fn commd_matches_the_proofs_library(
        sizes in proptest::collection::vec(7u32..=11, 1..12),
        seed in any::<u64>(),
    ) {
        let sector = SectorSize::KIB_2;
        // Pieces in order, kept only while they fit with alignment, as a sector is packed.
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for (i, height) in sizes.into_iter().enumerate() {
            let size = PaddedPieceSize::new(1 << height).expect("valid");
            let start = offset.next_multiple_of(size.bytes());
            if start + size.bytes() > sector.bytes() {
                continue;
            }
            let data = payload(size.unpadded().bytes() as usize, seed ^ i as u64);
            pieces.push(SectorPiece { commitment: commp(&data).expect("commp").commitment, size });
            offset = start + size.bytes();
        }
        // The proofs library wants the sector filled, as a sealing pipeline fills it with
        // padding pieces; ours fills the tail with zeros itself, so both must agree.
        let mut filled = pieces.clone();
        while offset < sector.bytes() {
            let size = PaddedPieceSize::new(1 << offset.trailing_zeros().min(sector.bytes().trailing_zeros())).expect("valid");
            let size = if offset + size.bytes() > sector.bytes() {
                PaddedPieceSize::new(sector.bytes() - offset).expect("power of two")
            } else {
                size
            };
            filled.push(SectorPiece { commitment: zero_piece_commitment(size), size });
            offset += size.bytes();
        }
        let infos: Vec<PieceInfo> = filled
            .iter()
            .map(|p| PieceInfo {
                commitment: p.commitment.0,
                size: UnpaddedBytesAmount(p.size.unpadded().bytes()),
            })
            .collect();
        let theirs = compute_comm_d(RegisteredSealProof::StackedDrg2KiBV1_1, &infos).expect("comm_d");
        prop_assert_eq!(commd(sector, &filled).expect("commd").0, theirs);
        prop_assert_eq!(commd(sector, &pieces).expect("commd").0, theirs);
    }
}

#[test]
fn commd_refuses_pieces_that_do_not_fit() {
    let piece = |height: u32| SectorPiece {
        commitment: zero_piece_commitment(PaddedPieceSize::new(1 << height).expect("valid")),
        size: PaddedPieceSize::new(1 << height).expect("valid"),
    };
    // 128 bytes, then a 1 KiB piece aligned at 1 KiB, then another 1 KiB: 3 KiB > 2 KiB.
    let err = commd(SectorSize::KIB_2, &[piece(7), piece(10), piece(10)])
        .expect_err("overfull sector accepted");
    assert!(
        err.to_string().contains("more than the 2KiB sector"),
        "{err}"
    );
    let empty = commd(SectorSize::KIB_2, &[]).expect("empty sector");
    assert_eq!(empty, zero_piece_commitment(SectorSize::KIB_2.padded()));
}
