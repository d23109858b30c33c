//! The SSO assignment sync through the template's wiring: the HTTP API plans and records a
//! run, the changes queue feeds the worker, the worker asks IAM Identity Center, and the
//! assignments end equal to the model, on the sample organisation `make up` seeds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
use maestro_localcloud::seed::{self, SampleOrganisation, find};
use maestro_localcloud::{LocalCloud, Stack};
use maestro_tests::{
    approver, clear_faults, inject_fault, maestro_template, on_local_cloud, on_local_cloud_with,
    operator, receive_bodies,
};
use serde_json::{Value, json};

/// (account, permission set, principal) by the sample organisation's names.
type Named = (&'static str, &'static str, &'static str);

/// The assignments BRIEF §2's rule gives the sample organisation, worked out by hand:
/// - Developer (`workload_match`): each developer group in its workload's accounts, in every
///   environment but sandbox;
/// - Tester (`payments checkout`): the payments tester group in payments development and
///   staging (testers work in development and staging only);
/// - SecurityAuditor (`workload_all`): the central auditor group in every managed account but
///   the sandbox;
/// - SandboxOwner: alice, the sandbox's owner, in her sandbox;
/// - and the hand-made BillingReadOnly assignment, which the model does not manage.
///
/// log-archive (no environment OU), payments-retired (suspended) and the management account
/// get nothing.
const EXPECTED: &[Named] = &[
    (
        "payments-development",
        "Developer",
        "developer_workload_payments",
    ),
    (
        "payments-staging",
        "Developer",
        "developer_workload_payments",
    ),
    (
        "payments-production",
        "Developer",
        "developer_workload_payments",
    ),
    (
        "checkout-development",
        "Developer",
        "developer_workload_checkout",
    ),
    (
        "checkout-production",
        "Developer",
        "developer_workload_checkout",
    ),
    ("payments-development", "Tester", "tester_workload_payments"),
    ("payments-staging", "Tester", "tester_workload_payments"),
    (
        "payments-development",
        "SecurityAuditor",
        "security_auditor_workload_security",
    ),
    (
        "payments-staging",
        "SecurityAuditor",
        "security_auditor_workload_security",
    ),
    (
        "payments-production",
        "SecurityAuditor",
        "security_auditor_workload_security",
    ),
    (
        "checkout-development",
        "SecurityAuditor",
        "security_auditor_workload_security",
    ),
    (
        "checkout-production",
        "SecurityAuditor",
        "security_auditor_workload_security",
    ),
    ("sandbox-alice", "SandboxOwner", "alice"),
    (
        "payments-production",
        "BillingReadOnly",
        "developer_workload_payments",
    ),
];

const PATIENCE: Duration = Duration::from_secs(60);

/// Every assignment IAM Identity Center holds, by name, read with the SDK directly.
async fn assignments_by_name(
    cloud: &LocalCloud,
    organisation: &SampleOrganisation,
) -> BTreeSet<(String, String, String)> {
    let sso_admin = aws_sdk_ssoadmin::Client::new(cloud.sdk_config());
    let name_of = |id: &str| {
        organisation
            .groups
            .iter()
            .chain(&organisation.users)
            .find(|p| p.id == id)
            .map_or_else(|| id.to_owned(), |p| p.name.clone())
    };
    let mut found = BTreeSet::new();
    for account in &organisation.accounts {
        for set in &organisation.permission_sets {
            let listed = sso_admin
                .list_account_assignments()
                .instance_arn(&organisation.instance_arn)
                .account_id(&account.id)
                .permission_set_arn(&set.id)
                .send()
                .await
                .expect("assignments can be listed");
            for assignment in listed.account_assignments.unwrap_or_default() {
                found.insert((
                    account.name.clone(),
                    set.name.clone(),
                    name_of(assignment.principal_id.as_deref().unwrap_or_default()),
                ));
            }
        }
    }
    found
}

fn expected() -> BTreeSet<(String, String, String)> {
    EXPECTED
        .iter()
        .map(|(a, s, p)| ((*a).to_owned(), (*s).to_owned(), (*p).to_owned()))
        .collect()
}

/// Waits until IAM Identity Center holds exactly `want`; returns what it holds at the end.
async fn settle(
    cloud: &LocalCloud,
    organisation: &SampleOrganisation,
    want: &BTreeSet<(String, String, String)>,
) -> BTreeSet<(String, String, String)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = assignments_by_name(cloud, organisation).await;
        if &found == want || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Begins a full run through the API and answers its summary once its workflow is done.
async fn reconcile(cloud: &LocalCloud, dry_run: bool) -> Value {
    let begun = begin(cloud, dry_run).await;
    finished(cloud, &begun).await
}

/// Begins a full run through the API and answers its summary as it begins.
async fn begin(cloud: &LocalCloud, dry_run: bool) -> Value {
    let response = operator(cloud)
        .await
        .post(format!("{}/sso/reconcile", cloud.http_endpoint()))
        .json(&json!({ "dryRun": dry_run }))
        .send()
        .await
        .expect("the HTTP API answers");
    assert_eq!(response.status(), 202, "POST /sso/reconcile begins a run");
    let begun: Value = response.json().await.expect("a run summary");
    assert_eq!(begun["outcome"]["outcome"], "RUNNING", "{begun}");
    begun
}

/// The summary of the run `begun` names once its workflow has planned and queued.
async fn finished(cloud: &LocalCloud, begun: &Value) -> Value {
    let run_id = begun["runId"].as_str().expect("the run has an id");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let run: Value = operator(cloud)
            .await
            .get(format!("{}/sso/runs/{run_id}", cloud.http_endpoint()))
            .send()
            .await
            .expect("GET /sso/runs answers")
            .json()
            .await
            .expect("a run summary");
        let outcome = run["outcome"]["outcome"].as_str().unwrap_or_default();
        if !matches!(outcome, "RUNNING" | "APPLYING") {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never finished: {run}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn latest_run(cloud: &LocalCloud) -> Value {
    operator(cloud)
        .await
        .get(format!("{}/sso/plan", cloud.http_endpoint()))
        .send()
        .await
        .expect("GET /sso/plan answers")
        .json()
        .await
        .expect("a run")
}

/// The final reports of the latest run, `run`, once there are `count` (or the patience ran
/// out). The monitor writes each change that succeeded into the snapshot as it reports it.
async fn reported(cloud: &LocalCloud, run: &Value, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let latest = latest_run(cloud).await;
        let reports = latest["reports"].as_array().cloned().unwrap_or_default();
        if reports.len() == count || Instant::now() > deadline {
            assert_eq!(latest["runId"], run["runId"]);
            return reports;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The sample organisation, reconciled once and settled at the model's assignments, and
/// every request's monitor has reported, so each operation slot is free again (a change to
/// an assignment whose create is still being monitored waits a minute for its slot).
async fn reconciled(cloud: &LocalCloud) -> SampleOrganisation {
    let organisation = seeded(cloud).await;
    let run = reconcile(cloud, false).await;
    assert_eq!(settle(cloud, &organisation, &expected()).await, expected());
    assert_eq!(reported(cloud, &run, 13).await.len(), 13);
    organisation
}

async fn seeded(cloud: &LocalCloud) -> SampleOrganisation {
    seed::sample_organisation(cloud.sdk_config())
        .await
        .expect("the sample organisation is created")
}

/// Makes an assignment by hand, as an administrator in the console would.
async fn assign_by_hand(
    cloud: &LocalCloud,
    organisation: &SampleOrganisation,
    (account, set, group): (&str, &str, &str),
) {
    aws_sdk_ssoadmin::Client::new(cloud.sdk_config())
        .create_account_assignment()
        .instance_arn(&organisation.instance_arn)
        .target_id(&find(&organisation.accounts, "account", account).unwrap().id)
        .target_type(TargetType::AwsAccount)
        .permission_set_arn(&find(&organisation.permission_sets, "set", set).unwrap().id)
        .principal_type(PrincipalType::Group)
        .principal_id(&find(&organisation.groups, "group", group).unwrap().id)
        .send()
        .await
        .expect("the hand-made assignment is accepted");
}

fn changes_queue(stack: &Stack) -> &str {
    stack
        .output("SsoChangesQueueUrl")
        .expect("the template outputs the changes queue")
}

#[test]
fn a_reconcile_makes_the_assignments_exactly_the_models_and_a_second_changes_nothing() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let organisation = seeded(cloud).await;

        let dry = reconcile(cloud, true).await;
        assert_eq!(dry["outcome"]["outcome"], "PLANNED");
        assert_eq!(dry["toCreate"], 13, "{dry}");
        assert_eq!(dry["unmanaged"], 1, "the hand-made assignment");
        assert_eq!(
            assignments_by_name(cloud, &organisation).await.len(),
            1,
            "a dry run changes nothing"
        );

        let run = reconcile(cloud, false).await;
        assert_eq!(run["outcome"]["outcome"], "QUEUED", "{run}");
        assert_eq!(run["outcome"]["creates"], 13);
        assert_eq!(settle(cloud, &organisation, &expected()).await, expected());
        // The monitor records each request's final status with the run.
        let reports = reported(cloud, &run, 13).await;
        assert_eq!(reports.len(), 13, "{reports:?}");
        assert!(reports.iter().all(|r| r["status"] == "SUCCEEDED"));

        let again = reconcile(cloud, false).await;
        assert_eq!(again["toCreate"], 0, "{again}");
        assert_eq!(again["toDelete"], 0);
        assert_eq!(again["unchanged"], 13);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let queued = receive_bodies(cloud, changes_queue(&stack), 1, Duration::from_secs(2)).await;
        assert!(
            queued.is_empty(),
            "nothing to write, nothing queued: {queued:?}"
        );

        let latest: Value = operator(cloud)
            .await
            .get(format!("{}/sso/plan", cloud.http_endpoint()))
            .send()
            .await
            .expect("GET /sso/plan answers")
            .json()
            .await
            .expect("a run");
        assert_eq!(
            latest["runId"], again["runId"],
            "the latest run is recorded"
        );
        assert_eq!(latest["plan"]["desired"], 13);
    });
}

#[test]
fn a_hand_made_drift_is_reverted_and_reported() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let organisation = reconciled(cloud).await;

        let drift = (
            "checkout-development",
            "Developer",
            "developer_workload_payments",
        );
        assign_by_hand(cloud, &organisation, drift).await;
        // The hourly schedule finds and reverts it.
        let begun = cloud
            .fire_schedule("SsoReconcileFunction", "Reconcile")
            .await
            .expect("the scheduled reconcile begins");
        assert_eq!(begun["answer"], "BEGAN", "{begun}");
        let run = finished(cloud, &begun).await;
        assert_eq!(run["toDelete"], 1, "{run}");
        assert_eq!(run["toCreate"], 0);
        assert_eq!(settle(cloud, &organisation, &expected()).await, expected());

        let latest = latest_run(cloud).await;
        let deleted = &latest["plan"]["delete"][0]["assignment"];
        assert_eq!(
            deleted["accountId"],
            find(&organisation.accounts, "account", drift.0).unwrap().id
        );

        // An operator's run through the API reverts the next drift, and the deletes of both
        // runs count together towards the hour's threshold (issue 14, finding 6).
        let next = (
            "payments-development",
            "Developer",
            "developer_workload_checkout",
        );
        assign_by_hand(cloud, &organisation, next).await;
        let run = reconcile(cloud, false).await;
        assert_eq!(run["toDelete"], 1, "{run}");
        assert_eq!(settle(cloud, &organisation, &expected()).await, expected());
        let counted: i64 = aws_sdk_dynamodb::Client::new(cloud.sdk_config())
            .query()
            .table_name(stack.output("SsoPlansTableName").expect("the plans table"))
            .key_condition_expression("pk = :deletes")
            .expression_attribute_values(":deletes", AttributeValue::S("SSO_DELETES".into()))
            .send()
            .await
            .expect("the budget can be read")
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.get("windows")?.as_m().ok())
            .flat_map(|windows| windows.values())
            .filter_map(|count| count.as_n().ok()?.parse::<i64>().ok())
            .sum();
        assert_eq!(counted, 2, "one delete from each run");
    });
}

