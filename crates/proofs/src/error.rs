//! Errors of proof operations.

use crate::params::ParamError;

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The parameters a proof needs are missing or unusable.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The caller asked for something impossible; the text says what.
    #[error("{0}")]
    Invalid(String),
    /// The proofs library failed.
    #[error("{op}: {source:#}")]
    Library {
        op: &'static str,
        source: anyhow::Error,
    },
    /// The blocking task running the proof was cancelled or panicked.
    #[error("proof task ended abnormally: {0}")]
    Task(String),
}

impl ProofError {
    pub(crate) fn library(op: &'static str) -> impl FnOnce(anyhow::Error) -> Self {
        move |source| Self::Library { op, source }
    }
}
