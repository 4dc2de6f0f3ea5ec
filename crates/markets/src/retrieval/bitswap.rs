//! The bitswap server (`/ipfs/bitswap/1.2.0`, `1.1.0`, `1.0.0`) on the markets libp2p host.
//!
//! Wants arrive on streams the peer opens; each peer has a ledger of what it wants (bounded), and
//! one worker per peer answers it on streams this side opens, in messages near a target size.
//! Blocks come from the piece directory and the shared piece reader, checked against their CIDs.
//! Nothing here waits for the hub: a block whose piece must be unsealed, or whose hub is away,
//! is answered DONT_HAVE at once (when the peer asked for that), its unseal queued within the
//! reader's bounds, so a later want succeeds. A peer that stops reading times out alone.
//!
//! Bounds: wants per peer, peers served at once, block reads at once across peers (taken in
//! turn, so peers share them fairly), inbound streams per peer, message sizes both ways, and a
//! time limit on opening, writing and closing every answer stream.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use nelumbo_markets_api::bitswap::{self, Block, BlockPresence, Message, PresenceType, WantType};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::blocks::BlockSource;

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

/// The server's limits (`[retrieval]` bitswap_*).
#[derive(Debug, Clone, Copy)]
pub struct BitswapLimits {
    pub max_peers: usize,
    pub max_wants_per_peer: usize,
    pub message_bytes: usize,
    pub max_reads: usize,
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

#[derive(Debug, Clone, Copy)]
struct Want {
    kind: WantType,
    send_dont_have: bool,
    priority: i32,
}

/// What one peer wants, and how it speaks.
#[derive(Debug)]
struct Ledger {
    wants: HashMap<Cid, Want>,
    /// Arrival order (entries whose want was cancelled are skipped when met).
    order: VecDeque<Cid>,
    protocol: StreamProtocol,
    worker: bool,
    streams: usize,
}

impl Ledger {
    fn new(protocol: StreamProtocol) -> Self {
        Self {
            wants: HashMap::new(),
            order: VecDeque::new(),
            protocol,
            worker: false,
            streams: 0,
        }
    }

