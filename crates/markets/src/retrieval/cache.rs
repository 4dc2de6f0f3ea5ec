//! The piece cache: whole pieces kept on this machine's disk so retrievals need neither the hub
//! nor an unseal. Bounded by size, least recently used out, and checked on read.
//!
//! An entry is two files named after the piece's v1 CID: `CID.data`, the piece's payload bytes,
//! and `CID.meta`, JSON with the sizes and a CRC-32 of every 1 MiB chunk of the data. The meta
//! file is written last (atomically), so an entry without one is a write cut short and is
//! removed at the next start. Only data whose piece commitment was checked is admitted; reads
//! for `/piece` check the CRCs of the chunks they cover (disk rot is found and the entry
//! dropped), and block reads are checked by their CIDs instead, which is stronger.
//!
//! Everything here blocks: call it off the async runtime.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Bytes covered by one CRC.
pub const CHUNK: u64 = 1 << 20;

/// What `CID.meta` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub piece_cid: String,
    /// Padded piece size.
    pub piece_size: u64,
    /// Bytes of payload (the data file's length).
    pub payload_size: u64,
    /// CRC-32 of each `CHUNK` of the data, the last one possibly short.
    pub crcs: Vec<u32>,
}

#[derive(Debug)]
struct Entry {
    meta: std::sync::Arc<Meta>,
    last_used: u64,
    /// When the meta file's time was last set (it keeps the order across restarts; set at
    /// most once a minute, not on every read).
    touched: Option<std::time::Instant>,
}

/// How often a used entry's file time is brought up to date.
const TOUCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: u64,
    clock: u64,
}

/// Why a cached read failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheReadError {
    /// The data no longer matches what was admitted; the entry is gone now.
    #[error("the cached copy of {piece} is corrupt ({why}); it was dropped")]
    Corrupt { piece: String, why: String },
    #[error("read the cached copy of {piece}: {error}")]
    Io {
        piece: String,
        error: std::io::Error,
    },
}

#[derive(Debug)]
pub struct PieceCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

