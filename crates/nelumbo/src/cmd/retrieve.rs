//! `nelumbo client retrieve`: gets data back from a provider over HTTP and trusts nothing it
//! sends. The provider's HTTP address comes from `/fil/retrieval/transports/1.0.0` on the
//! miner's peer (found on chain), unless `--url` names it.
//!
//! - A payload CID: `GET /ipfs/{cid}?format=car` (`dag-scope=all`); every block is checked
//!   against its CID, the DAG must be complete, and the UnixFS file (or directory) is written
//!   out.
//! - A piece CID (v1 or v2): `GET /piece/{cid}`; the piece commitment of the bytes must give
//!   the piece CID back, else nothing is kept.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use cid::Cid;
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};
use nelumbo_car::dag::{self, UnixFsType};
use nelumbo_markets_api::p2p::{Request, Response, request_once};

/// The provider's HTTP retrieval base URL, asked of its libp2p peer.
pub async fn http_base(
    swarm: &mut libp2p::Swarm<nelumbo_markets_api::p2p::MarketsBehaviour>,
    peer: PeerId,
    addrs: &[Multiaddr],
) -> anyhow::Result<String> {
    let response = request_once(swarm, peer, addrs, Request::Transports)
        .await
        .map_err(|e| anyhow::anyhow!("ask the provider how it serves retrievals: {e}"))?;
    let Response::Transports(transports) = response else {
        anyhow::bail!("the provider answered another protocol");
    };
    transports
        .protocols
        .iter()
        .filter(|p| p.name == "http")
        .flat_map(|p| p.addresses.iter())
        .filter_map(|bytes| Multiaddr::try_from(bytes.to_vec()).ok())
        .find_map(|addr| nelumbo_markets_api::wire::multiaddr_http_url(&addr))
        .with_context(|| {
            format!(
                "the provider serves no HTTP retrievals (it offers: {})",
                transports
                    .protocols
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .no_proxy()
        .build()?)
}

/// Sends `GET url`; a 503 or 429 with `Retry-After` (the provider is unsealing the data, or
/// busy) is waited out and asked again, for up to `patience` in all.
async fn get_patiently(
    url: &str,
    accept: Option<&str>,
    patience: std::time::Duration,
) -> anyhow::Result<reqwest::Response> {
    let client = http()?;
    let deadline = std::time::Instant::now() + patience;
    let mut waited = false;
    loop {
        let mut request = client.get(url);
        if let Some(accept) = accept {
            request = request.header(reqwest::header::ACCEPT, accept);
        }
        let response = match request.send().await {
            Ok(response) => response,
            // After a wait, a kept-alive connection may have been closed by the server as the
            // request went out: the failed connection has left the pool, so one more try
            // opens a fresh one. A GET is safe to send again.
            Err(e) if waited && !e.is_timeout() => {
                waited = false;
                eprintln!("the connection was closed while idle ({e}); asking again");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("GET {url}")),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let (true, Some(seconds)) = (
            status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            retry_after,
        ) {
            let wait = std::time::Duration::from_secs(seconds.clamp(1, 60));
            if std::time::Instant::now() + wait < deadline {
                let body = response.text().await.unwrap_or_default();
                eprintln!(
                    "the provider says {status}: {}; asking again in {} s",
                    body.trim(),
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                waited = true;
                continue;
            }
        }
        return check(response, &format!("GET {url}")).await;
    }
}

/// Says why a request failed, with the server's own words.
async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|s| format!(" (retry after {s} s)"))
        .unwrap_or_default();
    let body = response.text().await.unwrap_or_default();
    anyhow::bail!(
        "{what}: the provider answered {status}{retry}: {}",
        body.trim()
    )
}

fn progress(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bytes}/{total_bytes} {binary_bytes_per_sec} {wide_bar}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Streams `response`'s body into `file`, returning the bytes written.
async fn save(
    response: reqwest::Response,
    file: &mut std::fs::File,
    bar: &indicatif::ProgressBar,
    mut each: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut written = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the download was cut short")?;
        file.write_all(&chunk)?;
        each(&chunk)?;
        written += chunk.len() as u64;
        bar.set_position(written);
    }
    Ok(written)
}

/// A piece by piece CID, checked by its piece commitment, written to `out`.
pub async fn piece(
    base: &str,
    cid: &Cid,
    out: &Path,
    patience: std::time::Duration,
) -> anyhow::Result<u64> {
    let info = nelumbo_commp::parse_piece_cid(cid)?;
    let url = format!("{}/piece/{cid}", base.trim_end_matches('/'));
    let response = get_patiently(&url, None, patience).await?;
    let bar = progress(response.content_length(), "piece");
    let temp = out.with_extension("partial");
    let mut file =
        std::fs::File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
    let mut hasher = nelumbo_commp::CommPHasher::new();
    let written = save(response, &mut file, &bar, |chunk| Ok(hasher.update(chunk)?)).await;
    bar.finish_and_clear();
    let result = written.and_then(|written| {
        let digest = hasher.finish()?;
        let matches = match info.sizes {
            // v2 names the exact payload: its CID must come back.
            Some(_) => digest.cid_v2() == *cid,
            // v1 names only the root: the payload's commitment, padded to some piece size.
            None => (0u32..=40).any(|doublings| {
                digest
                    .piece_size
                    .bytes()
                    .checked_shl(doublings)
                    .and_then(|b| nelumbo_commp::PaddedPieceSize::new(b).ok())
                    .and_then(|to| {
                        nelumbo_commp::pad_commitment(&digest.commitment, digest.piece_size, to)
                    })
                    == Some(info.commitment)
            }),
        };
        anyhow::ensure!(
            matches,
            "the {written} bytes received do not hash to piece {cid} (their commitment is {}): nothing was kept",
            digest.cid_v1()
        );
        file.sync_all()?;
        Ok(written)
    });
    match result {
        Ok(written) => {
            std::fs::rename(&temp, out)?;
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// What a payload retrieval wrote.
#[derive(Debug)]
pub struct Retrieved {
    pub blocks: usize,
    pub car_bytes: u64,
    pub files: usize,
    pub bytes: u64,
}

/// A DAG by its root CID, as a CAR with every block checked, written out as files at `out`.
pub async fn payload(
    base: &str,
    root: &Cid,
    out: &Path,
    keep_car: Option<&Path>,
    patience: std::time::Duration,
) -> anyhow::Result<Retrieved> {
    let url = format!(
        "{}/ipfs/{root}?format=car&dag-scope=all",
        base.trim_end_matches('/')
    );
    let response = get_patiently(
        &url,
        Some("application/vnd.ipld.car; version=1; order=dfs; dups=n"),
        patience,
    )
    .await?;
    let (car_path, mut file) = car_file(out, keep_car)?;
    let bar = progress(None, "CAR");
    let car_bytes = save(response, &mut file, &bar, |_| Ok(())).await;
    bar.finish_and_clear();
    let result = car_bytes.and_then(|car_bytes| {
        let (blocks, files, bytes) = check_and_write(&mut file, root, out)?;
        Ok(Retrieved {
            blocks,
            car_bytes,
            files,
            bytes,
        })
    });
    if keep_car.is_none() || result.is_err() {
        let _ = std::fs::remove_file(&car_path);
    }
    result
}

/// The file a retrieval's CAR goes to: `keep_car`, or next to `out` (removed afterwards).
pub fn car_file(out: &Path, keep_car: Option<&Path>) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let path = match keep_car {
        Some(path) => path.to_path_buf(),
        None => out.with_extension("car.partial"),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    Ok((path, file))
}

/// Checks a CAR file whole (every block against its CID, the DAG under `root` complete) and
/// writes its UnixFS entity out: (blocks, files, bytes).
fn check_and_write(
    file: &mut std::fs::File,
    root: &Cid,
    out: &Path,
) -> anyhow::Result<(usize, usize, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let (blocks, index) = check_car(file, root)?;
    let (files, bytes) = write_out(file, &index, root, out, 0)?;
    Ok((blocks, files, bytes))
}

/// Writes out the UnixFS entity under `root` from a CAR `file` whose blocks the caller has
/// already checked against their CIDs, and whose DAG it has found complete; `index` says where
/// each block is. Returns (files, bytes).
pub fn write_checked(
    file: &mut std::fs::File,
    index: &Index,
    root: &Cid,
    out: &Path,
) -> anyhow::Result<(usize, u64)> {
    write_out(file, index, root, out, 0)
}

/// How deep a DAG is walked when written out (a balanced 1 TiB file is 4 levels deep).
const MAX_DEPTH: usize = 64;

/// Where each block of the CAR is: `(data offset, length)` by CID.
pub type Index = HashMap<Cid, (u64, u64)>;

/// Reads the CAR, checking every block against its CID, and checks that every block reachable
/// from `root` is there.
fn check_car(file: &mut std::fs::File, root: &Cid) -> anyhow::Result<(usize, Index)> {
    let mut reader = nelumbo_car::CarReader::new(std::io::BufReader::new(&mut *file))
        .context("the provider's answer is not a CAR")?;
    let mut index = Index::new();
    let mut links: Vec<(Cid, Vec<Cid>)> = Vec::new();
    while let Some((section, data)) = reader
        .next_block()
        .context("the CAR holds a block that does not match its CID, or is cut short")?
    {
        anyhow::ensure!(
            section.verified,
            "block {} uses a hash function this client cannot check",
            section.cid
        );
        links.push((
            section.cid,
            dag::links(&section.cid, &data).map_err(|e| anyhow::anyhow!("{}: {e}", section.cid))?,
        ));
        index.insert(section.cid, (section.data_offset, section.data_len));
    }
    let known: HashMap<Cid, Vec<Cid>> = links.into_iter().collect();
    let mut stack = vec![*root];
    let mut seen = std::collections::HashSet::new();
    while let Some(cid) = stack.pop() {
        if cid.hash().code() == nelumbo_car::codec::IDENTITY || !seen.insert(cid) {
            continue;
        }
        let children = known
            .get(&cid)
            .with_context(|| format!("the CAR lacks block {cid}: the DAG is incomplete"))?;
        stack.extend(children.iter().copied());
    }
    Ok((index.len(), index))
}

fn block(file: &mut std::fs::File, index: &Index, cid: &Cid) -> anyhow::Result<Vec<u8>> {
    if cid.hash().code() == nelumbo_car::codec::IDENTITY {
        return Ok(cid.hash().digest().to_vec());
    }
    let (offset, len) = *index
        .get(cid)
        .with_context(|| format!("the CAR lacks block {cid}"))?;
    let mut data = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut data)?;
    Ok(data)
}

/// Writes the UnixFS entity at `cid` to `out`: a file, or a directory of them. Returns the
/// files and bytes written.
fn write_out(
    file: &mut std::fs::File,
    index: &Index,
    cid: &Cid,
    out: &Path,
    depth: usize,
) -> anyhow::Result<(usize, u64)> {
    anyhow::ensure!(
        depth <= MAX_DEPTH,
        "the directory tree is deeper than {MAX_DEPTH} levels"
    );
    let data = block(file, index, cid)?;
    match cid.codec() {
        nelumbo_car::codec::RAW => {
            std::fs::write(out, &data)?;
            Ok((1, data.len() as u64))
        }
        nelumbo_car::codec::DAG_PB => {
            let (node, unixfs) = dag::decode_unixfs(&data)?;
            let kind = unixfs.as_ref().map(|u| u.kind);
            match kind {
                Some(UnixFsType::File | UnixFsType::Raw) => {
                    let mut target = std::fs::File::create(out)
                        .with_context(|| format!("create {}", out.display()))?;
                    let bytes = write_file(file, index, cid, &mut target, 0)?;
                    target.sync_all()?;
                    Ok((1, bytes))
                }
                Some(UnixFsType::Directory | UnixFsType::HamtShard) => {
                    std::fs::create_dir_all(out)?;
                    let mut entries = Vec::new();
                    directory_entries(file, index, &node, kind, &mut entries, 0)?;
                    let (mut files, mut bytes) = (0, 0);
                    for (name, child) in entries {
                        anyhow::ensure!(
                            !name.is_empty()
                                && name != "."
                                && name != ".."
                                && !name.contains('/')
                                && !name.contains('\0'),
                            "the directory holds an entry named {name:?}, which is not a safe file name"
                        );
                        let (f, b) = write_out(file, index, &child, &out.join(&name), depth + 1)?;
                        files += f;
                        bytes += b;
                    }
                    Ok((files, bytes))
                }
                other => anyhow::bail!(
                    "{cid} is UnixFS {other:?}: only files and directories are written out (keep the CAR with --car)"
                ),
            }
        }
        codec => anyhow::bail!(
            "{cid} is not UnixFS (codec {codec:#x}): keep the CAR with --car to use it"
        ),
    }
}

/// A directory's entries; a HAMT shard's from all its shards, prefixes taken off.
fn directory_entries(
    file: &mut std::fs::File,
    index: &Index,
    node: &dag::PbNode,
    kind: Option<UnixFsType>,
    out: &mut Vec<(String, Cid)>,
    depth: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        depth <= MAX_DEPTH,
        "the directory's shards nest deeper than {MAX_DEPTH}"
    );
    if kind != Some(UnixFsType::HamtShard) {
        for link in &node.links {
            out.push((link.name.clone().unwrap_or_default(), link.cid));
        }
        return Ok(());
    }
    let width = 2; // fanout 256, the only fanout writers use
    for link in &node.links {
        let name = link.name.clone().unwrap_or_default();
        if name.len() == width {
            let data = block(file, index, &link.cid)?;
            let (child, unixfs) = dag::decode_unixfs(&data)?;
            directory_entries(file, index, &child, unixfs.map(|u| u.kind), out, depth + 1)?;
        } else if name.len() > width {
            out.push((name[width..].to_string(), link.cid));
        }
    }
    Ok(())
}

/// A UnixFS file's bytes in order: each node's own data, then its children's.
fn write_file(
    file: &mut std::fs::File,
    index: &Index,
    cid: &Cid,
    target: &mut std::fs::File,
    depth: usize,
) -> anyhow::Result<u64> {
    anyhow::ensure!(
        depth <= MAX_DEPTH,
        "the file's DAG is deeper than {MAX_DEPTH} levels"
    );
    let data = block(file, index, cid)?;
    if cid.codec() == nelumbo_car::codec::RAW {
        target.write_all(&data)?;
        return Ok(data.len() as u64);
    }
    let (node, unixfs) = dag::decode_unixfs(&data)?;
    let mut written = 0u64;
    if let Some(bytes) = unixfs.and_then(|u| u.data) {
        target.write_all(&bytes)?;
        written += bytes.len() as u64;
    }
    for link in &node.links {
        written += write_file(file, index, &link.cid, target, depth + 1)?;
    }
    Ok(written)
}

/// `--out` by default: the CID, in the current directory.
pub fn default_out(cid: &Cid) -> PathBuf {
    PathBuf::from(cid.to_string())
}
