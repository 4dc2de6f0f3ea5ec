//! [`Settings`]: the configuration a markets process runs with, checked once at start, with
//! its text settings parsed.

use std::net::SocketAddr;

use anyhow::Context;
use fvm_shared::econ::TokenAmount;

use super::{
    ApiConfig, AskConfig, Config, ConnectionLimits, DATABASE_URL_ENV, DatabaseConfig, DealsConfig,
    IndexingConfig, NetworkConfig, RetrievalConfig,
};

/// The settings a markets process runs with: `config.toml` checked once at start, with its
/// text settings parsed (addresses, amounts, the transfer allow-list, the public URL).
/// Sections with nothing to parse are carried as they are. Made by
/// [`Config::settings`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub network: NetworkSettings,
    pub api_listen: SocketAddr,
    /// `[deals]`; its text settings are parsed into the two fields after it.
    pub deals: DealsConfig,
    pub max_provider_collateral: TokenAmount,
    pub transfer_allow: crate::deals::guard::AllowList,
    /// The ask the process starts with (checked).
    pub ask: nelumbo_markets_api::admin::AskSettings,
    pub retrieval: RetrievalConfig,
    /// `[retrieval] public_url` without a trailing slash; `None`: from the listen address.
    pub public_url: Option<String>,
    pub indexing: IndexingConfig,
    pub database: DatabaseConfig,
}

/// `[network]`, parsed.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    pub listen: Vec<libp2p::Multiaddr>,
    pub announce: Vec<libp2p::Multiaddr>,
    pub limits: ConnectionLimits,
}