#[test]
fn deletes_over_the_threshold_are_held_and_creates_proceed() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        let organisation = seeded(cloud).await;
        // Eleven undesired assignments of managed sets in managed accounts.
        let mut drifted = expected();
        for account in [
            "payments-development",
            "checkout-development",
            "checkout-production",
        ] {
            for (set, group) in [
                ("Developer", "tester_workload_payments"),
                ("Tester", "developer_workload_checkout"),
                ("SecurityAuditor", "developer_workload_payments"),
                ("Developer", "security_auditor_workload_security"),
            ] {
                if drifted.len() == EXPECTED.len() + 11 {
                    break;
                }
                assign_by_hand(cloud, &organisation, (account, set, group)).await;
                drifted.insert((account.to_owned(), set.to_owned(), group.to_owned()));
            }
        }
        let run = reconcile(cloud, false).await;
        assert_eq!(run["held"], 11, "{run}");
        assert_eq!(run["toDelete"], 0);
        assert_eq!(run["toCreate"], 13);
        // Everything desired is created; nothing is deleted.
        assert_eq!(settle(cloud, &organisation, &drifted).await, drifted);

        // The held deletes went to the approval workflow; a second run holding the same ones
        // asks nothing more. Once approved, exactly they are deleted.
        let subject = "Approval needed: Apply the SSO assignment deletes a sync held";
        approver::emails(cloud, subject, 2).await;
        let again = reconcile(cloud, false).await;
        assert_eq!(again["held"], 11, "{again}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        approver::emails(cloud, subject, 2).await;
        // Asking again through the API, to get round a rejection, reuses the sync's id: refused.
        let ask = json!({
            "action": {"type": "SSO_APPLY_DELETES", "parameters": {"runId": run["runId"]}},
            "reason": "ask again",
        });
        let response = operator(cloud)
            .await
            .post(format!("{}/actions", cloud.http_endpoint()))
            .body(ask.to_string())
            .send()
            .await
            .expect("POST /actions answers");
        assert_eq!(response.status(), 409, "{:?}", response.text().await);
        let (status, page) =
            approver::decide_by_email(cloud, subject, "bob@example.com", "approve", "go").await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Approved"), "{page}");
        assert_eq!(settle(cloud, &organisation, &expected()).await, expected());
    });
}

