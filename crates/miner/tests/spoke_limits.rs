//! What a compromised spoke can do with its token, and what it cannot (invariant 4): the spoke
//! token reaches exactly the documented methods; it cannot pledge; it can put on chain only the
//! peer ID it is bound to, within size limits and the change interval; and the hub publishes no
//! deal whose collateral is over its cap, whose price is under the ask it signed, or whose piece
//! it does not hold. Nothing leaves the worker's, owner's or control address's balance, or the
//! miner's escrow, in those attempts (read on chain).

use std::collections::BTreeSet;

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::methods::{StateMarketBalance, StateMinerInfo, WalletBalance};
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_chain_api::{Addr, Base64};
use nelumbo_miner_api::ApiError;
use nelumbo_miner_api::methods::{
    MarketPublishDeals, MarketSetPeerInfo, MarketSignAsk, SPOKE_METHODS, SectorsPledge,
    SpokeHeartbeat,
};
use nelumbo_miner_api::types::SpokeHello;
use nelumbo_rpc::ClientError;
use nelumbo_testkit::chain::Devnet;
use nelumbo_testkit::deals::{DealSpec, funded_client, signed_deal};
use nelumbo_testkit::hub::{TestHub, insecure_hub};

const MARKET: u64 = 5;
const PUBLISH_STORAGE_DEALS: u64 = 4;

/// A libp2p-shaped peer ID: an identity multihash of 36 bytes.
fn peer_id(seed: u8) -> Vec<u8> {
    let mut bytes = vec![0x00, 36, 0x08, 0x01, 0x12, 0x20];
    bytes.extend([seed; 32]);
    bytes
}

fn peer_text(bytes: &[u8]) -> String {
    cid::multibase::Base::Base58Btc.encode(bytes)
}

