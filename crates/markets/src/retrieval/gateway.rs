//! `GET`/`HEAD /ipfs/{cid}[/{path}]`: the IPFS trustless gateway (ipfs/specs,
//! `http-gateways/trustless-gateway.md`). Raw blocks (`application/vnd.ipld.raw`) and CARs
//! (`application/vnd.ipld.car; version=1; order=dfs; dups=y|n`) only; never deserialised
//! content.
//!
//! A CAR request first resolves its path (through UnixFS directories, HAMT shards and dag-cbor
//! maps), so a missing root or path is a 404 before any byte is sent; then the terminal entity
//! streams in depth-first order as `dag-scope` and `entity-bytes` choose. Every block is checked
//! against its CID on the way out ([`super::blocks`]); a child block that cannot be had cuts the
//! stream short (the client sees an incomplete response, as the spec says), never a wrong block.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use nelumbo_car::dag::{self, UnixFsType};
use tokio_util::task::AbortOnDropHandle;

use super::blocks::BlockSource;
use super::reader::ReadError;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Car { dups: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Block,
    Entity,
    All,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Entity => "entity",
            Self::All => "all",
        }
    }
}

/// `entity-bytes=from:to`: inclusive, `to` `None` for `*`; negative values count from the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityBytes {
    pub from: i64,
    pub to: Option<i64>,
}

impl EntityBytes {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("entity-bytes={text:?} is not FROM:TO (integers, TO may be *)");
        let (from, to) = text.split_once(':').ok_or_else(bad)?;
        let from: i64 = from.parse().map_err(|_| bad())?;
        let to = match to {
            "*" => None,
            to => Some(to.parse::<i64>().map_err(|_| bad())?),
        };
        if let Some(to) = to
            && from >= 0
            && to >= 0
            && to < from
        {
            return Err(format!("entity-bytes={text:?}: TO is before FROM"));
        }
        Ok(Self { from, to })
    }

    /// The inclusive byte range of a file of `size` bytes, or `None` if it selects nothing.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        let size_i = i64::try_from(size).unwrap_or(i64::MAX);
        let from = if self.from < 0 {
            (size_i + self.from).max(0)
        } else {
            self.from
        };
        let to = match self.to {
            None => size_i - 1,
            Some(to) if to < 0 => size_i + to,
            Some(to) => to.min(size_i - 1),
        };
        if from > to || from >= size_i || to < 0 {
            return None;
        }
        Some((from as u64, to as u64))
    }
}

/// A parsed `/ipfs` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRequest {
    pub root: Cid,
    pub path: Vec<String>,
    pub format: Format,
    pub scope: Scope,
    pub bytes: Option<EntityBytes>,
    pub filename: Option<String>,
}

/// A refusal: status and a message that names the problem.
pub type Refusal = (StatusCode, String);

const RAW: &str = "application/vnd.ipld.raw";
const CAR: &str = "application/vnd.ipld.car";

/// Parses the CID, path, query and `Accept` of a request.
pub fn parse_request(
    cid: &str,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<GatewayRequest, Refusal> {
    let root: Cid = cid.parse().map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("{cid:?} is not a valid CID: {e}"),
        )
    })?;
    let path: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut format = match get("format") {
        Some("raw") => Some(Format::Raw),
        Some("car") => Some(Format::Car { dups: false }),
        Some(other) => {
            return Err((
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "format={other:?} is not served: this is a trustless gateway (format=raw or format=car)"
                ),
            ));
        }
        None => None,
    };
    if format.is_none() {
        format = accept(headers)?;
    }
    // `?format=car` with the CAR's parameters in Accept: take the parameters.
    if let Some(Format::Car { dups }) = &mut format
        && let Ok(Some(Format::Car { dups: accepted })) = accept(headers)
    {
        *dups = accepted;
    }
    if let Some(Format::Car { dups }) = &mut format {
        match get("car-dups") {
            Some("y") => *dups = true,
            Some("n") | None => {}
            Some(other) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("car-dups={other:?}: use y or n"),
                ));
            }
        }
        if let Some(version) = get("car-version")
            && version != "1"
        {
            return Err((
                StatusCode::NOT_ACCEPTABLE,
                format!("car-version={version:?}: only CARv1 is served"),
            ));
        }
    }
    let format = format.ok_or((
        StatusCode::BAD_REQUEST,
        format!(
            "say what to return: Accept: {RAW} or {CAR}, or ?format=raw or ?format=car (this gateway serves no deserialised content)"
        ),
    ))?;
    if format == Format::Raw && !path.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "a raw block is asked for by its CID alone: a path is allowed only with CAR responses"
                .into(),
        ));
    }
    let scope = match get("dag-scope") {
        None | Some("all") => Scope::All,
        Some("entity") => Scope::Entity,
        Some("block") => Scope::Block,
        Some(other) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("dag-scope={other:?}: use block, entity or all"),
            ));
        }
    };
    let bytes = get("entity-bytes")
        .map(EntityBytes::parse)
        .transpose()
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let filename = get("filename").map(str::to_string);
    if let Some(name) = &filename
        && (name.is_empty()
            || name.len() > 255
            || name
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\' || c == '/'))
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "filename= must be a plain file name".into(),
        ));
    }
    Ok(GatewayRequest {
        root,
        path,
        format,
        // entity-bytes implies the entity.
        scope: if bytes.is_some() {
            Scope::Entity
        } else {
            scope
        },
        bytes,
        filename,
    })
}