#[test]
fn a_run_whose_workflow_is_stopped_is_recorded_as_aborted_and_frees_the_lease() {
    // Review of issue 14: a workflow that ended outside its own Abort state (stopped by hand,
    // timed out) left its run RUNNING for ever and the lease held for an hour.
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        seeded(cloud).await;
        // The organisation does not answer: the first read piece waits in its retries.
        inject_fault(
            cloud,
            json!({"service": "organizations", "code": "ServiceException", "status": 500}),
        )
        .await;
        let begun = begin(cloud, true).await;
        let run_id = begun["runId"].as_str().expect("a run id");
        let execution = stack
            .reference("SsoReconcileStateMachine")
            .expect("the state machine")
            .replacen(":stateMachine:", ":execution:", 1)
            + ":"
            + run_id;
        aws_sdk_sfn::Client::new(cloud.sdk_config())
            .stop_execution()
            .execution_arn(&execution)
            .send()
            .await
            .expect("the execution is stopped");

        let run = finished(cloud, &begun).await;
        assert_eq!(run["outcome"]["outcome"], "ABORTED", "{run}");
        let reasons = run["outcome"]["reasons"].to_string();
        assert!(reasons.contains("ABORTED"), "{reasons}");
        // The lease is free: the next run begins and runs to its end.
        clear_faults(cloud).await;
        let next = finished(cloud, &begin(cloud, true).await).await;
        assert_eq!(next["outcome"]["outcome"], "PLANNED", "{next}");
    });
}

