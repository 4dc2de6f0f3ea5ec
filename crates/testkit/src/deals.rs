//! Deal proposals as a client signs them, for tests that hand deals to the hub directly (as a
//! spoke does) rather than through a markets process.

use fil_actor_market_state::v18::{ClientDealProposal, DealProposal, Label};
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use fvm_shared::piece::PaddedPieceSize;
use nelumbo_keys::{KeyInfo, KeyKind};

use crate::chain::{Devnet, cbor};

/// The market actor and its `AddBalance`.
const MARKET: u64 = 5;
const ADD_BALANCE: u64 = 2;

/// What a test deal says.
#[derive(Debug, Clone)]
pub struct DealSpec {
    /// The payload; the piece is its commitment at `piece_size`.
    pub data: Vec<u8>,
    pub piece_size: u64,
    pub start: i64,
    pub duration: i64,
    pub price_per_epoch: TokenAmount,
    pub provider_collateral: TokenAmount,
}

impl DealSpec {
    /// 1000 bytes of `seed` in a 1 KiB piece, starting at `start` for 400 epochs, for free.
    pub fn small(seed: u8, start: i64) -> Self {
        Self {
            data: vec![seed; 1000],
            piece_size: 1024,
            start,
            duration: 400,
            price_per_epoch: TokenAmount::from_atto(0),
            provider_collateral: TokenAmount::from_atto(0),
        }
    }

    /// The piece CID (v1) of the payload at the deal's piece size.
    pub fn piece_cid(&self) -> cid::Cid {
        let digest = nelumbo_commp::commp(&self.data).expect("commp");
        let padded = nelumbo_commp::pad_commitment(
            &digest.commitment,
            digest.piece_size,
            nelumbo_commp::PaddedPieceSize::new(self.piece_size).expect("size"),
        )
        .expect("pad");
        nelumbo_commp::piece_cid_v1(&padded)
    }
}

/// The CBOR `ClientDealProposal` of `spec`, signed by `client`.
pub fn signed_deal(client: &KeyInfo, provider: Address, spec: &DealSpec) -> Vec<u8> {
    let proposal = DealProposal {
        piece_cid: spec.piece_cid(),
        piece_size: PaddedPieceSize(spec.piece_size),
        verified_deal: false,
        client: client.address().expect("client"),
        provider,
        label: Label::String(format!(
            "test deal {}",
            spec.data.first().copied().unwrap_or(0)
        )),
        start_epoch: spec.start,
        end_epoch: spec.start + spec.duration,
        storage_price_per_epoch: spec.price_per_epoch.clone(),
        provider_collateral: spec.provider_collateral.clone(),
        client_collateral: TokenAmount::from_atto(0),
    };
    let client_signature = client.sign(&cbor(&proposal)).expect("sign");
    cbor(&ClientDealProposal {
        proposal,
        client_signature,
    })
}

/// A new client with `fil` FIL and `escrow` FIL of it in its market escrow.
pub async fn funded_client(devnet: &Devnet, fil: u64, escrow: u64) -> KeyInfo {
    let client = KeyInfo::generate(KeyKind::Secp256k1);
    fund_with_escrow(devnet, &client, fil, escrow).await;
    client
}

/// Sends `fil` FIL to `client` and moves `escrow` FIL of it into its market escrow.
pub async fn fund_with_escrow(devnet: &Devnet, client: &KeyInfo, fil: u64, escrow: u64) {
    let address = client.address().expect("client");
    devnet.fund(address, fil).await;
    devnet
        .execute(
            client,
            Address::new_id(MARKET),
            ADD_BALANCE,
            cbor(&address),
            TokenAmount::from_whole(escrow),
        )
        .await;
}
