//! Invoking the stack's functions in-process, and the Lambda Invoke API that moto's Step
//! Functions interpreter (and any SDK client) calls.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lambda_runtime::{Context, Diagnostic};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::stack::DeployedFunction;

/// The functions of the current stack, by name.
pub type FunctionTable = Arc<RwLock<BTreeMap<String, Arc<DeployedFunction>>>>;

/// How often each function ran and for how long, by logical id, since the last
/// [`take_invocation_stats`]: what Lambda bills, for the cost measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InvocationStats {
    pub invocations: u64,
    pub total: Duration,
}

static INVOCATION_STATS: std::sync::Mutex<BTreeMap<String, InvocationStats>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The invocations counted so far, and a fresh count from now on.
pub fn take_invocation_stats() -> BTreeMap<String, InvocationStats> {
    std::mem::take(
        &mut *INVOCATION_STATS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// Runs one invocation as Lambda would: a fresh request id, the function's timeout.
pub async fn invoke(function: &DeployedFunction, payload: Value) -> Result<Value, Diagnostic> {
    let started = std::time::Instant::now();
    let result = invoke_timed(function, payload).await;
    let mut stats = INVOCATION_STATS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let entry = stats.entry(function.logical_id.clone()).or_default();
    entry.invocations += 1;
    entry.total += started.elapsed();
    result
}

async fn invoke_timed(function: &DeployedFunction, payload: Value) -> Result<Value, Diagnostic> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut context = Context::default();
    context.request_id = request_id.clone();
    context.invoked_function_arn = function.arn.clone();
    let deadline = Duration::from_secs(function.timeout_seconds);
    context.deadline = (chrono::Utc::now() + deadline).timestamp_millis().max(0) as u64;
    let span = tracing::info_span!("invoke", function = %function.logical_id, %request_id);
    let outcome = tokio::time::timeout(deadline, function.handler.invoke(payload, context))
        .instrument(span.clone())
        .await;
    let result = match outcome {
        Ok(result) => result,
        Err(_) => Err(Diagnostic {
            error_type: "Sandbox.Timedout".into(),
            error_message: format!("Task timed out after {} seconds", function.timeout_seconds),
        }),
    };
    span.in_scope(|| match &result {
        Ok(_) => tracing::debug!("invocation succeeded"),
        Err(error) => tracing::info!(error_type = %error.error_type, "invocation failed"),
    });
    result
}

/// Finds a function by the forms Lambda accepts: name, ARN, or either with a qualifier.
pub fn find(table: &FunctionTable, name_or_arn: &str) -> Option<Arc<DeployedFunction>> {
    let name = match name_or_arn.strip_prefix("arn:") {
        // arn:aws:lambda:region:account:function:name[:qualifier]
        Some(_) => name_or_arn.split(':').nth(6)?,
        None => name_or_arn.split(':').next()?,
    };
    table
        .read()
        .expect("the function table lock is never poisoned: no code panics while holding it")
        .get(name)
        .cloned()
}

/// The Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`).
pub fn router(table: FunctionTable) -> Router {
    Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(invoke_api),
        )
        .with_state(table)
}

async fn invoke_api(
    State(table): State<FunctionTable>,
    Path(function_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut response = answer_invoke(table, function_name, headers, body).await;
    // Every Lambda answer carries a request id; clients read it from errors too.
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

async fn answer_invoke(
    table: FunctionTable,
    function_name: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(function) = find(&table, &function_name) else {
        let mut response = (
            StatusCode::NOT_FOUND,
            axum::Json(json!({
                "Type": "User",
                "Message": format!("Function not found: {function_name}"),
            })),
        )
            .into_response();
        response.headers_mut().insert(
            "x-amzn-errortype",
            HeaderValue::from_static("ResourceNotFoundException"),
        );
        return response;
    };
    let payload = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(payload) => payload,
            Err(e) => {
                let mut response = (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"Type": "User", "Message": format!("Could not parse request body into json: {e}")})),
                )
                    .into_response();
                response.headers_mut().insert(
                    "x-amzn-errortype",
                    HeaderValue::from_static("InvalidRequestContentException"),
                );
                return response;
            }
        }
    };
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "Event" => {
            tokio::spawn(async move {
                let _ = invoke(&function, payload).await;
            });
            StatusCode::ACCEPTED.into_response()
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        _ => match invoke(&function, payload).await {
            Ok(output) => (StatusCode::OK, axum::Json(output)).into_response(),
            Err(error) => {
                // Lambda reports a handler error as a successful call with this header; Step
                // Functions matches Retry and Catch on errorType.
                let mut response = (
                    StatusCode::OK,
                    axum::Json(json!({
                        "errorType": error.error_type,
                        "errorMessage": error.error_message,
                    })),
                )
                    .into_response();
                response.headers_mut().insert(
                    "x-amz-function-error",
                    HeaderValue::from_static("Unhandled"),
                );
                response
            }
        },
    }
}
