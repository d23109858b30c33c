//! Discovery through the template's wiring: connections made over the management API, runs
//! of the real state machine over every scope, the crawler reading the emulator's accounts
//! (the second through an assumed role), the inventory read back over the API and compared
//! with what the emulator holds, listed independently with boto3
//! (`localcloud/moto/sample_inventory.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use maestro_localcloud::{LocalCloud, Stack, moto, seed};
use maestro_tests::iam::granted;
use maestro_tests::{
    OPERATORS, call_as, clear_faults, inject_fault, listen_to_topic, maestro_template,
    on_local_cloud_with, operator, reads_may_be_stale, receive_bodies, signed_in,
};
use serde_json::{Value, json};

const OWN: &str = seed::SAMPLE_ACCOUNTS[0];
const MEMBER: &str = seed::SAMPLE_ACCOUNTS[1];
const REGIONS: [&str; 2] = seed::SAMPLE_REGIONS;
const ROLE: &str = "arn:aws:iam::222222222222:role/MaestroDiscovery";
/// A full run over both sample accounts has about 45 scopes and 3,000 entities per account.
const RUN_PATIENCE: Duration = Duration::from_secs(600);

/// How far behind the emulator's eventually consistent reads lag in these tests: DynamoDB may
/// answer a read that does not ask for consistency, and any read of an index, without the
/// writes of the last moments (issue 15, finding 1).
const READ_LAG: Duration = Duration::from_secs(1);

/// Runs `test` against Maestro's stack, with the template's `parameters` set, on a cloud whose
/// eventually consistent reads lag by [`READ_LAG`].
fn on_lagging_cloud<F, Fut>(parameters: &[(&str, &str)], test: F)
where
    F: FnOnce(&'static LocalCloud, Stack) -> Fut,
    Fut: Future<Output = ()>,
{
    on_local_cloud_with(
        Some(&maestro_template()),
        parameters,
        |cloud, stack| async move {
            reads_may_be_stale(cloud, READ_LAG).await;
            test(cloud, stack.expect("the stack")).await;
        },
    );
}

/// Runs `localcloud/moto/sample_inventory.py` against the emulator.
fn sample_inventory(
    cloud: &LocalCloud,
    command: &str,
    accounts: &[&str],
    regions: &[&str],
) -> Value {
    seed::sample_inventory_script(cloud.moto_endpoint(), command, accounts, regions)
        .unwrap_or_else(|e| panic!("sample_inventory.py {command}: {e}"))
}

/// A management API call as one of Maestro's operators.
async fn call(cloud: &LocalCloud, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(&operator(cloud).await, cloud, method, path, body).await
}

fn connection(id: &str, account: &str, regions: &[&str], types: Option<Value>) -> Value {
    let mut body = json!({
        "id": id,
        "name": format!("Sample {id}"),
        "accountId": account,
        "regions": regions,
    });
    if account != OWN {
        body["roleArn"] = json!(ROLE);
        body["externalId"] = json!("maestro-sample");
    }
    if let Some(types) = types {
        body["resourceTypes"] = types;
    }
    body
}

async fn connect(cloud: &LocalCloud, body: Value) {
    let (status, answer) = call(cloud, "POST", "/connections", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
}

/// The summary of a finished run, from its execution's output.
async fn finished(cloud: &LocalCloud, execution_arn: &str) -> Value {
    let sfn = aws_sdk_sfn::Client::new(cloud.sdk_config());
    let deadline = Instant::now() + RUN_PATIENCE;
    loop {
        let execution = sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .expect("the execution is described");
        match execution.status.as_str() {
            "RUNNING" => {
                assert!(Instant::now() < deadline, "the run ends in time");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            "SUCCEEDED" => {
                // What the run wrote reaches every read a moment later, as on DynamoDB.
                tokio::time::sleep(READ_LAG).await;
                return serde_json::from_str(execution.output().expect("an output"))
                    .expect("the summary is JSON");
            }
            other => panic!("the run ended {other}: {:?}", execution.cause()),
        }
    }
}

/// Syncs connections now, through the API, and answers each run's summary.
async fn sync(cloud: &LocalCloud, connections: &[&str]) -> Vec<Value> {
    let mut executions = Vec::new();
    for id in connections {
        let (status, answer) = call(cloud, "POST", &format!("/connections/{id}/sync"), None).await;
        assert_eq!(status, 202, "{answer}");
        for run in answer["runs"].as_array().expect("runs") {
            executions.push(
                run["executionArn"]
                    .as_str()
                    .expect("an execution")
                    .to_owned(),
            );
        }
    }
    let mut summaries = Vec::new();
    for execution in executions {
        summaries.push(finished(cloud, &execution).await);
    }
    summaries
}

fn total(summaries: &[Value], count: &str) -> u64 {
    summaries
        .iter()
        .map(|s| s["totals"][count].as_u64().expect("a count"))
        .sum()
}

/// A count summed over the scopes of one resource type.
fn of_type(summaries: &[Value], resource_type: &str, count: &str) -> u64 {
    summaries
        .iter()
        .flat_map(|s| s["results"].as_array().expect("results").clone())
        .filter(|r| r["scope"]["resourceType"] == resource_type)
        .map(|r| r["counts"][count].as_u64().expect("a count"))
        .sum()
}

fn failed_scopes(summaries: &[Value]) -> Vec<Value> {
    summaries
        .iter()
        .flat_map(|s| s["results"].as_array().expect("results").clone())
        .filter(|r| r["failed"] == true)
        .collect()
}

/// Every entity the API lists for `query`, following the cursor.
async fn listed(cloud: &LocalCloud, query: &str) -> Vec<Value> {
    let mut entities = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/inventory?{query}&limit=500");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = call(cloud, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        entities.extend(
            page["entities"]
                .as_array()
                .expect("entities")
                .iter()
                .cloned(),
        );
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return entities,
        }
    }
}

async fn inventory_by_family(
    cloud: &LocalCloud,
    account: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entity in listed(cloud, &format!("account={account}&active=true")).await {
        families
            .entry(entity["family"].as_str().expect("a family").to_owned())
            .or_default()
            .insert(entity["id"].as_str().expect("an id").to_owned());
    }
    families
}

fn emulator_by_family(expected: &Value) -> BTreeMap<String, BTreeSet<String>> {
    expected
        .as_object()
        .expect("families")
        .iter()
        .map(|(family, ids)| {
            let ids = ids
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_str().expect("an id").to_owned())
                .collect();
            (family.clone(), ids)
        })
        .filter(|(_, ids): &(String, BTreeSet<String>)| !ids.is_empty())
        .collect()
}

fn encoded(id: &str) -> String {
    id.replace('/', "%2F")
}

async fn entity(cloud: &LocalCloud, id: &str) -> Value {
    let (status, answer) = call(cloud, "GET", &format!("/inventory/{}", encoded(id)), None).await;
    assert_eq!(status, 200, "{id}: {answer}");
    answer
}

async fn history(cloud: &LocalCloud, id: &str) -> Vec<Value> {
    let (status, answer) = call(
        cloud,
        "GET",
        &format!("/inventory/{}/history", encoded(id)),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["history"].as_array().expect("history").clone()
}

fn targets(answer: &Value, kind: &str) -> BTreeSet<String> {
    answer["relations"]["outgoing"]
        .as_array()
        .expect("outgoing relations")
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["target"].as_str().expect("a target").to_owned())
        .collect()
}

fn sources(answer: &Value, kind: &str) -> BTreeSet<String> {
    answer["relations"]["incoming"]
        .as_array()
        .expect("incoming relations")
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["source"].as_str().expect("a source").to_owned())
        .collect()
}

fn ec2(region: &str, account: &str, kind: &str, id: &str) -> String {
    maestro_domain::inventory::entity::ids::ec2(region, account, kind, id)
}

