//! A reconcile run (flows A and B): read everything, plan, record the plan, and queue the
//! changes for the assignment worker. Nothing is changed when any input cannot be read in
//! full or looks partial.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::SsoModel;
use super::plan::{
    AbortReason, Assignment, HoldReason, OrgAccount, PermissionSetInfo, Plan, PlanInputs,
    PlannedDelete, Principal, plan,
};
use super::provisioning::{
    AccountId, AssignmentOperation, InstanceArn, PermissionSetArn, ProvisioningReport,
};
use crate::port::PortError;

/// Reads the organisation (AWS Organizations).
#[async_trait]
pub trait OrganisationReader: Send + Sync {
    /// The management account, if the caller can tell.
    async fn management_account(&self) -> Result<Option<AccountId>, PortError>;
    /// Every account with its tags and OU path, in full.
    async fn accounts(&self) -> Result<Vec<OrgAccount>, PortError>;
}

/// Reads IAM Identity Center and its identity store.
#[async_trait]
pub trait IdentityCenterReader: Send + Sync {
    fn instance_arn(&self) -> &InstanceArn;
    async fn permission_sets(&self) -> Result<Vec<PermissionSetInfo>, PortError>;
    async fn groups(&self) -> Result<Vec<Principal>, PortError>;
    async fn users(&self) -> Result<Vec<Principal>, PortError>;
    /// The assignments of the given permission sets in the given accounts, in full.
    async fn assignments(
        &self,
        accounts: &[AccountId],
        permission_sets: &[PermissionSetArn],
    ) -> Result<Vec<Assignment>, PortError>;
}

/// Where every run's record is kept (DynamoDB).
#[async_trait]
pub trait PlanStore: Send + Sync {
    async fn save(&self, run: &RunRecord) -> Result<(), PortError>;
    async fn latest(&self) -> Result<Option<RunRecord>, PortError>;
    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, PortError>;
}

/// Sends the deletes a run held to the approval workflow. Asking twice for the same held
/// deletes is one request.
#[async_trait]
pub trait HeldDeletesApproval: Send + Sync {
    async fn request(&self, run_id: &str, held: &[PlannedDelete]) -> Result<(), PortError>;
}

/// The deletes every run made over the guardrail's window (DynamoDB counters), so that many
/// small runs cannot delete more than one large run may.
#[async_trait]
pub trait DeleteBudget: Send + Sync {
    /// Counts `deletes` made at `now` unless, with the deletes of the last `window_minutes`,
    /// they would exceed `threshold`; then counts nothing and answers how many were made.
    async fn spend(
        &self,
        now: DateTime<Utc>,
        window_minutes: u32,
        deletes: usize,
        threshold: usize,
    ) -> Result<Spent, PortError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Within,
    Over { recent: usize },
}

/// One change for the assignment worker, as it travels on the changes queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentChange {
    pub run_id: String,
    pub instance_arn: InstanceArn,
    pub operation: AssignmentOperation,
    pub assignment: Assignment,
    /// How often the worker found every operation slot taken and put it back to wait.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Queues changes for the assignment worker (SQS).
#[async_trait]
pub trait ChangeQueue: Send + Sync {
    async fn enqueue(&self, changes: &[AssignmentChange]) -> Result<(), PortError>;
}

/// What a run looks at and may change: everything (flow B), or what one event touched
/// (flow A). A scoped run lists only the scope's assignments and changes only those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scope {
    Everything,
    #[serde(rename_all = "camelCase")]
    Account {
        account_id: AccountId,
    },
    #[serde(rename_all = "camelCase")]
    PermissionSet {
        permission_set_arn: PermissionSetArn,
    },
}

impl Scope {
    pub fn covers(&self, assignment: &Assignment) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Account { account_id } => assignment.account_id == *account_id,
            Scope::PermissionSet { permission_set_arn } => {
                assignment.permission_set_arn == *permission_set_arn
            }
        }
    }

    /// Keeps the plan's changes and unmanaged assignments inside the scope. The counts of
    /// desired and unchanged assignments are those of the scope too.
    fn restrict(&self, plan: &mut Plan) {
        if *self == Scope::Everything {
            return;
        }
        plan.create.retain(|c| self.covers(&c.assignment));
        plan.delete.retain(|d| self.covers(&d.assignment));
        plan.unmanaged.retain(|u| self.covers(&u.assignment));
        plan.desired = plan.unchanged + plan.create.len();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Plan and record, change nothing.
    DryRun,
    /// Plan, record, and queue the changes the guardrails allow.
    Apply,
}