    /// The next want to answer: the highest priority, the oldest first among equals.
    fn next(&mut self) -> Option<(Cid, Want)> {
        self.order.retain(|cid| self.wants.contains_key(cid));
        let (index, _) = self
            .order
            .iter()
            .enumerate()
            .max_by_key(|(i, cid)| (self.wants[*cid].priority, std::cmp::Reverse(*i)))?;
        let cid = self.order.remove(index)?;
        let want = self.wants.remove(&cid)?;
        Some((cid, want))
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

    /// Accepts wants on every bitswap version until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        mut control: libp2p_stream::Control,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut incoming = futures::stream::SelectAll::new();
        for protocol in bitswap::PROTOCOLS {
            let streams = control
                .accept(protocol.clone())
                .map_err(|e| anyhow::anyhow!("accept {protocol}: {e}"))?;
            incoming.push(streams.map(move |(peer, stream)| (peer, protocol.clone(), stream)));
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                next = incoming.next() => {
                    let Some((peer, protocol, stream)) = next else { return Ok(()) };
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
            let _ = stream.close().await;
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
        if wantlist.full {
            ledger.wants.clear();
            ledger.order.clear();
        }
        let mut dropped = 0u64;
        for entry in wantlist.entries {
            let Ok(cid) = Cid::try_from(entry.block.as_slice()) else {
                dropped += 1;
                continue;
            };
            if entry.block.len() > bitswap::MAX_CID_BYTES {
                dropped += 1;
                continue;
            }
            if entry.cancel {
                self.metrics.wants.with_label_values(&["cancel"]).inc();
                ledger.wants.remove(&cid);
                continue;
            }
            let kind = WantType::try_from(entry.want_type).unwrap_or(WantType::Block);
            self.metrics
                .wants
                .with_label_values(&[match kind {
                    WantType::Block => "block",
                    WantType::Have => "have",
                }])
                .inc();
            let want = Want {
                kind,
                // Only 1.2.0 has presences.
                send_dont_have: entry.send_dont_have && *protocol == bitswap::PROTOCOL_1_2_0,
                priority: entry.priority,
            };
            let full = ledger.wants.len() >= self.limits.max_wants_per_peer;
            match ledger.wants.get_mut(&cid) {
                Some(existing) => {
                    // A want-block supersedes a want-have, never the other way round.
                    if want.kind == WantType::Block {
                        existing.kind = WantType::Block;
                    }
                    existing.send_dont_have |= want.send_dont_have;
                    existing.priority = want.priority;
                }
                None if full => dropped += 1,
                None => {
                    ledger.wants.insert(cid, want);
                    ledger.order.push_back(cid);
                }
            }
        }
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
        if !ledger.wants.is_empty() && !ledger.worker {
            ledger.worker = true;
            let server = self.clone();
            let control = control.clone();
            tokio::spawn(async move { server.work(peer, control).await });
        }
    }

    /// Answers a peer's wants until its ledger is empty, one message at a time.
    async fn work(self: Arc<Self>, peer: PeerId, mut control: libp2p_stream::Control) {
        let Ok(_slot) = self.serving.clone().acquire_owned().await else {
            return;
        };
        self.metrics.peers_served.inc();
        let mut outgoing = Message::default();
        let mut size = 0usize;
        loop {
            let next = {
                let mut ledgers = self.ledgers();
                let Some(ledger) = ledgers.get_mut(&peer) else {
                    break;
                };
                match ledger.next() {
                    Some((cid, want)) => {
                        self.metrics.queued_wants.dec();
                        Some((cid, want, ledger.protocol.clone()))
                    }
                    None => None,
                }
            };
            let Some((cid, want, protocol)) = next else {
                // Nothing left: send what is gathered, then stop unless wants came meanwhile.
                let protocol = self.protocol_of(&peer);
                if size > 0
                    && !self
                        .flush(&mut control, peer, protocol, &mut outgoing, &mut size)
                        .await
                {
                    break;
                }
                let mut ledgers = self.ledgers();
                match ledgers.get_mut(&peer) {
                    Some(ledger) if ledger.wants.is_empty() => {
                        ledger.worker = false;
                        if ledger.streams == 0 {
                            ledgers.remove(&peer);
                        }
                        break;
                    }
                    Some(_) => continue,
                    None => break,
                }
            };
            let answer = self.answer(&cid, want).await;
            match answer {
                Answer::Block(data) => {
                    // A block that would take the message past its target goes in the next
                    // one, so no message is much over the target (peers read at most 4 MiB).
                    if size > 0
                        && size + data.len() + 64 > self.limits.message_bytes
                        && !self
                            .flush(
                                &mut control,
                                peer,
                                protocol.clone(),
                                &mut outgoing,
                                &mut size,
                            )
                            .await
                    {
                        break;
                    }
                    if protocol == bitswap::PROTOCOL_1_0_0 {
                        // 1.0.0 carries bare blocks, which the receiver takes as CIDv0.
                        if cid.version() == cid::Version::V0 {
                            size += data.len() + 8;
                            outgoing.blocks.push(data);
                        }
                    } else {
                        let block = Block {
                            prefix: bitswap::prefix(&cid),
                            data,
                        };
                        size += bitswap::block_size(&block);
                        outgoing.payload.push(block);
                    }
                }
                Answer::Have => {
                    if protocol == bitswap::PROTOCOL_1_2_0 {
                        size += cid.encoded_len() + 4;
                        outgoing.block_presences.push(BlockPresence {
                            cid: cid.to_bytes(),
                            r#type: PresenceType::Have as i32,
                        });
                    }
                }
                Answer::DontHave => {
                    if want.send_dont_have {
                        size += cid.encoded_len() + 4;
                        outgoing.block_presences.push(BlockPresence {
                            cid: cid.to_bytes(),
                            r#type: PresenceType::DontHave as i32,
                        });
                    }
                }
            }
            if size >= self.limits.message_bytes
                && !self
                    .flush(&mut control, peer, protocol, &mut outgoing, &mut size)
                    .await
            {
                break;
            }
        }
        self.metrics.peers_served.dec();
    }

    /// Sends the gathered answers; a peer that cannot take them loses its wants (`false`).
    async fn flush(
        &self,
        control: &mut libp2p_stream::Control,
        peer: PeerId,
        protocol: StreamProtocol,
        outgoing: &mut Message,
        size: &mut usize,
    ) -> bool {
        *size = 0;
        let sent = self
            .send(control, peer, protocol, std::mem::take(outgoing))
            .await;
        if !sent {
            self.forget(&peer);
        }
        sent
    }

    fn protocol_of(&self, peer: &PeerId) -> StreamProtocol {
        self.ledgers()
            .get(peer)
            .map(|l| l.protocol.clone())
            .unwrap_or(bitswap::PROTOCOL_1_2_0)
    }

    /// Drops the wants of a peer that cannot be answered (gone, or not reading), and its worker.
    fn forget(&self, peer: &PeerId) {
        let mut ledgers = self.ledgers();
        if let Some(ledger) = ledgers.get_mut(peer) {
            self.metrics.queued_wants.sub(ledger.wants.len() as i64);
            ledger.wants.clear();
            ledger.order.clear();
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
                    Ok(Ok(Some(_))) => {
                        self.metrics.haves_sent.inc();
                        Answer::Have
                    }
                    _ => self.dont_have(want),
                }
            }
            WantType::Block => match self.fetch(cid).await {
                Answer::DontHave => self.dont_have(want),
                answer => answer,
            },
        }
    }

