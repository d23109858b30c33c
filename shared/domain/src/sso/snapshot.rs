//! The snapshot: what the sync has read of the organisation and of IAM Identity Center, kept
//! between invocations. A full run reads a fresh generation in pieces, each well inside one
//! invocation's time, and makes it current once it is whole; an event re-reads only what it
//! touched and patches the current generation; plans, event runs and explanations read it.
//! No piece of work is ever proportional to the organisation unless it is the full read.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::assignment_monitor::{AccountId, InstanceArn, PermissionSetArn, PrincipalId};
use super::plan::{Assignment, OrgAccount, PermissionSetInfo, PlanInputs, Principal};
use crate::port::PortError;

/// Reads the organisation (AWS Organizations).
#[async_trait]
pub trait OrganisationReader: Send + Sync {
    /// The management account, if the caller can tell.
    async fn management_account(&self) -> Result<Option<AccountId>, PortError>;
    /// Every account with its state and OU path, its tags not read (empty): the organisation
    /// read as a tree, OUs per parent and accounts per OU, at a few calls per OU.
    async fn tree(&self) -> Result<Vec<OrgAccount>, PortError>;
    async fn tags(&self, account: &AccountId) -> Result<BTreeMap<String, String>, PortError>;
    /// One account with its tags and OU path; `None` when it is not in the organisation.
    async fn account(&self, account: &AccountId) -> Result<Option<OrgAccount>, PortError>;
}

/// Reads IAM Identity Center and its identity store.
#[async_trait]
pub trait IdentityCenterReader: Send + Sync {
    fn instance_arn(&self) -> &InstanceArn;
    async fn permission_set_arns(&self) -> Result<Vec<PermissionSetArn>, PortError>;
    /// A permission set's name and tags; `None` when it no longer exists.
    async fn permission_set(
        &self,
        arn: &PermissionSetArn,
    ) -> Result<Option<PermissionSetInfo>, PortError>;
    async fn groups(&self) -> Result<Vec<Principal>, PortError>;
    async fn users(&self) -> Result<Vec<Principal>, PortError>;
    /// The accounts a permission set is provisioned to: the only accounts where it can be
    /// assigned.
    async fn accounts_provisioned(
        &self,
        set: &PermissionSetArn,
    ) -> Result<Vec<AccountId>, PortError>;
    /// The permission sets provisioned to an account.
    async fn sets_provisioned_to(
        &self,
        account: &AccountId,
    ) -> Result<Vec<PermissionSetArn>, PortError>;
    /// Every assignment of `set` in `account`.
    async fn assignments_of(
        &self,
        account: &AccountId,
        set: &PermissionSetArn,
    ) -> Result<Vec<Assignment>, PortError>;
}

/// The time, so that a piece of work knows when to stop (a virtual one in the simulation).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// One thing the snapshot holds, as a reader writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "part", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotPart {
    #[serde(rename_all = "camelCase")]
    ManagementAccount { account_id: Option<AccountId> },
    #[serde(rename_all = "camelCase")]
    Account { account: OrgAccount },
    #[serde(rename_all = "camelCase")]
    AccountGone { account_id: AccountId },
    /// The permission sets of the instance, before each is described.
    #[serde(rename_all = "camelCase")]
    PermissionSetsListed { arns: Vec<PermissionSetArn> },
    #[serde(rename_all = "camelCase")]
    PermissionSet { permission_set: PermissionSetInfo },
    #[serde(rename_all = "camelCase")]
    PermissionSetGone { arn: PermissionSetArn },
    /// Every group, replacing those held.
    #[serde(rename_all = "camelCase")]
    Groups { groups: Vec<Principal> },
    /// Every user, replacing those held.
    #[serde(rename_all = "camelCase")]
    Users { users: Vec<Principal> },
    #[serde(rename_all = "camelCase")]
    Assigned { assignment: Assignment },
    #[serde(rename_all = "camelCase")]
    Unassigned { assignment: Assignment },
}

/// A generation of the snapshot as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub inputs: PlanInputs,
    pub permission_sets_listed: Vec<PermissionSetArn>,
}

