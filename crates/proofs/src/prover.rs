//! The [`Prover`] handle: proof operations that need the library configured and parameters
//! checked, and a way to run them off the async executor.

use nelumbo_types::ActorId;

use crate::env::{InitError, ProofsConfig};
use crate::error::ProofError;
use crate::params::ParamCache;
use crate::registry::Circuit;

/// Proves and verifies. Holding one means the proofs library is configured for this process
/// ([`crate::init`]); every operation checks the parameter files it needs before the library
/// memory-maps them.
#[derive(Debug, Clone)]
pub struct Prover {
    cache: ParamCache,
}

/// What a caller needs a circuit's files for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Proving reads the parameters and the verifying key.
    Prove,
    /// Verifying reads only the verifying key.
    Verify,
}

impl Prover {
    pub fn new(config: ProofsConfig) -> Result<Self, InitError> {
        let config = crate::init(config)?;
        Ok(Self {
            cache: config.param_cache(),
        })
    }

    /// A prover with [`ProofsConfig::from_env`].
    pub fn from_env() -> Result<Self, InitError> {
        Self::new(ProofsConfig::from_env()?)
    }

    pub fn param_cache(&self) -> &ParamCache {
        &self.cache
    }

    pub(crate) fn check(&self, circuit: Circuit, need: Need) -> Result<(), ProofError> {
        match need {
            Need::Prove => self.cache.verify(circuit)?,
            Need::Verify => self.cache.verify_key(circuit)?,
        }
        Ok(())
    }

    /// Runs blocking proof work on tokio's blocking threads, never on the async executor.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ProofError>
    where
        T: Send + 'static,
        F: FnOnce(&Prover) -> Result<T, ProofError> + Send + 'static,
    {
        let prover = self.clone();
        tokio::task::spawn_blocking(move || work(&prover))
            .await
            .map_err(|e| ProofError::Task(e.to_string()))?
    }
}

/// The prover id of a miner: its actor id as an unsigned varint, zero-padded to 32 bytes (the
/// payload of its `f0` address), as Lotus derives it.
pub fn prover_id(miner: ActorId) -> [u8; 32] {
    let mut id = [0u8; 32];
    let mut value = miner.0;
    let mut i = 0;
    while value >= 0x80 {
        id[i] = (value as u8) | 0x80;
        value >>= 7;
        i += 1;
    }
    id[i] = value as u8;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prover_ids_are_leb128_actor_ids() {
        assert_eq!(prover_id(ActorId(1000))[..3], [0xe8, 0x07, 0x00]);
        assert_eq!(prover_id(ActorId(5))[..2], [5, 0]);
    }
}