#[test]
fn a_partial_input_aborts_the_run_and_changes_nothing() {
    let mut template = maestro_template();
    // An identity store that lists no group looks like a failed listing.
    template
        .resource_mut("SsoReconcileFunction")
        .expect("the reconcile function")["Properties"]["Environment"]["Variables"]["IDENTITY_STORE_ID"] =
        json!("d-0000000000");
    on_local_cloud(Some(&template), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let organisation = seeded(cloud).await;
        let run = reconcile(cloud, false).await;
        assert_eq!(run["outcome"]["outcome"], "ABORTED", "{run}");
        let reasons = run["outcome"]["reasons"].to_string();
        assert!(reasons.contains("no group"), "{reasons}");
        let queued = receive_bodies(cloud, changes_queue(&stack), 1, Duration::from_secs(2)).await;
        assert!(queued.is_empty());
        assert_eq!(assignments_by_name(cloud, &organisation).await.len(), 1);
    });
}

#[test]
fn explain_says_why_an_assignment_is_or_is_not_desired() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        seeded(cloud).await;
        let client = operator(cloud).await;
        let get = |url: String| client.get(url).send();
        let ask = |group: &str, account: &str, set: &str| {
            format!(
                "{}/sso/explain?group={group}&account={account}&permissionSet={set}",
                cloud.http_endpoint()
            )
        };
        // Explain answers from the snapshot a full run reads; before the first, it says so.
        let before = get(ask(
            "tester_workload_payments",
            "payments-staging",
            "Tester",
        ))
        .await
        .unwrap();
        assert_eq!(before.status(), 409);
        let before: Value = before.json().await.unwrap();
        assert!(
            before["message"]
                .as_str()
                .unwrap_or_default()
                .contains("no snapshot yet"),
            "{before}"
        );
        reconcile(cloud, true).await;
        let yes: Value = get(ask(
            "tester_workload_payments",
            "payments-staging",
            "Tester",
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(yes["desired"], true, "{yes}");
        assert_eq!(yes["rule"]["rule"], "WORKLOAD_LISTED");

        let no: Value = get(ask(
            "tester_workload_payments",
            "payments-production",
            "Tester",
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(no["desired"], false);
        assert!(
            no["verdict"].as_str().unwrap().contains("environment"),
            "{no}"
        );

        let missing = get(ask("nobody", "payments-staging", "Tester"))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let incomplete = get(format!("{}/sso/explain?group=x", cloud.http_endpoint()))
            .await
            .unwrap();
        assert_eq!(incomplete.status(), 400);
    });
}

/// Puts CloudTrail's record of a call (`detail`) on the default bus, as CloudTrail does.
async fn put_cloudtrail_event(cloud: &LocalCloud, source: &str, detail: &Value) {
    let put = aws_sdk_eventbridge::Client::new(cloud.sdk_config())
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(source)
                .detail_type("AWS API Call via CloudTrail")
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .expect("the event is put");
    assert_eq!(put.failed_entry_count, 0);
}

/// The same name, as the assignments are compared.
fn named((account, set, principal): Named) -> (String, String, String) {
    (account.to_owned(), set.to_owned(), principal.to_owned())
}

/// CloudTrail's record of an Organizations call, as EventBridge delivers it.
fn organizations_event(event_id: &str, event_name: &str, request: Value) -> Value {
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.organizations",
        "account": "123456789012",
        "time": "2026-11-22T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventSource": "organizations.amazonaws.com",
            "eventName": event_name,
            "requestParameters": request,
        },
    })
}

