//! `nelumbo client retrieve --bitswap`: a DAG by its root CID over bitswap 1.2.0 from one
//! provider peer. Wants go out on one stream this side opens (want-block with send-dont-have, a
//! window of them at once); the provider answers on streams it opens (one or more messages on
//! each). Every block is checked
//! against the CID it was wanted as before it is kept, and its links are wanted in turn; the
//! blocks are written to a CAR file, from which the files are written out once every block
//! reachable from the root has come.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use cid::Cid;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId};
use nelumbo_markets_api::bitswap::{self, Entry, Message, PresenceType, WantType, Wantlist};
use nelumbo_markets_api::inbound::Inbound;
use tokio_util::task::AbortOnDropHandle;

use super::retrieve::Retrieved;

/// Wants outstanding at once.
const WINDOW: usize = 64;
/// With wants outstanding and nothing heard for this long, the wants are sent again; after
/// three silences the retrieval fails.
const SILENCE: Duration = Duration::from_secs(20);
/// A block the provider said it does not have (its piece may be being unsealed) is asked for
/// again after this long, until `patience` runs out.
const DONT_HAVE_RETRY: Duration = Duration::from_secs(10);

pub async fn fetch(
    mut swarm: libp2p::Swarm<nelumbo_markets_api::p2p::MarketsBehaviour>,
    peer: PeerId,
    addrs: &[Multiaddr],
    root: &Cid,
    out: &Path,
    keep_car: Option<&Path>,
    patience: Duration,
) -> anyhow::Result<Retrieved> {
    anyhow::ensure!(!addrs.is_empty(), "no address is known for peer {peer}");
    for addr in addrs {
        swarm.add_peer_address(peer, addr.clone());
    }
    let mut control = swarm.behaviour().stream.new_control();
    let mut answers = swarm
        .behaviour_mut()
        .bitswap
        .take()
        .context("the swarm's bitswap streams are taken")?;
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let _stop_driver = AbortOnDropHandle::new(driver);

    // Answers: each stream the provider opens carries one or more messages.
    let (sender, mut incoming) = tokio::sync::mpsc::channel::<Arrived>(64);
    let _stop_reader = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(Inbound {
            peer: from,
            mut stream,
            ..
        }) = answers.next().await
        {
            if from != peer {
                continue;
            }
            let sender = sender.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) =
                    bitswap::read_message(&mut stream, bitswap::MAX_MESSAGE_BYTES).await
                {
                    // Hashed here, on the stream's own task, so the main loop only looks up.
                    let hashed = message
                        .payload
                        .iter()
                        .map(|block| sha256_cid(&block.prefix, &block.data))
                        .collect();
                    if sender.send(Arrived { message, hashed }).await.is_err() {
                        break;
                    }
                }
            });
        }
    }));

    let mut wants = tokio::time::timeout(
        Duration::from_secs(30),
        control.open_stream(peer, bitswap::PROTOCOL_1_2_0),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!("the provider's peer {peer} did not open a bitswap stream in 30 s")
    })?
    .map_err(|e| anyhow::anyhow!("the provider's peer {peer} does not serve bitswap: {e}"))?;

    let (car_path, file) = super::retrieve::car_file(out, keep_car)?;
    let mut car = nelumbo_car::CarWriter::new(std::io::BufWriter::new(file), &[*root])?;

    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("bitswap {pos} blocks, {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let mut queue: VecDeque<Cid> = VecDeque::from([*root]);
    let mut seen: HashSet<Cid> = HashSet::from([*root]);
    let mut pending: HashMap<Cid, Instant> = HashMap::new();
    let mut retry: Vec<(Cid, Instant)> = Vec::new();
    let mut first_dont_have: HashMap<Cid, Instant> = HashMap::new();
    let mut index = super::retrieve::Index::new();
    let mut blocks = 0usize;
    let mut bytes = 0u64;
    let mut silences = 0;
    let result: anyhow::Result<()> = async {
        loop {
            // Blocks told DONT_HAVE whose wait is over go back in the queue.
            let now = Instant::now();
            retry.retain(|(cid, at)| {
                if *at <= now {
                    queue.push_back(*cid);
                    false
                } else {
                    true
                }
            });
            // Fill the window.
            let mut entries = Vec::new();
            while pending.len() < WINDOW {
                let Some(cid) = queue.pop_front() else { break };
                pending.insert(cid, Instant::now());
                entries.push(want(&cid));
            }
            if !entries.is_empty() {
                send(&mut wants, entries, false).await?;
            }
            if pending.is_empty() && retry.is_empty() {
                return Ok(());
            }
            let wait = retry
                .iter()
                .map(|(_, at)| at.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(SILENCE)
                .min(SILENCE);
            let Arrived { message, hashed } = match tokio::time::timeout(wait, incoming.recv()).await {
                Ok(Some(arrived)) => arrived,
                Ok(None) => anyhow::bail!("the provider's answers stopped"),
                Err(_) => {
                    if pending.is_empty() {
                        continue;
                    }
                    let quiet = pending.values().map(|at| at.elapsed()).min().unwrap_or_default();
                    if quiet < SILENCE {
                        continue;
                    }
                    silences += 1;
                    anyhow::ensure!(
                        silences < 3,
                        "the provider stopped answering ({} blocks still wanted, none came in {} s)",
                        pending.len(),
                        SILENCE.as_secs() * 3
                    );
                    // Ask again, the whole list.
                    let entries = pending.keys().map(want).collect();
                    send(&mut wants, entries, true).await?;
                    for at in pending.values_mut() {
                        *at = Instant::now();
                    }
                    continue;
                }
            };
            silences = 0;
            for (block, hashed) in message.payload.into_iter().zip(hashed) {
                let cid = match hashed {
                    Some(cid) => pending.contains_key(&cid).then_some(cid),
                    None => wanted_cid(&block.prefix, &block.data, &pending),
                };
                let Some(cid) = cid else {
                    // Not asked for, or not matching what was asked: dropped.
                    continue;
                };
                pending.remove(&cid);
                first_dont_have.remove(&cid);
                car.write_block(&cid, &block.data)?;
                let length = block.data.len() as u64;
                index.insert(cid, (car.written() - length, length));
                blocks += 1;
                bytes += block.data.len() as u64;
                bar.set_position(blocks as u64);
                bar.set_message(format!("{} MiB", bytes >> 20));
                let links = nelumbo_car::dag::links(&cid, &block.data)
                    .map_err(|e| anyhow::anyhow!("block {cid}: {e}"))?;
                for link in links {
                    if link.hash().code() != nelumbo_car::codec::IDENTITY && seen.insert(link) {
                        queue.push_back(link);
                    }
                }
            }
            for presence in message.block_presences {
                let Ok(cid) = Cid::try_from(presence.cid.as_slice()) else {
                    continue;
                };
                if presence.r#type != PresenceType::DontHave as i32 || !pending.contains_key(&cid) {
                    continue;
                }
                pending.remove(&cid);
                let first = !first_dont_have.contains_key(&cid);
                let since = *first_dont_have.entry(cid).or_insert_with(Instant::now);
                anyhow::ensure!(
                    since.elapsed() + DONT_HAVE_RETRY < patience,
                    "the provider does not have block {cid} (it answered DONT_HAVE for {} s; --wait {})",
                    since.elapsed().as_secs(),
                    patience.as_secs()
                );
                if first {
                    bar.suspend(|| {
                        eprintln!(
                            "the provider does not have {cid} now (its piece may be being unsealed); asking again every {} s",
                            DONT_HAVE_RETRY.as_secs()
                        )
                    });
                }
                retry.push((cid, Instant::now() + DONT_HAVE_RETRY));
            }
        }
    }
    .await;
    bar.finish_and_clear();
    let _ = wants.close().await;
    tracing::debug!(took = ?started.elapsed(), blocks, bytes, "bitswap: every block fetched and checked");
    let result = result.and_then(|()| {
        let mut writer = car.finish()?;
        std::io::Write::flush(&mut writer)?;
        let mut file = writer.into_inner().map_err(|e| e.into_error())?;
        let car_bytes = std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        // Every block was checked against its CID as it came, and every link followed.
        let (files, bytes) = super::retrieve::write_checked(&mut file, &index, root, out)?;
        Ok(Retrieved {
            blocks: index.len(),
            car_bytes,
            files,
            bytes,
        })
    });
    if keep_car.is_none() || result.is_err() {
        let _ = std::fs::remove_file(&car_path);
    }
    let retrieved = result?;
    tracing::debug!(took = ?started.elapsed(), blocks, "bitswap retrieval done");
    Ok(retrieved)
}