impl PieceCache {
    /// Opens (creating) the cache directory and lists what it holds; partial entries and
    /// leftovers of interrupted writes are removed, and entries past `max_bytes` (the limit was
    /// lowered) are evicted, oldest first.
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the piece cache {}", dir.display()))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(cid) = name.strip_suffix(".meta") {
                match read_meta(&path, &dir.join(format!("{cid}.data"))) {
                    Ok(meta) => {
                        let age = std::fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        found.push((age, meta));
                    }
                    Err(e) => {
                        tracing::warn!(entry = cid, error = %format!("{e:#}"), "dropping a bad piece cache entry");
                        let _ = std::fs::remove_file(&path);
                        let _ = std::fs::remove_file(dir.join(format!("{cid}.data")));
                    }
                }
            } else if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
            } else if let Some(cid) = name.strip_suffix(".data")
                && !dir.join(format!("{cid}.meta")).exists()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        // Oldest first, so the clock orders them as they were used.
        found.sort_by_key(|(age, _)| *age);
        let mut state = State::default();
        for (_, meta) in found {
            state.clock += 1;
            state.bytes += meta.payload_size;
            state.entries.insert(
                meta.piece_cid.clone(),
                Entry {
                    meta: std::sync::Arc::new(meta),
                    last_used: state.clock,
                    touched: None,
                },
            );
        }
        let cache = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(state),
        };
        cache.evict_for(0);
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn data_path(&self, piece: &str) -> PathBuf {
        self.dir.join(format!("{piece}.data"))
    }

    fn meta_path(&self, piece: &str) -> PathBuf {
        self.dir.join(format!("{piece}.meta"))
    }

    /// The entry for `piece` (a v1 piece CID), marked as used.
    pub fn get(&self, piece: &str) -> Option<std::sync::Arc<Meta>> {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        let entry = state.entries.get_mut(piece)?;
        entry.last_used = clock;
        if entry
            .touched
            .is_none_or(|at| at.elapsed() >= TOUCH_INTERVAL)
        {
            entry.touched = Some(std::time::Instant::now());
            let _ = File::open(self.meta_path(piece))
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
        Some(entry.meta.clone())
    }

    pub fn contains(&self, piece: &str) -> bool {
        self.lock().entries.contains_key(piece)
    }

    /// Bytes held and entries.
    pub fn usage(&self) -> (u64, usize) {
        let state = self.lock();
        (state.bytes, state.entries.len())
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Drops `piece`'s entry (both files).
    pub fn remove(&self, piece: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.remove(piece) {
            state.bytes = state.bytes.saturating_sub(entry.meta.payload_size);
        }
        drop(state);
        let _ = std::fs::remove_file(self.meta_path(piece));
        let _ = std::fs::remove_file(self.data_path(piece));
    }

    /// Evicts least recently used entries until `incoming` more bytes fit.
    fn evict_for(&self, incoming: u64) {
        loop {
            let victim = {
                let state = self.lock();
                if state.bytes.saturating_add(incoming) <= self.max_bytes {
                    return;
                }
                match state.entries.iter().min_by_key(|(_, e)| e.last_used) {
                    Some((cid, _)) => cid.clone(),
                    None => return,
                }
            };
            tracing::info!(piece_cid = %victim, "evicting a piece from the cache (least recently used)");
            self.remove(&victim);
        }
    }

    /// Whether a piece of `payload_size` bytes can be cached at all.
    pub fn fits(&self, payload_size: u64) -> bool {
        payload_size <= self.max_bytes
    }

    /// Starts an entry for `piece`; its data is written with [`Admission::write`] and kept by
    /// [`Admission::commit`] once the caller has checked it.
    pub fn admit(&self, piece: &str, piece_size: u64) -> anyhow::Result<Admission<'_>> {
        let temp = self
            .dir
            .join(format!("{piece}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
        Ok(Admission {
            cache: self,
            piece: piece.to_string(),
            piece_size,
            temp,
            file,
            written: 0,
            crcs: Vec::new(),
            chunk: crc32fast::Hasher::new(),
            chunk_len: 0,
            done: false,
        })
    }

    /// Reads `[start, start + len)` of the payload, checking the CRC of every chunk it touches.
    pub fn read_checked(
        &self,
        meta: &Meta,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, CacheReadError> {
        let file = self.open_data(meta)?;
        self.read_checked_from(&file, meta, start, len)
    }

    /// An entry's data file, for several reads: an entry evicted meanwhile stays readable
    /// through it (the file is unlinked, not truncated).
    pub fn open_data(&self, meta: &Meta) -> Result<File, CacheReadError> {
        File::open(self.data_path(&meta.piece_cid)).map_err(|error| CacheReadError::Io {
            piece: meta.piece_cid.clone(),
            error,
        })
    }

    /// [`Self::read_checked`] through a file from [`Self::open_data`].
    pub fn read_checked_from(
        &self,
        file: &File,
        meta: &Meta,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, CacheReadError> {
        let end = start
            .checked_add(len)
            .filter(|&end| end <= meta.payload_size)
            .ok_or_else(|| CacheReadError::Io {
                piece: meta.piece_cid.clone(),
                error: std::io::Error::other("the range is outside the payload"),
            })?;
        let io = |error| CacheReadError::Io {
            piece: meta.piece_cid.clone(),
            error,
        };
        let first = start / CHUNK;
        let last = end.div_ceil(CHUNK).max(first + 1);
        let from = first * CHUNK;
        let to = (last * CHUNK).min(meta.payload_size);
        let mut buf = vec![0u8; (to - from) as usize];
        file.read_exact_at(&mut buf, from).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt(meta, "the data file is shorter than recorded")
            } else {
                io(e)
            }
        })?;
        for (i, chunk) in buf.chunks(CHUNK as usize).enumerate() {
            let index = first as usize + i;
            let expected = meta.crcs.get(index).copied();
            if expected != Some(crc32fast::hash(chunk)) {
                return Err(self.corrupt(meta, &format!("chunk {index} fails its CRC")));
            }
        }
        let skip = (start - from) as usize;
        buf.truncate(skip + len as usize);
        buf.drain(..skip);
        Ok(buf)
    }

    /// Reads `[offset, offset + len)` of the payload without the CRC check (for blocks, which
    /// the caller checks against their CIDs).
    pub fn read_unchecked(
        &self,
        meta: &Meta,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, CacheReadError> {
        let mut buf = vec![0u8; len as usize];
        let file =
            File::open(self.data_path(&meta.piece_cid)).map_err(|error| CacheReadError::Io {
                piece: meta.piece_cid.clone(),
                error,
            })?;
        file.read_exact_at(&mut buf, offset)
            .map_err(|error| CacheReadError::Io {
                piece: meta.piece_cid.clone(),
                error,
            })?;
        Ok(buf)
    }

    /// Drops an entry found corrupt and says why.
    fn corrupt(&self, meta: &Meta, why: &str) -> CacheReadError {
        tracing::error!(piece_cid = %meta.piece_cid, why, "the piece cache holds a corrupt copy; dropping it");
        self.remove(&meta.piece_cid);
        CacheReadError::Corrupt {
            piece: meta.piece_cid.clone(),
            why: why.to_string(),
        }
    }

    /// Admits a whole file already checked by the caller (a deal's staged data, whose piece
    /// commitment matched), moving it in (copying when it is on another file system). Returns
    /// false when it does not fit or is there already; the file is then left alone.
    pub fn admit_file(&self, piece: &str, piece_size: u64, path: &Path) -> anyhow::Result<bool> {
        let len = std::fs::metadata(path)?.len();
        if !self.fits(len) || self.contains(piece) {
            return Ok(false);
        }
        let mut crcs = Vec::new();
        let mut file = File::open(path)?;
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            crcs.push(crc32fast::hash(&buf[..filled]));
            if filled < buf.len() {
                break;
            }
        }
        let temp = self
            .dir
            .join(format!("{piece}.{}.tmp", uuid::Uuid::new_v4().simple()));
        if std::fs::rename(path, &temp).is_err() {
            std::fs::copy(path, &temp)
                .with_context(|| format!("copy {} into the piece cache", path.display()))?;
        }
        let meta = Meta {
            piece_cid: piece.to_string(),
            piece_size,
            payload_size: len,
            crcs,
        };
        if let Err(e) = self.install(meta, &temp) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        Ok(true)
    }

    /// Makes room (least recently used out), renames the data in and writes the meta file.
    fn install(&self, meta: Meta, temp: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.fits(meta.payload_size),
            "the piece ({} bytes) is larger than the whole cache",
            meta.payload_size
        );
        let piece = meta.piece_cid.clone();
        self.evict_for(meta.payload_size);
        std::fs::rename(temp, self.data_path(&piece))?;
        nelumbo_service::write_atomic(&self.meta_path(&piece), &serde_json::to_vec(&meta)?)?;
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        let size = meta.payload_size;
        if let Some(old) = state.entries.insert(
            piece.clone(),
            Entry {
                meta: std::sync::Arc::new(meta),
                last_used: clock,
                touched: Some(std::time::Instant::now()),
            },
        ) {
            state.bytes = state.bytes.saturating_sub(old.meta.payload_size);
        }
        state.bytes += size;
        drop(state);
        tracing::info!(piece_cid = %piece, bytes = size, "piece cached");
        Ok(())
    }
}

