//! The SSO sync at the scale of a large organisation (2,000 accounts, 500 permission sets,
//! 5,000 groups), in virtual time: the real reconcile workflow (begin, read pieces, plan,
//! feed the queue), the real event run, and the real apply path (the worker's
//! `apply_change` and `when_busy`, the monitor's `after_poll`) run against fakes of their
//! ports that charge every call its latency, hold each service to its rate, and keep IAM
//! Identity Center's 15 outstanding operations. Nothing sleeps: a run of hours takes seconds.
//!
//! Prints the calls per API, the wall time of a full reconcile (first and steady) and of a
//! one-account event, the longest single invocation, and the drain of the first run's creates
//! at 15 outstanding. Run with `cargo bench -p maestro-domain --bench sso_scale`.
//!
//! Assumed figures (AWS publishes the sso-admin quota, not latencies): see [`Service`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use maestro_domain::port::PortError;
use maestro_domain::quota::{
    OutstandingOperations, SSO_ADMIN_CALLS_KEPT_FOR_CHANGES, SSO_ADMIN_CALLS_PER_SECOND,
    SSO_ADMIN_OUTSTANDING_OPERATIONS,
};
use maestro_domain::sso::apply::{
    Applied, Applier, ApplyError, AssignmentWriter, MonitorQueue, WhenBusy, apply_change, slot_key,
    when_busy,
};
use maestro_domain::sso::assignment_monitor::{
    AccountId, AssignmentOperation, AssignmentRequest, CheckStep, InstanceArn, MonitorProgress,
    PermissionSetArn, PollPolicy, ProvisioningStatus, RequestId, StatusCheck, after_poll,
};
use maestro_domain::sso::model::SsoModel;
use maestro_domain::sso::plan::{
    Assignment, OrgAccount, PermissionSetInfo, PlanInputs, PlannedDelete, Principal, plan,
};
use maestro_domain::sso::reconcile::{
    AssignmentChange, Began, ChangeQueue, DeleteBudget, HeldDeletesApproval, InMemoryLatestPlans,
    InMemoryLease, LatestPlans, Mode, Outcome, PlanStore, Ports, ReconcileWorkflow, Run, RunRecord,
    Scope, Spent, Trigger, begin_full_run, plan_step, queue_step, read_step, replan,
};
use maestro_domain::sso::snapshot::{
    Clock, CurrentSnapshot, IdentityCenterReader, InMemorySnapshots, OrganisationReader,
    ReadCursor, Refresh, Snapshot, SnapshotPart, SnapshotStore,
};
use maestro_domain::sso::synthetic::{Size, organisation};

/// The services the sync calls, with the latency charged per call and the rate each is held
/// to. sso-admin's 20 calls a second is IAM Identity Center's published quota (readers may
/// take 15 of them); the latencies and the other rates are assumptions, on the cautious side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Service {
    SsoAdmin,
    Organizations,
    IdentityStore,
    DynamoDb,
    Sqs,
}

impl Service {
    fn latency(self) -> Duration {
        Duration::milliseconds(match self {
            Service::SsoAdmin => 80,
            Service::Organizations => 120,
            Service::IdentityStore => 80,
            Service::DynamoDb => 10,
            Service::Sqs => 20,
        })
    }

    /// Calls a second a reader may make.
    fn rate(self) -> Option<u32> {
        match self {
            Service::SsoAdmin => {
                Some(SSO_ADMIN_CALLS_PER_SECOND - SSO_ADMIN_CALLS_KEPT_FOR_CHANGES)
            }
            Service::Organizations => Some(10),
            Service::IdentityStore => Some(20),
            Service::DynamoDb | Service::Sqs => None,
        }
    }
}

/// A run's worth of calls in virtual time: each call starts when its service's rate allows
/// and ends after its latency; a reader's calls are one after the other.
struct Meter {
    now: Mutex<DateTime<Utc>>,
    next_slot: Mutex<HashMap<Service, DateTime<Utc>>>,
    calls: Mutex<BTreeMap<String, u64>>,
    /// Whether calls move the clock (reads) or are only counted (the drain moves its own).
    advancing: Mutex<bool>,
}

impl Meter {
    fn new(start: DateTime<Utc>) -> Self {
        Meter {
            now: Mutex::new(start),
            next_slot: Mutex::new(HashMap::new()),
            calls: Mutex::new(BTreeMap::new()),
            advancing: Mutex::new(true),
        }
    }

