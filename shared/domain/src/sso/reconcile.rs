//! Reconcile runs (flows A and B). A full run (flow B) is a workflow: it begins (one at a
//! time, recorded as RUNNING), reads a fresh snapshot in pieces, plans from it, and queues
//! the changes in pieces, each step one invocation well inside its timeout. An event run
//! (flow A) re-reads only what its event touched, patches the current snapshot and re-plans
//! its scope. Nothing is changed when any input cannot be read in full or looks partial.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::assignment_monitor::{
    AccountId, AssignmentOperation, InstanceArn, PermissionSetArn, ProvisioningReport,
};
use super::model::SsoModel;
use super::plan::{AbortReason, Assignment, HoldReason, Plan, PlannedDelete, plan};
use super::snapshot::{
    Clock, CurrentSnapshot, IdentityCenterReader, OrganisationReader, ReadCursor, Readers, Refresh,
    SnapshotStore, read_piece, refreshed,
};
use crate::port::PortError;

/// How long a full run holds the lease after each of its steps took or renewed it: a run
/// whose workflow died without ending frees it within this.
pub const FULL_RUN_LEASE: Duration = Duration::hours(1);

/// How many changes may wait on the changes queue while a full run feeds it: about two
/// minutes of IAM Identity Center's pace (15 outstanding operations), so that a freed slot is
/// taken at once and no change waits long for one, however large the run.
pub const QUEUE_BACKLOG: usize = 300;

/// How long a full run's workflow waits between two feeds of the changes queue.
pub const FEED_WAIT_SECONDS: u32 = 60;

/// An event run refuses to plan from a snapshot whose full read started longer ago than this:
/// the scheduled reconcile has been failing, and it is alarmed on.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::hours(24);

/// Where every run's record is kept (DynamoDB).
#[async_trait]
pub trait PlanStore: Send + Sync {
    async fn save(&self, run: &RunRecord) -> Result<(), PortError>;
    /// Records only the run's new outcome, its plan as last saved: what a run feeding the
    /// queue writes after each piece, without writing its plan again.
    async fn save_outcome(&self, run: &RunRecord) -> Result<(), PortError>;
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
    /// When the plan that asked for it began: a change that waited past a newer plan of the
    /// same assignment is stale. None for approved deletes, which an approval judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Queues changes for the assignment worker (SQS).
#[async_trait]
pub trait ChangeQueue: Send + Sync {
    async fn enqueue(&self, changes: &[AssignmentChange]) -> Result<(), PortError>;
    /// About how many changes wait on the queue, delayed and in flight included.
    async fn backlog(&self) -> Result<usize, PortError>;
}

/// When each scope was last planned by a run that applies (DynamoDB). A change may wait on
/// the queue for hours at scale; once a newer plan covering its assignment has been made,
/// that plan decided anew (and queued its own change if it still wants one), so the waiting
/// one is dropped instead of undoing a later decision.
#[async_trait]
pub trait LatestPlans: Send + Sync {
    /// Records that a run begun at `planned_at` planned `scope`; an older time never replaces
    /// a newer one.
    async fn planned(&self, scope: &Scope, planned_at: DateTime<Utc>) -> Result<(), PortError>;
    /// The latest plan covering `assignment`: of everything, of its account, or of its
    /// permission set.
    async fn latest_covering(
        &self,
        assignment: &Assignment,
    ) -> Result<Option<DateTime<Utc>>, PortError>;
}

/// The latest plans kept in memory: for tests and the simulation.
#[derive(Default)]
pub struct InMemoryLatestPlans(std::sync::Mutex<Vec<(Scope, DateTime<Utc>)>>);

#[async_trait]
impl LatestPlans for InMemoryLatestPlans {
    async fn planned(&self, scope: &Scope, planned_at: DateTime<Utc>) -> Result<(), PortError> {
        let mut plans = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match plans.iter_mut().find(|(s, _)| s == scope) {
            Some((_, at)) => *at = (*at).max(planned_at),
            None => plans.push((scope.clone(), planned_at)),
        }
        Ok(())
    }
    async fn latest_covering(
        &self,
        assignment: &Assignment,
    ) -> Result<Option<DateTime<Utc>>, PortError> {
        let plans = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(plans
            .iter()
            .filter(|(scope, _)| scope.covers(assignment))
            .map(|(_, at)| *at)
            .max())
    }
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
    /// A full run that began and is reading or planning.
    Running,
    /// A dry run: the plan is recorded, nothing queued.
    Planned,
    /// The plan is recorded and its changes are being queued; `queued` are on the queue.
    #[serde(rename_all = "camelCase")]
    Applying {
        creates: usize,
        deletes: usize,
        held: usize,
        queued: usize,
    },
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

impl Outcome {
    /// Whether the run is over: nothing of it runs any more.
    pub fn is_final(&self) -> bool {
        match self {
            Outcome::Planned | Outcome::Queued { .. } | Outcome::Aborted { .. } => true,
            Outcome::Running | Outcome::Applying { .. } => false,
        }
    }
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
    /// When the plan was made: what its changes carry, and what its scope is marked planned
    /// at once they are all queued (a full run plans hours after it began reading, and the
    /// events that touched the organisation meanwhile are in its plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<DateTime<Utc>>,
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
    /// A run that begins: nothing planned or reported yet.
    fn starting(run: Run) -> RunRecord {
        RunRecord {
            run_id: run.run_id,
            started_at: run.now,
            trigger: run.trigger,
            scope: run.scope,
            mode: run.mode,
            outcome: Outcome::Running,
            plan: None,
            planned_at: None,
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
    pub clock: &'a dyn Clock,
    pub snapshot: &'a dyn SnapshotStore,
    pub store: &'a dyn PlanStore,
    pub lease: &'a dyn FullRunLease,
    pub workflow: &'a dyn ReconcileWorkflow,
    pub changes: &'a dyn ChangeQueue,
    pub approvals: &'a dyn HeldDeletesApproval,
    pub deletes: &'a dyn DeleteBudget,
    pub latest_plans: &'a dyn LatestPlans,
}

impl Ports<'_> {
    fn readers(&self) -> Readers<'_> {
        Readers {
            organisation: self.organisation,
            identity_center: self.identity_center,
            clock: self.clock,
        }
    }
}

/// Why a run could not even record itself, or a step of it failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot record the run: {0}")]
    Store(PortError),
    #[error("no reconcile run {0} is recorded")]
    UnknownRun(String),
    #[error("cannot read into the snapshot: {0}")]
    Read(PortError),
    #[error("cannot start the run's workflow: {0}")]
    Workflow(PortError),
    /// The run's lease expired and another full run took it: this one must stop.
    #[error("full run {0} holds the lease now")]
    LeaseLost(String),
    #[error("cannot queue the changes: {0}")]
    Queue(PortError),
    /// A step of a run that ended (aborted because its workflow stopped): nothing more of it
    /// runs, and the lease it no longer holds is not taken again.
    #[error("run {0} has ended")]
    Ended(String),
    /// A step read the run as an earlier step left it: it is read again.
    #[error("run {0} is not planned yet as this step reads it")]
    NotPlanned(String),
    #[error("the changes are queued, but the held deletes could not be sent for approval: {0}")]
    Approval(PortError),
}

impl ReconcileError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Store(e)
            | ReconcileError::Read(e)
            | ReconcileError::Workflow(e)
            | ReconcileError::Queue(e)
            | ReconcileError::Approval(e) => e.is_retryable(),
            ReconcileError::NotPlanned(_) => true,
            ReconcileError::UnknownRun(_)
            | ReconcileError::LeaseLost(_)
            | ReconcileError::Ended(_) => false,
        }
    }
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

/// At most one full run at a time (DynamoDB): two would read, plan and queue the same
/// changes, and share IAM Identity Center's quota between them.
#[async_trait]
pub trait FullRunLease: Send + Sync {
    /// Takes the lease for `run_id` until `until`, or keeps it if `run_id` has it; answers the
    /// run that holds it when another does.
    async fn take(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, PortError>;
    /// Frees the lease if `run_id` holds it.
    async fn release(&self, run_id: &str) -> Result<(), PortError>;
}

/// The lease kept in memory: for tests and the simulation.
#[derive(Default)]
pub struct InMemoryLease(std::sync::Mutex<Option<(String, DateTime<Utc>)>>);

impl InMemoryLease {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<(String, DateTime<Utc>)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The run holding the lease, if any.
    pub fn holder(&self) -> Option<String> {
        self.held().as_ref().map(|(holder, _)| holder.clone())
    }

