//! The libp2p host both sides use: TCP, noise, yamux, identify, and one request-response
//! behaviour per deal protocol (bare CBOR items, as Boost frames them). The provider serves the
//! protocols behind connection limits (in all, per IP address, per peer, in handshake); the
//! client only opens them.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, noise, tcp, yamux};

use crate::codec::{CborCodec, TransportsCodec};
use crate::wire::{
    ASK_PROTOCOL, AskRequest, AskResponse, DEAL_PROTOCOL_1_2_0, DEAL_PROTOCOL_1_2_1, DealParams,
    DealResponse, DealStatusRequest, DealStatusResponse, MAX_DEAL_PARAMS_BYTES,
    MAX_SMALL_MESSAGE_BYTES, STATUS_PROTOCOL, TRANSPORTS_PROTOCOL, TransportsResponse,
};

pub type DealCodec = CborCodec<DealParams, DealResponse>;
pub type StatusCodec = CborCodec<DealStatusRequest, DealStatusResponse>;
pub type AskCodec = CborCodec<AskRequest, AskResponse>;

/// How long a provider may take to answer a proposal (Boost's client waits 60 s).
pub const DEAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the status and ask exchanges may take.
pub const SMALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams per connection at once, per protocol: with the message size limits, what one
/// connection can make the provider hold in memory.
const MAX_STREAMS: usize = 16;
/// Proposals in flight per connection (a client sends one at a time).
const MAX_PROPOSAL_STREAMS: usize = 4;
/// Bitswap streams peers have opened that wait to be taken up (the application takes each at
/// once; only a flood fills this, and then further streams are dropped).
const INBOUND_STREAM_QUEUE: usize = 256;

/// Bounds on incoming connections (the provider's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub max_connections_per_peer: u32,
    pub max_pending_connections: u32,
}

impl Limits {
    /// No bounds: the client side, which only dials.
    pub fn none() -> Self {
        Self {
            max_connections: u32::MAX,
            max_connections_per_ip: u32::MAX,
            max_connections_per_peer: u32::MAX,
            max_pending_connections: u32::MAX,
        }
    }
}

/// Which protocols a host answers (the rest it can only open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serve {
    /// The deal, status and ask protocols.
    pub deals: bool,
    /// `/fil/retrieval/transports/1.0.0`.
    pub retrieval: bool,
    /// Accepts bitswap streams: a provider's wants, or a client's answers.
    pub bitswap: bool,
}

/// `true`: a provider answering everything; `false`: a client of the deal protocols, which
/// accepts no streams.
impl From<bool> for Serve {
    fn from(all: bool) -> Self {
        Self {
            deals: all,
            retrieval: all,
            bitswap: all,
        }
    }
}

impl Serve {
    /// A bitswap client: it accepts the answer streams the provider opens, and nothing else.
    pub const BITSWAP_CLIENT: Serve = Serve {
        deals: false,
        retrieval: false,
        bitswap: true,
    };
}

#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub struct MarketsBehaviour {
    pub limits: libp2p::connection_limits::Behaviour,
    pub ip_limits: crate::ip_limits::IpLimits,
    pub identify: identify::Behaviour,
    pub deal: request_response::Behaviour<DealCodec>,
    pub status: request_response::Behaviour<StatusCodec>,
    pub ask: request_response::Behaviour<AskCodec>,
    pub transports: request_response::Behaviour<TransportsCodec>,
    /// Bitswap streams opened to this side: the wants a provider answers when it serves
    /// retrieval, the answers a client reads.
    pub bitswap: crate::inbound::InboundStreams,
    /// Streams opened from this side (bitswap's other direction).
    pub stream: libp2p_stream::Behaviour,
}

