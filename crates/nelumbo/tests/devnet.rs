//! `nelumbo devnet` as an operator runs it: the chain, the hub and a markets process start as
//! separate processes under one directory, the printed walkthrough works (a client deal
//! becomes active), and Ctrl-C (SIGINT) stops them all. And it supervises them: a process that
//! dies is started again while the others keep running. A listener audit lists every socket
//! each process listens on: the chain, the hub and PostgreSQL only on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sibling(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_nelumbo")).with_file_name(name)
}

fn miner(repo: &Path, args: &[&str]) -> Output {
    let binary = sibling("nelumbo-miner");
    assert!(
        binary.exists(),
        "build nelumbo-miner first (scripts/test builds the workspace)"
    );
    Command::new(binary)
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .expect("run nelumbo-miner")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(sibling(program))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{program} {args:?} failed: {text}");
    text
}

/// A running `nelumbo devnet` (insecure proofs, quarter-second epochs, ports from the system)
/// and what it printed so far; its standard error goes to `DIR/devnet.stderr`.
struct RunningDevnet {
    child: std::process::Child,
    printed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: PathBuf,
}

impl RunningDevnet {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        assert!(
            sibling("nelumbo-chain").exists(),
            "build nelumbo-chain first"
        );
        let stderr = dir.join("devnet.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_nelumbo"))
            .args([
                "devnet",
                "--proof-mode",
                "insecure-testing",
                "--epoch-ms",
                "250",
            ])
            .args([
                "--chain-listen",
                "127.0.0.1:0",
                "--hub-listen",
                "127.0.0.1:0",
                "--markets-api",
                "127.0.0.1:0",
            ])
            .args([
                "--markets-listen",
                &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
            ])
            .args(["--retrieval-listen", &format!("127.0.0.1:{}", free_port())])
            .args(extra)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start nelumbo devnet");
        let stdout = child.stdout.take().expect("stdout");
        let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        {
            let printed = printed.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    printed.lock().expect("lines").push(line);
                }
            });
        }
        let mut devnet = Self {
            child,
            printed,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !devnet.said("Ctrl-C stops everything") {
            if Instant::now() > deadline || devnet.child.try_wait().ok().flatten().is_some() {
                let _ = devnet.child.kill();
                panic!("the devnet did not come up:\n{}", devnet.output());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        devnet
    }

    fn lines(&self) -> Vec<String> {
        self.printed.lock().expect("lines").clone()
    }

    fn said(&self, text: &str) -> bool {
        self.lines().iter().any(|l| l.contains(text))
    }

    /// What it printed, and its standard error.
    fn output(&self) -> String {
        format!(
            "{}\n--- stderr ---\n{}",
            self.lines().join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Ctrl-C, and its exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the devnet did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn devnet_starts_a_chain_a_hub_and_markets_takes_a_deal_and_stops_them_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("dir");
    // With a retrieval replica on the devnet's own PostgreSQL: the replica serves the deal
    // below, which the markets process took.
    let postgres_port = free_port().to_string();
    let devnet = RunningDevnet::start(
        dir.path(),
        &[
            "--wait-deals-secs",
            "2",
            "--replicas",
            "1",
            "--postgres-port",
            &postgres_port,
        ],
    );
    let printed = devnet.lines();
    let text = printed.join("\n");
    assert!(text.contains("FULLNODE_API_INFO="), "{text}");
    assert!(text.contains("MINER_API_INFO="), "{text}");

    // The printed commands work against the running hub.
    let repo = dir.path().join("miner");
    let info = miner(&repo, &["info"]);
    let shown = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(
        info.status.success() && shown.contains("sector size: 2KiB"),
        "{shown}"
    );
    let pledge = miner(&repo, &["sectors", "pledge"]);
    assert!(
        pledge.status.success(),
        "{}",
        String::from_utf8_lossy(&pledge.stderr)
    );
    assert!(dir.path().join("chain.log").exists() && dir.path().join("miner.log").exists());

    // The printed deal walkthrough, as a user follows it.
    let client = WalkthroughClient::new(dir.path(), &printed);
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello from the devnet walkthrough\n").expect("write");
    let dealt = client.deal(&file, &["--wait-active"]);
    assert!(dealt.contains("Complete"), "{dealt}");
    let markets_repo = dir.path().join("markets");
    let listed = run(
        "nelumbo-markets",
        &[
            "--repo",
            markets_repo.to_str().expect("path"),
            "deals",
            "list",
        ],
        &[],
    );
    assert!(listed.contains("Active"), "{listed}");

    // The replica the devnet printed serves the deal's file (a raw block in the CAR of the
    // wrapping directory and the file).
    let root = dealt
        .lines()
        .find_map(|l| l.strip_prefix("data root: "))
        .expect("the data root")
        .trim()
        .to_string();
    let replica_url = printed
        .iter()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("http://") && w.contains("/ipfs/PAYLOAD_CID"))
        })
        .expect("a replica line")
        .replace("PAYLOAD_CID", &root);
    let (status, car) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let response = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("http")
                .get(&replica_url)
                .header("Accept", "application/vnd.ipld.car")
                .send()
                .await
                .expect("GET from the replica");
            (response.status(), response.bytes().await.expect("body"))
        });
    assert_eq!(status, 200, "{replica_url}");
    let mut reader = nelumbo_car::CarReader::new(car.as_ref()).expect("a CAR");
    let mut found = false;
    while let Some((_, data)) = reader.next_block().expect("a checked block") {
        found |= data == b"hello from the devnet walkthrough\n";
    }
    assert!(found, "the replica's CAR lacks the file");

    // The hub's status view, as an operator's browser shows it.
    check_status_view(&repo, &markets_repo);

    // The listener audit: every socket each process listens on, as the kernel reports it.
    audit_listeners(dir.path(), &postgres_port);

    // Ctrl-C: both daemons stop cleanly (they remove their api files) and devnet exits 0.
    let status = devnet.interrupt();
    assert!(status.success(), "devnet exited with {status}");
    assert!(!repo.join("api").exists(), "the hub did not stop cleanly");
    assert!(
        !markets_repo.join("api").exists(),
        "markets did not stop cleanly"
    );
    assert!(
        !dir.path().join("chain/api").exists(),
        "the chain did not stop cleanly"
    );
    let log = std::fs::read_to_string(dir.path().join("miner.log")).expect("miner log");
    assert!(log.contains("nelumbo-miner stopped"), "{log}");
}

