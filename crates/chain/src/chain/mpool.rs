//! The message pool: checking pushed messages (signature, nonce, funds, and a dry run against
//! the pending state so a message that would fail is refused with the reason), nonces, gas
//! estimation, and signing with the node's wallet.
//!
//! As in Lotus, a message whose fee cap is below the base fee is accepted and waits (it, and
//! every later message of its sender, is not included until the base fee falls under its cap,
//! which on the devnet's fixed base fee means until it is replaced); and a waiting message is
//! replaced by one with the same sender and nonce whose premium is at least 25% higher.

use cid::Cid;
use fvm_shared::address::{Address, Payload};
use fvm_shared::econ::TokenAmount;
use fvm_shared::error::ExitCode;
use nelumbo_chain_api::types::{Message, MessageSendSpec, Signature, SignedMessage};
use num_traits::Zero;

use super::{Chain, Inner};
use crate::actors::cron::end_of_epoch;
use crate::state::State;
use crate::vm::{Env, Receipt, apply_message};

/// The largest gas limit a message may ask for (Filecoin's block gas limit).
pub const MAX_GAS_LIMIT: u64 = 10_000_000_000;
/// Premium `GasEstimateMessageGas` suggests when none is set, in attoFIL per gas.
const DEFAULT_PREMIUM_ATTO: u64 = 100_000;
/// The lowest fee cap the pool takes (Lotus's minimum base fee), in attoFIL per gas.
pub const MIN_FEE_CAP_ATTO: u64 = 100;
/// A replacement's premium must be at least the replaced one's times this (Lotus's 1.25).
const REPLACE_BY_FEE_PERCENT: u64 = 125;

/// The least premium that replaces a message whose premium is `old`.
pub fn replace_by_fee_minimum(old: &TokenAmount) -> TokenAmount {
    let scaled = old.atto() * REPLACE_BY_FEE_PERCENT;
    let (quotient, remainder) = (&scaled / 100u32, &scaled % 100u32);
    let minimum = if remainder.is_zero() {
        quotient
    } else {
        quotient + 1u32
    };
    TokenAmount::from_atto(minimum)
}

/// Why a pushed message was refused; the text is for the sender.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PushError(pub String);

fn exit_name(code: ExitCode) -> &'static str {
    match code.value() {
        0 => "Ok",
        1 => "SysErrSenderInvalid",
        2 => "SysErrSenderStateInvalid",
        4 => "SysErrIllegalInstruction",
        5 => "SysErrInvalidReceiver",
        6 => "SysErrInsufficientFunds",
        7 => "SysErrOutOfGas",
        16 => "ErrIllegalArgument",
        17 => "ErrNotFound",
        18 => "ErrForbidden",
        19 => "ErrInsufficientFunds",
        20 => "ErrIllegalState",
        21 => "ErrSerialization",
        22 => "ErrUnhandledMessage",
        _ => "ExitCode",
    }
}

/// `exit code 16 (ErrIllegalArgument): reason`, for errors and logs.
pub fn describe_failure(receipt: &Receipt) -> String {
    format!(
        "exit code {} ({}): {}",
        receipt.exit_code.value(),
        exit_name(receipt.exit_code),
        receipt.error.as_deref().unwrap_or("no reason given")
    )
}

impl Chain {
    /// The state the next tipset's messages execute on, and their epoch: the head's messages
    /// and cron applied, then the messages waiting in the pool.
    fn pending_state(&self, inner: &Inner, without: Option<&Cid>) -> (State, i64) {
        let randomness = super::ChainRandomness {
            beacon: self.beacon,
            heights: inner.heights.clone(),
        };
        let head = inner.head.height;
        let mut state = (*inner.head_state).clone();
        let env = Env {
            genesis: &self.genesis,
            epoch: head,
            randomness: &randomness,
            verifier: &self.verifier,
        };
        for message in &inner.head_messages {
            apply_message(&env, &mut state, &message.message.0);
        }
        end_of_epoch(&mut state, &self.genesis.policy, head);
        let next = Env {
            epoch: head + 1,
            ..env
        };
        let mut pool: Vec<&SignedMessage> = inner
            .mpool
            .iter()
            .filter(|m| without.is_none() || m.cid().ok().as_ref() != without)
            .collect();
        pool.sort_by_key(|m| m.message.0.sequence);
        for message in pool {
            apply_message(&next, &mut state, &message.message.0);
        }
        (state, head + 1)
    }

    /// Executes `message` on the pending state without keeping anything.
    pub fn dry_run(&self, message: &fvm_shared::message::Message) -> Receipt {
        self.dry_run_without(message, None)
    }

