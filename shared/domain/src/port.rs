//! What every port can fail with, so callers decide on retry without knowing the adapter.

use thiserror::Error;

/// A failure of an outside system behind a port.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    /// The service throttled or was briefly unavailable; the same call may succeed later.
    #[error("{service} is throttling or unavailable: {detail}")]
    Transient {
        service: &'static str,
        detail: String,
    },
    /// The thing asked for does not exist (or is no longer visible to us).
    #[error("{service} does not know {what}")]
    NotFound { service: &'static str, what: String },
    /// The service refused the call for a reason retrying will not change.
    #[error("{service} refused the call: {detail}")]
    Rejected {
        service: &'static str,
        detail: String,
    },
}

impl PortError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Transient { .. })
    }
}
