//! What a daemon's background workers are doing: the rows of `workers list` and of the hub's
//! status view. Each long-lived task (a sector's sealing, the publish batcher, an unseal job,
//! the WindowPoSt scheduler, a deal, an announcer) reports one [`WorkerStatus`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A worker's state, in the words an operator checks at 3 a.m.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum WorkerState {
    /// Doing work now (`detail` says what).
    Busy,
    /// Nothing to do until something happens (`detail` says what it waits for).
    Idle,
    /// Ready to work but held back by a limit: a permit of a semaphore (`detail` names it).
    Waiting,
    /// Its last attempt failed; it tries again at `retry_at`.
    Retrying,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Idle => "idle",
            Self::Waiting => "waiting",
            Self::Retrying => "retrying",
        }
    }
}

/// One worker's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerStatus {
    /// Unique within the process's lifetime.
    pub id: u64,
    /// What kind of worker: `sealing`, `publish`, `unseal`, `window-post`, `deal`, ...
    pub kind: String,
    /// Which one, with the id an operator searches logs by (`sector 12`, a deal UUID).
    pub name: String,
    pub state: WorkerState,
    /// What it is doing, or what it waits for.
    pub detail: String,
    /// Unix seconds: when it entered `state` with this `detail` (for a retrying worker: when
    /// its run of failures began).
    pub since: u64,
    /// Unix seconds: when a retrying worker tries again.
    #[serde(default)]
    pub retry_at: Option<u64>,
    /// Failed attempts since the worker started.
    pub errors: u64,
    /// Failed attempts since its last success.
    pub consecutive_errors: u32,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The `workers list` table; `now` is Unix seconds.
pub fn workers_table(workers: &[WorkerStatus], now: u64) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:>4}  {:<12}  {:<40}  {:<8}  {:>6}  {:>6}  DETAIL\n",
        "ID", "KIND", "NAME", "STATE", "FOR", "ERRORS"
    );
    for w in workers {
        let errors = if w.consecutive_errors > 0 {
            format!("{}/{}", w.consecutive_errors, w.errors)
        } else {
            w.errors.to_string()
        };
        let mut detail = w.detail.clone();
        if let Some(at) = w.retry_at {
            let _ = write!(detail, "; next try in {}", seconds(at.saturating_sub(now)));
        }
        if let Some(e) = &w.last_error {
            let _ = write!(detail, "; last error: {e}");
        }
        let _ = writeln!(
            out,
            "{:>4}  {:<12}  {:<40}  {:<8}  {:>6}  {:>6}  {detail}",
            w.id,
            w.kind,
            w.name,
            w.state.name(),
            seconds(now.saturating_sub(w.since)),
            errors,
        );
    }
    out
}

/// `75` → `1m15s`.
fn seconds(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(state: WorkerState) -> WorkerStatus {
        WorkerStatus {
            id: 7,
            kind: "sealing".into(),
            name: "sector 3".into(),
            state,
            detail: "PreCommit1".into(),
            since: 1_000,
            retry_at: None,
            errors: 0,
            consecutive_errors: 0,
            last_error: None,
        }
    }

    #[test]
    fn the_table_says_when_a_retrying_worker_tries_again_and_why() {
        let mut w = worker(WorkerState::Retrying);
        w.retry_at = Some(1_100);
        w.errors = 5;
        w.consecutive_errors = 2;
        w.last_error = Some("disk full".into());
        let table = workers_table(&[w], 1_075);
        let row = table.lines().nth(1).expect("a row");
        assert!(row.contains("retrying"), "{row}");
        assert!(row.contains("1m15s"), "time in state: {row}");
        assert!(row.contains("2/5"), "consecutive/total errors: {row}");
        assert!(
            row.ends_with("PreCommit1; next try in 25s; last error: disk full"),
            "{row}"
        );
    }

    #[test]
    fn durations_read_as_an_operator_writes_them() {
        assert_eq!(seconds(0), "0s");
        assert_eq!(seconds(59), "59s");
        assert_eq!(seconds(60), "1m00s");
        assert_eq!(seconds(3_599), "59m59s");
        assert_eq!(seconds(7_260), "2h01m");
    }

    #[test]
    fn the_json_names_are_stable() {
        let json = serde_json::to_string(&worker(WorkerState::Waiting)).expect("json");
        assert!(json.contains("\"State\":\"Waiting\""), "{json}");
        assert!(json.contains("\"RetryAt\":null"), "{json}");
    }
}
