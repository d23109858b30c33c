//! Applying one planned change (the assignment worker): ask IAM Identity Center for it, then
//! hand the accepted request to the assignment monitor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;

use super::assignment_monitor::{AssignmentOperation, AssignmentRequest, RunId};
use super::plan::Assignment;
use super::reconcile::{AssignmentChange, LatestPlans};
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

/// Hands accepted requests to the assignment monitor (flow C).
#[async_trait]
pub trait MonitorQueue: Send + Sync {
    async fn monitor(&self, request: &AssignmentRequest) -> Result<(), PortError>;
}

/// Puts a change back on the changes queue, as a new message SQS holds for `delay_seconds`:
/// waiting for an operation slot must not spend the receives that lead to the DLQ.
#[async_trait]
pub trait ChangeDeferral: Send + Sync {
    async fn defer(&self, change: &AssignmentChange, delay_seconds: u32) -> Result<(), PortError>;
}

/// How long a change waits for a slot before it is tried again, and how often it may wait:
/// more than [`OPERATION_SLOT`] in all, so a slot whose holder died has expired before a
/// change waiting for it gives up.
pub const SLOT_WAIT_SECONDS: u32 = 60;
pub const MAX_DEFERRALS: u32 = 180;

/// What becomes of a change that found every slot taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhenBusy {
    /// Back on the queue, held for `delay_seconds` (60 to 119 s, spread by assignment so
    /// that a large backlog does not come back all at once).
    Wait {
        change: AssignmentChange,
        delay_seconds: u32,
    },
    /// It waited [`MAX_DEFERRALS`] times: something holds the slots for good. It fails, and
    /// SQS's redrive takes it to the DLQ, whose alarm says so.
    GiveUp { deferrals: u32 },
}

pub fn when_busy(change: &AssignmentChange) -> WhenBusy {
    if change.deferrals >= MAX_DEFERRALS {
        return WhenBusy::GiveUp {
            deferrals: change.deferrals,
        };
    }
    let spread = slot_key(&change.assignment)
        .bytes()
        .fold(change.deferrals, |h, b| {
            h.wrapping_mul(31).wrapping_add(u32::from(b))
        })
        % SLOT_WAIT_SECONDS;
    WhenBusy::Wait {
        change: AssignmentChange {
            deferrals: change.deferrals + 1,
            ..change.clone()
        },
        delay_seconds: SLOT_WAIT_SECONDS + spread,
    }
}

#[derive(Debug, Error)]
pub enum ApplyError {
    /// Every outstanding-operation slot is taken: try again once some settle.
    #[error("IAM Identity Center has {0} operations outstanding already")]
    Busy(usize),
    #[error("cannot reserve an outstanding-operation slot: {0}")]
    Governor(PortError),
    #[error("cannot read when the assignment was last planned: {0}")]
    LatestPlan(PortError),
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
            ApplyError::Governor(source)
            | ApplyError::LatestPlan(source)
            | ApplyError::Change { source, .. } => source.is_retryable(),
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
    pub latest_plans: &'a dyn LatestPlans,
}

/// What became of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// IAM Identity Center accepted it; the monitor follows the request.
    Requested(AssignmentRequest),
    /// A plan covering the assignment was made after this change's (`planned_at`) and
    /// decided anew: the change is dropped, nothing is asked.
    Superseded {
        planned_at: DateTime<Utc>,
        latest: DateTime<Utc>,
    },
}

/// The key under which an assignment's operation holds its slot.
pub fn slot_key(assignment: &Assignment) -> String {
    operation_key(
        assignment.account_id.as_str(),
        assignment.permission_set_arn.as_str(),
        assignment.principal_id.as_str(),
    )
}

/// Who holds a change's slot: its run and operation, the same for every delivery of it.
fn holder_of(change: &AssignmentChange) -> String {
    format!("{}/{:?}", change.run_id, change.operation)
}

