//! Reconcile runs in DynamoDB.
//!
//! A run's record can outgrow DynamoDB's 400 KB item limit (a first run on a large
//! organisation plans tens of thousands of creates), so it is stored as JSON in chunks:
//!
//! | pk | sk | holds |
//! | --- | --- | --- |
//! | `SSO_RUNS` | `<startedAt>#<runId>` | the run's id, outcome and chunk count, for listing |
//! | `SSO_RUN#<runId>` | `CHUNK#<n>` | the n-th piece of the record's JSON |
//! | `SSO_RUN#<runId>` | `OUTCOME` | the run's outcome as last recorded, over the chunks' (a run feeding the queue records its progress without writing its plan again) |
//! | `SSO_RUN#<runId>` | `REPORT#<requestId>` | the monitor's final report of one request |
//! | `SSO_FULL_RUN` | `LEASE` | the full run under way (`holder`) and until when it may hold the lease (`until`) |
//! | `SSO_DELETES` | `<window seconds>` | the deletes every run made in the current and the previous window (`windows`: number → count), and a `version` |
//! | `SSO_LATEST_PLAN` | `EVERYTHING`, `ACCOUNT#<id>`, `SET#<arn>` | when the latest run that applies began that planned the scope (`plannedAt`, epoch milliseconds) |

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use maestro_domain::port::PortError;
use maestro_domain::sso::assignment_monitor::{ProvisioningReport, ReportLog};
use maestro_domain::sso::plan::Assignment;
use maestro_domain::sso::reconcile::{
    DeleteBudget, FullRunLease, LatestPlans, PlanStore, RunRecord, Scope, Spent,
};

use crate::SdkConfig;
use crate::lease::{LeaseItem, epoch};
use crate::sdk_error::{port_error, written};
use crate::versioned::VersionedMap;

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
        self.save_outcome(run).await?;
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

    async fn save_outcome(&self, run: &RunRecord) -> Result<(), PortError> {
        let outcome = serde_json::to_string(&run.outcome).map_err(|e| rejected(e.to_string()))?;
        let expires = (run.started_at + chrono::Duration::days(RETENTION_DAYS)).timestamp();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("SSO_RUN#{}", run.run_id)))
            .item("sk", s("OUTCOME"))
            .item("json", s(outcome))
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
        let mut outcome = None;
        let mut reports = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :run")
            .expression_attribute_values(":run", s(format!("SSO_RUN#{run_id}")))
            // The workflow's next step reads what its last one wrote, milliseconds later.
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, &self.table, e))?;
            for item in page.items.unwrap_or_default() {
                // Items come sorted by sk: the CHUNK#s in order, the OUTCOME, the REPORT#s.
                let sk = text(&item, "sk")?;
                if sk.starts_with("CHUNK#") {
                    json.push_str(&text(&item, "json")?);
                } else if sk == "OUTCOME" {
                    outcome = Some(serde_json::from_str(&text(&item, "json")?).map_err(|e| {
                        rejected(format!(
                            "the outcome of run {run_id} does not read back: {e}"
                        ))
                    })?);
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
        if let Some(outcome) = outcome {
            run.outcome = outcome;
        }
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

/// How often a count lost to a concurrent run is read and tried again.
const BUDGET_RACES: usize = 20;

impl DynamoPlanStore {
    /// The item that counts the deletes of windows of `seconds`.
    fn delete_budget(&self, seconds: i64) -> VersionedMap<'_> {
        VersionedMap {
            client: &self.client,
            table: &self.table,
            // The window's length is in the key: a changed window starts its count afresh.
            key: HashMap::from([
                ("pk".to_owned(), s(DELETES)),
                ("sk".to_owned(), s(seconds.to_string())),
            ]),
            map: "windows",
        }
    }
}

/// Fixed windows of `window_minutes`, counted with the one before: what a run may delete is
/// judged on the last one to two windows, never on less than one. Both windows live in one
/// item written only if no other run wrote it in between, so runs at the same moment, even
/// on either side of a window's end, cannot both squeeze under the threshold.
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
        let budget = self.delete_budget(seconds);
        for _ in 0..BUDGET_RACES {
            let (entries, version) = budget.read().await?;
            let mut windows: BTreeMap<i64, usize> = entries
                .iter()
                .filter_map(|(n, count)| Some((n.parse().ok()?, count.as_n().ok()?.parse().ok()?)))
                .collect();
            windows.retain(|n, _| *n >= number - 1);
            let recent: usize = windows.values().sum();
            if recent + deletes > threshold {
                return Ok(Spent::Over { recent });
            }
            *windows.entry(number).or_default() += deletes;
            let entries = windows
                .iter()
                .map(|(n, count)| (n.to_string(), AttributeValue::N(count.to_string())))
                .collect();
            let expires = AttributeValue::N((now.timestamp() + 3 * seconds).to_string());
            if budget
                .write(entries, version, &[("expiresAt", expires)])
                .await?
            {
                return Ok(Spent::Within);
            }
        }
        Err(PortError::Transient {
            service: SERVICE,
            detail: "too many runs counted their deletes at once".into(),
        })
    }
}

