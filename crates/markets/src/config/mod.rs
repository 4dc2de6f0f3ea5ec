//! `config.toml`: the operator's settings. `init` writes it with every setting present and
//! explained; unknown keys are refused, so a typo is an error rather than an ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

mod settings;
pub use settings::{NetworkSettings, Settings};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub network: NetworkConfig,
    pub api: ApiConfig,
    pub deals: DealsConfig,
    pub ask: AskConfig,
    /// Absent in repos made before retrieval existed: the defaults then.
    #[serde(default)]
    pub retrieval: RetrievalConfig,
    /// Absent in repos made before indexing existed: the defaults then.
    #[serde(default)]
    pub indexing: IndexingConfig,
    /// Absent in repos made before the shared database existed: embedded then.
    #[serde(default)]
    pub database: DatabaseConfig,
}

/// The environment variable that, when set, overrides `[database] url` (so a password can come
/// from a secret store rather than the file).
pub const DATABASE_URL_ENV: &str = "NELUMBO_DATABASE_URL";

/// `[database]`: where state that several markets processes share is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL (or YugabyteDB YSQL) URL; empty: everything embedded in the repo.
    pub url: String,
    /// Whether start applies missing schema migrations (otherwise `db migrate` must first).
    pub migrate_on_start: bool,
    /// Connections this process keeps open at most.
    pub max_connections: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            migrate_on_start: true,
            max_connections: 16,
        }
    }
}

impl DatabaseConfig {
    /// The database URL in force: the environment's, else the file's; `None` for embedded.
    pub fn url(&self) -> Option<String> {
        std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| (!self.url.is_empty()).then(|| self.url.clone()))
    }
}

/// `[indexing]`: IPNI advertisements and announcements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexingConfig {
    /// Indexers to announce the head to (`PUT {url}/announce`), e.g. "https://cid.contact".
    pub indexers: Vec<String>,
    /// Seconds an announcement may take.
    pub announce_timeout_secs: u64,
    /// The longest wait between retries of a failed announcement (doubling from 1 s).
    pub announce_max_backoff_secs: u64,
    /// Seconds between checks of the deals against the chain (ends, slashing), besides the
    /// checks a deal's change of state starts.
    pub check_secs: u64,
}

