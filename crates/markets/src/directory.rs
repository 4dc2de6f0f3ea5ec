//! The piece directory as markets uses it ([`nelumbo_piecedir`]): the backend `[database]`
//! chooses, calls run on the blocking pool, and the one-time move of an older repo's index (kept
//! in `markets.redb` before the directory had a crate and a file of its own).

use std::path::Path;
use std::sync::Arc;

use nelumbo_piecedir::{Embedded, PieceDirectory, Postgres, PostgresOptions};
use nelumbo_service::Health;

use crate::config::DatabaseConfig;
use crate::store::Store;

/// The piece directory, shared by the services of one process.
pub type Directory = Arc<dyn PieceDirectory>;

/// The `/health/ready` check that names the shared database.
pub const HEALTH_CHECK: &str = "database";

/// Opens the configured backend: PostgreSQL when `[database] url` is set (applying missing
/// migrations unless `migrate_on_start` is off; its state is reported in `health`), else the
/// embedded file `embedded_path`. Blocking.
pub fn open(
    database: &DatabaseConfig,
    embedded_path: &Path,
    health: &Health,
) -> anyhow::Result<Directory> {
    match database.url() {
        Some(url) => {
            let postgres = Postgres::connect(
                &url,
                PostgresOptions {
                    max_connections: database.max_connections,
                    migrate: database.migrate_on_start,
                    ..PostgresOptions::default()
                },
            )?;
            health.ready(HEALTH_CHECK);
            Ok(Arc::new(Watched {
                inner: postgres,
                health: health.clone(),
            }))
        }
        None => Ok(Arc::new(Embedded::open(embedded_path)?)),
    }
}

/// A shared directory whose reachability is reported in `/health/ready`: a call that fails
/// because the database is unreachable marks it not ready (with the reason), the next call
/// that succeeds ready again.
struct Watched<D> {
    inner: D,
    health: Health,
}

impl<D: PieceDirectory> Watched<D> {
    fn watch<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        match &result {
            Ok(_) => self.health.ready(HEALTH_CHECK),
            Err(e) if nelumbo_piecedir::is_transient(e) => self
                .health
                .not_ready(HEALTH_CHECK, format!("unreachable: {e:#}")),
            Err(_) => {}
        }
        result
    }
}

impl<D: PieceDirectory> PieceDirectory for Watched<D> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn add_piece(
        &self,
        piece_cid: &str,
        open: &nelumbo_piecedir::OpenSource<'_>,
    ) -> anyhow::Result<nelumbo_piecedir::IndexedPiece> {
        self.watch(self.inner.add_piece(piece_cid, open))
    }
    fn piece(&self, piece_cid: &str) -> anyhow::Result<Option<nelumbo_piecedir::IndexedPiece>> {
        self.watch(self.inner.piece(piece_cid))
    }
    fn multihashes(&self, piece_cid: &str) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        self.watch(self.inner.multihashes(piece_cid))
    }
    fn locate(&self, multihash: &[u8]) -> anyhow::Result<Vec<nelumbo_piecedir::BlockLocation>> {
        self.watch(self.inner.locate(multihash))
    }
    fn piece_count(&self) -> anyhow::Result<u64> {
        self.watch(self.inner.piece_count())
    }
}

/// Runs `f` on the blocking pool (every directory call waits on a disk or a server).
pub async fn run<T, F>(directory: &Directory, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn PieceDirectory) -> anyhow::Result<T> + Send + 'static,
{
    let directory = directory.clone();
    tokio::task::spawn_blocking(move || f(directory.as_ref())).await?
}

/// Moves the pieces an older version indexed inside `markets.redb` into `directory`, then
/// drops the old tables. Safe to repeat: a move cut short is finished at the next start.
/// Blocking.
pub fn move_legacy_index(store: &Store, directory: &dyn PieceDirectory) -> anyhow::Result<()> {
    let pieces = store.legacy_piece_index()?;
    if pieces.is_empty() {
        return Ok(());
    }
    let count = pieces.len();
    for (record, blocks) in pieces {
        let source = || -> anyhow::Result<Box<dyn nelumbo_piecedir::BlockSource>> {
            Ok(Box::new(nelumbo_piecedir::ListSource::new(
                record.roots.clone(),
                blocks.clone(),
                record.car_bytes,
            )))
        };
        directory.add_piece(&record.piece_cid, &source)?;
    }
    store.drop_legacy_piece_index()?;
    tracing::info!(
        pieces = count,
        backend = directory.backend(),
        "piece directory: moved the pieces an older version indexed in markets.redb"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repo indexed by a version that kept the directory in `markets.redb`: its pieces move to
    /// the directory whole (blocks in CAR order, places, records) and the old tables go.
    #[test]
    fn an_older_repos_index_moves_into_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("markets.redb")).expect("open");
        let hash = |i: u32| {
            let mut h = vec![0x12, 0x20];
            h.extend_from_slice(&[i as u8; 32]);
            h
        };
        // As the old code wrote them: a piece of 3 blocks (block 1 twice), and the blocks of a
        // piece whose indexing never finished (no record).
        let record = nelumbo_piecedir::IndexedPiece {
            piece_cid: "piece-a".into(),
            roots: vec!["root-a".into()],
            blocks: 4,
            unverified_blocks: 0,
            car_bytes: 500,
        };
        {
            let txn = store.db.begin_write().expect("txn");
            {
                let mut blocks = txn
                    .open_multimap_table(redb::MultimapTableDefinition::<&[u8], &str>::new(
                        "piece_blocks",
                    ))
                    .expect("table");
                for (i, offset) in [(2u32, 300u64), (1, 100), (3, 200), (1, 400)] {
                    blocks
                        .insert(hash(i).as_slice(), format!("piece-a|{offset}|10").as_str())
                        .expect("insert");
                }
                blocks
                    .insert(hash(9).as_slice(), "piece-unfinished|0|10")
                    .expect("insert");
                txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("pieces"))
                    .expect("table")
                    .insert(
                        "piece-a",
                        serde_json::to_vec(&record).expect("json").as_slice(),
                    )
                    .expect("insert");
                txn.open_table(redb::TableDefinition::<(&str, u64), &[u8]>::new(
                    "piece_entries",
                ))
                .expect("table");
            }
            txn.commit().expect("commit");
        }
        let directory = Embedded::open(&dir.path().join("piecedir.redb")).expect("open");
        move_legacy_index(&store, &directory).expect("move");
        assert_eq!(directory.piece("piece-a").expect("read"), Some(record));
        assert_eq!(
            directory.multihashes("piece-a").expect("read"),
            Some(vec![hash(1), hash(3), hash(2), hash(1)]),
            "CAR order is offset order"
        );
        let places = directory.locate(&hash(1)).expect("locate");
        assert_eq!(places.len(), 2);
        assert!(directory.locate(&hash(9)).expect("locate").is_empty());
        assert_eq!(directory.piece_count().expect("count"), 1);
        assert!(store.legacy_piece_index().expect("read").is_empty());
        // Nothing left to move: the next start does nothing.
        move_legacy_index(&store, &directory).expect("again");
    }
}
