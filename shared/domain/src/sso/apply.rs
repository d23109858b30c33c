//! Applying one planned change (the assignment worker): ask IAM Identity Center for it, then
//! hand the accepted request to the provisioning monitor.

use async_trait::async_trait;
use thiserror::Error;

use super::plan::Assignment;
use super::provisioning::{AssignmentOperation, AssignmentRequest};
use super::reconcile::AssignmentChange;
use crate::port::PortError;

/// Creates and deletes account assignments (IAM Identity Center).
#[async_trait]
pub trait AssignmentWriter: Send + Sync {
    async fn change(
        &self,
        operation: AssignmentOperation,
        assignment: &Assignment,
    ) -> Result<AssignmentRequest, PortError>;
}

/// Hands accepted requests to the provisioning monitor (flow C).
#[async_trait]
pub trait MonitorQueue: Send + Sync {
    async fn monitor(&self, request: &AssignmentRequest) -> Result<(), PortError>;
}

#[derive(Debug, Error)]
pub enum ApplyError {
    /// IAM Identity Center refused or could not take the change now.
    #[error("IAM Identity Center did not take the {operation:?}: {source}")]
    Change {
        operation: AssignmentOperation,
        source: PortError,
    },
    /// The change was accepted but the monitor queue was not reachable: the request id is
    /// logged so that nothing is lost, and the change is retried (IAM Identity Center answers
    /// a repeat with a new request for the same assignment).
    #[error("request {request_id} was accepted but not handed to the monitor: {source}")]
    Monitor {
        request_id: String,
        source: PortError,
    },
}

impl ApplyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Change { source, .. } => source.is_retryable(),
            ApplyError::Monitor { .. } => true,
        }
    }
}

pub async fn apply_change(
    writer: &dyn AssignmentWriter,
    monitor: &dyn MonitorQueue,
    change: &AssignmentChange,
) -> Result<AssignmentRequest, ApplyError> {
    let request = writer
        .change(change.operation, &change.assignment)
        .await
        .map_err(|source| ApplyError::Change {
            operation: change.operation,
            source,
        })?;
    monitor
        .monitor(&request)
        .await
        .map_err(|source| ApplyError::Monitor {
            request_id: request.request_id.to_string(),
            source,
        })?;
    Ok(request)
}
