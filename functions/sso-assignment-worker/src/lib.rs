//! `SsoAssignmentWorkerFunction`: takes planned changes from `SsoChangesQueue`, asks IAM
//! Identity Center for each, and hands each accepted request to the assignment monitor
//! (`SsoAssignmentRequestsQueue`). A change that finds all 15 operation slots taken goes back
//! on the changes queue as a new, delayed message: a backlog of any size waits its turn
//! without spending the receives that lead to the DLQ. A change that fails is reported as a
//! batch item failure: SQS retries it, and after the queue's `maxReceiveCount` it lands in
//! the DLQ, whose alarm reports it; nothing is retried forever.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::identity_center::IdentityCenter;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::plan_store::DynamoPlanStore;
use maestro_aws::queues::JsonQueue;
use maestro_aws::quota::DynamoQuota;
use maestro_domain::quota::OutstandingOperations;
use maestro_domain::sso::apply::{
    Applied, Applier, ApplyError, AssignmentWriter, ChangeDeferral, MonitorQueue, WhenBusy,
    apply_change, when_busy,
};
use maestro_domain::sso::assignment_monitor::InstanceArn;
use maestro_domain::sso::reconcile::{AssignmentChange, LatestPlans};

pub struct Deps {
    pub writer: Arc<dyn AssignmentWriter>,
    pub monitor: Arc<dyn MonitorQueue>,
    pub operations: Arc<dyn OutstandingOperations>,
    /// When each scope was last planned: a change a newer plan superseded is dropped.
    pub latest_plans: Arc<dyn LatestPlans>,
    /// Puts changes that found every slot taken back on the changes queue.
    pub deferral: Arc<dyn ChangeDeferral>,
    /// The first wait before a change that failed for a passing reason is tried again.
    pub backoff: Duration,
}

/// Tries a change up to three times in this invocation when IAM Identity Center refuses it
/// for a passing reason (ConflictException while another operation runs, throttling), waiting
/// a random part of a doubling delay between tries; after that, SQS redelivers it.
async fn apply_with_backoff(
    applier: &Applier<'_>,
    change: &AssignmentChange,
    first_wait: Duration,
) -> Result<Applied, ApplyError> {
    const TRIES: u32 = 3;
    let mut wait = first_wait;
    for _ in 1..TRIES {
        match apply_change(applier, change, chrono::Utc::now()).await {
            Err(error @ ApplyError::Change { .. }) if error.is_retryable() => {
                tracing::info!(run_id = %change.run_id, %error, "retrying after a pause");
                tokio::time::sleep(jittered(wait)).await;
                wait *= 2;
            }
            outcome => return outcome,
        }
    }
    apply_change(applier, change, chrono::Utc::now()).await
}

/// "Full jitter": a random duration up to `ceiling`, so that workers that failed together do
/// not retry together.
fn jittered(ceiling: Duration) -> Duration {
    let nanos = u128::from(chrono::Utc::now().timestamp_subsec_nanos());
    let fraction = (nanos % 1000) as f64 / 1000.0;
    ceiling.mul_f64(fraction)
}

/// The time left under which no further change is started: a change takes a second or so,
/// and one that waits the longest for a rate slot (10 s) still finishes.
const TIME_FOR_A_CHANGE: chrono::Duration = chrono::Duration::seconds(12);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("record {index} of the batch has no messageId")]
    RecordWithoutId { index: usize },
}

