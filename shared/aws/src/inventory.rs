//! The inventory in one DynamoDB table (docs/inventory.md has the access patterns).
//!
//! | pk | sk | holds |
//! | --- | --- | --- |
//! | `E#<id>` | `ENTITY` | the entity: content, hash, misses, first seen, last changed, when its state was observed |
//! | `E#<id>` | `H#<time>#<change>` | one history record, newest first by a reverse query |
//! | `E#<target>` | `IN#<kind>#<source>` | a relation pointing at the entity, for the reverse way |
//! | `TAG#<key>=<value>` | `E#<id>` | an entity carrying the tag |
//! | `SUMMARY` | `<dimension>#<value>` | the count of active entities |
//! | `RUN#<run>#<scope>` | `P#<page>` | the ids one page of a crawl saw, until the crawl concludes |
//! | `CONNECTIONS` | `C#<id>` | a connection |
//! | `CONNECTIONS` | `S#<id>` | when each scope of the connection last started (`started:<scope>`), and how its last crawl ended (`crawl:<scope>`); once the connection is deleted, its `account`, until every scope is retired |
//! | `LEASE#<scope>` | `LEASE` | the run crawling the scope (`holder`), until when (`until`) |
//!
//! Entity items carry `family`, `account`, `region` and `environment` for the `byFamily`,
//! `byAccount`, `byRegion` and `byEnvironment` indexes, and `scopeKey` while active for the
//! sparse `byScope` index: the scope's manifest.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use maestro_domain::inventory::changes::{Known, Manifest};
use maestro_domain::inventory::connection::{Connection, Scope};
use maestro_domain::inventory::crawl::{
    Expected, HistoryRecord, InventoryStore, Refused, ScopeLeases, Stored, StoredContent, Write,
};
use maestro_domain::inventory::entity::{Entity, Relation};
use maestro_domain::inventory::health::{CrawlRecords, LastCrawl};
use maestro_domain::inventory::lifecycle::{Schedule, Schedules};
use maestro_domain::port::PortError;
use serde_json::Value;

use crate::SdkConfig;
use crate::lease::LeaseItem;
use crate::sdk_error::{port_error, written};

const SERVICE: &str = "dynamodb";
const ENTITY: &str = "ENTITY";
const CONNECTIONS: &str = "CONNECTIONS";
const SUMMARY: &str = "SUMMARY";
/// The prefix of a schedule item's attributes: `started:<scope key>` = when it last started.
const STARTED: &str = "started:";
/// And `crawl:<scope key>` = its last crawl's record, as JSON.
const LAST_CRAWL: &str = "crawl:";
/// The ids a crawl saw are kept a day past its start: long enough for any crawl to finish.
const SEEN_RETENTION_HOURS: i64 = 24;
/// BatchGetItem takes at most 100 keys, BatchWriteItem 25 requests.
const GET_BATCH: usize = 100;
const WRITE_BATCH: usize = 25;
/// TransactWriteItems takes at most 100 actions.
const TRANSACTION_ITEMS: usize = 100;

/// The summary's dimensions, in the order `GET /inventory/summary` answers them.
pub const DIMENSIONS: [&str; 4] = ["family", "account", "region", "environment"];

/// Where a paged read continues: the last key DynamoDB read.
pub type StartKey = HashMap<String, AttributeValue>;

