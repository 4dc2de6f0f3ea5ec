//! Generating Groth16 parameters from a seed: one circuit at a time, under a file lock, written
//! atomically with a digest record.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bellperson::groth16;
use blstrs::Bls12;
use filecoin_proofs::constants::DefaultPieceHasher;
use filecoin_proofs::parameters::{
    public_params, window_post_public_params, winning_post_public_params,
};
use filecoin_proofs::{PoRepConfig, PoStConfig, with_shape};
use nelumbo_types::SectorSize;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use storage_proofs_core::compound_proof::CompoundProof;
use storage_proofs_core::merkle::MerkleTreeTrait;
use storage_proofs_porep::stacked::{StackedCompound, StackedDrg};
use storage_proofs_post::fallback::{FallbackPoSt, FallbackPoStCircuit, FallbackPoStCompound};

use super::record::{DigestRecord, HashingWriter};
use super::{CircuitFiles, ParamCache, ParamError, forget_verified, remember_verified};
use crate::registry::{Circuit, CircuitKind, SectorProofs};

/// Progress of [`ParamCache::ensure`], one event per step of each circuit.
#[derive(Debug, Clone)]
pub enum ParamEvent {
    /// Another process holds the circuit's lock (it is probably generating the same files).
    WaitingForLock {
        circuit: Circuit,
        index: usize,
        total: usize,
    },
    /// The files are present and match their digests.
    Ready {
        circuit: Circuit,
        index: usize,
        total: usize,
    },
    /// Generation started; it takes minutes and reports nothing until it ends.
    Generating {
        circuit: Circuit,
        index: usize,
        total: usize,
        reason: String,
    },
    /// The files were written and recorded.
    Generated {
        circuit: Circuit,
        index: usize,
        total: usize,
        bytes: u64,
        elapsed: Duration,
    },
}

/// What [`ParamCache::ensure`] did.
#[derive(Debug, Clone, Default)]
pub struct GenerationReport {
    pub already_ready: Vec<Circuit>,
    pub generated: Vec<Circuit>,
}

impl ParamCache {
    /// Makes every parameter file a sector size needs present and valid, generating what is
    /// missing or invalid. Blocking: call it from a blocking thread.
    pub fn ensure(
        &self,
        size: SectorSize,
        progress: &dyn Fn(ParamEvent),
    ) -> Result<GenerationReport, ParamError> {
        fs::create_dir_all(self.dir())
            .map_err(|e| ParamError::io("create parameter directory", self.dir(), e))?;
        let circuits = SectorProofs::for_size(size).circuits();
        let total = circuits.len();
        let mut report = GenerationReport::default();
        for (i, circuit) in circuits.into_iter().enumerate() {
            let index = i + 1;
            let files = self.files(circuit)?;
            let _lock = lock_exclusive(&files.lock, || {
                progress(ParamEvent::WaitingForLock {
                    circuit,
                    index,
                    total,
                })
            })?;
            // Checked under the lock: another process may have just finished these files.
            let reason = match self.verify_files(&files) {
                Ok(()) => {
                    remember_verified(&files.params);
                    remember_verified(&files.vk);
                    progress(ParamEvent::Ready {
                        circuit,
                        index,
                        total,
                    });
                    report.already_ready.push(circuit);
                    continue;
                }
                Err(e @ (ParamError::Missing { .. } | ParamError::Invalid { .. })) => match e {
                    ParamError::Invalid { detail, .. } => detail,
                    _ => "missing".to_string(),
                },
                Err(e) => return Err(e),
            };
            forget_verified(&files.params);
            forget_verified(&files.vk);
            progress(ParamEvent::Generating {
                circuit,
                index,
                total,
                reason,
            });
            let started = Instant::now();
            let bytes = generate_into(
                &files,
                self.seed().for_circuit(&files.id),
                &self.seed().fingerprint(),
                |rng| {
                    generate_parameters(circuit, rng)
                        .map_err(|source| ParamError::Library { circuit, source })
                },
            )?;
            remember_verified(&files.params);
            remember_verified(&files.vk);
            progress(ParamEvent::Generated {
                circuit,
                index,
                total,
                bytes,
                elapsed: started.elapsed(),
            });
            report.generated.push(circuit);
        }
        Ok(report)
    }
}

/// Holds an exclusive lock on a lock file until dropped. The file itself is never removed:
/// removing lock files lets two processes lock two different inodes.
struct LockGuard(File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn lock_exclusive(path: &Path, on_wait: impl FnOnce()) -> Result<LockGuard, ParamError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| ParamError::io("open parameter lock file", path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            on_wait();
            file.lock()
                .map_err(|e| ParamError::io("lock parameter lock file", path, e))?;
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(ParamError::io("lock parameter lock file", path, e));
        }
    }
    Ok(LockGuard(file))
}