/// Loads the hub's status view (`nelumbo-miner status-url`) in headless Chromium and checks
/// that it shows what the CLIs show: sectors by state, spokes, the deals their processes
/// report, workers. Counts can move while it loads (a sector sealing), so each comparison is
/// made when the CLI said the same before and after the page loaded. With
/// `NELUMBO_STATUS_SCREENSHOT=FILE.png` it also saves a screenshot (docs/status-view.png).
fn check_status_view(repo: &Path, markets_repo: &Path) {
    let url = run(
        "nelumbo-miner",
        &["--repo", repo.to_str().expect("path"), "status-url"],
        &[],
    );
    let url = url.trim();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/status#token="),
        "{url}"
    );
    let browser_dir = tempfile::tempdir().expect("dir");
    let chromium = |extra: &[&str]| -> Output {
        Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", browser_dir.path().display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium (scripts/setup installs it)")
    };
    let cli = || {
        let sectors = run(
            "nelumbo-miner",
            &["--repo", repo.to_str().expect("path"), "sectors", "list"],
            &[],
        );
        let mut by_state: std::collections::BTreeMap<String, u64> = Default::default();
        for line in sectors.lines().skip(1) {
            if let Some(state) = line.split_whitespace().nth(1) {
                *by_state.entry(state.to_string()).or_default() += 1;
            }
        }
        let spokes = run(
            "nelumbo-miner",
            &["--repo", repo.to_str().expect("path"), "spokes", "list"],
            &[],
        );
        let spokes = spokes.lines().filter(|l| l.starts_with("12D3KooW")).count();
        let deals = run(
            "nelumbo-markets",
            &[
                "--repo",
                markets_repo.to_str().expect("path"),
                "deals",
                "list",
            ],
            &[],
        );
        let active = deals
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Active"))
            .count();
        (by_state, spokes, active)
    };
    // The spokes' deal counts reach the hub with their next heartbeat (every 10 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = cli();
        let output = chromium(&["--dump-dom"]);
        let dom = String::from_utf8_lossy(&output.stdout).to_string();
        let after = cli();
        assert!(
            dom.contains("data-loaded="),
            "the status view did not load: {dom}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!dom.contains("data-error="), "the status view: {dom}");
        let (by_state, spokes, active) = &before;
        assert!(*spokes >= 2, "markets and the replica report to the hub");
        let shown: std::collections::BTreeMap<String, u64> =
            attribute_texts(&dom, "data-sectors-state")
                .into_iter()
                .map(|(state, n)| (state, n.parse().expect("a count")))
                .collect();
        let mut differences = Vec::new();
        if &shown != by_state {
            differences.push(format!("sectors {shown:?}, the CLI {by_state:?}"));
        }
        if !dom.contains(&format!("data-spokes=\"{spokes}\"")) {
            differences.push(format!("not {spokes} spokes"));
        }
        if !dom.contains(&format!("data-deals-state=\"Active\">{active}<")) {
            differences.push(format!("not {active} active deals"));
        }
        for worker in ["WindowPoSt scheduler", "PublishStorageDeals batcher"] {
            if !dom.contains(&format!("data-worker=\"{worker}\"")) {
                differences.push(format!("no {worker}"));
            }
        }
        if differences.is_empty() && before == after {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the status view differs from the CLI: {differences:?}\n{dom}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    if let Ok(path) = std::env::var("NELUMBO_STATUS_SCREENSHOT") {
        let output = chromium(&["--window-size=1300,1300", &format!("--screenshot={path}")]);
        assert!(output.status.success(), "screenshot");
    }
}

/// Every `ATTR="VALUE">TEXT<` in `dom`, as (VALUE, TEXT).
fn attribute_texts(dom: &str, attr: &str) -> Vec<(String, String)> {
    let marker = format!("{attr}=\"");
    dom.split(&marker)
        .skip(1)
        .filter_map(|rest| {
            let (value, rest) = rest.split_once('"')?;
            let text = rest.strip_prefix('>')?.split('<').next()?;
            Some((value.to_string(), text.to_string()))
        })
        .collect()
}

/// Lists every socket each devnet process listens on (TCP listeners and bound UDP sockets)
/// and checks them against what each process is for: the chain, the hub and PostgreSQL listen
/// on loopback only, on their one documented port; a markets process has its admin API,
/// retrieval and libp2p, and nothing else (all on loopback here, as the devnet configures them).
fn audit_listeners(dir: &Path, postgres_port: &str) {
    let postgres_dir = dir.join("postgres").to_string_lossy().into_owned();
    let postgres: Vec<u32> = all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&postgres_dir))
        })
        .collect();
    assert!(!postgres.is_empty(), "PostgreSQL is not running");
    let daemons = [
        ("nelumbo-chain", "chain", 1),
        ("nelumbo-miner", "miner", 1),
        ("nelumbo-markets", "markets", 3),
        ("nelumbo-markets", "replica-1", 3),
    ];
    let mut table = Vec::new();
    for (binary, repo, expected) in daemons {
        let repo = dir.join(repo);
        let pid =
            pid_of(binary, &repo).unwrap_or_else(|| panic!("{binary} {} runs", repo.display()));
        let found = listeners(&[pid]);
        let api = std::fs::read_to_string(repo.join("api")).expect("the api file");
        let api_port: u16 = api
            .split("/tcp/")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {api}"));
        for (proto, addr) in &found {
            table.push(format!("{binary} ({}) {proto} {addr}", repo.display()));
            assert!(
                addr.ip().is_loopback(),
                "{binary} listens on {proto} {addr}"
            );
            assert_eq!(*proto, "tcp", "{binary} has a UDP socket on {addr}");
        }
        assert_eq!(found.len(), expected, "{binary} listens on {found:?}");
        assert!(
            found.iter().any(|(_, a)| a.port() == api_port),
            "{binary}'s API port {api_port} is not among {found:?}"
        );
    }
    let found = listeners(&postgres);
    for (proto, addr) in &found {
        table.push(format!("postgres {proto} {addr}"));
        assert!(
            addr.ip().is_loopback() && addr.port().to_string() == postgres_port,
            "PostgreSQL listens on {proto} {addr}"
        );
    }
    assert!(!found.is_empty(), "PostgreSQL listens on no TCP port");
    eprintln!("listeners:\n  {}", table.join("\n  "));
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// The TCP sockets in LISTEN state and the bound UDP sockets that `pids` hold, from
/// /proc/PID/fd and /proc/net/{tcp,tcp6,udp,udp6}.
fn listeners(pids: &[u32]) -> Vec<(&'static str, std::net::SocketAddr)> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    let mut found = Vec::new();
    for (table, proto) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || (proto == "tcp" && fields[3] != "0A") {
                continue;
            }
            if fields[9]
                .parse::<u64>()
                .is_ok_and(|inode| inodes.contains(&inode))
            {
                found.push((proto, proc_net_address(fields[1])));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address as /proc/net
/// prints it, 32-bit words in the host's byte order.
fn proc_net_address(text: &str) -> std::net::SocketAddr {
    let (ip, port) = text.split_once(':').expect("address:port");
    let port = u16::from_str_radix(port, 16).expect("port");
    let words: Vec<[u8; 4]> = (0..ip.len() / 8)
        .map(|i| {
            u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                .expect("hex")
                .to_ne_bytes()
        })
        .collect();
    let ip: std::net::IpAddr = match words.as_slice() {
        [a] => std::net::Ipv4Addr::from(*a).into(),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(w);
            }
            std::net::Ipv6Addr::from(bytes).into()
        }
        _ => panic!("an address of {} hex digits", ip.len()),
    };
    std::net::SocketAddr::new(ip, port)
}

