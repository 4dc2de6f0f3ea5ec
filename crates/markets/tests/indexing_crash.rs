//! SIGKILL while advertising: a child process (this test binary, run again) appends
//! advertisements and removals to a markets database as the indexing reconciler does (the
//! pieces not yet in the state they should be, one advertisement each), and is killed 20 times:
//! each time after it reports 0 to 2 more advertisements, then a varying few milliseconds
//! (so kills land inside an append as well as between two). After each kill the database must hold a linear chain whose head is
//! stored, in which no piece is advertised twice without a removal between; the last run, not
//! killed, must leave every piece advertised (or withdrawn) exactly as wanted.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cid::Cid;
use nelumbo_markets::indexing::chain::{self, NewAd};
use nelumbo_markets::indexing::ipni::{self, Advertisement};
use nelumbo_markets::store::Store;
use sha2::{Digest, Sha256};

const PIECES: usize = 60;
const BLOCKS_PER_PIECE: usize = 20_000;
const ENV_DB: &str = "NELUMBO_TEST_ADVERTISER_DB";

fn piece_name(i: usize) -> String {
    format!("piece-{i:03}")
}

/// Pieces 0, 5, 10, ... are withdrawn once every piece was advertised.
fn withdrawn(i: usize) -> bool {
    i.is_multiple_of(5)
}

fn multihashes(i: usize) -> Vec<Vec<u8>> {
    (0..BLOCKS_PER_PIECE)
        .map(|b| {
            let mut h = vec![0x12, 0x20];
            h.extend_from_slice(&Sha256::digest(format!("{i}/{b}")));
            h
        })
        .collect()
}

fn key() -> libp2p::identity::Keypair {
    libp2p::identity::Keypair::ed25519_from_bytes([42u8; 32]).expect("key")
}

/// The child's work: bring the chain to the wanted state, one advertisement at a time, each
/// decided from what is stored (as the reconciler decides).
fn advertise_until_done(db: &Path) {
    let store = Store::open(db).expect("open");
    let key = key();
    let new_ad = |i: usize, hashes: Option<Vec<Vec<u8>>>| NewAd {
        piece_cid: piece_name(i),
        padded_size: 1 << 20,
        context_id: piece_name(i).into_bytes(),
        multihashes: hashes,
        addresses: vec!["/ip4/127.0.0.1/tcp/24080/http".into()],
        metadata: ipni::metadata(&[ipni::Transport::IpfsGatewayHttp]),
    };
    for i in 0..PIECES {
        if chain::piece_ad(&store, &piece_name(i))
            .expect("read")
            .is_none()
        {
            chain::append(&store, &key, new_ad(i, Some(multihashes(i)))).expect("append");
            println!("appended");
        }
    }
    for i in (0..PIECES).filter(|i| withdrawn(*i)) {
        let latest = chain::piece_ad(&store, &piece_name(i))
            .expect("read")
            .expect("advertised");
        if !latest.is_rm {
            chain::append(&store, &key, new_ad(i, None)).expect("append a removal");
            println!("appended");
        }
    }
    println!("done");
}

/// Checks what a kill may leave: a linear chain from the head, every link stored, records in
/// step with the chain, and each piece alternating between advertised and withdrawn.
fn check_chain(db: &Path) -> HashMap<String, bool> {
    let store = Store::open(db).expect("open after a kill");
    let count = chain::ad_count(&store).expect("count");
    let records = chain::ads(&store, 1, usize::MAX).expect("records");
    assert_eq!(records.len() as u64, count);
    let Some((head_seq, head)) = chain::head(&store).expect("head") else {
        assert_eq!(count, 0);
        return HashMap::new();
    };
    assert_eq!(head_seq, count);
    // Walk back from the head.
    let mut link = Some(head);
    let mut walked: Vec<Cid> = Vec::new();
    while let Some(cid) = link {
        let bytes = chain::block(&store, &cid)
            .expect("read")
            .unwrap_or_else(|| panic!("the chain names {cid}, which is not stored"));
        assert_eq!(ipni::dag_json_cid(&bytes), cid);
        let ad = Advertisement::decode(&bytes).expect("decode");
        ad.verify().expect("signed");
        if !ad.is_rm {
            assert!(chain::block(&store, &ad.entries).expect("read").is_some());
        }
        walked.push(cid);
        link = ad.previous;
    }
    walked.reverse();
    assert_eq!(
        walked.len() as u64,
        count,
        "the chain from the head skips records"
    );
    let mut state: HashMap<String, bool> = HashMap::new();
    for (record, cid) in records.iter().zip(&walked) {
        assert_eq!(
            record.cid,
            cid.to_string(),
            "record {} is not the chain's",
            record.seq
        );
        let was = state.get(&record.piece_cid).copied();
        if record.is_rm {
            assert_eq!(
                was,
                Some(true),
                "{} withdrawn while not advertised",
                record.piece_cid
            );
        } else {
            assert_ne!(was, Some(true), "{} advertised twice", record.piece_cid);
        }
        state.insert(record.piece_cid.clone(), !record.is_rm);
        let latest = chain::piece_ad(&store, &record.piece_cid)
            .expect("read")
            .expect("state");
        assert!(latest.seq >= record.seq);
    }
    state
}

/// Run by the parent with the database path in the environment; does nothing otherwise.
#[test]
#[ignore = "the child of sigkill_while_advertising_never_forks_or_repeats"]
fn advertiser_child() {
    if let Some(db) = std::env::var_os(ENV_DB) {
        advertise_until_done(Path::new(&db));
    }
}

#[test]
fn sigkill_while_advertising_never_forks_or_repeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("markets.redb");
    let exe = std::env::current_exe().expect("the test binary");
    let child = |output: std::process::Stdio| {
        Command::new(&exe)
            .args(["--exact", "advertiser_child", "--ignored", "--nocapture"])
            .env(ENV_DB, &db)
            .stdout(output)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the child")
    };
    for round in 0..20u64 {
        let mut running = child(std::process::Stdio::piped());
        let mut lines = std::io::BufReader::new(running.stdout.take().expect("stdout")).lines();
        // Wait for 0 to 2 more advertisements, then a few milliseconds that vary.
        let mut appended = 0;
        while appended < round % 3 {
            // The harness prints lines of its own too.
            let line = lines.next().expect("a line").expect("read");
            assert_ne!(
                line, "done",
                "the child finished before round {round}'s kill"
            );
            if line == "appended" {
                appended += 1;
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .subsec_nanos();
        std::thread::sleep(Duration::from_millis(u64::from(nanos % 20)));
        running.kill().expect("SIGKILL");
        running.wait().expect("reap");
        let state = check_chain(&db);
        eprintln!(
            "round {round}: {} pieces in the chain after the kill",
            state.len()
        );
    }
    let status = child(std::process::Stdio::null())
        .wait()
        .expect("the last run");
    assert!(status.success(), "the last run failed");
    let state = check_chain(&db);
    for i in 0..PIECES {
        assert_eq!(
            state.get(&piece_name(i)).copied(),
            Some(!withdrawn(i)),
            "piece {i}"
        );
    }
}
