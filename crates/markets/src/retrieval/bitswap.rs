//! The bitswap server (`/ipfs/bitswap/1.2.0`, `1.1.0`, `1.0.0`) on the markets libp2p host.
//!
//! Wants arrive on streams the peer opens; each peer has a ledger of what it wants (bounded), and
//! one worker per peer answers it, reading a few blocks ahead, in messages near a target size
//! written on a stream this side opens and keeps while there is more to say.
//! Blocks come from the piece directory and the shared piece reader, checked against their CIDs.
//! Nothing here waits for the hub: a block whose piece must be unsealed, or whose hub is away,
//! is answered DONT_HAVE at once (when the peer asked for that), its unseal queued within the
//! reader's bounds, so a later want succeeds. A peer that stops reading times out alone.
//!
//! Bounds: wants per peer, peers served at once, block reads at once across peers (taken in
//! turn, so peers share them fairly), answer bytes waiting to be sent per peer, inbound streams
//! per peer, message sizes both ways, and a time limit on opening, writing and closing every
//! answer stream.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use nelumbo_markets_api::bitswap::{self, Block, BlockPresence, Message, PresenceType, WantType};
use nelumbo_markets_api::inbound::Inbound;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::blocks::BlockSource;
use super::wants::{Want, Wants};

/// A want-have for a block this small is answered with the block (as boxo does).
const SEND_BLOCK_FOR_HAVE_BYTES: usize = 1024;
/// Inbound streams one peer may hold open at once (clients use one, or one per batch).
const MAX_STREAMS_PER_PEER: usize = 8;
/// An inbound stream with no message for this long is closed.
const STREAM_IDLE: Duration = Duration::from_secs(120);
/// Opening an answer stream, and closing it, each get this long.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing an answer gets this long plus a second per 100 KiB (a peer that stops reading is
/// dropped, and only its own worker waited).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading one block for a want (the piece reader never waits for an unseal here).
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Blocks one peer's worker reads at once, while earlier answers are being sent (the reads
/// still take turns on the server-wide `max_reads` slots).
const READ_AHEAD: usize = 4;

/// The server's limits (`[retrieval]` bitswap_*).
#[derive(Debug, Clone, Copy)]
pub struct BitswapLimits {
    pub max_peers: usize,
    pub max_wants_per_peer: usize,
    pub message_bytes: usize,
    pub max_reads: usize,
    /// Answer bytes one peer may have waiting to be sent.
    pub peer_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct BitswapMetrics {
    /// Want entries received, by type (block, have, cancel).
    pub wants: IntCounterVec,
    pub blocks_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub haves_sent: IntCounter,
    pub dont_haves_sent: IntCounter,
    /// Peers whose wants are being answered now.
    pub peers_served: IntGauge,
    /// Wants waiting in every ledger.
    pub queued_wants: IntGauge,
    /// Inputs refused, by reason (too large, malformed, too many wants or streams, ...).
    pub refused: IntCounterVec,
}

impl BitswapMetrics {
    pub fn new(registry: &Registry) -> anyhow::Result<Self> {
        let m = Self {
            wants: IntCounterVec::new(
                Opts::new(
                    "nelumbo_bitswap_wants_received_total",
                    "Bitswap want entries received, by type",
                ),
                &["type"],
            )?,
            blocks_sent: IntCounter::new("nelumbo_bitswap_blocks_sent_total", "Blocks sent")?,
            bytes_sent: IntCounter::new(
                "nelumbo_bitswap_block_bytes_sent_total",
                "Block bytes sent",
            )?,
            haves_sent: IntCounter::new("nelumbo_bitswap_haves_sent_total", "HAVE answers sent")?,
            dont_haves_sent: IntCounter::new(
                "nelumbo_bitswap_dont_haves_sent_total",
                "DONT_HAVE answers sent",
            )?,
            peers_served: IntGauge::new(
                "nelumbo_bitswap_peers_served",
                "Peers whose wants are being answered now",
            )?,
            queued_wants: IntGauge::new(
                "nelumbo_bitswap_queued_wants",
                "Wants waiting to be answered, all peers together",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "nelumbo_bitswap_refused_total",
                    "Bitswap inputs refused or cut off, by reason",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.wants.clone()))?;
        registry.register(Box::new(m.blocks_sent.clone()))?;
        registry.register(Box::new(m.bytes_sent.clone()))?;
        registry.register(Box::new(m.haves_sent.clone()))?;
        registry.register(Box::new(m.dont_haves_sent.clone()))?;
        registry.register(Box::new(m.peers_served.clone()))?;
        registry.register(Box::new(m.queued_wants.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        Ok(m)
    }
}

/// What one peer wants, and how it speaks.
#[derive(Debug)]
struct Ledger {
    wants: Wants,
    protocol: StreamProtocol,
    /// A worker answers this peer (from its first want until its last answer is written).
    worker: bool,
    /// Wakes a worker waiting for its answers to be written when new wants arrive.
    wanted: Arc<tokio::sync::Notify>,
    streams: usize,
}

impl Ledger {
    fn new(protocol: StreamProtocol) -> Self {
        Self {
            wants: Wants::default(),
            protocol,
            worker: false,
            wanted: Arc::new(tokio::sync::Notify::new()),
            streams: 0,
        }
    }
}

#[derive(Debug)]
pub struct BitswapServer {
    blocks: BlockSource,
    /// The retrieval denylist (CIDs as strings): answered DONT_HAVE.
    deny: HashSet<String>,
    limits: BitswapLimits,
    metrics: BitswapMetrics,
    ledgers: Mutex<HashMap<PeerId, Ledger>>,
    serving: Arc<Semaphore>,
    reads: Arc<Semaphore>,
}

impl BitswapServer {
    pub fn new(
        blocks: BlockSource,
        deny: HashSet<String>,
        limits: BitswapLimits,
        metrics: BitswapMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            blocks,
            deny,
            limits,
            metrics,
            ledgers: Mutex::default(),
            serving: Arc::new(Semaphore::new(limits.max_peers.max(1))),
            reads: Arc::new(Semaphore::new(limits.max_reads.max(1))),
        })
    }

