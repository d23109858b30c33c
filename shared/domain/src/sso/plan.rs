//! The SSO planner: from the organisation, the permission sets, the identity store and the
//! current assignments, the assignments the model wants and the changes that get there
//! (BRIEF §2, "The matching rule", is normative for everything here).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::assignment_monitor::{AccountId, PermissionSetArn, PrincipalId, PrincipalType};
use super::model::{Environment, ForeignAssignments, SsoModel};

/// An account of the organisation as Organizations describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgAccount {
    pub id: AccountId,
    pub name: String,
    pub status: AccountStatus,
    pub tags: BTreeMap<String, String>,
    /// OU names from the root down to the account's parent; `None` when the parents could
    /// not be read (a partial input).
    pub ou_path: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountStatus {
    PendingActivation,
    Active,
    Suspended,
    PendingClosure,
    Closed,
    #[serde(untagged)]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionSetInfo {
    pub arn: PermissionSetArn,
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

/// A group (by display name) or a user (by user name) of the identity store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub id: PrincipalId,
    pub name: String,
}

/// One account assignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub account_id: AccountId,
    pub permission_set_arn: PermissionSetArn,
    pub principal_type: PrincipalType,
    pub principal_id: PrincipalId,
}

/// Everything a plan is made from, read in full (an adapter that cannot read a listing in
/// full fails instead of handing over part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanInputs {
    pub management_account_id: Option<AccountId>,
    pub accounts: Vec<OrgAccount>,
    pub permission_sets: Vec<PermissionSetInfo>,
    pub groups: Vec<Principal>,
    pub users: Vec<Principal>,
    pub assignments: Vec<Assignment>,
}

