//! Step Functions adapters.

use async_trait::async_trait;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use maestro_domain::approvals::request::{Delivery, TaskToken, WaitingTask};
use maestro_domain::approvals::submit::ApprovalWorkflow;
use maestro_domain::approvals::workflow::{ActionRequest, held_deletes_request};
use maestro_domain::port::PortError;
use maestro_domain::sso::assignment_monitor::{MonitorBatch, MonitorLauncher, MonitorStart};
use maestro_domain::sso::plan::PlannedDelete;
use maestro_domain::sso::reconcile::{HeldDeletesApproval, ReconcileWorkflow};

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "states";

/// Starts the SSO assignment monitor state machine.
pub struct StepFunctionsMonitorLauncher {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl StepFunctionsMonitorLauncher {
    pub fn new(config: &SdkConfig, state_machine_arn: String) -> Self {
        StepFunctionsMonitorLauncher {
            client: aws_sdk_sfn::Client::new(config),
            state_machine_arn,
        }
    }
}

#[async_trait]
impl MonitorLauncher for StepFunctionsMonitorLauncher {
    async fn start_monitor(&self, batch: &MonitorBatch) -> Result<MonitorStart, PortError> {
        let input = serde_json::to_string(batch).map_err(|e| PortError::Rejected {
            service: SERVICE,
            detail: format!("the batch does not serialise: {e}"),
        })?;
        let started = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&batch.name)
            .input(input)
            .send()
            .await;
        match started {
            Ok(output) => Ok(MonitorStart::Started {
                execution_arn: output.execution_arn,
            }),
            Err(SdkError::ServiceError(context))
                if matches!(
                    context.err(),
                    StartExecutionError::ExecutionAlreadyExists(_)
                ) =>
            {
                Ok(MonitorStart::AlreadyStarted)
            }
            Err(error) => Err(port_error(
                SERVICE,
                &format!("state machine {}", self.state_machine_arn),
                error,
            )),
        }
    }
}

/// Starts the approval workflow (`statemachines/approval.asl.json`) for an action; the
/// execution is named after the action, so a retried start cannot run it twice.
#[async_trait]
impl ApprovalWorkflow for ApprovalWorkflowStarter {
    async fn start(&self, request: &ActionRequest) -> Result<(), PortError> {
        self.start_execution(request).await.map(|_| ())
    }
}

pub struct ApprovalWorkflowStarter {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl ApprovalWorkflowStarter {
    pub fn new(config: &SdkConfig, state_machine_arn: String) -> Self {
        ApprovalWorkflowStarter {
            client: aws_sdk_sfn::Client::new(config),
            state_machine_arn,
        }
    }

    /// Starts the execution named after the action, answering its ARN.
    pub async fn start_execution(&self, request: &ActionRequest) -> Result<String, PortError> {
        let input = serde_json::json!({ "request": request }).to_string();
        let started = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&request.id)
            .input(input)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &format!("action {}", request.id), e))?;
        Ok(started.execution_arn)
    }
}

/// The error type Step Functions sees when an approver rejects: the approval state machine
/// catches it by this name.
pub const APPROVAL_REJECTED: &str = "Approval.Rejected";

/// Answers a task that waits for its token (`.waitForTaskToken`).
pub struct TaskCallbacks {
    client: aws_sdk_sfn::Client,
}

fn delivery<E>(
    result: Result<
        E,
        SdkError<impl ProvideErrorMetadata + std::error::Error, impl std::fmt::Debug>,
    >,
) -> Result<Delivery, PortError> {
    match result {
        Ok(_) => Ok(Delivery::Delivered),
        Err(SdkError::ServiceError(context))
            if matches!(
                context.err().code(),
                Some("TaskTimedOut" | "TaskDoesNotExist")
            ) =>
        {
            Ok(Delivery::TooLate)
        }
        // The token is never named: it is a credential.
        Err(error) => Err(port_error(SERVICE, "the waiting task", error)),
    }
}

