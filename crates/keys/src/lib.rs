//! Filecoin keys as Lotus handles them: secp256k1 (`f1`) and BLS (`f3`) private keys, their
//! addresses, signatures (secp256k1 over BLAKE2b-256 of the data, 65 bytes `r‖s‖v`; BLS over
//! the data itself, 96 bytes), and a keystore directory of Lotus `KeyInfo` files readable only
//! by their owner.

mod keystore;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bls_signatures::Serialize as _;
use fvm_shared::address::Address;
use fvm_shared::crypto::signature::{Signature, SignatureType};
use k256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};

pub use keystore::Keystore;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid {kind} private key: {why}")]
    Invalid { kind: KeyKind, why: String },
    #[error("no key for {0} in the keystore {1}")]
    Missing(String, String),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("keystore file {path} is readable by others (mode {mode:o}): run chmod 600 on it")]
    Permissions { path: String, mode: u32 },
    #[error("keystore file {path} is not a key: {why}")]
    Format { path: String, why: String },
}

/// The two signature schemes Filecoin accounts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyKind {
    #[serde(rename = "secp256k1")]
    Secp256k1,
    #[serde(rename = "bls")]
    Bls,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Secp256k1 => "secp256k1",
            Self::Bls => "bls",
        })
    }
}

impl std::str::FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "secp256k1" | "secp" => Ok(Self::Secp256k1),
            "bls" => Ok(Self::Bls),
            other => Err(format!("unknown key type {other:?}: use secp256k1 or bls")),
        }
    }
}

/// A private key and its kind: Lotus's `KeyInfo` (`{"Type": ..., "PrivateKey": base64}`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    #[serde(rename = "Type")]
    pub kind: KeyKind,
    #[serde(rename = "PrivateKey", with = "b64")]
    pub private_key: Vec<u8>,
}

impl std::fmt::Debug for KeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyInfo({}, ..)", self.kind)
    }
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

impl KeyInfo {
    /// A new random key.
    pub fn generate(kind: KeyKind) -> Self {
        let private_key = match kind {
            KeyKind::Secp256k1 => SigningKey::random(&mut rand::rngs::OsRng)
                .to_bytes()
                .to_vec(),
            KeyKind::Bls => bls_signatures::PrivateKey::generate(&mut rand::rngs::OsRng).as_bytes(),
        };
        Self { kind, private_key }
    }

    /// The key's address: `f1` (hash of the uncompressed secp256k1 public key) or `f3` (the
    /// BLS public key).
    pub fn address(&self) -> Result<Address, KeyError> {
        let invalid = |why: String| KeyError::Invalid {
            kind: self.kind,
            why,
        };
        match self.kind {
            KeyKind::Secp256k1 => {
                let key = SigningKey::from_slice(&self.private_key)
                    .map_err(|e| invalid(e.to_string()))?;
                let public = key.verifying_key().to_encoded_point(false);
                Address::new_secp256k1(public.as_bytes()).map_err(|e| invalid(e.to_string()))
            }
            KeyKind::Bls => {
                let key = bls_signatures::PrivateKey::from_bytes(&self.private_key)
                    .map_err(|e| invalid(e.to_string()))?;
                Address::new_bls(&key.public_key().as_bytes()).map_err(|e| invalid(e.to_string()))
            }
        }
    }

    /// Signs `data` as Lotus's wallet does.
    pub fn sign(&self, data: &[u8]) -> Result<Signature, KeyError> {
        let invalid = |why: String| KeyError::Invalid {
            kind: self.kind,
            why,
        };
        match self.kind {
            KeyKind::Secp256k1 => {
                let key = SigningKey::from_slice(&self.private_key)
                    .map_err(|e| invalid(e.to_string()))?;
                let hash = blake2b_simd::Params::new().hash_length(32).hash(data);
                let (sig, recovery) = key
                    .sign_prehash_recoverable(hash.as_bytes())
                    .map_err(|e| invalid(e.to_string()))?;
                let mut bytes = sig.to_bytes().to_vec();
                bytes.push(recovery.to_byte());
                Ok(Signature {
                    sig_type: SignatureType::Secp256k1,
                    bytes,
                })
            }
            KeyKind::Bls => {
                let key = bls_signatures::PrivateKey::from_bytes(&self.private_key)
                    .map_err(|e| invalid(e.to_string()))?;
                Ok(Signature {
                    sig_type: SignatureType::BLS,
                    bytes: key.sign(data).as_bytes(),
                })
            }
        }
    }
}

/// Checks `signature` over `data` against a public-key address.
pub fn verify(signature: &Signature, data: &[u8], address: &Address) -> Result<(), String> {
    signature.verify(data, address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_verify_against_their_addresses() {
        for kind in [KeyKind::Secp256k1, KeyKind::Bls] {
            let key = KeyInfo::generate(kind);
            let address = key.address().expect("address");
            let sig = key.sign(b"hello").expect("sign");
            verify(&sig, b"hello", &address).expect("verifies");
            assert!(
                verify(&sig, b"other", &address).is_err(),
                "{kind}: another message verified"
            );
            let other = KeyInfo::generate(kind).address().expect("address");
            assert!(
                verify(&sig, b"hello", &other).is_err(),
                "{kind}: another key verified"
            );
            let json = serde_json::to_string(&key).expect("json");
            assert!(json.contains(&format!("\"Type\":\"{kind}\"")));
            let back: KeyInfo = serde_json::from_str(&json).expect("parse");
            assert_eq!(back.address().expect("address"), address);
        }
        let secp = KeyInfo::generate(KeyKind::Secp256k1)
            .sign(b"x")
            .expect("sign");
        assert_eq!(secp.bytes.len(), 65);
        let bls = KeyInfo::generate(KeyKind::Bls).sign(b"x").expect("sign");
        assert_eq!(bls.bytes.len(), 96);
    }
}