/// Why an assignment is desired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rule {
    /// The permission set's `workloads` is `workload_all`: every account of an allowed
    /// environment.
    #[serde(rename_all = "camelCase")]
    WorkloadAll { job_function: String },
    /// `workload_match`: the account's workload is the group's.
    #[serde(rename_all = "camelCase")]
    WorkloadMatch {
        job_function: String,
        workload: String,
    },
    /// An explicit list that holds the account's workload, which is the group's.
    #[serde(rename_all = "camelCase")]
    WorkloadListed {
        job_function: String,
        workload: String,
    },
    /// A sandbox account's single owner.
    #[serde(rename_all = "camelCase")]
    SandboxOwner { owner: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedCreate {
    pub assignment: Assignment,
    pub rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDelete {
    pub assignment: Assignment,
    pub environment: Environment,
    /// Set when a guardrail holds the deletion for an approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HoldReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HoldReason {
    /// The run would delete more than the configured threshold: every delete waits.
    #[serde(rename_all = "camelCase")]
    OverThreshold { deletes: usize, threshold: usize },
    /// The account is in a protected environment.
    #[serde(rename_all = "camelCase")]
    ProtectedEnvironment { environment: Environment },
    /// The recent runs together already deleted so many that this run's deletes would take
    /// them past the threshold within the window: a script that retags accounts one by one
    /// makes many small runs.
    #[serde(rename_all = "camelCase")]
    OverThresholdInWindow {
        recent: usize,
        deletes: usize,
        threshold: usize,
        window_minutes: u32,
    },
    /// The account has no workload tag, which the permission set's workloads need: a tag
    /// removed by mistake would otherwise delete every assignment that depends on it.
    AccountWithoutWorkload,
}

/// An existing assignment the model does not manage, and why; it is never touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unmanaged {
    pub assignment: Assignment,
    pub reason: UnmanagedReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmanagedReason {
    /// The permission set carries no `job_function` tag.
    UnmanagedPermissionSet,
    /// The account is excluded (see [`Plan::excluded_accounts`]) or not in the organisation.
    ExcludedAccount,
    /// The principal is neither a group the naming convention makes nor a sandbox's owner:
    /// someone assigned it on purpose (a Control Tower group, a break-glass user). Kept unless
    /// the model says `"foreignAssignments": "PRUNE"`.
    ForeignPrincipal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExcludedAccount {
    pub id: AccountId,
    pub name: String,
    pub reason: Exclusion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "exclusion", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Exclusion {
    ManagementAccount,
    #[serde(rename_all = "camelCase")]
    NotActive {
        status: AccountStatus,
    },
    /// No ancestor OU maps to an environment (a Security or Log Archive OU, say).
    NoEnvironment,
}

/// A sandbox account that gets no assignment, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxWithoutOwner {
    pub account_id: AccountId,
    pub problem: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputsSummary {
    pub accounts: usize,
    pub managed_accounts: usize,
    pub permission_sets: usize,
    pub managed_permission_sets: usize,
    pub groups: usize,
    pub managed_groups: usize,
    pub users: usize,
    pub assignments: usize,
}

/// What the model wants changed, and everything it leaves alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub inputs: InputsSummary,
    pub desired: usize,
    pub unchanged: usize,
    pub create: Vec<PlannedCreate>,
    /// Every delete, held ones included (see [`PlannedDelete::held`]).
    pub delete: Vec<PlannedDelete>,
    pub unmanaged: Vec<Unmanaged>,
    pub excluded_accounts: Vec<ExcludedAccount>,
    pub unmanaged_permission_sets: Vec<PermissionSetArn>,
    pub unmanaged_groups: Vec<String>,
    pub sandboxes_without_owner: Vec<SandboxWithoutOwner>,
}

impl Plan {
    pub fn deletes_to_run(&self) -> impl Iterator<Item = &PlannedDelete> {
        self.delete.iter().filter(|d| d.held.is_none())
    }

    pub fn held_deletes(&self) -> impl Iterator<Item = &PlannedDelete> {
        self.delete.iter().filter(|d| d.held.is_some())
    }

    pub fn has_changes(&self) -> bool {
        !self.create.is_empty() || self.deletes_to_run().next().is_some()
    }
}

/// Why a run stopped before planning: its inputs look partial or unknown.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("the plan was aborted: {}", .reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct PlanAborted {
    pub reasons: Vec<AbortReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "abort", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortReason {
    #[error("the identity store listed no group")]
    NoGroups,
    #[error("the parents of account {account_id} could not be read")]
    #[serde(rename_all = "camelCase")]
    ParentsUnreadable { account_id: AccountId },
    #[error(
        "{source_kind} {name:?} names job-function {job_function:?}, which the model does not know"
    )]
    #[serde(rename_all = "camelCase")]
    UnknownJobFunction {
        source_kind: String,
        name: String,
        job_function: String,
    },
    #[error("permission set {name:?} has a job-function but its workloads tag is {problem}")]
    #[serde(rename_all = "camelCase")]
    InvalidWorkloads { name: String, problem: String },
}

impl AbortReason {
    /// Whether the inputs look partly read (a listing that failed quietly), rather than
    /// configured wrongly: a snapshot read so must not replace a whole one.
    pub fn is_partial_read(&self) -> bool {
        match self {
            AbortReason::NoGroups | AbortReason::ParentsUnreadable { .. } => true,
            AbortReason::UnknownJobFunction { .. } | AbortReason::InvalidWorkloads { .. } => false,
        }
    }
}

/// A permission set's `workloads` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadSelector {
    All,
    Match,
    Listed(Vec<String>),
}

const WORKLOAD_ALL: &str = "workload_all";
const WORKLOAD_MATCH: &str = "workload_match";

/// Whether `token` could be one of the reserved values mistyped (`Workload_All`,
/// `workload-match`): the same letters once case, `-`, `_` and spaces are set aside.
fn resembles_reserved(token: &str) -> Option<&'static str> {
    let letters: String = token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [WORKLOAD_ALL, WORKLOAD_MATCH]
        .into_iter()
        .find(|reserved| reserved.replace('_', "") == letters && token != *reserved)
}

/// A workload name: letters, digits, `-`, `_` and `.`. sso-admin tag values cannot hold
/// commas, so operators reach for `:` or `/` to separate names; those stop the run instead
/// of becoming one name that matches nothing.
fn check_workload_name(tag: &str, token: &str) -> Result<(), String> {
    if let Some(reserved) = resembles_reserved(token) {
        return Err(format!(
            "{tag:?}: {token:?} looks like {reserved} mistyped; write {reserved} exactly"
        ));
    }
    if let Some(bad) = token
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{tag:?}: {token:?} is not a workload name ({bad:?} is not allowed); separate workloads with spaces"
        ));
    }
    Ok(())
}

