//! Reconcile runs in DynamoDB.
//!
//! A run's record can outgrow DynamoDB's 400 KB item limit (a first run on a large
//! organisation plans tens of thousands of creates), so it is stored as JSON in chunks:
//!
//! | pk | sk | holds |
//! | --- | --- | --- |
//! | `SSO_RUNS` | `<startedAt>#<runId>` | the run's id, outcome and chunk count, for listing |
//! | `SSO_RUN#<runId>` | `CHUNK#<n>` | the n-th piece of the record's JSON |
//! | `SSO_RUN#<runId>` | `REPORT#<requestId>` | the monitor's final report of one request |
//! | `SSO_DELETES` | `<window seconds>#<window number>` | the deletes every run made in one window (`deletes`) |

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use maestro_domain::port::PortError;
use maestro_domain::sso::provisioning::{ProvisioningReport, ReportLog};
use maestro_domain::sso::reconcile::{DeleteBudget, PlanStore, RunRecord, Spent};

use crate::SdkConfig;
use crate::sdk_error::{port_error, written};

const SERVICE: &str = "dynamodb";
const RUNS: &str = "SSO_RUNS";
const DELETES: &str = "SSO_DELETES";
/// Well under the 400 KB item limit, leaving room for the keys.
const CHUNK_BYTES: usize = 300 * 1024;
/// Runs are kept this long, then DynamoDB's TTL removes them.
const RETENTION_DAYS: i64 = 400;

pub struct DynamoPlanStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoPlanStore {
    pub fn new(config: &SdkConfig, table: String) -> Self {
        DynamoPlanStore {
            client: aws_sdk_dynamodb::Client::new(config),
            table,
        }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn rejected(detail: String) -> PortError {
    PortError::Rejected {
        service: SERVICE,
        detail,
    }
}

/// Splits `text` into pieces of at most `max` bytes, on character boundaries.
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[async_trait]
impl PlanStore for DynamoPlanStore {
    async fn save(&self, run: &RunRecord) -> Result<(), PortError> {
        let json = serde_json::to_string(run).map_err(|e| rejected(e.to_string()))?;
        let expires = (run.started_at + chrono::Duration::days(RETENTION_DAYS)).timestamp();
        let pieces = chunks(&json, CHUNK_BYTES);
        // Chunks first: the listing item makes the run visible only once it is whole.
        for (n, piece) in pieces.iter().enumerate() {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(format!("SSO_RUN#{}", run.run_id)))
                .item("sk", s(format!("CHUNK#{n:05}")))
                .item("json", s(*piece))
                .item("expiresAt", AttributeValue::N(expires.to_string()))
                .send()
                .await
                .map_err(|e| port_error(SERVICE, &self.table, e))?;
        }
        let outcome = serde_json::to_string(&run.outcome).map_err(|e| rejected(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(RUNS))
            .item(
                "sk",
                s(format!("{}#{}", run.started_at.to_rfc3339(), run.run_id)),
            )
            .item("runId", s(&run.run_id))
            .item("outcome", s(outcome))
            .item("chunks", AttributeValue::N(pieces.len().to_string()))
            .item("expiresAt", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?;
        Ok(())
    }

    async fn latest(&self) -> Result<Option<RunRecord>, PortError> {
        let newest = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :runs")
            .expression_attribute_values(":runs", s(RUNS))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?
            .items
            .unwrap_or_default()
            .into_iter()
            .next();
        let Some(newest) = newest else {
            return Ok(None);
        };
        let run_id = text(&newest, "runId")?;
        self.get(&run_id).await
    }

    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, PortError> {
        let mut json = String::new();
        let mut reports = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :run")
            .expression_attribute_values(":run", s(format!("SSO_RUN#{run_id}")))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, &self.table, e))?;
            for item in page.items.unwrap_or_default() {
                // Items come sorted by sk: the CHUNK#s in order, then the REPORT#s.
                let sk = text(&item, "sk")?;
                if sk.starts_with("CHUNK#") {
                    json.push_str(&text(&item, "json")?);
                } else if sk.starts_with("REPORT#") {
                    let report: ProvisioningReport = serde_json::from_str(&text(&item, "json")?)
                        .map_err(|e| {
                            rejected(format!("a report of run {run_id} does not read back: {e}"))
                        })?;
                    reports.push(report);
                }
            }
        }
        if json.is_empty() {
            return Ok(None);
        }
        let mut run: RunRecord = serde_json::from_str(&json)
            .map_err(|e| rejected(format!("run {run_id} does not read back: {e}")))?;
        run.reports = reports;
        Ok(Some(run))
    }
}

#[async_trait]
impl ReportLog for DynamoPlanStore {
    async fn record(&self, report: &ProvisioningReport) -> Result<(), PortError> {
        let Some(run_id) = &report.request.run_id else {
            return Ok(());
        };
        let json = serde_json::to_string(report).map_err(|e| rejected(e.to_string()))?;
        let expires = (report.checked_at + chrono::Duration::days(RETENTION_DAYS)).timestamp();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("SSO_RUN#{run_id}")))
            .item("sk", s(format!("REPORT#{}", report.request.request_id)))
            .item("json", s(json))
            .item("expiresAt", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?;
        Ok(())
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String, PortError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| rejected(format!("an item has no {name}")))
}

impl DynamoPlanStore {
    /// The deletes counted in one window, read consistently.
    async fn deletes_in(&self, window: &str) -> Result<usize, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(DELETES))
            .key("sk", s(window))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?
            .item;
        Ok(item
            .as_ref()
            .and_then(|item| item.get("deletes"))
            .and_then(|n| n.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }
}

/// Fixed windows of `window_minutes`, counted with the one before: what a run may delete is
/// judged on the last one to two windows, never on less than one.
#[async_trait]
impl DeleteBudget for DynamoPlanStore {
    async fn spend(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        window_minutes: u32,
        deletes: usize,
        threshold: usize,
    ) -> Result<Spent, PortError> {
        let seconds = i64::from(window_minutes.max(1)) * 60;
        let number = now.timestamp().div_euclid(seconds);
        // The window's length is in the key: a changed window starts its count afresh.
        let window = |n: i64| format!("{seconds}#{n}");
        let previous = self.deletes_in(&window(number - 1)).await?;
        let current = window(number);
        if let Some(room) = threshold.checked_sub(previous + deletes) {
            // Counted only if the window still holds no more than `room`: runs at the same
            // moment cannot both squeeze under the threshold.
            let counted = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(DELETES))
                .key("sk", s(&current))
                .update_expression("ADD deletes :n SET expiresAt = :expires")
                .condition_expression("attribute_not_exists(deletes) OR deletes <= :room")
                .expression_attribute_values(":n", AttributeValue::N(deletes.to_string()))
                .expression_attribute_values(":room", AttributeValue::N(room.to_string()))
                .expression_attribute_values(
                    ":expires",
                    AttributeValue::N((now.timestamp() + 3 * seconds).to_string()),
                )
                .send()
                .await;
            if written(SERVICE, &current, counted)? {
                return Ok(Spent::Within);
            }
        }
        let recent = previous + self.deletes_in(&current).await?;
        Ok(Spent::Over { recent })
    }
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cut_on_character_boundaries_and_rejoin() {
        let text = "ééééé-abc";
        let pieces = chunks(text, 3);
        assert!(pieces.iter().all(|p| p.len() <= 3));
        assert_eq!(pieces.concat(), text);
        assert!(chunks("", 3).is_empty());
    }
}
