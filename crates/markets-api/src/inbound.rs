//! A libp2p behaviour that accepts streams of chosen protocols (bitswap's) and hands every one
//! to the application through a queue of a stated size.
//!
//! Why not `libp2p_stream::Control::accept`: its queue holds one stream, and a stream that
//! arrives while that slot is taken is dropped without a word. When many peers open streams at
//! once (sixteen clients starting a fetch together), wants were lost and the clients waited for
//! their retry. Here the queue holds [`InboundStreams::new`]'s `queue` streams (plus one per
//! connection), and a stream is dropped only when it is full, which takes a flood: the receiver
//! does nothing but hand each stream to a task. Outbound streams still go through
//! `libp2p_stream`'s `Control::open_stream`, which has no such defect.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::channel::mpsc;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{InboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, Stream, StreamProtocol, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, core::upgrade::DeniedUpgrade};

/// A stream a peer opened.
#[derive(Debug)]
pub struct Inbound {
    pub peer: PeerId,
    pub protocol: StreamProtocol,
    pub stream: Stream,
}

/// Accepts streams of `protocols` on every connection (none when the list is empty).
#[derive(Debug)]
pub struct InboundStreams {
    protocols: Arc<[StreamProtocol]>,
    sender: mpsc::Sender<Inbound>,
    receiver: Option<mpsc::Receiver<Inbound>>,
    dropped: Arc<AtomicU64>,
}

impl InboundStreams {
    pub fn new(protocols: Vec<StreamProtocol>, queue: usize) -> Self {
        let (sender, receiver) = mpsc::channel(queue);
        Self {
            protocols: protocols.into(),
            sender,
            receiver: Some(receiver),
            dropped: Arc::default(),
        }
    }

    /// The streams peers open, in arrival order; only the first call gets them.
    pub fn take(&mut self) -> Option<mpsc::Receiver<Inbound>> {
        self.receiver.take()
    }

    /// Streams dropped so far because the queue was full, or nobody took it.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    fn handler(&self, peer: PeerId) -> InboundHandler {
        InboundHandler {
            peer,
            protocols: self.protocols.clone(),
            sender: self.sender.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

impl NetworkBehaviour for InboundStreams {
    type ConnectionHandler = InboundHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// One connection's side of [`InboundStreams`].
#[derive(Debug)]
pub struct InboundHandler {
    peer: PeerId,
    protocols: Arc<[StreamProtocol]>,
    sender: mpsc::Sender<Inbound>,
    dropped: Arc<AtomicU64>,
}

impl ConnectionHandler for InboundHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Protocols;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        SubstreamProtocol::new(Protocols(self.protocols.clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
        {
            let inbound = Inbound {
                peer: self.peer,
                protocol,
                stream,
            };
            if let Err(e) = self.sender.try_send(inbound) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let why = if e.is_full() {
                    "the queue is full"
                } else {
                    "nobody accepts them"
                };
                tracing::debug!(peer = %self.peer, why, "an inbound stream is dropped");
            }
        }
    }
}

/// The protocols a connection accepts streams of.
#[derive(Debug, Clone)]
pub struct Protocols(Arc<[StreamProtocol]>);

impl UpgradeInfo for Protocols {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.iter().cloned().collect::<Vec<_>>().into_iter()
    }
}

impl InboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
