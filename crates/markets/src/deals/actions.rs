//! What the operator does to deals: retry, cancel, import an offline deal's data.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nelumbo_markets_api::admin::{DealInfo, DealState};

use super::{DealRecord, Deals};

impl Deals {
    pub async fn retry(&self, uuid: &str) -> anyhow::Result<DealInfo> {
        let mut record = self
            .0
            .store
            .deal(uuid)
            .await?
            .context(format!("no deal {uuid}"))?;
        anyhow::ensure!(
            record.state == DealState::Failed,
            "deal {uuid} is {}, not Failed: only failed deals can be retried",
            record.state
        );
        let step = record.failed_step.unwrap_or(DealState::Accepted);
        // The staged data is gone once a failed deal's grace period passed: it is fetched again.
        let staged_gone = !self.staged_path(uuid).exists()
            && matches!(step, DealState::Uploading | DealState::Publishing);
        // A failed transfer starts over: the data may have been the problem.
        let step = match step {
            DealState::Verifying | DealState::Transferring => {
                let _ = std::fs::remove_file(self.staged_path(uuid));
                record.bytes_received = 0;
                if record.is_offline {
                    DealState::Accepted
                } else {
                    DealState::Transferring
                }
            }
            _ if staged_gone => {
                record.bytes_received = 0;
                if record.is_offline {
                    DealState::Accepted
                } else {
                    DealState::Transferring
                }
            }
            s => s,
        };
        record.transfer_attempts = 0;
        record.error.clear();
        record.failed_step = None;
        self.advance(&mut record, step, "retried by the operator")
            .await?;
        self.spawn(uuid);
        Ok(record.info())
    }

    pub async fn cancel(&self, uuid: &str) -> anyhow::Result<DealInfo> {
        let record = self
            .0
            .store
            .deal(uuid)
            .await?
            .context(format!("no deal {uuid}"))?;
        anyhow::ensure!(
            cancellable(&record),
            "deal {uuid} is {}: only deals not yet sent for publishing can be cancelled",
            record.state
        );
        // Stop the deal's task and wait for it to end, so it cannot write after us.
        self.stop_task(uuid);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.is_running(uuid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut record = self
            .0
            .store
            .deal(uuid)
            .await?
            .context(format!("no deal {uuid}"))?;
        if !cancellable(&record) {
            // It moved on to the hub meanwhile: let it go on.
            if !record.state.is_final() {
                self.spawn(uuid);
            }
            anyhow::bail!(
                "deal {uuid} reached {} while being cancelled and can no longer be cancelled",
                record.state
            );
        }
        record.failed_step = Some(record.state);
        record.error = "cancelled by the provider's operator".into();
        self.advance(
            &mut record,
            DealState::Cancelled,
            "cancelled by the operator",
        )
        .await?;
        let _ = std::fs::remove_file(self.staged_path(uuid));
        Ok(record.info())
    }

    /// Copies an offline deal's data into staging and starts its checks.
    pub async fn import_data(&self, uuid: &str, file: &Path) -> anyhow::Result<DealInfo> {
        let record = self
            .0
            .store
            .deal(uuid)
            .await?
            .context(format!("no deal {uuid}"))?;
        anyhow::ensure!(
            record.is_offline,
            "deal {uuid} is an online deal: its data comes from the client's URL"
        );
        anyhow::ensure!(
            record.state == DealState::Accepted,
            "deal {uuid} is {}, not waiting for data",
            record.state
        );
        let length = tokio::fs::metadata(file)
            .await
            .with_context(|| format!("read {}", file.display()))?
            .len();
        let capacity = record.piece_size / 128 * 127;
        anyhow::ensure!(
            length <= capacity,
            "{} is {length} bytes, more than a piece of {} bytes holds ({capacity})",
            file.display(),
            record.piece_size
        );
        let path = self.staged_path(uuid);
        let temp = self
            .0
            .staging
            .join(format!("{uuid}.{}.import", uuid::Uuid::new_v4()));
        tokio::fs::copy(file, &temp)
            .await
            .with_context(|| format!("copy {} into staging", file.display()))?;
        tokio::fs::File::open(&temp).await?.sync_all().await?;
        // The copy took a while: the deal may have been cancelled or imported meanwhile.
        let mut record = self
            .0
            .store
            .deal(uuid)
            .await?
            .context(format!("no deal {uuid}"))?;
        if record.state != DealState::Accepted {
            let _ = tokio::fs::remove_file(&temp).await;
            anyhow::bail!(
                "deal {uuid} became {} during the import; nothing was changed",
                record.state
            );
        }
        tokio::fs::rename(&temp, &path).await?;
        record.bytes_received = length;
        record.transfer_size = length;
        self.advance(
            &mut record,
            DealState::Verifying,
            &format!("imported {length} bytes from {}", file.display()),
        )
        .await?;
        self.spawn(uuid);
        Ok(record.info())
    }
}

/// A deal can be cancelled until it is sent to the hub for publishing: once sent, the hub may
/// publish it whatever the markets process does. (An uploaded piece no deal claims is deleted
/// by the hub after a while.)
fn cancellable(record: &DealRecord) -> bool {
    let not_sent = |s: DealState| {
        matches!(
            s,
            DealState::Accepted
                | DealState::Transferring
                | DealState::Verifying
                | DealState::Uploading
        )
    };
    not_sent(record.state)
        || (record.state == DealState::Failed && record.failed_step.is_some_and(not_sent))
}
