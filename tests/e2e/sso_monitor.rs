//! The SSO assignment monitor (flow C), through the template's wiring: requests on
//! SsoAssignmentRequestsQueue end as reports on AuditTopic.

use std::collections::BTreeMap;
use std::time::Duration;

use maestro_domain::sso::assignment_monitor::{
    AssignmentRequest, FailureClass, FinalStatus, ProvisioningReport,
};
use maestro_localcloud::{LocalCloud, Stack};
use maestro_tests::{listen_to_topic, maestro_template, on_local_cloud, receive_bodies};

use crate::sso_fixture::{STRANGER_ACCOUNT, SsoFixture};

const PATIENCE: Duration = Duration::from_secs(60);

async fn put_on_monitor_queue(cloud: &LocalCloud, stack: &Stack, bodies: &[String]) {
    let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
    let queue_url = stack
        .output("SsoAssignmentRequestsQueueUrl")
        .expect("the template outputs the monitor queue");
    let mut batch = sqs.send_message_batch().queue_url(queue_url);
    for (i, body) in bodies.iter().enumerate() {
        batch = batch.entries(
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
                .expect("a batch entry"),
        );
    }
    let sent = batch.send().await.expect("the requests are queued");
    assert!(
        sent.failed.is_empty(),
        "every request is queued: {:?}",
        sent.failed
    );
}

/// The stack's audit topic, listened to, and an IAM Identity Center to make requests on.
async fn monitored_sso(cloud: &LocalCloud, stack: &Stack) -> (String, SsoFixture) {
    let audit_topic = stack.output("AuditTopicArn").expect("the audit topic");
    let audit = listen_to_topic(cloud, audit_topic, "audit-listener").await;
    (audit, SsoFixture::create(cloud).await)
}

fn body(request: &AssignmentRequest) -> String {
    serde_json::to_string(request).expect("a request serialises")
}

fn reports_by_request(bodies: &[String]) -> BTreeMap<String, ProvisioningReport> {
    bodies
        .iter()
        .map(|b| {
            let report: ProvisioningReport = serde_json::from_str(b)
                .unwrap_or_else(|e| panic!("the audit message is a report ({e}): {b}"));
            (report.request.request_id.to_string(), report)
        })
        .collect()
}

#[test]
fn every_request_on_the_queue_ends_as_one_audit_report_with_its_final_status() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let (audit, sso) = monitored_sso(cloud, &stack).await;
        let created = sso.create_assignment(&sso.member_account).await;
        let refused = sso.create_assignment(STRANGER_ACCOUNT).await;
        let deleted = sso.delete_assignment(&sso.member_account).await;

        put_on_monitor_queue(
            cloud,
            &stack,
            &[body(&created), body(&refused), body(&deleted)],
        )
        .await;

        let bodies = receive_bodies(cloud, &audit, 3, PATIENCE).await;
        let reports = reports_by_request(&bodies);
        assert_eq!(reports.len(), 3, "one report per request: {bodies:?}");

        let report = &reports[created.request_id.as_str()];
        assert_eq!(report.status, FinalStatus::Succeeded);
        assert_eq!(report.request, created);
        assert_eq!(report.polls, 2, "the first poll found it in progress");

        let report = &reports[refused.request_id.as_str()];
        assert_eq!(report.status, FinalStatus::Failed);
        assert_eq!(
            report.failure_reason.as_deref(),
            Some("Received a 404 status error: Not supported account")
        );
        assert_eq!(
            report.failure_class,
            Some(FailureClass::AccountNotAvailable)
        );

        let report = &reports[deleted.request_id.as_str()];
        assert_eq!(report.status, FinalStatus::Succeeded);
        assert_eq!(report.request.operation, deleted.operation);
    });
}

#[test]
fn a_malformed_record_ends_in_the_dlq_without_holding_back_its_batch() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let (audit, sso) = monitored_sso(cloud, &stack).await;
        let good = sso.create_assignment(&sso.member_account).await;
        let malformed =
            r#"{"requestId": "x", "operation": "CREATE", "accountId": "12"}"#.to_owned();

        put_on_monitor_queue(cloud, &stack, &[malformed.clone(), body(&good)]).await;

        let bodies = receive_bodies(cloud, &audit, 1, PATIENCE).await;
        let reports = reports_by_request(&bodies);
        assert_eq!(
            reports[good.request_id.as_str()].status,
            FinalStatus::Succeeded
        );

        let dlq = stack.output("SsoAssignmentRequestsDLQUrl").unwrap();
        let dead = receive_bodies(cloud, dlq, 1, PATIENCE).await;
        assert_eq!(
            dead,
            vec![malformed],
            "the malformed record, and only it, is in the DLQ"
        );
    });
}

#[test]
fn an_unknown_request_is_reported_as_a_monitor_error_not_lost() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let (audit, sso) = monitored_sso(cloud, &stack).await;
        let mut unknown = sso.create_assignment(&sso.member_account).await;
        unknown.request_id = "00000000-0000-0000-0000-000000000000".try_into().unwrap();
        // The worker reserved the request's operation slot before asking for it.
        let quota = maestro_aws::quota::DynamoQuota::for_sso_admin(
            cloud.sdk_config(),
            stack.reference("MaestroQuotaTable").unwrap().to_owned(),
        );
        let slot = maestro_domain::quota::operation_key(
            unknown.account_id.as_str(),
            unknown.permission_set_arn.as_str(),
            unknown.principal_id.as_str(),
        );
        let now = chrono::Utc::now();
        assert!(
            maestro_domain::quota::OutstandingOperations::reserve(
                &quota,
                &slot,
                "run-1/Create",
                now,
                now + chrono::Duration::hours(2),
            )
            .await
            .expect("the governor answers")
        );

        put_on_monitor_queue(cloud, &stack, &[body(&unknown)]).await;

        let bodies = receive_bodies(cloud, &audit, 1, PATIENCE).await;
        assert_eq!(bodies.len(), 1, "one report for the request");
        let report: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(report["status"], "MONITOR_ERROR");
        assert_eq!(report["request"]["requestId"], unknown.request_id.as_str());
        let reason = report["failureReason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("NotFound"),
            "the reason names the error type: {reason}"
        );
        // The slot is free again at once, not in two hours (issue 14, finding 3): a change
        // of the same assignment from another run may have it.
        assert!(
            maestro_domain::quota::OutstandingOperations::reserve(
                &quota,
                &slot,
                "run-2/Create",
                now,
                now + chrono::Duration::hours(2),
            )
            .await
            .expect("the governor answers"),
            "the MONITOR_ERROR freed the slot"
        );
    });
}
