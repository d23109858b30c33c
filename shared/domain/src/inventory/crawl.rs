//! One scope's crawl, a bounded number of pages per call, continued across calls.
//!
//! Each page is translated, set against the stored hashes of its ids and written at once
//! (created and changed entities with their history); the ids it held are remembered for the
//! run. When the last page has been read, and only then, the scope's manifest is set against
//! everything the run saw: what is missing gets one more miss, what missed `gone_after`
//! complete crawls in a row is gone. An error on any page stops the crawl before that step,
//! so a partial listing never makes anything gone.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::changes::{
    Change, FieldChange, Known, Manifest, Observed, conclude, diff, page_changes,
};
use super::connection::{AssumedRole, Connection, ResourceType, Scope};
use super::entity::Entity;
use crate::port::PortError;

/// Where a provider continues: which of a type's calls (`step`) and that call's page token,
/// whether the API calls it NextToken or Marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub step: u16,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub entities: Vec<Entity>,
    pub next: Option<Cursor>,
}

/// The account and region a provider calls, and the role it assumes to get there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub account: String,
    pub region: String,
    pub role: Option<AssumedRole>,
}

impl Connection {
    /// Where a scope of the connection is crawled: its account, through its role when it has
    /// one.
    pub fn target(&self, region: &str) -> Target {
        Target {
            account: self.account_id.clone(),
            region: region.to_owned(),
            role: self.role.clone(),
        }
    }
}

/// Why a provider call failed, by what retrying can do about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProviderError {
    /// Throttled, or a passing outage: the same call may succeed later.
    #[error("throttled or unavailable: {0}")]
    Throttled(String),
    /// AccessDenied, a role that cannot be assumed.
    #[error("access denied: {0}")]
    Denied(String),
    /// An opt-in region the account has not enabled: there is nothing in it to crawl.
    #[error("the region is not enabled in the account: {0}")]
    RegionNotEnabled(String),
    #[error("{0}")]
    Failed(String),
}

/// Named resources to describe again, from an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Named {
    pub resource_type: ResourceType,
    /// Provider ids as the event names them: `i-…`, a bucket name, a DB identifier, a load
    /// balancer name or ARN, a function name.
    pub ids: Vec<String>,
}

/// The cloud, per resource type.
#[async_trait]
pub trait Provider: Send + Sync {
    async fn page(
        &self,
        target: &Target,
        resource_type: ResourceType,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ProviderError>;

    /// The named resources that still exist (a missing one is simply left out).
    async fn describe(&self, target: &Target, named: &Named) -> Result<Vec<Entity>, ProviderError>;
}

/// An entity's content as the store holds it, JSON text. It is read only where a change needs
/// it: most entities a crawl sees have not changed, and their content is never parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent(String);

impl StoredContent {
    pub fn new(json: String) -> Self {
        StoredContent(json)
    }

    pub fn of(content: &Value) -> Self {
        StoredContent(content.to_string())
    }

    pub fn read(&self) -> Result<Value, PortError> {
        serde_json::from_str(&self.0).map_err(|e| PortError::Rejected {
            service: "inventory",
            detail: format!("a stored entity does not read back: {e}"),
        })
    }
}

/// What the store keeps of an active entity, for the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub known: Known,
    pub content: StoredContent,
    /// When the state stored was observed (listed or described); none for entities written
    /// before Maestro kept it.
    pub observed_at: Option<DateTime<Utc>>,
}

/// Who made a change: a scheduled or asked-for crawl (by run), or an event (by its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Source {
    ScheduledSync {
        run: String,
    },
    ApiSync {
        run: String,
    },
    EventRefresh {
        event_id: String,
        event_name: String,
        /// Who made the call, as CloudTrail recorded it; absent for records written before
        /// Maestro kept it, and for events without a `userIdentity`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor: Option<Actor>,
    },
    /// A lifecycle rule: the scope is no longer watched, for this reason.
    Lifecycle {
        reason: super::lifecycle::Unwatched,
    },
}

/// The principal behind an event-driven change, from CloudTrail's `userIdentity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `AssumedRole`, `IAMUser`, `Root`, `AWSService`, `IdentityCenterUser`, … as CloudTrail
    /// names it.
    pub principal_type: String,
    /// The principal's ARN, or for an AWS service the service that acted (`invokedBy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// When the call was made (CloudTrail's `eventTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    Created,
    Changed,
    Gone,
    /// No longer watched (`super::lifecycle`): made inactive, with the reason in its source.
    Retired,
}

/// One history record: what changed in one entity, when, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    pub entity_id: String,
    pub at: DateTime<Utc>,
    pub change: ChangeKind,
    pub source: Source,
    pub diff: Vec<FieldChange>,
}

/// The state a write was computed against, which the store must still hold when it writes:
/// a write never replaces a state it did not read, so the history diff, the index items and
/// the summary counters it carries are the true difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// No active entity: none was ever written, or only its tombstone.
    NoActiveEntity,
    /// The active entity with this content hash.
    Hash(String),
}

/// What the store is asked to write, each with its history record where one is due, and each
/// on a condition: the state it was computed against ([`Expected`]) and, against an observation
/// made since, when it was observed. A write whose condition does not hold is refused, and
/// nothing of it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Created or changed: the entity's new content, the scope whose manifest holds it, and
    /// the content it replaces (for the relation and tag index). Refused where the stored
    /// state was observed after `observed_at`: a page listed before an event never writes
    /// back the older state.
    Upsert {
        entity: Observed,
        hash: String,
        scope: Scope,
        previous: Option<Value>,
        history: HistoryRecord,
        expected: Expected,
        observed_at: DateTime<Utc>,
    },
    /// Only volatile fields changed (`changes::is_volatile`): the entity's current state,
    /// with no history record, and nothing its indexes hold changed.
    Refresh {
        entity: Observed,
        hash: String,
        expected: String,
        observed_at: DateTime<Utc>,
    },
    /// Described unchanged by an event: it is there as of `at`, whatever a crawl running now
    /// does not see, and its misses start again from none.
    Seen {
        id: String,
        expected: String,
        at: DateTime<Utc>,
    },
    /// Refused where the entity was observed at or after `unobserved_since`, the start of the
    /// crawl that missed it: an event that saw it since outweighs that crawl's absence.
    Gone {
        id: String,
        previous: Option<Value>,
        /// The tombstone: the content it holds once gone.
        inactive: Value,
        history: HistoryRecord,
        expected: String,
        unobserved_since: DateTime<Utc>,
    },
    /// Missed by a complete crawl, not gone yet; refused as [`Write::Gone`] is, and where the
    /// same run counted the miss already.
    Missed {
        id: String,
        misses: u32,
        /// The run that counted this miss.
        run: String,
        expected: String,
        unobserved_since: DateTime<Utc>,
    },
    /// Seen again after a miss.
    Back { id: String },
    /// No longer watched (`super::lifecycle`): made inactive as last seen, its relations
    /// dropped. Refused where the entity is not the active one with `expected`, in `scope`.
    Retire {
        id: String,
        /// The scope retired: an entity another scope holds now is not retired with it.
        scope: Scope,
        previous: Value,
        /// The content it holds once retired.
        inactive: Value,
        history: HistoryRecord,
        expected: String,
    },
}

