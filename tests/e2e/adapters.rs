//! The AWS adapters against the emulator: the real Rust SDK on the wire.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use maestro_aws::plan_store::DynamoPlanStore;
use maestro_aws::snapshot::DynamoSnapshotStore;
use maestro_aws::sso_admin::SsoAdminProvisioning;
use maestro_aws::step_functions::StepFunctionsMonitorLauncher;
use maestro_domain::port::PortError;
use maestro_domain::sso::assignment_monitor::{
    MonitorBatch, MonitorLauncher, MonitorStart, PrincipalId, ProvisioningStatus,
    ProvisioningStatusReader,
};
use maestro_domain::sso::plan::Principal;
use maestro_domain::sso::reconcile::{LatestPlans, Scope};
use maestro_domain::sso::snapshot::{SnapshotPart, SnapshotStore};
use maestro_domain::sso::synthetic;
use maestro_localcloud::LocalCloud;
use maestro_tests::{clear_faults, inject_fault, maestro_template, on_local_cloud};
use serde_json::json;

use crate::sso_fixture::{STRANGER_ACCOUNT, SsoFixture};

#[test]
fn provisioning_status_is_in_progress_then_final() {
    on_local_cloud(None, |cloud, _| async move {
        let sso = SsoFixture::create(cloud).await;
        let adapter = SsoAdminProvisioning::new(cloud.sdk_config());

        let created = sso.create_assignment(&sso.member_account).await;
        assert_eq!(
            adapter.provisioning_status(&created).await,
            Ok(ProvisioningStatus::InProgress)
        );
        assert_eq!(
            adapter.provisioning_status(&created).await,
            Ok(ProvisioningStatus::Succeeded)
        );

        let refused = sso.create_assignment(STRANGER_ACCOUNT).await;
        adapter.provisioning_status(&refused).await.unwrap();
        assert_eq!(
            adapter.provisioning_status(&refused).await,
            Ok(ProvisioningStatus::Failed {
                reason: "Received a 404 status error: Not supported account".into()
            })
        );

        let mut unknown = created.clone();
        unknown.request_id = "00000000-0000-0000-0000-000000000000".try_into().unwrap();
        assert!(matches!(
            adapter.provisioning_status(&unknown).await,
            Err(PortError::NotFound { .. })
        ));
    });
}

#[test]
fn a_batch_is_started_once_however_often_it_is_delivered() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let arn = stack
            .reference("SsoAssignmentMonitorStateMachine")
            .expect("the monitor state machine")
            .to_owned();
        let launcher = StepFunctionsMonitorLauncher::new(cloud.sdk_config(), arn.clone());
        let batch = MonitorBatch::new(["m-1"], Vec::new());

        let first = launcher.start_monitor(&batch).await;
        let Ok(MonitorStart::Started { execution_arn }) = first else {
            panic!("the first delivery starts the monitor: {first:?}");
        };
        // Step Functions answers a repeat with the running execution, or with
        // ExecutionAlreadyExists once it ended; either way there is no second execution.
        match launcher.start_monitor(&batch).await {
            Ok(MonitorStart::AlreadyStarted) => {}
            Ok(MonitorStart::Started {
                execution_arn: again,
            }) => assert_eq!(again, execution_arn),
            Err(error) => panic!("a repeated delivery is not an error: {error}"),
        }
        let executions = aws_sdk_sfn::Client::new(cloud.sdk_config())
            .list_executions()
            .state_machine_arn(&arn)
            .send()
            .await
            .expect("executions can be listed")
            .executions;
        assert_eq!(executions.len(), 1);
    });
}

/// The snapshot's items of `kind` principals (`GROUPS`, `USERS`): their sort keys.
async fn principal_keys(cloud: &LocalCloud, table: &str, kind: &str) -> Vec<String> {
    aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :kind)")
        .expression_attribute_values(":pk", AttributeValue::S("SSO_SNAPSHOT#g-1".into()))
        .expression_attribute_values(":kind", AttributeValue::S(kind.into()))
        .send()
        .await
        .expect("the snapshot's items")
        .items
        .unwrap_or_default()
        .iter()
        .filter_map(|item| item.get("sk").and_then(|v| v.as_s().ok()).cloned())
        .collect()
}

