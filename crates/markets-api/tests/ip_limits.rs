//! The provider's host refuses connections from one IP address past its limit, before the
//! handshake, and lets that address in again once one of its connections closes.

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use nelumbo_markets_api::p2p::{Limits, MarketsBehaviour, build_swarm};

fn swarm(serve: bool, limits: Limits) -> Swarm<MarketsBehaviour> {
    build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        "test",
        serve,
        limits,
    )
    .expect("swarm")
}

/// Dials `peer` and drives the swarm until the dial fails, or succeeds and the connection
/// stays up for a while: a connection whose handshake overlapped the one that filled the
/// address's share is refused by the provider once its handshake is done, which this side sees
/// as established, then closed.
async fn connect(client: &mut Swarm<MarketsBehaviour>, peer: PeerId, addr: &Multiaddr) -> bool {
    client.add_peer_address(peer, addr.clone());
    client.dial(peer).expect("dial");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, client.select_next_some())
            .await
            .expect("the dial ended in time");
        match event {
            SwarmEvent::ConnectionEstablished { .. } => return stays_up(client).await,
            SwarmEvent::OutgoingConnectionError { .. } => return false,
            SwarmEvent::ConnectionClosed { .. } => return false,
            _ => {}
        }
    }
}

/// `false` when the connection just established closes within a second.
async fn stays_up(client: &mut Swarm<MarketsBehaviour>) -> bool {
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(until, client.select_next_some()).await {
            Err(_) => return true,
            Ok(SwarmEvent::ConnectionClosed { .. }) => return false,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let mut server = swarm(
        true,
        Limits {
            max_connections: 100,
            max_connections_per_ip: 2,
            max_connections_per_peer: 4,
            max_pending_connections: 100,
        },
    );
    server
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let peer = *server.local_peer_id();
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = {
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = server.select_next_some() => {}
                }
            }
        })
    };
    let mut first = swarm(false, Limits::none());
    let mut second = swarm(false, Limits::none());
    let mut third = swarm(false, Limits::none());
    assert!(connect(&mut first, peer, &addr).await);
    assert!(connect(&mut second, peer, &addr).await);
    // Kept alive by polling while the third tries.
    let keep = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = first.select_next_some() => {}
                _ = second.select_next_some() => {}
            }
        }
    });
    assert!(
        !connect(&mut third, peer, &addr).await,
        "a third connection from one address was let in"
    );
    keep.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        connect(&mut third, peer, &addr).await,
        "the address was not let in again after its connections closed"
    );
    stop.cancel();
    let _ = serving.await;
}