    fn ledgers(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Ledger>> {
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the bitswap streams peers open (every version), until `cancel`. `dropped` counts
    /// the streams the libp2p side dropped because its queue was full.
    pub async fn run(
        self: Arc<Self>,
        mut inbound: futures::channel::mpsc::Receiver<Inbound>,
        dropped: Arc<AtomicU64>,
        control: libp2p_stream::Control,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut reported = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                next = inbound.next() => {
                    let Some(Inbound { peer, protocol, stream }) = next else { return Ok(()) };
                    let now = dropped.load(Ordering::Relaxed);
                    if now > reported {
                        self.metrics.refused.with_label_values(&["queue_full"]).inc_by(now - reported);
                        tracing::warn!(dropped = now - reported, "bitswap: streams were dropped because too many arrived at once");
                        reported = now;
                    }
                    self.clone().inbound(peer, protocol, stream, control.clone());
                }
            }
        }
    }

    /// Reads a peer's wants from one stream it opened.
    fn inbound(
        self: Arc<Self>,
        peer: PeerId,
        protocol: StreamProtocol,
        mut stream: libp2p::Stream,
        control: libp2p_stream::Control,
    ) {
        {
            let mut ledgers = self.ledgers();
            let ledger = ledgers
                .entry(peer)
                .or_insert_with(|| Ledger::new(protocol.clone()));
            if ledger.streams >= MAX_STREAMS_PER_PEER {
                self.metrics.refused.with_label_values(&["streams"]).inc();
                tracing::debug!(%peer, "bitswap: too many streams from one peer; dropping one");
                return;
            }
            ledger.streams += 1;
            ledger.protocol = protocol.clone();
        }
        tokio::spawn(async move {
            loop {
                let read = tokio::time::timeout(
                    STREAM_IDLE,
                    bitswap::read_message(&mut stream, bitswap::MAX_MESSAGE_BYTES),
                )
                .await;
                match read {
                    Ok(Ok(Some(message))) => {
                        self.receive(peer, &protocol, message, &control);
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        let reason = match e {
                            bitswap::WireError::TooLarge(_) => "too_large",
                            bitswap::WireError::Decode(_) | bitswap::WireError::BadLength => {
                                "malformed"
                            }
                            _ => "stream_error",
                        };
                        self.metrics.refused.with_label_values(&[reason]).inc();
                        tracing::debug!(%peer, error = %e, "bitswap: a peer's stream is closed");
                        break;
                    }
                    Err(_) => {
                        self.metrics.refused.with_label_values(&["idle"]).inc();
                        break;
                    }
                }
            }
            close(stream).await;
            let mut ledgers = self.ledgers();
            if let Some(ledger) = ledgers.get_mut(&peer) {
                ledger.streams = ledger.streams.saturating_sub(1);
                if ledger.streams == 0 && !ledger.worker && ledger.wants.is_empty() {
                    ledgers.remove(&peer);
                }
            }
        });
    }