fn groups(prefix: &str, count: usize) -> Vec<Principal> {
    (0..count)
        .map(|i| Principal {
            id: PrincipalId::try_from(format!("{prefix}-{i:06}")).unwrap(),
            name: format!("{prefix}_workload_{i}"),
        })
        .collect()
}

#[test]
fn the_snapshot_never_shows_a_mix_of_two_versions_of_the_principals() {
    // Review of issue 14: the principals were rewritten in place, chunk by chunk, so a reader
    // (or a write that failed midway) could see some chunks of the new list and some of the
    // old; groups missing from a mix look deleted, and their assignments are deleted.
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let table = stack.reference("SsoPlansTable").expect("the runs' table");
        let store = DynamoSnapshotStore::new(cloud.sdk_config(), table.to_owned());
        let first = groups("old", 1_500);
        store
            .write(
                "g-1",
                &[SnapshotPart::Groups {
                    groups: first.clone(),
                }],
            )
            .await
            .unwrap();

        // A rewrite whose switch fails leaves the old version whole.
        inject_fault(
            cloud,
            json!({"service": "dynamodb", "action": "PutItem", "code": "InternalServerError", "status": 500}),
        )
        .await;
        let second = groups("new", 1_400);
        let failed = store
            .write(
                "g-1",
                &[SnapshotPart::Groups {
                    groups: second.clone(),
                }],
            )
            .await;
        clear_faults(cloud).await;
        assert!(failed.is_err(), "the switch failed");
        assert_eq!(store.read("g-1").await.unwrap().inputs.groups, first);

        // A rewrite that lands replaces it whole, and leaves no chunk of it behind.
        store
            .write(
                "g-1",
                &[SnapshotPart::Groups {
                    groups: second.clone(),
                }],
            )
            .await
            .unwrap();
        assert_eq!(store.read("g-1").await.unwrap().inputs.groups, second);
        let keys = principal_keys(cloud, table, "GROUPS#").await;
        assert_eq!(keys.len(), 2, "two chunks of the new version: {keys:?}");

        // A read that finds a chunk of the version it reads gone fails, to be read again,
        // rather than answering part of the groups.
        aws_sdk_dynamodb::Client::new(cloud.sdk_config())
            .delete_item()
            .table_name(table)
            .key("pk", AttributeValue::S("SSO_SNAPSHOT#g-1".into()))
            .key("sk", AttributeValue::S(keys[1].clone()))
            .send()
            .await
            .unwrap();
        let torn = store.read("g-1").await;
        assert!(
            matches!(torn, Err(PortError::Transient { .. })),
            "{:?}",
            torn.map(|s| s.inputs.groups.len())
        );
    });
}

#[test]
fn the_latest_plan_of_an_assignment_is_the_newest_of_its_scopes() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let table = stack.reference("SsoPlansTable").expect("the runs' table");
        let plans = DynamoPlanStore::new(cloud.sdk_config(), table.to_owned());
        let at = |minute: u32| Utc.with_ymd_and_hms(2026, 11, 22, 12, minute, 0).unwrap();
        let in_a = synthetic::group_assignment(1, 2, 3);
        let in_b = synthetic::group_assignment(4, 5, 6);
        assert_eq!(plans.latest_covering(&in_a).await.unwrap(), None);

        plans.planned(&Scope::Everything, at(10)).await.unwrap();
        // A run that records late keeps nothing older than what is there.
        plans.planned(&Scope::Everything, at(5)).await.unwrap();
        plans
            .planned(
                &Scope::Account {
                    account_id: in_a.account_id.clone(),
                },
                at(20),
            )
            .await
            .unwrap();
        assert_eq!(plans.latest_covering(&in_a).await.unwrap(), Some(at(20)));
        assert_eq!(plans.latest_covering(&in_b).await.unwrap(), Some(at(10)));
        plans
            .planned(
                &Scope::PermissionSet {
                    permission_set_arn: in_b.permission_set_arn.clone(),
                },
                at(30),
            )
            .await
            .unwrap();
        assert_eq!(plans.latest_covering(&in_b).await.unwrap(), Some(at(30)));
    });
}