fn want(cid: &Cid) -> Entry {
    Entry {
        block: cid.to_bytes(),
        priority: 1,
        cancel: false,
        want_type: WantType::Block as i32,
        send_dont_have: true,
    }
}

async fn send(stream: &mut libp2p::Stream, entries: Vec<Entry>, full: bool) -> anyhow::Result<()> {
    let message = Message {
        wantlist: Some(Wantlist { entries, full }),
        ..Default::default()
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        bitswap::write_message(stream, &message),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the provider did not take our wants in 30 s"))?
    .context("send wants to the provider")
}

/// A message from the provider, with the CID each of its blocks has when its prefix names
/// SHA-256 (the usual case), computed as it arrived.
struct Arrived {
    message: Message,
    hashed: Vec<Option<Cid>>,
}

/// The CID a block has under its prefix when the prefix names SHA-256: the block is hashed
/// once and the CID looked up among the wanted ones.
fn sha256_cid(prefix: &[u8], data: &[u8]) -> Option<Cid> {
    let (version, codec, code, length) = bitswap::parse_prefix(prefix)?;
    if code != nelumbo_car::codec::SHA2_256 || length != 32 {
        return None;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    let multihash = cid::multihash::Multihash::<64>::wrap(code, &digest).ok()?;
    match version {
        0 => Cid::new_v0(multihash).ok(),
        1 => Some(Cid::new_v1(codec, multihash)),
        _ => None,
    }
}

/// The wanted CID a block with any other hash function answers: the prefix names a CID
/// version, codec and hash function; a wanted CID made of them must match the block's bytes.
fn wanted_cid(prefix: &[u8], data: &Bytes, pending: &HashMap<Cid, Instant>) -> Option<Cid> {
    let (version, codec, code, length) = bitswap::parse_prefix(prefix)?;
    pending
        .keys()
        .find(|cid| {
            cid.version() as u64 == version
                && cid.codec() == codec
                && cid.hash().code() == code
                && u64::from(cid.hash().size()) == length
                && nelumbo_car::verify_block(cid, data) == Some(true)
        })
        .copied()
}
