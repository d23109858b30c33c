//! Claims on event ids in DynamoDB: one item per key (`pk`), with its status and an
//! `expiresAt` that both bounds a claim and lets DynamoDB's TTL forget old keys.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use maestro_domain::idempotency::{Claim, IdempotencyStore};
use maestro_domain::port::PortError;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "dynamodb";

pub struct DynamoIdempotency {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoIdempotency {
    pub fn new(config: &SdkConfig, table: String) -> Self {
        DynamoIdempotency {
            client: aws_sdk_dynamodb::Client::new(config),
            table,
        }
    }
}

fn epoch(time: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(time.timestamp().to_string())
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Claim, PortError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.to_owned()))
            .item("status", AttributeValue::S("IN_PROGRESS".into()))
            .item("expiresAt", epoch(until))
            .condition_expression("attribute_not_exists(pk) OR expiresAt < :now")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_values(":now", epoch(now))
            .send()
            .await;
        // A claim that is taken comes back with the refusal: done, or still being done (or
        // its holder died before the claim expired).
        let error = match put {
            Ok(_) => return Ok(Claim::First),
            Err(error) => error,
        };
        let taken = match &error {
            SdkError::ServiceError(context) => match context.err() {
                PutItemError::ConditionalCheckFailedException(failed) => Some(
                    failed
                        .item()
                        .and_then(|item| item.get("status"))
                        .and_then(|status| status.as_s().ok())
                        .is_some_and(|status| status == "COMPLETED"),
                ),
                _ => None,
            },
            _ => None,
        };
        match taken {
            Some(true) => Ok(Claim::Completed),
            Some(false) => Ok(Claim::InProgress),
            None => Err(port_error(SERVICE, key, error)),
        }
    }

    async fn complete(&self, key: &str, until: DateTime<Utc>) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.to_owned()))
            .item("status", AttributeValue::S("COMPLETED".into()))
            .item("expiresAt", epoch(until))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, key, e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, key, e))?;
        Ok(())
    }
}
