//! The storage ask: the prices and piece sizes this provider takes, settable at run time
//! (`ask set`) and kept in the database. For the ask protocol it is signed by the miner's
//! worker key, which only the hub holds: the hub signs a CBOR `StorageAsk` for its own miner
//! and nothing else.

use std::sync::RwLock;

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use nelumbo_chain_api::Base64;
use nelumbo_markets_api::admin::AskSettings;
use nelumbo_markets_api::wire::{SignedStorageAsk, StorageAsk};
use nelumbo_miner_api::methods::{ChainHead, MarketSignAsk};

use crate::hub::Hub;
use crate::store::Store;

/// How long a signed ask is valid, in epochs (Boost's default).
const ASK_DURATION_EPOCHS: i64 = 1_000_000;

/// A checked ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub price: TokenAmount,
    pub verified_price: TokenAmount,
    pub min_piece_size: u64,
    pub max_piece_size: u64,
}

pub fn parse_settings(settings: &AskSettings) -> anyhow::Result<Ask> {
    let amount = |name: &str, text: &str| -> anyhow::Result<TokenAmount> {
        let atto: num_bigint::BigInt = text.trim().parse().map_err(|_| {
            anyhow::anyhow!("{name} {text:?} is not a whole number of attoFIL per GiB per epoch")
        })?;
        anyhow::ensure!(atto >= 0.into(), "{name} cannot be negative");
        Ok(TokenAmount::from_atto(atto))
    };
    let ask = Ask {
        price: amount("price", &settings.price)?,
        verified_price: amount("verified price", &settings.verified_price)?,
        min_piece_size: settings.min_piece_size,
        max_piece_size: settings.max_piece_size,
    };
    for (name, size) in [
        ("min piece size", ask.min_piece_size),
        ("max piece size", ask.max_piece_size),
    ] {
        anyhow::ensure!(
            nelumbo_commp::PaddedPieceSize::new(size).is_ok(),
            "{name} {size} is not a padded piece size (a power of two, at least 128)"
        );
    }
    anyhow::ensure!(
        ask.min_piece_size <= ask.max_piece_size,
        "min piece size {} is above max piece size {}",
        ask.min_piece_size,
        ask.max_piece_size
    );
    Ok(ask)
}

#[derive(Debug)]
struct Current {
    settings: AskSettings,
    ask: Ask,
    seq_no: u64,
    signed: Option<SignedStorageAsk>,
}

/// The current ask, shared by the deal checks, the ask protocol and the admin API.
#[derive(Debug)]
pub struct AskBook {
    current: RwLock<Current>,
    miner: Address,
}

impl AskBook {
    /// The stored ask if `ask set` was ever used, else the configured one.
    pub fn load(store: &Store, configured: AskSettings, miner: Address) -> anyhow::Result<Self> {
        let (settings, seq_no) = match store.ask()? {
            Some(stored) => stored,
            None => (configured, 0),
        };
        let ask = parse_settings(&settings)?;
        Ok(Self {
            current: RwLock::new(Current {
                settings,
                ask,
                seq_no,
                signed: None,
            }),
            miner,
        })
    }

    pub fn ask(&self) -> Ask {
        self.current
            .read()
            .map(|c| c.ask.clone())
            .unwrap_or_else(|e| e.into_inner().ask.clone())
    }

    pub fn settings(&self) -> AskSettings {
        self.current
            .read()
            .map(|c| c.settings.clone())
            .unwrap_or_else(|e| e.into_inner().settings.clone())
    }

    /// Checks, stores and applies new settings.
    pub async fn set(
        &self,
        store: &crate::store::AsyncStore,
        settings: AskSettings,
    ) -> anyhow::Result<AskSettings> {
        let ask = parse_settings(&settings)?;
        let seq_no = self
            .current
            .read()
            .map_err(|_| anyhow::anyhow!("the ask lock is poisoned"))?
            .seq_no
            + 1;
        store.put_ask(&settings, seq_no).await?;
        let mut current = self
            .current
            .write()
            .map_err(|_| anyhow::anyhow!("the ask lock is poisoned"))?;
        *current = Current {
            settings: settings.clone(),
            ask,
            seq_no,
            signed: None,
        };
        tracing::info!(price = %settings.price, verified_price = %settings.verified_price,
            min = settings.min_piece_size, max = settings.max_piece_size, seq_no, "ask set");
        Ok(settings)
    }

    /// The signed ask for the ask protocol, signed by the hub once per change.
    pub async fn signed(&self, hub: &Hub) -> anyhow::Result<SignedStorageAsk> {
        let (ask, seq_no) = {
            let current = self
                .current
                .read()
                .map_err(|_| anyhow::anyhow!("the ask lock is poisoned"))?;
            if let Some(signed) = &current.signed {
                return Ok(signed.clone());
            }
            (current.ask.clone(), current.seq_no)
        };
        let head = hub.call::<ChainHead>(()).await?.height;
        let storage_ask = StorageAsk {
            miner: self.miner,
            price: ask.price,
            seq_no,
            expiry: head + ASK_DURATION_EPOCHS,
            timestamp: head,
            max_piece_size: ask.max_piece_size,
            min_piece_size: ask.min_piece_size,
            verified_price: ask.verified_price,
        };
        let cbor = fvm_ipld_encoding::to_vec(&storage_ask)?;
        let signature = hub.call::<MarketSignAsk>((Base64(cbor),)).await?;
        let signature = signature_from_bytes(&signature.0)?;
        let signed = SignedStorageAsk {
            ask: Some(storage_ask),
            signature: Some(signature),
        };
        if let Ok(mut current) = self.current.write()
            && current.seq_no == seq_no
        {
            current.signed = Some(signed.clone());
        }
        Ok(signed)
    }
}

/// A signature as the chain's CBOR carries it: the type byte, then the data.
pub fn signature_from_bytes(
    bytes: &[u8],
) -> anyhow::Result<fvm_shared::crypto::signature::Signature> {
    use fvm_shared::crypto::signature::Signature;
    match bytes.split_first() {
        Some((1, data)) => Ok(Signature::new_secp256k1(data.to_vec())),
        Some((2, data)) => Ok(Signature::new_bls(data.to_vec())),
        _ => anyhow::bail!("not a secp256k1 or BLS signature"),
    }
}