/// What started the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Trigger {
    Schedule,
    #[serde(rename_all = "camelCase")]
    Api {
        requested_by: String,
    },
    #[serde(rename_all = "camelCase")]
    Event {
        event_id: String,
        event_name: String,
    },
    Cli,
    /// An approval released the deletes an earlier run held.
    #[serde(rename_all = "camelCase")]
    Approval {
        approval_id: String,
        held_run_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// A dry run: the plan is recorded, nothing queued.
    Planned,
    /// The changes were queued; held deletes wait for an approval.
    #[serde(rename_all = "camelCase")]
    Queued {
        creates: usize,
        deletes: usize,
        held: usize,
    },
    /// Nothing was changed: an input could not be read, or looked partial.
    #[serde(rename_all = "camelCase")]
    Aborted { reasons: Vec<String> },
}

/// A run as recorded: what started it, what it saw and planned, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub trigger: Trigger,
    pub scope: Scope,
    pub mode: Mode,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// The final status of each request the run's changes made, as the monitor reported it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ProvisioningReport>,
}

/// A run in a few numbers: what the API and the schedule answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub trigger: Trigger,
    pub scope: Scope,
    pub mode: Mode,
    pub outcome: Outcome,
    pub desired: usize,
    pub unchanged: usize,
    pub to_create: usize,
    pub to_delete: usize,
    pub held: usize,
    pub unmanaged: usize,
    pub excluded_accounts: usize,
}

impl RunRecord {
    /// A run about to plan: nothing planned or reported yet.
    fn starting(run: Run) -> RunRecord {
        RunRecord {
            run_id: run.run_id,
            started_at: run.now,
            trigger: run.trigger,
            scope: run.scope,
            mode: run.mode,
            outcome: Outcome::Planned,
            plan: None,
            reports: Vec::new(),
        }
    }

    pub fn summary(&self) -> RunSummary {
        let plan = self.plan.as_ref();
        let count = |f: fn(&Plan) -> usize| plan.map_or(0, f);
        RunSummary {
            run_id: self.run_id.clone(),
            started_at: self.started_at,
            trigger: self.trigger.clone(),
            scope: self.scope.clone(),
            mode: self.mode,
            outcome: self.outcome.clone(),
            desired: count(|p| p.desired),
            unchanged: count(|p| p.unchanged),
            to_create: count(|p| p.create.len()),
            to_delete: count(|p| p.deletes_to_run().count()),
            held: count(|p| p.held_deletes().count()),
            unmanaged: count(|p| p.unmanaged.len()),
            excluded_accounts: count(|p| p.excluded_accounts.len()),
        }
    }
}

/// The ports a run uses.
pub struct Ports<'a> {
    pub organisation: &'a dyn OrganisationReader,
    pub identity_center: &'a dyn IdentityCenterReader,
    pub store: &'a dyn PlanStore,
    pub changes: &'a dyn ChangeQueue,
    pub approvals: &'a dyn HeldDeletesApproval,
    pub deletes: &'a dyn DeleteBudget,
}

/// Why a run could not even record itself.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot record the run: {0}")]
    Store(PortError),
    #[error("cannot queue the changes: {0}")]
    Queue(PortError),
    #[error("the changes are queued, but the held deletes could not be sent for approval: {0}")]
    Approval(PortError),
}

impl ReconcileError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Store(e) | ReconcileError::Queue(e) | ReconcileError::Approval(e) => {
                e.is_retryable()
            }
        }
    }
}

