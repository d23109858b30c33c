//! A lease in one DynamoDB item: one holder at a time for a piece of work, until a time, so
//! that a holder that stopped without freeing it frees it by expiring. The SSO full run and
//! each discovery scope hold one.
//!
//! The item holds `holder`, `until` (epoch seconds) and `expiresAt` (a day later, for the
//! table's TTL). Taking it is one conditional write: it lands only if the item is absent,
//! expired, or the holder's own.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use maestro_domain::port::PortError;

use crate::sdk_error::{port_error, written};

const SERVICE: &str = "dynamodb";

/// A time as DynamoDB's TTL and the leases' conditions read it: epoch seconds.
pub(crate) fn epoch(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp().to_string())
}

/// The lease item at `key` in `table`.
pub struct LeaseItem<'a> {
    pub client: &'a aws_sdk_dynamodb::Client,
    pub table: &'a str,
    pub key: HashMap<String, AttributeValue>,
    /// What the lease is for, in errors.
    pub what: &'a str,
}

impl LeaseItem<'_> {
    /// Takes the lease for `holder` until `until`, or keeps it if `holder` has it; answers
    /// who holds it when someone else does.
    pub async fn take(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, PortError> {
        let put = self
            .client
            .put_item()
            .table_name(self.table)
            .set_item(Some(
                self.key
                    .clone()
                    .into_iter()
                    .chain([
                        ("holder".to_owned(), AttributeValue::S(holder.to_owned())),
                        ("until".to_owned(), epoch(until)),
                        (
                            "expiresAt".to_owned(),
                            epoch(until + chrono::Duration::days(1)),
                        ),
                    ])
                    .collect(),
            ))
            .condition_expression("attribute_not_exists(holder) OR holder = :me OR #until < :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":me", AttributeValue::S(holder.to_owned()))
            .expression_attribute_values(":now", epoch(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match put {
            Ok(_) => return Ok(None),
            Err(error) => error,
        };
        if let SdkError::ServiceError(context) = &error
            && let PutItemError::ConditionalCheckFailedException(failed) = context.err()
        {
            let holder = failed
                .item()
                .and_then(|item| item.get("holder"))
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_else(|| "another holder".to_owned());
            return Ok(Some(holder));
        }
        Err(port_error(SERVICE, self.what, error))
    }

    /// Frees the lease if `holder` holds it. The item stays until the table's TTL removes
    /// it: freeing is an update, which every holder may make, where a delete would be one
    /// more permission on the table.
    pub async fn release(&self, holder: &str) -> Result<(), PortError> {
        let freed = self
            .client
            .update_item()
            .table_name(self.table)
            .set_key(Some(self.key.clone()))
            .update_expression("REMOVE holder")
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        // Not held by `holder` (any more): nothing to free.
        written(SERVICE, self.what, freed).map(|_| ())
    }
}