/// Every balance a spoke might try to spend.
async fn balances(devnet: &Devnet, hub: &TestHub) -> Vec<(String, TokenAmount)> {
    let miner: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(hub.repo.join("miner.json")).expect("miner.json"),
    )
    .expect("json");
    let mut out = Vec::new();
    for role in ["Owner", "Worker", "Control", "Actor"] {
        let address = nelumbo_chain_api::json::parse_address(
            miner[role].as_str().expect("an address in miner.json"),
        )
        .expect("address");
        let balance = devnet
            .client
            .call::<WalletBalance>((Addr(address),))
            .await
            .expect("balance");
        out.push((role.to_string(), balance.0));
    }
    let escrow = devnet
        .client
        .call::<StateMarketBalance>((Addr(hub.actor), TipSetKey::head()))
        .await
        .expect("escrow");
    out.push(("market escrow".into(), escrow.escrow));
    out.push(("market locked".into(), escrow.locked));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_token_reaches_only_what_spokes_need_and_cannot_spend() {
    let (devnet, mut hub) = insecure_hub(250, &[]).await;
    hub.edit_config(
        "max_provider_collateral = \"1000000000000000000\"",
        "max_provider_collateral = \"1000\"",
    );
    hub.edit_config("min_price = \"0\"", "min_price = \"1000000\"");
    hub.run(&[]).await;
    let (token, spoke) = hub.spoke();

    // Exactly the documented methods answer a spoke token.
    let discover: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/rpc/v1", hub.url))
        .bearer_auth(hub.client_token())
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "rpc.discover", "params": []}),
        )
        .send()
        .await
        .expect("discover")
        .json()
        .await
        .expect("json");
    let methods: Vec<String> = discover["result"]["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_string())
        .collect();
    assert!(methods.len() > SPOKE_METHODS.len(), "{methods:?}");
    let mut allowed = BTreeSet::new();
    for method in &methods {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/rpc/v1", hub.url))
            .bearer_auth(&token)
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}))
            .send()
            .await
            .expect("call")
            .json()
            .await
            .expect("json");
        let refused = answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing permission"));
        if !refused {
            allowed.insert(method.clone());
        }
    }
    let documented: BTreeSet<String> = SPOKE_METHODS.iter().map(|m| m.to_string()).collect();
    assert_eq!(allowed, documented);

    // It cannot pledge.
    let error = spoke
        .call::<SectorsPledge>(())
        .await
        .expect_err("a spoke pledged");
    assert!(error.to_string().contains("missing permission"), "{error}");

    // Its identity: bound at its first heartbeat; only that peer ID goes on chain.
    let mine = peer_id(1);
    spoke
        .call::<SpokeHeartbeat>((SpokeHello {
            id: peer_text(&mine),
            services: vec!["deals".into()],
            version: "test".into(),
            public_addrs: vec![],
            deals: Default::default(),
        },))
        .await
        .expect("heartbeat");
    let addr = vec![4, 127, 0, 0, 1, 6, 0x5d, 0xc1];
    let changed = spoke
        .call::<MarketSetPeerInfo>((Base64(mine.clone()), vec![Base64(addr.clone())]))
        .await
        .expect("its own peer info");
    assert!(changed);
    let before = balances(&devnet, &hub).await;
    let error = spoke
        .call::<MarketSetPeerInfo>((Base64(peer_id(2)), vec![Base64(addr.clone())]))
        .await
        .expect_err("a spoke set another peer ID");
    assert!(error.to_string().contains("bound to peer"), "{error}");
    let error = spoke
        .call::<MarketSetPeerInfo>((Base64(mine.clone()), vec![Base64(addr.clone()); 17]))
        .await
        .expect_err("17 addresses accepted");
    assert!(error.to_string().contains("at most 16"), "{error}");
    let error = spoke
        .call::<MarketSetPeerInfo>((Base64(b"not a multihash at all".to_vec()), vec![]))
        .await
        .expect_err("a malformed peer ID accepted");
    assert!(
        error.to_string().contains("not a libp2p peer ID"),
        "{error}"
    );
    let error = spoke
        .call::<MarketSetPeerInfo>((Base64(mine.clone()), vec![]))
        .await
        .expect_err("a second change within the interval");
    assert!(
        error.to_string().contains("peer_info_min_interval_secs"),
        "{error}"
    );
    let info = devnet
        .client
        .call::<StateMinerInfo>((Addr(hub.actor), TipSetKey::head()))
        .await
        .expect("miner info");
    assert_eq!(info.peer_id, mine);
    assert_eq!(info.multiaddrs, vec![addr]);

    // The ask: none below the hub's floor is signed.
    let ask = |price: u64| nelumbo_markets_api::wire::StorageAsk {
        miner: hub.actor,
        price: TokenAmount::from_atto(price),
        seq_no: 1,
        expiry: 1_000_000,
        timestamp: 0,
        max_piece_size: 2048,
        min_piece_size: 256,
        verified_price: TokenAmount::from_atto(price),
    };
    let error = spoke
        .call::<MarketSignAsk>((Base64(
            fvm_ipld_encoding::to_vec(&ask(999_999)).expect("cbor"),
        ),))
        .await
        .expect_err("an ask below the floor was signed");
    assert!(error.to_string().contains("min_price"), "{error}");
    // 10^12 attoFIL per GiB per epoch: a 1 KiB piece must pay at least 953,674 per epoch.
    spoke
        .call::<MarketSignAsk>((Base64(
            fvm_ipld_encoding::to_vec(&ask(1_000_000_000_000)).expect("cbor"),
        ),))
        .await
        .expect("sign the ask");

    // Deals the hub's policy refuses, whatever the spoke says.
    let client = funded_client(&devnet, 10, 1).await;
    let start = devnet.head().await + 200;
    let good = DealSpec {
        price_per_epoch: TokenAmount::from_atto(1_000_000),
        ..DealSpec::small(1, start)
    };
    assert!(
        hub.upload_piece(&token, &good.data, good.piece_size)
            .await
            .is_success()
    );
    let publish = |spec: DealSpec| {
        let deal = signed_deal(&client, hub.actor, &spec);
        let spoke = spoke.clone();
        async move { spoke.call::<MarketPublishDeals>((Base64(deal),)).await }
    };
    let refusal = |result: Result<_, ClientError>| match result {
        Err(ClientError::Rpc { error, .. }) => ApiError::from_rpc(&error),
        other => panic!("a deal was not refused: {other:?}"),
    };
    let over_cap = refusal(
        publish(DealSpec {
            provider_collateral: TokenAmount::from_atto(5000),
            ..good.clone()
        })
        .await,
    );
    assert!(
        matches!(&over_cap, ApiError::Refused(m) if m.contains("hub's cap")),
        "{over_cap:?}"
    );
    let cheap = refusal(
        publish(DealSpec {
            price_per_epoch: TokenAmount::from_atto(100),
            ..good.clone()
        })
        .await,
    );
    assert!(
        matches!(&cheap, ApiError::Refused(m) if m.contains("less than the price of the ask")),
        "{cheap:?}"
    );
    let not_held = refusal(
        publish(DealSpec {
            data: vec![2; 1000],
            ..good.clone()
        })
        .await,
    );
    assert!(
        matches!(&not_held, ApiError::PieceMissing(m) if m.contains("does not hold piece")),
        "{not_held:?}"
    );
    // Nothing was sent and nothing was spent.
    assert!(
        devnet
            .messages_to(Address::new_id(MARKET), PUBLISH_STORAGE_DEALS)
            .await
            .is_empty()
    );
    assert_eq!(balances(&devnet, &hub).await, before);

    // Within the policy, the same spoke's deal is published.
    let published = publish(good).await.expect("a deal within the policy");
    assert!(published.deal_id > 0 || published.epoch > 0);
}
