//! An inventory store in memory: the reference behaviour of the port, for the crawl's tests
//! and for the benchmark, which measures the domain without a network.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::changes::{Known, Manifest};
use super::connection::Scope;
use super::crawl::{
    Expected, HistoryRecord, InventoryStore, Refused, ScopeLeases, Stored, StoredContent, Write,
};
use crate::port::PortError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub content: Value,
    pub known: Known,
    /// The scope whose manifest holds it; none once gone.
    pub scope: Option<String>,
    pub active: bool,
    /// When the state held was observed.
    pub observed_at: Option<DateTime<Utc>>,
}

impl Row {
    /// Whether the row is the active entity with this hash.
    fn holds(&self, hash: &str) -> bool {
        self.active && self.known.hash == hash
    }

    /// Whether nothing observed the row after `at`.
    fn observed_by(&self, at: DateTime<Utc>) -> bool {
        self.observed_at.is_none_or(|observed| observed <= at)
    }

    /// Whether nothing observed the row at or after `since`.
    fn unobserved_since(&self, since: DateTime<Utc>) -> bool {
        self.observed_at.is_none_or(|observed| observed < since)
    }
}

/// A run's id and a scope's key.
type RunScope = (String, String);

#[derive(Default)]
pub struct MemoryStore {
    pub rows: Mutex<BTreeMap<String, Row>>,
    pub history: Mutex<Vec<HistoryRecord>>,
    seen: Mutex<BTreeMap<RunScope, BTreeMap<u32, Vec<String>>>>,
    /// Entity and history items written, as a table would count them.
    pub item_writes: Mutex<u64>,
    /// Each held scope's run and the end of its lease.
    leases: Mutex<BTreeMap<String, (String, DateTime<Utc>)>>,
    /// The ids each scope's manifest holds, as the table's byScope index does: a manifest
    /// reads its scope's, not every row (the organisation simulation holds 400,000).
    by_scope: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

fn poisoned() -> PortError {
    PortError::Transient {
        service: "memory",
        detail: "a writer panicked".into(),
    }
}

#[async_trait]
impl InventoryStore for MemoryStore {
    async fn known(&self, ids: &[String]) -> Result<BTreeMap<String, Stored>, PortError> {
        let rows = self.rows.lock().map_err(|_| poisoned())?;
        Ok(ids
            .iter()
            .filter_map(|id| {
                let row = rows.get(id).filter(|r| r.active)?;
                Some((
                    id.clone(),
                    Stored {
                        known: row.known.clone(),
                        content: StoredContent::of(&row.content),
                        observed_at: row.observed_at,
                    },
                ))
            })
            .collect())
    }

