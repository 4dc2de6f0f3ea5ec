//! Lotus JSON types of the full-node API subset, with the CBOR encodings that give blocks and
//! messages their CIDs.

mod chain;
mod market;
mod message;
mod miner;

pub use chain::*;
pub use market::*;
pub use message::*;
pub use miner::*;

use cid::Cid;
use cid::multihash::Multihash;

/// Multicodec DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash BLAKE2b-256.
pub const BLAKE2B_256: u64 = 0xb220;

/// The CID Filecoin gives a CBOR object: CIDv1, DAG-CBOR, BLAKE2b-256.
pub fn cbor_cid(cbor: &[u8]) -> Cid {
    let digest = blake2b_simd::Params::new().hash_length(32).hash(cbor);
    let hash = Multihash::wrap(BLAKE2B_256, digest.as_bytes())
        .unwrap_or_else(|_| unreachable!("32 bytes fit a 64-byte multihash"));
    Cid::new_v1(DAG_CBOR, hash)
}

#[cfg(test)]
mod tests {
    use fvm_ipld_encoding::RawBytes;
    use fvm_shared::econ::TokenAmount;

    use super::*;
    use crate::json::parse_address;

    /// Lotus's API documentation example message, whose CID Lotus computed: our CBOR must match
    /// byte for byte for the CID to agree.
    #[test]
    fn message_cid_matches_lotus() {
        let addr = parse_address("f01234").expect("address");
        let message = Message(fvm_shared::message::Message {
            version: 42,
            from: addr,
            to: addr,
            sequence: 42,
            value: TokenAmount::from_atto(0),
            method_num: 1,
            params: RawBytes::new(b"byte array".to_vec()),
            gas_limit: 9,
            gas_fee_cap: TokenAmount::from_atto(0),
            gas_premium: TokenAmount::from_atto(0),
        });
        assert_eq!(
            message.cid().to_string(),
            "bafy2bzacebbpdegvr3i4cosewthysg5xkxpqfn2wfcz6mv2hmoktwbdxkax4s"
        );
        let json = serde_json::to_value(&message).expect("json");
        assert_eq!(json["Params"], "Ynl0ZSBhcnJheQ==");
        assert_eq!(json["Value"], "0");
        assert_eq!(
            json["CID"]["/"],
            "bafy2bzacebbpdegvr3i4cosewthysg5xkxpqfn2wfcz6mv2hmoktwbdxkax4s"
        );
        let back: Message = serde_json::from_value(json).expect("parse back");
        assert_eq!(back, message);
    }

    #[test]
    fn messages_read_lotus_input_leniently() {
        let text = r#"{"To":"t01000","From":"t1d2xrzcslx7xlbbylc5c3d5lvandqw4iwl6epxba","Value":"5","Method":0,"Params":null,"CID":{"/":"bafy2bzacebbpdegvr3i4cosewthysg5xkxpqfn2wfcz6mv2hmoktwbdxkax4s"}}"#;
        let message: Message = serde_json::from_str(text).expect("parse");
        assert_eq!(message.0.value, TokenAmount::from_atto(5));
        assert_eq!(message.0.gas_limit, 0);
        assert!(message.0.params.is_empty());
        let bad = r#"{"To":"t01000","From":"t01001","Value":5}"#;
        assert!(
            serde_json::from_str::<Message>(bad).is_err(),
            "a number accepted as a big int"
        );
    }

    #[test]
    fn tipset_keys_accept_null_and_print_arrays() {
        let key: TipSetKey = serde_json::from_str("null").expect("null");
        assert!(key.is_head());
        assert_eq!(serde_json::to_string(&key).expect("json"), "[]");
    }
}
