//! A markets process for tests: the real `nelumbo-markets` binary with its repo next to a
//! [`TestHub`], created with `init` and driven through its CLI and admin API; and the real
//! `nelumbo client` with its own repo.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nelumbo_markets_api::admin::{DealInfo, DealState, DealsShow, Info};
use nelumbo_rpc::{ApiInfo, RpcClient};

use crate::chain::Devnet;
use crate::hub::{TestHub, chain_api_info, text};

pub fn markets_binary() -> PathBuf {
    crate::binary("nelumbo-markets")
}

/// A loopback TCP port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[derive(Debug)]
pub struct TestMarkets {
    pub repo: PathBuf,
    pub p2p_port: u16,
    child: Option<Child>,
    /// An admin client of the running process.
    pub client: RpcClient,
    pub url: String,
    log: PathBuf,
}

impl TestMarkets {
    /// `nelumbo-markets init` against the running `hub` (with a write token), then `extra`
    /// config edits are up to the test.
    pub fn init(devnet: &Devnet, hub: &TestHub) -> Self {
        let repo = devnet.dir.path().join("markets");
        let api = std::fs::read_to_string(hub.repo.join("api")).expect("the hub is running");
        let hub_api = format!("{}:{}", hub.token("write"), api.trim());
        let p2p_port = free_port();
        let output = Command::new(markets_binary())
            .arg("--repo")
            .arg(&repo)
            .args(["init", "--hub-api", &hub_api])
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")])
            .args(["--api", "127.0.0.1:0"])
            .output()
            .expect("run nelumbo-markets init");
        assert!(
            output.status.success(),
            "markets init failed: {}",
            text(&output)
        );
        Self {
            log: devnet.dir.path().join("markets.log"),
            repo,
            p2p_port,
            child: None,
            client: RpcClient::new("http://127.0.0.1:1/rpc/v1", None),
            url: String::new(),
        }
    }

    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.repo.join("config.toml");
        let text = std::fs::read_to_string(&path).expect("config.toml");
        assert!(text.contains(from), "config.toml has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write config.toml");
    }

    /// Starts `nelumbo-markets run --services=deals` and waits for its admin API.
    pub async fn run(&mut self) {
        let _ = std::fs::remove_file(self.repo.join("api"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(markets_binary())
            .arg("--repo")
            .arg(&self.repo)
            .args(["run", "--services=deals"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nelumbo-markets");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "markets did not start:\n{}",
                self.log()
            );
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("markets exited with {status}:\n{}", self.log());
            }
            if let (Ok(api), Ok(token)) = (
                std::fs::read_to_string(self.repo.join("api")),
                std::fs::read_to_string(self.repo.join("token")),
            ) {
                let mut info = ApiInfo::parse(api.trim()).expect("api file");
                info.token = Some(token.trim().to_string());
                let client = RpcClient::from_api_info(&info);
                if client.call::<Info>(()).await.is_ok() {
                    self.url = client.url().trim_end_matches("/rpc/v1").to_string();
                    self.client = client;
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn stop(&mut self, kill: bool) {
        if let Some(child) = self.child.take() {
            crate::stop_process(child, kill);
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(markets_binary())
            .arg("--repo")
            .arg(&self.repo)
            .args(args)
            .output()
            .expect("run nelumbo-markets")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn deal(&self, uuid: &str) -> DealInfo {
        self.client
            .call::<DealsShow>((uuid.to_string(),))
            .await
            .expect("DealsShow")
    }

    /// Waits until the deal is in `state`, failing early if it fails.
    pub async fn wait_deal(&self, uuid: &str, state: DealState, timeout: Duration) -> DealInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let deal = self.deal(uuid).await;
            if deal.state == state {
                return deal;
            }
            assert!(
                deal.state != DealState::Failed || state == DealState::Failed,
                "deal {uuid} failed in {:?}: {}\n{}",
                deal.failed_step,
                deal.error,
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "deal {uuid} is still {} (waiting for {state})\n{}",
                deal.state,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestMarkets {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// The `nelumbo client` tool with its own repo, talking to the devnet's chain.
#[derive(Debug)]
pub struct TestClient {
    pub repo: PathBuf,
    chain_api: String,
}

impl TestClient {
    pub fn new(devnet: &Devnet) -> Self {
        Self {
            repo: devnet.dir.path().join("client"),
            chain_api: chain_api_info(devnet),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crate::binary("nelumbo"));
        command
            .arg("client")
            .arg("--repo")
            .arg(&self.repo)
            .args(args)
            .env("FULLNODE_API_INFO", &self.chain_api);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run nelumbo client")
    }

    /// A new funded secp256k1 key, with its address.
    pub async fn funded_wallet(&self, devnet: &Devnet, fil: u64) -> fvm_shared::address::Address {
        let output = self.run(&["wallet", "new"]);
        assert!(output.status.success(), "{}", text(&output));
        let address =
            nelumbo_chain_api::json::parse_address(String::from_utf8_lossy(&output.stdout).trim())
                .expect("address");
        devnet.fund(address, fil).await;
        address
    }
}
