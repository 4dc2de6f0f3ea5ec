//! Shutdown on SIGTERM and SIGINT through a cancellation token.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT (Ctrl-C); a second signal exits at once.
pub fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing in-flight work (signal again to exit now)");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting immediately");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One step of a daemon's stop: waits for `work` at most `limit`, then goes on (logging what
/// was left), so a stop finishes in bounded time whatever is in flight. Daemons stop in a fixed
/// order: the public side first, then background work, then the status endpoints.
pub async fn stop_step(name: &str, limit: std::time::Duration, work: impl Future<Output = ()>) {
    let started = std::time::Instant::now();
    match tokio::time::timeout(limit, work).await {
        Ok(()) => tracing::info!(step = name, took = ?started.elapsed(), "stopped"),
        Err(_) => tracing::warn!(
            step = name,
            ?limit,
            "did not stop in time; leaving it (its state is on disk and resumes at the next start)"
        ),
    }
}
