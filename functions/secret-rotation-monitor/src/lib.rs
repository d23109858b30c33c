//! `SecretRotationMonitorFunction`: on its schedule, reads every secret and alerts on those a
//! person must rotate soon (within their warning period) or has let pass their deadline, and
//! on automatic rotations that slipped. One alert per secret, state and day, however often the
//! schedule runs. The time is the scheduled event's, so a run can be replayed for any day.

use chrono::{DateTime, Duration, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::idempotency::DynamoIdempotency;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::notices::Notices;
use maestro_aws::secrets::SecretsManager;
use maestro_domain::idempotency::{Claim, IdempotencyStore, PROCESSING};
use maestro_domain::port::PortError;
use maestro_domain::rotation::alerts::{ROTATION_ALERT, RotationAlert, RotationProblem};
use maestro_domain::rotation::schedule::{RotationStatus, State, status};
use serde::Deserialize;
use serde_json::{Value, json};

pub struct Deps {
    pub secrets: SecretsManager,
    pub once_a_day: DynamoIdempotency,
    pub alerts: Notices,
}

/// The scheduled event; only its time is read.
#[derive(Debug, Clone, Deserialize)]
pub struct Tick {
    pub time: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MonitorFailure(#[from] PortError);

impl From<MonitorFailure> for Diagnostic {
    fn from(failure: MonitorFailure) -> Diagnostic {
        ErrorKind::of_port_error(&failure.0).diagnostic(&failure)
    }
}

fn alert_of(status: &RotationStatus) -> Option<RotationAlert> {
    let (problem, reason) = match &status.state {
        State::DueSoon => (
            RotationProblem::ManualRotationDueSoon,
            format!("rotate it by hand before {}", due(status)),
        ),
        State::Overdue => (
            RotationProblem::RotationOverdue,
            format!("it was due on {}", due(status)),
        ),
        State::Misconfigured { problem } => {
            (RotationProblem::RotationPolicyInvalid, problem.clone())
        }
        State::Current | State::Unwatched => return None,
    };
    Some(RotationAlert {
        secret: status.arn.clone(),
        problem,
        step: None,
        reason,
    })
}

fn due(status: &RotationStatus) -> String {
    status.next_due.map_or_else(
        || "an unknown date".to_owned(),
        |d| d.format("%Y-%m-%d").to_string(),
    )
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Tick>) -> Result<Value, MonitorFailure> {
    let now = event.payload.time.unwrap_or_else(Utc::now);
    let secrets = deps.secrets.list().await?;
    let mut alerted = 0;
    for secret in &secrets {
        let status = status(secret, now);
        let Some(alert) = alert_of(&status) else {
            continue;
        };
        let key = status.alert_key(now);
        // Alerted today already, or being alerted by a run that overlaps this one.
        if deps.once_a_day.claim(&key, now, now + PROCESSING).await? != Claim::First {
            continue;
        }
        if let Err(e) = deps.alerts.publish(ROTATION_ALERT, &alert).await {
            deps.once_a_day.release(&key).await?;
            return Err(e.into());
        }
        deps.once_a_day
            .complete(&key, now + Duration::days(2))
            .await?;
        alerted += 1;
    }
    tracing::info!(
        secrets = secrets.len(),
        alerted,
        "rotation deadlines checked"
    );
    Ok(json!({ "secrets": secrets.len(), "alerted": alerted }))
}

impl LambdaFunction for Deps {
    type Event = Tick;
    type Response = Value;
    type Error = MonitorFailure;

    /// Reads `IDEMPOTENCY_TABLE`, `EVENT_BUS_NAME` and `ALERTS_TOPIC_ARN`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("IDEMPOTENCY_TABLE");
        let bus = vars.required("EVENT_BUS_NAME");
        let topic = vars.required("ALERTS_TOPIC_ARN");
        vars.finish()?;
        Ok(Deps {
            secrets: SecretsManager::new(config),
            once_a_day: DynamoIdempotency::new(config, table),
            alerts: Notices::new(config, bus, topic),
        })
    }

    async fn handle(&self, event: LambdaEvent<Tick>) -> Result<Value, MonitorFailure> {
        handle(self, event).await
    }
}
