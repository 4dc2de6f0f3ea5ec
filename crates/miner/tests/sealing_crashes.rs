//! The sealing pipeline survives SIGKILL: a committed-capacity sector killed in pre-commit 2
//! (after the replica is written, before CommR is recorded) and again while its prove-commit
//! message is on its way still reaches Proving, and the chain holds exactly one pre-commit and
//! one prove-commit for it. Also: the API refuses calls without a token or with too low a
//! permission. Insecure testing proofs: this is about the state machine; pre-commit 1 and 2
//! are real.

use std::time::Duration;

use nelumbo_chain_api::Addr;
use nelumbo_chain_api::methods::StateSectorGetInfo;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_miner_api::methods::SectorsPledge;
use nelumbo_miner_api::types::SectorState;
use nelumbo_rpc::{ApiInfo, RpcClient};
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::hub::{TestHub, text};

const PRE_COMMIT_SECTOR_BATCH2: u64 = 28;
const PROVE_COMMIT_SECTORS3: u64 = 34;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sector_killed_in_pre_commit_2_and_commit_wait_reaches_proving_once() {
    let devnet = Devnet::start(&[
        "--proof-mode",
        "insecure-testing",
        "--sector-size",
        "2KiB",
        "--epoch-ms",
        "500",
        "--pre-commit-delay",
        "4",
    ])
    .await;
    let mut hub = TestHub::init(
        &devnet,
        &["--sector-size", "2KiB", "--proof-mode", "insecure-testing"],
    )
    .await;
    hub.edit_config("enabled = true", "enabled = false");

    // Permissions: no token, a bad token and a read token cannot pledge.
    hub.run(&[("NELUMBO_MINER_STALL", "PreCommit2:30000")])
        .await;
    let api = std::fs::read_to_string(hub.repo.join("api")).expect("api");
    assert!(
        api.starts_with("/ip4/127.0.0.1/"),
        "the API is not on loopback: {api}"
    );
    let anonymous = RpcClient::from_api_info(&ApiInfo::parse(api.trim()).expect("api"));
    let error = anonymous
        .call::<SectorsPledge>(())
        .await
        .expect_err("a call without a token was served");
    assert!(error.to_string().contains("token is required"), "{error}");
    let reader = hub.client_with("read");
    let error = reader
        .call::<SectorsPledge>(())
        .await
        .expect_err("a read token pledged a sector");
    assert!(error.to_string().contains("need 'write'"), "{error}");
    let list = hub.cli(&["sectors", "list"]);
    assert!(text(&list).contains("no sectors"), "{}", text(&list));

    // Pledge with the CLI; kill the hub while pre-commit 2's result is not yet recorded.
    let output = hub.cli(&["sectors", "pledge"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("sector 1 pledged"),
        "{}",
        text(&output)
    );
    hub.wait_state(1, SectorState::PreCommit2, Duration::from_secs(60))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !hub.log().contains("stalling") {
        assert!(
            std::time::Instant::now() < deadline,
            "pre-commit 2 never finished:\n{}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.stop(true);
    let sealed = hub.repo.join("storage/sealed");
    assert!(
        std::fs::read_dir(&sealed).expect("sealed dir").count() == 1,
        "pre-commit 2 wrote no replica before the kill"
    );

    // Restart, this time pausing once the prove-commit is sent; kill it there.
    hub.run(&[("NELUMBO_MINER_STALL", "CommitWait:30000")])
        .await;
    assert!(
        hub.log()
            .contains("resuming sector sector=1 state=PreCommit2"),
        "the sector did not resume in PreCommit2:\n{}",
        hub.log()
    );
    hub.wait_state(1, SectorState::CommitWait, Duration::from_secs(120))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hub.stop(true);

    hub.run(&[]).await;
    assert!(
        hub.log()
            .contains("resuming sector sector=1 state=CommitWait"),
        "the sector did not resume in CommitWait:\n{}",
        hub.log()
    );
    let status = hub
        .wait_state(1, SectorState::Proving, Duration::from_secs(120))
        .await;
    assert!(status.last_error.is_none(), "{:?}", status.last_error);

    // The chain: the sector with our CommR, one pre-commit, one prove-commit.
    let onchain = devnet
        .client
        .call::<StateSectorGetInfo>((Addr(hub.actor), 1, TipSetKey::head()))
        .await
        .expect("sector info")
        .expect("sector 1 on chain");
    assert_eq!(Some(onchain.sealed_cid), status.comm_r);
    let pre_commits = devnet
        .messages_to(hub.actor, PRE_COMMIT_SECTOR_BATCH2)
        .await;
    let commits = devnet.messages_to(hub.actor, PROVE_COMMIT_SECTORS3).await;
    assert_eq!(
        pre_commits,
        vec![status.pre_commit_message.expect("pre-commit CID")]
    );
    assert_eq!(commits, vec![status.commit_message.expect("commit CID")]);

    // The CLI tells the same story.
    let output = hub.cli(&["sectors", "status", "1"]);
    let shown = text(&output);
    assert!(
        shown.contains("Proving") && shown.contains("prove-committed at epoch"),
        "{shown}"
    );
    let output = hub.cli(&["sectors", "list"]);
    assert!(text(&output).contains("Proving"), "{}", text(&output));
}