impl WorkloadSelector {
    pub fn parse(tag: Option<&str>) -> Result<Self, String> {
        let tag = tag.ok_or("missing")?;
        let names: Vec<&str> = tag
            .split([',', ' '])
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        // `workload match` is two valid names, and still the reserved value mistyped.
        if let Some(reserved) = resembles_reserved(tag.trim()) {
            return Err(format!(
                "{tag:?} looks like {reserved} mistyped; write {reserved} exactly"
            ));
        }
        for name in &names {
            check_workload_name(tag, name)?;
        }
        match names.as_slice() {
            [] => Err("empty".into()),
            [WORKLOAD_ALL] => Ok(WorkloadSelector::All),
            [WORKLOAD_MATCH] => Ok(WorkloadSelector::Match),
            names
                if names
                    .iter()
                    .any(|n| *n == WORKLOAD_ALL || *n == WORKLOAD_MATCH) =>
            {
                Err(format!(
                    "{tag:?}: {WORKLOAD_ALL} and {WORKLOAD_MATCH} stand alone"
                ))
            }
            names => Ok(WorkloadSelector::Listed(
                names.iter().map(|n| (*n).to_owned()).collect(),
            )),
        }
    }
}

/// A permission set the model manages.
#[derive(Debug, Clone)]
struct ManagedSet<'a> {
    job_function: &'a str,
    selector: WorkloadSelector,
}

/// An account the model manages.
#[derive(Debug, Clone)]
struct ManagedAccount<'a> {
    info: &'a OrgAccount,
    environment: Environment,
    workload: Option<&'a str>,
}

/// Why a group rule does not hold for one (group, permission set, account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    JobFunction,
    EnvironmentNotAllowed,
    AccountHasNoWorkload,
    WorkloadDiffers,
    WorkloadNotListed,
}

/// The group rule for one combination (BRIEF §2): the one place it is decided.
fn group_rule(
    model: &SsoModel,
    (group_job_function, group_workload): (&str, &str),
    set: &ManagedSet<'_>,
    account: &ManagedAccount<'_>,
) -> Result<Rule, Mismatch> {
    if group_job_function != set.job_function {
        return Err(Mismatch::JobFunction);
    }
    let allowed = model
        .job_functions
        .get(set.job_function)
        .is_some_and(|envs| envs.contains(&account.environment));
    if !allowed || account.environment == Environment::Sandbox {
        return Err(Mismatch::EnvironmentNotAllowed);
    }
    let job_function = set.job_function.to_owned();
    match &set.selector {
        WorkloadSelector::All => Ok(Rule::WorkloadAll { job_function }),
        WorkloadSelector::Match | WorkloadSelector::Listed(_) => {
            let account_workload = account.workload.ok_or(Mismatch::AccountHasNoWorkload)?;
            if let WorkloadSelector::Listed(listed) = &set.selector
                && !listed.iter().any(|w| w == account_workload)
            {
                return Err(Mismatch::WorkloadNotListed);
            }
            if account_workload != group_workload {
                return Err(Mismatch::WorkloadDiffers);
            }
            let workload = account_workload.to_owned();
            Ok(match set.selector {
                WorkloadSelector::Match => Rule::WorkloadMatch {
                    job_function,
                    workload,
                },
                _ => Rule::WorkloadListed {
                    job_function,
                    workload,
                },
            })
        }
    }
}

/// The inputs sorted into what the model manages, or the reasons the run must stop.
struct Classified<'a> {
    sets: Vec<Option<ManagedSet<'a>>>,
    accounts: Vec<Result<ManagedAccount<'a>, Exclusion>>,
    groups: Vec<Option<(&'a str, &'a str)>>,
}

