//! The Lambda Invoke API the local host serves (what moto's Step Functions interpreter calls),
//! and Lambda's behaviour for a function whose cold start fails.

use maestro_tests::{maestro_template, on_local_cloud};
use serde_json::{Value, json};

use crate::sso_fixture::SsoFixture;

fn invocations_url(endpoint: &str, function: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(function.as_bytes()).collect();
    format!("{endpoint}/2015-03-31/functions/{encoded}/invocations")
}

#[test]
fn the_invoke_api_answers_as_lambda_does() {
    on_local_cloud(Some(&maestro_template()), |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let arn = stack
            .attribute("SsoAssignmentMonitorFunction", "Arn")
            .expect("the status function")
            .to_owned();
        let http = reqwest::Client::new();
        let sso = SsoFixture::create(cloud).await;
        let request = sso.create_assignment(&sso.member_account).await;

        let answer = http
            .post(invocations_url(cloud.lambda_endpoint(), &arn))
            .json(&json!({"request": request, "polls": 0}))
            .send()
            .await
            .expect("the Invoke API answers");
        assert_eq!(answer.status(), 200);
        assert!(answer.headers().get("x-amz-function-error").is_none());
        let progress: Value = answer.json().await.unwrap();
        assert_eq!(progress["state"], "IN_PROGRESS");

        let failed = http
            .post(invocations_url(cloud.lambda_endpoint(), &arn))
            .json(&json!({"request": {"requestId": "x"}}))
            .send()
            .await
            .expect("the Invoke API answers");
        assert_eq!(failed.status(), 200, "a handler error is a successful call");
        assert_eq!(failed.headers()["x-amz-function-error"], "Unhandled");
        let error: Value = failed.json().await.unwrap();
        assert_eq!(error["errorType"], "Runtime.UnmarshalError");

        let missing = http
            .post(invocations_url(
                cloud.lambda_endpoint(),
                "maestro-NoSuchFunction",
            ))
            .json(&json!({}))
            .send()
            .await
            .expect("the Invoke API answers");
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.headers()["x-amzn-errortype"],
            "ResourceNotFoundException"
        );
    });
}

#[test]
fn a_function_missing_an_environment_variable_fails_every_invocation_with_an_init_error() {
    let mut template = maestro_template();
    template
        .resource_mut("SsoAssignmentMonitorFunction")
        .expect("the status function")["Properties"]["Environment"]["Variables"]
        .as_object_mut()
        .expect("variables")
        .remove("POLL_MAX_POLLS");
    on_local_cloud(Some(&template), |cloud, stack| async move {
        let stack = stack.expect("the stack builds, as CloudFormation would");
        let name = stack
            .reference("SsoAssignmentMonitorFunction")
            .expect("the status function");
        let error = cloud
            .invoke(name, json!({}))
            .await
            .expect_err("the cold start fails");
        assert_eq!(error.error_type, "Runtime.InitError");
        assert!(
            error.error_message.contains("POLL_MAX_POLLS is not set"),
            "{}",
            error.error_message
        );
    });
}
