//! The approval workflow's own steps (`statemachines/approval.asl.json`): check the policy,
//! open the approval and mail the approvers while the execution waits on its task token, and
//! record how the action ended. `ApprovalWorkflowFunction` parses a step, calls one of these
//! and renders the answer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;

use super::link::{Decision, LinkClaims, LinkKeys, LinkSecret, link_url};
use super::policy::{ApprovalPolicy, Requirement};
use super::render::{Email, approval_email, outcome_email};
use super::request::{ApprovalRequest, ApprovalStore, Status, TaskToken};
use super::submit::ActionLog;
use super::workflow::{
    ActionRecord, ActionRequest, ActionStatus, Outcome, PolicyAnswer, open_request,
};
use crate::port::PortError;

/// Sends the approvals' emails (SES).
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &Email) -> Result<(), PortError>;
}

/// The links' signing keys, as they stand (Secrets Manager).
#[async_trait]
pub trait SigningKeys: Send + Sync {
    async fn load(&self) -> Result<LinkKeys, PortError>;
}

/// What the steps work with.
pub struct StepPorts<'a> {
    pub actions: &'a dyn ActionLog,
    pub approvals: &'a dyn ApprovalStore,
    pub mailer: &'a dyn Mailer,
    pub keys: &'a dyn SigningKeys,
}

#[derive(Debug, Error)]
pub enum StepError {
    /// The request itself is wrong: no retry helps.
    #[error("{0}")]
    Invalid(String),
    /// The policy or the approval's state refuses the step: no retry helps.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] PortError),
}

fn requirement(policy: &ApprovalPolicy, request: &ActionRequest) -> Result<Requirement, StepError> {
    request
        .validate()
        .map_err(|e| StepError::Invalid(e.to_string()))?;
    policy
        .requirement(request.action.action_type(), request.environment)
        .map_err(|e| StepError::Refused(e.to_string()))
}

/// The action's record as it stands, or a new one for a workflow started without the API.
async fn current_record(
    actions: &dyn ActionLog,
    request: &ActionRequest,
    now: DateTime<Utc>,
) -> Result<ActionRecord, StepError> {
    Ok(actions
        .action(&request.id)
        .await?
        .unwrap_or_else(|| ActionRecord {
            request: request.clone(),
            status: ActionStatus::Submitted,
            approval_required: false,
            updated_at: now,
            outcome: None,
        }))
}

/// CHECK_POLICY: what the policy asks of the action, recorded on it.
pub async fn check_policy(
    ports: &StepPorts<'_>,
    policy: &ApprovalPolicy,
    request: &ActionRequest,
    now: DateTime<Utc>,
) -> Result<PolicyAnswer, StepError> {
    let answer = match requirement(policy, request)? {
        Requirement::RunAtOnce => PolicyAnswer::RunAtOnce,
        Requirement::Approval(approval) => PolicyAnswer::Approval {
            timeout_seconds: approval.timeout_minutes.saturating_mul(60),
        },
    };
    let mut record = current_record(ports.actions, request, now).await?;
    record.approval_required = matches!(answer, PolicyAnswer::Approval { .. });
    record.status = match answer {
        PolicyAnswer::Approval { .. } => ActionStatus::AwaitingApproval,
        PolicyAnswer::RunAtOnce => ActionStatus::Running,
    };
    record.updated_at = now;
    ports.actions.record(&record).await?;
    Ok(answer)
}

/// REQUEST_APPROVAL: opens the approval with the waiting task's token and its own secret
/// (`new_secret`, used only when the approval is new) and mails each approver their links.
/// A retried step finds the approval open: it takes the new token and mails again, with the
/// same links.
pub async fn request_approval(
    ports: &StepPorts<'_>,
    policy: &ApprovalPolicy,
    request: &ActionRequest,
    task_token: &TaskToken,
    new_secret: LinkSecret,
    links_url: &str,
    now: DateTime<Utc>,
) -> Result<ApprovalRequest, StepError> {
    let Requirement::Approval(approval) = requirement(policy, request)? else {
        return Err(StepError::Refused(format!(
            "the policy no longer asks an approval of {}",
            request.id
        )));
    };
    let opened =
        open_request(request, &approval, now).map_err(|e| StepError::Refused(e.to_string()))?;
    let (approval, secret) = match ports.approvals.get(&opened.id).await? {
        None => {
            ports
                .approvals
                .create(&opened, task_token, &new_secret)
                .await?;
            (opened, new_secret)
        }
        Some(existing) if existing.status == Status::Pending => {
            ports
                .approvals
                .replace_token(&existing.id, task_token)
                .await?;
            let secret = ports
                .approvals
                .link_secret(&existing.id)
                .await?
                .ok_or_else(|| PortError::Transient {
                    service: "maestro",
                    detail: format!("approval {} has no secret yet", existing.id),
                })?;
            (existing, secret)
        }
        Some(existing) => {
            return Err(StepError::Refused(format!(
                "approval {} is already {:?}",
                existing.id, existing.status
            )));
        }
    };
    let keys = ports.keys.load().await?.for_approval(&secret);
    for approver in approval.votes.keys() {
        let link = |decision| {
            link_url(
                links_url,
                &keys,
                &LinkClaims {
                    approval_id: approval.id.clone(),
                    decision,
                    approver: approver.clone(),
                    expires_at: approval.expires_at,
                },
            )
        };
        let email = approval_email(
            &approval,
            approver,
            &link(Decision::Approve),
            &link(Decision::Reject),
        );
        ports.mailer.send(&email).await?;
    }
    Ok(approval)
}

