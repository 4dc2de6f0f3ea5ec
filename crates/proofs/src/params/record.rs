//! The digest record Nelumbo writes beside each circuit's parameter files, and checks on load.
//!
//! The proofs library memory-maps parameter files without checking them, so a truncated or
//! corrupted file would surface as a panic or a failed proof hours later. Nelumbo records the
//! size and BLAKE2b-256 digest of every file it generates and refuses to use a file that does
//! not match.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What Nelumbo knows about one circuit's generated files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestRecord {
    /// The library's cache identifier of the circuit.
    pub circuit_id: String,
    /// Identifies the seed the files were generated from (not the seed itself).
    pub seed_fingerprint: String,
    pub params: FileDigest,
    pub vk: FileDigest,
}

/// The size and digest of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub bytes: u64,
    pub blake2b256: String,
}

impl DigestRecord {
    pub fn read(path: &Path) -> io::Result<Self> {
        let text = fs::read(path)?;
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        json
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    state: blake2b_simd::State,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            state: blake2b_state(),
            bytes: 0,
        }
    }

    pub fn finish(self) -> (W, FileDigest) {
        let digest = FileDigest {
            bytes: self.bytes,
            blake2b256: self.state.finalize().to_hex().to_string(),
        };
        (self.inner, digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.state.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn blake2b_state() -> blake2b_simd::State {
    blake2b_simd::Params::new().hash_length(32).to_state()
}

/// Hashes a whole file the way [`HashingWriter`] does.
pub fn digest_file(path: &Path) -> io::Result<FileDigest> {
    let mut file = File::open(path)?;
    let mut state = blake2b_state();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        state.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        bytes,
        blake2b256: state.finalize().to_hex().to_string(),
    })
}