/// The first format of `Accept` this gateway serves; `Ok(None)` without an `Accept`.
fn accept(headers: &HeaderMap) -> Result<Option<Format>, Refusal> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    let mut refusal = None;
    // Only wildcards (`*/*`, what many HTTP clients send by default) choose nothing.
    let mut specific = false;
    for item in values.iter().flat_map(|v| v.split(',')) {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                )
            })
            .collect();
        let param = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        match media.as_str() {
            RAW => return Ok(Some(Format::Raw)),
            CAR => {
                if param("version").is_some_and(|v| v != "1") {
                    refusal = Some("only CAR version=1 is served");
                    continue;
                }
                if param("order").is_some_and(|o| o != "dfs" && o != "unk") {
                    refusal = Some("CAR order must be dfs or unk");
                    continue;
                }
                return Ok(Some(Format::Car {
                    dups: param("dups") == Some("y"),
                }));
            }
            "*/*" | "application/*" | "" => {}
            _ => specific = true,
        }
    }
    if !specific && refusal.is_none() {
        return Ok(None);
    }
    Err((
        StatusCode::NOT_ACCEPTABLE,
        match refusal {
            Some(why) => format!("{why}; this gateway serves {RAW} and {CAR}; version=1"),
            None => format!(
                "this trustless gateway serves {RAW} and {CAR} only (Accept or ?format=raw|car)"
            ),
        },
    ))
}

/// Where a path led: the blocks on the way (root first, the terminal last), the CIDs each path
/// segment resolved to, and the terminal.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub blocks: Vec<(Cid, Bytes)>,
    pub roots: Vec<Cid>,
    pub terminal: Cid,
    /// The path ended inside the terminal dag-cbor block (not on a link).
    pub inside_block: bool,
}

/// Why a path could not be resolved.
#[derive(Debug)]
pub enum ResolveError {
    NotFound(String),
    Read(ReadError),
}

impl From<ReadError> for ResolveError {
    fn from(e: ReadError) -> Self {
        Self::Read(e)
    }
}

async fn need(source: &BlockSource, cid: &Cid, what: &str) -> Result<Bytes, ResolveError> {
    source
        .get(cid)
        .await?
        .ok_or_else(|| ResolveError::NotFound(format!("{what} {cid} is not held here")))
}