    /// Applies a message's wantlist to the peer's ledger and makes sure a worker answers it.
    fn receive(
        self: &Arc<Self>,
        peer: PeerId,
        protocol: &StreamProtocol,
        message: Message,
        control: &libp2p_stream::Control,
    ) {
        let Some(wantlist) = message.wantlist else {
            return;
        };
        let mut ledgers = self.ledgers();
        let ledger = ledgers
            .entry(peer)
            .or_insert_with(|| Ledger::new(protocol.clone()));
        let before = ledger.wants.len() as i64;
        let presences = *protocol == bitswap::PROTOCOL_1_2_0;
        let applied = ledger
            .wants
            .apply(wantlist, presences, self.limits.max_wants_per_peer);
        for (kind, count) in [
            ("cancel", applied.cancels),
            ("block", applied.blocks),
            ("have", applied.haves),
        ] {
            if count > 0 {
                self.metrics.wants.with_label_values(&[kind]).inc_by(count);
            }
        }
        let dropped = applied.dropped();
        if dropped > 0 {
            self.metrics
                .refused
                .with_label_values(&["wants"])
                .inc_by(dropped);
            tracing::debug!(%peer, dropped, limit = self.limits.max_wants_per_peer, "bitswap: want entries dropped (invalid, or over the per-peer limit)");
        }
        self.metrics
            .queued_wants
            .add(ledger.wants.len() as i64 - before);
        if ledger.worker {
            ledger.wanted.notify_one();
        } else if !ledger.wants.is_empty() {
            ledger.worker = true;
            let server = self.clone();
            let control = control.clone();
            let span = tracing::info_span!("bitswap", peer = %peer);
            tokio::spawn(tracing::Instrument::instrument(
                async move { server.work(peer, control).await },
                span,
            ));
        }
    }

    /// Answers a peer's wants until its ledger is empty: up to [`READ_AHEAD`] blocks are read
    /// at once, gathered into messages near the target size in the order they were wanted,
    /// and handed to [`Self::send_all`], which writes them while the next are read. At most
    /// `peer_bytes` of answers wait to be sent; a peer that reads slowly holds no more.
    async fn work(self: Arc<Self>, peer: PeerId, control: libp2p_stream::Control) {
        let Ok(_slot) = self.serving.clone().acquire_owned().await else {
            return;
        };
        self.metrics.peers_served.inc();
        let (queue, outbox) = tokio::sync::mpsc::channel(64);
        let sender = tokio::spawn(self.clone().send_all(peer, control, outbox));
        let budget = Arc::new(Semaphore::new(self.limits.peer_bytes));
        let mut reading = futures::stream::FuturesOrdered::new();
        let mut outgoing = Outgoing::default();
        loop {
            while reading.len() < READ_AHEAD {
                let Some((cid, want, protocol)) = self.next_want(&peer) else {
                    break;
                };
                // Each read runs as a task of its own, so checking blocks against their CIDs
                // (SHA-256, the bulk of the work) uses every core; dropped reads are stopped.
                let server = self.clone();
                let read =
                    AbortOnDropHandle::new(tokio::spawn(
                        async move { server.answer(&cid, want).await },
                    ));
                reading.push_back(async move {
                    let answer = read.await.unwrap_or(Answer::DontHave);
                    (cid, want, protocol, answer)
                });
            }
            let Some((cid, want, protocol, answer)) = reading.next().await else {
                // Nothing left: send what is gathered, then stop once it is written, unless
                // wants came meanwhile. Until then this stays the peer's only worker, so the
                // peer has one answer stream and one byte budget however its wants arrive.
                if !outgoing.is_empty() && !self.hand_over(&queue, &budget, &mut outgoing).await {
                    self.forget(&peer);
                    break;
                }
                if self.wanted_before_written(&peer, &budget).await {
                    continue;
                }
                break;
            };
            if outgoing.protocol.as_ref().is_some_and(|p| *p != protocol)
                || (matches!(answer, Answer::Block(ref data) if !outgoing.is_empty()
                    && outgoing.size + data.len() + 64 > self.limits.message_bytes))
            {
                // A block that would take the message past its target goes in the next one,
                // so no message is much over the target (peers read at most 4 MiB).
                if !self.hand_over(&queue, &budget, &mut outgoing).await {
                    self.forget(&peer);
                    break;
                }
            }
            outgoing.add(&cid, want, &protocol, answer);
            if outgoing.size >= self.limits.message_bytes
                && !self.hand_over(&queue, &budget, &mut outgoing).await
            {
                self.forget(&peer);
                break;
            }
        }
        drop(queue);
        // The slot is held until the answers are written (or the peer is given up).
        let _ = sender.await;
        self.metrics.peers_served.dec();
    }

