//! `ApprovalWorkflowFunction`: the steps of `statemachines/approval.asl.json` that are
//! Maestro's own. It checks the approval policy, opens the approval and mails the approvers
//! while the execution waits on its task token, and records how the action ended and tells
//! the requester.

use chrono::Utc;
use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::approvals::{DynamoApprovals, approval_policy, new_link_secret};
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::mail::SesMailer;
use maestro_aws::signing_keys::SecretLinkKeys;
use maestro_domain::approvals::link::{Decision, LinkClaims, link_url};
use maestro_domain::approvals::policy::{ApprovalPolicy, Requirement};
use maestro_domain::approvals::render::{approval_email, outcome_email};
use maestro_domain::approvals::request::{ApprovalStore, Status, TaskToken};
use maestro_domain::approvals::submit::ActionLog;
use maestro_domain::approvals::workflow::{
    ActionRecord, ActionRequest, ActionStatus, Outcome, PolicyAnswer, open_request,
};
use maestro_domain::port::PortError;
use serde::Deserialize;
use serde_json::{Value, json};

pub struct Deps {
    pub policy: ApprovalPolicy,
    pub store: DynamoApprovals,
    pub mailer: SesMailer,
    pub keys: SecretLinkKeys,
    /// Where the decision links point: the approval links API, or its custom domain.
    pub links_url: String,
}

/// One step, as the state machine sends it.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "step",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum Step {
    CheckPolicy {
        request: ActionRequest,
    },
    RequestApproval {
        request: ActionRequest,
        task_token: TaskToken,
    },
    RecordOutcome {
        request: ActionRequest,
        outcome: Outcome,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepFailure {
    kind: ErrorKind,
    message: String,
}

impl StepFailure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepFailure {
            kind,
            message: message.into(),
        }
    }
}

impl From<PortError> for StepFailure {
    fn from(error: PortError) -> Self {
        StepFailure::new(ErrorKind::of_port_error(&error), error.to_string())
    }
}

impl From<StepFailure> for Diagnostic {
    fn from(failure: StepFailure) -> Diagnostic {
        failure.kind.diagnostic(&failure)
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Step>) -> Result<Value, StepFailure> {
    match event.payload {
        Step::CheckPolicy { request } => check_policy(deps, request).await,
        Step::RequestApproval {
            request,
            task_token,
        } => request_approval(deps, request, task_token).await,
        Step::RecordOutcome { request, outcome } => record_outcome(deps, request, outcome).await,
    }
}

fn requirement(deps: &Deps, request: &ActionRequest) -> Result<Requirement, StepFailure> {
    request
        .validate()
        .map_err(|e| StepFailure::new(ErrorKind::InvalidInput, e.to_string()))?;
    deps.policy
        .requirement(request.action.action_type(), request.environment)
        .map_err(|e| StepFailure::new(ErrorKind::Rejected, e.to_string()))
}

/// The action's record as it stands, or a new one for a workflow started without the API.
async fn current_record(deps: &Deps, request: &ActionRequest) -> Result<ActionRecord, StepFailure> {
    Ok(deps
        .store
        .action(&request.id)
        .await?
        .unwrap_or_else(|| ActionRecord {
            request: request.clone(),
            status: ActionStatus::Submitted,
            approval_required: false,
            updated_at: Utc::now(),
            outcome: None,
        }))
}

async fn check_policy(deps: &Deps, request: ActionRequest) -> Result<Value, StepFailure> {
    let answer = match requirement(deps, &request)? {
        Requirement::RunAtOnce => PolicyAnswer::RunAtOnce,
        Requirement::Approval(approval) => PolicyAnswer::Approval {
            timeout_seconds: approval.timeout_minutes.saturating_mul(60),
        },
    };
    let mut record = current_record(deps, &request).await?;
    record.approval_required = matches!(answer, PolicyAnswer::Approval { .. });
    record.status = if record.approval_required {
        ActionStatus::AwaitingApproval
    } else {
        ActionStatus::Running
    };
    record.updated_at = Utc::now();
    deps.store.record(&record).await?;
    tracing::info!(action_id = %request.id, approval_required = record.approval_required, "policy checked");
    serde_json::to_value(&answer).map_err(|e| StepFailure::new(ErrorKind::Rejected, e.to_string()))
}

async fn request_approval(
    deps: &Deps,
    request: ActionRequest,
    task_token: TaskToken,
) -> Result<Value, StepFailure> {
    let Requirement::Approval(approval) = requirement(deps, &request)? else {
        return Err(StepFailure::new(
            ErrorKind::Rejected,
            format!("the policy no longer asks an approval of {}", request.id),
        ));
    };
    let opened = open_request(&request, &approval, Utc::now())
        .map_err(|e| StepFailure::new(ErrorKind::Rejected, e.to_string()))?;
    // A retried step finds its approval open: it takes the new token and mails again, with
    // the same links.
    let (approval_request, secret) = match deps.store.get(&opened.id).await? {
        None => {
            let secret = new_link_secret();
            deps.store.create(&opened, &task_token, &secret).await?;
            (opened, secret)
        }
        Some(existing) if existing.status == Status::Pending => {
            deps.store.replace_token(&existing.id, &task_token).await?;
            let secret = deps.store.link_secret(&existing.id).await?.ok_or_else(|| {
                StepFailure::new(
                    ErrorKind::Transient,
                    format!("approval {} has no secret yet", existing.id),
                )
            })?;
            (existing, secret)
        }
        Some(existing) => {
            return Err(StepFailure::new(
                ErrorKind::Rejected,
                format!("approval {} is already {:?}", existing.id, existing.status),
            ));
        }
    };
    let keys = deps.keys.load().await?.for_approval(&secret);
    for approver in approval_request.votes.keys() {
        let link = |decision| {
            link_url(
                &deps.links_url,
                &keys,
                &LinkClaims {
                    approval_id: approval_request.id.clone(),
                    decision,
                    approver: approver.clone(),
                    expires_at: approval_request.expires_at,
                },
            )
        };
        let email = approval_email(
            &approval_request,
            approver,
            &link(Decision::Approve),
            &link(Decision::Reject),
        );
        deps.mailer.send(&email).await?;
    }
    tracing::info!(
        approval_id = %approval_request.id,
        approvers = approval_request.votes.len(),
        quorum = approval_request.approval.quorum,
        "approval opened and approvers mailed"
    );
    maestro_aws::metrics::count(&[], &[("ApprovalsRequested", 1)]);
    Ok(json!({ "approvalId": approval_request.id }))
}

async fn record_outcome(
    deps: &Deps,
    request: ActionRequest,
    outcome: Outcome,
) -> Result<Value, StepFailure> {
    if let Some(status) = outcome.approval_status() {
        // Closes an approval nobody decided in time, so late clicks see it expired. A
        // rejection settled it already, and this changes nothing.
        deps.store.settle(&request.id, status).await?;
    }
    let mut record = current_record(deps, &request).await?;
    record.status = outcome.status();
    record.outcome = Some(outcome.clone());
    record.updated_at = Utc::now();
    deps.store.record(&record).await?;
    if record.request.requester.contains('@') {
        deps.mailer.send(&outcome_email(&record, &outcome)).await?;
    }
    tracing::info!(action_id = %request.id, status = ?record.status, "action ended");
    serde_json::to_value(&record).map_err(|e| StepFailure::new(ErrorKind::Rejected, e.to_string()))
}

impl LambdaFunction for Deps {
    type Event = Step;
    type Response = Value;
    type Error = StepFailure;

