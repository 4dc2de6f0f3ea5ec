//! Test support for end-to-end tests: Nelumbo's real binaries started in temporary directories
//! and driven only through their public interfaces (CLI, JSON-RPC, HTTP).
//!
//! The binaries are found next to the running test (`target/<profile>/`); `scripts/test` builds
//! the whole workspace first. To run one package's tests alone, build the binaries it starts,
//! for example `cargo build -p nelumbo-chain`.

pub mod chain;
pub mod hub;

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
