//! The SSO sync's snapshot in DynamoDB (the runs' table, `SSO_PLANS_TABLE`).
//!
//! | pk | sk | holds |
//! | --- | --- | --- |
//! | `SSO_SNAPSHOT` | `CURRENT` | the generation plans read (`generation`) and when its read began (`readFrom`) |
//! | `SSO_SNAPSHOT#<generation>` | `MANAGEMENT` | the management account |
//! | `SSO_SNAPSHOT#<generation>` | `ACCOUNT#<id>` | an account, its tags and OU path |
//! | `SSO_SNAPSHOT#<generation>` | `LISTED` | the permission sets listed |
//! | `SSO_SNAPSHOT#<generation>` | `SET#<arn>` | a permission set, its name and tags |
//! | `SSO_SNAPSHOT#<generation>` | `GROUPS#<version>#<n>`, `USERS#<version>#<n>` | the principals, in chunks of one version |
//! | `SSO_SNAPSHOT#<generation>` | `GROUPS`, `USERS` | which version readers read, and how many chunks it has |
//! | `SSO_SNAPSHOT#<generation>` | `ASSIGNMENT#<account>#<set>#<principal>` | one assignment |
//!
//! | `SSO_SNAPSHOT_TOUCHED` | `<time>#<refresh>` | what an event run re-read, for a full read under way to read again |
//!
//! A generation is written by one full run (its run id) and patched by events; its items
//! expire two weeks after they were last written, long after a newer generation replaced it.
//! What events touched expires after two days: a full read lasts hours.
//!
//! The principals are rewritten whole (a group event reads them again), in several items. A
//! new version's chunks are written first, then the pointer is switched with one PutItem, then
//! the old version's chunks are deleted: a reader sees one version or the other, never a mix,
//! and a read that raced the deletion finds chunks missing and fails, to be read again.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use chrono::Utc;
use maestro_domain::port::PortError;
use maestro_domain::sso::assignment_monitor::{AccountId, PermissionSetArn};
use maestro_domain::sso::plan::{Assignment, OrgAccount, PermissionSetInfo, Principal};
use maestro_domain::sso::snapshot::{
    CurrentSnapshot, Refresh, Snapshot, SnapshotPart, SnapshotStore,
};
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
const TOUCHED: &str = "SSO_SNAPSHOT_TOUCHED";
const TOUCHED_RETENTION_DAYS: i64 = 2;

