//! Newtypes that give fvm types their Lotus JSON form where they appear bare (as parameters
//! or results).

use std::borrow::Cow;
use std::ops::Deref;

use cid::Cid;
use fvm_ipld_bitfield::BitField;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use num_bigint::BigInt;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::json;

macro_rules! wrapper {
    ($(#[$meta:meta])* $name:ident($inner:ty), $with:literal, $form:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(#[serde(with = $with)] pub $inner);

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                json::$form::schema(generator)
            }
        }

        impl Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl From<$inner> for $name {
            fn from(inner: $inner) -> Self {
                Self(inner)
            }
        }
    };
}

wrapper!(
    /// An address as a `t`/`f` string.
    Addr(Address),
    "json::address",
    address
);
wrapper!(
    /// An amount of attoFIL as a decimal string.
    Token(TokenAmount),
    "json::token",
    token
);
wrapper!(
    /// A big integer as a decimal string.
    Big(BigInt),
    "json::bigint",
    bigint
);
wrapper!(
    /// A CID as `{"/": ...}`.
    CidJson(Cid),
    "json::cid_obj",
    cid_obj
);
wrapper!(
    /// Bytes as padded standard base64 (`null` when empty).
    Base64(Vec<u8>),
    "json::bytes",
    bytes
);
wrapper!(
    /// A bitfield as go-bitfield's run lengths.
    BitFieldJson(BitField),
    "json::bitfield",
    bitfield
);
wrapper!(
    /// An optional bitfield: `null` means all.
    OptBitField(Option<BitField>),
    "json::opt_bitfield",
    opt_bitfield
);

impl Eq for Addr {}
impl Eq for CidJson {}

/// Key types of `WalletNew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KeyType {
    #[serde(rename = "bls")]
    Bls,
    #[serde(rename = "secp256k1")]
    Secp256k1,
}

impl std::str::FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bls" => Ok(Self::Bls),
            "secp256k1" | "secp" => Ok(Self::Secp256k1),
            other => Err(format!("unknown key type {other:?}: use bls or secp256k1")),
        }
    }
}
