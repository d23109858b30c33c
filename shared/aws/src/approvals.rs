//! Approval requests in DynamoDB, one item each (`pk` = `APPROVAL#<id>`):
//!
//! | attribute | holds |
//! | --- | --- |
//! | `request` | the request's JSON without its votes or status |
//! | `status` | PENDING until settled |
//! | `votes` | approver → `{vote, record}` (the vote, and the record's JSON) |
//! | `taskToken` | the waiting execution's token; read only by the one settle that wins |
//! | `createdAt` | when it was opened: the sort key of the `byStatus` index |
//!
//! Actions have their own items (`pk` = `ACTION#<id>`, the record's JSON in `record`), so an
//! action that ran without an approval is recorded all the same.
//!
//! Votes and settlement are conditional updates, so a replayed or concurrent POST counts
//! once and exactly one caller gets the token.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::Utc;
use maestro_domain::access::{Caller, SecretOwners, TeamAccess};
use maestro_domain::approvals::link::LinkSecret;
use maestro_domain::approvals::policy::ApprovalPolicy;
use maestro_domain::approvals::request::{
    ApprovalRequest, ApprovalStore, Status, TaskToken, VoteRecord,
};
use maestro_domain::approvals::submit::{
    ActionLog, ActionTargets, SecretIdentity, Submission, SubmitError, SubmitPorts, SubmitRules,
    Submitted, submit,
};
use maestro_domain::approvals::tally::Vote;
use maestro_domain::approvals::workflow::ActionRecord;
use maestro_domain::port::PortError;
use maestro_domain::sso::plan::PlannedDelete;
use maestro_domain::sso::reconcile::PlanStore;

use crate::SdkConfig;
use crate::env::{EnvError, EnvReader, FunctionEnv};
use crate::inventory::DynamoInventory;
use crate::plan_store::DynamoPlanStore;
use crate::sdk_error::{port_error, written};
use crate::secrets::SecretsManager;
use crate::step_functions::ApprovalWorkflowStarter;

const SERVICE: &str = "dynamodb";

pub struct DynamoApprovals {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn rejected(detail: String) -> PortError {
    PortError::Rejected {
        service: SERVICE,
        detail,
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, PortError> {
    serde_json::to_string(value).map_err(|e| rejected(e.to_string()))
}

fn status_text(status: Status) -> Result<String, PortError> {
    Ok(json(&status)?.trim_matches('"').to_owned())
}

fn vote_text(vote: Vote) -> Result<String, PortError> {
    Ok(json(&vote)?.trim_matches('"').to_owned())
}

impl DynamoApprovals {
    pub fn new(config: &SdkConfig, table: String) -> Self {
        DynamoApprovals {
            client: aws_sdk_dynamodb::Client::new(config),
            table,
        }
    }

    /// The approvals with `status`, newest first, at most `limit`.
    pub async fn with_status(
        &self,
        status: Status,
        limit: i32,
    ) -> Result<Vec<ApprovalRequest>, PortError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("byStatus")
            .key_condition_expression("#s = :status")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":status", s(status_text(status)?))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "the approvals", e))?
            .items
            .unwrap_or_default();
        items.iter().map(Self::request_of).collect()
    }

    fn request_of(item: &Item) -> Result<ApprovalRequest, PortError> {
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or_else(|| rejected(format!("an approval item has no {name}")))
        };
        let mut request: ApprovalRequest =
            serde_json::from_str(&text("request")?).map_err(|e| rejected(e.to_string()))?;
        request.status = serde_json::from_str(&format!("\"{}\"", text("status")?))
            .map_err(|e| rejected(e.to_string()))?;
        let votes = item
            .get("votes")
            .and_then(|v| v.as_m().ok())
            .ok_or_else(|| rejected("an approval item has no votes".into()))?;
        for (approver, vote) in votes {
            let record = vote
                .as_m()
                .ok()
                .and_then(|m| m.get("record"))
                .and_then(|r| r.as_s().ok())
                .ok_or_else(|| rejected(format!("the vote of {approver} is unreadable")))?;
            let record: VoteRecord =
                serde_json::from_str(record).map_err(|e| rejected(e.to_string()))?;
            request.votes.insert(approver.clone(), record);
        }
        Ok(request)
    }
}

