//! Actor errors: an exit code and a message for the operator.

use fvm_shared::error::ExitCode;

/// Why a message failed: the exit code its receipt carries and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exit code {}: {message}", code.value())]
pub struct ActorError {
    pub code: ExitCode,
    pub message: String,
}

impl ActorError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn illegal_argument(message: impl Into<String>) -> Self {
        Self::new(ExitCode::USR_ILLEGAL_ARGUMENT, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ExitCode::USR_NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ExitCode::USR_FORBIDDEN, message)
    }

    pub fn insufficient_funds(message: impl Into<String>) -> Self {
        Self::new(ExitCode::USR_INSUFFICIENT_FUNDS, message)
    }

    pub fn illegal_state(message: impl Into<String>) -> Self {
        Self::new(ExitCode::USR_ILLEGAL_STATE, message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ExitCode::USR_SERIALIZATION, message)
    }

    pub fn unhandled(message: impl Into<String>) -> Self {
        Self::new(ExitCode::USR_UNHANDLED_MESSAGE, message)
    }
}