/// RECORD_OUTCOME: closes an approval nobody decided in time (so late clicks see it expired;
/// a rejection settled it already, and this changes nothing), records how the action ended
/// and tells the requester.
pub async fn record_outcome(
    ports: &StepPorts<'_>,
    request: &ActionRequest,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<ActionRecord, StepError> {
    if let Some(status) = outcome.approval_status() {
        ports.approvals.settle(&request.id, status).await?;
    }
    let mut record = current_record(ports.actions, request, now).await?;
    record.status = outcome.status();
    record.outcome = Some(outcome.clone());
    record.updated_at = now;
    ports.actions.record(&record).await?;
    // Workflows that act for no person (a scheduled sync) have nobody to tell.
    if record.request.requester.contains('@') {
        ports.mailer.send(&outcome_email(&record, &outcome)).await?;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::approvals::action::Action;
    use crate::approvals::link::SigningKey;
    use crate::approvals::request::VoteRecord;
    use crate::sso::model::Environment;

    /// The stores, the mailbox and the key, in memory.
    #[derive(Default)]
    struct World {
        actions: Mutex<BTreeMap<String, ActionRecord>>,
        approvals: Mutex<BTreeMap<String, (ApprovalRequest, TaskToken, LinkSecret)>>,
        sent: Mutex<Vec<Email>>,
    }

    #[async_trait]
    impl ActionLog for World {
        async fn action(&self, id: &str) -> Result<Option<ActionRecord>, PortError> {
            Ok(self.actions.lock().unwrap().get(id).cloned())
        }
        async fn record_new(&self, record: &ActionRecord) -> Result<bool, PortError> {
            let mut actions = self.actions.lock().unwrap();
            let new = !actions.contains_key(&record.request.id);
            actions
                .entry(record.request.id.clone())
                .or_insert_with(|| record.clone());
            Ok(new)
        }
        async fn record(&self, record: &ActionRecord) -> Result<(), PortError> {
            let mut actions = self.actions.lock().unwrap();
            actions.insert(record.request.id.clone(), record.clone());
            Ok(())
        }
    }

    #[async_trait]
    impl ApprovalStore for World {
        async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>, PortError> {
            Ok(self.approvals.lock().unwrap().get(id).map(|a| a.0.clone()))
        }
        async fn link_secret(&self, id: &str) -> Result<Option<LinkSecret>, PortError> {
            Ok(self.approvals.lock().unwrap().get(id).map(|a| a.2.clone()))
        }
        async fn create(
            &self,
            request: &ApprovalRequest,
            token: &TaskToken,
            secret: &LinkSecret,
        ) -> Result<(), PortError> {
            let entry = (request.clone(), token.clone(), secret.clone());
            self.approvals
                .lock()
                .unwrap()
                .insert(request.id.clone(), entry);
            Ok(())
        }
        async fn replace_token(&self, id: &str, token: &TaskToken) -> Result<(), PortError> {
            if let Some(approval) = self.approvals.lock().unwrap().get_mut(id) {
                approval.1 = token.clone();
            }
            Ok(())
        }
        async fn cast(
            &self,
            _: &str,
            _: &str,
            _: &VoteRecord,
        ) -> Result<Option<ApprovalRequest>, PortError> {
            unreachable!("the workflow's steps cast no vote")
        }
        async fn settle(&self, id: &str, status: Status) -> Result<Option<TaskToken>, PortError> {
            let mut approvals = self.approvals.lock().unwrap();
            Ok(approvals
                .get_mut(id)
                .filter(|a| a.0.status == Status::Pending)
                .map(|a| {
                    a.0.status = status;
                    a.1.clone()
                }))
        }
        async fn resettle(&self, _: &str, _: Status, _: Status) -> Result<(), PortError> {
            unreachable!("the workflow's steps undo no settle")
        }
    }

    #[async_trait]
    impl Mailer for World {
        async fn send(&self, email: &Email) -> Result<(), PortError> {
            self.sent.lock().unwrap().push(email.clone());
            Ok(())
        }
    }

    #[async_trait]
    impl SigningKeys for World {
        async fn load(&self) -> Result<LinkKeys, PortError> {
            Ok(LinkKeys {
                current: SigningKey::new(vec![3; 32]).unwrap(),
                previous: None,
            })
        }
    }

    fn ports(world: &World) -> StepPorts<'_> {
        StepPorts {
            actions: world,
            approvals: world,
            mailer: world,
            keys: world,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap()
    }

    fn policy() -> ApprovalPolicy {
        ApprovalPolicy::from_json(
            r#"{"rules": [
                {"action": "SECRET_ROTATE_NOW", "environments": ["PRODUCTION"],
                 "approval": {"approvers": ["alice@example.com", "bob@example.com"],
                              "timeoutMinutes": 60}},
                {"action": "SECRET_ROTATE_NOW", "approval": null}]}"#,
        )
        .unwrap()
    }

    fn request(environment: Environment) -> ActionRequest {
        ActionRequest {
            id: "act-1".into(),
            action: Action::SecretRotateNow {
                secret_id: "prod/db".into(),
            },
            environment,
            requester: "dave@example.com".into(),
            reason: "the password was pasted in a ticket".into(),
        }
    }

    fn secret(byte: u8) -> LinkSecret {
        LinkSecret::new(vec![byte; 32]).unwrap()
    }

    #[tokio::test]
    async fn the_policy_check_records_what_the_policy_asks_and_refuses_what_it_covers_not() {
        let world = World::default();
        let answer = check_policy(
            &ports(&world),
            &policy(),
            &request(Environment::Production),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(
            answer,
            PolicyAnswer::Approval {
                timeout_seconds: 3600
            }
        );
        let recorded = world.actions.lock().unwrap()["act-1"].clone();
        assert_eq!(recorded.status, ActionStatus::AwaitingApproval);
        assert!(recorded.approval_required);

        let at_once = check_policy(
            &ports(&world),
            &policy(),
            &request(Environment::Sandbox),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(at_once, PolicyAnswer::RunAtOnce);
        assert_eq!(
            world.actions.lock().unwrap()["act-1"].status,
            ActionStatus::Running
        );

        let mut no_reason = request(Environment::Sandbox);
        no_reason.reason = String::new();
        let invalid = check_policy(&ports(&world), &policy(), &no_reason, now()).await;
        assert!(matches!(invalid, Err(StepError::Invalid(_))), "{invalid:?}");
        let uncovered = ApprovalPolicy::from_json(r#"{"rules": []}"#).unwrap();
        let refused = check_policy(
            &ports(&world),
            &uncovered,
            &request(Environment::Sandbox),
            now(),
        )
        .await;
        assert!(matches!(refused, Err(StepError::Refused(_))), "{refused:?}");
    }

    /// REQUEST_APPROVAL for the production request, as the step with `token` runs it, with
    /// a new secret of `secret_byte`s.
    async fn open(
        world: &World,
        token: &str,
        secret_byte: u8,
    ) -> Result<ApprovalRequest, StepError> {
        request_approval(
            &ports(world),
            &policy(),
            &request(Environment::Production),
            &TaskToken::new(token.into()),
            secret(secret_byte),
            "https://links",
            now(),
        )
        .await
    }

    #[tokio::test]
    async fn a_retried_request_takes_the_new_token_and_mails_the_same_links() {
        let world = World::default();
        open(&world, "token-1", 1).await.unwrap();
        let opened = open(&world, "token-2", 2).await.unwrap();
        let stored = world.approvals.lock().unwrap()[&opened.id].clone();
        assert_eq!(
            stored.1,
            TaskToken::new("token-2".into()),
            "the retried step's token waits"
        );
        assert_eq!(stored.2, secret(1), "the approval keeps its own secret");
        let sent = world.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 4, "each approver, each time");
        assert_eq!(sent[0], sent[2]);
        assert_eq!(sent[1], sent[3]);
        assert!(sent.iter().all(|email| !email.text.contains("token-")));

        // Once decided, a late retry opens nothing.
        world.settle(&opened.id, Status::Rejected).await.unwrap();
        let late = open(&world, "token-3", 3).await;
        assert!(matches!(late, Err(StepError::Refused(_))), "{late:?}");
    }

    #[tokio::test]
    async fn the_outcome_closes_an_undecided_approval_and_tells_the_requester() {
        let world = World::default();
        let opened = open(&world, "token-1", 1).await.unwrap();
        let production = request(Environment::Production);
        let record = record_outcome(&ports(&world), &production, Outcome::TimedOut, now())
            .await
            .unwrap();
        assert_eq!(record.status, ActionStatus::TimedOut);
        assert_eq!(
            world.approvals.lock().unwrap()[&opened.id].0.status,
            Status::TimedOut,
            "late clicks find it expired"
        );
        let sent = world.sent.lock().unwrap();
        assert_eq!(sent.last().unwrap().to, "dave@example.com");
    }
}
