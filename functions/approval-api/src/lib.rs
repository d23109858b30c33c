//! `ApprovalApiFunction`: actions and approvals over the management API.
//!
//! - `POST /actions`: `{"action": {"type": …, "parameters": …}, "environment": …, "reason": …}`
//!   submits an action through the approval workflow. The answer says whether it runs at
//!   once or awaits approval, and gives its id.
//! - `GET /actions/{id}`: the action's status, outcome and decisions.
//! - `GET /approvals?status=pending|approved|rejected|timed_out`: approvals, newest first.
//! - `GET /approvals/{id}`: one approval with every decision.
//!
//! No answer carries a task token: the store never reads it back except to settle.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::ActionSubmitter;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{ApiFailure, answer, body_text, caller_email, problem, route, to_json};
use maestro_aws::lambda::LambdaFunction;
use maestro_domain::approvals::request::{ApprovalStore, Status};
use maestro_domain::approvals::workflow::Submission;
use serde_json::json;

pub struct Deps {
    pub actions: ActionSubmitter,
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let request = event.payload;
    let (method, path) = route(&request);
    let id = request.path_parameters.get("id").cloned();
    match (method.as_str(), request.route_key.as_deref(), id) {
        ("POST", Some("POST /actions"), _) => submit(deps, &request).await,
        ("GET", Some("GET /actions/{id}"), Some(id)) => action(deps, &id).await,
        ("GET", Some("GET /approvals"), _) => approvals(deps, &request).await,
        ("GET", Some("GET /approvals/{id}"), Some(id)) => match deps.actions.store.get(&id).await {
            Ok(Some(approval)) => Ok(answer(200, to_json(&approval)?)),
            Ok(None) => Ok(problem(404, format!("no approval {id}"))),
            Err(e) => Ok(problem(503, format!("cannot read the approval: {e}"))),
        },
        _ => Ok(problem(404, format!("no route {method} {path}"))),
    }
}

async fn submit(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let Some(requester) = caller_email(request) else {
        return Ok(problem(
            403,
            "actions are submitted by people: sign in with a token that carries your email address",
        ));
    };
    let body = match body_text(request) {
        Ok(body) => body,
        Err(e) => return Ok(problem(400, e)),
    };
    let submission: Submission = match serde_json::from_str(&body) {
        Ok(submission) => submission,
        Err(e) => {
            return Ok(problem(
                400,
                format!("the body is not {{\"action\", \"environment\", \"reason\"}}: {e}"),
            ));
        }
    };
    Ok(match deps.actions.submit(requester, submission).await {
        Ok(submitted) => answer(202, to_json(&submitted)?),
        Err(e) => problem(e.status(), e.to_string()),
    })
}

async fn action(deps: &Deps, id: &str) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let record = match deps.actions.store.action(id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(problem(404, format!("no action {id}"))),
        Err(e) => return Ok(problem(503, format!("cannot read the action: {e}"))),
    };
    let approval = match deps.actions.store.get(id).await {
        Ok(approval) => approval,
        Err(e) => return Ok(problem(503, format!("cannot read the approval: {e}"))),
    };
    let mut body = to_json(&record)?;
    body["approval"] = to_json(&approval)?;
    Ok(answer(200, body))
}

async fn approvals(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let status = match request
        .query_string_parameters
        .first("status")
        .unwrap_or("pending")
    {
        "pending" => Status::Pending,
        "approved" => Status::Approved,
        "rejected" => Status::Rejected,
        "timed_out" => Status::TimedOut,
        other => {
            return Ok(problem(
                400,
                format!("status must be pending, approved, rejected or timed_out, not {other:?}"),
            ));
        }
    };
    match deps.actions.store.with_status(status, 100).await {
        Ok(approvals) => Ok(answer(200, json!({ "approvals": to_json(&approvals)? }))),
        Err(e) => Ok(problem(503, format!("cannot list the approvals: {e}"))),
    }
}

impl LambdaFunction for Deps {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = ApiFailure;

    /// See `ActionSubmitter::from_parts`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        Ok(Deps {
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