impl Write {
    /// The entity the write is about.
    pub fn id(&self) -> &str {
        match self {
            Write::Upsert { entity, .. } | Write::Refresh { entity, .. } => &entity.id,
            Write::Seen { id, .. }
            | Write::Gone { id, .. }
            | Write::Retire { id, .. }
            | Write::Missed { id, .. }
            | Write::Back { id } => id,
        }
    }
}

/// The ids whose write the store refused: what it held was not what the write expected.
pub type Refused = BTreeSet<String>;

#[async_trait]
pub trait InventoryStore: Send + Sync {
    /// The stored active entities among `ids`.
    async fn known(&self, ids: &[String]) -> Result<BTreeMap<String, Stored>, PortError>;
    /// Writes each on its own condition; answers those refused.
    async fn write(&self, writes: Vec<Write>) -> Result<Refused, PortError>;
    /// Remembers the ids one page of a run held; a page written twice keeps one copy.
    async fn record_seen(
        &self,
        run: &str,
        scope: &Scope,
        page: u32,
        ids: &[String],
    ) -> Result<(), PortError>;
    async fn seen(&self, run: &str, scope: &Scope) -> Result<BTreeSet<String>, PortError>;
    /// Every active entity the scope's crawls have found.
    async fn manifest(&self, scope: &Scope) -> Result<Manifest, PortError>;
}

/// One crawl of a scope at a time: two overlapping crawls would each count the same absence
/// as a miss, and one real miss would turn GONE. A lease expires, so a crawl that stopped
/// without freeing its scope holds it no longer than that.
#[async_trait]
pub trait ScopeLeases: Send + Sync {
    /// Takes the scope's lease for `run` until `until`, or keeps it if `run` has it; answers
    /// the run that holds it when another does.
    async fn take(
        &self,
        scope: &Scope,
        run: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, PortError>;
    /// Frees the scope's lease if `run` holds it.
    async fn release(&self, scope: &Scope, run: &str) -> Result<(), PortError>;
}

/// Frees the leases of the scopes whose crawl failed, once their run has ended: the state
/// machine retries them no more, and the next run need not wait for the leases to expire.
/// Each lease is freed only if `run` still holds it.
pub async fn free_failed_scopes(
    leases: &dyn ScopeLeases,
    run: &str,
    failed: &[Scope],
) -> Result<(), PortError> {
    for scope in failed {
        leases.release(scope, run).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub seen: u64,
    pub created: u64,
    pub changed: u64,
    pub gone: u64,
    /// Missed by this crawl, not gone yet.
    pub missing: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.seen += other.seen;
        self.created += other.created;
        self.changed += other.changed;
        self.gone += other.gone;
        self.missing += other.missing;
    }
}

/// Why a crawl ended having read nothing and concluded nothing, without failing: no alarm is
/// due, and the scope's entities stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skipped {
    /// An opt-in region the account has not enabled. Organisations crawl one region list in
    /// every account; an account that has not opted in to one of them is not failing.
    RegionNotEnabled,
}

/// A scope's crawl between calls: the state machine hands it back until `done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrawlState {
    pub run: String,
    pub scope: Scope,
    #[serde(default)]
    pub cursor: Option<Cursor>,
    #[serde(default)]
    pub pages: u32,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub done: bool,
    /// Asked for through the API rather than by the schedule.
    #[serde(default)]
    pub asked: bool,
    /// The run that was crawling the scope when this one came to it: this run left the scope
    /// to it (`done`, having concluded nothing). Always present, as null when none, for the
    /// state machine's paths.
    #[serde(default)]
    pub held_by: Option<String>,
    /// Why the crawl ended without reading the scope, when it did. Always present, as null
    /// when none, for the state machine's paths.
    #[serde(default)]
    pub skipped: Option<Skipped>,
    /// The last unseen entity the conclusion has concluded, while it takes more than one call
    /// ([`CONCLUDED_PER_CALL`] each): the pages are all read, and the next call concludes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concluded_to: Option<String>,
    /// When the run's first call for the scope began, before its first page was listed: what
    /// was observed since outweighs this crawl's absence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
}

impl CrawlState {
    pub fn start(run: &str, scope: Scope, asked: bool) -> CrawlState {
        CrawlState {
            run: run.to_owned(),
            scope,
            cursor: None,
            pages: 0,
            counts: Counts::default(),
            done: false,
            asked,
            held_by: None,
            skipped: None,
            concluded_to: None,
            started: None,
        }
    }

    fn source(&self) -> Source {
        if self.asked {
            Source::ApiSync {
                run: self.run.clone(),
            }
        } else {
            Source::ScheduledSync {
                run: self.run.clone(),
            }
        }
    }
}

#[derive(Debug, Error)]
pub enum CrawlError {
    #[error("{scope}: {error}")]
    Provider { scope: String, error: ProviderError },
    #[error("{scope}: the inventory store failed: {error}")]
    Store { scope: String, error: PortError },
    #[error("{scope}: an entity does not serialise: {detail}")]
    Entity { scope: String, detail: String },
}

/// Unseen entities one call concludes at most: each may be a transaction, and a call stays
/// well inside the crawler's 300 s (1,000 tombstones at 20 ms are 20 s).
pub const CONCLUDED_PER_CALL: usize = 1_000;

/// How long a crawler call holds its scope: the crawler's 300 s timeout and the state
/// machine's retries between two calls (at most 4, each at most 60 s late) fit inside it.
pub const SCOPE_LEASE: chrono::Duration = chrono::Duration::minutes(10);

pub struct CrawlSettings {
    /// Pages per call, so one call stays well inside the Lambda's time.
    pub pages_per_call: u32,
    pub gone_after: u32,
    /// How long each call holds the scope's lease: longer than a call and the state
    /// machine's retries between two calls.
    pub lease: chrono::Duration,
}

fn observed(entity: &Entity, scope: &Scope) -> Result<Observed, CrawlError> {
    serde_json::to_value(entity)
        .map(|content| Observed {
            id: entity.id.clone(),
            content,
        })
        .map_err(|e| CrawlError::Entity {
            scope: scope.key(),
            detail: e.to_string(),
        })
}

/// How many times a write refused because another writer changed the entity in between is
/// computed again from what the store then holds.
const WRITE_ATTEMPTS: usize = 3;