    /// Waits until every answer handed over is written (or given up) and then, if no want
    /// came meanwhile, ends this worker: `false`. `true` as soon as new wants are there.
    async fn wanted_before_written(&self, peer: &PeerId, budget: &Semaphore) -> bool {
        loop {
            let wanted = {
                let mut ledgers = self.ledgers();
                let Some(ledger) = ledgers.get_mut(peer) else {
                    return false;
                };
                if !ledger.wants.is_empty() {
                    return true;
                }
                // Only this worker takes from the budget, so a full one stays full.
                if budget.available_permits() >= self.limits.peer_bytes {
                    ledger.worker = false;
                    if ledger.streams == 0 {
                        ledgers.remove(peer);
                    }
                    return false;
                }
                ledger.wanted.clone()
            };
            tokio::select! {
                _ = budget.acquire_many(self.limits.peer_bytes as u32) => {}
                _ = wanted.notified() => {}
            }
        }
    }

    /// The peer's next want, and the protocol to answer it in.
    fn next_want(&self, peer: &PeerId) -> Option<(Cid, Want, StreamProtocol)> {
        let mut ledgers = self.ledgers();
        let ledger = ledgers.get_mut(peer)?;
        let (cid, want) = ledger.wants.take_next()?;
        self.metrics.queued_wants.dec();
        Some((cid, want, ledger.protocol.clone()))
    }

    /// Passes the gathered answers to the peer's sender once the peer's byte budget has room;
    /// `false` when the sender has given up on the peer.
    async fn hand_over(
        &self,
        queue: &tokio::sync::mpsc::Sender<(Message, StreamProtocol, OwnedSemaphorePermit)>,
        budget: &Arc<Semaphore>,
        outgoing: &mut Outgoing,
    ) -> bool {
        let Outgoing {
            message,
            size,
            protocol,
        } = std::mem::take(outgoing);
        let Some(protocol) = protocol else {
            return true;
        };
        let cost = size.clamp(1, self.limits.peer_bytes) as u32;
        let permit = tokio::select! {
            permit = budget.clone().acquire_many_owned(cost) => permit,
            _ = queue.closed() => return false,
        };
        let Ok(permit) = permit else {
            return false;
        };
        queue.send((message, protocol, permit)).await.is_ok()
    }

    /// Writes a peer's answers, in order, on one stream this side opens and keeps while there
    /// are answers (bitswap's answers go on streams of their own, never on the wants' stream).
    /// Gives up on the peer when a stream cannot be opened or written in time.
    async fn send_all(
        self: Arc<Self>,
        peer: PeerId,
        mut control: libp2p_stream::Control,
        mut outbox: tokio::sync::mpsc::Receiver<(Message, StreamProtocol, OwnedSemaphorePermit)>,
    ) {
        let mut open: Option<(libp2p::Stream, StreamProtocol)> = None;
        while let Some((message, protocol, _permit)) = outbox.recv().await {
            if let Some((stream, _)) = open.take_if(|(_, p)| *p != protocol) {
                close(stream).await;
            }
            let bytes = message.payload.iter().map(|b| b.data.len()).sum::<usize>()
                + message.blocks.iter().map(Bytes::len).sum::<usize>();
            let write_limit = WRITE_TIMEOUT + Duration::from_secs((bytes / (100 << 10)) as u64);
            // A kept stream the peer has since closed is opened again, once.
            let mut result = Err(String::new());
            for _ in 0..2 {
                let reused = open.is_some();
                let (stream, _) = match open.take() {
                    Some(open) => open,
                    None => match open_stream(&mut control, peer, protocol.clone()).await {
                        Ok(stream) => (stream, protocol.clone()),
                        Err(why) => {
                            result = Err(why);
                            break;
                        }
                    },
                };
                let mut stream = stream;
                let written = tokio::time::timeout(
                    write_limit,
                    bitswap::write_message(&mut stream, &message),
                )
                .await;
                match written {
                    Ok(Ok(())) => {
                        result = Ok(());
                        open = Some((stream, protocol.clone()));
                        break;
                    }
                    // A peer that does not read gets no second stream and no second wait.
                    Err(_) => {
                        result = Err("the peer did not read its answer in time".to_string());
                        break;
                    }
                    Ok(Err(e)) => {
                        result = Err(format!("writing failed: {e}"));
                        if !reused {
                            break;
                        }
                    }
                }
            }
            if result.is_ok() {
                self.count_sent(&message);
            }
            if let Err(why) = result {
                self.metrics.refused.with_label_values(&["send"]).inc();
                tracing::debug!(%peer, why, "bitswap: an answer could not be delivered; the peer's wants are dropped");
                return;
            }
        }
        if let Some((stream, _)) = open {
            close(stream).await;
        }
    }

