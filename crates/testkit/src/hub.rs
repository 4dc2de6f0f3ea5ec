//! A hub for tests: the real `nelumbo-miner` binary with its repo next to a [`Devnet`], created
//! with `init` (funded from the devnet's faucet as an operator would) and driven through its
//! CLI and JSON-RPC API.

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use fvm_shared::address::Address;
use nelumbo_miner_api::methods::{SectorsStatus, Version};
use nelumbo_miner_api::types::{SectorState, SectorStatus};
use nelumbo_rpc::{ApiInfo, RpcClient};

use crate::chain::Devnet;

pub fn miner_binary() -> PathBuf {
    crate::binary("nelumbo-miner")
}

/// Output and error text of a finished command.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A chain connection string with a `sign` token, as an operator makes one.
pub fn chain_api_info(devnet: &Devnet) -> String {
    let output = Command::new(crate::chain::chain_binary())
        .arg("--repo")
        .arg(&devnet.repo)
        .args(["auth", "api-info", "--perm", "sign"])
        .output()
        .expect("api-info");
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .trim_start_matches("FULLNODE_API_INFO=")
        .to_string()
}

/// A devnet in insecure testing mode with 2 KiB sectors, `epoch_ms` epochs and `chain_args`,
/// and a hub initialised on it with mining off, not yet running: where most hub and markets
/// tests start.
pub async fn insecure_hub(epoch_ms: u64, chain_args: &[&str]) -> (Devnet, TestHub) {
    let epoch = epoch_ms.to_string();
    let mut args = vec![
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        epoch.as_str(),
    ];
    args.extend_from_slice(chain_args);
    let devnet = Devnet::start(&args).await;
    let hub = TestHub::init(
        &devnet,
        &["--sector-size", "2KiB", "--proof-mode", "insecure-testing"],
    )
    .await;
    hub.edit_config("enabled = true", "enabled = false");
    (devnet, hub)
}

#[derive(Debug)]
pub struct TestHub {
    pub repo: PathBuf,
    pub actor: Address,
    child: Option<Child>,
    /// An admin client of the running hub.
    pub client: RpcClient,
    pub url: String,
    log: PathBuf,
    /// The network namespace the hub runs in (`None`: the test's own). In another namespace,
    /// `client` reaches the hub only from code run there ([`crate::netns::run_in`]); `cli`
    /// runs there.
    netns: Option<String>,
}

/// A devnet and a hub for deal tests that need no real proofs: insecure-testing proofs, 8 MiB
/// sectors, quarter-second epochs and a short pre-commit delay; the hub takes deals (no
/// pledging of its own, a sector sealed 5 s after its first deal). The hub is not started, so
/// its config can still be changed.
pub async fn insecure_deal_devnet() -> (Devnet, TestHub) {
    insecure_deal_devnet_at("127.0.0.1", None).await
}

/// [`insecure_deal_devnet`] with the chain's API on `chain_ip`, and the hub, with `hub_in`
/// (a network namespace and the API's listen address), on another host.
pub async fn insecure_deal_devnet_at(
    chain_ip: &str,
    hub_in: Option<(&str, &str)>,
) -> (Devnet, TestHub) {
    let devnet = Devnet::start_on(
        chain_ip,
        &[
            "--proof-mode",
            "insecure-testing",
            "--sector-size",
            "8MiB",
            "--epoch-ms",
            "250",
            "--pre-commit-delay",
            "4",
        ],
    )
    .await;
    let args = ["--sector-size", "8MiB", "--proof-mode", "insecure-testing"];
    let hub = match hub_in {
        None => TestHub::init(&devnet, &args).await,
        Some((netns, listen)) => TestHub::init_in(&devnet, &args, netns, listen).await,
    };
    hub.edit_config("enabled = true", "enabled = false");
    hub.edit_config("wait_deals_secs = 3600", "wait_deals_secs = 5");
    (devnet, hub)
}

impl TestHub {
    /// `nelumbo-miner init` with `args` (after `--sector-size` etc.), funding the owner when
    /// init asks for it.
    pub async fn init(devnet: &Devnet, args: &[&str]) -> Self {
        Self::init_placed(devnet, args, None, "127.0.0.1:0").await
    }

