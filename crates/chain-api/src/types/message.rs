//! Messages, signed messages, receipts and lookups.

use std::borrow::Cow;

use cid::Cid;
use fvm_ipld_encoding::RawBytes;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Signature, TipSetKey, cbor_cid};
use crate::json;

/// A message (`types.Message`). Prints with its `CID`; on input `CID` and unknown keys are
/// ignored and missing amounts are zero (for gas estimation: "unset").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(pub fvm_shared::message::Message);

impl Message {
    /// A message with nonce and gas left at zero, for `GasEstimateMessageGas` and
    /// `MpoolGetNonce` to fill in.
    pub fn unpriced(
        from: Address,
        to: Address,
        value: TokenAmount,
        method: u64,
        params: Vec<u8>,
    ) -> Self {
        Self(fvm_shared::message::Message {
            version: 0,
            from,
            to,
            sequence: 0,
            value,
            method_num: method,
            params: RawBytes::new(params),
            gas_limit: 0,
            gas_fee_cap: TokenAmount::from_atto(0),
            gas_premium: TokenAmount::from_atto(0),
        })
    }

    pub fn cbor(&self) -> Vec<u8> {
        fvm_ipld_encoding::to_vec(&self.0).unwrap_or_default()
    }

    pub fn cid(&self) -> Cid {
        cbor_cid(&self.cbor())
    }
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
struct MessageJson {
    #[serde(default)]
    version: u64,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    to: Address,
    #[serde(with = "json::address")]
    #[schemars(schema_with = "json::address::schema")]
    from: Address,
    #[serde(default)]
    nonce: u64,
    #[serde(default, with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    value: TokenAmount,
    #[serde(default)]
    gas_limit: i64,
    #[serde(default, with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    gas_fee_cap: TokenAmount,
    #[serde(default, with = "json::token")]
    #[schemars(schema_with = "json::token::schema")]
    gas_premium: TokenAmount,
    #[serde(default)]
    method: u64,
    #[serde(default, with = "json::bytes")]
    #[schemars(schema_with = "json::bytes::schema")]
    params: Vec<u8>,
    #[serde(rename = "CID", default, skip_deserializing, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    cid: Option<Cid>,
}

impl JsonSchema for Message {
    fn schema_name() -> Cow<'static, str> {
        "Message".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        MessageJson::json_schema(generator)
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = &self.0;
        MessageJson {
            version: m.version,
            to: m.to,
            from: m.from,
            nonce: m.sequence,
            value: m.value.clone(),
            gas_limit: m.gas_limit as i64,
            gas_fee_cap: m.gas_fee_cap.clone(),
            gas_premium: m.gas_premium.clone(),
            method: m.method_num,
            params: m.params.to_vec(),
            cid: Some(self.cid()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = MessageJson::deserialize(d)?;
        if j.gas_limit < 0 {
            return Err(serde::de::Error::custom("GasLimit must not be negative"));
        }
        Ok(Self(fvm_shared::message::Message {
            version: j.version,
            from: j.from,
            to: j.to,
            sequence: j.nonce,
            value: j.value,
            method_num: j.method,
            params: RawBytes::new(j.params),
            gas_limit: j.gas_limit as u64,
            gas_fee_cap: j.gas_fee_cap,
            gas_premium: j.gas_premium,
        }))
    }
}

/// A signed message. Its CID is the unsigned message's for BLS signatures and the signed
/// tuple's otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMessage {
    pub message: Message,
    pub signature: Signature,
}

impl SignedMessage {
    pub fn cbor(&self) -> Result<Vec<u8>, String> {
        let sig = self.signature.to_fvm()?;
        fvm_ipld_encoding::to_vec(&(&self.message.0, &sig)).map_err(|e| e.to_string())
    }

    pub fn cid(&self) -> Result<Cid, String> {
        if self.signature.sig_type == Signature::BLS {
            Ok(self.message.cid())
        } else {
            Ok(cbor_cid(&self.cbor()?))
        }
    }
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
struct SignedMessageJson {
    message: Message,
    signature: Signature,
    #[serde(rename = "CID", default, skip_deserializing, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    cid: Option<Cid>,
}

impl JsonSchema for SignedMessage {
    fn schema_name() -> Cow<'static, str> {
        "SignedMessage".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        SignedMessageJson::json_schema(generator)
    }
}

impl Serialize for SignedMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SignedMessageJson {
            message: self.message.clone(),
            signature: self.signature.clone(),
            cid: self.cid().ok(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SignedMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = SignedMessageJson::deserialize(d)?;
        Ok(Self {
            message: j.message,
            signature: j.signature,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MessageReceipt {
    pub exit_code: u32,
    #[serde(with = "json::bytes")]
    #[schemars(schema_with = "json::bytes::schema")]
    pub r#return: Vec<u8>,
    pub gas_used: u64,
    #[serde(default, with = "json::opt_cid")]
    #[schemars(schema_with = "json::opt_cid::schema")]
    pub events_root: Option<Cid>,
}

/// Where a message was executed and its receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MsgLookup {
    #[serde(with = "json::cid_obj")]
    #[schemars(schema_with = "json::cid_obj::schema")]
    pub message: Cid,
    pub receipt: MessageReceipt,
    #[serde(default)]
    pub return_dec: Option<serde_json::Value>,
    /// The tipset the message was executed in (the child of the one that included it).
    #[serde(rename = "TipSet")]
    pub tipset: TipSetKey,
    pub height: ChainEpoch,
}

/// Options of `MpoolPushMessage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MessageSendSpec {
    #[serde(default, with = "json::opt_token")]
    #[schemars(schema_with = "json::opt_token::schema")]
    pub max_fee: Option<TokenAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_uuid: Option<String>,
    #[serde(default)]
    pub maximize_fee_cap: bool,
}