    /// Counts what a written message carried.
    fn count_sent(&self, message: &Message) {
        let blocks = message
            .payload
            .iter()
            .map(|b| &b.data)
            .chain(&message.blocks);
        for data in blocks {
            self.metrics.blocks_sent.inc();
            self.metrics.bytes_sent.inc_by(data.len() as u64);
        }
        for presence in &message.block_presences {
            if presence.r#type == PresenceType::Have as i32 {
                self.metrics.haves_sent.inc();
            } else {
                self.metrics.dont_haves_sent.inc();
            }
        }
    }

    /// Drops the wants of a peer that cannot be answered (gone, or not reading), and its worker.
    fn forget(&self, peer: &PeerId) {
        let mut ledgers = self.ledgers();
        if let Some(ledger) = ledgers.get_mut(peer) {
            self.metrics.queued_wants.sub(ledger.wants.len() as i64);
            ledger.wants.clear();
            ledger.worker = false;
            if ledger.streams == 0 {
                ledgers.remove(peer);
            }
        }
    }

    /// What to say about one want. Never waits for the hub to unseal or come back.
    async fn answer(&self, cid: &Cid, want: Want) -> Answer {
        if self.deny.contains(&cid.to_string()) {
            return Answer::DontHave;
        }
        let Ok(_read) = self.reads.acquire().await else {
            return Answer::DontHave;
        };
        match want.kind {
            WantType::Have => {
                match tokio::time::timeout(READ_TIMEOUT, self.blocks.available(cid)).await {
                    Ok(Ok(Some(length))) if length as usize <= SEND_BLOCK_FOR_HAVE_BYTES => {
                        self.fetch(cid).await
                    }
                    Ok(Ok(Some(_))) => Answer::Have,
                    _ => Answer::DontHave,
                }
            }
            WantType::Block => self.fetch(cid).await,
        }
    }

    async fn fetch(&self, cid: &Cid) -> Answer {
        match tokio::time::timeout(READ_TIMEOUT, self.blocks.get_now(cid)).await {
            Ok(Ok(Some(data))) if data.len() <= bitswap::MAX_BLOCK_BYTES => Answer::Block(data),
            Ok(Ok(_)) => Answer::DontHave,
            Ok(Err(e)) => {
                tracing::debug!(block = %cid, error = %e, "bitswap: a block cannot be read now");
                Answer::DontHave
            }
            Err(_) => {
                tracing::debug!(block = %cid, "bitswap: reading a block took too long");
                Answer::DontHave
            }
        }
    }
}

async fn open_stream(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> Result<libp2p::Stream, String> {
    tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol))
        .await
        .map_err(|_| "opening a stream timed out".to_string())?
        .map_err(|e| format!("opening a stream failed: {e}"))
}

async fn close(mut stream: libp2p::Stream) {
    let _ = tokio::time::timeout(OPEN_TIMEOUT, stream.close()).await;
}

