//! A markets process for tests: the real `nelumbo-markets` binary with its repo next to a
//! [`TestHub`], created with `init` and driven through its CLI and admin API; and the real
//! `nelumbo client` with its own repo.

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use nelumbo_markets_api::admin::{DealInfo, DealState, DealsShow, Info};
use nelumbo_rpc::RpcClient;

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
    /// The retrieval listener's base URL (`http://127.0.0.1:PORT`), once running.
    pub retrieval_url: String,
    log: PathBuf,
    /// The network namespace the process runs in (`None`: the test's own); `client` reaches
    /// it only from code run there, `cli` runs there.
    netns: Option<String>,
}

impl TestMarkets {
    /// `nelumbo-markets init` against the running `hub` (with a write token), then `extra`
    /// config edits are up to the test.
    pub fn init(devnet: &Devnet, hub: &TestHub) -> Self {
        Self::init_named(devnet, hub, "markets")
    }

    /// [`TestMarkets::init`] with the repo (and log) named `name` under the devnet directory,
    /// for a second markets process.
    pub fn init_named(devnet: &Devnet, hub: &TestHub, name: &str) -> Self {
        Self::init_with(devnet, hub, name, &[])
    }

    /// [`TestMarkets::init_named`] with more `init` arguments (`--skip-peer-info`).
    pub fn init_with(devnet: &Devnet, hub: &TestHub, name: &str, args: &[&str]) -> Self {
        let p2p_port = free_port();
        Self::init_placed(devnet, hub, name, None, "127.0.0.1", p2p_port, 0, args)
    }

