//! Claims on event ids in DynamoDB: one item per key (`pk`), with its status and an
//! `expiresAt` that both bounds a claim and lets DynamoDB's TTL forget old keys.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use maestro_domain::idempotency::{Claim, IdempotencyStore};
use maestro_domain::port::PortError;

use crate::SdkConfig;
use crate::sdk_error::{port_error, written};

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
            .expression_attribute_values(":now", epoch(now))
            .send()
            .await;
        if written(SERVICE, key, put)? {
            return Ok(Claim::First);
        }
        // Taken: done, or still being done (or its holder died before its claim expired).
        let held = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, key, e))?;
        let completed = held
            .item
            .as_ref()
            .and_then(|item| item.get("status"))
            .and_then(|status| status.as_s().ok())
            .is_some_and(|status| status == "COMPLETED");
        Ok(if completed {
            Claim::Completed
        } else {
            Claim::InProgress
        })
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
