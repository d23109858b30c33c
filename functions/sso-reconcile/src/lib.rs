//! `SsoReconcileFunction` (flow B). On its schedule, or invoked with `{"dryRun": …}`, it
//! begins a full run: takes the one-run lease, records the run as RUNNING and starts
//! `SsoReconcileStateMachine`, which then calls it for each step (`{"step": …}`): READ a piece
//! of the snapshot, PLAN from it, QUEUE as many changes for `SsoAssignmentWorkerFunction` as
//! the queue's backlog leaves room for, or ABORT with the failure. Its `WorkflowEnded` rule
//! sends the same ABORT when an execution ends outside the workflow's own Abort state (timed
//! out, stopped), so that no run stays RUNNING with the lease held.

use chrono::{DateTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::sso::SsoServices;
use maestro_domain::sso::reconcile::{
    Began, FEED_WAIT_SECONDS, Mode, ReconcileError, Run, RunSummary, Scope, Trigger, abort_step,
    begin_full_run, plan_step, queue_step, read_step,
};
use maestro_domain::sso::snapshot::ReadCursor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most changes one QUEUE step sends (the backlog's room bounds it first).
pub const CHANGES_PER_STEP: usize = 2_000;

pub struct Deps {
    pub sso: SsoServices,
}

/// The scheduled event (only its `detail-type` is read) or a direct request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReconcileRequest {
    /// Plan and record only. A scheduled run applies.
    #[serde(default, rename = "dryRun")]
    pub dry_run: bool,
    #[serde(default, rename = "detail-type")]
    pub detail_type: Option<String>,
}

/// A step of a full run, as `statemachines/sso-reconcile.asl.json` sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "step", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum Step {
    #[serde(rename_all = "camelCase")]
    Read { run_id: String, cursor: ReadCursor },
    #[serde(rename_all = "camelCase")]
    Plan { run_id: String },
    #[serde(rename_all = "camelCase")]
    Queue { run_id: String },
    /// The state machine caught a failure (`Error` and `Cause`, as Step Functions gives
    /// them).
    #[serde(rename_all = "camelCase")]
    Abort { run_id: String, failure: Value },
}

