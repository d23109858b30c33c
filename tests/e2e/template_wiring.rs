//! Wiring mistakes in the template fail here, locally, not at deployment: each test breaks a
//! copy of infra/template.yaml the way a careless edit would.

use std::time::Duration;

use maestro_localcloud::Template;
use maestro_tests::{deploy_outcome, maestro_template, on_local_cloud, receive_bodies};
use serde_json::json;

use crate::sso_fixture::SsoFixture;

fn broken(edit: impl FnOnce(&mut Template)) -> Template {
    let mut template = maestro_template();
    edit(&mut template);
    template
}

fn resource<'a>(template: &'a mut Template, logical_id: &str) -> &'a mut serde_json::Value {
    template
        .resource_mut(logical_id)
        .unwrap_or_else(|| panic!("the template has {logical_id}"))
}

#[test]
fn a_reference_to_a_resource_that_does_not_exist_fails_the_build() {
    let template = broken(|t| {
        resource(t, "SsoAssignmentMonitorStarterFunction")["Properties"]["Environment"]["Variables"]
            ["MONITOR_STATE_MACHINE_ARN"] = json!({"Ref": "SsoAssignmentMonitor"});
    });
    let error = deploy_outcome(&template).unwrap_err();
    assert!(
        error.contains("Ref SsoAssignmentMonitor names no parameter or resource"),
        "{error}"
    );
}

#[test]
fn a_state_machine_placeholder_without_a_substitution_fails_the_build() {
    let template = broken(|t| {
        let substitutions = &mut resource(t, "SsoAssignmentMonitorStateMachine")["Properties"]["DefinitionSubstitutions"];
        substitutions
            .as_object_mut()
            .expect("substitutions")
            .remove("AuditTopicArn");
    });
    let error = deploy_outcome(&template).unwrap_err();
    assert!(error.contains("${AuditTopicArn}"), "{error}");
}

#[test]
fn a_function_whose_crate_the_host_does_not_know_fails_the_build() {
    let template = broken(|t| {
        resource(t, "SsoAssignmentMonitorFunction")["Metadata"]["BuildProperties"]["Binary"] =
            json!("sso-assignment-stats");
    });
    let error = deploy_outcome(&template).unwrap_err();
    assert!(error.contains("\"sso-assignment-stats\""), "{error}");
}

#[test]
fn an_event_source_on_a_queue_of_another_stack_fails_the_build() {
    let template = broken(|t| {
        resource(t, "SsoAssignmentMonitorStarterFunction")["Properties"]["Events"]["AssignmentRequests"]
            ["Properties"]["Queue"] = json!("arn:aws:sqs:us-east-1:123456789012:elsewhere");
    });
    let error = deploy_outcome(&template).unwrap_err();
    assert!(error.contains("is not a queue of this stack"), "{error}");
}

#[test]
fn without_its_event_source_mapping_the_requests_stay_on_the_queue() {
    let template = broken(|t| {
        resource(t, "SsoAssignmentMonitorStarterFunction")["Properties"]
            .as_object_mut()
            .expect("properties")
            .remove("Events");
    });
    on_local_cloud(Some(&template), |cloud, stack| async move {
        let stack = stack.expect("the stack still builds");
        let sso = SsoFixture::create(cloud).await;
        let request = sso.create_assignment(&sso.member_account).await;
        let queue = stack.output("SsoAssignmentRequestsQueueUrl").unwrap();
        let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
        sqs.send_message()
            .queue_url(queue)
            .message_body(serde_json::to_string(&request).unwrap())
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let waiting = receive_bodies(cloud, queue, 1, Duration::from_secs(5)).await;
        assert_eq!(waiting.len(), 1, "nobody consumed the request");
    });
}

#[test]
fn a_wrong_state_machine_arn_in_the_environment_sends_the_requests_to_the_dlq() {
    let template = broken(|t| {
        resource(t, "SsoAssignmentMonitorStarterFunction")["Properties"]["Environment"]["Variables"]
            ["MONITOR_STATE_MACHINE_ARN"] =
            json!({"Fn::Sub": "arn:aws:states:${AWS::Region}:${AWS::AccountId}:stateMachine:nope"});
    });
    on_local_cloud(Some(&template), |cloud, stack| async move {
        let stack = stack.expect("the stack still builds");
        let sso = SsoFixture::create(cloud).await;
        let request = sso.create_assignment(&sso.member_account).await;
        let sqs = aws_sdk_sqs::Client::new(cloud.sdk_config());
        sqs.send_message()
            .queue_url(stack.output("SsoAssignmentRequestsQueueUrl").unwrap())
            .message_body(serde_json::to_string(&request).unwrap())
            .send()
            .await
            .unwrap();
        let dlq = stack.output("SsoAssignmentRequestsDLQUrl").unwrap();
        let dead = receive_bodies(cloud, dlq, 1, Duration::from_secs(60)).await;
        assert_eq!(
            dead.len(),
            1,
            "the request could not be monitored and is in the DLQ"
        );
    });
}

#[test]
fn the_management_accounts_organizations_events_reach_maestros_bus() {
    // Issue 14, finding 4: with Maestro in the delegated administrator account, the forwarder
    // sent the management account's events to the management account's own bus.
    let forwarder = Template::load(
        &maestro_localcloud::moto::repository_root().join("infra/us-east-1-forwarder.yaml"),
    )
    .expect("the forwarder template loads");
    let rule = &forwarder.document["Resources"]["ForwardOrganizationEvents"]["Properties"];
    let target = rule["Targets"][0]["Arn"]["Fn::Sub"]
        .as_str()
        .expect("the target is the bus of a named account and region");
    assert!(
        target.contains("${MaestroRegion}:${MaestroAccountId}:event-bus/default"),
        "{target}"
    );
    // Every Organizations event the SSO sync listens for is forwarded.
    let maestro = maestro_template();
    let resources = &maestro.document["Resources"];
    let listened = &resources["SsoEventHandlerFunction"]["Properties"]["Events"]["OrganizationChanges"]
        ["Properties"]["Pattern"];
    assert_eq!(
        rule["EventPattern"]["detail"]["eventName"], listened["detail"]["eventName"],
        "the forwarder and the handler's rule name the same events"
    );
    assert_eq!(rule["EventPattern"]["source"], listened["source"]);
    // Maestro's bus takes them from the organisation's accounts, and from no one else.
    let policy = &resources["OrganisationEventsPolicy"]["Properties"];
    assert_eq!(policy["EventBusName"], "default");
    assert_eq!(policy["Statement"]["Action"], "events:PutEvents");
    assert_eq!(
        policy["Statement"]["Condition"]["StringEquals"]["aws:PrincipalOrgID"],
        "${aws:ResourceOrgID}"
    );
}