const LEASE: &str = "SSO_FULL_RUN";

/// One item names the full run under way.
#[async_trait]
impl FullRunLease for DynamoPlanStore {
    async fn take(
        &self,
        run_id: &str,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<String>, PortError> {
        self.lease().take(run_id, now, until).await
    }

    async fn release(&self, run_id: &str) -> Result<(), PortError> {
        self.lease().release(run_id).await
    }
}

impl DynamoPlanStore {
    fn lease(&self) -> LeaseItem<'_> {
        LeaseItem {
            client: &self.client,
            table: &self.table,
            key: HashMap::from([("pk".to_owned(), s(LEASE)), ("sk".to_owned(), s("LEASE"))]),
            what: LEASE,
        }
    }
}

const LATEST_PLAN: &str = "SSO_LATEST_PLAN";

fn scope_key(scope: &Scope) -> String {
    match scope {
        Scope::Everything => "EVERYTHING".to_owned(),
        Scope::Account { account_id } => format!("ACCOUNT#{account_id}"),
        Scope::PermissionSet { permission_set_arn } => format!("SET#{permission_set_arn}"),
    }
}

/// One item per scope; a write lands only if it is newer than what it replaces, so runs that
/// record out of order keep the latest.
#[async_trait]
impl LatestPlans for DynamoPlanStore {
    async fn planned(
        &self,
        scope: &Scope,
        planned_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), PortError> {
        let at = AttributeValue::N(planned_at.timestamp_millis().to_string());
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(LATEST_PLAN))
            .item("sk", s(scope_key(scope)))
            .item("plannedAt", at.clone())
            .item(
                "expiresAt",
                epoch(planned_at + chrono::Duration::days(RETENTION_DAYS)),
            )
            .condition_expression("attribute_not_exists(pk) OR plannedAt < :at")
            .expression_attribute_values(":at", at)
            .send()
            .await;
        // A newer plan is recorded already: it stays.
        written(SERVICE, &self.table, put).map(|_| ())
    }

    async fn latest_covering(
        &self,
        assignment: &Assignment,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, PortError> {
        let scopes = [
            Scope::Everything,
            Scope::Account {
                account_id: assignment.account_id.clone(),
            },
            Scope::PermissionSet {
                permission_set_arn: assignment.permission_set_arn.clone(),
            },
        ];
        let keys = scopes
            .iter()
            .map(|scope| {
                HashMap::from([
                    ("pk".to_owned(), s(LATEST_PLAN)),
                    ("sk".to_owned(), s(scope_key(scope))),
                ])
            })
            .collect::<Vec<_>>();
        let wanted = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| rejected(e.to_string()))?;
        let answer = self
            .client
            .batch_get_item()
            .request_items(&self.table, wanted)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?;
        if answer
            .unprocessed_keys
            .as_ref()
            .is_some_and(|left| !left.is_empty())
        {
            return Err(PortError::Transient {
                service: SERVICE,
                detail: "the latest plans were not all read".into(),
            });
        }
        let mut latest = None;
        for item in answer
            .responses
            .and_then(|mut tables| tables.remove(&self.table))
            .unwrap_or_default()
        {
            let millis = item
                .get("plannedAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis)
                .ok_or_else(|| rejected("a latest plan without plannedAt".into()))?;
            latest = latest.max(Some(millis));
        }
        Ok(latest)
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
