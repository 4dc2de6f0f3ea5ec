//! `config.toml`: the operator's settings. `init` writes it with every setting present and
//! explained; unknown keys are refused, so a typo is an error rather than a silently ignored
//! setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fvm_shared::econ::TokenAmount;
use nelumbo_proofs::ProofMode;
use nelumbo_rpc::{ApiInfo, RpcClient};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub api: ApiConfig,
    pub chain: ChainConfig,
    pub storage: StorageConfig,
    pub proofs: ProofsConfig,
    #[serde(default)]
    pub sealing: SealingConfig,
    #[serde(default)]
    pub mining: MiningConfig,
    #[serde(default)]
    pub deals: DealsConfig,
    #[serde(default)]
    pub spokes: SpokesConfig,
}

/// The hub's own deal policy: whatever a spoke says, the hub publishes only deals within it
/// (invariant 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DealsConfig {
    /// The most provider collateral one deal may lock from the hub's funds, in attoFIL.
    pub max_provider_collateral: String,
    /// Floors under any ask a spoke has the hub sign, in attoFIL per GiB per epoch.
    pub min_price: String,
    pub min_verified_price: String,
    /// A deal must start at least this many epochs after the hub publishes it.
    pub min_start_lead_epochs: i64,
    /// The shortest and longest deals published, in epochs.
    pub min_duration_epochs: i64,
    pub max_duration_epochs: i64,
    /// Uploaded pieces no deal has claimed yet: the most bytes kept at once.
    pub max_unclaimed_piece_bytes: u64,
    /// And how long one is kept before it is deleted.
    pub unclaimed_piece_ttl_secs: u64,
}

impl Default for DealsConfig {
    fn default() -> Self {
        Self {
            max_provider_collateral: "1000000000000000000".into(),
            min_price: "0".into(),
            min_verified_price: "0".into(),
            min_start_lead_epochs: 2880,
            min_duration_epochs: 180,
            max_duration_epochs: 1_278_000,
            max_unclaimed_piece_bytes: 64 << 30,
            unclaimed_piece_ttl_secs: 6 * 3600,
        }
    }
}

fn parse_atto(what: &str, text: &str) -> anyhow::Result<TokenAmount> {
    let value: num_bigint::BigUint = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{what} {text:?} is not a whole number of attoFIL"))?;
    Ok(TokenAmount::from_atto(num_bigint::BigInt::from(value)))
}

/// How the hub treats its spokes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpokesConfig {
    /// The least time between two changes of the miner's peer info on chain that spokes ask
    /// for (each costs the worker gas), in seconds.
    pub peer_info_min_interval_secs: u64,
}