impl Default for IndexingConfig {
    fn default() -> Self {
        Self {
            indexers: Vec::new(),
            announce_timeout_secs: 10,
            announce_max_backoff_secs: 300,
            check_secs: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// libp2p listen multiaddrs (public).
    pub listen: Vec<String>,
    /// Multiaddrs to publish on chain and to clients instead of the listen addresses (for NAT).
    pub announce: Vec<String>,
    /// Bounds on what strangers can hold open (see [`ConnectionLimits`]).
    #[serde(default = "limits::connections")]
    pub max_connections: u32,
    #[serde(default = "limits::per_ip")]
    pub max_connections_per_ip: u32,
    #[serde(default = "limits::per_peer")]
    pub max_connections_per_peer: u32,
    #[serde(default = "limits::pending")]
    pub max_pending_connections: u32,
    #[serde(default = "limits::requests_per_peer")]
    pub max_requests_per_peer: usize,
    #[serde(default = "limits::in_check")]
    pub max_proposals_in_check: usize,
}

/// Bounds on what strangers can hold open on the public libp2p side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Established incoming connections at once, in all.
    pub max_connections: u32,
    /// Established incoming connections at once from one IP address.
    pub max_connections_per_ip: u32,
    /// Connections from one peer at once.
    pub max_connections_per_peer: u32,
    /// Incoming connections still in their handshake at once.
    pub max_pending_connections: u32,
    /// Requests one peer may have in flight at once; more are answered "busy".
    pub max_requests_per_peer: usize,
    /// Proposals checked at once (each may call the hub and probe a URL); more are answered
    /// "busy".
    pub max_proposals_in_check: usize,
}

mod limits {
    pub fn connections() -> u32 {
        4096
    }
    pub fn per_ip() -> u32 {
        128
    }
    pub fn per_peer() -> u32 {
        4
    }
    pub fn pending() -> u32 {
        128
    }
    pub fn requests_per_peer() -> usize {
        8
    }
    pub fn in_check() -> usize {
        32
    }
}

impl NetworkConfig {
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections_per_peer: self.max_connections_per_peer,
            max_pending_connections: self.max_pending_connections,
            max_requests_per_peer: self.max_requests_per_peer,
            max_proposals_in_check: self.max_proposals_in_check,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The admin API, health and metrics (keep it private).
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DealsConfig {
    /// Where deal data is staged (default: REPO/staging).
    pub staging_dir: Option<PathBuf>,
    /// The least free space staging must keep; deals that would go below are refused.
    pub staging_reserve_bytes: u64,
    /// A deal must start at least this many epochs after it is proposed (time for the
    /// transfer, publishing and sealing).
    pub min_start_lead_epochs: i64,
    /// The shortest and longest deals taken, in epochs.
    pub min_duration_epochs: i64,
    pub max_duration_epochs: i64,
    /// Transfers running at once.
    pub max_transfers: usize,
    /// A transfer that receives nothing for this long is restarted (with Range).
    pub stall_timeout_secs: u64,
    /// Attempts at a transfer before the deal fails.
    pub max_transfer_attempts: u32,
    /// The most provider collateral a deal may ask of this provider, in attoFIL: the hub locks
    /// it from the worker's funds for the deal's whole life.
    pub max_provider_collateral: String,
    /// An external deal filter, run with `sh -c`: the deal as JSON on stdin; exit 0 accepts,
    /// anything else rejects with stdout as the reason (Boost's format). Empty: none.
    pub filter: String,
    /// Private addresses transfers may reach anyway (networks, or address:port); by default
    /// only public addresses are fetched from.
    pub transfer_allow: Vec<String>,
    /// The most staging all deals in progress may hold (the high-water mark).
    pub staging_max_bytes: u64,
    /// Seconds after a deal failed before its staged data is removed.
    pub failed_staging_grace_secs: u64,
    /// Seconds an offline deal waits for `deals import-data` before it fails.
    pub offline_import_timeout_secs: u64,
    /// A transfer slower than this (bytes per second, over `transfer_rate_window_secs`) is cut
    /// off and counts as a failed attempt.
    pub min_transfer_bytes_per_sec: u64,
    pub transfer_rate_window_secs: u64,
    /// A transfer not finished this many seconds after it started fails.
    pub transfer_deadline_secs: u64,
}

impl Default for DealsConfig {
    fn default() -> Self {
        Self {
            staging_dir: None,
            staging_reserve_bytes: 1 << 30,
            min_start_lead_epochs: 2880,
            min_duration_epochs: 180,
            max_duration_epochs: 1_278_000,
            max_transfers: 4,
            stall_timeout_secs: 60,
            max_transfer_attempts: 10,
            max_provider_collateral: "1000000000000000000".into(),
            filter: String::new(),
            transfer_allow: Vec::new(),
            staging_max_bytes: 1 << 40,
            failed_staging_grace_secs: 24 * 3600,
            offline_import_timeout_secs: 3 * 24 * 3600,
            min_transfer_bytes_per_sec: 16 * 1024,
            transfer_rate_window_secs: 60,
            transfer_deadline_secs: 24 * 3600,
        }
    }
}

/// `[retrieval]`: the public HTTP listener (`/piece`, `/ipfs`), its cache and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// The public HTTP listener.
    pub listen: SocketAddr,
    /// The base URL clients are told to use (`/fil/retrieval/transports/1.0.0`), for example
    /// `https://retrieval.example.com`. Empty: `http://` and the listen address (loopback for
    /// 0.0.0.0), which only this machine can reach.
    pub public_url: String,
    /// The piece cache (default: REPO/piece-cache) and the most it holds.
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
    /// Seconds a request waits for a piece the hub must unseal, or for the hub to come back,
    /// before it is answered 503 with `Retry-After`. 0: answer at once.
    pub wait_secs: u64,
    /// Unseal jobs this process asks of the hub at once (the hub bounds its own queue too).
    pub max_unseals: usize,
    /// Requests served at once, by route; more are answered 429 with `Retry-After`.
    pub max_piece_requests: usize,
    pub max_ipfs_requests: usize,
    pub max_head_requests: usize,
    /// Connections open at once, in all and from one IP address; more are closed at once.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers, and an idle connection is kept.
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    /// A client that takes fewer than `min_send_bytes` in `send_window_secs` while the
    /// response waits on it is cut off (a slow reader holds nothing for long).
    pub min_send_bytes: u64,
    pub send_window_secs: u64,
    /// The most blocks and bytes one CAR response may carry; a larger DAG is cut off there.
    pub max_car_blocks: u64,
    pub max_car_bytes: u64,
    /// CIDs (payload or piece) never served: answered 451.
    pub deny: Vec<String>,
    /// An external retrieval filter, run with `sh -c`: the request as JSON on stdin; exit 0
    /// serves it, any other exit refuses it (403) with stdout as the reason. Empty: none.
    /// (HTTP only; bitswap applies the denylist.)
    pub filter: String,
    /// Bitswap: peers answered at once (the others' wants wait in their ledgers), wants kept
    /// per peer (more are dropped), the size an answer message is filled to, and block reads
    /// at once across all peers (taken in turn, so peers share them), and answer bytes one
    /// peer may have read and waiting to be sent (a slow reader holds no more).
    pub bitswap_max_peers: usize,
    pub bitswap_max_wants_per_peer: usize,
    pub bitswap_message_bytes: usize,
    pub bitswap_max_reads: usize,
    pub bitswap_peer_bytes: usize,
}

pub const DEFAULT_RETRIEVAL_LISTEN: &str = "0.0.0.0:24080";

impl Default for RetrievalConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_RETRIEVAL_LISTEN.parse().expect("a valid address"),
            public_url: String::new(),
            cache_dir: None,
            cache_max_bytes: 16 << 30,
            wait_secs: 0,
            max_unseals: 2,
            max_piece_requests: 256,
            max_ipfs_requests: 256,
            max_head_requests: 128,
            max_connections: 4096,
            max_connections_per_ip: 128,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            min_send_bytes: 16 * 1024,
            send_window_secs: 30,
            max_car_blocks: 1_000_000,
            max_car_bytes: 64 << 30,
            deny: Vec::new(),
            filter: String::new(),
            bitswap_max_peers: 64,
            bitswap_max_wants_per_peer: 1024,
            bitswap_message_bytes: 1 << 20,
            bitswap_max_reads: 8,
            bitswap_peer_bytes: 8 << 20,
        }
    }
}