impl From<WorkerError> for Diagnostic {
    fn from(error: WorkerError) -> Diagnostic {
        ErrorKind::InvalidInput.diagnostic(&error)
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, WorkerError> {
    let mut response = SqsBatchResponse::default();
    // Lambda always sets the deadline; a context without one (0) has none to keep.
    let deadline = i64::try_from(event.context.deadline)
        .ok()
        .filter(|ms| *ms > 0)
        .and_then(chrono::DateTime::from_timestamp_millis);
    for (index, record) in event.payload.records.iter().enumerate() {
        let message_id = record
            .message_id
            .as_deref()
            .ok_or(WorkerError::RecordWithoutId { index })?;
        let change: AssignmentChange =
            match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
                Ok(change) => change,
                Err(problem) => {
                    tracing::warn!(%message_id, %problem, "rejected a change record");
                    response.add_failure(message_id);
                    continue;
                }
            };
        // A change can take its tries and their waits for rate slots: one that might not
        // finish before the invocation times out goes back on the queue untouched, rather
        // than the whole batch being redelivered with some of it done (and without spending
        // one of its receives).
        if deadline.is_some_and(|d| d - chrono::Utc::now() < TIME_FOR_A_CHANGE) {
            match deps.deferral.defer(&change, 0).await {
                Ok(()) => {
                    tracing::info!(%message_id, "too little time left in this invocation; the change goes back on the queue")
                }
                Err(error) => {
                    tracing::warn!(%message_id, %error, "cannot put the change back; SQS will redeliver it");
                    response.add_failure(message_id);
                }
            }
            continue;
        }
        let applier = Applier {
            writer: deps.writer.as_ref(),
            monitor: deps.monitor.as_ref(),
            operations: deps.operations.as_ref(),
            latest_plans: deps.latest_plans.as_ref(),
        };
        match apply_with_backoff(&applier, &change, deps.backoff).await {
            Ok(Applied::Requested(request)) => tracing::info!(
                %message_id,
                run_id = %change.run_id,
                request_id = %request.request_id,
                operation = ?change.operation,
                "change accepted and handed to the monitor"
            ),
            Ok(Applied::Superseded { planned_at, latest }) => tracing::info!(
                %message_id,
                run_id = %change.run_id,
                operation = ?change.operation,
                %planned_at,
                %latest,
                "a newer plan of the assignment was made while the change waited; dropped"
            ),
            Err(ApplyError::Busy(outstanding)) => match when_busy(&change) {
                WhenBusy::Wait {
                    change: later,
                    delay_seconds,
                } => match deps.deferral.defer(&later, delay_seconds).await {
                    Ok(()) => tracing::info!(
                        %message_id,
                        run_id = %change.run_id,
                        outstanding,
                        deferrals = later.deferrals,
                        delay_seconds,
                        "every operation slot is taken; the change waits on the queue"
                    ),
                    Err(error) => {
                        tracing::warn!(%message_id, run_id = %change.run_id, %error, "cannot put the change back to wait; SQS will redeliver it");
                        response.add_failure(message_id);
                    }
                },
                WhenBusy::GiveUp { deferrals } => {
                    tracing::error!(%message_id, run_id = %change.run_id, deferrals, "the operation slots stayed taken; the change will end in the DLQ");
                    response.add_failure(message_id);
                }
            },
            Err(error) => {
                if error.is_retryable() {
                    tracing::warn!(%message_id, run_id = %change.run_id, %error, "change will be retried");
                } else {
                    tracing::error!(%message_id, run_id = %change.run_id, %error, "change refused; it will end in the DLQ");
                }
                response.add_failure(message_id);
            }
        }
    }
    Ok(response)
}

impl LambdaFunction for Deps {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    type Error = WorkerError;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let instance_arn = InstanceArn::try_from(vars.required("SSO_INSTANCE_ARN"))
            .map_err(|e| vars.problem(format!("SSO_INSTANCE_ARN: {e}")))
            .ok();
        let identity_store_id = vars.required("IDENTITY_STORE_ID");
        let monitor_queue_url = vars.required("MONITOR_QUEUE_URL");
        let changes_queue_url = vars.required("CHANGES_QUEUE_URL");
        let quota_table = vars.required("QUOTA_TABLE");
        let plans_table = vars.required("SSO_PLANS_TABLE");
        vars.finish()?;
        let instance_arn = instance_arn.ok_or_else(|| EnvError {
            problems: vec!["SSO_INSTANCE_ARN is unusable".into()],
        })?;
        let quota = Arc::new(DynamoQuota::for_sso_admin(config, quota_table));
        Ok(Deps {
            writer: Arc::new(
                IdentityCenter::new(config, instance_arn, identity_store_id)
                    .with_call_rate(quota.clone()),
            ),
            monitor: Arc::new(JsonQueue::new(config, monitor_queue_url)),
            operations: quota,
            latest_plans: Arc::new(DynamoPlanStore::new(config, plans_table)),
            deferral: Arc::new(JsonQueue::new(config, changes_queue_url)),
            backoff: Duration::from_millis(250),
        })
    }