fn classify<'a>(model: &SsoModel, inputs: &'a PlanInputs) -> Result<Classified<'a>, PlanAborted> {
    let mut reasons = Vec::new();
    if inputs.groups.is_empty() {
        reasons.push(AbortReason::NoGroups);
    }
    let known = |job_function: &str| {
        model.job_functions.contains_key(job_function) || job_function == model.sandbox_job_function
    };
    let keys = &model.tag_keys;
    let sets = inputs
        .permission_sets
        .iter()
        .map(|info| {
            let job_function = info.tags.get(&keys.job_function)?.trim();
            if !known(job_function) {
                reasons.push(AbortReason::UnknownJobFunction {
                    source_kind: "permission set".into(),
                    name: info.name.clone(),
                    job_function: job_function.into(),
                });
                return None;
            }
            let selector = if job_function == model.sandbox_job_function {
                // The sandbox set goes to owners; its workloads tag does not matter.
                WorkloadSelector::All
            } else {
                match WorkloadSelector::parse(info.tags.get(&keys.workloads).map(String::as_str)) {
                    Ok(selector) => selector,
                    Err(problem) => {
                        reasons.push(AbortReason::InvalidWorkloads {
                            name: info.name.clone(),
                            problem,
                        });
                        return None;
                    }
                }
            };
            Some(ManagedSet {
                job_function,
                selector,
            })
        })
        .collect();
    // A group naming a job-function the model does not know is someone else's (the
    // identity provider's groups are not ours to police): unmanaged, and the sync goes on.
    let groups = inputs
        .groups
        .iter()
        .map(|group| {
            model
                .group_parts(&group.name)
                .filter(|parts| known(parts.0))
        })
        .collect();
    let accounts = inputs
        .accounts
        .iter()
        .map(|info| {
            if inputs.management_account_id.as_ref() == Some(&info.id) {
                return Err(Exclusion::ManagementAccount);
            }
            if info.status != AccountStatus::Active {
                return Err(Exclusion::NotActive {
                    status: info.status.clone(),
                });
            }
            let Some(path) = &info.ou_path else {
                reasons.push(AbortReason::ParentsUnreadable {
                    account_id: info.id.clone(),
                });
                return Err(Exclusion::NoEnvironment);
            };
            let environment = model.environment_of(path).ok_or(Exclusion::NoEnvironment)?;
            Ok(ManagedAccount {
                info,
                environment,
                workload: info
                    .tags
                    .get(&keys.account_workload)
                    .map(|w| w.trim())
                    .filter(|w| !w.is_empty()),
            })
        })
        .collect();
    if reasons.is_empty() {
        Ok(Classified {
            sets,
            accounts,
            groups,
        })
    } else {
        Err(PlanAborted { reasons })
    }
}

/// Who owns a sandbox: the group with that display name, else the user with that user name.
fn sandbox_owner(
    model: &SsoModel,
    inputs: &PlanInputs,
    account: &ManagedAccount<'_>,
) -> Result<(PrincipalType, usize), String> {
    let owner = account
        .info
        .tags
        .get(&model.tag_keys.account_owner)
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .ok_or_else(|| format!("no {} tag", model.tag_keys.account_owner))?;
    // The exact name first; else the one name that differs only in case (an owner tag typed
    // `Alice` for the user `alice`). Two candidates are ambiguous: no one is assigned.
    let exact = inputs
        .groups
        .iter()
        .position(|g| g.name == owner)
        .map(|i| (PrincipalType::Group, i))
        .or_else(|| {
            inputs
                .users
                .iter()
                .position(|u| u.name == owner)
                .map(|i| (PrincipalType::User, i))
        });
    if let Some(found) = exact {
        return Ok(found);
    }
    let alike = |name: &str| name.to_lowercase() == owner.to_lowercase();
    let candidates: Vec<(PrincipalType, usize)> = inputs
        .groups
        .iter()
        .enumerate()
        .filter(|(_, g)| alike(&g.name))
        .map(|(i, _)| (PrincipalType::Group, i))
        .chain(
            inputs
                .users
                .iter()
                .enumerate()
                .filter(|(_, u)| alike(&u.name))
                .map(|(i, _)| (PrincipalType::User, i)),
        )
        .collect();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "owner {owner:?} is neither a group nor a user of the identity store"
        )),
        _ => Err(format!(
            "owner {owner:?} matches {} names that differ only in case; write the exact one",
            candidates.len()
        )),
    }
}

/// A desired assignment, by position in the inputs: cheap to hash at any scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    account: u32,
    set: u32,
    principal: (PrincipalType, u32),
}