fn read_meta(meta_path: &Path, data_path: &Path) -> anyhow::Result<Meta> {
    let meta: Meta = serde_json::from_slice(&std::fs::read(meta_path)?)?;
    let len = std::fs::metadata(data_path)
        .context("the data file is missing")?
        .len();
    anyhow::ensure!(
        len == meta.payload_size,
        "the data file holds {len} bytes, the entry says {}",
        meta.payload_size
    );
    anyhow::ensure!(
        meta.crcs.len() as u64 == meta.payload_size.div_ceil(CHUNK),
        "the entry's checksums do not cover its data"
    );
    Ok(meta)
}

/// An entry being written.
pub struct Admission<'a> {
    cache: &'a PieceCache,
    piece: String,
    piece_size: u64,
    temp: PathBuf,
    file: File,
    written: u64,
    crcs: Vec<u32>,
    chunk: crc32fast::Hasher,
    chunk_len: u64,
    done: bool,
}

impl std::fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("piece", &self.piece)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl Admission<'_> {
    pub fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        self.written += data.len() as u64;
        while !data.is_empty() {
            let take = ((CHUNK - self.chunk_len) as usize).min(data.len());
            self.chunk.update(&data[..take]);
            self.chunk_len += take as u64;
            data = &data[take..];
            if self.chunk_len == CHUNK {
                let full = std::mem::replace(&mut self.chunk, crc32fast::Hasher::new());
                self.crcs.push(full.finalize());
                self.chunk_len = 0;
            }
        }
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Keeps the entry (see [`PieceCache::install`]).
    pub fn commit(mut self) -> anyhow::Result<()> {
        if self.chunk_len > 0 {
            let last = std::mem::replace(&mut self.chunk, crc32fast::Hasher::new());
            self.crcs.push(last.finalize());
        }
        self.file.sync_all()?;
        let meta = Meta {
            piece_cid: self.piece.clone(),
            piece_size: self.piece_size,
            payload_size: self.written,
            crcs: std::mem::take(&mut self.crcs),
        };
        self.cache.install(meta, &self.temp)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(cache: &PieceCache, piece: &str, data: &[u8]) {
        let mut admission = cache.admit(piece, 4096).expect("admit");
        admission.write(data).expect("write");
        admission.commit().expect("commit");
    }

    #[test]
    fn reads_are_checked_and_a_rotten_entry_is_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = PieceCache::open(dir.path(), 1 << 30).expect("open");
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        add(&cache, "p1", &data);
        let meta = cache.get("p1").expect("cached");
        assert_eq!(meta.crcs.len(), 3);
        for (start, len) in [
            (0, 10),
            (CHUNK - 5, 10),
            (CHUNK * 2, 100),
            (0, data.len() as u64),
        ] {
            assert_eq!(
                cache.read_checked(&meta, start, len).expect("read"),
                data[start as usize..(start + len) as usize]
            );
        }
        assert!(cache.read_checked(&meta, CHUNK * 2, 101).is_err());
        // One byte flipped on disk: the read that covers it fails and the entry is gone.
        let path = dir.path().join("p1.data");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[CHUNK as usize + 7] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert!(cache.read_checked(&meta, 0, 10).is_ok());
        let error = cache
            .read_checked(&meta, CHUNK, 10)
            .expect_err("rot served");
        assert!(matches!(error, CacheReadError::Corrupt { .. }), "{error}");
        assert!(cache.get("p1").is_none());
        assert!(!path.exists());
    }

    #[test]
    fn least_recently_used_goes_first_and_state_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = PieceCache::open(dir.path(), 3000).expect("open");
        add(&cache, "a", &[1; 1000]);
        add(&cache, "b", &[2; 1000]);
        add(&cache, "c", &[3; 1000]);
        assert!(cache.get("a").is_some()); // b is now the least recently used
        add(&cache, "d", &[4; 1000]);
        assert!(!cache.contains("b"));
        assert!(cache.contains("a") && cache.contains("c") && cache.contains("d"));
        assert_eq!(cache.usage(), (3000, 3));
        // A cut-short write and a data file without meta are cleaned up at the next start.
        std::fs::write(dir.path().join("x.1234.tmp"), b"partial").expect("write");
        std::fs::write(dir.path().join("y.data"), b"orphan").expect("write");
        drop(cache);
        let cache = PieceCache::open(dir.path(), 2000).expect("reopen");
        assert_eq!(cache.usage().1, 2, "the lowered limit evicts one");
        assert!(!dir.path().join("x.1234.tmp").exists());
        assert!(!dir.path().join("y.data").exists());
        assert!(!cache.fits(2001));
    }
}