/// The inventory table's item writes since the log was last emptied, as (PK, SK).
async fn inventory_writes(cloud: &LocalCloud, stack: &Stack) -> Vec<(String, String)> {
    let table = stack
        .output("InventoryTableName")
        .expect("the inventory table");
    let log: Value = reqwest::get(format!(
        "{}/moto-api/maestro/dynamodb-writes",
        cloud.moto_endpoint()
    ))
    .await
    .expect("the write log answers")
    .json()
    .await
    .expect("JSON");
    log["writes"]
        .as_array()
        .expect("writes")
        .iter()
        .filter(|w| w["table"] == table)
        .map(|w| {
            (
                w["key"]["PK"].as_str().unwrap_or_default().to_owned(),
                w["key"]["SK"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn forget_writes(cloud: &LocalCloud) {
    reqwest::Client::new()
        .delete(format!(
            "{}/moto-api/maestro/dynamodb-writes",
            cloud.moto_endpoint()
        ))
        .send()
        .await
        .expect("the write log empties");
}

fn entity_or_history((_, sk): &(String, String)) -> bool {
    sk == "ENTITY" || sk.starts_with("H#")
}

fn ec2_client(cloud: &LocalCloud, region: &str) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::config::Builder::from(cloud.sdk_config())
        .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

async fn tag(cloud: &LocalCloud, region: &str, resource: &str, key: &str, value: &str) {
    ec2_client(cloud, region)
        .create_tags()
        .resources(resource)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build(),
        )
        .send()
        .await
        .expect("the tag is set");
}

async fn terminate(cloud: &LocalCloud, region: &str, instance: &str) {
    ec2_client(cloud, region)
        .terminate_instances()
        .instance_ids(instance)
        .send()
        .await
        .expect("the instance terminates");
}

fn seeded<'a>(seed: &'a Value, account: &str, region: &str, what: &str) -> &'a str {
    seed[account]["regions"][region][what]
        .as_str()
        .unwrap_or_else(|| panic!("the seed made a {what}"))
}

#[test]
fn a_sync_inventories_two_accounts_in_two_regions_as_the_emulator_holds_them() {
    on_lagging_cloud(&[], |cloud, stack| async move {
        let seed = sample_inventory(cloud, "seed", &[OWN, MEMBER], &REGIONS);
        connect(cloud, connection("own", OWN, &REGIONS, None)).await;
        connect(cloud, connection("member", MEMBER, &REGIONS, None)).await;
        let runs_topic = stack
            .output("DiscoveryRunsTopicArn")
            .expect("the runs topic");
        let summaries_queue = listen_to_topic(cloud, runs_topic, "discovery-runs").await;

        let first = sync(cloud, &["own", "member"]).await;
        assert!(
            failed_scopes(&first).is_empty(),
            "{:?}",
            failed_scopes(&first)
        );
        let published = receive_bodies(cloud, &summaries_queue, 2, Duration::from_secs(20)).await;
        assert_eq!(published.len(), 2, "one summary per run on the topic");

        // Exactly what the emulator holds, account by account and family by family.
        let emulator = sample_inventory(cloud, "expected", &[OWN, MEMBER], &REGIONS);
        let mut everything = 0;
        for account in [OWN, MEMBER] {
            let want = emulator_by_family(&emulator[account]);
            let have = inventory_by_family(cloud, account).await;
            assert_eq!(
                have.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{account}: the families"
            );
            for (family, ids) in &want {
                assert_eq!(&have[family], ids, "{account}: {family}");
            }
            everything += want.values().map(BTreeSet::len).sum::<usize>();
        }
        assert_eq!(total(&first, "created") as usize, everything);
        // The whole inventory, unfiltered, pages to its end (issue 15, finding 12: a page of
        // the table's scan that stopped on a history or crawl item answered a cursor its own
        // continuation refused).
        let unfiltered = listed(cloud, "").await;
        let ids: BTreeSet<&str> = unfiltered
            .iter()
            .map(|e| e["id"].as_str().expect("an id"))
            .collect();
        assert_eq!(
            (ids.len(), unfiltered.len()),
            (everything, everything),
            "every entity once"
        );

        // Relations both ways, in the member account reached through its role.
        let region = "eu-west-1";
        let instance = ec2(
            region,
            MEMBER,
            "instance",
            seeded(&seed, MEMBER, region, "instance"),
        );
        let volume = ec2(
            region,
            MEMBER,
            "volume",
            seeded(&seed, MEMBER, region, "volume"),
        );
        let group = ec2(
            region,
            MEMBER,
            "security-group",
            seeded(&seed, MEMBER, region, "securityGroup"),
        );
        let server = entity(cloud, &instance).await;
        assert_eq!(server["entity"]["account"], MEMBER);
        assert_eq!(server["entity"]["name"], "sample-web-1");
        assert_eq!(server["entity"]["environment"], "production");
        assert_eq!(server["entity"]["role"], "web");
        assert!(
            targets(&server, "attached-volume").contains(&volume),
            "{server}"
        );
        assert_eq!(
            targets(&server, "security-group"),
            BTreeSet::from([group.clone()])
        );
        assert_eq!(
            targets(&server, "subnet"),
            BTreeSet::from([ec2(
                region,
                MEMBER,
                "subnet",
                seed[MEMBER]["regions"][region]["subnets"][0]
                    .as_str()
                    .expect("a subnet")
            )])
        );
        assert_eq!(
            targets(&server, "vpc"),
            BTreeSet::from([ec2(
                region,
                MEMBER,
                "vpc",
                seeded(&seed, MEMBER, region, "vpc")
            )])
        );
        let balancers = sources(&server, "target");
        let alb = seeded(&seed, MEMBER, region, "loadBalancer").to_owned();
        let classic =
            format!("arn:aws:elasticloadbalancing:{region}:{MEMBER}:loadbalancer/sample-classic");
        assert!(
            balancers.contains(&alb) && balancers.contains(&classic),
            "{balancers:?}: {} {}",
            entity(cloud, &alb).await,
            entity(cloud, &classic).await
        );
        let volume_answer = entity(cloud, &volume).await;
        assert_eq!(
            sources(&volume_answer, "attached-volume"),
            BTreeSet::from([instance.clone()])
        );
        assert_eq!(
            sources(&volume_answer, "snapshot-of"),
            BTreeSet::from([ec2(
                region,
                MEMBER,
                "snapshot",
                seeded(&seed, MEMBER, region, "snapshot")
            )])
        );
        let database = entity(cloud, seeded(&seed, MEMBER, region, "database")).await;
        assert_eq!(
            targets(&database, "security-group"),
            BTreeSet::from([group.clone()])
        );
        assert_eq!(targets(&database, "subnet").len(), 2, "{database}");
        let group_answer = entity(cloud, &group).await;
        let members = sources(&group_answer, "security-group");
        assert!(
            members.contains(&instance) && members.contains(&alb),
            "{group_answer}"
        );

        // Listing by tag finds what the whole listing holds with that tag.
        let tagged: BTreeSet<String> = listed(cloud, &format!("account={MEMBER}"))
            .await
            .iter()
            .filter(|e| e["tags"]["Environment"] == "production")
            .map(|e| e["id"].as_str().expect("an id").to_owned())
            .collect();
        let by_tag: BTreeSet<String> = listed(
            cloud,
            &format!("tagKey=Environment&tagValue=production&account={MEMBER}"),
        )
        .await
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect();
        assert!(tagged.len() > 5, "{tagged:?}");
        assert_eq!(by_tag, tagged);

        // The summary counts what the inventory lists.
        let (status, summary) = call(cloud, "GET", "/inventory/summary", None).await;
        assert_eq!(status, 200, "{summary}");
        let member_count: usize = emulator_by_family(&emulator[MEMBER])
            .values()
            .map(BTreeSet::len)
            .sum();
        assert_eq!(
            summary["counts"]["account"][MEMBER].as_u64(),
            Some(member_count as u64),
            "{summary}"
        );

        // CSV export, a page at a time.
        let response = operator(cloud)
            .await
            .get(format!(
                "{}/inventory/export?format=csv&family=server&limit=2",
                cloud.http_endpoint()
            ))
            .send()
            .await
            .expect("the export answers");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with("text/csv")
        );
        let next = response
            .headers()
            .get("maestro-next-cursor")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.text().await.expect("CSV");
        let rows: Vec<&str> = body.lines().collect();
        assert!(rows[0].starts_with("id,family,providerType,account,region"));
        assert!(rows.len() <= 3 && rows.len() > 1, "{body}");
        assert!(
            next.is_some(),
            "four servers make more than one page of two"
        );

        // Nothing changed: a second sync writes no entity and no history.
        forget_writes(cloud).await;
        let second = sync(cloud, &["own", "member"]).await;
        assert!(failed_scopes(&second).is_empty());
        assert_eq!(
            (
                total(&second, "created"),
                total(&second, "changed"),
                total(&second, "gone")
            ),
            (0, 0, 0)
        );
        assert_eq!(total(&second, "seen") as usize, everything);
        let writes: Vec<_> = inventory_writes(cloud, &stack)
            .await
            .into_iter()
            .filter(entity_or_history)
            .collect();
        assert!(writes.is_empty(), "an unchanged inventory wrote {writes:?}");
    });
}

#[test]
fn discovery_starts_no_more_runs_than_its_cap_on_crawlers_leaves_room_for() {
    // Issue 15, finding 8: nothing bounded the runs together; at 500 accounts a tick started
    // more crawlers than the account's Lambda concurrency.
    let cap = [
        ("DiscoveryMaxConcurrency", "1"),
        ("DiscoveryMaxCrawlers", "1"),
    ];
    on_lagging_cloud(&cap, |cloud, _| async move {
        let region = "eu-west-1";
        sample_inventory(cloud, "seed", &[OWN], &[region]);
        for id in ["own", "again"] {
            connect(cloud, connection(id, OWN, &[region], None)).await;
        }
        let (status, first) = call(cloud, "POST", "/connections/own/sync", None).await;
        assert_eq!(status, 202, "{first}");
        let execution = first["runs"][0]["executionArn"]
            .as_str()
            .expect("an execution")
            .to_owned();

        // While the one run allowed is crawling, neither a sync nor the schedule starts another.
        let (status, refused) = call(cloud, "POST", "/connections/again/sync", None).await;
        assert_eq!(status, 429, "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains("cap of 1 crawlers") && m.contains("1 runs going")),
            "{refused}"
        );
        let scheduled = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(scheduled["runs"], json!([]), "{scheduled}");
        assert_eq!(scheduled["running"], 1, "{scheduled}");
        let scopes = maestro_domain::inventory::connection::ResourceType::ALL.len();
        // The first connection's scopes are not due: the sync started them.
        assert_eq!(scheduled["deferred"], scopes, "{scheduled}");

        // Once it ends, the next tick starts the scopes it left.
        let summary = finished(cloud, &execution).await;
        assert_eq!(summary["failedScopes"], 0, "{summary}");
        let scheduled = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(scheduled["deferred"], 0, "{scheduled}");
        let runs = scheduled["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{scheduled}");
        assert_eq!(runs[0]["scopes"], scopes, "{scheduled}");
        finished(
            cloud,
            runs[0]["executionArn"].as_str().expect("an execution"),
        )
        .await;
    });
}

#[test]
fn a_tag_change_is_one_change_and_a_terminated_instance_is_gone_after_two_complete_crawls() {
    on_lagging_cloud(&[], |cloud, stack| async move {
        let region = "eu-west-1";
        let seed = sample_inventory(cloud, "seed", &[OWN], &[region]);
        connect(
            cloud,
            connection(
                "own",
                OWN,
                &[region],
                Some(json!({"instances": 15, "volumes": 60})),
            ),
        )
        .await;
        // The schedule starts the first run: both scopes are due.
        let scheduled = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        let runs = scheduled["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{scheduled}");
        let first = finished(
            cloud,
            runs[0]["executionArn"].as_str().expect("an execution"),
        )
        .await;
        assert_eq!(first["failedScopes"], 0, "{first}");
        assert_eq!(first["scopes"], 2);
        let again = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("runs");
        assert_eq!(again["runs"], json!([]), "nothing is due again so soon");

        let instance_id = seeded(&seed, OWN, region, "instance");
        let instance = ec2(region, OWN, "instance", instance_id);
        tag(cloud, region, instance_id, "Name", "sample-web-renamed").await;
        forget_writes(cloud).await;
        let renamed = sync(cloud, &["own"]).await;
        assert_eq!(total(&renamed, "changed"), 1, "{renamed:?}");
        let entity_writes: Vec<_> = inventory_writes(cloud, &stack)
            .await
            .into_iter()
            .filter(entity_or_history)
            .collect();
        assert_eq!(
            entity_writes.len(),
            2,
            "one entity and one history record: {entity_writes:?}"
        );
        let records = history(cloud, &instance).await;
        assert_eq!(records.len(), 2, "created, then changed");
        assert_eq!(records[0]["change"], "CHANGED", "newest first");
        assert_eq!(records[0]["source"]["kind"], "api-sync");
        assert_eq!(records[1]["source"]["kind"], "scheduled-sync");
        let diff = records[0]["diff"].as_array().expect("a diff");
        assert_eq!(
            diff,
            &vec![
                json!({"kind": "CHANGED", "path": "name", "old": "sample-web-1", "new": "sample-web-renamed"}),
                json!({"kind": "CHANGED", "path": "tags.Name", "old": "sample-web-1", "new": "sample-web-renamed"}),
            ]
        );

        terminate(cloud, region, instance_id).await;
        let missed = sync(cloud, &["own"]).await;
        // Its root volume went with it (moto deletes it on termination, as EC2 does).
        assert_eq!(
            (
                of_type(&missed, "instances", "missing"),
                total(&missed, "gone")
            ),
            (1, 0)
        );
        assert_eq!(entity(cloud, &instance).await["entity"]["active"], true);
        let gone = sync(cloud, &["own"]).await;
        assert_eq!(of_type(&gone, "instances", "gone"), 1);
        let tombstone = entity(cloud, &instance).await;
        assert_eq!(tombstone["entity"]["active"], false);
        assert_eq!(tombstone["entity"]["status"], "gone");
        let records = history(cloud, &instance).await;
        assert_eq!(records[0]["change"], "GONE");
        assert!(
            records[0]["diff"]
                .as_array()
                .expect("a diff")
                .contains(&json!({"kind": "CHANGED", "path": "active", "old": true, "new": false})),
            "{records:?}"
        );
        let listed_active = listed(cloud, "family=server&active=true").await;
        assert!(listed_active.iter().all(|e| e["id"] != instance.as_str()));
    });
}

#[test]
fn an_unchanged_estate_crawled_again_misses_nothing_although_reads_lag() {
    // Issue 15, finding 1: the conclusion read the ids the run had seen without consistency,
    // moments after the last page recorded them, so that page's entities counted a miss on
    // every crawl (and, listings being ordered, the same ones each time).
    on_lagging_cloud(&[], |cloud, _| async move {
        let region = "eu-west-1";
        sample_inventory(cloud, "seed", &[OWN], &[region]);
        connect(
            cloud,
            connection(
                "own",
                OWN,
                &[region],
                Some(json!({"instances": null, "volumes": null, "network": null})),
            ),
        )
        .await;
        let first = sync(cloud, &["own"]).await;
        assert!(failed_scopes(&first).is_empty(), "{first:?}");
        assert!(total(&first, "created") > 0, "{first:?}");
        for _ in 0..2 {
            let again = sync(cloud, &["own"]).await;
            assert_eq!(total(&again, "seen"), total(&first, "seen"), "{again:?}");
            assert_eq!(
                (total(&again, "missing"), total(&again, "gone")),
                (0, 0),
                "{again:?}"
            );
        }
    });
}

/// Writes the lease of `connection`'s instances scope in `region` as another run would hold
/// it, until `until`.
async fn hold_instances_scope(
    cloud: &LocalCloud,
    stack: &Stack,
    connection: &str,
    region: &str,
    until: chrono::DateTime<chrono::Utc>,
) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let scope = maestro_domain::inventory::connection::Scope {
        connection_id: connection.into(),
        account: OWN.into(),
        region: region.into(),
        resource_type: maestro_domain::inventory::connection::ResourceType::Instances,
    };
    aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .put_item()
        .table_name(
            stack
                .output("InventoryTableName")
                .expect("the inventory table"),
        )
        .item("PK", AttributeValue::S(format!("LEASE#{}", scope.key())))
        .item("SK", AttributeValue::S("LEASE".into()))
        .item("holder", AttributeValue::S("another-run".into()))
        .item("until", AttributeValue::N(until.timestamp().to_string()))
        .send()
        .await
        .expect("the lease is written");
}