    /// [`TestMarkets::init`] for a process that runs in network namespace `netns`, with its
    /// public listeners (libp2p, retrieval) on `ip` and the given ports; its admin API stays on
    /// the namespace's loopback.
    pub fn init_in(
        devnet: &Devnet,
        hub: &TestHub,
        netns: &str,
        ip: &str,
        p2p_port: u16,
        retrieval_port: u16,
    ) -> Self {
        Self::init_placed(
            devnet,
            hub,
            "markets",
            Some(netns),
            ip,
            p2p_port,
            retrieval_port,
            &[],
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn init_placed(
        devnet: &Devnet,
        hub: &TestHub,
        name: &str,
        netns: Option<&str>,
        ip: &str,
        p2p_port: u16,
        retrieval_port: u16,
        args: &[&str],
    ) -> Self {
        let repo = devnet.dir.path().join(name);
        let api = std::fs::read_to_string(hub.repo.join("api")).expect("the hub is running");
        let hub_api = format!("{}:{}", hub.token("spoke"), api.trim());
        let output = crate::netns::command_in(netns, &markets_binary())
            .arg("--repo")
            .arg(&repo)
            .args(["init", "--hub-api", &hub_api])
            .args(["--listen", &format!("/ip4/{ip}/tcp/{p2p_port}")])
            .args(["--api", "127.0.0.1:0"])
            .args(["--retrieval-listen", &format!("{ip}:{retrieval_port}")])
            .args(args)
            .output()
            .expect("run nelumbo-markets init");
        assert!(
            output.status.success(),
            "markets init failed: {}",
            text(&output)
        );
        // Devnet epochs are short and test sectors small: a minute of lead is plenty. Test
        // clients serve deal data on loopback, which transfers may reach only when allowed.
        let config = repo.join("config.toml");
        let edited = std::fs::read_to_string(&config)
            .expect("config.toml")
            .replace("min_start_lead_epochs = 2880", "min_start_lead_epochs = 60")
            .replace(
                "transfer_allow = []",
                "transfer_allow = [\"127.0.0.0/8\", \"::1\"]",
            );
        std::fs::write(&config, edited).expect("write config.toml");
        Self {
            log: devnet.dir.path().join(format!("{name}.log")),
            repo,
            p2p_port,
            child: None,
            client: RpcClient::new("http://127.0.0.1:1/rpc/v1", None),
            url: String::new(),
            retrieval_url: String::new(),
            netns: netns.map(str::to_string),
        }
    }

    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.repo.join("config.toml");
        let text = std::fs::read_to_string(&path).expect("config.toml");
        assert!(text.contains(from), "config.toml has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write config.toml");
    }

    /// Starts `nelumbo-markets run --services=deals,retrieval` and waits for its admin API.
    pub async fn run(&mut self) {
        self.run_services("deals,retrieval").await;
    }

    /// Starts `nelumbo-markets run --services=SERVICES` and waits for its admin API.
    pub async fn run_services(&mut self, services: &str) {
        self.run_with_env(services, &[]).await;
    }

    /// [`Self::run_services`] with more environment variables (failpoints).
    pub async fn run_with_env(&mut self, services: &str, env: &[(&str, &str)]) {
        let mut vars = vec![("RUST_LOG", "info")];
        vars.extend_from_slice(env);
        let (child, client) = crate::start_daemon::<Info>(
            self.netns.as_deref(),
            &markets_binary(),
            &self.repo,
            &["run", &format!("--services={services}")],
            &vars,
            &self.log,
        )
        .await;
        self.child = Some(child);
        self.url = client.url().trim_end_matches("/rpc/v1").to_string();
        let info = match &self.netns {
            None => client.call::<Info>(()).await,
            // A client of its own on the namespace's thread (see `start_daemon`).
            Some(netns) => {
                let url = client.url().to_string();
                let token = std::fs::read_to_string(self.repo.join("token"))
                    .ok()
                    .map(|t| t.trim().to_string());
                tokio::task::block_in_place(|| {
                    crate::netns::block_on_in(netns, async move {
                        RpcClient::new(url, token).call::<Info>(()).await
                    })
                })
            }
        }
        .expect("info");
        self.retrieval_url = info.retrieval_url.unwrap_or_default();
        self.client = client;
    }

    /// The running process's ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The running process's resident memory, in bytes (Linux).
    pub fn resident_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn stop(&mut self, kill: bool) {
        if let Some(child) = self.child.take() {
            crate::stop_process(child, kill);
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        crate::netns::command_in(self.netns.as_deref(), &markets_binary())
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
        self.wait_deal_until(uuid, &format!("{state}"), |d| d.state == state, timeout)
            .await
    }

    /// Waits until `done` holds for the deal, failing early if it fails.
    pub async fn wait_deal_until(
        &self,
        uuid: &str,
        what: &str,
        done: impl Fn(&DealInfo) -> bool,
        timeout: Duration,
    ) -> DealInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let deal = self.deal(uuid).await;
            if done(&deal) {
                return deal;
            }
            assert!(
                deal.state != DealState::Failed || what == "Failed",
                "deal {uuid} failed in {:?}: {}\n{}",
                deal.failed_step,
                deal.error,
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "deal {uuid} is still {} (waiting for {what})\n{}",
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

    /// Makes one deal per CAR with `--car --wait-active`, all started at once (so they share a
    /// sector), and waits until each is active; a failed one fails the test with the client's
    /// output and the markets log.
    pub fn deal_cars_at_once(
        &self,
        provider: &fvm_shared::address::Address,
        cars: &[PathBuf],
        markets: &TestMarkets,
    ) {
        let provider = provider.to_string();
        let children: Vec<_> = cars
            .iter()
            .map(|car| {
                self.command(&[
                    "deal",
                    "--provider",
                    &provider,
                    "--car",
                    "--start-in",
                    "600",
                    "--duration",
                    "400",
                    "--wait-active",
                    car.to_str().expect("a UTF-8 path"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run nelumbo client")
            })
            .collect();
        for (child, car) in children.into_iter().zip(cars) {
            let output = child.wait_with_output().expect("wait for nelumbo client");
            assert!(
                output.status.success(),
                "the deal for {} failed: {}\n{}",
                car.display(),
                text(&output),
                markets.log()
            );
        }
    }

    /// Proposes an online deal of `file` whose data the provider fetches from `url` (starting
    /// 600 epochs out, for 400), without waiting for it; returns its UUID.
    pub fn propose_from_url(
        &self,
        provider: &fvm_shared::address::Address,
        url: &str,
        file: &std::path::Path,
    ) -> String {
        let output = self.run(&[
            "deal",
            "--provider",
            &provider.to_string(),
            "--start-in",
            "600",
            "--duration",
            "400",
            "--url",
            url,
            file.to_str().expect("a UTF-8 path"),
        ]);
        let printed = text(&output);
        assert!(output.status.success(), "client deal failed: {printed}");
        printed
            .split("deal ")
            .filter_map(|rest| rest.split_whitespace().next())
            .find(|word| word.len() == 36)
            .unwrap_or_else(|| panic!("no deal UUID in {printed}"))
            .to_string()
    }

    /// `deal FILE` (starting 600 epochs out, for 400) with `extra` arguments and
    /// `--wait-active`: returns what the client printed once the deal is active; a failed deal
    /// fails the test with the client's output and `logs` (the provider's side).
    pub fn deal_active(
        &self,
        provider: &fvm_shared::address::Address,
        file: &std::path::Path,
        extra: &[&str],
        logs: impl Fn() -> String,
    ) -> String {
        let provider = provider.to_string();
        let mut args = vec![
            "deal",
            "--provider",
            &provider,
            "--start-in",
            "600",
            "--duration",
            "400",
            "--wait-active",
        ];
        args.extend_from_slice(extra);
        args.push(file.to_str().expect("a UTF-8 path"));
        let output = self.run(&args);
        let printed = text(&output);
        assert!(
            output.status.success(),
            "client deal failed: {printed}\n{}",
            logs()
        );
        printed
    }

    /// The data root a `deal` printed (`data root: CID`).
    pub fn data_root(printed: &str) -> String {
        printed
            .lines()
            .find_map(|l| l.strip_prefix("data root: "))
            .expect("the client printed the data root")
            .trim()
            .to_string()
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

/// An HTTP server for deal data that sends slowly (so a test can act mid-transfer), honours
/// `Range: bytes=N-`, and records the ranges asked for. `GET /latest.car` serves the newest
/// `.car` file in `dir` at the time of the request (the client packs it after the URL is
/// chosen); `GET /NAME` serves `dir/NAME`.
#[derive(Debug)]
pub struct DataServer {
    pub base: String,
    /// The `Range` header of each request (None: whole file).
    pub ranges: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    /// Milliseconds of pause after every 64 bytes; change it with [`DataServer::set_delay`].
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DataServer {
    /// `delay`: the pause after every 64 bytes sent.
    pub async fn start(dir: PathBuf, delay: Duration) -> Self {
        use axum::extract::{Path as UrlPath, State};
        use axum::http::{HeaderMap, StatusCode, header};
        use axum::response::IntoResponse;

        type Shared = (
            PathBuf,
            std::sync::Arc<std::sync::atomic::AtomicU64>,
            std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
        );
        async fn serve(
            State((dir, delay, ranges)): State<Shared>,
            UrlPath(name): UrlPath<String>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            let path = if name == "latest.car" {
                let mut cars: Vec<_> = std::fs::read_dir(&dir)
                    .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                    .unwrap_or_default();
                cars.retain(|p: &PathBuf| p.extension().is_some_and(|e| e == "car"));
                cars.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
                match cars.pop() {
                    Some(p) => p,
                    None => return StatusCode::NOT_FOUND.into_response(),
                }
            } else {
                dir.join(name)
            };
            let Ok(bytes) = std::fs::read(&path) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let range = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Ok(mut r) = ranges.lock() {
                r.push(range.clone());
            }
            let total = bytes.len();
            let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(spec) => {
                    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
                    let start: usize = a.parse().unwrap_or(0);
                    let end: usize = b
                        .parse::<usize>()
                        .map(|e| e + 1)
                        .unwrap_or(total)
                        .min(total);
                    (start.min(total), end)
                }
                None => (0, total),
            };
            let body = bytes[start..end].to_vec();
            let chunks: Vec<Vec<u8>> = body.chunks(64).map(<[u8]>::to_vec).collect();
            let stream = futures::stream::unfold(chunks.into_iter(), move |mut rest| {
                let pause = Duration::from_millis(delay.load(std::sync::atomic::Ordering::Relaxed));
                async move {
                    let chunk = rest.next()?;
                    tokio::time::sleep(pause).await;
                    Some((Ok::<_, std::io::Error>(chunk), rest))
                }
            });
            let mut response = axum::body::Body::from_stream(stream).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, (end - start).into());
            if range.is_some() {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = format!("bytes {start}-{}/{total}", end.saturating_sub(1)).parse() {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            response
        }

        let ranges = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let delay_ms =
            std::sync::Arc::new(std::sync::atomic::AtomicU64::new(delay.as_millis() as u64));
        let router = axum::Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state((dir, delay_ms.clone(), ranges.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            base,
            ranges,
            delay_ms,
            task,
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
