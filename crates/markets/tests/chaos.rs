//! The chaos run: a chain, a hub and a markets process running every service; a client making
//! deals whose data a web server hands out slowly; and a fault injector that, at moments drawn
//! from a seed it prints, SIGKILLs markets, the hub or the chain, pauses markets or the hub for
//! seconds (SIGSTOP), or cuts or slows the network link between markets and the hub (a TCP link
//! in the test), then starts again what it killed. Afterwards it checks what an SP
//! would: every deal the provider accepted ends active (none stuck, lost or failed); each was
//! published exactly once and each sector pre-committed and prove-committed exactly once,
//! counted over every block; no sector was ever faulty (no WindowPoSt missed); and every
//! deal's file comes back byte for byte over HTTP. It prints it all as a table.
//!
//! Insecure testing proofs, so a deal takes seconds. Sized by `NELUMBO_CHAOS_DEALS` and
//! `NELUMBO_CHAOS_FAULTS` (8 and 24 by default, the short run CI makes); `NELUMBO_CHAOS_SEED`
//! replays a run: the faults, their moments and the deals' data come from it (what the
//! processes are doing when a fault lands still varies with the machine).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::StateMinerFaults;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_markets_api::admin::{DealInfo, DealState, DealsList};
use nelumbo_testkit::chain::SUBMIT_WINDOWED_POST;
use nelumbo_testkit::hub::{insecure_deal_devnet, text};
use nelumbo_testkit::link::TcpLink;
use nelumbo_testkit::markets::{DataServer, TestClient, TestMarkets, free_port};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SERVICES: &str = "deals,retrieval,indexing";
/// Proposals in flight at once.
const PROPOSING_AT_ONCE: usize = 2;
/// A proposal the client could not make (the provider or the chain away) is tried again, this
/// many times at most.
const PROPOSAL_TRIES: u32 = 20;
/// After the last fault and proposal, how long the deals get to finish.
const SETTLE: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillMarkets,
    PauseMarkets,
    KillHub,
    PauseHub,
    KillChain,
    CutHubLink,
    SlowHubLink,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::KillMarkets => "SIGKILL markets",
            Self::PauseMarkets => "pause markets",
            Self::KillHub => "SIGKILL hub",
            Self::PauseHub => "pause hub",
            Self::KillChain => "SIGKILL chain",
            Self::CutHubLink => "cut markets-hub link",
            Self::SlowHubLink => "slow markets-hub link",
        }
    }

    /// Spokes fail most in the field, so most faults hit markets.
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        match rng.gen_range(0..30) {
            0..=7 => Self::KillMarkets,
            8..=11 => Self::PauseMarkets,
            12..=17 => Self::KillHub,
            18..=20 => Self::PauseHub,
            21..=23 => Self::KillChain,
            24..=27 => Self::CutHubLink,
            _ => Self::SlowHubLink,
        }
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// One deal's data, as the client made it.
struct Data {
    bytes: Vec<u8>,
    car: PathBuf,
    root: String,
    url: String,
}

