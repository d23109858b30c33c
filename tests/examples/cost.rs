//! What Maestro costs to run, from what it does on the local cloud: the real functions and
//! state machines, wired by infra/template.yaml, count their invocations, time them, and the
//! emulator counts every AWS request they make and every state transition. The monthly cost
//! for 10, 100 and 1,000 accounts is then computed from those counts and AWS's public
//! prices. docs/cost.md shows a run's output and the method.
//!
//! `cargo run -p maestro-tests --example cost` (with `MAESTRO_PYTHON` set, as `make` does).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use maestro_domain::inventory::connection::ResourceType;
use maestro_localcloud::invoke::{InvocationStats, take_invocation_stats};
use maestro_localcloud::stack::FUNCTION_ACCESS_KEY_PREFIX;
use maestro_localcloud::{LocalCloud, seed};
use maestro_tests::{maestro_template, on_local_cloud, operator};
use serde_json::{Value, json};

/// What one piece of work cost, as measured.
#[derive(Debug, Default, Clone)]
struct Measured {
    /// Function logical id → invocations and time.
    invocations: BTreeMap<String, InvocationStats>,
    /// AWS service (signing name) → requests made by Maestro's functions.
    requests: BTreeMap<String, u64>,
    /// DynamoDB requests by operation, which price differently.
    dynamodb: BTreeMap<String, u64>,
    /// Step Functions state transitions (standard workflows bill per transition).
    transitions: u64,
    executions: u64,
}

impl Measured {
    fn invocation_count(&self) -> u64 {
        self.invocations.values().map(|s| s.invocations).sum()
    }

    /// GB-seconds, with each function's memory from the template.
    fn gb_seconds(&self, memory_mb: &BTreeMap<String, u64>) -> f64 {
        self.invocations
            .iter()
            .map(|(id, s)| {
                let mb = memory_mb.get(id).copied().unwrap_or(128) as f64;
                // Lambda bills by the millisecond.
                mb / 1024.0 * s.total.as_secs_f64()
            })
            .sum()
    }

    fn requests_of(&self, service: &str) -> u64 {
        self.requests.get(service).copied().unwrap_or_default()
    }

    fn scaled(&self, factor: f64) -> Scaled {
        Scaled {
            factor,
            measured: self.clone(),
        }
    }
}

struct Scaled {
    factor: f64,
    measured: Measured,
}

/// Empties the counts; what is measured next starts now.
async fn start_counting(cloud: &LocalCloud) -> aws_sdk_sfn::primitives::DateTime {
    take_invocation_stats();
    reqwest::Client::new()
        .delete(format!("{}/moto-api/maestro/calls", cloud.moto_endpoint()))
        .send()
        .await
        .expect("the call counts reset");
    // Step Functions dates have seconds: a second earlier, and no run is missed.
    aws_sdk_sfn::primitives::DateTime::from_secs(chrono::Utc::now().timestamp() - 1)
}

