//! Entities whose scope no connection crawls any more: a deleted or disabled connection, an
//! account that left the organisation, a region or a resource type taken off a connection.
//!
//! No crawl will ever conclude on them again, so left alone they would stay active for good,
//! counted in the summary and listed as current. Each is retired instead: made inactive, with
//! a RETIRED history record saying why. Which scopes are no longer watched comes from what
//! each connection's schedule remembers starting, against what the connection crawls today;
//! the scheduler retires a bounded number of entities on each tick, and a scope leaves the
//! schedule once none of its entities is active.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::changes::diff;
use super::connection::{Connection, ConnectionSource, ResourceType, Scope};
use super::crawl::{ChangeKind, HistoryRecord, InventoryStore, ScopeLeases, Source, Write};
use crate::port::PortError;

/// Why the inventory no longer watches a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unwatched {
    ConnectionDeleted,
    ConnectionDisabled,
    /// Organisation mode disabled the connection: its account left the organisation or
    /// closed.
    AccountLeftOrganization,
    RegionRemoved,
    ResourceTypeRemoved,
}

/// What a connection's schedule remembers: the scopes it started (by [`Scope::key`]) and the
/// connection as it is now, none once deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub connection_id: String,
    /// The connection's account: kept on the schedule when the connection is deleted.
    pub account: String,
    pub connection: Option<Connection>,
    pub started: BTreeMap<String, DateTime<Utc>>,
}

/// The scope a schedule's key names, if it is one of `connection_id`'s.
fn scope_of(key: &str, connection_id: &str, account: &str) -> Option<Scope> {
    let mut parts = key.rsplitn(3, '|');
    let resource_type = ResourceType::parse(parts.next()?)?;
    let region = parts.next()?;
    (parts.next()? == connection_id).then(|| Scope {
        connection_id: connection_id.to_owned(),
        account: account.to_owned(),
        region: region.to_owned(),
        resource_type,
    })
}

impl Schedule {
    /// The scopes the schedule started that the connection no longer crawls, and why.
    pub fn unwatched(&self) -> Vec<(Scope, Unwatched)> {
        let everything = match &self.connection {
            None => Some(Unwatched::ConnectionDeleted),
            Some(c) if !c.enabled && c.source == ConnectionSource::Organization => {
                Some(Unwatched::AccountLeftOrganization)
            }
            Some(c) if !c.enabled => Some(Unwatched::ConnectionDisabled),
            Some(_) => None,
        };
        let crawled: Vec<String> = self
            .connection
            .iter()
            .flat_map(Connection::scopes)
            .map(|scope| scope.key())
            .collect();
        self.started
            .keys()
            .filter_map(|key| scope_of(key, &self.connection_id, &self.account))
            .filter_map(|scope| {
                let why = match (everything, &self.connection) {
                    (Some(why), _) => why,
                    (None, _) if crawled.contains(&scope.key()) => return None,
                    (None, Some(c)) if !c.resource_types.contains_key(&scope.resource_type) => {
                        Unwatched::ResourceTypeRemoved
                    }
                    (None, _) => Unwatched::RegionRemoved,
                };
                Some((scope, why))
            })
            .collect()
    }
}

/// The schedule a scope leaves once nothing of it is active.
#[async_trait]
pub trait Schedules: Send + Sync {
    async fn forget(&self, scope: &Scope) -> Result<(), PortError>;
}

/// What one pass retired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retirement {
    /// Entities made inactive.
    pub entities: u64,
    /// Scopes with nothing active left, forgotten by their schedule.
    pub scopes: u64,
    /// Scopes left for a later pass: the budget ran out, a crawl still holds them, a write was
    /// refused, something failed, or this pass retired their last entities (a scope is
    /// forgotten on a pass that finds nothing of it active: its index may lag a pass that
    /// just wrote).
    pub pending: u64,
    /// What failed, by scope; those scopes are pending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The entity as retired: inactive, its content otherwise as last seen.
fn retired(content: &Value) -> Value {
    let mut retired = content.clone();
    if retired.is_object() {
        retired["active"] = Value::Bool(false);
    }
    retired
}