impl Config {
    /// Checks every setting (the same as [`Config::settings`], keeping nothing).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.settings().map(drop)
    }

    /// The settings the process runs with, each checked and the text ones parsed, once. Every
    /// field of the file is named here (no `..`): a setting added to the file does not compile
    /// until it is checked here and carried into [`Settings`].
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let Config {
            network:
                NetworkConfig {
                    listen,
                    announce,
                    max_connections: _,
                    max_connections_per_ip: _,
                    max_connections_per_peer: _,
                    max_pending_connections: _,
                    max_requests_per_peer: _,
                    max_proposals_in_check: _,
                },
            api: ApiConfig { listen: api_listen },
            deals,
            ask:
                AskConfig {
                    price,
                    verified_price,
                    min_piece_size,
                    max_piece_size,
                },
            retrieval,
            indexing:
                IndexingConfig {
                    indexers,
                    announce_timeout_secs,
                    announce_max_backoff_secs,
                    check_secs,
                },
            database:
                DatabaseConfig {
                    url: _,
                    migrate_on_start: _,
                    max_connections: database_connections,
                },
        } = self;
        let DealsConfig {
            staging_dir: _,
            staging_reserve_bytes: _,
            min_start_lead_epochs: _,
            min_duration_epochs,
            max_duration_epochs,
            max_transfers,
            stall_timeout_secs: _,
            max_transfer_attempts: _,
            max_provider_collateral,
            filter: _,
            transfer_allow,
            staging_max_bytes: _,
            failed_staging_grace_secs: _,
            offline_import_timeout_secs: _,
            min_transfer_bytes_per_sec: _,
            transfer_rate_window_secs: _,
            transfer_deadline_secs: _,
        } = deals;
        let RetrievalConfig {
            listen: _,
            public_url,
            cache_dir: _,
            cache_max_bytes: _,
            wait_secs: _,
            max_unseals,
            max_piece_requests,
            max_ipfs_requests,
            max_head_requests,
            max_connections,
            max_connections_per_ip,
            header_timeout_secs,
            idle_timeout_secs,
            min_send_bytes: _,
            send_window_secs,
            max_car_blocks,
            max_car_bytes,
            deny,
            filter: _,
            bitswap_max_peers,
            bitswap_max_wants_per_peer,
            bitswap_message_bytes,
            bitswap_max_reads,
            bitswap_peer_bytes,
        } = retrieval;

        anyhow::ensure!(
            !listen.is_empty(),
            "[network] listen is empty: name at least one multiaddr"
        );
        let multiaddrs = |list: &[String]| -> anyhow::Result<Vec<libp2p::Multiaddr>> {
            list.iter()
                .map(|addr| {
                    addr.parse::<libp2p::Multiaddr>()
                        .map_err(|e| anyhow::anyhow!("[network] {addr:?} is not a multiaddr: {e}"))
                })
                .collect()
        };
        let network = NetworkSettings {
            listen: multiaddrs(listen)?,
            announce: multiaddrs(announce)?,
            limits: self.network.limits(),
        };
        let l = &network.limits;
        anyhow::ensure!(
            l.max_connections > 0
                && l.max_connections_per_ip > 0
                && l.max_connections_per_peer > 0
                && l.max_pending_connections > 0
                && l.max_requests_per_peer > 0
                && l.max_proposals_in_check > 0,
            "[network] connection and request limits must be at least 1"
        );

        let max_provider_collateral: num_bigint::BigUint =
            max_provider_collateral.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "[deals] max_provider_collateral {max_provider_collateral:?} is not a whole \
                     number of attoFIL"
                )
            })?;
        anyhow::ensure!(
            *max_transfers > 0,
            "[deals] max_transfers must be at least 1"
        );
        let transfer_allow =
            crate::deals::guard::AllowList::parse(transfer_allow).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            min_duration_epochs <= max_duration_epochs,
            "[deals] min_duration_epochs is above max_duration_epochs"
        );

        let ask = nelumbo_markets_api::admin::AskSettings {
            price: price.clone(),
            verified_price: verified_price.clone(),
            min_piece_size: *min_piece_size,
            max_piece_size: *max_piece_size,
        };
        crate::ask::parse_settings(&ask).context("[ask]")?;

        let public_url = if public_url.is_empty() {
            None
        } else {
            let url = url::Url::parse(public_url).map_err(|e| {
                anyhow::anyhow!("[retrieval] public_url {public_url:?} is not a URL: {e}")
            })?;
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https") && url.host().is_some(),
                "[retrieval] public_url {public_url:?} must be an http or https URL with a host"
            );
            Some(public_url.trim_end_matches('/').to_string())
        };
        anyhow::ensure!(
            [
                max_unseals,
                max_piece_requests,
                max_ipfs_requests,
                max_head_requests,
                max_connections,
                max_connections_per_ip,
                bitswap_max_peers,
                bitswap_max_wants_per_peer,
                bitswap_max_reads,
            ]
            .iter()
            .all(|&&n| n > 0)
                && [
                    header_timeout_secs,
                    idle_timeout_secs,
                    send_window_secs,
                    max_car_blocks,
                    max_car_bytes,
                ]
                .iter()
                .all(|&&n| n > 0),
            "[retrieval] limits and timeouts must be at least 1"
        );
        anyhow::ensure!(
            (64 << 10..=nelumbo_markets_api::bitswap::MAX_BLOCK_BYTES)
                .contains(bitswap_message_bytes),
            "[retrieval] bitswap_message_bytes must be between 64 KiB and 2 MiB (a message may \
             carry one more block, and peers read at most 4 MiB)"
        );
        anyhow::ensure!(
            (2 * bitswap_message_bytes..=1 << 30).contains(bitswap_peer_bytes),
            "[retrieval] bitswap_peer_bytes must be between two messages ({} bytes: one being \
             sent, one being filled) and 1 GiB",
            2 * bitswap_message_bytes
        );
        for cid in deny {
            cid.parse::<cid::Cid>()
                .map_err(|e| anyhow::anyhow!("[retrieval] deny: {cid:?} is not a CID: {e}"))?;
        }

        for indexer in indexers {
            let url = url::Url::parse(indexer).map_err(|e| {
                anyhow::anyhow!("[indexing] indexers: {indexer:?} is not a URL: {e}")
            })?;
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https") && url.host().is_some(),
                "[indexing] indexers: {indexer:?} must be an http or https URL with a host"
            );
        }
        anyhow::ensure!(
            *announce_timeout_secs >= 1 && *announce_max_backoff_secs >= 1 && *check_secs >= 1,
            "[indexing] timeouts and intervals must be at least 1"
        );

        if let Some(url) = self.database.url() {
            nelumbo_piecedir::Postgres::check_url(&url)
                .map_err(|e| anyhow::anyhow!("[database] url (or {DATABASE_URL_ENV}): {e}"))?;
        }
        anyhow::ensure!(
            (1..=1000).contains(database_connections),
            "[database] max_connections must be between 1 and 1000"
        );

        Ok(Settings {
            network,
            api_listen: *api_listen,
            deals: deals.clone(),
            max_provider_collateral: TokenAmount::from_atto(num_bigint::BigInt::from(
                max_provider_collateral,
            )),
            transfer_allow,
            ask,
            retrieval: retrieval.clone(),
            public_url,
            indexing: self.indexing.clone(),
            database: self.database.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_P2P_LISTEN;

    #[test]
    fn settings_parse_the_text_once_and_a_bad_value_is_named() {
        let mut config = Config::defaults();
        config.retrieval.public_url = "https://retrieval.example.com/".into();
        config.deals.max_provider_collateral = " 5000 ".into();
        config.network.announce = vec!["/ip4/203.0.113.7/tcp/24001".into()];
        let settings = config.settings().expect("settings");
        assert_eq!(
            settings.public_url.as_deref(),
            Some("https://retrieval.example.com")
        );
        assert_eq!(
            settings.max_provider_collateral,
            TokenAmount::from_atto(5000)
        );
        assert_eq!(
            settings.network.listen,
            vec![
                DEFAULT_P2P_LISTEN
                    .parse::<libp2p::Multiaddr>()
                    .expect("addr")
            ]
        );
        assert_eq!(
            crate::init::public_addrs(&settings.network.announce, &settings.network.listen),
            settings.network.announce
        );
        type Edit = fn(&mut Config);
        let cases: [(Edit, &str); 15] = [
            (|c| c.network.listen.clear(), "[network] listen is empty"),
            (
                |c| c.network.announce = vec!["nope".into()],
                "[network] \"nope\" is not a multiaddr",
            ),
            (
                |c| c.network.max_connections_per_ip = 0,
                "[network] connection and request limits",
            ),
            (
                |c| c.deals.max_provider_collateral = "-1".into(),
                "[deals] max_provider_collateral \"-1\"",
            ),
            (|c| c.deals.max_transfers = 0, "[deals] max_transfers"),
            (
                |c| c.deals.transfer_allow = vec!["10.0.0.0/99".into()],
                "[deals] transfer_allow",
            ),
            (
                |c| c.deals.min_duration_epochs = c.deals.max_duration_epochs + 1,
                "[deals] min_duration_epochs",
            ),
            (|c| c.ask.price = "cheap".into(), "[ask]"),
            (
                |c| c.retrieval.public_url = "ftp://example.com".into(),
                "[retrieval] public_url",
            ),
            (|c| c.retrieval.max_car_bytes = 0, "[retrieval] limits"),
            (
                |c| c.retrieval.bitswap_message_bytes = 1,
                "[retrieval] bitswap_message_bytes",
            ),
            (|c| c.retrieval.deny = vec!["x".into()], "[retrieval] deny"),
            (
                |c| c.indexing.indexers = vec!["nope".into()],
                "[indexing] indexers",
            ),
            (|c| c.indexing.check_secs = 0, "[indexing] timeouts"),
            (
                |c| c.database.max_connections = 0,
                "[database] max_connections",
            ),
        ];
        for (edit, named) in cases {
            let mut config = Config::defaults();
            edit(&mut config);
            let error = config.settings().expect_err(named);
            assert!(
                format!("{error:#}").contains(named),
                "{error:#} does not name {named}"
            );
        }
    }
}
