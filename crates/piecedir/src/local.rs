//! Running a local PostgreSQL server from the machine's own packages (Debian's `postgresql`):
//! where its programs are, and the user they must run as. The devnet (`nelumbo devnet
//! --replicas`) and the tests start private clusters with these.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory of the newest installed PostgreSQL's programs (`initdb`, `postgres`,
/// `pg_isready`); `NELUMBO_PG_BIN` overrides.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NELUMBO_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// `initdb`'s arguments after `-D DATA` for a private cluster: superuser `nelumbo`, trust
/// authentication (the server listens on loopback only), UTF-8, C locale.
pub const INITDB_ARGS: &[&str] = &[
    "-U",
    "nelumbo",
    "--auth=trust",
    "--encoding=UTF8",
    "--locale=C",
];

/// One of the server's programs in `bin`, run as `owner` when given ([`server_owner`]).
pub fn command(bin: &Path, program: &str, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(bin.join(program));
    if let Some((uid, gid)) = owner {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    command
}

/// What to tell an operator whose machine lacks the programs.
pub const INSTALL_HINT: &str = "PostgreSQL's server programs are not installed: on Debian or \
     Ubuntu run `sudo apt-get install postgresql` (or scripts/setup), or set NELUMBO_PG_BIN to \
     the directory holding initdb and postgres";

/// The uid and gid the server must run as: `None` to run as ourselves; the `postgres` user
/// the package creates when we are root (PostgreSQL refuses to run as root).
pub fn server_owner() -> anyhow::Result<Option<(u32, u32)>> {
    if !running_as_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"postgres") && fields.len() > 3 {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    });
    ids.map(Some).ok_or_else(|| {
        anyhow::anyhow!(
            "running as root, PostgreSQL must run as another user: the `postgres` user its \
             package creates is missing"
        )
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