#[test]
fn an_event_replans_only_what_it_touched_and_a_redelivery_is_processed_once() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let organisation = reconciled(cloud).await;

        // Drift in another account: a run scoped to one account must not see it.
        let elsewhere = (
            "payments-development",
            "Developer",
            "developer_workload_checkout",
        );
        assign_by_hand(cloud, &organisation, elsewhere).await;

        // checkout-development moves to the payments workload…
        let account = &find(&organisation.accounts, "account", "checkout-development")
            .unwrap()
            .id;
        aws_sdk_organizations::Client::new(cloud.sdk_config())
            .tag_resource()
            .resource_id(account)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key("workload")
                    .value("payments")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("the account is tagged");
        // …and CloudTrail's record of it reaches the default bus.
        let event = organizations_event("tag-1", "TagResource", json!({"resourceId": account}));
        put_cloudtrail_event(cloud, "aws.organizations", &event["detail"]).await;

        let mut want = expected();
        want.remove(&named((
            "checkout-development",
            "Developer",
            "developer_workload_checkout",
        )));
        want.insert(named((
            "checkout-development",
            "Developer",
            "developer_workload_payments",
        )));
        want.insert(named((
            "checkout-development",
            "Tester",
            "tester_workload_payments",
        )));
        want.insert(named(elsewhere));
        assert_eq!(settle(cloud, &organisation, &want).await, want);

        // The same event delivered twice is processed once.
        let handler = stack
            .reference("SsoEventHandlerFunction")
            .expect("the event handler")
            .to_owned();
        let again = organizations_event("tag-2", "TagResource", json!({"resourceId": account}));
        let first = cloud
            .invoke(&handler, again.clone())
            .await
            .expect("handled");
        assert_eq!(first["handled"], "REPLANNED", "{first}");
        let second = cloud.invoke(&handler, again).await.expect("handled");
        assert_eq!(second["handled"], "DUPLICATE", "{second}");

        // A delivery that finds the event held by a run that may still be going fails, so
        // that Lambda retries it, and it ends in the DLQ if that run never finishes (issue 14,
        // finding 5: it answered "duplicate" and the event vanished)…
        let claims = stack
            .reference("MaestroIdempotencyTable")
            .expect("the idempotency table")
            .to_owned();
        let dynamodb = aws_sdk_dynamodb::Client::new(cloud.sdk_config());
        let hold = |expires_at: i64| {
            dynamodb
                .put_item()
                .table_name(&claims)
                .item("pk", AttributeValue::S("sso-event#tag-3".into()))
                .item("status", AttributeValue::S("IN_PROGRESS".into()))
                .item("expiresAt", AttributeValue::N(expires_at.to_string()))
                .send()
        };
        let now = chrono::Utc::now().timestamp();
        hold(now + 600).await.expect("a claim in progress");
        let held = organizations_event("tag-3", "TagResource", json!({"resourceId": account}));
        let refused = cloud
            .invoke(&handler, held.clone())
            .await
            .expect_err("a claimed event is not taken for done");
        assert!(
            refused
                .error_message
                .contains("being processed by another delivery"),
            "{refused:?}"
        );
        // …and once the claim of a run that died has run out, the retry takes the event over.
        hold(now - 1).await.expect("an expired claim");
        let retried = cloud.invoke(&handler, held).await.expect("handled");
        assert_eq!(retried["handled"], "REPLANNED", "{retried}");
    });
}

#[test]
fn a_permission_set_event_replans_only_that_set() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        let organisation = reconciled(cloud).await;

        // Drift on another permission set: a run scoped to Tester must not see it.
        let elsewhere = (
            "checkout-development",
            "Developer",
            "developer_workload_payments",
        );
        assign_by_hand(cloud, &organisation, elsewhere).await;

        // Tester now lists checkout only…
        let tester = &find(&organisation.permission_sets, "set", "Tester")
            .unwrap()
            .id;
        aws_sdk_ssoadmin::Client::new(cloud.sdk_config())
            .tag_resource()
            .instance_arn(&organisation.instance_arn)
            .resource_arn(tester)
            .tags(
                aws_sdk_ssoadmin::types::Tag::builder()
                    .key("workloads")
                    .value("checkout")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("the permission set is tagged");
        // …and CloudTrail's record of it reaches the default bus.
        let detail = json!({
            "eventSource": "sso.amazonaws.com",
            "eventName": "TagResource",
            "requestParameters": {"instanceArn": organisation.instance_arn, "resourceArn": tester},
        });
        put_cloudtrail_event(cloud, "aws.sso", &detail).await;

        let mut want = expected();
        want.remove(&named((
            "payments-development",
            "Tester",
            "tester_workload_payments",
        )));
        want.remove(&named((
            "payments-staging",
            "Tester",
            "tester_workload_payments",
        )));
        want.insert(named(elsewhere));
        assert_eq!(settle(cloud, &organisation, &want).await, want);
    });
}