    /// [`Self::dry_run`] on the pending state without the pool message `without` (the one a
    /// replacement would take the place of).
    fn dry_run_without(
        &self,
        message: &fvm_shared::message::Message,
        without: Option<&Cid>,
    ) -> Receipt {
        let inner = self.inner();
        let randomness = super::ChainRandomness {
            beacon: self.beacon,
            heights: inner.heights.clone(),
        };
        let (mut state, epoch) = self.pending_state(&inner, without);
        let env = Env {
            genesis: &self.genesis,
            epoch,
            randomness: &randomness,
            verifier: &self.verifier,
        };
        apply_message(&env, &mut state, message)
    }

    /// The next nonce of an address: its actor's, plus messages included and waiting.
    pub fn next_nonce(&self, address: &Address) -> u64 {
        let inner = self.inner();
        let state = &inner.head_state;
        let id = state.resolve(address);
        let mut nonce = id
            .and_then(|id| state.actors.get(&id))
            .map(|a| a.nonce)
            .unwrap_or(0);
        let same_sender = |m: &&SignedMessage| {
            let from = &m.message.0.from;
            from == address || (id.is_some() && state.resolve(from) == id)
        };
        for message in inner
            .head_messages
            .iter()
            .chain(&inner.mpool)
            .filter(same_sender)
        {
            nonce = nonce.max(message.message.0.sequence + 1);
        }
        nonce
    }

    /// The public-key address that must have signed messages from `address`.
    fn signing_key(&self, address: &Address) -> Result<Address, PushError> {
        match address.payload() {
            Payload::Secp256k1(_) | Payload::BLS(_) => Ok(*address),
            _ => {
                let inner = self.inner();
                let state = &inner.head_state;
                state
                    .resolve(address)
                    .and_then(|id| state.account_key(id))
                    .ok_or_else(|| {
                        PushError(format!("sender {address} is not an account with a key"))
                    })
            }
        }
    }

    /// Checks and adds a signed message to the pool. Blocking: the dry run may verify proofs.
    pub fn push(&self, signed: SignedMessage) -> Result<Cid, PushError> {
        let m = &signed.message.0;
        let key = self.signing_key(&m.from)?;
        let signature = signed.signature.to_fvm().map_err(PushError)?;
        signature
            .verify(&signed.message.cid().to_bytes(), &key)
            .map_err(|e| {
                PushError(format!(
                    "bad signature: it does not verify for sender {} ({e})",
                    m.from
                ))
            })?;
        if m.version != 0 {
            return Err(PushError(format!(
                "message version {} is not supported (use 0)",
                m.version
            )));
        }
        if m.gas_limit == 0 || m.gas_limit > MAX_GAS_LIMIT {
            return Err(PushError(format!(
                "gas limit {} must be between 1 and {MAX_GAS_LIMIT}",
                m.gas_limit
            )));
        }
        if m.gas_fee_cap < TokenAmount::from_atto(MIN_FEE_CAP_ATTO) {
            return Err(PushError(format!(
                "gas fee cap {} is below the minimum of {MIN_FEE_CAP_ATTO} attoFIL: estimate gas first (GasEstimateMessageGas)",
                m.gas_fee_cap.atto(),
            )));
        }
        if m.gas_premium > m.gas_fee_cap {
            return Err(PushError(format!(
                "gas premium {} is above the fee cap {}",
                m.gas_premium.atto(),
                m.gas_fee_cap.atto()
            )));
        }
        if m.value.is_negative() {
            return Err(PushError("value is negative".into()));
        }
        let replaced = self.waiting_with_nonce(&m.from, m.sequence);
        let expected = self.next_nonce(&m.from);
        match &replaced {
            Some(old) => {
                let old_cid = old.cid().map_err(PushError)?;
                if old_cid == signed.cid().map_err(PushError)? {
                    return Err(PushError(format!("message {old_cid} is already in mpool")));
                }
                let minimum = replace_by_fee_minimum(&old.message.0.gas_premium);
                if m.gas_premium < minimum {
                    return Err(PushError(format!(
                        "nonce {} of {} is already used or waiting (message {old_cid}); to replace it, raise the gas premium to at least {} attoFIL (25% above its {})",
                        m.sequence,
                        m.from,
                        minimum.atto(),
                        old.message.0.gas_premium.atto()
                    )));
                }
            }
            None if m.sequence != expected => {
                return Err(PushError(if m.sequence < expected {
                    format!(
                        "wrong nonce {}: that nonce of {} is already used; the next is {expected}",
                        m.sequence, m.from
                    )
                } else {
                    format!(
                        "wrong nonce {}: the next nonce of {} is {expected}",
                        m.sequence, m.from
                    )
                }));
            }
            None => {}
        }
        let replaced_cid = replaced.as_ref().and_then(|old| old.cid().ok());
        let receipt = self.dry_run_without(m, replaced_cid.as_ref());
        if receipt.exit_code != ExitCode::OK {
            return Err(PushError(format!(
                "message would fail: {}",
                describe_failure(&receipt)
            )));
        }
        let cid = self
            .store
            .add_to_mpool(&signed)
            .map_err(|e| PushError(format!("store message: {e:#}")))?;
        if let Some(old) = &replaced_cid {
            self.store
                .remove_from_mpool(std::slice::from_ref(old))
                .map_err(|e| PushError(format!("store message: {e:#}")))?;
            tracing::info!(message_cid = %cid, replaced = %old, from = %m.from, nonce = m.sequence, "message replaced by fee");
        }
        let base_fee = TokenAmount::from_atto(self.genesis.policy.base_fee_atto);
        if m.gas_fee_cap < base_fee {
            tracing::info!(message_cid = %cid, from = %m.from, nonce = m.sequence, fee_cap = %m.gas_fee_cap.atto(), base_fee = %base_fee.atto(), "message pooled below the base fee: it waits until replaced");
        } else {
            tracing::debug!(message_cid = %cid, from = %m.from, nonce = m.sequence, method = m.method_num, "message pooled");
        }
        if let Ok(mut inner) = self.inner.write() {
            if let Some(old) = &replaced_cid {
                inner.mpool.retain(|p| p.cid().ok().as_ref() != Some(old));
            }
            inner.mpool.push(signed);
            self.metrics.mpool_messages.set(inner.mpool.len() as i64);
        }
        Ok(cid)
    }

