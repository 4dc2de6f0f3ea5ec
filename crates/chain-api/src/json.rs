//! Serde helpers for Lotus JSON: addresses as `t`/`f` strings, big integers as decimal
//! strings, bytes as padded standard base64 (`null` when empty), CIDs as `{"/": ...}`, bitfields
//! as run-length arrays.
//!
//! Lotus is lenient on input in ways these helpers follow: `null` is accepted wherever an
//! array or bytes are expected, and addresses parse with either network prefix.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cid::Cid;
use fvm_ipld_bitfield::BitField;
use fvm_shared::address::{Address, Network};
use fvm_shared::econ::TokenAmount;
use num_bigint::BigInt;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prints addresses with the `t` prefix (test networks, devnets) instead of `f`.
pub fn use_testnet_addresses() {
    fvm_shared::address::set_current_network(Network::Testnet);
}

/// Parses an address with either network prefix.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let text = text.trim();
    let normalised = match text.as_bytes().first() {
        Some(b't') => format!("f{}", &text[1..]),
        _ => text.to_string(),
    };
    Network::Mainnet
        .parse_address(&normalised)
        .map_err(|e| format!("invalid address {text:?}: {e}"))
}

pub mod address {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "A Filecoin address (`f`/`t` then the protocol digit: `f01234`, `t3...`)."})
    }

    pub fn serialize<S: Serializer>(a: &Address, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let text = String::deserialize(d)?;
        parse_address(&text).map_err(D::Error::custom)
    }
}

/// An address that may be undefined: `"<empty>"` (or `null` on input) when absent.
pub mod opt_address_empty {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "null"], "description": "A Filecoin address, or `\"<empty>\"` when there is none."})
    }

    pub fn serialize<S: Serializer>(a: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str("<empty>"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) if t.is_empty() || t == "<empty>" => Ok(None),
            Some(t) => parse_address(&t).map(Some).map_err(D::Error::custom),
        }
    }
}

/// An optional address: `null` when absent.
pub mod opt_address {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "null"], "description": "A Filecoin address, or null."})
    }

    pub fn serialize<S: Serializer>(a: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
        opt_address_empty::deserialize(d)
    }
}

pub mod addresses {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["array", "null"], "items": {"type": "string"}, "description": "Filecoin addresses."})
    }

    pub fn serialize<S: Serializer>(list: &[Address], s: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<String> = list.iter().map(Address::to_string).collect();
        texts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Address>, D::Error> {
        Option::<Vec<String>>::deserialize(d)?
            .unwrap_or_default()
            .iter()
            .map(|t| parse_address(t).map_err(D::Error::custom))
            .collect()
    }
}

/// Token amounts in attoFIL, as a decimal string.
pub mod token {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^-?[0-9]+$", "description": "An amount in attoFIL, as a decimal string."})
    }

    pub fn serialize<S: Serializer>(t: &TokenAmount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.atto().to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TokenAmount, D::Error> {
        let text = String::deserialize(d)?;
        BigInt::from_str(text.trim())
            .map(TokenAmount::from_atto)
            .map_err(|_| D::Error::custom(format!("failed to parse big string: '{text}'")))
    }
}

pub mod opt_token {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "null"], "pattern": "^-?[0-9]+$", "description": "An amount in attoFIL, as a decimal string, or null."})
    }

    pub fn serialize<S: Serializer>(t: &Option<TokenAmount>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.atto().to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TokenAmount>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => BigInt::from_str(text.trim())
                .map(|b| Some(TokenAmount::from_atto(b)))
                .map_err(|_| D::Error::custom(format!("failed to parse big string: '{text}'"))),
        }
    }
}

/// Big integers (power, deal weight) as a decimal string.
pub mod bigint {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^-?[0-9]+$", "description": "A big integer as a decimal string."})
    }

    pub fn serialize<S: Serializer>(b: &BigInt, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BigInt, D::Error> {
        let text = String::deserialize(d)?;
        BigInt::from_str(text.trim())
            .map_err(|_| D::Error::custom(format!("failed to parse big string: '{text}'")))
    }
}