fn lost_condition<E>(error: &SdkError<UpdateItemError, E>) -> bool {
    matches!(error, SdkError::ServiceError(context)
        if matches!(context.err(), UpdateItemError::ConditionalCheckFailedException(_)))
}

#[async_trait]
impl ApprovalStore for DynamoApprovals {
    async fn create(
        &self,
        request: &ApprovalRequest,
        task_token: &TaskToken,
        secret: &LinkSecret,
    ) -> Result<(), PortError> {
        let mut bare = request.clone();
        bare.votes.clear();
        let mut votes = HashMap::new();
        for (approver, record) in &request.votes {
            votes.insert(
                approver.clone(),
                AttributeValue::M(HashMap::from([
                    ("vote".to_owned(), s(vote_text(record.vote)?)),
                    ("record".to_owned(), s(json(record)?)),
                ])),
            );
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("APPROVAL#{}", request.id)))
            .item("request", s(json(&bare)?))
            .item("status", s(status_text(request.status)?))
            .item("votes", AttributeValue::M(votes))
            .item("taskToken", s(task_token.reveal()))
            .item("linkSecret", s(secret.to_text()))
            .item("createdAt", s(request.created_at.to_rfc3339()))
            .item(
                "expiresAt",
                AttributeValue::N((request.expires_at.timestamp() + 400 * 86_400).to_string()),
            )
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &request.id, e))?;
        Ok(())
    }

    async fn replace_token(&self, id: &str, task_token: &TaskToken) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("APPROVAL#{id}")))
            .update_expression("SET taskToken = :token")
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":token", s(task_token.reveal()))
            .expression_attribute_values(":pending", s("PENDING"))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("APPROVAL#{id}")))
            .consistent_read(true)
            .projection_expression("#r, #s, votes")
            .expression_attribute_names("#r", "request")
            .expression_attribute_names("#s", "status")
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?
            .item;
        item.as_ref().map(Self::request_of).transpose()
    }

    async fn cast(
        &self,
        id: &str,
        approver: &str,
        record: &VoteRecord,
    ) -> Result<Option<ApprovalRequest>, PortError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("APPROVAL#{id}")))
            .update_expression("SET votes.#a = :vote")
            .condition_expression("#s = :pending AND votes.#a.vote = :pending")
            .expression_attribute_names("#a", approver)
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(
                ":vote",
                AttributeValue::M(HashMap::from([
                    ("vote".to_owned(), s(vote_text(record.vote)?)),
                    ("record".to_owned(), s(json(record)?)),
                ])),
            )
            .expression_attribute_values(":pending", s("PENDING"))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match updated {
            Ok(output) => output.attributes.as_ref().map(Self::request_of).transpose(),
            Err(error) if lost_condition(&error) => Ok(None),
            Err(error) => Err(port_error(SERVICE, id, error)),
        }
    }

    async fn settle(&self, id: &str, status: Status) -> Result<Option<TaskToken>, PortError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("APPROVAL#{id}")))
            .update_expression("SET #s = :status")
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":status", s(status_text(status)?))
            .expression_attribute_values(":pending", s("PENDING"))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match updated {
            Ok(output) => {
                let token = output
                    .attributes
                    .as_ref()
                    .and_then(|item| item.get("taskToken"))
                    .and_then(|t| t.as_s().ok())
                    .cloned()
                    .ok_or_else(|| rejected(format!("approval {id} has no task token")))?;
                Ok(Some(TaskToken::new(token)))
            }
            Err(error) if lost_condition(&error) => Ok(None),
            Err(error) => Err(port_error(SERVICE, id, error)),
        }
    }

    async fn link_secret(&self, id: &str) -> Result<Option<LinkSecret>, PortError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("APPROVAL#{id}")))
            .projection_expression("linkSecret")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?;
        let Some(item) = read.item else {
            return Ok(None);
        };
        let text = item
            .get("linkSecret")
            .and_then(|v| v.as_s().ok())
            // Opened before approvals had their own secret: its links cannot be checked.
            .ok_or_else(|| PortError::NotFound {
                service: SERVICE,
                what: format!("approval {id}'s own secret"),
            })?;
        LinkSecret::from_text(text)
            .map(Some)
            .map_err(|e| rejected(format!("approval {id}'s link secret: {e}")))
    }

    async fn resettle(&self, id: &str, from: Status, to: Status) -> Result<(), PortError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("APPROVAL#{id}")))
            .update_expression("SET #s = :to")
            .condition_expression("#s = :from")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":to", s(status_text(to)?))
            .expression_attribute_values(":from", s(status_text(from)?))
            .send()
            .await;
        // `false`: another write moved it first, and there is nothing to undo.
        written(SERVICE, id, updated)?;
        Ok(())
    }
}