    fn charge(&self, service: Service, api: &str, count: u64) {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(format!("{service:?} {api}"))
            .or_default() += count;
        if !*self.advancing.lock().unwrap() {
            return;
        }
        for _ in 0..count {
            let mut now = self.now.lock().unwrap();
            let mut slots = self.next_slot.lock().unwrap();
            let start = match (service.rate(), slots.get(&service)) {
                (Some(_), Some(free)) if *free > *now => *free,
                _ => *now,
            };
            if let Some(rate) = service.rate() {
                slots.insert(
                    service,
                    start + Duration::microseconds(1_000_000 / i64::from(rate)),
                );
            }
            *now = start + service.latency();
        }
    }

    fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap() = at;
    }

    fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap().clone()
    }

    fn reset_calls(&self) {
        self.calls.lock().unwrap().clear();
    }
}

fn pages(items: usize, per_page: usize) -> u64 {
    items.div_ceil(per_page).max(1) as u64
}

/// The organisation, IAM Identity Center (what is assigned now), and every store and queue
/// the sync writes, in memory, charged through the meter.
struct World {
    meter: Meter,
    inputs: PlanInputs,
    assigned: Mutex<HashSet<Assignment>>,
    snapshots: InMemorySnapshots,
    runs: Mutex<HashMap<String, RunRecord>>,
    lease: InMemoryLease,
    latest_plans: InMemoryLatestPlans,
    queue: Mutex<Vec<Message>>,
    /// The queue answers an empty backlog whatever waits on it: how the first run queued
    /// every change at once before the workflow fed the queue.
    blind_backlog: bool,
    instance_arn: InstanceArn,
}

#[derive(Clone)]
struct Message {
    visible_at: DateTime<Utc>,
    change: AssignmentChange,
}

impl World {
    fn new(inputs: PlanInputs, start: DateTime<Utc>) -> Self {
        World {
            meter: Meter::new(start),
            inputs,
            assigned: Mutex::new(HashSet::new()),
            snapshots: InMemorySnapshots::default(),
            runs: Mutex::new(HashMap::new()),
            lease: InMemoryLease::default(),
            latest_plans: InMemoryLatestPlans::default(),
            queue: Mutex::new(Vec::new()),
            blind_backlog: false,
            instance_arn: InstanceArn::try_from("arn:aws:sso:::instance/ssoins-0000000000000000")
                .unwrap(),
        }
    }

    fn ports(&self) -> Ports<'_> {
        Ports {
            organisation: self,
            identity_center: self,
            clock: self,
            snapshot: self,
            store: self,
            lease: &self.lease,
            workflow: self,
            changes: self,
            approvals: self,
            deletes: self,
            latest_plans: self,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        *self.meter.now.lock().unwrap()
    }

    /// OUs as Organizations holds them: every prefix of every account's path.
    fn ous(&self) -> BTreeMap<Vec<String>, usize> {
        let mut ous: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        for account in &self.inputs.accounts {
            let path = account.ou_path.clone().unwrap_or_default();
            for depth in 1..=path.len() {
                ous.entry(path[..depth].to_vec()).or_default();
            }
            *ous.entry(path).or_default() += 1;
        }
        ous
    }
}

impl Clock for World {
    fn now(&self) -> DateTime<Utc> {
        World::now(self)
    }
}

#[async_trait]
impl OrganisationReader for World {
    async fn management_account(&self) -> Result<Option<AccountId>, PortError> {
        self.meter
            .charge(Service::Organizations, "DescribeOrganization", 1);
        Ok(self.inputs.management_account_id.clone())
    }
    async fn tree(&self) -> Result<Vec<OrgAccount>, PortError> {
        self.meter.charge(Service::Organizations, "ListRoots", 1);
        let ous = self.ous();
        // Per parent: its accounts (20 a page) and its OUs (20 a page).
        let mut children: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        for path in ous.keys().filter(|p| !p.is_empty()) {
            *children.entry(path[..path.len() - 1].to_vec()).or_default() += 1;
        }
        for (path, accounts) in &ous {
            self.meter.charge(
                Service::Organizations,
                "ListAccountsForParent",
                pages(*accounts, 20),
            );
            let below = children.get(path).copied().unwrap_or(0);
            self.meter.charge(
                Service::Organizations,
                "ListOrganizationalUnitsForParent",
                pages(below, 20),
            );
        }
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
        self.meter
            .charge(Service::Organizations, "ListTagsForResource", 1);
        let found = self.inputs.accounts.iter().find(|a| a.id == *account);
        Ok(found.map(|a| a.tags.clone()).unwrap_or_default())
    }
    async fn account(&self, account: &AccountId) -> Result<Option<OrgAccount>, PortError> {
        let found = self
            .inputs
            .accounts
            .iter()
            .find(|a| a.id == *account)
            .cloned();
        let depth = found
            .as_ref()
            .and_then(|a| a.ou_path.as_ref())
            .map_or(0, Vec::len);
        self.meter
            .charge(Service::Organizations, "DescribeAccount", 1);
        self.meter
            .charge(Service::Organizations, "ListParents", depth as u64 + 1);
        self.meter.charge(
            Service::Organizations,
            "DescribeOrganizationalUnit",
            depth as u64,
        );
        self.meter
            .charge(Service::Organizations, "ListTagsForResource", 1);
        Ok(found)
    }
}