pub struct DynamoInventory {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// Attributes one write sets on a schedule item: each `#sN = :sN, ` is about 14 characters of
/// the update expression's 4 KB.
const SCHEDULE_ATTRIBUTES_PER_WRITE: usize = 100;

/// Whether a write to a connection's schedule item may create it.
enum ScheduleWrite {
    /// Scheduling a scope makes the item.
    CreatedIfAbsent,
    /// What a run records lands only while the connection exists.
    MustExist,
}

/// Calls of one batch, counting the first, before unprocessed items count as a failure.
const UNPROCESSED_ATTEMPTS: u32 = 5;

/// Waits before a batch's unprocessed items are sent again (DynamoDB leaves some under
/// throttling), or fails once the last attempt left some.
async fn before_unprocessed_again(attempt: u32, what: &str) -> Result<(), PortError> {
    if attempt + 1 >= UNPROCESSED_ATTEMPTS {
        return Err(PortError::Transient {
            service: SERVICE,
            detail: format!("{what} stayed unprocessed"),
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
    Ok(())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn rejected(detail: impl Into<String>) -> PortError {
    PortError::Rejected {
        service: SERVICE,
        detail: detail.into(),
    }
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn entity_key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".into(), s(format!("E#{id}"))),
        ("SK".into(), s(ENTITY)),
    ])
}

fn tag_key(key: &str, value: &str) -> String {
    format!("TAG#{key}={value}")
}

/// Index items as (PK, SK).
type Keys = BTreeSet<(String, String)>;

/// The relation items and tag items an entity's content implies. Content that does not read
/// back as an entity is refused rather than indexed as nothing.
fn index_items(content: Option<&Value>) -> Result<(Keys, Keys), PortError> {
    let Some(content) = content.filter(|c| !c.is_null()) else {
        return Ok(Default::default());
    };
    let entity: Entity = serde_json::from_value(content.clone())
        .map_err(|e| rejected(format!("an entity does not read back: {e}")))?;
    let relations = entity
        .relations
        .iter()
        .map(|Relation { kind, target }| {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|k| k.as_str().map(String::from))
                .unwrap_or_default();
            (format!("E#{target}"), format!("IN#{kind}#{}", entity.id))
        })
        .collect();
    let tags = entity
        .tags
        .iter()
        .map(|(k, v)| (tag_key(k, v), format!("E#{}", entity.id)))
        .collect();
    Ok((relations, tags))
}

/// The relation and tag items one write of an entity puts and deletes.
#[derive(Default)]
struct IndexChanges {
    /// (PK, SK), with the entity that carries it.
    puts: Vec<(String, String)>,
    deletes: Vec<(String, String)>,
}

impl IndexChanges {
    /// From the items `previous` content implies to those `next` implies.
    fn between(previous: Option<&Value>, next: Option<&Value>) -> Result<Self, PortError> {
        let (old_relations, old_tags) = index_items(previous)?;
        let (new_relations, new_tags) = index_items(next)?;
        let old: Keys = old_relations.union(&old_tags).cloned().collect();
        let new: Keys = new_relations.union(&new_tags).cloned().collect();
        Ok(IndexChanges {
            puts: new.difference(&old).cloned().collect(),
            deletes: old.difference(&new).cloned().collect(),
        })
    }

    /// A tombstone keeps its tags for the record, but points at nothing.
    fn of_tombstone(previous: Option<&Value>) -> Result<Self, PortError> {
        let (relations, _) = index_items(previous)?;
        Ok(IndexChanges {
            puts: Vec::new(),
            deletes: relations.into_iter().collect(),
        })
    }

    fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// The entity an index item's sort key names.
    fn source(sk: &str) -> &str {
        sk.rsplit_once("E#").map(|(_, id)| id).unwrap_or(sk)
    }

    fn transact_items(&self, table: &str) -> Result<Vec<TransactWriteItem>, PortError> {
        let mut items = Vec::with_capacity(self.len());
        for (pk, sk) in &self.puts {
            let put = Put::builder()
                .table_name(table)
                .item("PK", s(pk))
                .item("SK", s(sk))
                .item("source", s(Self::source(sk)))
                .build()
                .map_err(|e| rejected(e.to_string()))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for (pk, sk) in &self.deletes {
            let delete = Delete::builder()
                .table_name(table)
                .key("PK", s(pk))
                .key("SK", s(sk))
                .build()
                .map_err(|e| rejected(e.to_string()))?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        Ok(items)
    }

    fn put_requests(&self) -> Result<Vec<WriteRequest>, PortError> {
        self.puts
            .iter()
            .map(|(pk, sk)| {
                PutRequest::builder()
                    .item("PK", s(pk))
                    .item("SK", s(sk))
                    .item("source", s(Self::source(sk)))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| rejected(e.to_string()))
            })
            .collect()
    }

    fn delete_requests(&self) -> Result<Vec<WriteRequest>, PortError> {
        self.deletes
            .iter()
            .map(|(pk, sk)| {
                DeleteRequest::builder()
                    .key("PK", s(pk))
                    .key("SK", s(sk))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
                    .map_err(|e| rejected(e.to_string()))
            })
            .collect()
    }
}

/// An entity made inactive: what it held, what it holds after, the history record saying
/// so, and the hash the write expects.
struct Inactive<'a> {
    previous: &'a Value,
    inactive: &'a Value,
    history: &'a HistoryRecord,
    expected: &'a str,
}

/// A condition on an entity item, clause by clause, with the names and values it uses.
struct Condition {
    clauses: Vec<&'static str>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Condition {
    fn new() -> Self {
        Condition {
            clauses: Vec::new(),
            names: HashMap::new(),
            values: HashMap::new(),
        }
    }

    fn name(&mut self, placeholder: &str, attribute: &str) {
        self.names
            .insert(placeholder.to_owned(), attribute.to_owned());
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) {
        self.values.insert(placeholder.to_owned(), value);
    }

    /// No item, or only a tombstone.
    fn no_active_entity(&mut self) {
        self.clauses
            .push("(attribute_not_exists(PK) OR #isActive = :no)");
        self.name("#isActive", "active");
        self.value(":no", AttributeValue::Bool(false));
    }

    /// The active entity with this hash.
    fn holds(&mut self, hash: &str) {
        self.clauses
            .push("#isActive = :yes AND #expectedHash = :expectedHash");
        self.name("#isActive", "active");
        self.name("#expectedHash", "hash");
        self.value(":yes", AttributeValue::Bool(true));
        self.value(":expectedHash", s(hash));
    }

    /// Nothing observed it after `at`.
    fn observed_by(&mut self, at: DateTime<Utc>) {
        self.clauses
            .push("(attribute_not_exists(#observedAt) OR #observedAt <= :observedBy)");
        self.name("#observedAt", "observedAt");
        self.value(":observedBy", n(at.timestamp_millis()));
    }

    /// Nothing observed it at or after `since`.
    fn unobserved_since(&mut self, since: DateTime<Utc>) {
        self.clauses
            .push("(attribute_not_exists(#observedAt) OR #observedAt < :unobservedSince)");
        self.name("#observedAt", "observedAt");
        self.value(":unobservedSince", n(since.timestamp_millis()));
    }

    /// `run` has not counted its miss already.
    fn not_missed_by(&mut self, run: &str) {
        self.clauses
            .push("(attribute_not_exists(#missedBy) OR #missedBy <> :missedBy)");
        self.name("#missedBy", "missedBy");
        self.value(":missedBy", s(run));
    }

    /// The entity belongs to `scope`: the one that wrote it last.
    fn in_scope(&mut self, scope: &Scope) {
        self.clauses.push("#inScope = :inScope");
        self.name("#inScope", "scopeKey");
        self.value(":inScope", s(scope.key()));
    }

    fn exists(&mut self) {
        self.clauses.push("attribute_exists(PK)");
    }

    fn expression(&self) -> String {
        self.clauses.join(" AND ")
    }
}

/// A change's idempotency token (at most 36 characters): the entity, the state it replaces
/// and when it was recorded.
fn change_token(id: &str, expected: &str, at: DateTime<Utc>) -> String {
    let mut token = maestro_domain::inventory::changes::hash_of(&(id, expected, at));
    token.truncate(36);
    token
}

/// A transaction's answer: `true` when it wrote, `false` when its first item's condition did
/// not hold. A transaction cancelled by a conflict with another, or by throttling, is
/// transient.
fn transacted(
    id: &str,
    answer: Result<
        TransactWriteItemsOutput,
        SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
    >,
) -> Result<bool, PortError> {
    let error = match answer {
        Ok(_) => return Ok(true),
        Err(error) => error,
    };
    if let SdkError::ServiceError(context) = &error
        && let TransactWriteItemsError::TransactionCanceledException(cancelled) = context.err()
    {
        let codes: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .map(|reason| reason.code().unwrap_or("None"))
            .collect();
        if codes.first() == Some(&"ConditionalCheckFailed") {
            return Ok(false);
        }
        let detail = format!(
            "the transaction writing {id} was cancelled: {}",
            codes.join(", ")
        );
        return Err(
            if codes
                .iter()
                .any(|code| matches!(*code, "ValidationError" | "ItemCollectionSizeLimitExceeded"))
            {
                PortError::Rejected {
                    service: SERVICE,
                    detail,
                }
            } else {
                PortError::Transient {
                    service: SERVICE,
                    detail,
                }
            },
        );
    }
    Err(port_error(SERVICE, id, error))
}

/// The summary counters an active entity counts in.
fn dimensions(content: &Value) -> Vec<String> {
    DIMENSIONS
        .iter()
        .filter_map(|d| {
            content
                .get(*d)
                .and_then(Value::as_str)
                .map(|v| format!("{d}#{v}"))
        })
        .collect()
}

impl DynamoInventory {
    pub fn new(config: &SdkConfig, table: String) -> Self {
        DynamoInventory {
            client: aws_sdk_dynamodb::Client::new(config),
            table,
        }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), PortError> {
        for chunk in requests.chunks(WRITE_BATCH) {
            let mut pending = HashMap::from([(self.table.clone(), chunk.to_vec())]);
            // Unprocessed items come back under throttling; they are sent again, a few times.
            for attempt in 0..UNPROCESSED_ATTEMPTS {
                let answer = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, "a batch write", e))?;
                pending = answer.unprocessed_items.unwrap_or_default();
                if pending.values().all(Vec::is_empty) {
                    break;
                }
                before_unprocessed_again(attempt, "batch writes").await?;
            }
        }
        Ok(())
    }

    /// A history record's item.
    fn history_item(&self, record: &HistoryRecord) -> Result<Put, PortError> {
        let json = serde_json::to_string(record).map_err(|e| rejected(e.to_string()))?;
        let change = serde_json::to_value(record.change)
            .ok()
            .and_then(|c| c.as_str().map(String::from))
            .unwrap_or_default();
        let at = record
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Put::builder()
            .table_name(&self.table)
            .item("PK", s(format!("E#{}", record.entity_id)))
            .item("SK", s(format!("H#{at}#{change}")))
            .item("record", s(json))
            .build()
            .map_err(|e| rejected(e.to_string()))
    }