    /// Reads `APPROVAL_POLICY` (JSON), `APPROVALS_TABLE`, `APPROVAL_SENDER`,
    /// `SIGNING_KEY_SECRET` and `APPROVAL_LINKS_URL`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let policy = approval_policy(&mut vars);
        let table = vars.required("APPROVALS_TABLE");
        let sender = vars.required("APPROVAL_SENDER");
        let secret = vars.required("SIGNING_KEY_SECRET");
        let links_url = vars.required("APPROVAL_LINKS_URL");
        if !links_url.starts_with("https://") && !links_url.starts_with("http://") {
            vars.problem(format!(
                "APPROVAL_LINKS_URL must be an http(s) URL, got {links_url:?}"
            ));
        }
        vars.finish()?;
        let policy = policy.ok_or_else(|| EnvError {
            problems: vec!["APPROVAL_POLICY is invalid".into()],
        })?;
        Ok(Deps {
            policy,
            store: DynamoApprovals::new(config, table),
            mailer: SesMailer::new(config, sender),
            keys: SecretLinkKeys::new(config, secret),
            links_url,
        })
    }

    async fn handle(&self, event: LambdaEvent<Step>) -> Result<Value, StepFailure> {
        handle(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use maestro_domain::approvals::workflow::PolicyAnswer;
    use serde_json::Value;

    const DEFINITION: &str = include_str!("../../../statemachines/approval.asl.json");

    /// The states a run can reach from `start` without an approval.
    fn reachable(states: &Value, start: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let mut next = vec![start.to_owned()];
        while let Some(name) = next.pop() {
            if seen.contains(&name) {
                continue;
            }
            let state = &states[&name];
            let mut targets: Vec<&Value> = vec![&state["Next"], &state["Default"]];
            targets.extend(
                state["Choices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| &c["Next"]),
            );
            next.extend(
                targets
                    .into_iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned),
            );
            seen.push(name);
        }
        seen
    }

    #[test]
    fn only_the_policy_s_explicit_run_at_once_answer_runs_an_action_without_approval() {
        let asl: Value = serde_json::from_str(DEFINITION).expect("the definition is JSON");
        let states = &asl["States"];
        let choice = &states["NeedsApproval"];
        let run_at_once = serde_json::to_value(PolicyAnswer::RunAtOnce).unwrap();
        let approval = serde_json::to_value(PolicyAnswer::Approval {
            timeout_seconds: 60,
        })
        .unwrap();
        let routes: Vec<(&str, &str)> = choice["Choices"]
            .as_array()
            .expect("choices")
            .iter()
            .map(|c| {
                assert_eq!(c["Variable"], "$.policy.answer.requirement", "{c}");
                (
                    c["StringEquals"].as_str().unwrap(),
                    c["Next"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                (approval["requirement"].as_str().unwrap(), "WaitForApproval"),
                (run_at_once["requirement"].as_str().unwrap(), "RunAction"),
            ]
        );
        // Any other answer (a renamed variant, a missing field) ends failed, and never runs.
        let default = choice["Default"].as_str().expect("a default");
        let after = reachable(states, default);
        assert!(!after.iter().any(|s| s == "RunAction"), "{after:?}");
        assert!(after.iter().any(|s| s == "RecordFailure"), "{after:?}");
        assert!(
            after.iter().all(|s| states[s]["Type"] != "Succeed"),
            "{after:?}"
        );
    }
}
