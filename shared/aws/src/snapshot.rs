//! The SSO sync's snapshot in DynamoDB (the runs' table, `SSO_PLANS_TABLE`).
//!
//! | pk | sk | holds |
//! | --- | --- | --- |
//! | `SSO_SNAPSHOT` | `CURRENT` | the generation plans read (`generation`) and when its read began (`readFrom`) |
//! | `SSO_SNAPSHOT#<generation>` | `MANAGEMENT` | the management account |
//! | `SSO_SNAPSHOT#<generation>` | `ACCOUNT#<id>` | an account, its tags and OU path |
//! | `SSO_SNAPSHOT#<generation>` | `LISTED` | the permission sets listed |
//! | `SSO_SNAPSHOT#<generation>` | `SET#<arn>` | a permission set, its name and tags |
//! | `SSO_SNAPSHOT#<generation>` | `GROUPS#<n>`, `USERS#<n>`, and `GROUPS`, `USERS` | the principals in chunks, and how many chunks are whole |
//! | `SSO_SNAPSHOT#<generation>` | `ASSIGNMENT#<account>#<set>#<principal>` | one assignment |
//!
//! A generation is written by one full run (its run id) and patched by events; its items
//! expire two weeks after they were last written, long after a newer generation replaced it.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use chrono::Utc;
use maestro_domain::port::PortError;
use maestro_domain::sso::plan::{Assignment, OrgAccount, PermissionSetInfo, Principal};
use maestro_domain::sso::provisioning::{AccountId, PermissionSetArn};
use maestro_domain::sso::snapshot::{CurrentSnapshot, Snapshot, SnapshotPart, SnapshotStore};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "dynamodb";
const POINTER: &str = "SSO_SNAPSHOT";
/// Principals per chunk item: about 100 bytes each, well under the 400 KB item limit.
const PRINCIPALS_PER_CHUNK: usize = 1_000;
/// DynamoDB's limit on one BatchWriteItem.
const BATCH: usize = 25;
/// How often unprocessed writes are sent again before the write fails as throttled.
const BATCH_RETRIES: u32 = 8;
const RETENTION_DAYS: i64 = 14;

pub struct DynamoSnapshotStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSnapshotStore {
    pub fn new(config: &SdkConfig, table: String) -> Self {
        DynamoSnapshotStore {
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

fn json(value: &impl Serialize) -> Result<AttributeValue, PortError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| rejected(e.to_string()))
}

fn parsed<T: DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
    sk: &str,
) -> Result<T, PortError> {
    let text = item
        .get("json")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| rejected(format!("snapshot item {sk} has no json")))?;
    serde_json::from_str(text).map_err(|e| rejected(format!("snapshot item {sk}: {e}")))
}

fn assignment_key(a: &Assignment) -> String {
    format!(
        "ASSIGNMENT#{}#{}#{:?}#{}",
        a.account_id, a.permission_set_arn, a.principal_type, a.principal_id
    )
}

/// What one part does to the table: items put (sort key, attributes) and sort keys deleted.
enum Write {
    Put(String, AttributeValue),
    Delete(String),
}

fn writes(parts: &[SnapshotPart]) -> Result<Vec<Write>, PortError> {
    let mut writes = Vec::new();
    let principals = |writes: &mut Vec<Write>, kind: &str, all: &[Principal]| {
        let chunks: Vec<&[Principal]> = all.chunks(PRINCIPALS_PER_CHUNK).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            writes.push(Write::Put(format!("{kind}#{n:05}"), json(chunk)?));
        }
        // The count goes last: a read sees the new chunks only once they are all written.
        writes.push(Write::Put(kind.to_owned(), json(&chunks.len())?));
        Ok::<(), PortError>(())
    };
    for part in parts {
        match part {
            SnapshotPart::ManagementAccount { account_id } => {
                writes.push(Write::Put("MANAGEMENT".into(), json(account_id)?));
            }
            SnapshotPart::Account { account } => {
                writes.push(Write::Put(
                    format!("ACCOUNT#{}", account.id),
                    json(account)?,
                ));
            }
            SnapshotPart::AccountGone { account_id } => {
                writes.push(Write::Delete(format!("ACCOUNT#{account_id}")));
            }
            SnapshotPart::PermissionSetsListed { arns } => {
                writes.push(Write::Put("LISTED".into(), json(arns)?));
            }
            SnapshotPart::PermissionSet { permission_set } => writes.push(Write::Put(
                format!("SET#{}", permission_set.arn),
                json(permission_set)?,
            )),
            SnapshotPart::PermissionSetGone { arn } => {
                writes.push(Write::Delete(format!("SET#{arn}")));
            }
            SnapshotPart::Groups { groups } => principals(&mut writes, "GROUPS", groups)?,
            SnapshotPart::Users { users } => principals(&mut writes, "USERS", users)?,
            SnapshotPart::Assigned { assignment } => {
                writes.push(Write::Put(assignment_key(assignment), json(assignment)?));
            }
            SnapshotPart::Unassigned { assignment } => {
                writes.push(Write::Delete(assignment_key(assignment)));
            }
        }
    }
    Ok(writes)
}

