//! `SecretRotationFunction`: the rotation function Secrets Manager calls once per step
//! (createSecret, setSecret, testSecret, finishSecret) for every secret that names it. The
//! secret names its strategy (see `maestro_domain::rotation::credentials`); each strategy's
//! target is one module here. After finishSecret, a "Secret Rotated" notice tells consumers
//! to re-read the secret.

pub mod postgres;
pub mod rabbitmq;

use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::notices::Notices;
use maestro_aws::secrets::SecretsManager;
use maestro_domain::rotation::alerts::{ROTATION_ALERT, RotationAlert, RotationProblem};
use maestro_domain::rotation::credentials::Strategy;
use maestro_domain::rotation::protocol::{
    RotationError, RotationEvent, SecretStore, Step, StepOutcome, Target, Targets, rotate,
};
use serde::Serialize;
use serde_json::{Value, json};

pub use postgres::Postgres;
pub use rabbitmq::RabbitMq;

/// The `detail-type` of the notice that follows a rotation.
pub const SECRET_ROTATED: &str = "Secret Rotated";

pub struct Deps {
    pub store: SecretsManager,
    pub targets: RotationTargets,
    pub notices: Notices,
    /// Step failures, with the step and the reason, for the alerts topic.
    pub alerts: Notices,
}

/// Every strategy's target.
pub struct RotationTargets {
    pub postgres: Postgres,
    pub rabbitmq: RabbitMq,
}

impl Targets for RotationTargets {
    fn target(&self, strategy: Strategy) -> Option<&dyn Target> {
        match strategy {
            Strategy::PostgresqlSingleUser | Strategy::PostgresqlAlternatingUsers => {
                Some(&self.postgres)
            }
            Strategy::RabbitmqUser => Some(&self.rabbitmq),
            Strategy::RandomValue => None,
        }
    }
}

/// What consumers receive: which secret, and its new current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotated {
    pub secret_arn: String,
    pub version_id: String,
}

/// A failed step, with the step in its message so the alert says where it broke.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {error}")]
pub struct StepFailure {
    step: &'static str,
    error: RotationError,
}

impl From<StepFailure> for Diagnostic {
    fn from(failure: StepFailure) -> Diagnostic {
        let kind = if failure.error.is_retryable() {
            ErrorKind::Transient
        } else {
            ErrorKind::Rejected
        };
        kind.diagnostic(&failure)
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<RotationEvent>) -> Result<Value, StepFailure> {
    let event = event.payload;
    let step = event.step.as_str();
    let failed = |error| StepFailure { step, error };
    let outcome = match rotate(&deps.store, &deps.targets, &event).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::error!(secret = %event.secret_id, step, error = %error, "rotation step failed");
            maestro_aws::metrics::count(&[("Step", step)], &[("RotationsFailed", 1)]);
            let alert = RotationAlert {
                secret: event.secret_id.clone(),
                problem: RotationProblem::StepFailed,
                step: Some(step.to_owned()),
                reason: error.to_string(),
            };
            // The step's own error is what Secrets Manager must see, whatever the alert's fate.
            if let Err(e) = deps.alerts.publish(ROTATION_ALERT, &alert).await {
                tracing::error!(secret = %event.secret_id, error = %e, "cannot publish the rotation alert");
            }
            return Err(failed(error));
        }
    };
    tracing::info!(secret = %event.secret_id, step, outcome = ?outcome, "rotation step");
    if event.step == Step::Finish && outcome == StepOutcome::Done {
        maestro_aws::metrics::count(&[], &[("RotationsSucceeded", 1)]);
        let arn = deps
            .store
            .describe(&event.secret_id)
            .await
            .map_err(|e| failed(e.into()))?
            .arn;
        let notice = SecretRotated {
            secret_arn: arn,
            version_id: event.token.clone(),
        };
        deps.notices
            .publish(SECRET_ROTATED, &notice)
            .await
            .map_err(|e| failed(e.into()))?;
    }
    Ok(json!({ "step": step, "outcome": outcome }))
}

impl LambdaFunction for Deps {
    type Event = RotationEvent;
    type Response = Value;
    type Error = StepFailure;

    /// Reads `EVENT_BUS_NAME`, `SECRET_ROTATED_TOPIC_ARN` and `ALERTS_TOPIC_ARN`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let bus = vars.required("EVENT_BUS_NAME");
        let topic = vars.required("SECRET_ROTATED_TOPIC_ARN");
        let alerts = vars.required("ALERTS_TOPIC_ARN");
        vars.finish()?;
        Ok(Deps {
            store: SecretsManager::new(config),
            targets: RotationTargets {
                postgres: Postgres,
                rabbitmq: RabbitMq::new().map_err(|e| EnvError { problems: vec![e] })?,
            },
            notices: Notices::new(config, bus.clone(), topic),
            alerts: Notices::new(config, bus, alerts),
        })
    }

    async fn handle(&self, event: LambdaEvent<RotationEvent>) -> Result<Value, StepFailure> {
        handle(self, event).await
    }
}
