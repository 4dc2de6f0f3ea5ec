//! The piece directory's two backends measured in one run: indexing throughput (blocks per
//! second) and lookup latency (p50, p99) with 10 million entries, on the same machine.
//!
//! `cargo bench -p nelumbo-piecedir --bench piecedir` (PIECEDIR_BENCH_BLOCKS sets the number of
//! entries; default 10,000,000, in pieces of 1,000,000 blocks). PostgreSQL is a private server
//! started here with its default durability settings (fsync and synchronous commit on) on
//! loopback; the embedded directory commits every batch durably too.

use std::time::{Duration, Instant};

use nelumbo_piecedir::{Block, BlockSource, Embedded, PieceDirectory, Postgres, PostgresOptions};
use nelumbo_testkit::postgres::PostgresServer;
use sha2::{Digest, Sha256};

const PIECE_BLOCKS: u64 = 1_000_000;
const LOOKUPS: usize = 20_000;

fn multihash(piece: u64, block: u64) -> Vec<u8> {
    let mut hash = vec![0x12, 0x20];
    hash.extend_from_slice(&Sha256::digest(format!("{piece}/{block}")));
    hash
}

/// A piece's blocks, made as they are read (nothing held in memory).
struct Synthetic {
    piece: u64,
    next: u64,
    count: u64,
}

impl BlockSource for Synthetic {
    fn roots(&self) -> Vec<String> {
        Vec::new()
    }
    fn next_block(&mut self) -> anyhow::Result<Option<Block>> {
        if self.next == self.count {
            return Ok(None);
        }
        let block = Block {
            multihash: multihash(self.piece, self.next),
            offset: self.next * 1024 + 40,
            length: 1024,
            verified: true,
        };
        self.next += 1;
        Ok(Some(block))
    }
    fn bytes_read(&self) -> u64 {
        self.next * 1064
    }
}

struct Figures {
    blocks_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn measure(directory: &dyn PieceDirectory, total: u64) -> anyhow::Result<Figures> {
    let pieces = total.div_ceil(PIECE_BLOCKS);
    let started = Instant::now();
    for piece in 0..pieces {
        let count = PIECE_BLOCKS.min(total - piece * PIECE_BLOCKS);
        let open = move || -> anyhow::Result<Box<dyn BlockSource>> {
            Ok(Box::new(Synthetic {
                piece,
                next: 0,
                count,
            }))
        };
        let indexed = directory.add_piece(&format!("piece-{piece}"), &open)?;
        anyhow::ensure!(indexed.blocks == count);
        println!(
            "  {}: {} of {total} blocks after {:.1} s",
            directory.backend(),
            piece * PIECE_BLOCKS + count,
            started.elapsed().as_secs_f64()
        );
    }
    let blocks_per_sec = total as f64 / started.elapsed().as_secs_f64();

    // Lookups of blocks spread over every piece, one at a time, as a retrieval asks.
    let mut latencies = Vec::with_capacity(LOOKUPS);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..LOOKUPS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = state % total;
        let hash = multihash(n / PIECE_BLOCKS, n % PIECE_BLOCKS);
        let started = Instant::now();
        let places = directory.locate(&hash)?;
        latencies.push(started.elapsed());
        anyhow::ensure!(places.len() == 1, "block {n} found {} times", places.len());
    }
    latencies.sort();
    Ok(Figures {
        blocks_per_sec,
        p50: latencies[LOOKUPS / 2],
        p99: latencies[LOOKUPS * 99 / 100],
    })
}

fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::var("PIECEDIR_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    println!("piece directory benchmark: {total} entries, {LOOKUPS} lookups");

    let scratch = tempfile::tempdir()?;
    let embedded = Embedded::open(&scratch.path().join("piecedir.redb"))?;
    let e = measure(&embedded, total)?;
    let size = std::fs::metadata(scratch.path().join("piecedir.redb"))?.len();
    println!("  embedded file: {} MB", size / 1_000_000);
    drop(embedded);
    drop(scratch);

    let server = PostgresServer::start_with(&[("shared_buffers", "1GB")]);
    let postgres = Postgres::connect(&server.url(), PostgresOptions::default())?;
    let p = measure(&postgres, total)?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| backend | indexing (blocks/s) | lookup p50 | lookup p99 |");
    println!("|---|---|---|---|");
    println!(
        "| embedded (redb) | {:.0} | {:.3} ms | {:.3} ms |",
        e.blocks_per_sec,
        ms(e.p50),
        ms(e.p99)
    );
    println!(
        "| PostgreSQL (loopback) | {:.0} | {:.3} ms | {:.3} ms |",
        p.blocks_per_sec,
        ms(p.p50),
        ms(p.p99)
    );
    println!(
        "PostgreSQL / embedded: indexing {:.2}x, p99 {:.2}x",
        p.blocks_per_sec / e.blocks_per_sec,
        ms(p.p99) / ms(e.p99)
    );
    println!(
        "goals: embedded >= 500000 blocks/s and p99 < 1 ms; PostgreSQL >= 100000 blocks/s and p99 < 3 ms"
    );
    Ok(())
}
