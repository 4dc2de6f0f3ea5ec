//! Pulling a deal's data over HTTP(S) into staging: resumes with Range where the last attempt
//! stopped, restarts a transfer that stalls or runs slower than the minimum rate (a slow
//! sender cannot hold a transfer slot), refuses data that is not the declared size, and
//! fsyncs before it reports success. The client (see [`super::guard`]) reaches only public
//! addresses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use tokio::io::AsyncWriteExt;

/// How a transfer attempt ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Worth another attempt (a network error, a stall, a server error).
    #[error("{0}")]
    Retry(String),
    /// Will not get better (wrong size, the URL refuses us).
    #[error("{0}")]
    Fatal(String),
}

/// How long an attempt may go without data, and how fast it must go.
#[derive(Debug, Clone)]
pub struct Limits {
    /// No byte for this long restarts the attempt.
    pub stall: Duration,
    /// Fewer bytes than this per second, averaged over `rate_window`, ends the attempt.
    pub min_bytes_per_sec: u64,
    pub rate_window: Duration,
}

/// Checks the pace of a transfer one window at a time.
#[derive(Debug)]
pub struct RateCheck {
    min_bytes_per_sec: u64,
    window: Duration,
    started: tokio::time::Instant,
    bytes: u64,
}

impl RateCheck {
    pub fn new(limits: &Limits) -> Self {
        Self {
            min_bytes_per_sec: limits.min_bytes_per_sec,
            window: limits.rate_window,
            started: tokio::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes; an error when a whole window passed below the minimum rate.
    pub fn add(&mut self, n: u64) -> Result<(), String> {
        self.bytes = self.bytes.saturating_add(n);
        let elapsed = self.started.elapsed();
        if elapsed < self.window || self.window.is_zero() {
            return Ok(());
        }
        let rate = self.bytes as f64 / elapsed.as_secs_f64();
        if rate < self.min_bytes_per_sec as f64 {
            return Err(format!(
                "the sender is slower than the minimum rate: {rate:.0} bytes/s over {elapsed:.0?}, at least {} bytes/s needed ([deals] min_transfer_bytes_per_sec)",
                self.min_bytes_per_sec
            ));
        }
        self.started = tokio::time::Instant::now();
        self.bytes = 0;
        Ok(())
    }
}

/// The HTTP request that fetches a deal's data, from `Transfer.Params`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpSource {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Builds a request with the client's headers.
fn request(client: &reqwest::Client, source: &HttpSource) -> reqwest::RequestBuilder {
    let mut request = client.get(&source.url);
    for (name, value) in &source.headers {
        request = request.header(name, value);
    }
    request
}

/// A quick look before accepting a deal: the URL answers, and says the size the deal declares
/// when it says one at all.
pub async fn probe(client: &reqwest::Client, source: &HttpSource, size: u64) -> Result<(), String> {
    let response = tokio::time::timeout(
        Duration::from_secs(15),
        request(client, source).header(RANGE, "bytes=0-0").send(),
    )
    .await
    .map_err(|_| format!("the transfer URL {} did not answer within 15 s", source.url))?
    .map_err(|e| {
        format!(
            "the transfer URL {} is unreachable: {}",
            source.url,
            error_chain(&e)
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "the transfer URL {} answered {status}; the data must be downloadable with the given headers",
            source.url
        ));
    }
    if let Some(total) = advertised_total(&response)
        && total != size
    {
        return Err(format!(
            "transfer size mismatch: the URL serves {total} bytes but the deal's Transfer.Size is {size}"
        ));
    }
    Ok(())
}

/// The whole resource's size as the server states it: Content-Range's total for 206, else
/// Content-Length for 200.
fn advertised_total(response: &reqwest::Response) -> Option<u64> {
    let headers = response.headers();
    if response.status() == StatusCode::PARTIAL_CONTENT {
        let range = headers.get(CONTENT_RANGE)?.to_str().ok()?;
        range.rsplit('/').next()?.trim().parse().ok()
    } else {
        headers
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// One attempt: continues `path` from its current length to `size` bytes. `progress` gets the
/// bytes held after every chunk.
pub async fn pull_once(
    client: &reqwest::Client,
    source: &HttpSource,
    path: &Path,
    size: u64,
    limits: &Limits,
    mut progress: impl FnMut(u64),
) -> Result<(), TransferError> {
    let stall = limits.stall;
    let mut have = match tokio::fs::metadata(path).await {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    if have > size {
        // Never happens unless the file was tampered with; start over.
        tokio::fs::remove_file(path).await.map_err(io_fatal)?;
        have = 0;
    }
    if have == size {
        return Ok(());
    }
    let mut req = request(client, source);
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
    }
    let response = tokio::time::timeout(stall, req.send())
        .await
        .map_err(|_| {
            TransferError::Retry(format!("no answer from {} within {stall:?}", source.url))
        })?
        .map_err(|e| {
            TransferError::Retry(format!(
                "could not reach {}: {}",
                source.url,
                error_chain(&e)
            ))
        })?;
    let status = response.status();
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(io_fatal)?;
    match status {
        StatusCode::PARTIAL_CONTENT if have > 0 => {
            let start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if start != Some(have) {
                // Not the bytes asked for: start over rather than splice wrong data.
                file.set_len(0).await.map_err(io_fatal)?;
                return Err(TransferError::Retry(format!(
                    "{} answered Range bytes={have}- with Content-Range starting at {start:?}; starting the transfer over",
                    source.url
                )));
            }
        }
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
            if have > 0 {
                tracing::info!(url = %source.url, "the server ignored Range; starting the transfer over");
                file.set_len(0).await.map_err(io_fatal)?;
                have = 0;
            }
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            return Err(TransferError::Retry(format!("{} answered {s}", source.url)));
        }
        s => {
            return Err(TransferError::Fatal(format!(
                "{} answered {s}: the data cannot be downloaded with the deal's URL and headers",
                source.url
            )));
        }
    }
    if let Some(total) = advertised_total(&response)
        && total != size
    {
        return Err(TransferError::Fatal(format!(
            "transfer size mismatch: the URL serves {total} bytes but the deal's Transfer.Size is {size}"
        )));
    }
    let mut response = response;
    let mut pace = RateCheck::new(limits);
    loop {
        // A chunk arriving, or the end of the rate window, whichever comes first: a sender that
        // trickles a byte now and then is measured too.
        let wait = stall.min(limits.rate_window.max(Duration::from_millis(100)));
        let chunk = match tokio::time::timeout(wait, response.chunk()).await {
            Err(_) if wait < stall => {
                if let Err(why) = pace.add(0) {
                    file.sync_data().await.map_err(io_fatal)?;
                    return Err(TransferError::Retry(why));
                }
                continue;
            }
            Err(_) => {
                file.sync_data().await.map_err(io_fatal)?;
                return Err(TransferError::Retry(format!(
                    "the transfer stalled: nothing received for {stall:?} at byte {have}"
                )));
            }
            Ok(Err(e)) => {
                file.sync_data().await.map_err(io_fatal)?;
                return Err(TransferError::Retry(format!(
                    "the transfer broke at byte {have}: {}",
                    error_chain(&e)
                )));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if have + chunk.len() as u64 > size {
            return Err(TransferError::Fatal(format!(
                "transfer size mismatch: the URL sent more than the deal's Transfer.Size of {size} bytes"
            )));
        }
        file.write_all(&chunk).await.map_err(io_fatal)?;
        have += chunk.len() as u64;
        progress(have);
        if let Err(why) = pace.add(chunk.len() as u64) {
            file.sync_data().await.map_err(io_fatal)?;
            return Err(TransferError::Retry(why));
        }
    }
    file.sync_all().await.map_err(io_fatal)?;
    if have < size {
        return Err(TransferError::Retry(format!(
            "the server ended the transfer at byte {have} of {size}"
        )));
    }
    Ok(())
}

fn io_fatal(e: std::io::Error) -> TransferError {
    TransferError::Fatal(format!("write to staging: {e}"))
}

/// An error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sender_below_the_minimum_rate_is_cut_off_after_a_window() {
        let limits = Limits {
            stall: Duration::from_secs(60),
            min_bytes_per_sec: 1000,
            rate_window: Duration::from_secs(10),
        };
        let mut pace = RateCheck::new(&limits);
        // 9,000 bytes in the first 10 s window: under 1,000 bytes/s.
        pace.add(4000).expect("inside the window");
        tokio::time::advance(Duration::from_secs(10)).await;
        let error = pace.add(5000).expect_err("below the rate");
        assert!(error.contains("minimum rate"), "{error}");
        // A fast sender passes window after window.
        let mut pace = RateCheck::new(&limits);
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(10)).await;
            pace.add(20_000).expect("fast enough");
        }
    }
}
