//! `SecretsApiFunction`: secrets over the management API.
//!
//! - `GET /secrets/rotation-status`: every secret with its rotation mode, last rotation, next
//!   due date and state.
//! - `POST /secrets/{id}/rotate` with `{"reason": …}`: the incident playbook's "rotate now",
//!   submitted as a `SECRET_ROTATE_NOW` action, so the approval policy decides whether it runs
//!   at once or waits for approvers. The secret's `maestro:environment` tag picks the rule;
//!   without it the secret counts as production.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::ActionSubmitter;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{
    ApiFailure, answer, body_text, caller_email, path_parameter, problem, route, to_json,
};
use maestro_aws::lambda::LambdaFunction;
use maestro_aws::secrets::SecretsManager;
use maestro_domain::approvals::action::Action;
use maestro_domain::approvals::workflow::Submission;
use maestro_domain::port::PortError;
use maestro_domain::rotation::protocol::SecretStore;
use maestro_domain::rotation::schedule::status;
use maestro_domain::sso::model::Environment;
use serde::Deserialize;
use serde_json::{Value, json};

/// The tag that places a secret in an SDLC environment, for the approval policy.
pub const ENVIRONMENT_TAG: &str = "maestro:environment";

pub struct Deps {
    pub secrets: SecretsManager,
    pub actions: ActionSubmitter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    reason: String,
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let request = event.payload;
    let (method, path) = route(&request);
    match (method.as_str(), request.route_key.as_deref()) {
        ("GET", Some("GET /secrets/rotation-status")) => rotation_status(deps).await,
        ("POST", Some("POST /secrets/{id}/rotate")) => rotate(deps, &request).await,
        _ => Ok(problem(404, format!("no route {method} {path}"))),
    }
}

async fn rotation_status(deps: &Deps) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let now = Utc::now();
    let secrets = match deps.secrets.list().await {
        Ok(secrets) => secrets,
        Err(e) => return Ok(problem(503, format!("cannot list the secrets: {e}"))),
    };
    let statuses: Vec<_> = secrets.iter().map(|s| status(s, now)).collect();
    let body = to_json(&statuses)?;
    Ok(answer(200, json!({ "secrets": body })))
}

async fn rotate(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let Some(requester) = caller_email(request) else {
        return Ok(problem(
            403,
            "rotations are asked by people: sign in with a token that carries your email address",
        ));
    };
    let Some(secret_id) = path_parameter(request, "id") else {
        return Ok(problem(
            400,
            "name the secret in the path, its / written %2F",
        ));
    };
    let body: RotateBody = match body_text(request).map(|b| serde_json::from_str(&b)) {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Ok(problem(400, format!("the body is not {{\"reason\"}}: {e}"))),
        Err(e) => return Ok(problem(400, e)),
    };
    let described = match deps.secrets.describe(&secret_id).await {
        Ok(described) => described,
        Err(PortError::NotFound { .. }) => {
            return Ok(problem(404, format!("no secret {secret_id}")));
        }
        Err(e) => return Ok(problem(503, format!("cannot read the secret: {e}"))),
    };
    let environment = match described.tags.get(ENVIRONMENT_TAG) {
        None => Environment::Production,
        Some(name) => {
            match serde_json::from_value::<Environment>(Value::String(name.to_uppercase())) {
                Ok(environment) => environment,
                Err(_) => {
                    return Ok(problem(
                        409,
                        format!(
                            "the secret's {ENVIRONMENT_TAG} tag is not an environment: {name:?}"
                        ),
                    ));
                }
            }
        }
    };
    let submission = Submission {
        action: Action::SecretRotateNow {
            secret_id: described.arn,
        },
        environment,
        reason: body.reason,
    };
    Ok(match deps.actions.submit(requester, submission).await {
        Ok(submitted) => answer(202, to_json(&submitted)?),
        Err(e) => problem(e.status(), e.to_string()),
    })
}

impl LambdaFunction for Deps {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = ApiFailure;

    /// See `ActionSubmitter::from_parts`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        Ok(Deps {
            secrets: SecretsManager::new(config),
            actions: ActionSubmitter::from_parts(config, env)?,
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<ApiGatewayV2httpRequest>,
    ) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
        handle(self, event).await
    }
}