    async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, WorkerError> {
        handle(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use maestro_domain::port::PortError;
    use maestro_domain::sso::assignment_monitor::{
        AssignmentOperation, AssignmentRequest, RequestId,
    };
    use maestro_domain::sso::plan::Assignment;
    use maestro_domain::sso::reconcile::InMemoryLatestPlans;

    use super::*;

    /// IAM Identity Center that accepts everything, or refuses with `refusal`; counts calls.
    struct FakeIdentityCenter {
        refusal: Option<PortError>,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl AssignmentWriter for FakeIdentityCenter {
        async fn change(
            &self,
            operation: AssignmentOperation,
            assignment: &Assignment,
        ) -> Result<AssignmentRequest, PortError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(refusal) = &self.refusal {
                return Err(refusal.clone());
            }
            Ok(AssignmentRequest {
                request_id: RequestId::try_from("5e2d3c4b-0000-4000-8000-000000000001").unwrap(),
                operation,
                instance_arn: InstanceArn::try_from(
                    "arn:aws:sso:::instance/ssoins-1234567890abcdef",
                )
                .unwrap(),
                account_id: assignment.account_id.clone(),
                permission_set_arn: assignment.permission_set_arn.clone(),
                principal_id: assignment.principal_id.clone(),
                principal_type: assignment.principal_type,
                run_id: None,
            })
        }
    }

    #[derive(Default)]
    struct RecordingMonitor(Mutex<Vec<AssignmentRequest>>);

    #[async_trait]
    impl MonitorQueue for RecordingMonitor {
        async fn monitor(&self, request: &AssignmentRequest) -> Result<(), PortError> {
            self.0.lock().unwrap().push(request.clone());
            Ok(())
        }
    }

    /// Slots in memory, `capacity` of them, each with its holder.
    struct Slots {
        capacity: usize,
        held: Mutex<Vec<(String, String)>>,
    }

    #[async_trait]
    impl OutstandingOperations for Slots {
        async fn reserve(
            &self,
            key: &str,
            holder: &str,
            _: chrono::DateTime<chrono::Utc>,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<bool, PortError> {
            let mut held = self.held.lock().unwrap();
            if let Some((_, by)) = held.iter().find(|(k, _)| k == key) {
                return Ok(by == holder);
            }
            if held.len() >= self.capacity {
                return Ok(false);
            }
            held.push((key.to_owned(), holder.to_owned()));
            Ok(true)
        }
        async fn release(&self, key: &str) -> Result<(), PortError> {
            self.held.lock().unwrap().retain(|(k, _)| k != key);
            Ok(())
        }
    }

    /// The changes queue, as far as deferrals go.
    #[derive(Default)]
    struct RecordingDeferral(Mutex<Vec<(AssignmentChange, u32)>>);

    #[async_trait]
    impl ChangeDeferral for RecordingDeferral {
        async fn defer(&self, change: &AssignmentChange, delay: u32) -> Result<(), PortError> {
            self.0.lock().unwrap().push((change.clone(), delay));
            Ok(())
        }
    }

    /// What handling the sample batch did.
    struct Outcome {
        response: SqsBatchResponse,
        monitored: Vec<AssignmentRequest>,
        deferred: Vec<(AssignmentChange, u32)>,
        held_slots: usize,
        calls: usize,
    }

    /// Handles the sample (two good changes of different assignments, one malformed record)
    /// with IAM Identity Center refusing with `refusal`, and `capacity` operation slots.
    async fn handle_sample(refusal: Option<PortError>, capacity: usize) -> Outcome {
        let monitor = Arc::new(RecordingMonitor::default());
        let writer = Arc::new(FakeIdentityCenter {
            refusal,
            calls: Default::default(),
        });
        let slots = Arc::new(Slots {
            capacity,
            held: Mutex::new(Vec::new()),
        });
        let deferral = Arc::new(RecordingDeferral::default());
        let deps = Deps {
            writer: writer.clone(),
            monitor: monitor.clone(),
            operations: slots.clone(),
            latest_plans: Arc::new(InMemoryLatestPlans::default()),
            deferral: deferral.clone(),
            backoff: Duration::ZERO,
        };
        let mut event: SqsEvent = serde_json::from_str(include_str!(
            "../../../events/sso-assignment-worker/sqs-changes.json"
        ))
        .expect("the sample event parses");
        let second = event.records[1]
            .body
            .as_deref()
            .unwrap()
            .replace("111122223333", "444455556666");
        event.records[1].body = Some(second);
        let mut malformed = event.records[0].clone();
        malformed.message_id = Some("malformed".into());
        malformed.body = Some("{\"operation\": \"CREATE\"}".into());
        event.records.push(malformed);
        let response = handle(
            &deps,
            LambdaEvent::new(event, lambda_runtime::Context::default()),
        )
        .await
        .expect("the batch is handled");
        let monitored = monitor.0.lock().unwrap().clone();
        let held_slots = slots.held.lock().unwrap().len();
        let deferred = deferral.0.lock().unwrap().clone();
        Outcome {
            response,
            monitored,
            deferred,
            held_slots,
            calls: writer.calls.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    fn failed(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn changes_with_too_little_time_left_go_back_on_the_queue_untouched() {
        let monitor = Arc::new(RecordingMonitor::default());
        let writer = Arc::new(FakeIdentityCenter {
            refusal: None,
            calls: Default::default(),
        });
        let deferral = Arc::new(RecordingDeferral::default());
        let deps = Deps {
            writer: writer.clone(),
            monitor: monitor.clone(),
            operations: Arc::new(Slots {
                capacity: 15,
                held: Mutex::new(Vec::new()),
            }),
            latest_plans: Arc::new(InMemoryLatestPlans::default()),
            deferral: deferral.clone(),
            backoff: Duration::ZERO,
        };
        let event: SqsEvent = serde_json::from_str(include_str!(
            "../../../events/sso-assignment-worker/sqs-changes.json"
        ))
        .expect("the sample event parses");
        let records = event.records.len();
        let mut context = lambda_runtime::Context::default();
        context.deadline =
            u64::try_from((chrono::Utc::now() + chrono::Duration::seconds(5)).timestamp_millis())
                .unwrap();
        let response = handle(&deps, LambdaEvent::new(event, context))
            .await
            .expect("the batch is handled");
        assert!(
            response.batch_item_failures.is_empty(),
            "no receive is spent"
        );
        let deferred = deferral.0.lock().unwrap().clone();
        assert_eq!(deferred.len(), records);
        assert!(
            deferred
                .iter()
                .all(|(change, delay)| change.deferrals == 0 && *delay == 0),
            "untouched, and at once"
        );
        assert_eq!(
            writer.calls.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing was asked of IAM Identity Center"
        );
        assert!(monitor.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn accepted_changes_go_to_the_monitor_and_a_malformed_one_fails_alone() {
        let outcome = handle_sample(None, 15).await;
        assert_eq!(failed(&outcome.response), vec!["malformed"]);
        assert_eq!(outcome.monitored.len(), 2);
        assert!(
            outcome
                .monitored
                .iter()
                .all(|r| r.run_id.as_ref().map(|id| id.as_str())
                    == Some("8d6b2c1e-0c55-4c6e-9f0e-3a1f5b7d9e21")),
            "each request carries the run that asked for it"
        );
    }

    #[tokio::test]
    async fn a_refused_change_is_tried_again_then_redelivered_and_not_monitored() {
        let conflict = PortError::Transient {
            service: "sso-admin",
            detail: "ConflictException: an operation is in progress".into(),
        };
        let outcome = handle_sample(Some(conflict), 15).await;
        assert_eq!(outcome.response.batch_item_failures.len(), 3);
        assert!(outcome.monitored.is_empty());
        assert_eq!(outcome.held_slots, 0, "a refused change holds no slot");
        assert_eq!(outcome.calls, 6, "each change is tried three times");
    }

    #[tokio::test]
    async fn with_every_slot_taken_a_change_waits_on_the_queue_and_spends_no_receive() {
        // Issue 14, finding 3: it was a batch item failure, one of five receives towards the
        // DLQ, and large change sets ended there.
        let outcome = handle_sample(None, 1).await;
        assert_eq!(outcome.monitored.len(), 1, "one slot, one change");
        assert_eq!(
            outcome.held_slots, 1,
            "the accepted change holds its slot until the monitor frees it"
        );
        assert_eq!(
            failed(&outcome.response),
            vec!["malformed"],
            "the waiting change is no failure"
        );
        assert_eq!(outcome.deferred.len(), 1);
        let (waiting, delay) = &outcome.deferred[0];
        assert_eq!(waiting.deferrals, 1);
        assert!(*delay >= 60, "{delay}");
        assert!(
            outcome
                .monitored
                .iter()
                .all(|r| r.account_id != waiting.assignment.account_id),
            "the change that waits is the one that was not applied"
        );
    }
}
