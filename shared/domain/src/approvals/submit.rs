//! Submitting an action: who may ask for what, and where it lands.
//!
//! The caller names an action and says why; Maestro decides the rest from state it trusts,
//! never from the request. The environment that picks the policy rule comes from the
//! target (a secret's owner as the deployment records it, the environments of the
//! assignments an SSO run held), and unknown means the most protected environment. The
//! caller's right over the target is checked for every action type, so `POST /actions` and
//! the dedicated routes (`DELETE /connections/{id}`, `POST /secrets/{id}/rotate`) apply the
//! same rules through this one use case.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::action::{Action, InvalidAction, plain_text};
use super::policy::{ApprovalPolicy, PolicyError, Requirement};
use super::workflow::{ActionRecord, ActionRequest, ActionStatus, Outcome, held_deletes_request};
use crate::access::{Access, Caller, SecretOwners, TeamAccess};
use crate::port::PortError;
use crate::sso::model::Environment;
use crate::sso::plan::PlannedDelete;

/// What a person asks for: an action, and why (shown to the approvers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Submission {
    pub action: Action,
    pub reason: String,
}

impl Submission {
    /// Reads `POST /actions`'s body, naming what is wrong. An `environment` is refused
    /// rather than ignored: a caller who sends one believes it counts, and it never does.
    pub fn from_json(body: &str) -> Result<Submission, InvalidAction> {
        let value: Value = serde_json::from_str(body).map_err(|e| InvalidAction {
            field: "body",
            problem: format!("is not JSON: {e}"),
        })?;
        if value.get("environment").is_some() {
            return Err(InvalidAction {
                field: "environment",
                problem: "Maestro decides an action's environment from its target; leave it out"
                    .into(),
            });
        }
        serde_json::from_value(value).map_err(|e| InvalidAction {
            field: "body",
            problem: format!("is not {{\"action\", \"reason\"}}: {e}"),
        })
    }

    pub fn validate(&self) -> Result<(), InvalidAction> {
        validate_reason(&self.reason)?;
        self.action.validate()
    }
}

/// The reason shown to approvers: 1 to 1000 characters of one line of plain text.
pub fn validate_reason(reason: &str) -> Result<(), InvalidAction> {
    let trimmed = reason.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 1000 {
        return Err(InvalidAction {
            field: "reason",
            problem: "must be 1 to 1000 characters".into(),
        });
    }
    plain_text("reason", trimmed)
}

/// A secret as Secrets Manager names it: the ARN the action runs on, and the name (which
/// never changes) that decides its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretIdentity {
    pub arn: String,
    pub name: String,
}

/// What Maestro knows of the targets of actions, from the stores it trusts.
#[async_trait]
pub trait ActionTargets: Send + Sync {
    /// A discovery connection's grants, if the connection exists.
    async fn connection_access(&self, connection_id: &str)
    -> Result<Option<TeamAccess>, PortError>;
    /// The deletes an SSO sync run held, if the run exists.
    async fn held_deletes(&self, run_id: &str) -> Result<Option<Vec<PlannedDelete>>, PortError>;
    /// A secret by its name or ARN, if it exists.
    async fn secret(&self, secret_id: &str) -> Result<Option<SecretIdentity>, PortError>;
}

/// Where actions are recorded (DynamoDB).
#[async_trait]
pub trait ActionLog: Send + Sync {
    /// The action's record, if there is one.
    async fn action(&self, id: &str) -> Result<Option<ActionRecord>, PortError>;
    /// Records a new action; `false` when one with its id exists already.
    async fn record_new(&self, record: &ActionRecord) -> Result<bool, PortError>;
    /// Writes the action's record as it now stands.
    async fn record(&self, record: &ActionRecord) -> Result<(), PortError>;
}

/// Starts the approval workflow for an action (Step Functions).
#[async_trait]
pub trait ApprovalWorkflow: Send + Sync {
    async fn start(&self, request: &ActionRequest) -> Result<(), PortError>;
}

/// The rules of a deployment that submitting applies.
#[derive(Debug, Clone, Copy)]
pub struct SubmitRules<'a> {
    pub policy: &'a ApprovalPolicy,
    /// The team that runs Maestro.
    pub operators: &'a str,
    pub secret_owners: &'a SecretOwners,
}