    /// A created or changed entity's item update, on its condition: the entity is still the
    /// one the change was computed against, and nothing observed it later.
    fn upsert_update(
        &self,
        content: &Value,
        hash: &str,
        scope: &Scope,
        at: DateTime<Utc>,
        expected: &Expected,
        observed_at: DateTime<Utc>,
    ) -> Result<Update, PortError> {
        let id = content
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let json = serde_json::to_string(content).map_err(|e| rejected(e.to_string()))?;
        let text_of = |name: &str| content.get(name).and_then(Value::as_str).map(String::from);
        let active = content
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let tag_keys: Vec<String> = content
            .get("tags")
            .and_then(Value::as_object)
            .map(|tags| tags.keys().cloned().collect())
            .unwrap_or_default();
        // Attribute and value; None removes the attribute (an index key cannot be empty).
        let attributes: Vec<(&str, Option<AttributeValue>)> = vec![
            ("id", Some(s(id))),
            ("content", Some(s(json))),
            ("hash", Some(s(hash))),
            ("misses", Some(n(0))),
            ("missedBy", None),
            ("active", Some(AttributeValue::Bool(active))),
            ("scopeKey", Some(s(scope.key()))),
            ("lastChanged", Some(s(at.to_rfc3339()))),
            ("observedAt", Some(n(observed_at.timestamp_millis()))),
            ("family", text_of("family").map(s)),
            ("account", text_of("account").map(s)),
            ("region", text_of("region").map(s)),
            ("entityType", text_of("providerType").map(s)),
            ("summary", Some(s(summary_json(content)))),
            ("environment", text_of("environment").map(s)),
            ("nameLower", text_of("name").map(|n| s(n.to_lowercase()))),
            (
                "tagKeys",
                (!tag_keys.is_empty()).then_some(AttributeValue::Ss(tag_keys)),
            ),
        ];
        let mut condition = Condition::new();
        match expected {
            Expected::NoActiveEntity => condition.no_active_entity(),
            Expected::Hash(expected) => condition.holds(expected),
        }
        condition.observed_by(observed_at);
        let condition_expression = condition.expression();
        let mut names = condition.names;
        let mut values = condition.values;
        names.insert("#firstSeen".to_owned(), "firstSeen".to_owned());
        values.insert(":now".to_owned(), s(at.to_rfc3339()));
        let mut set = vec!["#firstSeen = if_not_exists(#firstSeen, :now)".to_owned()];
        let mut remove = Vec::new();
        // Every name is a placeholder: several (hash, region, family…) are reserved words.
        for (i, (attribute, value)) in attributes.into_iter().enumerate() {
            names.insert(format!("#a{i}"), attribute.to_owned());
            match value {
                Some(value) => {
                    values.insert(format!(":v{i}"), value);
                    set.push(format!("#a{i} = :v{i}"));
                }
                None => remove.push(format!("#a{i}")),
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(entity_key(id)))
            .update_expression(expression)
            .condition_expression(condition_expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| rejected(e.to_string()))
    }

    /// The update that makes an entity inactive, holding `inactive` as its content, on
    /// `condition`: a tombstone, or a retired entity.
    fn inactive_update(
        &self,
        id: &str,
        inactive: &Value,
        at: DateTime<Utc>,
        condition: Condition,
    ) -> Result<Update, PortError> {
        let json = serde_json::to_string(inactive).map_err(|e| rejected(e.to_string()))?;
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(entity_key(id)))
            .update_expression(
                "SET #isActive = :no, #content = :content, #lastChanged = :at, #summary = :summary REMOVE #scopeKey",
            )
            .condition_expression(condition.expression())
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(Some(condition.values))
            .expression_attribute_names("#isActive", "active")
            .expression_attribute_names("#content", "content")
            .expression_attribute_names("#lastChanged", "lastChanged")
            .expression_attribute_names("#summary", "summary")
            .expression_attribute_names("#scopeKey", "scopeKey")
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":content", s(json))
            .expression_attribute_values(":at", s(at.to_rfc3339()))
            .expression_attribute_values(":summary", s(summary_json(inactive)))
            .build()
            .map_err(|e| rejected(e.to_string()))
    }

    /// Writes an entity's item update with its history record and its index items in one
    /// transaction: all or nothing. An entity with more index changes than a transaction
    /// holds has its new index items put first and its old ones deleted after: an index item
    /// may then point at an entity that no longer carries it (each read checks the entity),
    /// but none is ever missing. Answers whether the update's condition held.
    /// `token` names the change: a transaction the SDK sends again after it landed (a lost
    /// answer) is recognised by DynamoDB for 10 minutes, and answered as written, not refused.
    async fn transact(
        &self,
        id: &str,
        token: String,
        entity: Update,
        history: Put,
        index: IndexChanges,
    ) -> Result<bool, PortError> {
        let mut items = vec![
            TransactWriteItem::builder().update(entity).build(),
            TransactWriteItem::builder().put(history).build(),
        ];
        let inline = items.len() + index.len() <= TRANSACTION_ITEMS;
        if inline {
            items.extend(index.transact_items(&self.table)?);
        } else {
            self.batch_write(index.put_requests()?).await?;
        }
        let answer = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(token)
            .send()
            .await;
        let wrote = transacted(id, answer)?;
        if wrote && !inline {
            self.batch_write(index.delete_requests()?).await?;
        }
        Ok(wrote)
    }

    /// The writes of [`InventoryStore::write`] one by one: the refused ones into `refused`, the
    /// summary deltas of those that landed into `deltas`.
    async fn write_each(
        &self,
        writes: Vec<Write>,
        refused: &mut Refused,
        deltas: &mut BTreeMap<String, i64>,
    ) -> Result<(), PortError> {
        for write in writes {
            let id = write.id().to_owned();
            let wrote = match write {
                Write::Upsert {
                    entity,
                    hash,
                    scope,
                    previous,
                    history,
                    expected,
                    observed_at,
                } => {
                    let update = self.upsert_update(
                        &entity.content,
                        &hash,
                        &scope,
                        history.at,
                        &expected,
                        observed_at,
                    )?;
                    let index = IndexChanges::between(previous.as_ref(), Some(&entity.content))?;
                    let replaced = match &expected {
                        Expected::Hash(hash) => hash.as_str(),
                        Expected::NoActiveEntity => "",
                    };
                    let token = change_token(&id, replaced, history.at);
                    let wrote = self
                        .transact(&id, token, update, self.history_item(&history)?, index)
                        .await?;
                    // An inactive state observed later (an event saw it terminated) stands:
                    // there is nothing to write, and nothing to compute again.
                    let wrote = wrote
                        || (expected == Expected::NoActiveEntity
                            && self.inactive_since(&id, observed_at).await?);
                    if wrote {
                        for d in previous.as_ref().map(dimensions).unwrap_or_default() {
                            *deltas.entry(d).or_default() -= 1;
                        }
                        for d in dimensions(&entity.content) {
                            *deltas.entry(d).or_default() += 1;
                        }
                    }
                    wrote
                }
                Write::Gone {
                    previous,
                    inactive,
                    history,
                    expected,
                    unobserved_since,
                    ..
                } => {
                    let mut condition = Condition::new();
                    condition.holds(&expected);
                    condition.unobserved_since(unobserved_since);
                    let previous = previous.unwrap_or(Value::Null);
                    let made = Inactive {
                        previous: &previous,
                        inactive: &inactive,
                        history: &history,
                        expected: &expected,
                    };
                    self.make_inactive(&id, made, condition, deltas).await?
                }
                Write::Retire {
                    scope,
                    previous,
                    inactive,
                    history,
                    expected,
                    ..
                } => {
                    let mut condition = Condition::new();
                    condition.holds(&expected);
                    condition.in_scope(&scope);
                    let made = Inactive {
                        previous: &previous,
                        inactive: &inactive,
                        history: &history,
                        expected: &expected,
                    };
                    self.make_inactive(&id, made, condition, deltas).await?
                }
                Write::Refresh {
                    entity,
                    hash,
                    expected,
                    observed_at,
                } => {
                    let json = serde_json::to_string(&entity.content)
                        .map_err(|e| rejected(e.to_string()))?;
                    let mut condition = Condition::new();
                    condition.holds(&expected);
                    condition.observed_by(observed_at);
                    self.update_entity(
                        &id,
                        "SET #content = :content, #summary = :summary, #hash = :hash, #observedAt = :observedAt",
                        condition,
                        vec![
                            (":content", s(json)),
                            (":summary", s(summary_json(&entity.content))),
                            (":hash", s(hash)),
                            (":observedAt", n(observed_at.timestamp_millis())),
                        ],
                    )
                    .await?
                }
                Write::Seen { expected, at, .. } => {
                    let mut condition = Condition::new();
                    condition.holds(&expected);
                    condition.observed_by(at);
                    self.update_entity(
                        &id,
                        "SET #observedAt = :observedAt, #misses = :misses REMOVE #missedBy",
                        condition,
                        vec![(":observedAt", n(at.timestamp_millis())), (":misses", n(0))],
                    )
                    .await?
                }
                Write::Missed {
                    misses,
                    run,
                    expected,
                    unobserved_since,
                    ..
                } => {
                    let mut condition = Condition::new();
                    condition.holds(&expected);
                    condition.unobserved_since(unobserved_since);
                    condition.not_missed_by(&run);
                    self.update_entity(
                        &id,
                        "SET #misses = :misses, #missedBy = :missedBy",
                        condition,
                        vec![(":misses", n(misses))],
                    )
                    .await?
                }
                Write::Back { .. } => {
                    let mut condition = Condition::new();
                    condition.exists();
                    self.update_entity(
                        &id,
                        "SET #misses = :misses REMOVE #missedBy",
                        condition,
                        vec![(":misses", n(0))],
                    )
                    .await?
                }
            };
            if !wrote {
                refused.insert(id);
            }
        }
        Ok(())
    }

    /// Makes an entity inactive (a tombstone, a retirement) on `condition`, in one
    /// transaction with its history record and the removal of its relation items; answers
    /// whether the condition held.
    async fn make_inactive(
        &self,
        id: &str,
        made: Inactive<'_>,
        condition: Condition,
        deltas: &mut BTreeMap<String, i64>,
    ) -> Result<bool, PortError> {
        let update = self.inactive_update(id, made.inactive, made.history.at, condition)?;
        let index = IndexChanges::of_tombstone(Some(made.previous))?;
        let token = change_token(id, made.expected, made.history.at);
        let wrote = self
            .transact(id, token, update, self.history_item(made.history)?, index)
            .await?;
        if wrote {
            for d in dimensions(made.previous) {
                *deltas.entry(d).or_default() -= 1;
            }
        }
        Ok(wrote)
    }

    /// Whether the entity is inactive in a state observed after `at`.
    async fn inactive_since(&self, id: &str, at: DateTime<Utc>) -> Result<bool, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(entity_key(id)))
            .projection_expression("#active, #observedAt")
            .expression_attribute_names("#active", "active")
            .expression_attribute_names("#observedAt", "observedAt")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?
            .item
            .unwrap_or_default();
        let inactive = item.get("active").and_then(|a| a.as_bool().ok()) == Some(&false);
        let observed = number(&item, "observedAt").unwrap_or(i64::MIN);
        Ok(inactive && observed > at.timestamp_millis())
    }

    async fn adjust_summary(&self, deltas: BTreeMap<String, i64>) -> Result<(), PortError> {
        for (dimension, delta) in deltas.into_iter().filter(|(_, d)| *d != 0) {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("PK", s(SUMMARY))
                .key("SK", s(dimension.clone()))
                .update_expression("ADD #entities :delta")
                .expression_attribute_names("#entities", "entities")
                .expression_attribute_values(":delta", n(delta))
                .send()
                .await
                .map_err(|e| port_error(SERVICE, &dimension, e))?;
        }
        Ok(())
    }

    /// An entity's update that changes no index: a refresh of its volatile fields, an event
    /// that saw it, a miss, a return. Answers whether its condition held.
    async fn update_entity(
        &self,
        id: &str,
        expression: &str,
        condition: Condition,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, PortError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(entity_key(id)))
            .update_expression(expression)
            .condition_expression(condition.expression())
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(Some(condition.values));
        for name in [
            "content",
            "summary",
            "hash",
            "misses",
            "missedBy",
            "observedAt",
        ] {
            if expression.contains(&format!("#{name}")) {
                update = update.expression_attribute_names(format!("#{name}"), name);
            }
        }
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        written(SERVICE, id, update.send().await)
    }

    /// The entity items of `ids` (those that exist), read in batches of 100; `consistent`
    /// for the crawl's diff, which must see the last crawl's writes.
    async fn entity_items(
        &self,
        ids: &[String],
        consistent: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        let mut items = Vec::new();
        let unique: BTreeSet<&String> = ids.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(GET_BATCH) {
            let keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|id| entity_key(id)).collect()))
                .consistent_read(consistent)
                .build()
                .map_err(|e| rejected(e.to_string()))?;
            let mut request = HashMap::from([(self.table.clone(), keys)]);
            // Unprocessed keys come back under throttling; they are asked again, a few times.
            for attempt in 0..UNPROCESSED_ATTEMPTS {
                let answer = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, "a batch read", e))?;
                items.extend(
                    answer
                        .responses
                        .unwrap_or_default()
                        .remove(&self.table)
                        .unwrap_or_default(),
                );
                request = answer.unprocessed_keys.unwrap_or_default();
                if request.is_empty() {
                    break;
                }
                before_unprocessed_again(attempt, "batch reads").await?;
            }
        }
        Ok(items)
    }

    // ---- connections ----

    pub async fn put_connection(
        &self,
        connection: &Connection,
        create: bool,
    ) -> Result<bool, PortError> {
        let json = serde_json::to_string(connection).map_err(|e| rejected(e.to_string()))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(CONNECTIONS))
            .item("SK", s(format!("C#{}", connection.id)))
            .item("accountId", s(&connection.account_id))
            .item("connection", s(json));
        put = if create {
            put.condition_expression("attribute_not_exists(PK)")
        } else {
            put.condition_expression("attribute_exists(PK)")
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(port_error(SERVICE, &connection.id, e)),
        }
    }

    pub async fn connection(&self, id: &str) -> Result<Option<Connection>, PortError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(CONNECTIONS))
            .key("SK", s(format!("C#{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?;
        answer
            .item
            .as_ref()
            .and_then(|item| text(item, "connection"))
            .map(|json| serde_json::from_str(json).map_err(|e| rejected(e.to_string())))
            .transpose()
    }

    pub async fn connections(&self) -> Result<Vec<Connection>, PortError> {
        let mut connections = Vec::new();
        for item in self
            // One small partition: read consistently, so a connection just made is listed.
            .query_all(CONNECTIONS, Some("C#"), true)
            .await?
        {
            if let Some(json) = text(&item, "connection") {
                connections.push(serde_json::from_str(json).map_err(|e| rejected(e.to_string()))?);
            }
        }
        Ok(connections)
    }

    /// Deletes the connection and its schedule memory; its entities stay as they are, since
    /// an inventory entry is history, not configuration.
    pub async fn delete_connection(&self, id: &str) -> Result<bool, PortError> {
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(CONNECTIONS))
            .key("SK", s(format!("C#{id}")))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?;
        let Some(deleted) = answer.attributes else {
            return Ok(false);
        };
        // The schedule stays, with the account, until the scheduler has retired every entity
        // of the scopes it started (maestro_domain::inventory::lifecycle).
        let account = text(&deleted, "connection")
            .and_then(|json| serde_json::from_str::<Connection>(json).ok())
            .map(|connection| connection.account_id)
            .unwrap_or_default();
        // A connection that never started a scope has no schedule, and nothing to retire.
        let kept = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(CONNECTIONS))
            .key("SK", s(format!("S#{id}")))
            .update_expression("SET #account = :account")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#account", "account")
            .expression_attribute_values(":account", s(account))
            .send()
            .await;
        written(SERVICE, id, kept)?;
        Ok(true)
    }

    /// Every connection's schedule: the connection (none once deleted) with when each scope
    /// it started last started, in one query of the connections' partition: what the
    /// scheduler needs on each tick.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, PortError> {
        // Consistent: a connection just made is due at once, and a scope just started is not
        // started again.
        let items = self.query_all(CONNECTIONS, None, true).await?;
        let mut schedules: BTreeMap<String, Schedule> = BTreeMap::new();
        for item in &items {
            if let Some(id) = text(item, "SK").and_then(|sk| sk.strip_prefix("S#")) {
                schedules.insert(
                    id.to_owned(),
                    Schedule {
                        connection_id: id.to_owned(),
                        account: text(item, "account").unwrap_or_default().to_owned(),
                        connection: None,
                        started: last_started_of(item),
                    },
                );
            }
        }
        for item in &items {
            if let Some(json) = text(item, "connection") {
                let connection: Connection =
                    serde_json::from_str(json).map_err(|e| rejected(e.to_string()))?;
                let schedule = schedules
                    .entry(connection.id.clone())
                    .or_insert_with(|| Schedule {
                        connection_id: connection.id.clone(),
                        account: String::new(),
                        connection: None,
                        started: BTreeMap::new(),
                    });
                schedule.account = connection.account_id.clone();
                schedule.connection = Some(connection);
            }
        }
        // A deleted connection's schedule without an account was kept by no delete: nothing
        // can be retired by it.
        Ok(schedules
            .into_values()
            .filter(|schedule| !schedule.account.is_empty())
            .collect())
    }

    pub async fn mark_started(
        &self,
        connection_id: &str,
        scopes: &[Scope],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let at = s(at.to_rfc3339());
        let values = scopes
            .iter()
            .map(|scope| (format!("{STARTED}{}", scope.key()), at.clone()))
            .collect();
        self.set_on_schedule(connection_id, values, ScheduleWrite::CreatedIfAbsent)
            .await
    }

    /// Sets attributes of a connection's schedule item (`S#<id>`): one per scope, so that one
    /// write sets them all and leaves the other scopes' as they are.
    async fn set_on_schedule(
        &self,
        connection_id: &str,
        values: Vec<(String, AttributeValue)>,
        schedule: ScheduleWrite,
    ) -> Result<(), PortError> {
        // An update expression holds at most 4 KB: a connection of 11 types in 30 regions has
        // more scopes than one would name.
        for values in values.chunks(SCHEDULE_ATTRIBUTES_PER_WRITE) {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("PK", s(CONNECTIONS))
                .key("SK", s(format!("S#{connection_id}")));
            let mut sets = Vec::new();
            for (i, (name, value)) in values.iter().enumerate() {
                sets.push(format!("#s{i} = :s{i}"));
                update = update
                    .expression_attribute_names(format!("#s{i}"), name)
                    .expression_attribute_values(format!(":s{i}"), value.clone());
            }
            let update = update.update_expression(format!("SET {}", sets.join(", ")));
            match schedule {
                ScheduleWrite::CreatedIfAbsent => {
                    update
                        .send()
                        .await
                        .map_err(|e| port_error(SERVICE, connection_id, e))?;
                }
                // A connection deleted since its run started keeps no records.
                ScheduleWrite::MustExist => {
                    let answer = update
                        .condition_expression("attribute_exists(PK)")
                        .send()
                        .await;
                    if !written(SERVICE, connection_id, answer)? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Every item of a partition, optionally under a sort-key prefix; `consistent` when what
    /// is read was written moments ago and must be seen whole.
    pub async fn query_all(
        &self,
        pk: &str,
        sk_prefix: Option<&str>,
        consistent: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(consistent)
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start);
            query = match sk_prefix {
                Some(prefix) => query
                    .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix)),
                None => query.key_condition_expression("PK = :pk"),
            };
            let answer = query.send().await.map_err(|e| port_error(SERVICE, pk, e))?;
            items.extend(answer.items.unwrap_or_default());
            start = answer.last_evaluated_key;
            if start.as_ref().is_none_or(HashMap::is_empty) {
                return Ok(items);
            }
        }
    }

    // ---- reads for the API ----

    /// The entity item's fields the API shows: its content with the store's times.
    pub async fn entity(&self, id: &str) -> Result<Option<Value>, PortError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(entity_key(id)))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?;
        Ok(answer.item.as_ref().map(entity_view))
    }

    /// The relations pointing at the entity: (kind, source id).
    pub async fn incoming(&self, id: &str) -> Result<Vec<(String, String)>, PortError> {
        Ok(self
            .query_all(&format!("E#{id}"), Some("IN#"), false)
            .await?
            .iter()
            .filter_map(|item| {
                let sk = text(item, "SK")?.strip_prefix("IN#")?;
                let (kind, source) = sk.split_once('#')?;
                Some((kind.to_owned(), source.to_owned()))
            })
            .collect())
    }

    /// One page of history, newest first, and where the next page starts.
    pub async fn history(
        &self,
        id: &str,
        limit: i32,
        cursor: Option<StartKey>,
    ) -> Result<(Vec<Value>, Option<String>), PortError> {
        let answer = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :h)")
            .expression_attribute_values(":pk", s(format!("E#{id}")))
            .expression_attribute_values(":h", s("H#"))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(cursor)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, id, e))?;
        let records = answer
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| text(item, "record").and_then(|r| serde_json::from_str(r).ok()))
            .collect();
        Ok((records, encode_cursor(answer.last_evaluated_key)))
    }

    pub async fn summary(&self) -> Result<BTreeMap<String, BTreeMap<String, i64>>, PortError> {
        let mut summary: BTreeMap<String, BTreeMap<String, i64>> = DIMENSIONS
            .iter()
            .map(|d| ((*d).to_owned(), BTreeMap::new()))
            .collect();
        for item in self.query_all(SUMMARY, None, false).await? {
            let (Some(key), Some(count)) = (text(&item, "SK"), number(&item, "entities")) else {
                continue;
            };
            if let Some((dimension, value)) = key.split_once('#')
                && count > 0
            {
                summary
                    .entry(dimension.to_owned())
                    .or_default()
                    .insert(value.to_owned(), count);
            }
        }
        Ok(summary)
    }
}

