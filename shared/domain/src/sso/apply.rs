//! Applying one planned change (the assignment worker): ask IAM Identity Center for it, then
//! hand the accepted request to the provisioning monitor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;

use super::plan::Assignment;
use super::provisioning::{AssignmentOperation, AssignmentRequest, RunId};
use super::reconcile::AssignmentChange;
use crate::port::PortError;
use crate::quota::{OutstandingOperations, SSO_ADMIN_OUTSTANDING_OPERATIONS, operation_key};

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
    /// Every outstanding-operation slot is taken: try again once some settle.
    #[error("IAM Identity Center has {0} operations outstanding already")]
    Busy(usize),
    #[error("cannot reserve an outstanding-operation slot: {0}")]
    Governor(PortError),
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
            ApplyError::Busy(_) | ApplyError::Monitor { .. } => true,
            ApplyError::Governor(source) | ApplyError::Change { source, .. } => {
                source.is_retryable()
            }
        }
    }
}

/// How long an operation's slot is held at most: longer than the monitor polls (its
/// overall timeout), so a slot is freed by the monitor or, if it dies, by expiry.
pub const OPERATION_SLOT: chrono::Duration = chrono::Duration::hours(2);

/// The worker's dependencies.
pub struct Applier<'a> {
    pub writer: &'a dyn AssignmentWriter,
    pub monitor: &'a dyn MonitorQueue,
    pub operations: &'a dyn OutstandingOperations,
}

/// The key under which an assignment's operation holds its slot.
pub fn slot_key(assignment: &Assignment) -> String {
    operation_key(
        assignment.account_id.as_str(),
        assignment.permission_set_arn.as_str(),
        assignment.principal_id.as_str(),
    )
}

/// Reserves an outstanding-operation slot, asks IAM Identity Center for the change, and
/// hands the accepted request to the monitor, which frees the slot when the request settles.
pub async fn apply_change(
    applier: &Applier<'_>,
    change: &AssignmentChange,
    now: DateTime<Utc>,
) -> Result<AssignmentRequest, ApplyError> {
    let key = slot_key(&change.assignment);
    let reserved = applier
        .operations
        .reserve(&key, now, now + OPERATION_SLOT)
        .await
        .map_err(ApplyError::Governor)?;
    if !reserved {
        return Err(ApplyError::Busy(SSO_ADMIN_OUTSTANDING_OPERATIONS));
    }
    let (writer, monitor) = (applier.writer, applier.monitor);
    let mut request = match writer.change(change.operation, &change.assignment).await {
        Ok(request) => request,
        Err(source) => {
            // Nothing is outstanding: free the slot at once. A slot that cannot be freed now
            // expires on its own, so this failure is not worth failing the change over.
            let _ = applier.operations.release(&key).await;
            return Err(ApplyError::Change {
                operation: change.operation,
                source,
            });
        }
    };
    // Run ids are the ids of our own reconcile invocations, which always fit.
    request.run_id = RunId::try_from(change.run_id.as_str()).ok();
    monitor
        .monitor(&request)
        .await
        .map_err(|source| ApplyError::Monitor {
            request_id: request.request_id.to_string(),
            source,
        })?;
    Ok(request)
}
