//! Process-wide settings of the proofs library.
//!
//! `storage-proofs-core` reads its settings (parameter directory, SDR parents cache, multicore
//! SDR) from `FIL_PROOFS_*` environment variables once, the first time any proof function runs.
//! [`init`] sets them from a [`ProofsConfig`] before that happens and checks that the library
//! took them, so the directory Nelumbo checks is the directory the library reads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::params::{ParamCache, ParamSeed};

/// Where proof files live and how parameters are derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofsConfig {
    /// Groth16 parameters and verifying keys (1.1 GB for 2 KiB sectors).
    pub param_dir: PathBuf,
    /// The SDR parents cache the library builds on first use of a sector size.
    pub parent_cache_dir: PathBuf,
    /// The seed parameters are generated from; every node of a devnet must use the same one.
    pub param_seed: ParamSeed,
}

impl ProofsConfig {
    /// The defaults: `FIL_PROOFS_PARAMETER_CACHE` and `FIL_PROOFS_PARENT_CACHE` when set,
    /// otherwise `~/.cache/nelumbo/params` and `~/.cache/nelumbo/parents`.
    pub fn from_env() -> Result<Self, InitError> {
        let cache = default_cache_root()?;
        let from_env = |var: &str, default: PathBuf| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or(default)
        };
        Ok(Self {
            param_dir: from_env("FIL_PROOFS_PARAMETER_CACHE", cache.join("params")),
            parent_cache_dir: from_env("FIL_PROOFS_PARENT_CACHE", cache.join("parents")),
            param_seed: ParamSeed::devnet_default(),
        })
    }

    pub fn param_cache(&self) -> ParamCache {
        ParamCache::new(&self.param_dir, self.param_seed)
    }
}

/// `~/.cache/nelumbo`, or `$XDG_CACHE_HOME/nelumbo`.
pub fn default_cache_root() -> Result<PathBuf, InitError> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("nelumbo"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or(InitError::NoHome)?;
    Ok(PathBuf::from(home).join(".cache").join("nelumbo"))
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "HOME is not set, so there is no default cache directory: set HOME or FIL_PROOFS_PARAMETER_CACHE and FIL_PROOFS_PARENT_CACHE"
    )]
    NoHome,
    #[error(
        "the proofs library is already configured with {current} in this process, so {requested} cannot be used"
    )]
    Conflict { current: String, requested: String },
}

static CONFIG: OnceLock<ProofsConfig> = OnceLock::new();

/// Configures the proofs library for this process. Call it early, before threads that read the
/// environment start; later calls must pass the same configuration.
pub fn init(config: ProofsConfig) -> Result<&'static ProofsConfig, InitError> {
    let mut fresh = false;
    let current = CONFIG.get_or_init(|| {
        fresh = true;
        config.clone()
    });
    if fresh {
        set_library_env(current);
    }
    if *current != config {
        return Err(InitError::Conflict {
            current: describe(current),
            requested: describe(&config),
        });
    }
    let settings = &storage_proofs_core::settings::SETTINGS;
    if Path::new(&settings.parameter_cache) != current.param_dir {
        return Err(InitError::Conflict {
            current: format!("parameter directory {}", settings.parameter_cache),
            requested: describe(current),
        });
    }
    Ok(current)
}

/// The configuration [`init`] installed, if any.
pub fn current() -> Option<&'static ProofsConfig> {
    CONFIG.get()
}

fn describe(config: &ProofsConfig) -> String {
    format!(
        "parameter directory {} (seed {}), parents cache {}",
        config.param_dir.display(),
        config.param_seed.fingerprint(),
        config.parent_cache_dir.display()
    )
}

fn set_library_env(config: &ProofsConfig) {
    let vars = [
        ("FIL_PROOFS_PARAMETER_CACHE", config.param_dir.as_os_str()),
        (
            "FIL_PROOFS_PARENT_CACHE",
            config.parent_cache_dir.as_os_str(),
        ),
        // Pre-commit 1 and unsealing are about 8 times faster with the multicore SDR.
        ("FIL_PROOFS_USE_MULTICORE_SDR", "1".as_ref()),
    ];
    for (name, value) in vars {
        // SAFETY: this runs once per process (guarded by `CONFIG`), and callers are told to
        // call `init` before starting threads that read the environment. Nothing in Nelumbo
        // reads these variables concurrently; the proofs library reads them lazily afterwards.
        unsafe { std::env::set_var(name, value) };
    }
    // Locally generated parameters differ from the published ones: never compare against the
    // published manifest.
    // SAFETY: as above.
    unsafe { std::env::remove_var("FIL_PROOFS_VERIFY_PRODUCTION_PARAMS") };
}
