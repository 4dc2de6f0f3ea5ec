//! Advertising a large piece against indexing it, measured in one run on the same piece:
//!
//! - the piece directory indexing a CAR of 1,000,000 blocks (read, each block hashed against
//!   its CID, written to the database in batches): blocks per second;
//! - advertising that piece to IPNI: its block list read back from the piece directory, entry
//!   chunks of 16,384 multihashes built, encoded as DAG-JSON and hashed, stored, and the
//!   advertisement signed and committed: blocks per second.
//!
//! The target: advertising at least as fast as indexing (ratio >= 1). `cargo bench -p
//! nelumbo-markets --bench indexing`; `NELUMBO_BENCH_BLOCKS` sets the number of blocks
//! (default 1,000,000; 64-byte raw blocks).

use std::io::BufWriter;
use std::time::Instant;

use cid::Cid;
use cid::multihash::Multihash;
use nelumbo_markets::indexing::{chain, context_id, ipni};
use nelumbo_markets::store::Store;
use nelumbo_piecedir::PieceDirectory;
use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let blocks: u64 = std::env::var("NELUMBO_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let car = dir.path().join("piece.car");
    let started = Instant::now();
    {
        let root = block_cid(&block_data(0));
        let mut writer = nelumbo_car::CarWriter::new(
            BufWriter::with_capacity(1 << 20, std::fs::File::create(&car)?),
            &[root],
        )?;
        for i in 0..blocks {
            let data = block_data(i);
            writer.write_block(&block_cid(&data), &data)?;
        }
        writer.finish()?;
    }
    println!(
        "prepared a CAR of {blocks} blocks ({} MB) in {:.1} s",
        std::fs::metadata(&car)?.len() / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    let store = Store::open(&dir.path().join("markets.redb"))?;
    let directory = nelumbo_piecedir::Embedded::open(&dir.path().join("piecedir.redb"))?;
    // Any valid piece CID names the piece (the directory does not check it against the data).
    let piece: Cid = "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq".parse()?;

    let started = Instant::now();
    let indexed = nelumbo_piecedir::index_car(&directory, &piece, &car)?;
    let index_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        indexed.blocks == blocks,
        "indexed {} blocks",
        indexed.blocks
    );
    let index_rate = blocks as f64 / index_secs;
    println!(
        "piece directory: indexed {blocks} blocks in {index_secs:.2} s = {index_rate:.0} blocks/s"
    );

    let key = libp2p::identity::Keypair::generate_ed25519();
    let started = Instant::now();
    let hashes = directory
        .multihashes(&piece.to_string())?
        .ok_or_else(|| anyhow::anyhow!("no block list"))?;
    let read_secs = started.elapsed().as_secs_f64();
    let record = chain::append(
        &store,
        &key,
        chain::NewAd {
            piece_cid: piece.to_string(),
            padded_size: 1 << 30,
            context_id: context_id(&piece, 1 << 30)?,
            multihashes: Some(hashes),
            addresses: vec!["/dns/retrieval.example.com/tcp/443/https".into()],
            metadata: ipni::metadata(&[
                ipni::Transport::Bitswap,
                ipni::Transport::IpfsGatewayHttp,
                ipni::Transport::FilecoinPieceHttp,
            ]),
        },
    )?;
    let ad_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        record.entries == blocks,
        "advertised {} entries",
        record.entries
    );
    let ad_rate = blocks as f64 / ad_secs;
    println!(
        "advertising: {blocks} blocks in {} entry chunks in {ad_secs:.2} s (of which {read_secs:.2} s \
         reading the block list) = {ad_rate:.0} blocks/s",
        record.entry_chunks
    );
    println!(
        "ratio: advertising runs at {:.1}x the rate the piece directory indexes (target >= 1)",
        ad_rate / index_rate
    );
    Ok(())
}

fn block_data(i: u64) -> Vec<u8> {
    let mut data = i.to_le_bytes().repeat(8);
    data.truncate(64);
    data
}

fn block_cid(data: &[u8]) -> Cid {
    Cid::new_v1(
        0x55,
        Multihash::wrap(0x12, &Sha256::digest(data)).expect("32 bytes"),
    )
}