#[async_trait]
impl IdentityCenterReader for World {
    fn instance_arn(&self) -> &InstanceArn {
        &self.instance_arn
    }
    async fn permission_set_arns(&self) -> Result<Vec<PermissionSetArn>, PortError> {
        let sets = &self.inputs.permission_sets;
        self.meter.charge(
            Service::SsoAdmin,
            "ListPermissionSets",
            pages(sets.len(), 100),
        );
        Ok(sets.iter().map(|s| s.arn.clone()).collect())
    }
    async fn permission_set(
        &self,
        arn: &PermissionSetArn,
    ) -> Result<Option<PermissionSetInfo>, PortError> {
        self.meter
            .charge(Service::SsoAdmin, "DescribePermissionSet", 1);
        self.meter
            .charge(Service::SsoAdmin, "ListTagsForResource", 1);
        Ok(self
            .inputs
            .permission_sets
            .iter()
            .find(|s| s.arn == *arn)
            .cloned())
    }
    async fn groups(&self) -> Result<Vec<Principal>, PortError> {
        let groups = &self.inputs.groups;
        self.meter.charge(
            Service::IdentityStore,
            "ListGroups",
            pages(groups.len(), 100),
        );
        Ok(groups.clone())
    }
    async fn users(&self) -> Result<Vec<Principal>, PortError> {
        let users = &self.inputs.users;
        self.meter
            .charge(Service::IdentityStore, "ListUsers", pages(users.len(), 100));
        Ok(users.clone())
    }
    async fn accounts_provisioned(
        &self,
        set: &PermissionSetArn,
    ) -> Result<Vec<AccountId>, PortError> {
        let accounts: std::collections::BTreeSet<AccountId> = self
            .assigned
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.permission_set_arn == *set)
            .map(|a| a.account_id.clone())
            .collect();
        self.meter.charge(
            Service::SsoAdmin,
            "ListAccountsForProvisionedPermissionSet",
            pages(accounts.len(), 100),
        );
        Ok(accounts.into_iter().collect())
    }
    async fn sets_provisioned_to(
        &self,
        account: &AccountId,
    ) -> Result<Vec<PermissionSetArn>, PortError> {
        let sets: std::collections::BTreeSet<PermissionSetArn> = self
            .assigned
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.account_id == *account)
            .map(|a| a.permission_set_arn.clone())
            .collect();
        self.meter.charge(
            Service::SsoAdmin,
            "ListPermissionSetsProvisionedToAccount",
            pages(sets.len(), 100),
        );
        Ok(sets.into_iter().collect())
    }
    async fn assignments_of(
        &self,
        account: &AccountId,
        set: &PermissionSetArn,
    ) -> Result<Vec<Assignment>, PortError> {
        let found: Vec<Assignment> = self
            .assigned
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.account_id == *account && a.permission_set_arn == *set)
            .cloned()
            .collect();
        self.meter.charge(
            Service::SsoAdmin,
            "ListAccountAssignments",
            pages(found.len(), 100),
        );
        Ok(found)
    }
}

/// About 200 bytes an item; a Query page holds 1 MB.
const ITEMS_PER_QUERY_PAGE: usize = 5_000;

#[async_trait]
impl SnapshotStore for World {
    async fn current(&self) -> Result<Option<CurrentSnapshot>, PortError> {
        self.meter.charge(Service::DynamoDb, "GetItem", 1);
        self.snapshots.current().await
    }
    async fn make_current(&self, current: &CurrentSnapshot) -> Result<(), PortError> {
        self.meter.charge(Service::DynamoDb, "PutItem", 1);
        self.snapshots.make_current(current).await
    }
    async fn write(&self, generation: &str, parts: &[SnapshotPart]) -> Result<(), PortError> {
        self.meter
            .charge(Service::DynamoDb, "BatchWriteItem", pages(parts.len(), 25));
        self.snapshots.write(generation, parts).await
    }
    async fn read(&self, generation: &str) -> Result<Snapshot, PortError> {
        let snapshot = self.snapshots.read(generation).await?;
        let inputs = &snapshot.inputs;
        let items = inputs.accounts.len()
            + inputs.permission_sets.len()
            + inputs.assignments.len()
            + (inputs.groups.len() + inputs.users.len()) / 1_000;
        self.meter.charge(
            Service::DynamoDb,
            "Query",
            pages(items, ITEMS_PER_QUERY_PAGE),
        );
        Ok(snapshot)
    }
    async fn accounts(&self, generation: &str) -> Result<Vec<OrgAccount>, PortError> {
        let accounts = self.snapshots.accounts(generation).await?;
        self.meter.charge(
            Service::DynamoDb,
            "Query",
            pages(accounts.len(), ITEMS_PER_QUERY_PAGE),
        );
        Ok(accounts)
    }
    async fn listed(&self, generation: &str) -> Result<Vec<PermissionSetArn>, PortError> {
        self.meter.charge(Service::DynamoDb, "GetItem", 1);
        self.snapshots.listed(generation).await
    }
    async fn touched(&self, at: DateTime<Utc>, refresh: &Refresh) -> Result<(), PortError> {
        self.meter.charge(Service::DynamoDb, "PutItem", 1);
        self.snapshots.touched(at, refresh).await
    }
    async fn touched_since(&self, since: DateTime<Utc>) -> Result<Vec<Refresh>, PortError> {
        self.meter.charge(Service::DynamoDb, "Query", 1);
        self.snapshots.touched_since(since).await
    }
}

