//! The Groth16 parameter cache: where parameter files live, checking them before use, and
//! generating them.
//!
//! Filecoin's published parameters cannot be downloaded here, and the proofs library never
//! generates parameters on its own, so Nelumbo generates them as rust-fil-proofs' `paramcache`
//! does, from a seeded RNG per circuit. The same [`ParamSeed`] gives byte-identical files on
//! every machine, so all nodes of a devnet derive the same verifying keys.

mod generate;
mod record;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use nelumbo_types::SectorSize;
use sha2::{Digest, Sha256};
use storage_proofs_core::parameter_cache::{metadata_id, parameter_id, verifying_key_id};

pub use generate::{GenerationReport, ParamEvent};
pub use record::{DigestRecord, FileDigest};

use crate::registry::Circuit;

/// Why parameters cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error(
        "Groth parameters for {circuit} are missing ({path}): run `nelumbo proofs params --sector-size {size}` to generate them",
        size = circuit.sector_size
    )]
    Missing { circuit: Circuit, path: PathBuf },
    #[error(
        "Groth parameters for {circuit} are unusable ({path}: {detail}): run `nelumbo proofs params --sector-size {size}` to regenerate them",
        size = circuit.sector_size
    )]
    Invalid {
        circuit: Circuit,
        path: PathBuf,
        detail: String,
    },
    #[error("{context} ({path}): {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("compute the parameter files of {circuit}: {source:#}")]
    Library {
        circuit: Circuit,
        source: anyhow::Error,
    },
}

impl ParamError {
    fn io(context: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            context,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The secret-free seed all of a devnet's parameters derive from.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamSeed([u8; 32]);

impl ParamSeed {
    /// The seed every Nelumbo devnet uses unless configured otherwise.
    pub fn devnet_default() -> Self {
        Self(Sha256::digest(b"nelumbo devnet groth parameters v1").into())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A short public name for the seed, recorded beside generated files.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"nelumbo/param-seed-fingerprint")
            .chain_update(self.0)
            .finalize();
        hex::encode(&digest[..8])
    }

    /// The RNG seed of one circuit: independent of the order circuits are generated in.
    fn for_circuit(&self, circuit_id: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(b"nelumbo/groth-params/v1")
            .chain_update(self.0)
            .chain_update(circuit_id.as_bytes())
            .finalize()
            .into()
    }
}

impl fmt::Debug for ParamSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParamSeed({})", self.fingerprint())
    }
}

impl fmt::Display for ParamSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for ParamSeed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s.trim()).map_err(|e| format!("parameter seed is not hex: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "parameter seed must be 32 bytes (64 hex characters)".to_string())?;
        Ok(Self(bytes))
    }
}

/// The files of one circuit in the cache.
#[derive(Debug, Clone)]
pub struct CircuitFiles {
    pub circuit: Circuit,
    pub id: String,
    pub params: PathBuf,
    pub vk: PathBuf,
    pub meta: PathBuf,
    pub record: PathBuf,
    pub lock: PathBuf,
}

/// The state of one circuit's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamStatus {
    /// Present and matching their digest record.
    Ready,
    Missing,
    /// Present but unusable; the text says why.
    Invalid(String),
}

/// A directory of Groth parameters.
#[derive(Debug, Clone)]
pub struct ParamCache {
    dir: PathBuf,
    seed: ParamSeed,
}

/// Files checked in this process, so each is hashed once per process.
static VERIFIED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn remember_verified(path: &Path) {
    if let Ok(mut set) = VERIFIED.lock() {
        set.get_or_insert_with(HashSet::new)
            .insert(path.to_path_buf());
    }
}

fn forget_verified(path: &Path) {
    if let Ok(mut set) = VERIFIED.lock() {
        set.get_or_insert_with(HashSet::new).remove(path);
    }
}

fn was_verified(path: &Path) -> bool {
    TRUSTED.load(std::sync::atomic::Ordering::Relaxed)
        || VERIFIED
            .lock()
            .map(|set| set.as_ref().is_some_and(|s| s.contains(path)))
            .unwrap_or(false)
}