impl Snapshot {
    /// Applies parts as the store does: what an event run plans from after its patch.
    pub fn apply(&mut self, parts: &[SnapshotPart]) {
        let inputs = &mut self.inputs;
        let mut assigned = Vec::new();
        let mut unassigned = HashSet::new();
        for part in parts {
            match part {
                SnapshotPart::ManagementAccount { account_id } => {
                    inputs.management_account_id = account_id.clone();
                }
                SnapshotPart::Account { account } => {
                    inputs.accounts.retain(|a| a.id != account.id);
                    inputs.accounts.push(account.clone());
                }
                SnapshotPart::AccountGone { account_id } => {
                    inputs.accounts.retain(|a| a.id != *account_id);
                }
                SnapshotPart::PermissionSetsListed { arns } => {
                    self.permission_sets_listed = arns.clone();
                }
                SnapshotPart::PermissionSet { permission_set } => {
                    inputs
                        .permission_sets
                        .retain(|s| s.arn != permission_set.arn);
                    inputs.permission_sets.push(permission_set.clone());
                }
                SnapshotPart::PermissionSetGone { arn } => {
                    inputs.permission_sets.retain(|s| s.arn != *arn);
                }
                SnapshotPart::Groups { groups } => inputs.groups = groups.clone(),
                SnapshotPart::Users { users } => inputs.users = users.clone(),
                SnapshotPart::Assigned { assignment } => {
                    unassigned.remove(assignment);
                    assigned.push(assignment.clone());
                }
                SnapshotPart::Unassigned { assignment } => {
                    assigned.retain(|a| a != assignment);
                    unassigned.insert(assignment.clone());
                }
            }
        }
        if assigned.is_empty() && unassigned.is_empty() {
            return;
        }
        inputs.assignments.retain(|a| !unassigned.contains(a));
        let held: HashSet<Assignment> = inputs.assignments.iter().cloned().collect();
        inputs
            .assignments
            .extend(assigned.into_iter().filter(|a| !held.contains(a)));
    }
}

/// Which generation plans read, and when its read started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentSnapshot {
    pub generation: String,
    pub read_from: DateTime<Utc>,
}

/// Where the snapshot is kept (DynamoDB).
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// The generation of the last full read that completed, if any.
    async fn current(&self) -> Result<Option<CurrentSnapshot>, PortError>;
    async fn make_current(&self, current: &CurrentSnapshot) -> Result<(), PortError>;
    async fn write(&self, generation: &str, parts: &[SnapshotPart]) -> Result<(), PortError>;
    async fn read(&self, generation: &str) -> Result<Snapshot, PortError>;
    /// The accounts of a generation, without the rest: what a read piece walks.
    async fn accounts(&self, generation: &str) -> Result<Vec<OrgAccount>, PortError>;
    /// The permission sets a generation listed: what a read piece walks.
    async fn listed(&self, generation: &str) -> Result<Vec<PermissionSetArn>, PortError>;
    /// Notes that an event run re-read `refresh` at `at`: a full read under way then reads it
    /// again into its own generation, which would otherwise miss the change.
    async fn touched(&self, at: DateTime<Utc>, refresh: &Refresh) -> Result<(), PortError>;
    /// What was noted since `since`, oldest first.
    async fn touched_since(&self, since: DateTime<Utc>) -> Result<Vec<Refresh>, PortError>;
}

/// How far a full read has got: each piece starts where the last one stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReadCursor {
    /// The management account, and the accounts with their OU paths.
    Organisation,
    /// The tags of the accounts, by id, after `after`: an id, not a position, because an
    /// account that left is removed from the list the next piece walks.
    #[serde(rename_all = "camelCase")]
    AccountTags {
        #[serde(default)]
        after: Option<AccountId>,
    },
    /// The permission sets, listed.
    PermissionSetList,
    /// Each listed permission set described, from the `next`-th.
    #[serde(rename_all = "camelCase")]
    PermissionSets { next: usize },
    /// The assignments of the `set`-th listed permission set, in each account it is
    /// provisioned to (`accounts`, once listed) from the `next`-th.
    #[serde(rename_all = "camelCase")]
    Assignments {
        set: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accounts: Option<Vec<AccountId>>,
        next: usize,
    },
    /// The groups and the users, read after the assignments: a group created while the
    /// assignments were read is then known, and its assignments are never taken for those
    /// of a group that no longer exists (which the plan deletes).
    #[serde(rename = "PRINCIPALS_LAST")]
    Principals,
    /// A cursor of the previous version, which read the principals before the assignments:
    /// it goes on with the assignments (the principals come after them now).
    #[serde(rename = "PRINCIPALS")]
    PrincipalsFirst,
    /// What events touched since the read began, read again from the `next`-th: their runs
    /// patched the generation plans read then, which this one replaces.
    #[serde(rename_all = "camelCase")]
    Touched { next: usize },
    /// Everything is read.
    Done,
}