    /// [`TestHub::init`] for a hub that runs in network namespace `netns` with its API on
    /// `listen`.
    pub async fn init_in(devnet: &Devnet, args: &[&str], netns: &str, listen: &str) -> Self {
        Self::init_placed(devnet, args, Some(netns), listen).await
    }

    async fn init_placed(
        devnet: &Devnet,
        args: &[&str],
        netns: Option<&str>,
        listen: &str,
    ) -> Self {
        let repo = devnet.dir.path().join("miner");
        let chain_api = chain_api_info(devnet);
        let mut init_args = vec![
            "init",
            "--chain-api",
            chain_api.as_str(),
            "--listen",
            listen,
        ];
        init_args.extend_from_slice(args);
        let run_init = || {
            crate::netns::command_in(netns, &miner_binary())
                .arg("--repo")
                .arg(&repo)
                .args(&init_args)
                .output()
                .expect("run nelumbo-miner init")
        };
        let output = run_init();
        let message = text(&output);
        assert!(
            !output.status.success(),
            "init went ahead unfunded: {message}"
        );
        let owner = message
            .split("nelumbo-chain faucet ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no owner address in {message}"));
        let owner = nelumbo_chain_api::json::parse_address(owner).expect("owner address");
        devnet.fund(owner, 100).await;
        let output = run_init();
        assert!(output.status.success(), "init failed: {}", text(&output));
        let printed = text(&output);
        let actor = printed
            .split("miner ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("miner address");
        let actor = nelumbo_chain_api::json::parse_address(actor).expect("actor");
        // Test sectors seal in seconds: the hub takes deals starting 20 epochs out.
        let config = repo.join("config.toml");
        let text = std::fs::read_to_string(&config).expect("config.toml");
        std::fs::write(
            &config,
            text.replace("min_start_lead_epochs = 2880", "min_start_lead_epochs = 20"),
        )
        .expect("write config.toml");
        Self {
            log: devnet.dir.path().join("miner.log"),
            repo,
            actor,
            child: None,
            client: RpcClient::new("http://127.0.0.1:1/rpc/v1", None),
            url: String::new(),
            netns: netns.map(str::to_string),
        }
    }

