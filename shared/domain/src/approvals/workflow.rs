//! An action's way through the approval workflow (`statemachines/approval.asl.json`): what is
//! submitted, what the workflow records at each step, and how it ends.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::action::{Action, InvalidAction};
use super::policy::{Approval, PolicyError};
use super::request::{ApprovalRequest, Status, VoteRecord};
use super::submit::validate_reason;

use crate::sso::model::Environment;
use crate::sso::plan::{HoldReason, PlannedDelete};

/// The workflow's input: a submission with its id and who asked. Other workflows start the
/// approval state machine with this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    pub id: String,
    pub action: Action,
    pub environment: Environment,
    pub requester: String,
    pub reason: String,
}

impl ActionRequest {
    /// Checks what arrives from outside the API (other workflows start the state machine too).
    pub fn validate(&self) -> Result<(), InvalidAction> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 80
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(InvalidAction {
                field: "id",
                problem: "must be 1 to 80 letters, digits, '-' or '_'".into(),
            });
        }
        if self.requester.trim().is_empty() {
            return Err(InvalidAction {
                field: "requester",
                problem: "must name who asked".into(),
            });
        }
        validate_reason(&self.reason)?;
        self.action.validate()
    }
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionStatus {
    Submitted,
    AwaitingApproval,
    Running,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
}

/// How the workflow ended. A rejection and a timeout are their own outcomes, not failures
/// with a message to match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Succeeded {
        #[serde(default)]
        result: Value,
    },
    Failed {
        error: String,
        #[serde(default)]
        cause: String,
    },
    Rejected,
    TimedOut,
}

impl Outcome {
    pub fn status(&self) -> ActionStatus {
        match self {
            Outcome::Succeeded { .. } => ActionStatus::Succeeded,
            Outcome::Failed { .. } => ActionStatus::Failed,
            Outcome::Rejected => ActionStatus::Rejected,
            Outcome::TimedOut => ActionStatus::TimedOut,
        }
    }

    /// The approval's own status once the workflow ends this way, if it had one to close.
    pub fn approval_status(&self) -> Option<Status> {
        match self {
            Outcome::TimedOut => Some(Status::TimedOut),
            Outcome::Rejected => Some(Status::Rejected),
            Outcome::Succeeded { .. } | Outcome::Failed { .. } => None,
        }
    }
}

/// An action as recorded, from submission to outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    #[serde(flatten)]
    pub request: ActionRequest,
    pub status: ActionStatus,
    pub approval_required: bool,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// What the policy check step answers the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "requirement", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PolicyAnswer {
    RunAtOnce,
    #[serde(rename_all = "camelCase")]
    Approval {
        timeout_seconds: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error(
        "the policy asks {quorum} approvals, but only {eligible} approvers other than the requester may give one"
    )]
    QuorumUnreachable { quorum: usize, eligible: usize },
}

impl From<OpenError> for PolicyError {
    fn from(error: OpenError) -> PolicyError {
        PolicyError::Invalid {
            key: "quorum".into(),
            problem: error.to_string(),
        }
    }
}

/// The approval request for `request` under `approval`: one pending vote per approver who
/// may decide. The requester is left out unless the rule lets them approve, and a quorum
/// that the others cannot reach is refused at once rather than left to time out.
pub fn open_request(
    request: &ActionRequest,
    approval: &Approval,
    now: DateTime<Utc>,
) -> Result<ApprovalRequest, OpenError> {
    let pending = VoteRecord::pending();
    let votes: BTreeMap<String, VoteRecord> = approval
        .approvers
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .filter(|a| approval.may_decide(&request.requester, a).is_ok())
        .map(|a| (a, pending.clone()))
        .collect();
    if votes.len() < approval.quorum {
        return Err(OpenError::QuorumUnreachable {
            quorum: approval.quorum,
            eligible: votes.len(),
        });
    }
    Ok(ApprovalRequest {
        id: request.id.clone(),
        action: request.action.clone(),
        environment: request.environment,
        requester: request.requester.clone(),
        reason: request.reason.clone(),
        approval: approval.clone(),
        created_at: now,
        expires_at: now + Duration::minutes(i64::from(approval.timeout_minutes)),
        status: Status::Pending,
        votes,
    })
}

/// Who asks for the approval of the deletes a sync held.
pub const SSO_SYNC_REQUESTER: &str = "Maestro SSO sync";

