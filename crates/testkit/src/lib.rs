//! Test support for end-to-end tests: Nelumbo's real binaries started in temporary directories
//! and driven only through their public interfaces (CLI, JSON-RPC, HTTP).
//!
//! The binaries are found next to the running test (`target/<profile>/`); `scripts/test` builds
//! the whole workspace first. To run one package's tests alone, build the binaries it starts,
//! for example `cargo build -p nelumbo-chain`.

pub mod api;
pub mod chain;
pub mod config;
pub mod deals;
pub mod hub;
pub mod link;
pub mod markets;
pub mod metrics;
pub mod netns;
pub mod postgres;
pub mod proxy;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The path of workspace binary `name`, built in the same profile as the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p {name}, or scripts/test, which builds the whole workspace)",
        path.display()
    );
    path
}

/// Stops a daemon with SIGKILL (`kill`) or SIGTERM and waits for it (SIGKILL after 30 s).
pub fn stop_process(mut child: std::process::Child, kill: bool) {
    let signal = if kill { "-KILL" } else { "-TERM" };
    let _ = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Pauses process `pid` for `time` (SIGSTOP, then SIGCONT): a process the kernel does not run
/// for a while, as a host swapping or a debugger would leave it. Its sockets stay open.
pub async fn pause_process(pid: u32, time: Duration) {
    let signal = |name: &str| {
        let _ = std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status();
    };
    signal("-STOP");
    tokio::time::sleep(time).await;
    signal("-CONT");
}

/// Starts `binary --repo REPO ARGS` with its log appended to `log`, and waits up to 60 s until
/// the repo's `api` and `token` files give a client that answers `M` (a cheap read method).
/// Panics with the log if the daemon exits or does not answer. The `api` file of an earlier run
/// is removed first, so a stale one is never used. With `netns`, the daemon runs in that network
/// namespace and is asked from there.
pub async fn start_daemon<M>(
    netns: Option<&str>,
    binary: &std::path::Path,
    repo: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> (std::process::Child, nelumbo_rpc::RpcClient)
where
    M: nelumbo_rpc::RpcMethod<Params = ()>,
{
    use std::time::{Duration, Instant};
    let _ = std::fs::remove_file(repo.join("api"));
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = netns::command_in(netns, binary)
        .arg("--repo")
        .arg(repo)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let name = binary
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "{name} did not start:\n{}",
            read_log()
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited with {status}:\n{}", read_log());
        }
        if let (Ok(api), Ok(token)) = (
            std::fs::read_to_string(repo.join("api")),
            std::fs::read_to_string(repo.join("token")),
        ) {
            let mut info = nelumbo_rpc::ApiInfo::parse(api.trim()).expect("api file");
            info.token = Some(token.trim().to_string());
            let client = nelumbo_rpc::RpcClient::from_api_info(&info);
            let answers = match netns {
                None => client.call::<M>(()).await.is_ok(),
                // A client of its own on the namespace's thread: connections do not outlive
                // the runtime they were made on.
                Some(netns) => tokio::task::block_in_place(|| {
                    netns::block_on_in(netns, async {
                        let client = nelumbo_rpc::RpcClient::from_api_info(&info);
                        client.call::<M>(()).await.is_ok()
                    })
                }),
            };
            if answers {
                return (child, client);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The processes whose parent is `parent`, with their command lines (Linux `/proc`).
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the command may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, cmdline));
        }
    }
    out
}

/// Whether process `pid` is running (and not a zombie).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}

/// Waits until none of `pids` runs, for at most `within`: how long that took, or `None` if
/// one still ran. A child killed as its parent exits (SIGKILL on drop, the parent-death
/// signal) dies only once the kernel schedules it, which at nice 19 on a busy machine can
/// take a moment after the parent is gone.
pub fn wait_gone(pids: &[u32], within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while pids.iter().any(|pid| is_running(*pid)) {
        if started.elapsed() >= within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(started.elapsed())
}