/// A time as a sort key: fixed width, so that keys sort as times do.
fn sortable(at: chrono::DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

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

/// Which version of a kind of principals readers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(untagged)]
enum PrincipalsPointer {
    #[serde(rename_all = "camelCase")]
    Versioned { version: String, chunks: usize },
    /// Before versions: the chunks `<kind>#<n>`, rewritten in place.
    Legacy(usize),
}

impl PrincipalsPointer {
    fn chunk_keys(&self, kind: &str) -> Vec<String> {
        match self {
            PrincipalsPointer::Versioned { version, chunks } => (0..*chunks)
                .map(|n| format!("{kind}#{version}#{n:05}"))
                .collect(),
            PrincipalsPointer::Legacy(chunks) => {
                (0..*chunks).map(|n| format!("{kind}#{n:05}")).collect()
            }
        }
    }
}

/// What one part does to the table: items put (sort key, attributes), sort keys deleted, and
/// a kind of principals' pointer switched once its chunks are written.
enum Write {
    Put(String, AttributeValue),
    Delete(String),
    Point(&'static str, PrincipalsPointer),
}

fn writes(parts: &[SnapshotPart], version: &str) -> Result<Vec<Write>, PortError> {
    let mut writes = Vec::new();
    let principals = |writes: &mut Vec<Write>, kind: &'static str, all: &[Principal]| {
        let chunks: Vec<&[Principal]> = all.chunks(PRINCIPALS_PER_CHUNK).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            writes.push(Write::Put(format!("{kind}#{version}#{n:05}"), json(chunk)?));
        }
        writes.push(Write::Point(
            kind,
            PrincipalsPointer::Versioned {
                version: version.to_owned(),
                chunks: chunks.len(),
            },
        ));
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
    /// Every item of partition `pk` whose sort key `condition` keeps (`:from` names `from`),
    /// read consistently: a step reads what the last one wrote.
    async fn items(
        &self,
        condition: &str,
        pk: String,
        from: String,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":from", s(from))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error(SERVICE, &self.table, e))?;
            items.extend(page.items.unwrap_or_default());
        }
        Ok(items)
    }

    fn delete_request(&self, pk: &str, sk: &str) -> Result<WriteRequest, PortError> {
        let key = HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]);
        let delete = DeleteRequest::builder()
            .set_key(Some(key))
            .build()
            .map_err(|e| rejected(e.to_string()))?;
        Ok(WriteRequest::builder().delete_request(delete).build())
    }

    /// Points readers at a new version of a kind of principals whose chunks are all written,
    /// and answers the version it replaced, if any.
    async fn switch_principals(
        &self,
        pk: &str,
        kind: &str,
        pointer: &PrincipalsPointer,
        expires: &AttributeValue,
    ) -> Result<Option<PrincipalsPointer>, PortError> {
        let replaced = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(kind))
            .item("json", json(pointer)?)
            .item("expiresAt", expires.clone())
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?
            .attributes;
        // An old pointer that cannot be read only leaves its chunks to their expiry.
        Ok(replaced.and_then(|old| parsed(&old, kind).ok()))
    }

    async fn delete_chunks(
        &self,
        pk: &str,
        kind: &str,
        pointer: &PrincipalsPointer,
    ) -> Result<(), PortError> {
        let mut deletes = pointer
            .chunk_keys(kind)
            .iter()
            .map(|sk| self.delete_request(pk, sk))
            .collect::<Result<Vec<_>, _>>()?;
        while !deletes.is_empty() {
            let rest = deletes.split_off(deletes.len().min(BATCH));
            self.batch(std::mem::replace(&mut deletes, rest)).await?;
        }
        Ok(())
    }

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
        let version = Utc::now().format("%Y%m%d%H%M%S%f").to_string();
        // One request per key, the last part winning, as a batch may not name a key twice.
        let mut order = Vec::new();
        let mut last: HashMap<String, WriteRequest> = HashMap::new();
        let mut pointers: Vec<(&'static str, PrincipalsPointer)> = Vec::new();
        for write in writes(parts, &version)? {
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
                Write::Delete(sk) => (sk.clone(), self.delete_request(&pk, &sk)?),
                Write::Point(kind, pointer) => {
                    pointers.retain(|(k, _)| *k != kind);
                    pointers.push((kind, pointer));
                    continue;
                }
            };
            if last.insert(sk.clone(), request).is_none() {
                order.push(sk);
            }
        }
        let mut requests: Vec<WriteRequest> =
            order.iter().filter_map(|sk| last.remove(sk)).collect();
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(BATCH));
            self.batch(std::mem::replace(&mut requests, rest)).await?;
        }
        for (kind, pointer) in pointers {
            match self.switch_principals(&pk, kind, &pointer, &expires).await {
                Err(e) => {
                    // Nobody reads the chunks of a version never pointed at; they would only
                    // wait for their expiry.
                    let _ = self.delete_chunks(&pk, kind, &pointer).await;
                    return Err(e);
                }
                // The old version's chunks go once readers are pointed away from them; if
                // they cannot go now, they expire. The write itself has landed either way.
                Ok(Some(old)) if old != pointer => {
                    let _ = self.delete_chunks(&pk, kind, &old).await;
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    async fn accounts(&self, generation: &str) -> Result<Vec<OrgAccount>, PortError> {
        self.items(
            "pk = :pk AND begins_with(sk, :from)",
            format!("{POINTER}#{generation}"),
            "ACCOUNT#".into(),
        )
        .await?
        .iter()
        .map(|item| parsed::<OrgAccount>(item, "ACCOUNT"))
        .collect()
    }

    async fn listed(&self, generation: &str) -> Result<Vec<PermissionSetArn>, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{POINTER}#{generation}")))
            .key("sk", s("LISTED"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?
            .item;
        item.map(|item| parsed(&item, "LISTED"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn touched(&self, at: chrono::DateTime<Utc>, refresh: &Refresh) -> Result<(), PortError> {
        let refresh = json(refresh)?;
        let text = refresh
            .as_s()
            .map_err(|_| rejected("a refresh as text".into()))?;
        let expires = (at + chrono::Duration::days(TOUCHED_RETENTION_DAYS)).timestamp();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(TOUCHED))
            .item("sk", s(format!("{}#{text}", sortable(at))))
            .item("json", refresh.clone())
            .item("expiresAt", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.table, e))?;
        Ok(())
    }

    async fn touched_since(&self, since: chrono::DateTime<Utc>) -> Result<Vec<Refresh>, PortError> {
        self.items("pk = :pk AND sk >= :from", TOUCHED.into(), sortable(since))
            .await?
            .iter()
            .map(|item| parsed::<Refresh>(item, TOUCHED))
            .collect()
    }

    async fn read(&self, generation: &str) -> Result<Snapshot, PortError> {
        let mut snapshot = Snapshot::default();
        let mut chunks: HashMap<String, Vec<Principal>> = HashMap::new();
        let mut pointers: Vec<(&'static str, PrincipalsPointer)> = Vec::new();
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
                        pointers.push((kind, parsed::<PrincipalsPointer>(&item, &sk)?));
                    }
                    ("GROUPS" | "USERS", _) => {
                        let chunk = parsed::<Vec<Principal>>(&item, &sk)?;
                        chunks.insert(sk, chunk);
                    }
                    _ => {}
                }
            }
        }
        // Only the chunks of the version the pointer names, and all of them: the query may
        // have met the pointer before a newer version replaced it and its chunks went.
        for (kind, pointer) in pointers {
            let mut principals = Vec::new();
            for key in pointer.chunk_keys(kind) {
                let chunk = chunks.remove(&key).ok_or_else(|| PortError::Transient {
                    service: SERVICE,
                    detail: format!(
                        "the snapshot's {kind} were rewritten while read ({key} is gone)"
                    ),
                })?;
                principals.extend(chunk);
            }
            match kind {
                "GROUPS" => snapshot.inputs.groups = principals,
                _ => snapshot.inputs.users = principals,
            }
        }
        Ok(snapshot)
    }
}