/// What `GET /inventory` may filter on; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub family: Option<String>,
    pub provider_type: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub environment: Option<String>,
    pub tag_key: Option<String>,
    pub tag_value: Option<String>,
    pub active: Option<bool>,
    pub name_prefix: Option<String>,
}

/// One page of a listing and where the next one starts. A page may hold fewer entities than
/// asked when filters drop some; only a missing cursor means the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub entities: Vec<Value>,
    pub cursor: Option<String>,
}

impl DynamoInventory {
    /// One page of entities matching `filter`, read from the narrowest index the filter
    /// allows: a tag's items, then the family, account, environment or region index, else the
    /// table itself.
    pub async fn list(
        &self,
        filter: &Filter,
        limit: i32,
        cursor: Option<StartKey>,
    ) -> Result<Listing, PortError> {
        if let (Some(key), Some(value)) = (&filter.tag_key, &filter.tag_value) {
            return self.list_by_tag(filter, key, value, limit, cursor).await;
        }
        let keyed = keyed_index(filter)
            .map(|(index, attribute, value)| (index, attribute, value.to_owned()));
        let mut conditions = Vec::new();
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        for (attribute, value) in [
            ("family", &filter.family),
            ("account", &filter.account),
            ("region", &filter.region),
            ("environment", &filter.environment),
            ("entityType", &filter.provider_type),
        ] {
            let Some(value) = value else { continue };
            if keyed.as_ref().is_some_and(|(_, a, _)| *a == attribute) {
                continue;
            }
            conditions.push(format!("#{attribute} = :{attribute}"));
            names.insert(format!("#{attribute}"), attribute.to_owned());
            values.insert(format!(":{attribute}"), s(value));
        }
        if let Some(active) = filter.active {
            conditions.push("#active = :active".to_owned());
            names.insert("#active".to_owned(), "active".to_owned());
            values.insert(":active".to_owned(), AttributeValue::Bool(active));
        }
        if let Some(prefix) = &filter.name_prefix {
            conditions.push("begins_with(#nameLower, :prefix)".to_owned());
            names.insert("#nameLower".to_owned(), "nameLower".to_owned());
            values.insert(":prefix".to_owned(), s(prefix.to_lowercase()));
        }
        if let Some(key) = &filter.tag_key {
            conditions.push("contains(#tagKeys, :tagKey)".to_owned());
            names.insert("#tagKeys".to_owned(), "tagKeys".to_owned());
            values.insert(":tagKey".to_owned(), s(key));
        }
        let (items, last) = match keyed {
            Some((index, attribute, value)) => {
                names.insert("#key".to_owned(), attribute.to_owned());
                values.insert(":key".to_owned(), s(value));
                let answer = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(index)
                    .key_condition_expression("#key = :key")
                    .set_filter_expression(
                        (!conditions.is_empty()).then(|| conditions.join(" AND ")),
                    )
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .limit(limit)
                    .set_exclusive_start_key(cursor)
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, index, e))?;
                (answer.items.unwrap_or_default(), answer.last_evaluated_key)
            }
            None => {
                conditions.push("SK = :entity".to_owned());
                values.insert(":entity".to_owned(), s(ENTITY));
                for attribute in ["summary", "firstSeen", "lastChanged"] {
                    names.insert(format!("#{attribute}"), attribute.to_owned());
                }
                let answer = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .filter_expression(conditions.join(" AND "))
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .projection_expression("PK, SK, #summary, #firstSeen, #lastChanged")
                    .limit(limit)
                    .set_exclusive_start_key(cursor)
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, "the inventory", e))?;
                (answer.items.unwrap_or_default(), answer.last_evaluated_key)
            }
        };
        Ok(Listing {
            entities: items.iter().map(summary_view).collect(),
            cursor: encode_cursor(last),
        })
    }

    async fn list_by_tag(
        &self,
        filter: &Filter,
        key: &str,
        value: &str,
        limit: i32,
        cursor: Option<StartKey>,
    ) -> Result<Listing, PortError> {
        let answer = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(tag_key(key, value)))
            .limit(limit)
            .set_exclusive_start_key(cursor)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, key, e))?;
        let ids: Vec<String> = answer
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| text(item, "source").map(String::from))
            .collect();
        let mut entities: Vec<Value> = self
            .entity_items(&ids, false)
            .await?
            .iter()
            .map(entity_view)
            .filter(|entity| matches_filter(entity, filter))
            .collect();
        // In the tag's order, as the cursor pages it.
        entities.sort_by_key(|e| {
            let id = e.get("id").and_then(Value::as_str).unwrap_or_default();
            ids.iter().position(|i| i == id)
        });
        Ok(Listing {
            entities,
            cursor: encode_cursor(answer.last_evaluated_key),
        })
    }
}

