//! Progress for long work: a spinner or bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressStyle};

/// How often a non-terminal run logs that work is still going on.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// One long step. Dropping it ends the display.
pub struct Activity {
    bar: Option<ProgressBar>,
    heartbeat: Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>,
    done: Arc<AtomicU64>,
}

impl Activity {
    /// A step of unknown length: shows the message and the elapsed time.
    pub fn spinner(message: String) -> Self {
        Self::start(message, None)
    }

    /// A step over bytes: shows bytes done and the rate, and with a known `total` the time left.
    pub fn bytes(message: String, total: Option<u64>) -> Self {
        Self::start(message, Some(total))
    }

    /// `total`: `None` for a step of unknown kind, `Some(None)` for bytes of unknown count.
    fn start(message: String, total: Option<Option<u64>>) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(None) => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg} {bytes} {bytes_per_sec} ({elapsed})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
                Some(Some(total)) => ProgressBar::new(total).with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(200));
            return Self {
                bar: Some(bar),
                heartbeat: None,
                done,
            };
        }
        tracing::info!("{message}");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, done) = (stop.clone(), done.clone());
            let started = Instant::now();
            thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(200));
                    if last.elapsed() < HEARTBEAT {
                        continue;
                    }
                    last = Instant::now();
                    let elapsed = HumanDuration(started.elapsed());
                    let n = HumanBytes(done.load(Ordering::Relaxed));
                    match total {
                        Some(Some(total)) => {
                            tracing::info!(
                                "{message}: {n} of {} after {elapsed}",
                                HumanBytes(total)
                            );
                        }
                        Some(None) => tracing::info!("{message}: {n} after {elapsed}"),
                        None => tracing::info!("{message}: still running after {elapsed}"),
                    }
                }
            })
        };
        Self {
            bar: None,
            heartbeat: Some((stop, handle)),
            done,
        }
    }

    /// Adds `n` to the bytes done.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some((stop, handle)) = self.heartbeat.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}