#[async_trait]
impl LatestPlans for World {
    async fn planned(&self, scope: &Scope, planned_at: DateTime<Utc>) -> Result<(), PortError> {
        self.meter.charge(Service::DynamoDb, "PutItem", 1);
        self.latest_plans.planned(scope, planned_at).await
    }
    async fn latest_covering(
        &self,
        assignment: &Assignment,
    ) -> Result<Option<DateTime<Utc>>, PortError> {
        self.meter.charge(Service::DynamoDb, "BatchGetItem", 1);
        self.latest_plans.latest_covering(assignment).await
    }
}

#[async_trait]
impl PlanStore for World {
    async fn save(&self, run: &RunRecord) -> Result<(), PortError> {
        let bytes = serde_json::to_vec(run).map(|j| j.len()).unwrap_or(0);
        self.meter
            .charge(Service::DynamoDb, "PutItem", pages(bytes, 300 * 1024) + 1);
        self.runs
            .lock()
            .unwrap()
            .insert(run.run_id.clone(), run.clone());
        Ok(())
    }
    async fn save_outcome(&self, run: &RunRecord) -> Result<(), PortError> {
        self.meter.charge(Service::DynamoDb, "PutItem", 1);
        if let Some(stored) = self.runs.lock().unwrap().get_mut(&run.run_id) {
            stored.outcome = run.outcome.clone();
        }
        Ok(())
    }
    async fn latest(&self) -> Result<Option<RunRecord>, PortError> {
        Ok(None)
    }
    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, PortError> {
        let run = self.runs.lock().unwrap().get(run_id).cloned();
        let bytes = run
            .as_ref()
            .and_then(|r| serde_json::to_vec(r).ok())
            .map_or(0, |j| j.len());
        self.meter
            .charge(Service::DynamoDb, "Query", pages(bytes, 1024 * 1024));
        Ok(run)
    }
}

#[async_trait]
impl ReconcileWorkflow for World {
    async fn start(&self, _: &str) -> Result<(), PortError> {
        Ok(())
    }
}

#[async_trait]
impl ChangeQueue for World {
    async fn enqueue(&self, changes: &[AssignmentChange]) -> Result<(), PortError> {
        self.meter
            .charge(Service::Sqs, "SendMessageBatch", pages(changes.len(), 10));
        let now = self.now();
        self.queue
            .lock()
            .unwrap()
            .extend(changes.iter().cloned().map(|change| Message {
                visible_at: now,
                change,
            }));
        Ok(())
    }
    async fn backlog(&self) -> Result<usize, PortError> {
        self.meter.charge(Service::Sqs, "GetQueueAttributes", 1);
        if self.blind_backlog {
            return Ok(0);
        }
        Ok(self.queue.lock().unwrap().len())
    }
}

#[async_trait]
impl HeldDeletesApproval for World {
    async fn request(&self, _: &str, _: &[PlannedDelete]) -> Result<(), PortError> {
        Ok(())
    }
}

#[async_trait]
impl DeleteBudget for World {
    async fn spend(
        &self,
        _: DateTime<Utc>,
        _: u32,
        _: usize,
        _: usize,
    ) -> Result<Spent, PortError> {
        self.meter.charge(Service::DynamoDb, "GetItem", 1);
        Ok(Spent::Within)
    }
}

/// The longest single invocation seen, and what it was.
#[derive(Default)]
struct Longest {
    seconds: f64,
    what: String,
}

impl Longest {
    fn saw(&mut self, what: &str, from: DateTime<Utc>, to: DateTime<Utc>) {
        let seconds = (to - from).num_milliseconds() as f64 / 1e3;
        if seconds > self.seconds {
            self.seconds = seconds;
            self.what = what.to_owned();
        }
    }
}

