//! `SsoReconcileFunction` (flow B): on its schedule, or when invoked with `{"dryRun": …}`,
//! re-plans the whole SSO model against the actual assignments, records the plan, and queues
//! the changes the guardrails allow for `SsoAssignmentWorkerFunction`.

use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::sso::SsoServices;
use maestro_domain::sso::reconcile::{
    Mode, ReconcileError, Run, RunSummary, Scope, Trigger, reconcile,
};
use serde::Deserialize;

pub struct Deps {
    pub sso: SsoServices,
}

/// The scheduled event (its fields are not needed) or a direct request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReconcileRequest {
    /// Plan and record only. A scheduled run applies.
    #[serde(default, rename = "dryRun")]
    pub dry_run: bool,
    #[serde(default, rename = "detail-type")]
    pub detail_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReconcileFailure(#[from] ReconcileError);

impl From<ReconcileFailure> for Diagnostic {
    fn from(failure: ReconcileFailure) -> Diagnostic {
        let kind = if failure.0.is_retryable() {
            ErrorKind::Transient
        } else {
            ErrorKind::Rejected
        };
        kind.diagnostic(&failure)
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ReconcileRequest>,
) -> Result<RunSummary, ReconcileFailure> {
    let request = event.payload;
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
        now: chrono::Utc::now(),
    };
    let record = reconcile(&deps.sso.model, &deps.sso.ports(), run).await?;
    let summary = record.summary();
    tracing::info!(run_id = %summary.run_id, outcome = ?summary.outcome, "reconcile run recorded");
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
    Ok(summary)
}

impl LambdaFunction for Deps {
    type Event = ReconcileRequest;
    type Response = RunSummary;
    type Error = ReconcileFailure;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        Ok(Deps {
            sso: SsoServices::from_parts(config, env)?,
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<ReconcileRequest>,
    ) -> Result<RunSummary, ReconcileFailure> {
        handle(self, event).await
    }
}
