//! `nelumbo commp FILE`: the piece CIDs, payload size and piece size of a file.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use nelumbo_commp::{CommPError, CommPHasher, MAX_PAYLOAD};
use serde::Serialize;

use crate::progress::Activity;

/// Read in blocks of this size: four hashing batches, so both cores stay busy.
const READ_BLOCK: usize = 16 << 20;
/// Smaller inputs finish too fast to be worth a progress display.
const PROGRESS_FROM: u64 = 64 << 20;

#[derive(Debug, Args)]
pub struct CommpArgs {
    /// The file to hash; `-` reads standard input.
    file: PathBuf,
    /// Print one JSON object: piece_cid, piece_cid_v2, payload_size, piece_size.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Output {
    piece_cid: String,
    piece_cid_v2: String,
    payload_size: u64,
    piece_size: u64,
}

pub fn run(args: CommpArgs) -> anyhow::Result<()> {
    let from_stdin = args.file.as_os_str() == "-";
    let name = if from_stdin {
        "standard input".to_string()
    } else {
        args.file.display().to_string()
    };
    let (mut reader, size): (Box<dyn Read>, Option<u64>) = if from_stdin {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(&args.file).with_context(|| format!("open {name}"))?;
        let metadata = file
            .metadata()
            .with_context(|| format!("read metadata of {name}"))?;
        if metadata.is_dir() {
            bail!("{name} is a directory: give a file, or - for standard input");
        }
        (Box::new(file), Some(metadata.len()))
    };
    if let Some(size) = size.filter(|&s| s > MAX_PAYLOAD) {
        bail!(
            "{name} is {size} bytes, larger than {MAX_PAYLOAD} bytes, the capacity of the largest sector: split it into several pieces"
        );
    }

    // Shown from the start for a large file, and from PROGRESS_FROM bytes for a stream.
    let mut progress: Option<Activity> = None;
    let mut hasher = CommPHasher::new();
    let mut block = vec![0u8; READ_BLOCK];
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("read {name}")),
        };
        hasher.update(&block[..n]).map_err(|e| describe(e, &name))?;
        if progress.is_none() && size.unwrap_or(hasher.payload_size()) >= PROGRESS_FROM {
            let activity = Activity::bytes(format!("hashing {name}"), size);
            activity.advance(hasher.payload_size() - n as u64);
            progress = Some(activity);
        }
        if let Some(progress) = &progress {
            progress.advance(n as u64);
        }
    }
    drop(progress);
    let digest = hasher.finish().map_err(|e| describe(e, &name))?;

    let output = Output {
        piece_cid: digest.cid_v1().to_string(),
        piece_cid_v2: digest.cid_v2().to_string(),
        payload_size: digest.payload_size,
        piece_size: digest.piece_size.bytes(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&output)?);
    } else {
        println!("piece CID:    {}", output.piece_cid);
        println!("piece CID v2: {}", output.piece_cid_v2);
        println!("payload size: {} bytes", output.payload_size);
        println!("piece size:   {} bytes (padded)", output.piece_size);
    }
    Ok(())
}

fn describe(error: CommPError, name: &str) -> anyhow::Error {
    match error {
        CommPError::Empty => {
            anyhow::anyhow!("{name} is empty: a piece commitment needs at least one byte of data")
        }
        CommPError::TooLarge => anyhow::anyhow!("{name}: {error}"),
    }
}
