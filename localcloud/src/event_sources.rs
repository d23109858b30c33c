//! What feeds the functions, as Lambda and EventBridge run it.
//!
//! - SQS event source mappings: receive a batch, invoke the function, delete what succeeded,
//!   and leave failures to be redelivered until the queue's redrive policy moves them to its
//!   DLQ. Two deliberate differences from Lambda, both only in timing: a failed record becomes
//!   visible again at once instead of after the visibility timeout, and batching windows do
//!   not delay delivery. Both keep local runs fast; neither changes what ends where.
//! - EventBridge rules: the emulator matches the pattern and delivers to a queue of the
//!   host's; each event is one asynchronous invocation, tried three times as Lambda does.
//! - Schedules: `rate(…)` fires on its period; any schedule fires on demand.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Map, Value, json};

use crate::error::sdk_error;
use crate::invoke::invoke;
use crate::stack::{
    ACCOUNT_ID, DeployedFunction, QueueMapping, RuleDelivery, Schedule, TargetInput,
};

/// Lambda tries an asynchronous invocation three times in all before it gives up.
const ASYNC_ATTEMPTS: u32 = 3;

pub fn spawn_queue_mapping(
    sqs: aws_sdk_sqs::Client,
    mapping: QueueMapping,
    function: Arc<DeployedFunction>,
    region: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let source = mapping.queue_arn.clone();
        keep_polling(&source, || poll_once(&sqs, &mapping, &function, &region)).await
    })
}

/// Polls until the task is aborted (at reset); a failed poll is logged and tried again soon.
async fn keep_polling<Poll>(source: &str, mut poll: impl FnMut() -> Poll)
where
    Poll: std::future::Future<Output = Result<(), String>>,
{
    loop {
        if let Err(error) = poll().await {
            tracing::warn!(%source, %error, "polling failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Makes a received message visible again at once, so it is redelivered.
async fn redeliver_now(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipt_handle: &str,
) -> Result<(), String> {
    sqs.change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt_handle)
        .visibility_timeout(0)
        .send()
        .await
        .map(drop)
        .map_err(sdk_error)
}

async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    mapping: &QueueMapping,
    function: &DeployedFunction,
    region: &str,
) -> Result<(), String> {
    let received = sqs
        .receive_message()
        .queue_url(&mapping.queue_url)
        .max_number_of_messages(mapping.batch_size)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(sdk_error)?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(());
    }
    let event = json!({
        "Records": messages
            .iter()
            .map(|m| record(m, &mapping.queue_arn, region))
            .collect::<Vec<_>>(),
    });
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| m.message_id.as_deref().unwrap_or_default())
        .collect();
    let failed = failed_ids(mapping, &ids, invoke(function, event).await);

    let succeeded: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !failed.contains(m.message_id.as_deref().unwrap_or_default()))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle.clone()?)
                .build()
                .ok()
        })
        .collect();
    if !succeeded.is_empty() {
        sqs.delete_message_batch()
            .queue_url(&mapping.queue_url)
            .set_entries(Some(succeeded))
            .send()
            .await
            .map_err(sdk_error)?;
    }
    for message in messages
        .iter()
        .filter(|m| failed.contains(m.message_id.as_deref().unwrap_or_default()))
    {
        if let Some(handle) = &message.receipt_handle {
            redeliver_now(sqs, &mapping.queue_url, handle).await?;
        }
    }
    Ok(())
}

pub fn spawn_rule_delivery(
    sqs: aws_sdk_sqs::Client,
    delivery: RuleDelivery,
    function: Arc<DeployedFunction>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let source = delivery.rule_name.clone();
        keep_polling(&source, || deliver_rule_events(&sqs, &delivery, &function)).await
    })
}

async fn deliver_rule_events(
    sqs: &aws_sdk_sqs::Client,
    delivery: &RuleDelivery,
    function: &DeployedFunction,
) -> Result<(), String> {
    let received = sqs
        .receive_message()
        .queue_url(&delivery.delivery_queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(sdk_error)?;
    for message in received.messages.unwrap_or_default() {
        let event: Value = message
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str(body).ok())
            .unwrap_or(Value::Null);
        let attempt: u32 = message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        let outcome = invoke(function, target_payload(&delivery.input, event)).await;
        let Some(handle) = message.receipt_handle else {
            continue;
        };
        let done = match &outcome {
            Ok(_) => true,
            Err(error) if attempt >= ASYNC_ATTEMPTS => {
                match &function.dead_letter_queue_url {
                    Some(dlq) => {
                        sqs.send_message()
                            .queue_url(dlq)
                            .message_body(message.body.clone().unwrap_or_default())
                            .send()
                            .await
                            .map_err(sdk_error)?;
                        tracing::warn!(rule = %delivery.rule_name, error_type = %error.error_type, "event sent to the function's DLQ after {ASYNC_ATTEMPTS} attempts");
                    }
                    None => {
                        tracing::error!(rule = %delivery.rule_name, error_type = %error.error_type, "event dropped after {ASYNC_ATTEMPTS} attempts")
                    }
                }
                true
            }
            Err(_) => false,
        };
        if done {
            sqs.delete_message()
                .queue_url(&delivery.delivery_queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(sdk_error)?;
        } else {
            redeliver_now(sqs, &delivery.delivery_queue_url, &handle).await?;
        }
    }
    Ok(())
}

/// Fires a `rate(…)` schedule on its period (the first time one period after the start).
pub fn spawn_schedule(
    schedule: Schedule,
    function: Arc<DeployedFunction>,
    region: String,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = schedule.every?;
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticks.tick().await;
            if let Err(error) = fire_schedule(&schedule, &function, &region).await {
                tracing::warn!(schedule = %schedule.expression, error_type = %error.error_type, "scheduled invocation failed");
            }
        }
    }))
}

