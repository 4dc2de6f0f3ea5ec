//! One test suite, run against both backends: the embedded one (redb) and PostgreSQL (a private
//! server started by the test, from Debian's `postgresql` package).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cid::Cid;
use cid::multihash::Multihash;
use nelumbo_piecedir::{
    Block, BlockSource, Embedded, ListSource, PieceDirectory, Postgres, PostgresOptions,
};
use nelumbo_testkit::postgres::PostgresServer;
use sha2::{Digest, Sha256};

fn raw_cid(data: &[u8]) -> Cid {
    Cid::new_v1(
        0x55,
        Multihash::wrap(0x12, &Sha256::digest(data)).expect("hash"),
    )
}

fn piece_cid(n: u8) -> Cid {
    Cid::new_v1(0xf101, Multihash::wrap(0x1012, &[n; 32]).expect("hash"))
}

/// A CAR of `count` raw blocks (block `count - 1` repeats block 7, so a duplicate is kept in
/// the list), and its blocks as a reader sees them.
fn write_car(path: &Path, count: u32, salt: &str) -> Vec<Block> {
    let data = |i: u32| format!("{salt}/{}", if i == count - 1 { 7 } else { i }).into_bytes();
    let cids: Vec<Cid> = (0..count).map(|i| raw_cid(&data(i))).collect();
    let mut writer =
        nelumbo_car::CarWriter::new(std::fs::File::create(path).expect("create"), &[cids[0]])
            .expect("car");
    for (i, cid) in cids.iter().enumerate() {
        writer.write_block(cid, &data(i as u32)).expect("block");
    }
    writer.finish().expect("finish");
    let mut reader =
        nelumbo_car::CarReader::new(std::fs::File::open(path).expect("open")).expect("read");
    let mut blocks = Vec::new();
    while let Some((section, _)) = reader.next_block().expect("block") {
        blocks.push(Block {
            multihash: section.cid.hash().to_bytes(),
            offset: section.data_offset,
            length: section.data_len,
            verified: section.verified,
        });
    }
    blocks
}

/// Gives its blocks, then fails: an indexing cut off part way.
struct FailingSource {
    blocks: Vec<Block>,
    next: usize,
}

impl BlockSource for FailingSource {
    fn roots(&self) -> Vec<String> {
        Vec::new()
    }
    fn next_block(&mut self) -> anyhow::Result<Option<Block>> {
        self.next += 1;
        match self.blocks.get(self.next - 1) {
            Some(block) => Ok(Some(block.clone())),
            None => anyhow::bail!("the CAR ends early (cut off on purpose)"),
        }
    }
    fn bytes_read(&self) -> u64 {
        0
    }
}

fn list(blocks: &[Block]) -> ListSource {
    ListSource::new(vec!["root".into()], blocks.to_vec(), 1234)
}