/// Resolves `path` from `root`, loading (and checking) every block on the way.
pub async fn resolve(
    source: &BlockSource,
    root: &Cid,
    path: &[String],
) -> Result<Resolved, ResolveError> {
    let data = need(source, root, "the root block").await?;
    let mut resolved = Resolved {
        blocks: vec![(*root, data)],
        roots: vec![*root],
        terminal: *root,
        inside_block: false,
    };
    let mut i = 0;
    while i < path.len() {
        let (cid, data) = resolved.blocks.last().cloned().expect("the root is there");
        let segment = &path[i];
        let not_found =
            |why: String| ResolveError::NotFound(format!("/{}: {why}", path[..=i].join("/")));
        let next = match cid.codec() {
            nelumbo_car::codec::DAG_PB => {
                let (node, unixfs) =
                    dag::decode_unixfs(&data).map_err(|e| not_found(e.to_string()))?;
                match unixfs.as_ref().map(|u| u.kind) {
                    Some(UnixFsType::Directory) => node
                        .links
                        .iter()
                        .find(|l| l.name.as_deref() == Some(segment))
                        .map(|l| l.cid)
                        .ok_or_else(|| {
                            not_found(format!("no entry {segment:?} in the directory"))
                        })?,
                    Some(UnixFsType::HamtShard) => {
                        let unixfs = unixfs.expect("a shard");
                        hamt_find(source, &mut resolved, node, &unixfs, segment)
                            .await?
                            .ok_or_else(|| {
                                not_found(format!("no entry {segment:?} in the directory"))
                            })?
                    }
                    _ => return Err(not_found("not a directory".into())),
                }
            }
            nelumbo_car::codec::DAG_CBOR => {
                let value = dag::decode_cbor(&data).map_err(|e| not_found(e.to_string()))?;
                let mut value = &value;
                let link = loop {
                    let segment = &path[i];
                    value = match value {
                        Ipld::Map(map) => map.get(segment.as_str()),
                        Ipld::List(list) => segment.parse::<usize>().ok().and_then(|n| list.get(n)),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        ResolveError::NotFound(format!(
                            "/{}: no such field in the dag-cbor block {cid}",
                            path[..=i].join("/")
                        ))
                    })?;
                    i += 1;
                    if let Ipld::Link(link) = value {
                        break *link;
                    }
                    if i == path.len() {
                        // The path ends inside this block.
                        resolved.inside_block = true;
                        return Ok(resolved);
                    }
                };
                let data = need(source, &link, "a block on the path").await?;
                resolved.blocks.push((link, data));
                resolved.roots.push(link);
                resolved.terminal = link;
                continue;
            }
            _ => return Err(not_found("a raw block has no paths".into())),
        };
        let data = need(source, &next, "a block on the path").await?;
        resolved.blocks.push((next, data));
        resolved.roots.push(next);
        resolved.terminal = next;
        i += 1;
    }
    Ok(resolved)
}

