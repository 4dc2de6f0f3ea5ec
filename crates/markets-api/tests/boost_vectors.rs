//! Known-answer vectors for the deal protocols' messages.
//!
//! The bytes were derived by hand from Boost's generated encoders
//! (`storagemarket/types/types_cbor_gen.go`, go-state-types' market `cbor_gen.go`, go-fil-markets'
//! 1.1.0 ask types): canonical key order, minimal headers, tag 42 CIDs, 16-byte UUIDs, sign-byte
//! big integers. They were not produced by our encoder: each test decodes the vector and checks
//! the fields, then encodes and must give the same bytes.

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_markets_api::wire::*;

// Inputs: DealUUID 01234567-89ab-cdef-0123-456789abcdef; PieceCID v1 fil-commitment-unsealed
// with digest 00..1f; DealDataRoot v1 dag-pb sha2-256 of 0xbb x 32; client f1 with payload 0x11 x
// 20; provider f01000; size 2048; label "test"; epochs 100000..600000; price 0; provider
// collateral 1000000; a secp256k1 signature of 0xaa x 65; an http transfer of 1000 bytes from
// http://x/y.car with null headers.
const DEAL_PARAMS_1_2_1: &str = concat!(
    "a7684465616c55554944500123456789abcdef0123456789abcdef685472616e73666572a46453697a651903e8645479",
    "7065646874747066506172616d7358277b2255524c223a22687474703a2f2f782f792e636172222c2248656164657273",
    "223a6e756c6c7d68436c69656e744944606949734f66666c696e65f46c4465616c44617461526f6f74d82a5825000170",
    "1220bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb70536b697049504e49416e6e6f75",
    "6e6365f472436c69656e744465616c50726f706f73616c828bd82a5828000181e203922020000102030405060708090a",
    "0b0c0d0e0f101112131415161718191a1b1c1d1e1f190800f45501111111111111111111111111111111111111111143",
    "00e80764746573741a000186a01a000927c04044000f424040584201aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa725265",
    "6d6f7665556e7365616c6564436f7079f4",
);
const DEAL_PARAMS_1_2_0: &str = concat!(
    "a5684465616c55554944500123456789abcdef0123456789abcdef685472616e73666572a46453697a651903e8645479",
    "7065646874747066506172616d7358277b2255524c223a22687474703a2f2f782f792e636172222c2248656164657273",
    "223a6e756c6c7d68436c69656e744944606949734f66666c696e65f46c4465616c44617461526f6f74d82a5825000170",
    "1220bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb72436c69656e744465616c50726f",
    "706f73616c828bd82a5828000181e203922020000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c",
    "1d1e1f190800f4550111111111111111111111111111111111111111114300e80764746573741a000186a01a000927c0",
    "4044000f424040584201aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
);
const STATUS_REQUEST: &str = concat!(
    "a2684465616c55554944500123456789abcdef0123456789abcdef695369676e6174757265584201aaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "aaaaaaaaaaaaaaaaaa",
);
const DEAL_RESPONSE_ACCEPTED: &str = "a2674d65737361676560684163636570746564f5";
const STATUS_RESPONSE_ERROR: &str = concat!(
    "a6654572726f72781d7369676e617475726520766572696669636174696f6e206661696c6564684465616c5555494450",
    "0123456789abcdef0123456789abcdef6949734f66666c696e65f46a4465616c537461747573f66c5472616e73666572",
    "53697a65006e4e4279746573526563656976656400",
);
const ASK_REQUEST_F01000: &str = "a1654d696e65724300e807";

const UUID: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text).expect("hex")
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(hex_text: &str) -> T {
    let wire = bytes(hex_text);
    let value: T = fvm_ipld_encoding::from_slice(&wire).expect("decode");
    assert_eq!(
        hex::encode(fvm_ipld_encoding::to_vec(&value).expect("encode")),
        hex_text,
        "re-encoding differs from the vector"
    );
    value
}

#[test]
fn deal_params_1_2_1() {
    let params: DealParams = roundtrip(DEAL_PARAMS_1_2_1);
    assert_eq!(params.deal_uuid, UUID);
    assert_eq!(params.transfer.size, 1000);
    assert_eq!(params.transfer.kind, "http");
    let request = http_request(&params.transfer).expect("http params");
    assert_eq!(request.url, "http://x/y.car");
    assert_eq!(request.headers, None);
    assert!(!params.is_offline && !params.skip_ipni_announce && !params.remove_unsealed_copy);
    let proposal = &params.client_deal_proposal.proposal;
    assert_eq!(proposal.piece_size.0, 2048);
    assert_eq!(proposal.provider, Address::new_id(1000));
    assert_eq!(proposal.label, Label::String("test".into()));
    assert_eq!(
        (proposal.start_epoch, proposal.end_epoch),
        (100_000, 600_000)
    );
    assert_eq!(
        proposal.provider_collateral,
        TokenAmount::from_atto(1_000_000)
    );
    assert_eq!(
        params.deal_data_root.to_string(),
        cid::Cid::new_v1(
            0x70,
            cid::multihash::Multihash::wrap(0x12, &[0xbb; 32]).expect("mh")
        )
        .to_string()
    );
    assert_eq!(
        signed_proposal_cid(&params.client_deal_proposal)
            .expect("cid")
            .to_string(),
        "bafyreibqhz45m7m7wjjysgxuhq4f6nmp4vdmgzz2zywl4tyfid3lhlei6y"
    );
}

#[test]
fn deal_params_1_2_0_has_five_keys_and_decodes_with_defaults() {
    let wire = bytes(DEAL_PARAMS_1_2_0);
    let params: DealParams = fvm_ipld_encoding::from_slice(&wire).expect("decode");
    let full: DealParams =
        fvm_ipld_encoding::from_slice(&bytes(DEAL_PARAMS_1_2_1)).expect("decode");
    assert_eq!(params, full);
}

#[test]
fn unknown_keys_are_skipped_as_boost_does() {
    // The 1.2.1 vector with an eighth key, "Zz": [1, {"a": 2}], appended.
    let mut wire = bytes(DEAL_PARAMS_1_2_1);
    wire[0] = 0xa8;
    wire.extend_from_slice(&hex::decode("625a7a8201a1616102").expect("hex"));
    let params: DealParams = fvm_ipld_encoding::from_slice(&wire).expect("decode");
    assert_eq!(params.deal_uuid, UUID);
}

#[test]
fn status_request_and_responses() {
    let request: DealStatusRequest = roundtrip(STATUS_REQUEST);
    assert_eq!(request.deal_uuid, UUID);
    assert_eq!(request.signature.bytes(), &[0xaa; 65][..]);
    let response: DealResponse = roundtrip(DEAL_RESPONSE_ACCEPTED);
    assert!(response.accepted && response.message.is_empty());
    let error: DealStatusResponse = roundtrip(STATUS_RESPONSE_ERROR);
    assert_eq!(
        error,
        DealStatusResponse::error(UUID, "signature verification failed")
    );
}

#[test]
fn ask_request() {
    let request: AskRequest = roundtrip(ASK_REQUEST_F01000);
    assert_eq!(request.miner, Address::new_id(1000));
    // A request for another miner is answered with a null ask: {"Ask": null}.
    let none = AskResponse { ask: None };
    assert_eq!(
        hex::encode(fvm_ipld_encoding::to_vec(&none).expect("encode")),
        "a16341736bf6"
    );
}