fn suite(dir: &dyn PieceDirectory, scratch: &Path) {
    // A CAR of 20,000 blocks (three batches): the record, the list in CAR order, each block's
    // place.
    let car = scratch.join("a.car");
    let blocks = write_car(&car, 20_000, "a");
    let piece_a = piece_cid(1);
    assert_eq!(dir.piece(&piece_a.to_string()).expect("read"), None);
    let indexed = nelumbo_piecedir::index_car(dir, &piece_a, &car).expect("index");
    assert_eq!(indexed.blocks, 20_000);
    assert_eq!(indexed.unverified_blocks, 0);
    assert_eq!(
        indexed.car_bytes,
        std::fs::metadata(&car).expect("size").len()
    );
    assert_eq!(indexed.roots, vec![raw_cid(b"a/0").to_string()]);
    assert_eq!(
        dir.piece(&piece_a.to_string()).expect("read"),
        Some(indexed.clone())
    );
    let expected: Vec<Vec<u8>> = blocks.iter().map(|b| b.multihash.clone()).collect();
    assert_eq!(
        dir.multihashes(&piece_a.to_string()).expect("read"),
        Some(expected)
    );
    for block in blocks.iter().step_by(997).chain(blocks.last()) {
        let mut places = dir.locate(&block.multihash).expect("locate");
        places.sort_by_key(|p| p.offset);
        assert!(
            places.iter().any(|p| p.piece_cid == piece_a.to_string()
                && p.offset == block.offset
                && p.length == block.length),
            "block at {} not found where it is: {places:?}",
            block.offset
        );
    }
    // Block 7 is in the CAR twice: both places are found.
    assert_eq!(dir.locate(&blocks[7].multihash).expect("locate").len(), 2);
    assert!(
        dir.locate(&raw_cid(b"never").hash().to_bytes())
            .expect("locate")
            .is_empty()
    );
    assert_eq!(dir.piece_count().expect("count"), 1);

    // Indexing it again reads nothing.
    let opened = AtomicUsize::new(0);
    let open = || -> anyhow::Result<Box<dyn BlockSource>> {
        opened.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(list(&blocks)))
    };
    assert_eq!(
        dir.add_piece(&piece_a.to_string(), &open).expect("again"),
        indexed
    );
    assert_eq!(opened.load(Ordering::SeqCst), 0);

    // An indexing cut off part way lists nothing; the next one completes it, with no block
    // listed twice.
    let b_blocks: Vec<Block> = write_car(&scratch.join("b.car"), 10_000, "b");
    let piece_b = piece_cid(2).to_string();
    let cut = || -> anyhow::Result<Box<dyn BlockSource>> {
        Ok(Box::new(FailingSource {
            blocks: b_blocks[..9_000].to_vec(),
            next: 0,
        }))
    };
    let error = dir.add_piece(&piece_b, &cut).expect_err("cut off");
    assert!(
        format!("{error:#}").contains("cut off on purpose"),
        "{error:#}"
    );
    assert!(nelumbo_piecedir::is_bad_data(&error), "{error:#}");
    assert_eq!(dir.piece(&piece_b).expect("read"), None);
    assert_eq!(dir.multihashes(&piece_b).expect("read"), None);
    assert_eq!(dir.piece_count().expect("count"), 1);
    let whole = || -> anyhow::Result<Box<dyn BlockSource>> { Ok(Box::new(list(&b_blocks))) };
    let indexed_b = dir.add_piece(&piece_b, &whole).expect("index b");
    assert_eq!(indexed_b.blocks, 10_000);
    assert_eq!(indexed_b.car_bytes, 1234);
    assert_eq!(
        dir.multihashes(&piece_b)
            .expect("read")
            .expect("listed")
            .len(),
        10_000
    );
    assert_eq!(dir.locate(&b_blocks[5].multihash).expect("locate").len(), 1);

    // A block in two pieces is found in both.
    let piece_c = piece_cid(3).to_string();
    let shared = vec![Block {
        offset: 99,
        length: 5,
        ..blocks[100].clone()
    }];
    let shared_source = || -> anyhow::Result<Box<dyn BlockSource>> { Ok(Box::new(list(&shared))) };
    dir.add_piece(&piece_c, &shared_source).expect("index c");
    let mut pieces: Vec<String> = dir
        .locate(&blocks[100].multihash)
        .expect("locate")
        .into_iter()
        .map(|p| p.piece_cid)
        .collect();
    pieces.sort();
    let mut want = vec![piece_a.to_string(), piece_c.clone()];
    want.sort();
    assert_eq!(pieces, want);

    // A multihash longer than the directory keeps is refused by name; the piece is not listed.
    let piece_d = piece_cid(4).to_string();
    let long = vec![Block {
        multihash: vec![7; 200],
        offset: 0,
        length: 1,
        verified: false,
    }];
    let long_source = || -> anyhow::Result<Box<dyn BlockSource>> { Ok(Box::new(list(&long))) };
    let error = dir.add_piece(&piece_d, &long_source).expect_err("too long");
    assert!(format!("{error:#}").contains("200 bytes"), "{error:#}");
    assert!(nelumbo_piecedir::is_bad_data(&error), "{error:#}");
    assert_eq!(dir.piece(&piece_d).expect("read"), None);

    // Four threads indexing one piece at once: one record, one list.
    let piece_e = piece_cid(5).to_string();
    let e_blocks = write_car(&scratch.join("e.car"), 9_000, "e");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let open = || -> anyhow::Result<Box<dyn BlockSource>> {
                        Ok(Box::new(list(&e_blocks)))
                    };
                    dir.add_piece(&piece_e, &open).expect("index e")
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().expect("thread").blocks, 9_000);
        }
    });
    assert_eq!(
        dir.multihashes(&piece_e)
            .expect("read")
            .expect("listed")
            .len(),
        9_000
    );
    assert_eq!(
        dir.locate(&e_blocks[8_000].multihash)
            .expect("locate")
            .len(),
        1
    );
    assert_eq!(dir.piece_count().expect("count"), 4);
}