#[test]
fn a_scope_another_run_is_crawling_is_left_to_it() {
    // Issue 15, finding 3: two runs crawling one scope at once each counted the same absence
    // as a miss, and one real absence turned GONE. A run now leaves a scope whose lease
    // another run holds; a lease its run left behind expires.
    on_lagging_cloud(&[], |cloud, stack| async move {
        let region = "eu-west-1";
        let seed = sample_inventory(cloud, "seed", &[OWN], &[region]);
        connect(
            cloud,
            connection(
                "own",
                OWN,
                &[region],
                // Security groups outlive a terminated instance, which takes its volumes.
                Some(json!({"instances": null, "security-groups": null})),
            ),
        )
        .await;
        let first = sync(cloud, &["own"]).await;
        assert!(failed_scopes(&first).is_empty(), "{first:?}");
        assert_eq!(first[0]["heldScopes"], 0, "{first:?}");
        let instance_id = seeded(&seed, OWN, region, "instance");
        let instance = ec2(region, OWN, "instance", instance_id);
        terminate(cloud, region, instance_id).await;

        let now = chrono::Utc::now();
        hold_instances_scope(
            cloud,
            &stack,
            "own",
            region,
            now + chrono::Duration::hours(1),
        )
        .await;
        for _ in 0..2 {
            let held = sync(cloud, &["own"]).await;
            assert_eq!(held[0]["heldScopes"], 1, "{held:?}");
            let instances: Vec<&Value> = held[0]["results"]
                .as_array()
                .expect("results")
                .iter()
                .filter(|r| r["scope"]["resourceType"] == "instances")
                .collect();
            assert_eq!(instances.len(), 1, "{held:?}");
            assert_eq!(instances[0]["heldBy"], "another-run", "{held:?}");
            assert_eq!(instances[0]["pages"], 0, "{held:?}");
            assert_eq!(
                of_type(&held, "security-groups", "seen"),
                of_type(&first, "security-groups", "seen")
            );
            assert_eq!((total(&held, "missing"), total(&held, "gone")), (0, 0));
            assert_eq!(entity(cloud, &instance).await["entity"]["active"], true);
        }

        // The other run stopped without freeing the scope: its lease expires.
        hold_instances_scope(
            cloud,
            &stack,
            "own",
            region,
            now - chrono::Duration::minutes(1),
        )
        .await;
        let free = sync(cloud, &["own"]).await;
        assert_eq!(free[0]["heldScopes"], 0, "{free:?}");
        assert_eq!(of_type(&free, "instances", "missing"), 1, "{free:?}");
        let again = sync(cloud, &["own"]).await;
        assert_eq!(of_type(&again, "instances", "gone"), 1, "{again:?}");
        assert_eq!(entity(cloud, &instance).await["entity"]["active"], false);
    });
}

