//! A TCP link between two processes that a test can cut or slow, standing in for the network
//! between a spoke and the hub. A cut is a partition, not a refusal: nothing is forwarded and
//! no new connection reaches the other side until it heals, and then the held bytes go on, as
//! TCP carries on after a short outage. Slowing delays every chunk in both directions.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Link {
    cut: bool,
    delay: Duration,
}

/// A running link on a free loopback port; stops when dropped (its connections close).
#[derive(Debug)]
pub struct TcpLink {
    pub port: u16,
    state: watch::Sender<Link>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpLink {
    /// Forwards connections on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the link");
        let port = listener.local_addr().expect("addr").port();
        let (state, link) = watch::channel(Link::default());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let (upstream, mut link) = (upstream.clone(), link.clone());
                connections.spawn(async move {
                    // A connection made during a cut gets through only once it heals.
                    passable(&mut link).await;
                    let Ok(outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = carry(in_read, out_write, link.clone()) => {}
                        _ = carry(out_read, in_write, link) => {}
                    }
                });
            }
        });
        Self { port, state, task }
    }

    /// Cuts the link (`true`) or heals it.
    pub fn cut(&self, cut: bool) {
        self.state.send_modify(|l| l.cut = cut);
    }

    /// Delays every chunk by `delay` (zero: none).
    pub fn slow(&self, delay: Duration) {
        self.state.send_modify(|l| l.delay = delay);
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits while the link is cut; returns the delay in force.
async fn passable(link: &mut watch::Receiver<Link>) -> Duration {
    loop {
        let now = *link.borrow_and_update();
        if !now.cut {
            return now.delay;
        }
        if link.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = passable(&mut link).await;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
