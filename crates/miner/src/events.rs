//! The hub's event channel: sealing, proving and mining publish, `Nelumbo.SubscribeEvents`
//! subscribers receive. Events are not stored; a subscriber that falls more than
//! [`CAPACITY`] events behind is closed (as Lotus closes a lagging `ChainNotify`) and reads
//! the current state before subscribing again.

use futures::StreamExt;
use futures::stream::BoxStream;
use nelumbo_miner_api::types::HubEvent;
use tokio::sync::broadcast;

pub const CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<HubEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    /// Publishes `event` to the current subscribers (none is fine).
    pub fn emit(&self, event: HubEvent) {
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> BoxStream<'static, HubEvent> {
        futures::stream::unfold(self.sender.subscribe(), |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((event, receiver)),
                Err(_) => None,
            }
        })
        .boxed()
    }
}