/// What a full read calls.
pub struct Readers<'a> {
    pub organisation: &'a dyn OrganisationReader,
    pub identity_center: &'a dyn IdentityCenterReader,
    pub clock: &'a dyn Clock,
}

/// Reads from `cursor` into `generation` until the read is done or `until` has passed, and
/// answers where it stopped. Every piece makes progress (at least one call), and writes what
/// it read before it returns, so that a piece that fails is simply read again. What was
/// deleted while the read ran (an account that left, a permission set deleted) is read as
/// gone, not as a failure: a read of a large organisation takes hours.
pub async fn read_piece(
    readers: &Readers<'_>,
    store: &dyn SnapshotStore,
    generation: &str,
    read_from: DateTime<Utc>,
    mut cursor: ReadCursor,
    until: DateTime<Utc>,
) -> Result<ReadCursor, PortError> {
    let (organisation, identity_center) = (readers.organisation, readers.identity_center);
    let time_left = || readers.clock.now() < until;
    // The permission sets listed, read once a piece: they do not change after their phase.
    let mut listed: Option<Vec<PermissionSetArn>> = None;
    loop {
        let mut parts = Vec::new();
        let next = match cursor {
            ReadCursor::Done => return Ok(ReadCursor::Done),
            ReadCursor::Organisation => {
                parts.push(SnapshotPart::ManagementAccount {
                    account_id: organisation.management_account().await?,
                });
                parts.extend(
                    organisation
                        .tree()
                        .await?
                        .into_iter()
                        .map(|account| SnapshotPart::Account { account }),
                );
                ReadCursor::AccountTags { after: None }
            }
            ReadCursor::PrincipalsFirst => ReadCursor::Assignments {
                set: 0,
                accounts: None,
                next: 0,
            },
            ReadCursor::AccountTags { after } => {
                let mut accounts = store.accounts(generation).await?;
                accounts.sort_by(|a, b| a.id.cmp(&b.id));
                accounts.retain(|a| after.as_ref().is_none_or(|after| a.id > *after));
                let mut at = 0;
                let mut last = after;
                while let Some(account) = accounts.get(at) {
                    let mut account = account.clone();
                    last = Some(account.id.clone());
                    parts.push(
                        match gone_if_not_found(organisation.tags(&account.id).await)? {
                            Some(tags) => {
                                account.tags = tags;
                                SnapshotPart::Account { account }
                            }
                            None => SnapshotPart::AccountGone {
                                account_id: account.id,
                            },
                        },
                    );
                    at += 1;
                    if !time_left() {
                        break;
                    }
                }
                if at >= accounts.len() {
                    ReadCursor::PermissionSetList
                } else {
                    ReadCursor::AccountTags { after: last }
                }
            }
            ReadCursor::PermissionSetList => {
                parts.push(SnapshotPart::PermissionSetsListed {
                    arns: identity_center.permission_set_arns().await?,
                });
                ReadCursor::PermissionSets { next: 0 }
            }
            ReadCursor::PermissionSets { next } => {
                let arns = listed_once(&mut listed, store, generation).await?;
                let mut at = next;
                while let Some(arn) = arns.get(at) {
                    // A set deleted since it was listed is simply not there.
                    if let Some(permission_set) = identity_center.permission_set(arn).await? {
                        parts.push(SnapshotPart::PermissionSet { permission_set });
                    }
                    at += 1;
                    if !time_left() {
                        break;
                    }
                }
                if at >= arns.len() {
                    ReadCursor::Assignments {
                        set: 0,
                        accounts: None,
                        next: 0,
                    }
                } else {
                    ReadCursor::PermissionSets { next: at }
                }
            }
            ReadCursor::Assignments {
                set,
                accounts,
                next,
            } => {
                let arns = listed_once(&mut listed, store, generation).await?;
                match arns.get(set) {
                    None => ReadCursor::Principals,
                    Some(arn) => {
                        let accounts = match accounts {
                            Some(accounts) => accounts,
                            None => {
                                gone_if_not_found(identity_center.accounts_provisioned(arn).await)?
                                    .unwrap_or_else(|| {
                                        parts.push(SnapshotPart::PermissionSetGone {
                                            arn: arn.clone(),
                                        });
                                        Vec::new()
                                    })
                            }
                        };
                        let mut at = next;
                        while let Some(account) = accounts.get(at) {
                            parts.extend(
                                gone_if_not_found(
                                    identity_center.assignments_of(account, arn).await,
                                )?
                                .unwrap_or_default()
                                .into_iter()
                                .map(|assignment| SnapshotPart::Assigned { assignment }),
                            );
                            at += 1;
                            if !time_left() {
                                break;
                            }
                        }
                        if at >= accounts.len() {
                            ReadCursor::Assignments {
                                set: set + 1,
                                accounts: None,
                                next: 0,
                            }
                        } else {
                            ReadCursor::Assignments {
                                set,
                                accounts: Some(accounts),
                                next: at,
                            }
                        }
                    }
                }
            }
            ReadCursor::Principals => {
                parts.push(SnapshotPart::Groups {
                    groups: identity_center.groups().await?,
                });
                parts.push(SnapshotPart::Users {
                    users: identity_center.users().await?,
                });
                ReadCursor::Touched { next: 0 }
            }
            ReadCursor::Touched { next } => {
                let touched = store.touched_since(read_from).await?;
                if touched.len() <= next {
                    ReadCursor::Done
                } else {
                    let mut snapshot = store.read(generation).await?;
                    let mut at = next;
                    while let Some(refresh) = touched.get(at) {
                        let found = refreshed(readers, &snapshot, refresh).await?;
                        snapshot.apply(&found);
                        parts.extend(found);
                        at += 1;
                        if !time_left() {
                            break;
                        }
                    }
                    // Events noted meanwhile are listed by the next turn.
                    ReadCursor::Touched { next: at }
                }
            }
        };
        store.write(generation, &parts).await?;
        cursor = next;
        if cursor == ReadCursor::Done || !time_left() {
            return Ok(cursor);
        }
    }
}