/// Whether an entity's view meets every filter; used where an index could not apply them.
pub fn matches_filter(entity: &Value, filter: &Filter) -> bool {
    let field = |name: &str| entity.get(name).and_then(Value::as_str);
    let equal = |name: &str, wanted: &Option<String>| {
        wanted.as_deref().is_none_or(|w| field(name) == Some(w))
    };
    equal("family", &filter.family)
        && equal("providerType", &filter.provider_type)
        && equal("account", &filter.account)
        && equal("region", &filter.region)
        && equal("environment", &filter.environment)
        && filter
            .active
            .is_none_or(|a| entity.get("active").and_then(Value::as_bool) == Some(a))
        && filter.name_prefix.as_deref().is_none_or(|p| {
            field("name").is_some_and(|n| n.to_lowercase().starts_with(&p.to_lowercase()))
        })
        && filter.tag_key.as_deref().is_none_or(|k| {
            let tag = entity
                .get("tags")
                .and_then(|t| t.get(k))
                .and_then(Value::as_str);
            tag.is_some() && filter.tag_value.as_deref().is_none_or(|v| tag == Some(v))
        })
}

/// An index item as a listing shows it.
fn summary_view(item: &HashMap<String, AttributeValue>) -> Value {
    let mut view = text(item, "summary")
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut view {
        for name in ["firstSeen", "lastChanged"] {
            if let Some(at) = text(item, name) {
                fields.insert(name.to_owned(), Value::String(at.to_owned()));
            }
        }
    }
    view
}

