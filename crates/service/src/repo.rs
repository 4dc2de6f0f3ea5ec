//! A daemon's repo directory: where it is, its single-daemon lock, and how files that matter are
//! written (owner-only permissions, fsync, atomic replacement).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `flag`, else the environment variable `env`, else `~/.nelumbo/<default_name>`.
pub fn locate_repo(flag: Option<PathBuf>, env: &str, default_name: &str) -> io::Result<PathBuf> {
    if let Some(dir) = flag.or_else(|| std::env::var_os(env).map(PathBuf::from)) {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("HOME is not set: give --repo or set {env}"),
        )
    })?;
    Ok(PathBuf::from(home).join(".nelumbo").join(default_name))
}

/// Takes `dir`'s daemon lock, held until the returned file is dropped (or the process dies).
/// A second daemon on the same repo is refused with a message naming `process`.
pub fn lock_repo(dir: &Path, process: &str) -> io::Result<File> {
    let path = dir.join("daemon.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    file.try_lock().map_err(|_| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "another {process} is running on {}: stop it first",
                dir.display()
            ),
        )
    })?;
    Ok(file)
}

/// Writes a file readable by its owner only, and syncs it.
pub fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Replaces `path` with `contents` atomically: a reader sees the old file or the new one, and
/// after a crash the file is whole. The parent directory is synced so the rename is durable.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Opens the redb database at `path`, creating it if it does not exist. A new database is made
/// whole under a temporary name and renamed into place, so a process killed while creating it
/// (a daemon's very first start, say) leaves nothing the next start cannot open; once it
/// exists, redb's own commits keep it whole.
pub fn open_database(path: &Path) -> anyhow::Result<redb::Database> {
    use anyhow::Context;
    if !path.exists() {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .context("a database path needs a file name")?;
        let tmp = dir.join(format!(".{}.creating", name.to_string_lossy()));
        // Left by a process killed while creating it: never a database anyone used.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("remove {}", tmp.display()));
            }
            _ => {}
        }
        drop(
            redb::Database::create(&tmp)
                .with_context(|| format!("create the database {}", tmp.display()))?,
        );
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)
            .with_context(|| format!("move the new database into place at {}", path.display()))?;
        File::open(dir)?.sync_all()?;
    }
    // The caller's context names the database.
    Ok(redb::Database::open(path)?)
}

/// Creates `dir` if needed and checks that a file can be written in it (the probe is removed).
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(".nelumbo-write-check");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&probe, b"ok")?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let _held = lock_repo(dir.path(), "nelumbo-test").expect("first lock");
        let error = lock_repo(dir.path(), "nelumbo-test").expect_err("second lock");
        assert!(
            error
                .to_string()
                .contains("another nelumbo-test is running")
        );
    }

    #[test]
    fn a_database_is_created_whole_and_a_leftover_half_made_one_is_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.redb");
        // What a process killed while creating the database leaves behind.
        std::fs::write(dir.path().join(".x.redb.creating"), b"half a header").expect("write");
        const T: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("t");
        {
            let db = open_database(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(T)
                .expect("table")
                .insert("k", 7)
                .expect("insert");
            txn.commit().expect("commit");
        }
        assert!(!dir.path().join(".x.redb.creating").exists());
        let db = open_database(&path).expect("reopen");
        let txn = db.begin_read().expect("txn");
        let value = txn.open_table(T).expect("table").get("k").expect("get");
        assert_eq!(value.map(|v| v.value()), Some(7));
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        write_private(&path, "secret").expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