/// The PID of the running `binary ... REPO ... run` (the daemon itself, not its workers).
fn pid_of(binary: &str, repo: &Path) -> Option<u32> {
    let repo = repo.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with(binary))
            && args.iter().any(|a| a == &repo)
            && args.iter().any(|a| a == "run")
        {
            return Some(pid);
        }
    }
    None
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The walkthrough's client as a user sets it up from what the devnet printed: a wallet in
/// `DIR/client` funded by the chain's faucet.
struct WalkthroughClient {
    repo: String,
    export: String,
    actor: String,
}

impl WalkthroughClient {
    fn new(dir: &Path, printed: &[String]) -> Self {
        let export = printed
            .iter()
            .find_map(|l| l.trim().strip_prefix("export FULLNODE_API_INFO="))
            .expect("an export line")
            .to_string();
        let deal_line = printed
            .iter()
            .find(|l| l.contains("nelumbo client deal --provider"))
            .expect("a deal line");
        let actor = deal_line
            .split("--provider ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("actor")
            .to_string();
        let client = Self {
            repo: dir.join("client").to_str().expect("path").to_string(),
            export,
            actor,
        };
        let address = run(
            "nelumbo",
            &["client", "--repo", &client.repo, "wallet", "new"],
            &client.env(),
        );
        run(
            "nelumbo-chain",
            &[
                "--repo",
                dir.join("chain").to_str().expect("path"),
                "faucet",
                address.trim(),
                "10",
            ],
            &[],
        );
        client
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("FULLNODE_API_INFO", self.export.as_str())]
    }