/// Each scope's last crawl, as `GET /connections/{id}` answers it, by region and type.
async fn scope_crawls(cloud: &LocalCloud, id: &str) -> BTreeMap<(String, String), Value> {
    let (status, answer) = call(cloud, "GET", &format!("/connections/{id}"), None).await;
    assert_eq!(status, 200, "{answer}");
    answer["crawls"]
        .as_array()
        .expect("crawls")
        .iter()
        .map(|c| {
            let key = |name: &str| c[name].as_str().expect("a scope").to_owned();
            ((key("region"), key("resourceType")), c.clone())
        })
        .collect()
}

/// Requests Maestro's functions made since the counts were reset, by operation of `service`.
async fn function_calls(cloud: &LocalCloud, service: &str) -> BTreeMap<String, u64> {
    let calls: Value = reqwest::get(format!("{}/moto-api/maestro/calls", cloud.moto_endpoint()))
        .await
        .expect("the call counts answer")
        .json()
        .await
        .expect("JSON");
    let mut counted = BTreeMap::new();
    for call in calls["calls"].as_array().into_iter().flatten() {
        let key = call["accessKey"].as_str().unwrap_or_default();
        if !key.starts_with(maestro_localcloud::stack::FUNCTION_ACCESS_KEY_PREFIX)
            || call["service"] != service
        {
            continue;
        }
        *counted
            .entry(call["operation"].as_str().unwrap_or_default().to_owned())
            .or_default() += call["count"].as_u64().unwrap_or_default();
    }
    counted
}

/// Two subnets of the region, for a load balancer.
async fn two_subnets(cloud: &LocalCloud, region: &str) -> Vec<String> {
    ec2_client(cloud, region)
        .describe_subnets()
        .send()
        .await
        .expect("the subnets")
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_owned))
        .take(2)
        .collect()
}

