//! Step Functions adapters.

use async_trait::async_trait;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use maestro_domain::port::PortError;
use maestro_domain::sso::provisioning::{MonitorBatch, MonitorLauncher, MonitorStart};

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