/// Why an action was not submitted. Nothing was recorded or started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitError {
    #[error(transparent)]
    Invalid(#[from] InvalidAction),
    /// The target does not exist, or the caller may not see it (which must look the same).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    NotCovered(#[from] PolicyError),
    /// The same action was asked for already (held deletes are asked once per held set).
    #[error("{what} was asked for already as action {id}: see GET /actions/{id}")]
    AskedAlready { id: String, what: String },
    #[error("{0}")]
    Unavailable(PortError),
    /// Recorded, but its workflow did not start: the record says it failed, unless
    /// `unrecorded` says why that write failed too.
    #[error("action {id} did not start: {cause}")]
    NotStarted {
        id: String,
        cause: PortError,
        unrecorded: Option<PortError>,
    },
}

impl SubmitError {
    /// The HTTP status that says so.
    pub fn status(&self) -> i64 {
        match self {
            SubmitError::Invalid(_) => 400,
            SubmitError::Forbidden(_) | SubmitError::NotCovered(_) => 403,
            SubmitError::NotFound(_) => 404,
            SubmitError::AskedAlready { .. } => 409,
            SubmitError::Unavailable(_) | SubmitError::NotStarted { .. } => 503,
        }
    }
}

/// An action on its way: its id, and whether it awaits an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    pub id: String,
    pub status: ActionStatus,
    pub environment: Environment,
    pub approval_required: bool,
}

/// The ports submitting uses.
pub struct SubmitPorts<'a> {
    pub targets: &'a dyn ActionTargets,
    pub log: &'a dyn ActionLog,
    pub workflow: &'a dyn ApprovalWorkflow,
}

/// Submits `submission` for `caller`: checks the input, the caller's right over the target
/// and the policy, records the action, then starts its workflow, so an action never runs
/// without a record nor stays recorded as submitted when it never started. `new_id` names
/// the action unless its target gives it an id of its own (held deletes).
pub async fn submit(
    ports: &SubmitPorts<'_>,
    rules: SubmitRules<'_>,
    caller: &Caller,
    submission: Submission,
    new_id: String,
    now: DateTime<Utc>,
) -> Result<Submitted, SubmitError> {
    let Some(requester) = caller.email.clone() else {
        return Err(SubmitError::Forbidden(
            "actions are asked for by people: sign in with a token that carries your verified email address".into(),
        ));
    };
    submission.validate()?;
    let reason = submission.reason.trim().to_owned();
    let request = resolve(ports.targets, rules, caller, submission.action, new_id)
        .await?
        .into_request(requester, reason);
    let approval_required = match rules
        .policy
        .requirement(request.action.action_type(), request.environment)?
    {
        Requirement::RunAtOnce => false,
        Requirement::Approval(_) => true,
    };
    let mut record = ActionRecord {
        request: request.clone(),
        status: ActionStatus::Submitted,
        approval_required,
        updated_at: now,
        outcome: None,
    };
    match ports.log.record_new(&record).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(SubmitError::AskedAlready {
                id: request.id,
                what: request.action.title().to_owned(),
            });
        }
        Err(e) => return Err(SubmitError::Unavailable(e)),
    }
    if let Err(e) = ports.workflow.start(&request).await {
        // Recorded as failed rather than left looking submitted.
        record.status = ActionStatus::Failed;
        record.outcome = Some(Outcome::Failed {
            error: "NotStarted".into(),
            cause: e.to_string(),
        });
        let unrecorded = ports.log.record(&record).await.err();
        return Err(SubmitError::NotStarted {
            id: request.id,
            cause: e,
            unrecorded,
        });
    }
    Ok(Submitted {
        id: request.id,
        status: if approval_required {
            ActionStatus::AwaitingApproval
        } else {
            ActionStatus::Running
        },
        environment: request.environment,
        approval_required,
    })
}

/// An action whose target was found and whose caller may ask for it.
struct Resolved {
    id: String,
    action: Action,
    environment: Environment,
}

impl Resolved {
    fn into_request(self, requester: String, reason: String) -> ActionRequest {
        ActionRequest {
            id: self.id,
            action: self.action,
            environment: self.environment,
            requester,
            reason,
        }
    }
}

fn unavailable(error: PortError) -> SubmitError {
    SubmitError::Unavailable(error)
}

