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
use maestro_domain::approvals::policy::ApprovalPolicy;
use maestro_domain::approvals::request::TaskToken;
use maestro_domain::approvals::steps::{
    StepError, StepPorts, check_policy, record_outcome, request_approval,
};
use maestro_domain::approvals::workflow::{ActionRequest, Outcome};
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

impl From<StepError> for StepFailure {
    fn from(error: StepError) -> Self {
        match error {
            StepError::Invalid(message) => StepFailure::new(ErrorKind::InvalidInput, message),
            StepError::Refused(message) => StepFailure::new(ErrorKind::Rejected, message),
            StepError::Store(error) => error.into(),
        }
    }
}

fn to_value(value: &impl serde::Serialize) -> Result<Value, StepFailure> {
    serde_json::to_value(value).map_err(|e| StepFailure::new(ErrorKind::Rejected, e.to_string()))
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Step>) -> Result<Value, StepFailure> {
    let ports = StepPorts {
        actions: &deps.store,
        approvals: &deps.store,
        mailer: &deps.mailer,
        keys: &deps.keys,
    };
    let now = Utc::now();
    match event.payload {
        Step::CheckPolicy { request } => {
            let answer = check_policy(&ports, &deps.policy, &request, now).await?;
            tracing::info!(action_id = %request.id, answer = ?answer, "policy checked");
            to_value(&answer)
        }
        Step::RequestApproval {
            request,
            task_token,
        } => {
            let approval = request_approval(
                &ports,
                &deps.policy,
                &request,
                &task_token,
                new_link_secret(),
                &deps.links_url,
                now,
            )
            .await?;
            tracing::info!(
                approval_id = %approval.id,
                approvers = approval.votes.len(),
                quorum = approval.approval.quorum,
                "approval opened and approvers mailed"
            );
            maestro_aws::metrics::count(&[], &[("ApprovalsRequested", 1)]);
            Ok(json!({ "approvalId": approval.id }))
        }
        Step::RecordOutcome { request, outcome } => {
            let record = record_outcome(&ports, &request, outcome, now).await?;
            tracing::info!(action_id = %request.id, status = ?record.status, "action ended");
            to_value(&record)
        }
    }
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
