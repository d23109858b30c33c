//! `SecretRotationAlertsFunction`: Secrets Manager's `RotationFailed` and `RotationAbandoned`
//! events (an EventBridge rule) become alerts on the alerts topic. They cover what the
//! rotation function cannot report itself: it could not be invoked, or it timed out.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::notices::Notices;
use maestro_domain::port::PortError;
use maestro_domain::rotation::alerts::{ROTATION_ALERT, alert_of_event};
use serde_json::{Value, json};

pub struct Deps {
    pub alerts: Notices,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AlertFailure(#[from] PortError);

impl From<AlertFailure> for Diagnostic {
    fn from(failure: AlertFailure) -> Diagnostic {
        ErrorKind::of_port_error(&failure.0).diagnostic(&failure)
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<EventBridgeEvent<Value>>,
) -> Result<Value, AlertFailure> {
    let Some(alert) = alert_of_event(&event.payload.detail) else {
        tracing::warn!(detail_type = %event.payload.detail_type, "not a rotation failure; ignored");
        return Ok(json!({ "alerted": false }));
    };
    deps.alerts.publish(ROTATION_ALERT, &alert).await?;
    tracing::info!(secret = %alert.secret, problem = ?alert.problem, "rotation alert published");
    Ok(json!({ "alerted": true }))
}

impl LambdaFunction for Deps {
    type Event = EventBridgeEvent<Value>;
    type Response = Value;
    type Error = AlertFailure;

    /// Reads `EVENT_BUS_NAME` and `ALERTS_TOPIC_ARN`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let bus = vars.required("EVENT_BUS_NAME");
        let topic = vars.required("ALERTS_TOPIC_ARN");
        vars.finish()?;
        Ok(Deps {
            alerts: Notices::new(config, bus, topic),
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<EventBridgeEvent<Value>>,
    ) -> Result<Value, AlertFailure> {
        handle(self, event).await
    }
}