    /// The pool's message from `address` with `nonce`, if one waits.
    fn waiting_with_nonce(&self, address: &Address, nonce: u64) -> Option<SignedMessage> {
        let inner = self.inner();
        let state = &inner.head_state;
        let id = state.resolve(address);
        inner
            .mpool
            .iter()
            .find(|m| {
                let from = &m.message.0.from;
                m.message.0.sequence == nonce
                    && (from == address || (id.is_some() && state.resolve(from) == id))
            })
            .cloned()
    }

    /// Every message waiting in the pool.
    pub fn pending(&self) -> Vec<SignedMessage> {
        self.inner().mpool.clone()
    }

    /// Fills a message's unset gas limit, fee cap and premium by executing it on the pending
    /// state; fails with the execution error if the message would fail.
    pub fn estimate_gas(
        &self,
        message: Message,
        spec: Option<&MessageSendSpec>,
    ) -> Result<Message, PushError> {
        let mut probe = message.0.clone();
        probe.gas_limit = MAX_GAS_LIMIT;
        probe.gas_fee_cap = TokenAmount::zero();
        probe.gas_premium = TokenAmount::zero();
        probe.sequence = self.next_nonce(&probe.from);
        let receipt = self.dry_run(&probe);
        if receipt.exit_code != ExitCode::OK {
            return Err(PushError(format!(
                "estimating gas used: message execution failed: {}",
                describe_failure(&receipt)
            )));
        }
        let mut out = message.0;
        if out.gas_limit == 0 {
            out.gas_limit = receipt.gas_used * 5 / 4;
        }
        if out.gas_premium.is_zero() {
            out.gas_premium = TokenAmount::from_atto(DEFAULT_PREMIUM_ATTO);
        }
        if out.gas_fee_cap.is_zero() {
            let base_fee = TokenAmount::from_atto(self.genesis.policy.base_fee_atto);
            let mut cap = base_fee * 2 + &out.gas_premium;
            if let Some(max_fee) = spec
                .and_then(|s| s.max_fee.clone())
                .filter(|f| !f.is_zero())
            {
                let limit = max_fee.div_floor(out.gas_limit.max(1));
                cap = cap.min(limit);
            }
            out.gas_fee_cap = cap;
        }
        if out.gas_premium > out.gas_fee_cap {
            out.gas_premium = out.gas_fee_cap.clone();
        }
        Ok(Message(out))
    }

    /// Assigns the nonce, estimates gas, signs with the node's wallet and pushes.
    pub async fn push_message(
        self: &std::sync::Arc<Self>,
        message: Message,
        spec: Option<MessageSendSpec>,
    ) -> Result<SignedMessage, PushError> {
        let _guard = self.push_lock.lock().await;
        let key = self.signing_key(&message.0.from)?;
        let info = self.wallet.get(&key).map_err(|_| {
            PushError(format!(
                "the node's wallet has no key for {}",
                message.0.from
            ))
        })?;
        let chain = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut message = chain.estimate_gas(message, spec.as_ref())?;
            message.0.sequence = chain.next_nonce(&message.0.from);
            let signature = info
                .sign(&message.cid().to_bytes())
                .map_err(|e| PushError(format!("sign: {e}")))?;
            let signed = SignedMessage {
                message,
                signature: Signature::from_fvm(&signature),
            };
            chain.push(signed.clone())?;
            Ok(signed)
        })
        .await
        .map_err(|e| PushError(format!("push task failed: {e}")))?
    }
}