/// Reads every input in full (the assignments only within `scope`); any failure becomes an
/// abort reason.
pub async fn read_inputs(
    organisation: &dyn OrganisationReader,
    identity_center: &dyn IdentityCenterReader,
    scope: &Scope,
) -> Result<PlanInputs, Vec<String>> {
    let management = organisation.management_account().await;
    let accounts = organisation.accounts().await;
    let permission_sets = identity_center.permission_sets().await;
    let groups = identity_center.groups().await;
    let users = identity_center.users().await;
    let mut reasons = Vec::new();
    let management = management.unwrap_or_else(|e| {
        reasons.push(read_failure("the management account", e));
        None
    });
    let accounts = in_full(&mut reasons, "the accounts", accounts);
    let permission_sets = in_full(&mut reasons, "the permission sets", permission_sets);
    let groups = in_full(&mut reasons, "the groups", groups);
    let users = in_full(&mut reasons, "the users", users);
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let account_ids: Vec<AccountId> = match scope {
        Scope::Account { account_id } => vec![account_id.clone()],
        _ => accounts.iter().map(|a| a.id.clone()).collect(),
    };
    let set_arns: Vec<PermissionSetArn> = match scope {
        Scope::PermissionSet { permission_set_arn } => permission_sets
            .iter()
            .filter(|s| s.arn == *permission_set_arn)
            .map(|s| s.arn.clone())
            .collect(),
        _ => permission_sets.iter().map(|s| s.arn.clone()).collect(),
    };
    let assignments = identity_center
        .assignments(&account_ids, &set_arns)
        .await
        .map_err(|e| vec![read_failure("the assignments", e)])?;
    Ok(PlanInputs {
        management_account_id: management,
        accounts,
        permission_sets,
        groups,
        users,
        assignments,
    })
}

fn read_failure(what: &str, error: PortError) -> String {
    format!("cannot read {what}: {error}")
}

/// A listing, or nothing with the reason recorded.
fn in_full<T>(reasons: &mut Vec<String>, what: &str, listing: Result<Vec<T>, PortError>) -> Vec<T> {
    listing.unwrap_or_else(|e| {
        reasons.push(read_failure(what, e));
        Vec::new()
    })
}

/// What to run: its id, what started it, what it looks at, and whether it applies.
#[derive(Debug, Clone)]
pub struct Run {
    pub run_id: String,
    pub trigger: Trigger,
    pub scope: Scope,
    pub mode: Mode,
    pub now: DateTime<Utc>,
}

/// The plan of `scope` from inputs read now, or every reason not to trust one.
async fn plan_scope(
    model: &SsoModel,
    ports: &Ports<'_>,
    scope: &Scope,
) -> Result<Plan, Vec<String>> {
    let inputs = read_inputs(ports.organisation, ports.identity_center, scope).await?;
    let mut planned = plan(model, &inputs).map_err(|aborted| {
        aborted
            .reasons
            .iter()
            .map(AbortReason::to_string)
            .collect::<Vec<_>>()
    })?;
    scope.restrict(&mut planned);
    Ok(planned)
}

/// One reconcile run, recorded whatever its outcome.
pub async fn reconcile(
    model: &SsoModel,
    ports: &Ports<'_>,
    run: Run,
) -> Result<RunRecord, ReconcileError> {
    let mut record = RunRecord::starting(run);
    match plan_scope(model, ports, &record.scope).await {
        Err(reasons) => {
            record.outcome = Outcome::Aborted { reasons };
        }
        Ok(mut planned) => {
            if record.mode == Mode::Apply {
                hold_past_the_window(model, ports, record.started_at, &mut planned).await?;
                let changes = changes_of(
                    &record.run_id,
                    ports.identity_center.instance_arn(),
                    &planned,
                );
                // The record says what is being queued before anything is, so a failure
                // between the two leaves a record that explains the queue's contents.
                record.outcome = Outcome::Queued {
                    creates: planned.create.len(),
                    deletes: planned.deletes_to_run().count(),
                    held: planned.held_deletes().count(),
                };
                record.plan = Some(planned);
                ports
                    .store
                    .save(&record)
                    .await
                    .map_err(ReconcileError::Store)?;
                ports
                    .changes
                    .enqueue(&changes)
                    .await
                    .map_err(ReconcileError::Queue)?;
                let held: Vec<PlannedDelete> = record
                    .plan
                    .iter()
                    .flat_map(|p| p.held_deletes().cloned())
                    .collect();
                if !held.is_empty() {
                    ports
                        .approvals
                        .request(&record.run_id, &held)
                        .await
                        .map_err(ReconcileError::Approval)?;
                }
                return Ok(record);
            }
            record.plan = Some(planned);
        }
    }
    ports
        .store
        .save(&record)
        .await
        .map_err(ReconcileError::Store)?;
    Ok(record)
}

