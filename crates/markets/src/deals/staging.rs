//! Staging is bounded, and strangers cannot fill it (public inputs).
//!
//! Every deal holds staging from acceptance: its whole transfer size while it may still write
//! (offline deals included, since an import will), then only what is on disk once it failed,
//! and nothing once its data is gone (active, cancelled, or failed and cleaned up). A proposal
//! is refused when the holdings would pass `[deals] staging_max_bytes` (the high-water mark) or
//! leave less than `staging_reserve_bytes` of the disk free. The janitor removes the staged
//! data of failed deals `failed_staging_grace_secs` after they failed (`deals retry` fetches it
//! again), and fails offline deals that received no data within `offline_import_timeout_secs`.
//!
//! The holdings live in memory, rebuilt from the database at start and updated with every
//! change of a deal's record, so a proposal never scans the database.

use std::collections::HashMap;
use std::time::Duration;

use nelumbo_markets_api::admin::DealState;
use tokio_util::sync::CancellationToken;

use super::{DealRecord, Deals};

/// What one deal holds, as of its last saved record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub state: DealState,
    /// Bytes of staging it holds or may still write.
    pub bytes: u64,
    /// Of those, bytes a running transfer has yet to write.
    pub pending: u64,
}

impl Holding {
    pub fn of(record: &DealRecord) -> Self {
        let bytes = match record.state {
            DealState::Active | DealState::Cancelled => 0,
            DealState::Failed if record.staging_released => 0,
            // At failure the unused part of the reservation is released at once.
            DealState::Failed => record.bytes_received,
            _ => record.transfer_size,
        };
        let pending = match record.state {
            DealState::Accepted | DealState::Transferring => {
                record.transfer_size.saturating_sub(record.bytes_received)
            }
            _ => 0,
        };
        Self {
            state: record.state,
            bytes,
            pending,
        }
    }
}

/// Every deal's holding, by UUID.
pub type Holdings = HashMap<String, Holding>;

/// Why a proposal does not fit in staging, as told to the client.
pub fn admit(
    holdings: &Holdings,
    size: u64,
    max_bytes: u64,
    disk_free: u64,
    reserve: u64,
) -> Result<(), String> {
    let held: u64 = holdings.values().map(|h| h.bytes).sum();
    if held.saturating_add(size) > max_bytes {
        return Err(format!(
            "provider is busy: its staging area is full ({held} of {max_bytes} bytes held by deals in progress); try again later"
        ));
    }
    let pending: u64 = holdings.values().map(|h| h.pending).sum();
    let free = disk_free.saturating_sub(pending);
    if size.saturating_add(reserve) > free {
        return Err(format!(
            "provider has no space left for storage deals: {free} bytes free in staging, {size} needed plus a reserve of {reserve}"
        ));
    }
    Ok(())
}

impl Deals {
    /// Records what `record` holds now.
    pub fn track(&self, record: &DealRecord) {
        let mut holdings = self.holdings();
        holdings.insert(record.uuid.clone(), Holding::of(record));
        self.count_states(&holdings);
    }

