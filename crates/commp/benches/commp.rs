//! Piece-commitment throughput next to raw SHA-256 throughput, measured in the same run.
//!
//! A piece commitment hashes about twice the padded bytes (every level of the tree halves), so
//! its bound is half the SHA-256 rate. Targets: one thread at least 0.8 of that bound, two
//! threads at least 1.6 of it, on inputs of 256 MiB or more.
//!
//! `cargo bench -p nelumbo-commp --bench commp [-- SIZE_MIB]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use nelumbo_commp::{CommPHasher, Parallelism};
use sha2::Digest;

const ROUNDS: usize = 7;
const FEED: usize = 16 << 20;

fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let data = payload(size);
    println!(
        "input {mib} MiB, SHA extensions {}, best of {ROUNDS} rounds",
        if nelumbo_commp::sha256::accelerated() {
            "in use"
        } else {
            "not available"
        }
    );

    let two = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("thread pool"),
    );
    // Rounds interleave the three measurements so that load from elsewhere on a shared
    // machine touches all of them alike; each keeps its best round.
    let (mut sha, mut one, mut both) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        sha = sha.min(time(|| {
            std::hint::black_box(sha2::Sha256::digest(&data));
        }));
        one = one.min(time(|| commp(&data, Parallelism::Sequential)));
        both = both.min(time(|| commp(&data, Parallelism::Pool(two.clone()))));
    }
    let sha_rate = rate(size, sha);
    let bound = sha_rate / 2.0;
    let one_thread = rate(size, one);
    let two_threads = rate(size, both);

    // For reference: the proofs library's own piece commitment (one round: it is slow).
    let library = rate(size, time(|| library_commp(&data)));

    println!("raw SHA-256, 1 thread:  {:>7.0} MB/s", sha_rate);
    println!("CommP bound (SHA / 2):  {:>7.0} MB/s", bound);
    report("CommP, 1 thread: ", one_thread, bound, 0.8);
    report("CommP, 2 threads:", two_threads, bound, 1.6);
    println!(
        "filecoin-proofs-api generate_piece_commitment: {library:>7.0} MB/s = {:.2} x bound",
        library / bound
    );
}

fn library_commp(data: &[u8]) {
    use std::io::Read;
    let piece = nelumbo_commp::PaddedPieceSize::for_payload(data.len() as u64).expect("fits");
    let unpadded = piece.unpadded().bytes();
    let source = std::io::Cursor::new(data)
        .chain(std::io::repeat(0))
        .take(unpadded);
    let info = filecoin_proofs_api::seal::generate_piece_commitment(
        filecoin_proofs_api::RegisteredSealProof::StackedDrg64GiBV1_1,
        source,
        filecoin_proofs_api::UnpaddedBytesAmount(unpadded),
    )
    .expect("library commp");
    std::hint::black_box(info);
}

fn commp(data: &[u8], parallelism: Parallelism) {
    let mut hasher = CommPHasher::with_parallelism(parallelism);
    // Fed in blocks, as `nelumbo commp` reads a file.
    for piece in data.chunks(FEED) {
        hasher.update(piece).expect("update");
    }
    std::hint::black_box(hasher.finish().expect("finish"));
}

fn report(name: &str, rate: f64, bound: f64, target: f64) {
    let ratio = rate / bound;
    let verdict = if ratio >= target { "meets" } else { "MISSES" };
    println!("{name} {rate:>7.0} MB/s = {ratio:.2} x bound ({verdict} target {target})");
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn rate(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e6
}

fn payload(size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..size / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}