#[test]
fn a_renamed_ou_is_read_again_as_a_tree_and_its_accounts_replanned() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        let organisation = reconciled(cloud).await;
        let organizations = aws_sdk_organizations::Client::new(cloud.sdk_config());
        let account = &find(&organisation.accounts, "account", "payments-staging")
            .unwrap()
            .id;
        let parent = organizations
            .list_parents()
            .child_id(account)
            .send()
            .await
            .expect("the account's parent")
            .parents
            .unwrap_or_default()
            .remove(0)
            .id
            .expect("an OU id");
        // The staging OU becomes "qa", which maps to no environment.
        organizations
            .update_organizational_unit()
            .organizational_unit_id(&parent)
            .name("qa")
            .send()
            .await
            .expect("the OU is renamed");
        let event = organizations_event(
            "ou-1",
            "UpdateOrganizationalUnit",
            json!({"organizationalUnitId": parent, "name": "qa"}),
        );
        put_cloudtrail_event(cloud, "aws.organizations", &event["detail"]).await;

        let deadline = Instant::now() + PATIENCE;
        let latest = loop {
            let latest = latest_run(cloud).await;
            if latest["trigger"]["kind"] == "EVENT" && latest["outcome"]["outcome"] == "QUEUED" {
                break latest;
            }
            assert!(Instant::now() < deadline, "no event run: {latest}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let excluded = latest["plan"]["excludedAccounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            excluded.iter().any(
                |e| e["id"] == account.as_str() && e["reason"]["exclusion"] == "NO_ENVIRONMENT"
            ),
            "{excluded:?}"
        );
        // An account without an environment is left alone, its assignments kept.
        assert_eq!(settle(cloud, &organisation, &expected()).await, expected());
    });
}

#[test]
fn a_new_group_is_assigned_where_the_model_wants_it() {
    on_local_cloud(Some(&maestro_template()), |cloud, _| async move {
        let organisation = seeded(cloud).await;
        let run = reconcile(cloud, false).await;
        assert_eq!(reported(cloud, &run, 13).await.len(), 13);

        let group_id = aws_sdk_identitystore::Client::new(cloud.sdk_config())
            .create_group()
            .identity_store_id(&organisation.identity_store_id)
            .display_name("tester_workload_checkout")
            .send()
            .await
            .expect("the group is created")
            .group_id;
        let detail = json!({
            "eventSource": "identitystore.amazonaws.com",
            "eventName": "CreateGroup",
            "requestParameters": {"identityStoreId": organisation.identity_store_id, "displayName": "tester_workload_checkout"},
            "responseElements": {"groupId": group_id},
        });
        put_cloudtrail_event(cloud, "aws.identitystore", &detail).await;

        // Testers work in development and staging; checkout has only a development account.
        let mut want = expected();
        want.insert((
            "checkout-development".to_owned(),
            "Tester".to_owned(),
            group_id.clone(),
        ));
        assert_eq!(settle(cloud, &organisation, &want).await, want);
        // The event's run planned from the snapshot, which learned of the full run's 13
        // creates as they succeeded: it asked for the new group's one, not all 14 again.
        let latest = latest_run(cloud).await;
        assert_eq!(latest["trigger"]["kind"], "EVENT", "{latest}");
        assert_eq!(
            latest["plan"]["create"].as_array().map(Vec::len),
            Some(1),
            "{}",
            latest["plan"]["create"]
        );
    });
}