/// A read piece may use a third of the reconcile function's 900 s timeout.
const PIECE: i64 = 300;
const RECONCILE_TIMEOUT: f64 = 900.0;

/// A full run as `statemachines/sso-reconcile.asl.json` drives it, up to its plan: answers
/// the run's record, the read pieces, and the longest invocation.
async fn full_run(
    world: &World,
    mode: Mode,
    run_id: &str,
    longest: &mut Longest,
) -> (RunRecord, usize) {
    let ports = world.ports();
    let started = world.now();
    let run = Run {
        run_id: run_id.to_owned(),
        trigger: Trigger::Schedule,
        scope: Scope::Everything,
        mode,
        now: started,
    };
    let Began::Started(_) = begin_full_run(&ports, run).await.expect("begins") else {
        panic!("a run holds the lease");
    };
    let mut cursor = ReadCursor::Organisation;
    let mut pieces = 0;
    while cursor != ReadCursor::Done {
        let from = world.now();
        cursor = read_step(&ports, run_id, cursor, from + Duration::seconds(PIECE))
            .await
            .expect("a piece reads");
        longest.saw("a READ step", from, world.now());
        pieces += 1;
    }
    let from = world.now();
    let cpu = Instant::now();
    let record = plan_step(&SsoModel::default(), &ports, run_id)
        .await
        .expect("plans");
    // Planning is CPU time, not calls: the real time it took counts.
    let planning = Duration::from_std(cpu.elapsed()).unwrap_or_default();
    world.meter.set(world.now() + planning);
    longest.saw("the PLAN step", from, world.now());
    (record, pieces)
}

fn print_calls(title: &str, calls: &BTreeMap<String, u64>) {
    println!("{title}");
    let total: u64 = calls.values().sum();
    for (api, count) in calls {
        println!("  {api:<55} {count:>7}");
    }
    println!("  {:<55} {total:>7}", "total");
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 60_000.0
}

/// How long IAM Identity Center takes to settle one request, spread between `min` and `max`
/// seconds by the assignment (it creates the permission set's role in the account).
fn provisioning_seconds(assignment: &Assignment, min: u32, max: u32) -> i64 {
    let hash = slot_key(assignment)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    i64::from(min + (hash % u64::from(max - min + 1)) as u32)
}

/// IAM Identity Center's write side for the drain: takes requests, remembers when each
/// settles, and holds at most 15 outstanding operations.
struct Provisioning<'w> {
    world: &'w World,
    now: Mutex<DateTime<Utc>>,
    settles_at: Mutex<HashMap<String, (DateTime<Utc>, AssignmentRequest)>>,
    handed_to_monitor: Mutex<Vec<AssignmentRequest>>,
    slots: Mutex<HashMap<String, String>>,
    peak_outstanding: Mutex<usize>,
    seconds: (u32, u32),
    next_id: Mutex<u64>,
}

#[async_trait]
impl AssignmentWriter for Provisioning<'_> {
    async fn change(
        &self,
        operation: AssignmentOperation,
        assignment: &Assignment,
    ) -> Result<AssignmentRequest, PortError> {
        self.world
            .meter
            .charge(Service::SsoAdmin, "CreateAccountAssignment", 1);
        let mut next = self.next_id.lock().unwrap();
        *next += 1;
        let request = AssignmentRequest {
            request_id: RequestId::try_from(format!("00000000-0000-4000-8000-{:012x}", *next))
                .unwrap(),
            operation,
            instance_arn: self.world.instance_arn.clone(),
            account_id: assignment.account_id.clone(),
            permission_set_arn: assignment.permission_set_arn.clone(),
            principal_id: assignment.principal_id.clone(),
            principal_type: assignment.principal_type,
            run_id: None,
        };
        let settles = *self.now.lock().unwrap()
            + Duration::seconds(provisioning_seconds(
                assignment,
                self.seconds.0,
                self.seconds.1,
            ));
        self.settles_at
            .lock()
            .unwrap()
            .insert(request.request_id.to_string(), (settles, request.clone()));
        Ok(request)
    }
}

#[async_trait]
impl MonitorQueue for Provisioning<'_> {
    async fn monitor(&self, request: &AssignmentRequest) -> Result<(), PortError> {
        self.world.meter.charge(Service::Sqs, "SendMessageBatch", 1);
        self.handed_to_monitor.lock().unwrap().push(request.clone());
        Ok(())
    }
}

