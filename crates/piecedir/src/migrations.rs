//! Versioned schema migrations on PostgreSQL, recorded per component in `nelumbo_schema`.
//!
//! Several processes may start at once and each apply what is missing: a migration's DDL and
//! its version row commit in one transaction, so two processes racing on one migration leave
//! one of them with a conflict (a duplicate version row or table), which it answers by reading
//! the versions again. Only plain DDL and inserts: YSQL runs them too.

use postgres::Client;
use postgres::error::SqlState;

/// One step of a component's schema. Released steps never change; a change is a new step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// A component's schema as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub component: String,
    /// The highest version applied, 0 for none.
    pub applied: i32,
    /// The highest version this build knows.
    pub latest: i32,
    /// Versions this build knows that are not applied, with their descriptions.
    pub pending: Vec<(i32, String)>,
    /// Versions applied that this build does not know: a newer build migrated the database.
    pub unknown: Vec<i32>,
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS nelumbo_schema (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)";

fn applied(client: &mut Client, component: &str) -> Result<Vec<i32>, postgres::Error> {
    let rows = client.query(
        "SELECT version FROM nelumbo_schema WHERE component = $1 ORDER BY version",
        &[&component],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn is_race(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::DUPLICATE_TABLE
            || *code == SqlState::DUPLICATE_OBJECT
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

fn ensure_table(client: &mut Client) -> anyhow::Result<()> {
    for _ in 0..5 {
        match client.batch_execute(CREATE) {
            Ok(()) => return Ok(()),
            // Two processes creating it at once: the loser sees a duplicate type or table.
            Err(e) if is_race(&e) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => return Err(anyhow::Error::new(e).context("create nelumbo_schema")),
        }
    }
    client.batch_execute(CREATE)?;
    Ok(())
}

/// Applies the component's missing migrations in order; returns the versions it applied.
pub fn migrate(
    client: &mut Client,
    component: &str,
    migrations: &[Migration],
) -> anyhow::Result<Vec<i32>> {
    ensure_table(client)?;
    let mut done = Vec::new();
    let mut races = 0;
    'again: loop {
        let present = applied(client, component)?;
        for migration in migrations {
            if present.contains(&migration.version) {
                continue;
            }
            let result = (|| -> Result<(), postgres::Error> {
                let mut txn = client.transaction()?;
                txn.batch_execute(migration.sql)?;
                txn.execute(
                    "INSERT INTO nelumbo_schema (component, version, description) VALUES ($1, $2, $3)",
                    &[&component, &migration.version, &migration.description],
                )?;
                txn.commit()
            })();
            match result {
                Ok(()) => {
                    tracing::info!(
                        component,
                        version = migration.version,
                        description = migration.description,
                        "database: migration applied"
                    );
                    done.push(migration.version);
                }
                Err(e) if is_race(&e) && races < 10 => {
                    // Another process applied it first.
                    races += 1;
                    continue 'again;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "apply {component} migration {} ({})",
                        migration.version, migration.description
                    )));
                }
            }
        }
        return Ok(done);
    }
}

/// What is applied and what is pending for a component.
pub fn status(
    client: &mut Client,
    component: &str,
    migrations: &[Migration],
) -> anyhow::Result<Status> {
    ensure_table(client)?;
    let present = applied(client, component)?;
    Ok(Status {
        component: component.to_string(),
        applied: present.iter().copied().max().unwrap_or(0),
        latest: migrations.iter().map(|m| m.version).max().unwrap_or(0),
        pending: migrations
            .iter()
            .filter(|m| !present.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect(),
        unknown: present
            .iter()
            .copied()
            .filter(|v| !migrations.iter().any(|m| m.version == *v))
            .collect(),
    })
}

/// Fails, naming what fixes it, unless every migration this build knows is applied and none
/// it does not know is: a schema changed by a newer build may no longer mean what this build
/// expects, so an older process refuses it rather than read or write it wrongly.
pub fn check(client: &mut Client, component: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    let status = status(client, component, migrations)?;
    anyhow::ensure!(
        status.unknown.is_empty(),
        "the database's {component} schema has migration(s) {:?}, newer than this build knows (up to {}): a newer nelumbo-markets migrated it; run that version here too",
        status.unknown,
        status.latest
    );
    anyhow::ensure!(
        status.pending.is_empty(),
        "the database's {component} schema is at version {} but this build needs {}: run `nelumbo-markets db migrate`",
        status.applied,
        status.latest
    );
    Ok(())
}
