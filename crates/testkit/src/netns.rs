//! Network namespaces for layout tests: three hosts (the internet, a DMZ host and a private
//! host) joined by a router, with the addresses `docs/operations.md` draws in its DMZ layout,
//! all inside namespaces the test creates (with the guide's script) and deletes. Processes run
//! on a host through `ip netns exec`; test code runs there on a thread moved into the namespace
//! (`setns`), and every thread and process that thread starts is there too.
//!
//! Needs root (namespaces, links, nftables), `ip` (iproute2) and `nft` (nftables):
//! [`Lab::unavailable`] says what is missing.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// One host of the lab: its name within the lab, its address and its router-side gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: &'static str,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

/// The public side: clients, their data servers and the chain (the Filecoin network).
/// 198.51.100.0/24 is a documentation range, never routed on the real internet.
pub const INTERNET: Host = Host {
    name: "internet",
    address: Ipv4Addr::new(198, 51, 100, 10),
    gateway: Ipv4Addr::new(198, 51, 100, 1),
};

/// The markets host in the DMZ (the guide's 10.1.0.10).
pub const DMZ: Host = Host {
    name: "dmz",
    address: Ipv4Addr::new(10, 1, 0, 10),
    gateway: Ipv4Addr::new(10, 1, 0, 1),
};

/// The hub host on the private network (the guide's 10.2.0.10).
pub const PRIVATE: Host = Host {
    name: "private",
    address: Ipv4Addr::new(10, 2, 0, 10),
    gateway: Ipv4Addr::new(10, 2, 0, 1),
};

const HOSTS: [Host; 3] = [INTERNET, DMZ, PRIVATE];
const ROUTER: &str = "router";

/// The namespaces of one lab, deleted on drop (stop the processes in them first).
#[derive(Debug)]
pub struct Lab {
    prefix: String,
}

impl Lab {
    /// Why a lab cannot be made here (not root, `ip` or `nft` missing), or `None`.
    pub fn unavailable() -> Option<String> {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
            })
            .unwrap_or_default();
        if uid != "0" {
            return Some("network namespaces need root".into());
        }
        for (program, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            let found = Command::new(program)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Some(format!("`{program}` is missing (Debian package {package})"));
            }
        }
        None
    }

    /// Builds the lab with `script`, a shell script that creates namespaces `$P-router`,
    /// `$P-internet`, `$P-dmz` and `$P-private` (`P` is set to this lab's prefix) and joins them:
    /// the guide's own script, so the test builds what a reader builds. Each host must have its
    /// address above and a route to the others.
    pub fn create(script: &str) -> Self {
        let lab = Self {
            prefix: format!("nelumbo-{}", std::process::id()),
        };
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .env("P", &lab.prefix)
            .output()
            .expect("run bash");
        assert!(
            output.status.success(),
            "the lab script failed: {}{}\n{script}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        lab
    }

    fn netns_named(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The namespace name of `host` (for `ip netns exec`).
    pub fn netns(&self, host: Host) -> String {
        self.netns_named(host.name)
    }

    /// `program` as a command to run on `host`.
    pub fn command(&self, host: Host, program: &Path) -> Command {
        command_in(Some(&self.netns(host)), program)
    }

    /// Loads an nftables ruleset (`nft -f`) on `host`.
    pub fn apply_nftables(&self, host: Host, rules: &str) {
        let file = tempfile::NamedTempFile::new().expect("rules file");
        std::fs::write(file.path(), rules).expect("write rules");
        let output = self
            .command(host, Path::new("nft"))
            .arg("-f")
            .arg(file.path())
            .output()
            .expect("run nft");
        assert!(
            output.status.success(),
            "nft -f on {}: {}\n{rules}",
            host.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs `work` on a new thread moved into `host`'s namespace and returns its result: the
    /// sockets it opens, and the threads and processes it starts, are on that host.
    pub fn run_on<T: Send>(&self, host: Host, work: impl FnOnce() -> T + Send) -> T {
        run_in(&self.netns(host), work)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in HOSTS.iter().map(|h| h.name).chain([ROUTER]) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns_named(name)])
                .output();
        }
    }
}

/// `program` as a command: as it is, or through `ip netns exec NETNS` (which execs it, so the
/// child's process ID is the program's).
pub fn command_in(netns: Option<&str>, program: &Path) -> Command {
    match netns {
        None => Command::new(program),
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(program);
            command
        }
    }
}

/// Runs `work` on a new thread moved into network namespace `netns` (`/run/netns/NETNS`).
pub fn run_in<T: Send>(netns: &str, work: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns(2) with a namespace file descriptor that stays open for the
                // call; it changes only this thread's network namespace.
                let moved = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                };
                assert_eq!(
                    moved,
                    0,
                    "setns {path}: {}",
                    std::io::Error::last_os_error()
                );
                work()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `future` to completion on a thread in `netns`, on a runtime of its own.
pub fn block_on_in<T: Send>(netns: &str, future: impl std::future::Future<Output = T> + Send) -> T {
    run_in(netns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    })
}