/// Set in a process whose parent checked every parameter file it may use (a hub's proof
/// worker): the files are not hashed again for each job. At 32 GiB sectors the PoRep
/// parameters are tens of GB, which a worker per commit 2 would otherwise re-read.
static TRUSTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Trusts the parameter files as checked by this process's parent (see [`TRUSTED`]).
pub fn trust_files_checked_by_parent() {
    TRUSTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl ParamCache {
    pub fn new(dir: impl Into<PathBuf>, seed: ParamSeed) -> Self {
        Self {
            dir: dir.into(),
            seed,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn seed(&self) -> ParamSeed {
        self.seed
    }

    pub fn files(&self, circuit: Circuit) -> Result<CircuitFiles, ParamError> {
        let id = circuit
            .identifier()
            .map_err(|source| ParamError::Library { circuit, source })?;
        let params_name = parameter_id(&id);
        Ok(CircuitFiles {
            circuit,
            params: self.dir.join(&params_name),
            vk: self.dir.join(verifying_key_id(&id)),
            meta: self.dir.join(metadata_id(&id)),
            record: self.dir.join(format!("{params_name}.nelumbo-digest.json")),
            lock: self.dir.join(format!(".{params_name}.lock")),
            id,
        })
    }

    /// Checks one circuit's files against their digest record, hashing them (once per process).
    pub fn verify(&self, circuit: Circuit) -> Result<(), ParamError> {
        let files = self.files(circuit)?;
        if was_verified(&files.params) && files.params.exists() {
            return Ok(());
        }
        self.verify_files(&files)?;
        remember_verified(&files.params);
        remember_verified(&files.vk);
        Ok(())
    }

    /// Checks only the verifying key of one circuit: all a verifier reads.
    pub fn verify_key(&self, circuit: Circuit) -> Result<(), ParamError> {
        let files = self.files(circuit)?;
        if was_verified(&files.vk) && files.vk.exists() {
            return Ok(());
        }
        let record = self.read_record(&files)?;
        check_file(circuit, &files.vk, &record.vk)?;
        remember_verified(&files.vk);
        Ok(())
    }

    /// Checks every circuit a sector size needs.
    pub fn verify_sector_size(&self, size: SectorSize) -> Result<(), ParamError> {
        for circuit in crate::SectorProofs::for_size(size).circuits() {
            self.verify(circuit)?;
        }
        Ok(())
    }

    /// Reports the state of one circuit's files without failing.
    pub fn status(&self, circuit: Circuit) -> Result<ParamStatus, ParamError> {
        let files = self.files(circuit)?;
        Ok(match self.verify_files(&files) {
            Ok(()) => ParamStatus::Ready,
            Err(ParamError::Missing { .. }) => ParamStatus::Missing,
            Err(ParamError::Invalid { detail, .. }) => ParamStatus::Invalid(detail),
            Err(e) => ParamStatus::Invalid(e.to_string()),
        })
    }

    fn verify_files(&self, files: &CircuitFiles) -> Result<(), ParamError> {
        if !files.params.exists() {
            return Err(ParamError::Missing {
                circuit: files.circuit,
                path: files.params.clone(),
            });
        }
        let record = self.read_record(files)?;
        check_file(files.circuit, &files.params, &record.params)?;
        check_file(files.circuit, &files.vk, &record.vk)?;
        Ok(())
    }

    /// Reads a circuit's digest record and checks it belongs to this circuit and seed.
    fn read_record(&self, files: &CircuitFiles) -> Result<DigestRecord, ParamError> {
        let circuit = files.circuit;
        let invalid = |path: &Path, detail: String| ParamError::Invalid {
            circuit,
            path: path.to_path_buf(),
            detail,
        };
        let record = match DigestRecord::read(&files.record) {
            Ok(record) => record,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if files.params.exists() {
                    invalid(
                        &files.params,
                        "no digest record, so the file cannot be checked".into(),
                    )
                } else {
                    ParamError::Missing {
                        circuit,
                        path: files.params.clone(),
                    }
                });
            }
            Err(e) => {
                return Err(invalid(
                    &files.record,
                    format!("unreadable digest record: {e}"),
                ));
            }
        };
        if record.circuit_id != files.id {
            return Err(invalid(
                &files.record,
                format!("digest record is for circuit {}", record.circuit_id),
            ));
        }
        let expected_seed = self.seed.fingerprint();
        if record.seed_fingerprint != expected_seed {
            return Err(invalid(
                &files.params,
                format!(
                    "generated from seed {} but this node uses seed {expected_seed}",
                    record.seed_fingerprint
                ),
            ));
        }
        Ok(record)
    }
}

/// Checks one file against its recorded size and digest.
fn check_file(circuit: Circuit, path: &Path, expected: &FileDigest) -> Result<(), ParamError> {
    let invalid = |detail: String| ParamError::Invalid {
        circuit,
        path: path.to_path_buf(),
        detail,
    };
    let found = match record::digest_file(path) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid("file is missing".into()));
        }
        Err(e) => return Err(ParamError::io("read parameter file", path, e)),
    };
    if found.bytes != expected.bytes {
        return Err(invalid(format!(
            "{} bytes where {} were written (truncated or replaced)",
            found.bytes, expected.bytes
        )));
    }
    if found.blake2b256 != expected.blake2b256 {
        return Err(invalid(format!(
            "BLAKE2b digest {} where {} was written (corrupted)",
            found.blake2b256, expected.blake2b256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_print_and_separate_circuits() {
        let seed = ParamSeed::devnet_default();
        let parsed: ParamSeed = seed.to_string().parse().expect("round trip");
        assert_eq!(parsed, seed);
        assert_ne!(seed.for_circuit("a"), seed.for_circuit("b"));
        let other = ParamSeed::from_bytes([7; 32]);
        assert_ne!(seed.for_circuit("a"), other.for_circuit("a"));
        assert_ne!(seed.fingerprint(), other.fingerprint());
        assert!("abcd".parse::<ParamSeed>().is_err());
        assert!("zz".parse::<ParamSeed>().is_err());
    }
}