/// The writes for what some entities show, observed at `now`, against what the store holds of
/// them. An entity whose stored state was observed after `now` is left as it is: that state is
/// newer. An entity an event describes unchanged is [`Write::Seen`].
pub async fn refresh_writes(
    store: &dyn InventoryStore,
    entities: &[Entity],
    scope: &Scope,
    source: &Source,
    now: DateTime<Utc>,
) -> Result<(Vec<Write>, Counts), CrawlError> {
    let store_error = |error| CrawlError::Store {
        scope: scope.key(),
        error,
    };
    // A listing that names a resource twice (one changing between two pages) counts it once,
    // as its later state.
    let mut by_id: BTreeMap<&str, &Entity> = BTreeMap::new();
    for entity in entities {
        by_id.insert(&entity.id, entity);
    }
    let ids: Vec<String> = by_id.keys().map(|id| (*id).to_owned()).collect();
    let stored = store.known(&ids).await.map_err(store_error)?;
    let mut counts = Counts {
        seen: by_id.len() as u64,
        ..Counts::default()
    };
    // An entity is hashed as it is; only one whose hash differs from the stored one is turned
    // into the JSON document a diff and a write need.
    // An event's describe is proof for the crawl that may be running meanwhile; a crawl's
    // own pages are its proof that an entity is there.
    let proves_presence = matches!(source, Source::EventRefresh { .. });
    let mut unchanged = BTreeSet::new();
    let mut candidates = Vec::new();
    for entity in by_id.into_values() {
        let held = stored.get(&entity.id);
        // A state observed after this one stands.
        if held.and_then(|s| s.observed_at).is_some_and(|at| at > now) {
            continue;
        }
        // Tags that could not be read stand as last read: not being able to read a tag is no
        // proof that it went.
        let kept;
        let entity = match (&entity.tags_unreadable, held) {
            (Some(_), Some(held)) => {
                kept = entity.with_tags_of(&held.content.read().map_err(store_error)?);
                &kept
            }
            _ => entity,
        };
        let hash = entity.content_hash();
        match held {
            Some(held) if held.known.hash == hash => {
                if proves_presence {
                    unchanged.insert(entity.id.clone());
                }
            }
            _ => candidates.push((observed(entity, scope)?, hash)),
        }
    }
    let manifest: Manifest = candidates
        .iter()
        .filter_map(|(entity, _)| Some((entity.id.clone(), stored.get(&entity.id)?.known.clone())))
        .collect();
    let mut writes = Vec::new();
    let changes = page_changes(&manifest, candidates, |id| {
        stored.get(id).map(|s| s.content.read()).transpose()
    })
    .map_err(store_error)?;
    for change in changes {
        let expected = |id: &str| {
            stored.get(id).map_or(Expected::NoActiveEntity, |s| {
                Expected::Hash(s.known.hash.clone())
            })
        };
        let (entity, hash, diff, kind, previous) = match change {
            Change::Created { entity, hash } => {
                counts.created += 1;
                let diff = diff(&Value::Object(Default::default()), &entity.content);
                (entity, hash, diff, ChangeKind::Created, None)
            }
            Change::Changed {
                entity,
                hash,
                diff,
                previous,
            } => {
                counts.changed += 1;
                (entity, hash, diff, ChangeKind::Changed, previous)
            }
            Change::Refreshed { entity, hash } => {
                if let Expected::Hash(expected) = expected(&entity.id) {
                    writes.push(Write::Refresh {
                        hash,
                        entity,
                        expected,
                        observed_at: now,
                    });
                }
                continue;
            }
            // A page never concludes absence.
            Change::Gone { .. } => continue,
        };
        writes.push(Write::Upsert {
            hash,
            history: HistoryRecord {
                entity_id: entity.id.clone(),
                at: now,
                change: kind,
                source: source.clone(),
                diff,
            },
            expected: expected(&entity.id),
            entity,
            scope: scope.clone(),
            previous,
            observed_at: now,
        });
    }
    for id in unchanged {
        if let Some(stored) = stored.get(&id) {
            writes.push(Write::Seen {
                expected: stored.known.hash.clone(),
                id,
                at: now,
            });
        }
    }
    Ok((writes, counts))
}

/// Writes what some entities show, observed at `now`. A write refused because another writer
/// changed the entity since it was read is computed again from what the store holds then; one
/// refused [`WRITE_ATTEMPTS`] times fails the call as transient, for the caller's retries.
pub async fn refresh(
    store: &dyn InventoryStore,
    entities: &[Entity],
    scope: &Scope,
    source: &Source,
    now: DateTime<Utc>,
) -> Result<Counts, CrawlError> {
    let store_error = |error| CrawlError::Store {
        scope: scope.key(),
        error,
    };
    let mut counts = Counts::default();
    // The page itself on the first attempt; a copy of what was refused after.
    let mut pending = std::borrow::Cow::Borrowed(entities);
    for attempt in 0..WRITE_ATTEMPTS {
        let (writes, attempted) = refresh_writes(store, &pending, scope, source, now).await?;
        if attempt == 0 {
            counts.seen = attempted.seen;
        }
        let kinds: Vec<(String, ChangeKind)> = writes
            .iter()
            .filter_map(|write| match write {
                Write::Upsert {
                    entity, history, ..
                } => Some((entity.id.clone(), history.change)),
                _ => None,
            })
            .collect();
        let refused = store.write(writes).await.map_err(store_error)?;
        for (id, kind) in kinds {
            match kind {
                _ if refused.contains(&id) => {}
                ChangeKind::Created => counts.created += 1,
                ChangeKind::Changed => counts.changed += 1,
                ChangeKind::Gone | ChangeKind::Retired => counts.gone += 1,
            }
        }
        if refused.is_empty() {
            return Ok(counts);
        }
        pending = pending
            .iter()
            .filter(|entity| refused.contains(&entity.id))
            .cloned()
            .collect();
    }
    Err(store_error(PortError::Transient {
        service: "inventory",
        detail: format!(
            "{} entities were changed by another writer each time they were written, {WRITE_ATTEMPTS} times",
            pending.len()
        ),
    }))
}

/// Crawls up to `settings.pages_per_call` pages of the scope, and concludes it after its last
/// page. An error leaves the scope's entities as the pages before it wrote them, and nothing
/// gone. Each call takes or keeps the scope's lease first: a scope another run is crawling is
/// left to it, `done` with `held_by`, and this run concludes nothing of it.
pub async fn crawl_step(
    provider: &dyn Provider,
    store: &dyn InventoryStore,
    leases: &dyn ScopeLeases,
    target: &Target,
    mut state: CrawlState,
    settings: &CrawlSettings,
    now: DateTime<Utc>,
) -> Result<CrawlState, CrawlError> {
    let scope = state.scope.clone();
    let run = state.run.clone();
    let holder = leases
        .take(&scope, &run, now, now + settings.lease)
        .await
        .map_err(|error| CrawlError::Store {
            scope: scope.key(),
            error,
        })?;
    if let Some(holder) = holder {
        state.held_by = Some(holder);
        state.done = true;
        return Ok(state);
    }
    state.started.get_or_insert(now);
    let crawled = match crawl_pages(provider, store, target, state.clone(), settings, now).await {
        Err(CrawlError::Provider {
            error: ProviderError::RegionNotEnabled(_),
            ..
        }) => CrawlState {
            done: true,
            skipped: Some(Skipped::RegionNotEnabled),
            cursor: None,
            ..state
        },
        crawled => crawled?,
    };
    if crawled.done {
        // Concluded: the scope is free for the next run at once. Freeing is best effort: a
        // lease left held expires, and delays the scope's next crawl by at most its length.
        // A call that failed keeps the lease: the state machine retries it with the same
        // state, and another run crawling the scope in between would count the same absence
        // again. After the last retry, the lease expires.
        let _ = leases.release(&scope, &run).await;
    }
    Ok(crawled)
}

