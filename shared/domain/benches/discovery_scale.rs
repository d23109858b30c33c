//! Discovery of a 500-account organisation crawled in 4 regions, in virtual time: the
//! scheduler's real admission of due scopes under the cap on crawlers
//! (`maestro_domain::inventory::runs`), runs shaped as the state machine is (a Map of
//! `DiscoveryMaxConcurrency` crawls, each a loop of crawler calls), and each call the real
//! `crawl_step`, against fakes of the cloud and of the inventory table that charge every call
//! its latency and hold EC2 to its request rate per account and region. Nothing sleeps: two
//! virtual days take a minute or two.
//!
//! Prints the peak of concurrent crawlers against the cap, the time to a complete first
//! inventory, and what a steady day costs per account-month at the defaults (a daily sweep of
//! every type). Run with `cargo bench -p maestro-domain --bench discovery_scale`.
//!
//! Assumed figures (AWS publishes EC2's request rates, not latencies): see [`Latency`].

#[path = "support/prices.rs"]
mod price;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use maestro_domain::inventory::changes::Manifest;
use maestro_domain::inventory::connection::{
    Connection, OrganizationTemplate, ResourceType, Scope, organization_connection,
};
use maestro_domain::inventory::crawl::{
    CrawlSettings, CrawlState, Cursor, InventoryStore, Named, Page, Provider, ProviderError,
    Refused, SCOPE_LEASE, ScopeLeases, Stored, Target, Write, crawl_step,
};
use maestro_domain::inventory::entity::Entity;
use maestro_domain::inventory::lifecycle::Schedule;
use maestro_domain::inventory::memory::MemoryStore;
use maestro_domain::inventory::runs::{Admitted, CrawlerCap, DueScope, admit};
use maestro_domain::inventory::synthetic;
use maestro_domain::port::PortError;
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant, sleep};

const ACCOUNTS: usize = 500;
const REGIONS: [&str; 4] = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2"];
/// The template's defaults.
const CAP: (u32, u32) = (100, 10);
const PAGES_PER_CALL: u32 = 20;
const GONE_AFTER: u32 = 2;
const TICK: Duration = Duration::from_secs(5 * 60);
/// The crawler's memory in the template, in GB.
const CRAWLER_GB: f64 = 0.5;
/// The account's default Lambda concurrency, which every function of the account shares.
const ACCOUNT_CONCURRENCY: usize = 1_000;

/// What each call takes. EC2's is its published rate for describe calls (a bucket of 100,
/// refilled at 20 a second, per account and region); the latencies are assumptions, on the
/// cautious side.
struct Latency;

impl Latency {
    const LAMBDA_INVOKE: Duration = Duration::from_millis(25);
    const STATE_TRANSITION: Duration = Duration::from_millis(20);
    const ASSUME_ROLE: Duration = Duration::from_millis(120);
    const DYNAMODB: Duration = Duration::from_millis(10);
    const EC2_BUCKET: f64 = 100.0;
    const EC2_REFILL_PER_SECOND: f64 = 20.0;

    /// A list call of the type, and how many items it answers at most.
    fn list(resource_type: ResourceType) -> (Duration, usize) {
        let ms = |n| Duration::from_millis(n);
        match resource_type {
            ResourceType::Instances => (ms(400), 1000),
            ResourceType::Volumes | ResourceType::Snapshots | ResourceType::SecurityGroups => {
                (ms(300), 500)
            }
            ResourceType::Images => (ms(600), 1000),
            // Eight describe calls, one per kind.
            ResourceType::Network => (ms(8 * 250), 1000),
            // Balancers, then tags and target groups and health for each.
            ResourceType::LoadBalancers => (ms(250 + 4 * 150), 400),
            ResourceType::Databases => (ms(350), 100),
            // The listing, then a location and tags call per bucket.
            ResourceType::Buckets => (ms(200 + 20 * 2 * 60), 1000),
            ResourceType::Distributions => (ms(300), 100),
            ResourceType::Functions => (ms(250), 50),
        }
    }

    /// EC2's describe calls share the account and region's bucket.
    fn is_ec2(resource_type: ResourceType) -> bool {
        matches!(
            resource_type,
            ResourceType::Instances
                | ResourceType::Volumes
                | ResourceType::Snapshots
                | ResourceType::Images
                | ResourceType::SecurityGroups
                | ResourceType::Network
        )
    }
}