    /// Each write on the conditions a table would check, as one item write.
    async fn write(&self, writes: Vec<Write>) -> Result<Refused, PortError> {
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        let mut history = self.history.lock().map_err(|_| poisoned())?;
        let mut count = self.item_writes.lock().map_err(|_| poisoned())?;
        let mut by_scope = self.by_scope.lock().map_err(|_| poisoned())?;
        let mut refused = Refused::new();
        for write in writes {
            let id = write.id().to_owned();
            let row = rows.get(&id);
            let holds = match (&write, &row) {
                (
                    Write::Upsert {
                        expected,
                        observed_at,
                        ..
                    },
                    row,
                ) => {
                    let expected = match (expected, row) {
                        (Expected::NoActiveEntity, row) => row.as_ref().is_none_or(|r| !r.active),
                        (Expected::Hash(hash), Some(row)) => row.holds(hash),
                        (Expected::Hash(_), None) => false,
                    };
                    expected && row.as_ref().is_none_or(|r| r.observed_by(*observed_at))
                }
                (
                    Write::Refresh {
                        expected,
                        observed_at: at,
                        ..
                    }
                    | Write::Seen { expected, at, .. },
                    Some(row),
                ) => row.holds(expected) && row.observed_by(*at),
                (
                    Write::Gone {
                        expected,
                        unobserved_since,
                        ..
                    },
                    Some(row),
                ) => row.holds(expected) && row.unobserved_since(*unobserved_since),
                (
                    Write::Missed {
                        expected,
                        unobserved_since,
                        run,
                        ..
                    },
                    Some(row),
                ) => {
                    row.holds(expected)
                        && row.unobserved_since(*unobserved_since)
                        && row.known.missed_by.as_ref() != Some(run)
                }
                (
                    Write::Retire {
                        expected, scope, ..
                    },
                    Some(row),
                ) => row.holds(expected) && row.scope.as_deref() == Some(scope.key().as_str()),
                (Write::Back { .. }, Some(_)) => true,
                (
                    Write::Refresh { .. }
                    | Write::Seen { .. }
                    | Write::Gone { .. }
                    | Write::Missed { .. }
                    | Write::Retire { .. }
                    | Write::Back { .. },
                    None,
                ) => false,
            };
            // An inactive state observed later (an event saw it terminated) stands: a creation
            // refused by it has nothing to write, and is not refused.
            let superseded = match (&write, &row) {
                (
                    Write::Upsert {
                        expected: Expected::NoActiveEntity,
                        observed_at,
                        ..
                    },
                    Some(row),
                ) => !row.active && !row.observed_by(*observed_at),
                _ => false,
            };
            if superseded {
                continue;
            }
            if !holds {
                refused.insert(id);
                continue;
            }
            *count += 1;
            match write {
                Write::Upsert {
                    entity,
                    hash,
                    scope,
                    history: record,
                    observed_at,
                    ..
                } => {
                    let active = entity
                        .content
                        .get("active")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    if let Some(held) = rows.get(&entity.id).and_then(|r| r.scope.as_ref()) {
                        by_scope.entry(held.clone()).or_default().remove(&entity.id);
                    }
                    by_scope
                        .entry(scope.key())
                        .or_default()
                        .insert(entity.id.clone());
                    rows.insert(
                        entity.id,
                        Row {
                            content: entity.content,
                            known: Known {
                                hash,
                                misses: 0,
                                missed_by: None,
                            },
                            scope: Some(scope.key()),
                            active,
                            observed_at: Some(observed_at),
                        },
                    );
                    history.push(record);
                    *count += 1;
                }
                Write::Refresh {
                    entity,
                    hash,
                    observed_at,
                    ..
                } => {
                    if let Some(row) = rows.get_mut(&entity.id) {
                        row.content = entity.content;
                        row.known.hash = hash;
                        row.observed_at = Some(observed_at);
                    }
                }
                Write::Seen { id, at, .. } => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.observed_at = Some(at);
                        row.known.misses = 0;
                        row.known.missed_by = None;
                    }
                }
                Write::Gone {
                    id,
                    inactive,
                    history: record,
                    ..
                }
                | Write::Retire {
                    id,
                    inactive,
                    history: record,
                    ..
                } => {
                    if let Some(row) = rows.get_mut(&id) {
                        if let Some(held) = row.scope.take() {
                            by_scope.entry(held).or_default().remove(&id);
                        }
                        row.active = false;
                        row.content = inactive;
                    }
                    history.push(record);
                    *count += 1;
                }
                Write::Missed {
                    id, misses, run, ..
                } => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.known.misses = misses;
                        row.known.missed_by = Some(run);
                    }
                }
                Write::Back { id } => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.known.misses = 0;
                        row.known.missed_by = None;
                    }
                }
            }
        }
        Ok(refused)
    }

    async fn record_seen(
        &self,
        run: &str,
        scope: &Scope,
        page: u32,
        ids: &[String],
    ) -> Result<(), PortError> {
        self.seen
            .lock()
            .map_err(|_| poisoned())?
            .entry((run.to_owned(), scope.key()))
            .or_default()
            .insert(page, ids.to_vec());
        Ok(())
    }

    async fn seen(&self, run: &str, scope: &Scope) -> Result<BTreeSet<String>, PortError> {
        Ok(self
            .seen
            .lock()
            .map_err(|_| poisoned())?
            .get(&(run.to_owned(), scope.key()))
            .map(|pages| pages.values().flatten().cloned().collect())
            .unwrap_or_default())
    }

    async fn manifest(&self, scope: &Scope) -> Result<Manifest, PortError> {
        let key = scope.key();
        let rows = self.rows.lock().map_err(|_| poisoned())?;
        let by_scope = self.by_scope.lock().map_err(|_| poisoned())?;
        Ok(by_scope
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let row = rows.get(id)?;
                (row.active && row.scope.as_deref() == Some(key.as_str()))
                    .then(|| (id.clone(), row.known.clone()))
            })
            .collect())
    }
}

#[async_trait]
impl ScopeLeases for MemoryStore {
    async fn take(
        &self,
        scope: &Scope,
        run: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, PortError> {
        let mut leases = self.leases.lock().map_err(|_| poisoned())?;
        match leases.get(&scope.key()) {
            Some((holder, end)) if holder != run && *end >= now => Ok(Some(holder.clone())),
            _ => {
                leases.insert(scope.key(), (run.to_owned(), until));
                Ok(None)
            }
        }
    }

    async fn release(&self, scope: &Scope, run: &str) -> Result<(), PortError> {
        let mut leases = self.leases.lock().map_err(|_| poisoned())?;
        if leases
            .get(&scope.key())
            .is_some_and(|(holder, _)| holder == run)
        {
            leases.remove(&scope.key());
        }
        Ok(())
    }
}