/// Generates one circuit's parameters with an RNG seeded by `rng_seed` and writes its files.
///
/// Files are written to temporaries and fsynced, the digest record is put in place first and
/// the data files renamed over their final names after it, so a crash at any point leaves
/// either the old state or files that fail their digest check and are generated again.
/// Returns the size of the parameter file.
pub(super) fn generate_into(
    files: &CircuitFiles,
    rng_seed: [u8; 32],
    seed_fingerprint: &str,
    generate: impl FnOnce(&mut ChaCha20Rng) -> Result<groth16::Parameters<Bls12>, ParamError>,
) -> Result<u64, ParamError> {
    let mut rng = ChaCha20Rng::from_seed(rng_seed);
    let parameters = generate(&mut rng)?;

    let params_tmp = temporary(&files.params);
    let params_digest = write_synced(&params_tmp, |w| parameters.write(w))?;
    let vk_tmp = temporary(&files.vk);
    let vk_digest = write_synced(&vk_tmp, |w| parameters.vk.write(w))?;
    let meta_tmp = temporary(&files.meta);
    write_synced(&meta_tmp, |w| {
        let meta = serde_json::json!({ "sector_size": files.circuit.sector_size.bytes() });
        w.write_all(meta.to_string().as_bytes())
    })?;
    let record = DigestRecord {
        circuit_id: files.id.clone(),
        seed_fingerprint: seed_fingerprint.to_string(),
        params: params_digest.clone(),
        vk: vk_digest,
    };
    let record_tmp = temporary(&files.record);
    write_synced(&record_tmp, |w| w.write_all(&record.to_json()))?;

    for (tmp, path) in [
        (&record_tmp, &files.record),
        (&params_tmp, &files.params),
        (&vk_tmp, &files.vk),
        (&meta_tmp, &files.meta),
    ] {
        fs::rename(tmp, path)
            .map_err(|e| ParamError::io("move parameter file into place", path, e))?;
    }
    if let Some(dir) = files.params.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ParamError::io("sync parameter directory", dir, e))?;
    }
    Ok(params_digest.bytes)
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn write_synced(
    path: &Path,
    write: impl FnOnce(&mut HashingWriter<BufWriter<File>>) -> std::io::Result<()>,
) -> Result<super::FileDigest, ParamError> {
    let io = |e| ParamError::io("write parameter file", path, e);
    let file = File::create(path).map_err(io)?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    write(&mut writer).map_err(io)?;
    writer.flush().map_err(io)?;
    let (buffered, digest) = writer.finish();
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(digest)
}

