//! The PostgreSQL backend, shared by every markets process of a miner. Its SQL keeps to what
//! YugabyteDB's YSQL also runs: no `LISTEN/NOTIFY`, no advisory locks, no foreign keys (they
//! would slow `COPY` and YSQL shards tables by their first key column anyway).
//!
//! A piece is indexed in one transaction: its row is locked (`SELECT ... FOR UPDATE`, so two
//! processes indexing the same piece take turns and the second finds it done), its blocks go in
//! by binary `COPY` in batches of [`crate::BATCH_BLOCKS`], and its record is filled in last. A
//! crash rolls the whole piece back; nothing half-indexed is ever visible. A transaction that
//! fails on a serialization conflict (YugabyteDB's 40001 under contention) or a dropped
//! connection is run again from a fresh block source, with capped backoff.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, NoTls, Statement};

use crate::migrations::{self, Migration};
use crate::{BlockLocation, IndexedPiece, OpenSource, PieceDirectory};

/// The piece directory's tables, in order. A migration never changes once released.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "piece directory: pieces by id, blocks by multihash, block lists",
    sql: "
        CREATE TABLE pd_pieces (
            id BIGSERIAL PRIMARY KEY,
            piece_cid TEXT NOT NULL UNIQUE,
            roots TEXT[],
            -- NULL until every block of the piece is in.
            blocks BIGINT,
            unverified_blocks BIGINT,
            car_bytes BIGINT,
            indexed_at TIMESTAMPTZ
        );
        CREATE TABLE pd_blocks (
            multihash BYTEA NOT NULL,
            piece_id BIGINT NOT NULL,
            block_offset BIGINT NOT NULL,
            block_length BIGINT NOT NULL,
            PRIMARY KEY (multihash, piece_id, block_offset)
        );
        CREATE TABLE pd_block_lists (
            piece_id BIGINT NOT NULL,
            batch BIGINT NOT NULL,
            multihashes BYTEA NOT NULL,
            PRIMARY KEY (piece_id, batch)
        );
    ",
}];

/// The component name the piece directory's migrations are recorded under.
pub const COMPONENT: &str = "piecedir";

const LOCATE: &str = "SELECT p.piece_cid, b.block_offset, b.block_length \
     FROM pd_blocks b JOIN pd_pieces p ON p.id = b.piece_id WHERE b.multihash = $1";
const PIECE: &str = "SELECT roots, blocks, unverified_blocks, car_bytes \
     FROM pd_pieces WHERE piece_cid = $1 AND blocks IS NOT NULL";

/// How the backend connects and retries.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections kept at most (each process's share of the server's `max_connections`).
    pub max_connections: usize,
    /// How long one call keeps retrying a dropped connection or a serialization conflict before
    /// it fails (the caller's own retry loop handles longer outages).
    pub retry_for: Duration,
    /// Whether opening applies missing migrations (otherwise a missing one is an error naming
    /// `db migrate`).
    pub migrate: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            retry_for: Duration::from_secs(10),
            migrate: true,
        }
    }
}

