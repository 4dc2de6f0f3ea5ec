//! The public HTTP listener: connections accepted within limits (in all, per IP address), HTTP/1.1
//! served by hyper with a deadline for request headers and a cap on their size, and every
//! connection's socket guarded so that a client that goes quiet, or reads a response a byte
//! at a time, is cut off instead of holding a connection and a response's buffers.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::RetrievalMetrics;

/// What the listener allows each client.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub min_send_bytes: u64,
    pub send_window: Duration,
}

/// Largest request head (request line and headers) read; more is answered 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` until `cancel`, then lets open requests finish for up to
/// `drain` before closing their connections.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    metrics: RetrievalMetrics,
    cancel: CancellationToken,
    drain: Duration,
) {
    let counts: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a retrieval connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            metrics.refused.with_label_values(&["connections"]).inc();
            drop(stream); // closed at once: the process holds no more than its limit
            continue;
        };
        let Some(per_ip) = IpSlot::take(&counts, remote.ip(), limits.max_connections_per_ip) else {
            metrics
                .refused
                .with_label_values(&["connections_per_ip"])
                .inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
                router.clone(),
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(remote));
                    request
                },
            ));
        let io = TokioIo::new(Guarded::new(stream, &limits));
        let (metrics, cancel, limits) = (metrics.clone(), cancel.clone(), limits.clone());
        tracker.spawn(async move {
            let _slots = (slot, per_ip);
            metrics.connections.inc();
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true);
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(client = %remote, error = %e, "retrieval connection ended");
                    }
                }
                _ = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(drain, connection.as_mut()).await;
                }
            }
            metrics.connections.dec();
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(drain + Duration::from_secs(1), tracker.wait()).await;
}

/// One connection's place in the per-IP count, given back when dropped.
struct IpSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A socket that fails with `TimedOut` when nothing moves either way for `idle`, or when the
/// peer takes fewer than `min_send_bytes` in a `send_window` during which a write waited on it.
pub struct Guarded<T> {
    inner: T,
    idle: Duration,
    send_window: Duration,
    min_send_bytes: u64,
    last_activity: Instant,
    idle_timer: Pin<Box<Sleep>>,
    window_start: Instant,
    window_bytes: u64,
    /// A write waited on the peer during this window.
    blocked: bool,
    send_timer: Pin<Box<Sleep>>,
}

impl<T> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("idle", &self.idle)
            .field("window_bytes", &self.window_bytes)
            .finish_non_exhaustive()
    }
}

impl<T> Guarded<T> {
    pub fn new(inner: T, limits: &ServerLimits) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle: limits.idle_timeout,
            send_window: limits.send_window,
            min_send_bytes: limits.min_send_bytes,
            last_activity: now,
            idle_timer: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            window_start: now,
            window_bytes: 0,
            blocked: false,
            send_timer: Box::pin(tokio::time::sleep_until(now + limits.send_window)),
        }
    }

    /// Polls the idle deadline (re-armed from the last activity): `Err` once it has passed.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let deadline = self.last_activity + self.idle;
            if self.idle_timer.deadline() != deadline {
                self.idle_timer.as_mut().reset(deadline);
            }
            match self.idle_timer.as_mut().poll(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(()) if self.last_activity + self.idle <= Instant::now() => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection was idle too long",
                    ));
                }
                Poll::Ready(()) => continue,
            }
        }
    }

    /// Closes the send window if it is over: `Err` if the peer was too slow in it.
    fn roll_window(&mut self, now: Instant) -> io::Result<()> {
        if now < self.window_start + self.send_window {
            return Ok(());
        }
        if self.blocked && self.window_bytes < self.min_send_bytes {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client reads too slowly",
            ));
        }
        self.window_start = now;
        self.window_bytes = 0;
        self.blocked = false;
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                this.poll_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let now = Instant::now();
        this.roll_window(now)?;
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                this.last_activity = now;
                this.window_bytes += n as u64;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.blocked = true;
                // Woken at the window's end even if the peer never reads again.
                let end = this.window_start + this.send_window;
                if this.send_timer.deadline() != end {
                    this.send_timer.as_mut().reset(end);
                }
                if this.send_timer.as_mut().poll(cx).is_ready() {
                    this.roll_window(Instant::now())?;
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The listener's address as clients should use it when no public URL is configured.
pub fn default_public_url(local: SocketAddr) -> String {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, local.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(idle: u64, window: u64, min: u64) -> ServerLimits {
        ServerLimits {
            max_connections: 8,
            max_connections_per_ip: 8,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(idle),
            min_send_bytes: min,
            send_window: Duration::from_secs(window),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_peer_is_cut_off_after_the_idle_time() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(ours, &limits(30, 10, 1));
        let mut buf = [0u8; 16];
        let started = Instant::now();
        let error = guarded.read(&mut buf).await.expect_err("idle forever");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_a_byte_a_second_is_cut_off() {
        // A 64-byte pipe: writes wait on the peer as soon as it stops reading.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guarded = Guarded::new(ours, &limits(600, 10, 1024));
        tokio::spawn(async move {
            let mut byte = [0u8; 1];
            while theirs.read(&mut byte).await.is_ok_and(|n| n > 0) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        let data = vec![7u8; 1 << 20];
        let error = guarded.write_all(&data).await.expect_err("held forever");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() <= Duration::from_secs(21),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_keeps_up_is_served_however_long_it_takes() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let mut guarded = Guarded::new(ours, &limits(5, 10, 1024));
        let reader = tokio::spawn(async move {
            let mut total = 0usize;
            let mut buf = [0u8; 4096];
            loop {
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
                // 4 KiB a second: slow, but well above 1 KiB per 10 s.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let data = vec![7u8; 200 * 1024];
        guarded
            .write_all(&data)
            .await
            .expect("a steady reader is served");
        guarded.shutdown().await.expect("shutdown");
        drop(guarded);
        assert_eq!(reader.await.expect("reader"), data.len());
    }
}