/// Finds `name` in a HAMT-sharded directory by its hash, loading only the shards on the way
/// (pushed onto `resolved.blocks`, as the spec wants them in the response).
async fn hamt_find(
    source: &BlockSource,
    resolved: &mut Resolved,
    mut node: dag::PbNode,
    unixfs: &dag::UnixFs,
    name: &str,
) -> Result<Option<Cid>, ResolveError> {
    let fanout = unixfs.fanout.unwrap_or(256);
    if unixfs.hash_type != Some(0x22) {
        return Err(ResolveError::NotFound(format!(
            "the sharded directory uses hash function {:?}, not murmur3-x64-64",
            unixfs.hash_type
        )));
    }
    let width = dag::hamt_prefix_len(fanout);
    let hash = dag::hamt_hash(name.as_bytes());
    for depth in 0.. {
        let Some(index) = dag::hamt_index(&hash, depth, fanout) else {
            return Ok(None);
        };
        let prefix = format!("{index:0width$X}");
        let Some(link) = node
            .links
            .iter()
            .find(|l| l.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
        else {
            return Ok(None);
        };
        let (link_cid, link_name) = (link.cid, link.name.clone().unwrap_or_default());
        if link_name.len() == width {
            let data = need(source, &link_cid, "a directory shard").await?;
            node = dag::PbNode::decode(&data)
                .map_err(|e| ResolveError::NotFound(format!("a directory shard: {e}")))?;
            resolved.blocks.push((link_cid, data));
            continue;
        }
        return Ok(node
            .links
            .iter()
            .find(|l| l.name.as_deref() == Some(&format!("{prefix}{name}")))
            .map(|l| l.cid));
    }
    Ok(None)
}

/// Limits on one CAR response.
#[derive(Debug, Clone, Copy)]
pub struct CarLimits {
    pub max_blocks: u64,
    pub max_bytes: u64,
}

/// Writes the CAR of a resolved request into `out`: the header, the path's blocks, then the
/// terminal entity as `scope` and `bytes` choose. Returns the blocks written; an `Err` means the
/// stream must be cut short (a missing or bad child block, a limit).
pub async fn write_car(
    source: &BlockSource,
    request: &GatewayRequest,
    resolved: Resolved,
    limits: CarLimits,
    out: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<u64, String> {
    let Format::Car { dups } = request.format else {
        return Err("not a CAR request".into());
    };
    let mut writer = CarOut {
        out,
        seen: HashSet::new(),
        dups,
        blocks: 0,
        bytes: 0,
        limits,
    };
    writer.header(&resolved.terminal).await?;
    let terminal_data = resolved
        .blocks
        .last()
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    let path_len = resolved.blocks.len();
    for (cid, data) in resolved.blocks.iter().take(path_len - 1) {
        writer.block(cid, data).await?;
    }
    let terminal = resolved.terminal;
    match request.scope {
        Scope::Block => {
            writer.block(&terminal, &terminal_data).await?;
        }
        Scope::All => writer.all(source, terminal, Some(terminal_data)).await?,
        Scope::Entity => {
            writer
                .entity(source, terminal, terminal_data, request.bytes)
                .await?
        }
    }
    Ok(writer.blocks)
}

struct CarOut<'a> {
    out: &'a tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    seen: HashSet<Cid>,
    dups: bool,
    blocks: u64,
    bytes: u64,
    limits: CarLimits,
}

impl CarOut<'_> {
    async fn send(&mut self, bytes: Bytes) -> Result<(), String> {
        self.bytes += bytes.len() as u64;
        self.out
            .send(Ok(bytes))
            .await
            .map_err(|_| "the client went away".to_string())
    }

    async fn header(&mut self, root: &Cid) -> Result<(), String> {
        let mut header = Vec::new();
        nelumbo_car::CarWriter::new(&mut header, &[*root]).map_err(|e| e.to_string())?;
        self.send(Bytes::from(header)).await
    }

    /// Writes a block unless it is an identity CID or (with dups=n) written already; `false`
    /// when it was skipped as a duplicate. The block's bytes go out as they are (no copy).
    async fn block(&mut self, cid: &Cid, data: &Bytes) -> Result<bool, String> {
        if cid.hash().code() == nelumbo_car::codec::IDENTITY {
            return Ok(true);
        }
        if !self.seen.insert(*cid) && !self.dups {
            return Ok(false);
        }
        if self.blocks >= self.limits.max_blocks
            || self.bytes + data.len() as u64 > self.limits.max_bytes
        {
            return Err(format!(
                "the response reached its limit ({} blocks or {} bytes, [retrieval] max_car_blocks/max_car_bytes)",
                self.limits.max_blocks, self.limits.max_bytes
            ));
        }
        let cid_bytes = cid.to_bytes();
        let mut head = Vec::with_capacity(10 + cid_bytes.len());
        write_uvarint(&mut head, (cid_bytes.len() + data.len()) as u64);
        head.extend_from_slice(&cid_bytes);
        self.blocks += 1;
        self.send(Bytes::from(head)).await?;
        self.send(data.clone()).await?;
        Ok(true)
    }

    /// The whole DAG under `root`, depth-first, links in order.
    async fn all(
        &mut self,
        source: &BlockSource,
        root: Cid,
        root_data: Option<Bytes>,
    ) -> Result<(), String> {
        let mut stack = vec![Next::new(root, root_data.map(Ahead::Ready), 0)];
        while let Some(next) = stack.pop() {
            if !self.dups && self.seen.contains(&next.cid) {
                continue;
            }
            let cid = next.cid;
            let data = next.take(source).await?;
            if !self.block(&cid, &data).await? {
                continue;
            }
            let links = dag::links(&cid, &data).unwrap_or_default();
            stack.extend(links.into_iter().rev().map(|c| Next::new(c, None, 0)));
            read_ahead(source, &mut stack);
        }
        Ok(())
    }

    async fn entity(
        &mut self,
        source: &BlockSource,
        cid: Cid,
        data: Bytes,
        bytes: Option<EntityBytes>,
    ) -> Result<(), String> {
        if cid.codec() != nelumbo_car::codec::DAG_PB {
            // A raw block is a whole file; any other codec's entity is its block.
            self.block(&cid, &data).await?;
            return Ok(());
        }
        let (node, unixfs) = match dag::decode_unixfs(&data) {
            Ok(decoded) => decoded,
            Err(_) => {
                self.block(&cid, &data).await?;
                return Ok(());
            }
        };
        match unixfs.as_ref().map(|u| u.kind) {
            Some(UnixFsType::File | UnixFsType::Raw) => {
                let unixfs = unixfs.expect("a file");
                let size = unixfs.filesize.unwrap_or_else(|| file_size(&unixfs));
                let range = match bytes {
                    None => Some((0, u64::MAX)),
                    Some(bytes) => bytes.resolve(size),
                };
                self.file(source, cid, data, range).await
            }
            Some(UnixFsType::HamtShard) => {
                let width = dag::hamt_prefix_len(unixfs.and_then(|u| u.fanout).unwrap_or(256));
                self.block(&cid, &data).await?;
                // Every shard, depth-first; no entries.
                let mut stack: Vec<Cid> = shard_links(&node, width);
                stack.reverse();
                while let Some(shard) = stack.pop() {
                    let data = load(source, shard).await?;
                    if !self.block(&shard, &data).await? {
                        continue;
                    }
                    if let Ok(node) = dag::PbNode::decode(&data) {
                        stack.extend(shard_links(&node, width).into_iter().rev());
                    }
                }
                Ok(())
            }
            _ => {
                self.block(&cid, &data).await?;
                Ok(())
            }
        }
    }

    /// A UnixFS file's blocks that hold bytes of the inclusive `range` (all for `(0, MAX)`),
    /// depth-first; the root always.
    async fn file(
        &mut self,
        source: &BlockSource,
        root: Cid,
        root_data: Bytes,
        range: Option<(u64, u64)>,
    ) -> Result<(), String> {
        self.block(&root, &root_data).await?;
        let Some((from, to)) = range else {
            return Ok(());
        };
        let mut stack = vec![Next::new(root, Some(Ahead::Ready(root_data)), 0)];
        let mut first = true;
        while let Some(next) = stack.pop() {
            // The root was sent above.
            let is_root = std::mem::replace(&mut first, false);
            let (cid, start) = (next.cid, next.start);
            let data = next.take(source).await?;
            if !is_root && !self.block(&cid, &data).await? {
                continue;
            }
            if cid.codec() != nelumbo_car::codec::DAG_PB {
                continue;
            }
            let Ok((node, Some(unixfs))) = dag::decode_unixfs(&data) else {
                continue;
            };
            let sizes = &unixfs.blocksizes;
            let mut offset = start + unixfs.data.as_ref().map_or(0, |d| d.len() as u64);
            let mut children = Vec::new();
            for (i, link) in node.links.iter().enumerate() {
                let size = sizes.get(i).copied();
                let (child_start, child_end) = match size {
                    Some(size) => (offset, offset + size),
                    // No sizes recorded: the child cannot be placed, so it is included.
                    None => (from, to.saturating_add(1)),
                };
                if child_start <= to && child_end > from && child_end > child_start {
                    children.push(Next::new(link.cid, None, child_start));
                }
                offset += size.unwrap_or(0);
            }
            stack.extend(children.into_iter().rev());
            read_ahead(source, &mut stack);
        }
        Ok(())
    }
}