/// Submits actions to the approval workflow (`maestro_domain::approvals::submit`), with the
/// deployment's rules and the stores that say who may ask for what.
pub struct ActionSubmitter {
    pub policy: ApprovalPolicy,
    pub operators: String,
    pub secret_owners: SecretOwners,
    pub store: DynamoApprovals,
    pub workflow: ApprovalWorkflowStarter,
    pub targets: TrustedTargets,
}

/// A new approval's secret.
pub fn new_link_secret() -> LinkSecret {
    LinkSecret::from_random(random_bytes())
}

/// 32 bytes holding 244 random bits, from two version-4 UUIDs (the operating system's
/// generator): an approval's secret, a sign-in's state and PKCE verifier.
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes
}

/// The approval policy in `APPROVAL_POLICY`, its problems recorded with the others.
pub fn approval_policy(vars: &mut EnvReader<'_>) -> Option<ApprovalPolicy> {
    let text = vars.required("APPROVAL_POLICY");
    if text.is_empty() {
        return None;
    }
    ApprovalPolicy::from_json(&text)
        .map_err(|e| vars.problem(format!("APPROVAL_POLICY is invalid: {e}")))
        .ok()
}

/// The secrets' owners in `SECRET_OWNERS`, its problems recorded with the others.
pub fn secret_owners(vars: &mut EnvReader<'_>) -> SecretOwners {
    let text = vars.required("SECRET_OWNERS");
    SecretOwners::from_json(&text)
        .map_err(|e| vars.problem(format!("SECRET_OWNERS is invalid: {e}")))
        .unwrap_or_default()
}