/// When each scope of a connection last started, from its `S#` item.
fn last_started_of(item: &HashMap<String, AttributeValue>) -> BTreeMap<String, DateTime<Utc>> {
    item.iter()
        .filter_map(|(name, at)| {
            let scope = name.strip_prefix(STARTED)?;
            let at = DateTime::parse_from_rfc3339(at.as_s().ok()?).ok()?;
            Some((scope.to_owned(), at.with_timezone(&Utc)))
        })
        .collect()
}

/// What a listing shows of an entity without its typed details: small enough to project into
/// every index.
fn summary_json(content: &Value) -> String {
    let pick = |name: &str| content.get(name).cloned().unwrap_or(Value::Null);
    serde_json::json!({
        "id": pick("id"),
        "family": pick("family"),
        "providerType": pick("providerType"),
        "account": pick("account"),
        "region": pick("region"),
        "zone": pick("zone"),
        "name": pick("name"),
        "environment": pick("environment"),
        "role": pick("role"),
        "status": pick("status"),
        "active": pick("active"),
        "tags": pick("tags"),
    })
    .to_string()
}

/// An entity item as the API shows it.
pub fn entity_view(item: &HashMap<String, AttributeValue>) -> Value {
    let mut view = text(item, "content")
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .or_else(|| text(item, "summary").and_then(|c| serde_json::from_str(c).ok()))
        .unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut view {
        for name in ["firstSeen", "lastChanged"] {
            if let Some(at) = text(item, name) {
                fields.insert(name.to_owned(), Value::String(at.to_owned()));
            }
        }
        if let Some(hash) = text(item, "hash") {
            fields.insert("contentHash".to_owned(), Value::String(hash.to_owned()));
        }
    }
    view
}

