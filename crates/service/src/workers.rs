//! The registry behind `workers list`: each background task holds a [`Worker`] and says what
//! it is doing as it goes; the registry answers with every live worker's [`WorkerStatus`]. A
//! worker leaves the list when its handle is dropped (its task ended).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nelumbo_types::workers::{WorkerState, WorkerStatus};
use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

/// Every live worker of a process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Workers {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    workers: BTreeMap<u64, WorkerStatus>,
}

impl Workers {
    /// Registers a worker, idle until it says otherwise.
    pub fn start(&self, kind: &str, name: impl Into<String>) -> Worker {
        let mut registry = self.lock();
        registry.next_id += 1;
        let id = registry.next_id;
        registry.workers.insert(
            id,
            WorkerStatus {
                id,
                kind: kind.to_string(),
                name: name.into(),
                state: WorkerState::Idle,
                detail: "starting".into(),
                since: unix_now(),
                retry_at: None,
                errors: 0,
                consecutive_errors: 0,
                last_error: None,
            },
        );
        Worker {
            id,
            workers: self.clone(),
        }
    }

    /// Every live worker, in the order they started.
    pub fn list(&self) -> Vec<WorkerStatus> {
        self.lock().workers.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One task's entry in [`Workers`]; removed when dropped.
#[derive(Debug)]
pub struct Worker {
    id: u64,
    workers: Workers,
}

impl Worker {
    /// Working now on `detail`.
    pub fn busy(&self, detail: impl Into<String>) {
        self.set(WorkerState::Busy, detail.into());
    }

    /// Nothing to do until `detail` happens.
    pub fn idle(&self, detail: impl Into<String>) {
        self.set(WorkerState::Idle, detail.into());
    }

    /// Held back by a limit that `detail` names.
    pub fn waiting(&self, detail: impl Into<String>) {
        self.set(WorkerState::Waiting, detail.into());
    }

    /// The last attempt succeeded: the run of failures is over (the total stays).
    pub fn succeeded(&self) {
        self.update(|w| {
            w.consecutive_errors = 0;
            w.retry_at = None;
        });
    }

    /// An attempt failed with `error`; the next one is in `delay`, doing `detail`.
    pub fn retrying(&self, error: &str, delay: Duration, detail: impl Into<String>) {
        let detail = detail.into();
        let now = unix_now();
        self.update(|w| {
            w.errors += 1;
            w.consecutive_errors = w.consecutive_errors.saturating_add(1);
            w.last_error = Some(error.to_string());
            if w.state != WorkerState::Retrying {
                w.since = now;
            }
            w.state = WorkerState::Retrying;
            w.detail = detail;
            w.retry_at = Some(now + delay.as_secs_f64().ceil() as u64);
        });
    }

    /// Takes a permit of `semaphore`, showing the worker as waiting for `what` while none is
    /// free and as busy with `then` once it has one.
    pub async fn permit<'a>(
        &self,
        semaphore: &'a Semaphore,
        what: &str,
        then: &str,
    ) -> Result<SemaphorePermit<'a>, AcquireError> {
        let permit = match semaphore.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.waiting(what);
                semaphore.acquire().await?
            }
        };
        self.busy(then);
        Ok(permit)
    }

    fn set(&self, state: WorkerState, detail: String) {
        let now = unix_now();
        self.update(|w| {
            if w.state != state || w.detail != detail {
                w.since = now;
            }
            w.state = state;
            w.detail = detail;
            w.retry_at = None;
        });
    }

    fn update(&self, f: impl FnOnce(&mut WorkerStatus)) {
        if let Some(w) = self.workers.lock().workers.get_mut(&self.id) {
            f(w);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.workers.lock().workers.remove(&self.id);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_shows_waiting_for_a_permit_until_it_has_one() {
        let workers = Workers::default();
        let semaphore = Arc::new(Semaphore::new(1));
        let held = semaphore
            .clone()
            .try_acquire_owned()
            .expect("a free permit");
        let worker = workers.start("sealing", "sector 1");
        let sem = semaphore.clone();
        let task = tokio::spawn(async move {
            let _p = worker
                .permit(&sem, "a pre_commit_1 permit", "PreCommit1")
                .await
                .expect("the permit");
            let state = worker.workers.list()[0].state;
            (state, worker)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listed = workers.list();
        assert_eq!(listed[0].state, WorkerState::Waiting);
        assert_eq!(listed[0].detail, "a pre_commit_1 permit");
        drop(held);
        let (state, worker) = task.await.expect("the task");
        assert_eq!(state, WorkerState::Busy);
        drop(worker);
        assert!(
            workers.list().is_empty(),
            "a dropped worker leaves the list"
        );
    }

    #[test]
    fn failures_count_in_a_run_and_in_total() {
        let workers = Workers::default();
        let worker = workers.start("publish", "batcher");
        worker.retrying("chain away", Duration::from_secs(10), "publishing");
        worker.retrying("chain away", Duration::from_secs(20), "publishing");
        let w = &workers.list()[0];
        assert_eq!((w.errors, w.consecutive_errors), (2, 2));
        assert_eq!(w.state, WorkerState::Retrying);
        assert!(w.retry_at.expect("a retry time") >= unix_now() + 19);
        worker.succeeded();
        worker.busy("publishing 3 deals");
        let w = &workers.list()[0];
        assert_eq!((w.errors, w.consecutive_errors), (2, 0));
        assert_eq!(w.retry_at, None);
        assert_eq!(w.last_error.as_deref(), Some("chain away"));
    }
}