    /// Gives the lease to `run_id` until `until`, whoever held it.
    pub fn hand_to(&self, run_id: &str, until: DateTime<Utc>) {
        *self.held() = Some((run_id.to_owned(), until));
    }
}

#[async_trait]
impl FullRunLease for InMemoryLease {
    async fn take(
        &self,
        run_id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, PortError> {
        let mut held = self.held();
        match &*held {
            Some((holder, expires)) if holder != run_id && *expires > now => {
                Ok(Some(holder.clone()))
            }
            _ => {
                *held = Some((run_id.to_owned(), until));
                Ok(None)
            }
        }
    }

    async fn release(&self, run_id: &str) -> Result<(), PortError> {
        let mut held = self.held();
        if held.as_ref().is_some_and(|(holder, _)| holder == run_id) {
            *held = None;
        }
        Ok(())
    }
}

/// Starts a full run's workflow (the `SsoReconcileStateMachine`), named after the run.
#[async_trait]
pub trait ReconcileWorkflow: Send + Sync {
    async fn start(&self, run_id: &str) -> Result<(), PortError>;
}

/// How a full run's beginning went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Began {
    /// Recorded as RUNNING, its workflow started.
    Started(Box<RunRecord>),
    /// Another full run holds the lease: nothing was recorded or started.
    AlreadyRunning { run_id: String },
}

/// Begins a full run: takes the lease, records the run as RUNNING, and starts its workflow.
/// A workflow that cannot be started leaves the run recorded as aborted and the lease free.
pub async fn begin_full_run(ports: &Ports<'_>, run: Run) -> Result<Began, ReconcileError> {
    let (run_id, now) = (run.run_id.clone(), run.now);
    if let Some(holder) = ports
        .lease
        .take(&run_id, now, now + FULL_RUN_LEASE)
        .await
        .map_err(ReconcileError::Store)?
    {
        return Ok(Began::AlreadyRunning { run_id: holder });
    }
    let mut record = RunRecord::starting(Run {
        scope: Scope::Everything,
        ..run
    });
    if let Err(e) = ports.store.save(&record).await {
        let _ = ports.lease.release(&run_id).await;
        return Err(ReconcileError::Store(e));
    }
    if let Err(e) = ports.workflow.start(&run_id).await {
        record.outcome = Outcome::Aborted {
            reasons: vec![format!("cannot start the run's workflow: {e}")],
        };
        let saved = ports.store.save(&record).await;
        // The lease is freed whatever the record says: no workflow runs to free it.
        ports
            .lease
            .release(&run_id)
            .await
            .map_err(ReconcileError::Store)?;
        saved.map_err(ReconcileError::Store)?;
        return Err(ReconcileError::Workflow(e));
    }
    Ok(Began::Started(Box::new(record)))
}

async fn recorded(ports: &Ports<'_>, run_id: &str) -> Result<RunRecord, ReconcileError> {
    ports
        .store
        .get(run_id)
        .await
        .map_err(ReconcileError::Store)?
        .ok_or_else(|| ReconcileError::UnknownRun(run_id.to_owned()))
}

/// One piece of a full run's read: into the run's own generation of the snapshot, from
/// `cursor` until `until`.
pub async fn read_step(
    ports: &Ports<'_>,
    run_id: &str,
    cursor: ReadCursor,
    until: DateTime<Utc>,
) -> Result<ReadCursor, ReconcileError> {
    let record = recorded(ports, run_id).await?;
    if record.outcome != Outcome::Running {
        return Err(ReconcileError::Ended(run_id.to_owned()));
    }
    renew(ports, run_id).await?;
    let read_from = record.started_at;
    read_piece(
        &ports.readers(),
        ports.snapshot,
        run_id,
        read_from,
        cursor,
        until,
    )
    .await
    .map_err(ReconcileError::Read)
}

/// A full run whose read is done: its generation becomes the current snapshot, and the plan
/// made from it is recorded (PLANNED for a dry run, APPLYING for one that applies, ABORTED
/// when the inputs look partial).
pub async fn plan_step(
    model: &SsoModel,
    ports: &Ports<'_>,
    run_id: &str,
) -> Result<RunRecord, ReconcileError> {
    let mut record = recorded(ports, run_id).await?;
    if record.outcome != Outcome::Running {
        // A retried step: the plan is recorded already; the lease may not be freed yet.
        if record.outcome.is_final() {
            release(ports, run_id).await?;
        }
        return Ok(record);
    }
    let snapshot = ports
        .snapshot
        .read(run_id)
        .await
        .map_err(ReconcileError::Read)?;
    // A read whose inputs look partial must not become what event runs and explain read: the
    // generation before it stays current.
    let partial = plan(model, &snapshot.inputs)
        .err()
        .is_some_and(|aborted| aborted.reasons.iter().any(AbortReason::is_partial_read));
    if !partial {
        ports
            .snapshot
            .make_current(&CurrentSnapshot {
                generation: run_id.to_owned(),
                read_from: record.started_at,
            })
            .await
            .map_err(ReconcileError::Store)?;
    }
    record_plan(model, ports, &mut record, &snapshot.inputs).await?;
    if record.outcome.is_final() {
        release(ports, run_id).await?;
    }
    Ok(record)
}

/// Feeds an applying run's changes to the queue: as many as keep its backlog at
/// [`QUEUE_BACKLOG`], `max` at most. The workflow calls it every [`FEED_WAIT_SECONDS`] until
/// every change is queued, so that a run of any size drains at IAM Identity Center's pace
/// and no change waits on the queue long enough to end in the DLQ. Where it starts is the
/// record's count, not the step's input, so a retried step does not queue a piece twice.
pub async fn queue_step(
    ports: &Ports<'_>,
    run_id: &str,
    max: usize,
) -> Result<RunRecord, ReconcileError> {
    let mut record = recorded(ports, run_id).await?;
    if record.outcome == Outcome::Running {
        return Err(ReconcileError::NotPlanned(run_id.to_owned()));
    }
    if record.outcome.is_final() {
        // A retried step: every change is queued already.
        release(ports, run_id).await?;
        return Ok(record);
    }
    renew(ports, run_id).await?;
    let backlog = ports
        .changes
        .backlog()
        .await
        .map_err(ReconcileError::Queue)?;
    let room = QUEUE_BACKLOG.saturating_sub(backlog).min(max);
    queue_piece(ports, &mut record, room).await?;
    if record.outcome.is_final() {
        release(ports, run_id).await?;
    }
    Ok(record)
}

/// Keeps the lease for another [`FULL_RUN_LEASE`]; a run that lost it stops.
async fn renew(ports: &Ports<'_>, run_id: &str) -> Result<(), ReconcileError> {
    let now = ports.clock.now();
    match ports
        .lease
        .take(run_id, now, now + FULL_RUN_LEASE)
        .await
        .map_err(ReconcileError::Store)?
    {
        None => Ok(()),
        Some(holder) => Err(ReconcileError::LeaseLost(holder)),
    }
}

/// A full run whose workflow failed: recorded as aborted with the reason (what it had
/// queued stays queued, and says so), and the lease freed. A run already over keeps its
/// outcome: the workflow's own catch and the notice of its failed execution both abort it.
pub async fn abort_step(
    ports: &Ports<'_>,
    run_id: &str,
    reason: String,
) -> Result<RunRecord, ReconcileError> {
    let mut record = recorded(ports, run_id).await?;
    if record.outcome.is_final() {
        release(ports, run_id).await?;
        return Ok(record);
    }
    let mut reasons = vec![reason];
    if let Outcome::Applying { queued, .. } = record.outcome
        && queued > 0
    {
        reasons.push(format!("{queued} changes were queued before it stopped"));
    }
    record.outcome = Outcome::Aborted { reasons };
    ports
        .store
        .save(&record)
        .await
        .map_err(ReconcileError::Store)?;
    release(ports, run_id).await?;
    Ok(record)
}

async fn release(ports: &Ports<'_>, run_id: &str) -> Result<(), ReconcileError> {
    ports
        .lease
        .release(run_id)
        .await
        .map_err(ReconcileError::Store)
}

/// One event run (flow A), recorded whatever its outcome: re-reads what the event touched
/// (`refresh`), patches the current snapshot with it, re-plans `run.scope` from the snapshot
/// and queues the changes.
pub async fn replan(
    model: &SsoModel,
    ports: &Ports<'_>,
    run: Run,
    refresh: &Refresh,
) -> Result<RunRecord, ReconcileError> {
    let mut record = RunRecord::starting(run);
    match patched_snapshot(ports, record.started_at, std::slice::from_ref(refresh)).await {
        Err(Unplannable::Retry(e)) => return Err(ReconcileError::Read(e)),
        Err(Unplannable::Reasons(reasons)) => {
            record.outcome = Outcome::Aborted { reasons };
            ports
                .store
                .save(&record)
                .await
                .map_err(ReconcileError::Store)?;
        }
        Ok(inputs) => {
            record_plan(model, ports, &mut record, &inputs).await?;
            queue_piece(ports, &mut record, usize::MAX).await?;
        }
    }
    Ok(record)
}

/// Why an event run cannot plan from the snapshot.
enum Unplannable {
    /// Recorded as the run's abort: no snapshot, a stale one, a read refused.
    Reasons(Vec<String>),
    /// A passing failure (throttling, a read that raced a rewrite): the run fails, so that
    /// its event is delivered again rather than recorded as aborted and forgotten.
    Retry(PortError),
}

fn unplannable(what: &str, e: PortError) -> Unplannable {
    if e.is_retryable() {
        Unplannable::Retry(e)
    } else {
        Unplannable::Reasons(vec![format!("{what}: {e}")])
    }
}

/// The current snapshot, patched with what `refreshes` re-read; every reason not to trust
/// it otherwise.
async fn patched_snapshot(
    ports: &Ports<'_>,
    now: DateTime<Utc>,
    refreshes: &[Refresh],
) -> Result<super::plan::PlanInputs, Unplannable> {
    // Noted first, snapshot or not: a full read under way reads the change again into the
    // generation that replaces the one patched here.
    for refresh in refreshes {
        ports
            .snapshot
            .touched(now, refresh)
            .await
            .map_err(|e| unplannable("cannot note what changed", e))?;
    }
    let current = match ports.snapshot.current().await {
        Err(e) => return Err(unplannable("cannot read the snapshot", e)),
        Ok(None) => {
            return Err(Unplannable::Reasons(vec![
                "no snapshot yet: a full reconcile reads one first".to_owned(),
            ]));
        }
        Ok(Some(current)) => current,
    };
    if now - current.read_from > SNAPSHOT_MAX_AGE {
        return Err(Unplannable::Reasons(vec![format!(
            "the snapshot was read from {} and is older than {} hours: the scheduled reconcile is failing",
            current.read_from,
            SNAPSHOT_MAX_AGE.num_hours()
        )]));
    }
    let mut snapshot = ports
        .snapshot
        .read(&current.generation)
        .await
        .map_err(|e| unplannable("cannot read the snapshot", e))?;
    for refresh in refreshes {
        let parts = refreshed(&ports.readers(), &snapshot, refresh)
            .await
            .map_err(|e| unplannable("cannot read again what changed", e))?;
        ports
            .snapshot
            .write(&current.generation, &parts)
            .await
            .map_err(|e| unplannable("cannot patch the snapshot", e))?;
        snapshot.apply(&parts);
    }
    Ok(snapshot.inputs)
}

/// Plans from `inputs`, keeps the plan to the run's scope, applies the guardrails, and
/// records the run.
async fn record_plan(
    model: &SsoModel,
    ports: &Ports<'_>,
    record: &mut RunRecord,
    inputs: &super::plan::PlanInputs,
) -> Result<(), ReconcileError> {
    match plan(model, inputs) {
        Err(aborted) => {
            record.outcome = Outcome::Aborted {
                reasons: aborted.reasons.iter().map(AbortReason::to_string).collect(),
            };
        }
        Ok(mut planned) => {
            record.scope.restrict(&mut planned);
            record.outcome = match record.mode {
                Mode::DryRun => Outcome::Planned,
                Mode::Apply => {
                    hold_past_the_window(model, ports, record.started_at, &mut planned).await?;
                    Outcome::Applying {
                        creates: planned.create.len(),
                        deletes: planned.deletes_to_run().count(),
                        held: planned.held_deletes().count(),
                        queued: 0,
                    }
                }
            };
            record.plan = Some(planned);
            record.planned_at = Some(ports.clock.now());
        }
    }
    ports
        .store
        .save(record)
        .await
        .map_err(ReconcileError::Store)
}

/// Queues up to `max` of an applying run's changes after those already queued; once all are,
/// sends the held deletes for approval and records the run as QUEUED. The record says how
/// many are queued after each piece, so that a run stopped midway explains the queue.
async fn queue_piece(
    ports: &Ports<'_>,
    record: &mut RunRecord,
    max: usize,
) -> Result<(), ReconcileError> {
    let Outcome::Applying {
        creates,
        deletes,
        held,
        queued,
    } = record.outcome
    else {
        return Ok(());
    };
    let Some(planned) = record.plan.as_ref() else {
        return Err(ReconcileError::UnknownRun(format!(
            "{} (its plan is missing)",
            record.run_id
        )));
    };
    let planned_at = record.planned_at.unwrap_or(record.started_at);
    let changes = changes_of(
        &record.run_id,
        planned_at,
        ports.identity_center.instance_arn(),
        planned,
    );
    let to = queued.saturating_add(max).min(changes.len());
    if to == queued && to < changes.len() {
        // No room on the queue this time: nothing to queue or record.
        return Ok(());
    }
    if let Some(piece) = changes.get(queued..to)
        && !piece.is_empty()
    {
        ports
            .changes
            .enqueue(piece)
            .await
            .map_err(ReconcileError::Queue)?;
    }
    if to < changes.len() {
        record.outcome = Outcome::Applying {
            creates,
            deletes,
            held,
            queued: to,
        };
        return ports
            .store
            .save_outcome(record)
            .await
            .map_err(ReconcileError::Store);
    }
    let held_deletes: Vec<PlannedDelete> = planned.held_deletes().cloned().collect();
    if !held_deletes.is_empty() {
        record.outcome = Outcome::Applying {
            creates,
            deletes,
            held,
            queued: to,
        };
        ports
            .store
            .save_outcome(record)
            .await
            .map_err(ReconcileError::Store)?;
        ports
            .approvals
            .request(&record.run_id, &held_deletes)
            .await
            .map_err(ReconcileError::Approval)?;
    }
    record.outcome = Outcome::Queued {
        creates,
        deletes,
        held,
    };
    ports
        .store
        .save_outcome(record)
        .await
        .map_err(ReconcileError::Store)?;
    // Only once every change is queued: a run that stops midway must not make the older
    // changes it would have replaced look stale.
    ports
        .latest_plans
        .planned(&record.scope, planned_at)
        .await
        .map_err(ReconcileError::Store)
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
    // The held accounts are read again: what the approval releases is judged on now.
    let accounts: BTreeSet<&AccountId> = held.iter().map(|a| &a.account_id).collect();
    let refreshes: Vec<Refresh> = accounts
        .into_iter()
        .map(|account_id| Refresh::Account {
            account_id: account_id.clone(),
        })
        .collect();
    let planned = match patched_snapshot(ports, record.started_at, &refreshes)
        .await
        .and_then(|inputs| {
            plan(model, &inputs).map_err(|aborted| {
                Unplannable::Reasons(aborted.reasons.iter().map(AbortReason::to_string).collect())
            })
        }) {
        Err(Unplannable::Retry(e)) => return Err(ReconcileError::Read(e).into()),
        Err(Unplannable::Reasons(reasons)) => {
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
            // Approved: a later plan that would hold it again must not drop it.
            planned_at: None,
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
pub fn changes_of(
    run_id: &str,
    planned_at: DateTime<Utc>,
    instance_arn: &InstanceArn,
    plan: &Plan,
) -> Vec<AssignmentChange> {
    let change = |operation, assignment: &Assignment| AssignmentChange {
        run_id: run_id.to_owned(),
        instance_arn: instance_arn.clone(),
        operation,
        assignment: assignment.clone(),
        deferrals: 0,
        planned_at: Some(planned_at),
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
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::sso::plan::{OrgAccount, PermissionSetInfo, PlanInputs, Principal};
    use crate::sso::snapshot::{
        CurrentSnapshot, InMemorySnapshots, ReadCursor, Refresh, Snapshot, SnapshotPart,
        SnapshotStore,
    };
    use crate::sso::synthetic;

    /// The organisation, IAM Identity Center, the snapshot, the store and the queue, all in
    /// memory; every read costs 50 ms of a virtual clock and is counted.
    struct Fakes {
        inputs: PlanInputs,
        fail_groups: bool,
        /// A record the next `get` answers instead of the stored one: a read that does not
        /// yet see the last write.
        stale: Mutex<Option<RunRecord>>,
        clock: Mutex<DateTime<Utc>>,
        calls: Mutex<BTreeMap<&'static str, usize>>,
        snapshots: InMemorySnapshots,
        lease: InMemoryLease,
        latest_plans: InMemoryLatestPlans,
        started: Mutex<Vec<String>>,
        saved: Mutex<Vec<RunRecord>>,
        queued: Mutex<Vec<AssignmentChange>>,
        fail_queue_after: Mutex<Option<usize>>,
        /// What the queue says waits on it.
        backlog: Mutex<usize>,
        approvals_asked: Mutex<Vec<(String, usize)>>,
        /// The deletes counted, with when they were made.
        spent: Mutex<Vec<(DateTime<Utc>, usize)>>,
        instance_arn: InstanceArn,
    }

    /// An event run that applies, over everything.
    fn event_run(now: DateTime<Utc>) -> Run {
        Run {
            run_id: "run-event".into(),
            trigger: Trigger::Event {
                event_id: "e-1".into(),
                event_name: "CreateGroup".into(),
            },
            scope: Scope::Everything,
            mode: Mode::Apply,
            now,
        }
    }

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
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
                stale: Mutex::new(None),
                clock: Mutex::new(noon()),
                calls: Mutex::new(BTreeMap::new()),
                snapshots: InMemorySnapshots::default(),
                lease: InMemoryLease::default(),
                latest_plans: InMemoryLatestPlans::default(),
                started: Mutex::new(Vec::new()),
                saved: Mutex::new(Vec::new()),
                queued: Mutex::new(Vec::new()),
                fail_queue_after: Mutex::new(None),
                backlog: Mutex::new(0),
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
                clock: self,
                snapshot: &self.snapshots,
                store: self,
                lease: &self.lease,
                workflow: self,
                changes: self,
                approvals: self,
                deletes: self,
                latest_plans: &self.latest_plans,
            }
        }

        fn call(&self, api: &'static str) {
            *self.calls.lock().unwrap().entry(api).or_default() += 1;
            *self.clock.lock().unwrap() += Duration::milliseconds(50);
        }

        /// As IAM Identity Center answers for a permission set that is not there.
        fn set_exists(&self, set: &PermissionSetArn) -> Result<(), PortError> {
            if self.inputs.permission_sets.iter().any(|s| s.arn == *set) {
                return Ok(());
            }
            Err(PortError::NotFound {
                service: "sso-admin",
                what: set.to_string(),
            })
        }

        fn calls(&self) -> usize {
            self.calls.lock().unwrap().values().sum()
        }

        fn set_clock(&self, now: DateTime<Utc>) {
            *self.clock.lock().unwrap() = now;
        }

        async fn run(&self, mode: Mode) -> RunRecord {
            self.run_at(mode, noon()).await
        }

        /// A full run through its workflow, as the state machine drives it: reads of at most
        /// `piece` of virtual time, and queue steps of at most 7 changes.
        async fn run_at(&self, mode: Mode, now: DateTime<Utc>) -> RunRecord {
            self.full_run(mode, now, Duration::seconds(60)).await.0
        }

        async fn full_run(
            &self,
            mode: Mode,
            now: DateTime<Utc>,
            piece: Duration,
        ) -> (RunRecord, Vec<usize>) {
            self.set_clock(now);
            let run_id = format!("run-{}", self.saved.lock().unwrap().len() + 1);
            let run = Run {
                run_id: run_id.clone(),
                trigger: Trigger::Cli,
                scope: Scope::Everything,
                mode,
                now,
            };
            let ports = self.ports();
            let Began::Started(_) = begin_full_run(&ports, run).await.unwrap() else {
                panic!("another run holds the lease");
            };
            let mut cursor = ReadCursor::Organisation;
            let mut pieces = Vec::new();
            while cursor != ReadCursor::Done {
                let until = self.now() + piece;
                let before = self.calls();
                let read = read_step(&ports, &run_id, cursor.clone(), until).await;
                pieces.push(self.calls() - before);
                match read {
                    Ok(next) => cursor = next,
                    Err(e) => {
                        return (
                            abort_step(&ports, &run_id, e.to_string()).await.unwrap(),
                            pieces,
                        );
                    }
                }
            }
            let mut record = plan_step(&SsoModel::default(), &ports, &run_id)
                .await
                .unwrap();
            while matches!(record.outcome, Outcome::Applying { .. }) {
                record = match queue_step(&ports, &run_id, 7).await {
                    Ok(record) => record,
                    Err(e) => abort_step(&ports, &run_id, e.to_string()).await.unwrap(),
                };
            }
            (record, pieces)
        }
    }

    impl Fakes {
        /// A full run begun at noon and read in full, its plan recorded: what the state
        /// machine has done by its first QUEUE step.
        async fn planned(&self, run_id: &str, mode: Mode) -> RunRecord {
            let ports = self.ports();
            let run = Run {
                run_id: run_id.into(),
                trigger: Trigger::Schedule,
                scope: Scope::Everything,
                mode,
                now: noon(),
            };
            let Began::Started(_) = begin_full_run(&ports, run).await.unwrap() else {
                panic!("another run holds the lease");
            };
            let mut cursor = ReadCursor::Organisation;
            while cursor != ReadCursor::Done {
                cursor = read_step(&ports, run_id, cursor, noon() + Duration::hours(1))
                    .await
                    .unwrap();
            }
            plan_step(&SsoModel::default(), &ports, run_id)
                .await
                .unwrap()
        }
    }

    impl Clock for Fakes {
        fn now(&self) -> DateTime<Utc> {
            *self.clock.lock().unwrap()
        }
    }

    #[async_trait]
    impl OrganisationReader for Fakes {
        async fn management_account(&self) -> Result<Option<AccountId>, PortError> {
            self.call("DescribeOrganization");
            Ok(self.inputs.management_account_id.clone())
        }
        async fn tree(&self) -> Result<Vec<OrgAccount>, PortError> {
            self.call("ListAccountsForParent");
            Ok(self
                .inputs
                .accounts
                .iter()
                .map(|a| OrgAccount {
                    tags: BTreeMap::new(),
                    ..a.clone()
                })
                .collect())
        }
        async fn tags(&self, account: &AccountId) -> Result<BTreeMap<String, String>, PortError> {
            self.call("organizations:ListTagsForResource");
            let found = self.inputs.accounts.iter().find(|a| a.id == *account);
            found
                .map(|a| a.tags.clone())
                .ok_or_else(|| PortError::NotFound {
                    service: "organizations",
                    what: account.to_string(),
                })
        }
        async fn account(&self, account: &AccountId) -> Result<Option<OrgAccount>, PortError> {
            self.call("DescribeAccount");
            Ok(self
                .inputs
                .accounts
                .iter()
                .find(|a| a.id == *account)
                .cloned())
        }
    }

    #[async_trait]
    impl IdentityCenterReader for Fakes {
        fn instance_arn(&self) -> &InstanceArn {
            &self.instance_arn
        }
        async fn permission_set_arns(&self) -> Result<Vec<PermissionSetArn>, PortError> {
            self.call("ListPermissionSets");
            Ok(self
                .inputs
                .permission_sets
                .iter()
                .map(|s| s.arn.clone())
                .collect())
        }
        async fn permission_set(
            &self,
            arn: &PermissionSetArn,
        ) -> Result<Option<PermissionSetInfo>, PortError> {
            self.call("DescribePermissionSet");
            Ok(self
                .inputs
                .permission_sets
                .iter()
                .find(|s| s.arn == *arn)
                .cloned())
        }
        async fn groups(&self) -> Result<Vec<Principal>, PortError> {
            self.call("ListGroups");
            if self.fail_groups {
                return Err(PortError::Transient {
                    service: "identitystore",
                    detail: "ThrottlingException on page 3".into(),
                });
            }
            Ok(self.inputs.groups.clone())
        }
        async fn users(&self) -> Result<Vec<Principal>, PortError> {
            self.call("ListUsers");
            Ok(self.inputs.users.clone())
        }
        async fn accounts_provisioned(
            &self,
            set: &PermissionSetArn,
        ) -> Result<Vec<AccountId>, PortError> {
            self.call("ListAccountsForProvisionedPermissionSet");
            self.set_exists(set)?;
            let accounts: BTreeSet<AccountId> = self
                .inputs
                .assignments
                .iter()
                .filter(|a| a.permission_set_arn == *set)
                .map(|a| a.account_id.clone())
                .collect();
            Ok(accounts.into_iter().collect())
        }
        async fn sets_provisioned_to(
            &self,
            account: &AccountId,
        ) -> Result<Vec<PermissionSetArn>, PortError> {
            self.call("ListPermissionSetsProvisionedToAccount");
            let sets: BTreeSet<PermissionSetArn> = self
                .inputs
                .assignments
                .iter()
                .filter(|a| a.account_id == *account)
                .map(|a| a.permission_set_arn.clone())
                .collect();
            Ok(sets.into_iter().collect())
        }
        async fn assignments_of(
            &self,
            account: &AccountId,
            set: &PermissionSetArn,
        ) -> Result<Vec<Assignment>, PortError> {
            self.call("ListAccountAssignments");
            self.set_exists(set)?;
            Ok(self
                .inputs
                .assignments
                .iter()
                .filter(|a| a.account_id == *account && a.permission_set_arn == *set)
                .cloned()
                .collect())
        }
    }

    #[async_trait]
    impl ReconcileWorkflow for Fakes {
        async fn start(&self, run_id: &str) -> Result<(), PortError> {
            self.started.lock().unwrap().push(run_id.to_owned());
            Ok(())
        }
    }

    #[async_trait]
    impl PlanStore for Fakes {
        async fn save(&self, run: &RunRecord) -> Result<(), PortError> {
            let mut saved = self.saved.lock().unwrap();
            saved.retain(|r| r.run_id != run.run_id);
            saved.push(run.clone());
            Ok(())
        }
        async fn save_outcome(&self, run: &RunRecord) -> Result<(), PortError> {
            let mut saved = self.saved.lock().unwrap();
            let Some(stored) = saved.iter_mut().find(|r| r.run_id == run.run_id) else {
                return Err(PortError::NotFound {
                    service: "dynamodb",
                    what: run.run_id.clone(),
                });
            };
            stored.outcome = run.outcome.clone();
            Ok(())
        }
        async fn latest(&self) -> Result<Option<RunRecord>, PortError> {
            Ok(self.saved.lock().unwrap().last().cloned())
        }
        async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, PortError> {
            if let Some(stale) = self.stale.lock().unwrap().take() {
                return Ok(Some(stale));
            }
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
            let mut queued = self.queued.lock().unwrap();
            if let Some(limit) = *self.fail_queue_after.lock().unwrap()
                && queued.len() + changes.len() > limit
            {
                return Err(PortError::Transient {
                    service: "sqs",
                    detail: "the queue is unavailable".into(),
                });
            }
            queued.extend_from_slice(changes);
            Ok(())
        }
        async fn backlog(&self) -> Result<usize, PortError> {
            Ok(*self.backlog.lock().unwrap())
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
        assert!(
            reasons[0].contains("cannot read into the snapshot")
                && reasons[0].contains("ThrottlingException on page 3"),
            "{reasons:?}"
        );
        assert!(record.plan.is_none());
        assert_eq!(
            fakes.saved.lock().unwrap().len(),
            1,
            "the abort is recorded"
        );
        assert!(fakes.queued.lock().unwrap().is_empty());
        assert!(
            fakes.snapshots.current().await.unwrap().is_none(),
            "no partial snapshot is current"
        );
        assert!(fakes.lease.holder().is_none(), "the lease is freed");
    }

    #[tokio::test]
    async fn a_full_run_reads_in_pieces_that_each_stop_at_their_budget_and_plans_the_same() {
        // Issue 14, finding 2: one invocation read everything and could not finish.
        let fakes = Fakes::new();
        let reference = plan(&SsoModel::default(), &fakes.inputs).unwrap();
        let (record, pieces) = fakes
            .full_run(Mode::DryRun, noon(), Duration::seconds(1))
            .await;
        // A call costs 50 ms: a piece of one second makes 20 calls, and may finish the unit of
        // work it is in (at most two calls here), so this organisation's ~60 reads take
        // several pieces, none of them longer than its budget by more than one unit.
        assert!(pieces.len() >= 3, "{pieces:?}");
        assert!(pieces.iter().all(|&calls| calls <= 22), "{pieces:?}");
        assert_eq!(record.outcome, Outcome::Planned);
        assert_eq!(record.plan, Some(reference), "pieces plan as one read does");
        assert_eq!(
            fakes
                .snapshots
                .current()
                .await
                .unwrap()
                .map(|c| c.generation),
            Some(record.run_id.clone())
        );
    }

    #[tokio::test]
    async fn a_full_run_is_recorded_from_its_start_and_never_overlaps_another() {
        let fakes = Fakes::new();
        let ports = fakes.ports();
        let run = |run_id: &str| Run {
            run_id: run_id.into(),
            trigger: Trigger::Schedule,
            scope: Scope::Everything,
            mode: Mode::Apply,
            now: noon(),
        };
        let Began::Started(first) = begin_full_run(&ports, run("run-a")).await.unwrap() else {
            panic!("the first run begins");
        };
        assert_eq!(first.outcome, Outcome::Running);
        assert_eq!(
            fakes.saved.lock().unwrap().len(),
            1,
            "recorded before it reads"
        );
        assert_eq!(*fakes.started.lock().unwrap(), ["run-a"]);
        assert_eq!(
            begin_full_run(&ports, run("run-b")).await.unwrap(),
            Began::AlreadyRunning {
                run_id: "run-a".into()
            }
        );
        assert_eq!(fakes.saved.lock().unwrap().len(), 1, "nothing recorded");
        assert_eq!(*fakes.started.lock().unwrap(), ["run-a"], "nothing started");
        abort_step(&ports, "run-a", "stopped by hand".into())
            .await
            .unwrap();
        assert!(matches!(
            begin_full_run(&ports, run("run-b")).await.unwrap(),
            Began::Started(_)
        ));
    }

    #[tokio::test]
    async fn a_run_stopped_while_queueing_says_what_it_queued_and_a_retry_queues_the_rest_once() {
        // Issue 14, finding 2: a run killed while enqueuing left a QUEUED record that claimed
        // changes it never queued.
        let fakes = Fakes::new();
        *fakes.fail_queue_after.lock().unwrap() = Some(10);
        let (record, _) = fakes
            .full_run(Mode::Apply, noon(), Duration::seconds(60))
            .await;
        let Outcome::Aborted { reasons } = &record.outcome else {
            panic!("expected an abort, got {:?}", record.outcome);
        };
        assert!(
            reasons
                .iter()
                .any(|r| r == "7 changes were queued before it stopped"),
            "{reasons:?}"
        );
        assert_eq!(fakes.queued.lock().unwrap().len(), 7);

        // A step retried after a failure starts from the record's count, not from its input.
        let fakes = Fakes::new();
        let ports = fakes.ports();
        let planned = fakes.planned("run-r", Mode::Apply).await;
        let Outcome::Applying { creates, .. } = planned.outcome else {
            panic!("applying, got {:?}", planned.outcome);
        };
        *fakes.fail_queue_after.lock().unwrap() = Some(10);
        queue_step(&ports, "run-r", 7).await.unwrap();
        assert!(queue_step(&ports, "run-r", 7).await.is_err());
        *fakes.fail_queue_after.lock().unwrap() = None;
        let mut record = queue_step(&ports, "run-r", 7).await.unwrap();
        while matches!(record.outcome, Outcome::Applying { .. }) {
            record = queue_step(&ports, "run-r", 7).await.unwrap();
        }
        let queued = fakes.queued.lock().unwrap().clone();
        let distinct: BTreeSet<&Assignment> = queued.iter().map(|c| &c.assignment).collect();
        assert_eq!(queued.len(), creates, "every change queued once");
        assert_eq!(distinct.len(), creates);
        assert!(matches!(record.outcome, Outcome::Queued { .. }));
        assert!(fakes.lease.holder().is_none());
    }

    #[tokio::test]
    async fn a_full_run_feeds_the_queue_no_faster_than_it_drains() {
        // Issue 14, finding 3: a first run put all its changes on the queue at once, and
        // most waited their way to the DLQ.
        let fakes = Fakes::new();
        let ports = fakes.ports();
        fakes.planned("run-f", Mode::Apply).await;
        let queued = |fakes: &Fakes| fakes.queued.lock().unwrap().len();
        *fakes.backlog.lock().unwrap() = QUEUE_BACKLOG - 4;
        let record = queue_step(&ports, "run-f", usize::MAX).await.unwrap();
        assert_eq!(queued(&fakes), 4, "only the room the backlog leaves");
        assert!(matches!(
            record.outcome,
            Outcome::Applying { queued: 4, .. }
        ));
        *fakes.backlog.lock().unwrap() = QUEUE_BACKLOG + 30;
        queue_step(&ports, "run-f", usize::MAX).await.unwrap();
        assert_eq!(queued(&fakes), 4, "a full queue takes nothing more");
        // The worker drains 100 between two feeds; each feed fills the backlog again, no more.
        let mut record = record;
        let mut feeds = 1;
        while matches!(record.outcome, Outcome::Applying { .. }) {
            *fakes.backlog.lock().unwrap() = QUEUE_BACKLOG - 100;
            let before = queued(&fakes);
            record = queue_step(&ports, "run-f", usize::MAX).await.unwrap();
            assert!(queued(&fakes) - before <= 100);
            feeds += 1;
        }
        let Outcome::Queued { creates, .. } = record.outcome else {
            panic!("every change queued, got {:?}", record.outcome);
        };
        assert_eq!(queued(&fakes), creates);
        assert!(feeds >= 3, "the run needed several feeds: {feeds}");
        assert!(fakes.lease.holder().is_none(), "done, the lease is free");
    }

    #[tokio::test]
    async fn a_run_that_lost_its_lease_stops() {
        let fakes = Fakes::new();
        let ports = fakes.ports();
        fakes.planned("run-old", Mode::Apply).await;
        // Its workflow stalled past the lease, and a new run took it.
        fakes.lease.hand_to("run-new", noon() + Duration::hours(3));
        let stalled = queue_step(&ports, "run-old", usize::MAX).await;
        assert!(matches!(stalled, Err(ReconcileError::LeaseLost(holder)) if holder == "run-new"));
        assert!(fakes.queued.lock().unwrap().is_empty(), "it queued nothing");
    }

    #[tokio::test]
    async fn an_event_run_reads_only_what_its_event_touched() {
        // Issue 14, finding 2: a one-account event read every account and permission set.
        let mut fakes = Fakes::new();
        fakes.run(Mode::Apply).await;
        let full_read = fakes.calls();
        // The account moves to another workload.
        let account = 3;
        let id = synthetic::account_id(account);
        fakes.inputs.accounts[account]
            .tags
            .insert("workload".into(), "w4".into());
        for change in fakes.queued.lock().unwrap().iter() {
            fakes.inputs.assignments.push(change.assignment.clone());
        }
        fakes.queued.lock().unwrap().clear();
        fakes.calls.lock().unwrap().clear();
        let record = replan(
            &SsoModel::default(),
            &fakes.ports(),
            Run {
                run_id: "run-event".into(),
                trigger: Trigger::Event {
                    event_id: "e-1".into(),
                    event_name: "TagResource".into(),
                },
                scope: Scope::Account {
                    account_id: id.clone(),
                },
                mode: Mode::Apply,
                now: noon() + Duration::minutes(5),
            },
            &Refresh::Account {
                account_id: id.clone(),
            },
        )
        .await
        .unwrap();
        let calls = fakes.calls.lock().unwrap().clone();
        let provisioned = fakes
            .inputs
            .assignments
            .iter()
            .filter(|a| a.account_id == id)
            .map(|a| &a.permission_set_arn)
            .collect::<BTreeSet<_>>()
            .len();
        assert_eq!(
            calls.values().sum::<usize>(),
            2 + provisioned,
            "one account, its provisioned sets and their assignments: {calls:?} (a full read made {full_read})"
        );
        assert!(
            matches!(record.outcome, Outcome::Queued { .. }),
            "{:?}",
            record.outcome
        );
        let queued = fakes.queued.lock().unwrap().clone();
        assert!(!queued.is_empty());
        assert!(queued.iter().all(|c| c.assignment.account_id == id));
        // The patch is in the snapshot: the account's new workload is what explain reads.
        let generation = fakes.snapshots.current().await.unwrap().unwrap().generation;
        let snapshot = fakes.snapshots.read(&generation).await.unwrap();
        let patched = snapshot
            .inputs
            .accounts
            .iter()
            .find(|a| a.id == id)
            .unwrap();
        assert_eq!(patched.tags.get("workload").map(String::as_str), Some("w4"));
    }

    #[tokio::test]
    async fn an_event_run_without_a_fresh_snapshot_changes_nothing_and_says_why() {
        let fakes = Fakes::new();
        let record = replan(
            &SsoModel::default(),
            &fakes.ports(),
            event_run(noon()),
            &Refresh::Principals,
        )
        .await
        .unwrap();
        assert_eq!(
            record.outcome,
            Outcome::Aborted {
                reasons: vec!["no snapshot yet: a full reconcile reads one first".into()]
            }
        );
        fakes.run(Mode::DryRun).await;
        let stale = replan(
            &SsoModel::default(),
            &fakes.ports(),
            event_run(noon() + Duration::hours(25)),
            &Refresh::Principals,
        )
        .await
        .unwrap();
        let Outcome::Aborted { reasons } = &stale.outcome else {
            panic!("a stale snapshot is refused, got {:?}", stale.outcome);
        };
        assert!(reasons[0].contains("older than 24 hours"), "{reasons:?}");
        assert!(fakes.queued.lock().unwrap().is_empty());
    }

    /// Begins a full run at noon and reads until `stop` says the cursor is far enough.
    async fn read_until(
        fakes: &Fakes,
        run_id: &str,
        stop: impl Fn(&ReadCursor) -> bool,
    ) -> ReadCursor {
        let run = Run {
            run_id: run_id.into(),
            trigger: Trigger::Schedule,
            scope: Scope::Everything,
            mode: Mode::Apply,
            now: noon(),
        };
        let Began::Started(_) = begin_full_run(&fakes.ports(), run).await.unwrap() else {
            panic!("another run holds the lease");
        };
        let mut cursor = ReadCursor::Organisation;
        while !stop(&cursor) && cursor != ReadCursor::Done {
            // Pieces of one call each, so that `stop` sees every phase.
            let until = fakes.now();
            cursor = read_step(&fakes.ports(), run_id, cursor, until)
                .await
                .unwrap();
        }
        cursor
    }

    /// Reads on from `cursor` to the end, and plans.
    async fn read_on_and_plan(fakes: &Fakes, run_id: &str, mut cursor: ReadCursor) -> RunRecord {
        while cursor != ReadCursor::Done {
            let until = fakes.now() + Duration::minutes(5);
            cursor = read_step(&fakes.ports(), run_id, cursor, until)
                .await
                .unwrap();
        }
        plan_step(&SsoModel::default(), &fakes.ports(), run_id)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_group_created_while_the_read_runs_keeps_the_assignments_made_for_it() {
        // Review of issue 14: the principals were read before the assignments, so a group
        // created meanwhile (its event assigning it) was unknown to the snapshot, and its
        // assignments were planned as those of a deleted group: deleted.
        let mut fakes = Fakes::new();
        let group = fakes.inputs.groups.pop().unwrap();
        let made: Vec<Assignment> = fakes
            .inputs
            .assignments
            .iter()
            .filter(|a| a.principal_id == group.id)
            .cloned()
            .collect();
        fakes
            .inputs
            .assignments
            .retain(|a| a.principal_id != group.id);
        let cursor = read_until(&fakes, "run-1", |c| {
            matches!(c, ReadCursor::Assignments { .. })
        })
        .await;
        fakes.inputs.groups.push(group.clone());
        let mut with_group = fakes.inputs.clone();
        with_group.assignments.clear();
        let desired = plan(&SsoModel::default(), &with_group).unwrap().create;
        let made: Vec<Assignment> = made
            .into_iter()
            .chain(
                desired
                    .into_iter()
                    .map(|c| c.assignment)
                    .filter(|a| a.principal_id == group.id),
            )
            .collect();
        assert!(!made.is_empty(), "the new group is given assignments");
        fakes.inputs.assignments.extend(made.iter().cloned());

        let record = read_on_and_plan(&fakes, "run-1", cursor).await;
        let planned = record.plan.unwrap();
        let deleted: Vec<&Assignment> = planned
            .delete
            .iter()
            .map(|d| &d.assignment)
            .filter(|a| a.principal_id == group.id)
            .collect();
        assert!(deleted.is_empty(), "deleted {deleted:?}");
    }

    #[tokio::test]
    async fn an_event_that_reads_an_assignment_of_an_unknown_group_reads_the_groups_again() {
        let mut fakes = Fakes::new();
        let group = fakes.inputs.groups.pop().unwrap();
        fakes
            .inputs
            .assignments
            .retain(|a| a.principal_id != group.id);
        fakes.run(Mode::DryRun).await;
        // The group is created and assigned; the account's event comes before the group's.
        fakes.inputs.groups.push(group.clone());
        let assignment = plan(&SsoModel::default(), &fakes.inputs)
            .unwrap()
            .create
            .into_iter()
            .map(|c| c.assignment)
            .find(|a| a.principal_id == group.id)
            .expect("the model wants the group assigned");
        let account = assignment.account_id.clone();
        fakes.inputs.assignments.push(assignment.clone());
        let record = replan(
            &SsoModel::default(),
            &fakes.ports(),
            event_run(noon()),
            &Refresh::Account {
                account_id: account,
            },
        )
        .await
        .unwrap();
        let planned = record.plan.expect("a plan");
        assert!(
            !planned.delete.iter().any(|d| d.assignment == assignment),
            "the new group's assignment is planned for deletion"
        );
    }

    #[tokio::test]
    async fn what_is_deleted_while_the_read_runs_is_read_as_gone() {
        // Review of issue 14: a read takes hours at scale; an account that left or a set
        // deleted meanwhile answered NotFound and aborted the whole run.
        let mut fakes = Fakes::new();
        let cursor = read_until(&fakes, "run-1", |c| {
            matches!(c, ReadCursor::AccountTags { .. })
        })
        .await;
        let left = fakes.inputs.accounts.pop().unwrap();
        let cursor = {
            let fakes = &fakes;
            let mut cursor = cursor;
            while !matches!(cursor, ReadCursor::Assignments { .. }) {
                cursor = read_step(&fakes.ports(), "run-1", cursor, fakes.now())
                    .await
                    .unwrap();
            }
            cursor
        };
        let deleted = fakes.inputs.permission_sets.pop().unwrap();
        fakes
            .inputs
            .assignments
            .retain(|a| a.permission_set_arn != deleted.arn && a.account_id != left.id);
        let record = read_on_and_plan(&fakes, "run-1", cursor).await;
        assert!(
            matches!(record.outcome, Outcome::Applying { .. }),
            "{:?}",
            record.outcome
        );
        let snapshot = fakes.snapshots.read("run-1").await.unwrap();
        assert!(!snapshot.inputs.accounts.iter().any(|a| a.id == left.id));
        assert!(
            !snapshot
                .inputs
                .permission_sets
                .iter()
                .any(|s| s.arn == deleted.arn)
        );
    }

    /// The snapshots in memory, but every whole-generation read fails with `error`.
    struct ReadFails<'a>(&'a InMemorySnapshots, PortError);

    #[async_trait]
    impl SnapshotStore for ReadFails<'_> {
        async fn current(&self) -> Result<Option<CurrentSnapshot>, PortError> {
            self.0.current().await
        }
        async fn make_current(&self, current: &CurrentSnapshot) -> Result<(), PortError> {
            self.0.make_current(current).await
        }
        async fn write(&self, generation: &str, parts: &[SnapshotPart]) -> Result<(), PortError> {
            self.0.write(generation, parts).await
        }
        async fn read(&self, _: &str) -> Result<Snapshot, PortError> {
            Err(self.1.clone())
        }
        async fn accounts(&self, generation: &str) -> Result<Vec<OrgAccount>, PortError> {
            self.0.accounts(generation).await
        }
        async fn listed(&self, generation: &str) -> Result<Vec<PermissionSetArn>, PortError> {
            self.0.listed(generation).await
        }
        async fn touched(&self, at: DateTime<Utc>, refresh: &Refresh) -> Result<(), PortError> {
            self.0.touched(at, refresh).await
        }
        async fn touched_since(&self, since: DateTime<Utc>) -> Result<Vec<Refresh>, PortError> {
            self.0.touched_since(since).await
        }
    }

    #[tokio::test]
    async fn a_read_piece_reads_only_the_lists_it_walks_and_always_gets_on() {
        // Review of issue 14: each piece loaded the whole generation (every assignment read
        // so far) to walk a list, and the assignments' loop checked the time before its
        // first call, so a piece begun with no time left made no progress.
        let fakes = Fakes::new();
        // What a read piece must not use.
        let store = ReadFails(
            &fakes.snapshots,
            PortError::Rejected {
                service: "test",
                detail: "a read piece read the whole generation".into(),
            },
        );
        let ports = Ports {
            snapshot: &store,
            ..fakes.ports()
        };
        let run = Run {
            run_id: "run-1".into(),
            trigger: Trigger::Schedule,
            scope: Scope::Everything,
            mode: Mode::Apply,
            now: noon(),
        };
        begin_full_run(&ports, run).await.unwrap();
        let mut cursor = ReadCursor::Organisation;
        let mut pieces = 0;
        while cursor != ReadCursor::Done {
            // Every piece begins with its time already spent.
            let next = read_step(
                &ports,
                "run-1",
                cursor.clone(),
                fakes.now() - Duration::seconds(1),
            )
            .await
            .unwrap();
            assert_ne!(next, cursor, "a piece made no progress");
            cursor = next;
            pieces += 1;
            assert!(pieces < 10_000, "the read does not end");
        }
        let record = plan_step(&SsoModel::default(), &fakes.ports(), "run-1")
            .await
            .unwrap();
        assert!(matches!(record.outcome, Outcome::Applying { .. }));
    }

    #[tokio::test]
    async fn a_queue_step_that_reads_the_run_before_its_plan_is_retried_not_ended() {
        // Review of issue 14: the run's record was read without a consistent read; a QUEUE
        // step that saw it RUNNING queued nothing, freed the lease and answered done, and
        // the run stayed APPLYING for ever.
        let fakes = Fakes::new();
        let planned = fakes.planned("run-1", Mode::Apply).await;
        *fakes.stale.lock().unwrap() = Some(RunRecord {
            outcome: Outcome::Running,
            plan: None,
            ..planned
        });
        let stale = queue_step(&fakes.ports(), "run-1", usize::MAX).await;
        assert!(
            matches!(&stale, Err(e @ ReconcileError::NotPlanned(_)) if e.is_retryable()),
            "{stale:?}"
        );
        assert_eq!(fakes.lease.holder().as_deref(), Some("run-1"));
        let record = queue_step(&fakes.ports(), "run-1", usize::MAX)
            .await
            .unwrap();
        assert!(matches!(record.outcome, Outcome::Queued { .. }));
        assert!(!fakes.queued.lock().unwrap().is_empty());
        assert_eq!(fakes.lease.holder(), None);
    }

    #[test]
    fn only_planned_queued_and_aborted_runs_are_over() {
        let applying = Outcome::Applying {
            creates: 1,
            deletes: 0,
            held: 0,
            queued: 0,
        };
        assert!(!Outcome::Running.is_final());
        assert!(!applying.is_final());
        assert!(Outcome::Planned.is_final());
        assert!(Outcome::Aborted { reasons: vec![] }.is_final());
    }

    #[tokio::test]
    async fn an_abort_after_the_run_is_over_keeps_its_outcome_and_frees_the_lease() {
        // The workflow's catch aborts a run, and the notice of its failed execution aborts
        // it again; a run that timed out after it queued everything stays QUEUED.
        let fakes = Fakes::new();
        let record = fakes.run(Mode::Apply).await;
        assert!(matches!(record.outcome, Outcome::Queued { .. }));
        fakes
            .lease
            .hand_to(&record.run_id, noon() + Duration::hours(1));
        let again = abort_step(&fakes.ports(), &record.run_id, "TIMED_OUT".into())
            .await
            .unwrap();
        assert_eq!(again.outcome, record.outcome);
        assert_eq!(fakes.lease.holder(), None);
    }

    #[tokio::test]
    async fn a_step_of_a_run_that_was_aborted_neither_reads_nor_takes_the_lease_again() {
        // The execution was stopped and its notice aborted the run, but a piece already
        // under way hands its cursor on: the next step must not take the freed lease.
        let fakes = Fakes::new();
        let cursor = read_until(&fakes, "run-1", |c| {
            matches!(c, ReadCursor::PermissionSetList)
        })
        .await;
        abort_step(&fakes.ports(), "run-1", "ABORTED".into())
            .await
            .unwrap();
        let calls = fakes.calls();
        let zombie = read_step(&fakes.ports(), "run-1", cursor, fakes.now()).await;
        assert!(
            matches!(zombie, Err(ReconcileError::Ended(_))),
            "{zombie:?}"
        );
        assert_eq!(fakes.calls(), calls, "it read nothing");
        assert_eq!(fakes.lease.holder(), None);
    }

    #[tokio::test]
    async fn a_change_an_event_run_read_while_a_full_read_ran_is_in_the_new_snapshot() {
        // Review of issue 14: event runs patch the current generation; a full read that had
        // passed the account already made its own generation current without the change.
        let mut fakes = Fakes::new();
        let made = plan(&SsoModel::default(), &fakes.inputs).unwrap().create[0]
            .assignment
            .clone();
        fakes.inputs.assignments.push(made);
        fakes.run(Mode::DryRun).await;
        let cursor = read_until(&fakes, "run-2", |c| matches!(c, ReadCursor::Principals)).await;
        let removed = fakes.inputs.assignments.pop().expect("the assignment made");
        replan(
            &SsoModel::default(),
            &fakes.ports(),
            event_run(fakes.now()),
            &Refresh::Account {
                account_id: removed.account_id.clone(),
            },
        )
        .await
        .unwrap();
        read_on_and_plan(&fakes, "run-2", cursor).await;
        let current = fakes.snapshots.current().await.unwrap().unwrap();
        assert_eq!(current.generation, "run-2");
        let snapshot = fakes.snapshots.read("run-2").await.unwrap();
        assert!(
            !snapshot.inputs.assignments.contains(&removed),
            "the assignment removed while the read ran is still in the snapshot"
        );
    }

    #[tokio::test]
    async fn a_read_that_looks_partial_leaves_the_last_whole_snapshot_current() {
        let mut fakes = Fakes::new();
        fakes.run(Mode::DryRun).await;
        // No group listed: the plan takes the listing for a failed one.
        fakes.inputs.groups.clear();
        let partial = fakes.run(Mode::Apply).await;
        assert!(
            matches!(partial.outcome, Outcome::Aborted { .. }),
            "{:?}",
            partial.outcome
        );
        let current = fakes.snapshots.current().await.unwrap().unwrap();
        assert_eq!(
            current.generation, "run-1",
            "the partial read is not current"
        );
    }

    #[tokio::test]
    async fn a_run_that_applies_marks_its_scope_planned_and_a_dry_run_does_not() {
        let fakes = Fakes::new();
        let any = synthetic::group_assignment(1, 1, 1);
        fakes.run(Mode::DryRun).await;
        assert_eq!(
            fakes.latest_plans.latest_covering(&any).await.unwrap(),
            None
        );
        let applied = fakes.run(Mode::Apply).await;
        let planned_at = applied.planned_at.expect("a plan time");
        assert!(planned_at > applied.started_at, "planned after the read");
        assert_eq!(
            fakes.latest_plans.latest_covering(&any).await.unwrap(),
            Some(planned_at)
        );
        let queued = fakes.queued.lock().unwrap();
        assert!(!queued.is_empty());
        assert!(
            queued.iter().all(|c| c.planned_at == Some(planned_at)),
            "each change says when its plan was made"
        );
    }

    #[tokio::test]
    async fn an_account_that_left_while_its_tags_were_read_makes_the_read_skip_no_other() {
        // Review: the tags phase walked the accounts by position; an account read as gone
        // left the list, and the next piece skipped the account after it (read with no
        // tags, its assignments planned for deletion).
        let mut fakes = Fakes::new();
        let mut cursor = read_until(&fakes, "run-1", |c| {
            matches!(c, ReadCursor::AccountTags { .. })
        })
        .await;
        let first = fakes
            .inputs
            .accounts
            .iter()
            .map(|a| a.id.clone())
            .min()
            .unwrap();
        fakes.inputs.accounts.retain(|a| a.id != first);
        // One account a piece.
        while matches!(cursor, ReadCursor::AccountTags { .. }) {
            cursor = read_step(&fakes.ports(), "run-1", cursor, fakes.now())
                .await
                .unwrap();
        }
        let read = fakes.snapshots.accounts("run-1").await.unwrap();
        assert_eq!(read.len(), fakes.inputs.accounts.len());
        for account in &fakes.inputs.accounts {
            let found = read.iter().find(|a| a.id == account.id).unwrap();
            assert_eq!(found.tags, account.tags, "the tags of {}", account.id);
        }
    }

    #[test]
    fn a_cursor_of_the_previous_version_goes_on_without_skipping_a_phase() {
        let principals: ReadCursor =
            serde_json::from_value(serde_json::json!({"phase": "PRINCIPALS"})).unwrap();
        assert_eq!(principals, ReadCursor::PrincipalsFirst);
        let tags: ReadCursor =
            serde_json::from_value(serde_json::json!({"phase": "ACCOUNT_TAGS", "next": 40}))
                .unwrap();
        assert_eq!(tags, ReadCursor::AccountTags { after: None });
    }

    #[tokio::test]
    async fn a_full_run_is_not_superseded_by_an_event_run_during_its_read() {
        // Review: a full run's changes carried the time its read began, so an event run
        // during the read (whose change the read then took in) made them all look stale.
        let fakes = Fakes::new();
        fakes.run(Mode::DryRun).await;
        let cursor = read_until(&fakes, "run-2", |c| matches!(c, ReadCursor::Principals)).await;
        let account = fakes.inputs.accounts[0].id.clone();
        let event = replan(
            &SsoModel::default(),
            &fakes.ports(),
            event_run(fakes.now()),
            &Refresh::Account {
                account_id: account.clone(),
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(event.outcome, Outcome::Queued { .. }),
            "{:?}",
            event.outcome
        );
        fakes.queued.lock().unwrap().clear();
        let mut record = read_on_and_plan(&fakes, "run-2", cursor).await;
        while matches!(record.outcome, Outcome::Applying { .. }) {
            record = queue_step(&fakes.ports(), "run-2", usize::MAX)
                .await
                .unwrap();
        }
        let queued = fakes.queued.lock().unwrap().clone();
        assert!(!queued.is_empty());
        for change in &queued {
            let latest = fakes
                .latest_plans
                .latest_covering(&change.assignment)
                .await
                .unwrap();
            assert!(
                latest <= change.planned_at,
                "{change:?} looks superseded by a plan at {latest:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_read_whose_plan_refuses_a_tag_still_becomes_current() {
        // Only a read that looks partial keeps the last snapshot current: a configuration
        // error would otherwise freeze it until event runs refuse it as too old.
        let mut fakes = Fakes::new();
        fakes.run(Mode::DryRun).await;
        let set = fakes
            .inputs
            .permission_sets
            .iter_mut()
            .find(|s| s.tags.contains_key("workloads"))
            .expect("a set with workloads");
        set.tags.insert("workloads".into(), "Workload_All".into());
        let refused = fakes.run(Mode::Apply).await;
        assert!(matches!(refused.outcome, Outcome::Aborted { .. }));
        let current = fakes.snapshots.current().await.unwrap().unwrap();
        assert_eq!(current.generation, "run-2");
    }

    #[tokio::test]
    async fn an_event_run_that_cannot_read_the_snapshot_for_now_fails_to_be_retried() {
        // Review: a passing failure was recorded as the event run's abort, and the handler
        // then marked the event done: it was never delivered again.
        let fakes = Fakes::new();
        fakes.run(Mode::DryRun).await;
        let store = ReadFails(
            &fakes.snapshots,
            PortError::Transient {
                service: "dynamodb",
                detail: "ProvisionedThroughputExceededException".into(),
            },
        );
        let ports = Ports {
            snapshot: &store,
            ..fakes.ports()
        };
        let saved = fakes.saved.lock().unwrap().len();
        let run = replan(
            &SsoModel::default(),
            &ports,
            event_run(noon()),
            &Refresh::Principals,
        )
        .await;
        assert!(
            matches!(&run, Err(e @ ReconcileError::Read(_)) if e.is_retryable()),
            "{run:?}"
        );
        assert_eq!(fakes.saved.lock().unwrap().len(), saved, "nothing recorded");
    }

    #[tokio::test]
    async fn a_retried_plan_step_frees_the_lease_its_first_attempt_kept() {
        let fakes = Fakes::new();
        let record = fakes.planned("run-1", Mode::DryRun).await;
        assert_eq!(record.outcome, Outcome::Planned);
        // The first attempt recorded the plan, then failed to free the lease.
        fakes.lease.hand_to("run-1", noon() + Duration::hours(1));
        plan_step(&SsoModel::default(), &fakes.ports(), "run-1")
            .await
            .unwrap();
        assert_eq!(fakes.lease.holder(), None);
    }
}