/// Bytes as padded standard base64; empty bytes print as `null`, `null` reads as empty.
pub mod bytes {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "null"], "contentEncoding": "base64", "description": "Bytes in padded standard base64; null when empty."})
    }

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if b.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(&STANDARD.encode(b))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(text) => STANDARD
                .decode(text.as_bytes())
                .map_err(|e| D::Error::custom(format!("invalid base64: {e}"))),
        }
    }
}

/// Base64 strings in a list (multiaddrs), `null` when empty.
pub mod bytes_list {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["array", "null"], "items": {"type": "string", "contentEncoding": "base64"}, "description": "Byte strings in padded standard base64; null when empty."})
    }

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        if list.is_empty() {
            return s.serialize_none();
        }
        let texts: Vec<String> = list.iter().map(|b| STANDARD.encode(b)).collect();
        texts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Option::<Vec<String>>::deserialize(d)?
            .unwrap_or_default()
            .iter()
            .map(|t| {
                STANDARD
                    .decode(t.as_bytes())
                    .map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
            })
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct CidObject {
    #[serde(rename = "/")]
    cid: String,
}

/// CIDs as `{"/": "bafy..."}`.
pub mod cid_obj {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "object", "properties": {"/": {"type": "string"}}, "required": ["/"], "additionalProperties": false, "description": "A CID, as `{\"/\": \"bafy...\"}`."})
    }

    pub fn serialize<S: Serializer>(c: &Cid, s: S) -> Result<S::Ok, S::Error> {
        CidObject { cid: c.to_string() }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cid, D::Error> {
        let object = CidObject::deserialize(d)?;
        Cid::try_from(object.cid.as_str())
            .map_err(|e| D::Error::custom(format!("invalid CID {:?}: {e}", object.cid)))
    }
}

pub mod opt_cid {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["object", "null"], "properties": {"/": {"type": "string"}}, "required": ["/"], "additionalProperties": false, "description": "A CID as `{\"/\": ...}`, or null."})
    }

    pub fn serialize<S: Serializer>(c: &Option<Cid>, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Some(c) => CidObject { cid: c.to_string() }.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cid>, D::Error> {
        match Option::<CidObject>::deserialize(d)? {
            None => Ok(None),
            Some(o) => Cid::try_from(o.cid.as_str())
                .map(Some)
                .map_err(|e| D::Error::custom(format!("invalid CID {:?}: {e}", o.cid))),
        }
    }
}

/// A list of CIDs; `null` reads as empty. `always_array` decides how empty prints.
pub mod cids {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["array", "null"], "items": {"type": "object", "properties": {"/": {"type": "string"}}, "required": ["/"], "additionalProperties": false}, "description": "CIDs, each as `{\"/\": ...}`; null reads as empty."})
    }

    pub fn serialize<S: Serializer>(list: &[Cid], s: S) -> Result<S::Ok, S::Error> {
        let objects: Vec<CidObject> = list
            .iter()
            .map(|c| CidObject { cid: c.to_string() })
            .collect();
        objects.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cid>, D::Error> {
        Option::<Vec<CidObject>>::deserialize(d)?
            .unwrap_or_default()
            .iter()
            .map(|o| {
                Cid::try_from(o.cid.as_str())
                    .map_err(|e| D::Error::custom(format!("invalid CID {:?}: {e}", o.cid)))
            })
            .collect()
    }
}

