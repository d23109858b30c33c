//! `ApprovalApiFunction`: actions and approvals over the management API.
//!
//! - `POST /actions`: `{"action": {"type": …, "parameters": …}, "reason": …}` submits an
//!   action through the approval workflow. Maestro decides its environment from its target
//!   and checks the caller's right over it. The answer says whether it runs at once or awaits
//!   approval, and gives its id.
//! - `GET /actions/{id}`: the action's status, outcome and decisions.
//! - `GET /approvals?status=pending|approved|rejected|timed_out`: approvals, newest first.
//! - `GET /approvals/{id}`: one approval with every decision.
//!
//! An action and its approval are visible to their requester, their approvers and Maestro's
//! operators only (`maestro_domain::approvals::view`).
//!
//! No answer carries a task token: the store never reads it back except to settle.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::ActionSubmitter;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{ApiFailure, Teams, answer, body_text, problem, route, to_json};
use maestro_aws::lambda::LambdaFunction;
use maestro_domain::access::Caller;
use maestro_domain::approvals::request::{ApprovalStore, Status};
use maestro_domain::approvals::submit::{ActionLog, Submission};
use maestro_domain::approvals::view::viewer;
use serde_json::json;

pub struct Deps {
    pub actions: ActionSubmitter,
    pub teams: Teams,
}

type Answer = Result<ApiGatewayV2httpResponse, ApiFailure>;

pub async fn handle(deps: &Deps, event: LambdaEvent<ApiGatewayV2httpRequest>) -> Answer {
    let request = event.payload;
    let (method, path) = route(&request);
    let caller = match deps.teams.caller(&request) {
        Ok(caller) => caller,
        Err(refused) => return Ok(*refused),
    };
    let id = request.path_parameters.get("id").cloned();
    match (method.as_str(), request.route_key.as_deref(), id) {
        ("POST", Some("POST /actions"), _) => submit(deps, &request, &caller).await,
        ("GET", Some("GET /actions/{id}"), Some(id)) => action(deps, &caller, &id).await,
        ("GET", Some("GET /approvals"), _) => approvals(deps, &request, &caller).await,
        ("GET", Some("GET /approvals/{id}"), Some(id)) => approval(deps, &caller, &id).await,
        _ => Ok(problem(404, format!("no route {method} {path}"))),
    }
}

async fn submit(deps: &Deps, request: &ApiGatewayV2httpRequest, caller: &Caller) -> Answer {
    let body = match body_text(request) {
        Ok(body) => body,
        Err(e) => return Ok(problem(400, e)),
    };
    let submission = match Submission::from_json(&body) {
        Ok(submission) => submission,
        Err(e) => return Ok(problem(400, e.to_string())),
    };
    Ok(match deps.actions.submit(caller, submission).await {
        Ok(submitted) => answer(202, to_json(&submitted)?),
        Err(e) => problem(e.status(), e.to_string()),
    })
}

/// An action and its approval, for its requester, its approvers and the operators; anyone
/// else is told there is no such action.
async fn action(deps: &Deps, caller: &Caller, id: &str) -> Answer {
    let store = &deps.actions.store;
    let (record, approval) = match tokio::try_join!(store.action(id), store.get(id)) {
        Ok((Some(record), approval)) => (record, approval),
        Ok((None, _)) => return Ok(problem(404, format!("no action {id}"))),
        Err(e) => return Ok(problem(503, format!("cannot read the action: {e}"))),
    };
    let approvers = approval
        .iter()
        .flat_map(|a| a.votes.keys())
        .map(String::as_str);
    let Some(seen_as) = viewer(
        caller,
        &deps.teams.operators,
        &record.request.requester,
        approvers,
    ) else {
        return Ok(problem(404, format!("no action {id}")));
    };
    let mut body = to_json(&record)?;
    body["approval"] = to_json(&approval.map(|a| a.seen_by(seen_as)))?;
    Ok(answer(200, body))
}

async fn approval(deps: &Deps, caller: &Caller, id: &str) -> Answer {
    let found = match deps.actions.store.get(id).await {
        Ok(found) => found,
        Err(e) => return Ok(problem(503, format!("cannot read the approval: {e}"))),
    };
    match found.and_then(|a| {
        a.viewer(caller, &deps.teams.operators)
            .map(|v| a.seen_by(v))
    }) {
        Some(approval) => Ok(answer(200, to_json(&approval)?)),
        None => Ok(problem(404, format!("no approval {id}"))),
    }
}

/// The approvals with a status that the caller may see, newest first.
async fn approvals(deps: &Deps, request: &ApiGatewayV2httpRequest, caller: &Caller) -> Answer {
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
        Ok(approvals) => {
            let visible: Vec<_> = approvals
                .into_iter()
                .filter_map(|a| {
                    a.viewer(caller, &deps.teams.operators)
                        .map(|v| a.seen_by(v))
                })
                .collect();
            Ok(answer(200, json!({ "approvals": to_json(&visible)? })))
        }
        Err(e) => Ok(problem(503, format!("cannot list the approvals: {e}"))),
    }
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
