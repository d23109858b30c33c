//! `SsoAssignmentMonitorFunction`: one poll of one assignment request, for the
//! `SsoAssignmentMonitorStateMachine` (statemachines/sso-assignment-monitor.asl.json).
//!
//! Input: a [`StatusCheck`] (`{"request": {…}, "polls": n}`); output: a [`MonitorProgress`]
//! that tells the workflow to wait and poll again or to publish the final report.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::plan_store::DynamoPlanStore;
use maestro_aws::quota::DynamoQuota;
use maestro_aws::snapshot::DynamoSnapshotStore;
use maestro_aws::sso_admin::SsoAdminProvisioning;
use maestro_domain::port::PortError;
use maestro_domain::quota::{OutstandingOperations, operation_key};
use maestro_domain::sso::assignment_monitor::{
    CheckStep, MonitorProgress, PollPolicy, ProvisioningStatusReader, ReportLog, StatusCheck,
    after_poll,
};
use maestro_domain::sso::snapshot::{SnapshotStore, patch_current, settled};
use thiserror::Error;

pub struct Deps {
    pub provisioning: Arc<dyn ProvisioningStatusReader>,
    pub policy: PollPolicy,
    /// Frees the request's outstanding-operation slot once it settles.
    pub operations: Arc<dyn OutstandingOperations>,
    /// Records final reports with the SSO sync run that asked for the request, when the stack
    /// has the sync (`SSO_PLANS_TABLE`).
    pub reports: Option<Arc<dyn ReportLog>>,
    /// The SSO sync's snapshot, which learns of each change that succeeded, in the same
    /// stacks.
    pub snapshot: Option<Arc<dyn SnapshotStore>>,
}

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("cannot read the status of request {request_id}: {source}")]
    Status {
        request_id: String,
        source: PortError,
    },
    #[error("cannot record the report of request {request_id} with its run: {source}")]
    Record {
        request_id: String,
        source: PortError,
    },
    #[error("cannot write the outcome of request {request_id} into the snapshot: {source}")]
    Snapshot {
        request_id: String,
        source: PortError,
    },
    #[error("cannot free the operation slot of request {request_id}: {source}")]
    Release {
        request_id: String,
        source: PortError,
    },
}