#[async_trait]
impl OutstandingOperations for Provisioning<'_> {
    async fn reserve(
        &self,
        key: &str,
        holder: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.world.meter.charge(Service::DynamoDb, "UpdateItem", 1);
        let mut slots = self.slots.lock().unwrap();
        match slots.get(key) {
            Some(other) if other != holder => return Ok(false),
            Some(_) => return Ok(true),
            None => {}
        }
        if slots.len() >= SSO_ADMIN_OUTSTANDING_OPERATIONS {
            return Ok(false);
        }
        slots.insert(key.to_owned(), holder.to_owned());
        let mut peak = self.peak_outstanding.lock().unwrap();
        *peak = (*peak).max(slots.len());
        Ok(true)
    }
    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.world.meter.charge(Service::DynamoDb, "UpdateItem", 1);
        self.slots.lock().unwrap().remove(key);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    /// The workflow's QUEUE step.
    Feed,
    /// Worker `n` takes a batch (the SQS event source: batches of 10, 2 at a time).
    WorkerPoll(usize),
    /// The monitor polls a request.
    Poll { request_id: String, polls: u32 },
}

/// The worker's and the monitor's share of the sso-admin governor (maestro_aws::quota): 4
/// requests in each fifth of a second.
#[derive(Default)]
struct Governor(HashMap<i64, u32>);

impl Governor {
    const PER_WINDOW: u32 = 4;
    const WINDOW_MS: i64 = 200;

    /// The first window from `at` with a slot free.
    fn free_window(&self, at: DateTime<Utc>) -> i64 {
        let mut window = at.timestamp_millis() / Self::WINDOW_MS;
        while self.0.get(&window).copied().unwrap_or(0) >= Self::PER_WINDOW {
            window += 1;
        }
        window
    }

    /// The first moment from `at` at which a request may be sent.
    fn first_free(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let start = DateTime::from_timestamp_millis(self.free_window(at) * Self::WINDOW_MS)
            .expect("a time in range");
        at.max(start)
    }

    /// The first moment from `at` at which a request may be sent, its slot taken.
    fn slot(&mut self, at: DateTime<Utc>) -> DateTime<Utc> {
        let window = self.free_window(at);
        *self.0.entry(window).or_default() += 1;
        let start =
            DateTime::from_timestamp_millis(window * Self::WINDOW_MS).expect("a time in range");
        at.max(start)
    }
}

struct Drained {
    minutes: f64,
    applied: usize,
    dlq: usize,
    deferrals: u64,
    most_deferrals: u32,
    feeds: usize,
    peak_outstanding: usize,
    busiest_second: usize,
}

