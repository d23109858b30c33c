//! One DynamoDB item holding a map that several writers change at once (the operation slots,
//! the delete budget): read with its version, written back only if no one wrote in between.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use maestro_domain::port::PortError;

use crate::sdk_error::{port_error, written};

const SERVICE: &str = "dynamodb";

/// The item at `key` in `table`, whose map is the attribute `map`.
pub(crate) struct VersionedMap<'a> {
    pub client: &'a aws_sdk_dynamodb::Client,
    pub table: &'a str,
    pub key: HashMap<String, AttributeValue>,
    pub map: &'static str,
}

impl VersionedMap<'_> {
    /// The map's entries and the item's version (0 when there is no item yet), read
    /// consistently.
    pub async fn read(&self) -> Result<(HashMap<String, AttributeValue>, i64), PortError> {
        let item = self
            .client
            .get_item()
            .table_name(self.table)
            .set_key(Some(self.key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, self.table, e))?
            .item
            .unwrap_or_default();
        let entries = item
            .get(self.map)
            .and_then(|m| m.as_m().ok())
            .cloned()
            .unwrap_or_default();
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok((entries, version))
    }

    /// Writes `entries`, and `also`, if the item is still at `version`; `false` when another
    /// writer won.
    pub async fn write(
        &self,
        entries: HashMap<String, AttributeValue>,
        version: i64,
        also: &[(&str, AttributeValue)],
    ) -> Result<bool, PortError> {
        let mut item = self.key.clone();
        item.insert(self.map.to_owned(), AttributeValue::M(entries));
        item.insert(
            "version".to_owned(),
            AttributeValue::N((version + 1).to_string()),
        );
        for (name, value) in also {
            item.insert((*name).to_owned(), value.clone());
        }
        let put = self
            .client
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR version = :version")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .send()
            .await;
        written(SERVICE, self.table, put)
    }
}