#[test]
fn a_balancer_an_event_names_twice_is_recorded_whole() {
    // Review of finding 9: CreateLoadBalancer's record names the balancer by its name and by
    // its ARN; described twice, its second copy had no tags and was the one written.
    on_lagging_cloud(&[], |cloud, _| async move {
        let region = cloud.region().to_owned();
        let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(cloud.sdk_config());
        connect(
            cloud,
            connection(
                "own",
                OWN,
                &[&region],
                Some(json!({"load-balancers": null})),
            ),
        )
        .await;
        let subnets = two_subnets(cloud, &region).await;
        let created = elbv2
            .create_load_balancer()
            .name("checkout")
            .set_subnets(Some(subnets))
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key("Environment")
                    .value("production")
                    .build(),
            )
            .send()
            .await
            .expect("a balancer");
        let arn = created.load_balancers()[0]
            .load_balancer_arn()
            .expect("an ARN")
            .to_owned();
        let detail = json!({
            "eventName": "CreateLoadBalancer",
            "awsRegion": region,
            "requestParameters": {"name": "checkout", "type": "application"},
            "responseElements": {"loadBalancers": [
                {"loadBalancerArn": arn, "loadBalancerName": "checkout"}
            ]}
        });
        let put = aws_sdk_eventbridge::Client::new(cloud.sdk_config())
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.elasticloadbalancing")
                    .detail_type("AWS API Call via CloudTrail")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("the event is put");
        assert_eq!(put.failed_entry_count, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, answer) =
                call(cloud, "GET", &format!("/inventory/{}", encoded(&arn)), None).await;
            if status == 200 {
                assert_eq!(
                    answer["entity"]["tags"]["Environment"], "production",
                    "{answer}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "the event recorded {arn}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

#[test]
fn a_page_of_load_balancers_reads_the_regions_target_groups_once() {
    // Issue 15, finding 8: each ELBv2 load balancer cost a DescribeTargetGroups of its own.
    on_lagging_cloud(&[], |cloud, _| async move {
        let region = "eu-west-1";
        sample_inventory(cloud, "seed", &[OWN], &[region]);
        let elbv2 = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::config::Builder::from(cloud.sdk_config())
                .region(aws_sdk_elasticloadbalancingv2::config::Region::new(region))
                .build(),
        );
        let subnets = two_subnets(cloud, region).await;
        let vpc = ec2_client(cloud, region)
            .describe_vpcs()
            .send()
            .await
            .expect("the VPCs")
            .vpcs()[0]
            .vpc_id()
            .expect("a VPC")
            .to_owned();
        let mut served = Vec::new();
        for n in 0..6 {
            let balancer = elbv2
                .create_load_balancer()
                .name(format!("shop-{n}"))
                .set_subnets(Some(subnets.clone()))
                .send()
                .await
                .expect("a balancer")
                .load_balancers()[0]
                .load_balancer_arn()
                .expect("an ARN")
                .to_owned();
            let group = elbv2
                .create_target_group()
                .name(format!("shop-{n}"))
                .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
                .port(8080)
                .vpc_id(&vpc)
                .send()
                .await
                .expect("a target group")
                .target_groups()[0]
                .target_group_arn()
                .expect("an ARN")
                .to_owned();
            elbv2
                .create_listener()
                .load_balancer_arn(&balancer)
                .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
                .port(80)
                .default_actions(
                    aws_sdk_elasticloadbalancingv2::types::Action::builder()
                        .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                        .target_group_arn(&group)
                        .build(),
                )
                .send()
                .await
                .expect("a listener");
            served.push((balancer, group));
        }
        connect(
            cloud,
            connection("own", OWN, &[region], Some(json!({"load-balancers": null}))),
        )
        .await;
        reqwest::Client::new()
            .delete(format!("{}/moto-api/maestro/calls", cloud.moto_endpoint()))
            .send()
            .await
            .expect("the call counts reset");
        let summaries = sync(cloud, &["own"]).await;
        assert!(failed_scopes(&summaries).is_empty(), "{summaries:?}");
        // One listing for the page of 8 balancers, one for the target groups' own step.
        let calls = function_calls(cloud, "elasticloadbalancing").await;
        assert_eq!(calls.get("DescribeTargetGroups"), Some(&2), "{calls:?}");
        // And each balancer still relates to the groups it serves.
        for (balancer, group) in &served {
            let answer = entity(cloud, balancer).await;
            assert_eq!(
                targets(&answer, "target-group"),
                BTreeSet::from([group.clone()]),
                "{answer}"
            );
        }
    });
}

#[test]
fn a_region_the_account_has_not_enabled_is_skipped_not_failed() {
    // Issue 15, finding 8: organisations crawl one region list in every account, and an account
    // that had not opted in to one of them failed those scopes on every crawl, and alarmed.
    on_lagging_cloud(&[], |cloud, _| async move {
        let (enabled, opt_in) = ("eu-west-1", "ap-east-1");
        sample_inventory(cloud, "seed", &[OWN, MEMBER], &[enabled]);
        // Maestro's own account, read with its own role, and a member, through the member role.
        for (id, account) in [("own", OWN), ("member", MEMBER)] {
            let response = reqwest::Client::new()
                .post(format!(
                    "{}/moto-api/maestro/regions-not-enabled",
                    cloud.moto_endpoint()
                ))
                .body(json!({"account": account, "regions": [opt_in]}).to_string())
                .send()
                .await
                .expect("the region is disabled");
            assert_eq!(response.status(), 200);
            let types = Some(json!({"instances": null, "network": null, "load-balancers": null}));
            connect(cloud, connection(id, account, &[enabled, opt_in], types)).await;
        }
        for id in ["own", "member"] {
            let summaries = sync(cloud, &[id]).await;
            assert!(failed_scopes(&summaries).is_empty(), "{summaries:?}");
            assert_eq!(summaries[0]["failingScopes"], 0, "{summaries:?}");
            assert_eq!(summaries[0]["skippedScopes"], 3, "{summaries:?}");

            let crawls = scope_crawls(cloud, id).await;
            for resource_type in ["instances", "network", "load-balancers"] {
                let skipped = &crawls[&(opt_in.to_owned(), resource_type.to_owned())];
                assert_eq!(skipped["outcome"], "SKIPPED", "{skipped}");
                assert_eq!(skipped["reason"], "region-not-enabled", "{skipped}");
                assert_eq!(skipped["failuresInARow"], 0, "{skipped}");
                let crawled = &crawls[&(enabled.to_owned(), resource_type.to_owned())];
                assert_eq!(crawled["outcome"], "CONCLUDED", "{crawled}");
            }
        }
        assert!(
            !listed(cloud, &format!("region={enabled}&type=AWS::EC2::Instance"))
                .await
                .is_empty(),
            "the enabled region is crawled"
        );
    });
}

#[test]
fn a_failed_crawl_marks_nothing_gone() {
    on_lagging_cloud(&[], |cloud, _| async move {
        let seed = sample_inventory(cloud, "seed", &[OWN], &REGIONS);
        connect(
            cloud,
            connection(
                "own",
                OWN,
                &REGIONS,
                Some(json!({"instances": 15, "network": 1440})),
            ),
        )
        .await;
        let spare_vpc = ec2_client(cloud, "eu-west-1")
            .create_vpc()
            .cidr_block("10.99.0.0/16")
            .send()
            .await
            .expect("a spare VPC")
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("its id")
            .to_owned();
        let first = sync(cloud, &["own"]).await;
        assert!(failed_scopes(&first).is_empty());

        let denied_region = "us-east-1";
        let instance_id = seeded(&seed, OWN, denied_region, "instance");
        let instance = ec2(denied_region, OWN, "instance", instance_id);
        terminate(cloud, denied_region, instance_id).await;
        ec2_client(cloud, "eu-west-1")
            .delete_vpc()
            .vpc_id(&spare_vpc)
            .send()
            .await
            .expect("the spare VPC is deleted");
        let spare = ec2("eu-west-1", OWN, "vpc", &spare_vpc);

        // Access denied in one region; the route tables page of the network listing fails.
        inject_fault(cloud, json!({"service": "ec2", "action": "DescribeInstances", "region": denied_region, "code": "UnauthorizedOperation", "status": 403})).await;
        inject_fault(cloud, json!({"service": "ec2", "action": "DescribeRouteTables", "region": "eu-west-1", "code": "InvalidParameterValue", "status": 400})).await;
        for attempt in 1..=3 {
            let failing = sync(cloud, &["own"]).await;
            // Issue 15, finding 11: a scope that keeps failing is readable, and alarms.
            let expect_failing = if attempt == 3 { 2 } else { 0 };
            assert_eq!(failing[0]["failingScopes"], expect_failing, "{failing:?}");
            let failed: BTreeSet<String> = failed_scopes(&failing)
                .iter()
                .map(|r| {
                    format!(
                        "{}|{}",
                        r["scope"]["region"].as_str().unwrap_or_default(),
                        r["scope"]["resourceType"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            assert_eq!(
                failed,
                BTreeSet::from([
                    "us-east-1|instances".to_owned(),
                    "eu-west-1|network".to_owned()
                ]),
                "{failing:?}"
            );
            assert!(failed_scopes(&failing).iter().any(|r| {
                r["cause"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("UnauthorizedOperation")
            }));
            assert_eq!(total(&failing, "gone"), 0);
            assert_eq!(entity(cloud, &instance).await["entity"]["active"], true);
            assert_eq!(entity(cloud, &spare).await["entity"]["active"], true);
        }

        let crawls = scope_crawls(cloud, "own").await;
        let denied = &crawls[&(denied_region.to_owned(), "instances".to_owned())];
        assert_eq!(denied["outcome"], "FAILED", "{denied}");
        assert_eq!(denied["failuresInARow"], 3, "{denied}");
        assert!(
            denied["error"]
                .as_str()
                .is_some_and(|e| e.contains("UnauthorizedOperation")),
            "{denied}"
        );
        let fine = &crawls[&(denied_region.to_owned(), "network".to_owned())];
        assert_eq!(
            (&fine["outcome"], &fine["failuresInARow"]),
            (&json!("CONCLUDED"), &json!(0))
        );

        // Once the crawls complete again, two of them in a row make both gone.
        clear_faults(cloud).await;
        let recovered = sync(cloud, &["own"]).await;
        assert_eq!(recovered[0]["failingScopes"], 0, "{recovered:?}");
        let crawls = scope_crawls(cloud, "own").await;
        assert!(
            crawls
                .values()
                .all(|c| c["outcome"] == "CONCLUDED" && c["failuresInARow"] == 0),
            "{crawls:?}"
        );
        assert_eq!(entity(cloud, &instance).await["entity"]["active"], true);
        let complete = sync(cloud, &["own"]).await;
        assert_eq!(of_type(&complete, "instances", "gone"), 1);
        // The VPC, and the default objects moto deleted with it.
        assert!(of_type(&complete, "network", "gone") >= 1, "{complete:?}");
        assert_eq!(entity(cloud, &instance).await["entity"]["active"], false);
        assert_eq!(entity(cloud, &spare).await["entity"]["active"], false);
    });
}

#[test]
fn a_child_deleted_between_two_calls_fails_nothing() {
    // Issue 15, finding 11: a describe of a listed resource's children that answered NotFound
    // (an application load balancer without target groups; a target group deleted between the
    // listing and its health) failed the whole scope, on every crawl.
    on_lagging_cloud(&[], |cloud, _| async move {
        let region = "eu-west-1";
        sample_inventory(cloud, "seed", &[OWN], &[region]);
        connect(
            cloud,
            connection("own", OWN, &[region], Some(json!({"load-balancers": null}))),
        )
        .await;
        let first = sync(cloud, &["own"]).await;
        assert!(failed_scopes(&first).is_empty(), "{first:?}");
        let emulator = sample_inventory(cloud, "expected", &[OWN], &[region]);
        let balancers = &emulator_by_family(&emulator[OWN])["load-balancer"];
        assert_eq!(
            &inventory_by_family(cloud, OWN).await["load-balancer"],
            balancers,
            "every load balancer, the one without target groups among them"
        );

        inject_fault(cloud, json!({"service": "elbv2", "action": "DescribeTargetHealth", "code": "TargetGroupNotFound", "status": 400})).await;
        let vanished = sync(cloud, &["own"]).await;
        clear_faults(cloud).await;
        assert!(failed_scopes(&vanished).is_empty(), "{vanished:?}");
        // The target group is left out, as a listing a moment later would leave it: a miss.
        assert_eq!(
            of_type(&vanished, "load-balancers", "missing"),
            1,
            "{vanished:?}"
        );
        assert_eq!(
            of_type(&vanished, "load-balancers", "gone"),
            0,
            "{vanished:?}"
        );
    });
}

#[test]
fn a_bucket_whose_tags_are_refused_keeps_them_and_fails_nothing() {
    // Issue 15, finding 6: one bucket whose policy denies GetBucketTagging failed the whole
    // buckets scope.
    on_lagging_cloud(&[], |cloud, _| async move {
        let seed = sample_inventory(cloud, "seed", &[OWN], &["eu-west-1"]);
        connect(
            cloud,
            connection("own", OWN, &["eu-west-1"], Some(json!({"buckets": null}))),
        )
        .await;
        let first = sync(cloud, &["own"]).await;
        assert!(failed_scopes(&first).is_empty(), "{first:?}");
        let bucket = format!(
            "arn:aws:s3:::{}",
            seed[OWN]["bucket"].as_str().expect("a bucket")
        );
        let tagged = entity(cloud, &bucket).await;
        assert_eq!(
            tagged["entity"]["tags"]["Environment"], "production",
            "{tagged}"
        );

        inject_fault(cloud, json!({"service": "s3", "action": "GetBucketTagging", "code": "AccessDenied", "status": 403})).await;
        let refused = sync(cloud, &["own"]).await;
        clear_faults(cloud).await;
        assert!(failed_scopes(&refused).is_empty(), "{refused:?}");
        assert_eq!(
            total(&refused, "seen"),
            total(&first, "seen"),
            "{refused:?}"
        );
        let kept = entity(cloud, &bucket).await;
        assert_eq!(
            kept["entity"]["tags"]["Environment"], "production",
            "{kept}"
        );
        assert_eq!(kept["entity"]["environment"], "production", "{kept}");
        assert!(
            kept["entity"]["tagsUnreadable"]
                .as_str()
                .is_some_and(|why| why.contains("AccessDenied")),
            "{kept}"
        );
    });
}

/// Puts a sample event of `events/discovery-events/` on the default bus, naming `instance_id`.
async fn put_sample_event(cloud: &LocalCloud, sample: &str, instance_id: &str) {
    let path = moto::repository_root()
        .join("events/discovery-events")
        .join(sample);
    let text = std::fs::read_to_string(&path).expect("the sample event");
    let sample: Value = serde_json::from_str(&text.replace("i-0abc123def4567890", instance_id))
        .expect("the sample is JSON");
    let put = aws_sdk_eventbridge::Client::new(cloud.sdk_config())
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(sample["source"].as_str().expect("a source"))
                .detail_type(sample["detail-type"].as_str().expect("a detail type"))
                .detail(sample["detail"].to_string())
                .build(),
        )
        .send()
        .await
        .expect("the event is put");
    assert_eq!(put.failed_entry_count, 0);
}

#[test]
fn a_cloudtrail_event_refreshes_only_the_resource_it_names() {
    on_lagging_cloud(&[], |cloud, _| async move {
        let region = cloud.region().to_owned();
        let ec2_api = ec2_client(cloud, &region);
        let mut instances = Vec::new();
        for name in ["api-1", "api-2"] {
            let run = ec2_api
                .run_instances()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                        .tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key("Name")
                                .value(name)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .expect("an instance runs");
            instances.push(run.instances()[0].instance_id().expect("an id").to_owned());
        }
        connect(
            cloud,
            connection("own", OWN, &[&region], Some(json!({"instances": 15}))),
        )
        .await;
        sync(cloud, &["own"]).await;
        for instance in &instances {
            tag(cloud, &region, instance, "Environment", "production").await;
        }
        // A changed tag value: the refresh moves the entity from one tag item to another.
        tag(cloud, &region, &instances[0], "Name", "api-1-blue").await;

        put_sample_event(cloud, "ec2-create-tags.json", &instances[0]).await;
        let refreshed = ec2(&region, OWN, "instance", &instances[0]);
        let untouched = ec2(&region, OWN, "instance", &instances[1]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while entity(cloud, &refreshed).await["entity"]["environment"] != "production" {
            assert!(
                Instant::now() < deadline,
                "the event refreshed {refreshed}: {}",
                maestro_tests::captured_logs()
                    .lines()
                    .filter(|l| l.contains("refresh") || l.contains("Events") || l.contains("rule"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(
            entity(cloud, &refreshed).await["entity"]["name"],
            "api-1-blue"
        );
        let renamed = listed(cloud, "tagKey=Name&tagValue=api-1-blue").await;
        let ids: Vec<&Value> = renamed.iter().map(|e| &e["id"]).collect();
        assert_eq!(ids, [refreshed.as_str()], "{renamed:?}");
        assert!(listed(cloud, "tagKey=Name&tagValue=api-1").await.is_empty());
        let record = &history(cloud, &refreshed).await[0];
        assert_eq!(record["source"]["kind"], "event-refresh");
        assert_eq!(record["source"]["eventName"], "CreateTags");
        // Who made the change, as CloudTrail recorded it (issue 15, finding 7).
        assert_eq!(
            record["source"]["actor"],
            json!({
                "principalType": "AssumedRole",
                "principalArn": "arn:aws:sts::222222222222:assumed-role/Deployer/ci",
                "eventTime": "2026-11-22T12:00:00Z",
            }),
            "{record}"
        );
        assert!(
            entity(cloud, &untouched).await["entity"]["environment"].is_null(),
            "only the named resource is refreshed"
        );
        assert_eq!(history(cloud, &untouched).await.len(), 1);

        // EC2's own notice of a change of state refreshes the instance too (issue 15,
        // finding 9): it also covers the changes no API call records.
        ec2_api
            .stop_instances()
            .instance_ids(&instances[1])
            .send()
            .await
            .expect("the instance stops");
        put_sample_event(cloud, "ec2-instance-state-change.json", &instances[1]).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while entity(cloud, &untouched).await["entity"]["status"] != "stopped" {
            assert!(
                Instant::now() < deadline,
                "the state change refreshed {untouched}: {}",
                entity(cloud, &untouched).await
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let record = &history(cloud, &untouched).await[0];
        assert_eq!(
            record["source"]["eventName"], "EC2 Instance State-change Notification: stopped",
            "{record}"
        );
        assert!(record["source"]["actor"].is_null(), "{record}");
    });
}

#[test]
fn malformed_requests_get_a_4xx_naming_the_problem_and_write_nothing() {
    on_lagging_cloud(&[], |cloud, stack| async move {
        connect(cloud, connection("own", OWN, &["eu-west-1"], None)).await;
        forget_writes(cloud).await;
        let valid = connection("other", MEMBER, &["eu-west-1"], None);
        let with = |key: &str, value: Value| {
            let mut body = valid.clone();
            body[key] = value;
            body
        };
        let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
            (
                "POST",
                "/connections".into(),
                Some(json!("not an object")),
                400,
                "JSON object",
            ),
            (
                "POST",
                "/connections".into(),
                Some(json!({"name": "x"})),
                400,
                "id",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("id", json!("Not An Id"))),
                400,
                "id",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("accountId", json!("2222"))),
                400,
                "accountId",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("regionz", json!(["eu-west-1"]))),
                400,
                "regionz",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("regions", json!(["europe"]))),
                400,
                "regions",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("externalId", Value::Null)),
                400,
                "externalId",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("roleArn", json!("arn:aws:iam::333333333333:role/x"))),
                400,
                "roleArn",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("resourceTypes", json!({"servers": 5}))),
                400,
                "servers",
            ),
            (
                "POST",
                "/connections".into(),
                Some(with("resourceTypes", json!({"instances": 1}))),
                400,
                "outside",
            ),
            (
                "POST",
                "/connections".into(),
                Some(connection("own", OWN, &["eu-west-1"], None)),
                409,
                "exists",
            ),
            (
                "PUT",
                "/connections/nobody".into(),
                Some(valid.clone()),
                400,
                "unknown field",
            ),
            (
                "GET",
                "/connections/nobody".into(),
                None,
                404,
                "no connection",
            ),
            (
                "POST",
                "/connections/own/sync".into(),
                Some(json!({"resourceTypes": ["servers"]})),
                400,
                "servers",
            ),
            (
                "POST",
                "/connections/own/sync".into(),
                Some(json!({"types": []})),
                400,
                "resourceTypes",
            ),
            (
                "POST",
                "/connections/nobody/sync".into(),
                None,
                404,
                "no connection",
            ),
            (
                "DELETE",
                "/connections/own".into(),
                Some(json!({"reason": 5})),
                400,
                "reason",
            ),
            (
                "GET",
                "/inventory?family=servers".into(),
                None,
                400,
                "family",
            ),
            ("GET", "/inventory?limit=0".into(), None, 400, "limit"),
            (
                "GET",
                "/inventory?cursor=garbage".into(),
                None,
                400,
                "cursor",
            ),
            ("GET", "/inventory?colour=blue".into(), None, 400, "colour"),
            ("GET", "/inventory?active=yes".into(), None, 400, "active"),
            ("GET", "/inventory?account=12".into(), None, 400, "account"),
            (
                "GET",
                "/inventory?tagValue=prod".into(),
                None,
                400,
                "tagKey",
            ),
            (
                "GET",
                "/inventory/export?format=xml".into(),
                None,
                400,
                "format",
            ),
            (
                "GET",
                format!(
                    "/inventory/{}",
                    encoded("arn:aws:ec2:eu-west-1:123456789012:instance/i-nothing")
                ),
                None,
                404,
                "no entity",
            ),
            (
                "GET",
                format!(
                    "/inventory/{}/history?limit=5000",
                    encoded("arn:aws:s3:::x")
                ),
                None,
                400,
                "limit",
            ),
        ];
        for (method, path, body, status, names) in cases {
            let (got, answer) = call(cloud, method, &path, body).await;
            assert_eq!(got, status, "{method} {path}: {answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(names),
                "{method} {path}: {message:?} names {names:?}"
            );
        }
        let writes = inventory_writes(cloud, &stack).await;
        assert!(writes.is_empty(), "refused requests wrote {writes:?}");
        let (_, connections) = call(cloud, "GET", "/connections", None).await;
        assert_eq!(connections["connections"].as_array().map(Vec::len), Some(1));
    });
}

#[test]
fn a_connection_is_deleted_through_the_approval_policy() {
    on_lagging_cloud(&[], |cloud, _| async move {
        connect(cloud, connection("own", OWN, &["eu-west-1"], None)).await;
        delete_connection(cloud, "own").await;
    });
}

/// Deletes a connection through the API, and waits for the approval workflow to delete it:
/// the sample policy runs CONNECTION_DELETE without approvers.
async fn delete_connection(cloud: &LocalCloud, id: &str) {
    let response = signed_in(cloud, "dave@example.com", &[OPERATORS])
        .await
        .delete(format!("{}/connections/{id}", cloud.http_endpoint()))
        .body(json!({"reason": "the account is closed"}).to_string())
        .send()
        .await
        .expect("the API answers");
    assert_eq!(response.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(cloud, "GET", &format!("/connections/{id}"), None)
        .await
        .0
        != 404
    {
        assert!(Instant::now() < deadline, "the connection is deleted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The summary's count for `dimension` = `value` (0 when absent).
async fn counted(cloud: &LocalCloud, dimension: &str, value: &str) -> i64 {
    let (status, summary) = call(cloud, "GET", "/inventory/summary", None).await;
    assert_eq!(status, 200, "{summary}");
    summary["counts"][dimension][value].as_i64().unwrap_or(0)
}

#[test]
fn entities_no_connection_crawls_any_more_are_retired_with_the_reason() {
    // Issue 15, finding 5: after a connection was deleted, or a region taken off it, its
    // entities stayed active for good, and the summary counted them.
    on_lagging_cloud(&[], |cloud, _| async move {
        let [kept, removed] = REGIONS;
        sample_inventory(cloud, "seed", &[OWN], &REGIONS);
        let types = json!({"instances": null, "security-groups": null});
        connect(cloud, connection("own", OWN, &REGIONS, Some(types.clone()))).await;
        let first = sync(cloud, &["own"]).await;
        assert!(failed_scopes(&first).is_empty(), "{first:?}");
        let in_removed = listed(cloud, &format!("region={removed}&active=true")).await;
        assert!(!in_removed.is_empty());
        assert_eq!(
            counted(cloud, "region", removed).await,
            in_removed.len() as i64
        );

        let mut body = connection("own", OWN, &[kept], Some(types));
        body.as_object_mut().expect("an object").remove("id");
        let (status, answer) = call(cloud, "PUT", "/connections/own", Some(body)).await;
        assert_eq!(status, 200, "{answer}");
        let tick = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(tick["retired"]["entities"], in_removed.len(), "{tick}");
        tokio::time::sleep(READ_LAG).await;
        assert!(
            listed(cloud, &format!("region={removed}&active=true"))
                .await
                .is_empty()
        );
        assert_eq!(counted(cloud, "region", removed).await, 0);
        let id = in_removed[0]["id"].as_str().expect("an id");
        let last = &history(cloud, id).await[0];
        assert_eq!(last["change"], "RETIRED", "{last}");
        assert_eq!(
            last["source"],
            json!({"kind": "lifecycle", "reason": "region-removed"})
        );
        // The next tick finds nothing of those scopes active, and they leave the schedule.
        let again = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(
            again["retired"],
            json!({"entities": 0, "scopes": 2, "pending": 0}),
            "retired once: {again}"
        );

        let in_kept = listed(cloud, &format!("region={kept}&active=true")).await;
        assert!(!in_kept.is_empty());
        delete_connection(cloud, "own").await;
        let deleted = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(deleted["retired"]["entities"], in_kept.len(), "{deleted}");
        tokio::time::sleep(READ_LAG).await;
        assert_eq!(counted(cloud, "account", OWN).await, 0);
        let id = in_kept[0]["id"].as_str().expect("an id");
        assert_eq!(
            history(cloud, id).await[0]["source"],
            json!({"kind": "lifecycle", "reason": "connection-deleted"})
        );
        let forgotten = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(
            forgotten["retired"],
            json!({"entities": 0, "scopes": 2, "pending": 0})
        );
        // Its schedule went with its last scope: nothing is left to retire.
        let after = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(
            after["retired"],
            json!({"entities": 0, "scopes": 0, "pending": 0})
        );
        let (status, _) = call(cloud, "GET", "/connections/own", None).await;
        assert_eq!(status, 404);
    });
}

#[test]
fn organisation_mode_connects_every_active_account() {
    let parameters = [
        ("OrganizationMode", "true"),
        ("MemberRoleName", "MaestroDiscovery"),
        ("MemberExternalId", "maestro-org"),
        ("OrganizationRegions", "us-east-1"),
    ];
    on_lagging_cloud(&parameters, |cloud, _| async move {
        seed::sample_organisation(cloud.sdk_config())
            .await
            .expect("the sample organisation");
        let accounts = aws_sdk_organizations::Client::new(cloud.sdk_config())
            .list_accounts()
            .send()
            .await
            .expect("the accounts")
            .accounts
            .unwrap_or_default();
        let active: BTreeSet<String> = accounts
            .iter()
            .filter(|a| a.state() == Some(&aws_sdk_organizations::types::AccountState::Active))
            .filter_map(|a| a.id.clone())
            .collect();
        assert!(
            active.len() > 1 && active.len() < accounts.len(),
            "the sample has a closed account"
        );

        let scheduled = cloud
            .fire_schedule("DiscoverySchedulerFunction", "Tick")
            .await
            .expect("the scheduler runs");
        assert_eq!(
            scheduled["organizationAccounts"].as_u64(),
            Some(active.len() as u64)
        );
        let (_, listed) = call(cloud, "GET", "/connections", None).await;
        let connections = listed["connections"].as_array().expect("connections");
        let connected: BTreeSet<String> = connections
            .iter()
            .map(|c| c["accountId"].as_str().expect("an account").to_owned())
            .collect();
        assert_eq!(connected, active);
        for connection in connections {
            let account = connection["accountId"].as_str().expect("an account");
            assert_eq!(connection["id"], format!("org-{account}"));
            assert_eq!(connection["source"], "organization");
            assert_eq!(connection["regions"], json!(["us-east-1"]));
            if account == OWN {
                assert!(
                    connection["role"].is_null(),
                    "Maestro's own account needs no role"
                );
            } else {
                assert_eq!(
                    connection["role"],
                    json!({"roleArn": format!("arn:aws:iam::{account}:role/MaestroDiscovery"), "externalId": "maestro-org"})
                );
            }
        }
        // Let the runs the tick started finish, so they cannot outlive the test.
        for run in scheduled["runs"].as_array().expect("runs") {
            let summary =
                finished(cloud, run["executionArn"].as_str().expect("an execution")).await;
            assert!(
                failed_scopes(std::slice::from_ref(&summary)).is_empty(),
                "{summary}"
            );
        }
    });
}

#[test]
fn the_member_role_grants_exactly_the_reads_discovery_makes_in_its_own_account() {
    let template = maestro_template();
    let own: BTreeSet<String> = ["DiscoveryCrawlerFunction", "DiscoveryEventsFunction"]
        .iter()
        .flat_map(|function| {
            granted(
                &template.document["Resources"][function]["Properties"]["Policies"],
                Some("DescribeOwnAccount"),
            )
        })
        .collect();
    assert!(own.contains("ec2:DescribeInstances"), "{own:?}");
    let member =
        maestro_localcloud::Template::load(&moto::repository_root().join("infra/member-role.yaml"))
            .expect("infra/member-role.yaml loads");
    let role = &member.document["Resources"]["DiscoveryRole"]["Properties"];
    assert_eq!(granted(&role["Policies"], None), own);
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert!(
        trust["Condition"]["StringEquals"]["sts:ExternalId"].is_object(),
        "the role is assumed only with the ExternalId: {trust}"
    );
}

#[test]
fn teams_see_and_change_only_what_their_grants_allow() {
    on_lagging_cloud(&[], |cloud, _| async move {
        let region = REGIONS[0];
        sample_inventory(cloud, "seed", &[OWN, MEMBER], &[region]);
        let alice = signed_in(cloud, "alice@example.com", &["payments"]).await;
        let bob = signed_in(cloud, "bob@example.com", &["audit"]).await;
        let carol = signed_in(cloud, "carol@example.com", &["search"]).await;
        let ops = operator(cloud).await;
        let instances = Some(json!({"instances": 15}));

        // The operators connect the member account for payments, who let audit read it, and
        // keep Maestro's own account to themselves. Nobody else connects an account: a
        // connection opens the account's inventory.
        let mut member = connection("member", MEMBER, &[region], instances.clone());
        member["access"] = json!({"payments": "admin", "audit": "read"});
        let (status, created) =
            call_as(&ops, cloud, "POST", "/connections", Some(member.clone())).await;
        assert_eq!(status, 201, "{created}");
        let mut sneaky = connection("sneaky", OWN, &[region], instances.clone());
        sneaky["access"] = json!({"search": "admin"});
        let (status, refused) = call_as(&carol, cloud, "POST", "/connections", Some(sneaky)).await;
        assert_eq!(status, 403, "{refused}");
        let own = connection("own", OWN, &[region], instances.clone());
        assert_eq!(
            call_as(&ops, cloud, "POST", "/connections", Some(own))
                .await
                .0,
            201
        );

        let (status, runs) = call_as(&alice, cloud, "POST", "/connections/member/sync", None).await;
        assert_eq!(status, 202, "{runs}");
        let (status, own_runs) = call_as(&ops, cloud, "POST", "/connections/own/sync", None).await;
        assert_eq!(status, 202, "{own_runs}");
        for run in [&runs, &own_runs]
            .into_iter()
            .flat_map(|r| r["runs"].as_array().into_iter().flatten())
        {
            let summary =
                finished(cloud, run["executionArn"].as_str().expect("an execution")).await;
            assert!(
                failed_scopes(std::slice::from_ref(&summary)).is_empty(),
                "{summary}"
            );
        }

        // Connections: each sees what their teams may read; the rest does not exist for them.
        let ids = |answer: &Value| -> Vec<String> {
            answer["connections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        };
        for (who, client, expected) in [
            ("alice", &alice, vec!["member"]),
            ("bob", &bob, vec!["member"]),
            ("carol", &carol, vec![]),
            ("ops", &ops, vec!["member", "own"]),
        ] {
            let (status, listed) = call_as(client, cloud, "GET", "/connections", None).await;
            assert_eq!(status, 200, "{listed}");
            assert_eq!(ids(&listed), expected, "{who} lists {listed}");
        }
        assert_eq!(
            call_as(&alice, cloud, "GET", "/connections/own", None)
                .await
                .0,
            404
        );
        assert_eq!(
            call_as(&alice, cloud, "POST", "/connections/own/sync", None)
                .await
                .0,
            404
        );
        assert_eq!(
            call_as(&carol, cloud, "GET", "/connections/member", None)
                .await
                .0,
            404
        );

        // Read is not write, and write is not admin.
        let mut renamed = member.clone();
        renamed.as_object_mut().expect("an object").remove("id");
        renamed.as_object_mut().expect("an object").remove("access");
        renamed["name"] = json!("Payments production");
        assert_eq!(
            call_as(
                &bob,
                cloud,
                "PUT",
                "/connections/member",
                Some(renamed.clone())
            )
            .await
            .0,
            403
        );
        assert_eq!(
            call_as(&bob, cloud, "POST", "/connections/member/sync", None)
                .await
                .0,
            403
        );
        let mut regrant = renamed.clone();
        regrant["access"] = json!({"payments": "admin", "audit": "write"});
        let (status, answer) =
            call_as(&alice, cloud, "PUT", "/connections/member", Some(regrant)).await;
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = call_as(
            &bob,
            cloud,
            "PUT",
            "/connections/member",
            Some(renamed.clone()),
        )
        .await;
        assert_eq!(status, 200, "write may change the settings: {answer}");
        assert_eq!(
            answer["access"]["audit"], "write",
            "a replace without access keeps the grants: {answer}"
        );
        let mut takeover = renamed.clone();
        takeover["access"] = json!({"audit": "admin"});
        let (status, answer) =
            call_as(&bob, cloud, "PUT", "/connections/member", Some(takeover)).await;
        assert_eq!(status, 403, "granting needs admin: {answer}");
        let mut lockout = renamed.clone();
        lockout["access"] = json!({"audit": "admin"});
        let (status, answer) =
            call_as(&alice, cloud, "PUT", "/connections/member", Some(lockout)).await;
        assert_eq!(
            status, 400,
            "an admin keeps admin for a team of theirs: {answer}"
        );
        let mut elsewhere = renamed.clone();
        elsewhere["accountId"] = json!(OWN);
        let fields = elsewhere.as_object_mut().expect("an object");
        fields.remove("roleArn");
        fields.remove("externalId");
        let (status, answer) =
            call_as(&bob, cloud, "PUT", "/connections/member", Some(elsewhere)).await;
        assert_eq!(
            status, 400,
            "a connection's account never changes: {answer}"
        );
        let reason = Some(json!({"reason": "the account moves to another team"}));
        assert_eq!(
            call_as(&bob, cloud, "DELETE", "/connections/member", reason.clone())
                .await
                .0,
            403
        );

        // The inventory: the accounts of the connections a team may read, and nothing else.
        let everything = listed(cloud, "family=server").await;
        let accounts = |entities: &[Value]| -> BTreeSet<String> {
            entities
                .iter()
                .filter_map(|e| e["account"].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(
            accounts(&everything),
            BTreeSet::from([OWN.to_owned(), MEMBER.to_owned()])
        );
        let (status, page) = call_as(
            &alice,
            cloud,
            "GET",
            "/inventory?family=server&limit=1000",
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let alices = page["entities"].as_array().cloned().unwrap_or_default();
        let members: Vec<&Value> = everything
            .iter()
            .filter(|e| e["account"] == MEMBER)
            .collect();
        assert_eq!(alices.len(), members.len(), "{page}");
        assert_eq!(accounts(&alices), BTreeSet::from([MEMBER.to_owned()]));
        let (status, page) = call_as(
            &carol,
            cloud,
            "GET",
            "/inventory?family=server&limit=1000",
            None,
        )
        .await;
        assert_eq!(
            (status, page["entities"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{page}"
        );
        let (status, answer) = call_as(
            &alice,
            cloud,
            "GET",
            &format!("/inventory?account={OWN}"),
            None,
        )
        .await;
        assert_eq!(status, 403, "{answer}");
        let id_of = |account: &str| {
            everything
                .iter()
                .find(|e| e["account"] == account)
                .and_then(|e| e["id"].as_str())
                .expect("an entity")
                .to_owned()
        };
        let (own_entity, member_entity) = (id_of(OWN), id_of(MEMBER));
        for (path, expected) in [
            (format!("/inventory/{}", encoded(&member_entity)), 200),
            (
                format!("/inventory/{}/history", encoded(&member_entity)),
                200,
            ),
            (format!("/inventory/{}", encoded(&own_entity)), 404),
            (format!("/inventory/{}/history", encoded(&own_entity)), 404),
        ] {
            let (status, answer) = call_as(&alice, cloud, "GET", &path, None).await;
            assert_eq!(status, expected, "alice GET {path}: {answer}");
        }
        let (status, summary) = call_as(&alice, cloud, "GET", "/inventory/summary", None).await;
        assert_eq!(status, 200, "{summary}");
        let counts = summary["counts"].as_object().expect("counts");
        assert_eq!(
            counts.keys().collect::<Vec<_>>(),
            vec!["account"],
            "{summary}"
        );
        assert_eq!(
            counts["account"]
                .as_object()
                .map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some(vec![MEMBER.to_owned()])
        );

        // No token, or a forged one, never reaches a function.
        let anonymous = reqwest::Client::new();
        assert_eq!(
            call_as(&anonymous, cloud, "GET", "/connections", None)
                .await
                .0,
            401
        );
        let token = cloud
            .bearer("alice@example.com", &["payments"])
            .await
            .expect("a token");
        let forged = format!(
            "{}{}",
            &token[..token.len() - 4],
            if token.ends_with("AAAA") {
                "BBBB"
            } else {
                "AAAA"
            }
        );
        let response = reqwest::Client::new()
            .get(format!("{}/connections", cloud.http_endpoint()))
            .header("authorization", forged)
            .send()
            .await
            .expect("the API answers");
        assert_eq!(response.status(), 401);

        // Admin may delete (the sample policy runs CONNECTION_DELETE at once).
        let (status, answer) =
            call_as(&alice, cloud, "DELETE", "/connections/member", reason).await;
        assert_eq!(status, 202, "{answer}");
    });
}

#[test]
fn a_disabled_image_stays_in_the_inventory() {
    // Issue 15, finding 6: DescribeImages leaves disabled AMIs out unless asked, and the crawl
    // marked them gone.
    on_lagging_cloud(&[], |cloud, _| async move {
        let region = cloud.region().to_owned();
        let ec2_api = ec2_client(cloud, &region);
        let run = ec2_api
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("an instance runs");
        let instance = run.instances()[0].instance_id().expect("an id").to_owned();
        let image_id = ec2_api
            .create_image()
            .instance_id(&instance)
            .name("golden")
            .send()
            .await
            .expect("an image is made")
            .image_id()
            .expect("an image id")
            .to_owned();
        connect(
            cloud,
            connection("own", OWN, &[&region], Some(json!({"images": 15}))),
        )
        .await;
        sync(cloud, &["own"]).await;
        let image = ec2(&region, OWN, "image", &image_id);
        assert_eq!(entity(cloud, &image).await["entity"]["active"], true);

        ec2_api
            .disable_image()
            .image_id(&image_id)
            .send()
            .await
            .expect("the image is disabled");
        // More crawls than DiscoveryGoneAfterCrawls (2): a missing image would be gone.
        for _ in 0..3 {
            let summaries = sync(cloud, &["own"]).await;
            assert_eq!(total(&summaries, "gone"), 0, "{summaries:?}");
        }
        let answer = entity(cloud, &image).await;
        assert_eq!(answer["entity"]["active"], true, "{answer}");
        assert!(
            history(cloud, &image)
                .await
                .iter()
                .all(|record| record["change"] != "GONE"),
            "never recorded gone"
        );
    });
}