async fn crawl_pages(
    provider: &dyn Provider,
    store: &dyn InventoryStore,
    target: &Target,
    mut state: CrawlState,
    settings: &CrawlSettings,
    now: DateTime<Utc>,
) -> Result<CrawlState, CrawlError> {
    let scope = state.scope.clone();
    let store_error = |error| CrawlError::Store {
        scope: scope.key(),
        error,
    };
    if state.concluded_to.is_some() {
        return conclude_scope(store, state, settings.gone_after, now).await;
    }
    let source = state.source();
    for _ in 0..settings.pages_per_call.max(1) {
        let page = provider
            .page(target, scope.resource_type, state.cursor.as_ref())
            .await
            .map_err(|error| CrawlError::Provider {
                scope: scope.key(),
                error,
            })?;
        let counts = refresh(store, &page.entities, &scope, &source, now).await?;
        let ids: Vec<String> = page.entities.iter().map(|e| e.id.clone()).collect();
        store
            .record_seen(&state.run, &scope, state.pages, &ids)
            .await
            .map_err(store_error)?;
        state.counts.add(&counts);
        state.pages += 1;
        state.cursor = page.next;
        if state.cursor.is_none() {
            return conclude_scope(store, state, settings.gone_after, now).await;
        }
    }
    Ok(state)
}