/// Retires the entities of unwatched scopes, at most `budget` of them in this pass. Each
/// scope is retired under its lease, so a crawl still running over it finishes first; a scope
/// that fails is reported and left for a later pass, and the others go on.
pub async fn retire_unwatched(
    store: &dyn InventoryStore,
    leases: &dyn ScopeLeases,
    schedules: &dyn Schedules,
    unwatched: Vec<(Scope, Unwatched)>,
    budget: usize,
    lease: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Retirement, PortError> {
    let holder = format!("retire-{}", now.format("%Y%m%dT%H%M%S%.3fZ"));
    let mut left = budget;
    let mut retirement = Retirement::default();
    for (scope, why) in unwatched {
        if left == 0 {
            retirement.pending += 1;
            continue;
        }
        match leases.take(&scope, &holder, now, now + lease).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                retirement.pending += 1;
                continue;
            }
            Err(error) => {
                retirement.pending += 1;
                retirement.errors.push(format!("{}: {error}", scope.key()));
                continue;
            }
        }
        match retire_scope(store, schedules, &scope, why, left, now).await {
            Ok(Pass::Forgotten) => retirement.scopes += 1,
            Ok(Pass::Retired {
                entities,
                looked_at,
            }) => {
                retirement.entities += entities;
                retirement.pending += 1;
                left = left.saturating_sub(looked_at);
            }
            Err(error) => {
                retirement.pending += 1;
                retirement.errors.push(format!("{}: {error}", scope.key()));
            }
        }
        // Freeing is best effort: a lease left held expires.
        let _ = leases.release(&scope, &holder).await;
    }
    Ok(retirement)
}

/// What one pass did to one scope.
enum Pass {
    /// Nothing of it was active: its schedule forgot it.
    Forgotten,
    /// It retired `entities` of the `looked_at` its index still listed.
    Retired { entities: u64, looked_at: usize },
}

