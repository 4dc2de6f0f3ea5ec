//! Retrieval through the real processes (chain, hub, markets with deals and retrieval, and
//! `nelumbo client`), with insecure proofs: the IPFS gateway-conformance fixtures are stored as
//! deals and then served over `/ipfs` with exactly the blocks the trustless-gateway spec and
//! the conformance tests ask for; `/piece` serves pieces with ranges; clients from other
//! implementations (@helia/verified-fetch, synapse-core) get verified data; bad input gets a
//! clear 4xx; the operator's denylist and filter refuse; rotten bytes are never served; and with
//! the hub away cached pieces are still served while the rest are answered 503 with
//! `Retry-After` until it is back.

mod bitswap_peer;
mod node;

use std::time::Duration;

use bitswap_peer::{RawPeer, Said, want};
use node::interop;

use nelumbo_markets_api::admin::{DealState, DealsList};
use nelumbo_markets_api::bitswap;
use nelumbo_markets_api::p2p::{Request, Response, build_swarm, request_once};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};
use nelumbo_testkit::markets::{TestClient, TestMarkets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURES: &str = "tests/data/gateway";
const HAMT_CAR: &str = "gwconf-single-layer-hamt-with-multi-block-files.car";
const DIR_CAR: &str = "gwconf-dir-with-dag-cbor-with-links.car";
const TRAVERSAL_CAR: &str = "gwconf-dag-cbor-traversal.car";

// CIDs in the fixtures (see the conformance tests and tests/data/gateway-hamt-entity-order.txt).
const R: &str = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"; // HAMT root
const D: &str = "bafybeia264q44a3kmfc2otctzu4egp2k235o3t7mslz2yjraymp4nv6asi"; // directory
const DOC: &str = "bafyreidy4q6mmetut5jzc54ambsfnatbyoujmwbfzyyolqw24majazwgha"; // dag-cbor
const SINGLE: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
const F: &str = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa"; // 1026-byte file
const L: [&str; 5] = [
    "bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm",
    "bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq",
    "bafkreigu7buvm3cfunb35766dn7tmqyh2um62zcio63en2btvxuybgcpue",
    "bafkreicll3huefkc3qnrzeony7zcfo7cr3nbx64hnxrqzsixpceg332fhe",
    "bafkreifst3pqztuvj57lycamoi7z34b4emf7gawxs74nwrc2c7jncmpaqm",
];
const SHARD_FD: &str = "bafybeifajm5xyg46n4hjxg7clq2f7vcn7eg7bn3yevylcemr6vd7mp6gta";
const SHARD_07: &str = "bafybeiawjmzmi5c6v5h75nepfpx7jj5ns5t54girned3kilvakmhctxlxy";
const T: &str = "bafyreibs4utpgbn7uqegmd2goqz4bkyflre2ek2iwv743fhvylwi4zeeim"; // traversal root
const T1: &str = "bafyreig5alecq2l2akgajxywgnv22kuxh6xcagsnelepylqovt4t5jxt6u";
const T2: &str = "bafyreiaefvpp22slf5bzd4lqgzwbztqahwlldtqkpgmlhv7mh23pudle7y";

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURES)
        .join(name)
}

/// A counter's value on a metrics page (0 when absent).
fn counter(metrics: &str, series: &str) -> u64 {
    nelumbo_testkit::metrics::value(metrics, series).unwrap_or(0.0) as u64
}