/// Why a key is desired, by position: turned into a [`Rule`] only for creates.
#[derive(Debug, Clone, Copy)]
enum RuleAt {
    Group { group: u32 },
    Sandbox,
}

fn index(i: usize) -> u32 {
    u32::try_from(i).expect("inputs hold fewer than 4 billion entries")
}

/// Plans the changes that make the current assignments equal to the model's.
pub fn plan(model: &SsoModel, inputs: &PlanInputs) -> Result<Plan, PlanAborted> {
    let classified = classify(model, inputs)?;
    let mut plan = Plan::default();

    // Candidates by job-function, and by (job-function, workload), so that each account
    // looks only at groups that can match it.
    // Sets for any workload (`workload_all`, `workload_match`) by job-function; listed sets
    // by (job-function, listed workload), so an account visits only sets that name its own.
    let mut open_sets: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut listed_sets: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut sandbox_sets = Vec::new();
    for (i, set) in classified.sets.iter().enumerate() {
        match set {
            Some(set) if set.job_function == model.sandbox_job_function => sandbox_sets.push(i),
            Some(set) => match &set.selector {
                WorkloadSelector::Listed(workloads) => {
                    for workload in workloads {
                        listed_sets
                            .entry((set.job_function, workload.as_str()))
                            .or_default()
                            .push(i);
                    }
                }
                _ => open_sets.entry(set.job_function).or_default().push(i),
            },
            None => plan
                .unmanaged_permission_sets
                .push(inputs.permission_sets[i].arn.clone()),
        }
    }
    let job_functions: Vec<&str> = model.job_functions.keys().map(String::as_str).collect();
    let mut groups_by_job_function: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut groups_by_pair: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, parts) in classified.groups.iter().enumerate() {
        match parts {
            Some(parts) => {
                groups_by_job_function.entry(parts.0).or_default().push(i);
                groups_by_pair.entry(*parts).or_default().push(i);
            }
            None => plan.unmanaged_groups.push(inputs.groups[i].name.clone()),
        }
    }

    let mut desired: HashMap<Key, RuleAt> = HashMap::new();
    for (a, account) in classified.accounts.iter().enumerate() {
        let account = match account {
            Ok(account) => account,
            Err(reason) => {
                let info = &inputs.accounts[a];
                plan.excluded_accounts.push(ExcludedAccount {
                    id: info.id.clone(),
                    name: info.name.clone(),
                    reason: reason.clone(),
                });
                continue;
            }
        };
        if account.environment == Environment::Sandbox {
            match sandbox_owner(model, inputs, account) {
                Ok((principal_type, owner)) if !sandbox_sets.is_empty() => {
                    for &s in &sandbox_sets {
                        let key = Key {
                            account: index(a),
                            set: index(s),
                            principal: (principal_type, index(owner)),
                        };
                        desired.insert(key, RuleAt::Sandbox);
                    }
                }
                Ok(_) => plan.sandboxes_without_owner.push(SandboxWithoutOwner {
                    account_id: account.info.id.clone(),
                    problem: format!(
                        "no permission set has job-function {}",
                        model.sandbox_job_function
                    ),
                }),
                Err(problem) => plan.sandboxes_without_owner.push(SandboxWithoutOwner {
                    account_id: account.info.id.clone(),
                    problem,
                }),
            }
            continue;
        }
        for &job_function in &job_functions {
            let open = open_sets.get(job_function).into_iter().flatten();
            let listed = account
                .workload
                .and_then(|workload| listed_sets.get(&(job_function, workload)))
                .into_iter()
                .flatten();
            for &s in open.chain(listed) {
                let set = classified.sets[s]
                    .as_ref()
                    .expect("indexed sets are managed");
                let candidates = match (&set.selector, account.workload) {
                    (WorkloadSelector::All, _) => groups_by_job_function.get(job_function),
                    (_, Some(workload)) => groups_by_pair.get(&(job_function, workload)),
                    (_, None) => None,
                };
                for &g in candidates.into_iter().flatten() {
                    let parts = classified.groups[g].expect("indexed groups are managed");
                    if group_rule(model, parts, set, account).is_ok() {
                        let key = Key {
                            account: index(a),
                            set: index(s),
                            principal: (PrincipalType::Group, index(g)),
                        };
                        desired.insert(key, RuleAt::Group { group: index(g) });
                    }
                }
            }
        }
    }

    // The current assignments, by the same positions.
    let account_at: HashMap<&AccountId, usize> = inputs
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (&a.id, i))
        .collect();
    let set_at: HashMap<&PermissionSetArn, usize> = inputs
        .permission_sets
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.arn, i))
        .collect();
    let group_at: HashMap<&PrincipalId, usize> = inputs
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (&g.id, i))
        .collect();
    let user_at: HashMap<&PrincipalId, usize> = inputs
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (&u.id, i))
        .collect();
    // The principals the model could have assigned: convention groups (managed) and the
    // owners named by managed sandboxes.
    let owners: HashSet<String> = classified
        .accounts
        .iter()
        .filter_map(|account| account.as_ref().ok())
        .filter(|account| account.environment == Environment::Sandbox)
        .filter_map(|account| account.info.tags.get(&model.tag_keys.account_owner))
        .map(|owner| owner.trim().to_lowercase())
        .collect();
    // The sandbox set is the model's alone: whoever holds it was an owner once (a sandbox
    // handed to someone else, or moved out of the sandbox OU, must lose its old owner).
    let model_made =
        |assignment: &Assignment, set: usize, principal: Option<&usize>| match principal {
            // Gone from the identity store: nobody can use it, whoever made it.
            None => true,
            Some(_)
                if classified.sets[set]
                    .as_ref()
                    .is_some_and(|s| s.job_function == model.sandbox_job_function) =>
            {
                true
            }
            Some(&p) => match assignment.principal_type {
                PrincipalType::Group => {
                    classified.groups[p].is_some()
                        || owners.contains(&inputs.groups[p].name.to_lowercase())
                }
                PrincipalType::User => owners.contains(&inputs.users[p].name.to_lowercase()),
            },
        };
    let mut present: HashSet<Key> = HashSet::with_capacity(inputs.assignments.len());
    for assignment in &inputs.assignments {
        let set = set_at.get(&assignment.permission_set_arn).copied();
        if set.is_none_or(|s| classified.sets[s].is_none()) {
            plan.unmanaged.push(Unmanaged {
                assignment: assignment.clone(),
                reason: UnmanagedReason::UnmanagedPermissionSet,
            });
            continue;
        }
        let account = account_at.get(&assignment.account_id).copied();
        let Some((a, environment)) = account.and_then(|a| {
            classified.accounts[a]
                .as_ref()
                .ok()
                .map(|m| (a, m.environment))
        }) else {
            plan.unmanaged.push(Unmanaged {
                assignment: assignment.clone(),
                reason: UnmanagedReason::ExcludedAccount,
            });
            continue;
        };
        let principal = match assignment.principal_type {
            PrincipalType::Group => group_at.get(&assignment.principal_id),
            PrincipalType::User => user_at.get(&assignment.principal_id),
        };
        // A principal the identity store no longer has (a group deleted and recreated gets
        // a new id) cannot be desired: its assignment is deleted.
        let key = principal.map(|&p| Key {
            account: index(a),
            set: index(set.expect("checked above")),
            principal: (assignment.principal_type, index(p)),
        });
        match key {
            Some(key) if desired.contains_key(&key) => {
                present.insert(key);
            }
            _ if !model_made(assignment, set.expect("checked above"), principal)
                && model.foreign_assignments == ForeignAssignments::Keep =>
            {
                plan.unmanaged.push(Unmanaged {
                    assignment: assignment.clone(),
                    reason: UnmanagedReason::ForeignPrincipal,
                });
            }
            _ => {
                let needs_workload = classified.sets[set.expect("checked above")]
                    .as_ref()
                    .is_some_and(|s| s.selector != WorkloadSelector::All);
                let without_workload = classified.accounts[a]
                    .as_ref()
                    .is_ok_and(|m| m.workload.is_none() && m.environment != Environment::Sandbox);
                plan.delete.push(PlannedDelete {
                    assignment: assignment.clone(),
                    environment,
                    held: (needs_workload && without_workload)
                        .then_some(HoldReason::AccountWithoutWorkload),
                })
            }
        }
    }

    plan.desired = desired.len();
    plan.unchanged = present.len();
    for (key, rule_at) in &desired {
        if present.contains(key) {
            continue;
        }
        plan.create
            .push(planned_create(model, inputs, &classified, *key, *rule_at));
    }

    plan.inputs = InputsSummary {
        accounts: inputs.accounts.len(),
        managed_accounts: classified.accounts.iter().filter(|a| a.is_ok()).count(),
        permission_sets: inputs.permission_sets.len(),
        managed_permission_sets: classified.sets.iter().filter(|s| s.is_some()).count(),
        groups: inputs.groups.len(),
        managed_groups: classified.groups.iter().filter(|g| g.is_some()).count(),
        users: inputs.users.len(),
        assignments: inputs.assignments.len(),
    };
    plan.create.sort_by(|a, b| a.assignment.cmp(&b.assignment));
    plan.delete.sort_by(|a, b| a.assignment.cmp(&b.assignment));
    plan.unmanaged
        .sort_by(|a, b| a.assignment.cmp(&b.assignment));
    guard_deletes(model, &mut plan);
    Ok(plan)
}

