//! Pulling a deal's data over HTTP(S) into staging: resumes with Range where the last attempt
//! stopped, restarts a transfer that stalls, refuses data that is not the declared size, and
//! fsyncs before it reports success.

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
    stall: Duration,
    mut progress: impl FnMut(u64),
) -> Result<(), TransferError> {
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
    loop {
        let chunk = match tokio::time::timeout(stall, response.chunk()).await {
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