/// Drops a change a newer plan superseded; otherwise reserves an outstanding-operation slot,
/// asks IAM Identity Center for the change, and hands the accepted request to the monitor,
/// which frees the slot when the request settles.
pub async fn apply_change(
    applier: &Applier<'_>,
    change: &AssignmentChange,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    if let Some(planned_at) = change.planned_at {
        let latest = applier
            .latest_plans
            .latest_covering(&change.assignment)
            .await
            .map_err(ApplyError::LatestPlan)?;
        if let Some(latest) = latest.filter(|latest| *latest > planned_at) {
            return Ok(Applied::Superseded { planned_at, latest });
        }
    }
    let key = slot_key(&change.assignment);
    let reserved = applier
        .operations
        .reserve(&key, &holder_of(change), now, now + OPERATION_SLOT)
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
    Ok(Applied::Requested(request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sso::synthetic;

    fn change(deferrals: u32) -> AssignmentChange {
        AssignmentChange {
            run_id: "run-1".into(),
            instance_arn: super::super::assignment_monitor::InstanceArn::try_from(
                "arn:aws:sso:::instance/ssoins-0000000000000000",
            )
            .unwrap(),
            operation: AssignmentOperation::Create,
            assignment: synthetic::group_assignment(3, 3, 6),
            deferrals,
            planned_at: None,
        }
    }

    #[test]
    fn a_change_that_finds_every_slot_taken_waits_on_the_queue_then_gives_up() {
        // Issue 14, finding 3: it burned one of its five receives each time and a large
        // change set ended in the DLQ.
        let WhenBusy::Wait {
            change: again,
            delay_seconds,
        } = when_busy(&change(0))
        else {
            panic!("a first refusal waits");
        };
        assert_eq!(again.deferrals, 1);
        assert_eq!(again.assignment, change(0).assignment);
        assert!((SLOT_WAIT_SECONDS..2 * SLOT_WAIT_SECONDS).contains(&delay_seconds));
        assert!(
            i64::from(MAX_DEFERRALS * SLOT_WAIT_SECONDS) > OPERATION_SLOT.num_seconds(),
            "a dead holder's slot expires before a waiting change gives up"
        );
        assert_eq!(
            when_busy(&change(MAX_DEFERRALS)),
            WhenBusy::GiveUp {
                deferrals: MAX_DEFERRALS
            }
        );
    }

    /// IAM Identity Center and the governor, counting what they are asked.
    #[derive(Default)]
    struct Counted {
        changes: std::sync::Mutex<usize>,
        reserved: std::sync::Mutex<usize>,
    }

    #[async_trait]
    impl AssignmentWriter for Counted {
        async fn change(
            &self,
            operation: AssignmentOperation,
            assignment: &Assignment,
        ) -> Result<AssignmentRequest, PortError> {
            *self.changes.lock().unwrap() += 1;
            Ok(AssignmentRequest {
                request_id: "00000000-0000-0000-0000-000000000001".try_into().unwrap(),
                operation,
                instance_arn: super::super::assignment_monitor::InstanceArn::try_from(
                    "arn:aws:sso:::instance/ssoins-0000000000000000",
                )
                .unwrap(),
                account_id: assignment.account_id.clone(),
                permission_set_arn: assignment.permission_set_arn.clone(),
                principal_type: assignment.principal_type,
                principal_id: assignment.principal_id.clone(),
                run_id: None,
            })
        }
    }

    #[async_trait]
    impl MonitorQueue for Counted {
        async fn monitor(&self, _: &AssignmentRequest) -> Result<(), PortError> {
            Ok(())
        }
    }

    #[async_trait]
    impl OutstandingOperations for Counted {
        async fn reserve(
            &self,
            _: &str,
            _: &str,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<bool, PortError> {
            *self.reserved.lock().unwrap() += 1;
            Ok(true)
        }
        async fn release(&self, _: &str) -> Result<(), PortError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_change_that_waited_past_a_newer_plan_of_its_assignment_is_dropped() {
        // Review of issue 14: a change may wait hours for a slot; a delete planned before an
        // event made the assignment desired again was applied after it, and took the access
        // away until the next full run.
        use super::super::reconcile::{InMemoryLatestPlans, Scope};
        use chrono::TimeZone;
        let t0 = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let counted = Counted::default();
        let latest_plans = InMemoryLatestPlans::default();
        let applier = Applier {
            writer: &counted,
            monitor: &counted,
            operations: &counted,
            latest_plans: &latest_plans,
        };
        let stale = AssignmentChange {
            planned_at: Some(t0),
            operation: AssignmentOperation::Delete,
            ..change(40)
        };
        latest_plans.planned(&Scope::Everything, t0).await.unwrap();
        let own = apply_change(&applier, &stale, t0).await.unwrap();
        assert!(
            matches!(own, Applied::Requested(_)),
            "its own plan does not supersede it"
        );
        let later = t0 + chrono::Duration::minutes(90);
        latest_plans
            .planned(
                &Scope::Account {
                    account_id: stale.assignment.account_id.clone(),
                },
                later,
            )
            .await
            .unwrap();
        let dropped = apply_change(&applier, &stale, later).await.unwrap();
        assert_eq!(
            dropped,
            Applied::Superseded {
                planned_at: t0,
                latest: later
            }
        );
        assert_eq!(
            *counted.changes.lock().unwrap(),
            1,
            "only the first was asked"
        );
        assert_eq!(*counted.reserved.lock().unwrap(), 1);
        // An approved delete carries no plan time: it is applied whatever was planned since.
        let approved = AssignmentChange {
            planned_at: None,
            ..stale
        };
        let applied = apply_change(&applier, &approved, later).await.unwrap();
        assert!(matches!(applied, Applied::Requested(_)));
    }
}