/// How many of a walk's next blocks are read (and checked against their CIDs) ahead of the one
/// being sent, on the runtime's other threads: checking is SHA-256 over every byte, and one
/// core alone cannot keep up with a fast client.
const READ_AHEAD: usize = 8;

/// A block the walk will send: its CID, its bytes once read (or the read under way), and for a
/// file's blocks the file offset where it starts.
struct Next {
    cid: Cid,
    ahead: Option<Ahead>,
    start: u64,
}

enum Ahead {
    Ready(Bytes),
    /// Aborted when dropped: a client that goes away stops the reads made for it.
    Reading(AbortOnDropHandle<Result<Bytes, String>>),
}

impl Next {
    fn new(cid: Cid, ahead: Option<Ahead>, start: u64) -> Self {
        Self { cid, ahead, start }
    }

    async fn take(self, source: &BlockSource) -> Result<Bytes, String> {
        match self.ahead {
            Some(Ahead::Ready(data)) => Ok(data),
            Some(Ahead::Reading(read)) => read
                .await
                .map_err(|e| format!("block {}: the read stopped: {e}", self.cid))?,
            None => load(source, self.cid).await,
        }
    }
}

/// Starts reading the blocks at the top of `stack` (the next to be sent) that are not read yet.
fn read_ahead(source: &BlockSource, stack: &mut [Next]) {
    let from = stack.len().saturating_sub(READ_AHEAD);
    for next in &mut stack[from..] {
        if next.ahead.is_none() {
            let (source, cid) = (source.clone(), next.cid);
            next.ahead = Some(Ahead::Reading(AbortOnDropHandle::new(tokio::spawn(
                async move { load(&source, cid).await },
            ))));
        }
    }
}

async fn load(source: &BlockSource, cid: Cid) -> Result<Bytes, String> {
    match source.get(&cid).await {
        Ok(Some(data)) => Ok(data),
        Ok(None) => Err(format!("block {cid} is not held here")),
        Err(e) => Err(format!("block {cid}: {e}")),
    }
}

fn shard_links(node: &dag::PbNode, width: usize) -> Vec<Cid> {
    node.links
        .iter()
        .filter(|l| l.name.as_ref().is_some_and(|n| n.len() == width))
        .map(|l| l.cid)
        .collect()
}

