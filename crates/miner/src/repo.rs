//! The hub's repo directory.
//!
//! ```text
//! config.toml        the operator's settings (written once by init, documented inline)
//! keystore/          owner (secp256k1) and worker (BLS) keys, owner-only files
//! miner.json         the miner actor init created, with its owner, worker and sector size
//! init-message.json  the CreateMiner message while init waits for it (resumes a crashed init)
//! token-secret       the API token key; token: an admin token for the CLI (both owner-only)
//! api                the running daemon's API address, for the CLI
//! init-fund-worker.json  the worker's funding message while init waits for it
//! hub.redb           the database: sector records (the sealing state machine), counters
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use nelumbo_miner_api::types::HubMinerInfo;

#[derive(Debug, Clone)]
pub struct Repo {
    pub dir: PathBuf,
}

impl Repo {
    /// `--repo`, else `NELUMBO_MINER_REPO`, else `~/.nelumbo/miner`.
    pub fn locate(flag: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = nelumbo_service::locate_repo(flag, "NELUMBO_MINER_REPO", "miner")?;
        Ok(Self { dir })
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn keystore(&self) -> PathBuf {
        self.dir.join("keystore")
    }
    pub fn miner(&self) -> PathBuf {
        self.dir.join("miner.json")
    }
    pub fn init_message(&self) -> PathBuf {
        self.dir.join("init-message.json")
    }
    pub fn token_secret(&self) -> PathBuf {
        self.dir.join("token-secret")
    }
    pub fn token(&self) -> PathBuf {
        self.dir.join("token")
    }
    pub fn api(&self) -> PathBuf {
        self.dir.join("api")
    }
    pub fn database(&self) -> PathBuf {
        self.dir.join("hub.redb")
    }

    /// The miner `init` created; an error that says to run `init` if there is none.
    pub fn miner_info(&self) -> anyhow::Result<HubMinerInfo> {
        let path = self.miner();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} has no miner: create one with `nelumbo-miner --repo {} init`",
                self.dir.display(),
                self.dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    pub fn write_miner_info(&self, info: &HubMinerInfo) -> anyhow::Result<()> {
        write_json(&self.miner(), info)
    }
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    nelumbo_service::write_atomic(path, &bytes).with_context(|| format!("write {}", path.display()))
}
