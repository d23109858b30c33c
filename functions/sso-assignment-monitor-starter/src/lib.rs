//! `SsoAssignmentMonitorStarterFunction`: takes assignment requests from `SsoAssignmentRequestsQueue`
//! and starts one `SsoAssignmentMonitorStateMachine` execution per batch.
//!
//! A record whose body is not an [`AssignmentRequest`] is reported as a batch item failure,
//! so SQS redelivers it until it lands in the queue's DLQ; the good records of the same batch
//! are monitored at once.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::step_functions::StepFunctionsMonitorLauncher;
use maestro_domain::sso::assignment_monitor::{
    AssignmentRequest, MonitorBatch, MonitorLauncher, MonitorStart,
};
use thiserror::Error;

pub struct Deps {
    pub launcher: Arc<dyn MonitorLauncher>,
}

#[derive(Debug, Error)]
pub enum StarterError {
    /// Without a message id no single record can be reported, so the whole batch is retried.
    #[error("record {index} of the batch has no messageId")]
    RecordWithoutId { index: usize },
}

impl From<StarterError> for Diagnostic {
    fn from(error: StarterError) -> Diagnostic {
        ErrorKind::InvalidInput.diagnostic(&error)
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, StarterError> {
    let mut response = SqsBatchResponse::default();
    let mut accepted_ids = Vec::new();
    let mut requests = Vec::new();
    for (index, record) in event.payload.records.iter().enumerate() {
        let message_id = record
            .message_id
            .as_deref()
            .ok_or(StarterError::RecordWithoutId { index })?;
        match parse_request(record.body.as_deref()) {
            Ok(request) => {
                accepted_ids.push(message_id);
                requests.push(request);
            }
            Err(problem) => {
                // The body is not logged: it is untrusted and may be large.
                tracing::warn!(%message_id, %problem, "rejected an assignment request record");
                response.add_failure(message_id);
            }
        }
    }
    if requests.is_empty() {
        return Ok(response);
    }
    let batch = MonitorBatch::new(accepted_ids.iter().copied(), requests);
    match deps.launcher.start_monitor(&batch).await {
        Ok(MonitorStart::Started { execution_arn }) => {
            tracing::info!(execution = %execution_arn, requests = batch.requests.len(), "monitor started")
        }
        Ok(MonitorStart::AlreadyStarted) => {
            tracing::info!(execution_name = %batch.name, "batch was delivered before; its monitor runs already")
        }
        Err(error) => {
            tracing::error!(%error, requests = batch.requests.len(), "cannot start the monitor; the batch will be redelivered");
            for message_id in accepted_ids {
                response.add_failure(message_id);
            }
        }
    }
    Ok(response)
}

fn parse_request(body: Option<&str>) -> Result<AssignmentRequest, String> {
    let body = body.ok_or("the record has no body")?;
    serde_json::from_str(body).map_err(|e| format!("the body is not an assignment request: {e}"))
}

impl LambdaFunction for Deps {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    type Error = StarterError;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let state_machine_arn = vars.required("MONITOR_STATE_MACHINE_ARN");
        vars.finish()?;
        Ok(Deps {
            launcher: Arc::new(StepFunctionsMonitorLauncher::new(config, state_machine_arn)),
        })
    }

    async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, StarterError> {
        handle(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use maestro_domain::port::PortError;
    use std::sync::Mutex;

    /// Records the batches it was asked to start, and answers with `answer`.
    struct RecordingLauncher {
        started: Mutex<Vec<MonitorBatch>>,
        answer: Result<MonitorStart, PortError>,
    }

    #[async_trait]
    impl MonitorLauncher for RecordingLauncher {
        async fn start_monitor(&self, batch: &MonitorBatch) -> Result<MonitorStart, PortError> {
            self.started.lock().unwrap().push(batch.clone());
            self.answer.clone()
        }
    }

    /// Handles the sample event (two good records, one malformed) with a launcher answering
    /// `answer`, and returns the response and the batches the launcher was asked to start.
    async fn handle_sample(
        answer: Result<MonitorStart, PortError>,
    ) -> (SqsBatchResponse, Vec<MonitorBatch>) {
        let launcher = Arc::new(RecordingLauncher {
            started: Mutex::new(Vec::new()),
            answer,
        });
        let deps = Deps {
            launcher: launcher.clone(),
        };
        let sample = include_str!("../../../events/sso-assignment-monitor-starter/sqs-batch.json");
        let event = LambdaEvent::new(
            serde_json::from_str(sample).expect("the sample event parses"),
            lambda_runtime::Context::default(),
        );
        let response = handle(&deps, event).await.expect("the batch is handled");
        let started = launcher.started.lock().unwrap().clone();
        (response, started)
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    const MALFORMED_ID: &str = "c3d6a6a5-0f4c-4d0c-9d7e-000000000003";

    #[tokio::test]
    async fn a_malformed_record_fails_alone_and_the_good_ones_are_monitored() {
        let started = Ok(MonitorStart::Started {
            execution_arn: "arn:aws:states:us-east-1:123456789012:execution:m:x".into(),
        });
        let (response, batches) = handle_sample(started).await;
        assert_eq!(failed_ids(&response), vec![MALFORMED_ID]);
        assert_eq!(batches.len(), 1, "one execution per batch");
        assert_eq!(batches[0].requests.len(), 2);
    }

    #[tokio::test]
    async fn when_the_monitor_cannot_start_every_record_is_redelivered() {
        let throttled = Err(PortError::Transient {
            service: "states",
            detail: "ThrottlingException".into(),
        });
        let (response, _) = handle_sample(throttled).await;
        assert_eq!(response.batch_item_failures.len(), 3);
    }

    #[tokio::test]
    async fn a_redelivered_batch_is_not_an_error() {
        let (response, batches) = handle_sample(Ok(MonitorStart::AlreadyStarted)).await;
        assert_eq!(failed_ids(&response), vec![MALFORMED_ID]);
        assert_eq!(batches.len(), 1);
    }

    #[tokio::test]
    async fn a_record_without_a_message_id_fails_the_whole_batch() {
        let deps = Deps {
            launcher: Arc::new(RecordingLauncher {
                started: Mutex::new(Vec::new()),
                answer: Ok(MonitorStart::AlreadyStarted),
            }),
        };
        let event: SqsEvent =
            serde_json::from_value(serde_json::json!({"Records": [{"body": "{}"}]})).unwrap();
        let error = handle(
            &deps,
            LambdaEvent::new(event, lambda_runtime::Context::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(Diagnostic::from(error).error_type, "InvalidInput");
    }
}