fn file_size(unixfs: &dag::UnixFs) -> u64 {
    unixfs.data.as_ref().map_or(0, |d| d.len() as u64) + unixfs.blocksizes.iter().sum::<u64>()
}

fn write_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The headers every `/ipfs` answer carries.
pub fn common_headers(headers: &mut HeaderMap, request_path: &str, roots: &[Cid]) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=29030400, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(request_path) {
        headers.insert("x-ipfs-path", value);
    }
    let roots: Vec<String> = roots.iter().map(|c| c.to_string()).collect();
    if let Ok(value) = HeaderValue::from_str(&roots.join(",")) {
        headers.insert("x-ipfs-roots", value);
    }
}

/// The `Etag` of a CAR answer: it varies with everything that changes the bytes.
pub fn car_etag(request: &GatewayRequest, terminal: &Cid) -> String {
    use sha2::Digest;
    let key = format!(
        "{}|{}|{}|{:?}|{:?}",
        request.root,
        request.path.join("/"),
        request.scope.name(),
        request.bytes,
        request.format
    );
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("\"{terminal}.car.{}\"", hex::encode(&digest[..6]))
}

/// A response with a plain-text body naming the problem.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = Response::new(Body::from(format!("{}\n", message.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        path: &str,
        query: &[(&str, &str)],
        accept: Option<&str>,
    ) -> Result<GatewayRequest, Refusal> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_str(accept).expect("header"),
            );
        }
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_request(
            "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i",
            path,
            &query,
            &headers,
        )
    }

    #[test]
    fn format_comes_from_the_query_before_accept() {
        let r = request("", &[("format", "raw")], Some(CAR)).expect("ok");
        assert_eq!(r.format, Format::Raw);
        let r = request(
            "",
            &[],
            Some("application/vnd.ipld.car; version=1; order=dfs; dups=y"),
        )
        .expect("ok");
        assert_eq!(r.format, Format::Car { dups: true });
        let r = request("", &[("format", "car")], Some("text/html")).expect("ok");
        assert_eq!(r.format, Format::Car { dups: false });
        let r = request("", &[], Some("text/html, application/vnd.ipld.raw;q=0.9")).expect("ok");
        assert_eq!(r.format, Format::Raw);
    }

    #[test]
    fn what_is_not_served_is_refused_with_the_right_status() {
        let status = |r: Result<GatewayRequest, Refusal>| r.expect_err("refused").0;
        assert_eq!(status(request("", &[], None)), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(request("", &[], Some("*/*"))),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(request("", &[], Some("text/html"))),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            status(request("", &[("format", "tar")], None)),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            status(request(
                "",
                &[],
                Some("application/vnd.ipld.car; version=2")
            )),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            status(request("a/b", &[("format", "raw")], None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(request(
                "",
                &[("format", "car"), ("dag-scope", "most")],
                None
            )),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(request(
                "",
                &[("format", "car"), ("entity-bytes", "5:2")],
                None
            )),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(request(
                "",
                &[("format", "car"), ("filename", "../x")],
                None
            )),
            StatusCode::BAD_REQUEST
        );
        let bad_cid = parse_request("bafyNOTACID", "", &[], &HeaderMap::new()).expect_err("bad");
        assert_eq!(bad_cid.0, StatusCode::BAD_REQUEST);
        assert!(bad_cid.1.contains("not a valid CID"), "{}", bad_cid.1);
    }

    #[test]
    fn entity_bytes_resolve_as_boxo_does() {
        // The 1026-byte file of the conformance fixtures.
        let r = |text: &str| EntityBytes::parse(text).expect("parse").resolve(1026);
        assert_eq!(r("0:*"), Some((0, 1025)));
        assert_eq!(r("512:*"), Some((512, 1025)));
        assert_eq!(r("512:1023"), Some((512, 1023)));
        assert_eq!(r("512:-256"), Some((512, 770)));
        assert_eq!(r("-5:*"), Some((1021, 1025)));
        assert_eq!(r("-9999:*"), Some((0, 1025)));
        assert_eq!(r("-9999:-3"), Some((0, 1023)));
        assert_eq!(r("0:0"), Some((0, 0)));
        assert_eq!(r("0:99999"), Some((0, 1025)));
        assert_eq!(r("2000:*"), None);
        assert!(EntityBytes::parse("a:b").is_err());
        assert!(EntityBytes::parse("5").is_err());
    }
}
