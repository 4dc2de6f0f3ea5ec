//! The chain's repo directory: genesis, keystore, database, token secret and the files a
//! running daemon leaves for its CLI (`api`, `token`).

use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a chain keeps its files.
#[derive(Debug, Clone)]
pub struct Repo {
    pub dir: PathBuf,
}

impl Repo {
    /// `--repo`, else `NELUMBO_CHAIN_REPO`, else `~/.nelumbo/chain`.
    pub fn locate(flag: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = nelumbo_service::locate_repo(flag, "NELUMBO_CHAIN_REPO", "chain")?;
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
        Ok(nelumbo_service::lock_repo(&self.dir, "nelumbo-chain")?)
    }

    /// Writes a file readable by its owner only.
    pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
        Ok(nelumbo_service::write_private(path, contents)?)
    }
}
