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

/// The event patterns of the rules with `detail-type` `kind`, by their one source.
fn patterns_by_source<'a>(
    rules: impl Iterator<Item = &'a serde_json::Value>,
    kind: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut found = std::collections::BTreeMap::new();
    for pattern in rules {
        if pattern["detail-type"] != json!([kind]) {
            continue;
        }
        let source = pattern["source"][0]
            .as_str()
            .expect("a rule names its source");
        assert_eq!(pattern["source"].as_array().map(Vec::len), Some(1));
        let previous = found.insert(source.to_owned(), pattern.clone());
        assert!(previous.is_none(), "one rule per source: {source}");
    }
    found
}

#[test]
fn discovery_and_the_member_forwarder_listen_for_every_refresh_event_and_the_same_ones() {
    // Issue 15, finding 9: the rule named 29 calls of 5 services; snapshots, images, the
    // network, CloudFront and most modifications went unseen until the next crawl.
    use maestro_domain::inventory::events::{
        API_CALL, INSTANCE_STATE_CHANGE, REFRESH_EVENTS, SETTLED_INSTANCE_STATES,
    };
    let maestro = maestro_template();
    let events = maestro.document["Resources"]["DiscoveryEventsFunction"]["Properties"]["Events"]
        .as_object()
        .expect("the events function has event sources")
        .clone();
    let maestro_rules: Vec<serde_json::Value> = events
        .values()
        .filter(|e| e["Type"] == "EventBridgeRule")
        .map(|e| e["Properties"]["Pattern"].clone())
        .collect();
    let forwarder = Template::load(
        &maestro_localcloud::moto::repository_root().join("infra/member-events-forwarder.yaml"),
    )
    .expect("the member forwarder template loads");
    let forwarder_rules: Vec<serde_json::Value> =
        forwarder
            .resources()
            .filter(|(_, r)| r["Type"] == "AWS::Events::Rule")
            .map(|(id, r)| {
                let target = &r["Properties"]["Targets"][0];
                assert!(
                    target["Arn"]["Fn::Sub"].as_str().is_some_and(|arn| arn
                        .ends_with("${MaestroRegion}:${MaestroAccountId}:event-bus/default")),
                    "{id} forwards to Maestro's bus"
                );
                assert_eq!(
                    target["RoleArn"],
                    json!({"Fn::GetAtt": ["ForwardingRole", "Arn"]})
                );
                r["Properties"]["EventPattern"].clone()
            })
            .collect();

    let expected: std::collections::BTreeMap<String, serde_json::Value> = REFRESH_EVENTS
        .iter()
        .map(|(source, calls)| {
            let names: Vec<serde_json::Value> = calls
                .iter()
                .map(|call| {
                    if call.versioned {
                        json!({"prefix": call.name})
                    } else {
                        json!(call.name)
                    }
                })
                .collect();
            (
                (*source).to_owned(),
                json!({"source": [source], "detail-type": [API_CALL], "detail": {"eventName": names}}),
            )
        })
        .collect();
    let state_changes = json!({
        "source": ["aws.ec2"],
        "detail-type": [INSTANCE_STATE_CHANGE],
        "detail": {"state": SETTLED_INSTANCE_STATES},
    });
    for (whose, rules) in [
        ("Maestro", &maestro_rules),
        ("the forwarder", &forwarder_rules),
    ] {
        assert_eq!(
            patterns_by_source(rules.iter(), API_CALL),
            expected,
            "{whose}'s rules name exactly the refresh events"
        );
        let states = patterns_by_source(rules.iter(), INSTANCE_STATE_CHANGE);
        assert_eq!(states.get("aws.ec2"), Some(&state_changes), "{whose}");
        assert_eq!(rules.len(), expected.len() + 1, "{whose} has no other rule");
        for pattern in rules.iter() {
            let length = pattern.to_string().chars().count();
            assert!(
                length <= maestro_localcloud::stack::EVENT_PATTERN_MAX_CHARS,
                "{whose}: a pattern of {length} characters is over EventBridge's limit"
            );
        }
    }
}

#[test]
fn an_event_pattern_longer_than_eventbridge_takes_fails_the_build() {
    // EventBridge refuses a pattern of more than 2,048 characters; one rule for every refresh
    // event would have been one.
    let template = broken(|t| {
        let events = &mut resource(t, "DiscoveryEventsFunction")["Properties"]["Events"];
        let mut names = Vec::new();
        for rule in events.as_object().expect("events").values() {
            if let Some(calls) = rule["Properties"]["Pattern"]["detail"]["eventName"].as_array() {
                names.extend(calls.iter().cloned());
            }
        }
        events["Ec2Changes"]["Properties"]["Pattern"]["detail"]["eventName"] = json!(names);
    });
    let error = deploy_outcome(&template).unwrap_err();
    assert!(
        error.contains("DiscoveryEventsFunction")
            && error.contains("EventBridge takes at most 2048"),
        "{error}"
    );
}