/// Counts the run's deletes against the window's budget; past it, holds them all for an
/// approval as the per-run threshold does.
async fn hold_past_the_window(
    model: &SsoModel,
    ports: &Ports<'_>,
    now: DateTime<Utc>,
    planned: &mut Plan,
) -> Result<(), ReconcileError> {
    let deletes = planned.deletes_to_run().count();
    if deletes == 0 {
        return Ok(());
    }
    let spent = ports
        .deletes
        .spend(
            now,
            model.delete_window_minutes,
            deletes,
            model.delete_threshold,
        )
        .await
        .map_err(ReconcileError::Store)?;
    if let Spent::Over { recent } = spent {
        for delete in planned.delete.iter_mut().filter(|d| d.held.is_none()) {
            delete.held = Some(HoldReason::OverThresholdInWindow {
                recent,
                deletes,
                threshold: model.delete_threshold,
                window_minutes: model.delete_window_minutes,
            });
        }
    }
    Ok(())
}

/// Why approved deletes could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum HeldDeletesError {
    #[error("no reconcile run {0} is recorded")]
    UnknownRun(String),
    #[error("cannot read the held run: {0}")]
    Read(PortError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
}

impl HeldDeletesError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HeldDeletesError::UnknownRun(_) => false,
            HeldDeletesError::Read(e) => e.is_retryable(),
            HeldDeletesError::Reconcile(e) => e.is_retryable(),
        }
    }
}

/// Queues the deletes run `held_run_id` held, now that they are approved. Only the ones the
/// model still wants gone are queued: an approval given hours later must not delete an
/// assignment that became desired meanwhile. The run is recorded like any other; when the
/// inputs cannot be read it is recorded as aborted and nothing is queued.
pub async fn apply_held_deletes(
    model: &SsoModel,
    ports: &Ports<'_>,
    held_run_id: &str,
    run: Run,
) -> Result<RunRecord, HeldDeletesError> {
    let held: BTreeSet<Assignment> = ports
        .store
        .get(held_run_id)
        .await
        .map_err(HeldDeletesError::Read)?
        .ok_or_else(|| HeldDeletesError::UnknownRun(held_run_id.to_owned()))?
        .plan
        .iter()
        .flat_map(|plan| plan.held_deletes().map(|d| d.assignment.clone()))
        .collect();
    let mut record = RunRecord::starting(Run {
        scope: Scope::Everything,
        mode: Mode::Apply,
        ..run
    });
    let planned = match plan_scope(model, ports, &record.scope).await {
        Err(reasons) => {
            record.outcome = Outcome::Aborted { reasons };
            ports
                .store
                .save(&record)
                .await
                .map_err(ReconcileError::Store)?;
            return Ok(record);
        }
        Ok(planned) => planned,
    };
    let changes: Vec<AssignmentChange> = planned
        .delete
        .iter()
        .filter(|d| held.contains(&d.assignment))
        .map(|d| AssignmentChange {
            run_id: record.run_id.clone(),
            instance_arn: ports.identity_center.instance_arn().clone(),
            operation: AssignmentOperation::Delete,
            assignment: d.assignment.clone(),
            deferrals: 0,
        })
        .collect();
    record.outcome = Outcome::Queued {
        creates: 0,
        deletes: changes.len(),
        held: 0,
    };
    record.plan = Some(planned);
    ports
        .store
        .save(&record)
        .await
        .map_err(ReconcileError::Store)?;
    ports
        .changes
        .enqueue(&changes)
        .await
        .map_err(ReconcileError::Queue)?;
    Ok(record)
}