impl MarketsBehaviour {
    /// `serve`: the protocols to answer (the provider); the others are only opened (the
    /// client).
    pub fn new(key: &Keypair, agent: &str, serve: Serve, limits: Limits) -> Self {
        let support_of = |serve: bool| {
            if serve {
                ProtocolSupport::Inbound
            } else {
                ProtocolSupport::Outbound
            }
        };
        let support = support_of(serve.deals);
        let config = |timeout, streams| {
            request_response::Config::default()
                .with_request_timeout(timeout)
                .with_max_concurrent_streams(streams)
        };
        let connection_limits = libp2p::connection_limits::ConnectionLimits::default()
            .with_max_established_incoming(Some(limits.max_connections))
            .with_max_pending_incoming(Some(limits.max_pending_connections))
            .with_max_established_per_peer(Some(limits.max_connections_per_peer));
        Self {
            limits: libp2p::connection_limits::Behaviour::new(connection_limits),
            ip_limits: crate::ip_limits::IpLimits::new(limits.max_connections_per_ip),
            identify: identify::Behaviour::new(
                identify::Config::new("/nelumbo/1.0.0".into(), key.public())
                    .with_agent_version(agent.to_string()),
            ),
            deal: request_response::Behaviour::with_codec(
                CborCodec::new(MAX_DEAL_PARAMS_BYTES, MAX_SMALL_MESSAGE_BYTES),
                [
                    (DEAL_PROTOCOL_1_2_1, support.clone()),
                    (DEAL_PROTOCOL_1_2_0, support.clone()),
                ],
                config(DEAL_TIMEOUT, MAX_PROPOSAL_STREAMS),
            ),
            status: request_response::Behaviour::with_codec(
                CborCodec::new(MAX_SMALL_MESSAGE_BYTES, MAX_SMALL_MESSAGE_BYTES),
                [(STATUS_PROTOCOL, support.clone())],
                config(SMALL_TIMEOUT, MAX_STREAMS),
            ),
            ask: request_response::Behaviour::with_codec(
                CborCodec::new(MAX_SMALL_MESSAGE_BYTES, MAX_SMALL_MESSAGE_BYTES),
                [(ASK_PROTOCOL, support)],
                config(SMALL_TIMEOUT, MAX_STREAMS),
            ),
            transports: request_response::Behaviour::with_codec(
                TransportsCodec,
                [(TRANSPORTS_PROTOCOL, support_of(serve.retrieval))],
                config(SMALL_TIMEOUT, MAX_STREAMS),
            ),
            bitswap: crate::inbound::InboundStreams::new(
                if serve.bitswap {
                    crate::bitswap::PROTOCOLS.to_vec()
                } else {
                    Vec::new()
                },
                INBOUND_STREAM_QUEUE,
            ),
            stream: libp2p_stream::Behaviour::new(),
        }
    }
}

/// A swarm over TCP with noise and yamux.
pub fn build_swarm(
    key: Keypair,
    agent: &str,
    serve: impl Into<Serve>,
    limits: Limits,
) -> Result<Swarm<MarketsBehaviour>, Box<dyn std::error::Error + Send + Sync>> {
    let agent = agent.to_string();
    let serve = serve.into();
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| MarketsBehaviour::new(key, &agent, serve, limits))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build())
}

/// One request from the client side, over a fresh swarm.
#[derive(Debug)]
pub enum Request {
    Deal(Box<DealParams>),
    Status(DealStatusRequest),
    Ask(AskRequest),
    Transports,
}

#[derive(Debug)]
pub enum Response {
    Deal(DealResponse),
    Status(Box<DealStatusResponse>),
    Ask(Box<AskResponse>),
    Transports(TransportsResponse),
}

/// Dials `peer` at `addrs` and makes one request; the error names what went wrong (no
/// address answered, the protocol is not spoken, a timeout).
pub async fn request_once(
    swarm: &mut Swarm<MarketsBehaviour>,
    peer: PeerId,
    addrs: &[Multiaddr],
    request: Request,
) -> Result<Response, String> {
    if addrs.is_empty() {
        return Err(format!("no address is known for peer {peer}"));
    }
    for addr in addrs {
        swarm.add_peer_address(peer, addr.clone());
    }
    let behaviour = swarm.behaviour_mut();
    let id = match request {
        Request::Deal(params) => behaviour.deal.send_request(&peer, *params),
        Request::Status(req) => behaviour.status.send_request(&peer, req),
        Request::Ask(req) => behaviour.ask.send_request(&peer, req),
        Request::Transports => behaviour.transports.send_request(&peer, ()),
    };
    loop {
        let event = swarm
            .next()
            .await
            .ok_or_else(|| "the libp2p host stopped".to_string())?;
        match event {
            SwarmEvent::Behaviour(MarketsBehaviourEvent::Deal(e)) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } if request_id == id => return Ok(Response::Deal(response)),
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } if request_id == id => {
                    return Err(outbound_error(peer, &error));
                }
                _ => {}
            },
            SwarmEvent::Behaviour(MarketsBehaviourEvent::Status(e)) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } if request_id == id => return Ok(Response::Status(Box::new(response))),
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } if request_id == id => {
                    return Err(outbound_error(peer, &error));
                }
                _ => {}
            },
            SwarmEvent::Behaviour(MarketsBehaviourEvent::Ask(e)) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } if request_id == id => return Ok(Response::Ask(Box::new(response))),
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } if request_id == id => {
                    return Err(outbound_error(peer, &error));
                }
                _ => {}
            },
            SwarmEvent::Behaviour(MarketsBehaviourEvent::Transports(e)) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } if request_id == id => return Ok(Response::Transports(response)),
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } if request_id == id => {
                    return Err(outbound_error(peer, &error));
                }
                _ => {}
            },
            _ => {}
        }
    }
}

fn outbound_error(peer: PeerId, error: &request_response::OutboundFailure) -> String {
    use request_response::OutboundFailure;
    match error {
        OutboundFailure::DialFailure => format!("could not connect to the provider's peer {peer}"),
        OutboundFailure::Timeout => format!("the provider's peer {peer} did not answer in time"),
        OutboundFailure::UnsupportedProtocols => {
            format!("the provider's peer {peer} does not speak this protocol")
        }
        e => format!("the request to {peer} failed: {e}"),
    }
}