/// Resources per account and region of each type; buckets and distributions per account.
fn resources(resource_type: ResourceType) -> usize {
    match resource_type {
        ResourceType::Instances => 30,
        ResourceType::Volumes => 35,
        ResourceType::Snapshots => 60,
        ResourceType::Images => 5,
        ResourceType::SecurityGroups => 20,
        ResourceType::Network => 25,
        ResourceType::LoadBalancers => 3,
        ResourceType::Databases => 2,
        ResourceType::Functions => 12,
        ResourceType::Buckets => 20,
        ResourceType::Distributions => 2,
    }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

/// Virtual time, as the crawl's dates.
struct Clock {
    started: Instant,
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        base() + chrono::Duration::from_std(self.started.elapsed()).unwrap()
    }
}

/// Calls and units counted, for the cost of a day.
#[derive(Default)]
struct Counters {
    crawler_invocations: AtomicU64,
    /// Crawler time, in virtual milliseconds.
    crawler_ms: AtomicU64,
    transitions: AtomicU64,
    runs: AtomicU64,
    provider_calls: AtomicU64,
    dynamodb_calls: AtomicU64,
    /// Request units, in hundredths (a strongly consistent read of 4 KB is 100).
    read_units: AtomicU64,
    write_units: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    crawler_invocations: u64,
    crawler_ms: u64,
    transitions: u64,
    runs: u64,
    provider_calls: u64,
    dynamodb_calls: u64,
    read_units: u64,
    write_units: u64,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            crawler_invocations: get(&self.crawler_invocations),
            crawler_ms: get(&self.crawler_ms),
            transitions: get(&self.transitions),
            runs: get(&self.runs),
            provider_calls: get(&self.provider_calls),
            dynamodb_calls: get(&self.dynamodb_calls),
            read_units: get(&self.read_units),
            write_units: get(&self.write_units),
        }
    }
}

impl Snapshot {
    fn since(self, earlier: Snapshot) -> Snapshot {
        Snapshot {
            crawler_invocations: self.crawler_invocations - earlier.crawler_invocations,
            crawler_ms: self.crawler_ms - earlier.crawler_ms,
            transitions: self.transitions - earlier.transitions,
            runs: self.runs - earlier.runs,
            provider_calls: self.provider_calls - earlier.provider_calls,
            dynamodb_calls: self.dynamodb_calls - earlier.dynamodb_calls,
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
        }
    }

    /// Dollars a month, were every day like this one.
    fn monthly_dollars(&self) -> BTreeMap<&'static str, f64> {
        let days = 30.0;
        BTreeMap::from([
            (
                "Lambda",
                days * (self.crawler_invocations as f64 * price::LAMBDA_REQUEST
                    + self.crawler_ms as f64 / 1000.0 * CRAWLER_GB * price::LAMBDA_GB_SECOND_ARM),
            ),
            (
                "Step Functions",
                days * self.transitions as f64 * price::STATE_TRANSITION,
            ),
            (
                "DynamoDB",
                days * (self.read_units as f64 / 100.0 * price::DYNAMODB_READ
                    + self.write_units as f64 / 100.0 * price::DYNAMODB_WRITE),
            ),
        ])
    }
}