async fn retire_scope(
    store: &dyn InventoryStore,
    schedules: &dyn Schedules,
    scope: &Scope,
    why: Unwatched,
    budget: usize,
    now: DateTime<Utc>,
) -> Result<Pass, PortError> {
    let manifest = store.manifest(scope).await?;
    if manifest.is_empty() {
        schedules.forget(scope).await?;
        return Ok(Pass::Forgotten);
    }
    let ids: Vec<String> = manifest.keys().take(budget).cloned().collect();
    let stored = store.known(&ids).await?;
    let mut writes = Vec::with_capacity(stored.len());
    for (id, stored) in stored {
        let content = stored.content.read()?;
        let inactive = retired(&content);
        writes.push(Write::Retire {
            history: HistoryRecord {
                entity_id: id.clone(),
                at: now,
                change: ChangeKind::Retired,
                source: Source::Lifecycle { reason: why },
                diff: diff(&content, &inactive),
            },
            id,
            scope: scope.clone(),
            previous: content,
            inactive,
            expected: stored.known.hash,
        });
    }
    let attempted = writes.len();
    let refused = store.write(writes).await?;
    Ok(Pass::Retired {
        entities: (attempted - refused.len()) as u64,
        looked_at: ids.len(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;
    use crate::access::TeamAccess;
    use crate::inventory::crawl::refresh;
    use crate::inventory::entity::Entity;
    use crate::inventory::memory::MemoryStore;

    const ACCOUNT: &str = "111111111111";

    fn connection(regions: &[&str], types: &[ResourceType]) -> Connection {
        let now = Utc::now();
        Connection {
            id: "prod".into(),
            name: "Production".into(),
            account_id: ACCOUNT.into(),
            role: None,
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            resource_types: types.iter().map(|t| (*t, 60)).collect(),
            enabled: true,
            source: ConnectionSource::Manual,
            access: TeamAccess::default(),
            created_at: now,
            updated_at: now,
        }
    }

    fn schedule(connection: Option<Connection>) -> Schedule {
        let started = ["eu-west-1", "eu-central-1"]
            .iter()
            .flat_map(|region| {
                [ResourceType::Instances, ResourceType::Volumes]
                    .map(|t| format!("prod|{region}|{}", t.as_str()))
            })
            .map(|key| (key, Utc::now()))
            .collect();
        Schedule {
            connection_id: "prod".into(),
            account: ACCOUNT.into(),
            connection,
            started,
        }
    }

    fn reasons(schedule: &Schedule) -> BTreeMap<String, Unwatched> {
        schedule
            .unwatched()
            .into_iter()
            .map(|(scope, why)| (scope.key(), why))
            .collect()
    }

    #[test]
    fn a_scope_is_unwatched_once_its_connection_no_longer_crawls_it() {
        let both = [ResourceType::Instances, ResourceType::Volumes];
        let all = connection(&["eu-west-1", "eu-central-1"], &both);
        assert!(reasons(&schedule(Some(all.clone()))).is_empty());

        let one_region = connection(&["eu-west-1"], &both);
        assert_eq!(
            reasons(&schedule(Some(one_region))),
            BTreeMap::from([
                (
                    "prod|eu-central-1|instances".into(),
                    Unwatched::RegionRemoved
                ),
                ("prod|eu-central-1|volumes".into(), Unwatched::RegionRemoved),
            ])
        );
        let one_type = connection(&["eu-west-1", "eu-central-1"], &[ResourceType::Instances]);
        assert_eq!(
            reasons(&schedule(Some(one_type))),
            BTreeMap::from([
                (
                    "prod|eu-central-1|volumes".into(),
                    Unwatched::ResourceTypeRemoved
                ),
                (
                    "prod|eu-west-1|volumes".into(),
                    Unwatched::ResourceTypeRemoved
                ),
            ])
        );
        let mut disabled = all.clone();
        disabled.enabled = false;
        let why: BTreeSet<Unwatched> = reasons(&schedule(Some(disabled.clone())))
            .into_values()
            .collect();
        assert_eq!(why, BTreeSet::from([Unwatched::ConnectionDisabled]));
        disabled.source = ConnectionSource::Organization;
        let why: BTreeSet<Unwatched> = reasons(&schedule(Some(disabled))).into_values().collect();
        assert_eq!(why, BTreeSet::from([Unwatched::AccountLeftOrganization]));
        let deleted = reasons(&schedule(None));
        assert_eq!(deleted.len(), 4);
        assert!(deleted.values().all(|w| *w == Unwatched::ConnectionDeleted));
    }

    #[test]
    fn a_key_of_another_connection_or_type_names_no_scope() {
        assert_eq!(scope_of("other|eu-west-1|instances", "prod", ACCOUNT), None);
        assert_eq!(scope_of("prod|eu-west-1|printers", "prod", ACCOUNT), None);
        assert_eq!(scope_of("prod", "prod", ACCOUNT), None);
        // A connection id holding the separator is read from the right.
        assert!(scope_of("a|b|eu-west-1|instances", "a|b", ACCOUNT).is_some());
    }

    fn server(id: &str) -> Entity {
        crate::inventory::synthetic::instance(ACCOUNT, "eu-central-1", id, id)
    }

    #[derive(Default)]
    struct Forgotten(Mutex<Vec<String>>);

    #[async_trait]
    impl Schedules for Forgotten {
        async fn forget(&self, scope: &Scope) -> Result<(), PortError> {
            self.0.lock().expect("lock").push(scope.key());
            Ok(())
        }
    }

    fn removed_region() -> Vec<(Scope, Unwatched)> {
        let scope = Scope {
            connection_id: "prod".into(),
            account: ACCOUNT.into(),
            region: "eu-central-1".into(),
            resource_type: ResourceType::Instances,
        };
        vec![(scope, Unwatched::RegionRemoved)]
    }

    /// One pass over the removed region's scope.
    async fn retire(
        store: &MemoryStore,
        forgotten: &Forgotten,
        budget: usize,
        now: DateTime<Utc>,
    ) -> Retirement {
        let lease = chrono::Duration::minutes(10);
        retire_unwatched(
            store,
            store,
            forgotten,
            removed_region(),
            budget,
            lease,
            now,
        )
        .await
        .expect("retires")
    }

    #[tokio::test]
    async fn the_entities_of_an_unwatched_scope_are_retired_a_budget_at_a_time() {
        // Issue 15, finding 5: they stayed active for good.
        let store = MemoryStore::default();
        let forgotten = Forgotten::default();
        let (scope, _) = removed_region().remove(0);
        let servers: Vec<Entity> = (0..5).map(|i| server(&format!("i-{i}"))).collect();
        let source = Source::ScheduledSync { run: "r1".into() };
        refresh(&store, &servers, &scope, &source, Utc::now())
            .await
            .expect("crawled");

        let first = retire(&store, &forgotten, 3, Utc::now()).await;
        assert_eq!(
            first,
            Retirement {
                entities: 3,
                pending: 1,
                ..Retirement::default()
            }
        );
        let second = retire(&store, &forgotten, 3, Utc::now()).await;
        assert_eq!(
            second,
            Retirement {
                entities: 2,
                pending: 1,
                ..Retirement::default()
            }
        );
        assert!(forgotten.0.lock().expect("lock").is_empty());
        // A scope is forgotten on a pass that finds nothing of it active.
        let third = retire(&store, &forgotten, 3, Utc::now()).await;
        assert_eq!(
            third,
            Retirement {
                scopes: 1,
                ..Retirement::default()
            }
        );
        assert_eq!(
            *forgotten.0.lock().expect("lock"),
            ["prod|eu-central-1|instances"]
        );
        assert!(store.rows.lock().expect("lock").values().all(|r| !r.active));
        let history = store.history.lock().expect("lock");
        let retirements: Vec<&HistoryRecord> = history
            .iter()
            .filter(|r| r.change == ChangeKind::Retired)
            .collect();
        assert_eq!(retirements.len(), 5);
        assert!(retirements.iter().all(|r| r.source
            == Source::Lifecycle {
                reason: Unwatched::RegionRemoved
            }));
    }

    #[tokio::test]
    async fn a_scope_a_crawl_still_holds_is_retired_after_it() {
        let store = MemoryStore::default();
        let forgotten = Forgotten::default();
        let (scope, _) = removed_region().remove(0);
        let now = Utc::now();
        let lease = chrono::Duration::minutes(10);
        let source = Source::ScheduledSync { run: "r1".into() };
        refresh(&store, &[server("i-0")], &scope, &source, now)
            .await
            .expect("crawled");
        assert_eq!(
            store
                .take(&scope, "r1", now, now + lease)
                .await
                .expect("taken"),
            None
        );
        let held = retire(&store, &forgotten, 10, now).await;
        assert_eq!(
            held,
            Retirement {
                pending: 1,
                ..Retirement::default()
            }
        );
        store.release(&scope, "r1").await.expect("freed");
        let after = retire(&store, &forgotten, 10, now).await;
        assert_eq!(
            after,
            Retirement {
                entities: 1,
                pending: 1,
                ..Retirement::default()
            }
        );
    }

    #[tokio::test]
    async fn an_entity_another_scope_holds_now_is_not_retired_with_this_one() {
        // Two connections of one account crawl the same resources: the entity belongs to the
        // scope that wrote it last, and the other's retirement leaves it alone.
        let store = MemoryStore::default();
        let forgotten = Forgotten::default();
        let (scope, _) = removed_region().remove(0);
        let mut other = scope.clone();
        other.connection_id = "prod-again".into();
        let source = Source::ScheduledSync { run: "r1".into() };
        let now = Utc::now();
        refresh(&store, &[server("i-0")], &scope, &source, now)
            .await
            .expect("crawled");
        let stored = store.known(&[server("i-0").id]).await.expect("read");
        let (id, held) = stored.into_iter().next().expect("stored");
        let content = held.content.read().expect("reads");
        let history = HistoryRecord {
            entity_id: id.clone(),
            at: now,
            change: ChangeKind::Retired,
            source: Source::Lifecycle {
                reason: Unwatched::ConnectionDeleted,
            },
            diff: Vec::new(),
        };
        let refused = store
            .write(vec![Write::Retire {
                id: id.clone(),
                scope: other,
                inactive: retired(&content),
                previous: content,
                history,
                expected: held.known.hash,
            }])
            .await
            .expect("answers");
        assert_eq!(refused, crate::inventory::crawl::Refused::from([id]));
        assert!(store.rows.lock().expect("lock").values().all(|r| r.active));
        assert!(forgotten.0.lock().expect("lock").is_empty());
    }
}
