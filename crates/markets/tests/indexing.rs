//! IPNI indexing end to end: a devnet with insecure-testing proofs, a hub, a markets process
//! running every service, and a test indexer written here that does what an IPNI indexer does
//! over HTTP. It receives the announcements, reads the head, checks its signature, walks the
//! chain to its start, checks each advertisement's signature against the miner's peer ID (the
//! one on chain), reads every entry chunk, and finds every block of every deal; after `index
//! remove`, the piece's blocks are gone. Its decoding is its own (serde_json, base64, the
//! libp2p envelope): it shares no code with the provider's encoder.
//!
//! The same test then adds deals while the process is down and SIGKILLs it 20 times while it
//! advertises them: the chain stays linear and each piece is advertised exactly once.
//!
//! Also here: encodings checked against `@web3-storage/ipni` (a library nobody here wrote), in
//! both directions, and hostile requests to the publisher.

mod node;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::put;
use base64::Engine;
use cid::Cid;
use nelumbo_chain_api::methods::StateMinerInfo;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_markets_api::admin::{DealState, DealsList, IndexStatus, IndexingStatus, Info};
use nelumbo_testkit::hub::text;
use nelumbo_testkit::markets::{TestClient, TestMarkets};
use sha2::{Digest, Sha256};

const FIXTURES: &str = "tests/data/gateway";
const HAMT_CAR: &str = "gwconf-single-layer-hamt-with-multi-block-files.car";
const DIR_CAR: &str = "gwconf-dir-with-dag-cbor-with-links.car";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURES)
        .join(name)
}

/// Every block multihash of a CAR, read with a CAR parser of the test's own (varint-framed
/// sections: a CID, then the block).
fn car_multihashes(path: &std::path::Path) -> HashSet<Vec<u8>> {
    let bytes = std::fs::read(path).expect("read the CAR");
    let (header_len, mut at) = uvarint(&bytes, 0);
    at += header_len as usize;
    let mut out = HashSet::new();
    while at < bytes.len() {
        let (len, start) = uvarint(&bytes, at);
        let section = &bytes[start..start + len as usize];
        let mut cursor = std::io::Cursor::new(section);
        let cid = Cid::read_bytes(&mut cursor).expect("a CID");
        out.insert(cid.hash().to_bytes());
        at = start + len as usize;
    }
    out
}

fn uvarint(bytes: &[u8], mut at: usize) -> (u64, usize) {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let b = bytes[at];
        at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (value, at);
        }
        shift += 7;
    }
}

/// What the test indexer received on `PUT /announce`.
#[derive(Debug, Clone, Default)]
struct Announcements(Arc<Mutex<Vec<serde_json::Value>>>);

