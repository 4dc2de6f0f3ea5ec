//! The chain's repo directory: genesis, keystore, database, token secret and the files a
//! running daemon leaves for its CLI (`api`, `token`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where a chain keeps its files.
#[derive(Debug, Clone)]
pub struct Repo {
    pub dir: PathBuf,
}

impl Repo {
    /// `--repo`, else `NELUMBO_CHAIN_REPO`, else `~/.nelumbo/chain`.
    pub fn locate(flag: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = match flag.or_else(|| std::env::var_os("NELUMBO_CHAIN_REPO").map(PathBuf::from)) {
            Some(dir) => dir,
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set: give --repo")?)
                    .join(".nelumbo")
                    .join("chain")
            }
        };
        Ok(Self { dir })
    }

    pub fn genesis(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }
    pub fn keystore(&self) -> PathBuf {
        self.dir.join("keystore")
    }
    pub fn database(&self) -> PathBuf {
        self.dir.join("chain.redb")
    }
    pub fn token_secret(&self) -> PathBuf {
        self.dir.join("token-secret")
    }
    /// The admin token a running daemon writes for the CLI.
    pub fn token(&self) -> PathBuf {
        self.dir.join("token")
    }
    /// The API address a running daemon writes (`/ip4/127.0.0.1/tcp/PORT/http`).
    pub fn api(&self) -> PathBuf {
        self.dir.join("api")
    }
    /// The wallet's default address (the faucet).
    pub fn default_address(&self) -> PathBuf {
        self.dir.join("default-address")
    }

    /// Takes the repo's lock for a daemon; held until the returned file is dropped.
    pub fn lock(&self) -> anyhow::Result<File> {
        let path = self.dir.join("daemon.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        file.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another nelumbo-chain is running on {}: stop it first",
                self.dir.display()
            )
        })?;
        Ok(file)
    }

    /// Writes a file readable by its owner only.
    pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("write {}", path.display()))?;
        std::io::Write::write_all(&mut file, contents.as_bytes())?;
        file.sync_all()?;
        Ok(())
    }
}
