//! Watching what the stack publishes: a queue subscribed to a topic sees what any subscriber
//! would, and can be read at leisure.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use maestro_aws::SdkConfig;

use crate::error::{LocalCloudError, sdk_error};

/// Creates queue `name` (or finds it), subscribes it to `topic_arn` with raw delivery, and
/// returns its URL.
pub async fn subscribe_queue(
    config: &SdkConfig,
    topic_arn: &str,
    name: &str,
) -> Result<String, LocalCloudError> {
    let failed = |e: String| LocalCloudError::build(&format!("listener {name}"), e);
    let sqs = aws_sdk_sqs::Client::new(config);
    let sns = aws_sdk_sns::Client::new(config);
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| failed(sdk_error(e)))?
        .queue_url
        .ok_or_else(|| failed("no queue URL".into()))?;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| failed(sdk_error(e)))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| failed("no queue ARN".into()))?;
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .map_err(|e| failed(sdk_error(e)))?;
    Ok(queue_url)
}

/// Receives and deletes message bodies from `queue_url` until `count` arrived or `patience`
/// ran out; returns what arrived.
pub async fn receive_bodies(
    config: &SdkConfig,
    queue_url: &str,
    count: usize,
    patience: Duration,
) -> Result<Vec<String>, LocalCloudError> {
    let failed = |e: String| LocalCloudError::Emulator(format!("reading {queue_url}: {e}"));
    let sqs = aws_sdk_sqs::Client::new(config);
    let deadline = Instant::now() + patience;
    let mut bodies = Vec::new();
    while bodies.len() < count && Instant::now() < deadline {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| failed(sdk_error(e)))?;
        for message in received.messages.unwrap_or_default() {
            if let Some(handle) = &message.receipt_handle {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| failed(sdk_error(e)))?;
            }
            bodies.extend(message.body);
        }
    }
    Ok(bodies)
}
