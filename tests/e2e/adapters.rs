//! The AWS adapters against the emulator: the real Rust SDK on the wire.

use maestro_aws::sso_admin::SsoAdminProvisioning;
use maestro_aws::step_functions::StepFunctionsMonitorLauncher;
use maestro_domain::port::PortError;
use maestro_domain::sso::provisioning::{
    MonitorBatch, MonitorLauncher, MonitorStart, ProvisioningStatus, ProvisioningStatusReader,
};
use maestro_tests::{maestro_template, on_local_cloud};

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