impl DynamoSnapshotStore {
    async fn batch(&self, mut requests: Vec<WriteRequest>) -> Result<(), PortError> {
        for attempt in 0..=BATCH_RETRIES {
            if requests.is_empty() {
                return Ok(());
            }
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(6))).await;
            }
            let answer = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| port_error(SERVICE, &self.table, e))?;
            requests = answer
                .unprocessed_items
                .and_then(|mut left| left.remove(&self.table))
                .unwrap_or_default();
        }
        Err(PortError::Transient {
            service: SERVICE,
            detail: format!("{} snapshot writes stayed unprocessed", requests.len()),
        })
    }
}

#[async_trait]
impl SnapshotStore for DynamoSnapshotStore {
    async fn current(&self) -> Result<Option<CurrentSnapshot>, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(POINTER))
            .key("sk", s("CURRENT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?
            .item;
        item.map(|item| parsed(&item, "CURRENT")).transpose()
    }

    async fn make_current(&self, current: &CurrentSnapshot) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(POINTER))
            .item("sk", s("CURRENT"))
            .item("json", json(current)?)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?;
        Ok(())
    }

    async fn write(&self, generation: &str, parts: &[SnapshotPart]) -> Result<(), PortError> {
        let pk = format!("{POINTER}#{generation}");
        let expires = AttributeValue::N(
            (Utc::now() + chrono::Duration::days(RETENTION_DAYS))
                .timestamp()
                .to_string(),
        );
        // One request per key, the last part winning, as a batch may not name a key twice.
        let mut order = Vec::new();
        let mut last: HashMap<String, WriteRequest> = HashMap::new();
        for write in writes(parts)? {
            let (sk, request) = match write {
                Write::Put(sk, value) => {
                    let item = HashMap::from([
                        ("pk".to_owned(), s(&pk)),
                        ("sk".to_owned(), s(&sk)),
                        ("json".to_owned(), value),
                        ("expiresAt".to_owned(), expires.clone()),
                    ]);
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(|e| rejected(e.to_string()))?;
                    (sk, WriteRequest::builder().put_request(put).build())
                }
                Write::Delete(sk) => {
                    let key = HashMap::from([("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(&sk))]);
                    let delete = DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map_err(|e| rejected(e.to_string()))?;
                    (sk, WriteRequest::builder().delete_request(delete).build())
                }
            };
            if last.insert(sk.clone(), request).is_none() {
                order.push(sk);
            }
        }
        // The principals' counts go in a batch after their chunks.
        let (mut requests, mut counts) = (Vec::new(), Vec::new());
        for sk in &order {
            if let Some(request) = last.remove(sk) {
                match sk.as_str() {
                    "GROUPS" | "USERS" => counts.push(request),
                    _ => requests.push(request),
                }
            }
        }
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(BATCH));
            self.batch(std::mem::replace(&mut requests, rest)).await?;
        }
        self.batch(counts).await
    }

    async fn read(&self, generation: &str) -> Result<Snapshot, PortError> {
        let mut snapshot = Snapshot::default();
        let mut chunks: HashMap<&'static str, Vec<Vec<Principal>>> = HashMap::new();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("{POINTER}#{generation}")))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, &self.table, e))?;
            for item in page.items.unwrap_or_default() {
                let sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let inputs = &mut snapshot.inputs;
                match sk
                    .split_once('#')
                    .map_or((sk.as_str(), ""), |(a, b)| (a, b))
                {
                    ("MANAGEMENT", _) => {
                        inputs.management_account_id = parsed::<Option<AccountId>>(&item, &sk)?;
                    }
                    ("ACCOUNT", _) => inputs.accounts.push(parsed::<OrgAccount>(&item, &sk)?),
                    ("LISTED", _) => {
                        snapshot.permission_sets_listed =
                            parsed::<Vec<PermissionSetArn>>(&item, &sk)?;
                    }
                    ("SET", _) => inputs
                        .permission_sets
                        .push(parsed::<PermissionSetInfo>(&item, &sk)?),
                    ("ASSIGNMENT", _) => inputs.assignments.push(parsed::<Assignment>(&item, &sk)?),
                    (kind @ ("GROUPS" | "USERS"), "") => {
                        let kind = if kind == "GROUPS" { "GROUPS" } else { "USERS" };
                        counts.insert(kind, parsed::<usize>(&item, &sk)?);
                    }
                    (kind @ ("GROUPS" | "USERS"), _) => {
                        let kind = if kind == "GROUPS" { "GROUPS" } else { "USERS" };
                        chunks
                            .entry(kind)
                            .or_default()
                            .push(parsed::<Vec<Principal>>(&item, &sk)?);
                    }
                    _ => {}
                }
            }
        }
        // Chunks come in order; only as many as the count says are whole (a longer list
        // written before may have left more behind).
        for (kind, count) in counts {
            let principals: Vec<Principal> = chunks
                .remove(kind)
                .unwrap_or_default()
                .into_iter()
                .take(count)
                .flatten()
                .collect();
            match kind {
                "GROUPS" => snapshot.inputs.groups = principals,
                _ => snapshot.inputs.users = principals,
            }
        }
        Ok(snapshot)
    }
}