/// The changes a plan queues: every create, and the deletes no guardrail holds.
pub fn changes_of(run_id: &str, instance_arn: &InstanceArn, plan: &Plan) -> Vec<AssignmentChange> {
    let change = |operation, assignment: &Assignment| AssignmentChange {
        run_id: run_id.to_owned(),
        instance_arn: instance_arn.clone(),
        operation,
        assignment: assignment.clone(),
        deferrals: 0,
    };
    plan.create
        .iter()
        .map(|c| change(AssignmentOperation::Create, &c.assignment))
        .chain(
            plan.deletes_to_run()
                .map(|d| change(AssignmentOperation::Delete, &d.assignment)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::sso::synthetic;

    /// The organisation, IAM Identity Center, the store and the queue, all in memory.
    struct Fakes {
        inputs: PlanInputs,
        fail_groups: bool,
        saved: Mutex<Vec<RunRecord>>,
        queued: Mutex<Vec<AssignmentChange>>,
        approvals_asked: Mutex<Vec<(String, usize)>>,
        /// The deletes counted, with when they were made.
        spent: Mutex<Vec<(DateTime<Utc>, usize)>>,
        instance_arn: InstanceArn,
    }

    impl Fakes {
        fn new() -> Self {
            Fakes {
                inputs: synthetic::organisation(synthetic::Size {
                    accounts: 30,
                    permission_sets: 12,
                    groups: 20,
                    workloads: 5,
                }),
                fail_groups: false,
                saved: Mutex::new(Vec::new()),
                queued: Mutex::new(Vec::new()),
                approvals_asked: Mutex::new(Vec::new()),
                spent: Mutex::new(Vec::new()),
                instance_arn: InstanceArn::try_from(
                    "arn:aws:sso:::instance/ssoins-0000000000000000",
                )
                .unwrap(),
            }
        }

        fn ports(&self) -> Ports<'_> {
            Ports {
                organisation: self,
                identity_center: self,
                store: self,
                changes: self,
                approvals: self,
                deletes: self,
            }
        }

        async fn run(&self, mode: Mode) -> RunRecord {
            self.run_at(mode, Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap())
                .await
        }

        async fn run_at(&self, mode: Mode, now: DateTime<Utc>) -> RunRecord {
            let run = Run {
                run_id: "run-1".into(),
                trigger: Trigger::Cli,
                scope: Scope::Everything,
                mode,
                now,
            };
            reconcile(&SsoModel::default(), &self.ports(), run)
                .await
                .expect("the run is recorded")
        }
    }

    #[async_trait]
    impl OrganisationReader for Fakes {
        async fn management_account(&self) -> Result<Option<AccountId>, PortError> {
            Ok(self.inputs.management_account_id.clone())
        }
        async fn accounts(&self) -> Result<Vec<OrgAccount>, PortError> {
            Ok(self.inputs.accounts.clone())
        }
    }

    #[async_trait]
    impl IdentityCenterReader for Fakes {
        fn instance_arn(&self) -> &InstanceArn {
            &self.instance_arn
        }
        async fn permission_sets(&self) -> Result<Vec<PermissionSetInfo>, PortError> {
            Ok(self.inputs.permission_sets.clone())
        }
        async fn groups(&self) -> Result<Vec<Principal>, PortError> {
            if self.fail_groups {
                return Err(PortError::Transient {
                    service: "identitystore",
                    detail: "ThrottlingException on page 3".into(),
                });
            }
            Ok(self.inputs.groups.clone())
        }
        async fn users(&self) -> Result<Vec<Principal>, PortError> {
            Ok(self.inputs.users.clone())
        }
        async fn assignments(
            &self,
            _: &[AccountId],
            _: &[PermissionSetArn],
        ) -> Result<Vec<Assignment>, PortError> {
            Ok(self.inputs.assignments.clone())
        }
    }

    #[async_trait]
    impl PlanStore for Fakes {
        async fn save(&self, run: &RunRecord) -> Result<(), PortError> {
            self.saved.lock().unwrap().push(run.clone());
            Ok(())
        }
        async fn latest(&self) -> Result<Option<RunRecord>, PortError> {
            Ok(self.saved.lock().unwrap().last().cloned())
        }
        async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, PortError> {
            let saved = self.saved.lock().unwrap();
            Ok(saved.iter().find(|r| r.run_id == run_id).cloned())
        }
    }

    #[async_trait]
    impl HeldDeletesApproval for Fakes {
        async fn request(&self, run_id: &str, held: &[PlannedDelete]) -> Result<(), PortError> {
            self.approvals_asked
                .lock()
                .unwrap()
                .push((run_id.to_owned(), held.len()));
            Ok(())
        }
    }

    #[async_trait]
    impl DeleteBudget for Fakes {
        async fn spend(
            &self,
            now: DateTime<Utc>,
            window_minutes: u32,
            deletes: usize,
            threshold: usize,
        ) -> Result<Spent, PortError> {
            let mut spent = self.spent.lock().unwrap();
            let since = now - chrono::Duration::minutes(i64::from(window_minutes));
            let recent: usize = spent
                .iter()
                .filter(|(at, _)| *at > since)
                .map(|(_, n)| n)
                .sum();
            if recent + deletes > threshold {
                return Ok(Spent::Over { recent });
            }
            spent.push((now, deletes));
            Ok(Spent::Within)
        }
    }

    #[async_trait]
    impl ChangeQueue for Fakes {
        async fn enqueue(&self, changes: &[AssignmentChange]) -> Result<(), PortError> {
            self.queued.lock().unwrap().extend_from_slice(changes);
            Ok(())
        }
    }

    fn production_account(fakes: &Fakes) -> usize {
        fakes
            .inputs
            .accounts
            .iter()
            .position(|a| {
                a.ou_path
                    .as_ref()
                    .is_some_and(|p| p.ends_with(&["production".to_owned()]))
            })
            .unwrap()
    }

    #[tokio::test]
    async fn many_small_runs_delete_no_more_within_the_window_than_one_large_run_may() {
        // Issue 14, finding 6: a script that retags accounts one by one made many runs of
        // fewer deletes than the threshold each, and none was held.
        let mut fakes = Fakes::new();
        // Four convention groups of other workloads on a development account (workload w1).
        for group in [6, 9, 12, 15] {
            fakes
                .inputs
                .assignments
                .push(synthetic::group_assignment(3, 3, group));
        }
        let noon = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let queued_deletes = |fakes: &Fakes| {
            fakes
                .queued
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.operation == AssignmentOperation::Delete)
                .count()
        };
        for minutes in [0, 10] {
            let record = fakes
                .run_at(Mode::Apply, noon + chrono::Duration::minutes(minutes))
                .await;
            assert_eq!(record.summary().to_delete, 4, "{:?}", record.outcome);
        }
        assert_eq!(queued_deletes(&fakes), 8);
        // The third run would take the hour past 10: its deletes wait for an approval.
        let third = fakes
            .run_at(Mode::Apply, noon + chrono::Duration::minutes(20))
            .await;
        let held: Vec<_> = third.plan.iter().flat_map(|p| p.held_deletes()).collect();
        assert_eq!(held.len(), 4);
        assert!(held.iter().all(|d| d.held
            == Some(HoldReason::OverThresholdInWindow {
                recent: 8,
                deletes: 4,
                threshold: 10,
                window_minutes: 60
            })));
        assert_eq!(queued_deletes(&fakes), 8, "nothing more was queued");
        assert_eq!(fakes.approvals_asked.lock().unwrap().len(), 1);
        // An hour after the first, the window has room again.
        let later = fakes
            .run_at(Mode::Apply, noon + chrono::Duration::minutes(61))
            .await;
        assert_eq!(later.summary().to_delete, 4, "{:?}", later.outcome);
    }

    fn approved(held_run_id: &str) -> Run {
        Run {
            run_id: "run-approved".into(),
            trigger: Trigger::Approval {
                approval_id: "act-1".into(),
                held_run_id: held_run_id.into(),
            },
            scope: Scope::Everything,
            mode: Mode::Apply,
            now: Utc.with_ymd_and_hms(2026, 11, 22, 13, 0, 0).unwrap(),
        }
    }

    #[tokio::test]
    async fn approved_held_deletes_are_queued_and_nothing_else() {
        let mut fakes = Fakes::new();
        let production = production_account(&fakes);
        let unwanted = synthetic::group_assignment(production, 0, 1);
        fakes.inputs.assignments.push(unwanted.clone());
        let held = fakes.run(Mode::Apply).await;
        fakes.queued.lock().unwrap().clear();
        let record = apply_held_deletes(
            &SsoModel::default(),
            &fakes.ports(),
            &held.run_id,
            approved(&held.run_id),
        )
        .await
        .unwrap();
        let queued = fakes.queued.lock().unwrap().clone();
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert_eq!(queued[0].operation, AssignmentOperation::Delete);
        assert_eq!(queued[0].assignment, unwanted);
        assert_eq!(queued[0].run_id, "run-approved");
        assert!(matches!(record.outcome, Outcome::Queued { deletes: 1, .. }));
    }

    #[tokio::test]
    async fn an_approval_never_deletes_what_is_gone_or_an_unknown_run() {
        let mut fakes = Fakes::new();
        let production = production_account(&fakes);
        fakes
            .inputs
            .assignments
            .push(synthetic::group_assignment(production, 0, 1));
        let held = fakes.run(Mode::Apply).await;
        // Someone removed it by hand before the approval came.
        fakes.inputs.assignments.pop();
        fakes.queued.lock().unwrap().clear();
        apply_held_deletes(
            &SsoModel::default(),
            &fakes.ports(),
            &held.run_id,
            approved(&held.run_id),
        )
        .await
        .unwrap();
        assert!(fakes.queued.lock().unwrap().is_empty());
        let unknown = apply_held_deletes(
            &SsoModel::default(),
            &fakes.ports(),
            "run-nope",
            approved("run-nope"),
        )
        .await;
        assert!(matches!(unknown, Err(HeldDeletesError::UnknownRun(_))));
    }

    #[tokio::test]
    async fn a_dry_run_records_its_plan_and_queues_nothing() {
        let fakes = Fakes::new();
        let record = fakes.run(Mode::DryRun).await;
        assert_eq!(record.outcome, Outcome::Planned);
        assert!(record.summary().to_create > 0);
        assert_eq!(fakes.saved.lock().unwrap().len(), 1);
        assert!(fakes.queued.lock().unwrap().is_empty());
        assert!(fakes.approvals_asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_applied_run_queues_every_create_and_no_held_delete() {
        let mut fakes = Fakes::new();
        // A managed assignment the model does not want (the sandbox set outside a sandbox),
        // in production: held.
        let production = fakes
            .inputs
            .accounts
            .iter()
            .position(|a| {
                a.ou_path
                    .as_ref()
                    .is_some_and(|p| p.ends_with(&["production".to_owned()]))
            })
            .unwrap();
        fakes
            .inputs
            .assignments
            .push(synthetic::group_assignment(production, 0, 1));
        let record = fakes.run(Mode::Apply).await;
        let Outcome::Queued {
            creates,
            deletes,
            held,
        } = record.outcome
        else {
            panic!("expected a queued run, got {:?}", record.outcome);
        };
        assert_eq!(fakes.queued.lock().unwrap().len(), creates + deletes);
        assert_eq!(deletes, 0);
        assert_eq!(held, 1);
        assert_eq!(
            *fakes.approvals_asked.lock().unwrap(),
            [(record.run_id.clone(), 1)],
            "the held delete is sent for approval"
        );
        assert!(
            fakes
                .queued
                .lock()
                .unwrap()
                .iter()
                .all(|c| c.run_id == "run-1")
        );
    }

    #[tokio::test]
    async fn a_failed_listing_is_recorded_as_an_abort_and_changes_nothing() {
        let mut fakes = Fakes::new();
        fakes.fail_groups = true;
        let record = fakes.run(Mode::Apply).await;
        let Outcome::Aborted { reasons } = &record.outcome else {
            panic!("expected an abort, got {:?}", record.outcome);
        };
        assert!(reasons[0].contains("cannot read the groups"), "{reasons:?}");
        assert!(record.plan.is_none());
        assert_eq!(
            fakes.saved.lock().unwrap().len(),
            1,
            "the abort is recorded"
        );
        assert!(fakes.queued.lock().unwrap().is_empty());
    }
}