    pub(super) fn holdings(&self) -> std::sync::MutexGuard<'_, Holdings> {
        self.0
            .holdings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many deals are in each state (states with none left out).
    pub fn state_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for holding in self.holdings().values() {
            *counts.entry(holding.state.name().to_string()).or_default() += 1;
        }
        counts
    }

    pub(super) fn count_states(&self, holdings: &Holdings) {
        for state in DealState::ALL {
            let n = holdings.values().filter(|h| h.state == state).count();
            self.0
                .metrics
                .deals
                .with_label_values(&[state.name()])
                .set(n as i64);
        }
        let held: u64 = holdings.values().map(|h| h.bytes).sum();
        self.0
            .metrics
            .staging_held_bytes
            .set(held.min(i64::MAX as u64) as i64);
    }

    /// Free bytes of the staging disk.
    pub fn disk_free(&self) -> u64 {
        rustix::fs::statvfs(&self.0.staging)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0)
    }

    /// Checks that a new deal of `size` fits in staging and, if so, holds it for `uuid` at
    /// once (two proposals checked together cannot both take the last room). The holding is
    /// dropped again by [`Self::forget_holding`] if the deal is not stored after all.
    pub fn hold_staging(&self, uuid: &str, size: u64) -> Result<(), String> {
        let disk_free = self.disk_free();
        let config = &self.0.config;
        let mut holdings = self.holdings();
        admit(
            &holdings,
            size,
            config.staging_max_bytes,
            disk_free,
            config.staging_reserve_bytes,
        )?;
        holdings.insert(
            uuid.to_string(),
            Holding {
                state: DealState::Accepted,
                bytes: size,
                pending: size,
            },
        );
        Ok(())
    }

    pub fn forget_holding(&self, uuid: &str) {
        self.holdings().remove(uuid);
    }

    /// Runs the janitor until `cancel`: see the module documentation.
    pub async fn run_janitor(self, cancel: CancellationToken) {
        let config = &self.0.config;
        let every = Duration::from_secs(
            (config
                .failed_staging_grace_secs
                .min(config.offline_import_timeout_secs)
                / 4)
            .clamp(1, 60),
        );
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot sweep staging");
            }
        }
    }

    async fn sweep(&self) -> anyhow::Result<()> {
        let now = crate::now_secs();
        let config = &self.0.config;
        for mut record in self.0.store.deals().await? {
            let idle = now.saturating_sub(record.updated_at);
            if record.state == DealState::Failed
                && !record.staging_released
                && idle >= config.failed_staging_grace_secs
            {
                let path = self.staged_path(&record.uuid);
                if let Err(e) = tokio::fs::remove_file(&path).await
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a failed deal's staged data");
                    continue;
                }
                record.staging_released = true;
                self.save(
                    &mut record,
                    Some(&format!(
                        "staged data removed {idle} s after the deal failed (`deals retry` fetches it again)"
                    )),
                )
                .await?;
            } else if record.state == DealState::Accepted
                && record.is_offline
                && now.saturating_sub(record.created_at) >= config.offline_import_timeout_secs
                && !self.is_running_import(&record.uuid)
            {
                self.fail(
                    &mut record,
                    format!(
                        "no data was imported within {} s of the proposal ([deals] offline_import_timeout_secs)",
                        config.offline_import_timeout_secs
                    ),
                )
                .await?;
            }
        }
        Ok(())
    }

    fn is_running_import(&self, uuid: &str) -> bool {
        self.0
            .importing
            .lock()
            .map(|i| i.contains(uuid))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(state: DealState, bytes: u64, pending: u64) -> Holding {
        Holding {
            state,
            bytes,
            pending,
        }
    }

    #[test]
    fn proposals_are_refused_past_the_high_water_mark_or_the_reserve() {
        let mut holdings = Holdings::new();
        holdings.insert("a".into(), holding(DealState::Transferring, 600, 400));
        holdings.insert("b".into(), holding(DealState::Failed, 100, 0));
        holdings.insert("c".into(), holding(DealState::Active, 0, 0));
        // 700 held: 300 more fit under 1000, 301 do not.
        assert!(admit(&holdings, 300, 1000, 1_000_000, 0).is_ok());
        let error = admit(&holdings, 301, 1000, 1_000_000, 0).expect_err("past the mark");
        assert!(error.contains("staging area is full"), "{error}");
        // The disk: 1000 free, 400 still to be written, 100 reserve: 500 fit, 501 do not.
        assert!(admit(&holdings, 500, u64::MAX, 1000, 100).is_ok());
        let error = admit(&holdings, 501, u64::MAX, 1000, 100).expect_err("no room");
        assert!(error.contains("no space left"), "{error}");
    }
}