/// The organisation's resources: each scope lists its own, and on each day a hundredth of
/// them carry a new `Build` tag, so a steady day has changes to write.
struct Cloud {
    clock: Arc<Clock>,
    counters: Arc<Counters>,
    /// EC2's bucket per account and region: tokens, and when they were counted.
    ec2_buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl Cloud {
    fn entities(&self, target: &Target, resource_type: ResourceType) -> Vec<Entity> {
        let day = (self.clock.now() - base()).num_days();
        (0..resources(resource_type))
            .map(|n| {
                let id = format!("{}-{n:08x}", resource_type.as_str());
                let name = if (n + day as usize).is_multiple_of(100) {
                    format!("{id}-build-{day}")
                } else {
                    id.clone()
                };
                synthetic::instance(&target.account, &target.region, &id, &name)
            })
            .collect()
    }

    /// Waits for a token of the target's EC2 bucket.
    async fn ec2_token(&self, target: &Target) {
        let wait = {
            let mut buckets = self.ec2_buckets.lock().unwrap();
            let now = Instant::now();
            let (tokens, at) = buckets
                .entry((target.account.clone(), target.region.clone()))
                .or_insert((Latency::EC2_BUCKET, now));
            let refilled = (*tokens
                + now.duration_since(*at).as_secs_f64() * Latency::EC2_REFILL_PER_SECOND)
                .min(Latency::EC2_BUCKET);
            let wait = if refilled >= 1.0 {
                0.0
            } else {
                (1.0 - refilled) / Latency::EC2_REFILL_PER_SECOND
            };
            *tokens = refilled - 1.0;
            *at = now;
            wait
        };
        if wait > 0.0 {
            sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

#[async_trait]
impl Provider for Cloud {
    async fn page(
        &self,
        target: &Target,
        resource_type: ResourceType,
        cursor: Option<&Cursor>,
    ) -> Result<Page, ProviderError> {
        let (latency, per_page) = Latency::list(resource_type);
        if Latency::is_ec2(resource_type) {
            self.ec2_token(target).await;
        }
        self.counters.provider_calls.fetch_add(1, Ordering::Relaxed);
        sleep(latency).await;
        let all = self.entities(target, resource_type);
        let from: usize = cursor
            .and_then(|c| c.token.as_deref())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let to = (from + per_page).min(all.len());
        Ok(Page {
            entities: all[from..to].to_vec(),
            next: (to < all.len()).then(|| Cursor {
                step: 0,
                token: Some(to.to_string()),
            }),
        })
    }

    async fn describe(&self, _: &Target, _: &Named) -> Result<Vec<Entity>, ProviderError> {
        Ok(Vec::new())
    }
}

/// The inventory table: the reference store in memory, each call charged its latency and its
/// request units as DynamoDB bills them.
struct Table {
    store: MemoryStore,
    counters: Arc<Counters>,
}

impl Table {
    async fn call(&self, calls: u64, read_units: u64, write_units: u64) {
        let c = &self.counters;
        c.dynamodb_calls.fetch_add(calls, Ordering::Relaxed);
        c.read_units.fetch_add(read_units, Ordering::Relaxed);
        c.write_units.fetch_add(write_units, Ordering::Relaxed);
        sleep(Latency::DYNAMODB * calls.max(1) as u32).await;
    }
}

/// Whole units of `bytes`, in hundredths, for `per_unit`-byte units.
fn units(bytes: usize, per_unit: usize) -> u64 {
    bytes.div_ceil(per_unit).max(1) as u64 * 100
}

#[async_trait]
impl InventoryStore for Table {
    async fn known(&self, ids: &[String]) -> Result<BTreeMap<String, Stored>, PortError> {
        // BatchGetItem of 100 keys, an eventually consistent read of about 2 KB per item.
        let batches = ids.len().div_ceil(100) as u64;
        self.call(batches, ids.len() as u64 * 50, 0).await;
        self.store.known(ids).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<Refused, PortError> {
        // A change is a transaction of the entity (2 KB), its history record and two index
        // items, two units each; the others are one update.
        let mut calls = 0;
        let mut write_units = 0;
        for write in &writes {
            calls += 1;
            write_units += match write {
                Write::Upsert { .. } | Write::Gone { .. } | Write::Retire { .. } => 2 * 5 * 100,
                Write::Refresh { .. } => 2 * 100,
                Write::Seen { .. } | Write::Missed { .. } | Write::Back { .. } => 100,
            };
        }
        self.call(calls, 0, write_units).await;
        self.store.write(writes).await
    }

    async fn record_seen(
        &self,
        run: &str,
        scope: &Scope,
        page: u32,
        ids: &[String],
    ) -> Result<(), PortError> {
        let bytes: usize = ids.iter().map(|id| id.len() + 3).sum();
        self.call(1, 0, units(bytes, 1024)).await;
        self.store.record_seen(run, scope, page, ids).await
    }

    async fn seen(
        &self,
        run: &str,
        scope: &Scope,
    ) -> Result<std::collections::BTreeSet<String>, PortError> {
        let seen = self.store.seen(run, scope).await?;
        let bytes: usize = seen.iter().map(|id| id.len() + 3).sum();
        // Strongly consistent (the conclusion depends on it): a unit per 4 KB.
        self.call(1, units(bytes, 4096), 0).await;
        Ok(seen)
    }

    async fn manifest(&self, scope: &Scope) -> Result<Manifest, PortError> {
        let manifest = self.store.manifest(scope).await?;
        // The byScope index: id, hash and misses, about 200 bytes an entity, eventually
        // consistent.
        self.call(1, units(manifest.len() * 200, 4096) / 2, 0).await;
        Ok(manifest)
    }
}

#[async_trait]
impl ScopeLeases for Table {
    async fn take(
        &self,
        scope: &Scope,
        run: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, PortError> {
        self.call(1, 0, 100).await;
        self.store.take(scope, run, now, until).await
    }

    async fn release(&self, scope: &Scope, run: &str) -> Result<(), PortError> {
        self.call(1, 0, 100).await;
        self.store.release(scope, run).await
    }
}

/// The organisation and what the runs did.
struct Org {
    clock: Arc<Clock>,
    counters: Arc<Counters>,
    cloud: Cloud,
    table: Table,
    connections: BTreeMap<String, Connection>,
    started: Mutex<BTreeMap<String, BTreeMap<String, DateTime<Utc>>>>,
    running: AtomicUsize,
    crawlers: AtomicUsize,
    peak_crawlers: AtomicUsize,
    concluded: Mutex<HashSet<String>>,
    scopes: usize,
    first_inventory: Mutex<Option<Duration>>,
    cap: CrawlerCap,
}

impl Org {
    fn new(clock: Arc<Clock>, cap: CrawlerCap) -> Org {
        let counters = Arc::new(Counters::default());
        let template = OrganizationTemplate {
            role_name: "MaestroDiscovery".into(),
            external_id: "simulated".into(),
            regions: REGIONS.iter().map(|r| (*r).to_owned()).collect(),
            own_account: "000000000000".into(),
        };
        let connections: BTreeMap<String, Connection> = (0..ACCOUNTS)
            .map(|n| {
                let account = format!("{:012}", 100_000_000_000u64 + n as u64);
                let connection =
                    organization_connection(&account, &account, &template, None, base());
                (connection.id.clone(), connection)
            })
            .collect();
        let scopes = connections.values().map(|c| c.scopes().len()).sum();
        Org {
            cloud: Cloud {
                clock: clock.clone(),
                counters: counters.clone(),
                ec2_buckets: Mutex::new(HashMap::new()),
            },
            table: Table {
                store: MemoryStore::default(),
                counters: counters.clone(),
            },
            clock,
            counters,
            connections,
            started: Mutex::new(BTreeMap::new()),
            running: AtomicUsize::new(0),
            crawlers: AtomicUsize::new(0),
            peak_crawlers: AtomicUsize::new(0),
            concluded: Mutex::new(HashSet::new()),
            scopes,
            first_inventory: Mutex::new(None),
            cap,
        }
    }

    /// One scheduler tick: the due scopes, admitted under the cap, started.
    fn tick(self: &Arc<Self>) -> Admitted {
        let now = self.clock.now();
        let mut started = self.started.lock().unwrap();
        let due: Vec<DueScope> = self
            .connections
            .values()
            .flat_map(|connection| {
                Schedule {
                    connection_id: connection.id.clone(),
                    account: connection.account_id.clone(),
                    connection: Some(connection.clone()),
                    started: started.get(&connection.id).cloned().unwrap_or_default(),
                }
                .due(now)
            })
            .collect();
        let admitted = admit(due, self.running.load(Ordering::SeqCst), &self.cap);
        for scope in admitted.runs.iter().flatten() {
            started
                .entry(scope.connection_id.clone())
                .or_default()
                .insert(scope.key(), now);
        }
        for (n, scopes) in admitted.runs.iter().enumerate() {
            self.running.fetch_add(1, Ordering::SeqCst);
            self.counters.runs.fetch_add(1, Ordering::Relaxed);
            let run = format!("{}-{n}", now.format("%Y%m%dT%H%M%SZ"));
            tokio::spawn(self.clone().run(run, scopes.clone()));
        }
        admitted
    }

    /// One execution of the state machine: its Map, each scope a loop of crawler calls, then
    /// the summary.
    async fn run(self: Arc<Self>, run: String, scopes: Vec<Scope>) {
        let map = Arc::new(Semaphore::new(self.cap.per_run as usize));
        self.transition(1).await;
        let mut crawls = Vec::new();
        for scope in scopes {
            let (org, map, run) = (self.clone(), map.clone(), run.clone());
            crawls.push(tokio::spawn(async move {
                let _slot = map.acquire_owned().await.expect("the Map is open");
                org.crawl(&run, scope).await;
            }));
        }
        for crawl in crawls {
            crawl.await.expect("a crawl ends");
        }
        // PublishSummary: a task, and the summary function.
        self.transition(1).await;
        sleep(Latency::LAMBDA_INVOKE + Latency::DYNAMODB).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    async fn transition(&self, count: u64) {
        self.counters
            .transitions
            .fetch_add(count, Ordering::Relaxed);
        sleep(Latency::STATE_TRANSITION * count as u32).await;
    }

    async fn crawl(&self, run: &str, scope: Scope) {
        let connection = &self.connections[&scope.connection_id];
        let target = connection.target(&scope.region);
        let settings = CrawlSettings {
            pages_per_call: PAGES_PER_CALL,
            gone_after: GONE_AFTER,
            lease: SCOPE_LEASE,
        };
        let mut state = CrawlState::start(run, scope.clone(), false);
        let mut first_call = true;
        loop {
            let crawlers = self.crawlers.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak_crawlers.fetch_max(crawlers, Ordering::SeqCst);
            let began = Instant::now();
            sleep(Latency::LAMBDA_INVOKE).await;
            if first_call {
                sleep(Latency::ASSUME_ROLE).await;
                first_call = false;
            }
            state = crawl_step(
                &self.cloud,
                &self.table,
                &self.table,
                &target,
                state,
                &settings,
                self.clock.now(),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", scope.key()));
            self.crawlers.fetch_sub(1, Ordering::SeqCst);
            let c = &self.counters;
            c.crawler_invocations.fetch_add(1, Ordering::Relaxed);
            c.crawler_ms
                .fetch_add(began.elapsed().as_millis() as u64, Ordering::Relaxed);
            // CrawlPages and MorePages.
            self.transition(2).await;
            if state.done {
                // ScopeCrawled.
                self.transition(1).await;
                break;
            }
        }
        let mut concluded = self.concluded.lock().unwrap();
        concluded.insert(scope.key());
        if concluded.len() == self.scopes {
            self.first_inventory
                .lock()
                .unwrap()
                .get_or_insert(self.clock.started.elapsed());
        }
    }
}

fn minutes(d: Duration) -> f64 {
    d.as_secs_f64() / 60.0
}

fn main() {
    let wall = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let cap = CrawlerCap::new(CAP.0, CAP.1).expect("the template's cap");
    let (org, day_one, day_two, deferred_peak) = runtime.block_on(async {
        let clock = Arc::new(Clock {
            started: Instant::now(),
        });
        let org = Arc::new(Org::new(clock.clone(), cap));
        let mut deferred_peak = 0;
        let mut marks = Vec::new();
        let day = Duration::from_secs(24 * 3600);
        // Two days of ticks, then the runs they started allowed to end.
        while clock.started.elapsed() < 2 * day {
            if clock.started.elapsed() >= day * marks.len() as u32 {
                marks.push(org.counters.snapshot());
            }
            let admitted = org.tick();
            deferred_peak = deferred_peak.max(admitted.deferred);
            sleep(TICK).await;
        }
        marks.push(org.counters.snapshot());
        while org.running.load(Ordering::SeqCst) > 0 {
            sleep(TICK).await;
        }
        (
            org,
            marks[1].since(marks[0]),
            marks[2].since(marks[1]),
            deferred_peak,
        )
    });
    let peak = org.peak_crawlers.load(Ordering::SeqCst);
    assert!(
        peak <= cap.crawlers as usize,
        "{peak} crawlers at once, over the cap of {}",
        cap.crawlers
    );
    let first = org
        .first_inventory
        .lock()
        .unwrap()
        .expect("every scope was crawled");
    let entities = org.table.store.rows.lock().unwrap().len();
    println!(
        "{ACCOUNTS} accounts × {} regions: {} scopes, {entities} entities; cap {} crawlers, {} per run",
        REGIONS.len(),
        org.scopes,
        cap.crawlers,
        cap.per_run
    );
    println!(
        "- peak concurrent crawlers: {peak} (cap {}, account concurrency {ACCOUNT_CONCURRENCY})",
        cap.crawlers
    );
    println!("- most due scopes left for a later tick: {deferred_peak}");
    println!("- first complete inventory: {:.0} min", minutes(first));
    for (name, day) in [("first day", day_one), ("a steady day", day_two)] {
        let dollars = day.monthly_dollars();
        let total: f64 = dollars.values().sum();
        println!(
            "- {name}: {} runs, {} crawler calls ({:.1} s each on average), {} state transitions, {} provider calls, {} DynamoDB calls",
            day.runs,
            day.crawler_invocations,
            day.crawler_ms as f64 / 1000.0 / day.crawler_invocations.max(1) as f64,
            day.transitions,
            day.provider_calls,
            day.dynamodb_calls,
        );
        println!(
            "  a month of such days: ${total:.2}, ${:.3} per account ({})",
            total / ACCOUNTS as f64,
            dollars
                .iter()
                .map(|(service, d)| format!("{service} ${d:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("(simulated in {:.0} s)", wall.elapsed().as_secs_f64());
}