/// The applying run's changes fed, applied and monitored until every one settled.
async fn drain(world: &World, run_id: &str, seconds: (u32, u32), longest: &mut Longest) -> Drained {
    let ports = world.ports();
    let start = world.now();
    *world.meter.advancing.lock().unwrap() = false;
    let provisioning = Provisioning {
        world,
        now: Mutex::new(start),
        settles_at: Mutex::new(HashMap::new()),
        handed_to_monitor: Mutex::new(Vec::new()),
        slots: Mutex::new(HashMap::new()),
        peak_outstanding: Mutex::new(0),
        seconds,
        next_id: Mutex::new(0),
    };
    let applier = Applier {
        writer: &provisioning,
        monitor: &provisioning,
        operations: &provisioning,
        latest_plans: world,
    };
    let policy = PollPolicy::new(5, 60, 40).expect("the template's defaults");
    let mut agenda: BinaryHeap<Reverse<(DateTime<Utc>, Happening)>> = BinaryHeap::new();
    agenda.push(Reverse((start, Happening::Feed)));
    agenda.push(Reverse((start, Happening::WorkerPoll(0))));
    agenda.push(Reverse((start, Happening::WorkerPoll(1))));
    let (mut applied, mut dlq, mut deferrals, mut most_deferrals, mut feeds) = (0, 0, 0u64, 0, 0);
    let mut feeding = true;
    let mut end = start;
    // sso-admin requests (writes and polls) per virtual second, to check the 20 a second.
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    let mut governor = Governor::default();
    while let Some(Reverse((at, happening))) = agenda.pop() {
        world.meter.set(at);
        *provisioning.now.lock().unwrap() = at;
        match happening {
            Happening::Feed => {
                feeds += 1;
                let mut record = queue_step(&ports, run_id, usize::MAX).await.expect("feeds");
                // Before the feed, a run queued every change at once.
                while world.blind_backlog && matches!(record.outcome, Outcome::Applying { .. }) {
                    record = queue_step(&ports, run_id, usize::MAX).await.expect("feeds");
                }
                longest.saw("a QUEUE step", at, at + Duration::seconds(2));
                match record.outcome {
                    Outcome::Applying { .. } => agenda.push(Reverse((
                        at + Duration::seconds(i64::from(
                            maestro_domain::sso::reconcile::FEED_WAIT_SECONDS,
                        )),
                        Happening::Feed,
                    ))),
                    _ => feeding = false,
                }
            }
            Happening::WorkerPoll(worker) => {
                let batch: Vec<Message> = {
                    let mut queue = world.queue.lock().unwrap();
                    let mut batch = Vec::new();
                    let mut i = 0;
                    while i < queue.len() && batch.len() < 10 {
                        if queue[i].visible_at <= at {
                            batch.push(queue.swap_remove(i));
                        } else {
                            i += 1;
                        }
                    }
                    batch
                };
                if batch.is_empty() {
                    let queue = world.queue.lock().unwrap();
                    let next = queue.iter().map(|m| m.visible_at).min();
                    let idle = feeding || !queue.is_empty();
                    drop(queue);
                    if idle {
                        let wake = next
                            .unwrap_or(at + Duration::seconds(1))
                            .max(at + Duration::milliseconds(100));
                        agenda.push(Reverse((wake, Happening::WorkerPoll(worker))));
                    }
                    continue;
                }
                let mut took = Duration::zero();
                for message in batch {
                    let result = apply_change(&applier, &message.change, at).await;
                    // The latest plans read, then the slot reserved.
                    took += Service::DynamoDb.latency() + Service::DynamoDb.latency();
                    match result {
                        Ok(Applied::Superseded { .. }) => {
                            panic!("one run's changes never supersede each other")
                        }
                        Ok(Applied::Requested(request)) => {
                            // Sent when the governor gives it a slot; the batch's changes go
                            // one after the other.
                            let sent = governor.slot(at + took);
                            *per_second.entry(sent.timestamp()).or_default() += 1;
                            took = sent - at + Service::SsoAdmin.latency() + Service::Sqs.latency();
                            applied += 1;
                            // The monitor starter batches for up to 5 s, then the first poll.
                            agenda.push(Reverse((
                                at + Duration::seconds(5),
                                Happening::Poll {
                                    request_id: request.request_id.to_string(),
                                    polls: 0,
                                },
                            )));
                        }
                        Err(ApplyError::Busy(_)) => match when_busy(&message.change) {
                            WhenBusy::Wait {
                                change,
                                delay_seconds,
                            } => {
                                took += Service::Sqs.latency();
                                deferrals += 1;
                                most_deferrals = most_deferrals.max(change.deferrals);
                                world.queue.lock().unwrap().push(Message {
                                    visible_at: at + Duration::seconds(i64::from(delay_seconds)),
                                    change,
                                });
                            }
                            WhenBusy::GiveUp { .. } => dlq += 1,
                        },
                        Err(other) => panic!("the fakes do not fail: {other}"),
                    }
                }
                agenda.push(Reverse((at + took, Happening::WorkerPoll(worker))));
            }
            Happening::Poll { request_id, polls } => {
                let free = governor.first_free(at);
                if free > at {
                    agenda.push(Reverse((free, Happening::Poll { request_id, polls })));
                    continue;
                }
                governor.slot(at);
                world.meter.charge(
                    Service::SsoAdmin,
                    "DescribeAccountAssignmentCreationStatus",
                    1,
                );
                *per_second.entry(at.timestamp()).or_default() += 1;
                let (settles, request) =
                    provisioning.settles_at.lock().unwrap()[&request_id].clone();
                let status = if at >= settles {
                    ProvisioningStatus::Succeeded
                } else {
                    ProvisioningStatus::InProgress
                };
                let check = StatusCheck {
                    request: request.clone(),
                    polls,
                    step: CheckStep::default(),
                };
                match after_poll(&policy, check, status, at) {
                    MonitorProgress::Finished { .. } => {
                        let assignment = Assignment {
                            account_id: request.account_id.clone(),
                            permission_set_arn: request.permission_set_arn.clone(),
                            principal_type: request.principal_type,
                            principal_id: request.principal_id.clone(),
                        };
                        provisioning.release(&slot_key(&assignment)).await.unwrap();
                        world.assigned.lock().unwrap().insert(assignment);
                        end = end.max(at);
                    }
                    MonitorProgress::InProgress {
                        wait_seconds,
                        polls,
                        ..
                    } => agenda.push(Reverse((
                        at + Duration::seconds(i64::from(wait_seconds)),
                        Happening::Poll { request_id, polls },
                    ))),
                    MonitorProgress::SlotFreed => {}
                }
            }
        }
    }
    *world.meter.advancing.lock().unwrap() = true;
    world.meter.set(end);
    Drained {
        minutes: minutes(start, end),
        applied,
        dlq,
        deferrals,
        most_deferrals,
        feeds,
        peak_outstanding: *provisioning.peak_outstanding.lock().unwrap(),
        busiest_second: per_second.values().copied().max().unwrap_or(0),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let size = Size {
        accounts: 2_000,
        permission_sets: 500,
        groups: 5_000,
        workloads: 1_700,
    };
    let inputs = organisation(size);
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
    println!(
        "organisation: {} accounts, {} permission sets, {} groups, {} users",
        inputs.accounts.len(),
        inputs.permission_sets.len(),
        inputs.groups.len(),
        inputs.users.len()
    );
    let desired: HashSet<Assignment> = plan(&SsoModel::default(), &inputs)
        .expect("complete")
        .create
        .into_iter()
        .map(|c| c.assignment)
        .collect();

    for seconds in [(2, 8), (10, 30)] {
        println!(
            "\n=== IAM Identity Center settles each request in {}-{} s ===",
            seconds.0, seconds.1
        );
        let world = World::new(inputs.clone(), start);
        let mut longest = Longest::default();

        // The first run: nothing is assigned.
        let (record, pieces) = full_run(&world, Mode::Apply, "run-first", &mut longest).await;
        let read = minutes(start, world.now());
        let Outcome::Applying { creates, .. } = record.outcome else {
            panic!("the first run applies, got {:?}", record.outcome);
        };
        print_calls(
            &format!(
                "first full run: read and planned in {read:.1} min, {pieces} READ pieces, {creates} creates"
            ),
            &world.meter.calls(),
        );
        world.meter.reset_calls();
        let drained = drain(&world, "run-first", seconds, &mut longest).await;
        println!(
            "drain: {} creates applied in {:.0} min ({:.1} a minute) with at most {} outstanding and at most {} sso-admin requests in a second; {} QUEUE steps; {} deferrals (at most {} for one change); {} in the DLQ",
            drained.applied,
            drained.minutes,
            drained.applied as f64 / drained.minutes,
            drained.peak_outstanding,
            drained.busiest_second,
            drained.feeds,
            drained.deferrals,
            drained.most_deferrals,
            drained.dlq,
        );
        assert_eq!(drained.dlq, 0, "nothing waits its way to the DLQ");
        assert_eq!(
            *world.assigned.lock().unwrap(),
            desired,
            "the drain makes exactly the desired set"
        );
        print_calls("drain calls", &world.meter.calls());

        // A steady run: everything is assigned.
        world.meter.reset_calls();
        let from = world.now();
        let (record, pieces) = full_run(&world, Mode::Apply, "run-steady", &mut longest).await;
        let record = if matches!(record.outcome, Outcome::Applying { .. }) {
            queue_step(&world.ports(), "run-steady", usize::MAX)
                .await
                .unwrap()
        } else {
            record
        };
        print_calls(
            &format!(
                "steady full run: {:.1} min, {pieces} READ pieces, outcome {:?}",
                minutes(from, world.now()),
                record.outcome
            ),
            &world.meter.calls(),
        );

        // A one-account event: the account's workload tag changed.
        world.meter.reset_calls();
        let from = world.now();
        let account = world.inputs.accounts[3].id.clone();
        let record = replan(
            &SsoModel::default(),
            &world.ports(),
            Run {
                run_id: "run-event".into(),
                trigger: Trigger::Event {
                    event_id: "e-1".into(),
                    event_name: "TagResource".into(),
                },
                scope: Scope::Account {
                    account_id: account.clone(),
                },
                mode: Mode::Apply,
                now: from,
            },
            &Refresh::Account {
                account_id: account,
            },
        )
        .await
        .expect("the event run is recorded");
        longest.saw("an event run", from, world.now());
        print_calls(
            &format!(
                "one-account event: {:.1} s, outcome {:?}",
                (world.now() - from).num_milliseconds() as f64 / 1e3,
                record.outcome
            ),
            &world.meter.calls(),
        );
        println!(
            "longest invocation: {} took {:.0} s of the reconcile function's {RECONCILE_TIMEOUT:.0} s ({:.0}%)",
            longest.what,
            longest.seconds,
            100.0 * longest.seconds / RECONCILE_TIMEOUT
        );
        assert!(longest.seconds < RECONCILE_TIMEOUT / 2.0);

        // The same first run with every change queued at once, as before the feed.
        let mut before = World::new(inputs.clone(), start);
        before.blind_backlog = true;
        let mut ignored = Longest::default();
        full_run(&before, Mode::Apply, "run-first", &mut ignored).await;
        let dumped = drain(&before, "run-first", seconds, &mut ignored).await;
        println!(
            "every change queued at once instead: {} applied, {} in the DLQ, {} deferrals (at most {} for one change)",
            dumped.applied, dumped.dlq, dumped.deferrals, dumped.most_deferrals
        );
    }
    println!(
        "\nASEE published 1,200 operations in 61 minutes ({:.1} a minute)",
        1_200.0 / 61.0
    );
}
