//! The operator's guide's DMZ layout (docs/operations.md, "The hub private, the spokes in a
//! DMZ") built in network namespaces this test creates: the hub on a private host (10.2.0.10,
//! API on :2345), markets on a DMZ host (10.1.0.10, libp2p :24001, HTTP :24080), and the
//! internet (198.51.100.10: the client, the data it serves, and the devnet chain standing in
//! for the Filecoin network), joined by a router. The namespaces are made by the guide's own
//! script ("Trying it on one machine") and its nftables rulesets are loaded on the hub host and
//! the markets host, so the guide and the test cannot drift apart.
//!
//! A client on the internet makes a deal that becomes active and gets its data back over HTTP
//! and bitswap; the hub answers the DMZ host on :2345 but none of its listeners answers the
//! internet (they did before the rules were loaded: the firewall is what stops them, not a
//! missing route); and the markets host cannot open connections into the private network
//! except to the hub's API.
//!
//! Needs root, `ip` and `nft`; skipped with a message otherwise, unless
//! `NELUMBO_REQUIRE_NETNS` is set (CI sets it), which turns the skip into a failure.

use std::net::SocketAddr;
use std::time::Duration;

use nelumbo_testkit::hub::text;
use nelumbo_testkit::markets::{TestClient, TestMarkets};
use nelumbo_testkit::netns::{DMZ, INTERNET, Lab, PRIVATE};

const HUB_API_PORT: u16 = 2345;
const P2P_PORT: u16 = 24001;
const RETRIEVAL_PORT: u16 = 24080;

/// The first fenced block after `marker` in the guide.
fn block_after(guide: &str, marker: &str) -> String {
    let rest = guide
        .split_once(marker)
        .unwrap_or_else(|| panic!("the guide has no {marker:?}"))
        .1;
    let block = rest.split_once("```").expect("a code block").1;
    let block = block.split_once('\n').expect("a fence line").1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_string()
}

/// Whether a TCP connection to `addr` opens within 3 s (from the calling thread's namespace).
async fn connects(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The TCP listeners on `host` that are not on loopback (`ss`, in its namespace).
fn listeners(lab: &Lab, host: nelumbo_testkit::netns::Host) -> Vec<SocketAddr> {
    let output = lab
        .command(host, std::path::Path::new("ss"))
        .args(["-Hltn"])
        .output()
        .expect("run ss");
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(3))
        .filter_map(|local| local.replace('*', "0.0.0.0").parse::<SocketAddr>().ok())
        .filter(|addr| !addr.ip().is_loopback())
        .map(|addr| {
            if addr.ip().is_unspecified() {
                SocketAddr::new(host.address.into(), addr.port())
            } else {
                addr
            }
        })
        .collect()
}

#[test]
fn the_guides_dmz_layout_takes_deals_and_keeps_the_hub_private() {
    if let Some(why) = Lab::unavailable() {
        assert!(
            std::env::var_os("NELUMBO_REQUIRE_NETNS").is_none(),
            "NELUMBO_REQUIRE_NETNS is set, but {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md"),
    )
    .expect("docs/operations.md");
    let lab = Lab::create(&block_after(&guide, "#### Trying it on one machine"));
    lab.run_on(INTERNET, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(deals_and_retrievals_across_the_firewall(&lab, &guide));
    });
}

async fn deals_and_retrievals_across_the_firewall(lab: &Lab, guide: &str) {
    let internet = INTERNET.address.to_string();
    let hub_api = SocketAddr::new(PRIVATE.address.into(), HUB_API_PORT);

    // The chain on the internet; the hub on the private host.
    let (devnet, mut hub) = nelumbo_testkit::hub::insecure_deal_devnet_at(
        &internet,
        Some((&lab.netns(PRIVATE), &hub_api.to_string())),
    )
    .await;
    hub.run(&[]).await;
    assert!(
        connects(hub_api).await,
        "without the firewall the internet reaches the hub: the routes work"
    );

    // The guide's rules, on both hosts.
    lab.apply_nftables(PRIVATE, &block_after(guide, "On the **hub host**"));
    lab.apply_nftables(DMZ, &block_after(guide, "On the **markets host**"));
    for addr in listeners(lab, PRIVATE) {
        assert!(
            !connects(addr).await,
            "the hub host's listener {addr} answers the internet"
        );
    }
    assert!(
        listeners(lab, PRIVATE).contains(&hub_api),
        "the hub listens on {hub_api}"
    );
    let from_dmz = |addr: SocketAddr| {
        lab.run_on(DMZ, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(connects(addr))
        })
    };
    assert!(from_dmz(hub_api), "the markets host reaches the hub's API");
    // Nothing else on the private host answers the DMZ host, even a port that is listening
    // (the hub host's input rules, and the markets host's output rules behind them).
    let other = SocketAddr::new(PRIVATE.address.into(), 22);
    let listening = lab
        .run_on(PRIVATE, || std::net::TcpListener::bind(other))
        .expect("a listener on the hub host");
    assert!(!from_dmz(other), "the DMZ host reaches {other}");
    assert!(!connects(other).await, "the internet reaches {other}");
    drop(listening);

    // Markets on the DMZ host, fetching deal data from the internet (the client's network
    // is a documentation range, which transfers are refused by default).
    let mut markets = TestMarkets::init_in(
        &devnet,
        &hub,
        &lab.netns(DMZ),
        &DMZ.address.to_string(),
        P2P_PORT,
        RETRIEVAL_PORT,
    );
    markets.edit_config(
        "transfer_allow = [\"127.0.0.0/8\", \"::1\"]",
        "transfer_allow = [\"198.51.100.0/24\"]",
    );
    markets.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    markets.run().await;
    assert_eq!(
        markets.retrieval_url,
        format!("http://{}:{RETRIEVAL_PORT}", DMZ.address)
    );

    // A client on the internet: a deal whose data the DMZ host downloads from it, active on
    // chain, then the file back over HTTP and over bitswap, byte for byte.
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 20).await;
    let payload: Vec<u8> = (0..1024 * 1024 + 77u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let file = devnet.dir.path().join("across.bin");
    std::fs::write(&file, &payload).expect("write");
    let serve = format!("{internet}:0");
    let printed = client.deal_active(&hub.actor, &file, &["--serve", &serve], || {
        format!("{}\n{}", markets.log(), hub.log())
    });
    let root = TestClient::data_root(&printed);
    for (how, extra) in [("http", None), ("bitswap", Some("--bitswap"))] {
        let out = devnet.dir.path().join(format!("out-{how}"));
        let mut args = vec!["retrieve", "--provider"];
        let provider = hub.actor.to_string();
        args.push(&provider);
        args.extend(extra);
        args.extend(["--out", out.to_str().expect("path"), &root]);
        let output = client.run(&args);
        assert!(
            output.status.success(),
            "retrieval over {how}: {}\n{}",
            text(&output),
            markets.log()
        );
        assert_eq!(
            std::fs::read(out.join("across.bin")).expect("the file"),
            payload,
            "retrieval over {how}"
        );
    }

    // Still nothing of the hub answers the internet after all that.
    assert!(!connects(hub_api).await, "the internet reaches the hub");
    markets.stop(false);
    hub.stop(false);
}
