//! A private PostgreSQL server for a test or a benchmark: a new cluster (`initdb`) in a
//! temporary directory, listening on a free loopback port and a socket in that directory, run
//! from Debian's `postgresql` package (installed by `scripts/setup`) and removed when dropped.
//! Never a system service that happens to be running.
//!
//! PostgreSQL refuses to run as root; when the test runs as root the server runs as the
//! `postgres` user the package creates, and the directory is handed to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    settings: Vec<(String, String)>,
    child: Option<Child>,
}

impl PostgresServer {
    /// A server tuned for tests: durability off (nothing here survives the test anyway).
    pub fn start() -> Self {
        Self::start_with(&[
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
        ])
    }

    /// A server with these `postgres -c` settings (a benchmark passes its own).
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        let bin = nelumbo_piecedir::local::bin_dir()
            .unwrap_or_else(|| panic!("{}", nelumbo_piecedir::local::INSTALL_HINT));
        let dir = tempfile::Builder::new()
            .prefix("nelumbo-pg-")
            .tempdir()
            .expect("a temporary directory");
        let owner = nelumbo_piecedir::local::server_owner().expect("the server's user");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let mut server = Self {
            dir,
            bin,
            port: crate::markets::free_port(),
            owner,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        let status = server
            .command("initdb")
            .args(["-D"])
            .arg(server.data_dir())
            .args(nelumbo_piecedir::local::INITDB_ARGS)
            .arg("--no-sync")
            .stdout(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        server.resume();
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = nelumbo_piecedir::local::command(&self.bin, program, self.owner);
        command.current_dir(self.dir.path());
        command
    }

    /// The connection URL (database `postgres`, user `nelumbo`, no password on loopback).
    pub fn url(&self) -> String {
        format!("postgres://nelumbo@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server again after [`PostgresServer::stop`] (same port, same data), and waits
    /// until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.dir.path().join("postgres.log"), Some(uid), Some(gid))
                .expect("chown the log");
        }
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for (key, value) in &self.settings {
            command.args(["-c", &format!("{key}={value}")]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start in 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping its data.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
