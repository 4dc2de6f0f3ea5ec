//! Sector storage: where a sector's files live under the configured storage paths, how much
//! room sealing needs, whether a sector's files are intact, and making them durable.
//!
//! ```text
//! PATH/sealed/s-t0MINER-N     the replica (sector size bytes)
//! PATH/cache/s-t0MINER-N/     SDR layers and trees while sealing; p_aux, t_aux and tree-r-last after
//! PATH/unsealed/s-t0MINER-N   the unsealed copy (the pieces, fr32-padded)
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use nelumbo_proofs::SectorPaths;
use nelumbo_types::SectorSize;

/// What sealing one sector may occupy at its peak, in sector sizes: the unsealed and sealed
/// files, the SDR layers (2 for test sizes, 11 from 8 MiB up) and the trees. An estimate on
/// the safe side, as Lotus's.
const SEALING_FOOTPRINT: u64 = 15;

#[derive(Debug)]
pub struct SectorStorage {
    paths: Vec<PathBuf>,
    miner: u64,
    size: SectorSize,
    /// Bytes promised to sectors still sealing, by storage path.
    reserved: Mutex<BTreeMap<PathBuf, u64>>,
}

impl SectorStorage {
    pub fn new(paths: Vec<PathBuf>, miner: u64, size: SectorSize) -> anyhow::Result<Self> {
        for path in &paths {
            for dir in ["sealed", "cache", "unsealed"] {
                std::fs::create_dir_all(path.join(dir))
                    .with_context(|| format!("create {}", path.join(dir).display()))?;
            }
        }
        Ok(Self {
            paths,
            miner,
            size,
            reserved: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    pub fn sector_name(&self, number: u64) -> String {
        format!("s-t0{}-{number}", self.miner)
    }

    pub fn sector_paths(&self, root: &Path, number: u64) -> SectorPaths {
        let name = self.sector_name(number);
        SectorPaths {
            unsealed: root.join("unsealed").join(&name),
            sealed: root.join("sealed").join(&name),
            cache: root.join("cache").join(&name),
        }
    }

    /// Bytes sealing one sector may need at its peak.
    pub fn sealing_footprint(&self) -> u64 {
        self.size.bytes() * SEALING_FOOTPRINT
    }

    /// Picks the storage path with the most free room (after what other sealing sectors were
    /// promised) for a new sector, and reserves its footprint there.
    pub fn reserve_new(&self) -> anyhow::Result<PathBuf> {
        let need = self.sealing_footprint();
        let mut reserved = self.lock();
        let mut best: Option<(u64, &PathBuf)> = None;
        let mut report = Vec::new();
        for path in &self.paths {
            let free = available_bytes(path)
                .with_context(|| format!("free space of {}", path.display()))?
                .saturating_sub(reserved.get(path).copied().unwrap_or(0));
            report.push(format!("{}: {free} bytes free", path.display()));
            if free >= need && best.is_none_or(|(b, _)| free > b) {
                best = Some((free, path));
            }
        }
        let Some((_, path)) = best else {
            anyhow::bail!(
                "no storage path has room for a {} sector: sealing needs about {need} bytes ({}); free space or add a path to [storage] paths",
                self.size,
                report.join(", ")
            );
        };
        *reserved.entry(path.clone()).or_default() += need;
        Ok(path.clone())
    }

    /// Reserves the footprint of a sector resumed after a restart.
    pub fn reserve_existing(&self, root: &Path) {
        *self.lock().entry(root.to_path_buf()).or_default() += self.sealing_footprint();
    }

    /// Returns a sealed (or failed) sector's reservation.
    pub fn release(&self, root: &Path) {
        let need = self.sealing_footprint();
        if let Some(r) = self.lock().get_mut(root) {
            *r = r.saturating_sub(need);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, u64>> {
        self.reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Free bytes and bytes promised to sealing, per path (for metrics).
    pub fn usage(&self) -> Vec<(PathBuf, u64, u64)> {
        let reserved = self.lock();
        self.paths
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    available_bytes(p).unwrap_or(0),
                    reserved.get(p).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Whether a sealed sector's files can be proven: the replica has the sector's size and
    /// the cache holds the tree and auxiliary files a PoSt reads.
    pub fn check_sealed(&self, root: &Path, number: u64) -> Result<(), String> {
        let paths = self.sector_paths(root, number);
        let sealed = std::fs::metadata(&paths.sealed)
            .map_err(|e| format!("sealed file {}: {e}", paths.sealed.display()))?;
        if sealed.len() != self.size.bytes() {
            return Err(format!(
                "sealed file {} has {} bytes, expected {}",
                paths.sealed.display(),
                sealed.len(),
                self.size.bytes()
            ));
        }
        for name in ["p_aux", "t_aux"] {
            let file = paths.cache.join(name);
            if !file.is_file() {
                return Err(format!("cache file {} is missing", file.display()));
            }
        }
        let has_tree = std::fs::read_dir(&paths.cache)
            .map_err(|e| format!("cache {}: {e}", paths.cache.display()))?
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("sc-02-data-tree-r-last")
            });
        if !has_tree {
            return Err(format!(
                "cache {} has no tree-r-last",
                paths.cache.display()
            ));
        }
        Ok(())
    }
}

/// Flushes a sector's sealed file and cache to disk, with their directories, before the
/// pipeline records a state that depends on them.
pub fn sync_sector(paths: &SectorPaths) -> anyhow::Result<()> {
    sync_file(&paths.sealed)?;
    for entry in std::fs::read_dir(&paths.cache)
        .with_context(|| format!("read {}", paths.cache.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            sync_file(&path)?;
        }
    }
    sync_dir(&paths.cache)?;
    for file in [&paths.sealed, &paths.cache] {
        if let Some(parent) = file.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", path.display()))
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync directory {}", path.display()))
}

/// Bytes an unprivileged process may still write under `path`.
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_sector_goes_where_there_is_room_and_is_reserved() {
        let dir = tempfile::tempdir().expect("dir");
        let storage = SectorStorage::new(vec![dir.path().join("a")], 1000, SectorSize::KIB_2)
            .expect("storage");
        let root = storage.reserve_new().expect("room for 2 KiB");
        assert_eq!(root, dir.path().join("a"));
        let (_, _, reserved) = storage.usage()[0].clone();
        assert_eq!(reserved, storage.sealing_footprint());
        storage.release(&root);
        assert_eq!(storage.usage()[0].2, 0);
        let paths = storage.sector_paths(&root, 7);
        assert!(paths.sealed.ends_with("sealed/s-t01000-7"));
        let error = storage.check_sealed(&root, 7).expect_err("no files yet");
        assert!(error.contains("sealed file"), "{error}");
    }
}
