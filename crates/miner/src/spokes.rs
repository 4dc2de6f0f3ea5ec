//! The spokes registry: each spoke sends `Nelumbo.SpokeHeartbeat` every
//! [`HEARTBEAT_SECS`]; `SpokesList` shows which are alive. The registry is in memory: after a
//! hub restart, spokes reappear with their next heartbeat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use nelumbo_miner_api::types::{SpokeHello, SpokeStatus};

/// How often spokes should call in.
pub const HEARTBEAT_SECS: u64 = 10;
/// A spoke silent this long is listed offline.
const OFFLINE_AFTER_SECS: u64 = 3 * HEARTBEAT_SECS;

#[derive(Debug, Clone, Default)]
pub struct Spokes {
    known: Arc<Mutex<BTreeMap<String, SpokeStatus>>>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Spokes {
    pub fn heartbeat(&self, hello: SpokeHello) -> Result<(), String> {
        if hello.id.trim().is_empty() || hello.id.len() > 256 {
            return Err("a spoke id must be 1 to 256 characters".into());
        }
        let now = now();
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first_seen = match known.get(&hello.id) {
            Some(status) => status.first_seen,
            None => {
                tracing::info!(spoke = %hello.id, services = ?hello.services, addrs = ?hello.public_addrs, "spoke registered");
                now
            }
        };
        known.insert(
            hello.id.clone(),
            SpokeStatus {
                hello,
                first_seen,
                last_seen: now,
                online: true,
            },
        );
        Ok(())
    }

    pub fn list(&self) -> Vec<SpokeStatus> {
        let now = now();
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .map(|mut s| {
                s.online = now.saturating_sub(s.last_seen) <= OFFLINE_AFTER_SECS;
                s
            })
            .collect()
    }
}
