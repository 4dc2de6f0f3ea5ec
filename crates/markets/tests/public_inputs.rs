//! What strangers can make a markets process do through its public inputs, and what they
//! cannot: reach inside through a transfer URL, fill staging, hold transfer slots with a slow
//! sender, or starve a good client with idle connections and a flood of proposals.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nelumbo_markets_api::admin::DealState;
use nelumbo_markets_api::wire::{HttpRequest, Transfer};
use nelumbo_testkit::markets::DataServer;

fn http_transfer(url: String, size: u64) -> Transfer {
    Transfer {
        size,
        kind: "http".into(),
        params: serde_json::to_vec(&HttpRequest { url, headers: None }).expect("json"),
        client_id: String::new(),
    }
}

/// A server that redirects every request to `?to=URL`.
async fn redirector() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = hits.clone();
    let router = axum::Router::new().route(
        "/go",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    axum::response::Redirect::temporary(q.get("to").map_or("/", String::as_str))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_urls_that_reach_inside_are_refused_without_contact() {
    // Only the redirector's own address may be fetched from (a devnet-style allow entry for
    // one socket); everything else on loopback is "inside".
    let (redirect_port, redirects) = redirector().await;
    let w = world_with(|m| {
        m.edit_config(
            "transfer_allow = [\"127.0.0.0/8\", \"::1\"]",
            &format!("transfer_allow = [\"127.0.0.1:{redirect_port}\"]"),
        )
    })
    .await;
    // The inside service the URLs point at: it must never see a request.
    let inside_dir = w.devnet.dir.path().join("inside");
    std::fs::create_dir_all(&inside_dir).expect("dir");
    std::fs::write(inside_dir.join("data.car"), &w.car).expect("write");
    let inside = DataServer::start(inside_dir, Duration::ZERO).await;
    let inside_port = inside
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .expect("port");
    let size = w.car.len() as u64;
    let go = |to: String| format!("http://127.0.0.1:{redirect_port}/go?to={to}");
    let urls = [
        format!("http://127.0.0.1:{inside_port}/data.car"),
        format!("http://localhost:{inside_port}/data.car"),
        format!("http://[::1]:{inside_port}/data.car"),
        format!("http://0x7f000001:{inside_port}/data.car"),
        go(format!("http://127.0.0.1:{inside_port}/data.car")),
        go(format!("http://localhost:{inside_port}/data.car")),
    ];
    for url in urls {
        let (proposal, _) = w.good_deal().await;
        let (_, response) = w.propose(proposal, http_transfer(url.clone(), size)).await;
        assert!(!response.accepted, "{url} was accepted");
        assert!(
            response.message.contains("not a public address"),
            "{url}: {}",
            response.message
        );
        // Nothing about the inside is told: no status, no size, no body.
        for leak in ["200", "206", "OK", &size.to_string(), "answered"] {
            assert!(
                !response.message.contains(leak),
                "{url}: the refusal tells {leak:?}: {}",
                response.message
            );
        }
    }
    assert_eq!(
        inside.ranges.lock().expect("ranges").len(),
        0,
        "the inside service was contacted"
    );
    assert!(
        redirects.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the allowed URL was not even tried"
    );
    let rejected = reqwest::get(format!("{}/metrics", w.markets.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        rejected.contains("reason=\"transfer_address\""),
        "{rejected}"
    );
}

/// Bytes of deal data in staging now.
fn staged_bytes(w: &World) -> u64 {
    std::fs::read_dir(w.markets.repo.join("staging"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_fill_staging_and_slow_senders_are_cut_off() {
    // A high-water mark of five deals' data; failed deals' data goes after 3 s; a transfer
    // must move 300 bytes a second over 2-second windows, and gets one attempt.
    let w = world_with(|m| {
        m.edit_config(
            "staging_max_bytes = 1099511627776",
            "staging_max_bytes = 4000",
        );
        m.edit_config(
            "failed_staging_grace_secs = 86400",
            "failed_staging_grace_secs = 3",
        );
        m.edit_config(
            "min_transfer_bytes_per_sec = 16384",
            "min_transfer_bytes_per_sec = 300",
        );
        m.edit_config(
            "transfer_rate_window_secs = 60",
            "transfer_rate_window_secs = 2",
        );
        m.edit_config("max_transfer_attempts = 10", "max_transfer_attempts = 1");
    })
    .await;
    let size = w.car.len() as u64;
    assert!(size * 5 <= 4000 && size * 6 > 4000, "{size}");
    let metrics = reqwest::get(format!("{}/metrics", w.markets.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        nelumbo_testkit::metrics::value(&metrics, "nelumbo_markets_staging_max_bytes"),
        Some(4000.0),
        "the high-water mark alerts compare against"
    );

    // 200 proposals whose data is not what they say (the piece commitment is of other bytes).
    let mut accepted = 0;
    let mut refused_full = 0;
    let mut peak = 0;
    let other: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let wrong_piece = nelumbo_commp::commp(&other).expect("commp");
    for wave in 0..25 {
        let mut batch = Vec::new();
        for i in 0..8 {
            let (mut proposal, transfer) = w.good_deal().await;
            proposal.piece_cid = wrong_piece.cid_v1();
            proposal.label =
                nelumbo_markets_api::wire::Label::String(format!("stranger {wave}-{i}"));
            batch.push(w.propose(proposal, transfer));
        }
        for (_, response) in futures::future::join_all(batch).await {
            if response.accepted {
                accepted += 1;
            } else {
                assert!(
                    response.message.contains("staging area is full")
                        || response.message.contains("busy"),
                    "{}",
                    response.message
                );
                refused_full += 1;
            }
        }
        peak = peak.max(staged_bytes(&w));
        assert!(peak <= 4000, "staging holds {peak} bytes, past the mark");
    }
    assert!(accepted >= 5, "only {accepted} of 200 accepted");
    assert!(refused_full > 0, "the high-water mark never refused one");

    // Every accepted one failed on its data, and its staged data is gone after the grace.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let deals = w
            .markets
            .client
            .call::<nelumbo_markets_api::admin::DealsList>(())
            .await
            .expect("deals");
        let failing = deals.iter().all(|d| d.state == DealState::Failed);
        if failing && staged_bytes(&w) == 0 {
            assert!(
                deals.iter().all(|d| d.error.contains("piece commitment")),
                "{deals:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "staging still holds {} bytes: {deals:?}",
            staged_bytes(&w)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A slow sender: 64 bytes every second, under the 300 bytes/s minimum.
    let (error, took) = fails_with_a_slow_sender(&w).await;
    assert!(error.contains("slower than the minimum rate"), "{error}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_end_what_a_stranger_starts_and_leaves() {
    // A transfer must finish within 4 s, even above the minimum rate (16 bytes/s here); an
    // offline deal must get its data within 3 s; a deal lasts at most 2,000 epochs.
    let w = world_with(|m| {
        m.edit_config(
            "transfer_deadline_secs = 86400",
            "transfer_deadline_secs = 4",
        );
        m.edit_config(
            "offline_import_timeout_secs = 259200",
            "offline_import_timeout_secs = 3",
        );
        m.edit_config(
            "min_transfer_bytes_per_sec = 16384",
            "min_transfer_bytes_per_sec = 16",
        );
        m.edit_config(
            "transfer_rate_window_secs = 60",
            "transfer_rate_window_secs = 2",
        );
        m.edit_config(
            "max_duration_epochs = 1278000",
            "max_duration_epochs = 2000",
        );
    })
    .await;
    let size = w.car.len() as u64;

    // Too long a deal is refused, naming the limit.
    let (mut proposal, transfer) = w.good_deal().await;
    proposal.end_epoch = proposal.start_epoch + 2001;
    w.expect_rejected(
        proposal,
        transfer,
        &["duration out of bounds", "2000", "2001"],
    )
    .await;

    // 64 bytes a second is above the minimum rate but cannot deliver the CAR within 4 s: the
    // transfer is cut at the deadline, not when the sender finally finishes.
    assert!(size > 64 * 8, "{size}");
    let (error, took) = fails_with_a_slow_sender(&w).await;
    assert!(error.contains("did not finish within 4 s"), "{error}");
    assert!(
        took < Duration::from_secs(8),
        "the transfer ran {took:?}, past its deadline"
    );

    // An offline deal whose data never comes holds nothing for long.
    let (proposal, _) = w.good_deal().await;
    let (uuid, response) = w.propose_offline(proposal).await;
    assert!(response.accepted, "{}", response.message);
    let failed = w
        .markets
        .wait_deal(
            &uuid.to_string(),
            DealState::Failed,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        failed.error.contains("no data was imported within 3 s"),
        "{}",
        failed.error
    );
}

/// Proposes a deal whose data comes from a sender of 64 bytes a second and waits for the
/// deal to fail: its error, and how long after the proposal it failed.
async fn fails_with_a_slow_sender(w: &World) -> (String, Duration) {
    let slow_dir = w.devnet.dir.path().join("slow");
    std::fs::create_dir_all(&slow_dir).expect("dir");
    std::fs::write(slow_dir.join("data.car"), &w.car).expect("write");
    let slow = DataServer::start(slow_dir, Duration::from_millis(1000)).await;
    let (proposal, _) = w.good_deal().await;
    let started = Instant::now();
    let transfer = http_transfer(format!("{}/data.car", slow.base), w.car.len() as u64);
    let (uuid, response) = w.propose(proposal, transfer).await;
    assert!(response.accepted, "{}", response.message);
    let failed = w
        .markets
        .wait_deal(
            &uuid.to_string(),
            DealState::Failed,
            Duration::from_secs(30),
        )
        .await;
    (failed.error, started.elapsed())
}

/// Keeps a libp2p connection to the provider open (and idle) until `stop`.
async fn idle_connection(
    peer: libp2p::PeerId,
    addr: libp2p::Multiaddr,
    connected: tokio::sync::mpsc::Sender<bool>,
    stop: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    let mut swarm = nelumbo_markets_api::p2p::build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        "idle",
        false,
        nelumbo_markets_api::p2p::Limits::none(),
    )
    .expect("swarm");
    swarm.add_peer_address(peer, addr);
    if swarm.dial(peer).is_err() {
        let _ = connected.send(false).await;
        return;
    }
    let mut told = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } if !told => {
                    told = true;
                    let _ = connected.send(true).await;
                }
                SwarmEvent::OutgoingConnectionError { .. } if !told => {
                    told = true;
                    let _ = connected.send(false).await;
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_proposal_flood_leave_a_good_client_answered() {
    // The loopback test has one address for every peer: the per-address limit is raised so
    // the 1,000 connections are all let in (it is exercised on its own in markets-api).
    let w = world_with(|m| {
        m.edit_config(
            "max_connections_per_ip = 128",
            "max_connections_per_ip = 1100",
        )
    })
    .await;
    let before = w.markets.resident_bytes().expect("resident memory");

    // Opened 50 at a time: more handshakes at once than `max_pending_connections` (128) are
    // refused, which is that limit doing its work.
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1100);
    let mut established = 0;
    for _ in 0..20 {
        for _ in 0..50 {
            tokio::spawn(idle_connection(
                w.peer,
                w.addr.clone(),
                tx.clone(),
                stop.clone(),
            ));
        }
        for _ in 0..50 {
            if rx.recv().await == Some(true) {
                established += 1;
            }
        }
    }
    assert_eq!(
        established, 1000,
        "idle connections refused below every limit"
    );

    // A flood of proposals with bad signatures from 40 peers at once, and meanwhile a good
    // client's proposal.
    let flood: Vec<_> = (0..40)
        .map(|_| async {
            let other = nelumbo_keys::KeyInfo::generate(nelumbo_keys::KeyKind::Secp256k1);
            for _ in 0..5 {
                let (proposal, transfer) = w.good_deal().await;
                let (_, response) = w.propose_signed_by(&other, proposal, transfer).await;
                assert!(!response.accepted);
            }
        })
        .collect();
    let good = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let (proposal, transfer) = w.good_deal().await;
        let (_, response) = w.propose(proposal, transfer).await;
        (started.elapsed(), response)
    };
    let (_, (took, response)) = tokio::join!(futures::future::join_all(flood), good);
    assert!(response.accepted, "{}", response.message);
    assert!(
        took < Duration::from_secs(10),
        "the good client waited {took:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", w.markets.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let open = nelumbo_testkit::metrics::value(&metrics, "nelumbo_markets_connections")
        .expect("connections gauge");
    assert!(open >= 1000.0, "{open} connections open");
    let after = w.markets.resident_bytes().expect("resident memory");
    let grown = after.saturating_sub(before);
    eprintln!(
        "markets memory: {} MiB before, {} MiB with 1,000 idle connections and the flood",
        before >> 20,
        after >> 20
    );
    assert!(grown < 256 << 20, "memory grew by {} MiB", grown >> 20);
    stop.cancel();
}