impl Default for SpokesConfig {
    fn default() -> Self {
        Self {
            peer_info_min_interval_secs: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealingConfig {
    /// Sectors sealing at once; `sectors pledge` refuses beyond it.
    pub max_sealing_sectors: usize,
    /// Sectors in pre-commit 1 (SDR: one core-heavy, memory-heavy job each) at once.
    pub max_pre_commit_1: usize,
    /// Sectors in pre-commit 2 (tree building) at once.
    pub max_pre_commit_2: usize,
    /// Sectors in commit 2 (the SNARK: all cores, several GB) at once.
    pub max_commit_2: usize,
    /// A sector's committed lifetime, in epochs from its pre-commit.
    pub sector_lifetime_epochs: i64,
    /// Attempts at a failing step before the sector is marked Failed.
    pub max_retries: u32,
    /// Seconds a sector waits for more deal pieces before it is sealed part-empty.
    pub wait_deals_secs: u64,
    /// Keep the unsealed copy of sectors with deals, so pieces are served without unsealing.
    pub keep_unsealed: bool,
    /// Unsealing jobs at once (each is as heavy as pre-commit 1).
    pub max_unseal: usize,
    /// CPU priority (nice, 0 to 19) of the processes that run sealing proofs and unsealing:
    /// the hub proves WindowPoSt at 0, so the cores go to it first.
    pub worker_nice: i32,
}

impl Default for SealingConfig {
    fn default() -> Self {
        Self {
            max_sealing_sectors: 4,
            max_pre_commit_1: 1,
            max_pre_commit_2: 1,
            max_commit_2: 1,
            sector_lifetime_epochs: 518_400,
            max_retries: 8,
            wait_deals_secs: 3600,
            keep_unsealed: true,
            max_unseal: 1,
            worker_nice: 19,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MiningConfig {
    /// Whether the hub takes part in block elections.
    pub enabled: bool,
    /// CPU priority (nice) of the process that proves a won election (WinningPoSt): below
    /// WindowPoSt, above sealing.
    pub worker_nice: i32,
}

impl Default for MiningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            worker_nice: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the hub API listens. Loopback by default: spokes reach the hub over a private
    /// network, never the internet.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The chain's connection string, `TOKEN:/ip4/HOST/tcp/PORT/http`, with a `sign` token.
    /// `FULLNODE_API_INFO` in the environment overrides it.
    pub api_info: String,
    /// Seconds a chain call may take before it counts as unanswered.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_secs: u64,
    /// A message of the hub's addresses that holds back its sender's later messages for this
    /// many epochs is replaced at a higher fee.
    #[serde(default = "default_replace_after")]
    pub replace_after_epochs: i64,
}

fn default_call_timeout() -> u64 {
    30
}

fn default_replace_after() -> i64 {
    10
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directories that hold sectors (each gets `sealed/`, `cache/` and `unsealed/`).
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofsConfig {
    /// `real`, or `insecure-testing` for test chains whose genesis says so.
    pub mode: ProofMode,
}

/// Where the API listens unless configured otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2345";

/// The settings the hub runs with: `config.toml` checked and parsed once at start, each value
/// in the type it is used as (amounts as `TokenAmount`, the chain's connection string parsed,
/// seconds as `Duration`). Made by [`Config::settings`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_listen: SocketAddr,
    pub chain: ChainSettings,
    pub storage_paths: Vec<PathBuf>,
    pub proof_mode: ProofMode,
    /// `[sealing]` and `[mining]` hold no text to parse: checked, they are used as they are.
    pub sealing: SealingConfig,
    pub mining: MiningConfig,
    pub deals: DealSettings,
    pub peer_info_min_interval: Duration,
}

/// `[chain]`, parsed.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// `None` when the file names no chain (`FULLNODE_API_INFO` must then).
    pub api_info: Option<ApiInfo>,
    pub call_timeout: Duration,
    pub replace_after_epochs: i64,
}

impl ChainSettings {
    /// The chain's client: `FULLNODE_API_INFO` if set, else `[chain] api_info`.
    pub fn client(&self) -> anyhow::Result<RpcClient> {
        let from_env = std::env::var(nelumbo_chain_api::FULLNODE_API_INFO)
            .ok()
            .filter(|s| !s.is_empty())
            .map(|text| {
                ApiInfo::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", nelumbo_chain_api::FULLNODE_API_INFO))
            })
            .transpose()?;
        let info = from_env
            .or_else(|| self.api_info.clone())
            .with_context(|| {
                format!(
                    "no chain to talk to: set [chain] api_info in config.toml or {}",
                    nelumbo_chain_api::FULLNODE_API_INFO
                )
            })?;
        Ok(RpcClient::from_api_info(&info).with_timeout(self.call_timeout))
    }
}

/// `[deals]`, parsed: the hub's own deal policy.
#[derive(Debug, Clone)]
pub struct DealSettings {
    pub max_provider_collateral: TokenAmount,
    pub min_price: TokenAmount,
    pub min_verified_price: TokenAmount,
    pub min_start_lead_epochs: i64,
    pub min_duration_epochs: i64,
    pub max_duration_epochs: i64,
    pub max_unclaimed_piece_bytes: u64,
    pub unclaimed_piece_ttl: Duration,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read {}: run `nelumbo-miner init` first", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        config
            .validate()
            .with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    /// Checks every setting (the same as [`Config::settings`], keeping nothing).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.settings().map(drop)
    }

    /// The settings the hub runs with, each checked and parsed once. Every field of the file
    /// is named here (no `..`): a setting added to the file does not compile until it is
    /// checked and carried into [`Settings`].
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let Config {
            api: ApiConfig { listen },
            chain:
                ChainConfig {
                    api_info,
                    call_timeout_secs,
                    replace_after_epochs,
                },
            storage: StorageConfig { paths },
            proofs: ProofsConfig { mode },
            sealing,
            mining,
            deals:
                DealsConfig {
                    max_provider_collateral,
                    min_price,
                    min_verified_price,
                    min_start_lead_epochs,
                    min_duration_epochs,
                    max_duration_epochs,
                    max_unclaimed_piece_bytes,
                    unclaimed_piece_ttl_secs,
                },
            spokes: SpokesConfig {
                peer_info_min_interval_secs,
            },
        } = self;
        let SealingConfig {
            max_sealing_sectors,
            max_pre_commit_1,
            max_pre_commit_2,
            max_commit_2,
            sector_lifetime_epochs,
            max_retries: _,
            wait_deals_secs: _,
            keep_unsealed: _,
            max_unseal,
            worker_nice: sealing_nice,
        } = sealing;
        let MiningConfig {
            enabled: _,
            worker_nice: mining_nice,
        } = mining;

        anyhow::ensure!(
            !paths.is_empty(),
            "[storage] paths is empty: name at least one directory for sectors"
        );
        anyhow::ensure!(
            [
                max_sealing_sectors,
                max_pre_commit_1,
                max_pre_commit_2,
                max_commit_2,
                max_unseal
            ]
            .iter()
            .all(|&&n| n > 0),
            "[sealing] limits must be at least 1"
        );
        anyhow::ensure!(
            *sector_lifetime_epochs > 0,
            "[sealing] sector_lifetime_epochs must be positive"
        );
        anyhow::ensure!(
            (0..=19).contains(sealing_nice) && (0..=19).contains(mining_nice),
            "worker_nice must be between 0 and 19 (a higher number is a lower priority)"
        );
        anyhow::ensure!(
            min_duration_epochs <= max_duration_epochs,
            "[deals] min_duration_epochs is above max_duration_epochs"
        );
        anyhow::ensure!(
            *min_start_lead_epochs >= 0,
            "[deals] min_start_lead_epochs must not be negative"
        );
        anyhow::ensure!(
            *call_timeout_secs > 0,
            "[chain] call_timeout_secs must be at least 1"
        );
        anyhow::ensure!(
            *replace_after_epochs > 0,
            "[chain] replace_after_epochs must be at least 1"
        );
        let api_info = if api_info.is_empty() {
            None
        } else {
            Some(ApiInfo::parse(api_info).map_err(|e| anyhow::anyhow!("[chain] api_info: {e}"))?)
        };
        Ok(Settings {
            api_listen: *listen,
            chain: ChainSettings {
                api_info,
                call_timeout: Duration::from_secs(*call_timeout_secs),
                replace_after_epochs: *replace_after_epochs,
            },
            storage_paths: paths.clone(),
            proof_mode: *mode,
            sealing: sealing.clone(),
            mining: mining.clone(),
            deals: DealSettings {
                max_provider_collateral: parse_atto(
                    "[deals] max_provider_collateral",
                    max_provider_collateral,
                )?,
                min_price: parse_atto("[deals] min_price", min_price)?,
                min_verified_price: parse_atto("[deals] min_verified_price", min_verified_price)?,
                min_start_lead_epochs: *min_start_lead_epochs,
                min_duration_epochs: *min_duration_epochs,
                max_duration_epochs: *max_duration_epochs,
                max_unclaimed_piece_bytes: *max_unclaimed_piece_bytes,
                unclaimed_piece_ttl: Duration::from_secs(*unclaimed_piece_ttl_secs),
            },
            peer_info_min_interval: Duration::from_secs(*peer_info_min_interval_secs),
        })
    }

    /// Every setting at its default: the API on loopback, sectors under `repo/storage`, no
    /// chain yet (`[chain] api_info` or FULLNODE_API_INFO), real proofs. `init` starts here.
    pub fn defaults(repo: &Path) -> Self {
        Self {
            api: ApiConfig {
                listen: DEFAULT_LISTEN.parse().expect("a valid default"),
            },
            chain: ChainConfig {
                api_info: String::new(),
                call_timeout_secs: 30,
                replace_after_epochs: 10,
            },
            storage: StorageConfig {
                paths: vec![repo.join("storage")],
            },
            proofs: ProofsConfig {
                mode: ProofMode::Real,
            },
            sealing: SealingConfig::default(),
            mining: MiningConfig::default(),
            deals: DealsConfig::default(),
            spokes: SpokesConfig::default(),
        }
    }

    /// The file `init` writes: every setting, each explained.
    pub fn render(&self) -> String {
        let paths: Vec<String> = self
            .storage
            .paths
            .iter()
            .map(|p| toml_string(&p.display().to_string()))
            .collect();
        format!(
            r#"# nelumbo-miner configuration. Restart the hub after changing it.

[api]
# Where the hub API (JSON-RPC on /rpc/v0 and /rpc/v1, piece upload and reads, /health,
# /metrics, the /status page) listens. Keep it on loopback or a private network: every call
# and piece transfer needs a token, but spokes are the only processes that should face the
# internet.
listen = {listen}

[chain]
# The chain node's connection string, TOKEN:/ip4/HOST/tcp/PORT/http, with a token that may
# sign (print one with `nelumbo-chain auth api-info --perm sign`, or Lotus's
# `lotus auth api-info --perm sign`). FULLNODE_API_INFO in the environment overrides it.
api_info = {api_info}
# Seconds a chain call may take before the hub counts it as unanswered and retries later.
call_timeout_secs = {call_timeout}
# A message from the hub's addresses that holds back the sender's later messages for this many
# epochs is replaced by the same message at a higher fee (premium +25%, Lotus's rule).
replace_after_epochs = {replace_after}

[storage]
# Directories that hold sectors; each gets sealed/, cache/ and unsealed/.
paths = [{paths}]

[proofs]
# real, or insecure-testing for a test chain whose genesis names that mode. The two never
# mix: a real chain refuses insecure proofs and the other way round.
mode = "{mode}"

[sealing]
# Sectors sealing at once; `sectors pledge` refuses beyond it.
max_sealing_sectors = {max_sealing}
# Sectors in each heavy phase at once. Pre-commit 1 (SDR) takes a core and about 1.1x the
# sector size in memory; commit 2 (the SNARK) takes every core and several GB. Proving and
# mining never wait for these slots.
max_pre_commit_1 = {pc1}
max_pre_commit_2 = {pc2}
max_commit_2 = {c2}
# How long sectors are committed for, in epochs from their pre-commit (the chain bounds it).
sector_lifetime_epochs = {lifetime}
# Attempts at a failing step (with backoff from 5 s to 5 min) before a sector is Failed.
max_retries = {retries}
# Seconds a sector collects deal pieces before it is sealed even if not full.
wait_deals_secs = {wait_deals}
# Keep the unsealed copy of sectors with deals (as large as the sector), so pieces are read
# without unsealing; with false, reads of sealed pieces need `SectorsUnsealPiece` first.
keep_unsealed = {keep_unsealed}
# Unsealing jobs at once (SectorsUnsealPiece); each is as heavy as pre-commit 1.
max_unseal = {max_unseal}
# Sealing proofs and unsealing run in child processes at this CPU priority (nice, 0 to 19);
# WindowPoSt runs in the hub at 0, so it gets the cores whenever both want them.
worker_nice = {sealing_nice}

[mining]
# Take part in block elections and submit won blocks (WinningPoSt).
enabled = {mining}
# A WinningPoSt runs in a child process at this priority: below WindowPoSt, above sealing.
worker_nice = {mining_nice}

[deals]
# The hub's own deal policy: whatever a markets process (a spoke) asks, the hub publishes only
# deals within these bounds, and only for pieces it holds.
# The most provider collateral one deal may lock from the hub's funds (attoFIL; 1 FIL).
max_provider_collateral = {max_collateral}
# Floors under any ask a spoke has the hub sign (attoFIL per GiB per epoch). A deal's price
# must also be at least the last ask the hub signed.
min_price = {min_price}
min_verified_price = {min_verified_price}
# A deal must start at least this many epochs after it is published: time to seal. 2880 is a
# day of 30-second mainnet epochs; a devnet with small sectors needs far less.
min_start_lead_epochs = {lead}
# The shortest and longest deals published, in epochs.
min_duration_epochs = {min_duration}
max_duration_epochs = {max_duration}
# Uploaded pieces no deal has claimed yet (spokes upload before they publish): the most bytes
# kept at once, and seconds before an unclaimed one is deleted.
max_unclaimed_piece_bytes = {max_unclaimed}
unclaimed_piece_ttl_secs = {unclaimed_ttl}

[spokes]
# The least seconds between two changes of the miner's peer ID or addresses on chain that
# spokes ask for (each change costs the worker gas).
peer_info_min_interval_secs = {peer_interval}
"#,
            listen = toml_string(&self.api.listen.to_string()),
            api_info = toml_string(&self.chain.api_info),
            paths = paths.join(", "),
            mode = self.proofs.mode,
            max_sealing = self.sealing.max_sealing_sectors,
            pc1 = self.sealing.max_pre_commit_1,
            pc2 = self.sealing.max_pre_commit_2,
            c2 = self.sealing.max_commit_2,
            lifetime = self.sealing.sector_lifetime_epochs,
            retries = self.sealing.max_retries,
            wait_deals = self.sealing.wait_deals_secs,
            keep_unsealed = self.sealing.keep_unsealed,
            max_unseal = self.sealing.max_unseal,
            mining = self.mining.enabled,
            sealing_nice = self.sealing.worker_nice,
            mining_nice = self.mining.worker_nice,
            call_timeout = self.chain.call_timeout_secs,
            replace_after = self.chain.replace_after_epochs,
            max_collateral = toml_string(&self.deals.max_provider_collateral),
            min_price = toml_string(&self.deals.min_price),
            min_verified_price = toml_string(&self.deals.min_verified_price),
            lead = self.deals.min_start_lead_epochs,
            min_duration = self.deals.min_duration_epochs,
            max_duration = self.deals.max_duration_epochs,
            max_unclaimed = self.deals.max_unclaimed_piece_bytes,
            unclaimed_ttl = self.deals.unclaimed_piece_ttl_secs,
            peer_interval = self.spokes.peer_info_min_interval_secs,
        )
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            api: ApiConfig {
                listen: DEFAULT_LISTEN.parse().expect("addr"),
            },
            chain: ChainConfig {
                api_info: "abc.def:/ip4/127.0.0.1/tcp/1234/http".into(),
                call_timeout_secs: 30,
                replace_after_epochs: 10,
            },
            storage: StorageConfig {
                paths: vec![PathBuf::from("/srv/sectors \"one\"")],
            },
            proofs: ProofsConfig {
                mode: ProofMode::Real,
            },
            sealing: SealingConfig::default(),
            mining: MiningConfig {
                enabled: false,
                worker_nice: 10,
            },
            deals: DealsConfig::default(),
            spokes: SpokesConfig::default(),
        }
    }

    #[test]
    fn the_rendered_file_reads_back_the_same() {
        let config = sample();
        let text = config.render();
        assert_eq!(toml::from_str::<Config>(&text).expect("parse"), config);
        assert!(text.contains("# Where the hub API"));
        let missing = nelumbo_testkit::config::keys_missing_from_rendered(&config, &text);
        assert!(
            missing.is_empty(),
            "config.toml does not document {missing:?}"
        );
    }

    #[test]
    fn the_defaults_render_every_key_and_read_back() {
        let config = Config::defaults(Path::new("/var/lib/nelumbo/miner"));
        let text = config.render();
        assert_eq!(toml::from_str::<Config>(&text).expect("parse"), config);
        let missing = nelumbo_testkit::config::keys_missing_from_rendered(&config, &text);
        assert!(missing.is_empty(), "{missing:?}");
        assert!(text.contains("/var/lib/nelumbo/miner/storage"), "{text}");
    }

    #[test]
    fn unknown_keys_and_empty_storage_are_refused() {
        let text = sample()
            .render()
            .replace("[proofs]", "[proofs]\nmdoe = \"real\"");
        let error = toml::from_str::<Config>(&text).expect_err("typo accepted");
        assert!(error.to_string().contains("mdoe"), "{error}");
        let mut config = sample();
        config.storage.paths.clear();
        assert!(config.validate().is_err());
    }

    #[test]
    fn settings_parse_the_text_once_and_a_bad_value_is_named() {
        let mut config = sample();
        config.deals.max_provider_collateral = " 7000 ".into();
        config.deals.unclaimed_piece_ttl_secs = 90;
        let settings = config.settings().expect("settings");
        assert_eq!(
            settings.deals.max_provider_collateral,
            TokenAmount::from_atto(7000)
        );
        assert_eq!(settings.deals.unclaimed_piece_ttl, Duration::from_secs(90));
        assert_eq!(
            settings.chain.api_info.map(|i| i.token),
            Some(Some("abc.def".to_string()))
        );
        assert_eq!(settings.chain.call_timeout, Duration::from_secs(30));
        type Edit = fn(&mut Config);
        let cases: [(Edit, &str); 10] = [
            (|c| c.storage.paths.clear(), "[storage] paths is empty"),
            (|c| c.sealing.max_commit_2 = 0, "[sealing] limits"),
            (|c| c.sealing.max_unseal = 0, "[sealing] limits"),
            (
                |c| c.sealing.sector_lifetime_epochs = 0,
                "[sealing] sector_lifetime_epochs",
            ),
            (|c| c.mining.worker_nice = 20, "worker_nice"),
            (
                |c| c.deals.min_price = "free".into(),
                "[deals] min_price \"free\"",
            ),
            (
                |c| c.deals.min_duration_epochs = c.deals.max_duration_epochs + 1,
                "[deals] min_duration_epochs",
            ),
            (
                |c| c.chain.call_timeout_secs = 0,
                "[chain] call_timeout_secs",
            ),
            (
                |c| c.chain.replace_after_epochs = 0,
                "[chain] replace_after_epochs",
            ),
            (|c| c.chain.api_info = "nonsense".into(), "[chain] api_info"),
        ];
        for (edit, named) in cases {
            let mut config = sample();
            edit(&mut config);
            let error = config.settings().expect_err(named);
            assert!(
                format!("{error:#}").contains(named),
                "{error:#} does not name {named}"
            );
        }
    }
}