/// What the functions did since `since`, and the state transitions of every execution of
/// the stack's state machines started since then.
async fn measured(cloud: &LocalCloud, since: aws_sdk_sfn::primitives::DateTime) -> Measured {
    let sfn = aws_sdk_sfn::Client::new(cloud.sdk_config());
    let mut executions = Vec::new();
    let machines = sfn
        .list_state_machines()
        .send()
        .await
        .expect("the state machines list");
    for machine in machines.state_machines() {
        let listed = sfn
            .list_executions()
            .state_machine_arn(machine.state_machine_arn())
            .send()
            .await
            .expect("the executions list");
        executions.extend(
            listed
                .executions()
                .iter()
                .filter(|e| e.start_date().secs() >= since.secs())
                .map(|e| e.execution_arn().to_owned()),
        );
    }
    let mut transitions = 0;
    for execution in &executions {
        finished(cloud, execution).await;
        let mut token = None;
        loop {
            let page = sfn
                .get_execution_history()
                .execution_arn(execution)
                .set_next_token(token)
                .send()
                .await
                .expect("the history reads");
            transitions += page
                .events()
                .iter()
                .filter(|e| e.r#type().as_str().ends_with("StateEntered"))
                .count() as u64;
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    let calls: Value = reqwest::get(format!("{}/moto-api/maestro/calls", cloud.moto_endpoint()))
        .await
        .expect("the call counts answer")
        .json()
        .await
        .expect("JSON");
    let mut requests = BTreeMap::new();
    let mut dynamodb = BTreeMap::new();
    for call in calls["calls"].as_array().into_iter().flatten() {
        let key = call["accessKey"].as_str().unwrap_or_default();
        // Maestro's functions, and the roles they assume; not the harness seeding data.
        if !key.starts_with(FUNCTION_ACCESS_KEY_PREFIX)
            && !key.starts_with("ASIA")
            && !key.starts_with("FSIA")
        {
            continue;
        }
        let service = call["service"].as_str().unwrap_or_default().to_owned();
        let count = call["count"].as_u64().unwrap_or_default();
        if service == "dynamodb" {
            *dynamodb
                .entry(call["operation"].as_str().unwrap_or_default().to_owned())
                .or_default() += count;
        }
        *requests.entry(service).or_default() += count;
    }
    Measured {
        invocations: take_invocation_stats(),
        requests,
        dynamodb,
        transitions,
        executions: executions.len() as u64,
    }
}

async fn finished(cloud: &LocalCloud, execution: &str) {
    let sfn = aws_sdk_sfn::Client::new(cloud.sdk_config());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .expect("the execution is described")
            .status
            .as_str()
            .to_owned();
        if status != "RUNNING" {
            return;
        }
        assert!(Instant::now() < deadline, "{execution} ends in time");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What `work` costs, with what it set off asynchronously in the `settle` time after it.
async fn measure(
    cloud: &LocalCloud,
    work: impl std::future::Future<Output = ()>,
    settle: Duration,
) -> Measured {
    // A second apart from the last measurement, so that executions are told apart by their
    // start (Step Functions dates have seconds).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let since = start_counting(cloud).await;
    work.await;
    tokio::time::sleep(settle).await;
    measured(cloud, since).await
}

/// Fires a function's schedule now, as EventBridge would.
async fn fire(cloud: &LocalCloud, function: &str, schedule: &str) {
    cloud
        .fire_schedule(function, schedule)
        .await
        .unwrap_or_else(|e| panic!("{function}'s {schedule} runs: {e:?}"));
}

/// Crawls every resource type of one account in one region now, through the API.
async fn sync(cloud: &LocalCloud, client: &reqwest::Client) {
    let answer: Value = client
        .post(format!("{}/connections/own/sync", cloud.http_endpoint()))
        .send()
        .await
        .expect("the sync starts")
        .json()
        .await
        .expect("JSON");
    let executions: Vec<String> = answer["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["executionArn"].as_str().map(str::to_owned))
        .collect();
    assert!(!executions.is_empty(), "the sync started runs: {answer}");
    for execution in &executions {
        finished(cloud, execution).await;
    }
}

/// Tags an instance of the seeded region `count` times, each change followed by its CloudTrail
/// record on the default bus.
async fn changes_with_events(cloud: &LocalCloud, region: &str, count: u64) {
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(cloud.sdk_config())
            .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
            .build(),
    );
    let described = ec2
        .describe_instances()
        .send()
        .await
        .expect("the instances are described");
    let instance = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id())
        .expect("the sample inventory has an instance")
        .to_owned();
    let bus = aws_sdk_eventbridge::Client::new(cloud.sdk_config());
    for change in 0..count {
        ec2.create_tags()
            .resources(&instance)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("Build")
                    .value(change.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("the instance is tagged");
        let detail = json!({
            "eventVersion": "1.09",
            "eventTime": chrono::Utc::now().to_rfc3339(),
            "eventSource": "ec2.amazonaws.com",
            "eventName": "CreateTags",
            "awsRegion": region,
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/Deployer/ci"},
            "requestParameters": {
                "resourcesSet": {"items": [{"resourceId": instance}]},
                "tagSet": {"items": [{"key": "Build", "value": change.to_string()}]}
            },
            "responseElements": {"_return": true}
        });
        let put = bus
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.ec2")
                    .detail_type("AWS API Call via CloudTrail")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("the event is put");
        assert_eq!(put.failed_entry_count, 0);
    }
}

#[path = "../../shared/domain/benches/support/prices.rs"]
mod price;

/// DynamoDB bills writes and reads by request unit; every item here is under 1 KB, so a
/// write is a unit per item and a read half a unit (eventually consistent) or a unit.
fn dynamodb_cost(ops: &BTreeMap<String, u64>) -> f64 {
    ops.iter()
        .map(|(op, n)| {
            let n = *n as f64;
            match op.as_str() {
                "PutItem" | "UpdateItem" | "DeleteItem" => n * price::DYNAMODB_WRITE,
                // A batch holds up to 25 items; the measured pages hold a few.
                "BatchWriteItem" | "TransactWriteItems" => n * 5.0 * price::DYNAMODB_WRITE,
                "BatchGetItem" => n * 5.0 * price::DYNAMODB_READ,
                _ => n * price::DYNAMODB_READ,
            }
        })
        .sum()
}

fn cost_of(work: &Scaled, memory_mb: &BTreeMap<String, u64>) -> BTreeMap<&'static str, f64> {
    let m = &work.measured;
    let f = work.factor;
    BTreeMap::from([
        (
            "Lambda",
            f * (m.invocation_count() as f64 * price::LAMBDA_REQUEST
                + m.gb_seconds(memory_mb) * price::LAMBDA_GB_SECOND_ARM),
        ),
        (
            "Step Functions",
            f * m.transitions as f64 * price::STATE_TRANSITION,
        ),
        ("DynamoDB", f * dynamodb_cost(&m.dynamodb)),
        (
            "SQS, SNS, EventBridge",
            f * (m.requests_of("sqs") as f64 * price::SQS_REQUEST
                + m.requests_of("sns") as f64 * price::SNS_PUBLISH
                + m.requests_of("events") as f64 * price::EVENTBRIDGE_EVENT),
        ),
    ])
}

fn memory_by_function() -> BTreeMap<String, u64> {
    let template = maestro_template().document;
    let default = template["Globals"]["Function"]["MemorySize"]
        .as_u64()
        .unwrap_or(128);
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| {
            (
                id.clone(),
                r["Properties"]["MemorySize"].as_u64().unwrap_or(default),
            )
        })
        .collect()
}

fn print_measured(name: &str, m: &Measured) {
    let invocations: Vec<String> = m
        .invocations
        .iter()
        .map(|(id, s)| {
            format!(
                "{id} {}× {:.0} ms",
                s.invocations,
                s.total.as_secs_f64() * 1000.0 / s.invocations.max(1) as f64
            )
        })
        .collect();
    println!(
        "| {name} | {} | {} in {} runs | {} | {} |",
        invocations.join("; "),
        m.transitions,
        m.executions,
        m.dynamodb
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        m.requests
            .iter()
            .filter(|(s, _)| *s != "dynamodb")
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn main() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        let client = operator(cloud).await;
        // The stack's own region: the events put on its bus come from there.
        let region = cloud.region().to_owned();
        let region = region.as_str();
        let own = seed::SAMPLE_ACCOUNTS[0];
        seed::sample_inventory_script(cloud.moto_endpoint(), "seed", &[own], &[region])
            .expect("the sample inventory is seeded");
        let created = client
            .post(format!("{}/connections", cloud.http_endpoint()))
            .body(
                json!({"id": "own", "name": "Own", "accountId": own, "regions": [region]})
                    .to_string(),
            )
            .send()
            .await
            .expect("the API answers");
        assert_eq!(created.status(), 201);

        // Discovery: one region of one account, every resource type, first and steady.
        let first = measure(cloud, sync(cloud, &client), Duration::ZERO).await;
        let steady = measure(cloud, sync(cloud, &client), Duration::ZERO).await;
        let tick = measure(
            cloud,
            fire(cloud, "DiscoverySchedulerFunction", "Tick"),
            Duration::ZERO,
        )
        .await;
        // Event refresh: CloudTrail records of a change each, as a member account forwards
        // them; every one changes the instance it names.
        let refreshes = measure(
            cloud,
            changes_with_events(cloud, region, EVENTS_MEASURED),
            Duration::from_secs(5),
        )
        .await;
        let refreshed = refreshes
            .invocations
            .get("DiscoveryEventsFunction")
            .map_or(0, |s| s.invocations);
        assert_eq!(
            refreshed, EVENTS_MEASURED,
            "every event reached DiscoveryEventsFunction"
        );

        // SSO: a scheduled reconcile of the sample organisation, with its changes applied; the
        // worker and the monitor take the queued changes asynchronously.
        let organisation = seed::sample_organisation(cloud.sdk_config())
            .await
            .expect("the sample organisation is seeded");
        let accounts = organisation.accounts.len() as f64;
        let reconcile_now = || fire(cloud, "SsoReconcileFunction", "Reconcile");
        let first_reconcile = measure(cloud, reconcile_now(), Duration::from_secs(10)).await;
        let reconcile = measure(cloud, reconcile_now(), Duration::from_secs(5)).await;

        println!("## Measured\n");
        println!(
            "| Work | Invocations (count, mean time) | State transitions | DynamoDB requests | Other requests |"
        );
        println!("|---|---|---|---|---|");
        print_measured(
            "first crawl, 1 account × 1 region, 11 resource types",
            &first,
        );
        print_measured("steady crawl, the same", &steady);
        print_measured("scheduler tick, nothing due", &tick);
        print_measured(
            &format!("{EVENTS_MEASURED} events, each a change to an instance"),
            &refreshes,
        );
        print_measured(
            &format!("first SSO reconcile, {accounts} accounts, applied"),
            &first_reconcile,
        );
        print_measured(
            &format!("steady SSO reconcile, {accounts} accounts"),
            &reconcile,
        );

        // A month at the defaults: each resource type crawled at its own interval (a global
        // type once per account, the others in each region), a scheduler tick every 5
        // minutes, a reconcile every hour, and the events of a moderately busy account.
        let minutes_per_month = 30.0 * 24.0 * 60.0;
        let scope_crawls_per_account: f64 = ResourceType::ALL
            .iter()
            .map(|t| {
                let regions = if t.is_global() {
                    1.0
                } else {
                    f64::from(REGIONS)
                };
                regions * minutes_per_month / f64::from(t.default_interval_minutes())
            })
            .sum();
        let measured_scopes = ResourceType::ALL.len() as f64;
        let memory = memory_by_function();
        // A forwarded event is a custom event on the member account's bill.
        let event_cost = |events: f64| {
            sum(&cost_of(
                &refreshes.scaled(events / EVENTS_MEASURED as f64),
                &memory,
            )) + events * price::EVENTBRIDGE_EVENT
        };
        println!("\n## Monthly cost (dollars), {REGIONS} regions per account\n");
        println!(
            "| Accounts | Discovery crawls | Event refresh | Scheduler | SSO reconcile | Fixed | Total | Per account |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for accounts_n in [10.0, 100.0, 1000.0] {
            let crawls = accounts_n * scope_crawls_per_account;
            let crawl = sum(&cost_of(&steady.scaled(crawls / measured_scopes), &memory));
            let events = accounts_n * EVENTS_PER_ACCOUNT_MONTH;
            let refresh = event_cost(events);
            let scheduler = sum(&cost_of(&tick.scaled(minutes_per_month / 5.0), &memory));
            let sso = sum(&cost_of(
                &reconcile.scaled(30.0 * 24.0 * accounts_n / accounts),
                &memory,
            ));
            let invocations = crawls + events + minutes_per_month / 5.0 + 30.0 * 24.0;
            let fixed = 2.0 * price::KMS_KEY_MONTH
                + price::SECRET_MONTH
                + ALARMS * price::ALARM_MONTH
                + invocations * LOG_BYTES_PER_INVOCATION / 1e9 * price::LOG_GB;
            let total = crawl + refresh + scheduler + sso + fixed;
            println!(
                "| {accounts_n:.0} | {crawl:.2} | {refresh:.2} | {scheduler:.2} | {sso:.2} | {fixed:.2} | {total:.2} | {:.3} |",
                total / accounts_n
            );
        }
        println!("\nScope crawls per account and month: {scope_crawls_per_account:.0}.");
        println!("\nEvent refresh per account and month, by events a month:\n");
        for events in [1_000.0, 3_000.0, 10_000.0, 30_000.0] {
            println!("- {events:.0}: {:.3}", event_cost(events));
        }
        let crawls = 1000.0 * scope_crawls_per_account;
        println!("\nDiscovery crawls at 1,000 accounts, by service (dollars a month):\n");
        for (service, dollars) in cost_of(&steady.scaled(crawls / measured_scopes), &memory) {
            println!("- {service}: {dollars:.2}");
        }
    });
}

/// Regions crawled in each account.
const REGIONS: u32 = 4;
/// Events measured, each a change.
const EVENTS_MEASURED: u64 = 20;
/// Forwarded events an account makes in a month: about a hundred changes to crawled resources
/// a day (deployments, scaling, tagging). docs/cost.md shows the cost at other rates.
const EVENTS_PER_ACCOUNT_MONTH: f64 = 3_000.0;
/// The template's alarms.
const ALARMS: f64 = 10.0;
/// Log volume: about four JSON lines of 300 bytes per invocation.
const LOG_BYTES_PER_INVOCATION: f64 = 1_200.0;

fn sum(costs: &BTreeMap<&'static str, f64>) -> f64 {
    costs.values().sum()
}