async fn start_indexer() -> (String, Announcements) {
    let received = Announcements::default();
    let state = received.clone();
    let app = axum::Router::new().route(
        "/announce",
        put(move |body: axum::body::Bytes| async move {
            let value: serde_json::Value =
                serde_json::from_slice(&body).expect("the announcement is JSON");
            state.0.lock().expect("lock").push(value);
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn bytes_field(value: &serde_json::Value, name: &str) -> Vec<u8> {
    let text = value[name]["/"]["bytes"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not DAG-JSON bytes: {value}"));
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .unwrap_or_else(|e| panic!("{name} is not unpadded base64: {e}"))
}

fn link_field(value: &serde_json::Value, name: &str) -> Option<Cid> {
    value
        .get(name)
        .map(|v| v["/"].as_str().expect("a link").parse().expect("a CID"))
}

/// The indexer's view of the chain: context ID -> the multihashes it holds for that context.
struct Indexer {
    http: reqwest::Client,
    publisher: String,
    provider: String,
}

impl Indexer {
    /// GETs a block and checks its bytes hash to the CID asked for.
    async fn block(&self, cid: &Cid) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}/ipni/v1/ad/{cid}", self.publisher))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "GET {cid}");
        let body = response.bytes().await.expect("body");
        assert_eq!(cid.codec(), 0x0129, "not DAG-JSON: {cid}");
        assert_eq!(
            cid.hash().digest(),
            Sha256::digest(&body).as_slice(),
            "the bytes of {cid} do not hash to its CID"
        );
        serde_json::from_slice(&body).expect("JSON")
    }

    /// Reads and checks the signed head; `None` on 204.
    async fn head(&self) -> Option<Cid> {
        let response = self
            .http
            .get(format!("{}/ipni/v1/ad/head", self.publisher))
            .send()
            .await
            .expect("GET head");
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().expect("ascii")),
            Some("no-cache")
        );
        if response.status() == 204 {
            return None;
        }
        assert_eq!(response.status(), 200);
        let head: serde_json::Value = response.json().await.expect("JSON head");
        let cid: Cid = head["head"]["/"]
            .as_str()
            .expect("head")
            .parse()
            .expect("cid");
        let key = libp2p::identity::PublicKey::try_decode_protobuf(&bytes_field(&head, "pubkey"))
            .expect("a libp2p key");
        let mut signed = cid.to_bytes();
        signed.extend_from_slice(head["topic"].as_str().unwrap_or("").as_bytes());
        assert!(
            key.verify(&signed, &bytes_field(&head, "sig")),
            "the head's signature does not verify"
        );
        assert_eq!(key.to_peer_id().to_string(), self.provider);
        Some(cid)
    }

    /// Walks from the head to the start, checking every signature; then replays the chain
    /// oldest first. Returns the live multihashes by context ID, and the ads walked.
    async fn sync(&self) -> (HashMap<Vec<u8>, HashSet<Vec<u8>>>, usize) {
        let mut ads = Vec::new();
        let mut link = self.head().await;
        let mut seen = HashSet::new();
        while let Some(cid) = link {
            assert!(seen.insert(cid), "the chain loops at {cid}");
            let ad = self.block(&cid).await;
            check_ad_signature(&ad, &self.provider);
            link = link_field(&ad, "PreviousID");
            ads.push(ad);
        }
        let walked = ads.len();
        let mut live: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
        for ad in ads.iter().rev() {
            let context = bytes_field(ad, "ContextID");
            if ad["IsRm"].as_bool().expect("IsRm") {
                live.remove(&context);
                continue;
            }
            let mut hashes = HashSet::new();
            let mut chunk = link_field(ad, "Entries");
            while let Some(cid) = chunk {
                let value = self.block(&cid).await;
                let entries = value["Entries"].as_array().expect("Entries");
                assert!(entries.len() <= 16_384, "a chunk of {}", entries.len());
                for entry in entries {
                    let text = entry["/"]["bytes"].as_str().expect("bytes");
                    hashes.insert(
                        base64::engine::general_purpose::STANDARD_NO_PAD
                            .decode(text)
                            .expect("base64"),
                    );
                }
                chunk = link_field(&value, "Next");
            }
            live.insert(context, hashes);
        }
        (live, walked)
    }
}

/// The IPNI signature, checked the way go-libipni does: the envelope (domain `indexer`, type
/// `/indexer/ingest/adSignature`) must carry the SHA-256 multihash of PreviousID, Entries,
/// Provider, the addresses, Metadata and IsRm, signed by the provider's key.
fn check_ad_signature(ad: &serde_json::Value, provider: &str) {
    let envelope =
        libp2p::core::SignedEnvelope::from_protobuf_encoding(&bytes_field(ad, "Signature"))
            .expect("an envelope");
    let (payload, key) = envelope
        .payload_and_signing_key("indexer".to_string(), b"/indexer/ingest/adSignature")
        .expect("the envelope verifies");
    let mut buf = Vec::new();
    if let Some(previous) = link_field(ad, "PreviousID") {
        buf.extend_from_slice(&previous.to_bytes());
    }
    buf.extend_from_slice(&link_field(ad, "Entries").expect("Entries").to_bytes());
    buf.extend_from_slice(ad["Provider"].as_str().expect("Provider").as_bytes());
    for address in ad["Addresses"].as_array().expect("Addresses") {
        buf.extend_from_slice(address.as_str().expect("address").as_bytes());
    }
    buf.extend_from_slice(&bytes_field(ad, "Metadata"));
    buf.push(u8::from(ad["IsRm"].as_bool().expect("IsRm")));
    let mut expected = vec![0x12, 0x20];
    expected.extend_from_slice(&Sha256::digest(&buf));
    assert_eq!(payload, expected.as_slice(), "the signed payload differs");
    assert_eq!(
        key.to_peer_id().to_string(),
        provider,
        "signed by another key"
    );
    assert_eq!(ad["Provider"].as_str(), Some(provider));
}

/// Waits (up to two minutes) until `indexing status` satisfies `check`.
async fn wait_for_status(
    markets: &TestMarkets,
    what: &str,
    check: impl Fn(&IndexingStatus) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = markets
            .client
            .call::<IndexStatus>(())
            .await
            .expect("status");
        if check(&status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the indexer at `url` accepted the current head.
fn accepted_head(status: &IndexingStatus, url: &str) -> bool {
    status
        .indexers
        .iter()
        .any(|i| i.url == url && i.accepted_seq == status.ads)
}

#[tokio::test(flavor = "multi_thread")]
async fn deals_are_advertised_announced_and_withdrawn_as_an_indexer_sees_them() {
    let (indexer_url, announcements) = start_indexer().await;
    // A second indexer that accepts connections and never answers: it must delay nothing.
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stuck_url = format!("http://{}", stuck.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stuck.accept().await {
            held.push(socket);
        }
    });
    let (devnet, mut hub) = nelumbo_testkit::hub::insecure_deal_devnet().await;
    hub.run(&[]).await;
    let mut markets = TestMarkets::init(&devnet, &hub);
    markets.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    markets.edit_config(
        "indexers = []",
        &format!("indexers = [\"{stuck_url}\", \"{indexer_url}\"]"),
    );
    markets.edit_config("announce_timeout_secs = 10", "announce_timeout_secs = 2");
    markets.run_services("deals,retrieval,indexing").await;
    let info = markets.client.call::<Info>(()).await.expect("info");
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let mut indexer = Indexer {
        http: http.clone(),
        publisher: markets.retrieval_url.clone(),
        provider: info.peer_id.clone(),
    };

    // Before any deal: an empty chain is a 204, and bad names are refused by kind.
    assert_eq!(indexer.head().await, None);
    for (path, status) in [
        ("/ipni/v1/ad/not-a-cid", 400),
        // A CID of DAG-JSON that is not stored, and one of another codec.
        (
            "/ipni/v1/ad/baguqeeraaf3ck6ibwmsmkfc3snmqozfhnhxdk4jtsvurgynfauajlpksgzlq",
            404,
        ),
        ("/ipni/v1/ad/bafkreehdwdcefgh4dqkjv67uzcmw7oje", 404),
        ("/ipni/v1/ad/", 404),
        ("/ipni/v1/ad/head/more", 404),
    ] {
        let response = http
            .get(format!("{}{path}", markets.retrieval_url))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), status, "{path}");
    }

    // Two deals at once, into one sector.
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 20).await;
    client.deal_cars_at_once(&hub.actor, &[HAMT_CAR, DIR_CAR].map(fixture), &markets);
    let deals = markets.client.call::<DealsList>(()).await.expect("deals");
    assert!(
        deals.iter().all(|d| d.state == DealState::Active),
        "{deals:?}"
    );
    let piece_of = |car: &str| -> String {
        let root = nelumbo_car::CarReader::new(std::fs::File::open(fixture(car)).expect("open"))
            .expect("car")
            .roots()[0]
            .to_string();
        deals
            .iter()
            .find(|d| d.data_root == root)
            .expect("a deal for the CAR")
            .piece_cid
            .clone()
    };

    // The indexer was told of a head that holds both pieces.
    wait_for_status(&markets, "both pieces advertised and announced", |status| {
        status.pieces_advertised == 2 && accepted_head(status, &indexer_url)
    })
    .await;
    let head = indexer.head().await.expect("a head");
    let last = announcements
        .0
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("announced");
    assert_eq!(last["Cid"]["/"].as_str(), Some(head.to_string().as_str()));
    let addrs: Vec<libp2p::Multiaddr> = last["Addrs"]
        .as_array()
        .expect("Addrs")
        .iter()
        .map(|a| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(a.as_str().expect("base64 text"))
                .expect("base64");
            libp2p::Multiaddr::try_from(bytes).expect("a multiaddr")
        })
        .collect();
    let expected_publisher = format!(
        "{}/p2p/{}",
        markets
            .retrieval_url
            .replace("http://", "/ip4/")
            .replace(':', "/tcp/")
            + "/http",
        info.peer_id
    );
    assert!(
        addrs.iter().any(|a| a.to_string() == expected_publisher),
        "{addrs:?} lacks {expected_publisher}"
    );

    // The signer is the peer ID on chain.
    let miner_info = devnet
        .client
        .call::<StateMinerInfo>((hub.actor.into(), TipSetKey::head()))
        .await
        .expect("miner info");
    let on_chain = libp2p::PeerId::from_bytes(&miner_info.peer_id).expect("a peer ID");
    assert_eq!(on_chain.to_string(), info.peer_id);

    let (live, walked) = indexer.sync().await;
    assert_eq!(walked, 2, "one advertisement per piece");
    let all: HashSet<Vec<u8>> = live.values().flatten().cloned().collect();
    for car in [HAMT_CAR, DIR_CAR] {
        let expected = car_multihashes(&fixture(car));
        let missing = expected.difference(&all).count();
        assert_eq!(missing, 0, "{missing} blocks of {car} are not advertised");
    }

    // The operator withdraws one piece: a removal, and the indexer drops its blocks only.
    let hamt_piece = piece_of(HAMT_CAR);
    let output = markets.cli(&["index", "remove", &hamt_piece]);
    assert!(output.status.success(), "{}", text(&output));
    wait_for_status(&markets, "the removal announced", |status| {
        status.pieces_withdrawn == 1 && accepted_head(status, &indexer_url)
    })
    .await;
    let (live, walked) = indexer.sync().await;
    assert_eq!(walked, 3);
    let all: HashSet<Vec<u8>> = live.values().flatten().cloned().collect();
    let hamt = car_multihashes(&fixture(HAMT_CAR));
    let dir = car_multihashes(&fixture(DIR_CAR));
    assert!(dir.is_subset(&all), "the other piece is still advertised");
    assert!(
        hamt.difference(&dir).all(|h| !all.contains(h)),
        "the withdrawn piece's blocks are gone"
    );
    let listed = text(&markets.cli(&["index", "list"]));
    assert!(
        listed.contains(&hamt_piece) && listed.contains("removed"),
        "{listed}"
    );
    let status = text(&markets.cli(&["indexing", "status"]));
    let line = |url: &str| {
        status
            .lines()
            .find(|l| l.contains(url))
            .unwrap_or_else(|| panic!("no line for {url}: {status}"))
            .to_string()
    };
    assert!(line(&indexer_url).contains("up to date"), "{status}");
    assert!(line(&stuck_url).contains("failures in a row"), "{status}");
    let metrics = http
        .get(format!("{}/metrics", markets.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        nelumbo_testkit::metrics::value(
            &metrics,
            &format!("nelumbo_ipni_announces_total{{indexer=\"{stuck_url}\",result=\"failed\"}}")
        )
        .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );

    // Our advertisement verifies with @web3-storage/ipni.
    let ad_file = tempfile::NamedTempFile::new().expect("temp");
    let head = indexer.head().await.expect("head");
    let bytes = http
        .get(format!("{}/ipni/v1/ad/{head}", markets.retrieval_url))
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    std::fs::write(ad_file.path(), &bytes).expect("write");
    let output = node::interop(&["ipni-verify.mjs", ad_file.path().to_str().expect("path")]);
    assert!(
        output.status.success(),
        "@web3-storage/ipni does not accept our advertisement: {}",
        text(&output)
    );

    // The operator changes their mind: restored, the piece is advertised again.
    let output = markets.cli(&["index", "restore", &hamt_piece]);
    assert!(
        output.status.success() && text(&output).contains("advertised again"),
        "{}",
        text(&output)
    );
    wait_for_status(&markets, "the piece advertised again", |status| {
        status.pieces_advertised == 2 && accepted_head(status, &indexer_url)
    })
    .await;
    let (live, walked) = indexer.sync().await;
    assert_eq!(walked, 4);
    let all: HashSet<Vec<u8>> = live.values().flatten().cloned().collect();
    assert!(hamt.is_subset(&all) && dir.is_subset(&all));

    // Restarted, the markets process adds nothing (the chain already says it all).
    markets.stop(false);
    markets.run_services("deals,retrieval,indexing").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = markets
        .client
        .call::<IndexStatus>(())
        .await
        .expect("status");
    assert_eq!(status.ads, 4, "{status:?}");

    // SIGKILL while advertising, 20 rounds. Before each start, while the process is down, its
    // database gets 3 more active deals, each with a piece of 3,000 blocks in the piece
    // directory (written with the library, as its deals service would have), so every start
    // has advertising to do; the process is killed at a varying moment after its API answers.
    // (Appending is fast, so most kills land between two appends or after the last; the
    // kills inside an append are `indexing_crash.rs`'s.)
    markets.stop(false);
    let db = markets.repo.join("markets.redb");
    let mut pieces = Vec::new();
    for round in 0..20u32 {
        pieces.extend(add_active_deals(&db, pieces.len(), 3, 3_000));
        markets.run_services("deals,retrieval,indexing").await;
        // The listener's port is new each start.
        indexer.publisher = markets.retrieval_url.clone();
        // The head, whatever it is now, names a stored advertisement.
        if let Some(head) = indexer.head().await {
            indexer.block(&head).await;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .subsec_nanos();
        tokio::time::sleep(Duration::from_millis(u64::from(nanos % 300))).await;
        markets.stop(true);
        eprintln!("round {round}: killed");
    }
    markets.run_services("deals,retrieval,indexing").await;
    indexer.publisher = markets.retrieval_url.clone();
    wait_for_status(&markets, "every added piece advertised", |status| {
        status.pieces_advertised == 62
    })
    .await;
    let (live, walked) = indexer.sync().await;
    assert_eq!(
        walked,
        4 + 60,
        "each added piece advertised once, nothing repeated"
    );
    let contexts: HashSet<&Vec<u8>> = live.keys().collect();
    assert_eq!(contexts.len(), 62);
    for (piece, hashes) in &pieces {
        let context = nelumbo_markets::indexing::context_id(piece, 8 << 20).expect("context");
        assert_eq!(live.get(&context), Some(hashes), "piece {piece}");
    }
    drop(hub);
}

/// Adds `count` active deals (numbered from `first`) to a stopped markets process's
/// database, each with a piece of `blocks` raw blocks indexed in its piece directory. Returns
/// each piece and its multihashes.
fn add_active_deals(
    db: &std::path::Path,
    first: usize,
    count: usize,
    blocks: usize,
) -> Vec<(Cid, HashSet<Vec<u8>>)> {
    use cid::multihash::Multihash;
    let store = nelumbo_markets::store::Store::open(db).expect("open");
    let directory =
        nelumbo_piecedir::Embedded::open(&db.with_file_name("piecedir.redb")).expect("open");
    let template = store
        .deals()
        .expect("deals")
        .into_iter()
        .find(|d| d.state == DealState::Active)
        .expect("an active deal");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = Vec::new();
    for i in first..first + count {
        let piece = Cid::new_v1(
            0xf101,
            Multihash::wrap(0x1012, &Sha256::digest(format!("piece {i}"))).expect("digest"),
        );
        let car = dir.path().join(format!("{i}.car"));
        let mut hashes = HashSet::new();
        {
            let block = |b: usize| {
                let data = format!("piece {i} block {b}");
                let cid = Cid::new_v1(
                    0x55,
                    Multihash::wrap(0x12, &Sha256::digest(&data)).expect("digest"),
                );
                (cid, data)
            };
            let mut writer = nelumbo_car::CarWriter::new(
                std::io::BufWriter::new(std::fs::File::create(&car).expect("create")),
                &[block(0).0],
            )
            .expect("car");
            for b in 0..blocks {
                let (cid, data) = block(b);
                hashes.insert(cid.hash().to_bytes());
                writer.write_block(&cid, data.as_bytes()).expect("block");
            }
            writer.finish().expect("finish");
        }
        nelumbo_piecedir::index_car(&directory, &piece, &car).expect("index");
        let mut deal = template.clone();
        deal.uuid = uuid::Uuid::new_v4().to_string();
        deal.proposal_cid = format!("{}-{i}", template.proposal_cid);
        deal.piece_cid = piece.to_string();
        deal.piece_size = 8 << 20;
        deal.deal_id = None;
        store.put(&deal, Some("added by the test")).expect("put");
        out.push((piece, hashes));
    }
    out
}

/// `@web3-storage/ipni` makes and signs advertisements (an ordinary one and a removal): they
/// decode and verify here, hash to the CID it gives, and encode back to the same bytes.
/// One of ours verifies with it, and the same with a signed field changed does not.
#[test]
fn advertisements_agree_with_web3_storage_ipni_both_ways() {
    use nelumbo_markets::indexing::ipni::{self, Advertisement};
    for variant in ["add", "remove"] {
        let output = node::interop(&["ipni-make.mjs", variant]);
        assert!(output.status.success(), "ipni-make.mjs: {}", text(&output));
        let made: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("ipni-make.mjs prints JSON");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(made["ad"].as_str().expect("ad"))
            .expect("base64");
        let ad = Advertisement::decode(&bytes).expect("their advertisement decodes here");
        assert_eq!(ad.is_rm, variant == "remove");
        let signer = ad.verify().expect("their signature verifies here");
        assert_eq!(signer.to_string(), made["peerId"].as_str().expect("peerId"));
        assert_eq!(
            ipni::dag_json_cid(&bytes).to_string(),
            made["cid"].as_str().expect("cid")
        );
        assert_eq!(
            String::from_utf8(ad.encode()).expect("utf-8"),
            String::from_utf8(bytes).expect("utf-8"),
            "the same fields encode to other bytes here"
        );
    }

    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut ad = Advertisement {
        previous: Some(ipni::dag_json_cid(b"previous")),
        provider: key.public().to_peer_id().to_string(),
        addresses: vec![
            "/dns/retrieval.example.com/tcp/443/https".into(),
            "/ip4/203.0.113.7/tcp/24001".into(),
        ],
        signature: Vec::new(),
        entries: ipni::dag_json_cid(b"entries"),
        context_id: vec![0x82, 1, 2],
        metadata: ipni::metadata(&[
            ipni::Transport::Bitswap,
            ipni::Transport::IpfsGatewayHttp,
            ipni::Transport::FilecoinPieceHttp,
        ]),
        is_rm: false,
    };
    ad.sign(&key).expect("sign");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    std::fs::write(&good, ad.encode()).expect("write");
    let output = node::interop(&["ipni-verify.mjs", good.to_str().expect("path")]);
    assert!(
        output.status.success(),
        "ours, in their eyes: {}",
        text(&output)
    );
    let mut changed = ad.clone();
    changed
        .addresses
        .push("/ip4/198.51.100.1/tcp/1/http".into());
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, changed.encode()).expect("write");
    let output = node::interop(&["ipni-verify.mjs", bad.to_str().expect("path")]);
    assert!(
        !output.status.success(),
        "a changed address still verifies there"
    );
}