pub struct Postgres {
    pool: Pool,
    retry_for: Duration,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Postgres {
    /// Checks a database URL's form without connecting.
    pub fn check_url(url: &str) -> anyhow::Result<()> {
        postgres::Config::from_str(url)
            .map(drop)
            .map_err(|e| anyhow::anyhow!("the database url is not valid: {e}"))
    }

    /// `url` with its password left out, for logs and status.
    pub fn describe_url(url: &str) -> String {
        let Ok(config) = postgres::Config::from_str(url) else {
            return "(not a valid URL)".into();
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(host, port)| match host {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            })
            .collect();
        format!(
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            config.get_dbname().unwrap_or("")
        )
    }

    /// Applies the piece directory's missing migrations (`db migrate`); returns those applied.
    pub fn migrate_schema(url: &str) -> anyhow::Result<Vec<i32>> {
        let mut client = connect_once(url)?;
        migrations::migrate(&mut client, COMPONENT, MIGRATIONS)
    }

    /// What is applied and pending of the piece directory's schema (`db status`).
    pub fn schema_status(url: &str) -> anyhow::Result<migrations::Status> {
        let mut client = connect_once(url)?;
        migrations::status(&mut client, COMPONENT, MIGRATIONS)
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`), applies or checks the
    /// piece directory's migrations, and keeps up to `max_connections` connections.
    pub fn connect(url: &str, options: PostgresOptions) -> anyhow::Result<Self> {
        let config = client_config(url)?;
        let this = Self {
            pool: Pool::new(
                config,
                options.max_connections.max(1),
                Self::describe_url(url),
            ),
            retry_for: options.retry_for,
        };
        this.with_client("apply the piece directory's migrations", |client| {
            if options.migrate {
                migrations::migrate(&mut client.client, COMPONENT, MIGRATIONS)?;
            }
            migrations::check(&mut client.client, COMPONENT, MIGRATIONS)?;
            Ok(())
        })?;
        Ok(this)
    }

    /// Runs `f` with a connection, again (with capped backoff, for up to `retry_for`) when it
    /// fails on a dropped connection or a serialization conflict.
    fn with_client<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut Conn) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + self.retry_for;
        let mut delay = Duration::from_millis(50);
        loop {
            let result = self.pool.get().and_then(|mut conn| {
                let result = f(&mut conn);
                self.pool.put(conn);
                result
            });
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) && Instant::now() + delay < deadline => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "piece directory: {what}: retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.context(format!("piece directory: {what}"))),
            }
        }
    }
}

/// The client settings for `url`: a 5 s connect timeout unless it sets one, and this
/// program's name in `pg_stat_activity`.
fn client_config(url: &str) -> anyhow::Result<postgres::Config> {
    let mut config = postgres::Config::from_str(url)
        .map_err(|e| anyhow::anyhow!("the database url is not valid: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name("nelumbo-markets");
    Ok(config)
}

/// One connection, for a command that runs once.
fn connect_once(url: &str) -> anyhow::Result<Client> {
    client_config(url)?
        .connect(NoTls)
        .with_context(|| format!("connect to the database at {}", Postgres::describe_url(url)))
}

/// Whether an error may pass if the same work is tried again: a conflict with another
/// transaction, or a connection that is down or was dropped.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let Some(e) = cause.downcast_ref::<postgres::Error>() else {
            return false;
        };
        match e.code() {
            Some(code) => {
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CRASH_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || code.code().starts_with("08")
            }
            // No server error: the connection failed (an I/O error) or closed. (Other errors
            // without a code, such as a value that does not convert, are not retried.)
            None => {
                e.is_closed()
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
        }
    })
}

impl PieceDirectory for Postgres {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn add_piece(&self, piece_cid: &str, open: &OpenSource<'_>) -> anyhow::Result<IndexedPiece> {
        if let Some(indexed) = self.piece(piece_cid)? {
            return Ok(indexed);
        }
        self.with_client("index a piece", |conn| {
            let mut txn = conn.client.transaction()?;
            txn.execute(
                "INSERT INTO pd_pieces (piece_cid) VALUES ($1) ON CONFLICT (piece_cid) DO NOTHING",
                &[&piece_cid],
            )?;
            // Whoever else is indexing this piece finishes first.
            let row = txn.query_one(
                "SELECT id, roots, blocks, unverified_blocks, car_bytes FROM pd_pieces \
                 WHERE piece_cid = $1 FOR UPDATE",
                &[&piece_cid],
            )?;
            let id: i64 = row.get(0);
            if let Some(indexed) = piece_from_row(piece_cid, &row, 1)? {
                txn.commit()?;
                return Ok(indexed);
            }
            let indexed = crate::read_batches(piece_cid, open(), |batch_no, batch| {
                let sink = txn.copy_in(
                    "COPY pd_blocks (multihash, piece_id, block_offset, block_length) \
                     FROM STDIN (FORMAT binary)",
                )?;
                let mut writer = BinaryCopyInWriter::new(
                    sink,
                    &[Type::BYTEA, Type::INT8, Type::INT8, Type::INT8],
                );
                for block in batch {
                    writer.write(&[
                        &block.multihash,
                        &id,
                        &to_i64(block.offset)?,
                        &to_i64(block.length)?,
                    ])?;
                }
                writer.finish()?;
                let list = crate::encode_list(batch.iter().map(|b| b.multihash.as_slice()));
                txn.execute(
                    "INSERT INTO pd_block_lists (piece_id, batch, multihashes) VALUES ($1, $2, $3)",
                    &[&id, &to_i64(batch_no)?, &list],
                )?;
                Ok(())
            })?;
            txn.execute(
                "UPDATE pd_pieces SET roots = $2, blocks = $3, unverified_blocks = $4, \
                 car_bytes = $5, indexed_at = now() WHERE id = $1",
                &[
                    &id,
                    &indexed.roots,
                    &to_i64(indexed.blocks)?,
                    &to_i64(indexed.unverified_blocks)?,
                    &to_i64(indexed.car_bytes)?,
                ],
            )?;
            txn.commit()?;
            Ok(indexed)
        })
    }

    fn piece(&self, piece_cid: &str) -> anyhow::Result<Option<IndexedPiece>> {
        self.with_client("read a piece", |conn| {
            let statement = conn.prepared(PIECE)?;
            match conn.client.query_opt(&statement, &[&piece_cid])? {
                Some(row) => piece_from_row(piece_cid, &row, 0),
                None => Ok(None),
            }
        })
    }

    fn multihashes(&self, piece_cid: &str) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        self.with_client("read a piece's block list", |conn| {
            let mut txn = conn.client.build_transaction().read_only(true).start()?;
            let Some(row) = txn.query_opt(
                "SELECT id, blocks FROM pd_pieces WHERE piece_cid = $1 AND blocks IS NOT NULL",
                &[&piece_cid],
            )?
            else {
                return Ok(None);
            };
            let (id, blocks): (i64, i64) = (row.get(0), row.get(1));
            let mut out = Vec::with_capacity(blocks as usize);
            for row in txn.query(
                "SELECT multihashes FROM pd_block_lists WHERE piece_id = $1 ORDER BY batch",
                &[&id],
            )? {
                crate::decode_list(row.get::<_, &[u8]>(0), &mut out)?;
            }
            txn.commit()?;
            anyhow::ensure!(
                out.len() as i64 == blocks,
                "piece {piece_cid} lists {} blocks but its record says {blocks}",
                out.len()
            );
            Ok(Some(out))
        })
    }

    fn locate(&self, multihash: &[u8]) -> anyhow::Result<Vec<BlockLocation>> {
        self.with_client("look a block up", |conn| {
            let statement = conn.prepared(LOCATE)?;
            conn.client
                .query(&statement, &[&multihash])?
                .iter()
                .map(|row| {
                    Ok(BlockLocation {
                        piece_cid: row.get(0),
                        offset: to_u64(row.get(1))?,
                        length: to_u64(row.get(2))?,
                    })
                })
                .collect()
        })
    }

    fn piece_count(&self) -> anyhow::Result<u64> {
        self.with_client("count pieces", |conn| {
            let row = conn.client.query_one(
                "SELECT count(*) FROM pd_pieces WHERE blocks IS NOT NULL",
                &[],
            )?;
            to_u64(row.get(0))
        })
    }
}

/// A piece's record from columns `roots, blocks, unverified_blocks, car_bytes` starting at
/// `first`; `None` while the piece is not fully indexed.
fn piece_from_row(
    piece_cid: &str,
    row: &postgres::Row,
    first: usize,
) -> anyhow::Result<Option<IndexedPiece>> {
    let Some(blocks) = row.get::<_, Option<i64>>(first + 1) else {
        return Ok(None);
    };
    Ok(Some(IndexedPiece {
        piece_cid: piece_cid.to_string(),
        roots: row.get::<_, Option<Vec<String>>>(first).unwrap_or_default(),
        blocks: to_u64(blocks)?,
        unverified_blocks: to_u64(row.get::<_, Option<i64>>(first + 2).unwrap_or(0))?,
        car_bytes: to_u64(row.get::<_, Option<i64>>(first + 3).unwrap_or(0))?,
    }))
}

fn to_i64(value: u64) -> anyhow::Result<i64> {
    i64::try_from(value).context("a value too large for the database")
}

fn to_u64(value: i64) -> anyhow::Result<u64> {
    u64::try_from(value).context("a negative value in the database")
}

/// A connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn prepared(&mut self, sql: &'static str) -> anyhow::Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// A small blocking pool: idle connections are reused, at most `max` are open, and one that
/// was closed (by the server, or by an error) is dropped rather than handed out again. A pool
/// crate would do as much, but the retry loop above must see every connection error itself.
struct Pool {
    config: postgres::Config,
    /// The server, for errors (no password).
    server: String,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

impl Pool {
    fn new(config: postgres::Config, max: usize, server: String) -> Self {
        Self {
            config,
            server,
            max,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn get(&self) -> anyhow::Result<Conn> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = state.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(conn);
                }
                state.open -= 1;
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                break;
            }
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        drop(state);
        match self.config.connect(NoTls) {
            Ok(client) => Ok(Conn {
                client,
                statements: HashMap::new(),
            }),
            Err(e) => {
                self.release_slot();
                Err(anyhow::Error::new(e).context(format!("connect to {}", self.server)))
            }
        }
    }

    fn put(&self, conn: Conn) {
        if conn.client.is_closed() {
            self.release_slot();
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.idle.push(conn);
        drop(state);
        self.freed.notify_one();
    }

    fn release_slot(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open -= 1;
        drop(state);
        self.freed.notify_one();
    }
}