/// What each invocation answers; the state machine's Choice states read `done`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "answer", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Answer {
    /// A full run began; its workflow runs it.
    Began(RunSummary),
    /// Another full run holds the lease; nothing was begun.
    #[serde(rename_all = "camelCase")]
    AlreadyRunning {
        run_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Read {
        run_id: String,
        cursor: ReadCursor,
        done: bool,
    },
    /// The plan is recorded; `done` is false while changes wait to be queued.
    #[serde(rename_all = "camelCase")]
    Planned {
        run_id: String,
        done: bool,
        summary: RunSummary,
    },
    #[serde(rename_all = "camelCase")]
    Queued {
        run_id: String,
        done: bool,
        /// How long the workflow waits before it feeds the queue again.
        wait_seconds: u32,
        summary: RunSummary,
    },
    Aborted(RunSummary),
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileFailure {
    #[error(transparent)]
    Run(#[from] ReconcileError),
    #[error("the step is not one of READ, PLAN, QUEUE, ABORT with its fields: {0}")]
    BadStep(serde_json::Error),
    #[error("the request is not {{\"dryRun\": bool}} or a scheduled event: {0}")]
    BadRequest(serde_json::Error),
}

impl From<ReconcileFailure> for Diagnostic {
    fn from(failure: ReconcileFailure) -> Diagnostic {
        let kind = match &failure {
            ReconcileFailure::Run(e) if e.is_retryable() => ErrorKind::Transient,
            ReconcileFailure::Run(_) => ErrorKind::Rejected,
            ReconcileFailure::BadStep(_) | ReconcileFailure::BadRequest(_) => {
                ErrorKind::InvalidInput
            }
        };
        kind.diagnostic(&failure)
    }
}

/// A read piece may use a third of the time the invocation has left: half its timeout is
/// the most any piece of work may take.
fn piece_until(now: DateTime<Utc>, deadline_ms: u64) -> DateTime<Utc> {
    let deadline = i64::try_from(deadline_ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(now);
    now + (deadline - now).max(chrono::Duration::zero()) / 3
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Answer, ReconcileFailure> {
    let ports = deps.sso.ports();
    let now = Utc::now();
    if event.payload.get("step").is_none() {
        let request: ReconcileRequest =
            serde_json::from_value(event.payload).map_err(ReconcileFailure::BadRequest)?;
        let trigger = match request.detail_type.as_deref() {
            Some("Scheduled Event") => Trigger::Schedule,
            _ => Trigger::Cli,
        };
        let mode = if request.dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        };
        let run = Run {
            run_id: event.context.request_id,
            trigger,
            scope: Scope::Everything,
            mode,
            now,
        };
        return Ok(match begin_full_run(&ports, run).await? {
            Began::Started(record) => {
                tracing::info!(run_id = %record.run_id, "full run began");
                Answer::Began(record.summary())
            }
            Began::AlreadyRunning { run_id } => {
                tracing::info!(%run_id, "a full run is under way; none began");
                Answer::AlreadyRunning { run_id }
            }
        });
    }
    let step: Step = serde_json::from_value(event.payload).map_err(ReconcileFailure::BadStep)?;
    Ok(match step {
        Step::Read { run_id, cursor } => {
            let until = piece_until(now, event.context.deadline);
            let cursor = read_step(&ports, &run_id, cursor, until).await?;
            Answer::Read {
                done: cursor == ReadCursor::Done,
                run_id,
                cursor,
            }
        }
        Step::Plan { run_id } => {
            let record = plan_step(&deps.sso.model, &ports, &run_id).await?;
            let summary = record.summary();
            metrics(&summary);
            Answer::Planned {
                run_id,
                done: record.outcome.is_final(),
                summary,
            }
        }
        Step::Queue { run_id } => {
            let record = queue_step(&ports, &run_id, CHANGES_PER_STEP).await?;
            Answer::Queued {
                run_id,
                done: record.outcome.is_final(),
                wait_seconds: FEED_WAIT_SECONDS,
                summary: record.summary(),
            }
        }
        Step::Abort { run_id, failure } => {
            let error = failure["Error"].as_str().unwrap_or("an unknown error");
            let cause = failure["Cause"].as_str().unwrap_or_default();
            let reason = if cause.is_empty() {
                format!("the run's workflow failed: {error}")
            } else {
                format!("the run's workflow failed: {error}: {cause}")
            };
            let record = abort_step(&ports, &run_id, reason).await?;
            tracing::warn!(%run_id, "full run aborted");
            Answer::Aborted(record.summary())
        }
    })
}

fn metrics(summary: &RunSummary) {
    tracing::info!(run_id = %summary.run_id, outcome = ?summary.outcome, "reconcile run planned");
    let mode = match summary.mode {
        Mode::DryRun => "dry-run",
        Mode::Apply => "apply",
    };
    maestro_aws::metrics::count(
        &[("Mode", mode)],
        &[
            ("PlannedCreates", summary.to_create as u64),
            ("PlannedDeletes", summary.to_delete as u64),
            ("HeldDeletes", summary.held as u64),
        ],
    );
}

impl LambdaFunction for Deps {
    type Event = Value;
    type Response = Answer;
    type Error = ReconcileFailure;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        Ok(Deps {
            sso: SsoServices::from_parts(config, env)?,
        })
    }

    async fn handle(&self, event: LambdaEvent<Value>) -> Result<Answer, ReconcileFailure> {
        handle(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_takes_a_third_of_the_time_left() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let deadline_ms = (1_000 + 900) * 1_000;
        assert_eq!(
            piece_until(now, deadline_ms),
            now + chrono::Duration::seconds(300)
        );
        assert_eq!(piece_until(now, 0), now, "a passed deadline leaves no time");
    }

    #[test]
    fn every_sample_event_is_a_step_or_a_request() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/sso-reconcile");
        let mut steps = 0;
        for entry in std::fs::read_dir(dir).expect("the sample folder") {
            let path = entry.expect("an entry").path();
            let sample: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("a sample"))
                    .expect("JSON");
            if sample.get("step").is_some() {
                serde_json::from_value::<Step>(sample)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                steps += 1;
            } else {
                serde_json::from_value::<ReconcileRequest>(sample)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
        // One per step, and the ABORT the WorkflowEnded rule sends for an execution that ended.
        assert_eq!(steps, 5, "one sample per step and per rule");
    }

    #[test]
    fn steps_parse_strictly() {
        let read: Step = serde_json::from_value(serde_json::json!({
            "step": "READ", "runId": "r-1", "cursor": {"phase": "ACCOUNT_TAGS", "after": "111111111111"}
        }))
        .unwrap();
        assert!(matches!(
            read,
            Step::Read {
                cursor: ReadCursor::AccountTags { after: Some(_) },
                ..
            }
        ));
        let typo = serde_json::from_value::<Step>(serde_json::json!({
            "step": "PLAN", "runID": "r-1"
        }));
        assert!(typo.is_err());
    }
}
