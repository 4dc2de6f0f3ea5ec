//! Test support for end-to-end tests: Nelumbo's real binaries started in temporary directories
//! and driven only through their public interfaces (CLI, JSON-RPC, HTTP).
//!
//! The binaries are found next to the running test (`target/<profile>/`); `scripts/test` builds
//! the whole workspace first. To run one package's tests alone, build the binaries it starts,
//! for example `cargo build -p nelumbo-chain`.

pub mod chain;
pub mod hub;
pub mod markets;

use std::path::PathBuf;

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