/// A `nelumbo client deal` process under way.
struct Proposing {
    index: usize,
    try_number: u32,
    child: tokio::process::Child,
    started: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_faults_lose_no_deal() {
    let seed = std::env::var("NELUMBO_CHAOS_SEED")
        .ok()
        .map(|v| v.parse::<u64>().expect("NELUMBO_CHAOS_SEED is a number"))
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    let deals_wanted = setting("NELUMBO_CHAOS_DEALS", 8) as usize;
    let faults_wanted = setting("NELUMBO_CHAOS_FAULTS", 24) as usize;
    eprintln!(
        "chaos: seed {seed}, {deals_wanted} deals, {faults_wanted} faults (replay with NELUMBO_CHAOS_SEED={seed})"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let (mut devnet, mut hub) = insecure_deal_devnet().await;
    // One port across restarts, so markets finds the hub again.
    let hub_port = free_port();
    hub.edit_config(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{hub_port}\""),
    );
    hub.run(&[]).await;
    let mut markets = TestMarkets::init(&devnet, &hub);
    // Markets reaches the hub through a link the faults can cut or slow.
    let link = TcpLink::start(format!("127.0.0.1:{hub_port}")).await;
    let info = markets.repo.join("hub-api-info");
    let through_link = std::fs::read_to_string(&info)
        .expect("markets' hub connection")
        .replace(
            &format!("/tcp/{hub_port}/"),
            &format!("/tcp/{}/", link.port),
        );
    assert!(through_link.contains(&format!("/tcp/{}/", link.port)));
    std::fs::write(&info, through_link).expect("point markets at the link");
    markets.run_services(SERVICES).await;
    let client = TestClient::new(&devnet);
    client.funded_wallet(&devnet, 100).await;
    let web = tempfile::tempdir().expect("tempdir");
    // 1 ms after every 64 bytes: a deal's transfer takes about a second, so faults land in
    // transfers as well as in every later step.
    let server = DataServer::start(web.path().to_path_buf(), Duration::from_millis(1)).await;

    let data: Vec<Data> = (0..deals_wanted)
        .map(|i| {
            let len = rng.gen_range(2_000..60_000);
            let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let car = web.path().join(format!("deal-{i}.car"));
            let file = std::fs::File::create(&car).expect("create the CAR");
            let packed =
                nelumbo_car::unixfs::pack(bytes.as_slice(), file, None).expect("pack the data");
            Data {
                bytes,
                url: format!("{}/deal-{i}.car", server.base),
                car,
                root: packed.root.to_string(),
            }
        })
        .collect();

    let provider = hub.actor.to_string();
    let propose = |index: usize, try_number: u32| -> Proposing {
        let data = &data[index];
        let mut command = client.command(&[
            "deal",
            "--provider",
            &provider,
            "--car",
            "--url",
            &data.url,
            "--start-in",
            "1200",
            "--duration",
            "400",
            data.car.to_str().expect("a UTF-8 path"),
        ]);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("run nelumbo client");
        Proposing {
            index,
            try_number,
            child,
            started: Instant::now(),
        }
    };

    // Proposals spread over the time the faults take (about 4 s each), so faults land in
    // every step of many deals rather than after the last deal is done.
    let proposal_gap_ms = (8_000 * faults_wanted as u64 / deals_wanted.max(1) as u64).max(2_000);
    let started = Instant::now();
    let mut to_propose: Vec<(usize, u32)> = (0..deals_wanted).rev().map(|i| (i, 1)).collect();
    let mut proposing: Vec<Proposing> = Vec::new();
    let mut next_proposal = Instant::now();
    // UUID -> the deal's data, for the deals the client heard accepted.
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut proposal_retries = 0u32;
    let mut faults: Vec<(Fault, Vec<DealState>)> = Vec::new();
    let mut next_fault = Instant::now() + Duration::from_millis(rng.gen_range(1_000..3_000));
    let mut seen: HashMap<String, DealInfo> = HashMap::new();
    let mut faulty_seen = 0usize;
    let mut last_faults_check = Instant::now();
    let mut settle_from: Option<Instant> = None;

    loop {
        // Proposals.
        if proposing.len() < PROPOSING_AT_ONCE
            && Instant::now() >= next_proposal
            && let Some((index, try_number)) = to_propose.pop()
        {
            proposing.push(propose(index, try_number));
            next_proposal =
                Instant::now() + Duration::from_millis(rng.gen_range(300..proposal_gap_ms));
        }
        let mut still = Vec::new();
        for mut p in proposing.drain(..) {
            let done = match p.child.try_wait().expect("poll the client") {
                Some(_) => true,
                None if p.started.elapsed() > Duration::from_secs(120) => {
                    let _ = p.child.start_kill();
                    true
                }
                None => false,
            };
            if !done {
                still.push(p);
                continue;
            }
            let output = p
                .child
                .wait_with_output()
                .await
                .expect("the client's output");
            let printed = text(&output);
            let uuid = printed
                .split("deal ")
                .filter_map(|rest| rest.split_whitespace().next())
                .find(|word| word.len() == 36);
            match (output.status.success(), uuid) {
                (true, Some(uuid)) => {
                    accepted.insert(uuid.to_string(), p.index);
                }
                _ => {
                    // The provider, the hub or the chain was away: try again later, as a
                    // client would.
                    assert!(
                        p.try_number < PROPOSAL_TRIES,
                        "deal {} was never accepted after {PROPOSAL_TRIES} tries; last answer:\n{printed}",
                        p.index
                    );
                    proposal_retries += 1;
                    to_propose.insert(0, (p.index, p.try_number + 1));
                }
            }
        }
        proposing = still;

        // Faults.
        if faults.len() < faults_wanted && Instant::now() >= next_fault {
            let fault = Fault::draw(&mut rng);
            let hit: Vec<DealState> = seen
                .values()
                .map(|d| d.state)
                .filter(|s| !s.is_final())
                .collect();
            let down = Duration::from_millis(rng.gen_range(0..2_000));
            let pause = Duration::from_millis(rng.gen_range(500..4_000));
            match fault {
                Fault::KillMarkets => {
                    markets.stop(true);
                    tokio::time::sleep(down).await;
                    markets.run_services(SERVICES).await;
                }
                Fault::PauseMarkets => {
                    let pid = markets.pid().expect("markets runs");
                    nelumbo_testkit::pause_process(pid, pause).await;
                }
                Fault::KillHub => {
                    hub.stop(true);
                    tokio::time::sleep(down).await;
                    hub.run(&[]).await;
                }
                Fault::PauseHub => {
                    let pid = hub.pid().expect("the hub runs");
                    // Shorter: a paused hub proves nothing, and the chain goes on.
                    nelumbo_testkit::pause_process(pid, pause / 2).await;
                }
                Fault::KillChain => {
                    devnet.stop(true);
                    tokio::time::sleep(down).await;
                    devnet.run().await;
                }
                Fault::CutHubLink => {
                    link.cut(true);
                    tokio::time::sleep(pause * 2).await;
                    link.cut(false);
                }
                Fault::SlowHubLink => {
                    link.slow(Duration::from_millis(rng.gen_range(100..500)));
                    tokio::time::sleep(pause * 2).await;
                    link.slow(Duration::ZERO);
                }
            }
            faults.push((fault, hit));
            next_fault = Instant::now() + Duration::from_millis(rng.gen_range(1_000..4_000));
        }

        // What the provider says.
        if let Ok(Ok(list)) =
            tokio::time::timeout(Duration::from_secs(5), markets.client.call::<DealsList>(())).await
        {
            for deal in list {
                seen.insert(deal.uuid.clone(), deal);
            }
        }
        if last_faults_check.elapsed() > Duration::from_secs(2) {
            last_faults_check = Instant::now();
            if let Ok(Ok(faulty)) = tokio::time::timeout(
                Duration::from_secs(5),
                devnet
                    .client
                    .call::<StateMinerFaults>((Addr(hub.actor), TipSetKey::head())),
            )
            .await
            {
                faulty_seen = faulty_seen.max(faulty.0.len() as usize);
            }
        }

        let injecting =
            faults.len() < faults_wanted || !to_propose.is_empty() || !proposing.is_empty();
        if !injecting {
            let settle_from = *settle_from.get_or_insert_with(Instant::now);
            let all_final = accepted
                .keys()
                .all(|uuid| seen.get(uuid).is_some_and(|d| d.state.is_final()))
                && seen.values().all(|d| d.state.is_final());
            if all_final || settle_from.elapsed() > SETTLE {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ran = started.elapsed();

    // What the chain says, counted over every block.
    let published = devnet.published_proposals().await;
    let (pre_commits, prove_commits) = devnet.sector_commits(hub.actor).await;
    let window_posts = devnet
        .messages_to(hub.actor, SUBMIT_WINDOWED_POST)
        .await
        .len();

    let by_state = |state: DealState| seen.values().filter(|d| d.state == state).count();
    let active: Vec<&DealInfo> = seen
        .values()
        .filter(|d| d.state == DealState::Active)
        .collect();
    let failed: Vec<&DealInfo> = seen
        .values()
        .filter(|d| d.state == DealState::Failed)
        .collect();
    let stuck: Vec<&DealInfo> = seen.values().filter(|d| !d.state.is_final()).collect();
    let lost: Vec<&String> = accepted.keys().filter(|u| !seen.contains_key(*u)).collect();
    let published_twice: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();
    let unpublished: Vec<&&DealInfo> = active
        .iter()
        .filter(|d| {
            !published
                .keys()
                .any(|cid| cid.to_string() == d.proposal_cid)
        })
        .collect();
    let sectors_twice: Vec<_> = pre_commits
        .iter()
        .chain(prove_commits.iter())
        .filter(|(_, n)| **n > 1)
        .collect();

    // Every active deal's file, over HTTP, byte for byte.
    let mut retrieved = 0;
    let mut retrieval_failures = Vec::new();
    let out = tempfile::tempdir().expect("tempdir");
    for deal in &active {
        let Some(index) = data.iter().position(|d| d.root == deal.data_root) else {
            retrieval_failures.push(format!(
                "{}: data root {} is no deal's",
                deal.uuid, deal.data_root
            ));
            continue;
        };
        let path = out.path().join(&deal.uuid);
        let output = client.run(&[
            "retrieve",
            "--provider",
            &provider,
            "--out",
            path.to_str().expect("a UTF-8 path"),
            "--wait",
            "120",
            &deal.data_root,
        ]);
        match std::fs::read(&path) {
            Ok(bytes) if output.status.success() && bytes == data[index].bytes => retrieved += 1,
            _ => retrieval_failures.push(format!("{}: {}", deal.uuid, text(&output))),
        }
    }

    let mut by_kind: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut by_step: BTreeMap<DealState, usize> = BTreeMap::new();
    for (fault, hit) in &faults {
        *by_kind.entry(*fault).or_default() += 1;
        let mut steps = hit.clone();
        steps.sort();
        steps.dedup();
        for step in steps {
            *by_step.entry(step).or_default() += 1;
        }
    }
    let mut table = String::new();
    let mut row = |name: &str, value: String| table.push_str(&format!("  {name:<44} {value}\n"));
    row("seed", seed.to_string());
    row("run time", format!("{:.0} s", ran.as_secs_f64()));
    row("faults", faults.len().to_string());
    for (fault, n) in &by_kind {
        row(&format!("  {}", fault.name()), n.to_string());
    }
    for (step, n) in &by_step {
        row(&format!("  landing while a deal was {step}"), n.to_string());
    }
    row(
        "proposals tried again (provider away)",
        proposal_retries.to_string(),
    );
    row("deals accepted by the provider", seen.len().to_string());
    row("  active", active.len().to_string());
    row("  failed", failed.len().to_string());
    row("  stuck (not final)", stuck.len().to_string());
    row(
        "  accepted by the client, unknown to the provider",
        lost.len().to_string(),
    );
    row("  cancelled", by_state(DealState::Cancelled).to_string());
    row(
        "publish messages' deals (each once)",
        format!(
            "{} deals, {} sent twice",
            published.len(),
            published_twice.len()
        ),
    );
    row(
        "sectors pre-committed / prove-committed",
        format!(
            "{} / {}, {} named twice",
            pre_commits.len(),
            prove_commits.len(),
            sectors_twice.len()
        ),
    );
    row("WindowPoSts submitted", window_posts.to_string());
    row("most sectors ever faulty", faulty_seen.to_string());
    row(
        "retrievals verified",
        format!("{retrieved} of {}", active.len()),
    );
    eprintln!("chaos: results\n{table}");

    let context = || {
        format!(
            "seed {seed} (replay with NELUMBO_CHAOS_SEED={seed})\n{table}\nfailed: {failed:#?}\nstuck: {stuck:#?}\nmarkets log (end):\n{}\nhub log (warnings and errors, end):\n{}",
            tail(&markets.log(), 40),
            tail(&warnings(&hub.log()), 60)
        )
    };
    assert!(faults.len() >= faults_wanted, "{}", context());
    assert!(
        seen.len() >= deals_wanted,
        "fewer deals than asked for: {}",
        context()
    );
    assert!(stuck.is_empty(), "stuck deals: {}", context());
    assert!(failed.is_empty(), "failed deals: {}", context());
    assert!(lost.is_empty(), "lost deals {lost:?}: {}", context());
    assert!(
        published_twice.is_empty(),
        "published twice {published_twice:?}: {}",
        context()
    );
    assert!(
        unpublished.is_empty(),
        "active but not published: {}",
        context()
    );
    assert!(
        sectors_twice.is_empty(),
        "sectors committed twice {sectors_twice:?}: {}",
        context()
    );
    for deal in &active {
        let sector = deal.sector.expect("an active deal's sector");
        assert_eq!(
            prove_commits.get(&sector),
            Some(&1),
            "sector {sector}: {}",
            context()
        );
    }
    assert_eq!(faulty_seen, 0, "sectors went faulty: {}", context());
    assert!(
        retrieval_failures.is_empty(),
        "retrievals failed: {retrieval_failures:#?}\n{}",
        context()
    );
    assert_eq!(retrieved, active.len());
    drop(server);
    drop(hub);
    drop(devnet);
}

fn warnings(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