/// Builds the blank circuit of `circuit` and generates its parameters with `rng`.
fn generate_parameters(
    circuit: Circuit,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<groth16::Parameters<Bls12>> {
    let proofs = SectorProofs::for_size(circuit.sector_size);
    let size = circuit.sector_size.bytes();
    match circuit.kind {
        CircuitKind::Porep => {
            let config = proofs.seal.as_v1_config();
            with_shape!(size, porep_parameters, &config, rng)
        }
        CircuitKind::WindowPost => {
            let config = proofs.window_post.as_v1_config();
            with_shape!(size, window_post_parameters, &config, rng)
        }
        CircuitKind::WinningPost => {
            let config = proofs.winning_post.as_v1_config();
            with_shape!(size, winning_post_parameters, &config, rng)
        }
    }
}

fn porep_parameters<Tree: 'static + MerkleTreeTrait>(
    config: &PoRepConfig,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<groth16::Parameters<Bls12>> {
    let public_params = public_params::<Tree>(config)?;
    let circuit = <StackedCompound<Tree, DefaultPieceHasher> as CompoundProof<
        StackedDrg<'_, Tree, DefaultPieceHasher>,
        _,
    >>::blank_circuit(&public_params);
    Ok(groth16::generate_random_parameters::<Bls12, _, _>(
        circuit, rng,
    )?)
}

fn window_post_parameters<Tree: 'static + MerkleTreeTrait>(
    config: &PoStConfig,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<groth16::Parameters<Bls12>> {
    let public_params = window_post_public_params::<Tree>(config)?;
    post_parameters::<Tree>(&public_params, rng)
}

fn winning_post_parameters<Tree: 'static + MerkleTreeTrait>(
    config: &PoStConfig,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<groth16::Parameters<Bls12>> {
    let public_params = winning_post_public_params::<Tree>(config)?;
    post_parameters::<Tree>(&public_params, rng)
}

fn post_parameters<Tree: 'static + MerkleTreeTrait>(
    public_params: &storage_proofs_post::fallback::PublicParams,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<groth16::Parameters<Bls12>> {
    let circuit = <FallbackPoStCompound<Tree> as CompoundProof<
        FallbackPoSt<'_, Tree>,
        FallbackPoStCircuit<Tree>,
    >>::blank_circuit(public_params);
    Ok(groth16::generate_random_parameters::<Bls12, _, _>(
        circuit, rng,
    )?)
}

#[cfg(test)]
mod tests {
    use bellperson::gadgets::num::AllocatedNum;
    use bellperson::{ConstraintSystem, SynthesisError};
    use ff::Field;

    use blstrs::Scalar as Fr;

    use super::*;
    use crate::params::{ParamSeed, ParamStatus};

    /// x * x = y with y public: small enough to generate parameters in milliseconds.
    struct Square;

    impl bellperson::Circuit<Fr> for Square {
        fn synthesize<CS: ConstraintSystem<Fr>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
            let x = AllocatedNum::alloc(cs.namespace(|| "x"), || Ok(Fr::ONE))?;
            let y = x.square(cs.namespace(|| "x squared"))?;
            y.inputize(cs.namespace(|| "y"))
        }
    }

    fn toy(cache: &ParamCache) -> CircuitFiles {
        let circuit = Circuit::new(CircuitKind::Porep, SectorSize::KIB_2);
        let mut files = cache.files(circuit).expect("paths");
        // Keep the real names but make sure nothing real is touched.
        assert!(files.params.starts_with(cache.dir()));
        files.id = "toy".into();
        files
    }

    fn generate_toy(cache: &ParamCache, seed: ParamSeed) -> Vec<u8> {
        let files = toy(cache);
        generate_into(
            &files,
            seed.for_circuit(&files.id),
            &seed.fingerprint(),
            |rng| {
                Ok(
                    groth16::generate_random_parameters::<Bls12, _, _>(Square, rng)
                        .expect("generate"),
                )
            },
        )
        .expect("write");
        fs::read(&files.params).expect("read back")
    }

    #[test]
    fn same_seed_gives_identical_files_and_other_seeds_do_not() {
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let seed = ParamSeed::devnet_default();
        let first = generate_toy(&ParamCache::new(a.path(), seed), seed);
        let second = generate_toy(&ParamCache::new(b.path(), seed), seed);
        assert!(!first.is_empty());
        assert_eq!(first, second, "same seed, different bytes");
        let other = ParamSeed::from_bytes([1; 32]);
        let third = generate_toy(&ParamCache::new(b.path(), other), other);
        assert_ne!(
            first, third,
            "a different seed must give different parameters"
        );
    }

    #[test]
    fn truncated_or_corrupted_files_are_refused_with_a_fix() {
        let dir = tempfile::tempdir().expect("dir");
        let seed = ParamSeed::devnet_default();
        let cache = ParamCache::new(dir.path(), seed);
        generate_toy(&cache, seed);
        let files = toy(&cache);
        assert_eq!(cache.verify_files(&files).ok(), Some(()));

        let bytes = fs::read(&files.params).expect("read");
        fs::write(&files.params, &bytes[..bytes.len() / 2]).expect("truncate");
        let err = cache
            .verify_files(&files)
            .expect_err("truncated file accepted");
        let text = err.to_string();
        assert!(text.contains("truncated"), "{text}");
        assert!(
            text.contains("nelumbo proofs params --sector-size 2KiB"),
            "{text}"
        );

        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        fs::write(&files.params, &flipped).expect("corrupt");
        let text = cache
            .verify_files(&files)
            .expect_err("corrupt file accepted")
            .to_string();
        assert!(text.contains("corrupted"), "{text}");

        fs::write(&files.params, &bytes).expect("restore");
        let other_seed = ParamCache::new(dir.path(), ParamSeed::from_bytes([9; 32]));
        let text = other_seed
            .verify_files(&files)
            .expect_err("wrong seed accepted")
            .to_string();
        assert!(text.contains("seed"), "{text}");

        fs::remove_file(&files.params).expect("remove");
        assert!(matches!(
            cache.verify_files(&files),
            Err(ParamError::Missing { .. })
        ));
    }

    #[test]
    fn status_of_an_empty_cache_is_missing() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = ParamCache::new(dir.path(), ParamSeed::devnet_default());
        let circuit = Circuit::new(CircuitKind::WinningPost, SectorSize::KIB_2);
        assert_eq!(cache.status(circuit).expect("status"), ParamStatus::Missing);
        let err = cache.verify(circuit).expect_err("empty cache verified");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