impl From<StatusError> for Diagnostic {
    fn from(error: StatusError) -> Diagnostic {
        let kind = match &error {
            StatusError::Status { source, .. }
            | StatusError::Record { source, .. }
            | StatusError::Snapshot { source, .. }
            | StatusError::Release { source, .. } => ErrorKind::of_port_error(source),
        };
        kind.diagnostic(&error)
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<StatusCheck>,
) -> Result<MonitorProgress, StatusError> {
    let check = event.payload;
    let slot = operation_key(
        check.request.account_id.as_str(),
        check.request.permission_set_arn.as_str(),
        check.request.principal_id.as_str(),
    );
    if check.step == CheckStep::GiveUp {
        let request_id = check.request.request_id.to_string();
        deps.operations
            .release(&slot)
            .await
            .map_err(|source| StatusError::Release {
                request_id: request_id.clone(),
                source,
            })?;
        tracing::info!(%request_id, "gave up on the request; its operation slot is free");
        return Ok(MonitorProgress::SlotFreed);
    }
    let status = deps
        .provisioning
        .provisioning_status(&check.request)
        .await
        .map_err(|source| StatusError::Status {
            request_id: check.request.request_id.to_string(),
            source,
        })?;
    let request_id = check.request.request_id.to_string();
    let progress = after_poll(&deps.policy, check, status, chrono::Utc::now());
    if let MonitorProgress::Finished { report } = &progress {
        if let Err(error) = deps.operations.release(&slot).await {
            // The slot expires on its own; the report matters more.
            tracing::warn!(%request_id, %error, "cannot free the operation slot");
        }
        if let Some(reports) = &deps.reports {
            reports
                .record(report)
                .await
                .map_err(|source| StatusError::Record {
                    request_id: request_id.clone(),
                    source,
                })?;
        }
        if let Some(snapshot) = &deps.snapshot {
            let parts: Vec<_> = settled(report).into_iter().collect();
            patch_current(snapshot.as_ref(), &parts)
                .await
                .map_err(|source| StatusError::Snapshot {
                    request_id: request_id.clone(),
                    source,
                })?;
        }
    }
    match &progress {
        MonitorProgress::InProgress {
            polls,
            wait_seconds,
            ..
        } => tracing::info!(%request_id, polls, wait_seconds, "still in progress"),
        MonitorProgress::Finished { report } => {
            tracing::info!(%request_id, polls = report.polls, status = report.status.as_str(), "final")
        }
        MonitorProgress::SlotFreed => {}
    }
    Ok(progress)
}

impl LambdaFunction for Deps {
    type Event = StatusCheck;
    type Response = MonitorProgress;
    type Error = StatusError;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let first = vars.parsed("POLL_FIRST_WAIT_SECONDS");
        let max = vars.parsed("POLL_MAX_WAIT_SECONDS");
        let polls = vars.parsed("POLL_MAX_POLLS");
        let quota_table = vars.required("QUOTA_TABLE");
        let policy = match (first, max, polls) {
            (Some(first), Some(max), Some(polls)) => PollPolicy::new(first, max, polls)
                .map_err(|e| vars.problem(format!("the poll policy is invalid: {e}")))
                .ok(),
            _ => None,
        };
        vars.finish()?;
        let policy = policy.ok_or_else(|| EnvError {
            problems: vec!["the poll policy is incomplete".to_owned()],
        })?;
        let quota = Arc::new(DynamoQuota::for_sso_admin(config, quota_table));
        let plans_table = env
            .get("SSO_PLANS_TABLE")
            .filter(|table| !table.trim().is_empty());
        let reports = plans_table.map(|table| {
            Arc::new(DynamoPlanStore::new(config, table.to_owned())) as Arc<dyn ReportLog>
        });
        let snapshot = plans_table.map(|table| {
            Arc::new(DynamoSnapshotStore::new(config, table.to_owned())) as Arc<dyn SnapshotStore>
        });
        Ok(Deps {
            provisioning: Arc::new(SsoAdminProvisioning::new(config).with_call_rate(quota.clone())),
            policy,
            operations: quota,
            reports,
            snapshot,
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<StatusCheck>,
    ) -> Result<MonitorProgress, StatusError> {
        handle(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use maestro_domain::sso::assignment_monitor::{
        AssignmentRequest, FinalStatus, ProvisioningStatus,
    };

    struct FixedStatus(Result<ProvisioningStatus, PortError>);

    #[async_trait]
    impl ProvisioningStatusReader for FixedStatus {
        async fn provisioning_status(
            &self,
            _: &AssignmentRequest,
        ) -> Result<ProvisioningStatus, PortError> {
            self.0.clone()
        }
    }

    /// Remembers which slots were freed.
    #[derive(Default)]
    struct FreedSlots(std::sync::Mutex<Vec<String>>);

    #[async_trait]
    impl OutstandingOperations for FreedSlots {
        async fn reserve(
            &self,
            _: &str,
            _: &str,
            _: chrono::DateTime<chrono::Utc>,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<bool, PortError> {
            Ok(true)
        }
        async fn release(&self, key: &str) -> Result<(), PortError> {
            self.0.lock().unwrap().push(key.to_owned());
            Ok(())
        }
    }

    fn deps(status: Result<ProvisioningStatus, PortError>) -> Deps {
        Deps {
            provisioning: Arc::new(FixedStatus(status)),
            policy: PollPolicy::new(1, 4, 3).unwrap(),
            operations: Arc::new(FreedSlots::default()),
            reports: None,
            snapshot: None,
        }
    }

    fn event() -> LambdaEvent<StatusCheck> {
        let sample = include_str!("../../../events/sso-assignment-monitor/first-poll.json");
        LambdaEvent::new(
            serde_json::from_str(sample).expect("the sample event parses"),
            lambda_runtime::Context::default(),
        )
    }

    #[tokio::test]
    async fn a_settled_request_frees_its_slot_and_one_in_progress_keeps_it() {
        let freed = Arc::new(FreedSlots::default());
        let mut settled = deps(Ok(ProvisioningStatus::Succeeded));
        settled.operations = freed.clone();
        handle(&settled, event()).await.unwrap();
        assert_eq!(freed.0.lock().unwrap().len(), 1);

        let waiting_slots = Arc::new(FreedSlots::default());
        let mut waiting = deps(Ok(ProvisioningStatus::InProgress));
        waiting.operations = waiting_slots.clone();
        handle(&waiting, event()).await.unwrap();
        assert!(waiting_slots.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn giving_up_on_a_request_frees_its_slot_without_reading_its_status() {
        // Issue 14, finding 3: a MONITOR_ERROR left the slot taken for two hours.
        let freed = Arc::new(FreedSlots::default());
        let unreadable = PortError::NotFound {
            service: "sso-admin",
            what: "assignment request x".into(),
        };
        let mut gave_up = deps(Err(unreadable));
        gave_up.operations = freed.clone();
        let mut check = event();
        check.payload.step = CheckStep::GiveUp;
        let progress = handle(&gave_up, check).await.expect("the slot is freed");
        assert_eq!(progress, MonitorProgress::SlotFreed);
        assert_eq!(freed.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_change_that_succeeded_is_written_into_the_current_snapshot() {
        use maestro_domain::sso::snapshot::{CurrentSnapshot, InMemorySnapshots};
        let snapshots = Arc::new(InMemorySnapshots::default());
        snapshots
            .make_current(&CurrentSnapshot {
                generation: "run-1".into(),
                read_from: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let mut succeeded = deps(Ok(ProvisioningStatus::Succeeded));
        succeeded.snapshot = Some(snapshots.clone());
        handle(&succeeded, event()).await.unwrap();
        let request = event().payload.request;
        let held = snapshots.read("run-1").await.unwrap().inputs.assignments;
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].account_id, request.account_id);
        assert_eq!(held[0].principal_id, request.principal_id);

        let failed = Arc::new(InMemorySnapshots::default());
        failed
            .make_current(&CurrentSnapshot {
                generation: "run-1".into(),
                read_from: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let mut refused = deps(Ok(ProvisioningStatus::Failed {
            reason: "the account is not a member".into(),
        }));
        refused.snapshot = Some(failed.clone());
        handle(&refused, event()).await.unwrap();
        assert!(
            failed
                .read("run-1")
                .await
                .unwrap()
                .inputs
                .assignments
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_final_status_becomes_a_report() {
        let progress = handle(&deps(Ok(ProvisioningStatus::Succeeded)), event())
            .await
            .unwrap();
        let MonitorProgress::Finished { report } = progress else {
            panic!("expected a report, got {progress:?}");
        };
        assert_eq!(report.status, FinalStatus::Succeeded);
        assert_eq!(report.polls, 1);
    }

    #[tokio::test]
    async fn throttling_is_reported_as_transient_so_the_workflow_retries() {
        let throttled = PortError::Transient {
            service: "sso-admin",
            detail: "ThrottlingException: Rate exceeded".into(),
        };
        let error = handle(&deps(Err(throttled)), event()).await.unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "Transient");
        assert!(diagnostic.error_message.contains("Rate exceeded"));
    }

    #[tokio::test]
    async fn an_unknown_request_is_not_retried() {
        let missing = PortError::NotFound {
            service: "sso-admin",
            what: "assignment request x".into(),
        };
        let error = handle(&deps(Err(missing)), event()).await.unwrap_err();
        assert_eq!(Diagnostic::from(error).error_type, "NotFound");
    }

    #[test]
    fn an_invalid_poll_policy_in_the_environment_is_named() {
        let env = FunctionEnv::from_vars([
            ("POLL_FIRST_WAIT_SECONDS".to_owned(), "10".to_owned()),
            ("POLL_MAX_WAIT_SECONDS".to_owned(), "5".to_owned()),
        ]);
        let config = SdkConfig::builder().build();
        let Err(error) = Deps::from_parts(&config, &env) else {
            panic!("an incomplete environment must be refused");
        };
        let message = error.to_string();
        assert!(message.contains("POLL_MAX_POLLS is not set"), "{message}");
    }
}