async fn conclude_scope(
    store: &dyn InventoryStore,
    mut state: CrawlState,
    gone_after: u32,
    now: DateTime<Utc>,
) -> Result<CrawlState, CrawlError> {
    let scope = state.scope.clone();
    let store_error = |error| CrawlError::Store {
        scope: scope.key(),
        error,
    };
    let started = state.started.unwrap_or(now);
    let manifest = store.manifest(&scope).await.map_err(store_error)?;
    let seen = store.seen(&state.run, &scope).await.map_err(store_error)?;
    // The unseen entities after those the calls before concluded, in id order, at most
    // CONCLUDED_PER_CALL of them: a scope whose every resource went is concluded over calls.
    let after = state.concluded_to.take();
    let unseen: Vec<String> = manifest
        .keys()
        .filter(|id| !seen.contains(*id))
        .filter(|id| after.as_deref().is_none_or(|last| id.as_str() > last))
        .take(CONCLUDED_PER_CALL)
        .cloned()
        .collect();
    let more = unseen.len() == CONCLUDED_PER_CALL;
    let previous = store.known(&unseen).await.map_err(store_error)?;
    // The state machine retries a conclusion whose writes may have landed: a miss this run
    // counted already is left as it is, or one real miss would count twice and turn GONE. And
    // the manifest comes from an index that may lag the table: an entity the table no longer
    // holds as active (gone in the attempt before) is not concluded again.
    // The miss count is the table's too: the index's may be older than a reset to zero.
    // An entity observed since this crawl began (an event described it) is there, whatever
    // the pages that passed its place before showed.
    let manifest: Manifest = manifest
        .into_iter()
        .filter_map(|(id, indexed)| {
            // Those seen again are concluded (back from their misses) by the first call.
            if seen.contains(&id) {
                return after.is_none().then_some((id, indexed));
            }
            previous
                .get(&id)
                .filter(|stored| stored.known.missed_by.as_deref() != Some(state.run.as_str()))
                .filter(|stored| stored.observed_at.is_none_or(|at| at < started))
                .map(|stored| (id, stored.known.clone()))
        })
        .collect();
    let conclusion = conclude(&manifest, &seen, gone_after);
    let mut writes = Vec::new();
    for id in conclusion.gone {
        let Some(stored) = previous.get(&id) else {
            continue;
        };
        let content = stored.content.read().map_err(store_error)?;
        let mut gone = content.clone();
        gone["active"] = Value::Bool(false);
        gone["status"] = Value::String("gone".into());
        writes.push(Write::Gone {
            history: HistoryRecord {
                entity_id: id.clone(),
                at: now,
                change: ChangeKind::Gone,
                source: state.source(),
                diff: diff(&content, &gone),
            },
            id,
            previous: Some(content),
            inactive: gone,
            expected: stored.known.hash.clone(),
            unobserved_since: started,
        });
    }
    for (id, misses) in conclusion.missed {
        if let Some(stored) = previous.get(&id) {
            writes.push(Write::Missed {
                id,
                misses,
                run: state.run.clone(),
                expected: stored.known.hash.clone(),
                unobserved_since: started,
            });
        }
    }
    writes.extend(conclusion.back.into_iter().map(|id| Write::Back { id }));
    let gone_ids: Vec<String> = writes
        .iter()
        .filter(|write| matches!(write, Write::Gone { .. }))
        .map(|write| write.id().to_owned())
        .collect();
    let missed_ids: Vec<String> = writes
        .iter()
        .filter(|write| matches!(write, Write::Missed { .. }))
        .map(|write| write.id().to_owned())
        .collect();
    // A refused conclusion is an entity some writer touched since it was read: it is there.
    let refused = store.write(writes).await.map_err(store_error)?;
    let accepted = |ids: Vec<String>| ids.iter().filter(|id| !refused.contains(*id)).count() as u64;
    let (gone, missing) = (accepted(gone_ids), accepted(missed_ids));
    state.counts.gone += gone;
    state.counts.missing += missing;
    match unseen.last() {
        Some(last) if more => state.concluded_to = Some(last.clone()),
        _ => state.done = true,
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::inventory::connection::ResourceType;
    use crate::inventory::entity::ids;
    use crate::inventory::memory::{MemoryStore, Row};

    fn server(id: &str, name: &str) -> Entity {
        crate::inventory::synthetic::instance("111111111111", "eu-west-1", id, name)
    }

    /// Pages of two entities; `fail_page` makes that page fail.
    struct Listing {
        entities: Mutex<Vec<Entity>>,
        fail_page: Mutex<Option<usize>>,
    }

    impl Listing {
        fn of(entities: Vec<Entity>) -> Listing {
            Listing {
                entities: Mutex::new(entities),
                fail_page: Mutex::new(None),
            }
        }
    }

    #[async_trait]
    impl Provider for Listing {
        async fn page(
            &self,
            _: &Target,
            _: ResourceType,
            cursor: Option<&Cursor>,
        ) -> Result<Page, ProviderError> {
            let page: usize = cursor
                .and_then(|c| c.token.as_deref())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            if *self.fail_page.lock().expect("lock") == Some(page) {
                return Err(ProviderError::Denied("UnauthorizedOperation".into()));
            }
            let all = self.entities.lock().expect("lock").clone();
            let entities: Vec<Entity> = all.iter().skip(page * 2).take(2).cloned().collect();
            let next = (all.len() > (page + 1) * 2).then(|| Cursor {
                step: 0,
                token: Some((page + 1).to_string()),
            });
            Ok(Page { entities, next })
        }

        async fn describe(&self, _: &Target, _: &Named) -> Result<Vec<Entity>, ProviderError> {
            Ok(Vec::new())
        }
    }

    fn scope() -> Scope {
        Scope {
            connection_id: "prod".into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            resource_type: ResourceType::Instances,
        }
    }

    fn target() -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            role: None,
        }
    }

    fn settings() -> CrawlSettings {
        CrawlSettings {
            pages_per_call: 1,
            gone_after: 2,
            lease: chrono::Duration::minutes(10),
        }
    }

    /// One call of `state`'s crawl, as the state machine makes it.
    async fn step(
        provider: &Listing,
        store: &MemoryStore,
        state: CrawlState,
    ) -> Result<CrawlState, CrawlError> {
        crawl_step(
            provider,
            store,
            store,
            &target(),
            state,
            &settings(),
            Utc::now(),
        )
        .await
    }

    /// Runs one whole crawl, one page per call as the state machine would loop.
    async fn run(
        provider: &Listing,
        store: &MemoryStore,
        run: &str,
    ) -> Result<CrawlState, CrawlError> {
        run_at(provider, store, run, Utc::now()).await
    }

    async fn run_at(
        provider: &Listing,
        store: &MemoryStore,
        run: &str,
        now: DateTime<Utc>,
    ) -> Result<CrawlState, CrawlError> {
        let mut state = CrawlState::start(run, scope(), false);
        let mut calls = 0;
        while !state.done {
            state = crawl_step(provider, store, store, &target(), state, &settings(), now).await?;
            calls += 1;
            assert!(calls < 100, "the crawl ends");
        }
        Ok(state)
    }

    /// Later than the lease of a run whose crawl failed.
    fn after_the_lease() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(11)
    }

    fn names(n: usize) -> Vec<Entity> {
        (0..n)
            .map(|i| server(&format!("i-{i}"), &format!("web-{i}")))
            .collect()
    }

    #[tokio::test]
    async fn a_conclusion_too_large_for_one_call_goes_on_over_calls_counting_each_miss_once() {
        // Issue 15, finding 8: a scope's conclusion was one loop over all it missed, which a
        // scope whose every resource went could not finish inside one call.
        let store = MemoryStore::default();
        let everything = names(CONCLUDED_PER_CALL * 2 + 500);
        let listing = Listing::of(everything.clone());
        let all_at_once = CrawlSettings {
            pages_per_call: u32::MAX,
            ..settings()
        };
        let mut state = CrawlState::start("r1", scope(), false);
        while !state.done {
            state = crawl_step(
                &listing,
                &store,
                &store,
                &target(),
                state,
                &all_at_once,
                Utc::now(),
            )
            .await
            .expect("crawls");
        }
        assert_eq!(state.counts.created, everything.len() as u64);

        listing.entities.lock().expect("lock").clear();
        // Each conclusion call of the first run is retried once, as the state machine may
        // after a timeout: no miss is counted twice.
        let mut state = CrawlState::start("r2", scope(), false);
        let mut calls = 0;
        while !state.done {
            let again = state.clone();
            crawl_step(
                &listing,
                &store,
                &store,
                &target(),
                again,
                &settings(),
                Utc::now(),
            )
            .await
            .expect("concludes");
            state = crawl_step(
                &listing,
                &store,
                &store,
                &target(),
                state,
                &settings(),
                Utc::now(),
            )
            .await
            .expect("concludes");
            calls += 1;
        }
        assert_eq!(calls, 3, "1,000, 1,000, then 500");
        assert!(
            store
                .rows
                .lock()
                .expect("lock")
                .values()
                .all(|r| r.active && r.known.misses == 1)
        );
        let mut state = CrawlState::start("r3", scope(), false);
        let mut calls = 0;
        while !state.done {
            state = crawl_step(
                &listing,
                &store,
                &store,
                &target(),
                state,
                &settings(),
                Utc::now(),
            )
            .await
            .expect("concludes");
            calls += 1;
        }
        assert_eq!((calls, state.counts.gone), (3, everything.len() as u64));
        let rows = store.rows.lock().expect("lock");
        assert!(rows.values().all(|r| !r.active));
    }

    /// An opt-in region the account has not enabled: every call is refused.
    struct RegionNotEnabled;

    #[async_trait]
    impl Provider for RegionNotEnabled {
        async fn page(
            &self,
            _: &Target,
            _: ResourceType,
            _: Option<&Cursor>,
        ) -> Result<Page, ProviderError> {
            Err(ProviderError::RegionNotEnabled(
                "111111111111 has not opted in to eu-west-1".into(),
            ))
        }

        async fn describe(&self, _: &Target, _: &Named) -> Result<Vec<Entity>, ProviderError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_region_not_enabled_ends_the_crawl_skipped_concluding_nothing() {
        // Issue 15, finding 8: such a scope failed on every crawl and raised the alarm.
        let store = MemoryStore::default();
        run(&Listing::of(names(3)), &store, "r1")
            .await
            .expect("crawls");
        for run_id in ["r2", "r3"] {
            let mut state = CrawlState::start(run_id, scope(), false);
            state = crawl_step(
                &RegionNotEnabled,
                &store,
                &store,
                &target(),
                state,
                &settings(),
                Utc::now(),
            )
            .await
            .expect("a region not enabled is no failure");
            assert!(state.done);
            assert_eq!(state.skipped, Some(Skipped::RegionNotEnabled));
            assert_eq!(state.counts, Counts::default());
        }
        // Nothing missed, nothing gone; and the scope is free for the next run.
        assert!(
            store
                .rows
                .lock()
                .expect("lock")
                .values()
                .all(|r| r.active && r.known.misses == 0)
        );
        let next = run(&Listing::of(names(3)), &store, "r4")
            .await
            .expect("crawls");
        assert_eq!((next.held_by, next.counts.seen), (None, 3));
    }

    #[tokio::test]
    async fn a_crawl_continues_across_calls_and_a_second_one_writes_nothing() {
        let provider = Listing::of(names(5));
        let store = MemoryStore::default();
        let first = run(&provider, &store, "r1").await.expect("crawls");
        assert_eq!(first.pages, 3);
        assert_eq!(first.counts.created, 5);
        assert_eq!(store.history.lock().expect("lock").len(), 5);
        let writes = *store.item_writes.lock().expect("lock");
        let second = run(&provider, &store, "r2").await.expect("crawls");
        assert_eq!(second.counts.seen, 5);
        assert_eq!((second.counts.created, second.counts.changed), (0, 0));
        assert_eq!(*store.item_writes.lock().expect("lock"), writes);
    }

    #[tokio::test]
    async fn a_tag_change_writes_one_history_record_with_its_diff() {
        let provider = Listing::of(names(3));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        provider.entities.lock().expect("lock")[1] = server("i-1", "api-1");
        let second = run(&provider, &store, "r2").await.expect("crawls");
        assert_eq!(second.counts.changed, 1);
        let history = store.history.lock().expect("lock");
        let last = history.last().expect("a record");
        assert_eq!(last.change, ChangeKind::Changed);
        let paths: Vec<&str> = last.diff.iter().map(FieldChange::path).collect();
        assert_eq!(paths, ["name", "tags.Name"]);
    }

    #[tokio::test]
    async fn tags_that_could_not_be_read_stand_as_last_read() {
        // Issue 15, finding 6: a resource whose tags were refused this time lost them.
        let provider = Listing::of(names(1));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        let mut refused = server("i-0", "web-0");
        refused.tags.clear();
        refused.name = None;
        refused.tags_unreadable = Some("s3:GetBucketTagging: AccessDenied".into());
        *provider.entities.lock().expect("lock") = vec![refused];
        let second = run(&provider, &store, "r2").await.expect("crawls");
        assert_eq!(second.counts.changed, 1);
        let rows = store.rows.lock().expect("lock");
        let row = &rows[&ids::ec2("eu-west-1", "111111111111", "instance", "i-0")];
        assert_eq!(row.content["tags"]["Name"], "web-0");
        assert_eq!(row.content["name"], "web-0");
        let history = store.history.lock().expect("lock");
        let paths: Vec<&str> = history
            .last()
            .expect("a record")
            .diff
            .iter()
            .map(FieldChange::path)
            .collect();
        assert_eq!(paths, ["tagsUnreadable"], "only that the tags were refused");
    }

    #[tokio::test]
    async fn gone_after_two_complete_crawls_and_never_after_a_failed_one() {
        let provider = Listing::of(names(5));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        provider.entities.lock().expect("lock").remove(4);
        let missed = run(&provider, &store, "r2").await.expect("crawls");
        assert_eq!((missed.counts.missing, missed.counts.gone), (1, 0));

        // A page fails: the crawl stops, nothing is concluded.
        *provider.fail_page.lock().expect("lock") = Some(1);
        let failed = run(&provider, &store, "r3").await;
        assert!(matches!(failed, Err(CrawlError::Provider { .. })));
        assert!(store.rows.lock().expect("lock").values().all(|r| r.active));

        *provider.fail_page.lock().expect("lock") = None;
        let gone = run_at(&provider, &store, "r4", after_the_lease())
            .await
            .expect("crawls");
        assert_eq!(gone.counts.gone, 1);
        let rows = store.rows.lock().expect("lock");
        let inactive: Vec<&String> = rows
            .iter()
            .filter(|(_, r)| !r.active)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            inactive,
            [&ids::ec2("eu-west-1", "111111111111", "instance", "i-4")]
        );
        let history = store.history.lock().expect("lock");
        let last = history.last().expect("a record");
        assert_eq!(last.change, ChangeKind::Gone);
        assert!(
            last.diff
                .iter()
                .any(|c| matches!(c, FieldChange::Changed { path, .. } if path == "active"))
        );
    }

    /// A store whose conclusion writes land, then answer an error (a timeout after DynamoDB
    /// applied them), `failures` times; with `lagging_index`, the manifest answers what it
    /// answered first, as an index that has not caught up with the table.
    struct LandsThenFails<'a> {
        store: &'a MemoryStore,
        failures: Mutex<u32>,
        lagging_index: Option<Mutex<Option<Manifest>>>,
    }

    #[async_trait]
    impl InventoryStore for LandsThenFails<'_> {
        async fn known(&self, ids: &[String]) -> Result<BTreeMap<String, Stored>, PortError> {
            self.store.known(ids).await
        }
        async fn write(&self, writes: Vec<Write>) -> Result<Refused, PortError> {
            let concludes = writes
                .iter()
                .any(|w| matches!(w, Write::Missed { .. } | Write::Gone { .. }));
            let refused = self.store.write(writes).await?;
            let mut failures = self.failures.lock().expect("lock");
            if concludes && *failures > 0 {
                *failures -= 1;
                return Err(PortError::Transient {
                    service: "dynamodb",
                    detail: "the request timed out".into(),
                });
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
            self.store.record_seen(run, scope, page, ids).await
        }
        async fn seen(&self, run: &str, scope: &Scope) -> Result<BTreeSet<String>, PortError> {
            self.store.seen(run, scope).await
        }
        async fn manifest(&self, scope: &Scope) -> Result<Manifest, PortError> {
            let fresh = self.store.manifest(scope).await?;
            let Some(lagging) = &self.lagging_index else {
                return Ok(fresh);
            };
            Ok(lagging.lock().expect("lock").get_or_insert(fresh).clone())
        }
    }

    /// Runs `run` through `store` as the state machine does, retrying a step that failed on
    /// the store with the same input; answers how many retries it took.
    async fn run_with_retries(provider: &Listing, store: &LandsThenFails<'_>, run: &str) -> u32 {
        let mut state = CrawlState::start(run, scope(), false);
        let mut retried = 0;
        while !state.done {
            match crawl_step(
                provider,
                store,
                store.store,
                &target(),
                state.clone(),
                &settings(),
                Utc::now(),
            )
            .await
            {
                Ok(next) => state = next,
                Err(CrawlError::Store { .. }) => retried += 1,
                Err(other) => panic!("{other}"),
            }
            assert!(retried < 5, "the retry succeeds");
        }
        retried
    }

    #[tokio::test]
    async fn a_retried_conclusion_counts_a_miss_once() {
        let provider = Listing::of(names(5));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        provider.entities.lock().expect("lock").remove(4);
        let flaky = LandsThenFails {
            store: &store,
            failures: Mutex::new(1),
            lagging_index: None,
        };
        assert_eq!(run_with_retries(&provider, &flaky, "r2").await, 1);
        let rows = store.rows.lock().expect("lock");
        assert!(rows.values().all(|r| r.active), "one real miss is no GONE");
        let missed = &rows[&ids::ec2("eu-west-1", "111111111111", "instance", "i-4")];
        assert_eq!(missed.known.misses, 1);
    }

    #[tokio::test]
    async fn a_retried_conclusion_does_not_mark_gone_again_what_a_lagging_index_still_lists() {
        let provider = Listing::of(names(5));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        provider.entities.lock().expect("lock").remove(4);
        run(&provider, &store, "r2").await.expect("crawls");
        let flaky = LandsThenFails {
            store: &store,
            failures: Mutex::new(1),
            lagging_index: Some(Mutex::new(None)),
        };
        assert_eq!(run_with_retries(&provider, &flaky, "r3").await, 1);
        let gone = ids::ec2("eu-west-1", "111111111111", "instance", "i-4");
        let history = store.history.lock().expect("lock");
        let tombstones = history
            .iter()
            .filter(|h| h.entity_id == gone && h.change == ChangeKind::Gone)
            .count();
        assert_eq!(tombstones, 1, "one GONE record");
        let rows = store.rows.lock().expect("lock");
        assert!(!rows[&gone].active);
        assert!(!rows[&gone].content.is_null(), "the record is kept");
    }

    #[tokio::test]
    async fn a_miss_counts_from_what_the_table_holds_when_the_index_lags() {
        let provider = Listing::of(names(5));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        let all = names(5);
        provider.entities.lock().expect("lock").remove(4);
        run(&provider, &store, "r2").await.expect("crawls");
        // The index still answers the manifest of r2's end (one miss) after r3 saw the
        // entity again and reset its count.
        let lagging = LandsThenFails {
            store: &store,
            failures: Mutex::new(0),
            lagging_index: Some(Mutex::new(Some(
                store.manifest(&scope()).await.expect("a manifest"),
            ))),
        };
        *provider.entities.lock().expect("lock") = all;
        run(&provider, &store, "r3").await.expect("crawls");
        provider.entities.lock().expect("lock").remove(4);
        assert_eq!(run_with_retries(&provider, &lagging, "r4").await, 0);
        let rows = store.rows.lock().expect("lock");
        let missed = &rows[&ids::ec2("eu-west-1", "111111111111", "instance", "i-4")];
        assert!(missed.active, "one miss after being seen again is no GONE");
        assert_eq!(missed.known.misses, 1);
    }

    #[tokio::test]
    async fn seen_again_after_a_miss_counts_from_zero() {
        let provider = Listing::of(names(3));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        let all = names(3);
        provider.entities.lock().expect("lock").truncate(2);
        run(&provider, &store, "r2").await.expect("crawls");
        *provider.entities.lock().expect("lock") = all;
        run(&provider, &store, "r3").await.expect("crawls");
        provider.entities.lock().expect("lock").truncate(2);
        let once = run(&provider, &store, "r4").await.expect("crawls");
        assert_eq!((once.counts.missing, once.counts.gone), (1, 0));
    }

    #[tokio::test]
    async fn a_scope_is_crawled_by_one_run_at_a_time() {
        let provider = Listing::of(names(5));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        let missing = ids::ec2("eu-west-1", "111111111111", "instance", "i-4");
        provider.entities.lock().expect("lock").remove(4);

        // r2 and r3 overlap on one listing without i-4: one absence, one miss.
        let r2 = step(&provider, &store, CrawlState::start("r2", scope(), false))
            .await
            .expect("crawls");
        assert!(!r2.done);
        let r3 = run(&provider, &store, "r3").await.expect("crawls");
        assert_eq!(r3.held_by.as_deref(), Some("r2"));
        assert_eq!((r3.pages, r3.counts), (0, Counts::default()));
        let mut r2 = r2;
        while !r2.done {
            r2 = step(&provider, &store, r2).await.expect("crawls");
        }
        assert_eq!((r2.held_by, r2.counts.missing), (None, 1));
        {
            let rows = store.rows.lock().expect("lock");
            assert!(rows[&missing].active, "one absence is no GONE");
            assert_eq!(rows[&missing].known.misses, 1);
        }

        // The scope is free again once r2 concluded.
        let r4 = run(&provider, &store, "r4").await.expect("crawls");
        assert_eq!((r4.held_by, r4.counts.gone), (None, 1));
    }

    #[tokio::test]
    async fn a_lease_its_run_left_behind_expires() {
        let provider = Listing::of(names(3));
        let store = MemoryStore::default();
        let long_ago = Utc::now() - chrono::Duration::hours(1);
        let held = store
            .take(
                &scope(),
                "stopped",
                long_ago,
                long_ago + chrono::Duration::minutes(10),
            )
            .await
            .expect("takes");
        assert_eq!(held, None);
        let crawled = run(&provider, &store, "r1").await.expect("crawls");
        assert_eq!((crawled.held_by, crawled.counts.created), (None, 3));
    }

    #[tokio::test]
    async fn a_failed_crawl_keeps_its_scope_for_its_retries_until_its_run_ends() {
        let provider = Listing::of(names(5));
        let store = MemoryStore::default();
        *provider.fail_page.lock().expect("lock") = Some(1);
        let first = step(&provider, &store, CrawlState::start("r1", scope(), false))
            .await
            .expect("crawls");
        let failed = step(&provider, &store, first.clone()).await;
        assert!(matches!(failed, Err(CrawlError::Provider { .. })));
        *provider.fail_page.lock().expect("lock") = None;

        // Between the state machine's retries, another run leaves the scope alone.
        let other = run(&provider, &store, "r2").await.expect("crawls");
        assert_eq!(other.held_by.as_deref(), Some("r1"));
        let retried = step(&provider, &store, first).await.expect("crawls");
        assert_eq!(retried.held_by, None);

        // A run whose retries all failed holds the scope until its lease expires.
        *provider.fail_page.lock().expect("lock") = Some(2);
        assert!(step(&provider, &store, retried).await.is_err());
        *provider.fail_page.lock().expect("lock") = None;
        assert_eq!(
            run(&provider, &store, "r3")
                .await
                .expect("crawls")
                .held_by
                .as_deref(),
            Some("r1")
        );
        // Its run's end frees it; another run's end does not.
        free_failed_scopes(&store, "r3", &[scope()])
            .await
            .expect("frees");
        let still = run(&provider, &store, "r3").await.expect("crawls");
        assert_eq!(still.held_by.as_deref(), Some("r1"));
        free_failed_scopes(&store, "r1", &[scope()])
            .await
            .expect("frees");
        let freed = run(&provider, &store, "r3").await.expect("crawls");
        assert_eq!((freed.held_by, freed.counts.seen), (None, 5));

        // A lease whose run never ended expires.
        *provider.fail_page.lock().expect("lock") = Some(1);
        assert!(run(&provider, &store, "r4").await.is_err());
        *provider.fail_page.lock().expect("lock") = None;
        let next = run_at(&provider, &store, "r5", after_the_lease())
            .await
            .expect("crawls");
        assert_eq!((next.held_by, next.counts.seen), (None, 5));
    }

    fn event_source() -> Source {
        Source::EventRefresh {
            event_id: "e-1".into(),
            event_name: "CreateTags".into(),
            actor: None,
        }
    }

    /// A listing during which an event is handled: `event` is described and written at its
    /// time after the page was listed and before the crawl writes it.
    struct EventDuringListing<'a> {
        listing: Listing,
        store: &'a MemoryStore,
        event: Mutex<Option<(Entity, DateTime<Utc>)>>,
    }

    #[async_trait]
    impl Provider for EventDuringListing<'_> {
        async fn page(
            &self,
            target: &Target,
            resource_type: ResourceType,
            cursor: Option<&Cursor>,
        ) -> Result<Page, ProviderError> {
            let page = self.listing.page(target, resource_type, cursor).await?;
            let event = self.event.lock().expect("lock").take();
            if let Some((described, at)) = event {
                refresh(self.store, &[described], &scope(), &event_source(), at)
                    .await
                    .expect("the event's refresh is written");
            }
            Ok(page)
        }

        async fn describe(&self, _: &Target, _: &Named) -> Result<Vec<Entity>, ProviderError> {
            Ok(Vec::new())
        }
    }

    /// One call of `state`'s crawl at `now`, over any provider.
    async fn step_at(
        provider: &dyn Provider,
        store: &MemoryStore,
        state: CrawlState,
        now: DateTime<Utc>,
    ) -> Result<CrawlState, CrawlError> {
        crawl_step(provider, store, store, &target(), state, &settings(), now).await
    }

    fn row(store: &MemoryStore, name: &str) -> Row {
        store.rows.lock().expect("lock")[&ids::ec2("eu-west-1", "111111111111", "instance", name)]
            .clone()
    }

    #[tokio::test]
    async fn a_page_listed_before_an_event_never_writes_back_the_older_state() {
        // Issue 15, finding 4: the crawl's page, listed before the event, wrote its older
        // state over the event's, and history showed the change undone.
        let store = MemoryStore::default();
        let t0 = Utc::now();
        run_at(&Listing::of(names(2)), &store, "r1", t0)
            .await
            .expect("crawls");
        let mut listed = names(2);
        listed[1] = server("i-1", "listed-before");
        let during = EventDuringListing {
            listing: Listing::of(listed),
            store: &store,
            event: Mutex::new(Some((
                server("i-1", "renamed-by-the-event"),
                t0 + chrono::Duration::minutes(2),
            ))),
        };
        let crawled = step_at(
            &during,
            &store,
            CrawlState::start("r2", scope(), false),
            t0 + chrono::Duration::minutes(1),
        )
        .await
        .expect("crawls");
        assert!(crawled.done);
        assert_eq!(
            crawled.counts.changed, 0,
            "the crawl's older state is not written"
        );
        assert_eq!(row(&store, "i-1").content["name"], "renamed-by-the-event");
        let history = store.history.lock().expect("lock");
        assert_eq!(history.len(), 3, "two created, one changed by the event");
        assert_eq!(history[2].source, event_source());
    }

    #[tokio::test]
    async fn an_event_seeing_an_entity_during_a_crawl_outweighs_the_crawl_missing_it() {
        // Issue 15, finding 4: the crawl's listing passed the entity's place before the event
        // saw it; the conclusion counted the absence, and its second miss made it GONE.
        let store = MemoryStore::default();
        let t0 = Utc::now();
        let minutes = chrono::Duration::minutes;
        run_at(&Listing::of(names(3)), &store, "r1", t0)
            .await
            .expect("crawls");
        let missed = run_at(&Listing::of(names(2)), &store, "r2", t0 + minutes(20))
            .await
            .expect("crawls");
        assert_eq!(missed.counts.missing, 1);
        let during = EventDuringListing {
            listing: Listing::of(names(2)),
            store: &store,
            event: Mutex::new(Some((server("i-2", "web-2"), t0 + minutes(41)))),
        };
        let mut state = CrawlState::start("r3", scope(), false);
        while !state.done {
            state = crawl_step(
                &during,
                &store,
                &store,
                &target(),
                state,
                &settings(),
                t0 + minutes(40),
            )
            .await
            .expect("crawls");
        }
        assert_eq!((state.counts.gone, state.counts.missing), (0, 0));
        let seen = row(&store, "i-2");
        assert!(seen.active);
        assert_eq!(
            seen.known.misses, 0,
            "the event saw it: its misses start again"
        );
        assert_eq!(store.history.lock().expect("lock").len(), 3, "no GONE");
    }

    #[tokio::test]
    async fn a_conclusion_never_replaces_a_state_written_since_it_read_it() {
        // Issue 15, finding 4: the tombstone was written whatever the entity had become
        // between the conclusion's read and its write.
        let store = MemoryStore::default();
        let t0 = Utc::now();
        run_at(&Listing::of(names(1)), &store, "r1", t0)
            .await
            .expect("crawls");
        let stored = row(&store, "i-0");
        let id = ids::ec2("eu-west-1", "111111111111", "instance", "i-0");
        // The event refreshed it after the conclusion read it.
        refresh(
            &store,
            &[server("i-0", "renamed")],
            &scope(),
            &event_source(),
            t0,
        )
        .await
        .expect("refreshed");
        let history = HistoryRecord {
            entity_id: id.clone(),
            at: t0,
            change: ChangeKind::Gone,
            source: Source::ScheduledSync { run: "r2".into() },
            diff: Vec::new(),
        };
        let refused = store
            .write(vec![Write::Gone {
                id: id.clone(),
                inactive: stored.content.clone(),
                previous: Some(stored.content),
                history,
                expected: stored.known.hash,
                unobserved_since: t0 + chrono::Duration::minutes(1),
            }])
            .await
            .expect("answers");
        assert_eq!(refused, Refused::from([id]));
        assert!(row(&store, "i-0").active);
    }

    #[tokio::test]
    async fn a_hash_made_the_old_way_is_rewritten_once_without_history() {
        // Hashes were once made from the JSON document with its keys sorted; an entity is now
        // hashed as its type writes it. After the upgrade, its first crawl rewrites the hash.
        let provider = Listing::of(names(3));
        let store = MemoryStore::default();
        run(&provider, &store, "r1").await.expect("crawls");
        for row in store.rows.lock().expect("lock").values_mut() {
            row.known.hash = crate::inventory::changes::content_hash(&row.content);
        }
        let records = store.history.lock().expect("lock").len();
        let writes = *store.item_writes.lock().expect("lock");
        let upgraded = run_at(&provider, &store, "r2", after_the_lease())
            .await
            .expect("crawls");
        assert_eq!((upgraded.counts.created, upgraded.counts.changed), (0, 0));
        assert_eq!(store.history.lock().expect("lock").len(), records);
        assert_eq!(*store.item_writes.lock().expect("lock"), writes + 3);
        let steady = run_at(
            &provider,
            &store,
            "r3",
            after_the_lease() + chrono::Duration::minutes(11),
        )
        .await
        .expect("crawls");
        assert_eq!(steady.counts.seen, 3);
        assert_eq!(*store.item_writes.lock().expect("lock"), writes + 3);
    }

    #[tokio::test]
    async fn a_page_listed_before_an_event_saw_it_terminated_leaves_it_terminated() {
        // The event's newer state is inactive, so the store's read of active entities does not
        // show it: the crawl's older write is superseded, not refused again and again until
        // the call fails.
        let store = MemoryStore::default();
        let t0 = Utc::now();
        run_at(&Listing::of(names(2)), &store, "r1", t0)
            .await
            .expect("crawls");
        let mut terminated = server("i-1", "web-1");
        terminated.active = false;
        terminated.status = Some("terminated".into());
        let mut listed = names(2);
        listed[1] = server("i-1", "renamed-before");
        let during = EventDuringListing {
            listing: Listing::of(listed),
            store: &store,
            event: Mutex::new(Some((terminated, t0 + chrono::Duration::minutes(2)))),
        };
        let crawled = step_at(
            &during,
            &store,
            CrawlState::start("r2", scope(), false),
            t0 + chrono::Duration::minutes(1),
        )
        .await
        .expect("crawls");
        assert!(crawled.done, "the call does not fail");
        let row = row(&store, "i-1");
        assert!(!row.active);
        assert_eq!(row.content["status"], "terminated");
    }
}