/// The rules of each action type: who may ask, and in which environment it lands.
async fn resolve(
    targets: &dyn ActionTargets,
    rules: SubmitRules<'_>,
    caller: &Caller,
    action: Action,
    new_id: String,
) -> Result<Resolved, SubmitError> {
    match action {
        Action::ConnectionDelete { connection_id } => {
            let grants = targets
                .connection_access(&connection_id)
                .await
                .map_err(unavailable)?;
            let held = grants.and_then(|g| caller.access_to(&g, rules.operators));
            match held {
                None => Err(SubmitError::NotFound(format!(
                    "no connection {connection_id}"
                ))),
                Some(access) if access < Access::Admin => Err(SubmitError::Forbidden(format!(
                    "deleting connection {connection_id} needs admin on it; you hold {}",
                    access.as_str()
                ))),
                // A connection is an account's whole inventory feed: it counts as production.
                Some(_) => Ok(Resolved {
                    id: new_id,
                    action: Action::ConnectionDelete { connection_id },
                    environment: Environment::Production,
                }),
            }
        }
        Action::SecretRotateNow { secret_id } => {
            let secret = targets
                .secret(&secret_id)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| SubmitError::NotFound(format!("no secret {secret_id}")))?;
            let owner = rules.secret_owners.owner_of(&secret.name);
            if !owner.may_act(caller, rules.operators) {
                // Secrets are listed by owning team: another team's secret does not exist.
                return Err(SubmitError::NotFound(format!("no secret {secret_id}")));
            }
            Ok(Resolved {
                id: new_id,
                action: Action::SecretRotateNow {
                    secret_id: secret.arn,
                },
                environment: owner.environment,
            })
        }
        Action::SsoApplyDeletes { run_id } => {
            if !caller.is_operator(rules.operators) {
                return Err(SubmitError::Forbidden(
                    "only Maestro's operators apply the deletes an SSO sync held".into(),
                ));
            }
            let held = targets
                .held_deletes(&run_id)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| SubmitError::NotFound(format!("no SSO sync run {run_id}")))?;
            // The same id the sync itself asks with: a held set is asked about once, and a
            // rejection stands until what is held changes.
            let request = held_deletes_request(&run_id, &held).ok_or_else(|| {
                SubmitError::Invalid(InvalidAction {
                    field: "parameters.runId",
                    problem: format!("SSO sync run {run_id} held no deletes"),
                })
            })?;
            Ok(Resolved {
                id: request.id,
                action: request.action,
                environment: request.environment,
            })
        }
        // An endpoint outside Maestro: nothing tells where it lands, so it counts as
        // production.
        action @ Action::Webhook { .. } => Ok(Resolved {
            id: new_id,
            action,
            environment: Environment::Production,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::access::{SecretOwner, SecretOwnerRule};
    use crate::approvals::action::WebhookMethod;
    use crate::approvals::policy::{Approval, PolicyRule};
    use crate::sso::plan::HoldReason;
    use crate::sso::synthetic;

    const OPERATORS: &str = "maestro-operators";

    #[derive(Default)]
    struct Fakes {
        connections: BTreeMap<String, TeamAccess>,
        runs: BTreeMap<String, Vec<PlannedDelete>>,
        secrets: Vec<SecretIdentity>,
        recorded: Mutex<BTreeMap<String, ActionRecord>>,
        started: Mutex<Vec<ActionRequest>>,
    }

    #[async_trait]
    impl ActionTargets for Fakes {
        async fn connection_access(&self, id: &str) -> Result<Option<TeamAccess>, PortError> {
            Ok(self.connections.get(id).cloned())
        }
        async fn held_deletes(&self, id: &str) -> Result<Option<Vec<PlannedDelete>>, PortError> {
            Ok(self.runs.get(id).cloned())
        }
        async fn secret(&self, id: &str) -> Result<Option<SecretIdentity>, PortError> {
            Ok(self
                .secrets
                .iter()
                .find(|s| s.arn == id || s.name == id)
                .cloned())
        }
    }

    #[async_trait]
    impl ActionLog for Fakes {
        async fn action(&self, id: &str) -> Result<Option<ActionRecord>, PortError> {
            Ok(self.recorded.lock().unwrap().get(id).cloned())
        }
        async fn record_new(&self, record: &ActionRecord) -> Result<bool, PortError> {
            let mut recorded = self.recorded.lock().unwrap();
            if recorded.contains_key(&record.request.id) {
                return Ok(false);
            }
            recorded.insert(record.request.id.clone(), record.clone());
            Ok(true)
        }
        async fn record(&self, record: &ActionRecord) -> Result<(), PortError> {
            self.recorded
                .lock()
                .unwrap()
                .insert(record.request.id.clone(), record.clone());
            Ok(())
        }
    }

    #[async_trait]
    impl ApprovalWorkflow for Fakes {
        async fn start(&self, request: &ActionRequest) -> Result<(), PortError> {
            self.started.lock().unwrap().push(request.clone());
            Ok(())
        }
    }

    fn estate() -> Fakes {
        let held = |account, environment| PlannedDelete {
            assignment: synthetic::group_assignment(account, 0, 1),
            environment,
            held: Some(HoldReason::ProtectedEnvironment { environment }),
        };
        Fakes {
            connections: BTreeMap::from([(
                "payments-production".to_owned(),
                TeamAccess::from([("payments".to_owned(), Access::Write)]),
            )]),
            runs: BTreeMap::from([
                (
                    "run-1".to_owned(),
                    vec![
                        held(1, Environment::Development),
                        held(2, Environment::Production),
                    ],
                ),
                ("run-empty".to_owned(), vec![]),
            ]),
            secrets: vec![
                SecretIdentity {
                    arn: "arn:aws:secretsmanager:eu-west-1:111111111111:secret:prod/payments/db-AbCdEf"
                        .into(),
                    name: "prod/payments/db".into(),
                },
                SecretIdentity {
                    arn: "arn:aws:secretsmanager:eu-west-1:111111111111:secret:dev/search/db-XyZ012"
                        .into(),
                    name: "dev/search/db".into(),
                },
            ],
            ..Fakes::default()
        }
    }

    fn owners() -> SecretOwners {
        SecretOwners {
            rules: vec![
                SecretOwnerRule {
                    prefix: "prod/payments/".into(),
                    owner: SecretOwner {
                        team: Some("payments".into()),
                        environment: Environment::Production,
                    },
                },
                SecretOwnerRule {
                    prefix: "dev/search/".into(),
                    owner: SecretOwner {
                        team: Some("search".into()),
                        environment: Environment::Development,
                    },
                },
            ],
        }
    }

    /// Runs at once everywhere but production, where one approval is needed.
    fn policy() -> ApprovalPolicy {
        let everything = |action| {
            [
                PolicyRule {
                    action,
                    environments: Some(BTreeSet::from([Environment::Production])),
                    approval: Some(Approval {
                        approvers: vec!["carol@example.com".into()],
                        quorum: 1,
                        timeout_minutes: 60,
                        requester_may_approve: false,
                    }),
                },
                PolicyRule {
                    action,
                    environments: None,
                    approval: None,
                },
            ]
        };
        use crate::approvals::action::ActionType::*;
        ApprovalPolicy {
            rules: [SsoApplyDeletes, SecretRotateNow, ConnectionDelete, Webhook]
                .into_iter()
                .flat_map(everything)
                .collect(),
        }
    }

    fn caller(teams: &[&str]) -> Caller {
        Caller {
            subject: "s-1".into(),
            email: Some("dave@example.com".into()),
            teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    async fn ask(fakes: &Fakes, caller: &Caller, action: Action) -> Result<Submitted, SubmitError> {
        let policy = policy();
        let owners = owners();
        let rules = SubmitRules {
            policy: &policy,
            operators: OPERATORS,
            secret_owners: &owners,
        };
        let ports = SubmitPorts {
            targets: fakes,
            log: fakes,
            workflow: fakes,
        };
        let submission = Submission {
            action,
            reason: "the incident of this morning".into(),
        };
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
        submit(&ports, rules, caller, submission, "act-1".into(), now).await
    }

    fn delete(connection: &str) -> Action {
        Action::ConnectionDelete {
            connection_id: connection.into(),
        }
    }

    fn rotate(secret: &str) -> Action {
        Action::SecretRotateNow {
            secret_id: secret.into(),
        }
    }

    #[test]
    fn a_submission_that_names_its_environment_is_refused() {
        let refused = Submission::from_json(
            r#"{"action": {"type": "CONNECTION_DELETE", "parameters": {"connectionId": "c"}},
                "environment": "DEVELOPMENT", "reason": "tidy up"}"#,
        )
        .unwrap_err();
        assert_eq!(refused.field, "environment");
        let read = Submission::from_json(
            r#"{"action": {"type": "CONNECTION_DELETE", "parameters": {"connectionId": "c"}},
                "reason": "tidy up"}"#,
        )
        .unwrap();
        assert_eq!(read.action, delete("c"));
    }

    #[test]
    fn a_reason_is_one_line_of_plain_text() {
        assert!(validate_reason("rotate after the leak").is_ok());
        assert_eq!(
            validate_reason("ok\nApprove: https://evil.example")
                .unwrap_err()
                .field,
            "reason"
        );
        assert!(validate_reason("\u{202E}desrever").is_err());
        assert!(validate_reason("   ").is_err());
    }

    #[tokio::test]
    async fn deleting_a_connection_needs_admin_on_it_and_counts_as_production() {
        let fakes = estate();
        let writer = ask(
            &fakes,
            &caller(&["payments"]),
            delete("payments-production"),
        )
        .await;
        assert!(
            matches!(&writer, Err(SubmitError::Forbidden(m)) if m.contains("needs admin")),
            "{writer:?}"
        );
        let stranger = ask(&fakes, &caller(&["search"]), delete("payments-production")).await;
        assert!(
            matches!(stranger, Err(SubmitError::NotFound(_))),
            "{stranger:?}"
        );
        assert!(fakes.recorded.lock().unwrap().is_empty());
        assert!(fakes.started.lock().unwrap().is_empty());

        let operator = ask(&fakes, &caller(&[OPERATORS]), delete("payments-production"))
            .await
            .unwrap();
        assert_eq!(operator.environment, Environment::Production);
        assert!(operator.approval_required);
        assert_eq!(
            fakes.started.lock().unwrap()[0].requester,
            "dave@example.com"
        );
    }

    #[tokio::test]
    async fn a_secret_lands_in_its_owners_environment_and_only_its_team_may_rotate_it() {
        let fakes = estate();
        let outsider = ask(&fakes, &caller(&["search"]), rotate("prod/payments/db")).await;
        assert!(
            matches!(outsider, Err(SubmitError::NotFound(_))),
            "{outsider:?}"
        );
        let owner = ask(&fakes, &caller(&["payments"]), rotate("prod/payments/db"))
            .await
            .unwrap();
        assert_eq!(owner.environment, Environment::Production);
        assert!(owner.approval_required);
        let started = fakes.started.lock().unwrap()[0].clone();
        assert_eq!(
            started.action,
            rotate("arn:aws:secretsmanager:eu-west-1:111111111111:secret:prod/payments/db-AbCdEf")
        );

        let fakes = estate();
        let development = ask(&fakes, &caller(&["search"]), rotate("dev/search/db"))
            .await
            .unwrap();
        assert_eq!(development.environment, Environment::Development);
        assert!(!development.approval_required);
    }

    #[tokio::test]
    async fn a_secret_no_rule_names_is_production_and_its_operators_alone() {
        let mut fakes = estate();
        fakes.secrets.push(SecretIdentity {
            arn: "arn:aws:secretsmanager:eu-west-1:111111111111:secret:misc-Q1w2E3".into(),
            name: "misc".into(),
        });
        let member = ask(&fakes, &caller(&["payments"]), rotate("misc")).await;
        assert!(
            matches!(member, Err(SubmitError::NotFound(_))),
            "{member:?}"
        );
        let operator = ask(&fakes, &caller(&[OPERATORS]), rotate("misc"))
            .await
            .unwrap();
        assert_eq!(operator.environment, Environment::Production);
    }

    #[tokio::test]
    async fn held_deletes_are_asked_by_operators_once_per_held_set_in_their_own_environment() {
        let fakes = estate();
        let apply = || Action::SsoApplyDeletes {
            run_id: "run-1".into(),
        };
        let member = ask(&fakes, &caller(&["payments"]), apply()).await;
        assert!(
            matches!(member, Err(SubmitError::Forbidden(_))),
            "{member:?}"
        );

        let first = ask(&fakes, &caller(&[OPERATORS]), apply()).await.unwrap();
        assert_eq!(first.environment, Environment::Production);
        assert!(first.id.starts_with("sso-deletes-"), "{first:?}");
        // Asking again (after a rejection, say) is the same request, refused.
        let again = ask(&fakes, &caller(&[OPERATORS]), apply()).await;
        assert!(
            matches!(&again, Err(SubmitError::AskedAlready { id, .. }) if *id == first.id),
            "{again:?}"
        );
        let empty = ask(
            &fakes,
            &caller(&[OPERATORS]),
            Action::SsoApplyDeletes {
                run_id: "run-empty".into(),
            },
        )
        .await;
        assert!(matches!(empty, Err(SubmitError::Invalid(_))), "{empty:?}");
        assert_eq!(fakes.started.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_webhook_counts_as_production_and_a_caller_without_a_verified_email_asks_nothing() {
        let fakes = estate();
        let hook = || Action::Webhook {
            url: "https://ci.example.com/jobs/deploy".into(),
            method: WebhookMethod::Post,
            body: None,
        };
        let submitted = ask(&fakes, &caller(&["payments"]), hook()).await.unwrap();
        assert_eq!(submitted.environment, Environment::Production);
        let mut anonymous = caller(&[OPERATORS]);
        anonymous.email = None;
        assert!(matches!(
            ask(&fakes, &anonymous, hook()).await,
            Err(SubmitError::Forbidden(_))
        ));
    }
}