/// The action that applies the deletes run `run_id` held. Its id is made from the held
/// assignments, so the same held deletes are asked about once however many runs hold them,
/// and a rejection stands until what is held changes. Its environment is the most protected
/// one among them, which picks the policy rule.
pub fn held_deletes_request(run_id: &str, held: &[PlannedDelete]) -> Option<ActionRequest> {
    let environment = held.iter().map(|d| d.environment).max()?;
    let mut assignments: Vec<String> = held
        .iter()
        .map(|d| serde_json::to_string(&d.assignment).unwrap_or_default())
        .collect();
    assignments.sort();
    let digest = Sha256::digest(assignments.join("\n").as_bytes());
    let key = crate::hex::lower(&digest[..12]);
    let over =
        |pick: fn(&HoldReason) -> bool| held.iter().any(|d| d.held.as_ref().is_some_and(pick));
    let reason = if over(|h| matches!(h, HoldReason::OverThreshold { .. })) {
        format!(
            "SSO sync run {run_id} would delete {} assignments, more than its threshold allows at once",
            held.len()
        )
    } else if over(|h| matches!(h, HoldReason::OverThresholdInWindow { .. })) {
        format!(
            "SSO sync run {run_id} would delete {} assignments, past the threshold of deletes the recent runs together may make",
            held.len()
        )
    } else if over(|h| matches!(h, HoldReason::AccountWithoutWorkload)) {
        format!(
            "SSO sync run {run_id} would delete {} assignments, some of accounts that lost their workload tag",
            held.len()
        )
    } else {
        format!(
            "SSO sync run {run_id} would delete {} assignments in protected environments",
            held.len()
        )
    };
    Some(ActionRequest {
        id: format!("sso-deletes-{key}"),
        action: Action::SsoApplyDeletes {
            run_id: run_id.to_owned(),
        },
        environment,
        requester: SSO_SYNC_REQUESTER.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn request(requester: &str) -> ActionRequest {
        ActionRequest {
            id: "act-1".into(),
            action: Action::SecretRotateNow {
                secret_id: "prod/db".into(),
            },
            environment: Environment::Production,
            requester: requester.into(),
            reason: "the password was pasted in a ticket".into(),
        }
    }

    fn approval(quorum: usize) -> Approval {
        Approval {
            approvers: vec![
                "alice@example.com".into(),
                "Bob@Example.com".into(),
                "carol@example.com".into(),
            ],
            quorum,
            timeout_minutes: 90,
            requester_may_approve: false,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    #[test]
    fn the_requester_gets_no_vote_and_the_request_expires_with_the_timeout() {
        let opened = open_request(&request("alice@example.com"), &approval(2), now()).unwrap();
        assert_eq!(
            opened.votes.keys().collect::<Vec<_>>(),
            ["bob@example.com", "carol@example.com"]
        );
        assert_eq!(opened.expires_at, now() + Duration::minutes(90));
        assert_eq!(opened.status, Status::Pending);
    }

    #[test]
    fn a_quorum_only_the_requester_could_complete_is_refused() {
        let refused = open_request(&request("alice@example.com"), &approval(3), now());
        assert_eq!(
            refused,
            Err(OpenError::QuorumUnreachable {
                quorum: 3,
                eligible: 2
            })
        );
    }

    #[test]
    fn submissions_name_the_field_at_fault() {
        let mut blank_reason = request("dave@example.com");
        blank_reason.reason = "  ".into();
        assert_eq!(blank_reason.validate().unwrap_err().field, "reason");
        let mut bad_id = request("dave@example.com");
        bad_id.id = "act/../1".into();
        assert_eq!(bad_id.validate().unwrap_err().field, "id");
        assert!(request("dave@example.com").validate().is_ok());
    }

    #[test]
    fn the_same_held_deletes_make_the_same_request_whatever_the_run() {
        use crate::sso::synthetic;
        let held = |account, environment| PlannedDelete {
            assignment: synthetic::group_assignment(account, 0, 1),
            environment,
            held: Some(HoldReason::ProtectedEnvironment { environment }),
        };
        let deletes = [
            held(1, Environment::Production),
            held(2, Environment::Staging),
        ];
        let first = held_deletes_request("run-1", &deletes).unwrap();
        let mut reversed = deletes.clone();
        reversed.reverse();
        let again = held_deletes_request("run-2", &reversed).unwrap();
        assert_eq!(first.id, again.id);
        assert_eq!(first.environment, Environment::Production);
        assert!(first.validate().is_ok(), "{first:?}");
        let fewer = held_deletes_request("run-3", &deletes[..1]).unwrap();
        assert_ne!(fewer.id, first.id);
        assert_eq!(held_deletes_request("run-4", &[]), None);
    }

    #[test]
    fn outcomes_read_from_the_state_machine() {
        let failed: Outcome = serde_json::from_value(serde_json::json!({
            "status": "FAILED", "error": "Rejected", "cause": "no such secret"
        }))
        .unwrap();
        assert_eq!(failed.status(), ActionStatus::Failed);
        let timed_out: Outcome =
            serde_json::from_value(serde_json::json!({"status": "TIMED_OUT"})).unwrap();
        assert_eq!(timed_out.approval_status(), Some(Status::TimedOut));
    }
}