#[test]
fn every_sso_admin_request_takes_exactly_one_rate_slot() {
    // Issue 14, finding 3: the readers spent a slot on each listing's end, which sends no
    // request, and the worker's writes took none, so together they could exceed 20 a second.
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let calls = format!("{}/moto-api/maestro/calls", cloud.moto_endpoint());
        reqwest::Client::new()
            .delete(&calls)
            .send()
            .await
            .expect("the call counts reset");
        // The emulator throttles past 20 sso-admin calls a second, as AWS does: a throttled
        // call retried would be a request without a slot of its own.
        reconciled(cloud).await;
        // The monitor frees each operation's slot once the request settles: wait for all.
        let dynamodb = aws_sdk_dynamodb::Client::new(cloud.sdk_config());
        let quota = stack
            .reference("MaestroQuotaTable")
            .expect("the quota table");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held = dynamodb
                .get_item()
                .table_name(quota)
                .key("pk", AttributeValue::S("sso-admin#outstanding".into()))
                .consistent_read(true)
                .send()
                .await
                .expect("the quota table answers")
                .item
                .and_then(|item| {
                    item.get("held")
                        .and_then(|h| h.as_m().ok())
                        .map(|m| m.len())
                })
                .unwrap_or(0);
            if held == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{held} operations still outstanding"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let slots: u64 = dynamodb
            .scan()
            .table_name(quota)
            .send()
            .await
            .expect("the quota table can be scanned")
            .items
            .unwrap_or_default()
            .iter()
            .filter(|item| {
                item.get("pk")
                    .and_then(|pk| pk.as_s().ok())
                    .is_some_and(|pk| pk.starts_with("sso-admin#window#"))
            })
            .filter_map(|item| item.get("calls")?.as_n().ok()?.parse::<u64>().ok())
            .sum();
        let counted: Value = reqwest::get(&calls)
            .await
            .expect("the emulator answers")
            .json()
            .await
            .expect("JSON");
        // The functions' own calls: the test's (key `localcloud`) take no slot.
        let requests: u64 = counted["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["service"] == "sso" && c["accessKey"] != "localcloud")
            .filter_map(|c| c["count"].as_u64())
            .sum();
        assert!(
            requests > 20,
            "the run made sso-admin requests ({requests})"
        );
        assert_eq!(
            slots, requests,
            "one slot per request sent, no more, no less"
        );
    });
}

/// The large organisation: accounts in three environments and 30 workloads, the convention's
/// groups for two job-functions among hundreds of others, and two managed permission sets
/// among many unmanaged ones.
const LARGE_ACCOUNTS: usize = 300;
const LARGE_WORKLOADS: usize = 30;
const LARGE_PERMISSION_SETS: usize = 60;
const LARGE_GROUPS: usize = 600;
const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

fn large_account(i: usize) -> (String, &'static str, String) {
    (
        format!("acct-{i:03}"),
        ENVIRONMENTS[i % 3],
        format!("w{:02}", i % LARGE_WORKLOADS),
    )
}

/// Seeds the large organisation through the AWS APIs and answers the desired assignments,
/// derived from its shape alone: every account gets its workload's developer group on
/// Developer (developers work everywhere), and in development and staging its workload's
/// tester group on Tester. Ids: (account id, permission set ARN, group id).
async fn large_organisation(cloud: &LocalCloud) -> BTreeSet<(String, String, String)> {
    let config = cloud.sdk_config();
    let organizations = aws_sdk_organizations::Client::new(config);
    let identity_store = aws_sdk_identitystore::Client::new(config);
    let sso_admin = aws_sdk_ssoadmin::Client::new(config);
    organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("an organisation");
    let root = organizations
        .list_roots()
        .send()
        .await
        .unwrap()
        .roots
        .unwrap()[0]
        .id
        .clone()
        .unwrap();
    let ou = |parent: String, name: &'static str| {
        let organizations = organizations.clone();
        async move {
            organizations
                .create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send()
                .await
                .expect("an OU")
                .organizational_unit
                .and_then(|ou| ou.id)
                .expect("an OU id")
        }
    };
    let workloads = ou(root.clone(), "Workloads").await;
    let mut environment_ous = Vec::new();
    for environment in ENVIRONMENTS {
        environment_ous.push(ou(workloads.clone(), environment).await);
    }
    let mut accounts = Vec::new();
    for i in 0..LARGE_ACCOUNTS {
        let (name, _, workload) = large_account(i);
        let id = organizations
            .create_account()
            .account_name(&name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("an account")
            .create_account_status
            .and_then(|s| s.account_id)
            .expect("an account id");
        organizations
            .move_account()
            .account_id(&id)
            .source_parent_id(&root)
            .destination_parent_id(&environment_ous[i % 3])
            .send()
            .await
            .expect("the account moves");
        organizations
            .tag_resource()
            .resource_id(&id)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key("workload")
                    .value(workload)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("the account is tagged");
        accounts.push(id);
    }
    let instance = sso_admin
        .list_instances()
        .send()
        .await
        .unwrap()
        .instances
        .unwrap()[0]
        .clone();
    let instance_arn = instance.instance_arn.unwrap();
    let store = instance.identity_store_id.unwrap();
    let mut developers = Vec::new();
    let mut testers = Vec::new();
    for i in 0..LARGE_GROUPS {
        let name = match i {
            i if i < LARGE_WORKLOADS => format!("developer_workload_w{i:02}"),
            i if i < 2 * LARGE_WORKLOADS => {
                format!("tester_workload_w{:02}", i - LARGE_WORKLOADS)
            }
            i => format!("team-{i:03}"),
        };
        let id = identity_store
            .create_group()
            .identity_store_id(&store)
            .display_name(&name)
            .send()
            .await
            .expect("a group")
            .group_id;
        match i {
            i if i < LARGE_WORKLOADS => developers.push(id),
            i if i < 2 * LARGE_WORKLOADS => testers.push(id),
            _ => {}
        }
    }
    let mut managed = Vec::new();
    for i in 0..LARGE_PERMISSION_SETS {
        let tag = |key: &str, value: &str| {
            aws_sdk_ssoadmin::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .unwrap()
        };
        let (name, job_function) = match i {
            0 => ("Developer".to_owned(), Some("developer")),
            1 => ("Tester".to_owned(), Some("tester")),
            i => (format!("Custom{i:02}"), None),
        };
        let mut request = sso_admin
            .create_permission_set()
            .instance_arn(&instance_arn)
            .name(&name);
        if let Some(job_function) = job_function {
            request = request
                .tags(tag("job_function", job_function))
                .tags(tag("workloads", "workload_match"));
        }
        let arn = request
            .send()
            .await
            .expect("a permission set")
            .permission_set
            .and_then(|s| s.permission_set_arn)
            .unwrap();
        if job_function.is_some() {
            managed.push(arn);
        }
    }
    let mut desired = BTreeSet::new();
    for (i, account) in accounts.iter().enumerate() {
        let (_, environment, _) = large_account(i);
        let workload = i % LARGE_WORKLOADS;
        desired.insert((
            account.clone(),
            managed[0].clone(),
            developers[workload].clone(),
        ));
        if environment != "production" {
            desired.insert((
                account.clone(),
                managed[1].clone(),
                testers[workload].clone(),
            ));
        }
    }
    desired
}