/// Bitfields as go-bitfield prints them: run lengths alternating unset and set, starting with
/// an unset run; the empty set is `[0]`.
pub mod bitfield {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["array", "null"], "items": {"type": "integer", "minimum": 0}, "description": "A bitfield as go-bitfield's run lengths, alternating unset and set from an unset run; the empty set is [0]."})
    }

    pub fn serialize<S: Serializer>(bf: &BitField, s: S) -> Result<S::Ok, S::Error> {
        to_runs(bf).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BitField, D::Error> {
        let runs = Option::<Vec<u64>>::deserialize(d)?.unwrap_or_default();
        from_runs(&runs).map_err(D::Error::custom)
    }

    pub fn to_runs(bf: &BitField) -> Vec<u64> {
        let mut runs = Vec::new();
        let mut at = 0u64;
        for range in bf.ranges() {
            runs.push(range.start - at);
            runs.push(range.end - range.start);
            at = range.end;
        }
        if runs.is_empty() {
            runs.push(0);
        }
        runs
    }

    pub fn from_runs(runs: &[u64]) -> Result<BitField, String> {
        let mut set = Vec::new();
        let mut at = 0u64;
        for (i, &len) in runs.iter().enumerate() {
            if len == 0 && i != 0 {
                return Err("Cannot have a zero-length run except at start".into());
            }
            let end = at.checked_add(len).ok_or("bitfield run overflows")?;
            if i % 2 == 1 {
                set.push(at..end);
            }
            at = end;
        }
        Ok(BitField::from_ranges(fvm_ipld_bitfield::iter::Ranges::new(
            set,
        )))
    }
}

/// An optional bitfield (`null` means "no filter").
pub mod opt_bitfield {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["array", "null"], "items": {"type": "integer", "minimum": 0}, "description": "A bitfield as run lengths (see bitfield), or null for no filter."})
    }

    pub fn serialize<S: Serializer>(bf: &Option<BitField>, s: S) -> Result<S::Ok, S::Error> {
        match bf {
            Some(bf) => bitfield::to_runs(bf).serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BitField>, D::Error> {
        match Option::<Vec<u64>>::deserialize(d)? {
            None => Ok(None),
            Some(runs) => bitfield::from_runs(&runs)
                .map(Some)
                .map_err(D::Error::custom),
        }
    }
}

/// A libp2p peer id as its base58 text, `null` when empty or unparsable.
pub mod peer_id {
    use super::*;

    /// The JSON schema of this form, for the API's OpenRPC document.
    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "null"], "description": "A libp2p peer ID in base58, or null."})
    }

    pub fn serialize<S: Serializer>(id: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if id.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(&bs58::encode(id).into_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(text) => bs58::decode(text.trim())
                .into_vec()
                .map_err(|e| D::Error::custom(format!("invalid peer id {text:?}: {e}"))),
        }
    }
}

/// A list that prints `null` when empty and reads `null` as empty.
pub mod nullable_vec {
    use super::*;

    pub fn serialize<S: Serializer, T: Serialize>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bitfields_match_go_bitfield() {
        let table: [(&[u64], &[u64]); 5] = [
            (&[], &[0]),
            (&[0], &[0, 1]),
            (&[5], &[5, 1]),
            (&[0, 1, 2, 8, 9], &[0, 3, 5, 2]),
            (&[1, 5, 6, 7, 10, 11, 12, 15], &[1, 1, 3, 3, 2, 3, 2, 1]),
        ];
        for (set, runs) in table {
            let bf = BitField::try_from_bits(set.iter().copied()).expect("bits");
            assert_eq!(bitfield::to_runs(&bf), runs, "{set:?}");
            let back = bitfield::from_runs(runs).expect("parse");
            assert_eq!(back.iter().collect::<Vec<_>>(), set.to_vec());
        }
        assert!(bitfield::from_runs(&[1, 0, 2]).is_err());
        assert_eq!(
            bitfield::from_runs(&[5, 1, 3])
                .expect("trailing unset run")
                .len(),
            1
        );
    }

    #[test]
    fn addresses_parse_with_either_prefix() {
        let f = parse_address("f01234").expect("f");
        let t = parse_address("t01234").expect("t");
        assert_eq!(f, t);
        assert!(parse_address("x01234").is_err());
    }

    proptest! {
        #[test]
        fn bitfield_runs_round_trip(set in proptest::collection::btree_set(0u64..500, 0..40)) {
            let bf = BitField::try_from_bits(set.iter().copied()).expect("bits");
            let back = bitfield::from_runs(&bitfield::to_runs(&bf)).expect("parse");
            prop_assert_eq!(back.iter().collect::<Vec<_>>(), set.into_iter().collect::<Vec<_>>());
        }
    }
}