/// One scheduled invocation, with the event EventBridge sends (or the target's input).
pub async fn fire_schedule(
    schedule: &Schedule,
    function: &DeployedFunction,
    region: &str,
) -> Result<Value, lambda_runtime::Diagnostic> {
    let event = json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": region,
        "resources": [schedule.rule_arn],
        "detail": {},
    });
    invoke(function, target_payload(&schedule.input, event)).await
}

/// What a rule or schedule target sends: the event, a constant, or a part of the event.
fn target_payload(input: &TargetInput, event: Value) -> Value {
    match input {
        TargetInput::Event => event,
        TargetInput::Constant(value) => value.clone(),
        TargetInput::Path(path) => path
            .trim_start_matches('$')
            .split('.')
            .filter(|part| !part.is_empty())
            .try_fold(&event, |value, part| value.get(part))
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// The records of the batch to redeliver, by Lambda's rules for SQS responses.
fn failed_ids(
    mapping: &QueueMapping,
    ids: &[&str],
    outcome: Result<Value, lambda_runtime::Diagnostic>,
) -> HashSet<String> {
    let everything = || ids.iter().map(|id| (*id).to_owned()).collect();
    let response = match outcome {
        Err(_) => return everything(),
        Ok(response) => response,
    };
    if !mapping.report_batch_item_failures {
        return HashSet::new();
    }
    let Some(failures) = response.get("batchItemFailures").and_then(Value::as_array) else {
        return HashSet::new();
    };
    let mut failed = HashSet::new();
    for failure in failures {
        match failure.get("itemIdentifier").and_then(Value::as_str) {
            Some(id) if ids.contains(&id) => {
                failed.insert(id.to_owned());
            }
            // An empty or unknown identifier fails the whole batch.
            _ => return everything(),
        }
    }
    failed
}

/// One record of an SQS event, in the shape Lambda delivers it.
fn record(message: &Message, queue_arn: &str, region: &str) -> Value {
    let attributes: Map<String, Value> = message
        .attributes
        .iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
        .collect();
    let message_attributes: Map<String, Value> = message
        .message_attributes
        .iter()
        .flatten()
        .map(|(name, value)| {
            (
                name.clone(),
                json!({
                    "stringValue": value.string_value,
                    "stringListValues": value.string_list_values.clone().unwrap_or_default(),
                    "binaryListValues": [],
                    "dataType": value.data_type,
                }),
            )
        })
        .collect();
    json!({
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(report: bool) -> QueueMapping {
        QueueMapping {
            function_name: "f".into(),
            queue_url: "u".into(),
            queue_arn: "a".into(),
            batch_size: 10,
            report_batch_item_failures: report,
        }
    }

    fn error() -> lambda_runtime::Diagnostic {
        lambda_runtime::Diagnostic {
            error_type: "X".into(),
            error_message: "x".into(),
        }
    }

    #[test]
    fn targets_send_the_event_a_constant_or_a_part_of_the_event() {
        let event = json!({"detail": {"eventName": "TagResource"}});
        assert_eq!(target_payload(&TargetInput::Event, event.clone()), event);
        assert_eq!(
            target_payload(&TargetInput::Constant(json!({"full": true})), event.clone()),
            json!({"full": true})
        );
        assert_eq!(
            target_payload(
                &TargetInput::Path("$.detail.eventName".into()),
                event.clone()
            ),
            json!("TagResource")
        );
        assert_eq!(
            target_payload(&TargetInput::Path("$".into()), event.clone()),
            event
        );
    }

    #[test]
    fn a_function_error_fails_the_whole_batch() {
        let failed = failed_ids(&mapping(true), &["1", "2"], Err(error()));
        assert_eq!(failed.len(), 2);
    }

    #[test]
    fn reported_items_fail_alone() {
        let response = json!({"batchItemFailures": [{"itemIdentifier": "2"}]});
        let failed = failed_ids(&mapping(true), &["1", "2"], Ok(response));
        assert_eq!(failed, HashSet::from(["2".to_owned()]));
    }

    #[test]
    fn an_unknown_identifier_fails_the_whole_batch() {
        let response = json!({"batchItemFailures": [{"itemIdentifier": "9"}]});
        let failed = failed_ids(&mapping(true), &["1", "2"], Ok(response));
        assert_eq!(failed.len(), 2);
    }

    #[test]
    fn without_report_batch_item_failures_the_response_is_ignored() {
        let response = json!({"batchItemFailures": [{"itemIdentifier": "2"}]});
        assert!(failed_ids(&mapping(false), &["1", "2"], Ok(response)).is_empty());
    }
}
