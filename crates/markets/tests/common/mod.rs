//! The world the markets tests share: a devnet, a hub, a markets process, a funded client
//! and a data server with a CAR, and proposals sent over the real libp2p deal protocol.

#![allow(dead_code)]

use std::time::Duration;

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use fvm_shared::piece::PaddedPieceSize;
use libp2p::{Multiaddr, PeerId};
use nelumbo_keys::KeyInfo;
use nelumbo_markets_api::admin::Info;
use nelumbo_markets_api::p2p::{Request, Response, build_swarm, request_once};
use nelumbo_markets_api::wire::{
    ClientDealProposal, DealParams, DealProposal, DealResponse, HttpRequest, Label, Transfer,
};
use nelumbo_testkit::chain::{Devnet, cbor};
use nelumbo_testkit::deals::funded_client;
use nelumbo_testkit::hub::{TestHub, insecure_hub};
use nelumbo_testkit::markets::{DataServer, TestMarkets};

pub struct World {
    pub devnet: Devnet,
    pub hub: TestHub,
    pub markets: TestMarkets,
    pub peer: PeerId,
    pub addr: Multiaddr,
    pub client: KeyInfo,
    pub client_addr: Address,
    pub server: DataServer,
    pub car: Vec<u8>,
    pub root: cid::Cid,
}

pub async fn world() -> World {
    world_with(|_| {}).await
}

/// [`world`], with `edit` applied to the markets process before it starts (and the hub's
/// wait for deals shortened to 5 s, so a deal's sector seals soon).
pub async fn world_with(edit: impl FnOnce(&TestMarkets)) -> World {
    let (devnet, mut hub) = insecure_hub(250, &[]).await;
    hub.edit_config("wait_deals_secs = 3600", "wait_deals_secs = 5");
    hub.run(&[]).await;
    let mut markets = TestMarkets::init(&devnet, &hub);
    markets.edit_config("min_duration_epochs = 180", "min_duration_epochs = 100");
    edit(&markets);
    markets.run().await;
    let info = markets.client.call::<Info>(()).await.expect("info");
    let peer: PeerId = info.peer_id.parse().expect("peer id");
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", markets.p2p_port)
        .parse()
        .expect("addr");

    let client = funded_client(&devnet, 10, 1).await;
    let client_addr = client.address().expect("address");

    let data_dir = devnet.dir.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("dir");
    let payload: Vec<u8> = (0..600u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut car = std::io::Cursor::new(Vec::new());
    let packed =
        nelumbo_car::unixfs::pack(payload.as_slice(), &mut car, Some("data.bin")).expect("pack");
    let car = car.into_inner();
    std::fs::write(data_dir.join("data.car"), &car).expect("write");
    let server = DataServer::start(data_dir, Duration::ZERO).await;
    World {
        devnet,
        hub,
        markets,
        peer,
        addr,
        client,
        client_addr,
        server,
        car,
        root: packed.root,
    }
}

impl World {
    /// A proposal for the served CAR that passes every check; tests spoil one thing.
    pub async fn good_deal(&self) -> (DealProposal, Transfer) {
        let start = self.devnet.head().await + 600;
        self.good_deal_at(start).await
    }

    /// [`Self::good_deal`] starting at `start` (no chain call: for when the chain is away).
    pub async fn good_deal_at(&self, start: i64) -> (DealProposal, Transfer) {
        let digest = nelumbo_commp::commp(&self.car).expect("commp");
        let proposal = DealProposal {
            piece_cid: digest.cid_v1(),
            piece_size: PaddedPieceSize(digest.piece_size.bytes()),
            verified_deal: false,
            client: self.client_addr,
            provider: self.hub.actor,
            label: Label::String(self.root.to_string()),
            start_epoch: start,
            end_epoch: start + 400,
            storage_price_per_epoch: TokenAmount::from_atto(1000),
            provider_collateral: TokenAmount::default(),
            client_collateral: TokenAmount::default(),
        };
        (proposal, self.transfer("data.car", self.car.len() as u64))
    }

    pub fn transfer(&self, name: &str, size: u64) -> Transfer {
        Transfer {
            size,
            kind: "http".into(),
            params: serde_json::to_vec(&HttpRequest {
                url: format!("{}/{name}", self.server.base),
                headers: None,
            })
            .expect("json"),
            client_id: String::new(),
        }
    }

    pub async fn propose_signed_by(
        &self,
        signer: &KeyInfo,
        proposal: DealProposal,
        transfer: Transfer,
    ) -> (uuid::Uuid, DealResponse) {
        self.propose_full(signer, proposal, transfer, self.root, false)
            .await
    }

    /// An offline deal: the client hands the data over later (`deals import-data`).
    pub async fn propose_offline(&self, proposal: DealProposal) -> (uuid::Uuid, DealResponse) {
        let transfer = Transfer {
            size: 0,
            kind: String::new(),
            params: Vec::new(),
            client_id: String::new(),
        };
        self.propose_full(&self.client, proposal, transfer, self.root, true)
            .await
    }

    /// A proposal for other data than the world's CAR, whose root is `root`.
    pub async fn propose_with_root(
        &self,
        proposal: DealProposal,
        transfer: Transfer,
        root: cid::Cid,
    ) -> (uuid::Uuid, DealResponse) {
        self.propose_full(&self.client, proposal, transfer, root, false)
            .await
    }

    async fn propose_full(
        &self,
        signer: &KeyInfo,
        proposal: DealProposal,
        transfer: Transfer,
        root: cid::Cid,
        is_offline: bool,
    ) -> (uuid::Uuid, DealResponse) {
        let client_signature = signer.sign(&cbor(&proposal)).expect("sign");
        let uuid = uuid::Uuid::new_v4();
        let params = DealParams {
            deal_uuid: *uuid.as_bytes(),
            transfer,
            is_offline,
            deal_data_root: root,
            skip_ipni_announce: false,
            client_deal_proposal: ClientDealProposal {
                proposal,
                client_signature,
            },
            remove_unsealed_copy: false,
        };
        let mut swarm = build_swarm(
            libp2p::identity::Keypair::generate_ed25519(),
            "test",
            false,
            nelumbo_markets_api::p2p::Limits::none(),
        )
        .expect("swarm");
        match request_once(
            &mut swarm,
            self.peer,
            std::slice::from_ref(&self.addr),
            Request::Deal(Box::new(params)),
        )
        .await
        .expect("the provider answers")
        {
            Response::Deal(response) => (uuid, response),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    pub async fn propose(
        &self,
        proposal: DealProposal,
        transfer: Transfer,
    ) -> (uuid::Uuid, DealResponse) {
        self.propose_signed_by(&self.client, proposal, transfer)
            .await
    }

    pub async fn expect_rejected(
        &self,
        proposal: DealProposal,
        transfer: Transfer,
        words: &[&str],
    ) {
        let (_, response) = self.propose(proposal, transfer).await;
        assert!(
            !response.accepted,
            "accepted a deal that should fail with {words:?}"
        );
        for word in words {
            assert!(
                response.message.contains(word),
                "the rejection {:?} does not say {word:?}",
                response.message
            );
        }
    }
}