fn planned_create(
    model: &SsoModel,
    inputs: &PlanInputs,
    classified: &Classified<'_>,
    key: Key,
    rule_at: RuleAt,
) -> PlannedCreate {
    let account = &inputs.accounts[key.account as usize];
    let set = &inputs.permission_sets[key.set as usize];
    let (principal_type, p) = key.principal;
    let principal = match principal_type {
        PrincipalType::Group => &inputs.groups[p as usize],
        PrincipalType::User => &inputs.users[p as usize],
    };
    let rule = match rule_at {
        RuleAt::Sandbox => Rule::SandboxOwner {
            owner: principal.name.clone(),
        },
        RuleAt::Group { group } => {
            let parts = classified.groups[group as usize].expect("a desired group is managed");
            let set = classified.sets[key.set as usize]
                .as_ref()
                .expect("a desired set is managed");
            let account = classified.accounts[key.account as usize]
                .as_ref()
                .expect("a desired account is managed");
            group_rule(model, parts, set, account).expect("the rule held when it was planned")
        }
    };
    PlannedCreate {
        assignment: Assignment {
            account_id: account.id.clone(),
            permission_set_arn: set.arn.clone(),
            principal_type,
            principal_id: principal.id.clone(),
        },
        rule,
    }
}

/// Holds deletes that need an approval: all of them above the threshold, else those in
/// protected environments. Creates are never held.
fn guard_deletes(model: &SsoModel, plan: &mut Plan) {
    let deletes = plan.delete.len();
    for delete in &mut plan.delete {
        delete.held = if deletes > model.delete_threshold {
            Some(HoldReason::OverThreshold {
                deletes,
                threshold: model.delete_threshold,
            })
        } else if model.protected_environments.contains(&delete.environment) {
            Some(HoldReason::ProtectedEnvironment {
                environment: delete.environment,
            })
        } else {
            delete.held.take()
        };
    }
}