async fn listed_once<'l>(
    listed: &'l mut Option<Vec<PermissionSetArn>>,
    store: &dyn SnapshotStore,
    generation: &str,
) -> Result<&'l [PermissionSetArn], PortError> {
    if listed.is_none() {
        *listed = Some(store.listed(generation).await?);
    }
    Ok(listed.as_deref().unwrap_or_default())
}

/// What a read answered, or `None` when what it named was deleted meanwhile.
fn gone_if_not_found<T>(read: Result<T, PortError>) -> Result<Option<T>, PortError> {
    match read {
        Ok(found) => Ok(Some(found)),
        Err(PortError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What an event makes the sync read again before it re-plans: never the whole organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refresh", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Refresh {
    /// The account (tags, OU, state) and its assignments.
    #[serde(rename_all = "camelCase")]
    Account { account_id: AccountId },
    /// The permission set (name, tags) and its assignments.
    #[serde(rename_all = "camelCase")]
    PermissionSet {
        permission_set_arn: PermissionSetArn,
    },
    /// The OU paths and states of every account (an OU renamed or moved); tags are kept.
    OrganisationTree,
    /// The groups and users (a group created, deleted or renamed).
    Principals,
}

/// Re-reads what `refresh` names and answers the parts that bring `snapshot` up to date with
/// it, removals included.
pub async fn refreshed(
    readers: &Readers<'_>,
    snapshot: &Snapshot,
    refresh: &Refresh,
) -> Result<Vec<SnapshotPart>, PortError> {
    let (organisation, identity_center) = (readers.organisation, readers.identity_center);
    let held = &snapshot.inputs.assignments;
    let mut parts = Vec::new();
    match refresh {
        Refresh::Account { account_id } => {
            let now_held: BTreeSet<Assignment> = match organisation.account(account_id).await? {
                None => {
                    parts.push(SnapshotPart::AccountGone {
                        account_id: account_id.clone(),
                    });
                    BTreeSet::new()
                }
                Some(account) => {
                    parts.push(SnapshotPart::Account { account });
                    let mut found = BTreeSet::new();
                    for set in identity_center.sets_provisioned_to(account_id).await? {
                        found.extend(identity_center.assignments_of(account_id, &set).await?);
                    }
                    found
                }
            };
            let before = held.iter().filter(|a| a.account_id == *account_id);
            parts.extend(principals_if_unknown(identity_center, snapshot, &now_held).await?);
            parts.extend(replaced(before, now_held));
        }
        Refresh::PermissionSet { permission_set_arn } => {
            let now_held: BTreeSet<Assignment> =
                match identity_center.permission_set(permission_set_arn).await? {
                    None => {
                        parts.push(SnapshotPart::PermissionSetGone {
                            arn: permission_set_arn.clone(),
                        });
                        BTreeSet::new()
                    }
                    Some(permission_set) => {
                        parts.push(SnapshotPart::PermissionSet { permission_set });
                        let mut found = BTreeSet::new();
                        for account in identity_center
                            .accounts_provisioned(permission_set_arn)
                            .await?
                        {
                            found.extend(
                                identity_center
                                    .assignments_of(&account, permission_set_arn)
                                    .await?,
                            );
                        }
                        found
                    }
                };
            let before = held
                .iter()
                .filter(|a| a.permission_set_arn == *permission_set_arn);
            parts.extend(principals_if_unknown(identity_center, snapshot, &now_held).await?);
            parts.extend(replaced(before, now_held));
        }
        Refresh::OrganisationTree => {
            let tags: BTreeMap<&AccountId, &BTreeMap<String, String>> = snapshot
                .inputs
                .accounts
                .iter()
                .map(|a| (&a.id, &a.tags))
                .collect();
            let tree = organisation.tree().await?;
            let present: BTreeSet<&AccountId> = tree.iter().map(|a| &a.id).collect();
            for gone in snapshot
                .inputs
                .accounts
                .iter()
                .filter(|a| !present.contains(&a.id))
            {
                parts.push(SnapshotPart::AccountGone {
                    account_id: gone.id.clone(),
                });
            }
            for mut account in tree {
                match tags.get(&account.id) {
                    Some(known) => account.tags = (*known).clone(),
                    // An account the snapshot has not seen yet: its tags are read now.
                    None => account.tags = organisation.tags(&account.id).await?,
                }
                parts.push(SnapshotPart::Account { account });
            }
        }
        Refresh::Principals => {
            parts.push(SnapshotPart::Groups {
                groups: identity_center.groups().await?,
            });
            parts.push(SnapshotPart::Users {
                users: identity_center.users().await?,
            });
        }
    }
    Ok(parts)
}

/// The groups and users read again when an assignment read names a principal the snapshot
/// does not know: one created since the principals were read (its event may come later).
/// Planned from the snapshot's principals, its assignments would look like those of a
/// deleted group, which the plan deletes.
async fn principals_if_unknown(
    identity_center: &dyn IdentityCenterReader,
    snapshot: &Snapshot,
    read: &BTreeSet<Assignment>,
) -> Result<Vec<SnapshotPart>, PortError> {
    let inputs = &snapshot.inputs;
    let known: HashSet<&PrincipalId> = inputs
        .groups
        .iter()
        .chain(&inputs.users)
        .map(|p| &p.id)
        .collect();
    if read.iter().all(|a| known.contains(&a.principal_id)) {
        return Ok(Vec::new());
    }
    Ok(vec![
        SnapshotPart::Groups {
            groups: identity_center.groups().await?,
        },
        SnapshotPart::Users {
            users: identity_center.users().await?,
        },
    ])
}

/// The parts that turn the assignments held (`before`) into those read (`now`).
fn replaced<'a>(
    before: impl Iterator<Item = &'a Assignment>,
    now: BTreeSet<Assignment>,
) -> Vec<SnapshotPart> {
    let before: BTreeSet<&Assignment> = before.collect();
    let mut parts: Vec<SnapshotPart> = before
        .iter()
        .filter(|a| !now.contains(**a))
        .map(|a| SnapshotPart::Unassigned {
            assignment: (*a).clone(),
        })
        .collect();
    parts.extend(
        now.into_iter()
            .filter(|a| !before.contains(a))
            .map(|assignment| SnapshotPart::Assigned { assignment }),
    );
    parts
}

/// Snapshots kept in memory: for a one-off read (the CLI), tests and the simulation.
#[derive(Default)]
pub struct InMemorySnapshots {
    generations: std::sync::Mutex<std::collections::HashMap<String, Snapshot>>,
    current: std::sync::Mutex<Option<CurrentSnapshot>>,
    touched: std::sync::Mutex<Vec<(DateTime<Utc>, Refresh)>>,
}

impl InMemorySnapshots {
    fn generations(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Snapshot>> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SnapshotStore for InMemorySnapshots {
    async fn current(&self) -> Result<Option<CurrentSnapshot>, PortError> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(current.clone())
    }
    async fn make_current(&self, current: &CurrentSnapshot) -> Result<(), PortError> {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(current.clone());
        Ok(())
    }
    async fn write(&self, generation: &str, parts: &[SnapshotPart]) -> Result<(), PortError> {
        self.generations()
            .entry(generation.to_owned())
            .or_default()
            .apply(parts);
        Ok(())
    }
    async fn read(&self, generation: &str) -> Result<Snapshot, PortError> {
        Ok(self
            .generations()
            .get(generation)
            .cloned()
            .unwrap_or_default())
    }
    async fn accounts(&self, generation: &str) -> Result<Vec<OrgAccount>, PortError> {
        Ok(self
            .generations()
            .get(generation)
            .map(|s| s.inputs.accounts.clone())
            .unwrap_or_default())
    }
    async fn listed(&self, generation: &str) -> Result<Vec<PermissionSetArn>, PortError> {
        Ok(self
            .generations()
            .get(generation)
            .map(|s| s.permission_sets_listed.clone())
            .unwrap_or_default())
    }
    async fn touched(&self, at: DateTime<Utc>, refresh: &Refresh) -> Result<(), PortError> {
        self.touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((at, refresh.clone()));
        Ok(())
    }
    async fn touched_since(&self, since: DateTime<Utc>) -> Result<Vec<Refresh>, PortError> {
        let mut touched: Vec<(DateTime<Utc>, Refresh)> = self
            .touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(at, _)| *at >= since)
            .cloned()
            .collect();
        touched.sort_by_key(|(at, _)| *at);
        Ok(touched.into_iter().map(|(_, refresh)| refresh).collect())
    }
}

/// Everything, read at once with no time limit: for a caller with no timeout to respect (the
/// CLI). The same pieces as a full run's, one after the other.
pub async fn read_in_full(readers: &Readers<'_>) -> Result<PlanInputs, PortError> {
    let store = InMemorySnapshots::default();
    let mut cursor = ReadCursor::Organisation;
    while cursor != ReadCursor::Done {
        cursor = read_piece(
            readers,
            &store,
            "in-full",
            readers.clock.now(),
            cursor,
            DateTime::<Utc>::MAX_UTC,
        )
        .await?;
    }
    Ok(store.read("in-full").await?.inputs)
}

/// What a settled request changed, for the current snapshot: one that succeeded made or
/// removed its assignment; one that failed or timed out is left for the next read to find.
pub fn settled(report: &super::assignment_monitor::ProvisioningReport) -> Option<SnapshotPart> {
    use super::assignment_monitor::{AssignmentOperation, FinalStatus};
    if report.status != FinalStatus::Succeeded {
        return None;
    }
    let request = &report.request;
    let assignment = Assignment {
        account_id: request.account_id.clone(),
        permission_set_arn: request.permission_set_arn.clone(),
        principal_type: request.principal_type,
        principal_id: request.principal_id.clone(),
    };
    Some(match request.operation {
        AssignmentOperation::Create => SnapshotPart::Assigned { assignment },
        AssignmentOperation::Delete => SnapshotPart::Unassigned { assignment },
    })
}

/// Writes `parts` into the current snapshot, if there is one: the sync's own changes, so that
/// a plan made from the snapshot before the next full read does not ask for them again.
pub async fn patch_current(
    store: &dyn SnapshotStore,
    parts: &[SnapshotPart],
) -> Result<(), PortError> {
    match store.current().await? {
        Some(current) if !parts.is_empty() => store.write(&current.generation, parts).await,
        _ => Ok(()),
    }
}
