//! The event sources the local host emulates besides SQS: EventBridge rules (default and
//! custom buses), schedules, and HTTP API routes, each reaching a recording function exactly
//! as the template wires it.

use std::time::Duration;

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use maestro_tests::{
    deploy_outcome, fixture_template, on_local_cloud, recorded_events, wait_for_recorded,
};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

fn entry(bus: Option<&str>, source: &str, detail: Value) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .set_event_bus_name(bus.map(str::to_owned))
        .source(source)
        .detail_type("AWS API Call via CloudTrail")
        .detail(detail.to_string())
        .build()
}

#[test]
fn a_rule_invokes_its_function_with_the_matching_events_only() {
    on_local_cloud(
        Some(&fixture_template("event-sources.yaml")),
        |cloud, _| async move {
            let events = aws_sdk_eventbridge::Client::new(cloud.sdk_config());
            let put = events
                .put_events()
                .entries(entry(
                    None,
                    "aws.organizations",
                    json!({"eventName": "UntagResource"}),
                ))
                .entries(entry(
                    None,
                    "aws.organizations",
                    json!({"eventName": "TagResource"}),
                ))
                .send()
                .await
                .expect("events are put");
            assert_eq!(put.failed_entry_count, 0);

            let received = wait_for_recorded(1, PATIENCE).await;
            assert_eq!(received.len(), 1, "{received:?}");
            assert_eq!(received[0]["source"], "aws.organizations");
            assert_eq!(received[0]["detail"]["eventName"], "TagResource");
            // Both events were matched when they were put; give a stray delivery time to show.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(
                recorded_events().len(),
                1,
                "the unmatched event never arrives"
            );
        },
    );
}

#[test]
fn a_rule_on_a_custom_bus_sends_its_input_path() {
    on_local_cloud(
        Some(&fixture_template("event-sources.yaml")),
        |cloud, _| async move {
            aws_sdk_eventbridge::Client::new(cloud.sdk_config())
                .put_events()
                .entries(entry(
                    Some("operations"),
                    "maestro.test",
                    json!({"sweep": "accounts"}),
                ))
                .send()
                .await
                .expect("the event is put");
            let received = wait_for_recorded(1, PATIENCE).await;
            assert_eq!(received, vec![json!({"sweep": "accounts"})]);
        },
    );
}

#[test]
fn schedules_send_their_input_or_the_scheduled_event() {
    on_local_cloud(
        Some(&fixture_template("event-sources.yaml")),
        |cloud, _| async move {
            cloud
                .fire_schedule("RecorderFunction", "Hourly")
                .await
                .expect("the hourly schedule fires");
            cloud
                .fire_schedule("RecorderFunction", "Nightly")
                .await
                .expect("a cron schedule fires on demand");
            let received = wait_for_recorded(2, PATIENCE).await;
            assert_eq!(received[0], json!({"sweep": "full"}));
            assert_eq!(received[1]["detail-type"], "Scheduled Event");
            assert_eq!(received[1]["source"], "aws.events");
            let unknown = cloud.fire_schedule("RecorderFunction", "Weekly").await;
            assert!(unknown.is_err(), "only the template's schedules fire");
        },
    );
}

#[test]
fn an_http_route_reaches_its_function_as_an_api_gateway_v2_event() {
    on_local_cloud(
        Some(&fixture_template("event-sources.yaml")),
        |cloud, _| async move {
            let http = reqwest::Client::new();
            let response = http
                .get(format!(
                    "{}/things/42?full=true&tag=a&tag=b",
                    cloud.http_endpoint()
                ))
                .header("x-request-origin", "test")
                .send()
                .await
                .expect("the HTTP API answers");
            assert_eq!(response.status(), 201);
            assert_eq!(response.headers()["x-recorded"], "yes");
            assert_eq!(response.text().await.unwrap(), "recorded");

            let received = wait_for_recorded(1, PATIENCE).await;
            let request: ApiGatewayV2httpRequest = serde_json::from_value(received[0].clone())
                .expect("the event is an API Gateway v2 request");
            assert_eq!(request.route_key.as_deref(), Some("GET /things/{id}"));
            assert_eq!(request.raw_path.as_deref(), Some("/things/42"));
            assert_eq!(request.path_parameters["id"], "42");
            assert_eq!(request.query_string_parameters.first("full"), Some("true"));
            assert_eq!(received[0]["queryStringParameters"]["tag"], "a,b");
            assert_eq!(request.headers["x-request-origin"], "test");
            assert_eq!(request.request_context.http.method, "GET");

            let missing = http
                .get(format!("{}/things", cloud.http_endpoint()))
                .send()
                .await
                .expect("the HTTP API answers");
            assert_eq!(missing.status(), 404, "no route, no function");
            assert_eq!(recorded_events().len(), 1);
        },
    );
}

#[test]
fn an_event_type_the_local_cloud_does_not_emulate_fails_the_build() {
    let mut template = fixture_template("event-sources.yaml");
    let events = &mut template
        .resource_mut("RecorderFunction")
        .expect("the recorder")["Properties"]["Events"];
    events["Uploads"] =
        json!({"Type": "S3", "Properties": {"Bucket": "b", "Events": "s3:ObjectCreated:*"}});
    let error = deploy_outcome(&template).unwrap_err();
    assert!(error.contains("RecorderFunction.Events.Uploads"), "{error}");
    assert!(error.contains("\"S3\""), "{error}");
}

#[test]
fn a_route_on_an_api_the_stack_does_not_have_fails_the_build() {
    let mut template = fixture_template("event-sources.yaml");
    let route = &mut template
        .resource_mut("RecorderFunction")
        .expect("the recorder")["Properties"]["Events"]["GetThing"]["Properties"];
    route["ApiId"] = json!({"Ref": "ApprovalsApi"});
    let error = deploy_outcome(&template).unwrap_err();
    assert!(
        error.contains("Ref ApprovalsApi names no parameter or resource"),
        "{error}"
    );
}