impl ActionSubmitter {
    /// Reads `APPROVAL_POLICY` (JSON), `APPROVALS_TABLE`, `APPROVAL_STATE_MACHINE_ARN`,
    /// `OPERATORS_TEAM` and `SECRET_OWNERS` (JSON), and the stores of the targets the
    /// function may submit actions on: `INVENTORY_TABLE` (connections), `SSO_PLANS_TABLE`
    /// (held deletes) and `SECRETS_READABLE=true` (secrets). A target without its store is
    /// refused with a clear error.
    pub fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let policy = approval_policy(&mut vars);
        let table = vars.required("APPROVALS_TABLE");
        let state_machine = vars.required("APPROVAL_STATE_MACHINE_ARN");
        let operators = vars.required("OPERATORS_TEAM");
        let secret_owners = secret_owners(&mut vars);
        vars.finish()?;
        let policy = policy.ok_or_else(|| EnvError {
            problems: vec!["APPROVAL_POLICY is invalid".into()],
        })?;
        Ok(ActionSubmitter {
            policy,
            operators,
            secret_owners,
            store: DynamoApprovals::new(config, table),
            workflow: ApprovalWorkflowStarter::new(config, state_machine),
            targets: TrustedTargets {
                connections: env
                    .get("INVENTORY_TABLE")
                    .map(|table| DynamoInventory::new(config, table.to_owned())),
                runs: env
                    .get("SSO_PLANS_TABLE")
                    .map(|table| DynamoPlanStore::new(config, table.to_owned())),
                secrets: (env.get("SECRETS_READABLE") == Some("true"))
                    .then(|| SecretsManager::new(config)),
            },
        })
    }

    /// Submits `submission` for `caller` (see `maestro_domain::approvals::submit::submit`).
    pub async fn submit(
        &self,
        caller: &Caller,
        submission: Submission,
    ) -> Result<Submitted, SubmitError> {
        let ports = SubmitPorts {
            targets: &self.targets,
            log: &self.store,
            workflow: &self.workflow,
        };
        let rules = SubmitRules {
            policy: &self.policy,
            operators: &self.operators,
            secret_owners: &self.secret_owners,
        };
        let id = format!("act-{}", uuid::Uuid::new_v4());
        let submitted = submit(&ports, rules, caller, submission, id, Utc::now()).await;
        match &submitted {
            Ok(submitted) => tracing::info!(
                action_id = %submitted.id,
                environment = %submitted.environment,
                approval_required = submitted.approval_required,
                "action submitted"
            ),
            Err(SubmitError::NotStarted {
                id,
                cause,
                unrecorded,
            }) => {
                tracing::error!(action_id = %id, error = %cause, unrecorded = ?unrecorded, "an action's workflow did not start")
            }
            Err(refused) => tracing::info!(reason = %refused, "action refused"),
        }
        submitted
    }
}

/// The stores Maestro trusts for the targets of actions; a function has those of the
/// actions it submits.
pub struct TrustedTargets {
    pub connections: Option<DynamoInventory>,
    pub runs: Option<DynamoPlanStore>,
    pub secrets: Option<SecretsManager>,
}

fn not_wired(what: &str) -> PortError {
    PortError::Rejected {
        service: "maestro",
        detail: format!("this function is not wired to read {what}"),
    }
}

#[async_trait]
impl ActionTargets for TrustedTargets {
    async fn connection_access(
        &self,
        connection_id: &str,
    ) -> Result<Option<TeamAccess>, PortError> {
        let inventory = self
            .connections
            .as_ref()
            .ok_or_else(|| not_wired("connections"))?;
        Ok(inventory
            .connection(connection_id)
            .await?
            .map(|connection| connection.access))
    }

    async fn held_deletes(&self, run_id: &str) -> Result<Option<Vec<PlannedDelete>>, PortError> {
        let runs = self.runs.as_ref().ok_or_else(|| not_wired("SSO runs"))?;
        Ok(runs.get(run_id).await?.map(|run| {
            run.plan
                .iter()
                .flat_map(|plan| plan.held_deletes().cloned())
                .collect()
        }))
    }

    async fn secret(&self, secret_id: &str) -> Result<Option<SecretIdentity>, PortError> {
        let secrets = self.secrets.as_ref().ok_or_else(|| not_wired("secrets"))?;
        secrets.identity(secret_id).await
    }
}

#[async_trait]
impl ActionLog for DynamoApprovals {
    async fn action(&self, id: &str) -> Result<Option<ActionRecord>, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("ACTION#{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let text = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| rejected(format!("action {id} has no record")))?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| rejected(format!("action {id} does not read back: {e}")))
    }

    async fn record_new(&self, record: &ActionRecord) -> Result<bool, PortError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("ACTION#{}", record.request.id)))
            .item("record", s(json(record)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        written(SERVICE, &record.request.id, put)
    }

    async fn record(&self, record: &ActionRecord) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("ACTION#{}", record.request.id)))
            .item("record", s(json(record)?))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &record.request.id, e))?;
        Ok(())
    }
}