    /// `nelumbo client deal --provider ACTOR EXTRA... FILE`, which must succeed.
    fn deal(&self, file: &Path, extra: &[&str]) -> String {
        let mut args = vec![
            "client",
            "--repo",
            &self.repo,
            "deal",
            "--provider",
            &self.actor,
        ];
        args.extend_from_slice(extra);
        args.push(file.to_str().expect("path"));
        run("nelumbo", &args, &self.env())
    }
}

/// Blocks the hub has won, as `nelumbo-miner info` prints them.
fn blocks_won(repo: &Path) -> u64 {
    let info = miner(repo, &["info"]);
    String::from_utf8_lossy(&info.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("blocks won:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn devnet_restarts_a_process_that_dies_and_the_others_keep_running() {
    let dir = tempfile::tempdir().expect("dir");
    let devnet = RunningDevnet::start(dir.path(), &[]);
    let said = |text: &str| devnet.said(text);
    let (chain_repo, miner_repo, markets_repo) = (
        dir.path().join("chain"),
        dir.path().join("miner"),
        dir.path().join("markets"),
    );
    // A proving sector, so that the hub mines.
    let pledge = miner(&miner_repo, &["sectors", "pledge"]);
    assert!(pledge.status.success());
    wait_until("the hub to win a block", Duration::from_secs(120), || {
        blocks_won(&miner_repo) > 0
    });
    let hub_pid = pid_of("nelumbo-miner", &miner_repo).expect("the hub runs");

    // SIGKILL markets: it is back within seconds; the hub never stops and goes on mining.
    let markets_pid = pid_of("nelumbo-markets", &markets_repo).expect("markets runs");
    let killed_at = Instant::now();
    Command::new("kill")
        .args(["-KILL", &markets_pid.to_string()])
        .status()
        .expect("kill");
    wait_until("markets to be back", Duration::from_secs(20), || {
        pid_of("nelumbo-markets", &markets_repo).is_some_and(|p| p != markets_pid)
            && markets_repo.join("api").exists()
    });
    eprintln!("markets back {:?} after SIGKILL", killed_at.elapsed());
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    assert!(said(
        "nelumbo-markets exited (killed by SIGKILL); restarting in 1s"
    ));
    let won = blocks_won(&miner_repo);
    wait_until("the hub to mine on", Duration::from_secs(60), || {
        blocks_won(&miner_repo) > won
    });
    assert_eq!(pid_of("nelumbo-miner", &miner_repo), Some(hub_pid));

    // SIGKILL the chain: the hub and markets stay up and wait; once the chain is back, the hub
    // mines again.
    let markets_pid = pid_of("nelumbo-markets", &markets_repo).expect("markets runs");
    let chain_pid = pid_of("nelumbo-chain", &chain_repo).expect("the chain runs");
    Command::new("kill")
        .args(["-KILL", &chain_pid.to_string()])
        .status()
        .expect("kill");
    wait_until("the chain to be back", Duration::from_secs(20), || {
        pid_of("nelumbo-chain", &chain_repo).is_some_and(|p| p != chain_pid)
    });
    let won = blocks_won(&miner_repo);
    wait_until(
        "the hub to mine on the restarted chain",
        Duration::from_secs(90),
        || blocks_won(&miner_repo) > won,
    );
    assert_eq!(pid_of("nelumbo-miner", &miner_repo), Some(hub_pid));
    assert_eq!(pid_of("nelumbo-markets", &markets_repo), Some(markets_pid));
    assert!(said("nelumbo-chain exited (killed by SIGKILL)"));

    // Markets works again through the restarted chain: a new deal is taken, published and
    // added to a sector.
    let client = WalkthroughClient::new(dir.path(), &devnet.lines());
    let file = dir.path().join("after.txt");
    std::fs::write(&file, "a deal after the chain came back\n").expect("write");
    let dealt = client.deal(&file, &[]);
    let markets_repo_text = markets_repo.to_str().expect("path");
    wait_until(
        "the new deal to be published and in a sector",
        Duration::from_secs(120),
        || {
            let listed = run(
                "nelumbo-markets",
                &["--repo", markets_repo_text, "deals", "list"],
                &[],
            );
            listed.contains("Sealing") || listed.contains("Active")
        },
    );
    assert!(dealt.contains("accepted"), "{dealt}");

    let status = devnet.interrupt();
    assert!(status.success(), "devnet exited with {status}");
}
