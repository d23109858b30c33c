//! The quota governor, instrumented on the emulator: concurrent workers never hold more than
//! 15 outstanding operations, and never make more than 20 sso-admin calls in one second.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use maestro_aws::quota::DynamoQuota;
use maestro_domain::quota::{
    CallRate, OutstandingOperations, SSO_ADMIN_CALLS_KEPT_FOR_CHANGES, SSO_ADMIN_CALLS_PER_SECOND,
    SSO_ADMIN_OUTSTANDING_OPERATIONS,
};
use maestro_tests::{maestro_template, on_local_cloud};

#[test]
fn concurrent_workers_never_hold_more_than_fifteen_operations() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let table = stack
            .unwrap()
            .reference("MaestroQuotaTable")
            .unwrap()
            .to_owned();
        let quota = Arc::new(DynamoQuota::for_sso_admin(cloud.sdk_config(), table));
        let holding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..40)
            .map(|i| {
                let (quota, holding, most) = (quota.clone(), holding.clone(), most.clone());
                tokio::spawn(async move {
                    let key = format!("assignment-{i}");
                    loop {
                        let now = chrono::Utc::now();
                        let until = now + chrono::Duration::minutes(5);
                        if quota
                            .reserve(&key, "worker", now, until)
                            .await
                            .expect("the governor answers")
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let held = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(held, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    quota.release(&key).await.expect("the slot is freed");
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("every worker finishes");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            most <= SSO_ADMIN_OUTSTANDING_OPERATIONS,
            "{most} held at once"
        );
        assert!(most > 1, "the workers did run concurrently");
    });
}

#[test]
fn a_slot_is_held_for_one_change_at_a_time() {
    // Issue 14, finding 3: any caller could reserve a key already held, so two runs changing
    // the same assignment made two outstanding operations in one slot.
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let quota = DynamoQuota::for_sso_admin(
            cloud.sdk_config(),
            stack
                .unwrap()
                .reference("MaestroQuotaTable")
                .unwrap()
                .to_owned(),
        );
        let now = chrono::Utc::now();
        let until = now + chrono::Duration::minutes(5);
        let reserve = |holder: &'static str| quota.reserve("assignment-1", holder, now, until);
        assert!(reserve("run-1/Create").await.expect("the governor answers"));
        assert!(
            reserve("run-1/Create").await.expect("the governor answers"),
            "the same change, redelivered"
        );
        assert!(
            !reserve("run-2/Create").await.expect("the governor answers"),
            "another run's change of the same assignment waits"
        );
        quota
            .release("assignment-1")
            .await
            .expect("the slot is freed");
        assert!(reserve("run-2/Create").await.expect("the governor answers"));
    });
}

#[test]
fn concurrent_callers_never_exceed_twenty_calls_a_second() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let table = stack
            .unwrap()
            .reference("MaestroQuotaTable")
            .unwrap()
            .to_owned();
        let quota = Arc::new(DynamoQuota::for_sso_admin(
            cloud.sdk_config(),
            table.clone(),
        ));
        let callers: Vec<_> = (0..60)
            .map(|_| {
                let quota = quota.clone();
                tokio::spawn(async move { quota.take().await.expect("a call slot comes") })
            })
            .collect();
        for caller in callers {
            caller.await.expect("every caller gets a slot");
        }
        // The counters the governor kept, one per second.
        let per_second = calls_per_second(cloud, &table).await;
        assert_eq!(per_second.iter().sum::<u32>(), 60, "{per_second:?}");
        assert!(
            per_second
                .iter()
                .all(|calls| *calls <= SSO_ADMIN_CALLS_PER_SECOND),
            "{per_second:?}"
        );
        assert!(
            per_second.len() >= 3,
            "60 calls need three seconds at least: {per_second:?}"
        );
    });
}