/// Every assignment of every permission set, as (account id, permission set ARN, principal id).
async fn all_assignments(cloud: &LocalCloud) -> BTreeSet<(String, String, String)> {
    let sso_admin = aws_sdk_ssoadmin::Client::new(cloud.sdk_config());
    let instance_arn = sso_admin
        .list_instances()
        .send()
        .await
        .unwrap()
        .instances
        .unwrap()[0]
        .instance_arn
        .clone()
        .unwrap();
    let mut found = BTreeSet::new();
    let sets = sso_admin
        .list_permission_sets()
        .instance_arn(&instance_arn)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("the permission sets");
    for set in sets {
        let accounts = sso_admin
            .list_accounts_for_provisioned_permission_set()
            .instance_arn(&instance_arn)
            .permission_set_arn(&set)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .expect("the provisioned accounts");
        for account in accounts {
            let assignments = sso_admin
                .list_account_assignments()
                .instance_arn(&instance_arn)
                .account_id(&account)
                .permission_set_arn(&set)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .expect("the assignments");
            for assignment in assignments {
                found.insert((
                    account.clone(),
                    set.clone(),
                    assignment.principal_id.unwrap_or_default(),
                ));
            }
        }
    }
    found
}

#[test]
fn a_large_organisation_reconciles_to_exactly_the_desired_set_within_the_quota() {
    // Issue 14, acceptance: 300 accounts x 60 permission sets x 600 groups, through the
    // template's wiring, with the emulator throttling sso-admin past 20 calls a second.
    on_local_cloud_with(
        Some(&maestro_template()),
        &[("MonitorPollFirstWaitSeconds", "1")],
        |cloud, stack| async move {
            let stack = stack.expect("the stack");
            let desired = large_organisation(cloud).await;
            assert_eq!(desired.len(), 500);
            // The run feeds its changes as the worker drains them: it is done once the
            // assignments are.
            let begun = begin(cloud, false).await;
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut found = all_assignments(cloud).await;
            while found != desired && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(10)).await;
                found = all_assignments(cloud).await;
            }
            assert_eq!(
                found.len(),
                desired.len(),
                "{} missing, {} not desired",
                desired.difference(&found).count(),
                found.difference(&desired).count()
            );
            assert_eq!(found, desired);
            let run = finished(cloud, &begun).await;
            assert_eq!(run["outcome"]["outcome"], "QUEUED", "{run}");
            assert_eq!(run["toCreate"], 500, "{run}");
            let dlq = stack.reference("SsoChangesDLQ").expect("the changes DLQ");
            let lost = receive_bodies(cloud, dlq, 10, Duration::from_secs(1)).await;
            assert!(
                lost.is_empty(),
                "nothing waited its way to the DLQ: {lost:?}"
            );
        },
    );
}