/// The ask the process starts with; `ask set` changes it at run time (and it is kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskConfig {
    /// attoFIL per GiB per epoch.
    pub price: String,
    pub verified_price: String,
    pub min_piece_size: u64,
    pub max_piece_size: u64,
}

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:24100";
pub const DEFAULT_P2P_LISTEN: &str = "/ip4/0.0.0.0/tcp/24001";

impl Config {
    /// Every setting at its default (the largest sector size as the largest piece; `init`
    /// sets the miner's).
    pub fn defaults() -> Self {
        Self::new(
            vec![DEFAULT_P2P_LISTEN.into()],
            Vec::new(),
            DEFAULT_API_LISTEN.parse().expect("a valid default"),
            64 << 30,
        )
    }

    pub fn new(
        listen: Vec<String>,
        announce: Vec<String>,
        api: SocketAddr,
        max_piece: u64,
    ) -> Self {
        Self {
            network: NetworkConfig {
                listen,
                announce,
                max_connections: limits::connections(),
                max_connections_per_ip: limits::per_ip(),
                max_connections_per_peer: limits::per_peer(),
                max_pending_connections: limits::pending(),
                max_requests_per_peer: limits::requests_per_peer(),
                max_proposals_in_check: limits::in_check(),
            },
            api: ApiConfig { listen: api },
            deals: DealsConfig::default(),
            ask: AskConfig {
                price: "0".into(),
                verified_price: "0".into(),
                min_piece_size: 256,
                max_piece_size: max_piece,
            },
            retrieval: RetrievalConfig::default(),
            indexing: IndexingConfig::default(),
            database: DatabaseConfig::default(),
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("read {}: run `nelumbo-markets init` first", path.display())
        })?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        config
            .validate()
            .with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    /// The file `init` writes: every setting, each explained.
    pub fn render(&self) -> String {
        let list = |v: &[String]| {
            v.iter()
                .map(|s| toml_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let d = &self.deals;
        format!(
            r#"# nelumbo-markets configuration. Restart the process after changing it.

[network]
# libp2p listen addresses: clients reach the deal protocols here (public).
listen = [{listen}]
# Addresses to publish on chain and tell clients, when they differ from the listen addresses
# (always, when listening on 0.0.0.0 or behind NAT). Empty: the listen addresses, with 0.0.0.0
# replaced by 127.0.0.1, which only clients on this machine can dial. Every markets process of
# a miner publishes its own: run one deals process per miner until shared deal storage exists.
announce = [{announce}]
# Bounds on what strangers hold open: established incoming connections in all, from one IP
# address and from one peer; connections still in their handshake; requests one peer may have
# in flight; proposals checked at once. Beyond them connections are refused and requests
# answered "busy, try again".
max_connections = {max_connections}
max_connections_per_ip = {per_ip}
max_connections_per_peer = {per_peer}
max_pending_connections = {pending}
max_requests_per_peer = {per_peer_requests}
max_proposals_in_check = {in_check}

[api]
# The admin API (JSON-RPC with a token; the CLI uses it), /health/live, /health/ready and
# /metrics. Keep it private.
listen = {api}

[deals]
# Where deal data is staged before it goes to the hub. Default: REPO/staging.
{staging}
# Free bytes staging must keep: a deal that would go below is refused.
staging_reserve_bytes = {reserve}
# A deal must start at least this many epochs after it is proposed: time to transfer the
# data, publish, and seal. The default, 2880, is a day of 30-second mainnet epochs (Boost's
# expected seal duration); a devnet with 2-second epochs and small sectors needs far less.
min_start_lead_epochs = {lead}
# The shortest and longest deals taken, in epochs.
min_duration_epochs = {min_dur}
max_duration_epochs = {max_dur}
# Transfers at once; more deals wait in Accepted.
max_transfers = {transfers}
# Seconds without a byte before a transfer is restarted where it stopped (Range).
stall_timeout_secs = {stall}
# Transfer attempts before the deal fails.
max_transfer_attempts = {attempts}
# The most provider collateral a deal may ask (attoFIL; 1 FIL by default). The hub locks it
# from the worker's funds until the deal ends.
max_provider_collateral = {max_collateral}
# An external deal filter, run with `sh -c`: the deal (Boost's DealFilterParams JSON) on stdin;
# exit 0 accepts, any other exit rejects with stdout as the reason. Empty: none.
filter = {filter}
# Transfers reach public addresses only. Private ranges to fetch from anyway: networks
# ("10.0.0.0/8", "127.0.0.1") or one address and port ("127.0.0.1:8080", for URLs that name it).
transfer_allow = [{allow}]
# The most staging the deals in progress may hold together (their transfer sizes): proposals
# past it are refused as busy.
staging_max_bytes = {staging_max}
# Seconds after a deal failed before its staged data is removed (`deals retry` fetches again).
failed_staging_grace_secs = {grace}
# Seconds an offline deal waits for `deals import-data` before it fails.
offline_import_timeout_secs = {offline}
# A transfer slower than this many bytes per second, averaged over the window, is cut off (it
# counts as a failed attempt); one not finished after transfer_deadline_secs fails.
min_transfer_bytes_per_sec = {min_rate}
transfer_rate_window_secs = {rate_window}
transfer_deadline_secs = {deadline}

[ask]
# The ask the process starts with; `nelumbo-markets ask set` changes it while running, and
# the last value set is kept across restarts. Prices are attoFIL per GiB per epoch; sizes are
# padded piece sizes in bytes.
price = {price}
verified_price = {vprice}
min_piece_size = {min}
max_piece_size = {max}

[retrieval]
# The public HTTP listener: GET/HEAD /piece/{{pieceCid}} (FRC-0066), /ipfs/{{cid}} (the IPFS
# trustless gateway), /info, /health/live, /health/ready, /metrics. Runs with --services=retrieval.
listen = {r_listen}
# The base URL clients are told to use (answered on /fil/retrieval/transports/1.0.0), e.g.
# "https://retrieval.example.com" behind a TLS proxy. Empty: http:// and the listen address,
# with 0.0.0.0 replaced by 127.0.0.1 (reachable from this machine only).
public_url = {r_url}
# Pieces kept on this machine's disk for serving (least recently used out), checked on read.
# Default directory: REPO/piece-cache.
{r_cache}
cache_max_bytes = {r_cache_max}
# Seconds a request waits for the hub to unseal a piece, or to come back, before it is answered
# 503 with Retry-After (0: answer at once; the client comes back).
wait_secs = {r_wait}
# Unseal jobs this process asks of the hub at once.
max_unseals = {r_unseals}
# Requests served at once per route; more are answered 429 with Retry-After.
max_piece_requests = {r_piece}
max_ipfs_requests = {r_ipfs}
max_head_requests = {r_head}
# Connections at once, in all and from one IP address.
max_connections = {r_conns}
max_connections_per_ip = {r_per_ip}
# Seconds to send a request's headers; seconds an idle connection is kept.
header_timeout_secs = {r_header}
idle_timeout_secs = {r_idle}
# A client that takes fewer than min_send_bytes in send_window_secs while a response waits on
# it is cut off.
min_send_bytes = {r_min_send}
send_window_secs = {r_send_window}
# The most blocks and bytes in one CAR response (a larger DAG is cut off there).
max_car_blocks = {r_car_blocks}
max_car_bytes = {r_car_bytes}
# CIDs (payload or piece) never served (451).
deny = [{r_deny}]
# An external retrieval filter, run with `sh -c`: the request as JSON on stdin; exit 0 serves
# it, any other exit refuses it (403) with stdout as the reason. Empty: none. (HTTP only;
# bitswap answers denied CIDs DONT_HAVE.)
filter = {r_filter}
# Bitswap on the libp2p host: peers answered at once (others wait), wants kept per peer (more
# are dropped), the size answer messages are filled to, block reads at once across all peers,
# and answer bytes one peer may have waiting to be sent (a slow reader holds no more).
bitswap_max_peers = {r_bs_peers}
bitswap_max_wants_per_peer = {r_bs_wants}
bitswap_message_bytes = {r_bs_message}
bitswap_max_reads = {r_bs_reads}
bitswap_peer_bytes = {r_bs_peer_bytes}

[indexing]
# IPNI: with --services=indexing (and retrieval, whose listener publishes the chain at
# /ipni/v1/ad/), every piece with a live deal is advertised and a removal is published when
# its last deal ends. Indexers to announce each new head to (PUT URL/announce), e.g.
# ["https://cid.contact"]. Empty: none (indexers that know this provider still poll the head).
indexers = [{i_indexers}]
# Seconds an announcement may take; the longest wait between retries of a failed one.
announce_timeout_secs = {i_timeout}
announce_max_backoff_secs = {i_backoff}
# Seconds between checks of the deals against the chain (ended, slashed, terminated).
check_secs = {i_check}

[database]
# Where the state several markets processes for one miner share is kept. Empty: embedded in
# this repo (one markets process). A PostgreSQL (or YugabyteDB YSQL) URL, e.g.
# "postgres://nelumbo:PASSWORD@db.internal:5432/nelumbo", shares the piece directory, so any
# number of retrieval replicas find every block. (Deals, the ask and the IPNI chain stay in
# this repo for now.) The environment variable {url_env} overrides this setting, so the
# password can stay out of this file.
url = {db_url}
# Apply missing schema migrations at start; off: run `nelumbo-markets db migrate` first.
migrate_on_start = {db_migrate}
# Database connections this process keeps open at most.
max_connections = {db_max}
"#,
            url_env = DATABASE_URL_ENV,
            db_url = toml_string(&self.database.url),
            db_migrate = self.database.migrate_on_start,
            db_max = self.database.max_connections,
            i_indexers = list(&self.indexing.indexers),
            i_timeout = self.indexing.announce_timeout_secs,
            i_backoff = self.indexing.announce_max_backoff_secs,
            i_check = self.indexing.check_secs,
            listen = list(&self.network.listen),
            announce = list(&self.network.announce),
            api = toml_string(&self.api.listen.to_string()),
            staging = match &d.staging_dir {
                Some(p) => format!("staging_dir = {}", toml_string(&p.display().to_string())),
                None => "# staging_dir = \"/srv/staging\"".to_string(),
            },
            reserve = d.staging_reserve_bytes,
            lead = d.min_start_lead_epochs,
            min_dur = d.min_duration_epochs,
            max_dur = d.max_duration_epochs,
            transfers = d.max_transfers,
            stall = d.stall_timeout_secs,
            attempts = d.max_transfer_attempts,
            max_collateral = toml_string(&d.max_provider_collateral),
            filter = toml_string(&d.filter),
            allow = list(&d.transfer_allow),
            staging_max = d.staging_max_bytes,
            grace = d.failed_staging_grace_secs,
            offline = d.offline_import_timeout_secs,
            min_rate = d.min_transfer_bytes_per_sec,
            rate_window = d.transfer_rate_window_secs,
            deadline = d.transfer_deadline_secs,
            max_connections = self.network.max_connections,
            per_ip = self.network.max_connections_per_ip,
            per_peer = self.network.max_connections_per_peer,
            pending = self.network.max_pending_connections,
            per_peer_requests = self.network.max_requests_per_peer,
            in_check = self.network.max_proposals_in_check,
            price = toml_string(&self.ask.price),
            vprice = toml_string(&self.ask.verified_price),
            min = self.ask.min_piece_size,
            max = self.ask.max_piece_size,
            r_bs_peers = self.retrieval.bitswap_max_peers,
            r_bs_wants = self.retrieval.bitswap_max_wants_per_peer,
            r_bs_message = self.retrieval.bitswap_message_bytes,
            r_bs_reads = self.retrieval.bitswap_max_reads,
            r_bs_peer_bytes = self.retrieval.bitswap_peer_bytes,
            r_listen = toml_string(&self.retrieval.listen.to_string()),
            r_url = toml_string(&self.retrieval.public_url),
            r_cache = match &self.retrieval.cache_dir {
                Some(p) => format!("cache_dir = {}", toml_string(&p.display().to_string())),
                None => "# cache_dir = \"/srv/piece-cache\"".to_string(),
            },
            r_cache_max = self.retrieval.cache_max_bytes,
            r_wait = self.retrieval.wait_secs,
            r_unseals = self.retrieval.max_unseals,
            r_piece = self.retrieval.max_piece_requests,
            r_ipfs = self.retrieval.max_ipfs_requests,
            r_head = self.retrieval.max_head_requests,
            r_conns = self.retrieval.max_connections,
            r_per_ip = self.retrieval.max_connections_per_ip,
            r_header = self.retrieval.header_timeout_secs,
            r_idle = self.retrieval.idle_timeout_secs,
            r_min_send = self.retrieval.min_send_bytes,
            r_send_window = self.retrieval.send_window_secs,
            r_car_blocks = self.retrieval.max_car_blocks,
            r_car_bytes = self.retrieval.max_car_bytes,
            r_deny = list(&self.retrieval.deny),
            r_filter = toml_string(&self.retrieval.filter),
        )
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_render_every_key_and_read_back() {
        let config = Config::defaults();
        let text = config.render();
        assert_eq!(toml::from_str::<Config>(&text).expect("parse"), config);
        let missing = nelumbo_testkit::config::keys_missing_from_rendered(&config, &text);
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn the_rendered_file_reads_back_the_same_and_typos_are_refused() {
        let mut config = Config::new(
            vec![DEFAULT_P2P_LISTEN.into()],
            vec![],
            DEFAULT_API_LISTEN.parse().expect("addr"),
            8 << 20,
        );
        config.deals.staging_dir = Some("/srv/staging \"x\"".into());
        config.retrieval.deny = vec!["bafkqaaa".into()];
        config.retrieval.public_url = "https://retrieval.example.com".into();
        config.database.url = "postgres://nelumbo:secret@db.internal:5432/nelumbo".into();
        config.database.migrate_on_start = false;
        let text = config.render();
        assert_eq!(toml::from_str::<Config>(&text).expect("parse"), config);
        let missing = nelumbo_testkit::config::keys_missing_from_rendered(&config, &text);
        assert!(
            missing.is_empty(),
            "config.toml does not document {missing:?}"
        );
        let typo = text.replace("[deals]", "[deals]\nmax_transfer = 3");
        let error = toml::from_str::<Config>(&typo).expect_err("typo accepted");
        assert!(error.to_string().contains("max_transfer"), "{error}");
        config.network.listen = vec!["not an address".into()];
        assert!(config.validate().is_err());
    }
}
