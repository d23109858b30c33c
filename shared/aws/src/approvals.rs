//! Approval requests in DynamoDB, one item each (`pk` = `APPROVAL#<id>`):
//!
//! | attribute | holds |
//! | --- | --- |
//! | `request` | the request's JSON without its votes or status |
//! | `status` | PENDING until settled |
//! | `votes` | approver → `{vote, record}` (the vote, and the record's JSON) |
//! | `taskToken` | the waiting execution's token; read only by the one settle that wins |
//!
//! Votes and settlement are conditional updates, so a replayed or concurrent POST counts
//! once and exactly one caller gets the token.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use maestro_domain::approvals::request::{
    ApprovalRequest, ApprovalStore, Status, TaskToken, VoteRecord,
};
use maestro_domain::approvals::tally::Vote;
use maestro_domain::port::PortError;

use crate::SdkConfig;
use crate::sdk_error::port_error;

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

    /// Stores a new request with every vote pending, and the token apart from it.
    pub async fn create(
        &self,
        request: &ApprovalRequest,
        task_token: &TaskToken,
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
}
