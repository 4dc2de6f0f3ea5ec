//! A libp2p behaviour that bounds established incoming connections per remote IP address.
//! Peer IDs cost nothing to make, so a per-peer limit alone does not stop one host from
//! holding every connection slot; an IP address costs something.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// At most `max_per_ip` established incoming connections from one IP address.
#[derive(Debug)]
pub struct IpLimits {
    max_per_ip: u32,
    by_ip: HashMap<IpAddr, u32>,
    connections: HashMap<ConnectionId, IpAddr>,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{ip} already holds {limit} connections, the most one address may")]
pub struct TooManyFromAddress {
    ip: IpAddr,
    limit: u32,
}

impl IpLimits {
    pub fn new(max_per_ip: u32) -> Self {
        Self {
            max_per_ip,
            by_ip: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    fn check(&self, remote: &Multiaddr) -> Result<Option<IpAddr>, ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(None);
        };
        if self.by_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            return Err(ConnectionDenied::new(TooManyFromAddress {
                ip,
                limit: self.max_per_ip,
            }));
        }
        Ok(Some(ip))
    }
}

fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for IpLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // Refused before the handshake costs anything.
        self.check(remote_addr).map(|_| ())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if let Some(ip) = self.check(remote_addr)? {
            *self.by_ip.entry(ip).or_default() += 1;
            self.connections.insert(connection_id, ip);
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event
            && let Some(ip) = self.connections.remove(&connection_id)
            && let Some(count) = self.by_ip.get_mut(&ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