#[test]
fn the_embedded_backend_passes_the_suite() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = Embedded::open(&scratch.path().join("piecedir.redb")).expect("open");
    assert_eq!(dir.backend(), "embedded");
    suite(&dir, scratch.path());
    // What it holds survives a reopen.
    drop(dir);
    let dir = Embedded::open(&scratch.path().join("piecedir.redb")).expect("reopen");
    assert_eq!(dir.piece_count().expect("count"), 4);
}

#[test]
fn the_postgres_backend_passes_the_suite() {
    let server = PostgresServer::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = Postgres::connect(&server.url(), PostgresOptions::default()).expect("connect");
    assert_eq!(dir.backend(), "postgres");
    suite(&dir, scratch.path());
    // A second process on the same database sees everything the first indexed.
    let other = Postgres::connect(&server.url(), PostgresOptions::default()).expect("connect");
    assert_eq!(other.piece_count().expect("count"), 4);
    assert_eq!(
        other
            .multihashes(&piece_cid(1).to_string())
            .expect("read")
            .expect("listed")
            .len(),
        20_000
    );
}

#[test]
fn postgres_migrations_run_once_however_many_processes_start_together() {
    let server = PostgresServer::start();
    let url = server.url();
    let without = PostgresOptions {
        migrate: false,
        ..PostgresOptions::default()
    };
    let error = Postgres::connect(&url, without.clone()).expect_err("no schema yet");
    assert!(
        format!("{error:#}").contains("nelumbo-markets db migrate"),
        "{error:#}"
    );
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| Postgres::connect(&url, PostgresOptions::default()).expect("connect"));
        }
    });
    let dir = Postgres::connect(&url, without).expect("migrated");
    assert_eq!(dir.piece_count().expect("count"), 0);
    drop(dir);

    // A newer build migrated the database further: this one refuses it, migrating or not,
    // and says so in `db status`.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    client
        .execute(
            "INSERT INTO nelumbo_schema (component, version, description) VALUES ('piecedir', 999, 'from a newer build')",
            &[],
        )
        .expect("insert");
    let status = Postgres::schema_status(&url).expect("status");
    assert_eq!(status.unknown, vec![999]);
    assert!(status.pending.is_empty());
    let error = Postgres::connect(&url, PostgresOptions::default()).expect_err("newer schema");
    assert!(
        format!("{error:#}").contains("newer than this build knows"),
        "{error:#}"
    );
}

#[test]
fn postgres_calls_wait_out_a_short_outage_and_fail_clearly_after_a_long_one() {
    let mut server = PostgresServer::start();
    let options = PostgresOptions {
        retry_for: Duration::from_secs(20),
        ..PostgresOptions::default()
    };
    let dir = Postgres::connect(&server.url(), options).expect("connect");
    let scratch = tempfile::tempdir().expect("tempdir");
    let blocks = write_car(&scratch.path().join("a.car"), 100, "a");
    let open = || -> anyhow::Result<Box<dyn BlockSource>> { Ok(Box::new(list(&blocks))) };
    dir.add_piece("piece-1", &open).expect("index");

    // Down for 3 s: a lookup made meanwhile waits and is answered.
    server.stop();
    std::thread::scope(|scope| {
        let lookup = scope.spawn(|| dir.locate(&blocks[3].multihash));
        std::thread::sleep(Duration::from_secs(3));
        server.resume();
        let places = lookup
            .join()
            .expect("thread")
            .expect("answered after the outage");
        assert_eq!(places.len(), 1);
    });

    // Down for longer than the calls retry: the error says what failed.
    let short = PostgresOptions {
        retry_for: Duration::from_secs(1),
        ..PostgresOptions::default()
    };
    let quick = Postgres::connect(&server.url(), short).expect("connect");
    server.stop();
    let error = quick.locate(&blocks[3].multihash).expect_err("down");
    let text = format!("{error:#}");
    assert!(text.contains("piece directory: look a block up"), "{text}");
    assert!(nelumbo_piecedir::is_transient(&error), "{text}");
    server.resume();
    assert_eq!(quick.locate(&blocks[3].multihash).expect("back").len(), 1);
}
