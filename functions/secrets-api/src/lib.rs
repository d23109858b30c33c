//! `SecretsApiFunction`: secrets over the management API.
//!
//! - `GET /secrets/rotation-status`: the secrets the caller's teams own (all of them for the
//!   operators), each with its rotation mode, last rotation, next due date and state.
//! - `POST /secrets/{id}/rotate` with `{"reason": …}`: the incident playbook's "rotate now",
//!   submitted as a `SECRET_ROTATE_NOW` action, so the approval policy decides whether it runs
//!   at once or waits for approvers. The deployment's `SecretOwners` name each secret's team
//!   and environment by its name (`maestro_domain::access::SecretOwners`); a secret they do
//!   not name is the operators' and counts as production. Tags decide nothing: anyone with
//!   `secretsmanager:TagResource` can change them.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::ActionSubmitter;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{
    ApiFailure, Teams, answer, body_text, path_parameter, problem, route, to_json,
};
use maestro_aws::lambda::LambdaFunction;
use maestro_aws::secrets::SecretsManager;
use maestro_domain::access::Caller;
use maestro_domain::approvals::action::Action;
use maestro_domain::approvals::submit::Submission;
use maestro_domain::rotation::schedule::status;
use serde::Deserialize;
use serde_json::json;

pub struct Deps {
    pub secrets: SecretsManager,
    pub actions: ActionSubmitter,
    pub teams: Teams,
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
    let caller = match deps.teams.caller(&request) {
        Ok(caller) => caller,
        Err(refused) => return Ok(*refused),
    };
    match (method.as_str(), request.route_key.as_deref()) {
        ("GET", Some("GET /secrets/rotation-status")) => rotation_status(deps, &caller).await,
        ("POST", Some("POST /secrets/{id}/rotate")) => rotate(deps, &request, &caller).await,
        _ => Ok(problem(404, format!("no route {method} {path}"))),
    }
}

/// The secrets the caller's teams own (every secret for the operators).
async fn rotation_status(
    deps: &Deps,
    caller: &Caller,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let now = Utc::now();
    let secrets = match deps.secrets.list().await {
        Ok(secrets) => secrets,
        Err(e) => return Ok(problem(503, format!("cannot list the secrets: {e}"))),
    };
    let owners = &deps.actions.secret_owners;
    let statuses: Vec<_> = secrets
        .iter()
        .filter(|s| {
            owners
                .owner_of(&s.name)
                .may_act(caller, &deps.teams.operators)
        })
        .map(|s| status(s, now))
        .collect();
    let body = to_json(&statuses)?;
    Ok(answer(200, json!({ "secrets": body })))
}

async fn rotate(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
    caller: &Caller,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
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
    // The same use case as `POST /actions`: the owner's team, the owner's environment.
    let submission = Submission {
        action: Action::SecretRotateNow { secret_id },
        reason: body.reason,
    };
    Ok(match deps.actions.submit(caller, submission).await {
        Ok(submitted) => answer(202, to_json(&submitted)?),
        Err(e) => problem(e.status(), e.to_string()),
    })
}

impl LambdaFunction for Deps {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = ApiFailure;

    /// See `ActionSubmitter::from_parts`; and `TEAMS_CLAIM`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let teams = Teams::from_vars(&mut vars);
        vars.finish()?;
        Ok(Deps {
            secrets: SecretsManager::new(config),
            actions: ActionSubmitter::from_parts(config, env)?,
            teams,
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<ApiGatewayV2httpRequest>,
    ) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
        handle(self, event).await
    }
}
