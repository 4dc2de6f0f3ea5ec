//! The markets process's repo directory.
//!
//! ```text
//! config.toml     the operator's settings (written by init, documented inline)
//! identity.key    the libp2p identity (ed25519, protobuf encoding; owner-only)
//! hub-api-info    the hub's connection string, TOKEN:/ip4/.../http (owner-only)
//! miner.json      the miner this process makes deals for, as the hub reported it at init
//! token-secret    the admin API's token key; token: an admin token for the CLI (owner-only)
//! api             the running process's admin API address, for the CLI
//! markets.redb    deals, their history, the ask, the IPNI advertisement chain
//! piecedir.redb   the piece directory (unless [database] url puts it in PostgreSQL)
//! staging/        deal data while it is transferred and checked (unless [deals] staging_dir)
//! ```
//!
//! There is no wallet key here (invariant 3): deals are published, and asks signed, by the hub.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct Repo {
    pub dir: PathBuf,
}

/// The miner, as recorded at init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerRecord {
    pub actor: String,
    pub sector_size: u64,
}

impl Repo {
    /// `--repo`, else `NELUMBO_MARKETS_REPO`, else `~/.nelumbo/markets`.
    pub fn locate(flag: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = nelumbo_service::locate_repo(flag, "NELUMBO_MARKETS_REPO", "markets")?;
        Ok(Self { dir })
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn identity(&self) -> PathBuf {
        self.dir.join("identity.key")
    }
    pub fn hub_api_info(&self) -> PathBuf {
        self.dir.join("hub-api-info")
    }
    pub fn miner(&self) -> PathBuf {
        self.dir.join("miner.json")
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
        self.dir.join("markets.redb")
    }
    /// The embedded piece directory.
    pub fn piece_directory(&self) -> PathBuf {
        self.dir.join("piecedir.redb")
    }
    pub fn default_staging(&self) -> PathBuf {
        self.dir.join("staging")
    }

    pub fn load_identity(&self) -> anyhow::Result<libp2p::identity::Keypair> {
        let path = self.identity();
        if !path.exists() {
            anyhow::bail!(
                "{} is missing: run `nelumbo-markets init` first",
                path.display()
            );
        }
        // The libp2p identity is the miner's on chain: refused when others may read it.
        let bytes = nelumbo_rpc::read_private_bytes(&path)?;
        libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a libp2p private key", path.display()))
    }

    pub fn hub_connection(&self) -> anyhow::Result<String> {
        if let Ok(info) = std::env::var(nelumbo_miner_api::MINER_API_INFO)
            && !info.trim().is_empty()
        {
            return Ok(info.trim().to_string());
        }
        let path = self.hub_api_info();
        if !path.exists() {
            anyhow::bail!(
                "{} is missing: run `nelumbo-markets init` first",
                path.display()
            );
        }
        // It holds the hub token: refused when others may read it.
        Ok(nelumbo_rpc::read_private(&path)?.trim().to_string())
    }

    pub fn miner_record(&self) -> anyhow::Result<MinerRecord> {
        let path = self.miner();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("read {}: run `nelumbo-markets init` first", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }
}