fn hamt_entity_order() -> Vec<String> {
    let text = include_str!("data/gateway-hamt-entity-order.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect()
}

struct Setup {
    devnet: Devnet,
    hub: TestHub,
    markets: TestMarkets,
    client: TestClient,
    http: reqwest::Client,
}

/// A devnet of 8 MiB sectors (the HAMT fixture is 84 KB), a hub, markets with deals and
/// retrieval, and the three fixtures stored as active deals made with `nelumbo client`.
async fn setup() -> Setup {
    let (devnet, mut hub) = nelumbo_testkit::hub::insecure_deal_devnet().await;
    // One port across restarts, so markets finds the hub again.
    let port = nelumbo_testkit::markets::free_port();
    hub.edit_config(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    hub.run(&[]).await;
    let mut markets = TestMarkets::init(&devnet, &hub);
    markets.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    markets.edit_config("header_timeout_secs = 10", "header_timeout_secs = 2");
    // Every test client is on loopback, one address: raise the per-address limit so a
    // thousand idle connections from "strangers" and the good client fit.
    markets.edit_config(
        "max_connections_per_ip = 128",
        "max_connections_per_ip = 2000",
    );
    markets.run().await;
    assert!(!markets.retrieval_url.is_empty(), "no retrieval URL");
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 20).await;
    // The three deals at once, so they share a sector.
    client.deal_cars_at_once(
        &hub.actor,
        &[HAMT_CAR, DIR_CAR, TRAVERSAL_CAR].map(fixture),
        &markets,
    );
    let deals = markets.client.call::<DealsList>(()).await.expect("deals");
    assert_eq!(deals.len(), 3);
    assert!(
        deals.iter().all(|d| d.state == DealState::Active),
        "{deals:?}"
    );
    Setup {
        devnet,
        hub,
        markets,
        client,
        http: reqwest::Client::builder().no_proxy().build().expect("http"),
    }
}

impl Setup {
    /// The markets process's peer ID and libp2p address.
    async fn provider(&self) -> (libp2p::PeerId, libp2p::Multiaddr) {
        let info = self
            .markets
            .client
            .call::<nelumbo_markets_api::admin::Info>(())
            .await
            .expect("info");
        let peer = info.peer_id.parse().expect("peer");
        let addr = format!("/ip4/127.0.0.1/tcp/{}", self.markets.p2p_port)
            .parse()
            .expect("addr");
        (peer, addr)
    }

    /// A bare bitswap peer of the markets process (see `bitswap_peer`).
    async fn raw_peer(&self, read_answers: bool) -> RawPeer {
        let (provider, addr) = self.provider().await;
        RawPeer::new(provider, addr, read_answers).await
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}{path}", self.markets.retrieval_url));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        request
            .send()
            .await
            .expect("the retrieval listener answers")
    }

    /// The blocks of a CAR answer, in order, each checked against its CID by the reader.
    async fn car_blocks(&self, path: &str, accept: Option<&str>) -> Vec<String> {
        let response = self.get(path, accept).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        // The headers every CAR answer carries (gateway-conformance's standard checks).
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["accept-ranges"], "none", "{path}");
        let content_type = headers["content-type"].to_str().expect("text");
        assert!(
            content_type.starts_with("application/vnd.ipld.car; version=1"),
            "{path}: {content_type}"
        );
        let disposition = headers["content-disposition"].to_str().expect("text");
        assert!(
            disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".car\""),
            "{disposition}"
        );
        assert!(!headers["etag"].is_empty());
        assert!(
            headers["cache-control"]
                .to_str()
                .expect("text")
                .contains("immutable")
        );
        let mut reader =
            nelumbo_car::CarReader::new(std::io::Cursor::new(body.to_vec())).expect("a CAR");
        let mut cids = Vec::new();
        while let Some((section, _)) = reader.next_block().expect("every block matches its CID") {
            assert!(section.verified, "{path}: an unchecked block");
            cids.push(section.cid.to_string());
        }
        cids
    }

    /// Both ways of asking for a CAR: `?format=car` and `Accept`.
    async fn expect_car(&self, path: &str, query: &str, expected: &[&str]) {
        let sep = |q: &str| {
            if q.is_empty() {
                String::new()
            } else {
                format!("&{q}")
            }
        };
        let by_format = self
            .car_blocks(&format!("{path}?format=car{}", sep(query)), None)
            .await;
        assert_eq!(by_format, expected, "{path}?format=car&{query}");
        let by_accept = self
            .car_blocks(
                &format!(
                    "{path}{}",
                    if query.is_empty() {
                        String::new()
                    } else {
                        format!("?{query}")
                    }
                ),
                Some("application/vnd.ipld.car"),
            )
            .await;
        assert_eq!(by_accept, expected, "{path}?{query} with Accept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_deals_are_served_as_the_trustless_gateway_spec_says() {
    let s = setup().await;
    let files: Vec<&str> = [F].into_iter().chain(L).collect();

    // The conformance tests on these fixtures (trustless_gateway_car_test.go).
    let t1: Vec<&str> = [R, SHARD_FD].into_iter().chain(files.clone()).collect();
    s.expect_car(&format!("/ipfs/{R}/685.txt"), "", &t1).await;
    s.expect_car(&format!("/ipfs/{DOC}/files/single"), "", &[DOC, SINGLE])
        .await;
    s.expect_car(
        &format!("/ipfs/{R}/1.txt"),
        "dag-scope=block",
        &[R, SHARD_07, F],
    )
    .await;
    let shards = hamt_entity_order();
    let t4: Vec<&str> = [R]
        .into_iter()
        .chain(shards.iter().map(String::as_str))
        .collect();
    assert_eq!(t4.len(), 237);
    s.expect_car(&format!("/ipfs/{R}"), "dag-scope=entity", &t4)
        .await;
    s.expect_car(
        &format!("/ipfs/{D}/document"),
        "dag-scope=entity",
        &[D, DOC],
    )
    .await;
    s.expect_car(
        &format!("/ipfs/{R}"),
        "dag-scope=entity&entity-bytes=0:*",
        &t4,
    )
    .await;
    // entity-bytes on the 1026-byte multi-block file (TestTrustlessCarEntityBytes).
    for (range, leaves) in [
        ("512:*", &L[2..]),
        ("512:1023", &L[2..4]),
        ("512:-256", &L[2..4]),
        ("-5:*", &L[3..]),
        ("-9999:*", &L[..]),
        ("-9999:-3", &L[..4]),
        ("0:0", &L[..1]),
    ] {
        let expected: Vec<&str> = [F].into_iter().chain(leaves.iter().copied()).collect();
        s.expect_car(
            &format!("/ipfs/{F}"),
            &format!("dag-scope=entity&entity-bytes={range}"),
            &expected,
        )
        .await;
    }
    // From the spec's rules: a whole DAG depth-first (dag-cbor links in key order), paths
    // through dag-cbor into dag-cbor, a path inside a block, duplicates on request.
    let all_dir: Vec<&str> = [D, DOC, SINGLE].into_iter().chain(files.clone()).collect();
    s.expect_car(&format!("/ipfs/{D}"), "", &all_dir).await;
    s.expect_car(&format!("/ipfs/{T}"), "", &[T, T1, T2]).await;
    s.expect_car(&format!("/ipfs/{T}/foo/link/bar"), "", &[T, T1, T2])
        .await;
    s.expect_car(&format!("/ipfs/{T}/foo/link"), "dag-scope=block", &[T, T1])
        .await;
    let dups = s
        .car_blocks(
            &format!("/ipfs/{R}"),
            Some("application/vnd.ipld.car; version=1; order=dfs; dups=y"),
        )
        .await;
    assert_eq!(dups.len(), 1000 * 6 + 237, "every entry's file again");

    // Raw blocks, with the headers the spec lists; the probe; ranges.
    let response = s.get(&format!("/ipfs/{T}?format=raw"), None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/vnd.ipld.raw");
    assert_eq!(headers["content-length"], "76");
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{T}.bin\"").as_str()
    );
    assert_eq!(headers["x-ipfs-path"], format!("/ipfs/{T}").as_str());
    assert_eq!(headers["x-ipfs-roots"], T);
    assert!(headers["etag"].to_str().expect("text").contains(T));
    let body = response.bytes().await.expect("body");
    assert_eq!(
        hex::encode(&body),
        "a163666f6fa2646c696e6bd82a58250001711220dd02c828697a028c04df16336bad2a973fae201a4d22c8fc2e0eacf93ea6f3f5666f626a656374a26662616e616e610a666d6f6e6b6579f4"
    );
    let probe = s
        .get("/ipfs/bafkqaaa", Some("application/vnd.ipld.raw"))
        .await;
    assert_eq!(probe.status(), 200);
    assert!(probe.bytes().await.expect("body").is_empty());
    let ranged = s
        .http
        .get(format!("{}/ipfs/{T}?format=raw", s.markets.retrieval_url))
        .header("Range", "bytes=0-3")
        .send()
        .await
        .expect("answer");
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["content-range"], "bytes 0-3/76");
    // An identity CID's CAR holds no blocks.
    assert!(
        s.car_blocks("/ipfs/bafkqaaa?format=car", None)
            .await
            .is_empty()
    );

    // Bad requests get the spec's status and say why.
    for (path, accept, status, words) in [
        (
            "/ipfs/notacid?format=raw".to_string(),
            None,
            400,
            "not a valid CID",
        ),
        (format!("/ipfs/{R}/685.txt?format=raw"), None, 400, "path"),
        (format!("/ipfs/{R}"), None, 400, "Accept"),
        (format!("/ipfs/{R}?format=tar"), None, 406, "format"),
        (format!("/ipfs/{R}"), Some("text/html"), 406, "serves"),
        (
            format!("/ipfs/{R}?format=car&dag-scope=some"),
            None,
            400,
            "dag-scope",
        ),
        (
            format!("/ipfs/{R}/i-do-not-exist?format=car"),
            None,
            404,
            "i-do-not-exist",
        ),
        (
            "/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy?format=raw"
                .to_string(),
            None,
            404,
            "not held",
        ),
        (format!("/ipfs/{T}?format=raw"), None, 200, ""),
        (
            "/piece/bafyNOTAPIECE".to_string(),
            None,
            400,
            "not a piece CID",
        ),
    ] {
        let response = s.get(&path, accept).await;
        assert_eq!(response.status(), status, "{path}");
        let body = response.text().await.expect("body");
        assert!(body.contains(words), "{path}: {body}");
    }

    // /piece: the CAR's bytes, by v1 and v2 piece CID, with ranges.
    let car = std::fs::read(fixture(HAMT_CAR)).expect("fixture");
    let digest = nelumbo_commp::commp(&car).expect("commp");
    for cid in [digest.cid_v1(), digest.cid_v2()] {
        let response = s.get(&format!("/piece/{cid}"), None).await;
        assert_eq!(response.status(), 200, "{cid}");
        let headers = response.headers().clone();
        assert_eq!(
            headers["content-type"],
            "application/vnd.ipld.car; version=1"
        );
        assert_eq!(headers["accept-ranges"], "bytes");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["content-length"], car.len().to_string().as_str());
        assert_eq!(response.bytes().await.expect("body"), car);
    }
    let ranged = s
        .http
        .get(format!(
            "{}/piece/{}",
            s.markets.retrieval_url,
            digest.cid_v1()
        ))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .expect("answer");
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 100-199/{}", car.len()).as_str()
    );
    assert_eq!(ranged.bytes().await.expect("body"), car[100..200]);
    let outside = s
        .http
        .get(format!(
            "{}/piece/{}",
            s.markets.retrieval_url,
            digest.cid_v1()
        ))
        .header("Range", format!("bytes={}-", car.len()))
        .send()
        .await
        .expect("answer");
    assert_eq!(outside.status(), 416);
    let head = s
        .http
        .head(format!(
            "{}/piece/{}",
            s.markets.retrieval_url,
            digest.cid_v1()
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        car.len().to_string().as_str()
    );
    let unknown = nelumbo_commp::commp(&[7u8; 500]).expect("commp").cid_v1();
    assert_eq!(
        s.get(&format!("/piece/{unknown}"), None).await.status(),
        404
    );

    // The client finds the HTTP address from the miner's peer and gets both kinds back.
    let mut swarm = build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        "test",
        false,
        nelumbo_markets_api::p2p::Limits::none(),
    )
    .expect("swarm");
    let (peer, addr) = s.provider().await;
    let Response::Transports(transports) =
        request_once(&mut swarm, peer, &[addr], Request::Transports)
            .await
            .expect("transports")
    else {
        panic!("another answer");
    };
    let http_addr = libp2p::Multiaddr::try_from(transports.protocols[0].addresses[0].to_vec())
        .expect("multiaddr");
    assert_eq!(transports.protocols[0].name, "http");
    assert_eq!(
        nelumbo_markets_api::wire::multiaddr_http_url(&http_addr),
        Some(s.markets.retrieval_url.clone())
    );
    let out = s.devnet.dir.path().join("hamt-out");
    let output = s.client.run(&[
        "retrieve",
        "--provider",
        &s.hub.actor.to_string(),
        "--out",
        out.to_str().expect("path"),
        R,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let entries = std::fs::read_dir(&out).expect("a directory").count();
    assert_eq!(entries, 1000, "{}", text(&output));
    let file = std::fs::read(out.join("685.txt")).expect("a file");
    assert_eq!(file.len(), 1026);
    let out = s.devnet.dir.path().join("hamt.car");
    let output = s.client.run(&[
        "retrieve",
        "--provider",
        &s.hub.actor.to_string(),
        "--out",
        out.to_str().expect("path"),
        &digest.cid_v2().to_string(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read(&out).expect("piece"), car);
    assert!(
        s.markets.log().contains("retrieval::access"),
        "requests are logged"
    );

    // Clients nobody here wrote: @helia/verified-fetch (every block checked, the file put
    // together) and synapse-core's piece download (the commitment recomputed).
    let leaves = fixture_blocks(HAMT_CAR);
    let expected_file: Vec<u8> = L.iter().flat_map(|leaf| leaves[*leaf].clone()).collect();
    let out = s.devnet.dir.path().join("verified-fetch.out");
    let output = interop(&[
        "--import",
        "./polyfill.mjs",
        "vfetch.mjs",
        &s.markets.retrieval_url,
        F,
        out.to_str().expect("path"),
    ]);
    assert!(output.status.success(), "verified-fetch: {}", text(&output));
    assert_eq!(std::fs::read(&out).expect("file"), expected_file);
    let out = s.devnet.dir.path().join("synapse.out");
    let output = interop(&[
        "fetch-piece.mjs",
        &s.markets.retrieval_url,
        &digest.cid_v2().to_string(),
        out.to_str().expect("path"),
    ]);
    assert!(output.status.success(), "synapse-core: {}", text(&output));
    assert_eq!(std::fs::read(&out).expect("piece"), car);

    // Bitswap, listed beside HTTP with the peer's addresses.
    let listed = transports
        .protocols
        .iter()
        .find(|p| p.name == "bitswap")
        .expect("bitswap is listed");
    let bitswap_addr = libp2p::Multiaddr::try_from(listed.addresses[0].to_vec()).expect("addr");
    assert!(
        bitswap_addr.to_string().ends_with(&format!("/p2p/{peer}")),
        "{bitswap_addr}"
    );
    // A 3 MiB file stored with `nelumbo client deal` (three 1 MiB leaves) comes back byte for
    // byte through `nelumbo client retrieve --bitswap`.
    let payload: Vec<u8> = (0..3 * 1024 * 1024 + 100u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = s.devnet.dir.path().join("three.bin");
    std::fs::write(&file, &payload).expect("write");
    let printed = s
        .client
        .deal_active(&s.hub.actor, &file, &[], || s.markets.log());
    let root = TestClient::data_root(&printed);
    let out = s.devnet.dir.path().join("bitswap-out");
    let output = s.client.run(&[
        "retrieve",
        "--bitswap",
        "--provider",
        &s.hub.actor.to_string(),
        "--out",
        out.to_str().expect("path"),
        &root,
    ]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output),
        s.markets.log()
    );
    assert_eq!(
        std::fs::read(out.join("three.bin")).expect("the file"),
        payload
    );
    assert!(text(&output).contains("over bitswap"), "{}", text(&output));
    // And through Helia's bitswap client (@helia/bitswap, every block hashed against its CID,
    // the DAG walked by ipfs-unixfs-exporter), dialling the address the provider listed.
    let out = s.devnet.dir.path().join("helia-bitswap.out");
    let output = interop(&[
        "--import",
        "./polyfill.mjs",
        "bitswap-fetch.mjs",
        &bitswap_addr.to_string(),
        &root,
        out.to_str().expect("path"),
        "60000",
        "file",
    ]);
    assert!(output.status.success(), "@helia/bitswap: {}", text(&output));
    assert_eq!(std::fs::read(&out).expect("the file"), payload);
    // A block nobody stored: Helia is told DONT_HAVE and gives up at once.
    let nothing = nelumbo_car::cid_v1_sha256(0x55, b"not here").to_string();
    let output = interop(&[
        "--import",
        "./polyfill.mjs",
        "bitswap-fetch.mjs",
        &bitswap_addr.to_string(),
        &nothing,
        "-",
        "30000",
        "block",
    ]);
    assert!(!output.status.success(), "{}", text(&output));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(answer["wanted"], true, "{answer}");
    assert!(answer["ms"].as_u64().expect("ms") < 10_000, "{answer}");

    // The protocol's own answers: want-block gets the block, want-have of a 1 MiB leaf gets
    // HAVE, a want-have of a small block gets the block itself, an unknown block DONT_HAVE.
    let leaf = nelumbo_car::cid_v1_sha256(0x55, &payload[..1 << 20]).to_string();
    let unknown = nelumbo_car::cid_v1_sha256(0x55, b"nobody stored this").to_string();
    let mut good = s.raw_peer(true).await;
    let asked = std::time::Instant::now();
    good.want(vec![
        want(&leaf, bitswap::WantType::Have, true),
        want(L[0], bitswap::WantType::Have, true),
        want(F, bitswap::WantType::Block, true),
        want(&unknown, bitswap::WantType::Block, true),
    ])
    .await;
    let said = good
        .answers(&[&leaf, L[0], F, &unknown], Duration::from_secs(20))
        .await;
    assert_eq!(said.get(&leaf), Some(&Said::Have), "{said:?}");
    assert_eq!(said.get(L[0]), Some(&Said::Block(leaves[L[0]].clone())));
    assert_eq!(said.get(F), Some(&Said::Block(leaves[F].clone())));
    assert_eq!(said.get(&unknown), Some(&Said::DontHave), "{said:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );

    // The older versions: 1.1.0 has blocks with prefixes and no presences (a want-have of a
    // large block goes unanswered); 1.0.0 has bare blocks, so a CIDv0 want (the same
    // multihash as the stored CIDv1) gets the block, a CIDv1 want nothing.
    let mut older = s.raw_peer(true).await.speaking(bitswap::PROTOCOL_1_1_0);
    older
        .want(vec![
            want(&leaf, bitswap::WantType::Have, true),
            want(F, bitswap::WantType::Block, true),
        ])
        .await;
    // Answers go out in the order of the wants: anything said of the leaf comes before F.
    let said = older.answers(&[F], Duration::from_secs(20)).await;
    assert_eq!(said.get(F), Some(&Said::Block(leaves[F].clone())));
    assert_eq!(said.get(&leaf), None, "1.1.0 has no presences: {said:?}");
    let f_v0 = cid::Cid::new_v0(*F.parse::<cid::Cid>().expect("cid").hash())
        .expect("a sha2-256 CID has a CIDv0")
        .to_string();
    let mut oldest = s.raw_peer(true).await.speaking(bitswap::PROTOCOL_1_0_0);
    oldest
        .want(vec![
            want(L[0], bitswap::WantType::Block, true),
            want(&f_v0, bitswap::WantType::Block, true),
        ])
        .await;
    let said = oldest.answers(&[&f_v0], Duration::from_secs(20)).await;
    assert_eq!(said.get(&f_v0), Some(&Said::Block(leaves[F].clone())));
    assert_eq!(said.len(), 1, "1.0.0 cannot carry CIDv1 blocks: {said:?}");

    // Hostile peers: an oversized message and malformed protobuf close their streams; a
    // million wants are cut to the per-peer limit; a peer that never reads its answers holds
    // only itself. Meanwhile others are served.
    let mut hostile = s.raw_peer(true).await;
    {
        use futures::AsyncWriteExt;
        let mut stream = hostile.stream().await;
        stream
            .write_all(&[0x80, 0x80, 0x80, 0x04])
            .await
            .expect("write a 8 MiB length");
        let mut stream = hostile.stream().await;
        stream
            .write_all(&[5, 0x0a, 0x7f, 1, 2, 3])
            .await
            .expect("write garbage");
        let _ = stream.close().await;
    }
    // A million wants: 25 messages of 40,000 (1.7 MB each, under the 4 MiB message limit).
    let flood = (0..25u32).map(|message| {
        (0..40_000u32)
            .map(|i| {
                let n = message * 40_000 + i;
                let cid = nelumbo_car::cid_v1_sha256(0x55, &n.to_le_bytes()).to_string();
                want(&cid, bitswap::WantType::Block, false)
            })
            .collect()
    });
    hostile.want_in_messages(flood).await;
    let mut deaf = s.raw_peer(false).await;
    deaf.want(vec![
        want(&leaf, bitswap::WantType::Block, false),
        want(
            &nelumbo_car::cid_v1_sha256(0x55, &payload[1 << 20..2 << 20]).to_string(),
            bitswap::WantType::Block,
            false,
        ),
        want(
            &nelumbo_car::cid_v1_sha256(0x55, &payload[2 << 20..3 << 20]).to_string(),
            bitswap::WantType::Block,
            false,
        ),
    ])
    .await;
    let asked = std::time::Instant::now();
    good.want(vec![want(&leaf, bitswap::WantType::Block, true)])
        .await;
    let said = good.answers(&[&leaf], Duration::from_secs(20)).await;
    assert_eq!(
        said.get(&leaf),
        Some(&Said::Block(payload[..1 << 20].to_vec()))
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "a good peer waited {:?} behind hostile ones",
        asked.elapsed()
    );
    let metrics = s.get("/metrics", None).await.text().await.expect("metrics");
    let counter = |series: &str| counter(&metrics, series);
    let refused = |reason: &str| {
        counter(&format!(
            "nelumbo_bitswap_refused_total{{reason=\"{reason}\"}}"
        ))
    };
    assert!(refused("too_large") >= 1, "{metrics}");
    assert!(refused("malformed") >= 1, "{metrics}");
    // Every want was read; the ledger holds 1,024 at a time while its worker answers them
    // (with nothing: unknown blocks, no DONT_HAVE asked), so nearly all were cut.
    assert!(
        counter("nelumbo_bitswap_wants_received_total{type=\"block\"}") >= 1_000_000,
        "{metrics}"
    );
    assert!(refused("wants") >= 900_000, "{metrics}");
    // Blocks are counted once written: the leaf to the good peer, and those before.
    assert!(
        counter("nelumbo_bitswap_blocks_sent_total") >= 3,
        "{metrics}"
    );
    assert!(s.markets.pid().is_some(), "markets died");
}

/// Every block of a fixture CAR by CID, read independently of the server.
fn fixture_blocks(name: &str) -> std::collections::HashMap<String, Vec<u8>> {
    let file = std::fs::File::open(fixture(name)).expect("fixture");
    let mut reader = nelumbo_car::CarReader::new(std::io::BufReader::new(file)).expect("CAR");
    let mut blocks = std::collections::HashMap::new();
    while let Some((section, data)) = reader.next_block().expect("block") {
        blocks.insert(section.cid.to_string(), data);
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_and_rotten_bytes_get_nothing_and_the_hub_away_is_a_503() {
    let mut s = setup().await;
    let url = s.markets.retrieval_url.clone();
    let addr = url.trim_start_matches("http://").to_string();

    // Oversized headers: 431, and the process lives on.
    let response = s
        .http
        .get(format!("{url}/ipfs/{T}?format=raw"))
        .header("X-Big", "a".repeat(64 * 1024))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 431);
    // A client that sends half a request head is cut off at the header deadline (2 s here).
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(15), slow.read(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a half-sent request held its connection for 15 s"
    );
    // A thousand idle connections do not keep a good client out.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let started = std::time::Instant::now();
    let response = s.get(&format!("/ipfs/{T}?format=raw"), None).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(idle);

    // A byte of a cached block altered on disk: never served. The rotten copy is dropped, the
    // block comes from the hub intact, and the cache is filled again from the hub.
    let car = std::fs::read(fixture(TRAVERSAL_CAR)).expect("fixture");
    let piece = nelumbo_commp::commp(&car).expect("commp").cid_v1();
    let cached = s
        .markets
        .repo
        .join("piece-cache")
        .join(format!("{piece}.data"));
    let mut bytes = std::fs::read(&cached).expect("the deal's data is in the cache");
    let at = bytes.len() - 10; // inside the last block (T2)
    bytes[at] ^= 0xff;
    std::fs::write(&cached, &bytes).expect("write");
    let response = s.get(&format!("/ipfs/{T2}?format=raw"), None).await;
    assert_eq!(response.status(), 200);
    let served = response.bytes().await.expect("body");
    assert_eq!(served, car[car.len() - served.len()..], "the intact block");
    assert!(s.markets.log().contains("a stored block is not served"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read(&cached).ok().as_deref() != Some(&car[..]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache was not mended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The hub away: a cached piece is served; one that is not cached (the directory
    // fixture's, taken out of the cache while markets was stopped) is answered 503 with
    // Retry-After, the process stays up, and it is served again once the hub is back.
    let dir_car = std::fs::read(fixture(DIR_CAR)).expect("fixture");
    let dir_piece = nelumbo_commp::commp(&dir_car).expect("commp").cid_v1();
    s.markets.stop(false);
    for ext in ["data", "meta"] {
        std::fs::remove_file(
            s.markets
                .repo
                .join("piece-cache")
                .join(format!("{dir_piece}.{ext}")),
        )
        .expect("the directory fixture was cached");
    }
    // The operator's denylist and retrieval filter (the last `filter =` of the config).
    s.markets
        .edit_config("deny = []", &format!("deny = [\"{T1}\"]"));
    let config = s.markets.repo.join("config.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    let at = text.rfind("filter = \"\"").expect("the retrieval filter");
    text.replace_range(
        at..at + "filter = \"\"".len(),
        &format!("filter = \"if grep -q {SINGLE}; then echo not this one; exit 1; fi\""),
    );
    std::fs::write(&config, text).expect("write config");
    s.markets.run().await;
    let response = s.get(&format!("/ipfs/{T1}?format=raw"), None).await;
    assert_eq!(response.status(), 451);
    let response = s.get(&format!("/ipfs/{SINGLE}?format=raw"), None).await;
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("not this one")
    );
    assert_eq!(
        s.get(&format!("/ipfs/{T}?format=raw"), None).await.status(),
        200
    );
    s.hub.stop(false);
    let hamt = std::fs::read(fixture(HAMT_CAR)).expect("fixture");
    let hamt_piece = nelumbo_commp::commp(&hamt).expect("commp").cid_v1();
    let response = s.get(&format!("/piece/{hamt_piece}"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body"), hamt);
    s.expect_car(
        &format!("/ipfs/{R}/685.txt"),
        "",
        &[R, SHARD_FD, F, L[0], L[1], L[2], L[3], L[4]],
    )
    .await;
    for path in [
        format!("/piece/{dir_piece}"),
        format!("/ipfs/{D}?format=car"),
    ] {
        let response = s.get(&path, None).await;
        assert_eq!(response.status(), 503, "{path}");
        assert!(response.headers().contains_key("retry-after"), "{path}");
        // The client will be away for the wait: the connection is not kept for it.
        assert_eq!(
            response
                .headers()
                .get("connection")
                .and_then(|v| v.to_str().ok()),
            Some("close"),
            "{path}"
        );
    }
    assert_eq!(s.get("/health/live", None).await.status(), 200);
    // Over bitswap the same: the cached file's block is served at once, the uncached
    // directory's block and the denied one are DONT_HAVE at once, in one message.
    let mut peer = s.raw_peer(true).await;
    let asked = std::time::Instant::now();
    peer.want(vec![
        want(D, bitswap::WantType::Block, true),
        want(F, bitswap::WantType::Block, true),
        want(T1, bitswap::WantType::Block, true),
    ])
    .await;
    let said = peer.answers(&[D, F, T1], Duration::from_secs(20)).await;
    assert_eq!(said.get(D), Some(&Said::DontHave), "{said:?}");
    assert_eq!(said.get(T1), Some(&Said::DontHave), "{said:?}");
    assert!(matches!(said.get(F), Some(Said::Block(_))), "{said:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "bitswap answers took {:?} with the hub away",
        asked.elapsed()
    );
    s.hub.run(&[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = s.get(&format!("/piece/{dir_piece}"), None).await;
        if response.status() == 200 {
            assert_eq!(response.bytes().await.expect("body"), dir_car);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The hub back: the same peer's want for the directory's block is served, no restart.
    peer.want(vec![want(D, bitswap::WantType::Block, true)])
        .await;
    let said = peer.answers(&[D], Duration::from_secs(20)).await;
    assert!(matches!(said.get(D), Some(Said::Block(_))), "{said:?}");
    let metrics = s.get("/metrics", None).await.text().await.expect("metrics");
    assert!(
        metrics.contains("nelumbo_retrieval_requests_total"),
        "{metrics}"
    );
    assert!(
        counter(&metrics, "nelumbo_bitswap_dont_haves_sent_total") >= 1,
        "{metrics}"
    );
    assert!(
        metrics.contains("nelumbo_retrieval_piece_reads_total"),
        "{metrics}"
    );
}
