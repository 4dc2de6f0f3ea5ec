//! `MarketPublishDeals` as a spoke uses it: the hub checks each deal (provider, client
//! signature, piece size, epochs, client escrow, a piece it holds) and refuses bad ones with
//! the reason; good deals handed in together go out in one `PublishStorageDeals` batch signed
//! by the worker (which first tops up the provider's collateral); asking again for a published
//! proposal answers the same deal ID without a second message; a spoke token is needed.

use fil_actor_market_state::v18::{ClientDealProposal, DealProposal, Label};
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use fvm_shared::piece::PaddedPieceSize;
use nelumbo_chain_api::Addr;
use nelumbo_chain_api::Base64;
use nelumbo_chain_api::types::TipSetKey;
use nelumbo_keys::{KeyInfo, KeyKind};
use nelumbo_miner_api::methods::{
    ChainHead, MarketPublishDeals, StateAccountKey, StateLookupID, StateMarketBalance,
    StateMarketStorageDeal, StateVerifiedClientStatus,
};
use nelumbo_testkit::chain::cbor;
use nelumbo_testkit::hub::insecure_hub;

const MARKET: u64 = 5;
const PUBLISH_STORAGE_DEALS: u64 = 4;

fn deal(client: &KeyInfo, provider: Address, start: i64, seed: u8, price_nano: u64) -> Vec<u8> {
    let piece = nelumbo_commp::commp(&[seed; 1000]).expect("commp");
    let proposal = DealProposal {
        piece_cid: piece.cid_v1(),
        piece_size: PaddedPieceSize(1024),
        verified_deal: false,
        client: client.address().expect("client"),
        provider,
        label: Label::String(format!("deal {seed}")),
        start_epoch: start,
        end_epoch: start + 400,
        storage_price_per_epoch: TokenAmount::from_nano(price_nano),
        provider_collateral: TokenAmount::from_nano(10),
        client_collateral: TokenAmount::from_atto(0),
    };
    let client_signature = client.sign(&cbor(&proposal)).expect("sign");
    cbor(&ClientDealProposal {
        proposal,
        client_signature,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_are_checked_batched_and_published_once() {
    let (devnet, mut hub) = insecure_hub(250, &[]).await;
    hub.run(&[]).await;
    let spoke_token = hub.token("spoke");
    let spoke = {
        let api = std::fs::read_to_string(hub.repo.join("api")).expect("api");
        let mut info = nelumbo_rpc::ApiInfo::parse(api.trim()).expect("api");
        info.token = Some(spoke_token.clone());
        nelumbo_rpc::RpcClient::from_api_info(&info)
    };
    hub.sign_ask(&spoke, 0, 0).await;
    // The hub publishes only deals whose piece it holds: the spoke uploads first.
    for seed in [1u8, 2, 9] {
        let status = hub.upload_piece(&spoke_token, &[seed; 1000], 1024).await;
        assert!(status.is_success(), "upload {seed}: {status}");
    }

    let client = KeyInfo::generate(KeyKind::Secp256k1);
    let client_addr = client.address().expect("client");
    devnet.fund(client_addr, 10).await;
    devnet
        .execute(
            &client,
            Address::new_id(MARKET),
            2,
            cbor(&client_addr),
            TokenAmount::from_whole(1),
        )
        .await;
    let start = devnet.head().await + 200;

    // Refusals, each naming the problem; none sends a message.
    let refused = |deal: Vec<u8>| {
        let spoke = spoke.clone();
        async move {
            spoke
                .call::<MarketPublishDeals>((Base64(deal),))
                .await
                .expect_err("a bad deal was published")
                .to_string()
        }
    };
    let other = KeyInfo::generate(KeyKind::Secp256k1);
    let mut forged: ClientDealProposal =
        fvm_ipld_encoding::from_slice(&deal(&client, hub.actor, start, 9, 1)).expect("decode");
    forged.client_signature = other.sign(&cbor(&forged.proposal)).expect("sign");
    let error = refused(cbor(&forged)).await;
    assert!(error.contains("signature does not verify"), "{error}");
    let error = refused(deal(&client, Address::new_id(1234), start, 9, 1)).await;
    assert!(error.contains("not this hub's miner"), "{error}");
    let error = refused(deal(&client, hub.actor, start, 9, 10_000_000)).await;
    assert!(error.contains("escrow"), "{error}");
    let error = refused(deal(&client, hub.actor, 5, 9, 1)).await;
    assert!(error.contains("too soon to seal"), "{error}");
    let error = refused(deal(&client, hub.actor, start, 7, 1)).await;
    assert!(error.contains("does not hold piece"), "{error}");
    let error = refused(b"not cbor".to_vec()).await;
    assert!(error.contains("not a CBOR ClientDealProposal"), "{error}");
    let error = hub
        .client_with("read")
        .call::<MarketPublishDeals>((Base64(deal(&client, hub.actor, start, 1, 1)),))
        .await
        .expect_err("a read token published a deal");
    assert!(error.to_string().contains("need 'spoke'"), "{error}");

    // Two good deals at once: one batch, two IDs, on chain.
    let (a, b) = (
        deal(&client, hub.actor, start, 1, 1),
        deal(&client, hub.actor, start, 2, 1),
    );
    let (first, second) = tokio::join!(
        spoke.call::<MarketPublishDeals>((Base64(a.clone()),)),
        spoke.call::<MarketPublishDeals>((Base64(b),)),
    );
    let (first, second) = (first.expect("publish a"), second.expect("publish b"));
    assert_ne!(first.deal_id, second.deal_id);
    assert_eq!(
        first.message, second.message,
        "the two deals were not batched"
    );
    for published in [&first, &second] {
        let onchain = devnet
            .client
            .call::<nelumbo_chain_api::methods::StateMarketStorageDeal>((
                published.deal_id,
                TipSetKey::head(),
            ))
            .await
            .expect("deal on chain");
        assert_eq!(onchain.proposal.provider, hub.actor);
    }

    // Again: the same answer, no second message.
    let again = spoke
        .call::<MarketPublishDeals>((Base64(a),))
        .await
        .expect("publish a again");
    assert_eq!(again, first);
    let batches = devnet
        .messages_to(Address::new_id(MARKET), PUBLISH_STORAGE_DEALS)
        .await;
    assert_eq!(batches, vec![first.message]);
    assert!(
        hub.log().contains("adding provider collateral"),
        "{}",
        hub.log()
    );

    // The chain view a spoke gets through the hub: allow-listed reads, nothing else.
    let head = spoke.call::<ChainHead>(()).await.expect("head");
    assert!(head.height >= first.epoch);
    let balance = spoke
        .call::<StateMarketBalance>((Addr(client_addr),))
        .await
        .expect("market balance");
    assert!(
        balance.locked.is_positive(),
        "the deals lock the client's escrow: {balance:?}"
    );
    let onchain = spoke
        .call::<StateMarketStorageDeal>((first.deal_id,))
        .await
        .expect("deal state");
    let client_id = spoke
        .call::<StateLookupID>((Addr(client_addr),))
        .await
        .expect("client ID");
    assert_eq!(onchain.proposal.client, client_id.0);
    let key = spoke
        .call::<StateAccountKey>((Addr(client_addr),))
        .await
        .expect("key");
    assert_eq!(key.0, client_addr);
    let datacap = spoke
        .call::<StateVerifiedClientStatus>((Addr(client_addr),))
        .await
        .expect("datacap");
    assert_eq!(datacap, None);
    let raw: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/rpc/v1", hub.url))
        .bearer_auth(hub.client_token())
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "Filecoin.MpoolPush", "params": []}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(
        raw["error"]["code"], -32601,
        "the hub exposed a chain write: {raw}"
    );
}
