//! Proposals a provider must refuse, each with a message that names the problem, sent over the
//! real libp2p deal protocol to a running markets process; and data that turns out wrong after
//! acceptance, which fails the deal with the reason (reported by the status protocol too).

mod common;

use common::*;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use fvm_shared::piece::PaddedPieceSize;
use nelumbo_keys::{KeyInfo, KeyKind};
use nelumbo_markets_api::admin::DealState;
use nelumbo_markets_api::p2p::{Request, Response, build_swarm, request_once};
use nelumbo_markets_api::wire::{DealStatusRequest, HttpRequest, checkpoint};
use nelumbo_testkit::deals::fund_with_escrow;
use nelumbo_testkit::hub::text;
use nelumbo_testkit::markets::free_port;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proposals_are_refused_with_the_reason() {
    let w = world().await;

    // Bad signature: signed by another key.
    let (proposal, transfer) = w.good_deal().await;
    let other = KeyInfo::generate(KeyKind::Secp256k1);
    let (_, response) = w.propose_signed_by(&other, proposal, transfer).await;
    assert!(!response.accepted);
    assert!(
        response.message.contains("invalid signature"),
        "{}",
        response.message
    );

    // Price below the ask.
    let output = w.markets.cli(&["ask", "set", "--price", "100000000000000"]);
    assert!(output.status.success(), "{}", text(&output));
    let (proposal, transfer) = w.good_deal().await;
    w.expect_rejected(
        proposal,
        transfer,
        &["storage price per epoch less than asking price"],
    )
    .await;
    let output = w.markets.cli(&["ask", "set", "--price", "0"]);
    assert!(output.status.success(), "{}", text(&output));

    // A piece larger than the ask (and the sector) allows.
    let (mut proposal, transfer) = w.good_deal().await;
    proposal.piece_size = PaddedPieceSize(4096);
    w.expect_rejected(
        proposal,
        transfer,
        &["piece size more than maximum allowed size", "4096"],
    )
    .await;

    // A start epoch too soon to transfer, publish and seal.
    let (mut proposal, transfer) = w.good_deal().await;
    proposal.start_epoch = w.devnet.head().await + 5;
    proposal.end_epoch = proposal.start_epoch + 400;
    w.expect_rejected(proposal, transfer, &["start epoch", "too soon"])
        .await;

    // A transfer size that is not what the URL serves.
    let (proposal, _) = w.good_deal().await;
    let transfer = w.transfer("data.car", w.car.len() as u64 + 10);
    w.expect_rejected(proposal, transfer, &["transfer size mismatch"])
        .await;

    // A URL nobody answers at.
    let (proposal, mut transfer) = w.good_deal().await;
    transfer.params = serde_json::to_vec(&HttpRequest {
        url: format!("http://127.0.0.1:{}/data.car", free_port()),
        headers: None,
    })
    .expect("json");
    w.expect_rejected(proposal, transfer, &["unreachable"])
        .await;

    // More provider collateral than this provider puts up.
    let (mut proposal, transfer) = w.good_deal().await;
    proposal.provider_collateral = TokenAmount::from_whole(5);
    w.expect_rejected(
        proposal,
        transfer,
        &["provider collateral", "above maximum"],
    )
    .await;

    // Another provider's deal.
    let (mut proposal, transfer) = w.good_deal().await;
    proposal.provider = Address::new_id(9999);
    w.expect_rejected(proposal, transfer, &["incorrect provider"])
        .await;

    let metrics = reqwest::get(format!("{}/metrics", w.markets.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for reason in [
        "collateral",
        "signature",
        "price",
        "piece_too_large",
        "start_epoch",
        "transfer",
        "provider",
    ] {
        assert!(
            metrics.contains(&format!(
                "nelumbo_markets_deal_rejections_total{{reason=\"{reason}\"}}"
            )),
            "no rejection counted for {reason}:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_whose_piece_commitment_differs_fails_the_deal_and_status_says_why() {
    let w = world().await;
    // The proposal names the piece of other data; the URL serves the real CAR.
    let (mut proposal, transfer) = w.good_deal().await;
    let other = nelumbo_commp::commp(&vec![0x55u8; w.car.len()]).expect("commp");
    proposal.piece_cid = other.cid_v1();
    let (uuid, response) = w.propose(proposal, transfer).await;
    assert!(response.accepted, "{}", response.message);
    let deal = w
        .markets
        .wait_deal(
            &uuid.to_string(),
            DealState::Failed,
            Duration::from_secs(60),
        )
        .await;
    assert!(
        deal.error.contains("piece commitment") && deal.error.contains("does not match"),
        "{}",
        deal.error
    );

    // The client asks over the status protocol (signed with its key); a stranger is refused.
    let mut swarm = build_swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        "test",
        false,
        nelumbo_markets_api::p2p::Limits::none(),
    )
    .expect("swarm");
    for (signer, expect_ok) in [
        (&w.client, true),
        (&KeyInfo::generate(KeyKind::Secp256k1), false),
    ] {
        let request = DealStatusRequest {
            deal_uuid: *uuid.as_bytes(),
            signature: signer.sign(uuid.as_bytes()).expect("sign"),
        };
        let Response::Status(status) = request_once(
            &mut swarm,
            w.peer,
            std::slice::from_ref(&w.addr),
            Request::Status(request),
        )
        .await
        .expect("status") else {
            panic!("not a status answer");
        };
        if expect_ok {
            assert_eq!(status.error, "");
            let s = status.deal_status.expect("status");
            assert_eq!(s.status, checkpoint::TRANSFERRED);
            assert!(s.error.contains("does not match"), "{}", s.error);
            assert_eq!(status.n_bytes_received, w.car.len() as u64);
        } else {
            assert_eq!(status.error, "signature verification failed");
            assert!(status.deal_status.is_none());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_markets_repo_holds_no_wallet_key() {
    let w = world().await;
    let mut files = Vec::new();
    let mut stack = vec![w.markets.repo.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty());
    // Every key that can sign for this miner (owner, worker, control), in every form a file
    // could hold it: raw bytes, hex, base64, and Lotus's KeyInfo (JSON, and hex of the JSON).
    let keystore = nelumbo_keys::Keystore::open(&w.hub.repo.join("keystore")).expect("keystore");
    let miner: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.hub.repo.join("miner.json")).expect("miner.json"),
    )
    .expect("json");
    let mut forms: Vec<(String, Vec<u8>)> = Vec::new();
    let mut accounts = Vec::new();
    for role in ["Owner", "Worker", "Control"] {
        let address =
            nelumbo_chain_api::json::parse_address(miner[role].as_str().expect(role)).expect(role);
        accounts.push(address);
        let key = keystore.get(&address).expect("the hub's key");
        use base64::Engine;
        let raw = key.private_key.clone();
        let json = serde_json::to_vec(&key).expect("json");
        forms.push((format!("{role} key (raw)"), raw.clone()));
        forms.push((format!("{role} key (hex)"), hex::encode(&raw).into_bytes()));
        forms.push((
            format!("{role} key (base64)"),
            base64::engine::general_purpose::STANDARD
                .encode(&raw)
                .into_bytes(),
        ));
        forms.push((
            format!("{role} KeyInfo (hex)"),
            hex::encode(&json).into_bytes(),
        ));
    }
    for path in &files {
        let name = path
            .strip_prefix(&w.markets.repo)
            .expect("inside the repo")
            .display()
            .to_string();
        let bytes = std::fs::read(path).expect("read");
        for (form, needle) in &forms {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_slice()),
                "{name} holds the hub's {form}"
            );
        }
        // No wallet key of any kind: Lotus and Nelumbo key files are JSON with a PrivateKey,
        // or the hex of that JSON.
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PrivateKey"), "{name} holds a wallet key");
        assert!(
            !text.contains(&hex::encode("PrivateKey")),
            "{name} holds a hex-encoded wallet key"
        );
        // Nor a key in any other common form: PEM or OpenSSH, or a second libp2p key; and a
        // file that is nothing but a 32-byte secret (raw, hex or base64; the API's token
        // secret is one) is no signing key of the miner's accounts, as secp256k1 or as BLS.
        assert!(!text.contains("PRIVATE KEY"), "{name} holds a PEM key");
        let trimmed = text.trim();
        use base64::Engine;
        let secrets = [
            Some(bytes.clone()),
            hex::decode(trimmed).ok(),
            base64::engine::general_purpose::STANDARD
                .decode(trimmed)
                .ok(),
        ];
        for secret in secrets.into_iter().flatten().filter(|s| s.len() == 32) {
            for kind in [KeyKind::Secp256k1, KeyKind::Bls] {
                let as_key = KeyInfo {
                    kind,
                    private_key: secret.clone(),
                };
                if let Ok(address) = as_key.address() {
                    assert!(
                        !accounts.contains(&address),
                        "{name} is the {kind} key of the miner's account {address}"
                    );
                }
            }
        }
        if !name.ends_with("identity.key") {
            assert!(
                libp2p::identity::Keypair::from_protobuf_encoding(&bytes).is_err(),
                "{name} holds a libp2p key"
            );
        }
    }
    // The one private key it has is its libp2p identity (ed25519), which moves no funds: no
    // chain account is an ed25519 key.
    let identity = std::fs::read(w.markets.repo.join("identity.key")).expect("identity");
    let key = libp2p::identity::Keypair::from_protobuf_encoding(&identity).expect("libp2p key");
    assert_eq!(key.key_type(), libp2p::identity::KeyType::Ed25519);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bls_client_is_accepted_and_the_operators_filter_and_duplicates_refuse() {
    let mut w = world().await;
    // A BLS client, with its own escrow.
    let bls = KeyInfo::generate(KeyKind::Bls);
    let bls_addr = bls.address().expect("address");
    fund_with_escrow(&w.devnet, &bls, 10, 1).await;
    let (mut proposal, transfer) = w.good_deal().await;
    proposal.client = bls_addr;
    let (uuid, response) = w
        .propose_signed_by(&bls, proposal.clone(), transfer.clone())
        .await;
    assert!(response.accepted, "{}", response.message);
    w.markets
        .wait_deal_until(
            &uuid.to_string(),
            "published",
            |d| d.deal_id.is_some(),
            Duration::from_secs(60),
        )
        .await;
    // The same signed proposal again under a new UUID is refused.
    let (_, again) = w.propose_signed_by(&bls, proposal, transfer).await;
    assert!(!again.accepted);
    assert!(
        again.message.contains("identical to deal"),
        "{}",
        again.message
    );

    // The operator's filter (Boost's format: JSON on stdin, exit 0 accepts, stdout is why).
    let filter = w.devnet.dir.path().join("filter.sh");
    let seen = w.devnet.dir.path().join("filter-input.json");
    std::fs::write(
        &filter,
        format!(
            "cat > {}\necho 'we take no deals on Sundays'\nexit 1\n",
            seen.display()
        ),
    )
    .expect("write");
    w.markets.stop(false);
    w.markets.edit_config(
        "filter = \"\"",
        &format!("filter = \"sh {}\"", filter.display()),
    );
    w.markets.run().await;
    let (proposal, transfer) = w.good_deal().await;
    let (_, response) = w.propose(proposal, transfer).await;
    assert!(!response.accepted);
    assert_eq!(response.message.trim(), "we take no deals on Sundays");
    let input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&seen).expect("the filter saw the deal"))
            .expect("json");
    assert_eq!(input["DealType"], "storage");
    assert_eq!(
        input["ClientDealProposal"]["Proposal"]["Client"],
        w.client_addr.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_in_a_deal_step_fails_that_deal_only_and_retry_recovers_it() {
    let mut w = world().await;
    // A failpoint makes verification panic, as a bug would.
    w.markets.stop(false);
    w.markets
        .run_with_env(
            "deals,retrieval",
            &[("NELUMBO_DEAL_STEP_PANIC", "Verifying")],
        )
        .await;
    let (proposal, transfer) = w.good_deal().await;
    let (uuid, response) = w.propose(proposal, transfer).await;
    assert!(response.accepted, "{}", response.message);
    let uuid = uuid.to_string();
    let failed = w
        .markets
        .wait_deal(&uuid, DealState::Failed, Duration::from_secs(30))
        .await;
    assert!(
        failed.error.contains("internal error (a bug)")
            && failed.error.contains("NELUMBO_DEAL_STEP_PANIC"),
        "{}",
        failed.error
    );
    // The process is still up and answering.
    let deals = w
        .markets
        .client
        .call::<nelumbo_markets_api::admin::DealsList>(())
        .await
        .expect("markets still answers");
    assert_eq!(deals.len(), 1);

    // Fixed (the failpoint gone): the operator retries and the deal goes on.
    w.markets.stop(false);
    w.markets.run().await;
    let output = w.markets.cli(&["deals", "retry", &uuid]);
    assert!(output.status.success(), "{}", text(&output));
    w.markets
        .wait_deal(&uuid, DealState::Sealing, Duration::from_secs(60))
        .await;
}