/// Answers gathered for one message.
#[derive(Debug, Default)]
struct Outgoing {
    message: Message,
    size: usize,
    /// The protocol its answers are in (`None` while empty).
    protocol: Option<StreamProtocol>,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Adds one answer as `protocol` carries it (1.0.0 has bare CIDv0 blocks only; presences
    /// are 1.2.0's; DONT_HAVE only when asked for).
    fn add(&mut self, cid: &Cid, want: Want, protocol: &StreamProtocol, answer: Answer) {
        let size = self.size;
        match answer {
            Answer::Block(data) => {
                if *protocol == bitswap::PROTOCOL_1_0_0 {
                    // 1.0.0 carries bare blocks, which the receiver takes as CIDv0.
                    if cid.version() == cid::Version::V0 {
                        self.size += data.len() + 8;
                        self.message.blocks.push(data);
                    }
                } else {
                    let block = Block {
                        prefix: bitswap::prefix(cid),
                        data,
                    };
                    self.size += bitswap::block_size(&block);
                    self.message.payload.push(block);
                }
            }
            Answer::Have if *protocol == bitswap::PROTOCOL_1_2_0 => {
                self.size += cid.encoded_len() + 4;
                self.message.block_presences.push(BlockPresence {
                    cid: cid.to_bytes(),
                    r#type: PresenceType::Have as i32,
                });
            }
            Answer::DontHave if want.send_dont_have && *protocol == bitswap::PROTOCOL_1_2_0 => {
                self.size += cid.encoded_len() + 4;
                self.message.block_presences.push(BlockPresence {
                    cid: cid.to_bytes(),
                    r#type: PresenceType::DontHave as i32,
                });
            }
            Answer::Have | Answer::DontHave => {}
        }
        if self.size > size {
            self.protocol = Some(protocol.clone());
        }
    }
}

enum Answer {
    Block(Bytes),
    Have,
    DontHave,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u32) -> Cid {
        nelumbo_car::cid_v1_sha256(0x55, &n.to_le_bytes())
    }

    fn want(kind: WantType, send_dont_have: bool, priority: i32) -> Want {
        Want {
            kind,
            send_dont_have,
            priority,
        }
    }

    fn v0(n: u32) -> Cid {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(n.to_le_bytes());
        Cid::new_v0(cid::multihash::Multihash::wrap(0x12, &digest).expect("multihash")).expect("v0")
    }

    #[test]
    fn answers_are_what_each_protocol_version_can_carry() {
        let data = Bytes::from_static(b"block");
        let asked = want(WantType::Block, true, 1);
        let not_asked = want(WantType::Block, false, 1);

        // 1.2.0: blocks with their prefixes, HAVE, and DONT_HAVE only when asked for.
        let mut out = Outgoing::default();
        out.add(
            &cid(1),
            asked,
            &bitswap::PROTOCOL_1_2_0,
            Answer::Block(data.clone()),
        );
        out.add(&cid(2), asked, &bitswap::PROTOCOL_1_2_0, Answer::Have);
        out.add(&cid(3), asked, &bitswap::PROTOCOL_1_2_0, Answer::DontHave);
        out.add(
            &cid(4),
            not_asked,
            &bitswap::PROTOCOL_1_2_0,
            Answer::DontHave,
        );
        assert_eq!(out.message.payload.len(), 1);
        assert_eq!(out.message.payload[0].prefix, bitswap::prefix(&cid(1)));
        let presences: Vec<(Vec<u8>, i32)> = out
            .message
            .block_presences
            .iter()
            .map(|p| (p.cid.clone(), p.r#type))
            .collect();
        assert_eq!(
            presences,
            vec![
                (cid(2).to_bytes(), PresenceType::Have as i32),
                (cid(3).to_bytes(), PresenceType::DontHave as i32),
            ]
        );
        assert_eq!(out.protocol, Some(bitswap::PROTOCOL_1_2_0));

        // 1.1.0: blocks, no presences at all.
        let mut out = Outgoing::default();
        out.add(&cid(2), asked, &bitswap::PROTOCOL_1_1_0, Answer::Have);
        out.add(&cid(3), asked, &bitswap::PROTOCOL_1_1_0, Answer::DontHave);
        assert!(out.is_empty() && out.protocol.is_none());
        out.add(
            &cid(1),
            asked,
            &bitswap::PROTOCOL_1_1_0,
            Answer::Block(data.clone()),
        );
        assert_eq!(out.message.payload.len(), 1);
        assert!(out.message.block_presences.is_empty());

        // 1.0.0: bare blocks, which the receiver can only take as CIDv0.
        let mut out = Outgoing::default();
        out.add(
            &cid(1),
            asked,
            &bitswap::PROTOCOL_1_0_0,
            Answer::Block(data.clone()),
        );
        assert!(out.is_empty());
        out.add(
            &v0(1),
            asked,
            &bitswap::PROTOCOL_1_0_0,
            Answer::Block(data.clone()),
        );
        assert_eq!(out.message.blocks, vec![data]);
        assert!(out.message.payload.is_empty() && out.message.block_presences.is_empty());
    }
}
