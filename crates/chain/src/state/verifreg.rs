//! The verified registry: its root key, verifiers and their allowances, clients' DataCap.

use std::collections::BTreeMap;

use fvm_shared::address::Address;
use serde::{Deserialize, Serialize};

use super::ActorId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifRegState {
    /// The key that may add verifiers.
    pub root: Address,
    /// Verifiers and the DataCap (bytes) they may still grant.
    pub verifiers: BTreeMap<ActorId, u64>,
    /// Clients and their DataCap (bytes).
    pub clients: BTreeMap<ActorId, u64>,
}

impl VerifRegState {
    pub fn new(root: Address) -> Self {
        Self {
            root,
            verifiers: BTreeMap::new(),
            clients: BTreeMap::new(),
        }
    }
}