#[test]
fn a_change_that_finds_every_slot_taken_waits_on_the_queue_not_in_the_dlq() {
    // Issue 14, finding 3: each refusal spent one of the change's five receives, and large
    // change sets ended in SsoChangesDLQ.
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let quota = DynamoQuota::for_sso_admin(
            cloud.sdk_config(),
            stack.reference("MaestroQuotaTable").unwrap().to_owned(),
        );
        let now = chrono::Utc::now();
        for i in 0..SSO_ADMIN_OUTSTANDING_OPERATIONS {
            assert!(
                quota
                    .reserve(
                        &format!("elsewhere-{i}"),
                        "another run",
                        now,
                        now + chrono::Duration::hours(1)
                    )
                    .await
                    .expect("the governor answers"),
                "slot {i} is free"
            );
        }
        let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
        let changes = stack
            .output("SsoChangesQueueUrl")
            .expect("the changes queue");
        let body: serde_json::Value = serde_json::from_str(include_str!(
            "../../events/sso-assignment-worker/sqs-changes.json"
        ))
        .expect("the sample event");
        sqs.send_message()
            .queue_url(changes)
            .message_body(body["Records"][0]["body"].as_str().expect("a change"))
            .send()
            .await
            .expect("the change is queued");

        // The worker takes it, finds no slot, and puts it back delayed: nothing fails.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let delayed = loop {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(changes)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .expect("the queue answers")
                .attributes
                .unwrap_or_default();
            let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
                attributes
                    .get(&name)
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            let delayed =
                count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed);
            let visible =
                count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages);
            let in_flight = count(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            );
            if delayed == 1 && visible == 0 && in_flight == 0 {
                break delayed;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the change waits delayed (delayed {delayed}, visible {visible}, in flight {in_flight})"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(delayed, 1);
        let dlq = stack.reference("SsoChangesDLQ").expect("the changes DLQ");
        let dead = sqs
            .receive_message()
            .queue_url(dlq)
            .send()
            .await
            .expect("the DLQ answers")
            .messages
            .unwrap_or_default();
        assert!(dead.is_empty(), "nothing in the DLQ: {dead:?}");
        assert!(
            maestro_tests::captured_logs().contains("the change waits on the queue"),
            "the worker said why it waits"
        );
    });
}

#[test]
fn readers_leave_a_share_of_every_second_to_the_worker_and_the_monitor() {
    // Issue 14, finding 3: reconcile runs and events could take all 20 calls of a second,
    // and the monitor's polls waited until they failed.
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let table = stack
            .unwrap()
            .reference("MaestroQuotaTable")
            .unwrap()
            .to_owned();
        let readers = Arc::new(DynamoQuota::for_sso_admin_readers(
            cloud.sdk_config(),
            table.clone(),
        ));
        let reads: Vec<_> = (0..45)
            .map(|_| {
                let readers = readers.clone();
                tokio::spawn(async move { readers.take().await.expect("a call slot comes") })
            })
            .collect();
        for read in reads {
            read.await.expect("every read gets a slot");
        }
        let per_second = calls_per_second(cloud, &table).await;
        assert_eq!(per_second.iter().sum::<u32>(), 45, "{per_second:?}");
        let reader_limit = SSO_ADMIN_CALLS_PER_SECOND - SSO_ADMIN_CALLS_KEPT_FOR_CHANGES;
        assert!(
            per_second.iter().all(|calls| *calls <= reader_limit),
            "readers took more than {reader_limit} of a second: {per_second:?}"
        );
    });
}

/// The calls the governor let through in each second that had calls, from its counters of a
/// fifth of a second each (none of which may hold more than a fifth of the second's calls).
async fn calls_per_second(cloud: &maestro_localcloud::LocalCloud, table: &str) -> Vec<u32> {
    let windows: Vec<(i64, u32)> = aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("the quota table can be read")
        .items
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            let window = item
                .get("pk")?
                .as_s()
                .ok()?
                .strip_prefix("sso-admin#window#")?
                .parse()
                .ok()?;
            let calls = item.get("calls")?.as_n().ok()?.parse().ok()?;
            Some((window, calls))
        })
        .collect();
    assert!(
        windows
            .iter()
            .all(|(_, calls)| *calls <= SSO_ADMIN_CALLS_PER_SECOND / 5),
        "no fifth of a second holds more than its share: {windows:?}"
    );
    let mut seconds: std::collections::BTreeMap<i64, u32> = std::collections::BTreeMap::new();
    for (window, calls) in windows {
        *seconds.entry(window.div_euclid(5)).or_default() += calls;
    }
    seconds.into_values().collect()
}

#[test]
fn runs_at_the_same_moment_cannot_together_delete_past_the_threshold() {
    // Issue 14, finding 6, and its review: the budget must hold under concurrent runs, even
    // when they straddle a window's end.
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        use maestro_domain::sso::reconcile::{DeleteBudget, Spent};
        let table = stack
            .unwrap()
            .reference("SsoPlansTable")
            .unwrap()
            .to_owned();
        let budget = Arc::new(maestro_aws::plan_store::DynamoPlanStore::new(
            cloud.sdk_config(),
            table,
        ));
        // Ten runs of two deletes each, half of them one second into the next window.
        let window_end = chrono::DateTime::from_timestamp(1_800_000_000 / 3600 * 3600 + 3600, 0)
            .expect("a time");
        let runs: Vec<_> = (0..10)
            .map(|i| {
                let budget = budget.clone();
                let at = window_end + chrono::Duration::seconds(if i % 2 == 0 { -1 } else { 1 });
                tokio::spawn(async move {
                    budget
                        .spend(at, 60, 2, 10)
                        .await
                        .expect("the budget answers")
                })
            })
            .collect();
        let mut within = 0;
        for run in runs {
            if run.await.expect("a run") == Spent::Within {
                within += 1;
            }
        }
        assert_eq!(within, 5, "ten deletes at most, in one window or two");
    });
}