impl TaskCallbacks {
    pub fn new(config: &SdkConfig) -> Self {
        TaskCallbacks {
            client: aws_sdk_sfn::Client::new(config),
        }
    }

    pub async fn succeed(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<Delivery, PortError> {
        delivery(
            self.client
                .send_task_success()
                .task_token(token.reveal())
                .output(output.to_string())
                .send()
                .await,
        )
    }

    pub async fn fail(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<Delivery, PortError> {
        delivery(
            self.client
                .send_task_failure()
                .task_token(token.reveal())
                .error(error)
                .cause(cause)
                .send()
                .await,
        )
    }
}

#[async_trait]
impl WaitingTask for TaskCallbacks {
    async fn approved(&self, token: &TaskToken, approval_id: &str) -> Result<Delivery, PortError> {
        let output = serde_json::json!({"approvalId": approval_id, "status": "APPROVED"});
        self.succeed(token, &output).await
    }

    async fn rejected(
        &self,
        token: &TaskToken,
        approval_id: &str,
        rejected_by: &str,
        comment: Option<&str>,
    ) -> Result<Delivery, PortError> {
        let cause = serde_json::json!({
            "approvalId": approval_id,
            "rejectedBy": rejected_by,
            "comment": comment,
        });
        self.fail(token, APPROVAL_REJECTED, &cause.to_string())
            .await
    }
}

/// Sends a sync run's held deletes to the approval workflow. The execution is named after
/// the held deletes (see `held_deletes_request`), so a later run holding the same ones finds
/// it started and asks nothing more.
#[async_trait]
impl HeldDeletesApproval for ApprovalWorkflowStarter {
    async fn request(&self, run_id: &str, held: &[PlannedDelete]) -> Result<(), PortError> {
        let Some(request) = held_deletes_request(run_id, held) else {
            return Ok(());
        };
        match self.start_execution(&request).await {
            Ok(_) => {
                tracing::info!(action_id = %request.id, run_id, held = held.len(), "held deletes sent for approval");
                Ok(())
            }
            Err(PortError::Rejected { detail, .. })
                if detail.starts_with("ExecutionAlreadyExists") =>
            {
                tracing::info!(action_id = %request.id, run_id, "these held deletes were sent for approval before");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// Where no approval workflow is wired: held deletes stay held, and saying so is an error.
pub struct NoApprovalWorkflow;

#[async_trait]
impl HeldDeletesApproval for NoApprovalWorkflow {
    async fn request(&self, _: &str, _: &[PlannedDelete]) -> Result<(), PortError> {
        Err(PortError::Rejected {
            service: SERVICE,
            detail:
                "APPROVAL_STATE_MACHINE_ARN is not set: held deletes cannot be sent for approval"
                    .into(),
        })
    }
}

/// Starts a full reconcile run's workflow (`statemachines/sso-reconcile.asl.json`), the
/// execution named after the run.
pub struct ReconcileWorkflowStarter {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl ReconcileWorkflowStarter {
    pub fn new(config: &SdkConfig, state_machine_arn: String) -> Self {
        ReconcileWorkflowStarter {
            client: aws_sdk_sfn::Client::new(config),
            state_machine_arn,
        }
    }
}

#[async_trait]
impl ReconcileWorkflow for ReconcileWorkflowStarter {
    async fn start(&self, run_id: &str) -> Result<(), PortError> {
        self.client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(run_id)
            .input(serde_json::json!({ "runId": run_id }).to_string())
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &format!("run {run_id}"), e))?;
        Ok(())
    }
}

/// Where full runs are not begun (the event handler, the action runner): beginning one is an
/// error that says so.
pub struct NoReconcileWorkflow;

#[async_trait]
impl ReconcileWorkflow for NoReconcileWorkflow {
    async fn start(&self, _: &str) -> Result<(), PortError> {
        Err(PortError::Rejected {
            service: SERVICE,
            detail: "SSO_RECONCILE_STATE_MACHINE_ARN is not set: this function begins no full run"
                .into(),
        })
    }
}