    async fn fetch(&self, cid: &Cid) -> Answer {
        match tokio::time::timeout(READ_TIMEOUT, self.blocks.get_now(cid)).await {
            Ok(Ok(Some(data))) if data.len() <= bitswap::MAX_BLOCK_BYTES => {
                self.metrics.blocks_sent.inc();
                self.metrics.bytes_sent.inc_by(data.len() as u64);
                Answer::Block(data)
            }
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

    fn dont_have(&self, want: Want) -> Answer {
        if want.send_dont_have {
            self.metrics.dont_haves_sent.inc();
        }
        Answer::DontHave
    }

    /// Sends one message on a stream of its own; `false` when the peer could not be reached
    /// or did not take it in time.
    async fn send(
        &self,
        control: &mut libp2p_stream::Control,
        peer: PeerId,
        protocol: StreamProtocol,
        message: Message,
    ) -> bool {
        let bytes = message.payload.iter().map(|b| b.data.len()).sum::<usize>()
            + message.blocks.iter().map(Bytes::len).sum::<usize>();
        let result = async {
            let mut stream =
                tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol))
                    .await
                    .map_err(|_| "opening a stream timed out".to_string())?
                    .map_err(|e| format!("opening a stream failed: {e}"))?;
            let write_limit = WRITE_TIMEOUT + Duration::from_secs((bytes / (100 << 10)) as u64);
            tokio::time::timeout(write_limit, bitswap::write_message(&mut stream, &message))
                .await
                .map_err(|_| "the peer did not read its answer in time".to_string())?
                .map_err(|e| format!("writing failed: {e}"))?;
            tokio::time::timeout(OPEN_TIMEOUT, stream.close())
                .await
                .map_err(|_| "closing the stream timed out".to_string())?
                .map_err(|e| format!("closing failed: {e}"))
        }
        .await;
        match result {
            Ok(()) => true,
            Err(why) => {
                self.metrics.refused.with_label_values(&["send"]).inc();
                tracing::debug!(%peer, why, "bitswap: an answer could not be delivered; the peer's wants are dropped");
                false
            }
        }
    }
}

enum Answer {
    Block(Bytes),
    Have,
    DontHave,
}