    /// Edits `config.toml` (for settings init has no flag for).
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.repo.join("config.toml");
        let text = std::fs::read_to_string(&path).expect("config.toml");
        assert!(text.contains(from), "config.toml has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write config.toml");
    }

    /// Starts `nelumbo-miner run` with extra environment and waits for its API.
    pub async fn run(&mut self, env_extra: &[(&str, &str)]) {
        // The test's own variables come last, so they override this default.
        let mut env = vec![(
            "RUST_LOG",
            "info,storage_proofs_core=warn,filecoin_proofs=warn,storage_proofs_porep=warn",
        )];
        env.extend_from_slice(env_extra);
        let (child, client) = crate::start_daemon::<Version>(
            self.netns.as_deref(),
            &miner_binary(),
            &self.repo,
            &["run"],
            &env,
            &self.log,
        )
        .await;
        self.child = Some(child);
        self.url = client.url().trim_end_matches("/rpc/v1").to_string();
        self.client = client;
    }

    /// The running hub's process ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The hub's proof workers running now (their process IDs), for any job.
    pub fn proof_workers(&self) -> Vec<u32> {
        self.proof_workers_for("")
    }

    /// The hub's proof workers running `job` now (`Commit2`, `Unseal`, `WinningPost`...).
    pub fn proof_workers_for(&self, job: &str) -> Vec<u32> {
        self.pid()
            .map(crate::children_of)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, cmdline)| cmdline.contains("proof-worker") && cmdline.contains(job))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// SIGKILL (`kill`) or SIGTERM, and waits for the process to end.
    pub fn stop(&mut self, kill: bool) {
        if let Some(child) = self.child.take() {
            crate::stop_process(child, kill);
        }
    }

    /// Runs the hub's CLI against this repo.
    pub fn cli(&self, args: &[&str]) -> Output {
        crate::netns::command_in(self.netns.as_deref(), &miner_binary())
            .arg("--repo")
            .arg(&self.repo)
            .args(args)
            .output()
            .expect("run nelumbo-miner")
    }

    /// A new token granting `perm` (read, write, sign, admin), made with the CLI.
    pub fn token(&self, perm: &str) -> String {
        let output = self.cli(&["auth", "create-token", "--perm", perm]);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// A client of the running hub holding a `perm` token.
    pub fn client_with(&self, perm: &str) -> RpcClient {
        self.client_with_token(&self.token(perm))
    }

    /// A client of the running hub holding `token`.
    pub fn client_with_token(&self, token: &str) -> RpcClient {
        let api = std::fs::read_to_string(self.repo.join("api")).expect("api");
        let mut info = ApiInfo::parse(api.trim()).expect("api");
        info.token = Some(token.to_string());
        RpcClient::from_api_info(&info)
    }

    /// A new spoke token and a client holding it (the token also uploads pieces).
    pub fn spoke(&self) -> (String, RpcClient) {
        let token = self.token("spoke");
        let client = self.client_with_token(&token);
        (token, client)
    }

    /// Has the hub sign an ask for its miner as a spoke would (prices in attoFIL per GiB per
    /// epoch); the hub then holds deals to it.
    pub async fn sign_ask(&self, spoke: &RpcClient, price: u64, verified_price: u64) {
        let ask = nelumbo_markets_api::wire::StorageAsk {
            miner: self.actor,
            price: fvm_shared::econ::TokenAmount::from_atto(price),
            seq_no: 1,
            expiry: 1_000_000,
            timestamp: 0,
            max_piece_size: 1 << 40,
            min_piece_size: 128,
            verified_price: fvm_shared::econ::TokenAmount::from_atto(verified_price),
        };
        let cbor = fvm_ipld_encoding::to_vec(&ask).expect("cbor");
        spoke
            .call::<nelumbo_miner_api::methods::MarketSignAsk>((nelumbo_chain_api::Base64(cbor),))
            .await
            .expect("the hub signs the ask");
    }

    /// Uploads `data` as the piece of `size` padded bytes (`PUT /pieces`) with `token`; the
    /// answer's status.
    pub async fn upload_piece(&self, token: &str, data: &[u8], size: u64) -> reqwest::StatusCode {
        let digest = nelumbo_commp::commp(data).expect("commp");
        let padded = nelumbo_commp::pad_commitment(
            &digest.commitment,
            digest.piece_size,
            nelumbo_commp::PaddedPieceSize::new(size).expect("size"),
        )
        .expect("pad");
        let cid = nelumbo_commp::piece_cid_v1(&padded);
        reqwest::Client::new()
            .put(format!("{}/pieces/{cid}?size={size}", self.url))
            .bearer_auth(token)
            .body(data.to_vec())
            .send()
            .await
            .expect("upload")
            .status()
    }

    /// The admin token the running hub wrote.
    pub fn client_token(&self) -> String {
        std::fs::read_to_string(self.repo.join("token"))
            .expect("token")
            .trim()
            .to_string()
    }

    /// The hub's `/metrics` page now.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("the hub's /metrics")
            .text()
            .await
            .expect("the metrics text")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn status(&self, sector: u64) -> SectorStatus {
        self.client
            .call::<SectorsStatus>((sector,))
            .await
            .expect("SectorsStatus")
    }

    /// Waits until `sector` is in `state`, failing early if it fails for good.
    pub async fn wait_state(
        &self,
        sector: u64,
        state: SectorState,
        timeout: Duration,
    ) -> SectorStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(sector).await;
            if status.state == state {
                return status;
            }
            assert!(
                status.state != SectorState::Failed,
                "sector {sector} failed: {:?}\n{}",
                status.last_error,
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "sector {sector} is still {} (waiting for {state}); last error {:?}\n{}",
                status.state,
                status.last_error,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.stop(true);
    }
}