/// The answer to "why is (group, account, permission set) desired or not?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub desired: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// The facts the verdict rests on: tags, OU path, environment, configuration.
    pub facts: Vec<String>,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExplainError {
    #[error("no {what} is named or identified by {value:?}")]
    NotFound { what: &'static str, value: String },
    #[error(transparent)]
    Aborted(#[from] PlanAborted),
}

/// Explains one combination; group, account and permission set are given by name or id.
pub fn explain(
    model: &SsoModel,
    inputs: &PlanInputs,
    group: &str,
    account: &str,
    permission_set: &str,
) -> Result<Explanation, ExplainError> {
    let not_found = |what, value: &str| ExplainError::NotFound {
        what,
        value: value.to_owned(),
    };
    let g = inputs
        .groups
        .iter()
        .position(|x| x.name == group || x.id.as_str() == group)
        .ok_or_else(|| not_found("group", group))?;
    let a = inputs
        .accounts
        .iter()
        .position(|x| x.name == account || x.id.as_str() == account)
        .ok_or_else(|| not_found("account", account))?;
    let s = inputs
        .permission_sets
        .iter()
        .position(|x| x.name == permission_set || x.arn.as_str() == permission_set)
        .ok_or_else(|| not_found("permission set", permission_set))?;
    let classified = classify(model, inputs)?;
    let (group_info, account_info, set_info) = (
        &inputs.groups[g],
        &inputs.accounts[a],
        &inputs.permission_sets[s],
    );
    let keys = &model.tag_keys;
    let tag = |tags: &BTreeMap<String, String>, key: &str| {
        tags.get(key)
            .map_or_else(|| format!("no {key} tag"), |v| format!("{key}={v}"))
    };
    let mut facts = vec![
        format!(
            "permission set {}: {}, {}",
            set_info.name,
            tag(&set_info.tags, &keys.job_function),
            tag(&set_info.tags, &keys.workloads)
        ),
        format!(
            "account {} ({}): {:?}, OU path {}, {}",
            account_info.name,
            account_info.id,
            account_info.status,
            account_info
                .ou_path
                .as_ref()
                .map_or_else(|| "unreadable".to_owned(), |p| p.join("/")),
            tag(&account_info.tags, &keys.account_workload)
        ),
    ];
    match classified.groups[g] {
        Some((job_function, workload)) => facts.push(format!(
            "group {}: job-function {job_function}, workload {workload} (syntax <job_function>{}<workload>)",
            group_info.name, model.group_separator
        )),
        None => facts.push(format!(
            "group {} does not fit <job_function>{}<workload>",
            group_info.name, model.group_separator
        )),
    }
    let verdict = |desired: bool, rule: Option<Rule>, facts: Vec<String>, verdict: String| {
        Ok(Explanation {
            desired,
            rule,
            facts,
            verdict,
        })
    };
    let Some(set) = &classified.sets[s] else {
        return verdict(
            false,
            None,
            facts,
            format!(
                "not managed: the permission set has no {} tag; its assignments are never touched",
                keys.job_function
            ),
        );
    };
    let account_model = match &classified.accounts[a] {
        Ok(account) => account,
        Err(exclusion) => {
            return verdict(
                false,
                None,
                facts,
                format!("not managed: the account is excluded ({exclusion:?})"),
            );
        }
    };
    facts.push(format!(
        "the account's environment is {}",
        account_model.environment
    ));
    if account_model.environment == Environment::Sandbox {
        let owner = sandbox_owner(model, inputs, account_model);
        let desired = set.job_function == model.sandbox_job_function
            && matches!(owner, Ok((PrincipalType::Group, i)) if i == g);
        let text = match owner {
            Ok(_) if desired => "desired: the group owns this sandbox".to_owned(),
            Ok(_) => format!(
                "not desired: a sandbox gets only its owner ({}) with a {} permission set",
                tag(&account_info.tags, &keys.account_owner),
                model.sandbox_job_function
            ),
            Err(problem) => format!("not desired: the sandbox has no usable owner ({problem})"),
        };
        let rule = desired.then(|| Rule::SandboxOwner {
            owner: group_info.name.clone(),
        });
        return verdict(desired, rule, facts, text);
    }
    let Some(parts) = classified.groups[g] else {
        return verdict(
            false,
            None,
            facts,
            "not desired: the group is not managed".to_owned(),
        );
    };
    if let Some(environments) = model.job_functions.get(set.job_function) {
        let names: Vec<&str> = environments.iter().map(|e| e.as_str()).collect();
        facts.push(format!(
            "job-function {} may work in {}",
            set.job_function,
            names.join(", ")
        ));
    }
    match group_rule(model, parts, set, account_model) {
        Ok(rule) => {
            let text = format!("desired by rule {rule:?}");
            verdict(true, Some(rule), facts, text)
        }
        Err(mismatch) => {
            let why = match mismatch {
                Mismatch::JobFunction => "the group's job-function is not the permission set's",
                Mismatch::EnvironmentNotAllowed => {
                    "the account's environment is not allowed for the job-function"
                }
                Mismatch::AccountHasNoWorkload => "the account has no workload tag",
                Mismatch::WorkloadDiffers => "the account's workload is not the group's",
                Mismatch::WorkloadNotListed => {
                    "the account's workload is not in the permission set's workloads"
                }
            };
            verdict(false, None, facts, format!("not desired: {why}"))
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