/// A query's continuation as an opaque token: the last key, as URL-safe base64 of its JSON.
pub fn encode_cursor(key: Option<HashMap<String, AttributeValue>>) -> Option<String> {
    let key = key.filter(|k| !k.is_empty())?;
    let plain: BTreeMap<String, String> = key
        .into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k, v.clone())))
        .collect();
    serde_json::to_vec(&plain)
        .ok()
        .map(|json| URL_SAFE_NO_PAD.encode(json))
}

/// The index `list` reads for a filter without a tag value: the first of family, account,
/// environment and region it names, with that attribute and its value; None for the table.
fn keyed_index(filter: &Filter) -> Option<(&'static str, &'static str, &str)> {
    [
        ("byFamily", "family", &filter.family),
        ("byAccount", "account", &filter.account),
        ("byEnvironment", "environment", &filter.environment),
        ("byRegion", "region", &filter.region),
    ]
    .into_iter()
    .find_map(|(index, attribute, value)| value.as_deref().map(|v| (index, attribute, v)))
}

/// Whether a cursor continues a listing with this filter: its key is one of the item keys
/// the listing reads (a tag's partition, the index's, or the table's). A cursor given with
/// other filters would make DynamoDB refuse the read.
pub fn cursor_fits(filter: &Filter, cursor: &StartKey) -> bool {
    let text = |name: &str| {
        cursor
            .get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    let has_only = |names: &[&str]| {
        cursor.len() == names.len() && names.iter().all(|name| text(name).is_some())
    };
    if let (Some(key), Some(value)) = (&filter.tag_key, &filter.tag_value) {
        return has_only(&["PK", "SK"]) && text("PK") == Some(tag_key(key, value).as_str());
    }
    match keyed_index(filter) {
        Some((_, attribute, value)) => {
            has_only(&["PK", "SK", attribute, "id"]) && text(attribute) == Some(value)
        }
        // A scan stops on whatever item it read last (a history record, a crawl's page), and
        // continues from there.
        None => has_only(&["PK", "SK"]),
    }
}

/// Whether a cursor continues the history of entity `id`: a key of one of its records.
pub fn history_cursor_fits(id: &str, cursor: &StartKey) -> bool {
    let text = |name: &str| cursor.get(name).and_then(|v| v.as_s().ok());
    cursor.len() == 2
        && text("PK").is_some_and(|pk| *pk == format!("E#{id}"))
        && text("SK").is_some_and(|sk| sk.starts_with("H#"))
}

/// The key a cursor names, or None when it is not one of ours.
pub fn decode_cursor(token: &str) -> Option<StartKey> {
    let json = URL_SAFE_NO_PAD.decode(token).ok()?;
    let plain: BTreeMap<String, String> = serde_json::from_slice(&json).ok()?;
    let allowed = [
        "PK",
        "SK",
        "family",
        "account",
        "region",
        "environment",
        "id",
    ];
    if plain.is_empty() || plain.len() > 4 || plain.keys().any(|k| !allowed.contains(&k.as_str())) {
        return None;
    }
    Some(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

#[async_trait]
impl InventoryStore for DynamoInventory {
    async fn known(&self, ids: &[String]) -> Result<BTreeMap<String, Stored>, PortError> {
        let mut known = BTreeMap::new();
        for item in self.entity_items(ids, true).await? {
            let active = item.get("active").and_then(|a| a.as_bool().ok()).copied();
            let (Some(id), Some(hash), Some(content), Some(true)) = (
                text(&item, "id"),
                text(&item, "hash"),
                text(&item, "content"),
                active,
            ) else {
                continue;
            };
            // Read only where a change needs it (maestro_domain::inventory::crawl).
            let content = StoredContent::new(content.to_owned());
            let misses = number(&item, "misses")
                .unwrap_or(0)
                .clamp(0, i64::from(u32::MAX)) as u32;
            known.insert(
                id.to_owned(),
                Stored {
                    known: Known {
                        hash: hash.to_owned(),
                        misses,
                        missed_by: text(&item, "missedBy").map(str::to_owned),
                    },
                    content,
                    observed_at: number(&item, "observedAt")
                        .and_then(DateTime::<Utc>::from_timestamp_millis),
                },
            );
        }
        Ok(known)
    }

    /// Each write on its condition (`Expected`, and when the stored state was observed).
    /// A change is one transaction of the entity item, its history record and its index items,
    /// so a refused or failed write leaves nothing of it. The summary counters move after the
    /// changes that landed: a call that stops between the two leaves a counter off by what it
    /// had written.
    async fn write(&self, writes: Vec<Write>) -> Result<Refused, PortError> {
        let mut refused = Refused::new();
        let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
        let written = self.write_each(writes, &mut refused, &mut deltas).await;
        // What landed before an error is counted: its retry finds nothing to write.
        self.adjust_summary(deltas).await?;
        written.map(|()| refused)
    }

    async fn record_seen(
        &self,
        run: &str,
        scope: &Scope,
        page: u32,
        ids: &[String],
    ) -> Result<(), PortError> {
        let expires = (Utc::now() + chrono::Duration::hours(SEEN_RETENTION_HOURS)).timestamp();
        let ids = serde_json::to_string(ids).map_err(|e| rejected(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(format!("RUN#{run}#{}", scope.key())))
            .item("SK", s(format!("P#{page:08}")))
            .item("ids", s(ids))
            .item("expiresAt", n(expires))
            .send()
            .await
            .map_err(|e| port_error(SERVICE, run, e))?;
        Ok(())
    }

    async fn seen(&self, run: &str, scope: &Scope) -> Result<BTreeSet<String>, PortError> {
        let mut seen = BTreeSet::new();
        for item in self
            // The last page recorded its ids moments ago: an eventually consistent read may
            // miss them, and every one would count a miss.
            .query_all(&format!("RUN#{run}#{}", scope.key()), Some("P#"), true)
            .await?
        {
            if let Some(ids) = text(&item, "ids") {
                let ids: Vec<String> =
                    serde_json::from_str(ids).map_err(|e| rejected(e.to_string()))?;
                seen.extend(ids);
            }
        }
        Ok(seen)
    }

    async fn manifest(&self, scope: &Scope) -> Result<Manifest, PortError> {
        let mut manifest = Manifest::new();
        let mut start = None;
        loop {
            let answer = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("byScope")
                .key_condition_expression("scopeKey = :scope")
                .expression_attribute_values(":scope", s(scope.key()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error(SERVICE, &scope.key(), e))?;
            for item in answer.items.unwrap_or_default() {
                if let (Some(id), Some(hash)) = (text(&item, "id"), text(&item, "hash")) {
                    let misses = number(&item, "misses")
                        .unwrap_or(0)
                        .clamp(0, i64::from(u32::MAX)) as u32;
                    manifest.insert(
                        id.to_owned(),
                        Known {
                            hash: hash.to_owned(),
                            misses,
                            missed_by: None,
                        },
                    );
                }
            }
            start = answer.last_evaluated_key;
            if start.as_ref().is_none_or(HashMap::is_empty) {
                return Ok(manifest);
            }
        }
    }
}

/// One item per scope names the run crawling it.
/// A scope leaves its connection's schedule: its last start and its last crawl's record. A
/// deleted connection's schedule that holds no scope any more goes.
#[async_trait]
impl Schedules for DynamoInventory {
    async fn forget(&self, scope: &Scope) -> Result<(), PortError> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(CONNECTIONS))
            .key("SK", s(format!("S#{}", scope.connection_id)))
            .update_expression("REMOVE #started, #crawl")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#started", format!("{STARTED}{}", scope.key()))
            .expression_attribute_names("#crawl", format!("{LAST_CRAWL}{}", scope.key()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        let left = match answer {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(error) => {
                written(SERVICE, &scope.connection_id, Err::<(), _>(error))?;
                return Ok(());
            }
        };
        if left.keys().any(|name| name.starts_with(STARTED)) {
            return Ok(());
        }
        // Only while the connection is still deleted: one made again with the same id keeps
        // its schedule.
        let connection = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(CONNECTIONS))
            .key("SK", s(format!("C#{}", scope.connection_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &scope.connection_id, e))?;
        if connection.item.is_none() {
            // Refused when the schedule changed meanwhile (a connection made again with the
            // same id started a scope): it stays.
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("PK", s(CONNECTIONS))
                .key("SK", s(format!("S#{}", scope.connection_id)))
                .condition_expression("attribute_exists(#account)")
                .expression_attribute_names("#account", "account")
                .send()
                .await;
            written(SERVICE, &scope.connection_id, deleted)?;
        }
        Ok(())
    }
}

#[async_trait]
impl ScopeLeases for DynamoInventory {
    async fn take(
        &self,
        scope: &Scope,
        run: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, PortError> {
        self.scope_lease(scope).take(run, now, until).await
    }

    async fn release(&self, scope: &Scope, run: &str) -> Result<(), PortError> {
        self.scope_lease(scope).release(run).await
    }
}

impl DynamoInventory {
    fn scope_lease(&self, scope: &Scope) -> LeaseItem<'_> {
        LeaseItem {
            client: &self.client,
            table: &self.table,
            key: HashMap::from([
                ("PK".to_owned(), s(format!("LEASE#{}", scope.key()))),
                ("SK".to_owned(), s("LEASE")),
            ]),
            what: "a scope's lease",
        }
    }
}

/// Each scope's last crawl, beside its last start on the connection's `S#` item.
#[async_trait]
impl CrawlRecords for DynamoInventory {
    async fn last_crawls(
        &self,
        connection_id: &str,
    ) -> Result<BTreeMap<String, LastCrawl>, PortError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(CONNECTIONS))
            .key("SK", s(format!("S#{connection_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, connection_id, e))?
            .item
            .unwrap_or_default();
        let mut crawls = BTreeMap::new();
        for (name, value) in &item {
            let (Some(scope), Ok(json)) = (name.strip_prefix(LAST_CRAWL), value.as_s()) else {
                continue;
            };
            let crawl: LastCrawl = serde_json::from_str(json)
                .map_err(|e| rejected(format!("the last crawl of {scope}: {e}")))?;
            crawls.insert(scope.to_owned(), crawl);
        }
        Ok(crawls)
    }

    async fn record_crawls(
        &self,
        connection_id: &str,
        crawls: &BTreeMap<String, LastCrawl>,
    ) -> Result<(), PortError> {
        let mut values = Vec::new();
        for (scope, crawl) in crawls {
            let json = serde_json::to_string(crawl).map_err(|e| rejected(e.to_string()))?;
            values.push((format!("{LAST_CRAWL}{scope}"), s(json)));
        }
        self.set_on_schedule(connection_id, values, ScheduleWrite::MustExist)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pairs: &[(&str, &str)]) -> StartKey {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), s(*v)))
            .collect()
    }

    #[test]
    fn a_cursor_continues_only_the_listing_it_came_from() {
        let by_family = Filter {
            family: Some("server".into()),
            ..Filter::default()
        };
        let from_family = key(&[
            ("PK", "E#i-1"),
            ("SK", ENTITY),
            ("family", "server"),
            ("id", "i-1"),
        ]);
        assert!(cursor_fits(&by_family, &from_family));
        let by_volume = Filter {
            family: Some("volume".into()),
            ..Filter::default()
        };
        assert!(!cursor_fits(&by_volume, &from_family));
        assert!(!cursor_fits(&Filter::default(), &from_family));
        let from_table = key(&[("PK", "E#i-1"), ("SK", ENTITY)]);
        assert!(cursor_fits(&Filter::default(), &from_table));
        assert!(!cursor_fits(&by_family, &from_table));
        // Issue 15, finding 12: the table's scan may stop on any item.
        let crawl_page = key(&[("PK", "RUN#r|scope"), ("SK", "P#00000007")]);
        assert!(cursor_fits(&Filter::default(), &crawl_page));
        assert!(!cursor_fits(&by_family, &crawl_page));
        let by_tag = Filter {
            tag_key: Some("team".into()),
            tag_value: Some("payments".into()),
            ..Filter::default()
        };
        let from_tag = key(&[("PK", &tag_key("team", "payments")), ("SK", "E#i-1")]);
        assert!(cursor_fits(&by_tag, &from_tag));
        assert!(!cursor_fits(&by_tag, &from_table));

        let history = key(&[("PK", "E#i-1"), ("SK", "H#2026-11-22T00:00:00Z")]);
        assert!(history_cursor_fits("i-1", &history));
        assert!(!history_cursor_fits("i-2", &history));
        assert!(!history_cursor_fits("i-1", &from_table));
    }
}
